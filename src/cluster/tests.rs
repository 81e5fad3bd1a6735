//! Unit tests of one node, input by input (docs/design.md section 3, `cluster`).
#![allow(clippy::disallowed_methods)] // an epoch to add virtual time to

use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn config(me: u16, paths: u8) -> ClusterConfig {
    ClusterConfig {
        me: NodeId(me),
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
        paths,
        timers: Timers {
            keepalive: 100 * MS,
            warntime: 200 * MS,
            deadtime: 400 * MS,
            initdead: 1000 * MS,
        },
        auto_failback: false,
        path_names: Vec::new(),
        respawn: RespawnPolicy::default(),
    }
}

fn beat(from: u16, path: u8, seq: u64, state: State) -> Input {
    Input::Heartbeat(PeerBeat {
        from: NodeId(from),
        path: PathId(path),
        generation: 1,
        seq,
        state,
        intent: Intent::Normal,
        health: 0,
    })
}

fn kinds(actions: &[Action]) -> Vec<AlertKind> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(alert) => Some(alert.kind),
            _ => None,
        })
        .collect()
}

fn details(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(alert) => Some(alert.detail.as_str()),
            _ => None,
        })
        .collect()
}

fn sends(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Send(_)))
        .count()
}

#[test]
fn first_input_sends_a_heartbeat_and_early_or_repeated_timers_do_nothing() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 7, t0);
    assert_eq!(sends(&node.handle(t0, Input::Timer)), 1);
    assert_eq!(node.deadline(), Some(t0 + 100 * MS));
    assert!(node.handle(t0 + 50 * MS, Input::Timer).is_empty());
    assert!(node.handle(t0 + 50 * MS, Input::Timer).is_empty());
    assert_eq!(sends(&node.handle(t0 + 100 * MS, Input::Timer)), 1);
    assert!(node.handle(t0 + 100 * MS, Input::Timer).is_empty());
}

#[test]
fn alone_it_waits_initdead_then_takes_over() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(2, 1), 1, t0);
    let mut t = t0;
    while t < t0 + 990 * MS {
        node.handle(t, Input::Timer);
        assert_eq!(node.state(), State::Starting);
        t += 100 * MS;
    }
    let actions = node.handle(t0 + 1000 * MS, Input::Timer);
    assert_eq!(node.state(), State::TakingOver);
    assert!(actions.contains(&Action::BeginTakeover {
        reason: Reason::NoHolder,
        fence: vec![],
    }));
    node.handle(t0 + 1010 * MS, Input::TakeoverDone(Ok(())));
    assert_eq!(node.state(), State::Active);
}

#[test]
fn liveness_alerts_late_path_down_lost_and_back() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(2, 2), 1, t0);
    node.handle(t0, beat(1, 0, 1, State::Active));
    node.handle(t0, beat(1, 1, 1, State::Active));
    assert_eq!(node.state(), State::Standby);
    // Path 1 keeps beating, path 0 falls silent: path_down, not peer_lost.
    let mut seq = 2;
    let mut seen = Vec::new();
    let mut t = t0;
    while t < t0 + 500 * MS {
        t += 100 * MS;
        seen.extend(kinds(&node.handle(t, beat(1, 1, seq, State::Active))));
        seq += 1;
    }
    assert_eq!(seen, vec![AlertKind::PathDown]);
    assert_eq!(node.state(), State::Standby);
    // Path 0 back.
    assert_eq!(
        kinds(&node.handle(t, beat(1, 0, seq, State::Active))),
        vec![AlertKind::PathUp]
    );
    // Then total silence: late at warntime, lost at deadtime, and we take over (fencing it).
    let last = t;
    assert!(kinds(&node.handle(last + 199 * MS, Input::Timer)).is_empty());
    assert_eq!(
        kinds(&node.handle(last + 200 * MS, Input::Timer)),
        vec![AlertKind::LateHeartbeat]
    );
    let lost = node.handle(last + 400 * MS, Input::Timer);
    assert!(kinds(&lost).contains(&AlertKind::PeerLost));
    assert!(lost.contains(&Action::BeginTakeover {
        reason: Reason::HolderDead(NodeId(1)),
        fence: vec![NodeId(1)],
    }));
    // The peer is heard again: peer_back.
    let back = node.handle(last + 500 * MS, beat(1, 0, seq + 1, State::Standby));
    assert!(kinds(&back).contains(&AlertKind::PeerBack));
}

