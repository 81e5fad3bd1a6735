//! What goes into the state machine and what comes out: inputs, actions, alerts, and the
//! names an operator reads for them (`Display` gives the same words in logs, `status` and
//! alerts).

use std::fmt;
use std::time::Duration;

use super::{NodeId, PathId, State};

/// Boot generation: persisted, grows on every start of the daemon.
pub type Generation = u64;

/// What a node asks of the pool, carried in its heartbeats.
///
/// The election ranks candidates by intent first ([`Intent::rank`]), then priority, so an
/// operator's request, or a local failure, moves the service without touching configured
/// priorities. Each lasts until the node holds the service again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Intent {
    /// An operator asked this node to hand the service to a peer.
    Yield = 0,
    /// The usual: rank by priority.
    Normal = 1,
    /// An operator asked this node to take the service; it ranks first.
    Takeover = 2,
    /// This node released the service because something here failed (a probe, a takeover
    /// step); it ranks last, below a yielding node, so it never grabs the service back the
    /// moment its probe clears. It ends once another node holds the service.
    Retreat = 3,
}

impl Intent {
    /// The intent for its wire code, or `None` for an unknown code.
    pub fn from_u8(code: u8) -> Option<Intent> {
        Some(match code {
            0 => Intent::Yield,
            1 => Intent::Normal,
            2 => Intent::Takeover,
            3 => Intent::Retreat,
            _ => return None,
        })
    }

    /// Election rank: higher wins before priority is compared.
    pub fn rank(self) -> u8 {
        match self {
            Intent::Retreat => 0,
            Intent::Yield => 1,
            Intent::Normal => 2,
            Intent::Takeover => 3,
        }
    }
}

/// A local health probe; each is one bit of the health flags a node advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// The nova-network process (exit, respawn budget).
    NovaProcess,
    /// The `network.<host>` queue (consumer, backlog).
    Queue,
    /// Links the service needs.
    Links,
    /// The ping node (ipfail).
    PingNode,
    /// Fatal log lines.
    Log,
}

impl Probe {
    /// Every probe, in bit order.
    pub const ALL: [Probe; 5] = [
        Probe::NovaProcess,
        Probe::Queue,
        Probe::Links,
        Probe::PingNode,
        Probe::Log,
    ];

    /// The probe's bit in the health flags.
    pub fn bit(self) -> u16 {
        match self {
            Probe::NovaProcess => 1 << 0,
            Probe::Queue => 1 << 1,
            Probe::Links => 1 << 2,
            Probe::PingNode => 1 << 3,
            Probe::Log => 1 << 4,
        }
    }

    /// The probe's name, for alerts.
    pub fn name(self) -> &'static str {
        match self {
            Probe::NovaProcess => "nova_process",
            Probe::Queue => "queue",
            Probe::Links => "links",
            Probe::PingNode => "ping_node",
            Probe::Log => "log",
        }
    }
}

/// An operator's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Become active (the holder releases first); also clears a sticky fault.
    Takeover,
    /// Hand the service to a healthy peer; also clears a sticky fault.
    Standby,
}

/// A verified heartbeat from a peer, as the wire layer decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerBeat {
    /// Sender.
    pub from: NodeId,
    /// Path it came in on.
    pub path: PathId,
    /// Sender's boot generation.
    pub generation: Generation,
    /// Sender's sequence number (the same on every path for one heartbeat): a beat older than
    /// the newest seen only proves its path alive; it does not roll the peer's state back.
    pub seq: u64,
    /// Sender's state.
    pub state: State,
    /// Sender's intent.
    pub intent: Intent,
    /// Sender's failing probes (0: healthy).
    pub health: u16,
}

