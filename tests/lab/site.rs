//! A network server as a real site has it (issue 11, points 2 and 3): nova-compute or
//! nova-api beside nova-network with their own chains under the same shared nova chains,
//! libvirt's dnsmasq on virbr0, a site's own bridge that the `br*` pattern matches, and
//! floating IPs from more than one pool with no `floating_range` in nova.conf. Takeover,
//! release, the start-up clean slate and the mirror touch nova-network's part alone, and move
//! every floating IP nova bound.

use std::time::Duration;

use super::harness::*;

/// A floating IP of a second pool, outside any range nova.conf names.
const OTHER_POOL: &str = "10.2.3.200";

impl Lab {
    /// Another nova binary's chains on `node`, put there by nova's own IptablesManager
    /// (tests/nova_standin/other_binary.py), sharing nova-network's lock directory.
    fn other_binary(&self, node: &str, action: &str, binary: &str) -> std::process::Output {
        let python = root().join(".venv/bin/python").display().to_string();
        let script = root()
            .join("tests/nova_standin/other_binary.py")
            .display()
            .to_string();
        let locks = self.dir().join(node).join("locks").display().to_string();
        let mut cmd = vec![python.as_str(), &script, action, "--binary-name", binary];
        if action == "apply" {
            cmd.extend(["--lock-path", &locks]);
        }
        self.exec(node, &cmd)
    }

    /// Whether `binary`'s chains and its jumps from the shared chains are all on `node`.
    fn other_binary_intact(&self, node: &str, binary: &str) -> bool {
        self.other_binary(node, "check", binary).status.success()
    }

    /// What is not nova's on `node`: libvirt's virbr0 with its dnsmasq, and a site bridge
    /// `br-site` that the lab's `br*` pattern matches. Returns the dnsmasq's pid.
    fn not_novas(&self, node: &str) -> u32 {
        let pid_file = self.dir().join(format!("libvirt-{node}.pid"));
        let script = format!(
            "ip link add virbr0 type bridge && ip addr add 192.168.122.1/24 dev virbr0 \
             && ip link set virbr0 up && ip link add br-site type bridge \
             && ip addr add 172.16.9.1/24 dev br-site && ip link set br-site up \
             && /usr/sbin/dnsmasq --conf-file=/dev/null --pid-file={} --bind-interfaces \
                --interface=virbr0 --except-interface=lo --port=0 --leasefile-ro \
                --dhcp-range=192.168.122.2,192.168.122.254",
            pid_file.display()
        );
        let out = self.exec(node, &["sh", "-c", &script]);
        assert!(out.status.success(), "{}", text(&out));
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        pid.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid in {}", pid_file.display()))
    }

    /// What is not nova's on `node` is all still there.
    fn assert_not_novas_kept(&self, node: &str, dnsmasq: u32, when: &str) {
        let stat = std::fs::read_to_string(format!("/proc/{dnsmasq}/stat")).unwrap_or_default();
        assert!(
            stat.contains("(dnsmasq)") && !stat.contains(") Z"),
            "{when}: libvirt's dnsmasq {dnsmasq} on {node} was stopped"
        );
        let addrs = self.addresses(node);
        for (link, addr) in [("virbr0", "192.168.122.1/24"), ("br-site", "172.16.9.1/24")] {
            assert!(
                addrs
                    .lines()
                    .any(|l| l.contains(&format!(" {link} ")) && l.contains(addr)),
                "{when}: {link} {addr} gone from {node}:\n{addrs}"
            );
        }
    }

    /// The router's neighbour entry for `addr` names `node`'s public MAC.
    fn router_sees(&self, addr: &str, node: &str) -> bool {
        let neigh = text(&self.exec("router", &["ip", "neigh", "show", addr]));
        neigh.contains(&self.mac(node, "eth1"))
    }
}

