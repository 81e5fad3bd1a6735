//! The queue probe's judgement: is nova-network alive, judged from `network.<host>` samples.
//!
//! Owns the rules that turn (consumer count, message count) samples into a verdict. The
//! split-brain witness (a consumer where nobody should consume) is the state machine's, which
//! knows who holds the service. Pure: it is given time and samples, never reads a clock, never
//! touches the broker (the samples come from [`crate::bus::BusEvent::QueueSample`]).

use std::time::{Duration, Instant};

/// A change in the probe's opinion of nova-network; returned only when it changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// True when nova-network consumes its queue.
    pub ok: bool,
    /// Why, for the `probe_failed` / `probe_ok` alert and the logs.
    pub detail: String,
}

/// Which rule the last verdict came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    NoConsumer,
    Hung,
}

/// The queue probe's state machine.
///
/// Calling contract: call [`QueueProbe::started`] when nova-network is started on this node and
/// [`QueueProbe::stopped`] when it is stopped; feed every sample with
/// [`QueueProbe::sample`], which returns a [`Verdict`] only when the opinion changes. While
/// stopped, samples are ignored. Rules, while started:
/// - no consumer for `consumer_grace` after the start, or after the consumer vanished: failing;
/// - with a consumer attached, a backlog that has grown (the count strictly above the lowest
///   seen since the backlog last shrank, never drained to 0) for `backlog_window`: failing
///   (nova-network is hung);
/// - back to ok when a consumer is attached and the backlog has drained to 0.
///
/// Time only goes forward; an earlier `now` than before is treated as no time passing.
#[derive(Clone, Debug)]
pub struct QueueProbe {
    consumer_grace: Duration,
    backlog_window: Duration,
    queue: String,
    started: bool,
    /// Since when no consumer has been attached (grace running), while started.
    no_consumer_since: Option<Instant>,
    /// Since when the backlog has not shrunk, and the count then (the lowest since).
    backlog: Option<(Instant, u32)>,
    /// The previous sample's message count, while a consumer is attached.
    last_messages: Option<u32>,
    status: Option<Status>,
}

impl QueueProbe {
    /// A probe with these rules; the queue is named "the queue" in details until
    /// [`QueueProbe::with_queue`] names it.
    pub fn new(consumer_grace: Duration, backlog_window: Duration) -> QueueProbe {
        QueueProbe {
            consumer_grace,
            backlog_window,
            queue: "the queue".to_owned(),
            started: false,
            no_consumer_since: None,
            backlog: None,
            last_messages: None,
            status: None,
        }
    }

    /// Name the queue in verdict details (`network.<host>`).
    pub fn with_queue(mut self, queue: impl Into<String>) -> QueueProbe {
        self.queue = queue.into();
        self
    }

    /// nova-network was just started here: the consumer grace begins, no opinion yet.
    pub fn started(&mut self, now: Instant) {
        self.started = true;
        self.no_consumer_since = Some(now);
        self.backlog = None;
        self.last_messages = None;
        self.status = None;
    }

    /// nova-network was stopped here: samples are ignored until the next start.
    pub fn stopped(&mut self) {
        self.started = false;
        self.no_consumer_since = None;
        self.backlog = None;
        self.last_messages = None;
        self.status = None;
    }

    /// Whether nova-network is started here, as far as the probe was told.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Feed one sample; a verdict when the opinion changes.
    pub fn sample(&mut self, now: Instant, consumers: u32, messages: u32) -> Option<Verdict> {
        if !self.started {
            return None;
        }
        let (status, detail) = if consumers == 0 {
            self.backlog = None;
            self.last_messages = None;
            let since = *self.no_consumer_since.get_or_insert(now);
            let gone = now.saturating_duration_since(since);
            if gone >= self.consumer_grace {
                (
                    Status::NoConsumer,
                    format!(
                        "no consumer on {} for {}s",
                        self.queue,
                        self.consumer_grace.as_secs()
                    ),
                )
            } else {
                return None;
            }
        } else {
            self.no_consumer_since = None;
            let shrank = self.last_messages.is_some_and(|last| messages < last);
            self.last_messages = Some(messages);
            if messages == 0 {
                self.backlog = None;
                (
                    Status::Ok,
                    format!("consumer on {}, backlog drained", self.queue),
                )
            } else {
                let (since, low) = match self.backlog {
                    Some((since, low)) if !shrank => (since, low.min(messages)),
                    _ => (now, messages),
                };
                self.backlog = Some((since, low));
                let lasted = now.saturating_duration_since(since);
                if messages > low && lasted >= self.backlog_window {
                    (
                        Status::Hung,
                        format!(
                            "backlog grew from {low} to {messages} in {}s: nova-network is hung",
                            lasted.as_secs()
                        ),
                    )
                } else {
                    // No change: ok stays ok, failing stays failing until the backlog drains.
                    return None;
                }
            }
        };
        if self.status == Some(status) {
            return None;
        }
        self.status = Some(status);
        Some(Verdict {
            ok: status == Status::Ok,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(10);
    const WINDOW: Duration = Duration::from_secs(5);

    /// A virtual clock: an origin plus seconds.
    struct Clock(Instant);
    impl Clock {
        #[allow(
            clippy::disallowed_methods,
            reason = "an arbitrary origin for a virtual clock"
        )]
        fn new() -> Clock {
            Clock(Instant::now())
        }
        fn at(&self, secs: f64) -> Instant {
            self.0 + Duration::from_secs_f64(secs)
        }
    }

    fn probe() -> QueueProbe {
        QueueProbe::new(GRACE, WINDOW).with_queue("network.net1")
    }

    #[test]
    fn samples_are_ignored_while_stopped() {
        let c = Clock::new();
        let mut p = probe();
        assert_eq!(p.sample(c.at(0.0), 0, 100), None);
        assert_eq!(p.sample(c.at(100.0), 0, 1000), None);
        p.started(c.at(100.0));
        p.stopped();
        assert_eq!(p.sample(c.at(200.0), 0, 1000), None);
    }

    #[test]
    fn no_consumer_after_start_fails_after_the_grace() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        for s in 0..10 {
            assert_eq!(p.sample(c.at(s as f64), 0, 0), None, "at {s}s");
        }
        let v = p.sample(c.at(10.0), 0, 0).unwrap();
        assert!(!v.ok);
        assert_eq!(v.detail, "no consumer on network.net1 for 10s");
        // Said once.
        assert_eq!(p.sample(c.at(11.0), 0, 0), None);
    }

