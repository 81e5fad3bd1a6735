//! The plan `check-config` prints: who is who, how heartbeats flow, and the configured values.
//! What takeover and release will do, in order, is printed after it from the step list itself
//! (`takeover::steps::render`), which this module cannot see.
//!
//! Pure text from a [`Config`]; runs nothing.

use std::fmt::Write;

use super::duration::format as dur;
use super::nova::NovaForm;
use super::{Config, Node, PathKind};

fn node_line(c: &Config, n: &Node) -> String {
    let addrs = c
        .paths
        .iter()
        .zip(&n.addresses)
        .map(|(p, a)| format!("{}={a}", p.name))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{} (id {}, priority {}) {addrs}",
        n.name, n.id.0, n.priority
    )
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Render the plan for `check-config`.
pub fn render_plan(c: &Config) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = render(c, &mut s);
    s
}

fn render(c: &Config, s: &mut String) -> std::fmt::Result {
    let f = &c.failover;
    let n = &c.nova;
    let t = &c.timers;
    writeln!(s, "config {}", c.file.display())?;
    writeln!(s, "cluster {:?} (id {})", c.cluster_name, c.cluster_id)?;
    writeln!(s, "this node: {}", node_line(c, c.this_node()))?;
    writeln!(s, "peers:")?;
    for p in c.peers() {
        writeln!(s, "  {}", node_line(c, p))?;
    }
    writeln!(
        s,
        "heartbeat paths (a peer is dead only when silent on all):"
    )?;
    for (i, p) in c.paths.iter().enumerate() {
        match &p.kind {
            PathKind::Udp { interface, port } => writeln!(
                s,
                "  {i} {}: udp unicast on {interface} port {port}",
                p.name
            )?,
        }
    }
    writeln!(
        s,
        "timers: keepalive {}, warntime {}, deadtime {}, initdead {}",
        dur(t.keepalive),
        dur(t.warntime),
        dur(t.deadtime),
        dur(t.initdead)
    )?;
    writeln!(
        s,
        "auto_failback: {}",
        if f.auto_failback { "on" } else { "off" }
    )?;
    writeln!(
        s,
        "key file: {} (sends with key {}, accepts {})",
        c.key_file.display(),
        c.keyring.send_id(),
        list(&c.keyring.ids().collect::<Vec<_>>())
    )?;
    writeln!(s, "state dir: {}", c.state_dir.display())?;
    writeln!(
        s,
        "daemon: status socket {}, nova-network respawn budget {}, stop grace {:?}",
        c.daemon.admin_socket.display(),
        c.daemon.respawn_budget,
        c.daemon.nova_stop_grace
    )?;
    let repeat = c
        .announce
        .repeat_after
        .map(|d| format!(", again after {d:?}"))
        .unwrap_or_default();
    writeln!(
        s,
        "announce: {} per address at {:?}{repeat}",
        c.announce.count, c.announce.interval
    )?;
    let log = match &c.probes.log_file {
        Some(f) => format!("{} for {:?}", f.display(), c.probes.fatal_patterns),
        None => "no log file watched".to_owned(),
    };
    match &c.mirror {
        None => writeln!(
            s,
            "mirror: off (at a takeover, the VMs wait for nova-network's start-up)"
        )?,
        Some(m) => writeln!(
            s,
            "mirror: TCP port {} on the heartbeat path addresses; the active pushes nova's chains, floating IPs, bridges and dnsmasq files on every change (iptables checked every {:?}) and confirms every {:?}; a snapshot older than {:?} is not applied",
            m.port, m.iptables_check, m.refresh, m.max_age
        )?,
    }
    match &c.bus {
        None => writeln!(s, "bus: none (no queue probe, alerts only in the log)")?,
        Some(b) => writeln!(
            s,
            "bus: {} (password {}{}), alerts on exchange {}, queue network.{} sampled every {:?} (no consumer for {:?} or a backlog growing for {:?}: failing), {} alerts buffered, heartbeats through the broker: {}",
            b.url,
            if b.password.is_some() { "set" } else { "none" },
            match &b.ca {
                Some(ca) => format!(
                    ", TLS trusting {} CA certificate(s) from {} besides the system's",
                    ca.certificates,
                    ca.path.display()
                ),
                None if b.url.starts_with("amqps://") => {
                    ", TLS trusting the system's CA certificates".to_owned()
                }
                None => String::new(),
            },
            b.exchange,
            c.nova.host,
            b.queue_interval,
            b.consumer_grace,
            b.backlog_window,
            b.alert_buffer,
            if b.heartbeat_path { "yes" } else { "no" }
        )?,
    }
    writeln!(
        s,
        "probes: nova-network exit; links {}; {log}",
        if c.probes.watch_links {
            "watched"
        } else {
            "not watched"
        }
    )?;
    writeln!(s, "VIPs:")?;
    for v in &f.vips {
        writeln!(s, "  {} on {}", v.address, v.interface)?;
    }
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "(not set)".into());
    let form = match n.form {
        NovaForm::Flagfile => "flagfile",
        NovaForm::Ini => "ini",
    };
    writeln!(s, "nova ({}, {form} form):", n.path.display())?;
    writeln!(s, "  host {} (queue network.{})", n.host, n.host)?;
    writeln!(
        s,
        "  routing_source_ip {}",
        n.routing_source_ip
            .map_or("(not set)".into(), |ip| ip.to_string())
    )?;
    writeln!(
        s,
        "  public_interface {}, flat_interface {}, flat_network_bridge {}, vlan_interface {}",
        n.public_interface,
        opt(&n.flat_interface),
        opt(&n.flat_network_bridge),
        opt(&n.vlan_interface)
    )?;
    writeln!(
        s,
        "  fixed_range {}, floating_range {}, use_ipv6 {}, networks_path {}",
        n.fixed_range.map_or("(not set)".into(), |r| r.to_string()),
        n.floating_range
            .map_or("(not set)".into(), |r| r.to_string()),
        n.use_ipv6,
        n.networks_path.display()
    )?;
    writeln!(s, "  network_manager {}", n.network_manager)?;

    Ok(())
}