#[test]
fn a_late_packet_proves_the_path_but_does_not_roll_the_state_back() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(2, 1), 1, t0);
    node.handle(t0, beat(1, 0, 5, State::Active));
    node.handle(t0 + MS, beat(1, 0, 4, State::Standby));
    let status = node.status(t0 + MS);
    assert_eq!(status.peers[0].state, State::Active);
    assert_eq!(status.peers[0].silence, vec![Some(Duration::ZERO)]);
}

#[test]
fn a_peer_that_stops_its_daemon_is_replaced_at_once() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(2, 1), 1, t0);
    node.handle(t0, beat(1, 0, 1, State::Active));
    let actions = node.handle(t0 + 10 * MS, beat(1, 0, 2, State::Stopped));
    assert_eq!(node.state(), State::TakingOver);
    assert!(kinds(&actions).contains(&AlertKind::PeerLost));
}

#[test]
fn health_failure_while_active_releases_then_faults() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 1, t0);
    node.handle(t0, beat(2, 0, 1, State::Standby));
    assert_eq!(node.state(), State::TakingOver);
    node.handle(t0, Input::TakeoverDone(Ok(())));
    let actions = node.handle(
        t0 + MS,
        Input::Health {
            probe: Probe::Links,
            ok: false,
        },
    );
    assert!(actions.contains(&Action::BeginRelease {
        reason: Reason::HealthFailed(Probe::Links.bit()),
    }));
    // The heartbeat sent at once advertises the failing probe.
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Send(Beat {
            state: State::Releasing,
            health,
            ..
        }) if *health == Probe::Links.bit()
    )));
    node.handle(t0 + 2 * MS, Input::ReleaseDone(Ok(())));
    assert_eq!(node.state(), State::Fault);
    // The peer took over; our probe passes again: back to Standby, not a takeover.
    node.handle(t0 + 3 * MS, beat(2, 0, 2, State::Active));
    node.handle(
        t0 + 3 * MS,
        Input::Health {
            probe: Probe::Links,
            ok: true,
        },
    );
    assert_eq!(node.state(), State::Standby);
}

#[test]
fn standby_request_without_a_healthy_peer_is_refused() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 1, t0);
    node.handle(t0 + 1000 * MS, Input::Timer);
    node.handle(t0 + 1000 * MS, Input::TakeoverDone(Ok(())));
    assert_eq!(node.state(), State::Active);
    let actions = node.handle(t0 + 1001 * MS, Input::Operator(Request::Standby));
    assert_eq!(kinds(&actions), vec![AlertKind::RequestRefused]);
    assert_eq!(node.state(), State::Active);
}

#[test]
fn a_failed_takeover_is_a_sticky_fault_until_an_operator_clears_it() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(2, 1), 1, t0);
    node.handle(t0 + 1000 * MS, Input::Timer);
    let failed = StepFailed {
        step: "addrs".into(),
        error: "file exists (after 3 attempt(s))".into(),
    };
    let actions = node.handle(t0 + 1000 * MS, Input::TakeoverDone(Err(failed)));
    assert_eq!(node.state(), State::Releasing);
    assert!(
        details(&actions).contains(
            &"takeover failed at step addrs: file exists (after 3 attempt(s)); releasing"
        ),
        "{actions:?}"
    );
    node.handle(t0 + 1001 * MS, Input::ReleaseDone(Ok(())));
    assert_eq!(node.state(), State::Fault);
    assert_eq!(
        node.status(t0).fault.as_deref(),
        Some("takeover failed at step addrs: file exists (after 3 attempt(s))")
    );
    node.handle(t0 + 5000 * MS, Input::Timer);
    assert_eq!(node.state(), State::Fault);
    node.handle(t0 + 5001 * MS, Input::Operator(Request::Takeover));
    assert_eq!(node.state(), State::TakingOver);
}

#[test]
fn split_brain_the_higher_priority_announces_again_when_the_rival_appears_and_lets_go() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 1, t0);
    node.handle(t0, beat(2, 0, 1, State::Standby));
    node.handle(t0, Input::TakeoverDone(Ok(())));
    assert_eq!(node.state(), State::Active);
    let seen = node.handle(t0 + MS, beat(2, 0, 2, State::Active));
    assert!(kinds(&seen).contains(&AlertKind::SplitBrain));
    assert!(seen.contains(&Action::Reannounce));
    // Still active next beat: no second alert, no second announcement.
    let again = node.handle(t0 + 2 * MS, beat(2, 0, 3, State::Active));
    assert!(!again.contains(&Action::Reannounce));
    assert!(!kinds(&again).contains(&AlertKind::SplitBrain));
    // The rival released: announce once more.
    let gone = node.handle(t0 + 3 * MS, beat(2, 0, 4, State::Standby));
    assert!(gone.contains(&Action::Reannounce));
    assert_eq!(node.state(), State::Active);
}

