//! The daemon: tokio around the pure [`cluster::Node`].
//!
//! One loop owns the node. Sockets, probes, the admin socket, signals and the takeover/release
//! tasks send [`Event`]s into one channel; the loop feeds each to the node with tokio's clock
//! and carries out every returned action before the next event. A single timer tracks the
//! node's deadline. Takeover and release run as tasks so heartbeats keep flowing meanwhile.

mod mirror;
pub mod net;
mod status;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::admin::{self, Reply, Request as AdminRequest};
use crate::bus::{self, Bus, BusEvent, BusSettings, QueueProbe};
use crate::cluster::{self, Action, AlertKind, Input, Node, PathId, PeerBeat, Probe, State};
use crate::config::Config;
use crate::probes::{self, Verdict};
use crate::takeover::{self, Plan, StepReport};
use crate::wire::{self, Health, Heartbeat, Receiver};

pub use status::Transition;

/// Why the daemon cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The boot generation could not be persisted.
    #[error("state directory: {0}")]
    State(#[from] crate::state::StateError),
    /// A heartbeat socket could not be opened.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// The admin socket could not be opened.
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    /// A probe could not start.
    #[error("probe: {0}")]
    Probe(String),
    /// The configuration cannot be run (validation should have caught it).
    #[error("configuration: {0}")]
    Config(String),
    /// Signal handlers could not be installed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
    /// The mirror could not listen.
    #[error("{0}")]
    Mirror(std::io::Error),
}

/// Everything that reaches the loop.
pub(crate) enum Event {
    /// A datagram on a heartbeat path.
    Packet { path: usize, bytes: Vec<u8> },
    /// A probe's verdict changed.
    Verdict(Verdict),
    /// An operator request from the admin socket.
    Admin(AdminRequest, oneshot::Sender<Reply>),
    /// The takeover task finished; on success nova-network runs.
    TakeoverFinished(Box<Result<TakenOver, (Vec<StepReport>, String)>>),
    /// The mirror's reconcile finished: the floating IPs removed, or why it failed.
    MirrorReconciled(Result<Vec<ipnet::IpNet>, String>),
    /// The release task finished.
    ReleaseFinished(Result<Vec<StepReport>, (Vec<StepReport>, String)>),
    /// nova-network exited on its own.
    NovaExited { pid: u32, status: String },
    /// Something from the message bus.
    Bus(BusEvent),
    /// SIGTERM or SIGINT.
    Shutdown,
}

/// A successful takeover: its steps, the nova-network it started, what the mirror did.
pub(crate) struct TakenOver {
    steps: Vec<StepReport>,
    child: takeover::nova::NovaChild,
    mirror: MirrorOutcome,
}

/// What became of the mirror during a takeover.
pub(crate) enum MirrorOutcome {
    /// No snapshot was applied (the plain order ran).
    NotUsed,
    /// Applied; these floating IPs were added by it.
    Applied(Vec<ipnet::IpNet>),
    /// Applying failed; rolled back, then the plain order ran.
    RolledBack(String),
}

/// Control of the running nova-network child.
struct NovaHandle {
    pid: u32,
    stop: oneshot::Sender<oneshot::Sender<()>>,
}

/// The loop's state besides the node.
struct Daemon {
    config: Config,
    plan: Plan,
    node: Node,
    generation: u64,
    seq: u64,
    sockets: Vec<net::PathSocket>,
    receivers: Vec<Receiver>,
    events: mpsc::Sender<Event>,
    nova: Option<NovaHandle>,
    respawns: u32,
    watcher: Option<takeover::announce::Watcher>,
    transition: Option<Transition>,
    transition_started: Option<Instant>,
    alerts: VecDeque<String>,
    stopped: bool,
    /// nova's RabbitMQ, when configured.
    bus: Option<Bus>,
    /// Index of the broker heartbeat path (after the UDP paths), when it is on.
    broker_path: Option<usize>,
    /// Judges nova-network by its queue while it runs here.
    queue_probe: Option<QueueProbe>,
    /// A zombie consumer was reported for the current episode.
    zombie_reported: bool,
    /// Last queue sample (consumers, messages), for `status`.
    last_sample: Option<(u32, u32)>,
    /// The warm standby's mirror, unless switched off.
    mirror: Option<mirror::MirrorRun>,
    /// Held while a release's tidy half (links, chains) runs after the peer was told.
    tidy: Arc<tokio::sync::Mutex<()>>,
}

