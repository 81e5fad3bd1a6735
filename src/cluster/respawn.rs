//! The respawn budget: how often nova-network is restarted in place before the service moves.
//!
//! Pure, like the rest of the core: it is told when nova-network started and when it exited,
//! and answers "restart after this back-off" or "the budget is spent". An episode is a run of
//! exits close together; a nova-network that ran for [`RespawnPolicy::stable_after`] before it
//! exited starts a new episode with the whole budget, so a server does not lose its budget to
//! crashes weeks apart. Within an episode the first restart is immediate (a crash is usually a
//! one-off) and each further one waits twice as long as the last, up to a cap, so a
//! nova-network that cannot start does not spin.

use std::time::{Duration, Instant};

/// The budget's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespawnPolicy {
    /// Restarts in place per episode; 0 moves the service at the first exit.
    pub budget: u32,
    /// Wait before the second restart of an episode; doubled for each further one.
    pub first_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// A nova-network that ran this long before exiting starts a new episode.
    pub stable_after: Duration,
}

impl Default for RespawnPolicy {
    fn default() -> Self {
        RespawnPolicy {
            budget: 3,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// What to do about an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Respawn {
    /// Restart after this wait; `attempt` counts from 1 within the episode.
    After {
        /// The back-off.
        wait: Duration,
        /// This restart's number in the episode.
        attempt: u32,
    },
    /// The budget is spent: the service must move.
    Spent,
}

/// The budget's state on one node.
#[derive(Debug, Clone)]
pub struct Respawns {
    policy: RespawnPolicy,
    /// Restarts made in the current episode.
    used: u32,
    /// When the running nova-network started (or will, after a back-off).
    since: Option<Instant>,
}

impl Respawns {
    /// A full budget.
    pub fn new(policy: RespawnPolicy) -> Respawns {
        Respawns {
            policy,
            used: 0,
            since: None,
        }
    }

    /// The rules.
    pub fn policy(&self) -> RespawnPolicy {
        self.policy
    }

    /// nova-network was started at `at` by a takeover: a new episode.
    pub fn started(&mut self, at: Instant) {
        self.used = 0;
        self.since = Some(at);
    }

    /// nova-network exited at `now`: restart it, or move the service.
    pub fn exited(&mut self, now: Instant) -> Respawn {
        if self
            .since
            .is_some_and(|at| now.saturating_duration_since(at) >= self.policy.stable_after)
        {
            self.used = 0;
        }
        if self.used >= self.policy.budget {
            self.since = None;
            return Respawn::Spent;
        }
        let wait = match self.used {
            0 => Duration::ZERO,
            n => self
                .policy
                .first_backoff
                .saturating_mul(1u32 << (n - 1).min(16))
                .min(self.policy.max_backoff),
        };
        self.used += 1;
        self.since = Some(now + wait);
        Respawn::After {
            wait,
            attempt: self.used,
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // an epoch to add virtual time to
mod tests {
    use super::*;

    fn policy(budget: u32) -> RespawnPolicy {
        RespawnPolicy {
            budget,
            ..RespawnPolicy::default()
        }
    }

    #[test]
    fn first_restart_is_immediate_then_the_wait_doubles_up_to_the_cap() {
        let t0 = Instant::now();
        let mut r = Respawns::new(RespawnPolicy {
            budget: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            stable_after: Duration::from_secs(600),
        });
        r.started(t0);
        let waits: Vec<Duration> = (0..6)
            .map(|i| match r.exited(t0 + Duration::from_secs(i)) {
                Respawn::After { wait, attempt } => {
                    assert_eq!(attempt, i as u32 + 1);
                    wait
                }
                Respawn::Spent => panic!("spent at {i}"),
            })
            .collect();
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 1, 2, 4, 5, 5]);
    }

    #[test]
    fn the_budget_is_spent_then_a_takeover_gives_it_back() {
        let t0 = Instant::now();
        let mut r = Respawns::new(policy(1));
        r.started(t0);
        assert!(matches!(
            r.exited(t0 + Duration::from_secs(1)),
            Respawn::After { attempt: 1, .. }
        ));
        assert_eq!(r.exited(t0 + Duration::from_secs(2)), Respawn::Spent);
        r.started(t0 + Duration::from_secs(3));
        assert!(matches!(
            r.exited(t0 + Duration::from_secs(4)),
            Respawn::After { attempt: 1, .. }
        ));
    }

    #[test]
    fn a_long_run_starts_a_new_episode() {
        let t0 = Instant::now();
        let mut r = Respawns::new(policy(1));
        r.started(t0);
        assert!(matches!(r.exited(t0), Respawn::After { attempt: 1, .. }));
        // The restarted one ran for stable_after: the budget is whole again.
        let later = t0 + RespawnPolicy::default().stable_after;
        assert!(matches!(r.exited(later), Respawn::After { attempt: 1, .. }));
        // ...but a quick second exit spends it.
        assert_eq!(r.exited(later + Duration::from_secs(1)), Respawn::Spent);
    }

    #[test]
    fn a_zero_budget_moves_the_service_at_the_first_exit() {
        let t0 = Instant::now();
        let mut r = Respawns::new(policy(0));
        r.started(t0);
        assert_eq!(r.exited(t0 + Duration::from_secs(3600)), Respawn::Spent);
    }
}
