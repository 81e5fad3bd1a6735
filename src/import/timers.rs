//! ha.cf's timers: each read, or its default noted, then checked by the configuration's own
//! rules (`cluster::timers`), each broken rule an error on the line that set the timer.

use std::time::Duration;

use super::hacf::{self, At};
use super::{Diag, File, Timer, duration, src};
use crate::cluster::timers::{self, Advice, TimerName};

/// A duration in whole milliseconds, as ha.cf timers are kept.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// keepalive, warntime, deadtime and initdead, as ha.cf sets them or by default.
pub(super) fn plan(cf: &hacf::HaCf, d: &mut Diag) -> [Timer; 4] {
    let timer = |at: &Option<At<u64>>, name: &str, default: u64, why: &str, d: &mut Diag| match at {
        Some(at) => Timer {
            ms: at.value,
            source: src(File::HaCf, at),
        },
        None => {
            d.note(
                File::HaCf,
                None,
                format!("{name} not set: written as {} ({why})", duration(default)),
            );
            Timer {
                ms: default,
                source: format!("not in ha.cf: {why}"),
            }
        }
    };
    let keepalive = timer(
        &cf.keepalive,
        "keepalive",
        2_000,
        "the value of heartbeat's sample ha.cf",
        d,
    );
    let deadtime = timer(
        &cf.deadtime,
        "deadtime",
        30_000,
        "the value of heartbeat's sample ha.cf",
        d,
    );
    let warntime = timer(
        &cf.warntime,
        "warntime",
        ms(timers::default_warntime(Duration::from_millis(deadtime.ms))),
        "our default, deadtime/2",
        d,
    );
    let initdead = timer(
        &cf.initdead,
        "initdead",
        ms(timers::default_initdead(Duration::from_millis(deadtime.ms))),
        "twice deadtime, as heartbeat's sample ha.cf recommends",
        d,
    );
    let line = |at: &Option<At<u64>>| at.as_ref().map(|a| a.line);
    // With a timer unknown (its error is reported), the rules between timers cannot be
    // checked. The rules are the configuration's own (cluster::timers).
    if !cf.bad_timer {
        let (valid, broken) = timers::check(timers::Written {
            keepalive: Some(Duration::from_millis(keepalive.ms)),
            warntime: Some(Duration::from_millis(warntime.ms)),
            deadtime: Some(Duration::from_millis(deadtime.ms)),
            initdead: Some(Duration::from_millis(initdead.ms)),
        });
        let fmt = |t: Duration| duration(ms(t));
        for b in broken {
            let at = match b.timer() {
                TimerName::Keepalive => line(&cf.keepalive),
                TimerName::Warntime => line(&cf.warntime),
                TimerName::Deadtime => line(&cf.deadtime).or(line(&cf.keepalive)),
                TimerName::Initdead => line(&cf.initdead),
            };
            d.error(
                File::HaCf,
                at,
                format!(
                    "{}: found {}, expected {}",
                    b.timer().name(),
                    fmt(b.found()),
                    b.expected(fmt)
                ),
            );
        }
        for advice in valid.map(|t| timers::advise(&t)).unwrap_or_default() {
            let text = match advice {
                Advice::InitdeadBelowTenSeconds => format!(
                    "initdead {} is below 10s (heartbeat warns about this too): a node whose \
                     network comes up slowly at boot may declare its peer dead and take over",
                    duration(initdead.ms)
                ),
                Advice::InitdeadBelowTwiceDeadtime => format!(
                    "initdead {} is less than twice deadtime ({}), as heartbeat recommends",
                    duration(initdead.ms),
                    duration(deadtime.ms)
                ),
            };
            d.warn(File::HaCf, line(&cf.initdead), text);
        }
    }
    [keepalive, warntime, deadtime, initdead]
}
