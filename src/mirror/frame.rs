//! The mirror's frames on its TCP stream: a fixed header and its own HMAC-SHA256 tag, a
//! payload, and a tag over the whole frame, both with the cluster's key (the heartbeats'
//! keyring) and over the connection's nonce. The receiver sends a fresh random nonce when it
//! accepts a connection, so a recorded frame cannot be replayed on another connection. The
//! header's tag lets the receiver authenticate the sender before it allocates, reads or
//! hashes a single payload byte: the header's fields are no secret (a heartbeat shows them),
//! the key is. Pure: no I/O here.
//!
//! Header, big-endian: magic `NNHM` (4), version (1), key id (1), kind (1), reserved (1),
//! cluster id (4), sender node id (2), reserved (2), sender's boot generation (8), snapshot
//! sequence number (8), payload length (4): 36 bytes; then the header's 32-byte tag
//! (HMAC over nonce and header), the payload, and the frame's 32-byte tag (HMAC over nonce,
//! header and payload).

use hmac::Mac;

use crate::cluster::NodeId;
use crate::wire::{Keyring, mac};

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"NNHM";
/// The format version this code writes and reads (2: the header has a tag of its own).
pub const VERSION: u8 = 2;
/// Header length.
pub const HEADER_LEN: usize = 36;
/// Tag length.
pub const TAG_LEN: usize = 32;
/// Nonce length.
pub const NONCE_LEN: usize = 16;
/// The largest payload accepted (a snapshot of many thousand floating IPs is a few MiB).
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// What a frame says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A complete snapshot (JSON payload) replacing any earlier one.
    Snapshot = 1,
    /// The snapshot with this sequence number is still current (empty payload).
    Current = 2,
}

/// A frame's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Snapshot or confirmation.
    pub kind: Kind,
    /// Cluster id.
    pub cluster: u32,
    /// Sender.
    pub node: NodeId,
    /// Sender's boot generation.
    pub generation: u64,
    /// Snapshot sequence number within the generation.
    pub seq: u64,
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not a mirror frame.
    #[error("bad magic")]
    BadMagic,
    /// Another format version.
    #[error("unsupported version {0} (this node reads {VERSION})")]
    BadVersion(u8),
    /// An unknown kind code.
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    /// Another cluster.
    #[error("cluster id {0} is not ours")]
    WrongCluster(u32),
    /// Not a configured peer (or ourselves).
    #[error("node id {0} is not a peer")]
    UnknownNode(u16),
    /// A key id our keyring lacks.
    #[error("unknown key id {0}")]
    UnknownKey(u8),
    /// Payload larger than [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(u32),
    /// The tag does not verify.
    #[error("bad hmac tag")]
    BadTag,
}

/// The frame for `header` and `payload`, signed for the connection's `nonce` with the
/// keyring's sending key.
pub fn encode(header: &Header, payload: &[u8], nonce: &[u8; NONCE_LEN], keys: &Keyring) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 2 * TAG_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(keys.send_id());
    out.push(header.kind as u8);
    out.push(0);
    out.extend_from_slice(&header.cluster.to_be_bytes());
    out.extend_from_slice(&header.node.0.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&header.generation.to_be_bytes());
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    let mut head = mac(keys.send_secret());
    head.update(nonce);
    head.update(&out);
    let mut whole = mac(keys.send_secret());
    whole.update(nonce);
    whole.update(&out);
    whole.update(payload);
    out.extend_from_slice(&head.finalize().into_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&whole.finalize().into_bytes());
    out
}

/// A header read off the stream, checked but not yet authenticated: tells how many payload
/// bytes follow and which key verifies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The fields.
    pub header: Header,
    /// The key id.
    pub key: u8,
    /// Payload bytes that follow the header.
    pub payload_len: u32,
}

/// Check a header: ours, a known sender and key, a bounded payload. `peers` are the node ids
/// allowed to send (never this node).
pub fn read_header(
    bytes: &[u8; HEADER_LEN],
    cluster: u32,
    peers: &[NodeId],
    keys: &Keyring,
) -> Result<Pending, FrameError> {
    if bytes[0..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(FrameError::BadVersion(bytes[4]));
    }
    let key = bytes[5];
    let kind = match bytes[6] {
        1 => Kind::Snapshot,
        2 => Kind::Current,
        k => return Err(FrameError::BadKind(k)),
    };
    let be32 = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[r]);
        u32::from_be_bytes(b)
    };
    let be64 = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[r]);
        u64::from_be_bytes(b)
    };
    let frame_cluster = be32(8..12);
    if frame_cluster != cluster {
        return Err(FrameError::WrongCluster(frame_cluster));
    }
    let node = NodeId(u16::from_be_bytes([bytes[12], bytes[13]]));
    if !peers.contains(&node) {
        return Err(FrameError::UnknownNode(node.0));
    }
    if keys.get(key).is_none() {
        return Err(FrameError::UnknownKey(key));
    }
    let payload_len = be32(32..36);
    if payload_len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(payload_len));
    }
    Ok(Pending {
        header: Header {
            kind,
            cluster: frame_cluster,
            node,
            generation: be64(16..24),
            seq: be64(24..32),
        },
        key,
        payload_len,
    })
}

