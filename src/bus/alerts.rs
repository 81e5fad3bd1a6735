//! Alerts on the bus (docs/design.md section 6): their JSON, their routing key, the bounded buffer
//! that holds them while the broker is away, publishing them with confirms, and watching them.
//!
//! Owns the alert format (`schemas/alert.schema.json` describes it) and the topic exchange's
//! use. Never reads a clock except to stamp the `alerts_dropped` alert it makes itself; never
//! touches the queue probe's channel or the heartbeat exchange.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use serde_json::{Value, json};

use super::BusSettings;
use super::connection::{self, BusError};

/// The version of the alert format, the `schema` field of every alert.
pub const ALERT_SCHEMA: u32 = 1;

/// How long a publisher confirm may take before the alert is kept for a retry.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// How many alerts are in flight (published, confirm awaited) at once.
pub(crate) const BATCH: usize = 256;

/// One alert as JSON, the body published on the bus.
///
/// `at_unix_ms` is the time of the event in milliseconds since the Unix epoch (the caller reads
/// the clock); `steps` are the per-step timings of a transition, `(step, ms)`, possibly none.
pub fn alert_json(
    cluster: &str,
    node: &str,
    kind: &str,
    peer: Option<&str>,
    detail: &str,
    at_unix_ms: u64,
    steps: &[(String, u64)],
) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(step, ms)| json!({ "step": step, "ms": ms }))
        .collect();
    json!({
        "schema": ALERT_SCHEMA,
        "cluster": cluster,
        "node": node,
        "kind": kind,
        "peer": peer,
        "detail": detail,
        "timestamp": rfc3339_utc(at_unix_ms),
        "steps": steps,
    })
}

/// `at_unix_ms` as an RFC 3339 UTC timestamp with milliseconds: `2024-05-01T12:00:00.123Z`.
pub fn rfc3339_utc(at_unix_ms: u64) -> String {
    let ms = at_unix_ms % 1000;
    let secs = at_unix_ms / 1000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (day_secs / 3600, day_secs % 3600 / 60, day_secs % 60);
    // Days to civil date (Howard Hinnant's `civil_from_days`), for days >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// The routing key of an alert: `<cluster>.<node>.<kind>` (kind `unknown` when missing).
pub fn routing_key(cluster: &str, node: &str, alert: &Value) -> String {
    let kind = alert
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    format!("{cluster}.{node}.{kind}")
}

/// One alert waiting for its confirm.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    /// Increasing id, to remove exactly the confirmed ones.
    pub id: u64,
    pub routing_key: String,
    pub body: Vec<u8>,
}

/// The bounded buffer of alerts not yet confirmed by the broker.
///
/// When full, the oldest alert is dropped and counted; the count is reported once as an
/// `alerts_dropped` alert (see [`AlertBuffer::take_unreported`]) and once as an event.
#[derive(Debug)]
pub(crate) struct AlertBuffer {
    capacity: usize,
    next_id: u64,
    queue: VecDeque<Pending>,
    /// Dropped since the last `alerts_dropped` alert was confirmed.
    unreported: u64,
    /// Dropped since the last `AlertsDropped` event.
    unsignalled: u64,
    /// Dropped in total.
    pub dropped: u64,
}

impl AlertBuffer {
    pub fn new(capacity: usize) -> AlertBuffer {
        AlertBuffer {
            capacity: capacity.max(1),
            next_id: 0,
            queue: VecDeque::new(),
            unreported: 0,
            unsignalled: 0,
            dropped: 0,
        }
    }

    /// Add an alert; true when the oldest was dropped to make room.
    pub fn push(&mut self, routing_key: String, body: Vec<u8>) -> bool {
        let dropped = if self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.unreported += 1;
            self.unsignalled += 1;
            self.dropped += 1;
            true
        } else {
            false
        };
        self.queue.push_back(Pending {
            id: self.next_id,
            routing_key,
            body,
        });
        self.next_id += 1;
        dropped
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// The oldest `n` alerts, still kept until confirmed.
    pub fn front(&self, n: usize) -> Vec<Pending> {
        self.queue.iter().take(n).cloned().collect()
    }

    /// Remove the confirmed alerts (those that were not dropped meanwhile).
    pub fn confirmed(&mut self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        self.queue.retain(|p| !ids.contains(&p.id));
    }