#[test]
fn lab_only_nova_networks_state_moves_and_every_pool_with_it() {
    let Some(lab) = Lab::up("site_shape", &["--floating-range", "none"]) else {
        return;
    };
    // Before either daemon starts: nova-compute's chains on net1, nova-api's on net2 (so a
    // chain of net1's that showed up on net2 could only have been mirrored), and what is
    // not nova's on both.
    let mut libvirt = Vec::new();
    for (node, binary) in [("net1", "nova-compute"), ("net2", "nova-api")] {
        std::fs::create_dir_all(lab.dir().join(node).join("locks")).unwrap();
        let out = lab.other_binary(node, "apply", binary);
        assert!(out.status.success(), "{}", text(&out));
        libvirt.push(lab.not_novas(node));
    }
    lab.start_pair();
    for (i, (node, binary)) in [("net1", "nova-compute"), ("net2", "nova-api")]
        .into_iter()
        .enumerate()
    {
        assert!(
            lab.other_binary_intact(node, binary),
            "{binary}'s chains after {node}'s start-up clean slate and nova-network's start: {}",
            text(&lab.other_binary(node, "check", binary))
        );
        lab.assert_not_novas_kept(node, libvirt[i], "after the start-up");
    }
    // check-config on the active says what a release would touch.
    let conf = lab.dir().join("net1.toml").display().to_string();
    let bin = root()
        .join("target/debug/nova-network-ha")
        .display()
        .to_string();
    let survey = text(&lab.exec("net1", &[&bin, "check-config", &conf]));
    for needle in [
        "br100 (bridge): nova's (nova.conf's flat_network_bridge): deleted",
        "br-site (bridge): not nova's",
        "/usr/sbin/dnsmasq: nova's (",
        &format!("{} /usr/sbin/dnsmasq: not nova's", libvirt[0]),
        "10.2.3.104/32 (nova DNATs it)",
        "other nova binaries' chains kept: nova-compute-* (",
    ] {
        assert!(survey.contains(needle), "{needle:?} not in:\n{survey}");
    }
    assert!(
        !survey.contains("virbr0"),
        "no pattern matches virbr0:\n{survey}"
    );

    // A floating IP of another pool, with no floating_range anywhere.
    lab.ha_ok(&[
        "rpc",
        "associate_floating_ip",
        &format!("floating_address={OTHER_POOL}"),
        "fixed_address=10.0.0.3",
    ]);
    until(
        &lab,
        "the second pool's IP on net1 and in net2's mirror",
        BOUND,
        || lab.dnat_for("net1", OTHER_POOL) && lab.held_floating("net2") == BASE_FLOATING + 1,
    );

    // The router talks to it through net1 (Linux updates a neighbour entry on a gratuitous
    // ARP, it makes none from one).
    let answered = lab.ha(&["vm-answers", "30", OTHER_POOL]);
    assert!(answered.status.success(), "{}", text(&answered));
    assert!(lab.router_sees(OTHER_POOL, "net1"));

    // Planned: net1 releases, net2 takes over with the mirror.
    lab.ha_ok(&["takeover", "net2"]);
    lab.wait("net2", "active", BOUND);
    lab.wait("net1", "standby", BOUND);
    until(
        &lab,
        "the router learning net2 for the second pool's IP",
        BOUND,
        || lab.router_sees(OTHER_POOL, "net2"),
    );
    let answered = lab.ha(&["vm-answers", "30", OTHER_POOL]);
    assert!(answered.status.success(), "{}", text(&answered));
    lab.assert_held_by("net2", "net1");
    let net1 = lab.addresses("net1");
    assert!(!net1.contains(&format!("{OTHER_POOL}/32")), "{net1}");
    assert!(lab.addresses("net2").contains(&format!("{OTHER_POOL}/32")));
    assert!(
        lab.other_binary_intact("net1", "nova-compute"),
        "nova-compute's chains after net1's release: {}",
        text(&lab.other_binary("net1", "check", "nova-compute"))
    );
    assert!(
        lab.other_binary_intact("net2", "nova-api"),
        "nova-api's chains after net2's takeover and mirror: {}",
        text(&lab.other_binary("net2", "check", "nova-api"))
    );
    let net2_save = text(&lab.exec("net2", &["iptables-save"]));
    assert!(
        !net2_save.contains("nova-compute"),
        "net1's nova-compute chains were mirrored to net2:\n{net2_save}"
    );
    let ebtables = text(&lab.exec("net1", &["ebtables-save"]));
    assert!(
        !ebtables.contains("redirect"),
        "nova's floating forward rule left on net1:\n{ebtables}"
    );
    for (i, node) in ["net1", "net2"].into_iter().enumerate() {
        lab.assert_not_novas_kept(node, libvirt[i], "after the planned switchover");
    }

    // Unplanned: net2 powered off, net1 takes over with the mirror, both pools answer.
    until(&lab, "net1 holding net2's state", BOUND, || {
        lab.held_floating("net1") == BASE_FLOATING + 1
    });
    lab.lab_ok(&["poweroff", "net2"]);
    lab.wait("net1", "active", BOUND);
    for addr in ["10.2.3.104", OTHER_POOL] {
        let out = lab.ha(&["vm-answers", "30", addr]);
        assert!(out.status.success(), "{addr}: {}", text(&out));
    }
    assert!(lab.router_sees(OTHER_POOL, "net1"));
    assert!(lab.other_binary_intact("net1", "nova-compute"));
    lab.assert_not_novas_kept("net1", libvirt[0], "after the unplanned takeover");
}