#[test]
fn after_releasing_for_a_failed_probe_it_does_not_grab_the_service_back() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 1, t0);
    node.handle(t0, beat(2, 0, 1, State::Standby));
    node.handle(t0, Input::TakeoverDone(Ok(())));
    node.handle(
        t0 + MS,
        Input::Health {
            probe: Probe::Log,
            ok: false,
        },
    );
    // The probe clears with the release (the fatal line went with the nova-network it
    // stopped); the peer is still standby (it has not heard yet): we yield to it rather than
    // take over again.
    let actions = node.handle(t0 + 2 * MS, Input::ReleaseDone(Ok(())));
    assert!(kinds(&actions).contains(&AlertKind::ProbeOk), "{actions:?}");
    assert_eq!(node.state(), State::Standby);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::BeginTakeover { .. }))
    );
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Send(Beat {
            intent: Intent::Retreat,
            ..
        })
    )));
}

#[test]
fn split_brain_seen_only_as_a_releasing_rival_still_announces_again() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 1, t0);
    node.handle(t0, beat(2, 0, 1, State::Standby));
    node.handle(t0, Input::TakeoverDone(Ok(())));
    let seen = node.handle(t0 + MS, beat(2, 0, 2, State::Releasing));
    assert!(kinds(&seen).contains(&AlertKind::SplitBrain));
    assert!(seen.contains(&Action::Reannounce));
    let gone = node.handle(t0 + 2 * MS, beat(2, 0, 3, State::Standby));
    assert!(gone.contains(&Action::Reannounce));
}

#[test]
fn a_retreat_ends_once_another_node_holds_the_service() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 1, t0);
    node.handle(t0, beat(2, 0, 1, State::Standby));
    node.handle(t0, Input::TakeoverDone(Ok(())));
    node.handle(
        t0 + MS,
        Input::Health {
            probe: Probe::NovaProcess,
            ok: false,
        },
    );
    node.handle(t0 + 2 * MS, Input::ReleaseDone(Ok(())));
    node.handle(
        t0 + 3 * MS,
        Input::Health {
            probe: Probe::NovaProcess,
            ok: true,
        },
    );
    assert_eq!(node.status(t0).intent, Intent::Retreat);
    node.handle(t0 + 4 * MS, beat(2, 0, 2, State::Active));
    assert_eq!(node.status(t0).intent, Intent::Normal);
    assert_eq!(node.state(), State::Standby);
}

/// An active node (node 1 of the pair) with its peer standby, nova-network started at `t0`.
/// The peer stays alive for deadtime (400 ms).
fn active_with_standby_peer(t0: Instant, respawn: RespawnPolicy) -> Node {
    let mut cfg = config(1, 1);
    cfg.respawn = respawn;
    let mut node = Node::new(&cfg, 1, t0);
    node.handle(t0, beat(2, 0, 1, State::Standby));
    node.handle(t0, Input::TakeoverDone(Ok(())));
    assert_eq!(node.state(), State::Active);
    node
}

fn restarts(actions: &[Action]) -> Vec<(Duration, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::RestartNova { after, attempt, .. } => Some((*after, *attempt)),
            _ => None,
        })
        .collect()
}

#[test]
fn nova_exits_are_restarted_in_place_with_back_off_until_the_budget_is_spent() {
    let t0 = Instant::now();
    let policy = RespawnPolicy {
        budget: 2,
        ..RespawnPolicy::default()
    };
    let mut node = active_with_standby_peer(t0, policy);
    let first = node.handle(t0 + 100 * MS, Input::NovaExited);
    assert_eq!(restarts(&first), vec![(Duration::ZERO, 1)]);
    let second = node.handle(t0 + 200 * MS, Input::NovaExited);
    assert_eq!(restarts(&second), vec![(policy.first_backoff, 2)]);
    assert_eq!(node.state(), State::Active);
    let third = node.handle(t0 + 300 * MS, Input::NovaExited);
    assert!(restarts(&third).is_empty());
    assert!(kinds(&third).contains(&AlertKind::ProbeFailed), "{third:?}");
    assert_eq!(node.state(), State::Releasing);
    // The release stopped that nova-network: its probe passes again, and the node is a
    // standby (ranking last), not faulty.
    let done = node.handle(t0 + 350 * MS, Input::ReleaseDone(Ok(())));
    assert!(kinds(&done).contains(&AlertKind::ProbeOk), "{done:?}");
    assert_eq!(node.state(), State::Standby);
    assert_eq!(node.status(t0).health, 0);
}

