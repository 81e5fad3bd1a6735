//! Telling the segment where moved addresses now live: gratuitous ARP for IPv4 (what the seed
//! did by hand with `arping -b -c 1 -s IP -I IFACE ROUTER`, and keepalived's `vrrp_arp.c`) and
//! unsolicited Neighbour Advertisement for IPv6 (keepalived's `vrrp_ndisc.c`), sent with an
//! AF_PACKET socket (pnet datalink) on the interface.
//!
//! Two paths: [`announce`] sends an immediate burst now and spawns the repeat burst;
//! [`Watcher`] announces every address that appears (RTM_NEWADDR) on a managed interface while
//! it lives, so floating IPs and bridge gateways nova binds after it starts are announced the
//! moment the kernel has them. Owns frames only; never adds, removes or changes an address.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{FutureExt, Stream, StreamExt};
use pnet::datalink::{self, Channel, MacAddr};
use pnet::packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, MutableArpPacket};
use pnet::packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet::packet::icmpv6::{self, Icmpv6Packet};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use rtnetlink::sys::SocketAddr;
use rtnetlink::{MulticastGroup, new_multicast_connection};
use tokio::task::JoinHandle;

use super::AnnounceSettings;
use super::addrs::address_of;

/// Length of a gratuitous ARP frame (Ethernet header + ARP for IPv4 over Ethernet).
pub const GARP_LEN: usize = 14 + 28;
/// Length of an unsolicited NA frame (Ethernet + IPv6 header + NA with target link-layer option).
pub const NA_LEN: usize = 14 + 40 + 32;

