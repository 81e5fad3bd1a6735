//! The mirror's transport: TCP on the heartbeat paths' addresses. Every node listens
//! ([`serve`]) and holds the newest complete, authenticated snapshot a peer pushed ([`Held`]);
//! the active node takes snapshots when [`super::changes`] says something moved
//! ([`Producer`]) and pushes them to every peer ([`Pusher`]): a whole snapshot when it
//! changed, otherwise a small `Current` frame every `refresh` so the standby knows its copy
//! is still good. A frame is applied to the store only once read whole and verified.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::capture::Parts;
use super::frame::{self, FrameError, HEADER_LEN, Header, Kind, NONCE_LEN, TAG_LEN};
use super::snapshot::Snapshot;
use crate::cluster::NodeId;
use crate::takeover::Plan;
use crate::wire::Keyring;

/// A bound on connecting to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A bound on writing one frame.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before reconnecting to a peer.
const RECONNECT: Duration = Duration::from_millis(200);
/// Shortest gap between two snapshots (a burst of changes is taken in one).
const MIN_GAP: Duration = Duration::from_millis(10);

/// The snapshot a node holds from a peer.
#[derive(Debug, Clone)]
pub struct Held {
    /// The sender.
    pub from: NodeId,
    /// The sender's boot generation.
    pub generation: u64,
    /// The snapshot's sequence number.
    pub seq: u64,
    /// The snapshot.
    pub snapshot: Arc<Snapshot>,
    /// Its size on the wire.
    pub bytes: usize,
    /// When the sender last said it is current (or sent it).
    pub confirmed: Instant,
}

/// Why a held snapshot is not used at a takeover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No snapshot was ever received.
    #[error("no snapshot held")]
    None,
    /// The sender restarted since: its state then is not its state now.
    #[error("snapshot from generation {held} of {peer}, which now runs generation {now}")]
    OlderGeneration {
        /// The sender.
        peer: String,
        /// The snapshot's generation.
        held: u64,
        /// The sender's current one.
        now: u64,
    },
    /// Not confirmed for longer than `max_age`.
    #[error("snapshot not confirmed for {age:?} (max_age {max:?})")]
    Stale {
        /// Time since the last confirmation.
        age: Duration,
        /// The configured bound.
        max: Duration,
    },
    /// Its sender still holds the service on some path: applying would duplicate addresses.
    #[error("{0} is alive and holds the service")]
    PeerActive(String),
}

impl Held {
    /// Time since the sender last confirmed it.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.confirmed)
    }

    /// Whether it may be applied now: fresh, from the sender's current generation (as its
    /// heartbeats tell), and the sender does not hold the service.
    pub fn usable(
        &self,
        now: Instant,
        max_age: Duration,
        peer: &str,
        peer_generation: Option<u64>,
        peer_holds: bool,
    ) -> Result<(), Refusal> {
        if peer_holds {
            return Err(Refusal::PeerActive(peer.to_owned()));
        }
        if let Some(g) = peer_generation
            && g > self.generation
        {
            return Err(Refusal::OlderGeneration {
                peer: peer.to_owned(),
                held: self.generation,
                now: g,
            });
        }
        let age = self.age(now);
        if age > max_age {
            return Err(Refusal::Stale { age, max: max_age });
        }
        Ok(())
    }
}

/// Where a node keeps what it received.
pub type Store = Arc<Mutex<Option<Held>>>;

/// Who may send, and how frames are checked.
#[derive(Clone)]
pub struct Trust {
    /// `cluster.id`.
    pub cluster: u32,
    /// The peers' node ids.
    pub peers: Vec<NodeId>,
    /// The peers' addresses (on every heartbeat path): a connection from any other address
    /// is closed at once, before a byte is read.
    pub addresses: Vec<IpAddr>,
    /// The cluster's keys.
    pub keys: Keyring,
}

/// Connections held open at once, all listeners together: eight per peer, at least 16. A
/// peer needs one per path (and its previous one while that times out); the cap bounds file
/// descriptors, and leaves room for the peer when something on its address opens idle ones.
pub fn connection_cap(peers: usize) -> usize {
    (8 * peers).max(16)
}

