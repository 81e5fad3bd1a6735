//! The heartbeat packet: encoding, HMAC-SHA256 authentication and the receiver's checks.
//!
//! Owns the byte layout of a heartbeat and the decision to accept or drop a received one
//! (authentication, cluster and node membership, replay and boot-generation checks). Pure: it
//! never touches a socket, tokio, nix or a clock. The daemon sends what [`encode`] returns and
//! hands every received datagram to [`Receiver::accept`].
//!
//! # Layout (version 1, big-endian, [`PACKET_LEN`] = 65 bytes)
//!
//! | offset | size | field        | meaning                                                   |
//! |-------:|-----:|--------------|-----------------------------------------------------------|
//! |      0 |    4 | magic        | `b"NNHA"` ([`MAGIC`])                                     |
//! |      4 |    1 | version      | `1` ([`VERSION`])                                         |
//! |      5 |    1 | key id       | id of the [`Keyring`] key the tag was made with (1..=255) |
//! |      6 |    4 | cluster id   | `cluster.id`; other clusters' packets are dropped         |
//! |     10 |    2 | node id      | sender's [`NodeId`]                                       |
//! |     12 |    8 | generation   | sender's boot generation (persisted, grows every start)   |
//! |     20 |    8 | sequence     | grows by one per packet within a generation               |
//! |     28 |    1 | state        | sender's [`State`] code ([`State::from_u8`])              |
//! |     29 |    1 | priority     | sender's election priority                                |
//! |     30 |    2 | health       | [`Health`] flags: a set bit is a failing probe            |
//! |     32 |    1 | intent       | [`Intent`] code: an operator's takeover/standby request   |
//! |     33 |   32 | tag          | HMAC-SHA256 over bytes `0..33` with the key `key id`      |
//!
//! The version byte comes before everything whose meaning a later version may change, so a
//! receiver can tell "a newer peer" ([`DropReason::BadVersion`]) from garbage.

pub mod keyring;
pub use keyring::{Keyring, KeyringError};

use std::collections::{BTreeMap, BTreeSet};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::cluster::{Intent, NodeId, State};

/// The first four bytes of every heartbeat.
pub const MAGIC: [u8; 4] = *b"NNHA";
/// The layout version this module writes and reads.
pub const VERSION: u8 = 1;
/// Length of the authenticated header (everything before the tag).
pub const HEADER_LEN: usize = 33;
/// Length of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;
/// Length of a version-1 heartbeat packet, tag included.
pub const PACKET_LEN: usize = HEADER_LEN + TAG_LEN;

pub(crate) type HmacSha256 = hmac::Hmac<Sha256>;

/// Health flags advertised in a heartbeat: each set bit is a local probe that is failing.
///
/// A peer with any bit set is unfit to hold the service. Bits this version does not name are
/// carried as received (a newer peer may define them) and count as failing too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Health(pub u16);

impl Health {
    /// All probes pass.
    pub const OK: Health = Health(0);
    /// The nova-network child is not running (exited, or its respawn budget is spent).
    pub const NOVA_PROCESS: Health = Health(1 << 0);
    /// The AMQP queue `network.<host>` has no consumer or its backlog does not drain.
    pub const QUEUE: Health = Health(1 << 1);
    /// A managed link (public interface, heartbeat or bridge uplink) is down.
    pub const LINKS: Health = Health(1 << 2);
    /// The ping node (heartbeat's ipfail) is unreachable.
    pub const PING_NODE: Health = Health(1 << 3);
    /// A fatal line was seen in the watched log.
    pub const LOG: Health = Health(1 << 4);
    /// Every flag this version names.
    pub const KNOWN: Health = Health(0b1_1111);

    /// Whether no probe is failing.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: Health) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the flags of `other` set (`failing`) or cleared.
    pub fn with(self, other: Health, failing: bool) -> Health {
        if failing {
            Health(self.0 | other.0)
        } else {
            Health(self.0 & !other.0)
        }
    }
}

impl std::ops::BitOr for Health {
    type Output = Health;
    fn bitor(self, rhs: Health) -> Health {
        Health(self.0 | rhs.0)
    }
}

/// The content of one heartbeat, as sent and as accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Cluster id (`cluster.id`).
    pub cluster: u32,
    /// Sender.
    pub node: NodeId,
    /// Sender's boot generation; a restart gives a higher one, so sequences may start over.
    pub generation: u64,
    /// Sequence number within the generation; grows by one per packet sent.
    pub seq: u64,
    /// Sender's state.
    pub state: State,
    /// Sender's election priority.
    pub priority: u8,
    /// Sender's failing probes.
    pub health: Health,
    /// Sender's operator intent (takeover / yield), which ranks it in the election.
    pub intent: Intent,
}