/// vm1's IPv6 address (SLAAC from nova's radvd on br100: fd00::/64 and its MAC).
const VM1_V6: &str = "fd00::f816:3eff:fe00:3";

impl Lab {
    /// The link-local router vm1's IPv6 default route goes through (nova's radvd on br100).
    fn vm_router(&self) -> Option<String> {
        let routes = text(&self.exec("vm1", &["ip", "-6", "route", "show", "default"]));
        routes
            .split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .map(str::to_owned)
    }

    /// Whether `addr` is on `node`'s `iface`.
    fn has_address(&self, node: &str, iface: &str, addr: &str) -> bool {
        text(&self.exec(node, &["ip", "-6", "addr", "show", "dev", iface]))
            .contains(&format!("inet6 {addr}/"))
    }
}

/// Metadata answers from the new active (nova's forward goes to the VIP). And the VMs' IPv6
/// default router is the active's bridge link-local address, which nova's
/// radvd advertises and which the standby's bridge does not have (its MAC differs). After a
/// power-off, the new active takes that address over from the mirror and announces it (as
/// VRRPv3 does with its virtual link-local address), so the VM's route stays valid instead of
/// waiting for its neighbour detection to give the dead router up.
#[test]
fn lab_the_vms_ipv6_router_and_metadata_move_with_the_service() {
    let Some(lab) = Lab::up("ipv6_router", &[]) else {
        return;
    };
    lab.start_pair();
    let answered = lab.ha(&["vm-answers", "30", VM1_V6]);
    assert!(answered.status.success(), "{}", text(&answered));
    let mut router = None;
    until(&lab, "vm1 routing IPv6 through nova's radvd", BOUND, || {
        router = lab.vm_router();
        router.is_some()
    });
    let router = router.unwrap_or_default();
    assert!(router.starts_with("fe80:"), "{router}");
    assert!(lab.has_address("net1", "br100", &router));
    assert!(!lab.has_address("net2", "br100", &router));
    // The snapshot net2 holds was taken after radvd started (its file is in it).
    until(&lab, "net2 holding a snapshot", BOUND, || {
        lab.held_floating("net2") == BASE_FLOATING
    });
    std::thread::sleep(Duration::from_secs(2));
    let served = lab.ha_ok(&["metadata", "vm1"]);
    assert!(served.contains("served-by: net1"), "{served}");
    lab.lab_ok(&["poweroff", "net1"]);
    lab.wait("net2", "active", BOUND);
    // nova's metadata forward goes to the VIP (metadata_host): net2's metadata answers.
    let served = lab.ha_ok(&["metadata", "vm1", "30"]);
    assert!(served.contains("served-by: net2"), "{served}");
    until(&lab, "net2 holding the router's address", BOUND, || {
        lab.has_address("net2", "br100", &router)
    });
    let mac = lab.mac("net2", "br100");
    until(
        &lab,
        "vm1's neighbour entry for its router naming net2",
        BOUND,
        || text(&lab.exec("vm1", &["ip", "-6", "neigh", "show", &router])).contains(&mac),
    );
    let answered = lab.ha(&["vm-answers", "30", VM1_V6]);
    assert!(answered.status.success(), "{}", text(&answered));
    // A planned switchover back: net1 returns, takes over, and the address follows again;
    // radvd on net2 is killed, not terminated, so no last advertisement withdraws the route.
    lab.lab_ok(&["poweron", "net1", "--clean"]);
    lab.ha_ok(&["start", "net1"]);
    lab.wait("net1", "standby", Duration::from_secs(30));
    until(&lab, "net1 holding a snapshot", BOUND, || {
        lab.held_floating("net1") == BASE_FLOATING
    });
    lab.ha_ok(&["takeover", "net1"]);
    lab.wait("net1", "active", BOUND);
    until(
        &lab,
        "net1 holding the router's address again",
        BOUND,
        || lab.has_address("net1", "br100", &router),
    );
    let answered = lab.ha(&["vm-answers", "30", VM1_V6]);
    assert!(answered.status.success(), "{}", text(&answered));
}
