//! Deterministic simulation of the failover state machine (docs/design.md section 3, `cluster`;
//! section 5, split brain). Thousands of seeded runs over 2 to 5 nodes with loss, duplication,
//! delay and reordering, partitions, crashes and restarts, health failures and operator
//! requests. A failure prints its seed; replay one with `NNHA_SIM_SEED=<seed>`.

use std::time::Duration;

use nova_network_ha::cluster::sim::{Sim, SimParams};
use nova_network_ha::cluster::{AlertKind, Probe, Request, RespawnPolicy, State, Timers};
use rand::Rng;

const MS: Duration = Duration::from_millis(1);

pub(crate) fn timers() -> Timers {
    Timers {
        keepalive: 100 * MS,
        warntime: 200 * MS,
        deadtime: 400 * MS,
        initdead: 1000 * MS,
    }
}

/// Seeded network and driver behaviour: 2 to 5 nodes, up to 10 % loss, duplicates, delays up
/// to a fifth of the keepalive (so packets reorder).
fn random_params(seed: u64) -> SimParams {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5eed);
    SimParams {
        nodes: rng.gen_range(2..=5),
        paths: rng.gen_range(1..=2),
        timers: timers(),
        auto_failback: rng.gen_bool(0.3),
        loss: rng.gen_range(0.0..0.10),
        duplicate: rng.gen_range(0.0..0.05),
        min_delay: MS / 10,
        max_delay: rng.gen_range(1..=20) * MS,
        takeover_time: rng.gen_range(1..=200) * MS,
        release_time: rng.gen_range(1..=100) * MS,
        respawn: RespawnPolicy::default(),
        queue_interval: None,
        zombie_linger: Duration::from_secs(5),
    }
}

/// The bound on two nodes both Active in a connected network: deadtime plus one keepalive.
fn fencing_bound(p: &SimParams) -> Duration {
    p.timers.deadtime + p.timers.keepalive
}

/// Bound from a cause (crash, request, health) to a new Active: detection plus a keepalive,
/// the peers' delays, a release and a takeover.
fn move_bound(p: &SimParams) -> Duration {
    p.timers.deadtime + p.timers.keepalive + 2 * p.max_delay + p.release_time + p.takeover_time
}

fn check_fencing(sim: &Sim) -> Result<(), String> {
    let longest = sim.longest_multi_active_connected();
    if longest > fencing_bound(sim.params()) {
        return Err(format!(
            "two nodes Active for {longest:?} in a connected network (bound {:?})",
            fencing_bound(sim.params())
        ));
    }
    Ok(())
}

/// Run until exactly one node is Active (or `limit` passes), stepping a keepalive at a time.
fn settle(sim: &mut Sim, limit: Duration) -> Result<usize, String> {
    let end = sim.elapsed() + limit;
    while sim.elapsed() < end {
        if let [only] = sim.active()[..] {
            return Ok(only);
        }
        sim.run_for(10 * MS);
    }
    Err(format!(
        "no single Active after {limit:?}: active {:?}, states {:?}",
        sim.active(),
        (0..sim.params().nodes)
            .map(|i| sim.state(i))
            .collect::<Vec<_>>()
    ))
}

fn cold_start(sim: &mut Sim) -> Result<usize, String> {
    let p = *sim.params();
    sim.run_until(p.timers.initdead);
    settle(sim, move_bound(&p) + p.timers.initdead)
}