/// An event fed to [`Node::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A verified heartbeat.
    Heartbeat(PeerBeat),
    /// The deadline was reached (early or repeated timers do nothing).
    Timer,
    /// A local probe changed its verdict.
    Health {
        /// Which probe.
        probe: Probe,
        /// Whether it passes now.
        ok: bool,
    },
    /// An operator's request.
    Operator(Request),
    /// The takeover steps finished; `Err` names the failed step.
    TakeoverDone(Result<(), StepFailed>),
    /// The release steps finished; `Err` names the failed step.
    ReleaseDone(Result<(), StepFailed>),
    /// Our nova-network exited on its own (not stopped by a release).
    NovaExited,
    /// A sample of nova-network's queue: how many consumers it has, and whether ours runs.
    /// Witnesses a zombie nova-network elsewhere (docs/design.md section 5).
    QueueConsumers {
        /// Consumers on `network.<host>`.
        consumers: u32,
        /// Our nova-network runs (one of them is ours).
        ours: bool,
    },
    /// The daemon is stopping: release if holding, then report [`Action::Stopped`].
    Shutdown,
}

/// The heartbeat content to send on every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Our state.
    pub state: State,
    /// Our intent.
    pub intent: Intent,
    /// Our priority.
    pub priority: u8,
    /// Our failing probes.
    pub health: u16,
}

/// Why a takeover or release begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Nobody holds the service and we rank first.
    NoHolder,
    /// The holder is dead on every path.
    HolderDead(NodeId),
    /// An operator asked.
    Operator,
    /// Local health failed.
    HealthFailed(u16),
    /// Two nodes were active and we have the lower priority.
    SplitBrain(NodeId),
    /// A peer asked for the service (operator takeover there).
    PeerRequested(NodeId),
    /// auto_failback: a higher-priority peer is back.
    Failback(NodeId),
    /// Our takeover failed at a step.
    TakeoverFailed(StepFailed),
    /// The daemon is stopping.
    Shutdown,
}

/// Kinds of alerts, as published on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// Our state changed.
    StateChanged,
    /// Takeover steps began.
    TakeoverStarted,
    /// Takeover steps finished.
    TakeoverDone,
    /// Release steps finished.
    ReleaseDone,
    /// A local probe failed.
    ProbeFailed,
    /// A local probe passes again.
    ProbeOk,
    /// A peer is dead on every path.
    PeerLost,
    /// A dead peer is heard again, or restarted.
    PeerBack,
    /// A peer has been silent for warntime.
    LateHeartbeat,
    /// A path to a live peer is silent for deadtime.
    PathDown,
    /// A silent path is heard again.
    PathUp,
    /// Two nodes hold the service.
    SplitBrain,
    /// We cannot hold the service.
    Fault,
    /// An operator request was refused.
    RequestRefused,
    /// The bus's buffer overflowed while the broker was away: how many alerts were lost
    /// (raised by the bus itself, never by the state machine).
    AlertsDropped,
    /// The warm standby's mirror: not used at a takeover (and why), rolled back, or
    /// reconciled once nova-network consumed.
    Mirror,
}

impl AlertKind {
    /// Every kind, in the order of `schemas/alert.schema.json` (a test holds them equal).
    pub const ALL: [AlertKind; 16] = [
        AlertKind::StateChanged,
        AlertKind::TakeoverStarted,
        AlertKind::TakeoverDone,
        AlertKind::ReleaseDone,
        AlertKind::ProbeFailed,
        AlertKind::ProbeOk,
        AlertKind::PeerLost,
        AlertKind::PeerBack,
        AlertKind::LateHeartbeat,
        AlertKind::PathDown,
        AlertKind::PathUp,
        AlertKind::SplitBrain,
        AlertKind::Fault,
        AlertKind::RequestRefused,
        AlertKind::AlertsDropped,
        AlertKind::Mirror,
    ];

    /// The kind's name in alerts and routing keys.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::StateChanged => "state_changed",
            AlertKind::TakeoverStarted => "takeover_started",
            AlertKind::TakeoverDone => "takeover_done",
            AlertKind::ReleaseDone => "release_done",
            AlertKind::ProbeFailed => "probe_failed",
            AlertKind::ProbeOk => "probe_ok",
            AlertKind::PeerLost => "peer_lost",
            AlertKind::PeerBack => "peer_back",
            AlertKind::LateHeartbeat => "late_heartbeat",
            AlertKind::PathDown => "path_down",
            AlertKind::PathUp => "path_up",
            AlertKind::SplitBrain => "split_brain",
            AlertKind::Fault => "fault",
            AlertKind::RequestRefused => "request_refused",
            AlertKind::AlertsDropped => "alerts_dropped",
            AlertKind::Mirror => "mirror",
        }
    }
}

