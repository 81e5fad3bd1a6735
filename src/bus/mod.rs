//! The message bus: one AMQP connection to the broker nova already uses, kept up forever, and
//! what travels on it (docs/design.md sections 3, 5 and 6): alerts with publisher confirms, the
//! `network.<host>` queue probe's samples, and heartbeats through the broker as an extra path.
//!
//! [`Bus::spawn`] starts one task that owns the connection; the [`Bus`] handle never blocks
//! its caller, and the daemon keeps working while the broker is away. Each concern has its own
//! channel so that one failing (a passive declare's 404 closes the probe's channel) disturbs no
//! other. This module never judges what it carries: nova-network's health from samples is
//! [`crate::probes::queue`]'s (pure), heartbeat bytes are `wire`'s, alerts are made by the daemon.
//! It never logs a password.

pub mod alerts;
pub mod connection;
pub mod heartbeat;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ErrorKind};
use rand::SeedableRng;
use tokio::sync::{Notify, mpsc, watch};

pub use alerts::{ALERT_SCHEMA, AlertWatch, alert_json, watch_alerts};
pub use connection::BusError;

use alerts::{AlertBuffer, Pending};
use connection::Backoff;

/// Capacity of the event channel to the daemon; samples and heartbeats beyond it are lost.
const EVENTS: usize = 1024;

/// Heartbeats waiting to be sent; more are dropped (they would be stale).
const HEARTBEATS: usize = 16;

/// Pause before reopening a channel the broker closed while the connection stayed up.
const REOPEN: Duration = Duration::from_secs(1);

/// How the bus reaches the broker and what it does there.
#[derive(Clone)]
pub struct BusSettings {
    /// `amqp://` or `amqps://` (TLS) URL, user inside, password not (see `password`).
    pub url: String,
    /// The broker password, from a file or the environment; never logged (Debug redacts it).
    pub password: Option<String>,
    /// PEM CA certificates trusted for `amqps://` besides the system's (`bus.ca_file`).
    pub ca_pem: Option<String>,
    /// The durable topic exchange for alerts (default `nova-network-ha`).
    pub exchange: String,
    /// The cluster's name; alerts are routed `<cluster>.<node>.<kind>`.
    pub cluster: String,
    /// This node's name.
    pub node: String,
    /// The queue to probe, `network.<host>`.
    pub queue: String,
    /// How often the queue is sampled while connected (default 1 s).
    pub queue_interval: Duration,
    /// How many unconfirmed alerts are kept while the broker is away (default 1000).
    pub alert_buffer: usize,
    /// Fanout exchange for heartbeats through the broker
    /// (`nova-network-ha.<cluster>.heartbeat`); `None`: no heartbeats on the bus.
    pub heartbeat_exchange: Option<String>,
}

impl BusSettings {
    /// Settings with the defaults: exchange `nova-network-ha`, queue sampled every second,
    /// 1000 alerts buffered, heartbeats through the broker on
    /// (`nova-network-ha.<cluster>.heartbeat`).
    pub fn new(url: &str, cluster: &str, node: &str, queue: &str) -> BusSettings {
        BusSettings {
            url: url.to_owned(),
            password: None,
            ca_pem: None,
            exchange: "nova-network-ha".to_owned(),
            cluster: cluster.to_owned(),
            node: node.to_owned(),
            queue: queue.to_owned(),
            queue_interval: Duration::from_secs(1),
            alert_buffer: 1000,
            heartbeat_exchange: Some(format!("nova-network-ha.{cluster}.heartbeat")),
        }
    }
}