/// Section 3: a healthy standby takes over within deadtime plus a keepalive plus the takeover
/// time after the active crashes; with everyone started together, the highest priority wins.
fn scenario_crash_of_active(seed: u64) -> Result<(), String> {
    let p = random_params(seed);
    let mut sim = Sim::new(seed, p);
    let first = cold_start(&mut sim)?;
    if first != 0 && p.loss == 0.0 {
        return Err(format!(
            "cold start elected node {first}, not the highest priority 0"
        ));
    }
    let wait = sim.rng().gen_range(0..500) * MS;
    sim.run_for(wait);
    let holder = match sim.active()[..] {
        [only] => only,
        ref other => return Err(format!("before the crash: active {other:?}")),
    };
    sim.crash(holder);
    let crashed_at = sim.elapsed();
    let bound = p.timers.deadtime + p.timers.keepalive + p.max_delay + p.takeover_time;
    let next = settle(&mut sim, bound + 500 * MS)?;
    let took = sim.elapsed() - crashed_at;
    // settle() samples every 10 ms.
    if took > bound + 10 * MS {
        return Err(format!(
            "new active {next} after {took:?} (bound {bound:?})"
        ));
    }
    if next == holder {
        return Err("the crashed node is active".into());
    }
    check_fencing(&sim)
}

/// Section 5: random faults of every kind; connected periods never have two Active for longer
/// than the fencing bound; after healing and quiet for initdead, exactly one Active.
fn scenario_chaos(seed: u64) -> Result<(), String> {
    let p = random_params(seed);
    let n = p.nodes;
    let mut sim = Sim::new(seed, p);
    let probes = [Probe::NovaProcess, Probe::Queue, Probe::PingNode];
    for _ in 0..20 {
        let wait = sim.rng().gen_range(50..600) * MS;
        sim.run_for(wait);
        check_fencing(&sim)?;
        let a = sim.rng().gen_range(0..n);
        let b = (a + sim.rng().gen_range(1..n)) % n;
        match sim.rng().gen_range(0..14) {
            0 => sim.crash(a),
            1 | 2 => sim.restart(a),
            3 => sim.cut(a, b),
            4 => sim.cut_one_way(a, b),
            5 => {
                let path = sim.rng().gen_range(0..p.paths);
                sim.cut_path(a, b, path)
            }
            6 => sim.isolate(a),
            7 | 8 => sim.heal(),
            9 => {
                let probe = probes[sim.rng().gen_range(0..probes.len())];
                sim.health(a, probe, false)
            }
            10 => {
                for probe in probes {
                    sim.health(a, probe, true)
                }
            }
            11 => sim.request(a, Request::Takeover),
            12 => sim.request(a, Request::Standby),
            _ => sim.fail_next_takeover(a, "addrs"),
        }
    }
    // Heal everything, let running steps finish, clear faults as an operator would, and stay
    // quiet.
    sim.heal();
    sim.disarm_failures();
    for i in 0..n {
        sim.restart(i);
        for probe in probes {
            sim.health(i, probe, true);
        }
    }
    sim.run_for(p.takeover_time + p.release_time);
    for i in 0..n {
        if sim.state(i) == Some(State::Fault) {
            sim.request(i, Request::Standby);
        }
    }
    sim.run_for(p.timers.initdead + move_bound(&p));
    check_fencing(&sim)?;
    let active = sim.active();
    if active.len() != 1 {
        return Err(with_trace(
            &sim,
            format!(
                "after healing: active {active:?}, states {:?}",
                (0..n).map(|i| sim.state(i)).collect::<Vec<_>>()
            ),
        ));
    }
    Ok(())
}

/// auto_failback off: restarts of standbys (even of higher priority), duplicates and
/// reordering move nothing: the service moves once (cold start) and never again.
fn scenario_no_move_without_cause(seed: u64) -> Result<(), String> {
    let mut p = random_params(seed);
    p.auto_failback = false;
    p.loss = 0.0;
    let n = p.nodes;
    let mut sim = Sim::new(seed, p);
    let holder = cold_start(&mut sim)?;
    for _ in 0..5 {
        let standby = (holder + sim.rng().gen_range(1..n)) % n;
        sim.crash(standby);
        let down = sim.rng().gen_range(100..2000) * MS;
        sim.run_for(down);
        sim.restart(standby);
        let up = sim.rng().gen_range(100..2000) * MS;
        sim.run_for(up);
    }
    sim.run_for(p.timers.initdead);
    if sim.moves() != 0 || sim.active() != vec![holder] {
        return Err(format!(
            "moves {} (expected 0), active {:?} (expected [{holder}])",
            sim.moves(),
            sim.active()
        ));
    }
    check_fencing(&sim)
}

