//! Tests of the drivers against a real kernel: each test that needs root makes its own network
//! namespace (`nnhat-<pid>-<n>`), runs the driver code inside it from a dedicated thread that
//! `setns`es and builds a current-thread runtime there, and deletes the namespace and every
//! process it started (by pid) on the way out, even on failure. Without root they print why
//! and pass. Proves docs/design.md section 4: steps are idempotent, touch only what they own, and
//! leave a network server clean.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use ipnet::IpNet;
use pnet::datalink::{self, Channel, MacAddr};

use super::addrs::{Addrs, Change};
use super::announce::{self, InterfaceFilter};
use super::links::Links;
use super::*;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace that lives as long as the value; also the processes started in it.
struct Netns {
    name: String,
    children: Mutex<Vec<Child>>,
}

impl Netns {
    /// A fresh namespace, or `None` (with the reason printed) when this is not possible here.
    fn new(test: &str) -> Option<Netns> {
        if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) != 0 {
            println!("{test}: skipped, needs root to create network namespaces");
            return None;
        }
        let name = format!(
            "nnhat-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("{test}: skipped, `ip netns add {name}` failed");
            return None;
        }
        let ns = Netns {
            name,
            children: Mutex::new(Vec::new()),
        };
        ns.sh("ip link set lo up");
        Some(ns)
    }

    /// Run `script` with `sh -c` inside the namespace; (success, stdout+stderr).
    fn try_sh(&self, script: &str) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", script])
            .output()
            .unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// [`Netns::try_sh`] that must succeed; its output.
    fn sh(&self, script: &str) -> String {
        let (ok, out) = self.try_sh(script);
        assert!(ok, "`{script}` failed in {}: {out}", self.name);
        out
    }

    /// Start `program args` inside the namespace (`ip netns exec` execs it: same pid).
    fn spawn(&self, program: &Path, args: &[&str]) -> u32 {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .args(args);
        self.spawn_command(cmd, program)
    }

    /// [`Netns::spawn`] with `argv0` as the process's first argument (bash's `exec -a`): a
    /// command line naming a file, for the `/proc/PID/cmdline` checks.
    fn spawn_argv0(&self, program: &Path, argv0: &str, args: &[&str]) -> u32 {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, "bash", "-c"])
            .arg(r#"exec -a "$0" "$@""#)
            .arg(argv0)
            .arg(program)
            .args(args);
        self.spawn_command(cmd, program)
    }

    fn spawn_command(&self, mut cmd: Command, program: &Path) -> u32 {
        let child = cmd.stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        self.children.lock().unwrap().push(child);
        // Wait until `ip netns exec` has exec'd the program.
        let deadline = std::time::Duration::from_secs(2);
        let start = Instant::now();
        while std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .as_deref()
            != Some(program)
        {
            assert!(
                start.elapsed() < deadline,
                "{} did not start",
                program.display()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        pid
    }

    /// Run `f`'s future inside the namespace on a dedicated thread with its own runtime.
    fn run<F, Fut>(&self, f: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future,
        Fut::Output: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(format!("/run/netns/{}", self.name)).unwrap();
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(mut children) = self.children.lock() {
            for c in children.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child started outside any test namespace, killed and reaped on drop.
struct Outside(Child);

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// A copy of /bin/sleep at `dir/name`: a stand-in executable with a unique path.
fn fake_exe(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/sleep", &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Whether `pid` is running (not gone, not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// Whether an `iptables-save` dump declares a nova chain.
fn has_nova_chain(save: &str) -> bool {
    save.lines().any(|l| l.starts_with(":nova-network-"))
}

/// A veth pair `a` (up, the interface under test) and `b` (up, where frames are captured).
fn veth(ns: &Netns, a: &str, b: &str) {
    ns.sh(&format!(
        "ip link add {a} type veth peer name {b} && ip link set {a} up && ip link set {b} up"
    ));
}

#[test]
fn plan_from_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let example = include_str!("../../conf/nova-network-ha.toml")
        .replace("/etc/nova-network-ha/authkeys", "authkeys")
        .replace("/etc/nova/nova.conf", "nova.conf")
        .replace("/var/lib/nova-network-ha", "state");
    let conf = dir.path().join("nova-network-ha.toml");
    std::fs::write(&conf, example).unwrap();
    let keys = dir.path().join("authkeys");
    std::fs::write(
        &keys,
        "auth 1\n1 hmac-sha256 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )
    .unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.path().join("nova.conf"),
        include_str!("../../tests/fixtures/nova.conf.flagfile"),
    )
    .unwrap();
    let loaded = crate::config::load_with(
        &conf,
        &crate::config::Options {
            hostname: Some("ubuntu-openstack-network-server-01".into()),
            env: Some(HashMap::new()),
        },
    )
    .unwrap();
    let plan = Plan::from_config(&loaded.config);
    assert_eq!(plan.vips.len(), 1);
    assert_eq!(plan.vips[0].address, net("10.2.3.120/32"));
    assert_eq!(plan.vips[0].interface, "eth1");
    assert_eq!(plan.public_interface, "eth1");
    assert_eq!(
        plan.delete_interfaces,
        vec![
            glob::Pattern::new("br*").unwrap(),
            glob::Pattern::new("vlan*").unwrap()
        ]
    );
    assert_eq!(
        plan.stop_executables,
        vec![
            PathBuf::from("/usr/sbin/dnsmasq"),
            PathBuf::from("/usr/sbin/radvd")
        ]
    );
    assert_eq!(plan.networks_path, PathBuf::from("/var/lib/nova/networks"));
    assert_eq!(plan.floating_range, Some(net("10.2.3.104/29")));
    // lo, the heartbeat path's eth0, public/VIP eth1, flat eth2.
    assert_eq!(
        plan.protected_interfaces,
        vec!["eth0", "eth1", "eth2", "lo"]
    );
    assert_eq!(plan.chain_prefix, "nova-network-");
    assert_eq!(plan.nova_bridges, vec!["br100".to_string()]);
    assert_eq!(plan.announce, AnnounceSettings::default());
    assert_eq!(plan.announce.count, 3);
    assert_eq!(plan.announce.repeat_after, Some(Duration::from_secs(1)));
    let filter = plan.watch_filter();
    assert!(filter.matches("eth1") && filter.matches("br100") && !filter.matches("eth0"));
}

#[test]
fn addrs_add_del_idempotent() {
    let Some(ns) = Netns::new("addrs_add_del_idempotent") else {
        return;
    };
    veth(&ns, "eth1", "peer1");
    ns.sh("ip addr add 10.2.3.11/24 dev eth1");
    ns.run(|| async {
        let a = Addrs::open().unwrap();
        let vip = net("10.2.3.120/32");
        let vip6 = net("fd00::120/128");
        assert_eq!(a.add("eth1", vip).await.unwrap(), Change::Done);
        assert_eq!(a.add("eth1", vip).await.unwrap(), Change::Already);
        assert_eq!(a.add("eth1", vip6).await.unwrap(), Change::Done);
        assert_eq!(
            a.add("eth1", net("10.2.3.104/32")).await.unwrap(),
            Change::Done
        );
        let list = a.list("eth1").await.unwrap();
        assert!(list.contains(&vip) && list.contains(&vip6), "{list:?}");
        // Floating: host addresses in the range only; the server's /24 address is not one.
        let floating = a.list_in("eth1", net("10.2.3.0/24")).await.unwrap();
        assert_eq!(floating, vec![vip, net("10.2.3.104/32")]);
        assert_eq!(a.del("eth1", vip).await.unwrap(), Change::Done);
        assert_eq!(a.del("eth1", vip).await.unwrap(), Change::Already);
        assert_eq!(a.del("eth1", vip6).await.unwrap(), Change::Done);
        assert_eq!(a.del("eth1", vip6).await.unwrap(), Change::Already);
        assert_eq!(a.del("nosuch0", vip).await.unwrap(), Change::Already);
        let e = a.add("nosuch0", vip).await.unwrap_err();
        assert_eq!(e.to_string(), "interface \"nosuch0\" not found");
        let v4: Vec<IpNet> = a
            .list("eth1")
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.addr().is_ipv4())
            .collect();
        assert_eq!(v4, vec![net("10.2.3.11/24"), net("10.2.3.104/32")]);
    });
    // The kernel agrees.
    let shown = ns.sh("ip -o addr show dev eth1");
    assert!(
        !shown.contains("10.2.3.120") && shown.contains("10.2.3.11/24"),
        "{shown}"
    );
}

/// The warm standby binds floating IPs as local routes of its own: the kernel answers for
/// them at once; nova's address added later coexists; removing ours leaves nova's address
/// (and its route), and nothing of another protocol is touched.
#[test]
fn local_routes_bind_until_nova_binds_the_address() {
    let Some(ns) = Netns::new("local_routes_bind_until_nova_binds_the_address") else {
        return;
    };
    veth(&ns, "eth1", "peer1");
    ns.sh("ip addr add 10.2.3.11/24 dev eth1 \
           && ip route add local 10.2.9.9/32 dev eth1 table local proto static");
    let list = [
        net("10.2.3.104/32"),
        net("10.2.3.105/32"),
        net("fd00::5/128"),
    ];
    let (added, again, listed) = ns.run(|| async {
        let a = Addrs::open().unwrap();
        let added = a.add_local_routes("eth1", &list).await.unwrap();
        let again = a.add_local_routes("eth1", &list).await.unwrap();
        (added, again, a.local_routes("eth1").await.unwrap())
    });
    assert_eq!(
        added,
        vec![(list[0], Change::Done), (list[1], Change::Done)],
        "IPv4 host addresses only"
    );
    assert!(
        again.iter().all(|(_, c)| *c == Change::Already),
        "{again:?}"
    );
    assert_eq!(listed, vec![list[0], list[1]], "not the static one");
    let route = ns.sh("ip route get 10.2.3.105");
    assert!(route.starts_with("local 10.2.3.105"), "{route}");
    // nova binds one of them; then ours go.
    ns.sh("ip addr add 10.2.3.104/32 dev eth1");
    let deleted = ns.run(|| async {
        Addrs::open()
            .unwrap()
            .del_local_routes("eth1")
            .await
            .unwrap()
    });
    assert_eq!(deleted, vec![list[0], list[1]]);
    assert!(
        ns.sh("ip route get 10.2.3.104")
            .starts_with("local 10.2.3.104")
    );
    assert!(!ns.sh("ip route get 10.2.3.105").starts_with("local"));
    assert!(
        ns.sh("ip route show table local")
            .contains("10.2.9.9 dev eth1 proto static")
    );
}

#[test]
fn links_delete_only_novas() {
    let Some(ns) = Netns::new("links_delete_only_novas") else {
        return;
    };
    veth(&ns, "eth1", "peer1");
    // br100 is nova.conf's flat_network_bridge, br101 has nova's dnsmasq file, brsite0 is a
    // site's own bridge that `br*` matches too, keepme0 matches nothing.
    ns.sh(
        "ip link add br100 type bridge && ip link add keepme0 type bridge \
           && ip link add br101 type bridge && ip link add brsite0 type bridge",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nova-br101.conf"), "").unwrap();
    let (vlan, out) = ns.try_sh(
        "ip link add link eth1 name vlan5 type vlan id 5 && ip link set vlan5 master br100 \
         && ip link add link eth1 name vlan6 type vlan id 6 && ip link set vlan6 master brsite0",
    );
    if !vlan {
        println!(
            "links_delete_only_novas: no VLAN created (kernel: {}), bridges only",
            out.trim()
        );
    }
    let deleted = ns.run(|| async {
        let links = Links::open().unwrap();
        let pats: Vec<glob::Pattern> = ["br*", "vlan*", "eth*", "l*"]
            .iter()
            .map(|p| glob::Pattern::new(p).unwrap())
            .collect();
        let protected = vec!["eth1".to_string()];
        let nova = links::NovaLinks::new(&pats, &protected, &["br100".into()], dir.path());
        let mut deleted = links.delete_novas(&nova).await.unwrap();
        assert!(links.delete_novas(&nova).await.unwrap().is_empty());
        let names: Vec<String> = links
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert!(names.contains(&"keepme0".to_string()) && names.contains(&"eth1".to_string()));
        assert!(
            names.contains(&"brsite0".to_string()),
            "a site's bridge that the pattern matches stays"
        );
        assert!(names.contains(&"lo".to_string()) && names.contains(&"peer1".to_string()));
        deleted.sort();
        deleted
    });
    let mut expected = vec!["br100".to_string(), "br101".to_string()];
    if vlan {
        expected.push("vlan5".into());
    }
    assert_eq!(deleted, expected);
}

const NOVA_RULES: &str = "\
*nat
:nova-network-PREROUTING - [0:0]
:nova-network-snat - [0:0]
:nova-postrouting-bottom - [0:0]
-A PREROUTING -j nova-network-PREROUTING
-A POSTROUTING -j nova-postrouting-bottom
-A POSTROUTING -s 192.168.122.0/24 -m comment --comment \"not -j nova-x\" -j MASQUERADE
-A nova-network-PREROUTING -d 10.2.3.104/32 -j DNAT --to-destination 10.0.0.3
-A nova-network-PREROUTING -d 10.2.9.7/32 -j DNAT --to-destination 10.0.0.4
-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 10.2.3.120
-A nova-postrouting-bottom -j nova-network-snat
COMMIT
*filter
:nova-filter-top - [0:0]
:nova-network-FORWARD - [0:0]
:nova-network-local - [0:0]
:nova-compute-local - [0:0]
-A FORWARD -j nova-filter-top
-A FORWARD -j nova-network-FORWARD
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A nova-filter-top -j nova-compute-local
-A nova-filter-top -j nova-network-local
-A nova-compute-local -d 10.0.0.5/32 -j ACCEPT
-A nova-network-FORWARD -i br100 -j ACCEPT
COMMIT
";

const NOVA_RULES6: &str = "\
*filter
:nova-filter-top - [0:0]
-A FORWARD -j nova-filter-top
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
";

/// Install chains like nova's (IPv4 and IPv6) in `ns`.
fn install_nova_chains(ns: &Netns) {
    ns.sh(&format!(
        "iptables-restore --noflush <<'EOF'\n{NOVA_RULES}EOF"
    ));
    if ns.try_sh("command -v ip6tables-restore").0 {
        ns.sh(&format!(
            "ip6tables-restore --noflush <<'EOF'\n{NOVA_RULES6}EOF"
        ));
    }
}

#[test]
fn firewall_removes_only_nova_chains() {
    let Some(ns) = Netns::new("firewall_removes_only_nova_chains") else {
        return;
    };
    if !ns.try_sh("iptables-save").0 {
        println!("firewall_removes_only_nova_chains: skipped, iptables-save does not run here");
        return;
    }
    install_nova_chains(&ns);
    assert!(has_nova_chain(&ns.sh("iptables-save")));
    let (first, second) = ns.run(|| async {
        let first = firewall::remove_chains(firewall::NOVA_NETWORK_PREFIX)
            .await
            .unwrap();
        let second = firewall::remove_chains(firewall::NOVA_NETWORK_PREFIX)
            .await
            .unwrap();
        (first, second)
    });
    // nat: nova-network's two chains and nova-postrouting-bottom, which only it used;
    // filter: nova-network's two, not nova-filter-top, which nova-compute uses too.
    assert_eq!(first[0].chains.len(), 5, "{first:?}");
    assert_eq!(first[0].jumps, 4);
    assert!(second.iter().all(|r| r.chains.is_empty()), "{second:?}");
    let v4 = ns.sh("iptables-save");
    assert!(!has_nova_chain(&v4), "{v4}");
    assert!(!v4.contains(":nova-postrouting-bottom"), "{v4}");
    assert!(v4.contains("-A FORWARD -j nova-filter-top"), "{v4}");
    assert!(
        v4.contains("-A nova-filter-top -j nova-compute-local"),
        "{v4}"
    );
    assert!(
        v4.contains("-A nova-compute-local -d 10.0.0.5/32 -j ACCEPT"),
        "{v4}"
    );
    assert!(v4.contains("-A POSTROUTING -s 192.168.122.0/24"), "{v4}");
    assert!(v4.contains("--dport 22 -j ACCEPT"), "{v4}");
    if first[1].skipped.is_none() {
        assert_eq!(first[1].chains, vec!["filter/nova-filter-top".to_string()]);
        let v6 = ns.sh("ip6tables-save");
        assert!(!has_nova_chain(&v6) && v6.contains("--dport 22"), "{v6}");
    }
    // Nothing of this namespace's rules leaked into the host's.
    let host = Command::new("iptables-save").output().unwrap();
    assert!(
        !String::from_utf8_lossy(&host.stdout)
            .contains("192.168.122.0/24 -m comment --comment \"not -j nova-x\"")
    );
}

#[test]
fn procs_stops_only_this_namespace() {
    let Some(ns) = Netns::new("procs_stops_only_this_namespace") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = fake_exe(dir.path(), "dnsmasq");
    let other = fake_exe(dir.path(), "radvd-not-configured");
    let networks = dir.path().join("networks");
    std::fs::create_dir(&networks).unwrap();
    let inside = ns.spawn(&exe, &["30"]);
    let inside_other = ns.spawn(&other, &["30"]);
    let outside = Outside(Command::new(&exe).arg("30").spawn().unwrap());
    let outside_pid = outside.0.id();
    // nova's pid files: the inside one, and one naming the process outside.
    std::fs::write(networks.join("nova-br100.pid"), format!("{inside}\n")).unwrap();
    std::fs::write(networks.join("nova-br101.pid"), format!("{outside_pid}\n")).unwrap();
    // A dnsmasq nova started whose pid file is not written yet: found by its command line
    // (`sleep` takes no such option, so the path goes in its argv[0]).
    let by_cmdline = ns.spawn_argv0(
        &exe,
        &format!("--pid-file={}/nova-br102.pid", networks.display()),
        &["30"],
    );
    // Another dnsmasq of the same executable, not nova's (libvirt's on virbr0): left alone.
    let libvirt = ns.spawn_argv0(&exe, "/var/lib/libvirt/dnsmasq/default.conf", &["30"]);
    std::thread::sleep(Duration::from_millis(50));
    let (seen, found, stopped, again, ms) = ns.run(|| async {
        let exes = vec![exe.clone()];
        let seen = procs::scan(&exes, &networks).unwrap();
        let found = procs::find(&exes, &networks).unwrap();
        let t = Instant::now();
        let stopped = procs::stop(&exes, &networks, Duration::from_secs(1))
            .await
            .unwrap();
        let ms = t.elapsed().as_millis();
        let again = procs::stop(&exes, &networks, Duration::from_secs(1))
            .await
            .unwrap();
        (seen, found, stopped, again, ms)
    });
    println!("procs: stopped {stopped:?} in {ms} ms; seen {seen:?}");
    let mut nova = vec![inside as i32, by_cmdline as i32];
    nova.sort_unstable();
    assert_eq!(found.iter().map(|f| f.pid).collect::<Vec<_>>(), nova);
    assert!(
        seen.iter()
            .any(|f| f.pid == libvirt as i32 && f.nova.is_none()),
        "{seen:?}"
    );
    assert_eq!(stopped.len(), 2);
    assert!(stopped.iter().all(|s| !s.killed), "sleep dies on SIGTERM");
    assert!(again.is_empty());
    assert!(!running(inside));
    assert!(!running(by_cmdline));
    assert!(
        running(libvirt),
        "a dnsmasq that is not nova's must survive"
    );
    assert!(
        running(outside_pid),
        "the process outside the namespace must survive"
    );
    assert!(
        running(inside_other),
        "an executable not configured must survive"
    );
}

#[test]
fn procs_kills_after_grace() {
    let Some(ns) = Netns::new("procs_kills_after_grace") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A shell that ignores SIGTERM, started from a copy of sh (its exe is the copy).
    let sh = dir.path().join("stubborn-sh");
    std::fs::copy("/bin/sh", &sh).unwrap();
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pid = ns.spawn(&sh, &["-c", "trap '' TERM; while :; do sleep 0.05; done"]);
    std::thread::sleep(Duration::from_millis(100));
    let networks = dir.path().join("networks");
    std::fs::create_dir(&networks).unwrap();
    std::fs::write(networks.join("nova-ra-br100.pid"), format!("{pid}\n")).unwrap();
    let stopped = ns.run(|| async {
        procs::stop(
            std::slice::from_ref(&sh),
            &networks,
            Duration::from_millis(200),
        )
        .await
        .unwrap()
    });
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].pid, pid as i32);
    assert!(stopped[0].killed);
    assert!(!running(pid));
}

/// Frames received on `iface` for up to `wait` (until `enough` holds), as raw bytes.
fn capture(
    rx: &mut Box<dyn datalink::DataLinkReceiver>,
    wait: Duration,
    enough: impl Fn(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut frames = Vec::new();
    while Instant::now() < deadline && !enough(&frames) {
        if let Ok(f) = rx.next() {
            frames.push(f.to_vec());
        }
    }
    frames
}

fn receiver(iface: &str) -> Box<dyn datalink::DataLinkReceiver> {
    let nic = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .unwrap();
    let config = datalink::Config {
        read_timeout: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    match datalink::channel(&nic, config).unwrap() {
        Channel::Ethernet(_, rx) => rx,
        _ => panic!("not ethernet"),
    }
}

fn mac_of(iface: &str) -> MacAddr {
    datalink::interfaces()
        .into_iter()
        .find(|i| i.name == iface)
        .and_then(|i| i.mac)
        .unwrap()
}

/// (ARP op, sender IP) of a gratuitous ARP frame from `mac` (sender = target IP), if it is one.
fn garp(f: &[u8], mac: MacAddr) -> Option<(u16, [u8; 4])> {
    if f.len() < 42 || f[12..14] != [0x08, 0x06] || f[6..12] != mac.octets() || f[0..6] != [0xff; 6]
    {
        return None;
    }
    let (spa, tpa) = ([f[28], f[29], f[30], f[31]], [f[38], f[39], f[40], f[41]]);
    (spa == tpa).then(|| (u16::from_be_bytes([f[20], f[21]]), spa))
}

/// Whether `f` is an unsolicited NA for `target` from `mac` with Override and a good checksum.
fn na(f: &[u8], mac: MacAddr, target: std::net::Ipv6Addr) -> bool {
    f.len() >= 86
        && f[0..6] == [0x33, 0x33, 0, 0, 0, 1]
        && f[6..12] == mac.octets()
        && f[12..14] == [0x86, 0xdd]
        && f[20] == 58
        && f[54] == 136
        && f[58] & 0x20 != 0
        && f[62..78] == target.octets()
        && f[80..86] == mac.octets()
        && announce::tests::icmpv6_sum_ok(&f[..86])
}

#[test]
fn announce_sends_garp_request_reply_and_na() {
    let Some(ns) = Netns::new("announce_sends_garp_request_reply_and_na") else {
        return;
    };
    veth(&ns, "eth1", "peer1");
    ns.sh("ip addr add 10.2.3.120/32 dev eth1 && ip addr add fd00::120/128 dev eth1 nodad");
    let (frames, mac, sent, us) = ns.run(|| async {
        let mut rx = receiver("peer1");
        let settings = AnnounceSettings {
            count: 2,
            interval: Duration::from_millis(5),
            repeat_after: Some(Duration::from_millis(100)),
        };
        let addrs: Vec<IpAddr> = vec!["10.2.3.120".parse().unwrap(), "fd00::120".parse().unwrap()];
        let t = Instant::now();
        let sent = announce::announce("eth1", &addrs, &settings).await.unwrap();
        let us = t.elapsed().as_micros();
        let mac = mac_of("eth1");
        // Let the repeat burst go out (it runs on this runtime).
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Frames wait in the socket's queue; read them without yielding.
        let frames = capture(&mut rx, Duration::from_millis(500), |f| {
            f.iter()
                .filter(|x| garp(x, mac).is_some() || na(x, mac, "fd00::120".parse().unwrap()))
                .count()
                >= 12
        });
        (frames, mac, sent, us)
    });
    println!("announce: {sent} frames in {us} us");
    assert_eq!(sent, 6);
    let ip = [10, 2, 3, 120];
    let requests = frames
        .iter()
        .filter(|f| garp(f, mac) == Some((1, ip)))
        .count();
    let replies = frames
        .iter()
        .filter(|f| garp(f, mac) == Some((2, ip)))
        .count();
    let nas = frames
        .iter()
        .filter(|f| na(f, mac, "fd00::120".parse().unwrap()))
        .count();
    // Two rounds now and two in the repeat burst.
    assert_eq!(
        (requests, replies, nas),
        (4, 4, 4),
        "{} frames captured",
        frames.len()
    );
}

#[test]
fn watcher_announces_addresses_as_they_appear() {
    let Some(ns) = Netns::new("watcher_announces_addresses_as_they_appear") else {
        return;
    };
    veth(&ns, "eth1", "peer1");
    ns.sh("ip link add br100 type bridge && ip link add keepme0 type bridge");
    let (seen, garps, latency_us) = ns.run(|| async {
        let filter = InterfaceFilter {
            names: vec!["eth1".into()],
            patterns: vec![glob::Pattern::new("br*").unwrap()],
        };
        let mut stream = announce::watch_new_addresses(filter.clone()).unwrap();
        let settings = AnnounceSettings {
            count: 1,
            interval: Duration::ZERO,
            repeat_after: None,
        };
        let watcher = announce::Watcher::spawn(filter, settings).unwrap();
        let mut rx = receiver("peer1");
        let mac = mac_of("eth1");
        let a = Addrs::open().unwrap();
        let t = Instant::now();
        a.add("eth1", net("10.2.3.104/32")).await.unwrap();
        a.add("keepme0", net("192.168.50.1/24")).await.unwrap();
        a.add("br100", net("10.0.0.1/24")).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let n = tokio::time::timeout(Duration::from_secs(2), stream.next())
                .await
                .unwrap()
                .unwrap();
            seen.push((n.iface, n.addr));
        }
        // Give the watcher task its turn, then read what reached the peer.
        let mut garps = Vec::new();
        let mut latency_us = 0;
        while t.elapsed() < Duration::from_secs(2) && garps.len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let want = 2 - garps.len();
            let enough =
                |f: &[Vec<u8>]| f.iter().filter(|x| garp(x, mac).is_some()).count() >= want;
            for f in capture(&mut rx, Duration::from_millis(20), enough) {
                if let Some(g) = garp(&f, mac) {
                    latency_us = t.elapsed().as_micros();
                    garps.push(g);
                }
            }
        }
        watcher.stop();
        (seen, garps, latency_us)
    });
    println!("watcher: GARPs for 10.2.3.104 seen on the peer {latency_us} us after ip addr add");
    assert_eq!(
        seen,
        vec![
            ("eth1".to_string(), "10.2.3.104".parse::<IpAddr>().unwrap()),
            ("br100".to_string(), "10.0.0.1".parse::<IpAddr>().unwrap()),
        ]
    );
    assert_eq!(garps, vec![(1, [10, 2, 3, 104]), (2, [10, 2, 3, 104])]);
}

/// A namespace shaped like a network server running nova (FlatDHCP): eth1 public with its own
/// address and a floating IP, br100 with the gateway, nova's chains, a dnsmasq with its pid file.
fn nova_state(ns: &Netns, dnsmasq: &Path, networks: &Path) -> u32 {
    ns.sh(
        "ip link add br100 type bridge && ip addr add 10.0.0.1/24 dev br100 && ip link set br100 up \
         && ip addr replace 10.2.3.104/32 dev eth1 && ip addr replace 10.2.9.7/32 dev eth1",
    );
    install_nova_chains(ns);
    let pid = ns.spawn(dnsmasq, &["30"]);
    std::fs::write(networks.join("nova-br100.pid"), format!("{pid}\n")).unwrap();
    pid
}

#[test]
fn takeover_then_release_leaves_the_server_clean() {
    let Some(ns) = Netns::new("takeover_then_release_leaves_the_server_clean") else {
        return;
    };
    if !ns.try_sh("iptables-save").0 {
        println!("takeover_then_release_leaves_the_server_clean: skipped, no iptables here");
        return;
    }
    veth(&ns, "eth1", "peer1");
    ns.sh(
        "ip addr add 10.2.3.11/24 dev eth1 && ip link add keepme0 type bridge \
           && ip link add brsite0 type bridge && ip addr add 172.16.0.1/24 dev brsite0",
    );
    let dir = tempfile::tempdir().unwrap();
    let dnsmasq = fake_exe(dir.path(), "dnsmasq");
    let networks = dir.path().join("networks");
    std::fs::create_dir(&networks).unwrap();
    let plan = Plan {
        vips: vec![crate::config::Vip {
            address: net("10.2.3.120/32"),
            interface: "eth1".into(),
        }],
        public_interface: "eth1".into(),
        delete_interfaces: vec![
            glob::Pattern::new("br*").unwrap(),
            glob::Pattern::new("vlan*").unwrap(),
        ],
        protected_interfaces: vec!["lo".into(), "eth1".into()],
        stop_executables: vec![dnsmasq.clone()],
        nova_bridges: Vec::new(),
        networks_path: networks.clone(),
        floating_range: Some(net("10.2.3.104/29")),
        chain_prefix: firewall::NOVA_NETWORK_PREFIX.into(),
        announce: AnnounceSettings {
            count: 3,
            interval: Duration::ZERO,
            repeat_after: None,
        },
        retry: RetryPolicy::default(),
        stop_grace: Duration::from_secs(1),
    };
    let show = |label: &str, reports: &[StepReport]| {
        for r in reports {
            println!(
                "{label}: {:<9} {:>6} us  {}",
                r.step,
                r.duration.as_micros(),
                r.detail
            );
        }
    };
    // A stale primary's leftovers, then takeover twice.
    let stale = nova_state(&ns, &dnsmasq, &networks);
    let (first, second) = ns.run(|| async {
        (
            takeover(&plan).await.unwrap(),
            takeover(&plan).await.unwrap(),
        )
    });
    show("takeover", &first);
    show("takeover again", &second);
    let steps: Vec<&str> = first.iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        vec!["procs", "links", "firewall", "addrs", "announce"]
    );
    assert!(!running(stale));
    let links = ns.sh("ip -o link show");
    assert!(
        !links.contains("br100") && links.contains("keepme0"),
        "{links}"
    );
    assert!(!has_nova_chain(&ns.sh("iptables-save")));
    let eth1 = ns.sh("ip -o addr show dev eth1");
    assert!(
        eth1.contains("10.2.3.120/32") && eth1.contains("10.2.3.11/24"),
        "{eth1}"
    );
    for r in &second[..3] {
        assert_eq!(r.detail, "nothing to do", "{r:?}");
    }
    assert_eq!(second[3].detail, "already present");

    // nova-network ran here (floating IP, bridge, chains, dnsmasq); release twice.
    let ours = nova_state(&ns, &dnsmasq, &networks);
    let (first, second) =
        ns.run(|| async { (release(&plan).await.unwrap(), release(&plan).await.unwrap()) });
    show("release", &first);
    show("release again", &second);
    let steps: Vec<&str> = first.iter().map(|r| r.step).collect();
    assert_eq!(
        steps,
        vec!["procs", "floating", "vips", "links", "firewall", "ebtables"]
    );
    assert!(!running(ours));
    assert!(
        first[1].detail.contains("10.2.3.104/32") && first[1].detail.contains("10.2.9.7/32"),
        "both pools, the second outside floating_range: {:?}",
        first[1]
    );
    assert!(
        second.iter().all(|r| r.detail == "nothing to do"),
        "{second:?}"
    );
    let eth1 = ns.sh("ip -o addr show dev eth1");
    assert!(
        !eth1.contains("10.2.3.120") && !eth1.contains("10.2.3.104") && !eth1.contains("10.2.9.7"),
        "{eth1}"
    );
    assert!(
        eth1.contains("10.2.3.11/24"),
        "the server's own address stays: {eth1}"
    );
    let links = ns.sh("ip -o link show");
    assert!(
        !links.contains("br100") && links.contains("keepme0") && links.contains("brsite0"),
        "{links}"
    );
    assert!(
        ns.sh("ip -o addr show dev brsite0")
            .contains("172.16.0.1/24"),
        "a site bridge keeps its address"
    );
    let v4 = ns.sh("iptables-save");
    assert!(
        !has_nova_chain(&v4) && v4.contains("192.168.122.0/24"),
        "{v4}"
    );

    // The daemon's release in two halves: first no service address is left (the peer may
    // take over), the bridge and chains stay; then they go. Each half twice.
    ns.sh("ip addr replace 10.2.3.120/32 dev eth1");
    let ours = nova_state(&ns, &dnsmasq, &networks);
    let (first, again) = ns.run(|| async {
        (
            release_addresses(&plan).await.unwrap(),
            release_addresses(&plan).await.unwrap(),
        )
    });
    show("release addresses", &first);
    let steps: Vec<&str> = first.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec!["procs", "floating", "vips", "gateways"]);
    // With its link-local address when the kernel made one (the peer takes the router's over).
    assert!(
        first[3].detail.starts_with("deleted 10.0.0.1/24 dev br100"),
        "{:?}",
        first[3]
    );
    assert!(
        again.iter().all(|r| r.detail == "nothing to do"),
        "{again:?}"
    );
    assert!(!running(ours));
    let all = ns.sh("ip -o addr show");
    assert!(
        !all.contains("10.2.3.120") && !all.contains("10.2.3.104") && !all.contains("10.0.0.1"),
        "{all}"
    );
    assert!(ns.sh("ip -o link show").contains("br100"));
    assert!(has_nova_chain(&ns.sh("iptables-save")));
    let (tidy, again) = ns.run(|| async {
        (
            release_tidy(&plan).await.unwrap(),
            release_tidy(&plan).await.unwrap(),
        )
    });
    show("release tidy", &tidy);
    assert!(
        again.iter().all(|r| r.detail == "nothing to do"),
        "{again:?}"
    );
    assert!(!ns.sh("ip -o link show").contains("br100"));
    assert!(!has_nova_chain(&ns.sh("iptables-save")));
}

