//! Known-answer vectors, drop reasons, key rotation and property tests for the heartbeat.

use super::*;
use proptest::prelude::*;

fn key(seed: u8) -> Vec<u8> {
    (0..32u8).map(|b| b.wrapping_add(seed)).collect()
}

fn ring(send: u8, ids: &[u8]) -> Keyring {
    let keys = ids.iter().map(|&id| (id, key(id - 1))).collect();
    Keyring::new(send, keys).unwrap()
}

fn hb(node: u16, generation: u64, seq: u64) -> Heartbeat {
    Heartbeat {
        cluster: 1,
        node: NodeId(node),
        generation,
        seq,
        state: State::Standby,
        priority: 100,
        health: Health::OK,
        intent: Intent::Normal,
    }
}

/// Node 1's receiver, peers 1 (itself) and 2, accepting key 1.
fn receiver() -> Receiver {
    Receiver::new(1, NodeId(1), [NodeId(1), NodeId(2)], ring(1, &[1]))
}

// Key 1 is bytes 0x00..=0x1f. Header, field by field (see the layout table):
//   4e4e4841 magic "NNHA" | 01 version | 01 key id | 00000001 cluster 1 | 0002 node 2
//   0000000000000003 generation 3 | 0102030405060708 seq | 03 Active | 96 priority 150
//   0005 health NOVA_PROCESS|LINKS | 01 intent Normal
// Tag: HMAC-SHA256(key, header), computed once with Python's hmac module.
const KAT_HEX: &str = "4e4e48410101000000010002000000000000000301020304050607080396000501\
                       6927a65e9633b27a419d5ff4d4397fc219fd06018743fd3f041625bafe5bd122";

fn kat_heartbeat() -> Heartbeat {
    Heartbeat {
        cluster: 1,
        node: NodeId(2),
        generation: 3,
        seq: 0x0102_0304_0506_0708,
        state: State::Active,
        priority: 150,
        health: Health::NOVA_PROCESS | Health::LINKS,
        intent: Intent::Normal,
    }
}

#[test]
fn known_answer_encode() {
    let p = encode(&kat_heartbeat(), &ring(1, &[1]));
    assert_eq!(PACKET_LEN, 65);
    assert_eq!(hex::encode(p), KAT_HEX);
}

#[test]
fn known_answer_accept() {
    let bytes = hex::decode(KAT_HEX).unwrap();
    assert_eq!(receiver().accept(&bytes), Ok(kat_heartbeat()));
}

