//! The daemon: a thin loop around the pure [`cluster::Node`], with one driver per concern.
//!
//! Drivers turn I/O into the node's inputs and its actions into I/O, the way the simulation
//! drives it: [`heartbeat`] (sockets and receivers on every path), [`transition`] (the
//! takeover and release runner, walking the one step list), [`alerts`] (log, `status`, bus),
//! [`mirror`] (the warm standby), plus the probes (`crate::probes`: links, log lines,
//! nova-network's exit, its queue) and the admin socket (`crate::admin`). The loop owns the
//! node: it feeds each event with tokio's clock and carries out every returned action before
//! the next event. A single timer tracks the node's deadline.

mod alerts;
pub mod heartbeat;
mod inbox;
mod mirror;
mod nova;
mod status;
pub mod transition;

use std::sync::Arc;

use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::admin::{self, Reply, Request as AdminRequest};
use crate::bus::{Bus, BusEvent, BusSettings};
use crate::cluster::{self, Action, AlertKind, Input, Node, Probe, State};
use crate::config::Config;
use crate::probes;
use crate::probes::nova::Exited;
use crate::takeover;

use heartbeat::{Heartbeats, NetError};
use inbox::{Event, Inbox, Senders};
use transition::{Finished, Runner, TakenOver};

/// Why the daemon cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The boot generation could not be persisted.
    #[error("state directory: {0}")]
    State(#[from] crate::state::StateError),
    /// A heartbeat socket could not be opened.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The admin socket could not be opened.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// A probe could not start.
    #[error("probe: {0}")]
    Probe(String),
    /// Signal handlers could not be installed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    /// The mirror could not listen.
    #[error("{0}")]
    Mirror(std::io::Error),
}

/// The loop's state: the node and its drivers.
struct Daemon {
    config: Config,
    node: Node,
    generation: u64,
    heartbeats: Heartbeats,
    runner: Runner,
    alerts: alerts::AlertSink,
    /// Our nova-network: the child and its queue's judge.
    nova: nova::Nova,
    /// Where drivers started from the loop report back.
    senders: Senders,
    /// While active: announces every address nova binds later.
    watcher: Option<takeover::announce::Watcher>,
    /// nova's RabbitMQ, when configured.
    bus: Option<Bus>,
    /// Last queue sample (consumers, messages), for `status`.
    last_sample: Option<(u32, u32)>,
    /// The warm standby's mirror, unless switched off.
    mirror: Option<mirror::MirrorRun>,
    stopped: bool,
}

/// Runs the daemon until SIGTERM/SIGINT has released the service (if held).
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let generation = crate::state::next_generation(&config.state_dir)?;
    let (mut inbox, senders) = Inbox::new();

    // nova's RabbitMQ: one more heartbeat path (after the UDP ones), the queue probe, alerts.
    let mut bus = None;
    if let Some(settings) = BusSettings::from_config(&config) {
        let (handle, events) = Bus::spawn(settings);
        inbox.bus = Some(events);
        bus = Some(handle);
    }
    let broker_path = bus
        .clone()
        .filter(|_| config.bus.as_ref().is_some_and(|b| b.heartbeat_path));
    let heartbeats = Heartbeats::open(&config, generation, broker_path, &senders.packets)?;

    let mirror = mirror::MirrorRun::start(&config)
        .await
        .map_err(DaemonError::Mirror)?;
    let admin = admin::Server::bind(&config.daemon.admin_socket)?;
    tokio::spawn(admin.serve(senders.calls.clone()));
    inbox::spawn_signals(senders.shutdown.clone()).map_err(DaemonError::Signal)?;
    probes::spawn(&config, senders.verdicts.clone()).map_err(DaemonError::Probe)?;

    let runner = Runner::new(&config, senders.finished.clone());
    runner.clean_slate().await;

    let now = Instant::now();
    let mut cluster = config.cluster_config();
    // The broker is one more path: a peer is dead only when silent there too.
    cluster.paths = u8::try_from(heartbeats.paths()).unwrap_or(u8::MAX);
    cluster.path_names = heartbeats.names().to_vec();
    let node = Node::new(&cluster, generation, now.into_std());
    info!(
        node = %config.this_node().name,
        generation,
        paths = config.paths.len(),
        peers = config.nodes.len() - 1,
        "started"
    );
    let mut daemon = Daemon {
        alerts: alerts::AlertSink::new(&config, bus.clone()),
        nova: nova::Nova::new(&config, senders.exits.clone(), senders.restarted.clone()),
        config,
        node,
        generation,
        heartbeats,
        runner,
        senders,
        watcher: None,
        bus,
        last_sample: None,
        mirror,
        stopped: false,
    };
    daemon.feed(Input::Timer).await;

    let sleep = tokio::time::sleep_until(now);
    tokio::pin!(sleep);
    let mut armed = None;
    while !daemon.stopped {
        let deadline = daemon.node.deadline().map(Instant::from_std);
        if deadline != armed {
            if let Some(at) = deadline {
                sleep.as_mut().reset(at);
            }
            armed = deadline;
        }
        tokio::select! {
            () = &mut sleep, if armed.is_some() => {
                armed = None;
                daemon.feed(Input::Timer).await;
            }
            event = inbox.next() => match event {
                Some(event) => daemon.on_event(event).await,
                None => break,
            },
        }
    }
    // The tidy half of the last release finishes before the process ends.
    daemon.runner.wait_tidy().await;
    info!("stopped");
    Ok(())
}

