//! The warm standby (issue 6): the mirror moves the latest floating IPs before nova-network
//! starts, a stale snapshot is refused, 1,000 floating IPs answer, and a planned switchover
//! never holds an address twice.

use std::process::Command;
use std::time::Duration;

use super::harness::*;

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
        "net2 holding a snapshot with both new floating IPs",
        BOUND,
        || lab.held_floating("net2") == BASE_FLOATING + 2,
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
        mirror["detail"].as_str().unwrap().starts_with(&format!(
            "mirror applied ({} floating IP(s)",
            BASE_FLOATING + 2
        )),
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
            // and give nova-network's consumer more than that start-up (as an operator would):
            // with nova's own code each floating IP still takes about 70 ms, 70 s for 1,000.
            "--command-cost",
            "0.002",
            "--consumer-grace",
            "240s",
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
    lab.start_pair_within(Duration::from_secs(240));
    until(
        &lab,
        "net2 holding a snapshot of 1000 floating IPs",
        Duration::from_secs(120),
        || lab.held_floating("net2") == BASE_FLOATING + 1000,
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
