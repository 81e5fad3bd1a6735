//! nova's leftover bridges and VLAN interfaces, through rtnetlink: what `ip link show` and
//! `ip link del` do in nova's `clean-vlans` tool.
//!
//! A link is nova-network's to delete ([`NovaLinks`]) when a configured pattern matches its
//! name and nova marked it as its own: nova.conf's `flat_network_bridge`, a bridge nova
//! serves (its dnsmasq or radvd files under `networks_path`, `nova-BRIDGE.conf`,
//! `nova-ra-BRIDGE.conf`...), or a VLAN port of such a bridge. A pattern alone is not enough:
//! `br*` also matches a site's own `br0` or `br-mgmt`, and the server would lose them at every
//! start. Never deletes `lo`, nor an interface it is told to protect (the public interface,
//! the VIPs' and the heartbeat paths'), whatever the patterns say.

use std::collections::BTreeMap;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};

use super::netlink::{Netlink, errno};

/// Why a link operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Open(#[source] std::io::Error),
    /// `ip link show` failed.
    #[error("ip link show: {0}")]
    List(#[source] rtnetlink::Error),
    /// The kernel refused `ip link del`.
    #[error("ip link del {name}: {source}")]
    Del {
        /// The link.
        name: String,
        /// The netlink error.
        source: rtnetlink::Error,
    },
}

/// A link as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its kind (`bridge`, `vlan`, `veth`...), when the kernel reports one.
    pub kind: Option<String>,
    /// The index of the bridge (or bond) it is a port of.
    pub master: Option<u32>,
}

/// A handle on the links of this network namespace (one netlink socket).
pub struct Links {
    pub(crate) nl: Netlink,
}

impl Links {
    /// Open a netlink socket in the calling thread's network namespace (needs a tokio runtime).
    pub fn open() -> Result<Links, Error> {
        Ok(Links {
            nl: Netlink::open().map_err(Error::Open)?,
        })
    }

    /// `ip link show`: every link of the namespace.
    pub async fn list(&self) -> Result<Vec<Link>, Error> {
        let messages: Vec<LinkMessage> = self
            .nl
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(Error::List)?;
        Ok(messages.iter().filter_map(link_of).collect())
    }

    /// `ip link del NAME` for every link that is nova's ([`NovaLinks::verdict`]). VLANs go
    /// before bridges (a VLAN may be a bridge port); a link that vanished meanwhile
    /// (`ENODEV`) is not an error. Returns the names deleted.
    pub async fn delete_novas(&self, nova: &NovaLinks) -> Result<Vec<String>, Error> {
        let all = self.list().await?;
        let mut doomed: Vec<Link> = all
            .iter()
            .filter(|l| matches!(nova.verdict(l, &all), Verdict::Nova(_)))
            .cloned()
            .collect();
        doomed.sort_by_key(|l| (l.kind.as_deref() == Some("bridge"), l.index));
        let mut deleted = Vec::new();
        for link in doomed {
            match self.nl.handle.link().del(link.index).execute().await {
                Ok(()) => deleted.push(link.name),
                Err(e) if errno(&e) == Some(nix::libc::ENODEV) => {}
                Err(source) => {
                    return Err(Error::Del {
                        name: link.name,
                        source,
                    });
                }
            }
        }
        Ok(deleted)
    }
}

/// Whether `name` may be deleted: it matches a pattern, is not `lo` and is not protected.
pub fn deletable(name: &str, patterns: &[glob::Pattern], protected: &[String]) -> bool {
    name != "lo" && !protected.iter().any(|p| p == name) && patterns.iter().any(|p| p.matches(name))
}

/// What [`NovaLinks::verdict`] says of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No delete pattern matches it: not considered.
    Unmatched,
    /// A pattern matches, but it is `lo` or protected (a managed or heartbeat interface).
    Protected,
    /// A pattern matches, but nova did not mark it: left alone.
    NotNova,
    /// nova's, deleted at a release and at start-up; the evidence.
    Nova(String),
}

/// Which links are nova-network's to delete: the patterns, the protected names, and the
/// bridges nova marked as its own, each with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaLinks {
    patterns: Vec<glob::Pattern>,
    protected: Vec<String>,
    bridges: BTreeMap<String, String>,
}

impl NovaLinks {
    /// The patterns and protected names, the bridges nova.conf names (`flat_network_bridge`)
    /// and those nova serves according to its files under `networks_path`.
    pub fn new(
        patterns: &[glob::Pattern],
        protected: &[String],
        named: &[String],
        networks_path: &Path,
    ) -> NovaLinks {
        let mut bridges: BTreeMap<String, String> = named
            .iter()
            .map(|b| (b.clone(), "nova.conf's flat_network_bridge".to_owned()))
            .collect();
        if let Ok(entries) = std::fs::read_dir(networks_path) {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for file in names {
                if let Some(bridge) = served_bridge(&file) {
                    bridges
                        .entry(bridge.to_owned())
                        .or_insert_with(|| format!("{file} in {}", networks_path.display()));
                }
            }
        }
        NovaLinks {
            patterns: patterns.to_vec(),
            protected: protected.to_vec(),
            bridges,
        }
    }

