//! Liveness: heartbeats heard per path, late and dead peers, paths down and up.

use std::time::Instant;

use super::{Node, alert, path_name};
use crate::cluster::{Action, AlertKind, PeerBeat, State};

impl Node {
    pub(super) fn on_heartbeat(&mut self, now: Instant, beat: PeerBeat, out: &mut Vec<Action>) {
        let Some(peer) = self.peers.iter_mut().find(|p| p.id == beat.from) else {
            return;
        };
        let path = usize::from(beat.path.0);
        if path >= peer.heard.len() {
            return;
        }
        match peer.generation {
            Some(g) if beat.generation < g => return,
            Some(g) if beat.generation > g => {
                out.push(alert(
                    AlertKind::PeerBack,
                    Some(peer.id),
                    format!(
                        "{} restarted (generation {} -> {})",
                        peer.name, g, beat.generation
                    ),
                ));
                peer.heard.iter_mut().for_each(|h| *h = None);
                peer.path_down.iter_mut().for_each(|d| *d = false);
            }
            _ => {}
        }
        if !peer.alive && peer.generation.is_some() && peer.generation == Some(beat.generation) {
            out.push(alert(
                AlertKind::PeerBack,
                Some(peer.id),
                format!(
                    "{} is heard again on path {}",
                    peer.name,
                    path_name(&self.path_names, path)
                ),
            ));
        }
        if peer.path_down[path] {
            peer.path_down[path] = false;
            out.push(alert(
                AlertKind::PathUp,
                Some(peer.id),
                format!(
                    "path {} to {} is heard again",
                    path_name(&self.path_names, path),
                    peer.name
                ),
            ));
        }
        let newer = peer.generation != Some(beat.generation) || beat.seq > peer.seq;
        peer.generation = Some(beat.generation);
        if !newer {
            // Late or duplicate: the path is alive, the state it carries is old news. A peer that
            // said it stopped stays stopped.
            if peer.state != State::Stopped {
                peer.heard[path] = Some(now);
            }
            return;
        }
        peer.seq = beat.seq;
        peer.heard[path] = Some(now);
        if beat.state == State::Stopped {
            if peer.alive {
                out.push(alert(
                    AlertKind::PeerLost,
                    Some(peer.id),
                    format!("{} stopped its daemon", peer.name),
                ));
            }
            peer.alive = false;
            peer.state = State::Stopped;
            return;
        }
        peer.alive = true;
        peer.late = false;
        peer.state = beat.state;
        peer.intent = beat.intent;
        peer.health = beat.health;
    }

    /// Liveness: late heartbeats, dead paths, dead peers.
    pub(super) fn check_timers(&mut self, now: Instant, out: &mut Vec<Action>) {
        let t = self.timers;
        for peer in self.peers.iter_mut().filter(|p| p.alive) {
            let Some(last) = peer.last_heard() else {
                continue;
            };
            if now >= last + t.deadtime {
                peer.alive = false;
                out.push(alert(
                    AlertKind::PeerLost,
                    Some(peer.id),
                    format!(
                        "{} silent on every path for {:?} (last state {})",
                        peer.name, t.deadtime, peer.state
                    ),
                ));
                continue;
            }
            if !peer.late && now >= last + t.warntime {
                peer.late = true;
                out.push(alert(
                    AlertKind::LateHeartbeat,
                    Some(peer.id),
                    format!("{} silent for {:?}", peer.name, now - last),
                ));
            }
            for (path, heard) in peer.heard.iter().enumerate() {
                if let Some(at) = heard
                    && !peer.path_down[path]
                    && now >= *at + t.deadtime
                {
                    peer.path_down[path] = true;
                    out.push(alert(
                        AlertKind::PathDown,
                        Some(peer.id),
                        format!(
                            "path {} to {} silent for {:?}; other paths alive",
                            path_name(&self.path_names, path),
                            peer.name,
                            t.deadtime
                        ),
                    ));
                }
            }
        }
    }
}
