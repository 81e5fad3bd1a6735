//! The rules heartbeat timers must keep, and the defaults of the optional ones: written once,
//! read by the configuration's validation and by the import of a heartbeat `ha.cf`, each of
//! which words the message for its own file.

use std::time::Duration;

use super::Timers;

/// Below this initdead heartbeat warns (peers still booting may be declared dead); so do we.
pub const INITDEAD_WARN_BELOW: Duration = Duration::from_secs(10);

/// warntime when not written: half of deadtime.
pub fn default_warntime(deadtime: Duration) -> Duration {
    deadtime / 2
}

/// initdead when not written: twice deadtime, as heartbeat's sample ha.cf recommends.
pub fn default_initdead(deadtime: Duration) -> Duration {
    deadtime.saturating_mul(2)
}

/// Which timer a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerName {
    /// keepalive.
    Keepalive,
    /// warntime.
    Warntime,
    /// deadtime.
    Deadtime,
    /// initdead.
    Initdead,
}

impl TimerName {
    /// Its name, as both files spell it.
    pub fn name(self) -> &'static str {
        match self {
            TimerName::Keepalive => "keepalive",
            TimerName::Warntime => "warntime",
            TimerName::Deadtime => "deadtime",
            TimerName::Initdead => "initdead",
        }
    }
}

/// A broken rule: the timer it is about, the value found, and what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// keepalive is zero.
    KeepaliveZero,
    /// deadtime is not above twice keepalive: one lost heartbeat would declare a peer dead.
    DeadtimeShort {
        /// Found.
        deadtime: Duration,
        /// keepalive.
        keepalive: Duration,
    },
    /// warntime is not strictly between keepalive and deadtime.
    WarntimeOutside {
        /// Found.
        warntime: Duration,
        /// keepalive.
        keepalive: Duration,
        /// deadtime.
        deadtime: Duration,
    },
    /// initdead is below deadtime.
    InitdeadShort {
        /// Found.
        initdead: Duration,
        /// deadtime.
        deadtime: Duration,
    },
}

impl Broken {
    /// The timer at fault.
    pub fn timer(self) -> TimerName {
        match self {
            Broken::KeepaliveZero => TimerName::Keepalive,
            Broken::DeadtimeShort { .. } => TimerName::Deadtime,
            Broken::WarntimeOutside { .. } => TimerName::Warntime,
            Broken::InitdeadShort { .. } => TimerName::Initdead,
        }
    }

    /// The value found.
    pub fn found(self) -> Duration {
        match self {
            Broken::KeepaliveZero => Duration::ZERO,
            Broken::DeadtimeShort { deadtime, .. } => deadtime,
            Broken::WarntimeOutside { warntime, .. } => warntime,
            Broken::InitdeadShort { initdead, .. } => initdead,
        }
    }

    /// What was expected, with durations written by `fmt`.
    pub fn expected(self, fmt: impl Fn(Duration) -> String) -> String {
        match self {
            Broken::KeepaliveZero => "a duration above 0".to_owned(),
            Broken::DeadtimeShort { keepalive, .. } => format!(
                "more than 2 x keepalive = {} (keepalive is {})",
                fmt(keepalive.saturating_mul(2)),
                fmt(keepalive)
            ),
            Broken::WarntimeOutside {
                keepalive,
                deadtime,
                ..
            } => format!(
                "strictly between keepalive ({}) and deadtime ({})",
                fmt(keepalive),
                fmt(deadtime)
            ),
            Broken::InitdeadShort { deadtime, .. } => {
                format!("at least deadtime ({})", fmt(deadtime))
            }
        }
    }
}

/// Timers as written: each may be missing (not written, or unreadable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// keepalive.
    pub keepalive: Option<Duration>,
    /// warntime.
    pub warntime: Option<Duration>,
    /// deadtime.
    pub deadtime: Option<Duration>,
    /// initdead.
    pub initdead: Option<Duration>,
}

