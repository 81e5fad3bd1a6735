//! Lab tests of the bus against the lab's RabbitMQ (`scripts/lab`, docs/design.md section 7): each
//! test brings up its own lab (prefix `lb<pid><n>`), runs the bus inside `PREFIX-net1` from a
//! dedicated thread that `setns`es and builds a current-thread runtime there, and takes the
//! lab down on the way out, even on failure. They never touch a broker outside the lab.
//! Without root (or without RabbitMQ) they print why and pass. Lab tests run one at a time.
//! Proves docs/design.md section 6 (alerts published with confirms, buffered while the broker is
//! away, oldest dropped and counted) and the bus half of sections 3 and 5 (queue probe samples,
//! heartbeats through the broker).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::cluster::AlertKind;

/// Lab tests share the machine's namespaces and CPU: one at a time.
static LAB: Mutex<()> = Mutex::new(());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How long any one expected thing may take.
const WAIT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A lab that lives as long as the value (`scripts/lab -p PREFIX up`, then `down`).
struct Lab {
    prefix: String,
}

impl Lab {
    /// A fresh lab, or `None` (with the reason printed) when this machine cannot have one.
    fn up(test: &str) -> Option<Lab> {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "nova_network_ha=debug".into()),
            )
            .try_init();
        if !nix::unistd::geteuid().is_root() {
            println!("{test}: skipped, the lab needs root (network namespaces)");
            return None;
        }
        if !Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() {
            println!("{test}: skipped, RabbitMQ is not installed (/usr/lib/rabbitmq/bin)");
            return None;
        }
        let prefix = format!(
            "lb{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::SeqCst) % 10
        );
        let lab = Lab { prefix };
        let out = Command::new(root().join("scripts/lab"))
            .args(["-p", &lab.prefix, "up"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(lab)
    }

    /// Bus settings for a node of this lab (password given apart from the URL).
    fn settings(&self, node: &str) -> BusSettings {
        let mut s = BusSettings::new("amqp://nova@10.9.0.10:5672/", "c1", node, "network.test");
        s.password = Some("nova".to_owned());
        s.queue_interval = Duration::from_millis(200);
        s
    }

    /// Run `f`'s future inside `PREFIX-<node>` on a thread of its own with its own runtime.
    fn spawn_in<F, Fut>(&self, node: &str, f: F) -> std::thread::JoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future,
        Fut::Output: Send + 'static,
    {
        let ns = format!("/run/netns/{}-{node}", self.prefix);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&ns).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f())
        })
    }

    /// [`Lab::spawn_in`] and wait for it; a panic inside fails the test.
    fn run_in<F, Fut>(&self, node: &str, f: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future,
        Fut::Output: Send + 'static,
    {
        self.spawn_in(node, f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/lab"))
            .args(["-p", &self.prefix, "down"])
            .output();
    }
}

/// `scripts/lab -p PREFIX ARGS...` from async code; its stdout.
async fn lab_cmd(prefix: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(root().join("scripts/lab"))
        .args(["-p", prefix])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "lab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The next event that `pick` accepts, skipping the others; panics after [`WAIT`].
async fn expect<T>(
    events: &mut mpsc::Receiver<BusEvent>,
    what: &str,
    mut pick: impl FnMut(&BusEvent) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("bus task ended");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

/// Wait until the bus's counters satisfy `ok`; panics after [`WAIT`] with the last ones.
async fn until_stats(bus: &Bus, what: &str, ok: impl Fn(&BusStats) -> bool) -> BusStats {
    let start = tokio::time::Instant::now();
    loop {
        let s = bus.stats();
        if ok(&s) {
            return s;
        }
        assert!(start.elapsed() < WAIT, "{what}: still {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alert number `i` of a test, kinds in turn.
fn numbered(node: &str, i: usize) -> Value {
    let kind = AlertKind::ALL[i % AlertKind::ALL.len()].name();
    alert_json(
        "c1",
        node,
        kind,
        None,
        &format!("n={i}"),
        1_700_000_000_000,
        &[],
    )
}

fn number(alert: &Value) -> usize {
    alert["detail"].as_str().unwrap()[2..].parse().unwrap()
}

/// 100 alerts published with confirms all arrive at a watcher, with their routing keys.
#[test]
fn alerts_are_confirmed_and_watched() {
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = Lab::up("alerts_are_confirmed_and_watched") else {
        return;
    };
    let settings = lab.settings("net1");
    lab.run_in("net1", move || async move {
        let mut watch = AlertWatch::open(&settings, "#").await.unwrap();
        let (bus, mut events) = Bus::spawn(settings.clone());
        expect(&mut events, "Connected", |e| {
            (*e == BusEvent::Connected).then_some(())
        })
        .await;
        for i in 0..100 {
            bus.publish_alert(numbered("net1", i));
        }
        let mut seen = [false; 100];
        for _ in 0..100 {
            let (key, alert) = tokio::time::timeout(WAIT, watch.next())
                .await
                .expect("an alert within the wait")
                .unwrap();
            let n = number(&alert);
            assert_eq!(
                key,
                format!(
                    "c1.net1.{}",
                    AlertKind::ALL[n % AlertKind::ALL.len()].name()
                )
            );
            assert_eq!(alert["schema"], ALERT_SCHEMA);
            assert!(!seen[n], "alert {n} twice");
            seen[n] = true;
        }
        let stats = until_stats(&bus, "all confirmed", |s| s.confirmed == 100).await;
        assert_eq!(stats.buffered, 0);
        assert_eq!(stats.published, 100);
        assert_eq!(stats.dropped, 0);
        assert!(stats.connected);
        drop(bus);
        watch.close().await;
    });
}

/// `amqps://`: the bus verifies the broker's certificate (signed by the lab's own CA, for its
/// IP address) and works over TLS; without that CA the connection is refused as untrusted.
#[test]
fn tls_broker_is_verified_and_used() {
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = Lab::up("tls_broker_is_verified_and_used") else {
        return;
    };
    let ca = std::fs::read_to_string(root().join(".lab").join(&lab.prefix).join("broker-ca.pem"))
        .unwrap();
    let mut tls = lab.settings("net1");
    tls.url = "amqps://nova@10.9.0.10:5671/".to_owned();
    let untrusted = tls.clone();
    tls.ca_pem = Some(ca);
    let prefix = lab.prefix.clone();
    lab.run_in("net1", move || async move {
        // Not trusted: the handshake fails on the certificate, and says so.
        let err = connection::connect(&untrusted)
            .await
            .err()
            .map(|e| e.to_string());
        let err = err.expect("a connection to a broker with an unknown CA must fail");
        assert!(err.contains("amqps://nova@10.9.0.10:5671/"), "{err}");
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        // Trusted: the connection is TLS end to end (the broker says so) and alerts flow.
        let conn = connection::connect(&tls).await.unwrap();
        drop(conn);
        let mut watch = AlertWatch::open(&tls, "#").await.unwrap();
        let (bus, mut events) = Bus::spawn(tls.clone());
        expect(&mut events, "Connected", |e| {
            (*e == BusEvent::Connected).then_some(())
        })
        .await;
        for i in 0..10 {
            bus.publish_alert(numbered("net1", i));
        }
        for _ in 0..10 {
            tokio::time::timeout(WAIT, watch.next())
                .await
                .expect("an alert within the wait")
                .unwrap();
        }
        let stats = until_stats(&bus, "all confirmed", |s| s.confirmed == 10).await;
        assert_eq!(stats.published, 10);
        // The broker's own view: both connections (the bus and the watcher) are on TLS.
        let listing = lab_cmd(
            &prefix,
            &[
                "broker",
                "ctl",
                "list_connections",
                "--quiet",
                "--no-table-headers",
                "ssl",
                "port",
            ],
        )
        .await;
        let rows: Vec<&str> = listing.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(rows.len(), 2, "{listing}");
        for row in rows {
            let cols: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(cols, ["true", "5671"], "{listing}");
        }
        drop(bus);
        watch.close().await;
    });
}

/// Broker away: alerts are buffered, the oldest dropped and counted; back: an
/// `alerts_dropped` alert with the count comes first, then the rest, in order.
#[test]
fn alerts_survive_a_broker_outage() {
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = Lab::up("alerts_survive_a_broker_outage") else {
        return;
    };
    let prefix = lab.prefix.clone();
    let mut settings = lab.settings("net2");
    settings.alert_buffer = 10;
    settings.heartbeat_exchange = None;
    let watcher_settings = lab.settings("net1");
    // The bus runs in net2 so that it can be kept away from the restarted broker (its
    // management link down) until the watcher's queue, in net1, is bound. (`lab broker start`
    // checks the broker from net1.)
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let watcher = move || async move {
        go_rx.await.unwrap();
        let mut watch = AlertWatch::open(&watcher_settings, "c1.#").await.unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        for _ in 0..11 {
            let (key, alert) = tokio::time::timeout(WAIT, watch.next())
                .await
                .expect("an alert within the wait")
                .unwrap();
            got.push((key, alert));
        }
        watch.close().await;
        got
    };
    let watcher = lab.spawn_in("net1", watcher);
    lab.run_in("net2", move || async move {
        let (bus, mut events) = Bus::spawn(settings);
        expect(&mut events, "Connected", |e| {
            (*e == BusEvent::Connected).then_some(())
        })
        .await;
        bus.publish_alert(alert_json("c1", "net2", "fault", None, "before", 0, &[]));
        until_stats(&bus, "first alert confirmed", |s| s.confirmed == 1).await;

        lab_cmd(&prefix, &["broker", "stop"]).await;
        expect(&mut events, "Disconnected", |e| {
            matches!(e, BusEvent::Disconnected { .. }).then_some(())
        })
        .await;
        for i in 0..25 {
            bus.publish_alert(numbered("net2", i));
        }
        let stats = bus.stats();
        assert_eq!((stats.buffered, stats.dropped), (10, 15), "{stats:?}");
        assert!(!stats.connected);
        let mut signalled = 0;
        while signalled < 15 {
            signalled += expect(&mut events, "AlertsDropped", |e| match e {
                BusEvent::AlertsDropped { count } => Some(*count),
                _ => None,
            })
            .await;
        }
        assert_eq!(signalled, 15);

        lab_cmd(&prefix, &["link", "net2", "eth3", "down"]).await;
        lab_cmd(&prefix, &["broker", "start"]).await;
        go_tx.send(()).unwrap();
        ready_rx.await.unwrap();
        lab_cmd(&prefix, &["link", "net2", "eth3", "up"]).await;
        expect(&mut events, "Connected again", |e| {
            (*e == BusEvent::Connected).then_some(())
        })
        .await;
        let stats = until_stats(&bus, "buffer flushed", |s| s.buffered == 0).await;
        assert_eq!(stats.reconnects, 1);
        assert_eq!(stats.dropped, 15);
        assert_eq!(stats.confirmed, 1 + 1 + 10, "{stats:?}");
    });
    let got = watcher
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p));
    assert_eq!(got[0].0, "c1.net2.alerts_dropped");
    assert_eq!(got[0].1["kind"], "alerts_dropped");
    let detail = got[0].1["detail"].as_str().unwrap();
    assert!(detail.starts_with("dropped 15 alerts"), "{detail}");
    let rest: Vec<usize> = got[1..].iter().map(|(_, a)| number(a)).collect();
    assert_eq!(rest, (15..25).collect::<Vec<_>>());
}

/// Samples of a queue a test consumer holds are right; a missing queue gives QueueMissing and
/// leaves the alert channel and the heartbeat consumer working.
#[test]
fn queue_probe_samples_and_missing_queue() {
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = Lab::up("queue_probe_samples_and_missing_queue") else {
        return;
    };
    let settings = lab.settings("net1");
    lab.run_in("net1", move || async move {
        let (bus, mut events) = Bus::spawn(settings.clone());
        expect(&mut events, "Connected", |e| {
            (*e == BusEvent::Connected).then_some(())
        })
        .await;
        // Missing: said at every interval (the probe channel is reopened each time).
        for _ in 0..3 {
            expect(&mut events, "QueueMissing", |e| match e {
                BusEvent::QueueMissing => Some(()),
                BusEvent::QueueSample { .. } => panic!("sample of a missing queue"),
                BusEvent::Disconnected { reason } => panic!("disconnected: {reason}"),
                _ => None,
            })
            .await;
        }
        // The alert channel still works, and so does the heartbeat consumer.
        bus.publish_alert(alert_json("c1", "net1", "probe_failed", None, "x", 0, &[]));
        until_stats(&bus, "alert confirmed", |s| s.confirmed == 1).await;
        let hb = b"heartbeat-1".to_vec();
        let hb2 = hb.clone();
        let heard = async {
            expect(&mut events, "own heartbeat", |e| {
                (*e == BusEvent::Heartbeat(hb2.clone())).then_some(())
            })
            .await
        };
        let send = async {
            loop {
                bus.send_heartbeat(hb.clone());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! { _ = heard => {}, _ = send => {} }

        // A test consumer's queue with 5 messages and no consumer, then one consumer holding
        // one unacked message (prefetch 1).
        let conn = connection::connect(&settings).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        ch.queue_declare(
            "network.test".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        for _ in 0..5 {
            ch.basic_publish(
                "".into(),
                "network.test".into(),
                BasicPublishOptions::default(),
                b"rpc",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        expect(&mut events, "sample 0/5", |e| {
            (*e == BusEvent::QueueSample {
                consumers: 0,
                messages: 5,
            })
            .then_some(())
        })
        .await;
        let consumer_ch = conn.create_channel().await.unwrap();
        consumer_ch
            .basic_qos(1, BasicQosOptions::default())
            .await
            .unwrap();
        let mut consumer = consumer_ch
            .basic_consume(
                "network.test".into(),
                "nova-network-standin".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _first = consumer.next().await.unwrap().unwrap();
        expect(&mut events, "sample 1/4", |e| {
            (*e == BusEvent::QueueSample {
                consumers: 1,
                messages: 4,
            })
            .then_some(())
        })
        .await;
        // The consumer goes: its unacked message is back in the queue.
        consumer_ch.close(200, "bye".into()).await.unwrap();
        expect(&mut events, "sample 0/5 again", |e| {
            (*e == BusEvent::QueueSample {
                consumers: 0,
                messages: 5,
            })
            .then_some(())
        })
        .await;
        ch.queue_delete("network.test".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        expect(&mut events, "QueueMissing after the delete", |e| {
            (*e == BusEvent::QueueMissing).then_some(())
        })
        .await;
        assert!(bus.stats().connected);
        conn.close(200, "bye".into()).await.unwrap();
        drop(bus);
    });
}

/// Heartbeat bytes sent by one bus arrive at another as `BusEvent::Heartbeat`.
#[test]
fn heartbeats_cross_the_broker() {
    let _one = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let Some(lab) = Lab::up("heartbeats_cross_the_broker") else {
        return;
    };
    let a = lab.settings("net1");
    let b = lab.settings("net2");
    lab.run_in("net1", move || async move {
        let (bus_a, mut events_a) = Bus::spawn(a);
        let (bus_b, mut events_b) = Bus::spawn(b);
        expect(&mut events_a, "A connected", |e| {
            (*e == BusEvent::Connected).then_some(())
        })
        .await;
        expect(&mut events_b, "B connected", |e| {
            (*e == BusEvent::Connected).then_some(())
        })
        .await;
        let heard = async {
            let mut from_a = 0;
            while from_a < 3 {
                let bytes = expect(&mut events_b, "A's heartbeat at B", |e| match e {
                    BusEvent::Heartbeat(bytes) => Some(bytes.clone()),
                    _ => None,
                })
                .await;
                if bytes.starts_with(b"from-a ") {
                    from_a += 1;
                }
            }
        };
        let send = async {
            for seq in 0u32.. {
                bus_a.send_heartbeat(format!("from-a {seq}").into_bytes());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! { _ = heard => {}, _ = send => {} }
        drop(bus_a);
        drop(bus_b);
    });
}

/// `Bus` works on a multi-thread runtime too and shuts down when dropped, even when it never
/// reached a broker (an address nobody answers, not the machine's own RabbitMQ).
#[test]
fn unreachable_broker_never_blocks_the_caller() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // 192.0.2.0/24 is TEST-NET-1: never routed to a broker.
        let mut s = BusSettings::new("amqp://nova@192.0.2.1:5672/", "c1", "net1", "network.net1");
        s.alert_buffer = 3;
        let (bus, mut events) = Bus::spawn(s);
        let start = tokio::time::Instant::now();
        for i in 0..10_000 {
            bus.publish_alert(numbered("net1", i));
            bus.send_heartbeat(vec![1, 2, 3]);
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let stats = bus.stats();
        assert_eq!(
            (stats.buffered, stats.dropped, stats.connected),
            (3, 9_997, false)
        );
        let count = expect(&mut events, "AlertsDropped", |e| match e {
            BusEvent::AlertsDropped { count } => Some(*count),
            _ => None,
        })
        .await;
        assert!(count > 0);
        drop(bus);
    });
}
