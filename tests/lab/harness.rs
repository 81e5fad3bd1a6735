//! The lab harness shared by every lab test: one lab at a time (a lock), each with its own
//! prefix, brought up with `scripts/lab` and `scripts/lab-ha` and torn down on drop, even when
//! the test panics; helpers that read a node's state, log, addresses, processes and chains.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One lab at a time: each runs its own RabbitMQ, and the machine has two cores.
static ONE_LAB: Mutex<()> = Mutex::new(());

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A lab brought up for one test; `Drop` brings it down (every process by PID, every
/// namespace), also when the test panics.
pub(crate) struct Lab {
    pub(crate) prefix: String,
    _lock: std::sync::MutexGuard<'static, ()>,
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("{cmd:?}: {e}"),
    }
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Lab {
    /// Brings a lab up with the given `lab-ha setup` options, or `None` (printing why) when
    /// not root.
    pub(crate) fn up(test: &str, setup: &[&str]) -> Option<Lab> {
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

    pub(crate) fn lab(&self, args: &[&str]) -> Output {
        run(Command::new(root().join("scripts/lab"))
            .arg("-p")
            .arg(&self.prefix)
            .args(args))
    }

    pub(crate) fn lab_ok(&self, args: &[&str]) -> String {
        let out = self.lab(args);
        assert!(out.status.success(), "scripts/lab {args:?}: {}", text(&out));
        text(&out)
    }

    pub(crate) fn ha(&self, args: &[&str]) -> Output {
        run(Command::new(root().join("scripts/lab-ha"))
            .arg("-p")
            .arg(&self.prefix)
            .args(args))
    }

    pub(crate) fn ha_ok(&self, args: &[&str]) -> String {
        let out = self.ha(args);
        assert!(
            out.status.success(),
            "scripts/lab-ha {args:?}: {}",
            text(&out)
        );
        text(&out)
    }

    pub(crate) fn dir(&self) -> PathBuf {
        root().join(".lab").join(&self.prefix).join("ha")
    }

    /// Runs a command inside a lab node.
    pub(crate) fn exec(&self, node: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", node];
        args.extend_from_slice(cmd);
        self.lab(&args)
    }

    pub(crate) fn state(&self, node: &str) -> String {
        String::from_utf8_lossy(&self.ha(&["state", node]).stdout)
            .trim()
            .to_owned()
    }

    /// Waits until `node` is in `state`; returns how long it took, or panics with both logs.
    pub(crate) fn wait(&self, node: &str, state: &str, limit: Duration) -> Duration {
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
    pub(crate) fn full_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{node}.log"))).unwrap_or_default()
    }

    /// The last 60 lines of `node`'s daemon log, for failure messages.
    pub(crate) fn log(&self, node: &str) -> String {
        let text =
            std::fs::read_to_string(self.dir().join(format!("{node}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Starts both daemons (net1 first, so it is active) and waits until the stand-in on net1
    /// serves and the VM answers through its floating IP.
    pub(crate) fn start_pair(&self) {
        self.start_pair_within(Duration::from_secs(60));
    }

    /// [`Lab::start_pair`] for a nova-network whose start-up may take up to `startup` (nova's
    /// own code binds each floating IP in about 70 ms: a minute and more for 1,000).
    pub(crate) fn start_pair_within(&self, startup: Duration) {
        self.ha_ok(&["start", "net1"]);
        self.wait("net1", "active", Duration::from_secs(30));
        self.ha_ok(&["start", "net2"]);
        self.wait("net2", "standby", Duration::from_secs(30));
        self.wait_vm_answers((startup / 2).max(Duration::from_secs(30)));
        // nova-network on net1 has finished its start-up and consumes its queue.
        self.ha_ok(&["ready", "net1", &startup.as_secs().to_string()]);
    }

    /// Pings the VM through its floating IP from the router until the VM itself answers
    /// (through a network server's DNAT, not the server answering for the address).
    pub(crate) fn wait_vm_answers(&self, limit: Duration) -> Duration {
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
    pub(crate) fn nova_pid(&self, node: &str) -> u64 {
        let status = self.ha_ok(&["status", node, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        v["nova_network_pid"].as_u64().unwrap_or(0)
    }

    /// Sends `signal` to nova-network on `node`.
    pub(crate) fn signal_nova(&self, node: &str, signal: &str) {
        let pid = self.nova_pid(node);
        assert_ne!(pid, 0, "no nova-network on {node}");
        run(Command::new("kill").args([signal, &pid.to_string()]));
    }

    pub(crate) fn addresses(&self, node: &str) -> String {
        text(&self.exec(node, &["ip", "-o", "addr", "show"]))
    }

    pub(crate) fn nova_chains(&self, node: &str) -> usize {
        let save = text(&self.exec(node, &["iptables-save"]));
        save.lines()
            .filter(|l| l.starts_with(":nova-network-"))
            .count()
    }

    /// A dnsmasq of nova's (its command line names nova's files) runs on `node`; another
    /// (libvirt's) does not count.
    pub(crate) fn runs_novas_dnsmasq(&self, node: &str) -> bool {
        let pids = text(&self.lab(&["pids", node]));
        pids.split_whitespace().any(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|p| p == Path::new("/usr/sbin/dnsmasq"))
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("/nova-"))
        })
    }

    /// The service lives on `holder` alone: VIP, floating IP, dnsmasq and nova's chains there,
    /// none of them on `other`.
    pub(crate) fn assert_held_by(&self, holder: &str, other: &str) {
        // With the mirror the VM answers before nova-network has started (and started
        // dnsmasq): wait for it first.
        self.ha_ok(&["ready", holder, "60"]);
        let (mine, theirs) = (self.addresses(holder), self.addresses(other));
        for addr in ["10.2.3.120/32", "10.2.3.104/32"] {
            assert!(mine.contains(addr), "{addr} not on {holder}:\n{mine}");
            assert!(!theirs.contains(addr), "{addr} still on {other}:\n{theirs}");
        }
        assert!(self.runs_novas_dnsmasq(holder), "no dnsmasq on {holder}");
        assert!(
            !self.runs_novas_dnsmasq(other),
            "nova's dnsmasq still on {other}"
        );
        assert!(self.nova_chains(holder) > 0, "no nova chains on {holder}");
        assert_eq!(self.nova_chains(other), 0, "nova chains left on {other}");
    }

    /// Every message cast was handled by exactly one stand-in (none lost, none twice), except
    /// those `allowed_lost` acknowledged by a powered-off node.
    pub(crate) fn assert_rpc(&self, allowed_lost: u64) -> serde_json::Value {
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
pub(crate) fn failover_after(
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

pub(crate) const BOUND: Duration = Duration::from_secs(10);

/// The floating IPs of the lab's default shape (`lab-ha setup`): vm1's 10.2.3.104 and
/// vm2's 10.2.3.110.
pub(crate) const BASE_FLOATING: usize = 2;

/// Waits until `cond` holds, polling every 20 ms; panics with `what` and both logs after
/// `limit`.
pub(crate) fn until(lab: &Lab, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "{what} not within {limit:?}\n--- net2's held snapshot: {:?}\n--- net1:\n{}\n--- net2:\n{}",
            lab.ha(&["status", "net2", "--json"])
                .status
                .success()
                .then(|| lab.held_summary("net2")),
            lab.log("net1"),
            lab.log("net2")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Lab {
    pub(crate) fn status_json(&self, node: &str) -> serde_json::Value {
        serde_json::from_str(&self.ha_ok(&["status", node, "--json"])).unwrap()
    }

    /// nova's DNAT for `floating` is in `node`'s nat table (the association is complete).
    pub(crate) fn dnat_for(&self, node: &str, floating: &str) -> bool {
        text(&self.exec(node, &["iptables-save", "-t", "nat"]))
            .lines()
            .any(|l| l.contains(&format!("-d {floating}/32")) && l.contains("DNAT"))
    }

    /// How many floating IPs `node`'s held mirror snapshot carries (0: none held).
    pub(crate) fn held_floating(&self, node: &str) -> usize {
        self.held_summary(node)
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// `net2`'s held mirror snapshot's summary (empty: none held).
    pub(crate) fn held_summary(&self, node: &str) -> String {
        self.status_json(node)["mirror"]["held"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Disassociates `floating` in the stand-ins' database alone, as a change nova made that
    /// no snapshot saw (the active is gone).
    pub(crate) fn disassociate_in_db(&self, floating: &str) {
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

impl Lab {
    /// `scripts/lab-sweep ARGS` from the router: who answers among many addresses.
    pub(crate) fn sweep(&self, args: &[&str]) -> serde_json::Value {
        let script = root().join("scripts/lab-sweep").display().to_string();
        let mut cmd = vec!["python3", script.as_str()];
        cmd.extend_from_slice(args);
        let out = self.exec("router", &cmd);
        assert!(out.status.success(), "lab-sweep: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The MAC address of `node`'s `iface`.
    pub(crate) fn mac(&self, node: &str, iface: &str) -> String {
        let path = format!("/sys/class/net/{iface}/address");
        text(&self.exec(node, &["cat", &path])).trim().to_owned()
    }
}
