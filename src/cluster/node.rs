//! One node's view of the pool: peer liveness per path, election, and its own state.

use std::time::Instant;

use super::events::{
    Action, Alert, AlertKind, Beat, Generation, Input, Intent, PeerStatus, Probe, Reason, Request,
    Status, StepFailed,
};
use super::respawn::{Respawn, Respawns};

mod election;
mod liveness;
use super::{ClusterConfig, NodeId, State, Timers};

/// State after a release completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRelease {
    /// Ready to take over again.
    Standby,
    /// Unable to hold the service (health failing, or a sticky fault).
    Fault,
    /// The daemon stops.
    Stop,
}

#[derive(Debug, Clone)]
struct Peer {
    id: NodeId,
    name: String,
    priority: u8,
    /// Last heard per path.
    heard: Vec<Option<Instant>>,
    /// A path_down alert was raised for the path (silent for deadtime while the peer lives).
    path_down: Vec<bool>,
    generation: Option<Generation>,
    /// Newest sequence number seen in `generation`.
    seq: u64,
    state: State,
    intent: Intent,
    health: u16,
    alive: bool,
    /// A late_heartbeat alert was raised for the current silence.
    late: bool,
}

impl Peer {
    fn last_heard(&self) -> Option<Instant> {
        self.heard.iter().flatten().max().copied()
    }

    /// A live peer that could hold the service: starting or standby, healthy.
    fn is_candidate(&self) -> bool {
        self.alive && self.health == 0 && matches!(self.state, State::Starting | State::Standby)
    }

    fn holds(&self) -> bool {
        self.alive && self.state.holds_service()
    }
}

/// The failover state machine of one node.
///
/// Calling contract: feed every event with [`Node::handle`] and the current time (which never
/// goes backwards); carry out all returned actions in order before the next input; feed
/// [`Input::Timer`] once [`Node::deadline`] has passed (re-read the deadline after every
/// input). The node never reads a clock: the same inputs at the same times give the same
/// actions.
#[derive(Debug, Clone)]
pub struct Node {
    me: NodeId,
    priority: u8,
    timers: Timers,
    auto_failback: bool,
    generation: Generation,
    started: Instant,
    state: State,
    intent: Intent,
    failing: u16,
    /// A failed takeover or release: the node stays in Fault until an operator request.
    sticky_fault: Option<String>,
    after_release: AfterRelease,
    shutting_down: bool,
    peers: Vec<Peer>,
    next_beat: Instant,
    /// What we last advertised, to send a heartbeat at once when it changes.
    advertised: Option<Beat>,
    /// Lower-priority peers seen holding the service while we are Active (split brain).
    rivals: Vec<NodeId>,
    /// Each path's name, for alerts.
    path_names: Vec<String>,
    /// The respawn budget of our nova-network.
    respawns: Respawns,
    /// A zombie nova-network was reported for the current episode.
    zombie_reported: bool,
}

impl Node {
    /// A node starting now in [`State::Starting`]. Members not in `cfg` are ignored.
    pub fn new(cfg: &ClusterConfig, boot: Generation, now: Instant) -> Node {
        let priority = cfg
            .members
            .iter()
            .find(|m| m.id == cfg.me)
            .map(|m| m.priority)
            .unwrap_or(0);
        let paths = usize::from(cfg.paths.max(1));
        let peers = cfg
            .members
            .iter()
            .filter(|m| m.id != cfg.me)
            .map(|m| Peer {
                id: m.id,
                name: m.name.clone(),
                priority: m.priority,
                heard: vec![None; paths],
                path_down: vec![false; paths],
                generation: None,
                seq: 0,
                state: State::Starting,
                intent: Intent::Normal,
                health: 0,
                alive: false,
                late: false,
            })
            .collect();
        Node {
            me: cfg.me,
            priority,
            timers: cfg.timers,
            auto_failback: cfg.auto_failback,
            generation: boot,
            started: now,
            state: State::Starting,
            intent: Intent::Normal,
            failing: 0,
            sticky_fault: None,
            after_release: AfterRelease::Standby,
            shutting_down: false,
            peers,
            next_beat: now,
            advertised: None,
            rivals: Vec::new(),
            path_names: cfg.path_names.clone(),
            respawns: Respawns::new(cfg.respawn),
            zombie_reported: false,
        }
    }

    /// Our id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Our boot generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Our state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The state, intent, health and peers, for `status`.
    pub fn status(&self, now: Instant) -> Status {
        Status {
            state: self.state,
            intent: self.intent,
            health: self.failing,
            fault: self.sticky_fault.clone(),
            peers: self
                .peers
                .iter()
                .map(|p| PeerStatus {
                    id: p.id,
                    name: p.name.clone(),
                    priority: p.priority,
                    alive: p.alive,
                    state: p.state,
                    intent: p.intent,
                    health: p.health,
                    generation: p.generation,
                    silence: p
                        .heard
                        .iter()
                        .map(|h| h.map(|t| now.saturating_duration_since(t)))
                        .collect(),
                })
                .collect(),
        }
    }

