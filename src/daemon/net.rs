//! Heartbeat sockets: one UDP socket per configured path, bound to the path's interface
//! (`SO_BINDTODEVICE`, like heartbeat's `ucast eth0 ...`), sending to each peer's address on
//! that path. Bytes only: signing and checking are `wire`'s job.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket, sockopt,
};
use tokio::net::UdpSocket;

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