/// Checks every rule that the written timers allow checking, so that several mistakes are
/// all reported: each rule is checked against the others as written, even a deadtime that
/// breaks its own rule. Returns the timers (defaults filled in) when none is broken or
/// missing, and every broken rule.
pub fn check(w: Written) -> (Option<Timers>, Vec<Broken>) {
    let mut broken = Vec::new();
    if w.keepalive == Some(Duration::ZERO) {
        broken.push(Broken::KeepaliveZero);
    }
    let keepalive = w.keepalive.filter(|k| !k.is_zero());
    if let (Some(k), Some(d)) = (keepalive, w.deadtime)
        && d <= k.saturating_mul(2)
    {
        broken.push(Broken::DeadtimeShort {
            deadtime: d,
            keepalive: k,
        });
    }
    if let (Some(k), Some(wt), Some(d)) = (keepalive, w.warntime, w.deadtime)
        && !(k < wt && wt < d)
    {
        broken.push(Broken::WarntimeOutside {
            warntime: wt,
            keepalive: k,
            deadtime: d,
        });
    }
    if let (Some(i), Some(d)) = (w.initdead, w.deadtime)
        && i < d
    {
        broken.push(Broken::InitdeadShort {
            initdead: i,
            deadtime: d,
        });
    }
    let timers = match (keepalive, w.deadtime) {
        (Some(keepalive), Some(deadtime)) if broken.is_empty() => Some(Timers {
            keepalive,
            warntime: w.warntime.unwrap_or(default_warntime(deadtime)),
            deadtime,
            initdead: w.initdead.unwrap_or(default_initdead(deadtime)),
        }),
        _ => None,
    };
    (timers, broken)
}

/// Advice about timers that keep every rule: an initdead below
/// [`INITDEAD_WARN_BELOW`], or below twice deadtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// initdead below 10 s.
    InitdeadBelowTenSeconds,
    /// initdead below twice deadtime.
    InitdeadBelowTwiceDeadtime,
}

/// The advice for valid timers.
pub fn advise(t: &Timers) -> Vec<Advice> {
    let mut advice = Vec::new();
    if t.initdead < INITDEAD_WARN_BELOW {
        advice.push(Advice::InitdeadBelowTenSeconds);
    }
    if t.initdead < default_initdead(t.deadtime) {
        advice.push(Advice::InitdeadBelowTwiceDeadtime);
    }
    advice
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn written(k: u64, w: Option<u64>, d: u64, i: Option<u64>) -> Written {
        let ms = Duration::from_millis;
        Written {
            keepalive: Some(ms(k)),
            warntime: w.map(ms),
            deadtime: Some(ms(d)),
            initdead: i.map(ms),
        }
    }

    #[test]
    fn defaults_fill_warntime_and_initdead() {
        let (t, broken) = check(written(250, None, 4000, None));
        assert!(broken.is_empty());
        let t = t.unwrap();
        assert_eq!((t.warntime, t.initdead), (2000 * MS, 8000 * MS));
    }

    #[test]
    fn every_broken_rule_is_reported_even_with_deadtime_wrong_too() {
        let (t, broken) = check(written(3000, Some(2000), 4000, Some(3000)));
        assert_eq!(t, None);
        let timers: Vec<TimerName> = broken.iter().map(|b| b.timer()).collect();
        assert_eq!(
            timers,
            [
                TimerName::Deadtime,
                TimerName::Warntime,
                TimerName::Initdead
            ]
        );
        assert_eq!(
            broken[0].expected(|d| format!("{d:?}")),
            "more than 2 x keepalive = 6s (keepalive is 3s)"
        );
    }

    #[test]
    fn zero_keepalive_and_the_edges() {
        let (_, broken) = check(written(0, None, 4000, None));
        assert_eq!(broken, [Broken::KeepaliveZero]);
        // deadtime exactly 2 x keepalive is one lost heartbeat from a false failover.
        assert_eq!(check(written(250, None, 500, None)).1.len(), 1);
        assert!(check(written(250, None, 501, None)).1.is_empty());
        // warntime equal to either bound is refused.
        assert_eq!(check(written(250, Some(250), 4000, None)).1.len(), 1);
        assert_eq!(check(written(250, Some(4000), 4000, None)).1.len(), 1);
        // initdead equal to deadtime is allowed, with advice.
        let (t, broken) = check(written(250, None, 4000, Some(4000)));
        assert!(broken.is_empty());
        assert_eq!(
            advise(&t.unwrap()),
            [
                Advice::InitdeadBelowTenSeconds,
                Advice::InitdeadBelowTwiceDeadtime
            ]
        );
    }
}
