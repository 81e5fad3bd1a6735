//! Mirror figures: the cost of the iptables change check (one `NFT_MSG_GETGEN` netlink
//! request, what the active runs every `mirror.iptables_check`), and the size and the
//! sign / verify+parse time of a snapshot of 1,000 floating IPs. Prints figures, asserts
//! nothing. Run as root in any network namespace (it only reads the ruleset generation):
//!   target/release/examples/mirror_bench

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock to time itself

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nova_network_ha::cluster::NodeId;
use nova_network_ha::mirror::changes::NftGeneration;
use nova_network_ha::mirror::frame::{self, HEADER_LEN, Header, Kind, NONCE_LEN, TAG_LEN};
use nova_network_ha::mirror::snapshot::{Bridge, MirroredFile, Snapshot};
use nova_network_ha::wire::Keyring;

/// A snapshot shaped like nova's state with `n` floating IPs.
fn snapshot(n: usize) -> Snapshot {
    let ips: Vec<String> = (0..n)
        .map(|i| format!("10.2.{}.{}", 4 + i / 256, i % 256))
        .collect();
    let mut nat = String::from(
        "*nat\n:nova-network-PREROUTING - [0:0]\n:nova-network-OUTPUT - [0:0]\n:nova-network-float-snat - [0:0]\n-I PREROUTING 1 -j nova-network-PREROUTING\n",
    );
    for ip in &ips {
        nat.push_str(&format!(
            "-A nova-network-PREROUTING -d {ip}/32 -j DNAT --to-destination 10.0.0.3\n-A nova-network-OUTPUT -d {ip}/32 -j DNAT --to-destination 10.0.0.3\n-A nova-network-float-snat -s 10.0.0.3/32 -o eth1 -j SNAT --to-source {ip}\n"
        ));
    }
    nat.push_str("COMMIT\n");
    Snapshot {
        iptables_v4: nat,
        iptables_v6: String::new(),
        ebtables: vec![
            "-p IPv4 --ip-src 10.0.0.3 --ip-dst ! 10.0.0.0/24 -j redirect".into();
            ips.len().min(1)
        ],
        public_interface: "eth1".into(),
        floating: ips
            .iter()
            .filter_map(|ip| format!("{ip}/32").parse().ok())
            .collect(),
        bridges: vec![Bridge {
            name: "br100".into(),
            addresses: vec!["10.0.0.1/24".parse().unwrap_or_else(|_| unreachable!())],
            ports: vec!["eth2".into()],
            link_local: Vec::new(),
        }],
        files: vec![MirroredFile {
            name: "nova-br100.conf".into(),
            content: (0..n)
                .map(|i| {
                    format!(
                        "fa:16:3e:00:{:02x}:{:02x},vm{i}.novalocal,10.0.{}.{}\n",
                        i / 256,
                        i % 256,
                        i / 250,
                        2 + i % 250
                    )
                })
                .collect(),
        }],
    }
}

fn main() {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mirror_bench: no runtime: {e}");
            std::process::exit(1);
        }
    };
    println!("nova-network-ha mirror benchmarks");
    rt.block_on(async {
        match NftGeneration::open().await {
            Some(mut g) => {
                let n = 5_000;
                let start = Instant::now();
                for _ in 0..n {
                    let _ = g.get().await;
                }
                let per = start.elapsed() / n;
                let at = Duration::from_millis(20);
                println!(
                    "  iptables change check (NFT_MSG_GETGEN): {:>7.1} us/check; every {at:?}: {:.3}% of one core",
                    per.as_secs_f64() * 1e6,
                    per.as_secs_f64() / at.as_secs_f64() * 100.0
                );
            }
            None => println!("  iptables change check: no nf_tables here (legacy iptables: periodic snapshots)"),
        }
    });
    let keys = match Keyring::new(1, BTreeMap::from([(1, vec![7u8; 32])])) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("mirror_bench: keyring: {e}");
            std::process::exit(1);
        }
    };
    for n in [1usize, 1000, 10_000] {
        let snap = snapshot(n);
        let nonce = [1u8; NONCE_LEN];
        let header = Header {
            kind: Kind::Snapshot,
            cluster: 1,
            node: NodeId(1),
            generation: 1,
            seq: 1,
        };
        let rounds = match n {
            1 => 10_000,
            1000 => 50,
            _ => 10,
        };
        let start = Instant::now();
        let mut frame_bytes = Vec::new();
        for _ in 0..rounds {
            let json = serde_json::to_vec(&snap).unwrap_or_default();
            frame_bytes = frame::encode(&header, &json, &nonce, &keys);
        }
        let encode = start.elapsed() / rounds;
        let start = Instant::now();
        for _ in 0..rounds {
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&frame_bytes[..HEADER_LEN]);
            let mut head_tag = [0u8; TAG_LEN];
            head_tag.copy_from_slice(&frame_bytes[HEADER_LEN..HEADER_LEN + TAG_LEN]);
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&frame_bytes[frame_bytes.len() - TAG_LEN..]);
            let payload = &frame_bytes[HEADER_LEN + TAG_LEN..frame_bytes.len() - TAG_LEN];
            let ok = frame::read_header(&h, 1, &[NodeId(1)], &keys)
                .and_then(|p| {
                    frame::verify_header(&p, &h, &head_tag, &nonce, &keys)?;
                    frame::verify(&p, &h, payload, &tag, &nonce, &keys)
                })
                .is_ok()
                && serde_json::from_slice::<Snapshot>(payload).is_ok();
            if !ok {
                eprintln!("mirror_bench: a frame did not verify");
                std::process::exit(1);
            }
        }
        let verify = start.elapsed() / rounds;
        println!(
            "  snapshot of {n:>5} floating IP(s): {:>8} bytes; serialise+sign {:>8.1} us; verify+parse {:>8.1} us",
            frame_bytes.len(),
            encode.as_secs_f64() * 1e6,
            verify.as_secs_f64() * 1e6
        );
    }
}