/// Why an announcement could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such interface in this namespace.
    #[error("interface {iface:?} not found")]
    NoInterface {
        /// The interface name.
        iface: String,
    },
    /// The interface has no MAC address (not Ethernet).
    #[error("interface {iface:?} has no MAC address")]
    NoMac {
        /// The interface name.
        iface: String,
    },
    /// The packet socket could not be opened or written.
    #[error("packet socket on {iface}: {source}")]
    Socket {
        /// The interface name.
        iface: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The netlink socket for the watcher could not be opened.
    #[error("cannot open a netlink socket for address events: {0}")]
    Netlink(#[source] std::io::Error),
    /// The blocking send task died.
    #[error("announce task for {iface} failed: {source}")]
    Join {
        /// The interface name.
        iface: String,
        /// The join error.
        source: tokio::task::JoinError,
    },
}

/// A gratuitous ARP frame for `ip` from `mac`, broadcast: sender and target IP are both `ip`;
/// `op` is [`ArpOperations::Request`] (target MAC zero) or [`ArpOperations::Reply`] (target MAC
/// broadcast, as arping's `-b -U/-A` sends).
pub fn garp_frame(mac: MacAddr, ip: Ipv4Addr, op: ArpOperation) -> [u8; GARP_LEN] {
    let mut buf = [0u8; GARP_LEN];
    let (eth, arp) = buf.split_at_mut(14);
    if let Some(mut e) = MutableEthernetPacket::new(eth) {
        e.set_destination(MacAddr::broadcast());
        e.set_source(mac);
        e.set_ethertype(EtherTypes::Arp);
    }
    if let Some(mut a) = MutableArpPacket::new(arp) {
        a.set_hardware_type(ArpHardwareTypes::Ethernet);
        a.set_protocol_type(EtherTypes::Ipv4);
        a.set_hw_addr_len(6);
        a.set_proto_addr_len(4);
        a.set_operation(op);
        a.set_sender_hw_addr(mac);
        a.set_sender_proto_addr(ip);
        a.set_target_hw_addr(if op == ArpOperations::Reply {
            MacAddr::broadcast()
        } else {
            MacAddr::zero()
        });
        a.set_target_proto_addr(ip);
    }
    buf
}

/// An unsolicited Neighbour Advertisement for `ip` from `mac` (RFC 4861 7.2.6): from `ip` to
/// all-nodes `ff02::1` (MAC 33:33:00:00:00:01), hop limit 255, Override flag set, Router flag
/// when `router` (an NA without it makes hosts drop us from their default router list), the
/// target link-layer address option carrying `mac`, ICMPv6 checksum over the pseudo-header.
pub fn na_frame(mac: MacAddr, ip: Ipv6Addr, router: bool) -> [u8; NA_LEN] {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut buf = [0u8; NA_LEN];
    let m = mac.octets();
    // Ethernet.
    buf[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    buf[6..12].copy_from_slice(&m);
    buf[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    // IPv6 header: version 6, payload 32, next header ICMPv6 (58), hop limit 255.
    buf[14] = 0x60;
    buf[18..20].copy_from_slice(&32u16.to_be_bytes());
    buf[20] = 58;
    buf[21] = 255;
    buf[22..38].copy_from_slice(&ip.octets());
    buf[38..54].copy_from_slice(&all_nodes.octets());
    // ICMPv6 NA: type 136, code 0, checksum, flags (Override), target, option 2 (len 1) MAC.
    let icmp = &mut buf[54..];
    icmp[0] = 136;
    icmp[4] = if router { 0xa0 } else { 0x20 };
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = 2;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&m);
    let sum = Icmpv6Packet::new(icmp).map_or(0, |p| icmpv6::checksum(&p, &ip, &all_nodes));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    buf
}

/// Frames of one round for `addrs`: a GARP request and a GARP reply per IPv4 address, an NA
/// per IPv6 address.
fn round(mac: MacAddr, addrs: &[IpAddr], router: bool) -> Vec<Vec<u8>> {
    let mut frames = Vec::with_capacity(addrs.len() * 2);
    for a in addrs {
        match a {
            IpAddr::V4(v4) => {
                frames.push(garp_frame(mac, *v4, ArpOperations::Request).to_vec());
                frames.push(garp_frame(mac, *v4, ArpOperations::Reply).to_vec());
            }
            IpAddr::V6(v6) => frames.push(na_frame(mac, *v6, router).to_vec()),
        }
    }
    frames
}

/// Frames sent back to back before a [`PACE_PAUSE`].
const PACE_EVERY: usize = 256;
/// Pause that lets receivers drain a large burst.
const PACE_PAUSE: Duration = Duration::from_micros(500);

/// Send `count` rounds for `addrs` on `iface`, `interval` apart (blocking). Returns frames sent.
fn burst_blocking(
    iface: &str,
    addrs: &[IpAddr],
    count: u32,
    interval: Duration,
) -> Result<usize, Error> {
    let socket = |source| Error::Socket {
        iface: iface.to_owned(),
        source,
    };
    let nic = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .ok_or_else(|| Error::NoInterface {
            iface: iface.to_owned(),
        })?;
    let mac = nic.mac.ok_or_else(|| Error::NoMac {
        iface: iface.to_owned(),
    })?;
    let config = datalink::Config {
        read_buffer_size: 64,
        promiscuous: false,
        ..Default::default()
    };
    let mut tx = match datalink::channel(&nic, config).map_err(socket)? {
        Channel::Ethernet(tx, _rx) => tx,
        _ => {
            return Err(socket(std::io::Error::other("not an Ethernet channel")));
        }
    };
    // As keepalived does: the Router flag follows the interface's IPv6 forwarding setting
    // (read in this thread's namespace).
    let router = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{iface}/forwarding"))
        .is_ok_and(|v| v.trim() == "1");
    let frames = round(mac, addrs, router);
    let mut sent = 0;
    let mut result = Ok(());
    'rounds: for n in 0..count {
        if n > 0 && !interval.is_zero() {
            std::thread::sleep(interval);
        }
        for f in &frames {
            if let Some(Err(e)) = tx.send_to(f, None) {
                result = Err(socket(e));
                break 'rounds;
            }
            sent += 1;
            // A burst for thousands of floating IPs would overflow the receivers' input
            // queues (netdev_max_backlog, 1000 frames): let them drain now and then.
            if sent % PACE_EVERY == 0 {
                std::thread::sleep(PACE_PAUSE);
            }
        }
    }
    // Closing a packet socket waits for an RCU grace period in the kernel (about 10 ms,
    // `synchronize_net` in `packet_release`): close it off the announce path.
    if let Err(e) = std::thread::Builder::new()
        .name("announce-close".into())
        .spawn(move || drop(tx))
    {
        tracing::debug!(step = "announce", error = %e, "closing the packet socket inline");
    }
    result.map(|()| sent)
}

/// One burst off the runtime's threads.
async fn burst(
    iface: &str,
    addrs: &[IpAddr],
    count: u32,
    interval: Duration,
) -> Result<usize, Error> {
    let (name, list) = (iface.to_owned(), addrs.to_vec());
    tokio::task::spawn_blocking(move || burst_blocking(&name, &list, count, interval))
        .await
        .map_err(|source| Error::Join {
            iface: iface.to_owned(),
            source,
        })?
}

/// Announce `addrs` on `iface` now: `settings.count` rounds (GARP request + reply per IPv4,
/// NA per IPv6) `settings.interval` apart; then, if `settings.repeat_after` is set, a second
/// burst that long after, on a spawned task (its failure is logged, not returned). Returns the
/// number of frames of the immediate burst.
pub async fn announce(
    iface: &str,
    addrs: &[IpAddr],
    settings: &AnnounceSettings,
) -> Result<usize, Error> {
    if addrs.is_empty() || settings.count == 0 {
        return Ok(0);
    }
    let sent = burst(iface, addrs, settings.count, settings.interval).await?;
    if let Some(after) = settings.repeat_after {
        let (name, list, s) = (iface.to_owned(), addrs.to_vec(), *settings);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            match burst(&name, &list, s.count, s.interval).await {
                Ok(frames) => {
                    tracing::debug!(step = "announce", iface = %name, frames, "repeat burst sent")
                }
                Err(e) => {
                    tracing::warn!(step = "announce", iface = %name, error = %e, "repeat burst failed")
                }
            }
        });
    }
    Ok(sent)
}

