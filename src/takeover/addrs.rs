//! Addresses on interfaces, through rtnetlink: what `ip addr add`, `ip addr del` and
//! `ip -o addr show dev IFACE` do, idempotently (an address already there, or already gone, is
//! not an error).
//!
//! Owns the VIPs and, on release, nova's floating IPs. Never touches links, routes or an
//! address it was not asked about.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{AddressMessageBuilder, RouteMessageBuilder};

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

    /// The index of `iface`, which must exist (an address or route is to go on it).
    async fn existing_index(&self, iface: &str) -> Result<u32, Error> {
        self.index(iface).await?.ok_or_else(|| Error::NoInterface {
            iface: iface.to_owned(),
        })
    }

    /// `ip addr add ADDR dev IFACE` (IPv6 with `nodad`, so it can be announced at once);
    /// [`Change::Already`] when the address is there already (`EEXIST`).
    pub async fn add(&self, iface: &str, addr: IpNet) -> Result<Change, Error> {
        let index = self.existing_index(iface).await?;
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

    /// [`Addrs::add`] for every address of `list` on `iface`, the interface looked up once
    /// and up to 64 requests in flight (10,000 floating IPs one round trip after another took
    /// seconds); each address with what happened, in `list`'s order. The first failure is
    /// returned once every request has ended.
    pub async fn add_all(
        &self,
        iface: &str,
        list: &[IpNet],
    ) -> Result<Vec<(IpNet, Change)>, Error> {
        if list.is_empty() {
            return Ok(Vec::new());
        }
        let index = self.existing_index(iface).await?;
        let mut pending = Vec::with_capacity(list.len());
        for addr in list.iter().copied() {
            let mut req = self
                .nl
                .handle
                .address()
                .add(index, addr.addr(), addr.prefix_len());
            if addr.addr().is_ipv6() {
                req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
            }
            pending.push(async move { (addr, req.execute().await) });
        }
        added(iface, pending).await
    }

    /// Make every IPv4 host address of `list` local on `iface` with a route of ours
    /// (`ip route add local ADDR/32 dev IFACE table local proto 77`), the way the warm
    /// standby binds floating IPs before nova-network starts: the kernel then answers ARP for
    /// them and takes their packets (nova's DNAT does the rest) as for an address, but adding
    /// 10,000 routes takes tens of milliseconds where 10,000 addresses take seconds (each
    /// address insert walks the interface's address list). nova-network binds the addresses
    /// itself later; [`Addrs::del_local_routes`] removes ours. Other entries of `list` are
    /// skipped. Each address with what happened.
    pub async fn add_local_routes(
        &self,
        iface: &str,
        list: &[IpNet],
    ) -> Result<Vec<(IpNet, Change)>, Error> {
        let hosts: Vec<(IpNet, Ipv4Addr)> = list
            .iter()
            .filter_map(|n| match n.addr() {
                IpAddr::V4(a) if n.prefix_len() == 32 => Some((*n, a)),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let index = self.existing_index(iface).await?;
        let mut pending = Vec::with_capacity(hosts.len());
        for (net, a) in hosts {
            let req = self.nl.handle.route().add(local_route(index, a));
            pending.push(async move { (net, req.execute().await) });
        }
        added(iface, pending).await
    }

    /// The addresses our local routes ([`Addrs::add_local_routes`]) make local on `iface`.
    pub async fn local_routes(&self, iface: &str) -> Result<Vec<IpNet>, Error> {
        let list_err = |source| Error::List {
            iface: iface.to_owned(),
            source,
        };
        let Some(index) = self.index(iface).await? else {
            return Ok(Vec::new());
        };
        let all: Vec<RouteMessage> = self
            .nl
            .handle
            .route()
            .get(
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .table_id(LOCAL_TABLE)
                    .build(),
            )
            .execute()
            .try_collect()
            .await
            .map_err(list_err)?;
        Ok(all
            .iter()
            .filter(|m| {
                m.header.protocol == RouteProtocol::Other(LOCAL_ROUTE_PROTOCOL)
                    && m.header.kind == RouteType::Local
                    && m.header.destination_prefix_length == 32
                    && m.attributes.contains(&RouteAttribute::Oif(index))
            })
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                        IpNet::new(IpAddr::V4(*ip), 32).ok()
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Remove every local route of ours on `iface`; the addresses they made local.
    pub async fn del_local_routes(&self, iface: &str) -> Result<Vec<IpNet>, Error> {
        let ours = self.local_routes(iface).await?;
        let Some(index) = self.index(iface).await? else {
            return Ok(Vec::new());
        };
        let mut pending = Vec::with_capacity(ours.len());
        for net in ours {
            let IpAddr::V4(a) = net.addr() else { continue };
            let req = self.nl.handle.route().del(local_route(index, a));
            pending.push(async move { (net, req.execute().await) });
        }
        let results: Vec<(IpNet, Result<(), rtnetlink::Error>)> =
            futures::stream::iter(pending).buffered(64).collect().await;
        let mut deleted = Vec::new();
        for (addr, result) in results {
            match result {
                Ok(()) => deleted.push(addr),
                Err(e) if errno(&e) == Some(nix::libc::ESRCH) => {}
                Err(source) => {
                    return Err(Error::Del {
                        iface: iface.to_owned(),
                        addr,
                        source,
                    });
                }
            }
        }
        Ok(deleted)
    }

    /// `ip addr del ADDR dev IFACE`; [`Change::Already`] when the address or the interface is
    /// gone already (`EADDRNOTAVAIL`, `ENODEV`).
    pub async fn del(&self, iface: &str, addr: IpNet) -> Result<Change, Error> {
        let Some(index) = self.index(iface).await? else {
            return Ok(Change::Already);
        };
        self.del_message(iface, addr, address_message(index, addr))
            .await
    }

    /// [`Addrs::del`] for every address of `list` on `iface`, the interface looked up once
    /// and up to 64 requests in flight (a release of thousands of floating IPs); those
    /// deleted, in `list`'s order. The first failure is returned once every request ended.
    pub async fn del_all(&self, iface: &str, list: &[IpNet]) -> Result<Vec<IpNet>, Error> {
        let Some(index) = self.index(iface).await? else {
            return Ok(Vec::new());
        };
        let mut pending = Vec::with_capacity(list.len());
        for addr in list.iter().copied() {
            pending.push(self.del_message(iface, addr, address_message(index, addr)));
        }
        let results: Vec<Result<Change, Error>> =
            futures::stream::iter(pending).buffered(64).collect().await;
        let mut deleted = Vec::new();
        for (addr, result) in list.iter().zip(results) {
            if result? == Change::Done {
                deleted.push(*addr);
            }
        }
        Ok(deleted)
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

/// The message naming `addr` on the link `index` (for `ip addr del`).
fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    match addr.addr() {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(a, addr.prefix_len())
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(a, addr.prefix_len())
            .build(),
    }
}

/// Runs `pending` (each an address and its netlink add request) 64 at a time: each address
/// with what happened (`EEXIST`: [`Change::Already`]), in order, or the first failure.
async fn added<F>(iface: &str, pending: Vec<F>) -> Result<Vec<(IpNet, Change)>, Error>
where
    F: std::future::Future<Output = (IpNet, Result<(), rtnetlink::Error>)>,
{
    let results: Vec<(IpNet, Result<(), rtnetlink::Error>)> =
        futures::stream::iter(pending).buffered(64).collect().await;
    results
        .into_iter()
        .map(|(addr, result)| match result {
            Ok(()) => Ok((addr, Change::Done)),
            Err(e) if errno(&e) == Some(nix::libc::EEXIST) => Ok((addr, Change::Already)),
            Err(source) => Err(Error::Add {
                iface: iface.to_owned(),
                addr,
                source,
            }),
        })
        .collect()
}

/// The routing protocol number of our local routes ([`Addrs::add_local_routes`]): unused by
/// the kernel and the routing daemons iproute2 knows, so they are ours alone to remove.
pub const LOCAL_ROUTE_PROTOCOL: u8 = 77;

/// The kernel's `local` routing table.
const LOCAL_TABLE: u32 = 255;

/// `local ADDR/32 dev INDEX table local scope host proto 77`.
fn local_route(index: u32, a: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(a, 32)
        .output_interface(index)
        .table_id(LOCAL_TABLE)
        .kind(RouteType::Local)
        .scope(RouteScope::Host)
        .protocol(RouteProtocol::Other(LOCAL_ROUTE_PROTOCOL))
        .build()
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