/// A MAC keyed exactly as RFC 2104 keys HMAC: a secret longer than the SHA-256 block is hashed
/// first, then the key is zero-padded to the block. Done here so the infallible `KeyInit::new`
/// can be used (HMAC accepts any key length; `new_from_slice`'s error cannot happen).
pub(crate) fn mac(secret: &[u8]) -> HmacSha256 {
    let mut block = [0u8; 64];
    if secret.len() <= block.len() {
        block[..secret.len()].copy_from_slice(secret);
    } else {
        block[..32].copy_from_slice(&Sha256::digest(secret));
    }
    HmacSha256::new(&block.into())
}

/// The packet carrying `hb`, signed with the keyring's sending key.
pub fn encode(hb: &Heartbeat, keys: &Keyring) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0..4].copy_from_slice(&MAGIC);
    p[4] = VERSION;
    p[5] = keys.send_id();
    p[6..10].copy_from_slice(&hb.cluster.to_be_bytes());
    p[10..12].copy_from_slice(&hb.node.0.to_be_bytes());
    p[12..20].copy_from_slice(&hb.generation.to_be_bytes());
    p[20..28].copy_from_slice(&hb.seq.to_be_bytes());
    p[28] = hb.state as u8;
    p[29] = hb.priority;
    p[30..32].copy_from_slice(&hb.health.0.to_be_bytes());
    p[32] = hb.intent as u8;
    let mut m = mac(keys.send_secret());
    m.update(&p[..HEADER_LEN]);
    p[HEADER_LEN..].copy_from_slice(&m.finalize().into_bytes());
    p
}

