//! Bus figures: alerts per second published with publisher confirms, and the memory taken by
//! a full alert buffer while the broker is away. Prints figures, asserts nothing.
//!
//! Usage (inside a lab namespace, against the lab broker, never the machine's own):
//!   ip netns exec PREFIX-net1 target/release/examples/bus_bench amqp://nova:nova@10.9.0.10:5672/ [N]

use std::time::Duration;

use nova_network_ha::bus::{Bus, BusEvent, BusSettings, alert_json};
use tokio::time::Instant;

/// Resident set size of this process in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A typical transition alert: a detail and five step timings.
fn alert(i: usize) -> serde_json::Value {
    let steps: Vec<(String, u64)> = ["procs", "links", "firewall", "addrs", "announce"]
        .iter()
        .map(|s| (s.to_string(), i as u64 % 50))
        .collect();
    alert_json(
        "bench",
        "net1",
        "takeover_done",
        Some("net2"),
        &format!("took over from net2 after 3 missed heartbeats (alert {i})"),
        1_700_000_000_000 + i as u64,
        &steps,
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: bus_bench AMQP_URL [N]"))?;
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);

    // 1. A full buffer while the broker is away (TEST-NET-1: nothing answers there).
    let mut away = BusSettings::new(
        "amqp://nova@192.0.2.1:5672/",
        "bench",
        "net1",
        "network.bench",
    );
    away.alert_buffer = 10_000;
    let (bus, _events) = Bus::spawn(away);
    // Measured first, before the throughput run grows the heap.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = rss_kib();
    let start = Instant::now();
    for i in 0..10_000 {
        bus.publish_alert(alert(i));
    }
    let filled = start.elapsed();
    let after = rss_kib();
    for i in 10_000..20_000 {
        bus.publish_alert(alert(i));
    }
    let overflowed = rss_kib();
    let stats = bus.stats();
    println!(
        "buffer: RSS {before} KiB before, {after} KiB with 10,000 alerts buffered (+{} KiB, filled in {:.1} ms), \
         {overflowed} KiB after 10,000 more (dropped {}, buffered {})",
        after.saturating_sub(before),
        filled.as_secs_f64() * 1e3,
        stats.dropped,
        stats.buffered
    );
    drop(bus);

    // 2. Throughput with confirms.
    let mut settings = BusSettings::new(&url, "bench", "net1", "network.bench");
    settings.alert_buffer = n.max(1);
    settings.heartbeat_exchange = None;
    settings.queue_interval = Duration::from_secs(3600);
    let (bus, mut events) = Bus::spawn(settings);
    let connected = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = events.recv().await {
            if e == BusEvent::Connected {
                return true;
            }
        }
        false
    })
    .await;
    if connected != Ok(true) {
        anyhow::bail!("no connection to the broker within 10 s");
    }
    let start = Instant::now();
    for i in 0..n {
        bus.publish_alert(alert(i));
    }
    let queued = start.elapsed();
    while bus.stats().confirmed < n as u64 {
        if start.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("not all confirmed after 300 s: {:?}", bus.stats());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = start.elapsed();
    println!(
        "publish: {n} alerts of {} bytes confirmed in {:.3} s: {:.0} alerts/s (queued in {:.1} ms); {:?}",
        alert(0).to_string().len(),
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        queued.as_secs_f64() * 1e3,
        bus.stats()
    );
    Ok(())
}
