//! The failover state machine on a simulated pair, as `scripts/demo` shows it: the seed's
//! heartbeat timers and ours, a power-off of the active node, a planned stop and an operator
//! takeover. Virtual time, the real `cluster::Node`; no network is touched.

use std::time::Duration;

use nova_network_ha::cluster::Timers;
use nova_network_ha::cluster::sim::{Sim, SimParams};

const MS: Duration = Duration::from_millis(1);

fn show(sim: &Sim, from: usize) -> usize {
    for line in &sim.trace()[from..] {
        println!("    {line}");
    }
    sim.trace().len()
}

fn active_after(sim: &mut Sim, not: usize, limit: Duration) -> Option<Duration> {
    let start = sim.elapsed();
    while sim.elapsed() < start + limit {
        if let [only] = sim.active()[..]
            && only != not
        {
            return Some(sim.elapsed() - start);
        }
        sim.run_for(MS);
    }
    None
}

fn scenario(title: &str, timers: Timers) {
    println!(
        "\n== {title}: keepalive {:?}, deadtime {:?}, initdead {:?}",
        timers.keepalive, timers.deadtime, timers.initdead
    );
    let mut params = SimParams::pair(timers);
    params.takeover_time = 20 * MS;
    params.release_time = 20 * MS;
    let mut sim = Sim::new(1, params);
    sim.run_until(timers.initdead + Duration::from_secs(1));
    println!("  cold start (n0 = server-01, priority 200; n1 = server-02, priority 190):");
    let mut seen = show(&sim, 0);

    println!("  server-01 powered off at {:?}:", sim.elapsed());
    sim.crash(0);
    let took = active_after(&mut sim, 0, timers.deadtime * 3);
    seen = show(&sim, seen);
    match took {
        Some(t) => println!(
            "  -> server-02 active {t:?} after the power-off (deadtime + 20 ms simulated takeover)"
        ),
        None => println!("  -> no takeover (unexpected)"),
    }

    sim.restart(0);
    sim.run_for(timers.initdead + Duration::from_secs(1));
    seen = show(&sim, seen);
    println!(
        "  server-01 back: auto_failback off, so server-02 keeps the service; now a planned stop of server-02 at {:?}:",
        sim.elapsed()
    );
    sim.shutdown(1);
    let took = active_after(&mut sim, 1, timers.deadtime * 3);
    show(&sim, seen);
    if let Some(t) = took {
        println!(
            "  -> server-01 active {t:?} after the planned stop (no deadtime to wait: the stopping node says so)"
        );
    }
}

fn main() {
    println!("nova-network-ha: the failover state machine on a simulated pair (virtual clock)");
    scenario(
        "the seed's heartbeat timers",
        Timers {
            keepalive: 250 * MS,
            warntime: 3000 * MS,
            deadtime: 4000 * MS,
            initdead: 8000 * MS,
        },
    );
    scenario(
        "our fast timers",
        Timers {
            keepalive: 100 * MS,
            warntime: 200 * MS,
            deadtime: 300 * MS,
            initdead: 1000 * MS,
        },
    );
}