/// Why a received packet was dropped. Each is counted by the [`Receiver`]; none is logged per
/// packet, since an unauthenticated sender chooses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum DropReason {
    /// The first four bytes are not [`MAGIC`]: not a heartbeat at all.
    #[error("bad magic")]
    BadMagic,
    /// A version this receiver does not read (a newer or older peer).
    #[error("unsupported version")]
    BadVersion,
    /// Shorter than [`PACKET_LEN`].
    #[error("truncated packet")]
    Truncated,
    /// Longer than [`PACKET_LEN`].
    #[error("oversized packet")]
    Oversized,
    /// Another cluster's heartbeat (same network, different `cluster.id`).
    #[error("wrong cluster id")]
    WrongCluster,
    /// A node id that is not a configured peer.
    #[error("unknown node id")]
    UnknownNode,
    /// Our own node id: a looped packet, or another server configured with our id.
    #[error("packet claims to come from this node")]
    FromSelf,
    /// A key id our keyring does not hold.
    #[error("unknown key id")]
    UnknownKey,
    /// The HMAC tag does not verify: corrupted, forged or signed with another secret.
    #[error("bad hmac tag")]
    BadTag,
    /// Authenticated, but the state or intent code is unknown to this version.
    #[error("unknown state or intent code")]
    BadState,
    /// Authenticated, but from a boot generation older than one already seen for that node.
    #[error("old boot generation")]
    OldGeneration,
    /// Authenticated, but its sequence number is not above the last accepted one.
    #[error("replayed sequence number")]
    Replay,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 12] = [
        DropReason::BadMagic,
        DropReason::BadVersion,
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::WrongCluster,
        DropReason::UnknownNode,
        DropReason::FromSelf,
        DropReason::UnknownKey,
        DropReason::BadTag,
        DropReason::BadState,
        DropReason::OldGeneration,
        DropReason::Replay,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Dropped packets counted per [`DropReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    /// How many packets were dropped for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    /// How many packets were dropped in all.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each reason with its count, in [`DropReason::ALL`] order (for status output).
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    fn bump(&mut self, reason: DropReason) {
        let c = &mut self.0[reason.index()];
        *c = c.saturating_add(1);
    }
}

/// Checks received packets and keeps the per-peer replay state.
///
/// Calling contract: hand every received datagram to [`Receiver::accept`], in arrival order.
/// A packet changes the replay state only once its tag has verified, so forged or corrupted
/// packets can never block a peer's later genuine ones. Per peer it remembers the highest
/// boot generation and, within it, the last accepted sequence number: a lower generation is
/// [`DropReason::OldGeneration`], a sequence at or below the last is [`DropReason::Replay`],
/// and a higher generation (the peer restarted) starts over at any sequence.
#[derive(Debug, Clone)]
pub struct Receiver {
    cluster: u32,
    me: NodeId,
    peers: BTreeSet<NodeId>,
    keys: Keyring,
    last: BTreeMap<NodeId, (u64, u64)>,
    drops: DropCounts,
    accepted: u64,
}

impl Receiver {
    /// A receiver for `cluster` on node `me`, accepting heartbeats from `members` (which may
    /// include `me`; packets claiming to be from `me` are always dropped as
    /// [`DropReason::FromSelf`]) authenticated by any key of `keys`.
    pub fn new(
        cluster: u32,
        me: NodeId,
        members: impl IntoIterator<Item = NodeId>,
        keys: Keyring,
    ) -> Receiver {
        let peers = members.into_iter().filter(|&n| n != me).collect();
        Receiver {
            cluster,
            me,
            peers,
            keys,
            last: BTreeMap::new(),
            drops: DropCounts::default(),
            accepted: 0,
        }
    }

    /// Replaces the keyring (after a key rotation was loaded); replay state is kept.
    pub fn set_keyring(&mut self, keys: Keyring) {
        self.keys = keys;
    }

    /// The heartbeat in `bytes` if it is authentic and fresh; otherwise the counted reason.
    pub fn accept(&mut self, bytes: &[u8]) -> Result<Heartbeat, DropReason> {
        match self.check(bytes) {
            Ok(hb) => {
                self.accepted = self.accepted.saturating_add(1);
                Ok(hb)
            }
            Err(reason) => {
                self.drops.bump(reason);
                Err(reason)
            }
        }
    }

    /// Dropped packets per reason.
    pub fn counters(&self) -> &DropCounts {
        &self.drops
    }

    /// How many packets were accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// The last accepted `(generation, seq)` of `node`, if any.
    pub fn last_seen(&self, node: NodeId) -> Option<(u64, u64)> {
        self.last.get(&node).copied()
    }

    fn check(&mut self, b: &[u8]) -> Result<Heartbeat, DropReason> {
        // Cheap structural checks first; none of them changes any state.
        if b.len() < MAGIC.len() {
            return Err(DropReason::Truncated);
        }
        if b[0..4] != MAGIC {
            return Err(DropReason::BadMagic);
        }
        match b.get(4) {
            None => return Err(DropReason::Truncated),
            Some(&VERSION) => {}
            Some(_) => return Err(DropReason::BadVersion),
        }
        let p: &[u8; PACKET_LEN] = match b.len() {
            n if n < PACKET_LEN => return Err(DropReason::Truncated),
            n if n > PACKET_LEN => return Err(DropReason::Oversized),
            _ => b.try_into().map_err(|_| DropReason::Truncated)?,
        };
        let hb = Fields::parse(p);
        if hb.cluster != self.cluster {
            return Err(DropReason::WrongCluster);
        }
        if hb.node == self.me {
            return Err(DropReason::FromSelf);
        }
        if !self.peers.contains(&hb.node) {
            return Err(DropReason::UnknownNode);
        }
        let secret = self.keys.get(hb.key_id).ok_or(DropReason::UnknownKey)?;
        let mut m = mac(secret);
        m.update(&p[..HEADER_LEN]);
        // Constant-time comparison (digest's `verify_slice`).
        m.verify_slice(&p[HEADER_LEN..])
            .map_err(|_| DropReason::BadTag)?;

        // Authenticated from here on.
        let state = State::from_u8(hb.state).ok_or(DropReason::BadState)?;
        let intent = Intent::from_u8(hb.intent).ok_or(DropReason::BadState)?;
        if let Some(&(generation, seq)) = self.last.get(&hb.node) {
            if hb.generation < generation {
                return Err(DropReason::OldGeneration);
            }
            if hb.generation == generation && hb.seq <= seq {
                return Err(DropReason::Replay);
            }
        }
        self.last.insert(hb.node, (hb.generation, hb.seq));
        Ok(Heartbeat {
            cluster: hb.cluster,
            node: hb.node,
            generation: hb.generation,
            seq: hb.seq,
            state,
            priority: hb.priority,
            health: Health(hb.health),
            intent,
        })
    }
}

/// The header fields, read without judging them.
struct Fields {
    key_id: u8,
    cluster: u32,
    node: NodeId,
    generation: u64,
    seq: u64,
    state: u8,
    priority: u8,
    health: u16,
    intent: u8,
}

impl Fields {
    fn parse(p: &[u8; PACKET_LEN]) -> Fields {
        let be16 = |o: usize| u16::from_be_bytes([p[o], p[o + 1]]);
        let be32 = |o: usize| u32::from_be_bytes([p[o], p[o + 1], p[o + 2], p[o + 3]]);
        let be64 = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&p[o..o + 8]);
            u64::from_be_bytes(a)
        };
        Fields {
            key_id: p[5],
            cluster: be32(6),
            node: NodeId(be16(10)),
            generation: be64(12),
            seq: be64(20),
            state: p[28],
            priority: p[29],
            health: be16(30),
            intent: p[32],
        }
    }
}

#[cfg(test)]
mod tests;