    /// Feed one event at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Heartbeat(beat) => self.on_heartbeat(now, beat, &mut out),
            Input::Timer => {}
            Input::Health { probe, ok } => self.on_health(probe, ok, &mut out),
            Input::Operator(request) => self.on_request(request, &mut out),
            Input::TakeoverDone(result) => self.on_takeover_done(now, result, &mut out),
            Input::ReleaseDone(result) => self.on_release_done(result, &mut out),
            Input::NovaExited => self.on_nova_exited(now, &mut out),
            Input::QueueConsumers { consumers, ours } => {
                self.on_queue_consumers(consumers, ours, &mut out)
            }
            Input::Shutdown => self.on_shutdown(&mut out),
        }
        self.check_timers(now, &mut out);
        self.evaluate(now, &mut out);
        self.maybe_send(now, &mut out);
        out
    }

    /// The earliest time at which [`Input::Timer`] has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        if self.state == State::Stopped {
            return None;
        }
        let t = &self.timers;
        let mut next = self.next_beat;
        let mut consider = |at: Instant| {
            if at < next {
                next = at;
            }
        };
        if self.state == State::Starting {
            consider(self.started + t.initdead);
            if self.peers.iter().any(|p| p.generation.is_some()) {
                consider(self.started + t.deadtime);
            }
        }
        for peer in self.peers.iter().filter(|p| p.alive) {
            if let Some(last) = peer.last_heard() {
                if !peer.late {
                    consider(last + t.warntime);
                }
                consider(last + t.deadtime);
            }
            for (heard, down) in peer.heard.iter().zip(&peer.path_down) {
                if let (Some(at), false) = (heard, down) {
                    consider(*at + t.deadtime);
                }
            }
        }
        Some(next)
    }

    fn on_health(&mut self, probe: Probe, ok: bool, out: &mut Vec<Action>) {
        let before = self.failing;
        if ok {
            self.failing &= !probe.bit();
        } else {
            self.failing |= probe.bit();
        }
        if before != self.failing {
            let (kind, word) = if ok {
                (AlertKind::ProbeOk, "passes")
            } else {
                (AlertKind::ProbeFailed, "fails")
            };
            out.push(alert(
                kind,
                None,
                format!("probe {} {}", probe.name(), word),
            ));
        }
    }

    fn on_request(&mut self, request: Request, out: &mut Vec<Action>) {
        if self.shutting_down {
            out.push(refused("the daemon is stopping"));
            return;
        }
        if self.sticky_fault.take().is_some() && self.state == State::Fault && self.failing == 0 {
            self.set_state(State::Standby, out);
        }
        match request {
            Request::Takeover => match self.state {
                State::Active | State::TakingOver => {}
                State::Releasing => out.push(refused("a release is running")),
                State::Fault => out.push(refused(&format!(
                    "local health is failing ({})",
                    super::health_names(self.failing)
                ))),
                // Starting/Standby: rank first; the holder (if any) releases on seeing it.
                _ => self.intent = Intent::Takeover,
            },
            Request::Standby => match self.state {
                State::Active => {
                    if self.peers.iter().any(Peer::is_candidate) {
                        self.intent = Intent::Yield;
                        self.begin_release(Reason::Operator, AfterRelease::Standby, out);
                    } else {
                        out.push(refused("no live healthy peer to hand the service to"));
                    }
                }
                _ => self.intent = Intent::Yield,
            },
        }
    }

    fn on_takeover_done(
        &mut self,
        now: Instant,
        result: Result<(), StepFailed>,
        out: &mut Vec<Action>,
    ) {
        if self.state != State::TakingOver {
            return;
        }
        match result {
            Ok(()) => {
                // An operator's takeover sticks while we hold the service (auto_failback must not
                // undo it); a yield or a retreat is spent once we hold it again.
                if matches!(self.intent, Intent::Yield | Intent::Retreat) {
                    self.intent = Intent::Normal;
                }
                out.push(alert(AlertKind::TakeoverDone, None, "service held".into()));
                // nova-network started with the takeover: a whole respawn budget.
                self.respawns.started(now);
                self.set_state(State::Active, out);
                if self.shutting_down {
                    self.intent = Intent::Yield;
                    self.begin_release(Reason::Shutdown, AfterRelease::Stop, out);
                }
            }
            Err(failed) => {
                out.push(alert(
                    AlertKind::Fault,
                    None,
                    format!("takeover failed at step {failed}; releasing"),
                ));
                self.sticky_fault = Some(format!("takeover failed at step {failed}"));
                let after = if self.shutting_down {
                    AfterRelease::Stop
                } else {
                    AfterRelease::Fault
                };
                self.begin_release(Reason::TakeoverFailed(failed), after, out);
            }
        }
    }

    fn on_release_done(&mut self, result: Result<(), StepFailed>, out: &mut Vec<Action>) {
        if self.state != State::Releasing {
            return;
        }
        // The probes that judged our nova-network (its process, its queue, its fatal log
        // lines) judged the one the release just stopped: they pass again.
        for probe in [Probe::NovaProcess, Probe::Queue, Probe::Log] {
            self.on_health(probe, true, out);
        }
        let mut after = self.after_release;
        match result {
            Ok(()) => out.push(alert(
                AlertKind::ReleaseDone,
                None,
                "service released".into(),
            )),
            Err(failed) => {
                out.push(alert(
                    AlertKind::Fault,
                    None,
                    format!("release failed at step {failed}; addresses may remain"),
                ));
                self.sticky_fault = Some(format!("release failed at step {failed}"));
                if after == AfterRelease::Standby {
                    after = AfterRelease::Fault;
                }
            }
        }
        match after {
            AfterRelease::Standby if self.failing == 0 && self.sticky_fault.is_none() => {
                self.set_state(State::Standby, out)
            }
            AfterRelease::Standby | AfterRelease::Fault => self.set_state(State::Fault, out),
            AfterRelease::Stop => self.stop(out),
        }
    }

    /// Our nova-network exited: restart it in place within the respawn budget, else fail the
    /// process probe (which releases, and the service moves).
    fn on_nova_exited(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Active {
            return;
        }
        match self.respawns.exited(now) {
            Respawn::After { wait, attempt } => out.push(Action::RestartNova {
                after: wait,
                attempt,
                budget: self.respawns.policy().budget,
            }),
            Respawn::Spent => self.on_health(Probe::NovaProcess, false, out),
        }
    }

    /// The zombie witness: with no peer holding the service, nova-network's queue should have
    /// one consumer (ours) when ours runs and none otherwise; more is a nova-network elsewhere
    /// that still consumes. Reported once per episode. One consumer per nova-network process
    /// is assumed; while a peer may still run nova-network, nothing can be concluded.
    fn on_queue_consumers(&mut self, consumers: u32, ours: bool, out: &mut Vec<Action>) {
        let peers_hold = self.peers.iter().any(Peer::holds);
        let zombie = !peers_hold && consumers > u32::from(ours);
        if zombie && !self.zombie_reported {
            self.zombie_reported = true;
            out.push(alert(
                AlertKind::SplitBrain,
                None,
                format!(
                    "zombie nova-network: its queue has {consumers} consumer(s) while {} (no peer holds the service): a nova-network elsewhere still consumes",
                    if ours { "only ours should" } else { "none should" }
                ),
            ));
        } else if !zombie {
            self.zombie_reported = false;
        }
    }

    fn on_shutdown(&mut self, out: &mut Vec<Action>) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.intent = Intent::Yield;
        match self.state {
            State::Active => self.begin_release(Reason::Shutdown, AfterRelease::Stop, out),
            State::Releasing => self.after_release = AfterRelease::Stop,
            // The takeover's end starts the release.
            State::TakingOver => {}
            _ => self.stop(out),
        }
    }

    /// Tell the peers we stop (they stop counting on us at once), then report it.
    fn stop(&mut self, out: &mut Vec<Action>) {
        self.set_state(State::Stopped, out);
        out.push(Action::Send(self.beat()));
        out.push(Action::Stopped);
    }

    fn set_state(&mut self, to: State, out: &mut Vec<Action>) {
        if self.state == to {
            return;
        }
        if to != State::Active {
            self.rivals.clear();
        }
        out.push(alert(
            AlertKind::StateChanged,
            None,
            format!("{} -> {}", self.state, to),
        ));
        self.state = to;
    }

    fn beat(&self) -> Beat {
        Beat {
            state: self.state,
            intent: self.intent,
            priority: self.priority,
            health: self.failing,
        }
    }

    /// Heartbeat every keepalive, and at once when what we advertise changes.
    fn maybe_send(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Stopped {
            return;
        }
        let beat = self.beat();
        if now >= self.next_beat || self.advertised != Some(beat) {
            out.push(Action::Send(beat));
            self.advertised = Some(beat);
            self.next_beat = now + self.timers.keepalive;
        }
    }
}

impl Node {
    /// A node's name, for alerts (`node N` for one not in the pool).
    fn name_of(&self, id: NodeId) -> String {
        self.peers
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| format!("node {}", id.0), |p| p.name.clone())
    }
}

/// A path's name, for alerts.
fn path_name(names: &[String], path: usize) -> String {
    names.get(path).cloned().unwrap_or_else(|| path.to_string())
}

fn alert(kind: AlertKind, peer: Option<NodeId>, detail: String) -> Action {
    Action::Alert(Alert { kind, peer, detail })
}

fn refused(why: &str) -> Action {
    alert(AlertKind::RequestRefused, None, why.to_string())
}
