//! Reading nova's network state on the active node into a [`Snapshot`]: `iptables-save`
//! (nova's part), the floating IPs and nova's bridges through rtnetlink, and dnsmasq's files
//! under networks_path. Reads only; acts on the calling thread's network namespace.

use std::path::Path;

use super::snapshot::{Bridge, MirroredFile, Snapshot};
use crate::takeover::{Plan, addrs, firewall, floating, links};

/// The largest file of networks_path mirrored (a leases file of thousands of VMs is far less).
const MAX_FILE: u64 = 4 << 20;

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// iptables could not be read.
    #[error("iptables: {0}")]
    Firewall(#[from] firewall::Error),
    /// Links could not be listed.
    #[error("links: {0}")]
    Links(#[from] links::Error),
    /// Addresses could not be listed.
    #[error("addresses: {0}")]
    Addrs(#[from] addrs::Error),
    /// networks_path could not be read.
    #[error("{path}: {source}")]
    Files {
        /// The directory or file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Whether a networks_path file is dnsmasq state the standby needs: nova's host (`.conf`),
/// options (`.opts`) and lease (`.leases`) files, never pid files.
pub fn mirrored_file(name: &str) -> bool {
    Snapshot::safe_file_name(name)
        && [".conf", ".opts", ".leases", ".hosts"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Which parts of nova's state to read again (the rest is kept from the last snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parts {
    /// Floating IPs and bridges (rtnetlink).
    pub net: bool,
    /// nova's chains (`iptables-save`, the costly part).
    pub firewall: bool,
    /// dnsmasq's files.
    pub files: bool,
}

impl Parts {
    /// Everything.
    pub const ALL: Parts = Parts {
        net: true,
        firewall: true,
        files: true,
    };
}

/// nova's network state as it is now.
pub async fn capture(plan: &Plan) -> Result<Snapshot, CaptureError> {
    let mut snap = Snapshot::default();
    refresh(plan, &mut snap, Parts::ALL).await?;
    Ok(snap)
}

/// Read `parts` of nova's state again into `snap`, leaving the others as they are.
pub async fn refresh(plan: &Plan, snap: &mut Snapshot, parts: Parts) -> Result<(), CaptureError> {
    snap.public_interface = plan.public_interface.clone();
    if parts.firewall {
        snap.iptables_v4 = match firewall::save(firewall::Family::V4).await? {
            Some(save) => firewall::nova_part(&save, &plan.chain_prefix),
            None => String::new(),
        };
        snap.iptables_v6 = match firewall::save(firewall::Family::V6).await? {
            Some(save) => firewall::nova_part(&save, &plan.chain_prefix),
            None => String::new(),
        };
        snap.ebtables = firewall::ebtables::save()
            .await?
            .map(|save| firewall::ebtables::nova_rules(&save))
            .unwrap_or_default();
    }
    // Which addresses are floating IPs depends on nova's chains too (their DNATs): nova
    // binds the addresses at start-up before its one deferred iptables apply.
    if parts.net || parts.firewall {
        read_net(plan, snap).await?;
    }
    if parts.files {
        snap.files = read_files(&plan.networks_path)?;
    }
    Ok(())
}

/// The floating IPs (those nova's chains in `snap` DNAT, or inside floating_range) and
/// nova's bridges.
async fn read_net(plan: &Plan, snap: &mut Snapshot) -> Result<(), CaptureError> {
    snap.floating.clear();
    snap.bridges.clear();
    let a = addrs::Addrs::open()?;
    let dnat = firewall::dnat_destinations(&snap.iptables_v4, &plan.chain_prefix);
    snap.floating = floating::select(
        &floating::on_public(&a, plan).await?,
        &dnat,
        plan.floating_range,
        &plan.vip_addresses(),
    )
    .into_iter()
    .map(|(f, _)| f)
    .collect();
    let all = links::Links::open()?.list().await?;
    let nova = plan.nova_links();
    for l in &all {
        if l.kind.as_deref() != Some("bridge")
            || !matches!(nova.verdict(l, &all), links::Verdict::Nova(_))
        {
            continue;
        }
        let mut ports: Vec<String> = all
            .iter()
            .filter(|p| p.master == Some(l.index))
            .map(|p| p.name.clone())
            .collect();
        ports.sort();
        let (link_local, addresses): (Vec<_>, Vec<_>) = a
            .list(&l.name)
            .await?
            .into_iter()
            .partition(|x| addrs::is_link_local(x.addr()));
        // The router address radvd advertises, when nova runs radvd on this bridge.
        let advertised = plan
            .networks_path
            .join(format!("nova-ra-{}.conf", l.name))
            .exists();
        snap.bridges.push(Bridge {
            name: l.name.clone(),
            addresses,
            link_local: if advertised { link_local } else { Vec::new() },
            ports,
        });
    }
    snap.bridges.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(())
}

fn read_files(dir: &Path) -> Result<Vec<MirroredFile>, CaptureError> {
    let err = |path: &Path, source| CaptureError::Files {
        path: path.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(err(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !mirrored_file(&name) {
            continue;
        }
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_file() && m.len() <= MAX_FILE => {}
            _ => continue,
        }
        match std::fs::read_to_string(&path) {
            Ok(content) => files.push(MirroredFile { name, content }),
            // Removed meanwhile, or not text: not nova's dnsmasq state.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidData
                ) => {}
            Err(e) => return Err(err(&path, e)),
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The newest modification time among the mirrored files of `dir` and the directory itself
/// (a file created or removed changes the directory's): a cheap change check.
pub fn files_stamp(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if !mirrored_file(&entry.file_name().to_string_lossy()) {
            continue;
        }
        if let Ok(t) = entry.metadata().and_then(|m| m.modified()) {
            newest = newest.max(t);
        }
    }
    Some(newest)
}
