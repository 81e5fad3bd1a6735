//! What a release (or the start-up clean slate) would act on here now, for `check-config`:
//! every link a delete pattern matches and whether it is nova's, every process of the
//! configured executables and whether it is nova's, the floating IPs and why, nova-network's
//! chains beside other nova binaries' (kept), and nova's ebtables rules. Reads only; a part
//! that cannot be read (iptables without root) says why instead.

use std::fmt::Write;

use super::{Plan, firewall, floating, links, procs};

/// At most this many floating IPs are named (a pool of 10,000 is counted, not listed).
const SHOWN: usize = 20;

/// The survey as text, one section a line or more.
pub async fn render(plan: &Plan) -> String {
    let mut s = String::from(
        "on this server now (what a release or the start-up clean slate would act on; nothing is changed):\n",
    );
    links_part(plan, &mut s).await;
    procs_part(plan, &mut s);
    floating_part(plan, &mut s).await;
    chains_part(plan, &mut s).await;
    s
}

async fn links_part(plan: &Plan, s: &mut String) {
    let patterns: Vec<&str> = plan.delete_interfaces.iter().map(|p| p.as_str()).collect();
    let _ = writeln!(s, "  links matching {}:", or_none(&patterns.join(", ")));
    let all = match links::Links::open() {
        Ok(l) => l.list().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let all = match all {
        Ok(all) => all,
        Err(e) => {
            let _ = writeln!(s, "    cannot list links: {e}");
            return;
        }
    };
    let nova = plan.nova_links();
    let mut any = false;
    for l in &all {
        let kind = l.kind.as_deref().unwrap_or("link");
        let line = match nova.verdict(l, &all) {
            links::Verdict::Unmatched => continue,
            links::Verdict::Protected => {
                "protected (a managed or heartbeat interface): left alone".to_owned()
            }
            links::Verdict::NotNova => {
                "not nova's (no nova file names it, not flat_network_bridge): left alone".to_owned()
            }
            links::Verdict::Nova(why) => format!("nova's ({why}): deleted"),
        };
        any = true;
        let _ = writeln!(s, "    {} ({kind}): {line}", l.name);
    }
    if !any {
        let _ = writeln!(s, "    (none)");
    }
}

fn procs_part(plan: &Plan, s: &mut String) {
    let exes: Vec<String> = plan
        .stop_executables
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let _ = writeln!(
        s,
        "  processes of {} in this namespace:",
        or_none(&exes.join(", "))
    );
    match procs::scan(&plan.stop_executables, &plan.networks_path) {
        Err(e) => {
            let _ = writeln!(s, "    cannot scan /proc: {e}");
        }
        Ok(found) if found.is_empty() => {
            let _ = writeln!(s, "    (none)");
        }
        Ok(found) => {
            for f in found {
                let verdict = match &f.nova {
                    Some(why) => format!("nova's ({why}): stopped"),
                    None => format!(
                        "not nova's (no nova pid file or file under {} names it): left alone",
                        plan.networks_path.display()
                    ),
                };
                let _ = writeln!(s, "    {} {}: {verdict}", f.pid, f.exe.display());
            }
        }
    }
}

async fn floating_part(plan: &Plan, s: &mut String) {
    match floating::current(plan).await {
        Err(e) => {
            let _ = writeln!(
                s,
                "  floating IPs on {}: cannot tell: {e}",
                plan.public_interface
            );
        }
        Ok(list) => {
            let mut shown: Vec<String> = list
                .iter()
                .take(SHOWN)
                .map(|(a, why)| match why {
                    floating::Evidence::Dnat => format!("{a} (nova DNATs it)"),
                    floating::Evidence::Range => format!("{a} (in floating_range)"),
                })
                .collect();
            if list.len() > SHOWN {
                shown.push(format!("and {} more", list.len() - SHOWN));
            }
            let _ = writeln!(
                s,
                "  floating IPs on {} ({}): {}",
                plan.public_interface,
                list.len(),
                if shown.is_empty() {
                    "(none)".to_owned()
                } else {
                    format!("{}: deleted", shown.join(", "))
                }
            );
        }
    }
}

async fn chains_part(plan: &Plan, s: &mut String) {
    for family in [firewall::Family::V4, firewall::Family::V6] {
        let name = match family {
            firewall::Family::V4 => "iptables",
            firewall::Family::V6 => "ip6tables",
        };
        match firewall::save(family).await {
            Err(e) => {
                let _ = writeln!(s, "  {name}: cannot read: {e}");
            }
            Ok(None) => {
                let _ = writeln!(s, "  {name}: not installed");
            }
            Ok(Some(save)) => {
                let (ours, others) = firewall::rules::census(&save, &plan.chain_prefix);
                let removed = firewall::removal_script(&save, &plan.chain_prefix)
                    .map(|(_, chains, jumps)| {
                        format!("{} chain(s) and {jumps} jump(s) removed", chains.len())
                    })
                    .unwrap_or_else(|| "nothing to remove".to_owned());
                let _ = writeln!(
                    s,
                    "  {name}: nova-network's {ours} chain(s): {removed}; other nova binaries' chains kept: {}",
                    or_none(&others.join(", "))
                );
            }
        }
    }
    match firewall::ebtables::save().await {
        Err(e) => {
            let _ = writeln!(s, "  ebtables: cannot read: {e}");
        }
        Ok(None) => {
            let _ = writeln!(s, "  ebtables: not installed");
        }
        Ok(Some(save)) => {
            let n = firewall::ebtables::nova_rules(&save).len();
            let _ = writeln!(
                s,
                "  ebtables: {n} nova floating forward rule(s){}",
                if n > 0 { ": removed" } else { "" }
            );
        }
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "(none)" } else { s }
}
