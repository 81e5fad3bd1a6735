//! The transition runner: carries out `BeginTakeover` and `BeginRelease` by walking the one
//! ordered step list ([`crate::takeover::steps`]) in a task, so heartbeats keep flowing, and
//! reports the outcome back to the loop as a [`Finished`]. Network steps are the takeover
//! drivers'; the mirror and the nova-network child are done here, because only the daemon
//! holds the snapshot and supervises the child. Records the last transition for `status`.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::cluster::StepFailed;
use crate::config::Config;
use crate::mirror::{Snapshot, apply};
use crate::probes::nova::Supervised;
use crate::takeover::nova::NovaChild;
use crate::takeover::steps::{self, Doer, Step};
use crate::takeover::{self, Plan, StepError, StepReport};

/// What a transition task reports.
pub enum Finished {
    /// The takeover's steps ran; on success nova-network runs.
    Takeover(Box<Result<TakenOver, Failed>>),
    /// The first half of the release ran (no service address is left here).
    Release(Result<Vec<StepReport>, Failed>),
}

/// A successful takeover: its steps, the nova-network it started, what the mirror did.
pub struct TakenOver {
    /// Every step's report, in order.
    pub steps: Vec<StepReport>,
    /// The nova-network it started.
    pub child: NovaChild,
    /// What became of the mirror.
    pub mirror: MirrorOutcome,
}

/// A transition that stopped at a step: the reports of the steps before it, and the failure.
pub struct Failed {
    /// The steps done.
    pub steps: Vec<StepReport>,
    /// The step that failed, and why.
    pub failed: StepFailed,
}

/// What became of the mirror during a takeover.
pub enum MirrorOutcome {
    /// No snapshot was applied (the plain order ran).
    NotUsed,
    /// Applied; these floating IPs were added by it.
    Applied(Vec<IpNet>),
    /// Applying failed; rolled back, then the plain order ran.
    RolledBack(String),
}

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
    /// The `(step, ms)` timings an alert carries.
    pub fn timings(&self) -> Vec<(String, u64)> {
        self.steps
            .iter()
            .map(|(s, ms, _)| (s.clone(), *ms))
            .collect()
    }
}

/// Runs takeovers and releases one at a time, as the state machine asks.
pub struct Runner {
    plan: Plan,
    command: Vec<String>,
    stop_grace: Duration,
    finished: mpsc::Sender<Finished>,
    /// Held while a release's tidy half (links, chains) runs after the peer was told; a
    /// takeover here, and the daemon's exit, wait for it.
    tidy: Arc<Mutex<()>>,
    started: Option<Instant>,
    last: Option<Transition>,
}

impl Runner {
    /// A runner for `config`'s plan; outcomes go to `finished`.
    pub fn new(config: &Config, finished: mpsc::Sender<Finished>) -> Runner {
        let mut plan = Plan::from_config(config);
        plan.announce = takeover::AnnounceSettings {
            count: config.announce.count,
            interval: config.announce.interval,
            repeat_after: config.announce.repeat_after,
        };
        Runner {
            plan,
            command: config.nova_network_command(),
            stop_grace: config.daemon.nova_stop_grace,
            finished,
            tidy: Arc::default(),
            started: None,
            last: None,
        }
    }

    /// What the steps act on.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The last finished transition.
    pub fn last(&self) -> Option<&Transition> {
        self.last.as_ref()
    }

    /// The clean slate at start-up: whatever a previous run left (killed daemon, crash,
    /// reboot without cleanup) is released before we join the pool, so this node never holds
    /// addresses the pool does not know it holds.
    pub async fn clean_slate(&self) {
        let started = Instant::now();
        match takeover::run_all(steps::CLEAN_SLATE, &self.plan).await {
            Ok(reports) => log_steps("startup-cleanup", &reports, ms_since(started)),
            Err((_, e)) => warn!(error = %e, "start-up cleanup failed; continuing as standby"),
        }
    }

