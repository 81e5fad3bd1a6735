//! The smaller sections: `[daemon]`, `[announce]`, `[mirror]` and `[probes]`.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn check_daemon(cx: &mut Ctx<'_>, d: raw::RawDaemon) -> Option<Daemon> {
    cx.unknown("daemon", &d.unknown, raw::DAEMON_KEYS);
    let admin_socket = match present(&d.admin_socket) {
        None => Some(DEFAULT_ADMIN_SOCKET.to_owned()),
        Some(v) => cx.string("daemon.admin_socket", v, "a unix socket path"),
    }
    .map(|p| cx.path(&p));
    let respawn_budget = match present(&d.respawn_budget) {
        None => Some(0),
        Some(v) => cx
            .int("daemon.respawn_budget", v, 0, 100)
            .and_then(|n| u32::try_from(n).ok()),
    };
    let nova_stop_grace = match present(&d.nova_stop_grace) {
        None => Some(DEFAULT_NOVA_STOP_GRACE),
        Some(v) => cx.duration("daemon.nova_stop_grace", v),
    };
    Some(Daemon {
        admin_socket: admin_socket?,
        respawn_budget: respawn_budget?,
        nova_stop_grace: nova_stop_grace?,
    })
}

pub(super) fn check_announce(cx: &mut Ctx<'_>, a: raw::RawAnnounce) -> Option<Announce> {
    cx.unknown("announce", &a.unknown, raw::ANNOUNCE_KEYS);
    let count = match present(&a.count) {
        None => Some(DEFAULT_ANNOUNCE_COUNT),
        Some(v) => cx
            .int("announce.count", v, 1, 100)
            .and_then(|n| u32::try_from(n).ok()),
    };
    let interval = match present(&a.interval) {
        None => Some(Duration::ZERO),
        Some(v) => cx.duration("announce.interval", v),
    };
    let repeat_after = match present(&a.repeat_after) {
        None => Some(Some(DEFAULT_ANNOUNCE_REPEAT)),
        Some(v) => cx
            .duration("announce.repeat_after", v)
            .map(|d| (!d.is_zero()).then_some(d)),
    };
    Some(Announce {
        count: count?,
        interval: interval?,
        repeat_after: repeat_after?,
    })
}

/// Default TCP port of the mirror stream.
pub const DEFAULT_MIRROR_PORT: u16 = 7791;

pub(super) fn check_mirror(
    cx: &mut Ctx<'_>,
    m: raw::RawMirror,
    timers: Option<&Timers>,
) -> Option<Option<Mirror>> {
    cx.unknown("mirror", &m.unknown, raw::MIRROR_KEYS);
    let enabled = match present(&m.enabled) {
        None => Some(true),
        Some(v) => cx.boolean("mirror.enabled", v),
    };
    let port = match present(&m.port) {
        None => Some(DEFAULT_MIRROR_PORT),
        Some(v) => cx
            .int("mirror.port", v, 1, 65535)
            .and_then(|n| u16::try_from(n).ok()),
    };
    let mut positive =
        |key: &str, v: &Option<Value>, default: Duration| cx.positive_duration(key, v, default);
    let refresh = positive("mirror.refresh", &m.refresh, Duration::from_secs(1));
    // Default: 10 s, or more with long timers (2 x deadtime + refresh).
    let default_age = match (timers, refresh) {
        (Some(t), Some(r)) => (t.deadtime * 2 + r).max(Duration::from_secs(10)),
        _ => Duration::from_secs(10),
    };
    let max_age = positive("mirror.max_age", &m.max_age, default_age);
    let iptables_check = positive(
        "mirror.iptables_check",
        &m.iptables_check,
        Duration::from_millis(20),
    );
    // A power-off is seen deadtime after the last heartbeat, and the last confirmation came
    // up to `refresh` before it: a shorter max_age would refuse every snapshot.
    if let (Some(r), Some(a), Some(t)) = (refresh, max_age, timers)
        && a < t.deadtime + r
    {
        cx.invalid(
            "mirror.max_age",
            format!("\"{a:?}\""),
            format!(
                "at least timers.deadtime + mirror.refresh ({:?}): otherwise the snapshot is always stale when the active dies",
                t.deadtime + r
            ),
        );
    }
    if !enabled? {
        return Some(None);
    }
    Some(Some(Mirror {
        port: port?,
        refresh: refresh?,
        max_age: max_age?,
        iptables_check: iptables_check?,
    }))
}

pub(super) fn check_probes(cx: &mut Ctx<'_>, p: raw::RawProbes) -> Option<Probes> {
    cx.unknown("probes", &p.unknown, raw::PROBES_KEYS);
    let watch_links = match present(&p.watch_links) {
        None => Some(true),
        Some(v) => cx.boolean("probes.watch_links", v),
    };
    let log_file = match present(&p.log_file) {
        None => Some(None),
        Some(v) => match &v.kind {
            ValueKind::String(s) if s.is_empty() => Some(None),
            _ => cx
                .string("probes.log_file", v, "a log file path, or \"\" for none")
                .map(|f| Some(cx.path(&f))),
        },
    };
    let mut ok = true;
    let mut fatal_patterns = Vec::new();
    if let Some(v) = present(&p.fatal_patterns) {
        for (key, pattern) in cx.strings("probes.fatal_patterns", v).unwrap_or_default() {
            match regex::Regex::new(&pattern) {
                Ok(_) => fatal_patterns.push(pattern),
                Err(e) => {
                    let reason = e.to_string().lines().last().unwrap_or_default().to_owned();
                    cx.invalid(
                        &key,
                        format!("{pattern:?}"),
                        format!("a regular expression ({reason})"),
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(Some(_)) = &log_file
        && fatal_patterns.is_empty()
        && ok
    {
        cx.missing(
            "probes.fatal_patterns",
            "at least one regular expression when probes.log_file is set",
        );
        ok = false;
    }
    Some(Probes {
        watch_links: watch_links?,
        log_file: log_file?,
        fatal_patterns: ok.then_some(fatal_patterns)?,
    })
}
