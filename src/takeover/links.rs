//! nova's leftover bridges and VLAN interfaces, through rtnetlink: what `ip link show` and
//! `ip link del` do in nova's `clean-vlans` tool.
//!
//! Owns the links whose name matches a configured pattern. Never deletes `lo`, nor an
//! interface it is told to protect (the public interface, the VIPs' and the heartbeat paths'),
//! whatever the patterns say.

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

    /// `ip link del NAME` for every link whose name matches one of `patterns`, except `lo`
    /// and the `protected` names. VLANs go before bridges (a VLAN may be a bridge port); a
    /// link that vanished meanwhile (`ENODEV`) is not an error. Returns the names deleted.
    pub async fn delete_matching(
        &self,
        patterns: &[glob::Pattern],
        protected: &[String],
    ) -> Result<Vec<String>, Error> {
        let mut doomed: Vec<Link> = self
            .list()
            .await?
            .into_iter()
            .filter(|l| deletable(&l.name, patterns, protected))
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
}
