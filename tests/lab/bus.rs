//! nova-network's message bus in the lab: the queue probe (backlog, hang, never consuming),
//! the broker as a heartbeat path's peer, a broker outage, and alerts on the bus.

use std::time::{Duration, Instant};

use super::harness::*;

/// Issue 5: messages cast while no nova-network consumes wait in `network.<host>` and reach
/// the new active; the queue probe on net2 sees that backlog, and none is lost.
#[test]
fn lab_power_off_backlog_waits_in_the_queue_for_the_new_active() {
    let Some(lab) = Lab::up("backlog", &["--queue-interval", "200ms"]) else {
        return;
    };
    lab.start_pair();
    lab.ha_ok(&["cast", "start"]);
    std::thread::sleep(Duration::from_millis(500));
    lab.lab_ok(&["poweroff", "net1"]);
    lab.wait("net2", "active", BOUND);
    // nova-network starts on net2 (2 s of start-up): meanwhile the casts pile up.
    let start = Instant::now();
    let mut max_backlog = 0;
    while start.elapsed() < Duration::from_secs(6) {
        let status = lab.ha_ok(&["status", "net2", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        max_backlog = max_backlog.max(v["bus"]["queue_messages"].as_u64().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("backlog: up to {max_backlog} messages waited in the queue");
    assert!(max_backlog > 0, "the probe never saw a backlog");
    lab.wait_vm_answers(Duration::from_secs(30));
    let report = lab.assert_rpc(5);
    eprintln!("rpc: {report}");
    // The dead server's consumer stays on the queue until the broker's AMQP heartbeats give
    // up on it: the queue witness reports it as a zombie nova-network.
    let log = lab.full_log("net2");
    assert!(
        log.contains("zombie nova-network"),
        "no zombie report:\n{log}"
    );
}

/// The queue probe: nova-network frozen (SIGSTOP: alive, not working) while casts pile up in
/// `network.<host>`: the backlog grows, the active releases, the standby takes over and drains
/// the queue; no message is lost.
#[test]
fn lab_nova_network_hung_fails_over() {
    failover_after(
        "nova_hung",
        &["--queue-interval", "500ms", "--backlog-window", "2s"],
        |lab| {
            lab.signal_nova("net1", "-STOP");
        },
        Duration::from_secs(15),
        5,
    );
}

/// After releasing for a hung nova-network, the node is a healthy standby again (its queue
/// verdict went with its nova-network), ready to take the service back.
#[test]
fn lab_after_a_hang_the_node_is_standby_again() {
    let Some(lab) = Lab::up(
        "hang_back",
        &["--queue-interval", "500ms", "--backlog-window", "2s"],
    ) else {
        return;
    };
    lab.start_pair();
    lab.ha_ok(&["cast", "start"]);
    lab.signal_nova("net1", "-STOP");
    lab.wait("net2", "active", Duration::from_secs(15));
    lab.wait("net1", "standby", Duration::from_secs(15));
    lab.ha_ok(&["cast", "stop"]);
}

/// A nova-network that never consumes `network.<host>` (it started, but serves nothing):
/// after consumer_grace the active releases and the standby takes over.
#[test]
fn lab_nova_network_never_consuming_fails_over() {
    let Some(lab) = Lab::up(
        "never_consumes",
        &[
            "--queue-interval",
            "500ms",
            "--consumer-grace",
            "5s",
            "--standin-args-net1",
            "--skip-rpc",
        ],
    ) else {
        return;
    };
    lab.ha_ok(&["start", "net1"]);
    lab.wait("net1", "active", Duration::from_secs(30));
    lab.ha_ok(&["start", "net2"]);
    lab.wait("net2", "active", Duration::from_secs(20));
    let log = lab.full_log("net1");
    assert!(log.contains("no consumer"), "no queue verdict:\n{log}");
    lab.wait_vm_answers(Duration::from_secs(30));
    lab.assert_held_by("net2", "net1");
}

/// A broker outage is not a failure of nova-network: no failover, no flapping; the bus
/// reconnects when the broker is back.
#[test]
fn lab_broker_outage_no_failover() {
    let Some(lab) = Lab::up("broker_out", &["--queue-interval", "500ms"]) else {
        return;
    };
    lab.start_pair();
    let before = lab.full_log("net1").matches("state_changed").count();
    lab.lab_ok(&["broker", "stop"]);
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(lab.state("net1"), "active");
    assert_eq!(lab.state("net2"), "standby");
    lab.lab_ok(&["broker", "start"]);
    // Longer than consumer_grace (10 s): nova-network's reconnection is not a failure.
    std::thread::sleep(Duration::from_secs(13));
    assert_eq!(lab.state("net1"), "active");
    assert_eq!(lab.state("net2"), "standby");
    let log = lab.full_log("net1");
    assert_eq!(
        log.matches("state_changed").count(),
        before,
        "state changed during the outage:\n{log}"
    );
    assert!(log.contains("bus disconnected"), "{log}");
    assert!(
        log.matches("bus connected").count() >= 2,
        "no reconnection:\n{log}"
    );
    lab.wait_vm_answers(Duration::from_secs(10));
}

/// docs/design.md section 6: every alert the daemons publish during a failover validates against
/// `schemas/alert.schema.json`, and the takeover_done alert carries its step timings.
#[test]
fn lab_alerts_on_the_bus_validate_against_the_schema() {
    let Some(lab) = Lab::up("alerts", &[]) else {
        return;
    };
    lab.start_pair();
    let out_file = lab.dir().join("alerts.jsonl");
    let bin = root().join("target/debug/nova-network-ha");
    let config = lab.dir().join("net2.toml");
    let script = format!(
        "{} watch-alerts --config {} > {} 2>&1 &",
        bin.display(),
        config.display(),
        out_file.display()
    );
    let out = lab.exec("net2", &["sh", "-c", &script]);
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_secs(2));
    lab.lab_ok(&["poweroff", "net1"]);
    lab.wait("net2", "active", BOUND);
    std::thread::sleep(Duration::from_secs(2));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/alert.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let text = std::fs::read_to_string(&out_file).unwrap();
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let kinds: Vec<&str> = alerts.iter().filter_map(|a| a["kind"].as_str()).collect();
    for alert in &alerts {
        let errors: Vec<String> = validator
            .iter_errors(alert)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{alert} does not validate: {errors:?}");
    }
    for kind in [
        "peer_lost",
        "takeover_started",
        "takeover_done",
        "state_changed",
    ] {
        assert!(
            kinds.contains(&kind),
            "no {kind} alert among {kinds:?}\n{text}"
        );
    }
    let done = alerts
        .iter()
        .find(|a| a["kind"] == "takeover_done" && a["node"] == "net2")
        .unwrap();
    let steps: Vec<&str> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert!(
        steps.contains(&"addrs") && steps.contains(&"nova"),
        "{done}"
    );
}