/// Accept peers' connections on `listeners` for ever, keeping the newest snapshot in `store`.
/// `idle` closes a connection that sent nothing for that long. Only the peers' addresses are
/// served, at most [`connection_cap`] connections at once; others are closed unread.
pub async fn serve(listeners: Vec<TcpListener>, trust: Trust, store: Store, idle: Duration) {
    let slots = Arc::new(Semaphore::new(connection_cap(trust.peers.len())));
    let mut tasks = Vec::new();
    for listener in listeners {
        let (trust, store, slots) = (trust.clone(), store.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    tokio::time::sleep(RECONNECT).await;
                    continue;
                };
                if !trust.addresses.contains(&peer.ip().to_canonical()) {
                    debug!(peer = %peer, "mirror connection refused: not a peer's address");
                    continue;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    debug!(peer = %peer, "mirror connection refused: too many open");
                    continue;
                };
                let (trust, store) = (trust.clone(), store.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = receive(stream, &trust, &store, idle).await {
                        debug!(peer = %peer, error = %e, "mirror connection closed");
                    }
                });
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The socket failed or closed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing arrived for the idle bound.
    #[error("idle")]
    Idle,
    /// A frame was refused (the connection is dropped).
    #[error("frame refused: {0}")]
    Frame(#[from] FrameError),
    /// A snapshot that does not parse.
    #[error("snapshot does not parse: {0}")]
    Json(#[from] serde_json::Error),
}

async fn receive(
    mut stream: TcpStream,
    trust: &Trust,
    store: &Store,
    idle: Duration,
) -> Result<(), StreamError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    stream.write_all(&nonce).await?;
    loop {
        let mut header = [0u8; HEADER_LEN];
        match tokio::time::timeout(idle, stream.read_exact(&mut header)).await {
            Err(_) => return Err(StreamError::Idle),
            Ok(r) => r?,
        };
        let pending = frame::read_header(&header, trust.cluster, &trust.peers, &trust.keys)?;
        // The sender proves it holds the key before a payload byte is allocated or read.
        let mut head_tag = [0u8; TAG_LEN];
        match tokio::time::timeout(idle, stream.read_exact(&mut head_tag)).await {
            Err(_) => return Err(StreamError::Idle),
            Ok(r) => r?,
        };
        frame::verify_header(&pending, &header, &head_tag, &nonce, &trust.keys)?;
        let mut payload = vec![0u8; pending.payload_len as usize];
        let mut tag = [0u8; TAG_LEN];
        let body = async {
            stream.read_exact(&mut payload).await?;
            stream.read_exact(&mut tag).await
        };
        match tokio::time::timeout(idle, body).await {
            Err(_) => return Err(StreamError::Idle),
            Ok(r) => r?,
        };
        frame::verify(&pending, &header, &payload, &tag, &nonce, &trust.keys)?;
        let h = pending.header;
        let now = Instant::now();
        match h.kind {
            Kind::Snapshot => {
                let snapshot: Snapshot = serde_json::from_slice(&payload)?;
                let mut held = store.lock().unwrap_or_else(|e| e.into_inner());
                let older = held
                    .as_ref()
                    .is_some_and(|x| x.from == h.node && x.generation > h.generation);
                if !older {
                    debug!(from = h.node.0, seq = h.seq, bytes = payload.len(), summary = %snapshot.summary(), "mirror snapshot received");
                    *held = Some(Held {
                        from: h.node,
                        generation: h.generation,
                        seq: h.seq,
                        snapshot: Arc::new(snapshot),
                        bytes: payload.len(),
                        confirmed: now,
                    });
                }
            }
            Kind::Current => {
                let mut held = store.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(x) = held.as_mut()
                    && (x.from, x.generation, x.seq) == (h.node, h.generation, h.seq)
                {
                    x.confirmed = now;
                }
            }
        }
    }
}

/// A snapshot the active node publishes.
#[derive(Debug)]
pub struct Published {
    /// Its sequence number (from 1 in this generation).
    pub seq: u64,
    /// Its JSON.
    pub json: Vec<u8>,
    /// Its summary.
    pub summary: String,
    /// When it was taken.
    pub taken: Instant,
}

/// Takes snapshots on the active node while it lives.
pub struct Producer {
    task: JoinHandle<()>,
    /// The newest snapshot.
    pub published: watch::Receiver<Option<Arc<Published>>>,
    /// How iptables changes are noticed.
    pub check: super::changes::IptablesCheck,
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Producer {
    /// Start: a first snapshot at once, then one whenever [`super::changes::watch`] fires and
    /// the state differs from the last one.
    pub async fn spawn(
        plan: Plan,
        iptables_check: Duration,
        fallback: Duration,
    ) -> std::io::Result<Producer> {
        let changes =
            super::changes::watch(plan.networks_path.clone(), iptables_check, fallback).await?;
        let check = changes.check;
        let (tx, published) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut snap = Snapshot::default();
            let mut last: Option<Snapshot> = None;
            let mut seq = 0;
            let mut parts = Parts::ALL;
            loop {
                let started = Instant::now();
                // Only what moved is read again: an address change costs no iptables-save.
                let result = super::capture::refresh(&plan, &mut snap, parts).await;
                let failed = result.is_err();
                match result {
                    Ok(()) if last.as_ref() != Some(&snap) => match serde_json::to_vec(&snap) {
                        Ok(json) => {
                            seq += 1;
                            let summary = snap.summary();
                            debug!(seq, bytes = json.len(), ms = started.elapsed().as_millis() as u64, summary = %summary, "mirror snapshot taken");
                            let _ = tx.send(Some(Arc::new(Published {
                                seq,
                                json,
                                summary,
                                taken: Instant::now(),
                            })));
                            last = Some(snap.clone());
                        }
                        Err(e) => warn!(error = %e, "mirror snapshot not serialised"),
                    },
                    Ok(()) => {}
                    Err(e) => warn!(error = %e, "mirror snapshot failed"),
                }
                let moved = changes.next(MIN_GAP).await;
                // After a failure a part may be half read: read everything again.
                parts = if failed { Parts::ALL } else { moved };
            }
        });
        Ok(Producer {
            task,
            published,
            check,
        })
    }
}

