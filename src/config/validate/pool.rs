//! The pool: heartbeat paths, nodes and their addresses, this node, and the timers (whose
//! rules are `cluster::timers`').

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn check_paths(cx: &mut Ctx<'_>, raws: Vec<raw::RawPath>) -> Option<Vec<HeartbeatPath>> {
    if raws.is_empty() {
        cx.missing("paths", "at least one [[paths]] heartbeat path");
        return None;
    }
    if raws.len() > usize::from(u8::MAX) {
        cx.invalid(
            "paths",
            format!("{} paths", raws.len()),
            "at most 255 paths",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, p) in raws.into_iter().enumerate() {
        let k = |f: &str| format!("paths[{i}].{f}");
        cx.unknown(&format!("paths[{i}]"), &p.unknown, raw::UDP_PATH_KEYS);
        let name = cx
            .need(
                &k("name"),
                &p.name,
                "a path name, used as the key in nodes.addresses",
            )
            .and_then(|v| cx.string(&k("name"), v, "a non-empty path name"));
        if let Some(n) = &name {
            if let Some(first) = names.get(n) {
                cx.invalid(
                    &k("name"),
                    format!("{n:?}"),
                    format!("a name not already used by paths[{first}]"),
                );
                ok = false;
            } else {
                names.insert(n.clone(), i);
            }
        }
        let kind = cx
            .need(&k("kind"), &p.kind, "the path kind, \"udp\"")
            .and_then(|v| cx.string(&k("kind"), v, "\"udp\""));
        let kind = match kind.as_deref() {
            Some("udp") => {
                let interface = cx
                    .need(
                        &k("interface"),
                        &p.interface,
                        "the interface heartbeats use",
                    )
                    .and_then(|v| cx.string(&k("interface"), v, IFNAME_EXPECTED));
                let interface = interface.filter(|s| {
                    let good = valid_ifname(s);
                    if !good {
                        cx.invalid(&k("interface"), format!("{s:?}"), IFNAME_EXPECTED);
                    }
                    good
                });
                let port = cx
                    .need(&k("port"), &p.port, "the UDP port (heartbeat uses 694)")
                    .and_then(|v| cx.int(&k("port"), v, 1, 65535))
                    .and_then(|n| u16::try_from(n).ok());
                match (interface, port) {
                    (Some(interface), Some(port)) => Some(PathKind::Udp { interface, port }),
                    _ => None,
                }
            }
            Some(other) => {
                cx.invalid(&k("kind"), format!("{other:?}"), "\"udp\"");
                None
            }
            None => None,
        };
        match (name, kind) {
            (Some(name), Some(kind)) => out.push(HeartbeatPath { name, kind }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

pub(super) fn check_nodes(
    cx: &mut Ctx<'_>,
    raws: Vec<raw::RawNode>,
    paths: Option<&[HeartbeatPath]>,
) -> Option<Vec<Node>> {
    if raws.is_empty() {
        cx.missing("nodes", "the [[nodes]] of the pool, this one included");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<u16, usize> = HashMap::new();
    let mut prios: HashMap<u8, usize> = HashMap::new();
    let mut addrs: HashMap<(usize, IpAddr), usize> = HashMap::new();
    for (i, n) in raws.into_iter().enumerate() {
        let k = |f: &str| format!("nodes[{i}].{f}");
        cx.unknown(&format!("nodes[{i}]"), &n.unknown, raw::NODE_KEYS);
        let name = cx
            .need(
                &k("name"),
                &n.name,
                "the node's name, as `uname -n` prints it",
            )
            .and_then(|v| cx.string(&k("name"), v, "a non-empty node name"));
        if let Some(s) = &name
            && let Some(first) = names.insert(s.clone(), i)
        {
            cx.invalid(
                &k("name"),
                format!("{s:?}"),
                format!("a name not already used by nodes[{first}]"),
            );
            ok = false;
        }
        let id = cx
            .need(&k("id"), &n.id, "a node id in 1..=65535")
            .and_then(|v| cx.int(&k("id"), v, 1, 65535))
            .and_then(|x| u16::try_from(x).ok());
        if let Some(id) = id
            && let Some(first) = ids.insert(id, i)
        {
            cx.invalid(
                &k("id"),
                id.to_string(),
                format!("an id not already used by nodes[{first}]"),
            );
            ok = false;
        }
        let priority = cx
            .need(
                &k("priority"),
                &n.priority,
                "an election priority in 1..=255",
            )
            .and_then(|v| cx.int(&k("priority"), v, 1, 255))
            .and_then(|x| u8::try_from(x).ok());
        if let Some(p) = priority
            && let Some(first) = prios.insert(p, i)
        {
            cx.invalid(
                &k("priority"),
                p.to_string(),
                format!("a priority distinct from nodes[{first}]'s, so elections never tie"),
            );
            ok = false;
        }
        let addresses = cx
            .need(
                &k("addresses"),
                &n.addresses,
                "a table of path name = address",
            )
            .and_then(|v| node_addresses(cx, i, v, paths, &mut addrs));
        match (name, id, priority, addresses) {
            (Some(name), Some(id), Some(priority), Some(addresses)) => out.push(Node {
                name,
                id: NodeId(id),
                priority,
                addresses,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

pub(super) fn node_addresses(
    cx: &mut Ctx<'_>,
    i: usize,
    v: &Value,
    paths: Option<&[HeartbeatPath]>,
    seen: &mut HashMap<(usize, IpAddr), usize>,
) -> Option<Vec<IpAddr>> {
    let key = format!("nodes[{i}].addresses");
    let ValueKind::Table(table) = &v.kind else {
        cx.invalid(
            &key,
            show(v),
            "a table of path name = address, like { hb0 = \"192.168.0.1\" }",
        );
        return None;
    };
    let paths = paths?;
    let names: Vec<&str> = paths.iter().map(|p| p.name.as_str()).collect();
    let mut ok = true;
    let mut by_name: BTreeMap<&str, IpAddr> = BTreeMap::new();
    let given: Vec<&str> = table.keys().map(String::as_str).collect();
    let sorted: BTreeMap<&String, &Value> = table.iter().collect();
    for (pname, addr) in sorted {
        let k = format!("{key}.{pname}");
        if !names.contains(&pname.as_str()) {
            cx.errors.push(ConfigError::UnknownKey {
                at: cx.origins.at(&k),
                key: k,
                expected: format!("a path name among [[paths]]: {}", names.join(", ")),
            });
            ok = false;
            continue;
        }
        let parsed = cx
            .string(&k, addr, "an IPv4 or IPv6 address")
            .and_then(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.invalid(&k, format!("{s:?}"), "an IPv4 or IPv6 address");
                    None
                }
            });
        match parsed {
            Some(ip) => {
                by_name.insert(pname.as_str(), ip);
            }
            None => ok = false,
        }
    }
    let mut out = Vec::new();
    for (p, path) in paths.iter().enumerate() {
        match by_name.get(path.name.as_str()) {
            Some(&ip) => {
                if let Some(first) = seen.insert((p, ip), i) {
                    cx.invalid(
                        &format!("{key}.{}", path.name),
                        ip.to_string(),
                        format!("an address not already used by nodes[{first}] on this path"),
                    );
                    ok = false;
                }
                out.push(ip);
            }
            // Present but refused above: already reported.
            None if given.contains(&path.name.as_str()) => ok = false,
            None => {
                cx.missing(
                    &format!("{key}.{}", path.name),
                    format!("this node's address on heartbeat path {:?}", path.name),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

pub(super) fn find_self(
    cx: &mut Ctx<'_>,
    nodes: &[Node],
    name: String,
    inputs: &Inputs<'_>,
) -> Option<usize> {
    let names = nodes
        .iter()
        .map(|n| format!("{:?}", n.name))
        .collect::<Vec<_>>()
        .join(", ");
    let (wanted, found) = if name.is_empty() {
        match (inputs.hostname)() {
            Ok(h) => (h.clone(), format!("empty and the hostname is {h:?}")),
            Err(e) => {
                cx.invalid(
                    "cluster.node_name",
                    format!("empty and the hostname cannot be read ({e})"),
                    "this node's name among [[nodes]]",
                );
                return None;
            }
        }
    } else {
        (name.clone(), format!("{name:?}"))
    };
    let idx = nodes.iter().position(|n| n.name == wanted);
    if idx.is_none() {
        cx.invalid(
            "cluster.node_name",
            found,
            format!("this node's name among [[nodes]]: {names}"),
        );
    }
    idx
}

pub(super) fn check_timers(cx: &mut Ctx<'_>, t: raw::RawTimers) -> Option<Timers> {
    cx.unknown("timers", &t.unknown, raw::TIMERS_KEYS);
    let fmt = duration::format;
    let mut unreadable = false;
    let mut read = |cx: &mut Ctx<'_>, key: &str, v: Option<&Value>| match v {
        Some(v) => {
            let d = cx.duration(key, v);
            unreadable |= d.is_none();
            d
        }
        None => None,
    };
    let keepalive = cx.need(
        "timers.keepalive",
        &t.keepalive,
        "the heartbeat interval, like 250ms",
    );
    let keepalive = read(cx, "timers.keepalive", keepalive);
    let deadtime = cx.need(
        "timers.deadtime",
        &t.deadtime,
        "the dead-peer time, like 4s",
    );
    let deadtime = read(cx, "timers.deadtime", deadtime);
    let warntime = read(cx, "timers.warntime", present(&t.warntime));
    let initdead = read(cx, "timers.initdead", present(&t.initdead));
    // One set of rules (cluster::timers), shared with the import of a heartbeat ha.cf.
    let (timers, broken) = timers::check(timers::Written {
        keepalive,
        warntime,
        deadtime,
        initdead,
    });
    for b in &broken {
        cx.invalid(
            &format!("timers.{}", b.timer().name()),
            format!("{:?}", fmt(b.found())),
            b.expected(fmt),
        );
    }
    let timers = timers.filter(|_| !unreadable)?;
    if timers::advise(&timers).contains(&timers::Advice::InitdeadBelowTenSeconds) {
        cx.warn(
                "timers.initdead",
                format!(
                    "is {}: below {}, peers still booting (slow switch ports, STP) may be declared dead at start-up (heartbeat warns too)",
                    fmt(timers.initdead),
                    fmt(timers::INITDEAD_WARN_BELOW)
                ),
            );
    }
    Some(timers)
}
