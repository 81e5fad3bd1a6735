//! Deterministic simulation of a pool of [`Node`]s on a fake network with a virtual clock.
//!
//! One thread, no sleeping: each step jumps to the next node deadline, packet delivery or
//! takeover/release completion. Loss, duplication and delay come from a seeded RNG, so a seed
//! replays a run exactly. Faults are methods (`cut`, `isolate`, `heal`, `crash`, `restart`...).
//! The harness records what invariants need (who is active, moves, double-active time).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{
    Action, AlertKind, ClusterConfig, Input, Member, Node, NodeId, PathId, PeerBeat, Probe,
    Request, RespawnPolicy, State, StepFailed, Timers,
};

/// The fake network's and the fake drivers' behaviour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimParams {
    /// Number of nodes (node `i` is named `n<i>`, has id `i + 1` and priority `200 - 10 * i`).
    pub nodes: usize,
    /// Heartbeat paths between every pair.
    pub paths: u8,
    /// Heartbeat timers of every node.
    pub timers: Timers,
    /// auto_failback of every node.
    pub auto_failback: bool,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Smallest one-way delay.
    pub min_delay: Duration,
    /// Largest one-way delay (random delays reorder packets).
    pub max_delay: Duration,
    /// How long the takeover steps take.
    pub takeover_time: Duration,
    /// How long the release steps take.
    pub release_time: Duration,
    /// The respawn budget of every node's nova-network.
    pub respawn: RespawnPolicy,
    /// The broker's queue samples, this often, fed to every running node (`None`: no bus).
    pub queue_interval: Option<Duration>,
    /// How long a crashed node's nova-network stays a consumer of its queue (the broker
    /// notices a dead connection late).
    pub zombie_linger: Duration,
}