    #[test]
    fn consumer_attached_in_the_grace_is_ok() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        assert_eq!(p.sample(c.at(1.0), 0, 3), None);
        let v = p.sample(c.at(2.0), 1, 0).unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(p.sample(c.at(3.0), 1, 0), None);
        assert_eq!(p.sample(c.at(30.0), 1, 0), None);
    }

    #[test]
    fn vanished_consumer_fails_after_the_grace_from_its_vanishing() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        assert!(p.sample(c.at(1.0), 1, 0).unwrap().ok);
        assert_eq!(p.sample(c.at(20.0), 0, 0), None);
        assert_eq!(p.sample(c.at(29.9), 0, 5), None);
        let v = p.sample(c.at(30.0), 0, 5).unwrap();
        assert!(!v.ok);
        // Back: a consumer and the backlog drained.
        assert_eq!(p.sample(c.at(31.0), 1, 5), None, "not drained yet");
        assert!(p.sample(c.at(32.0), 1, 0).unwrap().ok);
    }

    #[test]
    fn growing_backlog_with_a_consumer_is_a_hung_nova_network() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        assert!(p.sample(c.at(1.0), 1, 0).unwrap().ok);
        assert_eq!(p.sample(c.at(2.0), 1, 2), None);
        assert_eq!(p.sample(c.at(3.0), 1, 3), None);
        assert_eq!(p.sample(c.at(5.0), 1, 5), None);
        assert_eq!(p.sample(c.at(6.9), 1, 7), None);
        let v = p.sample(c.at(7.0), 1, 8).unwrap();
        assert!(!v.ok);
        assert_eq!(
            v.detail,
            "backlog grew from 2 to 8 in 5s: nova-network is hung"
        );
        assert_eq!(p.sample(c.at(8.0), 1, 9), None);
        // Shrinking is not enough: drained to 0 is.
        assert_eq!(p.sample(c.at(9.0), 1, 4), None);
        assert!(p.sample(c.at(10.0), 1, 0).unwrap().ok);
    }

    #[test]
    fn busy_consumer_that_makes_progress_is_not_hung() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        assert!(p.sample(c.at(0.5), 1, 0).unwrap().ok);
        // Never 0, but it shrinks now and then: progress restarts the window.
        let counts = [3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15];
        for (i, m) in counts.into_iter().enumerate() {
            let t = 1.0 + i as f64 * 2.0;
            assert_eq!(p.sample(c.at(t), 1, m), None, "at {t}s with {m}");
        }
    }

    #[test]
    fn stuck_but_not_growing_backlog_is_not_hung() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        assert!(p.sample(c.at(0.5), 1, 0).unwrap().ok);
        for s in 1..60 {
            assert_eq!(p.sample(c.at(s as f64), 1, 4), None);
        }
    }

    #[test]
    fn hung_then_consumer_gone_reports_the_new_reason() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        assert!(p.sample(c.at(0.0), 1, 0).unwrap().ok);
        assert_eq!(p.sample(c.at(1.0), 1, 1), None);
        assert!(!p.sample(c.at(6.0), 1, 2).unwrap().ok);
        assert_eq!(
            p.sample(c.at(7.0), 0, 2),
            None,
            "grace for the vanished consumer"
        );
        let v = p.sample(c.at(17.0), 0, 3).unwrap();
        assert!(v.detail.starts_with("no consumer"), "{v:?}");
    }

    #[test]
    fn restart_resets_the_opinion() {
        let c = Clock::new();
        let mut p = probe();
        p.started(c.at(0.0));
        assert!(!p.sample(c.at(10.0), 0, 0).unwrap().ok);
        p.stopped();
        p.started(c.at(20.0));
        assert_eq!(p.sample(c.at(25.0), 0, 0), None, "a fresh grace");
        assert!(p.sample(c.at(26.0), 1, 0).unwrap().ok);
    }
}
