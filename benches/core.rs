//! Figures for the pure core: heartbeat sign+encode and decode+verify per packet, one
//! state-machine step, and simulation runs per second. Prints figures; asserts nothing.
//!
//! Run with `cargo bench --bench core` (or `scripts/bench/core`).
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock to time itself

use std::hint::black_box;
use std::time::{Duration, Instant};

use nova_network_ha::cluster::sim::{Sim, SimParams};
use nova_network_ha::cluster::{
    ClusterConfig, Input, Intent, Member, Node, NodeId, PathId, PeerBeat, State, Timers,
};
use nova_network_ha::wire::{self, Health, Heartbeat, Keyring, Receiver};

/// Runs `f` in batches until `budget` passes; returns nanoseconds per call (best batch).
fn per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    let batch = 10_000u32;
    let start = Instant::now();
    let mut best = f64::MAX;
    while start.elapsed() < budget {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(batch);
        best = best.min(ns);
    }
    best
}

fn keyring() -> Keyring {
    Keyring::new(1, [(1u8, vec![0x42; 32])].into()).unwrap_or_else(|e| panic!("{e}"))
}

fn heartbeat(seq: u64) -> Heartbeat {
    Heartbeat {
        cluster: 1,
        node: NodeId(2),
        generation: 1,
        seq,
        state: State::Active,
        priority: 100,
        health: Health::OK,
        intent: Intent::Normal,
    }
}

fn timers() -> Timers {
    Timers {
        keepalive: Duration::from_millis(100),
        warntime: Duration::from_millis(200),
        deadtime: Duration::from_millis(400),
        initdead: Duration::from_millis(1000),
    }
}

fn main() {
    let budget = Duration::from_secs(2);
    let keys = keyring();

    let mut seq = 0u64;
    let encode_ns = per_call(budget, || {
        seq += 1;
        black_box(wire::encode(black_box(&heartbeat(seq)), &keys));
    });

    // Pre-encoded packets with growing sequence numbers, so each one is fresh (not a replay).
    let packets: Vec<_> = (1..=200_000u64)
        .map(|s| wire::encode(&heartbeat(s), &keys))
        .collect();
    let mut receiver = Receiver::new(1, NodeId(1), [NodeId(1), NodeId(2)], keys.clone());
    let mut i = 0usize;
    let mut rejected = 0u64;
    let verify_ns = per_call(budget, || {
        let p = &packets[i % packets.len()];
        i += 1;
        if receiver.accept(black_box(p)).is_err() {
            rejected += 1;
        }
    });
    // Wrapping around replays old sequences: those are dropped after the tag check, which is
    // the expensive part either way.

    let cfg = ClusterConfig {
        me: NodeId(1),
        members: vec![
            Member {
                id: NodeId(1),
                name: "a".into(),
                priority: 150,
            },
            Member {
                id: NodeId(2),
                name: "b".into(),
                priority: 100,
            },
        ],
        paths: 2,
        timers: timers(),
        auto_failback: false,
        path_names: Vec::new(),
        respawn: nova_network_ha::cluster::RespawnPolicy::default(),
    };
    let t0 = Instant::now();
    let mut node = Node::new(&cfg, 1, t0);
    let mut now = t0;
    let mut beat_seq = 0u64;
    let step_ns = per_call(budget, || {
        now += Duration::from_micros(50);
        beat_seq += 1;
        let input = Input::Heartbeat(PeerBeat {
            from: NodeId(2),
            path: PathId((beat_seq % 2) as u8),
            generation: 1,
            seq: beat_seq,
            state: State::Standby,
            intent: Intent::Normal,
            health: 0,
        });
        black_box(node.handle(now, input));
        black_box(node.deadline());
    });

    let mut runs = 0u64;
    let mut events = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let mut params = SimParams::pair(timers());
        params.nodes = 3;
        params.loss = 0.05;
        let mut sim = Sim::new(runs, params);
        sim.run_until(Duration::from_secs(2));
        sim.crash(0);
        sim.run_until(Duration::from_secs(4));
        events += sim.steps();
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64();

    println!("nova-network-ha core benchmarks (best batch of 10,000 calls, {budget:?} each)");
    println!("  heartbeat sign+encode:     {encode_ns:>8.0} ns/packet  (target < 2000)");
    println!("  heartbeat decode+verify:   {verify_ns:>8.0} ns/packet  (target < 2000)");
    println!("  state machine step:        {step_ns:>8.0} ns/input   (target < 1000)");
    println!(
        "  simulation (3 nodes, 4 s virtual, crash of the active): {:.0} runs/s, {:.0} events/s",
        runs as f64 / secs,
        events as f64 / secs
    );
    black_box(rejected);
}