/// Verify the header's own tag (over nonce and header) with its key: before any payload byte
/// is read, allocated or hashed.
pub fn verify_header(
    pending: &Pending,
    header: &[u8; HEADER_LEN],
    tag: &[u8; TAG_LEN],
    nonce: &[u8; NONCE_LEN],
    keys: &Keyring,
) -> Result<(), FrameError> {
    check_tag(pending, keys, &[nonce, header], tag)
}

/// Verify the frame's tag over nonce, header and payload with the header's key.
pub fn verify(
    pending: &Pending,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
    tag: &[u8; TAG_LEN],
    nonce: &[u8; NONCE_LEN],
    keys: &Keyring,
) -> Result<(), FrameError> {
    check_tag(pending, keys, &[nonce, header, payload], tag)
}

/// The HMAC of `parts` with the header's key, compared with `tag` in constant time.
fn check_tag(
    pending: &Pending,
    keys: &Keyring,
    parts: &[&[u8]],
    tag: &[u8; TAG_LEN],
) -> Result<(), FrameError> {
    let secret = keys
        .get(pending.key)
        .ok_or(FrameError::UnknownKey(pending.key))?;
    let mut m = mac(secret);
    for part in parts {
        m.update(part);
    }
    m.verify_slice(tag).map_err(|_| FrameError::BadTag)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn keys(secret: u8) -> Keyring {
        Keyring::new(1, BTreeMap::from([(1, vec![secret; 32])])).unwrap()
    }

    /// Header, header tag, payload, frame tag.
    fn split(frame: &[u8]) -> ([u8; HEADER_LEN], [u8; TAG_LEN], Vec<u8>, [u8; TAG_LEN]) {
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&frame[..HEADER_LEN]);
        let mut ht = [0u8; TAG_LEN];
        ht.copy_from_slice(&frame[HEADER_LEN..HEADER_LEN + TAG_LEN]);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&frame[frame.len() - TAG_LEN..]);
        let payload = frame[HEADER_LEN + TAG_LEN..frame.len() - TAG_LEN].to_vec();
        (h, ht, payload, t)
    }

    const HEADER: Header = Header {
        kind: Kind::Snapshot,
        cluster: 7,
        node: NodeId(2),
        generation: 5,
        seq: 9,
    };

    #[test]
    fn round_trip_and_every_refusal() {
        let k = keys(0xab);
        let nonce = [3u8; NONCE_LEN];
        let frame = encode(&HEADER, b"{\"x\":1}", &nonce, &k);
        let (h, head_tag, payload, tag) = split(&frame);
        let p = read_header(&h, 7, &[NodeId(2)], &k).unwrap();
        assert_eq!((p.header, p.payload_len), (HEADER, 7));
        verify_header(&p, &h, &head_tag, &nonce, &k).unwrap();
        verify(&p, &h, &payload, &tag, &nonce, &k).unwrap();
        // The header's tag: another nonce, another secret, or a changed payload length (a
        // forged header asking for 64 MiB) are refused before any payload byte is read.
        assert_eq!(
            verify_header(&p, &h, &head_tag, &[4u8; NONCE_LEN], &k),
            Err(FrameError::BadTag)
        );
        assert_eq!(
            verify_header(&p, &h, &head_tag, &nonce, &keys(0xcd)),
            Err(FrameError::BadTag)
        );
        let mut forged = h;
        forged[32..36].copy_from_slice(&MAX_PAYLOAD.to_be_bytes());
        let fp = read_header(&forged, 7, &[NodeId(2)], &k).unwrap();
        assert_eq!(
            verify_header(&fp, &forged, &head_tag, &nonce, &k),
            Err(FrameError::BadTag)
        );
        // Another connection's nonce: a replay.
        assert_eq!(
            verify(&p, &h, &payload, &tag, &[4u8; NONCE_LEN], &k),
            Err(FrameError::BadTag)
        );
        // A changed payload, another secret.
        assert_eq!(
            verify(&p, &h, b"{\"x\":2}", &tag, &nonce, &k),
            Err(FrameError::BadTag)
        );
        let other = keys(0xcd);
        assert_eq!(
            verify(&p, &h, &payload, &tag, &nonce, &other),
            Err(FrameError::BadTag)
        );
        assert_eq!(
            read_header(&h, 8, &[NodeId(2)], &k),
            Err(FrameError::WrongCluster(7))
        );
        assert_eq!(
            read_header(&h, 7, &[NodeId(3)], &k),
            Err(FrameError::UnknownNode(2))
        );
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(
            read_header(&bad, 7, &[NodeId(2)], &k),
            Err(FrameError::BadMagic)
        );
        let mut bad = h;
        bad[4] = 9;
        assert_eq!(
            read_header(&bad, 7, &[NodeId(2)], &k),
            Err(FrameError::BadVersion(9))
        );
        let mut bad = h;
        bad[6] = 5;
        assert_eq!(
            read_header(&bad, 7, &[NodeId(2)], &k),
            Err(FrameError::BadKind(5))
        );
        let mut bad = h;
        bad[5] = 4;
        assert_eq!(
            read_header(&bad, 7, &[NodeId(2)], &k),
            Err(FrameError::UnknownKey(4))
        );
        let mut bad = h;
        bad[32..36].copy_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        assert_eq!(
            read_header(&bad, 7, &[NodeId(2)], &k),
            Err(FrameError::TooLarge(MAX_PAYLOAD + 1))
        );
    }
}