#[test]
fn mac_matches_rfc4231() {
    // RFC 4231 test case 1 (short key) and 6 (key longer than the block: hashed first).
    let mut m = mac(&[0x0b; 20]);
    m.update(b"Hi There");
    assert_eq!(
        hex::encode(m.finalize().into_bytes()),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    let mut m = mac(&[0xaa; 131]);
    m.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
    assert_eq!(
        hex::encode(m.finalize().into_bytes()),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

#[test]
fn round_trip() {
    let mut r = receiver();
    let h = Heartbeat {
        health: Health::QUEUE,
        state: State::Fault,
        ..hb(2, 7, 9)
    };
    assert_eq!(r.accept(&encode(&h, &ring(1, &[1]))), Ok(h));
    assert_eq!(r.accepted(), 1);
    assert_eq!(r.last_seen(NodeId(2)), Some((7, 9)));
    assert_eq!(r.counters().total(), 0);
}

fn drop_of(r: &mut Receiver, bytes: &[u8]) -> DropReason {
    match r.accept(bytes) {
        Ok(h) => panic!("accepted {h:?}"),
        Err(e) => e,
    }
}

#[test]
fn each_drop_reason_is_counted() {
    let keys = ring(1, &[1]);
    let good = encode(&hb(2, 1, 1), &keys);
    let mut r = receiver();
    let expect = |r: &mut Receiver, bytes: &[u8], reason: DropReason| {
        let before = r.counters().get(reason);
        assert_eq!(drop_of(r, bytes), reason);
        assert_eq!(r.counters().get(reason), before + 1, "{reason}");
    };

    let mut b = good;
    b[0] = b'X';
    expect(&mut r, &b, DropReason::BadMagic);
    let mut b = good;
    b[4] = 2;
    expect(&mut r, &b, DropReason::BadVersion);
    expect(&mut r, &good[..PACKET_LEN - 1], DropReason::Truncated);
    expect(&mut r, &good[..3], DropReason::Truncated);
    expect(&mut r, &good[..4], DropReason::Truncated);
    expect(&mut r, &[], DropReason::Truncated);
    let mut long = good.to_vec();
    long.push(0);
    expect(&mut r, &long, DropReason::Oversized);
    expect(
        &mut r,
        &encode(
            &Heartbeat {
                cluster: 2,
                ..hb(2, 1, 1)
            },
            &keys,
        ),
        DropReason::WrongCluster,
    );
    expect(
        &mut r,
        &encode(&hb(3, 1, 1), &keys),
        DropReason::UnknownNode,
    );
    expect(&mut r, &encode(&hb(1, 1, 1), &keys), DropReason::FromSelf);
    expect(
        &mut r,
        &encode(&hb(2, 1, 1), &ring(9, &[9])),
        DropReason::UnknownKey,
    );
    // Same key id, another secret.
    let other = Keyring::new(1, [(1, vec![0x55; 32])].into()).unwrap();
    expect(&mut r, &encode(&hb(2, 1, 1), &other), DropReason::BadTag);
    // A valid tag over an unknown state code: build it by hand.
    let mut b = good;
    b[28] = 200;
    let mut m = mac(&key(0));
    m.update(&b[..HEADER_LEN]);
    b[HEADER_LEN..].copy_from_slice(&m.finalize().into_bytes());
    expect(&mut r, &b, DropReason::BadState);
    // Likewise an unknown intent code.
    let mut b = good;
    b[32] = 7;
    let mut m = mac(&key(0));
    m.update(&b[..HEADER_LEN]);
    b[HEADER_LEN..].copy_from_slice(&m.finalize().into_bytes());
    expect(&mut r, &b, DropReason::BadState);

    assert_eq!(
        r.accept(&encode(&hb(2, 5, 10), &keys)).map(|h| h.seq),
        Ok(10)
    );
    expect(&mut r, &encode(&hb(2, 5, 10), &keys), DropReason::Replay);
    expect(&mut r, &encode(&hb(2, 5, 9), &keys), DropReason::Replay);
    expect(
        &mut r,
        &encode(&hb(2, 4, 99), &keys),
        DropReason::OldGeneration,
    );
    // A restart (higher generation) starts over at any sequence.
    assert!(r.accept(&encode(&hb(2, 6, 0), &keys)).is_ok());
    assert!(r.accept(&encode(&hb(2, 6, 1), &keys)).is_ok());

    assert_eq!(r.accepted(), 3);
    assert!(r.counters().iter().all(|(_, n)| n >= 1));
    assert_eq!(r.counters().total(), 17);
}

#[test]
fn unauthenticated_packets_do_not_touch_replay_state() {
    let keys = ring(1, &[1]);
    let mut r = receiver();
    assert!(r.accept(&encode(&hb(2, 1, 1), &keys)).is_ok());
    // A forged packet with a huge generation and sequence must not lock the peer out.
    let forged = encode(&hb(2, u64::MAX, u64::MAX), &ring(2, &[2]));
    let mut forged_k1 = forged;
    forged_k1[5] = 1; // claim key 1, tag made with key 2's secret
    assert_eq!(drop_of(&mut r, &forged_k1), DropReason::BadTag);
    assert_eq!(r.last_seen(NodeId(2)), Some((1, 1)));
    assert!(r.accept(&encode(&hb(2, 1, 2), &keys)).is_ok());
}

#[test]
fn rotation_accepts_an_older_key() {
    // The sender still signs with key 1; the receiver already sends with 2 but accepts both.
    let old = ring(1, &[1]);
    let mut r = Receiver::new(1, NodeId(1), [NodeId(2)], ring(2, &[1, 2]));
    assert!(r.accept(&encode(&hb(2, 1, 1), &old)).is_ok());
    assert!(r.accept(&encode(&hb(2, 1, 2), &ring(2, &[1, 2]))).is_ok());
    // Once key 1 is retired it is unknown.
    r.set_keyring(ring(2, &[2]));
    assert_eq!(
        drop_of(&mut r, &encode(&hb(2, 1, 3), &old)),
        DropReason::UnknownKey
    );
}

#[test]
fn drop_reasons_display_lowercase() {
    for r in DropReason::ALL {
        let s = r.to_string();
        assert_eq!(s, s.to_lowercase());
    }
}

fn any_state() -> impl Strategy<Value = State> {
    (0u8..=5).prop_map(|c| State::from_u8(c).unwrap())
}

prop_compose! {
    fn any_heartbeat()(
        generation in any::<u64>(),
        seq in any::<u64>(),
        state in any_state(),
        priority in any::<u8>(),
        health in any::<u16>(),
        intent in prop_oneof![Just(Intent::Yield), Just(Intent::Normal), Just(Intent::Takeover), Just(Intent::Retreat)],
    ) -> Heartbeat {
        Heartbeat { cluster: 1, node: NodeId(2), generation, seq, state, priority, health: Health(health), intent }
    }
}

proptest! {
    #[test]
    fn prop_round_trip(h in any_heartbeat(), cluster in any::<u32>(), node in 2u16..) {
        let h = Heartbeat { cluster, node: NodeId(node), ..h };
        let mut r = Receiver::new(cluster, NodeId(1), [NodeId(node)], ring(1, &[1]));
        prop_assert_eq!(r.accept(&encode(&h, &ring(1, &[1]))), Ok(h));
    }

    #[test]
    fn prop_arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut r = receiver();
        prop_assert!(r.accept(&bytes).is_err());
        prop_assert_eq!(r.counters().total(), 1);
    }

    #[test]
    fn prop_arbitrary_header_never_verifies(mut bytes in proptest::collection::vec(any::<u8>(), PACKET_LEN)) {
        // Past the cheap checks, so the tag is what must refuse it.
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4] = VERSION;
        bytes[5] = 1;
        bytes[6..10].copy_from_slice(&1u32.to_be_bytes());
        bytes[10..12].copy_from_slice(&2u16.to_be_bytes());
        prop_assert_eq!(receiver().accept(&bytes), Err(DropReason::BadTag));
    }

    #[test]
    fn prop_any_bit_flip_fails(h in any_heartbeat(), bit in 0usize..PACKET_LEN * 8) {
        let mut p = encode(&h, &ring(1, &[1]));
        p[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(receiver().accept(&p).is_err());
    }
}
