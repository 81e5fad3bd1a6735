//! What the mirror carries: nova's network state on the active node, as one value that is
//! applied whole or not at all. Pure: the capture and the apply live in [`super::capture`]
//! and [`super::apply`].

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// nova's network state on the active node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// nova's IPv4 chains and the jumps to them, as `iptables-restore --noflush` input
    /// ([`crate::takeover::firewall::nova_part`]); empty when there are none.
    pub iptables_v4: String,
    /// The same for IPv6 (`ip6tables-restore`).
    pub iptables_v6: String,
    /// nova-network's ebtables rules (nat PREROUTING specs,
    /// [`crate::takeover::firewall::ebtables::nova_rules`]); absent from older senders.
    #[serde(default)]
    pub ebtables: Vec<String>,
    /// The interface nova binds floating IPs on.
    pub public_interface: String,
    /// nova's floating IPs on the public interface ([`crate::takeover::floating`]).
    pub floating: Vec<IpNet>,
    /// nova's bridges ([`crate::takeover::links::NovaLinks`]), with their addresses and ports.
    pub bridges: Vec<Bridge>,
    /// dnsmasq's host and lease files under networks_path.
    pub files: Vec<MirroredFile>,
}

/// One of nova's bridges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridge {
    /// Its name (`br100`).
    pub name: String,
    /// Its addresses (the network's gateway).
    pub addresses: Vec<IpNet>,
    /// Its link-local IPv6 addresses when nova's radvd advertises it as the VMs' router
    /// (`nova-ra-BRIDGE.conf`): the VMs' IPv6 default route points at them, so the new active
    /// takes them over as VRRPv3 does with its virtual link-local address. Absent from older
    /// senders.
    #[serde(default)]
    pub link_local: Vec<IpNet>,
    /// Its ports (the flat interface), by name.
    pub ports: Vec<String>,
}

/// A file of networks_path, by name (no directories).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirroredFile {
    /// File name inside networks_path.
    pub name: String,
    /// Its text.
    pub content: String,
}

impl Snapshot {
    /// Every address the snapshot puts on this node, by interface: floating IPs on the public
    /// interface, gateways on their bridges. What is announced after the apply.
    pub fn addresses(&self) -> Vec<(String, Vec<IpAddr>)> {
        let mut out = Vec::new();
        if !self.floating.is_empty() {
            out.push((
                self.public_interface.clone(),
                self.floating.iter().map(IpNet::addr).collect(),
            ));
        }
        for b in &self.bridges {
            if !b.addresses.is_empty() || !b.link_local.is_empty() {
                out.push((
                    b.name.clone(),
                    b.addresses
                        .iter()
                        .chain(&b.link_local)
                        .map(IpNet::addr)
                        .collect(),
                ));
            }
        }
        out
    }

    /// A one-line summary for logs, `status` and alerts.
    pub fn summary(&self) -> String {
        let rules = |s: &str| s.lines().filter(|l| l.starts_with("-")).count();
        format!(
            "{} floating IP(s), {} bridge(s), {} iptables rule(s), {} file(s)",
            self.floating.len(),
            self.bridges.len(),
            rules(&self.iptables_v4) + rules(&self.iptables_v6) + self.ebtables.len(),
            self.files.len()
        )
    }

    /// Whether a file name may be written into networks_path: a plain name, no path.
    pub fn safe_file_name(name: &str) -> bool {
        !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('\0')
            && name.starts_with("nova-")
    }
}