#[test]
fn failing_step_is_retried_then_named() {
    let Some(ns) = Netns::new("failing_step_is_retried_then_named") else {
        return;
    };
    let plan = Plan {
        vips: vec![crate::config::Vip {
            address: net("10.2.3.120/32"),
            interface: "eth9".into(),
        }],
        public_interface: "eth9".into(),
        delete_interfaces: Vec::new(),
        protected_interfaces: vec!["lo".into()],
        stop_executables: Vec::new(),
        nova_bridges: Vec::new(),
        networks_path: PathBuf::from("/nonexistent"),
        floating_range: None,
        chain_prefix: firewall::NOVA_NETWORK_PREFIX.into(),
        announce: AnnounceSettings::default(),
        retry: RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(10),
        },
        stop_grace: Duration::from_millis(100),
    };
    let (done, err) = ns.run(|| async { takeover(&plan).await.unwrap_err() });
    assert_eq!(done.len(), 3, "procs, links and firewall ran");
    assert_eq!(err.step, "addrs");
    assert_eq!(err.attempts, 3);
    assert_eq!(
        err.to_string(),
        "step addrs failed after 3 attempt(s): interface \"eth9\" not found"
    );
}

/// The warm standby's mirror on one namespace: capture nova's state, release it, apply the
/// snapshot (everything back as it was, announced, dnsmasq's file restored); then a snapshot
/// whose chains iptables refuses: the apply fails and the rollback leaves nothing of it.
#[test]
fn mirror_capture_apply_and_rollback() {
    use crate::mirror::apply::{Applied, ApplyError, apply, rollback};
    use crate::mirror::capture::capture;
    let Some(ns) = Netns::new("mirror_capture_apply_and_rollback") else {
        return;
    };
    if !ns.try_sh("iptables-save").0 {
        println!("mirror_capture_apply_and_rollback: skipped, no iptables here");
        return;
    }
    veth(&ns, "eth1", "peer1");
    veth(&ns, "eth2", "peer2");
    ns.sh("ip addr add 10.2.3.11/24 dev eth1");
    let dir = tempfile::tempdir().unwrap();
    let networks = dir.path().join("networks");
    std::fs::create_dir(&networks).unwrap();
    let plan = Plan {
        vips: vec![crate::config::Vip {
            address: net("10.2.3.120/32"),
            interface: "eth1".into(),
        }],
        public_interface: "eth1".into(),
        delete_interfaces: vec![glob::Pattern::new("br*").unwrap()],
        protected_interfaces: vec!["lo".into(), "eth1".into(), "eth2".into()],
        stop_executables: Vec::new(),
        nova_bridges: Vec::new(),
        networks_path: networks.clone(),
        floating_range: Some(net("10.2.3.104/29")),
        chain_prefix: firewall::NOVA_NETWORK_PREFIX.into(),
        announce: AnnounceSettings {
            count: 1,
            interval: Duration::ZERO,
            repeat_after: None,
        },
        retry: RetryPolicy::default(),
        stop_grace: Duration::from_secs(1),
    };
    ns.sh(
        "ip link add br100 type bridge && ip link set eth2 master br100 \
         && ip addr add 10.0.0.1/24 dev br100 && ip link set br100 up \
         && ip addr add 10.2.3.104/32 dev eth1 && ip addr add 10.2.3.120/32 dev eth1",
    );
    install_nova_chains(&ns);
    let hosts = "fa:16:3e:00:00:01,vm1.novalocal,10.0.0.3\n";
    std::fs::write(networks.join("nova-br100.conf"), hosts).unwrap();
    std::fs::write(networks.join("nova-br100.pid"), "1\n").unwrap();

    let snap = ns.run(|| async { capture(&plan).await.unwrap() });
    assert_eq!(
        snap.floating,
        vec![net("10.2.3.104/32")],
        "the VIP is not a floating IP"
    );
    assert_eq!(snap.bridges.len(), 1, "{snap:?}");
    assert_eq!(snap.bridges[0].name, "br100");
    assert_eq!(snap.bridges[0].addresses, vec![net("10.0.0.1/24")]);
    assert_eq!(snap.bridges[0].ports, vec!["eth2".to_string()]);
    assert!(has_nova_chain(&snap.iptables_v4), "{}", snap.iptables_v4);
    let files: Vec<&str> = snap.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(files, vec!["nova-br100.conf"], "pid files are not mirrored");

    // Gone as after a release (and the file), then back from the snapshot.
    ns.run(|| async { release(&plan).await.unwrap() });
    std::fs::remove_file(networks.join("nova-br100.conf")).unwrap();
    ns.sh("ip addr add 10.2.3.120/32 dev eth1");
    let mut done = Applied::default();
    ns.run(|| async { apply(&plan, &snap, &mut done).await.unwrap() });
    assert_eq!(done.floating, vec![net("10.2.3.104/32")]);
    assert_eq!(done.bridges, vec!["br100".to_string()]);
    assert_eq!(done.files, vec!["nova-br100.conf".to_string()]);
    assert_eq!(
        done.frames,
        2 * 2,
        "one GARP request and reply per address: {done:?}"
    );
    let back = ns.run(|| async { capture(&plan).await.unwrap() });
    assert_eq!(back, snap, "the applied state reads back as the snapshot");

    // A snapshot iptables refuses: the bridge was made before the chains failed; the
    // rollback removes it and everything else the mirror puts here.
    ns.run(|| async { release(&plan).await.unwrap() });
    let mut bad = snap.clone();
    bad.iptables_v4
        .push_str("*nat\n-A no-such-chain -j ACCEPT\nCOMMIT\n");
    let mut done = Applied::default();
    let err = ns.run(|| async { apply(&plan, &bad, &mut done).await.unwrap_err() });
    assert!(matches!(err, ApplyError::Firewall(_)), "{err}");
    assert!(ns.sh("ip -o link show").contains("br100"));
    let undone = ns.run(|| async { rollback(&plan, &done).await.unwrap() });
    println!("{undone}");
    assert!(!ns.sh("ip -o link show").contains("br100"));
    assert!(!ns.sh("ip -o addr show").contains("10.2.3.104"));
    assert!(!has_nova_chain(&ns.sh("iptables-save")));
}