/// auto_failback on: a returning higher-priority node takes the service back, once.
fn scenario_failback(seed: u64) -> Result<(), String> {
    let mut p = random_params(seed);
    p.auto_failback = true;
    p.loss = 0.0;
    let mut sim = Sim::new(seed, p);
    if cold_start(&mut sim)? != 0 {
        return Err("cold start did not elect the highest priority".into());
    }
    sim.crash(0);
    let second = settle(&mut sim, move_bound(&p) + 500 * MS)?;
    sim.restart(0);
    sim.run_for(p.timers.initdead);
    let back = settle(&mut sim, move_bound(&p) + 500 * MS)?;
    if back != 0 || sim.moves() != 2 {
        return Err(format!(
            "after node 0 returned: active {back} (expected 0), moves {} (expected 2; second {second})",
            sim.moves()
        ));
    }
    check_fencing(&sim)
}

/// Operator requests and a planned stop move the service at once, to the right node.
fn scenario_operator(seed: u64) -> Result<(), String> {
    let mut p = random_params(seed);
    p.loss = 0.0;
    let n = p.nodes;
    let mut sim = Sim::new(seed, p);
    let holder = cold_start(&mut sim)?;
    let bound = p.timers.keepalive + 2 * p.max_delay + p.release_time + p.takeover_time;
    // takeover on a standby: it becomes the holder.
    let wanted = (holder + sim.rng().gen_range(1..n)) % n;
    sim.run_for(p.timers.keepalive);
    sim.request(wanted, Request::Takeover);
    let got =
        settle_on(&mut sim, wanted, bound).map_err(|e| format!("takeover on {wanted}: {e}"))?;
    // standby on the holder: someone else holds it.
    sim.run_for(p.timers.keepalive);
    sim.request(got, Request::Standby);
    let next = settle_other(&mut sim, got, bound).map_err(|e| format!("standby on {got}: {e}"))?;
    // planned stop of the holder: someone else holds it, the stopped node is gone.
    sim.run_for(p.timers.keepalive);
    sim.shutdown(next);
    settle_other(&mut sim, next, bound).map_err(|e| format!("shutdown of {next}: {e}"))?;
    if sim.is_up(next) {
        return Err(format!("node {next} did not stop"));
    }
    check_fencing(&sim)
}

/// A failing local probe on the holder releases it; a healthy standby takes over; the failed
/// node stays Fault and never takes over while failing.
/// Section 3 (`cluster`, health): a failing probe releases at once and the service moves. A
/// probe of the node itself (links) keeps it in Fault: it never takes over, even alone. The
/// probes that judged its nova-network (process, queue, log lines) judged the one the release
/// stopped: they pass again and the node is a standby that ranks last (retreat), so it does not
/// take the service back, yet takes it once every other node is gone.
fn scenario_health(seed: u64) -> Result<(), String> {
    let mut p = random_params(seed);
    p.loss = 0.0;
    // Once the retreat ends, auto_failback would rightly move the service back.
    p.auto_failback = false;
    let mut sim = Sim::new(seed, p);
    let holder = cold_start(&mut sim)?;
    let probe = [Probe::Links, Probe::Queue, Probe::NovaProcess, Probe::Log][seed as usize % 4];
    let of_nova = probe != Probe::Links;
    sim.health(holder, probe, false);
    let bound = p.timers.keepalive + 2 * p.max_delay + p.release_time + p.takeover_time;
    let next = settle_other(&mut sim, holder, bound)?;
    let expected = if of_nova {
        State::Standby
    } else {
        State::Fault
    };
    if sim.state(holder) != Some(expected) {
        return Err(format!(
            "failed node ({}) is {:?}, expected {expected:?}",
            probe.name(),
            sim.state(holder)
        ));
    }
    sim.run_for(p.timers.deadtime * 3);
    if sim.active() != [next] {
        return Err(with_trace(
            &sim,
            format!(
                "the service moved again (active {:?}) after the release",
                sim.active()
            ),
        ));
    }
    // Every other node gone: a node failing its own probe does not take over; one whose
    // nova-network probe failed (and was released) does.
    for i in 0..p.nodes {
        if i != holder {
            sim.crash(i);
        }
    }
    sim.run_for(p.timers.deadtime * 3 + p.takeover_time);
    let want: Vec<usize> = if of_nova { vec![holder] } else { vec![] };
    if sim.active() != want {
        return Err(format!(
            "active {:?} with only the once-failing node up (probe {})",
            sim.active(),
            probe.name()
        ));
    }
    if !sim
        .alerts()
        .iter()
        .any(|(i, k)| *i == holder && *k == AlertKind::Fault)
    {
        return Err("no fault alert".into());
    }
    Ok(())
}