impl BusSettings {
    /// The settings for a validated configuration's `[bus]`, or `None` without one.
    pub fn from_config(config: &crate::config::Config) -> Option<BusSettings> {
        let b = config.bus.as_ref()?;
        let mut settings = BusSettings::new(
            &b.url,
            &config.cluster_name,
            &config.this_node().name,
            &format!("network.{}", config.nova.host),
        );
        settings.password = b.password.as_ref().map(|p| p.0.clone());
        settings.ca_pem = b.ca.as_ref().map(|ca| ca.pem.clone());
        settings.exchange = b.exchange.clone();
        settings.queue_interval = b.queue_interval;
        settings.alert_buffer = b.alert_buffer;
        settings.heartbeat_exchange = b
            .heartbeat_path
            .then(|| format!("{}.{}.heartbeat", b.exchange, config.cluster_name));
        Some(settings)
    }
}

impl fmt::Debug for BusSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusSettings")
            .field("url", &connection::redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .field("exchange", &self.exchange)
            .field("cluster", &self.cluster)
            .field("node", &self.node)
            .field("queue", &self.queue)
            .field("queue_interval", &self.queue_interval)
            .field("alert_buffer", &self.alert_buffer)
            .field("heartbeat_exchange", &self.heartbeat_exchange)
            .finish()
    }
}

/// What the bus tells the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusEvent {
    /// Connected to the broker (again); exchanges declared.
    Connected,
    /// The connection was lost; the bus reconnects by itself.
    Disconnected {
        /// Why, as lapin said it.
        reason: String,
    },
    /// One sample of the probed queue, every `queue_interval` while connected.
    QueueSample {
        /// Consumers attached to the queue.
        consumers: u32,
        /// Messages ready in the queue.
        messages: u32,
    },
    /// The probed queue does not exist (the passive declare said 404).
    QueueMissing,
    /// A heartbeat from the broker path, as published (ours too: the caller filters them).
    Heartbeat(Vec<u8>),
    /// The alert buffer was full: this many of the oldest alerts were dropped (an
    /// `alerts_dropped` alert says so on the bus once it is back).
    AlertsDropped {
        /// Alerts dropped since the previous such event.
        count: u64,
    },
}

/// Counters of the bus, for the status socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Connected to the broker now.
    pub connected: bool,
    /// Alerts published (a retried alert counts each time).
    pub published: u64,
    /// Alerts confirmed (acked) by the broker.
    pub confirmed: u64,
    /// Alerts dropped from the full buffer, in total.
    pub dropped: u64,
    /// Alerts in the buffer, not yet confirmed.
    pub buffered: usize,
    /// Connections made after a lost one.
    pub reconnects: u64,
}

