//! What `status` shows: this node, its peers as heard per path, the VIPs held, nova-network's
//! pid, the last transition with its step timings, and the dropped-packet counters.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::Daemon;
use crate::cluster::State;
use crate::takeover::StepReport;

/// Version of the status JSON; bumped when a field changes meaning.
pub const STATUS_SCHEMA: u32 = 1;

/// The last takeover or release, for `status`.
#[derive(Debug, Clone)]
pub struct Transition {
    /// "takeover" or "release".
    pub kind: &'static str,
    /// When it finished (seconds since the epoch).
    pub finished_at: u64,
    /// Total duration.
    pub total_ms: u64,
    /// The step that failed, if any.
    pub failed_step: Option<String>,
    /// Each step's name, duration and detail.
    pub steps: Vec<(String, u64, String)>,
}

impl Transition {
    /// A record of a finished transition.
    pub fn new(
        kind: &'static str,
        steps: &[StepReport],
        total_ms: u64,
        failed: Option<&str>,
    ) -> Transition {
        // Wall-clock time only labels the record for operators; no decision reads it.
        #[allow(clippy::disallowed_methods)]
        let finished_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Transition {
            kind,
            finished_at,
            total_ms,
            failed_step: failed.map(str::to_owned),
            steps: steps
                .iter()
                .map(|s| {
                    (
                        s.step.to_owned(),
                        s.duration.as_millis() as u64,
                        s.detail.clone(),
                    )
                })
                .collect(),
        }
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Starting => "starting",
        State::Standby => "standby",
        State::TakingOver => "taking_over",
        State::Active => "active",
        State::Releasing => "releasing",
        State::Fault => "fault",
        State::Stopped => "stopped",
    }
}

pub(super) fn render(d: &Daemon) -> Value {
    let now = d.now();
    let st = d.node.status(now);
    let me = d.config.this_node();
    let paths: Vec<&str> = d.config.paths.iter().map(|p| p.name.as_str()).collect();
    let peers: Vec<Value> = st
        .peers
        .iter()
        .map(|p| {
            let silence: serde_json::Map<String, Value> = p
                .silence
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        paths.get(i).copied().unwrap_or("?").to_owned(),
                        s.map(|d| json!(d.as_millis() as u64))
                            .unwrap_or(Value::Null),
                    )
                })
                .collect();
            json!({
                "name": p.name,
                "id": p.id.0,
                "priority": p.priority,
                "alive": p.alive,
                "state": state_name(p.state),
                "intent": format!("{:?}", p.intent).to_lowercase(),
                "health_flags": p.health,
                "generation": p.generation,
                "last_heard_ms": silence,
            })
        })
        .collect();
    let holds = st.state.holds_service();
    let vips: Vec<String> = if holds {
        d.config
            .failover
            .vips
            .iter()
            .map(|v| format!("{} on {}", v.address, v.interface))
            .collect()
    } else {
        Vec::new()
    };
    let drops: serde_json::Map<String, Value> = d
        .receivers
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let counts: serde_json::Map<String, Value> = r
                .counters()
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(reason, n)| (reason.to_string(), json!(n)))
                .collect();
            (
                paths.get(i).copied().unwrap_or("broker").to_owned(),
                json!({"accepted": r.accepted(), "dropped": counts}),
            )
        })
        .collect();
    let transition = d.transition.as_ref().map(|t| {
        json!({
            "kind": t.kind,
            "finished_at": t.finished_at,
            "total_ms": t.total_ms,
            "failed_step": t.failed_step,
            "steps": t.steps.iter().map(|(s, ms, detail)| json!({"step": s, "ms": ms, "detail": detail})).collect::<Vec<_>>(),
        })
    });
    let bus = d.bus.as_ref().map(|b| {
        let st = b.stats();
        json!({
            "connected": st.connected,
            "alerts_published": st.published,
            "alerts_confirmed": st.confirmed,
            "alerts_dropped": st.dropped,
            "alerts_buffered": st.buffered,
            "reconnects": st.reconnects,
            "queue": format!("network.{}", d.config.nova.host),
            "queue_consumers": d.last_sample.map(|(c, _)| c),
            "queue_messages": d.last_sample.map(|(_, m)| m),
        })
    });
    json!({
        "schema": STATUS_SCHEMA,
        "bus": bus,
        "cluster": d.config.cluster_name,
        "node": {
            "name": me.name,
            "id": me.id.0,
            "priority": me.priority,
            "state": state_name(st.state),
            "intent": format!("{:?}", st.intent).to_lowercase(),
            "health_flags": st.health,
            "fault": st.fault,
            "generation": d.generation,
        },
        "peers": peers,
        "vips_held": vips,
        "nova_network_pid": d.nova.as_ref().map(|n| n.pid),
        "nova_host": d.config.nova.host,
        "last_transition": transition,
        "heartbeats": drops,
        "recent_alerts": d.alerts.iter().collect::<Vec<_>>(),
        "mirror": d.mirror.as_ref().map(super::mirror::MirrorRun::status),
    })
}
