//! The prober the demo and the benchmarks read.

use std::time::Duration;

use super::harness::*;

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