/// Pushes the producer's snapshots to every peer while it lives.
pub struct Pusher {
    tasks: Vec<JoinHandle<()>>,
    /// Peers currently connected.
    pub connected: Arc<AtomicUsize>,
}

impl Drop for Pusher {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Who this node is on the stream.
#[derive(Clone)]
pub struct Sender {
    /// `cluster.id`.
    pub cluster: u32,
    /// This node.
    pub node: NodeId,
    /// Its boot generation.
    pub generation: u64,
    /// The keys (the sending one signs).
    pub keys: Keyring,
}

impl Pusher {
    /// One task per peer; `peers` lists each peer's addresses (one per path, tried in order).
    pub fn spawn(
        peers: Vec<Vec<SocketAddr>>,
        me: Sender,
        published: watch::Receiver<Option<Arc<Published>>>,
        refresh: Duration,
    ) -> Pusher {
        let connected = Arc::new(AtomicUsize::new(0));
        let tasks = peers
            .into_iter()
            .map(|addrs| {
                let (me, published, connected) = (me.clone(), published.clone(), connected.clone());
                tokio::spawn(push_to(addrs, me, published, refresh, connected))
            })
            .collect();
        Pusher { tasks, connected }
    }
}

async fn push_to(
    addrs: Vec<SocketAddr>,
    me: Sender,
    mut published: watch::Receiver<Option<Arc<Published>>>,
    refresh: Duration,
    connected: Arc<AtomicUsize>,
) {
    loop {
        let mut stream = None;
        for a in &addrs {
            if let Ok(Ok(s)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(a)).await {
                let _ = s.set_nodelay(true);
                stream = Some((s, *a));
                break;
            }
        }
        let Some((mut s, addr)) = stream else {
            tokio::time::sleep(RECONNECT).await;
            continue;
        };
        let mut nonce = [0u8; NONCE_LEN];
        if !matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, s.read_exact(&mut nonce)).await,
            Ok(Ok(_))
        ) {
            tokio::time::sleep(RECONNECT).await;
            continue;
        }
        info!(peer = %addr, "mirror stream connected");
        connected.fetch_add(1, Ordering::SeqCst);
        let mut sent: Option<u64> = None;
        let result: Result<(), std::io::Error> = async {
            loop {
                let current = published.borrow_and_update().clone();
                if let Some(p) = current {
                    let (kind, payload): (Kind, &[u8]) = if sent == Some(p.seq) {
                        (Kind::Current, &[])
                    } else {
                        (Kind::Snapshot, &p.json)
                    };
                    let header = Header {
                        kind,
                        cluster: me.cluster,
                        node: me.node,
                        generation: me.generation,
                        seq: p.seq,
                    };
                    let bytes = frame::encode(&header, payload, &nonce, &me.keys);
                    match tokio::time::timeout(WRITE_TIMEOUT, s.write_all(&bytes)).await {
                        Ok(r) => r?,
                        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
                    }
                    sent = Some(p.seq);
                }
                tokio::select! {
                    r = published.changed() => if r.is_err() { return Ok(()) },
                    () = tokio::time::sleep(refresh) => {}
                }
            }
        }
        .await;
        connected.fetch_sub(1, Ordering::SeqCst);
        match result {
            Ok(()) => return,
            Err(e) => {
                info!(peer = %addr, error = %e, "mirror stream lost; reconnecting");
                tokio::time::sleep(RECONNECT).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(generation: u64, confirmed: Instant) -> Held {
        Held {
            from: NodeId(1),
            generation,
            seq: 3,
            snapshot: Arc::new(Snapshot::default()),
            bytes: 10,
            confirmed,
        }
    }

    #[test]
    fn a_held_snapshot_is_used_only_fresh_current_and_with_the_peer_not_holding() {
        let now = Instant::now();
        let max = Duration::from_secs(10);
        let h = held(5, now - Duration::from_secs(2));
        assert_eq!(h.usable(now, max, "net1", Some(5), false), Ok(()));
        assert_eq!(h.usable(now, max, "net1", None, false), Ok(()));
        assert_eq!(
            h.usable(now, max, "net1", Some(5), true),
            Err(Refusal::PeerActive("net1".into()))
        );
        assert_eq!(
            h.usable(now, max, "net1", Some(6), false),
            Err(Refusal::OlderGeneration {
                peer: "net1".into(),
                held: 5,
                now: 6
            })
        );
        let old = held(5, now - Duration::from_secs(11));
        assert_eq!(
            old.usable(now, max, "net1", Some(5), false),
            Err(Refusal::Stale {
                age: Duration::from_secs(11),
                max
            })
        );
    }

    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn keys(secret: u8) -> Keyring {
        Keyring::new(1, BTreeMap::from([(1, vec![secret; 32])])).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A listener on loopback serving `addresses` with the key 0xab; its address and store.
    async fn listen(addresses: Vec<IpAddr>) -> (SocketAddr, Store) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let at = listener.local_addr().unwrap();
        let store = Store::default();
        let trust = Trust {
            cluster: 7,
            peers: vec![NodeId(2)],
            addresses,
            keys: keys(0xab),
        };
        tokio::spawn(serve(
            vec![listener],
            trust,
            store.clone(),
            Duration::from_secs(5),
        ));
        (at, store)
    }

    /// Connects and reads the nonce; `None` when the listener closed the connection instead.
    async fn connect(at: SocketAddr) -> (TcpStream, Option<[u8; NONCE_LEN]>) {
        let mut s = TcpStream::connect(at).await.unwrap();
        let mut nonce = [0u8; NONCE_LEN];
        let got = tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut nonce)).await;
        (s, matches!(got, Ok(Ok(_))).then_some(nonce))
    }

