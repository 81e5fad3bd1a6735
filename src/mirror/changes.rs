//! When the active node must take a new snapshot: rtnetlink events for links and addresses
//! (pushed by the kernel), and, every `iptables_check`, netfilter's ruleset generation (one
//! netlink request, `NFT_MSG_GETGEN`: it moves on every iptables-nft commit) and the newest
//! modification time of dnsmasq's files. `iptables-save` runs only when something moved.
//! With legacy iptables (no generation), a snapshot is taken every `fallback` instead.

use std::time::Duration;

use futures::StreamExt;
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols};
use rtnetlink::{MulticastGroup, new_multicast_connection};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::capture::Parts;

/// `(NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN`.
const NFT_GETGEN: u16 = (10 << 8) | 16;
/// `(NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN`.
const NFT_NEWGEN: u16 = (10 << 8) | 15;
/// `NFTA_GEN_ID`.
const NFTA_GEN_ID: u16 = 1;
/// How long a generation request may take before the check is taken as failed.
const GEN_TIMEOUT: Duration = Duration::from_millis(200);

/// The request for the ruleset generation: nlmsghdr + nfgenmsg (AF_UNSPEC, version 0).
pub fn getgen_request(seq: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&20u32.to_ne_bytes());
    m[4..6].copy_from_slice(&NFT_GETGEN.to_ne_bytes());
    m[6..8].copy_from_slice(&1u16.to_ne_bytes()); // NLM_F_REQUEST
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m
}

/// The generation id in a reply to [`getgen_request`], if it holds one.
pub fn parse_newgen(reply: &[u8]) -> Option<u32> {
    let mut rest = reply;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        if len < 16 || len > rest.len() {
            return None;
        }
        if kind == NFT_NEWGEN && len >= 20 {
            let mut attrs = &rest[20..len];
            while attrs.len() >= 4 {
                let alen = u16::from_ne_bytes(attrs[0..2].try_into().ok()?) as usize;
                let atype = u16::from_ne_bytes(attrs[2..4].try_into().ok()?) & 0x3fff;
                if alen < 4 || alen > attrs.len() {
                    return None;
                }
                if atype == NFTA_GEN_ID && alen >= 8 {
                    return Some(u32::from_be_bytes(attrs[4..8].try_into().ok()?));
                }
                attrs = &attrs[((alen + 3) & !3).min(attrs.len())..];
            }
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    None
}

/// A netfilter netlink socket asking for the ruleset generation.
pub struct NftGeneration {
    socket: TokioSocket,
    seq: u32,
}

impl NftGeneration {
    /// Open the socket in this thread's network namespace; `None` when the kernel has no
    /// nf_tables (legacy iptables) or the first request gets no generation.
    pub async fn open() -> Option<NftGeneration> {
        let mut socket = TokioSocket::new(protocols::NETLINK_NETFILTER).ok()?;
        socket.socket_mut().connect(&SocketAddr::new(0, 0)).ok()?;
        let mut g = NftGeneration { socket, seq: 0 };
        g.get().await.map(|_| g)
    }

    /// The current generation, `None` when the kernel did not answer with one.
    pub async fn get(&mut self) -> Option<u32> {
        self.seq = self.seq.wrapping_add(1);
        self.socket.send(&getgen_request(self.seq)).await.ok()?;
        let (reply, _) = tokio::time::timeout(GEN_TIMEOUT, self.socket.recv_from_full())
            .await
            .ok()?
            .ok()?;
        parse_newgen(&reply)
    }
}

/// How changes are noticed, for `check-config` and `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesCheck {
    /// netfilter's generation, every interval.
    Generation,
    /// No nf_tables: a snapshot every fallback interval.
    Periodic,
}

impl IptablesCheck {
    /// Its name in logs and `status`.
    pub fn name(self) -> &'static str {
        match self {
            IptablesCheck::Generation => "generation",
            IptablesCheck::Periodic => "periodic",
        }
    }
}

/// What moved since the producer last looked, and its wake-up. The watch ends when this is
/// dropped.
pub struct Changes {
    pending: Arc<Mutex<Parts>>,
    notify: Arc<Notify>,
    /// How iptables changes are noticed.
    pub check: IptablesCheck,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Changes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Changes {
    /// Wait until something moved; then (after `gap`, so a burst is taken as one) which parts.
    pub async fn next(&self, gap: Duration) -> Parts {
        self.notify.notified().await;
        tokio::time::sleep(gap).await;
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Start watching: links and addresses (rtnetlink events) move [`Parts::net`], netfilter's
/// generation (checked every `interval`) [`Parts::firewall`], dnsmasq's files' mtimes
/// [`Parts::files`]; without nf_tables, the firewall is read every `fallback`.
pub async fn watch(
    networks_path: std::path::PathBuf,
    interval: Duration,
    fallback: Duration,
) -> std::io::Result<Changes> {
    let (conn, _handle, mut events) = new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])?;
    let mut generation = NftGeneration::open().await;
    let check = if generation.is_some() {
        IptablesCheck::Generation
    } else {
        IptablesCheck::Periodic
    };
    let pending = Arc::new(Mutex::new(Parts::default()));
    let notify = Arc::new(Notify::new());
    let conn = tokio::spawn(conn);
    let (shared, wake) = (pending.clone(), notify.clone());
    let task = tokio::spawn(async move {
        let mut last_gen = match &mut generation {
            Some(g) => g.get().await,
            None => None,
        };
        let mut last_stamp = super::capture::files_stamp(&networks_path);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut periodic = tokio::time::interval(fallback);
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut moved = Parts::default();
            tokio::select! {
                e = events.next() => match e {
                    Some(_) => moved.net = true,
                    None => return,
                },
                _ = tick.tick() => {
                    let g = match &mut generation {
                        Some(g) => g.get().await,
                        None => None,
                    };
                    let stamp = super::capture::files_stamp(&networks_path);
                    moved.firewall = g != last_gen;
                    moved.files = stamp != last_stamp;
                    last_gen = g;
                    last_stamp = stamp;
                }
                _ = periodic.tick(), if generation.is_none() => moved.firewall = true,
            };
            if moved != Parts::default() {
                let mut p = shared.lock().unwrap_or_else(|e| e.into_inner());
                p.net |= moved.net;
                p.firewall |= moved.firewall;
                p.files |= moved.files;
                drop(p);
                wake.notify_one();
            }
        }
    });
    Ok(Changes {
        pending,
        notify,
        check,
        tasks: [conn, task],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newgen_reply_is_parsed() {
        // nlmsghdr (NEWGEN) + nfgenmsg + NFTA_GEN_ID 0x01020304 + NFTA_GEN_PROC_PID.
        let mut m = Vec::new();
        m.extend_from_slice(&32u32.to_ne_bytes());
        m.extend_from_slice(&NFT_NEWGEN.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        m.extend_from_slice(&[1, 2, 3, 4]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&[0, 0, 0, 9]);
        assert_eq!(parse_newgen(&m), Some(0x0102_0304));
        assert_eq!(parse_newgen(&m[..10]), None);
        assert_eq!(getgen_request(7)[4..6], NFT_GETGEN.to_ne_bytes());
    }
}
