//! haresources: heartbeat's resource group: the preferred node, its IP addresses and scripts.

use std::net::Ipv4Addr;

use super::{Diag, File};

/// A virtual IP from an `IPaddr` resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Vip {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub interface: String,
    pub line: usize,
    /// The resource as written.
    pub text: String,
}

/// What haresources says.
#[derive(Debug, Default)]
pub(super) struct HaResources {
    /// The preferred node (first field) and its line.
    pub preferred: Option<(String, usize)>,
    pub vips: Vec<Vip>,
}

/// Joins backslash-continued lines; yields (first line number, text without comment).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or("");
        let (content, continued) = match content.trim_end().strip_suffix('\\') {
            Some(c) => (c, true),
            None => (content, false),
        };
        let entry = pending.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(content);
        if !continued && let Some(done) = pending.take() {
            out.push(done);
        }
    }
    out.extend(pending);
    out
}

/// A netmask as `bits` or a dotted quad.
fn prefix(s: &str) -> Option<u8> {
    if let Ok(bits) = s.parse::<u8>() {
        return (bits <= 32).then_some(bits);
    }
    let mask = u32::from(s.parse::<Ipv4Addr>().ok()?);
    let bits = mask.leading_ones();
    (mask.checked_shl(bits).unwrap_or(0) == 0).then_some(bits as u8)
}

/// Parses haresources, recording every error, note and warning in `d`.
pub(super) fn parse(text: &str, d: &mut Diag) -> HaResources {
    let mut res = HaResources::default();
    for (line, content) in logical_lines(text) {
        let mut fields = content.split_whitespace();
        let Some(node) = fields.next() else { continue };
        match &res.preferred {
            None => res.preferred = Some((node.to_string(), line)),
            Some((first, _)) if first.eq_ignore_ascii_case(node) => {}
            Some((first, first_line)) => {
                d.error(
                    File::HaResources,
                    Some(line),
                    format!(
                        "found a resource group preferring {node:?}, expected one group: \
                         nova-network-ha moves one service (line {first_line} prefers {first:?})"
                    ),
                );
                continue;
            }
        }
        let mut any = false;
        for resource in fields {
            any = true;
            resource_entry(resource, line, d, &mut res.vips);
        }
        if !any {
            d.error(
                File::HaResources,
                Some(line),
                format!("found node {node:?} with no resource, expected `<node> <ip>/<bits>/<interface> ...`"),
            );
        }
    }
    if res.preferred.is_none() {
        d.error(
            File::HaResources,
            None,
            "found no resource line, expected `<node> <ip>/<bits>/<interface> nova-network`"
                .to_string(),
        );
    } else if res.vips.is_empty() && !d.has_error_for(File::HaResources) {
        d.error(
            File::HaResources,
            None,
            "found no IPaddr resource, expected the virtual IP that is nova's routing_source_ip"
                .to_string(),
        );
    }
    res
}

fn resource_entry(resource: &str, line: usize, d: &mut Diag, vips: &mut Vec<Vip>) {
    let (name, args) = match resource.split_once("::") {
        Some((name, args)) => (name, Some(args)),
        // A bare address is heartbeat's shorthand for IPaddr::address.
        None if resource
            .split('/')
            .next()
            .is_some_and(|a| a.parse::<Ipv4Addr>().is_ok()) =>
        {
            ("IPaddr", Some(resource))
        }
        None => (resource, None),
    };
    match (name, args) {
        ("IPaddr" | "IPaddr2", Some(args)) => {
            if let Some(vip) = ipaddr(resource, args, line, d) {
                if let Some(dup) = vips.iter().find(|v| v.address == vip.address) {
                    d.error(
                        File::HaResources,
                        Some(line),
                        format!(
                            "{resource}: found {} again, expected each address once (first: {})",
                            vip.address, dup.text
                        ),
                    );
                } else {
                    vips.push(vip);
                }
            }
        }
        _ if name.to_ascii_lowercase().contains("nova") => d.note(
            File::HaResources,
            Some(line),
            format!(
                "resource script {resource:?} is replaced by nova-network-ha's takeover and \
                 release steps (stop dnsmasq/radvd, delete nova's bridges, VLANs and chains, \
                 add the VIPs, announce them) and failover.nova_network_command, which starts \
                 nova-network with --flagfile and the shared --host"
            ),
        ),
        _ => d.warn(
            File::HaResources,
            Some(line),
            format!(
                "resource {resource:?} is not carried over: nova-network-ha manages the VIPs \
                 and nova-network only"
            ),
        ),
    }
}

/// `ip[/bits[/interface[/broadcast]]]`, as heartbeat's IPaddr takes it.
fn ipaddr(resource: &str, args: &str, line: usize, d: &mut Diag) -> Option<Vip> {
    let parts: Vec<&str> = args.split('/').collect();
    let expected = "ip/bits/interface, e.g. 10.2.3.120/32/eth1";
    let Some(address) = parts.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
        d.error(
            File::HaResources,
            Some(line),
            format!(
                "{resource}: found address {:?}, expected an IPv4 address in {expected}",
                parts.first().unwrap_or(&"")
            ),
        );
        return None;
    };
    let prefix = match parts.get(1) {
        None | Some(&"") => None,
        Some(p) => {
            match prefix(p) {
                Some(bits) => Some(bits),
                None => {
                    d.error(
                    File::HaResources,
                    Some(line),
                    format!("{resource}: found netmask {p:?}, expected 0..=32 bits or a dotted netmask"),
                );
                    return None;
                }
            }
        }
    };
    let Some(iface) = parts.get(2).filter(|i| !i.is_empty()) else {
        d.error(
            File::HaResources,
            Some(line),
            format!(
                "{resource}: found no interface, expected {expected}: heartbeat's IPaddr looked \
                 the interface up in the routing table at run time, nova-network-ha needs it written"
            ),
        );
        return None;
    };
    let prefix = match prefix {
        Some(p) => p,
        None => {
            d.note(
                File::HaResources,
                Some(line),
                format!("{resource}: no netmask given; written as /32"),
            );
            32
        }
    };
    // `eth1:0` is an alias label of eth1; addresses are added to the device itself.
    let interface = match iface.split_once(':') {
        Some((dev, label)) => {
            d.note(
                File::HaResources,
                Some(line),
                format!("{resource}: alias label {label:?} dropped; the address goes on {dev}"),
            );
            dev
        }
        None => iface,
    };
    if let Some(bcast) = parts.get(3) {
        d.note(
            File::HaResources,
            Some(line),
            format!("{resource}: broadcast {bcast:?} dropped; the kernel derives it"),
        );
    }
    Some(Vip {
        address,
        prefix,
        interface: interface.to_string(),
        line,
        text: resource.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        assert_eq!(prefix("32"), Some(32));
        assert_eq!(prefix("255.255.255.0"), Some(24));
        assert_eq!(prefix("255.255.255.255"), Some(32));
        assert_eq!(prefix("0.0.0.0"), Some(0));
        assert_eq!(prefix("255.0.255.0"), None);
        assert_eq!(prefix("33"), None);
    }

    #[test]
    fn continuation_lines_join() {
        let l = logical_lines("a b \\\n  c # x\nd\n");
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].0, 1);
        assert_eq!(
            l[0].1.split_whitespace().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(l[1].0, 3);
    }
}