#[test]
fn a_nova_exit_when_not_active_is_not_restarted() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(1, 1), 1, t0);
    assert!(restarts(&node.handle(t0, Input::NovaExited)).is_empty());
}

#[test]
fn a_takeover_gives_the_respawn_budget_back() {
    let t0 = Instant::now();
    let mut node = active_with_standby_peer(
        t0,
        RespawnPolicy {
            budget: 1,
            ..RespawnPolicy::default()
        },
    );
    assert_eq!(
        restarts(&node.handle(t0 + 100 * MS, Input::NovaExited)).len(),
        1
    );
    node.handle(t0 + 150 * MS, Input::NovaExited);
    node.handle(t0 + 200 * MS, Input::ReleaseDone(Ok(())));
    assert_eq!(node.state(), State::Standby);
    // An operator moves the service back here: a whole budget again.
    node.handle(t0 + 250 * MS, Input::Operator(Request::Takeover));
    assert_eq!(node.state(), State::TakingOver);
    node.handle(t0 + 300 * MS, Input::TakeoverDone(Ok(())));
    assert_eq!(
        restarts(&node.handle(t0 + 350 * MS, Input::NovaExited)).len(),
        1
    );
}

#[test]
fn a_zombie_consumer_is_reported_once_per_episode() {
    let t0 = Instant::now();
    let mut node = active_with_standby_peer(t0, RespawnPolicy::default());
    let zombie = |actions: &[Action]| {
        details(actions)
            .iter()
            .filter(|d| d.starts_with("zombie nova-network"))
            .count()
    };
    let ours_only = Input::QueueConsumers {
        consumers: 1,
        ours: true,
    };
    let two = Input::QueueConsumers {
        consumers: 2,
        ours: true,
    };
    assert_eq!(zombie(&node.handle(t0 + 1100 * MS, ours_only.clone())), 0);
    assert_eq!(zombie(&node.handle(t0 + 1200 * MS, two.clone())), 1);
    assert_eq!(
        zombie(&node.handle(t0 + 1300 * MS, two.clone())),
        0,
        "same episode"
    );
    assert_eq!(zombie(&node.handle(t0 + 1400 * MS, ours_only)), 0);
    assert_eq!(
        zombie(&node.handle(t0 + 1500 * MS, two)),
        1,
        "a new episode"
    );
}

#[test]
fn no_zombie_while_a_peer_may_hold_the_service() {
    let t0 = Instant::now();
    let mut node = Node::new(&config(2, 1), 1, t0);
    node.handle(t0, beat(1, 0, 1, State::Active));
    let actions = node.handle(
        t0 + MS,
        Input::QueueConsumers {
            consumers: 1,
            ours: false,
        },
    );
    assert!(
        !kinds(&actions).contains(&AlertKind::SplitBrain),
        "{actions:?}"
    );
    // The peer stops: the consumer left behind is a zombie.
    node.handle(t0 + 2 * MS, beat(1, 0, 2, State::Stopped));
    let actions = node.handle(
        t0 + 3 * MS,
        Input::QueueConsumers {
            consumers: 1,
            ours: false,
        },
    );
    assert!(
        details(&actions)
            .iter()
            .any(|d| d.contains("while none should")),
        "{actions:?}"
    );
}

#[test]
fn operators_read_names_not_debug_text() {
    let t0 = Instant::now();
    let mut cfg = config(2, 2);
    cfg.path_names = vec!["hb0".into(), "broker".into()];
    let mut node = Node::new(&cfg, 1, t0);
    node.handle(t0, beat(1, 0, 1, State::Active));
    node.handle(t0, beat(1, 1, 1, State::Active));
    node.handle(t0 + 200 * MS, beat(1, 1, 2, State::Active));
    let down = node.handle(t0 + 401 * MS, Input::Timer);
    assert!(
        details(&down).contains(&"path hb0 to a silent for 400ms; other paths alive"),
        "{down:?}"
    );
    let taken = node.handle(t0 + 1000 * MS, Input::Timer);
    let text = details(&taken).join("\n");
    assert!(text.contains("standby -> taking_over"), "{text}");
    assert!(
        text.contains("the holder a is dead on every path; fence a"),
        "{text}"
    );
    assert!(
        !text.contains("NodeId") && !text.contains("TakingOver"),
        "{text}"
    );
    assert_eq!(State::TakingOver.to_string(), "taking_over");
    assert_eq!(Intent::Retreat.to_string(), "retreat");
    assert_eq!(
        Reason::HealthFailed(Probe::Queue.bit() | Probe::Log.bit()).to_string(),
        "local health failed (queue, log)"
    );
}
