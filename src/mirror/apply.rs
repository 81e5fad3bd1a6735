//! Putting a [`Snapshot`] in place at takeover, before nova-network starts: bridges with their
//! ports and gateways, nova's chains in one `iptables-restore --noflush` per family, floating
//! IPs, one announcement burst, dnsmasq's files. On failure the caller rolls back with
//! [`rollback`] (the same pattern-scoped clean-up steps as a release, so only what the
//! configuration names is touched). [`reconcile`] later removes floating IPs nova did not keep.

use std::net::IpAddr;
use std::path::Path;
use tokio::time::Instant;

use ipnet::IpNet;
use rtnetlink::{LinkBridge, LinkUnspec};

use super::snapshot::Snapshot;
use crate::takeover::netlink::{Netlink, errno};
use crate::takeover::steps::{self, Step};
use crate::takeover::{Plan, StepError, StepFailure, addrs, announce, firewall};

/// Why the snapshot could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A netlink socket could not be opened.
    #[error("netlink: {0}")]
    Open(std::io::Error),
    /// A bridge could not be made or set up.
    #[error("bridge {name}: {source}")]
    Bridge {
        /// The bridge or port.
        name: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// An address could not be added.
    #[error(transparent)]
    Addrs(#[from] addrs::Error),
    /// iptables-restore refused the chains.
    #[error(transparent)]
    Firewall(#[from] firewall::Error),
    /// The announcement failed.
    #[error(transparent)]
    Announce(#[from] announce::Error),
    /// A file name that is not a plain `nova-*` name inside networks_path.
    #[error("refusing file name {0:?}")]
    FileName(String),
    /// A dnsmasq file could not be written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Floating IPs it added (not those already present).
    pub floating: Vec<IpNet>,
    /// Bridges it created.
    pub bridges: Vec<String>,
    /// Ports that the snapshot names but this node lacks (not attached).
    pub missing_ports: Vec<String>,
    /// Frames of the announcement burst.
    pub frames: usize,
    /// Files written into networks_path.
    pub files: Vec<String>,
    /// How long each part took (`bridges`, `chains`, `floating`, `announce`, `ebtables`,
    /// `files`).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

impl Applied {
    /// One line for the step report.
    pub fn detail(&self, snap: &Snapshot) -> String {
        let mut s = format!(
            "mirror applied ({}): {} floating IP(s) added, bridges created [{}], {} frames, {} file(s)",
            snap.summary(),
            self.floating.len(),
            self.bridges.join(" "),
            self.frames,
            self.files.len()
        );
        if !self.missing_ports.is_empty() {
            s.push_str(&format!(
                "; ports not on this node: {}",
                self.missing_ports.join(" ")
            ));
        }
        if !self.timings.is_empty() {
            let parts: Vec<String> = self
                .timings
                .iter()
                .map(|(part, d)| format!("{part} {} ms", d.as_millis()))
                .collect();
            s.push_str(&format!("; {}", parts.join(", ")));
        }
        s
    }
}

/// Apply `snap` on this node. Stops at the first failure, leaving what was done for
/// [`rollback`]; `done` gets what was applied so far either way.
pub async fn apply(plan: &Plan, snap: &Snapshot, done: &mut Applied) -> Result<(), ApplyError> {
    let nl = Netlink::open().map_err(ApplyError::Open)?;
    let a = addrs::Addrs::open()?;
    // Only what a release here would delete again may be created: a bridge the patterns
    // match and nova marked, here or in the files the snapshot brings.
    let nova = plan
        .nova_links()
        .with_files(snap.files.iter().map(|f| f.name.as_str()));
    let mut phase = Instant::now();
    let mut lap = |done: &mut Applied, part: &'static str| {
        done.timings.push((part, phase.elapsed()));
        phase = Instant::now();
    };
    for b in &snap.bridges {
        if !nova.owns_bridge(&b.name) {
            continue;
        }
        let bridge_err = |name: &str, source| ApplyError::Bridge {
            name: name.to_owned(),
            source,
        };
        if nl
            .index(&b.name)
            .await
            .map_err(|e| bridge_err(&b.name, e))?
            .is_none()
        {
            match nl
                .handle
                .link()
                .add(LinkBridge::new(&b.name).build())
                .execute()
                .await
            {
                Ok(()) => done.bridges.push(b.name.clone()),
                Err(e) if errno(&e) == Some(nix::libc::EEXIST) => {}
                Err(e) => return Err(bridge_err(&b.name, e)),
            }
        }
        let Some(br) = nl
            .index(&b.name)
            .await
            .map_err(|e| bridge_err(&b.name, e))?
        else {
            continue;
        };
        nl.handle
            .link()
            .set(LinkUnspec::new_with_index(br).up().build())
            .execute()
            .await
            .map_err(|e| bridge_err(&b.name, e))?;
        for port in &b.ports {
            match nl.index(port).await.map_err(|e| bridge_err(port, e))? {
                Some(p) => nl
                    .handle
                    .link()
                    .set(LinkUnspec::new_with_index(p).controller(br).up().build())
                    .execute()
                    .await
                    .map_err(|e| bridge_err(port, e))?,
                None => done.missing_ports.push(port.clone()),
            }
        }
        // The old router's link-local address too (without duplicate address detection, as
        // every IPv6 address added here): the VMs' default route stays valid.
        for addr in b.addresses.iter().chain(&b.link_local) {
            a.add(&b.name, *addr).await?;
        }
    }
    lap(done, "bridges");
    // nova's chains before the floating IPs: a packet for a floating IP that is already
    // local but not yet DNATed would be answered here and its conntrack entry (no NAT) would
    // keep that flow from ever reaching the VM.
    for (family, script) in [
        (firewall::Family::V4, &snap.iptables_v4),
        (firewall::Family::V6, &snap.iptables_v6),
    ] {
        if !script.is_empty() {
            firewall::restore_part(family, script, &plan.chain_prefix).await?;
        }
    }
    lap(done, "chains");
    // IPv4 floating IPs as local routes of ours (nova-network binds the addresses itself
    // later, and the reconcile removes the routes); anything else as addresses.
    let (routed, other): (Vec<IpNet>, Vec<IpNet>) = snap
        .floating
        .iter()
        .partition(|f| f.addr().is_ipv4() && f.prefix_len() == 32);
    let mut added = a.add_local_routes(&snap.public_interface, &routed).await?;
    added.extend(a.add_all(&snap.public_interface, &other).await?);
    for (f, change) in added {
        if change == addrs::Change::Done {
            done.floating.push(f);
        }
    }
    lap(done, "floating");
    for (iface, list) in snap.addresses() {
        done.frames += announce::announce(&iface, &list, &plan.announce).await?;
    }
    lap(done, "announce");
    // nova's ebtables rules route a VM's outbound traffic here rather than bridge it; the
    // gateway's MAC does that already, so they come after the VMs can be reached.
    firewall::ebtables::restore(&snap.ebtables).await?;
    lap(done, "ebtables");
    write_files(&plan.networks_path, snap, done)?;
    lap(done, "files");
    Ok(())
}

fn write_files(dir: &Path, snap: &Snapshot, done: &mut Applied) -> Result<(), ApplyError> {
    if snap.files.is_empty() {
        return Ok(());
    }
    let err = |path: &Path, source| ApplyError::File {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    for f in &snap.files {
        if !Snapshot::safe_file_name(&f.name) {
            return Err(ApplyError::FileName(f.name.clone()));
        }
        let path = dir.join(&f.name);
        let tmp = dir.join(format!(".{}.mirror-tmp", f.name));
        std::fs::write(&tmp, &f.content).map_err(|e| err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
        done.files.push(f.name.clone());
    }
    Ok(())
}

/// Undo a partial or failed [`apply`]: nova's links, chains and floating IPs go (the
/// release's pattern-scoped steps, run as they are listed), and the files it wrote. The VIPs
/// stay.
pub async fn rollback(plan: &Plan, done: &Applied) -> Result<String, StepError> {
    let mut parts = Vec::new();
    // The floating IPs first, while the applied chains still say which they are.
    for step in [Step::Floating, Step::Links, Step::Firewall, Step::Ebtables] {
        if let Some(report) = steps::run(step, plan).await {
            let report = report?;
            parts.push(format!("{} {}", report.step, report.detail));
        }
    }
    for name in &done.files {
        let _ = std::fs::remove_file(plan.networks_path.join(name));
    }
    Ok(format!(
        "rolled back: {}; {} file(s) removed",
        parts.join("; "),
        done.files.len()
    ))
}

/// Once nova-network has started (it consumes its queue, so its start-up is done, every
/// floating IP it keeps bound as an address): remove the mirror's local routes, and with them
/// the floating IPs nova did not bind (disassociated after the snapshot was taken). Returns
/// those. `added` is what the apply added (nothing to do when empty).
pub async fn reconcile(plan: &Plan, added: &[IpNet]) -> Result<Vec<IpNet>, StepFailure> {
    if added.is_empty() {
        return Ok(Vec::new());
    }
    let a = addrs::Addrs::open()?;
    let routed = a.del_local_routes(&plan.public_interface).await?;
    let bound: Vec<IpAddr> = a
        .list(&plan.public_interface)
        .await?
        .iter()
        .map(IpNet::addr)
        .collect();
    let mut removed: Vec<IpNet> = routed
        .into_iter()
        .filter(|f| !bound.contains(&f.addr()))
        .collect();
    // An address the apply added itself (not IPv4): gone when nova's chains do not DNAT it.
    let kept = crate::takeover::floating::dnat_now(plan).await?;
    for f in added.iter().filter(|f| f.addr().is_ipv6()) {
        if !kept.contains(&f.addr())
            && a.del(&plan.public_interface, *f).await? == addrs::Change::Done
        {
            removed.push(*f);
        }
    }
    removed.sort();
    Ok(removed)
}