/// Section 4 (nova-network child, respawn budget): exits of the active's nova-network are
/// restarted in place, with back-off, up to the budget; the service does not move. A
/// nova-network that ran for `stable_after` starts a new episode with the whole budget. One
/// exit more than the budget moves the service within the bound, and the old holder is a
/// standby again (its nova-network probe went with the release).
fn scenario_respawn(seed: u64) -> Result<(), String> {
    let mut p = random_params(seed);
    p.loss = 0.0;
    // With auto_failback the service rightly goes back once the retreat ends.
    p.auto_failback = false;
    p.respawn = RespawnPolicy {
        budget: (seed % 4) as u32,
        first_backoff: 500 * MS,
        max_backoff: 2000 * MS,
        stable_after: 5000 * MS,
    };
    let mut sim = Sim::new(seed, p);
    let holder = cold_start(&mut sim)?;
    let mut restarts = 0;
    for round in 0..2 {
        for _ in 0..p.respawn.budget {
            sim.nova_exit(holder);
            sim.run_for(p.respawn.max_backoff + p.timers.keepalive);
            restarts += 1;
            if sim.active() != [holder] || !sim.nova_runs(holder) {
                return Err(with_trace(
                    &sim,
                    format!(
                        "round {round}: after restart {restarts} active {:?}, nova runs {}",
                        sim.active(),
                        sim.nova_runs(holder)
                    ),
                ));
            }
        }
        if sim.restarts(holder) != restarts {
            return Err(format!(
                "{} restarts in place, expected {restarts}",
                sim.restarts(holder)
            ));
        }
        if round == 0 {
            // A stable run: the next exits are a new episode.
            sim.run_for(p.respawn.stable_after);
        }
    }
    sim.nova_exit(holder);
    let bound = p.timers.keepalive + 2 * p.max_delay + p.release_time + p.takeover_time;
    settle_other(&mut sim, holder, bound)?;
    if sim.state(holder) != Some(State::Standby) {
        return Err(format!(
            "the node whose nova-network kept exiting is {:?}, expected Standby",
            sim.state(holder)
        ));
    }
    check_fencing(&sim)
}

/// Section 5 (zombie witness): after the active crashes, its nova-network stays a consumer of
/// the queue until the broker notices (`zombie_linger`). The new active reports it once for
/// the episode; in a run without a crash nobody reports one.
fn scenario_zombie(seed: u64) -> Result<(), String> {
    let mut p = random_params(seed);
    p.loss = 0.0;
    p.queue_interval = Some(1000 * MS);
    p.zombie_linger = Duration::from_millis(2000 + (seed % 6) * 1000);
    let mut sim = Sim::new(seed, p);
    let holder = cold_start(&mut sim)?;
    sim.run_for(10 * p.zombie_linger);
    let zombies = |sim: &Sim, node: usize| {
        sim.alerts()
            .iter()
            .filter(|(i, k)| *i == node && *k == AlertKind::SplitBrain)
            .count()
    };
    if let Some(n) = (0..p.nodes).find(|&n| zombies(&sim, n) > 0) {
        return Err(with_trace(
            &sim,
            format!("node {n} reported a zombie without a crash"),
        ));
    }
    sim.crash(holder);
    let next = settle(&mut sim, move_bound(&p) + 500 * MS)?;
    sim.run_for(p.zombie_linger + 3000 * MS);
    match zombies(&sim, next) {
        1 => Ok(()),
        n => Err(with_trace(
            &sim,
            format!("the new active {next} reported {n} zombie(s) for one episode"),
        )),
    }
}