    /// The count of drops not yet published as an `alerts_dropped` alert.
    pub fn unreported(&self) -> u64 {
        self.unreported
    }

    /// `count` drops have been published (and confirmed) as an `alerts_dropped` alert.
    pub fn reported(&mut self, count: u64) {
        self.unreported = self.unreported.saturating_sub(count);
    }

    /// The drops since the last call, for the `AlertsDropped` event.
    pub fn take_unsignalled(&mut self) -> u64 {
        std::mem::take(&mut self.unsignalled)
    }
}

/// The detail of the `alerts_dropped` alert; the count is its first word after "dropped".
pub(crate) fn dropped_detail(count: u64) -> String {
    format!("dropped {count} alerts: the buffer was full while the broker was away")
}

/// Declare the durable topic exchange for alerts (`exchange.declare`, idempotent).
pub(crate) async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BusError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| BusError::Declare {
            name: exchange.to_owned(),
            source: e,
        })
}

/// The result of publishing a batch: which ids were acked, and the error that stopped it.
pub(crate) struct BatchOutcome {
    pub acked: Vec<u64>,
    pub nacked: u64,
    pub error: Option<lapin::Error>,
}

/// Publish `batch` on a confirm channel (persistent JSON) and wait for every confirm.
pub(crate) async fn publish_batch(
    channel: &Channel,
    exchange: &str,
    batch: &[Pending],
) -> BatchOutcome {
    let mut outcome = BatchOutcome {
        acked: Vec::with_capacity(batch.len()),
        nacked: 0,
        error: None,
    };
    let mut confirms = Vec::with_capacity(batch.len());
    for p in batch {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        match channel
            .basic_publish(
                exchange.into(),
                p.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &p.body,
                props,
            )
            .await
        {
            Ok(confirm) => confirms.push((p.id, confirm)),
            Err(e) => {
                outcome.error = Some(e);
                break;
            }
        }
    }
    for (id, confirm) in confirms {
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Ok(Ok(c)) if c.is_ack() => outcome.acked.push(id),
            Ok(Ok(_)) => outcome.nacked += 1,
            Ok(Err(e)) => {
                outcome.error.get_or_insert(e);
            }
            Err(_) => {
                // Kept for a retry; the connection is probably gone.
                outcome.nacked += 1;
            }
        }
    }
    outcome
}

/// Alerts as they arrive on the exchange: an exclusive, auto-delete, server-named queue bound
/// with a binding key (the `watch-alerts` command).
pub struct AlertWatch {
    connection: Connection,
    consumer: lapin::Consumer,
    /// Bodies that were not JSON, counted and skipped.
    pub malformed: u64,
}

impl AlertWatch {
    /// Connect (once, no retry), declare the exchange and bind a private queue with `binding`
    /// (`#` for every alert, `<cluster>.*.split_brain` for one kind). Alerts published after
    /// this returns are seen.
    pub async fn open(settings: &BusSettings, binding: &str) -> Result<AlertWatch, BusError> {
        let connection = connection::connect(settings).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(BusError::Channel)?;
        declare_exchange(&channel, &settings.exchange).await?;
        let consumer =
            connection::subscribe_private(&channel, &settings.exchange, binding, "watch").await?;
        Ok(AlertWatch {
            connection,
            consumer,
            malformed: 0,
        })
    }

    /// The next alert and its routing key; an error when the connection is lost.
    pub async fn next(&mut self) -> Result<(String, Value), BusError> {
        loop {
            match self.consumer.next().await {
                Some(Ok(delivery)) => match serde_json::from_slice(&delivery.data) {
                    Ok(alert) => return Ok((delivery.routing_key.to_string(), alert)),
                    Err(e) => {
                        self.malformed += 1;
                        tracing::warn!(routing_key = %delivery.routing_key, error = %e, "alert is not JSON, skipped");
                    }
                },
                Some(Err(e)) => return Err(BusError::Lost(e.to_string())),
                None => return Err(BusError::Lost("consumer cancelled".to_owned())),
            }
        }
    }