impl Daemon {
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    /// Feeds one input and carries out every action, in order.
    async fn feed(&mut self, input: Input) {
        let now = self.now();
        let actions = self.node.handle(now, input);
        for action in actions {
            self.act(action).await;
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Packet(p) => {
                if let Some(beat) = self.heartbeats.accept(p.path, &p.bytes) {
                    self.feed(Input::Heartbeat(beat)).await;
                }
            }
            Event::Verdict(v) => self.on_verdict(v.probe, v.ok, &v.detail).await,
            Event::Admin(call) => {
                let answer = self.on_admin(call.request).await;
                let _ = call.reply.send(answer);
            }
            Event::Finished(Finished::Takeover(result)) => self.on_takeover_finished(*result).await,
            Event::Finished(Finished::Release(result)) => self.on_release_finished(result).await,
            Event::Reconciled(result) => self.on_mirror_reconciled(result),
            Event::NovaExited(exit) => self.on_nova_exit(exit).await,
            Event::NovaRestarted(started) => self.on_nova_restarted(started).await,
            Event::Bus(e) => self.on_bus(e).await,
            Event::Shutdown => {
                info!("stop requested: releasing if active, then exiting");
                self.feed(Input::Shutdown).await;
            }
        }
    }

    async fn on_verdict(&mut self, probe: Probe, ok: bool, detail: &str) {
        if ok {
            info!(probe = probe.name(), detail = %detail, "probe passes");
        } else {
            warn!(probe = probe.name(), detail = %detail, "probe fails");
        }
        self.feed(Input::Health { probe, ok }).await;
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Send(beat) => self.heartbeats.send(beat),
            Action::BeginTakeover { reason, fence } => {
                let name = |n: cluster::NodeId| self.config.node_name(n);
                let fenced: Vec<String> = fence.iter().map(|&n| name(n)).collect();
                info!(reason = %reason.describe(name), fence = %fenced.join(" "), "takeover begins");
                let snapshot = self.choose_mirror();
                self.runner.begin_takeover(snapshot);
            }
            Action::BeginRelease { reason } => {
                info!(reason = %reason.describe(|n| self.config.node_name(n)), "release begins");
                // Dropping the watcher ends it; nova-network's queue is no longer ours to judge.
                self.watcher = None;
                if let Some(m) = &mut self.mirror {
                    m.stop_publishing();
                }
                self.runner.begin_release(self.nova.release());
            }
            Action::Alert(alert) => {
                // Transitions carry their step timings.
                let steps = match (alert.kind, self.runner.last()) {
                    (AlertKind::TakeoverDone | AlertKind::ReleaseDone, Some(t)) => t.timings(),
                    _ => Vec::new(),
                };
                self.alerts.emit(&alert, &steps);
            }
            Action::Reannounce => self.runner.reannounce(),
            Action::RestartNova {
                after,
                attempt,
                budget,
            } => self.nova.restart(after, attempt, budget),
            Action::Stopped => self.stopped = true,
        }
    }

    /// The held snapshot, if the mirror is on and it may be applied; otherwise `None`, with
    /// an alert saying why.
    fn choose_mirror(&mut self) -> Option<Arc<crate::mirror::Snapshot>> {
        let status = self.node.status(self.now());
        let m = self.mirror.as_mut()?;
        match m.choose(&self.config, &status) {
            Ok(snapshot) => {
                info!(summary = %snapshot.summary(), "mirror: applying the held snapshot");
                Some(snapshot)
            }
            Err(why) => {
                let detail = format!("mirror not used: {why}; plain takeover");
                m.last_use = Some(detail.clone());
                warn!(%detail, "mirror");
                self.alerts.raise(AlertKind::Mirror, detail);
                None
            }
        }
    }

    fn on_mirror_reconciled(&mut self, result: Result<Vec<ipnet::IpNet>, String>) {
        let detail = mirror::reconciled_detail(&result);
        info!(%detail, "mirror");
        if let Some(m) = &mut self.mirror {
            m.last_use = Some(detail.clone());
        }
        self.alerts.raise(AlertKind::Mirror, detail);
    }

    async fn on_takeover_finished(&mut self, result: Result<TakenOver, transition::Failed>) {
        match result {
            Ok(TakenOver {
                steps,
                child,
                mirror,
            }) => {
                self.runner.record("takeover", &steps, None);
                self.nova.supervise(child);
                self.start_watcher();
                let consumers = self.last_sample.map(|(c, _)| c);
                let rolled_back = match &mut self.mirror {
                    Some(m) => {
                        let why = m.took_over(mirror, &steps, consumers);
                        m.publish(&self.config, self.runner.plan(), self.generation)
                            .await;
                        why
                    }
                    None => None,
                };
                self.feed(Input::TakeoverDone(Ok(()))).await;
                if let Some(why) = rolled_back {
                    self.alerts.raise(AlertKind::Mirror, why);
                }
            }
            Err(f) => {
                self.runner.record("takeover", &f.steps, Some(&f.failed));
                self.feed(Input::TakeoverDone(Err(f.failed))).await;
            }
        }
    }

    async fn on_release_finished(
        &mut self,
        result: Result<Vec<takeover::StepReport>, transition::Failed>,
    ) {
        let outcome = match result {
            Ok(steps) => {
                self.runner.record("release", &steps, None);
                Ok(())
            }
            Err(f) => {
                self.runner.record("release", &f.steps, Some(&f.failed));
                Err(f.failed)
            }
        };
        self.feed(Input::ReleaseDone(outcome)).await;
    }

    /// Our nova-network exited: the state machine decides (restart in place within the
    /// respawn budget, or fail over).
    async fn on_nova_exit(&mut self, exit: Exited) {
        if self.nova.exited(&exit) {
            self.feed(Input::NovaExited).await;
        }
    }

    /// A nova-network restarted after its back-off; one that could not start is one more exit.
    async fn on_nova_restarted(&mut self, started: Result<takeover::nova::NovaChild, String>) {
        let active = self.node.state() == State::Active;
        match started {
            Ok(child) => self.nova.restarted(child, active),
            Err(e) => {
                error!(error = %e, "nova-network restart failed");
                if active {
                    self.feed(Input::NovaExited).await;
                }
            }
        }
    }

    async fn on_bus(&mut self, event: BusEvent) {
        match event {
            BusEvent::Connected => {
                info!("bus connected");
                self.nova.bus_reconnected();
            }
            BusEvent::Disconnected { reason } => {
                // The daemon goes on without the broker: UDP heartbeats decide, alerts wait.
                warn!(reason = %reason, "bus disconnected; reconnecting");
            }
            BusEvent::Heartbeat(bytes) => {
                if let Some(path) = self.heartbeats.broker_path()
                    && let Some(beat) = self.heartbeats.accept(path, &bytes)
                {
                    self.feed(Input::Heartbeat(beat)).await;
                }
            }
            BusEvent::AlertsDropped { count } => {
                warn!(count, "alert buffer full: oldest alerts dropped");
            }
            BusEvent::QueueMissing => self.on_queue_sample(0, 0).await,
            BusEvent::QueueSample {
                consumers,
                messages,
            } => self.on_queue_sample(consumers, messages).await,
        }
    }

    /// The queue `network.<host>` as the broker sees it: judges our nova-network while it runs
    /// here, and witnesses a zombie one elsewhere (the state machine's call).
    async fn on_queue_sample(&mut self, consumers: u32, messages: u32) {
        self.last_sample = Some((consumers, messages));
        if let Some(v) = self.nova.sample(consumers, messages) {
            self.on_verdict(Probe::Queue, v.ok, &v.detail).await;
        }
        let ours = self.nova.runs() && self.node.state() == State::Active;
        // nova-network consumes: its start-up (init_host) is done, so what it did not put
        // back of the mirror's state is no longer nova's.
        if ours
            && let Some(added) = self
                .mirror
                .as_mut()
                .and_then(|m| m.reconcile_due(consumers))
        {
            mirror::spawn_reconcile(
                self.runner.plan().clone(),
                added,
                self.senders.reconciled.clone(),
            );
        }
        self.feed(Input::QueueConsumers { consumers, ours }).await;
    }

    /// While active: announce every address that appears on the public interface or a managed
    /// bridge (nova binds floating IPs and gateways itself after it starts).
    fn start_watcher(&mut self) {
        let plan = self.runner.plan();
        match takeover::announce::Watcher::spawn(plan.watch_filter(), plan.announce) {
            Ok(watcher) => self.watcher = Some(watcher),
            Err(e) => error!(error = %e, "address watcher did not start"),
        }
    }

    async fn on_admin(&mut self, request: AdminRequest) -> Reply {
        let req = match request {
            AdminRequest::Status => return Reply::Status(Box::new(status::render(self))),
            AdminRequest::Takeover => cluster::Request::Takeover,
            AdminRequest::Standby => cluster::Request::Standby,
        };
        let now = self.now();
        let actions = self.node.handle(now, Input::Operator(req));
        let refused = actions.iter().find_map(|a| match a {
            Action::Alert(alert) if alert.kind == AlertKind::RequestRefused => {
                Some(alert.detail.clone())
            }
            _ => None,
        });
        for action in actions {
            self.act(action).await;
        }
        match refused {
            Some(why) => Reply::Refused(why),
            None => Reply::Accepted(self.node.state().to_string()),
        }
    }
}
