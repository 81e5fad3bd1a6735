//! Addresses nova binds while active are announced at once (docs/design.md section 4,
//! step 8).

use std::time::{Duration, Instant};

use super::harness::*;

/// docs/design.md section 4, step 8: nova-network binds floating IPs itself after it starts; the
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