    /// Starts a takeover: the steps of [`steps::TAKEOVER`], the mirror's `snapshot` among
    /// them when one may be used (rolled back if it fails), then nova-network.
    pub fn begin_takeover(&mut self, snapshot: Option<Arc<Snapshot>>) {
        self.started = Some(Instant::now());
        let plan = self.plan.clone();
        let command = self.command.clone();
        let finished = self.finished.clone();
        let tidy = self.tidy.clone();
        tokio::spawn(async move {
            // A release's tidy half still running here finishes first.
            let _tidied = tidy.lock().await;
            let result = run_takeover(&plan, &command, snapshot).await;
            let _ = finished.send(Finished::Takeover(Box::new(result))).await;
        });
    }

    /// Starts a release: nova-network stopped, the service's addresses deleted (then the
    /// peer may take over: [`Finished::Release`] is sent), then the tidy half.
    pub fn begin_release(&mut self, nova: Option<Supervised>) {
        self.started = Some(Instant::now());
        let plan = self.plan.clone();
        let grace = self.stop_grace;
        let finished = self.finished.clone();
        let tidy = self.tidy.clone();
        tokio::spawn(async move {
            // Held until the tidy half is done: a takeover here waits for it.
            let _tidying = tidy.lock_owned().await;
            let result = run_release(&plan, nova, grace).await;
            let _ = finished.send(Finished::Release(result)).await;
            let started = Instant::now();
            match takeover::run_all(steps::RELEASE_TIDY, &plan).await {
                Ok(reports) => log_steps("release-tidy", &reports, ms_since(started)),
                Err((_, e)) => {
                    warn!(error = %e, "release tidy failed; the next takeover cleans up")
                }
            }
        });
    }

    /// Announces the held addresses again (after a split brain), in a task.
    pub fn reannounce(&self) {
        let plan = self.plan.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match takeover::reannounce(&plan).await {
                Ok(n) => info!(
                    step = "reannounce",
                    addresses = n,
                    ms = ms_since(started),
                    "announced the held addresses again"
                ),
                Err(e) => warn!(step = "reannounce", error = %e, "announcing again failed"),
            }
        });
    }

    /// Records a finished transition (logged with every step's time) for `status`.
    pub fn record(
        &mut self,
        kind: &'static str,
        steps: &[StepReport],
        failed: Option<&StepFailed>,
    ) -> &Transition {
        let total_ms = self.started.map(ms_since).unwrap_or_default();
        match failed {
            None => log_steps(kind, steps, total_ms),
            Some(f) => warn!(transition = kind, step = %f.step, error = %f.error, "failed"),
        }
        // Wall-clock time only labels the record for operators; no decision reads it.
        #[allow(clippy::disallowed_methods)]
        let finished_at = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        self.last.insert(Transition {
            kind,
            finished_at,
            total_ms,
            failed_step: failed.map(|f| f.step.clone()),
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
        })
    }

    /// Waits for the tidy half of the last release (before the process ends).
    pub async fn wait_tidy(&self) {
        let _tidied = self.tidy.lock().await;
    }
}

fn ms_since(at: Instant) -> u64 {
    at.elapsed().as_millis() as u64
}

/// One line per transition with every step's time (each step also logged itself as it ran).
fn log_steps(kind: &str, steps: &[StepReport], total: u64) {
    let timings: Vec<String> = steps
        .iter()
        .map(|s| format!("{}={}ms", s.step, s.duration.as_millis()))
        .collect();
    info!(transition = kind, ms = total, steps = %timings.join(" "), "done");
}

fn failed(steps: Vec<StepReport>, e: &StepError) -> Failed {
    Failed {
        steps,
        failed: StepFailed {
            step: e.step.to_owned(),
            error: format!("{} (after {} attempt(s))", e.source, e.attempts),
        },
    }
}

/// A network step, its report added to `reports`.
async fn run_network(
    step: Step,
    plan: &Plan,
    reports: &mut Vec<StepReport>,
) -> Result<(), StepError> {
    if let Some(result) = steps::run(step, plan).await {
        reports.push(result?);
    }
    Ok(())
}