impl SimParams {
    /// Two nodes, one path, a perfect network, instant drivers.
    pub fn pair(timers: Timers) -> SimParams {
        SimParams {
            nodes: 2,
            paths: 1,
            timers,
            auto_failback: false,
            loss: 0.0,
            duplicate: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            takeover_time: Duration::from_millis(10),
            release_time: Duration::from_millis(10),
            respawn: RespawnPolicy::default(),
            queue_interval: None,
            zombie_linger: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Deliver { to: usize, beat: BeatBytes },
    TakeoverDone { node: usize, incarnation: u64 },
    ReleaseDone { node: usize, incarnation: u64 },
    NovaRestarted { node: usize, incarnation: u64 },
    QueueSample,
}

/// A [`PeerBeat`] in an orderable form for the event queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct BeatBytes {
    from: u16,
    path: u8,
    generation: u64,
    seq: u64,
    state: u8,
    intent: u8,
    health: u16,
}

impl BeatBytes {
    fn beat(self) -> Option<PeerBeat> {
        Some(PeerBeat {
            from: NodeId(self.from),
            path: PathId(self.path),
            generation: self.generation,
            seq: self.seq,
            state: State::from_u8(self.state)?,
            intent: super::Intent::from_u8(self.intent)?,
            health: self.health,
        })
    }
}

#[derive(Debug)]
struct SimNode {
    node: Option<Node>,
    generation: u64,
    /// Sequence number of the last heartbeat sent.
    seq: u64,
    /// Bumped on crash so completions of a dead incarnation are ignored.
    incarnation: u64,
    /// Fail the next takeover at this step.
    fail_next_takeover: Option<String>,
    stopped: bool,
    /// Its nova-network runs (a consumer of the queue).
    nova: bool,
    /// Its nova-network exits again the moment it is restarted.
    nova_broken: bool,
}

/// A pool of nodes on a simulated network.
#[derive(Debug)]
pub struct Sim {
    params: SimParams,
    configs: Vec<ClusterConfig>,
    rng: StdRng,
    base: Instant,
    now: Instant,
    nodes: Vec<SimNode>,
    queue: BinaryHeap<Reverse<(Instant, u64, Event)>>,
    seq: u64,
    /// Blocked (from, to, path) triples.
    cuts: BTreeSet<(usize, usize, u8)>,
    /// When the network last became fully connected (`None` while cut).
    connected_since: Option<Instant>,
    /// When two or more nodes became Active at once, if they are now.
    multi_active_since: Option<Instant>,
    longest_multi_active_connected: Duration,
    last_active: Option<usize>,
    moves: usize,
    takeovers: usize,
    alerts: Vec<(usize, AlertKind)>,
    /// Until when a crashed node's nova-network still consumes (one entry per crash).
    zombies: Vec<Instant>,
    /// nova-network restarts in place, per node.
    restarts: Vec<usize>,
    /// Every alert with its time and detail, for replaying a failing seed.
    trace: Vec<String>,
    steps: u64,
}

impl Sim {
    /// A new pool; every node starts at time zero unless started later with [`Sim::restart`].
    pub fn new(seed: u64, params: SimParams) -> Sim {
        // The simulation's epoch: the only clock read, and only to have an `Instant` to add to.
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        let members: Vec<Member> = (0..params.nodes)
            .map(|i| Member {
                id: NodeId(i as u16 + 1),
                name: format!("n{i}"),
                priority: 200 - 10 * i as u8,
            })
            .collect();
        let configs: Vec<ClusterConfig> = (0..params.nodes)
            .map(|i| ClusterConfig {
                me: NodeId(i as u16 + 1),
                members: members.clone(),
                paths: params.paths,
                timers: params.timers,
                auto_failback: params.auto_failback,
                path_names: Vec::new(),
                respawn: params.respawn,
            })
            .collect();
        let nodes = (0..params.nodes)
            .map(|_| SimNode {
                node: None,
                generation: 0,
                seq: 0,
                incarnation: 0,
                fail_next_takeover: None,
                stopped: false,
                nova: false,
                nova_broken: false,
            })
            .collect();
        let mut sim = Sim {
            params,
            configs,
            rng: StdRng::seed_from_u64(seed),
            base,
            now: base,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            cuts: BTreeSet::new(),
            connected_since: Some(base),
            multi_active_since: None,
            longest_multi_active_connected: Duration::ZERO,
            last_active: None,
            moves: 0,
            takeovers: 0,
            alerts: Vec::new(),
            zombies: Vec::new(),
            restarts: vec![0; params.nodes],
            trace: Vec::new(),
            steps: 0,
        };
        for i in 0..params.nodes {
            sim.restart(i);
        }
        if let Some(every) = params.queue_interval {
            sim.schedule(every, Event::QueueSample);
        }
        sim
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// The parameters.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// The RNG, for scenario builders that want seeded choices.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// State of node `i` (`None`: crashed or stopped).
    pub fn state(&self, i: usize) -> Option<State> {
        self.nodes[i].node.as_ref().map(Node::state)
    }

    /// Indices of the Active nodes.
    pub fn active(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.state(i) == Some(State::Active))
            .collect()
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    /// How many times the service moved to a different node.
    pub fn moves(&self) -> usize {
        self.moves
    }

    /// How many takeovers completed.
    pub fn takeovers(&self) -> usize {
        self.takeovers
    }

    /// Longest time two nodes were Active at once while the network was connected.
    pub fn longest_multi_active_connected(&self) -> Duration {
        self.longest_multi_active_connected
    }

    /// Alerts raised so far: (node, kind).
    pub fn alerts(&self) -> &[(usize, AlertKind)] {
        &self.alerts
    }

    /// Every alert so far, one line each with time, node and detail.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// nova-network restarts in place on node `i` so far.
    pub fn restarts(&self, i: usize) -> usize {
        self.restarts[i]
    }

    /// Whether node `i`'s nova-network runs.
    pub fn nova_runs(&self, i: usize) -> bool {
        self.nodes[i].nova
    }

    /// Crash node `i`: it stops at once, sending nothing more; its nova-network, if it ran,
    /// stays a consumer of the queue for `zombie_linger`.
    pub fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if std::mem::take(&mut n.nova) {
            self.zombies.push(self.now + self.params.zombie_linger);
        }
        n.node = None;
        n.incarnation += 1;
        n.stopped = false;
        self.observe();
    }