/// How many recent alerts `status` shows.
const RECENT_ALERTS: usize = 20;

/// Runs the daemon until SIGTERM/SIGINT has released the service (if held).
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let generation = crate::state::next_generation(&config.state_dir)?;
    let (events, mut inbox) = mpsc::channel::<Event>(1024);

    let me = config.this_node().clone();
    let mut sockets = Vec::new();
    let mut receivers = Vec::new();
    for (i, path) in config.paths.iter().enumerate() {
        let pid = PathId(i as u8);
        let own = me.address(pid);
        let peers = config.peers().filter_map(|p| p.address(pid)).collect();
        // Validation gives every node an address on every path; keep the indexes aligned
        // with the path ids even so.
        let Some(own) = own else {
            return Err(DaemonError::Config(format!(
                "this node has no address on heartbeat path {}",
                path.name
            )));
        };
        let crate::config::PathKind::Udp { interface, port } = &path.kind;
        let socket = net::open(&path.name, interface, *port, own, peers)?;
        spawn_receive(i, socket.socket.clone(), events.clone());
        sockets.push(socket);
        // One receiver per path: each path's sequence numbers are checked on their own, so a
        // slower path's packets are not taken for replays of a faster one's.
        receivers.push(receiver(&config));
    }

    // nova's RabbitMQ: one more heartbeat path (after the UDP ones), the queue probe, alerts.
    let mut bus_handle = None;
    let mut broker_path = None;
    let mut queue_probe = None;
    if let (Some(b), Some(settings)) = (&config.bus, BusSettings::from_config(&config)) {
        if b.heartbeat_path {
            broker_path = Some(receivers.len());
            receivers.push(receiver(&config));
        }
        queue_probe = Some(
            QueueProbe::new(b.consumer_grace, b.backlog_window)
                .with_queue(format!("network.{}", config.nova.host)),
        );
        let (handle, mut bus_events) = Bus::spawn(settings);
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(e) = bus_events.recv().await {
                if events.send(Event::Bus(e)).await.is_err() {
                    return;
                }
            }
        });
        bus_handle = Some(handle);
    }

    let mirror = mirror::MirrorRun::start(&config)
        .await
        .map_err(DaemonError::Mirror)?;
    let admin = admin::Server::bind(&config.daemon.admin_socket)?;
    tokio::spawn(admin.serve(events.clone()));
    spawn_signals(events.clone())?;
    spawn_probes(&config, events.clone())?;

    let mut plan = Plan::from_config(&config);
    plan.announce = takeover::AnnounceSettings {
        count: config.announce.count,
        interval: config.announce.interval,
        repeat_after: config.announce.repeat_after,
    };
    // A clean slate, as the seed's script did at start: whatever a previous run left (killed
    // daemon, crash, reboot without cleanup) is released before we join the pool, so this node
    // never holds addresses the pool does not know it holds.
    let started = Instant::now();
    match takeover::release(&plan).await {
        Ok(steps) => log_steps(
            "startup-cleanup",
            &steps,
            started.elapsed().as_millis() as u64,
        ),
        Err((_, e)) => warn!(error = %e, "start-up cleanup failed; continuing as standby"),
    }
    let now = Instant::now();
    let mut cluster = config.cluster_config();
    if broker_path.is_some() {
        // The broker is one more path: a peer is dead only when silent there too.
        cluster.paths = cluster.paths.saturating_add(1);
    }
    let node = Node::new(&cluster, generation, now.into_std());
    info!(
        node = %me.name,
        generation,
        paths = config.paths.len(),
        peers = config.nodes.len() - 1,
        "started"
    );
    let mut daemon = Daemon {
        config,
        plan,
        node,
        generation,
        seq: 0,
        sockets,
        receivers,
        events,
        nova: None,
        respawns: 0,
        watcher: None,
        transition: None,
        transition_started: None,
        alerts: VecDeque::new(),
        stopped: false,
        bus: bus_handle,
        broker_path,
        queue_probe,
        zombie_reported: false,
        last_sample: None,
        mirror,
        tidy: Arc::default(),
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
            event = inbox.recv() => match event {
                Some(event) => daemon.on_event(event).await,
                None => break,
            },
        }
    }
    // The tidy half of the last release finishes before the process ends.
    let _tidied = daemon.tidy.lock().await;
    info!("stopped");
    Ok(())
}

