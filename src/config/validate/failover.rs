//! The `[failover]` section: VIPs, what may be stopped and deleted, the nova-network command.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn check_failover(
    cx: &mut Ctx<'_>,
    f: raw::RawFailover,
    paths: Option<&[HeartbeatPath]>,
    nova: Option<&nova::NovaConf>,
) -> Option<Failover> {
    cx.unknown("failover", &f.unknown, raw::FAILOVER_KEYS);
    let auto_failback = match present(&f.auto_failback) {
        None => Some(false),
        Some(v) => cx.boolean("failover.auto_failback", v),
    };

    // VIPs
    let raws = f.vips.unwrap_or_default();
    let mut vips = Vec::new();
    let mut vips_ok = true;
    if raws.is_empty() {
        cx.missing("failover.vips", "at least one VIP, { address = \"10.2.3.120/32\", interface = \"eth1\" } (nova's routing_source_ip)");
        vips_ok = false;
    }
    for (i, v) in raws.into_iter().enumerate() {
        let k = |f: &str| format!("failover.vips[{i}].{f}");
        cx.unknown(&format!("failover.vips[{i}]"), &v.unknown, raw::VIP_KEYS);
        let expected = "an address with its prefix length, like 10.2.3.120/32";
        let address = cx
            .need(&k("address"), &v.address, expected)
            .and_then(|a| cx.string(&k("address"), a, expected))
            .and_then(|s| match s.parse::<IpNet>() {
                Ok(net) => Some(net),
                Err(_) => {
                    cx.invalid(&k("address"), format!("{s:?}"), expected);
                    None
                }
            });
        if let Some(a) = address
            && vips.iter().any(|x: &Vip| x.address.addr() == a.addr())
        {
            cx.invalid(
                &k("address"),
                a.to_string(),
                "an address not already listed in failover.vips",
            );
            vips_ok = false;
        }
        let interface = cx
            .need(
                &k("interface"),
                &v.interface,
                "the interface the VIP goes on",
            )
            .and_then(|a| cx.string(&k("interface"), a, IFNAME_EXPECTED))
            .filter(|s| {
                let good = valid_ifname(s);
                if !good {
                    cx.invalid(&k("interface"), format!("{s:?}"), IFNAME_EXPECTED);
                }
                good
            });
        match (address, interface) {
            (Some(address), Some(interface)) => vips.push(Vip { address, interface }),
            _ => vips_ok = false,
        }
    }

    // Interfaces that a pattern must never match, with the reason.
    let mut protected: Vec<(String, String)> = vec![("lo".into(), "the loopback".into())];
    for p in paths.unwrap_or_default() {
        if let Some(interface) = p.kind.interface() {
            protected.push((
                interface.to_owned(),
                format!("heartbeat path {:?} uses it", p.name),
            ));
        }
    }
    for v in &vips {
        protected.push((v.interface.clone(), format!("VIP {} is on it", v.address)));
    }
    if let Some(n) = nova {
        protected.push((n.public_interface.clone(), "nova's public_interface".into()));
        if let Some(i) = &n.flat_interface {
            protected.push((i.clone(), "nova's flat_interface".into()));
        }
        if let Some(i) = &n.vlan_interface {
            protected.push((i.clone(), "nova's vlan_interface".into()));
        }
    }

    let delete_interfaces = match present(&f.delete_interfaces) {
        None => Some(Vec::new()),
        Some(v) => cx
            .strings("failover.delete_interfaces", v)
            .and_then(|items| {
                let mut ok = true;
                let mut out = Vec::new();
                for (k, s) in items {
                    match check_pattern(&s, &protected) {
                        Ok(p) => out.push(p),
                        Err(expected) => {
                            cx.invalid(&k, format!("{s:?}"), expected);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }),
    };

    let stop_processes = match present(&f.stop_processes) {
        None => Some(Vec::new()),
        Some(v) => cx.strings("failover.stop_processes", v).and_then(|items| {
            let mut ok = true;
            let mut out = Vec::new();
            for (k, s) in items {
                let p = PathBuf::from(&s);
                if p.is_absolute() && p.file_name().is_some() {
                    out.push(p);
                } else {
                    cx.invalid(&k, format!("{s:?}"), "an absolute executable path, like /usr/sbin/dnsmasq (matched exactly, never by name)");
                    ok = false;
                }
            }
            ok.then_some(out)
        }),
    };

    let key = "failover.nova_network_command";
    let nova_network_command = cx
        .need(key, &f.nova_network_command, "the nova-network command line, like [\"/usr/bin/nova-network\", \"--flagfile={nova_conf}\", \"--host={host}\"]")
        .and_then(|v| cx.strings(key, v))
        .and_then(|items| {
            if items.is_empty() || items[0].1.is_empty() {
                cx.invalid(key, "empty", "a non-empty command line starting with the nova-network executable");
                return None;
            }
            let mut ok = true;
            for (k, s) in &items {
                if let Some(bad) = unknown_placeholder(s) {
                    cx.invalid(k, format!("{s:?}"), format!("only the placeholders {{nova_conf}} and {{host}}, not {{{bad}}}"));
                    ok = false;
                }
            }
            ok.then(|| items.into_iter().map(|(_, s)| s).collect())
        });

    if !vips_ok {
        return None;
    }
    Some(Failover {
        auto_failback: auto_failback?,
        vips,
        delete_interfaces: delete_interfaces?,
        stop_processes: stop_processes?,
        nova_network_command: nova_network_command?,
    })
}

/// A `delete_interfaces` pattern, or what was expected of it.
pub(super) fn check_pattern(
    s: &str,
    protected: &[(String, String)],
) -> Result<glob::Pattern, String> {
    if s.trim().is_empty() {
        return Err("a non-empty glob pattern like \"br*\"".into());
    }
    if s == "*" {
        return Err("a pattern narrower than `*`, which would delete every interface".into());
    }
    let p = glob::Pattern::new(s).map_err(|e| format!("a valid glob pattern ({e})"))?;
    if let Some((name, why)) = protected.iter().find(|(n, _)| p.matches(n)) {
        return Err(format!("a pattern that never matches {name} ({why})"));
    }
    Ok(p)
}

/// The first `{name}` in `s` that is not a known placeholder.
pub(super) fn unknown_placeholder(s: &str) -> Option<String> {
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Some(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    None
}
