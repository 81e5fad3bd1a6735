//! The warm standby's apply of a big snapshot, what a takeover does before nova-network
//! starts: nova's bridge, nova-network's chains (one `iptables-restore --noflush`, fitted to
//! this server's rules), the floating IPs (one netlink request each), one announcement burst
//! (a GARP request and reply per address and round, paced 500 us every 256 frames), the
//! dnsmasq files; then, once the addresses are bound as nova-network binds them, the floating
//! step of a release; then the rollback. 1,000 and 10,000 floating IPs across three ranges, in a
//! network namespace of its own (`nnha-mab<pid>`, removed at the end) whose links go nowhere
//! else. Prints figures, asserts nothing. Root:
//!   target/release/examples/mirror_apply_bench

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock to time itself

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nova_network_ha::config::Vip;
use nova_network_ha::mirror::apply::{Applied, apply, rollback};
use nova_network_ha::mirror::snapshot::{Bridge, MirroredFile, Snapshot};
use nova_network_ha::takeover::steps::{self, Step};
use nova_network_ha::takeover::{AnnounceSettings, Plan, RetryPolicy, firewall};

/// The floating ranges the addresses are spread over, by third octet: 10.2.16.0/20,
/// 10.2.32.0/20, 10.2.48.0/20 (nova-manage floating create, three pools; nova.conf's
/// floating_range names none of them).
const RANGES: [usize; 3] = [16, 32, 48];

/// The `i`th floating IP: the ranges in turn, 4,094 hosts each.
fn floating(i: usize) -> String {
    let base = RANGES[i % RANGES.len()];
    let host = i / RANGES.len() + 1;
    format!("10.2.{}.{}", base + host / 256, host % 256)
}

/// nova's state with `n` floating IPs bound to one VM, as the active's capture takes it.
fn snapshot(n: usize) -> Snapshot {
    let mut nat = String::from(
        "*nat\n:nova-network-OUTPUT - [0:0]\n:nova-network-PREROUTING - [0:0]\n:nova-network-float-snat - [0:0]\n:nova-network-snat - [0:0]\n:nova-postrouting-bottom - [0:0]\n-I PREROUTING 1 -j nova-network-PREROUTING\n-I OUTPUT 1 -j nova-network-OUTPUT\n-A POSTROUTING -j nova-postrouting-bottom\n-A nova-network-snat -j nova-network-float-snat\n-A nova-network-snat -s 10.0.0.0/24 -j SNAT --to-source 10.2.3.120\n-A nova-postrouting-bottom -j nova-network-snat\n",
    );
    let ips: Vec<String> = (0..n).map(floating).collect();
    for ip in &ips {
        nat.push_str(&format!(
            "-A nova-network-PREROUTING -d {ip}/32 -j DNAT --to-destination 10.0.0.3\n-A nova-network-OUTPUT -d {ip}/32 -j DNAT --to-destination 10.0.0.3\n-A nova-network-float-snat -s 10.0.0.3/32 -o eth1 -j SNAT --to-source {ip}\n"
        ));
    }
    nat.push_str("COMMIT\n");
    Snapshot {
        iptables_v4: nat,
        iptables_v6: String::new(),
        ebtables: vec!["-p IPv4 --ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect".into()],
        public_interface: "eth1".into(),
        floating: ips
            .iter()
            .filter_map(|ip| format!("{ip}/32").parse().ok())
            .collect(),
        bridges: vec![Bridge {
            name: "br100".into(),
            addresses: "10.0.0.1/24".parse().into_iter().collect(),
            link_local: Vec::new(),
            ports: vec!["eth2".into()],
        }],
        files: vec![MirroredFile {
            name: "nova-br100.conf".into(),
            content: "fa:16:3e:00:00:03,vm1.novalocal,10.0.0.3\n".into(),
        }],
    }
}

/// A network namespace of the bench's own, deleted on drop.
struct Netns(String);

