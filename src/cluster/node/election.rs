//! The election: what this node should do given what it knows now (take over, release, stay).

use std::time::Instant;

use super::{AfterRelease, Node, Peer, alert};
use crate::cluster::{Action, AlertKind, Intent, NodeId, Reason, State};

impl Node {
    /// The election: what should this node do given what it knows now?
    pub(super) fn evaluate(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Starting && self.startup_over(now) {
            let next = if self.failing == 0 {
                State::Standby
            } else {
                State::Fault
            };
            self.set_state(next, out);
        }
        if self.state == State::Fault && self.failing == 0 && self.sticky_fault.is_none() {
            self.set_state(State::Standby, out);
        }
        // A retreat has done its job once another node holds the service: we rank normally
        // again, so a later failure of that node moves the service back here rather than to a
        // node whose own failure is older.
        if self.intent == Intent::Retreat
            && self
                .peers
                .iter()
                .any(|p| p.alive && p.state == State::Active)
        {
            self.intent = Intent::Normal;
        }
        match self.state {
            State::Standby => self.evaluate_standby(out),
            State::Active => self.evaluate_active(out),
            _ => {}
        }
    }

    /// Start-up ends when every peer was heard, or (the network being up: some peer was
    /// heard) after deadtime, or after initdead.
    pub(super) fn startup_over(&self, now: Instant) -> bool {
        let heard_all = self.peers.iter().all(|p| p.generation.is_some());
        let heard_any = self.peers.iter().any(|p| p.generation.is_some());
        heard_all
            || (heard_any && now >= self.started + self.timers.deadtime)
            || now >= self.started + self.timers.initdead
    }

    pub(super) fn evaluate_standby(&mut self, out: &mut Vec<Action>) {
        if self.failing != 0 {
            out.push(alert(
                AlertKind::Fault,
                None,
                format!(
                    "local health failing ({})",
                    crate::cluster::health_names(self.failing)
                ),
            ));
            self.set_state(State::Fault, out);
            return;
        }
        if self.shutting_down || self.peers.iter().any(Peer::holds) {
            return;
        }
        let my_rank = (self.intent.rank(), self.priority);
        let outranked = self
            .peers
            .iter()
            .filter(|p| p.is_candidate())
            .any(|p| (p.intent.rank(), p.priority) > my_rank);
        if outranked {
            return;
        }
        let fence: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|p| !p.alive && p.state.holds_service())
            .map(|p| p.id)
            .collect();
        let reason = if self.intent == Intent::Takeover {
            Reason::Operator
        } else if let Some(&dead) = fence.first() {
            Reason::HolderDead(dead)
        } else {
            Reason::NoHolder
        };
        self.set_state(State::TakingOver, out);
        let fenced: Vec<String> = fence.iter().map(|&n| self.name_of(n)).collect();
        out.push(alert(
            AlertKind::TakeoverStarted,
            None,
            format!(
                "{}; fence {}",
                reason.describe(|n| self.name_of(n)),
                if fenced.is_empty() {
                    "none".to_owned()
                } else {
                    fenced.join(", ")
                }
            ),
        ));
        out.push(Action::BeginTakeover { reason, fence });
    }

    pub(super) fn evaluate_active(&mut self, out: &mut Vec<Action>) {
        if self.failing != 0 {
            let flags = self.failing;
            out.push(alert(
                AlertKind::Fault,
                None,
                format!(
                    "local health failing ({}); releasing",
                    crate::cluster::health_names(flags)
                ),
            ));
            self.begin_release(Reason::HealthFailed(flags), AfterRelease::Fault, out);
            return;
        }
        let rivals: Vec<(NodeId, u8)> = self
            .peers
            .iter()
            .filter(|p| p.alive && matches!(p.state, State::Active | State::TakingOver))
            .map(|p| (p.id, p.priority))
            .collect();
        if let Some(&(rival, _)) = rivals.iter().find(|(_, prio)| *prio > self.priority) {
            out.push(alert(
                AlertKind::SplitBrain,
                Some(rival),
                format!(
                    "{} also holds the service and ranks higher; releasing",
                    self.name_of(rival)
                ),
            ));
            self.begin_release(Reason::SplitBrain(rival), AfterRelease::Standby, out);
            return;
        }
        // Lower-priority rivals release on seeing us; announce when one appears and again once
        // it has let go, so neighbours it drew away come back.
        // A lower peer already Releasing held the addresses too: it counts (we may not have
        // heard it while Active before it heard us).
        let lower: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|p| p.holds() && p.priority < self.priority)
            .map(|p| p.id)
            .collect();
        for &rival in &lower {
            if !self.rivals.contains(&rival) {
                self.rivals.push(rival);
                out.push(alert(
                    AlertKind::SplitBrain,
                    Some(rival),
                    format!(
                        "{} also holds the service and ranks lower; it releases, we announce again",
                        self.name_of(rival)
                    ),
                ));
                out.push(Action::Reannounce);
            }
        }
        let before = self.rivals.len();
        self.rivals.retain(|id| lower.contains(id));
        if self.rivals.len() < before {
            out.push(Action::Reannounce);
        }
        let candidates = || self.peers.iter().filter(|p| p.is_candidate());
        if self.intent == Intent::Yield && candidates().next().is_some() {
            self.begin_release(Reason::Operator, AfterRelease::Standby, out);
            return;
        }
        if let Some(p) = candidates().find(|p| p.intent == Intent::Takeover) {
            let id = p.id;
            // Rank last until we hold the service again, so auto_failback does not undo it.
            self.intent = Intent::Yield;
            self.begin_release(Reason::PeerRequested(id), AfterRelease::Standby, out);
            return;
        }
        if self.auto_failback {
            let mine = (self.intent.rank(), self.priority);
            if let Some(p) = candidates().find(|p| (p.intent.rank(), p.priority) > mine) {
                let id = p.id;
                self.begin_release(Reason::Failback(id), AfterRelease::Standby, out);
            }
        }
    }

    pub(super) fn begin_release(
        &mut self,
        reason: Reason,
        after: AfterRelease,
        out: &mut Vec<Action>,
    ) {
        if self.intent == Intent::Takeover {
            self.intent = Intent::Normal;
        }
        // Released because something here failed: rank last until we hold the service again,
        // so a healthy peer takes it and we do not grab it back the moment the probe clears.
        if matches!(reason, Reason::HealthFailed(_) | Reason::TakeoverFailed(_)) {
            self.intent = Intent::Retreat;
        }
        self.after_release = after;
        self.set_state(State::Releasing, out);
        out.push(Action::BeginRelease { reason });
    }
}
