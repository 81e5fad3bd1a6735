//! Addresses on interfaces, through rtnetlink: what `ip addr add`, `ip addr del` and
//! `ip -o addr show dev IFACE` do, idempotently (an address already there, or already gone, is
//! not an error).
//!
//! Owns the VIPs and, on release, nova's floating IPs. Never touches links, routes or an
//! address it was not asked about.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::AddressMessageBuilder;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};

use super::netlink::{Netlink, errno};

/// Why an address operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Open(#[source] std::io::Error),
    /// The interface to add an address to does not exist.
    #[error("interface {iface:?} not found")]
    NoInterface {
        /// The interface name.
        iface: String,
    },
    /// The kernel refused `ip addr add`.
    #[error("ip addr add {addr} dev {iface}: {source}")]
    Add {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpNet,
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// The kernel refused `ip addr del`.
    #[error("ip addr del {addr} dev {iface}: {source}")]
    Del {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpNet,
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// Listing addresses (or looking up the interface) failed.
    #[error("ip addr show dev {iface}: {source}")]
    List {
        /// The interface.
        iface: String,
        /// The netlink error.
        source: rtnetlink::Error,
    },
}

/// Whether a call changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The address was added or deleted.
    Done,
    /// It was already there (add) or already absent (del).
    Already,
}

/// A handle on the addresses of this network namespace (one netlink socket).
pub struct Addrs {
    nl: Netlink,
}

impl Addrs {
    /// Open a netlink socket in the calling thread's network namespace (needs a tokio runtime).
    pub fn open() -> Result<Addrs, Error> {
        Ok(Addrs {
            nl: Netlink::open().map_err(Error::Open)?,
        })
    }

    async fn index(&self, iface: &str) -> Result<Option<u32>, Error> {
        self.nl.index(iface).await.map_err(|source| Error::List {
            iface: iface.to_owned(),
            source,
        })
    }

    /// `ip addr add ADDR dev IFACE` (IPv6 with `nodad`, so it can be announced at once);
    /// [`Change::Already`] when the address is there already (`EEXIST`).
    pub async fn add(&self, iface: &str, addr: IpNet) -> Result<Change, Error> {
        let index = self.index(iface).await?.ok_or_else(|| Error::NoInterface {
            iface: iface.to_owned(),
        })?;
        let mut req = self
            .nl
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(Change::Done),
            Err(e) if errno(&e) == Some(nix::libc::EEXIST) => Ok(Change::Already),
            Err(source) => Err(Error::Add {
                iface: iface.to_owned(),
                addr,
                source,
            }),
        }
    }

    /// `ip addr del ADDR dev IFACE`; [`Change::Already`] when the address or the interface is
    /// gone already (`EADDRNOTAVAIL`, `ENODEV`).
    pub async fn del(&self, iface: &str, addr: IpNet) -> Result<Change, Error> {
        let Some(index) = self.index(iface).await? else {
            return Ok(Change::Already);
        };
        let message = match addr.addr() {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, addr.prefix_len())
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, addr.prefix_len())
                .build(),
        };
        self.del_message(iface, addr, message).await
    }

    async fn del_message(
        &self,
        iface: &str,
        addr: IpNet,
        message: AddressMessage,
    ) -> Result<Change, Error> {
        match self.nl.handle.address().del(message).execute().await {
            Ok(()) => Ok(Change::Done),
            Err(e)
                if matches!(
                    errno(&e),
                    Some(nix::libc::EADDRNOTAVAIL | nix::libc::ENODEV)
                ) =>
            {
                Ok(Change::Already)
            }
            Err(source) => Err(Error::Del {
                iface: iface.to_owned(),
                addr,
                source,
            }),
        }
    }

    /// `ip addr show dev IFACE`: its addresses with their prefix lengths; empty when the
    /// interface does not exist.
    pub async fn list(&self, iface: &str) -> Result<Vec<IpNet>, Error> {
        Ok(self
            .messages(iface)
            .await?
            .iter()
            .filter_map(address_of)
            .collect())
    }

    /// The addresses of `iface` inside `range` whose prefix is a single host (`/32`, `/128`):
    /// how nova binds floating IPs (`ip addr add X/32 dev public_interface`), so the server's
    /// own subnet address is never taken for one.
    pub async fn list_in(&self, iface: &str, range: IpNet) -> Result<Vec<IpNet>, Error> {
        Ok(self
            .list(iface)
            .await?
            .into_iter()
            .filter(|a| a.prefix_len() == a.max_prefix_len() && range.contains(&a.addr()))
            .collect())
    }

    /// Delete every address of `iface` inside `range` with a host prefix (see
    /// [`Addrs::list_in`]); returns those deleted.
    pub async fn del_in(&self, iface: &str, range: IpNet) -> Result<Vec<IpNet>, Error> {
        let mut deleted = Vec::new();
        for message in self.messages(iface).await? {
            let Some(a) = address_of(&message) else {
                continue;
            };
            if a.prefix_len() == a.max_prefix_len()
                && range.contains(&a.addr())
                && self.del_message(iface, a, message).await? == Change::Done
            {
                deleted.push(a);
            }
        }
        Ok(deleted)
    }

    async fn messages(&self, iface: &str) -> Result<Vec<AddressMessage>, Error> {
        let list_err = |source| Error::List {
            iface: iface.to_owned(),
            source,
        };
        let Some(index) = self.nl.index(iface).await.map_err(list_err)? else {
            return Ok(Vec::new());
        };
        self.nl
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(list_err)
    }
}

/// The address (IFA_LOCAL, else IFA_ADDRESS) and prefix of a netlink address message.
pub(crate) fn address_of(m: &AddressMessage) -> Option<IpNet> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    IpNet::new(local.or(address)?, m.header.prefix_len).ok()
}

/// An IPv6 link-local address (fe80::/10): each interface makes its own from its MAC; never
/// a service address to move.
pub fn is_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local())
}
