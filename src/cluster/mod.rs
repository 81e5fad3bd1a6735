//! The failover state machine: peer liveness, election and the node's own state.
//!
//! Pure: no tokio, no sockets, no clock reads. The driver feeds `(now, Input)` and carries out
//! the returned [`Action`]s before the next input, then sleeps until [`Node::deadline`].

use std::time::Duration;

/// Numeric id of a node, unique in the pool; carried in every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u16);

/// Index of a heartbeat path in the configuration's path list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathId(pub u8);

/// The state of a node, as it is also advertised in its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Just started: listening for peers until initdead, never holding the service.
    Starting = 0,
    /// Healthy and ready to take over.
    Standby = 1,
    /// Takeover steps are running.
    TakingOver = 2,
    /// Holds the service.
    Active = 3,
    /// Release steps are running.
    Releasing = 4,
    /// Local health forbids holding the service.
    Fault = 5,
    /// The daemon stopped (after releasing): peers stop counting on it at once.
    Stopped = 6,
}

impl State {
    /// The state for its wire code, or `None` for an unknown code.
    pub fn from_u8(code: u8) -> Option<State> {
        Some(match code {
            0 => State::Starting,
            1 => State::Standby,
            2 => State::TakingOver,
            3 => State::Active,
            4 => State::Releasing,
            5 => State::Fault,
            6 => State::Stopped,
            _ => return None,
        })
    }

    /// Whether a node in this state holds (or is acquiring / giving up) the service's addresses.
    pub fn holds_service(self) -> bool {
        matches!(self, State::TakingOver | State::Active | State::Releasing)
    }

    /// The state's name in logs, alerts and `status`.
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Standby => "standby",
            State::TakingOver => "taking_over",
            State::Active => "active",
            State::Releasing => "releasing",
            State::Fault => "fault",
            State::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The names of the probes failing in `flags`, for operators (`ok` when none).
pub fn health_names(flags: u16) -> String {
    let names: Vec<&str> = Probe::ALL
        .iter()
        .filter(|p| flags & p.bit() != 0)
        .map(|p| p.name())
        .collect();
    if names.is_empty() {
        "ok".into()
    } else {
        names.join(", ")
    }
}

/// One member of the pool as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its name, for alerts and logs.
    pub name: String,
    /// Election priority; distinct across the pool.
    pub priority: u8,
}

/// Heartbeat timers, with heartbeat's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Interval between two heartbeats we send.
    pub keepalive: Duration,
    /// Silence after which a late_heartbeat alert is raised.
    pub warntime: Duration,
    /// Silence on every path after which a peer is dead.
    pub deadtime: Duration,
    /// Grace at start-up before silent peers are declared dead.
    pub initdead: Duration,
}

/// What the state machine needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's id; must be among `members`.
    pub me: NodeId,
    /// Every node of the pool, this one included.
    pub members: Vec<Member>,
    /// Number of heartbeat paths (ids `0..paths`).
    pub paths: u8,
    /// Heartbeat timers.
    pub timers: Timers,
    /// Whether a returning higher-priority node takes the service back.
    pub auto_failback: bool,
    /// Each path's name, for alerts (`path N` where missing).
    pub path_names: Vec<String>,
    /// How often nova-network is restarted in place before the service moves.
    pub respawn: RespawnPolicy,
}

mod events;
mod node;
pub mod respawn;
pub mod sim;
pub mod timers;

pub use events::{
    Action, Alert, AlertKind, Beat, Generation, Input, Intent, PeerBeat, PeerStatus, Probe, Reason,
    Request, Status, StepFailed,
};
pub use node::{AfterRelease, Node};
pub use respawn::RespawnPolicy;

#[cfg(test)]
mod tests;