    /// Start node `i` again (or for the first time) with a new generation.
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].node.is_some() {
            return;
        }
        let n = &mut self.nodes[i];
        n.generation += 1;
        n.seq = 0;
        n.incarnation += 1;
        n.stopped = false;
        n.node = Some(Node::new(&self.configs[i], n.generation, self.now));
        self.feed(i, Input::Timer);
    }

    /// Block every path between `a` and `b`, both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Block every path from `a` to `b` (b still reaches a).
    pub fn cut_one_way(&mut self, a: usize, b: usize) {
        for p in 0..self.params.paths {
            self.cut_path(a, b, p);
        }
    }

    /// Block one path from `a` to `b`.
    pub fn cut_path(&mut self, a: usize, b: usize, path: u8) {
        self.cuts.insert((a, b, path));
        self.connected_since = None;
        self.multi_active_since = self.multi_active_since.map(|_| self.now);
    }

    /// Cut node `i` off from everyone.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            if j != i {
                self.cut(i, j);
            }
        }
    }

    /// Restore every path.
    pub fn heal(&mut self) {
        self.cuts.clear();
        if self.connected_since.is_none() {
            self.connected_since = Some(self.now);
            if self.multi_active_since.is_some() {
                self.multi_active_since = Some(self.now);
            }
        }
    }

    /// Set a probe's verdict on node `i`.
    pub fn health(&mut self, i: usize, probe: Probe, ok: bool) {
        self.feed(i, Input::Health { probe, ok });
    }

    /// An operator request on node `i`.
    pub fn request(&mut self, i: usize, request: Request) {
        self.feed(i, Input::Operator(request));
    }

    /// A planned stop of node `i`'s daemon.
    pub fn shutdown(&mut self, i: usize) {
        self.feed(i, Input::Shutdown);
    }

    /// Node `i`'s nova-network exits on its own.
    pub fn nova_exit(&mut self, i: usize) {
        if std::mem::take(&mut self.nodes[i].nova) {
            self.feed(i, Input::NovaExited);
        }
    }

    /// From now on node `i`'s nova-network exits again the moment it is restarted (or no
    /// longer, with `false`).
    pub fn break_nova(&mut self, i: usize, broken: bool) {
        self.nodes[i].nova_broken = broken;
    }

    /// Make node `i`'s next takeover fail at `step`.
    pub fn fail_next_takeover(&mut self, i: usize, step: &str) {
        self.nodes[i].fail_next_takeover = Some(step.to_string());
    }

    /// Disarm every [`Sim::fail_next_takeover`] not yet used.
    pub fn disarm_failures(&mut self) {
        for n in &mut self.nodes {
            n.fail_next_takeover = None;
        }
    }

    /// Run until `elapsed() == until` (or the event budget is spent; returns false then).
    pub fn run_until(&mut self, until: Duration) -> bool {
        let until = self.base + until;
        // Bounded: a healthy run handles a few events per node per keepalive.
        let budget = 1_000_000u64;
        let start = self.steps;
        while self.steps - start < budget {
            let next_deadline = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((n.node.as_ref()?.deadline()?, i)))
                .min();
            let next_event = self.queue.peek().map(|Reverse((at, _, _))| *at);
            let deadline_first = match (next_deadline, next_event) {
                (Some((d, _)), Some(e)) => d <= e,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let at = if deadline_first {
                next_deadline.map(|(d, _)| d)
            } else {
                next_event
            };
            let Some(at) = at.filter(|at| *at <= until) else {
                self.advance(until);
                return true;
            };
            self.advance(at.max(self.now));
            self.steps += 1;
            if deadline_first {
                if let Some((_, i)) = next_deadline {
                    self.feed(i, Input::Timer);
                }
            } else if let Some(Reverse((_, _, event))) = self.queue.pop() {
                self.dispatch(event);
            }
        }
        false
    }

    /// Run for `d` more virtual time.
    pub fn run_for(&mut self, d: Duration) -> bool {
        let until = self.elapsed() + d;
        self.run_until(until)
    }

    fn advance(&mut self, to: Instant) {
        if to <= self.now {
            return;
        }
        self.now = to;
        self.observe();
    }

    /// Track double-active time (while connected) and moves.
    fn observe(&mut self) {
        let active = self.active();
        if active.len() >= 2 {
            let since = *self.multi_active_since.get_or_insert(self.now);
            if self.connected_since.is_some() {
                let d = self.now - since;
                if d > self.longest_multi_active_connected {
                    self.longest_multi_active_connected = d;
                }
            }
        } else {
            self.multi_active_since = None;
        }
        if let [only] = active[..]
            && self.last_active != Some(only)
        {
            if self.last_active.is_some() {
                self.moves += 1;
            }
            self.last_active = Some(only);
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Deliver { to, beat } => {
                if let Some(beat) = beat.beat() {
                    self.feed(to, Input::Heartbeat(beat));
                }
            }
            Event::TakeoverDone { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    let result = match self.nodes[node].fail_next_takeover.take() {
                        Some(step) => Err(StepFailed {
                            step,
                            error: "failed in the simulation".into(),
                        }),
                        None => Ok(()),
                    };
                    if result.is_ok() {
                        self.takeovers += 1;
                        self.nodes[node].nova = true;
                    }
                    self.feed(node, Input::TakeoverDone(result));
                }
            }
            Event::ReleaseDone { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation {
                    self.feed(node, Input::ReleaseDone(Ok(())));
                }
            }
            Event::NovaRestarted { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation
                    && self.state(node) == Some(State::Active)
                {
                    self.restarts[node] += 1;
                    if self.nodes[node].nova_broken {
                        self.feed(node, Input::NovaExited);
                    } else {
                        self.nodes[node].nova = true;
                    }
                }
            }
            Event::QueueSample => {
                let now = self.now;
                self.zombies.retain(|until| *until > now);
                let consumers =
                    (self.nodes.iter().filter(|n| n.nova).count() + self.zombies.len()) as u32;
                for i in 0..self.nodes.len() {
                    let ours = self.nodes[i].nova;
                    self.feed(i, Input::QueueConsumers { consumers, ours });
                }
                if let Some(every) = self.params.queue_interval {
                    self.schedule(every, Event::QueueSample);
                }
            }
        }
    }

    fn feed(&mut self, i: usize, input: Input) {
        let now = self.now;
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        let actions = node.handle(now, input);
        for action in actions {
            self.act(i, action);
        }
        self.observe();
    }

    fn act(&mut self, i: usize, action: Action) {
        match action {
            Action::Send(beat) => {
                let generation = self.nodes[i].generation;
                self.nodes[i].seq += 1;
                let seq = self.nodes[i].seq;
                for to in 0..self.nodes.len() {
                    if to == i {
                        continue;
                    }
                    for path in 0..self.params.paths {
                        if self.cuts.contains(&(i, to, path)) {
                            continue;
                        }
                        let bytes = BeatBytes {
                            from: i as u16 + 1,
                            path,
                            generation,
                            seq,
                            state: beat.state as u8,
                            intent: beat.intent as u8,
                            health: beat.health,
                        };
                        if self.rng.gen_bool(self.params.loss.clamp(0.0, 1.0)) {
                            continue;
                        }
                        let copies = if self.rng.gen_bool(self.params.duplicate.clamp(0.0, 1.0)) {
                            2
                        } else {
                            1
                        };
                        for _ in 0..copies {
                            let delay = self.delay();
                            self.schedule(delay, Event::Deliver { to, beat: bytes });
                        }
                    }
                }
            }
            Action::BeginTakeover { .. } => {
                let incarnation = self.nodes[i].incarnation;
                let t = self.params.takeover_time;
                self.schedule(
                    t,
                    Event::TakeoverDone {
                        node: i,
                        incarnation,
                    },
                );
            }
            Action::BeginRelease { .. } => {
                // The release stops nova-network first.
                self.nodes[i].nova = false;
                let incarnation = self.nodes[i].incarnation;
                let t = self.params.release_time;
                self.schedule(
                    t,
                    Event::ReleaseDone {
                        node: i,
                        incarnation,
                    },
                );
            }
            Action::Alert(alert) => {
                self.trace.push(format!(
                    "{:>10?} n{} {} {}",
                    self.elapsed(),
                    i,
                    alert.kind.name(),
                    alert.detail
                ));
                self.alerts.push((i, alert.kind));
            }
            Action::Reannounce => {}
            Action::RestartNova { after, .. } => {
                let incarnation = self.nodes[i].incarnation;
                self.schedule(
                    after,
                    Event::NovaRestarted {
                        node: i,
                        incarnation,
                    },
                );
            }
            Action::Stopped => {
                self.nodes[i].node = None;
                self.nodes[i].stopped = true;
            }
        }
    }

    fn delay(&mut self) -> Duration {
        let (lo, hi) = (self.params.min_delay, self.params.max_delay);
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_nanos() as u64;
        lo + Duration::from_nanos(self.rng.gen_range(0..=span))
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.queue
            .push(Reverse((self.now + after, self.seq, event)));
    }
}