    /// Close the connection (the private queue goes with it).
    pub async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Hand every alert bound with `binding` to `out` with its routing key, until `out` breaks
/// (then `Ok`) or the connection is lost (then the error). See [`AlertWatch`].
pub async fn watch_alerts(
    settings: &BusSettings,
    binding: &str,
    mut out: impl FnMut(&str, Value) -> ControlFlow<()>,
) -> Result<(), BusError> {
    let mut watch = AlertWatch::open(settings, binding).await?;
    loop {
        let (key, alert) = match watch.next().await {
            Ok(next) => next,
            Err(e) => {
                watch.close().await;
                return Err(e);
            }
        };
        if out(&key, alert).is_break() {
            watch.close().await;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::AlertKind;

    fn schema() -> Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schemas/alert.schema.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn rfc3339_known_answers() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_utc(1_735_689_600_123), "2025-01-01T00:00:00.123Z");
        assert_eq!(rfc3339_utc(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn alert_fields_and_routing_key() {
        let steps = [("addrs".to_owned(), 12), ("announce".to_owned(), 3)];
        let a = alert_json(
            "c1",
            "net1",
            "takeover_done",
            Some("net2"),
            "took over",
            0,
            &steps,
        );
        assert_eq!(
            a,
            json!({
                "schema": 1, "cluster": "c1", "node": "net1", "kind": "takeover_done",
                "peer": "net2", "detail": "took over", "timestamp": "1970-01-01T00:00:00.000Z",
                "steps": [{"step": "addrs", "ms": 12}, {"step": "announce", "ms": 3}],
            })
        );
        assert_eq!(routing_key("c1", "net1", &a), "c1.net1.takeover_done");
        let b = alert_json("c1", "net1", "fault", None, "", 0, &[]);
        assert_eq!(b["peer"], Value::Null);
        assert_eq!(b["steps"], json!([]));
    }

    #[test]
    fn every_kind_matches_the_schema_and_bad_alerts_do_not() {
        let validator = jsonschema::validator_for(&schema()).unwrap();
        for (i, kind) in AlertKind::ALL.iter().map(|k| k.name()).enumerate() {
            let peer = (i % 2 == 0).then_some("net2");
            let steps: Vec<(String, u64)> =
                (0..i % 3).map(|n| (format!("s{n}"), n as u64)).collect();
            let a = alert_json(
                "c1",
                "net1",
                kind,
                peer,
                "detail",
                1_700_000_000_000 + i as u64,
                &steps,
            );
            let errors: Vec<String> = validator.iter_errors(&a).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{kind}: {errors:?} in {a}");
        }
        let good = alert_json("c1", "net1", "fault", None, "x", 0, &[]);
        let mut bad_kind = good.clone();
        bad_kind["kind"] = json!("exploded");
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("node");
        let mut extra = good.clone();
        extra["password"] = json!("nope");
        let mut bad_time = good.clone();
        bad_time["timestamp"] = json!("yesterday");
        let mut bad_step = good.clone();
        bad_step["steps"] = json!([{"step": "addrs"}]);
        let mut bad_schema = good;
        bad_schema["schema"] = json!(2);
        for bad in [bad_kind, missing, extra, bad_time, bad_step, bad_schema] {
            assert!(!validator.is_valid(&bad), "accepted {bad}");
        }
    }

    #[test]
    fn kinds_in_the_schema_are_alert_kind_all() {
        let s = schema();
        let listed: Vec<&str> = s["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let kinds: Vec<&str> = AlertKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(listed, kinds);
    }

    #[test]
    fn full_buffer_drops_the_oldest_and_counts() {
        let mut b = AlertBuffer::new(3);
        for i in 0..5u8 {
            b.push(format!("k{i}"), vec![i]);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped, 2);
        assert_eq!(b.unreported(), 2);
        assert_eq!(b.take_unsignalled(), 2);
        assert_eq!(b.take_unsignalled(), 0);
        let front = b.front(10);
        assert_eq!(
            front.iter().map(|p| p.body[0]).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        // Confirm the first two; one more push drops nothing.
        b.confirmed(&[front[0].id, front[1].id]);
        assert_eq!(b.len(), 1);
        assert!(!b.push("k5".into(), vec![5]));
        // A confirm of an alert dropped meanwhile removes nothing else.
        b.push("k6".into(), vec![6]);
        b.push("k7".into(), vec![7]);
        b.confirmed(&[front[2].id]);
        assert_eq!(b.len(), 3);
        b.reported(2);
        assert_eq!(b.unreported(), 1);
    }
}