impl Netns {
    fn sh(&self, script: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", script])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn plan(networks: PathBuf) -> Plan {
    Plan {
        vips: vec![Vip {
            address: "10.2.3.120/32".parse().unwrap_or_else(|_| unreachable!()),
            interface: "eth1".into(),
        }],
        public_interface: "eth1".into(),
        delete_interfaces: glob::Pattern::new("br*").into_iter().collect(),
        nova_bridges: vec!["br100".into()],
        protected_interfaces: vec!["eth1".into(), "eth2".into(), "lo".into()],
        stop_executables: Vec::new(),
        networks_path: networks,
        floating_range: None,
        chain_prefix: firewall::NOVA_NETWORK_PREFIX.into(),
        announce: AnnounceSettings {
            count: 3,
            interval: Duration::ZERO,
            repeat_after: None,
        },
        retry: RetryPolicy::default(),
        stop_grace: Duration::from_secs(1),
    }
}

/// Apply and roll back a snapshot of `n` floating IPs inside `ns`; one line of figures.
fn measure(ns: &Netns, n: usize) -> Result<String, String> {
    let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).map_err(|e| e.to_string())?;
    let networks = std::env::temp_dir().join(format!("{}-networks", ns.0));
    let snap = snapshot(n);
    let plan = plan(networks.clone());
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns: {e}"))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut done = Applied::default();
                let start = Instant::now();
                apply(&plan, &snap, &mut done)
                    .await
                    .map_err(|e| format!("apply: {e}"))?;
                let applied = start.elapsed();
                // nova-network binds the addresses itself once it runs (ip -batch here), and
                // a release then deletes them: the floating step of a release.
                let batch: String = snap
                    .floating
                    .iter()
                    .map(|f| format!("addr add {f} dev eth1\n"))
                    .collect();
                let bound = Command::new("ip")
                    .args(["-batch", "-"])
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write;
                        if let Some(mut stdin) = c.stdin.take() {
                            stdin.write_all(batch.as_bytes())?;
                        }
                        c.wait()
                    })
                    .is_ok_and(|s| s.success());
                if !bound {
                    return Err("ip -batch addr add failed".to_owned());
                }
                let start = Instant::now();
                let released = match steps::run(Step::Floating, &plan).await {
                    Some(Ok(_)) => start.elapsed(),
                    Some(Err(e)) => return Err(format!("release: {e}")),
                    None => return Err("no floating step".to_owned()),
                };
                let start = Instant::now();
                rollback(&plan, &done)
                    .await
                    .map_err(|e| format!("rollback: {e}"))?;
                let rolled = start.elapsed();
                let parts: Vec<String> = done
                    .timings
                    .iter()
                    .map(|(part, d)| format!("{part} {:.1}", d.as_secs_f64() * 1e3))
                    .collect();
                Ok::<_, String>(format!(
                    "  {n:>5} floating IPs in {} ranges, {} iptables rules: apply {:>7.1} ms ({}; {} frames announced); release of the addresses nova bound {:>7.1} ms; rollback {:>7.1} ms",
                    RANGES.len(),
                    snap.iptables_v4.lines().filter(|l| l.starts_with('-')).count(),
                    applied.as_secs_f64() * 1e3,
                    parts.join(", "),
                    done.frames,
                    released.as_secs_f64() * 1e3,
                    rolled.as_secs_f64() * 1e3
                ))
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the bench thread panicked".into()))
    });
    let _ = std::fs::remove_dir_all(&networks);
    result
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("mirror_apply_bench: needs root (a network namespace, iptables)");
        std::process::exit(2);
    }
    let ns = Netns(format!("nnha-mab{}", std::process::id()));
    let made = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .is_ok_and(|s| s.success());
    if !made
        || !ns.sh(
            "ip link set lo up && ip link add eth1 type veth peer name peer1 \
             && ip link add eth2 type veth peer name peer2 \
             && for l in eth1 peer1 eth2 peer2; do ip link set $l up; done \
             && ip addr add 10.2.3.12/24 dev eth1",
        )
    {
        eprintln!("mirror_apply_bench: cannot make the namespace {}", ns.0);
        std::process::exit(1);
    }
    println!(
        "nova-network-ha mirror apply (takeover before nova-network starts), announce 3 rounds"
    );
    for n in [1000, 10_000] {
        match measure(&ns, n) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("mirror_apply_bench: {n}: {e}");
                std::process::exit(1);
            }
        }
    }
}
