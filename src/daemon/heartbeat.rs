//! The heartbeat driver: one UDP socket per configured path, bound to the path's interface
//! (`SO_BINDTODEVICE`, like heartbeat's `ucast eth0 ...`), sending to each peer's address on
//! that path, plus the broker as one more path when the bus carries heartbeats. It turns
//! [`Action::Send`](crate::cluster::Action) into signed packets on every path and received
//! bytes into [`PeerBeat`] inputs; signing and checking are `wire`'s, each path with its own
//! [`Receiver`] so a slower path's packets are not taken for replays of a faster one's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket, sockopt,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::bus::Bus;
use crate::cluster::{Beat, PathId, PeerBeat};
use crate::config::{Config, PathKind};
use crate::wire::{self, DropCounts, Health, Heartbeat, Keyring, Receiver};

/// A datagram received on a path.
#[derive(Debug)]
pub struct Packet {
    /// The path's index.
    pub path: usize,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// The name `status` and logs give the broker path.
pub const BROKER_PATH: &str = "broker";

/// Every heartbeat path of this node: sockets, receivers, and what we send.
pub struct Heartbeats {
    cluster: u32,
    me: crate::cluster::NodeId,
    generation: u64,
    seq: u64,
    keyring: Keyring,
    sockets: Vec<PathSocket>,
    receivers: Vec<Receiver>,
    names: Vec<String>,
    /// The broker path (after the UDP ones), when the bus carries heartbeats.
    broker: Option<Bus>,
}

impl Heartbeats {
    /// Opens every UDP path and starts its receive task (packets go to `packets`); with
    /// `broker`, the broker is one more path, fed by [`Heartbeats::accept`] with its index.
    pub fn open(
        config: &Config,
        generation: u64,
        broker: Option<Bus>,
        packets: &mpsc::Sender<Packet>,
    ) -> Result<Heartbeats, NetError> {
        let me = config.this_node();
        let mut sockets = Vec::new();
        let mut receivers = Vec::new();
        let mut names = Vec::new();
        for (i, path) in config.paths.iter().enumerate() {
            let PathKind::Udp { interface, port } = &path.kind;
            let peers = config
                .peers()
                .filter_map(|p| p.address(PathId(i as u8)))
                .collect();
            // Validation gives every node an address on every path.
            let own = me.address(PathId(i as u8)).ok_or_else(|| NetError {
                path: path.name.clone(),
                interface: interface.clone(),
                port: *port,
                what: "this node's address",
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "this node has no address on the path",
                ),
            })?;
            let socket = open(&path.name, interface, *port, own, peers)?;
            spawn_receive(i, socket.socket.clone(), packets.clone());
            sockets.push(socket);
            receivers.push(receiver(config));
            names.push(path.name.clone());
        }
        if broker.is_some() {
            receivers.push(receiver(config));
            names.push(BROKER_PATH.to_owned());
        }
        Ok(Heartbeats {
            cluster: config.cluster_id,
            me: me.id,
            generation,
            seq: 0,
            keyring: config.keyring.clone(),
            sockets,
            receivers,
            names,
            broker,
        })
    }

    /// How many paths the state machine counts (the broker among them).
    pub fn paths(&self) -> usize {
        self.receivers.len()
    }

    /// The broker path's index, when it is on.
    pub fn broker_path(&self) -> Option<usize> {
        self.broker.as_ref().map(|_| self.sockets.len())
    }

    /// Each path's name, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Signs `beat` and sends it on every path to every peer; a send that fails is skipped
    /// (the next keepalive tries again).
    pub fn send(&mut self, beat: Beat) {
        self.seq += 1;
        let packet = wire::encode(
            &Heartbeat {
                cluster: self.cluster,
                node: self.me,
                generation: self.generation,
                seq: self.seq,
                state: beat.state,
                priority: beat.priority,
                health: Health(beat.health),
                intent: beat.intent,
            },
            &self.keyring,
        );
        for socket in &self.sockets {
            for peer in &socket.peers {
                if let Err(e) = socket.socket.try_send_to(&packet, *peer) {
                    debug!(peer = %peer, error = %e, "heartbeat not sent");
                }
            }
        }
        if let Some(bus) = &self.broker {
            bus.send_heartbeat(packet.to_vec());
        }
    }

    /// A packet received on `path`, verified: the peer's beat, or `None` (counted by the
    /// path's receiver, shown by `status`, never logged per packet).
    pub fn accept(&mut self, path: usize, bytes: &[u8]) -> Option<PeerBeat> {
        let hb = self.receivers.get_mut(path)?.accept(bytes).ok()?;
        Some(PeerBeat {
            from: hb.node,
            path: PathId(path as u8),
            generation: hb.generation,
            seq: hb.seq,
            state: hb.state,
            intent: hb.intent,
            health: hb.health.0,
        })
    }

    /// Per path (by name): packets accepted, and those dropped by reason.
    pub fn counters(&self) -> impl Iterator<Item = (&str, u64, &DropCounts)> {
        self.receivers
            .iter()
            .zip(&self.names)
            .map(|(r, name)| (name.as_str(), r.accepted(), r.counters()))
    }
}

/// A heartbeat receiver for one path: this cluster, the configured nodes, our keys.
fn receiver(config: &Config) -> Receiver {
    Receiver::new(
        config.cluster_id,
        config.this_node().id,
        config.nodes.iter().map(|n| n.id),
        config.keyring.clone(),
    )
}

fn spawn_receive(path: usize, socket: Arc<UdpSocket>, packets: mpsc::Sender<Packet>) {
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, _from)) => {
                    let bytes = buf[..n].to_vec();
                    if packets.send(Packet { path, bytes }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(path, error = %e, "heartbeat receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// Why a heartbeat socket cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("heartbeat path {path} ({interface} port {port}): {what}: {source}")]
pub struct NetError {
    /// The path's name.
    pub path: String,
    /// Its interface.
    pub interface: String,
    /// Its port.
    pub port: u16,
    /// The call that failed.
    pub what: &'static str,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

/// One path's socket and the peers' addresses on it.
#[derive(Debug, Clone)]
pub struct PathSocket {
    /// The socket, shared by the receive task and the sender.
    pub socket: Arc<UdpSocket>,
    /// Each peer's address on this path.
    pub peers: Vec<SocketAddr>,
}

/// Opens the socket of one path: family from our own address on it, bound to `port` on the
/// interface only.
pub fn open(
    path: &str,
    interface: &str,
    port: u16,
    own: IpAddr,
    peers: Vec<IpAddr>,
) -> Result<PathSocket, NetError> {
    let fail = |what: &'static str, source: std::io::Error| NetError {
        path: path.to_owned(),
        interface: interface.to_owned(),
        port,
        what,
        source,
    };
    let family = match own {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| fail("socket", e.into()))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail("SO_REUSEADDR", e.into()))?;
    setsockopt(
        &fd,
        sockopt::BindToDevice,
        &std::ffi::OsString::from(interface),
    )
    .map_err(|e| fail("SO_BINDTODEVICE", e.into()))?;
    match own {
        IpAddr::V4(_) => bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        ),
        IpAddr::V6(_) => bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn6::from(std::net::SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                port,
                0,
                0,
            )),
        ),
    }
    .map_err(|e| fail("bind", e.into()))?;
    let std_socket = std::net::UdpSocket::from(fd);
    let socket = UdpSocket::from_std(std_socket).map_err(|e| fail("register with tokio", e))?;
    Ok(PathSocket {
        socket: Arc::new(socket),
        peers: peers
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
    })
}
