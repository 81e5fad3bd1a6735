//! The operator's requests in the lab: a planned `takeover`, and `standby` with and without
//! a peer to hand over to.

use std::time::Duration;

use super::harness::*;

/// A planned switchover with the operator's `takeover` on the standby: the active hands over,
/// no RPC message is lost or handled twice.
#[test]
fn lab_planned_takeover_by_the_operator() {
    failover_after(
        "operator_takeover",
        &[],
        |lab| {
            lab.ha_ok(&["takeover", "net2"]);
        },
        BOUND,
        5,
    );
}

/// `standby` hands the service to the healthy peer; with no healthy peer it is refused with
/// a clear message and nothing moves.
#[test]
fn lab_operator_standby_hands_over_and_is_refused_without_a_peer() {
    let Some(lab) = Lab::up("standby", &[]) else {
        return;
    };
    lab.start_pair();
    lab.ha_ok(&["standby", "net1"]);
    lab.wait("net2", "active", BOUND);
    lab.wait("net1", "standby", BOUND);
    lab.wait_vm_answers(Duration::from_secs(30));
    lab.assert_held_by("net2", "net1");
    // net1's daemon stops: net2 has no peer to hand over to.
    lab.ha_ok(&["stop", "net1"]);
    std::thread::sleep(Duration::from_secs(1));
    let out = lab.ha(&["standby", "net2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("refused: no live healthy peer to hand the service to"),
        "{}",
        text(&out)
    );
    assert_eq!(lab.state("net2"), "active");
}