/// An alert for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Its kind.
    pub kind: AlertKind,
    /// The peer it is about, if any.
    pub peer: Option<NodeId>,
    /// Human-readable detail.
    pub detail: String,
}

/// What the driver must do, in order, before feeding the next input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this heartbeat on every path to every peer.
    Send(Beat),
    /// Run the takeover steps, then feed [`Input::TakeoverDone`]. `fence` lists peers last seen
    /// holding the service that are now dead: they must be fenced before addresses move.
    BeginTakeover {
        /// Why.
        reason: Reason,
        /// Dead peers that held the service when last heard.
        fence: Vec<NodeId>,
    },
    /// Run the release steps, then feed [`Input::ReleaseDone`].
    BeginRelease {
        /// Why.
        reason: Reason,
    },
    /// Publish an alert.
    Alert(Alert),
    /// Announce the held addresses again (GARP/NA): a lower-priority node held them too
    /// (split brain) and may have drawn the neighbours' traffic.
    Reannounce,
    /// Start nova-network again in place after it exited, once `after` has passed (the
    /// respawn budget's back-off); feed [`Input::NovaExited`] again if it cannot start.
    RestartNova {
        /// Wait this long first.
        after: Duration,
        /// This restart's number in the current episode (1 for the first).
        attempt: u32,
        /// Restarts allowed per episode.
        budget: u32,
    },
    /// Shutdown is complete: the daemon may exit.
    Stopped,
}

/// A peer as seen from here, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Its configured priority.
    pub priority: u8,
    /// Alive on at least one path.
    pub alive: bool,
    /// Its last advertised state.
    pub state: State,
    /// Its last advertised intent.
    pub intent: Intent,
    /// Its last advertised failing probes.
    pub health: u16,
    /// Its boot generation, once heard.
    pub generation: Option<Generation>,
    /// Time since last heard on each path (`None`: never).
    pub silence: Vec<Option<Duration>>,
}

/// This node as seen from here, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Our state.
    pub state: State,
    /// Our intent.
    pub intent: Intent,
    /// Our failing probes.
    pub health: u16,
    /// A sticky fault (failed takeover or release) awaiting an operator.
    pub fault: Option<String>,
    /// The peers.
    pub peers: Vec<PeerStatus>,
}

/// A takeover or release step that failed: which, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailed {
    /// The step's name (`procs`, `firewall`, `mirror`, `nova`, ...).
    pub step: String,
    /// What went wrong, attempts included.
    pub error: String,
}

impl fmt::Display for StepFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.error)
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Intent {
    /// The intent's name in `status` and logs.
    pub fn name(self) -> &'static str {
        match self {
            Intent::Yield => "yield",
            Intent::Normal => "normal",
            Intent::Takeover => "takeover",
            Intent::Retreat => "retreat",
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Reason {
    /// The reason in words, naming nodes with `name`.
    pub fn describe(&self, name: impl Fn(NodeId) -> String) -> String {
        match self {
            Reason::NoHolder => "nobody holds the service and this node ranks first".into(),
            Reason::HolderDead(n) => format!("the holder {} is dead on every path", name(*n)),
            Reason::Operator => "an operator asked".into(),
            Reason::HealthFailed(flags) => {
                format!("local health failed ({})", super::health_names(*flags))
            }
            Reason::SplitBrain(n) => format!(
                "split brain: {} also holds the service and ranks higher",
                name(*n)
            ),
            Reason::PeerRequested(n) => format!("{} asked for the service", name(*n)),
            Reason::Failback(n) => {
                format!("auto_failback: {} ranks higher and is back", name(*n))
            }
            Reason::TakeoverFailed(failed) => format!("the takeover failed at step {failed}"),
            Reason::Shutdown => "the daemon is stopping".into(),
        }
    }
}

impl fmt::Display for Reason {
    /// Nodes by id; [`Reason::describe`] names them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(|n| format!("node {}", n.0)))
    }
}