/// A heartbeat receiver for one path: this cluster, the configured nodes, our keys.
fn receiver(config: &Config) -> Receiver {
    Receiver::new(
        config.cluster_id,
        config.this_node().id,
        config.nodes.iter().map(|n| n.id),
        config.keyring.clone(),
    )
}

fn spawn_receive(
    path: usize,
    socket: std::sync::Arc<tokio::net::UdpSocket>,
    events: mpsc::Sender<Event>,
) {
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, _from)) => {
                    let bytes = buf[..n].to_vec();
                    if events.send(Event::Packet { path, bytes }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    warn!(path, error = %e, "heartbeat receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

fn spawn_signals(events: mpsc::Sender<Event>) -> Result<(), DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if events.send(Event::Shutdown).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

fn spawn_probes(config: &Config, events: mpsc::Sender<Event>) -> Result<(), DaemonError> {
    let (tx, mut rx) = mpsc::channel::<Verdict>(64);
    if config.probes.watch_links {
        let mut interfaces: Vec<String> = config
            .failover
            .vips
            .iter()
            .map(|v| v.interface.clone())
            .collect();
        interfaces.push(config.nova.public_interface.clone());
        interfaces.sort();
        interfaces.dedup();
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Err(e) = probes::links::watch(interfaces, tx).await {
                error!(error = %e, "link probe stopped");
            }
        });
    }
    if let Some(file) = &config.probes.log_file {
        let watch = probes::log::LogWatch::new(file.clone(), &config.probes.fatal_patterns)
            .map_err(|e| DaemonError::Probe(e.to_string()))?;
        tokio::spawn(watch.run(tx.clone()));
    }
    drop(tx);
    tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            if events.send(Event::Verdict(v)).await.is_err() {
                return;
            }
        }
    });
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
            Event::Packet { path, bytes } => self.on_packet(path, &bytes).await,
            Event::Verdict(v) => {
                if v.ok {
                    info!(probe = v.probe.name(), detail = %v.detail, "probe passes");
                } else {
                    warn!(probe = v.probe.name(), detail = %v.detail, "probe fails");
                }
                self.feed(Input::Health {
                    probe: v.probe,
                    ok: v.ok,
                })
                .await;
            }
            Event::Admin(request, reply) => {
                let answer = self.on_admin(request).await;
                let _ = reply.send(answer);
            }
            Event::TakeoverFinished(result) => self.on_takeover_finished(*result).await,
            Event::MirrorReconciled(result) => self.on_mirror_reconciled(result).await,
            Event::ReleaseFinished(result) => self.on_release_finished(result).await,
            Event::NovaExited { pid, status } => self.on_nova_exit(pid, status).await,
            Event::Bus(e) => self.on_bus(e).await,
            Event::Shutdown => {
                info!("stop requested: releasing if active, then exiting");
                self.feed(Input::Shutdown).await;
            }
        }
    }

    async fn on_packet(&mut self, path: usize, bytes: &[u8]) {
        let Some(receiver) = self.receivers.get_mut(path) else {
            return;
        };
        let hb = match receiver.accept(bytes) {
            Ok(hb) => hb,
            // Counted by the receiver; shown by `status`, never logged per packet.
            Err(_) => return,
        };
        self.feed(Input::Heartbeat(PeerBeat {
            from: hb.node,
            path: PathId(path as u8),
            generation: hb.generation,
            seq: hb.seq,
            state: hb.state,
            intent: hb.intent,
            health: hb.health.0,
        }))
        .await;
    }

    async fn act(&mut self, action: Action) {
        match action {
            Action::Send(beat) => {
                self.seq += 1;
                let packet = wire::encode(
                    &Heartbeat {
                        cluster: self.config.cluster_id,
                        node: self.config.this_node().id,
                        generation: self.generation,
                        seq: self.seq,
                        state: beat.state,
                        priority: beat.priority,
                        health: Health(beat.health),
                        intent: beat.intent,
                    },
                    &self.config.keyring,
                );
                for socket in &self.sockets {
                    for peer in &socket.peers {
                        if let Err(e) = socket.socket.try_send_to(&packet, *peer) {
                            debug!(peer = %peer, error = %e, "heartbeat not sent");
                        }
                    }
                }
                if let (Some(bus), Some(_)) = (&self.bus, self.broker_path) {
                    bus.send_heartbeat(packet.to_vec());
                }
            }
            Action::BeginTakeover { reason, fence } => {
                info!(reason = ?reason, fence = ?fence, "takeover begins");
                self.transition_started = Some(Instant::now());
                let snapshot = self.choose_mirror().await;
                let plan = self.plan.clone();
                let command = self.config.nova_network_command();
                let events = self.events.clone();
                let tidy = self.tidy.clone();
                tokio::spawn(async move {
                    // A release's tidy half still running here finishes first.
                    let _tidied = tidy.lock().await;
                    let result = takeover_task(&plan, &command, snapshot).await;
                    let _ = events.send(Event::TakeoverFinished(Box::new(result))).await;
                });
            }
            Action::BeginRelease { reason } => {
                info!(reason = ?reason, "release begins");
                self.transition_started = Some(Instant::now());
                // Dropping the watcher ends it; nova-network's queue is no longer ours to judge.
                self.watcher = None;
                if let Some(m) = &mut self.mirror {
                    m.stop_publishing();
                }
                if let Some(probe) = &mut self.queue_probe {
                    probe.stopped();
                }
                let plan = self.plan.clone();
                let nova = self.nova.take();
                let grace = self.config.daemon.nova_stop_grace;
                let events = self.events.clone();
                let tidy = self.tidy.clone();
                tokio::spawn(async move {
                    // Held until the tidy half is done: a takeover here waits for it.
                    let _tidying = tidy.lock_owned().await;
                    let result = release_task(&plan, nova, grace).await;
                    let _ = events.send(Event::ReleaseFinished(result)).await;
                    tidy_task(&plan).await;
                });
            }
            Action::Alert(alert) => {
                let peer = alert
                    .peer
                    .and_then(|id| self.config.nodes.iter().find(|n| n.id == id))
                    .map(|n| n.name.clone())
                    .unwrap_or_default();
                let line = format!("{} {} {}", alert.kind.name(), peer, alert.detail);
                match alert.kind {
                    AlertKind::SplitBrain | AlertKind::Fault | AlertKind::PeerLost => {
                        warn!(kind = alert.kind.name(), peer = %peer, detail = %alert.detail, "alert")
                    }
                    _ => {
                        info!(kind = alert.kind.name(), peer = %peer, detail = %alert.detail, "alert")
                    }
                }
                if self.alerts.len() == RECENT_ALERTS {
                    self.alerts.pop_front();
                }
                self.alerts.push_back(line);
                if let Some(bus) = &self.bus {
                    // Transitions carry their step timings.
                    let steps: Vec<(String, u64)> = match (alert.kind, &self.transition) {
                        (AlertKind::TakeoverDone | AlertKind::ReleaseDone, Some(t)) => {
                            t.steps.iter().map(|(s, ms, _)| (s.clone(), *ms)).collect()
                        }
                        _ => Vec::new(),
                    };
                    let peer = (!peer.is_empty()).then_some(peer.as_str());
                    bus.publish_alert(bus::alert_json(
                        &self.config.cluster_name,
                        &self.config.this_node().name,
                        alert.kind.name(),
                        peer,
                        &alert.detail,
                        unix_ms(),
                        &steps,
                    ));
                }
            }
            Action::Reannounce => {
                let plan = self.plan.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    match takeover::reannounce(&plan).await {
                        Ok(n) => info!(
                            step = "reannounce",
                            addresses = n,
                            ms = started.elapsed().as_millis() as u64,
                            "announced the held addresses again"
                        ),
                        Err(e) => warn!(step = "reannounce", error = %e, "announcing again failed"),
                    }
                });
            }
            Action::Stopped => self.stopped = true,
        }
    }

    /// The held snapshot, if the mirror is on and it may be applied; otherwise `None`, with
    /// an alert saying why.
    async fn choose_mirror(&mut self) -> Option<Arc<crate::mirror::Snapshot>> {
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
                self.raise(AlertKind::Mirror, detail).await;
                None
            }
        }
    }

    /// An alert the daemon raises itself (not the state machine), about no peer.
    async fn raise(&mut self, kind: AlertKind, detail: String) {
        Box::pin(self.act(Action::Alert(cluster::Alert {
            kind,
            peer: None,
            detail,
        })))
        .await;
    }

    async fn on_mirror_reconciled(&mut self, result: Result<Vec<ipnet::IpNet>, String>) {
        let detail = match result {
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
        };
        info!(%detail, "mirror");
        if let Some(m) = &mut self.mirror {
            m.last_use = Some(detail.clone());
        }
        self.raise(AlertKind::Mirror, detail).await;
    }

    async fn on_takeover_finished(&mut self, result: Result<TakenOver, (Vec<StepReport>, String)>) {
        let total = self.elapsed_ms();
        match result {
            Ok(TakenOver {
                steps,
                child,
                mirror,
            }) => {
                log_steps("takeover", &steps, total);
                self.transition = Some(Transition::new("takeover", &steps, total, None));
                self.respawns = 0;
                self.supervise(child);
                self.start_watcher();
                let rolled_back = match mirror {
                    MirrorOutcome::Applied(added) => {
                        if let Some(m) = &mut self.mirror {
                            m.last_use = steps
                                .iter()
                                .find(|s| s.step == "mirror")
                                .map(|s| s.detail.clone());
                            m.pending_reconcile = Some(added);
                            m.reconcile_baseline = self.last_sample.map(|(c, _)| (c, false));
                        }
                        None
                    }
                    MirrorOutcome::RolledBack(why) => Some(why),
                    MirrorOutcome::NotUsed => None,
                };
                if let Some(m) = &mut self.mirror {
                    m.publish(&self.config, &self.plan, self.generation).await;
                }
                self.feed(Input::TakeoverDone(Ok(()))).await;
                if let Some(why) = rolled_back {
                    if let Some(m) = &mut self.mirror {
                        m.last_use = Some(why.clone());
                    }
                    self.raise(AlertKind::Mirror, why).await;
                }
            }
            Err((steps, step)) => {
                error!(step = %step, "takeover failed");
                self.transition = Some(Transition::new("takeover", &steps, total, Some(&step)));
                self.feed(Input::TakeoverDone(Err(step))).await;
            }
        }
    }

    async fn on_release_finished(
        &mut self,
        result: Result<Vec<StepReport>, (Vec<StepReport>, String)>,
    ) {
        let total = self.elapsed_ms();
        let outcome = match result {
            Ok(steps) => {
                log_steps("release", &steps, total);
                self.transition = Some(Transition::new("release", &steps, total, None));
                Ok(())
            }
            Err((steps, step)) => {
                error!(step = %step, "release failed");
                self.transition = Some(Transition::new("release", &steps, total, Some(&step)));
                Err(step)
            }
        };
        // The failing nova-network, its queue verdict and its fatal log lines went with the
        // release (the queue probe only judges a nova-network running here).
        for probe in [Probe::NovaProcess, Probe::Queue, Probe::Log] {
            self.feed(Input::Health { probe, ok: true }).await;
        }
        self.feed(Input::ReleaseDone(outcome)).await;
    }

    async fn on_nova_exit(&mut self, pid: u32, status: String) {
        if self.nova.as_ref().map(|n| n.pid) != Some(pid) {
            return;
        }
        self.nova = None;
        if self.node.state() != State::Active {
            return;
        }
        if self.respawns < self.config.daemon.respawn_budget {
            self.respawns += 1;
            warn!(pid, status = %status, respawn = self.respawns, budget = self.config.daemon.respawn_budget, "nova-network exited; restarting it");
            match takeover::nova::NovaChild::spawn(&self.config.nova_network_command()) {
                Ok(child) => {
                    self.supervise(child);
                    return;
                }
                Err(e) => error!(error = %e, "nova-network restart failed"),
            }
        }
        warn!(pid, status = %status, "nova-network exited: failing over");
        self.feed(Input::Health {
            probe: Probe::NovaProcess,
            ok: false,
        })
        .await;
    }

    async fn on_bus(&mut self, event: BusEvent) {
        match event {
            BusEvent::Connected => {
                info!("bus connected");
                // nova-network reconnects too after a broker outage: its consumer gets a fresh
                // grace, so an outage of the broker never counts against nova-network.
                if let Some(probe) = &mut self.queue_probe
                    && probe.is_started()
                {
                    probe.started(Instant::now().into_std());
                }
            }
            BusEvent::Disconnected { reason } => {
                // The daemon goes on without the broker: UDP heartbeats decide, alerts wait.
                warn!(reason = %reason, "bus disconnected; reconnecting");
            }
            BusEvent::Heartbeat(bytes) => {
                if let Some(path) = self.broker_path {
                    self.on_packet(path, &bytes).await;
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
    /// here, and witnesses a zombie one elsewhere (a consumer nobody should be).
    async fn on_queue_sample(&mut self, consumers: u32, messages: u32) {
        self.last_sample = Some((consumers, messages));
        let now = Instant::now().into_std();
        let verdict = self
            .queue_probe
            .as_mut()
            .and_then(|p| p.sample(now, consumers, messages));
        if let Some(v) = verdict {
            if v.ok {
                info!(probe = "queue", detail = %v.detail, "probe passes");
            } else {
                warn!(probe = "queue", detail = %v.detail, "probe fails");
            }
            self.feed(Input::Health {
                probe: Probe::Queue,
                ok: v.ok,
            })
            .await;
        }
        let we_hold = self.nova.is_some() && self.node.state() == State::Active;
        // nova-network consumes: its start-up (init_host) is done, so what it did not put
        // back of the mirror's state is no longer nova's.
        if we_hold
            && let Some(added) = self
                .mirror
                .as_mut()
                .and_then(|m| m.reconcile_due(consumers))
        {
            let plan = self.plan.clone();
            let events = self.events.clone();
            tokio::spawn(async move {
                let result = crate::mirror::apply::reconcile(&plan, &added)
                    .await
                    .map_err(|e| e.to_string());
                let _ = events.send(Event::MirrorReconciled(result)).await;
            });
        }
        let status = self.node.status(now);
        let peers_hold = status
            .peers
            .iter()
            .any(|p| p.alive && p.state.holds_service());
        let zombie = self
            .queue_probe
            .as_ref()
            .is_some_and(|p| p.zombie(consumers, we_hold, !peers_hold));
        if zombie && !self.zombie_reported {
            self.zombie_reported = true;
            let detail = format!(
                "network.{} has {consumers} consumer(s) while {} (no peer holds the service): a nova-network elsewhere still consumes",
                self.config.nova.host,
                if we_hold {
                    "only ours should"
                } else {
                    "none should"
                }
            );
            warn!(%detail, "zombie nova-network");
            self.raise(AlertKind::SplitBrain, detail).await;
        } else if !zombie {
            self.zombie_reported = false;
        }
    }

    /// Owns the child in a task: reports its exit the instant it happens, stops it on request.
    fn supervise(&mut self, mut child: takeover::nova::NovaChild) {
        let pid = child.pid();
        let (stop, mut stop_rx) = oneshot::channel::<oneshot::Sender<()>>();
        let grace = self.config.daemon.nova_stop_grace;
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let status = format!("{status:?}");
                    let _ = events.send(Event::NovaExited { pid, status }).await;
                }
                done = &mut stop_rx => {
                    if let Err(e) = child.stop(grace).await {
                        warn!(pid, error = %e, "stopping nova-network");
                    }
                    if let Ok(done) = done {
                        let _ = done.send(());
                    }
                }
            }
        });
        info!(pid, "nova-network started");
        self.nova = Some(NovaHandle { pid, stop });
        if let Some(probe) = &mut self.queue_probe {
            probe.started(Instant::now().into_std());
        }
    }

    /// While active: announce every address that appears on the public interface or a managed
    /// bridge (nova binds floating IPs and gateways itself after it starts).
    fn start_watcher(&mut self) {
        match takeover::announce::Watcher::spawn(self.plan.watch_filter(), self.plan.announce) {
            Ok(watcher) => self.watcher = Some(watcher),
            Err(e) => error!(error = %e, "address watcher did not start"),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.transition_started
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or_default()
    }

    async fn on_admin(&mut self, request: AdminRequest) -> Reply {
        match request {
            AdminRequest::Status => Reply::Status(Box::new(self.status())),
            AdminRequest::Takeover | AdminRequest::Standby => {
                let req = if request == AdminRequest::Takeover {
                    cluster::Request::Takeover
                } else {
                    cluster::Request::Standby
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
                    None => Reply::Accepted(format!("{:?}", self.node.state())),
                }
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        status::render(self)
    }
}

/// One line per transition with every step's time (each step also logged itself as it ran).
/// Milliseconds since the Unix epoch, to timestamp alerts (labels only; no decision reads it).
fn unix_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn log_steps(kind: &str, steps: &[StepReport], total: u64) {
    let timings: Vec<String> = steps
        .iter()
        .map(|s| format!("{}={}ms", s.step, s.duration.as_millis()))
        .collect();
    info!(transition = kind, ms = total, steps = %timings.join(" "), "done");
}

/// The takeover steps, the mirror's snapshot if one is given (rolled back if it fails), then
/// nova-network: what `BeginTakeover` runs.
async fn takeover_task(
    plan: &Plan,
    command: &[String],
    snapshot: Option<Arc<crate::mirror::Snapshot>>,
) -> Result<TakenOver, (Vec<StepReport>, String)> {
    let mut steps = takeover::takeover(plan)
        .await
        .map_err(|(steps, e)| (steps, e.to_string()))?;
    let mut mirror = MirrorOutcome::NotUsed;
    if let Some(snap) = snapshot {
        let started = Instant::now();
        let mut done = crate::mirror::apply::Applied::default();
        let detail = match crate::mirror::apply::apply(plan, &snap, &mut done).await {
            Ok(()) => {
                mirror = MirrorOutcome::Applied(done.floating.clone());
                done.detail(&snap)
            }
            Err(e) => {
                let undone = crate::mirror::apply::rollback(plan, &done)
                    .await
                    .unwrap_or_else(|r| format!("rollback failed too: {r}"));
                let why = format!("mirror failed ({e}); {undone}; plain takeover");
                mirror = MirrorOutcome::RolledBack(why.clone());
                why
            }
        };
        let duration = started.elapsed();
        info!(step = "mirror", ms = duration.as_millis() as u64, detail = %detail, "step done");
        steps.push(StepReport {
            step: "mirror",
            duration,
            detail,
        });
    }
    let started = Instant::now();
    match takeover::nova::NovaChild::spawn(command) {
        Ok(child) => {
            steps.push(StepReport {
                step: "nova",
                duration: started.elapsed(),
                detail: format!("started nova-network pid {}", child.pid()),
            });
            Ok(TakenOver {
                steps,
                child,
                mirror,
            })
        }
        Err(e) => Err((steps, format!("nova: {e}"))),
    }
}

/// The second half of a release (links, chains), after the peer was told; logged only.
async fn tidy_task(plan: &Plan) {
    let started = Instant::now();
    match takeover::release_tidy(plan).await {
        Ok(steps) => log_steps("release-tidy", &steps, started.elapsed().as_millis() as u64),
        Err((_, e)) => warn!(error = %e, "release tidy failed; the next takeover cleans up"),
    }
}

/// nova-network stopped, then the first half of the release (no service address left
/// here): what `BeginRelease` runs before the peer is told.
async fn release_task(
    plan: &Plan,
    nova: Option<NovaHandle>,
    grace: Duration,
) -> Result<Vec<StepReport>, (Vec<StepReport>, String)> {
    let started = Instant::now();
    let mut steps = Vec::new();
    if let Some(handle) = nova {
        let (done, wait) = oneshot::channel();
        if handle.stop.send(done).is_ok() {
            let _ = wait.await;
        }
        steps.push(StepReport {
            step: "nova",
            duration: started.elapsed(),
            detail: format!("stopped nova-network pid {} (grace {grace:?})", handle.pid),
        });
    }
    match takeover::release_addresses(plan).await {
        Ok(more) => {
            steps.extend(more);
            Ok(steps)
        }
        Err((more, e)) => {
            steps.extend(more);
            Err((steps, e.to_string()))
        }
    }
}
