//! Heartbeats through the broker, an extra path beside the UDP ones (docs/design.md section 5).
//!
//! Owns the fanout exchange `nova-network-ha.<cluster>.heartbeat` and this node's private queue
//! bound to it. The bytes are opaque here: encoding, authentication and dropping our own
//! heartbeats are `wire`'s and the daemon's. Never buffered, never confirmed: a stale
//! heartbeat is worthless.

use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};

use super::connection::BusError;

/// Declare the fanout exchange (non-durable, not auto-deleted) and consume from an exclusive,
/// auto-delete, server-named queue bound to it.
pub(crate) async fn subscribe(channel: &Channel, exchange: &str) -> Result<Consumer, BusError> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| BusError::Declare {
            name: exchange.to_owned(),
            source: e,
        })?;
    super::connection::subscribe_private(channel, exchange, "", "heartbeat").await
}

/// Publish one heartbeat (transient, no confirm).
pub(crate) async fn send(channel: &Channel, exchange: &str, bytes: &[u8]) -> lapin::Result<()> {
    channel
        .basic_publish(
            exchange.into(),
            "".into(),
            BasicPublishOptions::default(),
            bytes,
            BasicProperties::default().with_delivery_mode(1),
        )
        .await
        .map(drop)
}