/// The takeover list in order: the network steps, the mirror (when given a snapshot), then
/// nova-network. The state machine's items (fence, active) and the watcher (started by the
/// loop once the takeover is done) are not run here.
async fn run_takeover(
    plan: &Plan,
    command: &[String],
    snapshot: Option<Arc<Snapshot>>,
) -> Result<TakenOver, Failed> {
    let mut reports = Vec::new();
    let mut mirror = MirrorOutcome::NotUsed;
    for &step in steps::TAKEOVER {
        match (step.doer(), step) {
            (Doer::Network, _) => {
                if let Err(e) = run_network(step, plan, &mut reports).await {
                    return Err(failed(reports, &e));
                }
            }
            (Doer::Daemon, Step::Mirror) => {
                if let Some(snap) = &snapshot {
                    let (report, outcome) = apply_mirror(plan, snap).await;
                    reports.push(report);
                    mirror = outcome;
                }
            }
            (Doer::Daemon, Step::StartNova) => {
                let started = Instant::now();
                match NovaChild::spawn(command) {
                    Ok(child) => {
                        reports.push(StepReport {
                            step: step.name(),
                            duration: started.elapsed(),
                            detail: format!("started nova-network pid {}", child.pid()),
                        });
                        return Ok(TakenOver {
                            steps: reports,
                            child,
                            mirror,
                        });
                    }
                    Err(e) => {
                        return Err(Failed {
                            steps: reports,
                            failed: StepFailed {
                                step: step.name().to_owned(),
                                error: e.to_string(),
                            },
                        });
                    }
                }
            }
            _ => {}
        }
    }
    // The list always holds StartNova; a list without it started nothing.
    Err(Failed {
        steps: reports,
        failed: StepFailed {
            step: Step::StartNova.name().to_owned(),
            error: "the takeover list has no nova-network step".to_owned(),
        },
    })
}

/// The mirror step: the snapshot applied, or rolled back (then the plain order goes on).
async fn apply_mirror(plan: &Plan, snap: &Snapshot) -> (StepReport, MirrorOutcome) {
    let started = Instant::now();
    let mut done = apply::Applied::default();
    let (detail, outcome) = match apply::apply(plan, snap, &mut done).await {
        Ok(()) => (
            done.detail(snap),
            MirrorOutcome::Applied(done.floating.clone()),
        ),
        Err(e) => {
            let undone = apply::rollback(plan, &done)
                .await
                .unwrap_or_else(|r| format!("rollback failed too: {r}"));
            let why = format!("mirror failed ({e}); {undone}; plain takeover");
            (why.clone(), MirrorOutcome::RolledBack(why))
        }
    };
    let duration = started.elapsed();
    info!(step = Step::Mirror.name(), ms = duration.as_millis() as u64, detail = %detail, "step done");
    (
        StepReport {
            step: Step::Mirror.name(),
            duration,
            detail,
        },
        outcome,
    )
}

/// The first half of the release list: nova-network stopped, then the network steps.
async fn run_release(
    plan: &Plan,
    mut nova: Option<Supervised>,
    grace: Duration,
) -> Result<Vec<StepReport>, Failed> {
    let mut reports = Vec::new();
    for &step in steps::RELEASE_ADDRESSES {
        match (step.doer(), step) {
            (Doer::Network, _) => {
                if let Err(e) = run_network(step, plan, &mut reports).await {
                    return Err(failed(reports, &e));
                }
            }
            (Doer::Daemon, Step::StopNova) => {
                if let Some(child) = nova.take() {
                    let started = Instant::now();
                    let pid = child.pid();
                    child.stop().await;
                    reports.push(StepReport {
                        step: step.name(),
                        duration: started.elapsed(),
                        detail: format!("stopped nova-network pid {pid} (grace {grace:?})"),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(reports)
}