/// Which interfaces the [`Watcher`] announces for: exact names (the public interface) and
/// patterns (nova's bridges).
#[derive(Debug, Clone, Default)]
pub struct InterfaceFilter {
    /// Exact interface names.
    pub names: Vec<String>,
    /// Glob patterns.
    pub patterns: Vec<glob::Pattern>,
}

impl InterfaceFilter {
    /// Whether `iface` is managed.
    pub fn matches(&self, iface: &str) -> bool {
        self.names.iter().any(|n| n == iface) || self.patterns.iter().any(|p| p.matches(iface))
    }
}

/// An address that appeared on a managed interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewAddress {
    /// The interface.
    pub iface: String,
    /// The address.
    pub addr: IpAddr,
}

type Events = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// The stream of [`watch_new_addresses`]: RTM_NEWADDR events on managed interfaces, each
/// address once until it is deleted, tentative IPv6 addresses only once DAD is done.
pub struct NewAddresses {
    events: Events,
    filter: InterfaceFilter,
    seen: HashSet<(u32, IpAddr)>,
    task: JoinHandle<()>,
}

impl Drop for NewAddresses {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The interface name of an address message: its label (IPv4, alias suffix removed), else
/// the name of its index.
fn iface_of(m: &AddressMessage) -> Option<String> {
    let label = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Label(l) => Some(l.split(':').next().unwrap_or(l).to_owned()),
        _ => None,
    });
    label.or_else(|| {
        nix::net::if_::if_indextoname(m.header.index)
            .ok()
            .map(|c| c.to_string_lossy().into_owned())
    })
}

fn tentative(m: &AddressMessage) -> bool {
    m.header.flags.contains(AddressHeaderFlags::Tentative)
        || m.attributes.iter().any(|a| {
            matches!(a, AddressAttribute::Flags(f)
                if f.contains(rtnetlink::packet_route::address::AddressFlags::Tentative))
        })
}

