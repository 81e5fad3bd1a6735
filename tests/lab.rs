//! The seed's failure criteria, one lab test each (DESIGN.md sections 4 and 7): real network
//! namespaces, a real RabbitMQ, real dnsmasq and iptables, the stand-in nova-network, and both
//! daemons. Root only: without root each test prints why it skips. Lab tests run one at a time
//! (a lock), each with its own prefix, and tear their lab down even when they fail.

#![allow(clippy::disallowed_methods)] // waiting on real processes reads the real clock

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One lab at a time: each runs its own RabbitMQ, and the machine has two cores.
static ONE_LAB: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A lab brought up for one test; `Drop` brings it down (every process by PID, every
/// namespace), also when the test panics.
struct Lab {
    prefix: String,
    _lock: std::sync::MutexGuard<'static, ()>,
}

fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("{cmd:?}: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Lab {
    /// Brings a lab up with the given `lab-ha setup` options, or `None` (printing why) when
    /// not root.
    fn up(test: &str, setup: &[&str]) -> Option<Lab> {
        if !is_root() {
            eprintln!(
                "skipping lab test {test}: it needs root (network namespaces, iptables, RabbitMQ)"
            );
            return None;
        }
        let lock = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        // 1-8 characters [a-z0-9]: a letter, the test's initials, the pid.
        let initials: String = test
            .split('_')
            .filter_map(|w| w.chars().next())
            .take(3)
            .collect();
        let prefix = format!("l{initials}{}", std::process::id() % 10_000);
        let lab = Lab {
            prefix,
            _lock: lock,
        };
        lab.lab_ok(&["down"]);
        lab.lab_ok(&["up"]);
        let mut args = vec!["setup"];
        args.extend_from_slice(setup);
        lab.ha_ok(&args);
        Some(lab)
    }

    fn lab(&self, args: &[&str]) -> Output {
        run(Command::new(root().join("scripts/lab"))
            .arg("-p")
            .arg(&self.prefix)
            .args(args))
    }

    fn lab_ok(&self, args: &[&str]) -> String {
        let out = self.lab(args);
        assert!(out.status.success(), "scripts/lab {args:?}: {}", text(&out));
        text(&out)
    }

    fn ha(&self, args: &[&str]) -> Output {
        run(Command::new(root().join("scripts/lab-ha"))
            .arg("-p")
            .arg(&self.prefix)
            .args(args))
    }

    fn ha_ok(&self, args: &[&str]) -> String {
        let out = self.ha(args);
        assert!(
            out.status.success(),
            "scripts/lab-ha {args:?}: {}",
            text(&out)
        );
        text(&out)
    }

    fn dir(&self) -> PathBuf {
        root().join(".lab").join(&self.prefix).join("ha")
    }

    /// Runs a command inside a lab node.
    fn exec(&self, node: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", node];
        args.extend_from_slice(cmd);
        self.lab(&args)
    }

    fn state(&self, node: &str) -> String {
        String::from_utf8_lossy(&self.ha(&["state", node]).stdout)
            .trim()
            .to_owned()
    }

    /// Waits until `node` is in `state`; returns how long it took, or panics with both logs.
    fn wait(&self, node: &str, state: &str, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.state(node) == state {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{node} not {state} after {limit:?} (net1 {}, net2 {})\n--- net1 log:\n{}\n--- net2 log:\n{}",
            self.state("net1"),
            self.state("net2"),
            self.log("net1"),
            self.log("net2")
        );
    }

    /// The whole log of `node`'s daemon, for assertions on what it logged.
    fn full_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{node}.log"))).unwrap_or_default()
    }

    /// The last 60 lines of `node`'s daemon log, for failure messages.
    fn log(&self, node: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir().join(format!("{node}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Starts both daemons (net1 first, so it is active) and waits until the stand-in on net1
    /// serves and the VM answers through its floating IP.
    fn start_pair(&self) {
        self.ha_ok(&["start", "net1"]);
        self.wait("net1", "active", Duration::from_secs(30));
        self.ha_ok(&["start", "net2"]);
        self.wait("net2", "standby", Duration::from_secs(30));
        self.wait_vm_answers(Duration::from_secs(30));
        // nova-network on net1 has finished its start-up and consumes its queue.
        self.ha_ok(&["ready", "net1", "60"]);
    }

    /// Pings the VM through its floating IP from the router until the VM itself answers
    /// (through a network server's DNAT, not the server answering for the address).
    fn wait_vm_answers(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        let secs = limit.as_secs().max(1).to_string();
        if self.ha(&["vm-answers", &secs]).status.success() {
            return start.elapsed();
        }
        panic!(
            "the VM does not answer through 10.2.3.104 after {limit:?}\n--- net1:\n{}\n--- net2:\n{}",
            self.log("net1"),
            self.log("net2")
        );
    }

    /// The pid of nova-network on `node`, from its daemon's status (0: none running).
    fn nova_pid(&self, node: &str) -> u64 {
        let status = self.ha_ok(&["status", node, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        v["nova_network_pid"].as_u64().unwrap_or(0)
    }

    /// Sends `signal` to nova-network on `node`.
    fn signal_nova(&self, node: &str, signal: &str) {
        let pid = self.nova_pid(node);
        assert_ne!(pid, 0, "no nova-network on {node}");
        run(Command::new("kill").args([signal, &pid.to_string()]));
    }

    fn addresses(&self, node: &str) -> String {
        text(&self.exec(node, &["ip", "-o", "addr", "show"]))
    }

    fn nova_chains(&self, node: &str) -> usize {
        let save = text(&self.exec(node, &["iptables-save"]));
        save.lines().filter(|l| l.starts_with(":nova-")).count()
    }

    fn runs(&self, node: &str, exe: &str) -> bool {
        let pids = text(&self.lab(&["pids", node]));
        pids.split_whitespace().any(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .map(|p| p == Path::new(exe))
                .unwrap_or(false)
        })
    }

    /// The service lives on `holder` alone: VIP, floating IP, dnsmasq and nova's chains there,
    /// none of them on `other`.
    fn assert_held_by(&self, holder: &str, other: &str) {
        // With the mirror the VM answers before nova-network has started (and started
        // dnsmasq): wait for it first.
        self.ha_ok(&["ready", holder, "60"]);
        let (mine, theirs) = (self.addresses(holder), self.addresses(other));
        for addr in ["10.2.3.120/32", "10.2.3.104/32"] {
            assert!(mine.contains(addr), "{addr} not on {holder}:\n{mine}");
            assert!(!theirs.contains(addr), "{addr} still on {other}:\n{theirs}");
        }
        assert!(
            self.runs(holder, "/usr/sbin/dnsmasq"),
            "no dnsmasq on {holder}"
        );
        assert!(
            !self.runs(other, "/usr/sbin/dnsmasq"),
            "dnsmasq still on {other}"
        );
        assert!(self.nova_chains(holder) > 0, "no nova chains on {holder}");
        assert_eq!(self.nova_chains(other), 0, "nova chains left on {other}");
    }

    /// Every message cast was handled by exactly one stand-in (none lost, none twice), except
    /// those `allowed_lost` acknowledged by a powered-off node.
    fn assert_rpc(&self, allowed_lost: u64) -> serde_json::Value {
        self.ha_ok(&["cast", "stop"]);
        // Let the queue drain into the new active; what the broker had pushed to a dead
        // consumer comes back once its AMQP heartbeats stop (4 s in the lab): wait for it,
        // up to 12 s.
        let start = Instant::now();
        let report = loop {
            let out = self.ha(&["check"]);
            let report: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("check: {e}: {}", text(&out)));
            if report["lost"] == 0 || start.elapsed() > Duration::from_secs(12) {
                break report;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let lost = report["lost"].as_u64().unwrap_or(u64::MAX);
        let cast = report["cast"].as_u64().unwrap_or(0);
        assert!(cast > 0, "nothing cast: {report}");
        assert!(lost <= allowed_lost, "{lost} RPC messages lost: {report}");
        assert_eq!(report["duplicated"], 0, "a message handled twice: {report}");
        report
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.lab(&["down"]);
        if !out.status.success() {
            eprintln!("lab {} down failed: {}", self.prefix, text(&out));
        }
    }
}

/// The standby takes over after `inject`, within `bound`; the service ends up on net2 alone;
/// no RPC message is lost (beyond `allowed_lost`).
fn failover_after(
    test: &str,
    setup: &[&str],
    inject: impl FnOnce(&Lab),
    bound: Duration,
    allowed_lost: u64,
) {
    let Some(lab) = Lab::up(test, setup) else {
        return;
    };
    lab.start_pair();
    lab.ha_ok(&["cast", "start"]);
    std::thread::sleep(Duration::from_millis(500));
    inject(&lab);
    let took = lab.wait("net2", "active", bound);
    eprintln!("{test}: net2 active {took:?} after the failure");
    lab.wait_vm_answers(Duration::from_secs(30));
    let report = lab.assert_rpc(allowed_lost);
    eprintln!("{test}: rpc {report}");
    lab.assert_held_by("net2", "net1");
}

const BOUND: Duration = Duration::from_secs(10);

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

/// DESIGN.md section 4, step 8: nova-network binds floating IPs itself after it starts; the
/// active daemon announces each the moment it appears, and the VM answers through it.
#[test]
fn lab_a_floating_ip_associated_while_active_is_announced() {
    let Some(lab) = Lab::up("associate", &[]) else {
        return;
    };
    lab.start_pair();
    let before = lab
        .full_log("net1")
        .matches("announced new addresses")
        .count();
    lab.ha_ok(&[
        "rpc",
        "associate_floating_ip",
        "floating_address=10.2.3.105",
        "fixed_address=10.0.0.3",
    ]);
    let start = Instant::now();
    while !lab.addresses("net1").contains("10.2.3.105/32") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "10.2.3.105 never bound on net1:\n{}",
            lab.log("net1")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let log = lab.full_log("net1");
    assert!(
        log.matches("announced new addresses").count() > before,
        "the new floating IP was not announced:\n{log}"
    );
    let out = lab.ha(&["vm-answers", "10", "10.2.3.105"]);
    assert!(
        out.status.success(),
        "the VM does not answer through 10.2.3.105: {}",
        text(&out)
    );
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

/// DESIGN.md section 5: the broker is one more heartbeat path. With the one UDP path cut and
/// the broker path alive, nobody fails over; the path is reported down.
#[test]
fn lab_heartbeat_link_down_with_the_broker_path_no_failover() {
    no_failover_when_a_heartbeat_link_goes_down("hb_broker", &["--paths", "1"]);
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

/// DESIGN.md section 6: every alert the daemons publish during a failover validates against
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

/// The prober (`scripts/lab-prober`, used by the demo and the benchmarks) sees a power-off as
/// one outage per target, with the last reply before and the first reply after, and counts
/// the VM's replies only when they crossed the network server.
#[test]
fn lab_prober_reports_the_outage_of_a_power_off() {
    let Some(lab) = Lab::up("prober", &[]) else {
        return;
    };
    lab.start_pair();
    lab.lab_ok(&["probe", "start"]);
    std::thread::sleep(Duration::from_secs(1));
    lab.lab_ok(&["poweroff", "net1"]);
    lab.wait("net2", "active", BOUND);
    lab.wait_vm_answers(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    lab.lab_ok(&["probe", "stop"]);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(".lab").join(&lab.prefix).join("probe.json")).unwrap(),
    )
    .unwrap();
    for target in ["vip", "vm"] {
        let t = &report["targets"][target];
        let outages = t["outages"].as_array().unwrap();
        assert_eq!(outages.len(), 1, "{target}: {t}");
        let o = &outages[0];
        assert_eq!(o["ongoing"], false, "{target}: {o}");
        assert_eq!(o["at_start"], false, "{target}: {o}");
        assert!(
            o["disconnection_ms"].as_f64().unwrap() > 0.0,
            "{target}: {o}"
        );
        assert!(t["received"].as_u64().unwrap() > 0, "{target}: {t}");
    }
    assert_eq!(report["targets"]["vm"]["min_hops"], 1);
}

/// Waits until `cond` holds, polling every 20 ms; panics with `what` and both logs after
/// `limit`.
fn until(lab: &Lab, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "{what} not within {limit:?}\n--- net1:\n{}\n--- net2:\n{}",
            lab.log("net1"),
            lab.log("net2")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Lab {
    fn status_json(&self, node: &str) -> serde_json::Value {
        serde_json::from_str(&self.ha_ok(&["status", node, "--json"])).unwrap()
    }

    /// nova's DNAT for `floating` is in `node`'s nat table (the association is complete).
    fn dnat_for(&self, node: &str, floating: &str) -> bool {
        text(&self.exec(node, &["iptables-save", "-t", "nat"]))
            .lines()
            .any(|l| l.contains(&format!("-d {floating}/32")) && l.contains("DNAT"))
    }

    /// `net2`'s held mirror snapshot's summary (empty: none held).
    fn held_summary(&self, node: &str) -> String {
        self.status_json(node)["mirror"]["held"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Disassociates `floating` in the stand-ins' database alone, as a change nova made that
    /// no snapshot saw (the active is gone).
    fn disassociate_in_db(&self, floating: &str) {
        let code = format!(
            "import sys; sys.path.insert(0, {:?}); import db\n\
             with db.locked({:?}) as d:\n    \
             [f.update(fixed_address=None) for f in d['floating_ips'] if f['address'] == {:?}]",
            root().join("tests/nova_standin").display().to_string(),
            self.dir().join("db.json").display().to_string(),
            floating
        );
        let out = run(Command::new(root().join(".venv/bin/python")).args(["-c", &code]));
        assert!(out.status.success(), "{}", text(&out));
    }
}

/// The warm standby (issue 6): a floating IP associated 50 ms before the primary's power-off
/// answers through the standby before its nova-network has started; one disassociated 50 ms
/// before is not bound there; one whose disassociation no snapshot saw (made in nova's
/// database after the power-off) is removed once nova-network consumes, and reported.
#[test]
fn lab_mirror_moves_the_latest_floating_ips_before_nova_network_starts() {
    let Some(lab) = Lab::up("mirror_latest", &[]) else {
        return;
    };
    lab.start_pair();
    let associate = |fip: &str| {
        lab.ha_ok(&[
            "rpc",
            "associate_floating_ip",
            &format!("floating_address={fip}"),
            "fixed_address=10.0.0.3",
        ]);
    };
    for fip in ["10.2.3.106", "10.2.3.107"] {
        associate(fip);
        until(&lab, &format!("{fip} associated on net1"), BOUND, || {
            lab.dnat_for("net1", fip)
        });
    }
    until(
        &lab,
        "net2 holding a snapshot with 3 floating IPs",
        BOUND,
        || lab.held_summary("net2").starts_with("3 floating IP(s)"),
    );
    // The last changes: one floating IP associated, one disassociated, 50 ms before.
    associate("10.2.3.105");
    lab.ha_ok(&[
        "rpc",
        "disassociate_floating_ip",
        "floating_address=10.2.3.106",
    ]);
    until(
        &lab,
        "10.2.3.105 associated, 10.2.3.106 gone",
        BOUND,
        || {
            let a = lab.addresses("net1");
            lab.dnat_for("net1", "10.2.3.105") && !a.contains("10.2.3.106/32")
        },
    );
    std::thread::sleep(Duration::from_millis(50));
    lab.lab_ok(&["poweroff", "net1"]);
    lab.disassociate_in_db("10.2.3.107");
    lab.wait("net2", "active", BOUND);
    // The stand-in takes 2 s before touching anything: the VM answers through the floating
    // IP associated last while it is still starting.
    let out = lab.ha(&["vm-answers", "2", "10.2.3.105"]);
    assert!(
        out.status.success(),
        "the VM does not answer through 10.2.3.105 within 2 s of the takeover: {}\n{}",
        text(&out),
        lab.log("net2")
    );
    let done = lab.status_json("net2");
    let steps = done["last_transition"]["steps"].as_array().unwrap();
    let mirror = steps
        .iter()
        .find(|s| s["step"] == "mirror")
        .unwrap_or_else(|| panic!("no mirror step: {done}"));
    assert!(
        mirror["detail"]
            .as_str()
            .unwrap()
            .starts_with("mirror applied (3 floating IP(s)"),
        "{mirror}"
    );
    // Once nova-network consumes, what it did not keep goes, and is reported.
    until(
        &lab,
        "the mirror reconciled on net2",
        Duration::from_secs(60),
        || {
            lab.status_json("net2")["mirror"]["last_takeover"]
                .as_str()
                .is_some_and(|s| s.starts_with("mirror reconciled"))
        },
    );
    let report = lab.status_json("net2")["mirror"]["last_takeover"].clone();
    assert_eq!(
        report,
        "mirror reconciled: removed 1 floating IP(s) nova-network did not keep: 10.2.3.107/32"
    );
    let a = lab.addresses("net2");
    assert!(
        a.contains("10.2.3.105/32") && a.contains("10.2.3.104/32"),
        "{a}"
    );
    assert!(
        !a.contains("10.2.3.106/32") && !a.contains("10.2.3.107/32"),
        "{a}"
    );
    assert!(lab.dnat_for("net2", "10.2.3.105") && !lab.dnat_for("net2", "10.2.3.107"));
}

/// A snapshot the active stopped confirming longer ago than `max_age` is not used: the
/// takeover runs the plain way, says why, and still completes.
#[test]
fn lab_mirror_stale_snapshot_is_refused_and_the_plain_takeover_completes() {
    let Some(lab) = Lab::up("mirror_stale", &["--mirror-max-age", "2s"]) else {
        return;
    };
    lab.start_pair();
    until(&lab, "net2 holding a snapshot", BOUND, || {
        !lab.held_summary("net2").is_empty()
    });
    // The mirror cut off: net2 drops the stream's packets for longer than max_age.
    let drop_rule = ["-p", "tcp", "--dport", "7791", "-j", "DROP"];
    let mut add = vec!["iptables", "-I", "INPUT"];
    add.extend_from_slice(&drop_rule);
    assert!(lab.exec("net2", &add).status.success());
    std::thread::sleep(Duration::from_secs(4));
    lab.lab_ok(&["poweroff", "net1"]);
    lab.wait("net2", "active", BOUND);
    let status = lab.status_json("net2");
    let why = status["mirror"]["last_takeover"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.starts_with("mirror not used: snapshot not confirmed for")
            && why.ends_with("(max_age 2s); plain takeover"),
        "{status}"
    );
    let steps = status["last_transition"]["steps"].as_array().unwrap();
    assert!(!steps.iter().any(|s| s["step"] == "mirror"), "{status}");
    lab.wait_vm_answers(Duration::from_secs(30));
    let mut del = vec!["iptables", "-D", "INPUT"];
    del.extend_from_slice(&drop_rule);
    assert!(lab.exec("net2", &del).status.success());
}

impl Lab {
    /// `scripts/lab-sweep ARGS` from the router: who answers among many addresses.
    fn sweep(&self, args: &[&str]) -> serde_json::Value {
        let script = root().join("scripts/lab-sweep").display().to_string();
        let mut cmd = vec!["python3", script.as_str()];
        cmd.extend_from_slice(args);
        let out = self.exec("router", &cmd);
        assert!(out.status.success(), "lab-sweep: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The MAC address of `node`'s `iface`.
    fn mac(&self, node: &str, iface: &str) -> String {
        let path = format!("/sys/class/net/{iface}/address");
        text(&self.exec(node, &["cat", &path])).trim().to_owned()
    }
}

/// 1,000 floating IPs (the stand-in's database holds them): after an unplanned failover all
/// answer from the router, and the router's neighbour entries point at the new active for
/// every one of them.
#[test]
fn lab_mirror_a_thousand_floating_ips_answer_after_a_power_off() {
    let range = "10.2.4.0/22";
    let Some(lab) = Lab::up(
        "mirror_thousand",
        &[
            "--floating-range",
            range,
            "--extra-floating",
            "1000",
            // The primary's own start-up binds them one command each: keep the test short,
            // and give nova-network's consumer more than that start-up (as an operator would).
            "--command-cost",
            "0.002",
            "--consumer-grace",
            "60s",
        ],
    ) else {
        return;
    };
    // The router reaches the floating range on its public link (inside the lab only).
    assert!(
        lab.exec("router", &["ip", "route", "add", range, "dev", "eth1"])
            .status
            .success()
    );
    lab.start_pair();
    until(
        &lab,
        "net2 holding a snapshot of 1000 floating IPs",
        Duration::from_secs(120),
        || lab.held_summary("net2").starts_with("1000 floating IP(s)"),
    );
    let all = ["--ttl", "63", "--range", range, "--count", "1000"];
    let before = lab.sweep(&all);
    assert_eq!(before["answered"], 1000, "{before}");
    // Past the neighbour locktime (1 s), so the announcements may replace the entries.
    std::thread::sleep(Duration::from_millis(1500));
    lab.lab_ok(&["poweroff", "net1"]);
    lab.wait("net2", "active", BOUND);
    let after = lab.sweep(&all);
    assert_eq!(after["answered"], 1000, "{after}\n{}", lab.log("net2"));
    let mac = lab.mac("net2", "eth1");
    let neigh = text(&lab.exec("router", &["ip", "neigh", "show", "dev", "eth1"]));
    let mut hosts = range.parse::<ipnet::Ipv4Net>().unwrap().hosts();
    let wrong: Vec<String> = (0..1000)
        .filter_map(|_| hosts.next())
        .filter(|ip| {
            !neigh
                .lines()
                .any(|l| l.starts_with(&format!("{ip} ")) && l.contains(&format!("lladdr {mac}")))
        })
        .map(|ip| ip.to_string())
        .collect();
    assert!(
        wrong.is_empty(),
        "{} neighbour entries do not point at net2 ({mac}): {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

/// Planned switchover with the mirror: the old active releases, the new one applies the
/// mirror, and no address is ever answered for by both: after the new active's first
/// gratuitous ARP for an address, no ARP frame from the old active's MAC claims it (captured
/// on the router's public link).
#[test]
fn lab_mirror_planned_switchover_never_holds_an_address_twice() {
    let Some(lab) = Lab::up("mirror_planned", &[]) else {
        return;
    };
    lab.start_pair();
    until(&lab, "net2 holding a snapshot", BOUND, || {
        !lab.held_summary("net2").is_empty()
    });
    let capture = lab.dir().join("arp.jsonl");
    let script = root().join("scripts/lab-arpwatch");
    let ns = format!("{}-router", lab.prefix);
    let mut watch = Command::new("ip")
        .args(["netns", "exec", &ns, "python3"])
        .arg(&script)
        .args(["--duration", "60", "--out"])
        .arg(&capture)
        .arg("eth1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // The prober keeps the router asking for the addresses while they move; a flushed
    // neighbour cache makes net1 answer for them, on the capture, before the switchover.
    lab.lab_ok(&["probe", "start"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lab.exec("router", &["ip", "neigh", "flush", "dev", "eth1"])
            .status
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    lab.ha_ok(&["takeover", "net2"]);
    lab.wait("net2", "active", BOUND);
    lab.wait_vm_answers(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    lab.lab_ok(&["probe", "stop"]);
    let _ = Command::new("kill").arg(watch.id().to_string()).status();
    let _ = watch.wait();
    let (old, new) = (lab.mac("net1", "eth1"), lab.mac("net2", "eth1"));
    let frames: Vec<serde_json::Value> = std::fs::read_to_string(&capture)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = lab.status_json("net2");
    let steps = status["last_transition"]["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["step"] == "mirror"), "{status}");
    for addr in ["10.2.3.120", "10.2.3.104"] {
        let first_new = frames
            .iter()
            .position(|f| f["mac"] == new.as_str() && f["ip"] == addr && f["target"] == addr)
            .unwrap_or_else(|| panic!("no gratuitous ARP for {addr} from net2 ({new})"));
        // The capture does see net1 answer for the address (before the switchover).
        assert!(
            frames[..first_new]
                .iter()
                .any(|f| f["mac"] == old.as_str() && f["ip"] == addr && f["op"] == "reply"),
            "no reply from net1 ({old}) for {addr} before the switchover: {frames:?}"
        );
        let late: Vec<&serde_json::Value> = frames[first_new..]
            .iter()
            .filter(|f| f["mac"] == old.as_str() && f["ip"] == addr)
            .collect();
        assert!(
            late.is_empty(),
            "{addr} claimed by net1 after net2's GARP: {late:?}"
        );
    }
}
