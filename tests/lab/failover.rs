//! The seed's failure criteria, one test each: power-off, nova-network killed, a fatal log
//! line, the public link down, a planned stop, the daemon killed, heartbeat links down (one
//! path, two paths, the broker path) and the respawn budget.

use std::process::Command;
use std::time::{Duration, Instant};

use super::harness::*;

#[test]
fn lab_power_off_of_the_primary() {
    failover_after(
        "power_off",
        &[],
        |lab| {
            lab.lab_ok(&["poweroff", "net1"]);
            // Like a reboot: net1 comes back clean (its state died with it).
            lab.lab_ok(&["poweron", "net1", "--clean"]);
        },
        BOUND,
        // Messages the frozen stand-in had taken but not recorded are named by check.
        5,
    );
}

#[test]
fn lab_nova_network_killed() {
    failover_after(
        "nova_killed",
        &[],
        |lab| {
            lab.signal_nova("net1", "-KILL");
        },
        BOUND,
        5,
    );
}

#[test]
fn lab_fatal_log_line() {
    failover_after(
        "fatal_log",
        &[],
        |lab| {
            lab.ha_ok(&["fatal", "net1"]);
        },
        BOUND,
        5,
    );
}

#[test]
fn lab_public_link_down() {
    failover_after(
        "public_link_down",
        &[],
        |lab| {
            lab.lab_ok(&["link", "net1", "eth1", "down"]);
        },
        BOUND,
        5,
    );
}

#[test]
fn lab_planned_stop_of_the_active_daemon() {
    // oslo.messaging acknowledges a message before its handler runs: a nova-network stopped
    // with SIGTERM can take a few with it (the test prints the count), as the real one could.
    failover_after(
        "planned_stop",
        &[],
        |lab| {
            lab.ha_ok(&["stop", "net1"]);
        },
        BOUND,
        5,
    );
}

#[test]
fn lab_daemon_killed_then_restarted() {
    failover_after(
        "daemon_killed",
        &[],
        |lab| {
            lab.ha_ok(&["kill", "net1"]);
            // systemd restarts it; at start it cleans what the killed one left.
            std::thread::sleep(Duration::from_millis(1500));
            lab.ha_ok(&["start", "net1"]);
            lab.wait("net1", "standby", Duration::from_secs(10));
        },
        BOUND,
        5,
    );
}

#[test]
fn lab_heartbeat_link_down_single_path_resolves_split_brain() {
    let Some(lab) = Lab::up("hb_single", &["--paths", "1", "--broker-path", "off"]) else {
        return;
    };
    lab.start_pair();
    lab.lab_ok(&["link", "net1", "eth0", "down"]);
    lab.wait("net2", "active", BOUND);
    assert_eq!(lab.state("net1"), "active", "both active while partitioned");
    lab.lab_ok(&["link", "net1", "eth0", "up"]);
    // net2 (lower priority) releases; net1 survives and announces again.
    lab.wait("net2", "standby", BOUND);
    assert_eq!(lab.state("net1"), "active");
    let log = std::fs::read_to_string(lab.dir().join("net2.log")).unwrap_or_default();
    assert!(log.contains("split_brain"), "no split_brain alert:\n{log}");
    let log1 = std::fs::read_to_string(lab.dir().join("net1.log")).unwrap_or_default();
    assert!(
        log1.contains("reannounce"),
        "no fresh announcement by net1:\n{log1}"
    );
    lab.wait_vm_answers(Duration::from_secs(30));
    lab.assert_held_by("net1", "net2");
}

/// With two UDP paths, one heartbeat link down is no failure: a warning, nothing moves.
#[test]
fn lab_heartbeat_link_down_with_two_paths_no_failover() {
    no_failover_when_a_heartbeat_link_goes_down(
        "hb_two",
        &["--paths", "2", "--broker-path", "off"],
    );
}

/// The heartbeat link eth0 of net1 goes down; another path (UDP or the broker) still carries
/// the heartbeats: nothing moves and net2 reports the path down.
fn no_failover_when_a_heartbeat_link_goes_down(test: &str, setup: &[&str]) {
    let Some(lab) = Lab::up(test, setup) else {
        return;
    };
    lab.start_pair();
    lab.lab_ok(&["link", "net1", "eth0", "down"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lab.state("net1"), "active");
    assert_eq!(lab.state("net2"), "standby");
    let log = lab.full_log("net2");
    assert!(log.contains("path_down"), "no path_down alert:\n{log}");
    assert!(!log.contains("peer_lost"), "peer declared lost:\n{log}");
    lab.assert_held_by("net1", "net2");
}

/// A respawn budget restarts nova-network in place; once spent, an exit means failover.
#[test]
fn lab_respawn_budget_restarts_nova_network_in_place_then_fails_over() {
    let Some(lab) = Lab::up("respawn", &["--respawn-budget", "1"]) else {
        return;
    };
    lab.start_pair();
    let first = lab.nova_pid("net1");
    run(Command::new("kill").args(["-KILL", &first.to_string()]));
    let start = Instant::now();
    let second = loop {
        let pid = lab.nova_pid("net1");
        if pid != 0 && pid != first {
            break pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nova-network not restarted"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(lab.state("net1"), "active");
    assert_eq!(lab.state("net2"), "standby");
    run(Command::new("kill").args(["-KILL", &second.to_string()]));
    lab.wait("net2", "active", BOUND);
    lab.wait_vm_answers(Duration::from_secs(30));
    lab.assert_held_by("net2", "net1");
}

/// docs/design.md section 5: the broker is one more heartbeat path. With the one UDP path cut and
/// the broker path alive, nobody fails over; the path is reported down.
#[test]
fn lab_heartbeat_link_down_with_the_broker_path_no_failover() {
    no_failover_when_a_heartbeat_link_goes_down("hb_broker", &["--paths", "1"]);
}
