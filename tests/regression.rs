//! One test per bug found, named after the bug, with the scenario that found it (so it stays
//! found). Most are pure; the lab ones skip without root, like the lab's.

use std::time::{Duration, Instant};

use nova_network_ha::cluster::sim::{Sim, SimParams};
use nova_network_ha::cluster::{
    Action, ClusterConfig, Input, Intent, Member, Node, NodeId, PathId, PeerBeat, RespawnPolicy,
    State, StepFailed,
};

use crate::cli::{Setup, repo};
use crate::lab::harness::Lab;

use crate::simulation::timers;

const MS: Duration = Duration::from_millis(1);

fn pair(me: u16, respawn: RespawnPolicy) -> ClusterConfig {
    ClusterConfig {
        me: NodeId(me),
        members: vec![
            Member {
                id: NodeId(1),
                name: "net1".into(),
                priority: 150,
            },
            Member {
                id: NodeId(2),
                name: "net2".into(),
                priority: 100,
            },
        ],
        paths: 1,
        timers: timers(),
        auto_failback: false,
        path_names: vec!["hb0".into()],
        respawn,
    }
}

fn details(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(alert) => Some(alert.detail.clone()),
            _ => None,
        })
        .collect()
}

/// Found in review (issue 10): a failed takeover step reached the state machine as the whole
/// error text, so the fault read "takeover failed at step step procs failed after 3
/// attempt(s): ...". The step and the error now travel apart.
#[test]
#[allow(clippy::disallowed_methods)] // an epoch to add virtual time to
fn regression_a_failed_step_was_named_step_step() {
    let t0 = Instant::now();
    let mut node = Node::new(&pair(1, RespawnPolicy::default()), 1, t0);
    node.handle(t0 + 1000 * MS, Input::Timer);
    assert_eq!(node.state(), State::TakingOver);
    let failed = StepFailed {
        step: "procs".into(),
        error: "cannot read /proc/42/exe: permission denied (after 3 attempt(s))".into(),
    };
    let actions = node.handle(t0 + 1001 * MS, Input::TakeoverDone(Err(failed)));
    let fault = details(&actions).join("\n");
    assert!(
        fault.contains("takeover failed at step procs: cannot read /proc/42/exe"),
        "{fault}"
    );
    assert!(!fault.contains("step step"), "{fault}");
}

/// Found in review (issue 10): `check-config` printed the takeover and release from prose of
/// its own, which had fallen behind the code: no mirror step, no gateways step, no second
/// half of the release. It now prints the very lists the runner walks.
#[test]
fn regression_check_config_omitted_the_mirror_and_the_gateways() {
    let out = Setup::new().check_config(&repo("conf/nova-network-ha.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let takeover = stdout.find("takeover, in order:").unwrap();
    let release = stdout.find("release, in order:").unwrap();
    let tidy = stdout.find("then the peer is told").unwrap();
    let mirror = stdout.find("apply the mirror").unwrap();
    let gateways = stdout.find("nova's gateways").unwrap();
    assert!(takeover < mirror && mirror < release, "{stdout}");
    assert!(release < gateways && gateways < tidy, "{stdout}");
}

/// Found in the lab (issue 10's review of `status`): with heartbeats through the broker, the
/// broker path was named "?" in each peer's `last_heard_ms`.
#[test]
fn regression_status_named_the_broker_path_question_mark() {
    let Some(lab) = Lab::up("regression_broker_path", &["--paths", "1"]) else {
        return;
    };
    lab.start_pair();
    std::thread::sleep(Duration::from_millis(500));
    let status = lab.status_json("net2");
    let heard = &status["peers"][0]["last_heard_ms"];
    assert!(heard.get("broker").is_some(), "{status}");
    assert!(heard.get("?").is_none(), "{status}");
    assert!(status["heartbeats"].get("broker").is_some(), "{status}");
}

/// Found in review (issue 10): `Debug` text reached operators in alerts and logs
/// ("HolderDead(NodeId(2))", "TakingOver" beside `status`'s "taking_over"). A crash, a
/// takeover and a path going down, read as an operator reads them.
#[test]
fn regression_operators_read_debug_text() {
    let mut params = SimParams::pair(timers());
    params.paths = 2;
    let mut sim = Sim::new(7, params);
    sim.run_for(Duration::from_secs(2));
    sim.cut_path(0, 1, 0);
    sim.run_for(Duration::from_secs(1));
    sim.crash(0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.active(), [1]);
    let trace = sim.trace().join("\n");
    for debug in [
        "NodeId(",
        "HolderDead",
        "NoHolder",
        "TakingOver",
        "Standby ->",
        "Some(",
    ] {
        assert!(!trace.contains(debug), "{debug:?} in:\n{trace}");
    }
    assert!(
        trace.contains("the holder n0 is dead on every path"),
        "{trace}"
    );
    assert!(trace.contains("standby -> taking_over"), "{trace}");
}

/// Found by issue 13's audit: the respawn budget never came back, so a nova-network that
/// crashed once a month was failed over on its second crash, months later. A nova-network
/// that ran for `stable_after` now starts a new episode.
#[test]
#[allow(clippy::disallowed_methods)] // an epoch to add virtual time to
fn regression_the_respawn_budget_never_came_back() {
    let t0 = Instant::now();
    let policy = RespawnPolicy {
        budget: 1,
        ..RespawnPolicy::default()
    };
    let mut node = Node::new(&pair(1, policy), 1, t0);
    let peer = |seq| {
        Input::Heartbeat(PeerBeat {
            from: NodeId(2),
            path: PathId(0),
            generation: 1,
            seq,
            state: State::Standby,
            intent: Intent::Normal,
            health: 0,
        })
    };
    node.handle(t0, peer(1));
    node.handle(t0, Input::TakeoverDone(Ok(())));
    assert_eq!(node.state(), State::Active);
    let restarted = |actions: &[Action]| {
        actions
            .iter()
            .any(|a| matches!(a, Action::RestartNova { .. }))
    };
    assert!(restarted(&node.handle(t0 + MS, Input::NovaExited)));
    // A month of heartbeats later, the next exit is restarted in place again.
    let later = t0 + Duration::from_secs(30 * 24 * 3600);
    node.handle(later, peer(2));
    assert!(restarted(&node.handle(later + MS, Input::NovaExited)));
    assert_eq!(node.state(), State::Active);
}