impl Stream for NewAddresses {
    type Item = NewAddress;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NewAddress>> {
        loop {
            let Some((msg, _)) = futures::ready!(self.events.poll_next_unpin(cx)) else {
                return Poll::Ready(None);
            };
            let NetlinkPayload::InnerMessage(inner) = msg.payload else {
                continue;
            };
            match inner {
                RouteNetlinkMessage::NewAddress(m) => {
                    let Some(net) = address_of(&m) else { continue };
                    if tentative(&m) {
                        continue;
                    }
                    let key = (m.header.index, net.addr());
                    if self.seen.contains(&key) {
                        continue;
                    }
                    let Some(iface) = iface_of(&m) else { continue };
                    if !self.filter.matches(&iface) {
                        continue;
                    }
                    self.seen.insert(key);
                    return Poll::Ready(Some(NewAddress {
                        iface,
                        addr: net.addr(),
                    }));
                }
                RouteNetlinkMessage::DelAddress(m) => {
                    if let Some(net) = address_of(&m) {
                        self.seen.remove(&(m.header.index, net.addr()));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Subscribe to the kernel's IPv4 and IPv6 address events (rtnetlink multicast groups) in
/// this thread's network namespace; the stream yields each address that appears on an
/// interface `filter` accepts. Addresses present before the call are not reported.
pub fn watch_new_addresses(filter: InterfaceFilter) -> Result<NewAddresses, Error> {
    let (conn, _handle, events) =
        new_multicast_connection(&[MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv6Ifaddr])
            .map_err(Error::Netlink)?;
    let task = tokio::spawn(conn);
    Ok(NewAddresses {
        events,
        filter,
        seen: HashSet::new(),
        task,
    })
}

/// While it lives, announces (with [`announce`]) every address [`watch_new_addresses`]
/// reports; addresses appearing together are announced in one burst per interface. Dropping
/// it (or [`Watcher::stop`]) ends the watch.
pub struct Watcher {
    task: JoinHandle<()>,
}

impl Watcher {
    /// Start watching `filter`'s interfaces, announcing with `settings`.
    pub fn spawn(filter: InterfaceFilter, settings: AnnounceSettings) -> Result<Watcher, Error> {
        let mut events = watch_new_addresses(filter)?;
        let task = tokio::spawn(async move {
            while let Some(first) = events.next().await {
                let mut batch = vec![first];
                while let Some(Some(more)) = events.next().now_or_never() {
                    batch.push(more);
                }
                let mut ifaces: Vec<&str> = batch.iter().map(|n| n.iface.as_str()).collect();
                ifaces.sort_unstable();
                ifaces.dedup();
                for iface in ifaces {
                    let addrs: Vec<IpAddr> = batch
                        .iter()
                        .filter(|n| n.iface == iface)
                        .map(|n| n.addr)
                        .collect();
                    let started = tokio::time::Instant::now();
                    match announce(iface, &addrs, &settings).await {
                        Ok(frames) => tracing::info!(
                            step = "watch",
                            iface,
                            addrs = addrs.len(),
                            frames,
                            ms = started.elapsed().as_millis() as u64,
                            "announced new addresses"
                        ),
                        Err(e) => {
                            tracing::warn!(step = "watch", iface, error = %e, "announce failed")
                        }
                    }
                }
            }
        });
        Ok(Watcher { task })
    }

    /// Stop watching.
    pub fn stop(self) {}
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr(0x02, 0, 0, 0, 0, 0x11);

    #[test]
    fn garp_request_and_reply_layout() {
        let ip = Ipv4Addr::new(10, 2, 3, 120);
        let req = garp_frame(MAC, ip, ArpOperations::Request);
        assert_eq!(&req[0..6], &[0xff; 6]);
        assert_eq!(&req[6..12], &MAC.octets());
        assert_eq!(&req[12..14], &[0x08, 0x06]);
        assert_eq!(&req[20..22], &[0, 1]);
        assert_eq!(&req[28..32], &ip.octets());
        assert_eq!(&req[32..38], &[0; 6]);
        assert_eq!(&req[38..42], &ip.octets());
        let rep = garp_frame(MAC, ip, ArpOperations::Reply);
        assert_eq!(&rep[20..22], &[0, 2]);
        assert_eq!(&rep[32..38], &[0xff; 6]);
    }

    /// RFC 1071 sum over the IPv6 pseudo-header and the ICMPv6 message, computed by hand.
    pub(crate) fn icmpv6_sum_ok(frame: &[u8]) -> bool {
        let (src, dst, icmp) = (&frame[22..38], &frame[38..54], &frame[54..]);
        let mut data = Vec::new();
        data.extend_from_slice(src);
        data.extend_from_slice(dst);
        data.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 58]);
        data.extend_from_slice(icmp);
        let mut sum: u32 = data
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    #[test]
    fn na_layout_and_checksum() {
        let ip: Ipv6Addr = "fd00::120".parse().unwrap();
        let f = na_frame(MAC, ip, false);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(f[20], 58);
        assert_eq!(f[21], 255);
        assert_eq!(f[54], 136);
        assert_eq!(f[58] & 0x20, 0x20, "override flag");
        assert_eq!(&f[62..78], &ip.octets());
        assert_eq!(&f[80..86], &MAC.octets());
        assert!(icmpv6_sum_ok(&f));
        let r = na_frame(MAC, ip, true);
        assert_eq!(r[58], 0xa0, "router and override flags");
        assert!(icmpv6_sum_ok(&r));
    }

    #[test]
    fn filter_names_and_patterns() {
        let f = InterfaceFilter {
            names: vec!["eth1".into()],
            patterns: vec![glob::Pattern::new("br*").unwrap()],
        };
        assert!(f.matches("eth1") && f.matches("br100"));
        assert!(!f.matches("eth0") && !f.matches("lo"));
    }
}
