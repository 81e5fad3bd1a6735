//! Local health probes: each watches one thing and reports pass/fail changes as
//! [`crate::cluster::Input::Health`] verdicts through a channel: [`links`] (netlink link
//! events), [`log`] (fatal lines), [`nova`] (the nova-network child's exit) and [`queue`]
//! (nova-network's queue as the broker sees it). They never decide anything: the state
//! machine does.

pub mod links;
pub mod log;
pub mod nova;
pub mod queue;

use crate::cluster::Probe;

/// A probe's verdict change, sent to the daemon loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Which probe.
    pub probe: Probe,
    /// Whether it passes now.
    pub ok: bool,
    /// What was seen, for the log and the alert.
    pub detail: String,
}