    /// Whether the listener closed `s` (EOF) within two seconds.
    async fn closed(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    const HEADER: Header = Header {
        kind: Kind::Snapshot,
        cluster: 7,
        node: NodeId(2),
        generation: 1,
        seq: 1,
    };

    #[tokio::test]
    async fn a_peer_address_with_the_key_is_held() {
        let (at, store) = listen(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]).await;
        let (mut s, nonce) = connect(at).await;
        let nonce = nonce.expect("a peer's address gets a nonce");
        let json = serde_json::to_vec(&Snapshot::default()).unwrap();
        s.write_all(&frame::encode(&HEADER, &json, &nonce, &keys(0xab)))
            .await
            .unwrap();
        for _ in 0..200 {
            if store.lock().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.lock().unwrap().as_ref().map(|h| h.seq), Some(1));
    }

    #[tokio::test]
    async fn another_address_is_closed_unread() {
        let (at, _) = listen(vec![IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9))]).await;
        let (_, nonce) = connect(at).await;
        assert_eq!(nonce, None, "no nonce for an address that is not a peer's");
    }

    /// Issue 13: a header whose fields anyone can learn from a heartbeat, asking for the
    /// largest payload, made the listener allocate and hash 64 MiB before the tag was
    /// checked. Now the header's own tag is checked first: the connection is closed while
    /// the sender has sent no payload at all.
    #[tokio::test]
    async fn a_forged_header_is_refused_before_its_payload() {
        let (at, store) = listen(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]).await;
        let (mut s, nonce) = connect(at).await;
        let nonce = nonce.expect("a nonce");
        let mut forged = frame::encode(&HEADER, &[], &nonce, &keys(0xcd));
        forged[32..36].copy_from_slice(&frame::MAX_PAYLOAD.to_be_bytes());
        s.write_all(&forged[..HEADER_LEN + TAG_LEN]).await.unwrap();
        assert!(closed(&mut s).await, "the listener waited for the payload");
        assert!(store.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed() {
        let (at, _) = listen(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]).await;
        let mut open = Vec::new();
        for _ in 0..connection_cap(1) {
            let (s, nonce) = connect(at).await;
            assert!(nonce.is_some(), "within the cap");
            open.push(s);
        }
        let (_, nonce) = connect(at).await;
        assert_eq!(nonce, None, "past the cap of {}", connection_cap(1));
        // One closes: a slot is free again.
        drop(open.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(connect(at).await.1.is_some());
    }
}