fn settle_on(sim: &mut Sim, want: usize, bound: Duration) -> Result<usize, String> {
    let start = sim.elapsed();
    let got = settle_where(sim, |a| a == want, bound + 500 * MS)?;
    let took = sim.elapsed() - start;
    if took > bound + 10 * MS {
        return Err(format!(
            "node {want} active after {took:?} (bound {bound:?})"
        ));
    }
    Ok(got)
}

fn settle_other(sim: &mut Sim, not: usize, bound: Duration) -> Result<usize, String> {
    let start = sim.elapsed();
    let got = settle_where(sim, |a| a != not, bound + 500 * MS)?;
    let took = sim.elapsed() - start;
    if took > bound + 10 * MS {
        return Err(with_trace(
            sim,
            format!("another node active after {took:?} (bound {bound:?})"),
        ));
    }
    Ok(got)
}

fn settle_where(
    sim: &mut Sim,
    ok: impl Fn(usize) -> bool,
    limit: Duration,
) -> Result<usize, String> {
    let end = sim.elapsed() + limit;
    while sim.elapsed() < end {
        if let [only] = sim.active()[..]
            && ok(only)
        {
            return Ok(only);
        }
        sim.run_for(MS);
    }
    Err(with_trace(
        sim,
        format!(
            "not settled after {limit:?}: active {:?}, states {:?}",
            sim.active(),
            (0..sim.params().nodes)
                .map(|i| sim.state(i))
                .collect::<Vec<_>>()
        ),
    ))
}

/// The error, followed by the run's alerts when NNHA_SIM_TRACE is set.
fn with_trace(sim: &Sim, error: String) -> String {
    if std::env::var_os("NNHA_SIM_TRACE").is_none() {
        return error;
    }
    format!("{error}\n{}", sim.trace().join("\n"))
}

/// Runs `scenario` over `runs` seeds (or the one in NNHA_SIM_SEED) and names every failing seed.
fn many(name: &str, runs: u64, scenario: fn(u64) -> Result<(), String>) {
    let seeds: Vec<u64> = match std::env::var("NNHA_SIM_SEED") {
        Ok(s) => s.parse().map(|s| vec![s]).unwrap_or_default(),
        Err(_) => (0..runs).collect(),
    };
    let failures: Vec<String> = seeds
        .iter()
        .filter_map(|&seed| {
            scenario(seed)
                .err()
                .map(|e| format!("{name} seed {seed}: {e} (replay: NNHA_SIM_SEED={seed})"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}

#[test]
fn crash_of_active_fails_over_within_bound() {
    many("crash_of_active", 3000, scenario_crash_of_active);
}

#[test]
fn chaos_keeps_fencing_bound_and_converges() {
    many("chaos", 4000, scenario_chaos);
}

#[test]
fn no_move_without_cause() {
    many(
        "no_move_without_cause",
        1000,
        scenario_no_move_without_cause,
    );
}

#[test]
fn auto_failback_moves_back_once() {
    many("failback", 500, scenario_failback);
}

#[test]
fn operator_requests_and_planned_stop_move_at_once() {
    many("operator", 1000, scenario_operator);
}

#[test]
fn failing_health_releases_and_never_takes_over() {
    many("health", 1000, scenario_health);
}

#[test]
fn respawn_budget_restarts_in_place_then_moves_the_service() {
    many("respawn", 200, scenario_respawn);
}

#[test]
fn a_crashed_actives_consumer_is_reported_once_as_a_zombie() {
    many("zombie", 200, scenario_zombie);
}
