//! ha.cf: heartbeat's cluster configuration, read with heartbeat's documented meanings.

use std::net::IpAddr;

use super::{Diag, File};

/// A value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct At<T> {
    pub value: T,
    pub line: usize,
    /// The directive line as written (comment removed), for the output's comments.
    pub text: String,
}

/// What ha.cf says that nova-network-ha carries over.
#[derive(Debug, Default)]
pub(super) struct HaCf {
    pub keepalive: Option<At<u64>>,
    pub deadtime: Option<At<u64>>,
    pub warntime: Option<At<u64>>,
    pub initdead: Option<At<u64>>,
    pub udpport: Option<At<u16>>,
    /// `ucast dev ip`, in file order.
    pub ucast: Vec<At<(String, IpAddr)>>,
    /// `node` names, in file order.
    pub nodes: Vec<At<String>>,
    pub auto_failback: Option<At<AutoFailback>>,
    pub nice_failback: Option<At<bool>>,
    /// A timer line had an error (already reported): its value is unknown, so the rules
    /// between timers are not checked.
    pub bad_timer: bool,
}

/// heartbeat's `auto_failback` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AutoFailback {
    On,
    Off,
    Legacy,
}

const BOOL_EXPECTED: &str = "one boolean (yes/no/on/off/true/false)";

/// heartbeat's boolean words (`cl_str_to_boolean`), case-insensitive.
pub(super) fn boolean(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "y" | "1" => Some(true),
        "no" | "off" | "false" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// heartbeat's time syntax: a decimal number, optionally fractional, then an optional unit
/// (`s`, `ms`, `us`; none means seconds), truncated to whole milliseconds.
pub(super) fn millis(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let scale = match unit {
        "" | "s" | "sec" => 1000.0,
        "ms" | "msec" => 1.0,
        "us" | "usec" => 0.001,
        _ => return None,
    };
    let ms = (n * scale).floor();
    // At most a day: anything longer is a typo, not a heartbeat timer.
    (ms <= 86_400_000.0).then_some(ms as u64)
}

/// Directives heartbeat knows that have no counterpart here, with why.
fn not_carried(directive: &str) -> Option<&'static str> {
    Some(match directive {
        "logfacility" | "logfile" | "debugfile" | "debug" | "use_logd" | "conn_logd_time" => {
            "nova-network-ha logs to the journal (stderr) with tracing"
        }
        "realtime" | "rtprio" | "memreserve" | "coredumps" => {
            "process tuning is systemd's job (see the unit file)"
        }
        "apiauth"
        | "msgfmt"
        | "compression"
        | "compression_threshold"
        | "traditional_compression"
        | "uuidfrom"
        | "autojoin"
        | "hopfudge"
        | "hbgenmethod"
        | "max_rexmit_delay"
        | "record_config_changes"
        | "record_pengine_inputs"
        | "enable_config_writes"
        | "baud"
        | "deadping"
        | "watchdog" => "heartbeat internals without a counterpart in nova-network-ha",
        _ => return None,
    })
}

/// Directives that take one boolean.
fn is_boolean(directive: &str) -> bool {
    matches!(
        directive,
        "use_logd"
            | "realtime"
            | "coredumps"
            | "record_config_changes"
            | "record_pengine_inputs"
            | "enable_config_writes"
            | "nice_failback"
    )
}

fn set<T>(d: &mut Diag, slot: &mut Option<At<T>>, name: &str, value: T, line: usize, text: &str) {
    if let Some(first) = slot {
        d.error(
            File::HaCf,
            Some(line),
            format!(
                "{name}: found a second {name} line, expected one (first on line {})",
                first.line
            ),
        );
        return;
    }
    *slot = Some(At {
        value,
        line,
        text: text.to_string(),
    });
}