/// State shared between the handles and the task.
struct Shared {
    settings: BusSettings,
    buffer: Mutex<AlertBuffer>,
    /// Alerts were added (or dropped): the task looks at the buffer.
    wake: Notify,
    connected: AtomicBool,
    published: AtomicU64,
    confirmed: AtomicU64,
    reconnects: AtomicU64,
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, AlertBuffer> {
        // A panic while holding the lock leaves a consistent buffer: keep using it.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle on the bus task; cheap to clone. The task stops when the last handle is dropped
/// (its connection is closed, its private queues go with it).
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
    heartbeats: mpsc::Sender<Vec<u8>>,
    /// Dropped with the last handle: tells the task to stop.
    _alive: Arc<watch::Sender<()>>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("settings", &self.shared.settings)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Bus {
    /// Start the bus task on the current tokio runtime (panics outside one, as
    /// `tokio::spawn` does); events arrive on the receiver.
    pub fn spawn(settings: BusSettings) -> (Bus, mpsc::Receiver<BusEvent>) {
        let (events_tx, events_rx) = mpsc::channel(EVENTS);
        let (hb_tx, hb_rx) = mpsc::channel(HEARTBEATS);
        let (alive_tx, alive_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            buffer: Mutex::new(AlertBuffer::new(settings.alert_buffer)),
            settings,
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        tokio::spawn(run(shared.clone(), events_tx, hb_rx, alive_rx));
        let bus = Bus {
            shared,
            heartbeats: hb_tx,
            _alive: Arc::new(alive_tx),
        };
        (bus, events_rx)
    }

    /// Queue an alert for publishing (routing key from its `kind`); never blocks. When the
    /// buffer is full the oldest alert is dropped and counted.
    pub fn publish_alert(&self, alert: serde_json::Value) {
        let s = &self.shared.settings;
        let key = alerts::routing_key(&s.cluster, &s.node, &alert);
        let body = alert.to_string().into_bytes();
        if self.shared.buffer().push(key, body) {
            tracing::debug!(
                buffered = self.shared.settings.alert_buffer,
                "alert buffer full, oldest alert dropped"
            );
        }
        self.shared.wake.notify_one();
    }

    /// Send a heartbeat through the broker, best effort: dropped when not connected or when
    /// the previous ones are still waiting.
    pub fn send_heartbeat(&self, bytes: Vec<u8>) {
        if self.shared.connected.load(Ordering::Relaxed) {
            let _ = self.heartbeats.try_send(bytes);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> BusStats {
        let (dropped, buffered) = {
            let b = self.shared.buffer();
            (b.dropped, b.len())
        };
        BusStats {
            connected: self.shared.connected.load(Ordering::Relaxed),
            published: self.shared.published.load(Ordering::Relaxed),
            confirmed: self.shared.confirmed.load(Ordering::Relaxed),
            dropped,
            buffered,
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// Wall-clock milliseconds since the epoch, for the `alerts_dropped` alert's timestamp.
fn now_unix_ms() -> u64 {
    #[allow(
        clippy::disallowed_methods,
        reason = "an alert's timestamp is wall-clock time by definition"
    )]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tell the daemon about drops since the last time (never blocks).
fn signal_drops(shared: &Shared, events: &mpsc::Sender<BusEvent>) {
    let count = shared.buffer().take_unsignalled();
    if count > 0 {
        tracing::warn!(count, "alert buffer full: oldest alerts dropped");
        let _ = events.try_send(BusEvent::AlertsDropped { count });
    }
}

/// The bus task: connect, serve a session until the connection is lost, wait, again; until
/// the last handle is dropped.
async fn run(
    shared: Arc<Shared>,
    events: mpsc::Sender<BusEvent>,
    mut heartbeats: mpsc::Receiver<Vec<u8>>,
    mut alive: watch::Receiver<()>,
) {
    let settings = &shared.settings;
    let url = connection::redact_url(&settings.url);
    let mut backoff = Backoff::default();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut ever_connected = false;
    let mut failures: u64 = 0;
    loop {
        signal_drops(&shared, &events);
        let connect = connection::connect(settings);
        tokio::pin!(connect);
        let attempt = loop {
            tokio::select! {
                _ = alive.changed() => return,
                r = &mut connect => break r,
                _ = shared.wake.notified() => signal_drops(&shared, &events),
            }
        };
        match attempt {
            Ok(conn) => {
                backoff.reset();
                failures = 0;
                if ever_connected {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                ever_connected = true;
                // Heartbeats queued while away are stale.
                while heartbeats.try_recv().is_ok() {}
                shared.connected.store(true, Ordering::Relaxed);
                tracing::info!(url = %url, "connected to the broker");
                let _ = events.send(BusEvent::Connected).await;
                let ended = tokio::select! {
                    _ = alive.changed() => None,
                    reason = session(&shared, &conn, &events, &mut heartbeats) => Some(reason),
                };
                shared.connected.store(false, Ordering::Relaxed);
                let _ = tokio::time::timeout(REOPEN, conn.close(200, "bye".into())).await;
                let Some(reason) = ended else { return };
                tracing::warn!(url = %url, reason = %reason, "lost the broker");
                let _ = events.send(BusEvent::Disconnected { reason }).await;
            }
            Err(e) => {
                failures += 1;
                // The first failure of a streak, then now and then.
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "cannot reach the broker");
                }
            }
        }
        let pause = tokio::time::sleep(backoff.delay(&mut rng));
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                _ = alive.changed() => return,
                _ = shared.wake.notified() => signal_drops(&shared, &events),
                _ = heartbeats.recv() => {} // stale: dropped
            }
        }
    }
}

/// Serve one connection until it is lost; the reason.
async fn session(
    shared: &Shared,
    conn: &Connection,
    events: &mpsc::Sender<BusEvent>,
    heartbeats: &mut mpsc::Receiver<Vec<u8>>,
) -> String {
    tokio::select! {
        r = publish_alerts(shared, conn, events) => r,
        r = probe_queue(&shared.settings, conn, events) => r,
        r = carry_heartbeats(&shared.settings, conn, events, heartbeats) => r,
        r = watch_connection(conn) => r,
    }
}

/// The reason to end the session if the connection is gone, after an error.
fn lost(conn: &Connection, error: &dyn fmt::Display) -> Option<String> {
    (!conn.status().connected()).then(|| error.to_string())
}

/// Ends when lapin reports the connection lost (a connection-level error, or not connected).
async fn watch_connection(conn: &Connection) -> String {
    let mut events = conn.events_listener();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            e = events.next() => match e {
                // A channel's error (the probe's 404) is reported here too: not ours to end.
                Some(lapin::Event::Error(e)) if !e.is_amqp_soft_error() => return e.to_string(),
                Some(_) => {}
                None => return "connection closed".to_owned(),
            },
            _ = check.tick() => {
                if !conn.status().connected() {
                    return "connection no longer connected".to_owned();
                }
            }
        }
    }
}

/// Open the alert channel: confirms on, exchange declared.
async fn alert_channel(conn: &Connection, exchange: &str) -> Result<Channel, BusError> {
    let ch = conn.create_channel().await.map_err(BusError::Channel)?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(BusError::Channel)?;
    alerts::declare_exchange(&ch, exchange).await?;
    Ok(ch)
}

/// Publish buffered alerts with confirms; an alert leaves the buffer only when acked. Returns
/// only when the connection is lost.
async fn publish_alerts(
    shared: &Shared,
    conn: &Connection,
    events: &mpsc::Sender<BusEvent>,
) -> String {
    let s = &shared.settings;
    loop {
        let ch = match alert_channel(conn, &s.exchange).await {
            Ok(ch) => ch,
            Err(e) => {
                if let Some(reason) = lost(conn, &e) {
                    return reason;
                }
                tracing::warn!(error = %e, "alert channel refused, retrying");
                tokio::time::sleep(REOPEN).await;
                continue;
            }
        };
        loop {
            signal_drops(shared, events);
            let unreported = shared.buffer().unreported();
            let (batch, dropped_report) = if unreported > 0 {
                let alert = alert_json(
                    &s.cluster,
                    &s.node,
                    crate::cluster::AlertKind::AlertsDropped.name(),
                    None,
                    &alerts::dropped_detail(unreported),
                    now_unix_ms(),
                    &[],
                );
                let p = Pending {
                    id: u64::MAX,
                    routing_key: alerts::routing_key(&s.cluster, &s.node, &alert),
                    body: alert.to_string().into_bytes(),
                };
                (vec![p], true)
            } else {
                (shared.buffer().front(alerts::BATCH), false)
            };
            if batch.is_empty() {
                shared.wake.notified().await;
                continue;
            }
            let out = alerts::publish_batch(&ch, &s.exchange, &batch).await;
            shared
                .published
                .fetch_add(out.acked.len() as u64 + out.nacked, Ordering::Relaxed);
            shared
                .confirmed
                .fetch_add(out.acked.len() as u64, Ordering::Relaxed);
            if dropped_report {
                if !out.acked.is_empty() {
                    shared.buffer().reported(unreported);
                }
            } else {
                shared.buffer().confirmed(&out.acked);
            }
            if let Some(e) = out.error {
                if let Some(reason) = lost(conn, &e) {
                    return reason;
                }
                tracing::warn!(error = %e, "alert channel closed, reopening");
                tokio::time::sleep(REOPEN).await;
                break;
            }
            if out.nacked > 0 {
                tracing::warn!(nacked = out.nacked, "alerts nacked, kept for a retry");
                tokio::time::sleep(REOPEN).await;
            }
        }
    }
}

/// Whether a lapin error is the broker's 404 (a passive declare of a missing queue).
fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(p)
        if *p.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

/// Sample the queue with a passive declare on a channel of its own, every interval. A 404
/// closes that channel: say [`BusEvent::QueueMissing`] and reopen it next time. Returns only
/// when the connection is lost.
async fn probe_queue(
    settings: &BusSettings,
    conn: &Connection,
    events: &mpsc::Sender<BusEvent>,
) -> String {
    let mut tick = tokio::time::interval(settings.queue_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut channel: Option<Channel> = None;
    loop {
        tick.tick().await;
        let ch = match &channel {
            Some(ch) if ch.status().connected() => ch,
            _ => match conn.create_channel().await {
                Ok(ch) => channel.insert(ch),
                Err(e) => {
                    if let Some(reason) = lost(conn, &e) {
                        return reason;
                    }
                    tracing::warn!(error = %e, "cannot open the probe channel");
                    continue;
                }
            },
        };
        let declared = ch
            .queue_declare(
                settings.queue.as_str().into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => {
                let _ = events.try_send(BusEvent::QueueSample {
                    consumers: q.consumer_count(),
                    messages: q.message_count(),
                });
            }
            Err(e) if is_not_found(&e) => {
                channel = None;
                let _ = events.try_send(BusEvent::QueueMissing);
            }
            Err(e) => {
                channel = None;
                if let Some(reason) = lost(conn, &e) {
                    return reason;
                }
                tracing::warn!(queue = %settings.queue, error = %e, "queue probe failed");
            }
        }
    }
}

/// Publish our heartbeats on the fanout exchange and forward everyone's. Returns only when
/// the connection is lost.
async fn carry_heartbeats(
    settings: &BusSettings,
    conn: &Connection,
    events: &mpsc::Sender<BusEvent>,
    heartbeats: &mut mpsc::Receiver<Vec<u8>>,
) -> String {
    let Some(exchange) = &settings.heartbeat_exchange else {
        // Off: drop whatever is sent.
        while heartbeats.recv().await.is_some() {}
        return std::future::pending().await;
    };
    loop {
        let setup = async {
            let ch = conn.create_channel().await.map_err(BusError::Channel)?;
            let consumer = heartbeat::subscribe(&ch, exchange).await?;
            Ok::<_, BusError>((ch, consumer))
        };
        let (ch, mut consumer) = match setup.await {
            Ok(c) => c,
            Err(e) => {
                if let Some(reason) = lost(conn, &e) {
                    return reason;
                }
                tracing::warn!(exchange = %exchange, error = %e, "heartbeat exchange refused, retrying");
                tokio::time::sleep(REOPEN).await;
                continue;
            }
        };
        let error: String = loop {
            tokio::select! {
                bytes = heartbeats.recv() => {
                    let Some(bytes) = bytes else { return std::future::pending().await };
                    if let Err(e) = heartbeat::send(&ch, exchange, &bytes).await {
                        break e.to_string();
                    }
                }
                delivery = consumer.next() => match delivery {
                    Some(Ok(d)) => {
                        let _ = events.try_send(BusEvent::Heartbeat(d.data));
                    }
                    Some(Err(e)) => break e.to_string(),
                    None => break "heartbeat consumer cancelled".to_owned(),
                },
            }
        };
        if let Some(reason) = lost(conn, &error) {
            return reason;
        }
        tracing::warn!(exchange = %exchange, error = %error, "heartbeat channel closed, reopening");
        tokio::time::sleep(REOPEN).await;
    }
}
