//! What `status` shows: this node, its peers as heard per path, the VIPs held, nova-network's
//! pid, the last transition with its step timings, and the dropped-packet counters.

use serde_json::{Value, json};

use super::Daemon;

/// Version of the status JSON; bumped when a field changes meaning.
pub const STATUS_SCHEMA: u32 = 1;

pub(super) fn render(d: &Daemon) -> Value {
    let now = d.now();
    let st = d.node.status(now);
    let me = d.config.this_node();
    let paths = d.heartbeats.names();
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
                        paths.get(i).cloned().unwrap_or_else(|| i.to_string()),
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
                "state": p.state.name(),
                "intent": p.intent.name(),
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
        .heartbeats
        .counters()
        .map(|(path, accepted, dropped)| {
            let counts: serde_json::Map<String, Value> = dropped
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(reason, n)| (reason.to_string(), json!(n)))
                .collect();
            (
                path.to_owned(),
                json!({"accepted": accepted, "dropped": counts}),
            )
        })
        .collect();
    let transition = d.runner.last().map(|t| {
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
            "state": st.state.name(),
            "intent": st.intent.name(),
            "health_flags": st.health,
            "fault": st.fault,
            "generation": d.generation,
        },
        "peers": peers,
        "vips_held": vips,
        "nova_network_pid": d.nova.pid(),
        "nova_host": d.config.nova.host,
        "last_transition": transition,
        "heartbeats": drops,
        "recent_alerts": d.alerts.recent().collect::<Vec<_>>(),
        "mirror": d.mirror.as_ref().map(super::mirror::MirrorRun::status),
    })
}
