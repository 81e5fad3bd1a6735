//! The alert sink: every alert, from the state machine or the daemon's own drivers, is logged
//! (a warning for those that need an operator), kept among the recent ones for `status`, and
//! published on the bus as JSON with the transition's step timings when it closes one.
//!
//! Synchronous: publishing only queues the alert for the bus task, which never blocks.

use std::collections::VecDeque;

use tracing::{info, warn};

use crate::bus::{self, Bus};
use crate::cluster::{Alert, AlertKind, NodeId};
use crate::config::Config;

/// How many recent alerts `status` shows.
const RECENT: usize = 20;

/// Where alerts go.
pub struct AlertSink {
    cluster: String,
    node: String,
    /// Every node's id and name, to name the peer an alert is about.
    names: Vec<(NodeId, String)>,
    recent: VecDeque<String>,
    bus: Option<Bus>,
}

impl AlertSink {
    /// A sink for this node's alerts; with `bus`, they are published too.
    pub fn new(config: &Config, bus: Option<Bus>) -> AlertSink {
        AlertSink {
            cluster: config.cluster_name.clone(),
            node: config.this_node().name.clone(),
            names: config
                .nodes
                .iter()
                .map(|n| (n.id, n.name.clone()))
                .collect(),
            recent: VecDeque::with_capacity(RECENT),
            bus,
        }
    }

    /// Logs, keeps and publishes `alert`; `steps` are the timings of the transition it
    /// closes, `(step, ms)`, if any.
    pub fn emit(&mut self, alert: &Alert, steps: &[(String, u64)]) {
        let peer = alert
            .peer
            .and_then(|id| self.names.iter().find(|(n, _)| *n == id))
            .map(|(_, name)| name.as_str());
        let kind = alert.kind.name();
        let shown = peer.unwrap_or_default();
        match alert.kind {
            AlertKind::SplitBrain | AlertKind::Fault | AlertKind::PeerLost => {
                warn!(kind, peer = %shown, detail = %alert.detail, "alert")
            }
            _ => info!(kind, peer = %shown, detail = %alert.detail, "alert"),
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent
            .push_back(format!("{kind} {shown} {}", alert.detail));
        if let Some(bus) = &self.bus {
            bus.publish_alert(bus::alert_json(
                &self.cluster,
                &self.node,
                kind,
                peer,
                &alert.detail,
                unix_ms(),
                steps,
            ));
        }
    }

    /// An alert about no peer, raised by a driver (the mirror, the zombie witness).
    pub fn raise(&mut self, kind: AlertKind, detail: String) {
        self.emit(
            &Alert {
                kind,
                peer: None,
                detail,
            },
            &[],
        );
    }

    /// The recent alerts, oldest first, for `status`.
    pub fn recent(&self) -> impl Iterator<Item = &String> {
        self.recent.iter()
    }
}

/// Milliseconds since the Unix epoch, to timestamp alerts (labels only; no decision reads it).
fn unix_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
