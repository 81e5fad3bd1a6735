//! The imported configuration written as our TOML, with comments saying where each value
//! came from.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A TOML string literal.
pub(super) fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Comment lines with `text`, one per line of it. Control characters (which a TOML comment
/// may not hold, and which may come from the imported files) are written as `?`.
pub(super) fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("# ");
        out.extend(
            line.chars()
                .map(|c| if c.is_control() && c != '\t' { '?' } else { c }),
        );
        out.push('\n');
    }
}

pub(super) fn render(p: &Plan) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let w = &mut o;
    comment(
        w,
        "nova-network-ha configuration imported from a Linux-HA heartbeat setup\n\
         (`nova-network-ha import-heartbeat`). The same file goes on every node.\n\
         Each value says where it came from; ASSUMED marks what heartbeat did not say and\n\
         FILL IN what must be completed. Run `nova-network-ha check-config` before use.\n\
         Durations are written with a unit: `250ms`, `4s`.",
    );
    w.push_str("\n[cluster]\n");
    comment(
        w,
        "Name of the HA pool, used in alert routing keys. ASSUMED: heartbeat has none.",
    );
    let _ = writeln!(w, "name = {}", q("nova-network"));
    comment(
        w,
        "Numeric cluster id carried in every heartbeat. ASSUMED: 1; give every pool sharing a\n\
         network its own.",
    );
    w.push_str("id = 1\n");
    comment(
        w,
        "Which [[nodes]] entry is this server. Empty: use the hostname (`uname -n`).",
    );
    let _ = writeln!(w, "node_name = {}", q(""));

    for n in &p.nodes {
        w.push('\n');
        comment(w, &format!("From {}.", n.source));
        w.push_str("[[nodes]]\n");
        let _ = writeln!(w, "name = {}", q(&n.name));
        let _ = writeln!(w, "id = {}", n.id);
        let _ = writeln!(w, "priority = {}", n.priority);
        let mut known = Vec::new();
        for (pi, a) in n.addresses.iter().enumerate() {
            match a {
                Some((ip, source)) => {
                    comment(w, &format!("hb{pi}: from {source}."));
                    known.push(format!("hb{pi} = {}", q(&ip.to_string())));
                }
                None => comment(
                    w,
                    &format!(
                        "FILL IN hb{pi} = \"<address of {} on {}>\": this ha.cf names only the \
                         addresses heartbeat sent to.",
                        n.name, p.paths[pi].interface
                    ),
                ),
            }
        }
        if known.is_empty() {
            w.push_str("addresses = {}\n");
        } else {
            let _ = writeln!(w, "addresses = {{ {} }}", known.join(", "));
        }
    }

    for (pi, path) in p.paths.iter().enumerate() {
        w.push('\n');
        comment(w, &format!("From {}.", path.source));
        w.push_str("[[paths]]\n");
        let _ = writeln!(w, "name = {}", q(&format!("hb{pi}")));
        let _ = writeln!(w, "kind = {}", q("udp"));
        let _ = writeln!(w, "interface = {}", q(&path.interface));
        let _ = writeln!(w, "port = {}", path.port);
    }

    w.push_str("\n[timers]\n");
    for (name, t) in [
        ("keepalive", &p.keepalive),
        ("warntime", &p.warntime),
        ("deadtime", &p.deadtime),
        ("initdead", &p.initdead),
    ] {
        comment(w, &format!("From {}.", t.source));
        let _ = writeln!(w, "{name} = {}", q(&duration(t.ms)));
    }

    w.push_str("\n[auth]\n");
    comment(
        w,
        &format!(
            "{}.\nCreate this file with a new HMAC-SHA256 key (then copy it to every node):\n{KEY_COMMAND}",
            p.key_source
        ),
    );
    let _ = writeln!(w, "key_file = {}", q(KEY_FILE));

    w.push_str("\n[failover]\n");
    comment(w, &format!("From {}.", p.auto_failback.1));
    let _ = writeln!(w, "auto_failback = {}", p.auto_failback.0);
    comment(
        w,
        &format!(
            "From {}.",
            p.vips
                .iter()
                .map(|v| format!("haresources:{} {:?}", v.line, v.text))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let vips: Vec<String> = p
        .vips
        .iter()
        .map(|v| {
            format!(
                "{{ address = {}, interface = {} }}",
                q(&format!("{}/{}", v.address, v.prefix)),
                q(&v.interface)
            )
        })
        .collect();
    let _ = writeln!(w, "vips = [{}]", vips.join(", "));
    comment(
        w,
        "ASSUMED (example default): nova's bridges and VLANs, which the seed's clean-vlans removed.",
    );
    let _ = writeln!(w, "delete_interfaces = [{}, {}]", q("br*"), q("vlan*"));
    comment(
        w,
        "ASSUMED (example default): what the seed's script stopped with `killall dnsmasq radvd`.",
    );
    let _ = writeln!(
        w,
        "stop_processes = [{}, {}]",
        q("/usr/sbin/dnsmasq"),
        q("/usr/sbin/radvd")
    );
    comment(
        w,
        "ASSUMED (example default): replaces haresources' nova-network script; {nova_conf} and\n\
         {host} are replaced by nova.conf's path and the shared nova host.",
    );
    let _ = writeln!(
        w,
        "nova_network_command = [{}, {}, {}]",
        q("/usr/bin/nova-network"),
        q("--flagfile={nova_conf}"),
        q("--host={host}")
    );

    w.push_str("\n[nova]\n");
    comment(
        w,
        "ASSUMED: the seed's nova.conf; its --host must be the same on every node and its\n\
         routing_source_ip one of failover.vips.",
    );
    let _ = writeln!(w, "conf = {}", q("/etc/nova/nova.conf"));

    w.push_str("\n[state]\n");
    comment(
        w,
        "ASSUMED (example default): where the boot generation is kept.",
    );
    let _ = writeln!(w, "dir = {}", q("/var/lib/nova-network-ha"));
    o
}
