//! The daemon's side of the warm standby ([`crate::mirror`]): listening for peers' snapshots,
//! choosing whether the held one may be applied at a takeover, publishing our own while
//! active, and the reconcile once nova-network consumes. Decisions about *when* stay with the
//! state machine; this only carries them out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cluster::{PathId, Status};
use crate::config::{Config, Mirror};
use crate::mirror::stream::{self, Producer, Pusher, Sender, Store, Trust};
use crate::mirror::{Refusal, Snapshot};
use crate::takeover::{Plan, Step, StepReport};

use super::transition::MirrorOutcome;

/// The mirror as the daemon runs it.
pub(super) struct MirrorRun {
    settings: Mirror,
    store: Store,
    producer: Option<Producer>,
    pusher: Option<Pusher>,
    /// Floating IPs the last takeover's mirror added, until nova-network consumes.
    pending_reconcile: Option<Vec<IpNet>>,
    /// Consumers on nova's queue when our nova-network started (a dead peer's nova-network
    /// stays a consumer until the broker notices), and whether the count moved since.
    reconcile_baseline: Option<(u32, bool)>,
    /// What became of the mirror at the last takeover, for `status`.
    pub(super) last_use: Option<String>,
}

impl MirrorRun {
    /// Listen on this node's heartbeat path addresses; `None` when the mirror is off.
    pub(super) async fn start(config: &Config) -> std::io::Result<Option<MirrorRun>> {
        let Some(settings) = config.mirror else {
            return Ok(None);
        };
        let me = config.this_node();
        let mut listeners = Vec::new();
        for i in 0..config.paths.len() {
            if let Some(ip) = me.address(PathId(i as u8)) {
                let listener = TcpListener::bind(SocketAddr::new(ip, settings.port))
                    .await
                    .map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("mirror: cannot listen on {ip}:{}: {e}", settings.port),
                        )
                    })?;
                listeners.push(listener);
            }
        }
        let store = Store::default();
        let trust = Trust {
            cluster: config.cluster_id,
            peers: config.peers().map(|p| p.id).collect(),
            addresses: config
                .peers()
                .flat_map(|p| (0..config.paths.len()).filter_map(|i| p.address(PathId(i as u8))))
                .map(|ip| ip.to_canonical())
                .collect(),
            keys: config.keyring.clone(),
        };
        let idle = (settings.refresh * 3).max(Duration::from_secs(3));
        tokio::spawn(stream::serve(listeners, trust, store.clone(), idle));
        info!(port = settings.port, "mirror listening");
        Ok(Some(MirrorRun {
            settings,
            store,
            producer: None,
            pusher: None,
            pending_reconcile: None,
            reconcile_baseline: None,
            last_use: None,
        }))
    }

    /// At a takeover: the held snapshot if it may be applied (and it is used up), or why not.
    pub(super) fn choose(
        &mut self,
        config: &Config,
        status: &Status,
    ) -> Result<Arc<Snapshot>, Refusal> {
        let held = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(Refusal::None)?;
        let peer = status.peers.iter().find(|p| p.id == held.from);
        let name = config
            .nodes
            .iter()
            .find(|n| n.id == held.from)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("node {}", held.from.0));
        held.usable(
            Instant::now(),
            self.settings.max_age,
            &name,
            peer.and_then(|p| p.generation),
            peer.is_some_and(|p| p.alive && p.state.holds_service()),
        )?;
        Ok(held.snapshot)
    }

    /// A takeover finished with this `outcome` of the mirror step (`steps` are its reports,
    /// `consumers` the queue's consumers when nova-network started): what it did is kept for
    /// `status`, the floating IPs it added await the reconcile. Returns why it was rolled
    /// back, for the alert, if it was.
    pub(super) fn took_over(
        &mut self,
        outcome: MirrorOutcome,
        steps: &[StepReport],
        consumers: Option<u32>,
    ) -> Option<String> {
        match outcome {
            MirrorOutcome::Applied(added) => {
                self.last_use = steps
                    .iter()
                    .find(|s| s.step == Step::Mirror.name())
                    .map(|s| s.detail.clone());
                self.pending_reconcile = Some(added);
                self.reconcile_baseline = consumers.map(|c| (c, false));
                None
            }
            MirrorOutcome::RolledBack(why) => {
                self.last_use = Some(why.clone());
                Some(why)
            }
            MirrorOutcome::NotUsed => None,
        }
    }

    /// Active: take snapshots and push them to every peer.
    pub(super) async fn publish(&mut self, config: &Config, plan: &Plan, generation: u64) {
        let fallback = self.settings.refresh;
        match Producer::spawn(plan.clone(), self.settings.iptables_check, fallback).await {
            Ok(producer) => {
                let peers: Vec<Vec<SocketAddr>> = config
                    .peers()
                    .map(|p| {
                        (0..config.paths.len())
                            .filter_map(|i| p.address(PathId(i as u8)))
                            .map(|ip| SocketAddr::new(ip, self.settings.port))
                            .collect()
                    })
                    .collect();
                let me = Sender {
                    cluster: config.cluster_id,
                    node: config.this_node().id,
                    generation,
                    keys: config.keyring.clone(),
                };
                self.pusher = Some(Pusher::spawn(
                    peers,
                    me,
                    producer.published.clone(),
                    self.settings.refresh,
                ));
                info!(check = producer.check.name(), "mirror publishing");
                self.producer = Some(producer);
            }
            Err(e) => warn!(error = %e, "mirror: cannot watch for changes; not publishing"),
        }
    }

    /// A queue sample while active: the floating IPs to reconcile once our nova-network
    /// consumes, i.e. the consumer count moved since it started and is above zero (the count
    /// at start may be a dead peer's consumer the broker has not dropped yet).
    pub(super) fn reconcile_due(&mut self, consumers: u32) -> Option<Vec<IpNet>> {
        self.pending_reconcile.as_ref()?;
        let (baseline, moved) = self.reconcile_baseline.get_or_insert((consumers, false));
        if consumers != *baseline {
            *moved = true;
        }
        if *moved && consumers > 0 {
            self.reconcile_baseline = None;
            return self.pending_reconcile.take();
        }
        None
    }

    /// No longer active: stop publishing.
    pub(super) fn stop_publishing(&mut self) {
        self.pusher = None;
        self.producer = None;
        self.pending_reconcile = None;
        self.reconcile_baseline = None;
    }

    /// For `status`.
    pub(super) fn status(&self) -> Value {
        let now = Instant::now();
        let held = self
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|h| {
                json!({
                    "from": h.from.0,
                    "generation": h.generation,
                    "seq": h.seq,
                    "age_ms": h.age(now).as_millis() as u64,
                    "bytes": h.bytes,
                    "summary": h.snapshot.summary(),
                })
            });
        let publishing = self.producer.as_ref().map(|p| {
            let current = p.published.borrow().clone();
            json!({
                "seq": current.as_ref().map(|c| c.seq),
                "bytes": current.as_ref().map(|c| c.json.len()),
                "age_ms": current.as_ref().map(|c| now.saturating_duration_since(c.taken).as_millis() as u64),
                "summary": current.as_ref().map(|c| c.summary.clone()),
                "iptables_check": p.check.name(),
                "peers_connected": self.pusher.as_ref().map(|x| x.connected.load(Ordering::SeqCst)),
            })
        });
        json!({
            "port": self.settings.port,
            "max_age_ms": self.settings.max_age.as_millis() as u64,
            "held": held,
            "publishing": publishing,
            "last_takeover": self.last_use,
        })
    }
}

/// Removes, in a task, the floating IPs the mirror added that nova-network did not keep; the
/// result goes to `done`.
pub(super) fn spawn_reconcile(
    plan: Plan,
    added: Vec<IpNet>,
    done: mpsc::Sender<Result<Vec<IpNet>, String>>,
) {
    tokio::spawn(async move {
        let result = crate::mirror::apply::reconcile(&plan, &added)
            .await
            .map_err(|e| e.to_string());
        let _ = done.send(result).await;
    });
}

/// The reconcile's result in words, for the `mirror` alert and `status`.
pub(super) fn reconciled_detail(result: &Result<Vec<IpNet>, String>) -> String {
    match result {
        Ok(removed) if removed.is_empty() => {
            "mirror reconciled: nova-network kept every floating IP the mirror added".to_owned()
        }
        Ok(removed) => format!(
            "mirror reconciled: removed {} floating IP(s) nova-network did not keep: {}",
            removed.len(),
            removed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Err(e) => format!("mirror reconcile failed: {e}"),
    }
}