/// Parses ha.cf, recording every error, note and warning in `d`.
pub(super) fn parse(text: &str, d: &mut Diag) -> HaCf {
    let mut cf = HaCf::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        // heartbeat ends a line at the first `#`, even without a space before it.
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let (directive, rest) = match content.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (content, ""),
        };
        let args: Vec<&str> = rest.split_whitespace().collect();
        let err = |d: &mut Diag, found: &str, expected: &str| {
            d.error(
                File::HaCf,
                Some(line),
                format!("{directive}: found {found:?}, expected {expected}"),
            )
        };
        match directive {
            "keepalive" | "deadtime" | "warntime" | "initdead" => {
                let ms = match args.as_slice() {
                    [one] => millis(one),
                    _ => None,
                };
                let Some(ms) = ms.filter(|&ms| ms > 0) else {
                    cf.bad_timer = true;
                    err(
                        d,
                        rest,
                        "one time above zero such as 2, 1.5 or 250ms (seconds unless ms or us)",
                    );
                    continue;
                };
                let slot = match directive {
                    "keepalive" => &mut cf.keepalive,
                    "deadtime" => &mut cf.deadtime,
                    "warntime" => &mut cf.warntime,
                    _ => &mut cf.initdead,
                };
                set(d, slot, directive, ms, line, content);
            }
            "udpport" => match args.as_slice() {
                [p] => match p.parse::<u16>() {
                    Ok(port) if port > 0 => set(d, &mut cf.udpport, directive, port, line, content),
                    _ => err(d, rest, "one UDP port number (1..=65535)"),
                },
                _ => err(d, rest, "one UDP port number (1..=65535)"),
            },
            "ucast" => match args.as_slice() {
                [dev, ip] => match ip.parse::<IpAddr>() {
                    Ok(ip) => cf.ucast.push(At {
                        value: (dev.to_string(), ip),
                        line,
                        text: content.to_string(),
                    }),
                    Err(_) => err(d, ip, "an IP address (`ucast <interface> <peer address>`)"),
                },
                _ => err(d, rest, "`ucast <interface> <peer address>`"),
            },
            "node" => {
                if args.is_empty() {
                    err(d, rest, "one or more node names");
                }
                for name in args {
                    if let Some(first) =
                        cf.nodes.iter().find(|n| n.value.eq_ignore_ascii_case(name))
                    {
                        d.error(
                            File::HaCf,
                            Some(line),
                            format!(
                                "node: found {name:?} again, expected each node once (first on line {})",
                                first.line
                            ),
                        );
                        continue;
                    }
                    cf.nodes.push(At {
                        value: name.to_string(),
                        line,
                        text: content.to_string(),
                    });
                }
            }
            "auto_failback" => {
                let v = match args.as_slice() {
                    [v] if v.eq_ignore_ascii_case("legacy") => Some(AutoFailback::Legacy),
                    [v] => boolean(v).map(|b| {
                        if b {
                            AutoFailback::On
                        } else {
                            AutoFailback::Off
                        }
                    }),
                    _ => None,
                };
                match v {
                    Some(v) => set(d, &mut cf.auto_failback, directive, v, line, content),
                    None => err(d, rest, "on, off or legacy (or yes/no/true/false)"),
                }
            }
            "crm" | "pacemaker" => {
                let v = match args.as_slice() {
                    [v] if v.eq_ignore_ascii_case("respawn") => Some(true),
                    [v] => boolean(v),
                    _ => None,
                };
                match v {
                    Some(true) => d.warn(
                        File::HaCf,
                        Some(line),
                        format!(
                            "{content}: with a CRM, heartbeat ignored haresources and kept the \
                             resources in the CIB, which is not imported; check failover.vips"
                        ),
                    ),
                    Some(false) => d.note(
                        File::HaCf,
                        Some(line),
                        format!("{content}: no CRM, as nova-network-ha (haresources style)"),
                    ),
                    None => err(d, rest, "one boolean (yes/no/on/off/true/false) or respawn"),
                }
            }
            "bcast" | "mcast" | "mcast6" | "serial" => d.warn(
                File::HaCf,
                Some(line),
                format!(
                    "{content}: not carried over: nova-network-ha sends unicast UDP heartbeats \
                     only; add a `ucast` path on that interface instead"
                ),
            ),
            "ping" | "ping_group" => d.warn(
                File::HaCf,
                Some(line),
                format!(
                    "{content}: ping nodes are not imported: nova-network-ha has no ping-node \
                     probe yet (its link probe covers a lost public link)"
                ),
            ),
            "stonith" | "stonith_host" => d.warn(
                File::HaCf,
                Some(line),
                format!(
                    "{content}: STONITH is not imported: nova-network-ha has no fence command \
                     yet (docs/design.md section 5)"
                ),
            ),
            "respawn" => {
                if rest.contains("ipfail") {
                    d.note(
                        File::HaCf,
                        Some(line),
                        format!(
                            "{content}: not carried over: nova-network-ha has no ping-node probe \
                             yet (ipfail's job); its link probe covers a lost public link"
                        ),
                    );
                } else {
                    d.warn(
                        File::HaCf,
                        Some(line),
                        format!(
                            "{content}: not carried over: run that program as its own \
                             systemd unit"
                        ),
                    );
                }
            }
            _ if is_boolean(directive) => {
                let Some(b) = (match args.as_slice() {
                    [v] => boolean(v),
                    _ => None,
                }) else {
                    err(d, rest, BOOL_EXPECTED);
                    continue;
                };
                if directive == "nice_failback" {
                    set(d, &mut cf.nice_failback, directive, b, line, content);
                } else if let Some(why) = not_carried(directive) {
                    d.note(
                        File::HaCf,
                        Some(line),
                        format!("{content}: not carried over: {why}"),
                    );
                }
            }
            _ => match not_carried(directive) {
                Some(why) => d.note(
                    File::HaCf,
                    Some(line),
                    format!("{content}: not carried over: {why}"),
                ),
                None => d.error(
                    File::HaCf,
                    Some(line),
                    format!(
                        "found unknown directive {directive:?}, expected a heartbeat ha.cf \
                         directive (keepalive, deadtime, warntime, initdead, udpport, ucast, \
                         node, auto_failback, ...)"
                    ),
                ),
            },
        }
    }
    cf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_time_syntax() {
        assert_eq!(millis("4"), Some(4000));
        assert_eq!(millis("250ms"), Some(250));
        assert_eq!(millis("1.5"), Some(1500));
        assert_eq!(millis(".001"), Some(1));
        assert_eq!(millis("1500.1ms"), Some(1500));
        assert_eq!(millis("100000us"), Some(100));
        assert_eq!(millis("2s"), Some(2000));
        for bad in ["", "ms", "1.2.3", "-1", "4 s", "4m", "1e3", "999999999"] {
            assert_eq!(millis(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean("YES"), Some(true));
        assert_eq!(boolean("off"), Some(false));
        assert_eq!(boolean("yesuse_logd"), None);
    }
}