    /// Also the bridges that `files` (nova's file names, from the active's mirror) serve.
    pub fn with_files<'a>(mut self, files: impl IntoIterator<Item = &'a str>) -> NovaLinks {
        for file in files {
            if let Some(bridge) = served_bridge(file) {
                self.bridges
                    .entry(bridge.to_owned())
                    .or_insert_with(|| format!("{file} from the active's mirror"));
            }
        }
        self
    }

    /// Whether a bridge named `name` is nova's (to copy from the active, or to create).
    pub fn owns_bridge(&self, name: &str) -> bool {
        deletable(name, &self.patterns, &self.protected) && self.bridges.contains_key(name)
    }

    /// What to do with `link`, given every link of the namespace (`all`, for its bridge).
    pub fn verdict(&self, link: &Link, all: &[Link]) -> Verdict {
        if !self.patterns.iter().any(|p| p.matches(&link.name)) {
            return Verdict::Unmatched;
        }
        if !deletable(&link.name, &self.patterns, &self.protected) {
            return Verdict::Protected;
        }
        if let Some(why) = self.bridges.get(&link.name) {
            return Verdict::Nova(why.clone());
        }
        let bridge = link
            .master
            .and_then(|m| all.iter().find(|b| b.index == m))
            .filter(|b| self.bridges.contains_key(&b.name));
        match (link.kind.as_deref(), bridge) {
            (Some("vlan"), Some(b)) => {
                Verdict::Nova(format!("VLAN port of nova's bridge {}", b.name))
            }
            _ => Verdict::NotNova,
        }
    }
}

/// The bridge one of nova's networks_path files is about: `nova-BRIDGE.EXT` (dnsmasq's
/// `.conf`, `.pid`, `.opts`, `.leases`, `.hosts`) or `nova-ra-BRIDGE.EXT` (radvd's `.conf`,
/// `.pid`).
fn served_bridge(file: &str) -> Option<&str> {
    let rest = file.strip_prefix("nova-")?;
    let (stem, ext) = rest.rsplit_once('.')?;
    let stem = match stem.strip_prefix("ra-") {
        Some(b) if matches!(ext, "conf" | "pid") => b,
        _ if matches!(ext, "conf" | "pid" | "opts" | "leases" | "hosts") => stem,
        _ => return None,
    };
    (!stem.is_empty()).then_some(stem)
}

fn link_of(m: &LinkMessage) -> Option<Link> {
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    let kind = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    });
    let master = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    });
    Some(Link {
        index: m.header.index,
        name,
        kind,
        master,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lo_and_protected_never_deletable() {
        let pats = vec![glob::Pattern::new("*").unwrap()];
        let protected = vec!["eth1".to_string()];
        assert!(!deletable("lo", &pats, &protected));
        assert!(!deletable("eth1", &pats, &protected));
        assert!(deletable("br100", &pats, &protected));
        let pats = vec![glob::Pattern::new("br*").unwrap()];
        assert!(!deletable("keepme0", &pats, &protected));
    }

    fn link(index: u32, name: &str, kind: &str, master: Option<u32>) -> Link {
        Link {
            index,
            name: name.into(),
            kind: Some(kind.into()),
            master,
        }
    }

    #[test]
    fn only_bridges_nova_marked_are_novas() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "nova-br101.conf",
            "nova-ra-br102.pid",
            "nova-standin-applied.json",
            "br0.conf",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let pats = vec![
            glob::Pattern::new("br*").unwrap(),
            glob::Pattern::new("vlan*").unwrap(),
        ];
        let nova = NovaLinks::new(&pats, &["eth1".into()], &["br100".into()], dir.path());
        let all = vec![
            link(1, "br100", "bridge", None),
            link(2, "br101", "bridge", None),
            link(3, "br102", "bridge", None),
            link(4, "br0", "bridge", None),
            link(5, "vlan100", "vlan", Some(1)),
            link(6, "vlan7", "vlan", Some(4)),
            link(7, "virbr0", "bridge", None),
            link(8, "eth1", "veth", None),
        ];
        let verdicts: Vec<Verdict> = all.iter().map(|l| nova.verdict(l, &all)).collect();
        assert_eq!(
            verdicts[0],
            Verdict::Nova("nova.conf's flat_network_bridge".into())
        );
        assert!(matches!(&verdicts[1], Verdict::Nova(w) if w.starts_with("nova-br101.conf in ")));
        assert!(matches!(&verdicts[2], Verdict::Nova(w) if w.starts_with("nova-ra-br102.pid")));
        assert_eq!(verdicts[3], Verdict::NotNova, "a site's br0 is not nova's");
        assert_eq!(
            verdicts[4],
            Verdict::Nova("VLAN port of nova's bridge br100".into())
        );
        assert_eq!(verdicts[5], Verdict::NotNova);
        assert_eq!(verdicts[6], Verdict::Unmatched, "libvirt's virbr0");
        assert_eq!(verdicts[7], Verdict::Unmatched);
        assert!(nova.owns_bridge("br101") && !nova.owns_bridge("br0"));
        let mirrored = nova.with_files(["nova-br0.conf"]);
        assert!(mirrored.owns_bridge("br0"));
    }
}
