//! Raw (serde) shape -> validated [`Config`]: every leaf converted, every rule checked
//! (heartbeat's timer rules and ours), every mistake collected with its key and location.
//!
//! Reads the key file and nova.conf named by the config, since their errors belong in the same
//! report. Never touches the network or any interface.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Value, ValueKind};
use ipnet::IpNet;

use super::error::ConfigError;
use super::raw::{self, RawConfig, Unknown};
use super::source::Origins;
use super::{
    Announce, Bus, Config, Daemon, Failover, HeartbeatPath, Mirror, Node, PathKind, Probes, Vip,
    duration, keyfile, nova,
};
use crate::cluster::{NodeId, Timers};

/// Default pool name.
pub const DEFAULT_CLUSTER_NAME: &str = "nova-network";
/// Default nova.conf.
pub const DEFAULT_NOVA_CONF: &str = "/etc/nova/nova.conf";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nova-network-ha";
/// heartbeat warns about an initdead below this.
/// Default status socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/nova-network-ha/admin.sock";
/// Default grace between SIGTERM and SIGKILL for nova-network.
pub const DEFAULT_NOVA_STOP_GRACE: Duration = Duration::from_secs(5);
/// Default announcements per address in a burst.
pub const DEFAULT_ANNOUNCE_COUNT: u32 = 3;
/// Default delay of the second announcement burst.
pub const DEFAULT_ANNOUNCE_REPEAT: Duration = Duration::from_secs(1);
/// Below this initdead heartbeat warns; so do we.
pub const INITDEAD_WARN_BELOW: Duration = Duration::from_secs(10);
/// Placeholders allowed in `failover.nova_network_command`.
pub const PLACEHOLDERS: [&str; 2] = ["nova_conf", "host"];
/// Longest Linux interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Collects errors and warnings while converting.
struct Ctx<'a> {
    origins: &'a Origins,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

/// A value, as shown in a message.
fn show(v: &Value) -> String {
    match &v.kind {
        ValueKind::Nil => "empty".into(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(n) => n.to_string(),
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a table".into(),
        ValueKind::Array(_) => "a list".into(),
    }
}

fn present(v: &Option<Value>) -> Option<&Value> {
    v.as_ref().filter(|v| !matches!(v.kind, ValueKind::Nil))
}

fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

const IFNAME_EXPECTED: &str = "an interface name of 1 to 15 characters without `/`, `:` or spaces";

impl Ctx<'_> {
    fn invalid(&mut self, key: &str, found: impl Into<String>, expected: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            at: self.origins.at(key),
            key: key.to_owned(),
            found: found.into(),
            expected: expected.into(),
        });
    }

    fn missing(&mut self, key: &str, expected: impl Into<String>) {
        self.errors.push(ConfigError::Missing {
            at: self.origins.at(key),
            key: key.to_owned(),
            expected: expected.into(),
        });
    }

    fn warn(&mut self, key: &str, message: String) {
        let at = self.origins.at(key);
        self.warnings.push(format!("{at}: `{key}` {message}"));
    }

    fn unknown(&mut self, prefix: &str, unknown: &Unknown, expected: &str) {
        for k in unknown.keys() {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            self.errors.push(ConfigError::UnknownKey {
                at: self.origins.at(&key),
                key,
                expected: expected.to_owned(),
            });
        }
    }

    /// A required value: records "missing" when absent.
    fn need<'v>(&mut self, key: &str, v: &'v Option<Value>, expected: &str) -> Option<&'v Value> {
        let p = present(v);
        if p.is_none() {
            self.missing(key, expected);
        }
        p
    }

    fn string(&mut self, key: &str, v: &Value, expected: &str) -> Option<String> {
        match &v.kind {
            ValueKind::String(s) if !s.is_empty() => Some(s.clone()),
            _ => {
                self.invalid(key, show(v), expected);
                None
            }
        }
    }

    fn int(&mut self, key: &str, v: &Value, lo: i128, hi: i128) -> Option<i128> {
        let n = match &v.kind {
            ValueKind::I64(n) => Some(i128::from(*n)),
            ValueKind::U64(n) => Some(i128::from(*n)),
            ValueKind::I128(n) => Some(*n),
            ValueKind::String(s) if self.origins.from_env(key) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                self.invalid(key, show(v), format!("an integer in {lo}..={hi}"));
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, v: &Value) -> Option<bool> {
        let b = match &v.kind {
            ValueKind::Boolean(b) => Some(*b),
            ValueKind::String(s) if self.origins.from_env(key) => {
                match s.trim().to_ascii_lowercase().as_str() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }
            }
            _ => None,
        };
        if b.is_none() {
            self.invalid(key, show(v), "true or false");
        }
        b
    }

    /// An optional duration above zero: `default` when absent.
    fn positive_duration(
        &mut self,
        key: &str,
        v: &Option<Value>,
        default: Duration,
    ) -> Option<Duration> {
        match present(v) {
            None => Some(default),
            Some(v) => self.duration(key, v).filter(|d| {
                if d.is_zero() {
                    self.invalid(key, "\"0s\"", "a duration above 0");
                }
                !d.is_zero()
            }),
        }
    }

    fn duration(&mut self, key: &str, v: &Value) -> Option<Duration> {
        let expected = "a duration like 250ms, 4s or 1m";
        match &v.kind {
            ValueKind::String(s) => match duration::parse(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.invalid(key, format!("{s:?}"), format!("{expected}; {}", e.reason()));
                    None
                }
            },
            _ => {
                self.invalid(key, show(v), format!("{expected}, as a string"));
                None
            }
        }
    }

    /// A list of strings; from the environment, a comma-separated string.
    fn strings(&mut self, key: &str, v: &Value) -> Option<Vec<(String, String)>> {
        let items: Vec<Value> = match &v.kind {
            ValueKind::Array(items) => items.clone(),
            ValueKind::String(s) if self.origins.from_env(key) => s
                .split(',')
                .map(|p| Value::new(None, ValueKind::String(p.trim().to_owned())))
                .collect(),
            _ => {
                let expected = if self.origins.from_env(key) {
                    "a comma-separated list"
                } else {
                    "a list of strings"
                };
                self.invalid(key, show(v), expected);
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            match &item.kind {
                ValueKind::String(s) => out.push((k, s.clone())),
                _ => {
                    self.invalid(&k, show(item), "a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            return p.to_owned();
        }
        match self.origins.file().parent() {
            Some(dir) => dir.join(p),
            None => p.to_owned(),
        }
    }
}

/// Options that replace what would otherwise be read from the system.
pub struct Inputs<'a> {
    /// This node's hostname, when `cluster.node_name` is empty.
    pub hostname: &'a dyn Fn() -> Result<String, String>,
    /// The bus password from the environment, when no `bus.password_file` is set.
    pub env_password: &'a dyn Fn() -> Option<String>,
}

/// Convert and check everything; `Err` carries every error, `Ok` the config and warnings.
pub fn validate(
    raw: RawConfig,
    origins: &Origins,
    inputs: &Inputs<'_>,
) -> Result<(Config, Vec<String>), Vec<ConfigError>> {
    let mut cx = Ctx {
        origins,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let cx = &mut cx;
    cx.unknown("", &raw.unknown, raw::TOP_KEYS);

    // [cluster]
    let cluster = raw.cluster.unwrap_or_default();
    cx.unknown("cluster", &cluster.unknown, raw::CLUSTER_KEYS);
    let cluster_name = match present(&cluster.name) {
        None => Some(DEFAULT_CLUSTER_NAME.to_owned()),
        Some(v) => cx.string("cluster.name", v, "a non-empty pool name"),
    };
    let cluster_id = cx
        .need(
            "cluster.id",
            &cluster.id,
            "the numeric cluster id carried in heartbeats",
        )
        .and_then(|v| cx.int("cluster.id", v, 0, i128::from(u32::MAX)))
        .and_then(|n| u32::try_from(n).ok());
    let node_name = match present(&cluster.node_name) {
        None => Some(String::new()),
        Some(v) => match &v.kind {
            ValueKind::String(s) => Some(s.clone()),
            _ => {
                cx.invalid(
                    "cluster.node_name",
                    show(v),
                    "a node name, or \"\" for the hostname",
                );
                None
            }
        },
    };

    // [[paths]]
    let paths = check_paths(cx, raw.paths.unwrap_or_default());

    // [[nodes]]
    let nodes = check_nodes(cx, raw.nodes.unwrap_or_default(), paths.as_deref());
    let this = match (&nodes, node_name) {
        (Some(nodes), Some(name)) => find_self(cx, nodes, name, inputs),
        _ => None,
    };

    // [timers]
    let timers = check_timers(cx, raw.timers.unwrap_or_default());

    // [auth]
    let auth = raw.auth.unwrap_or_default();
    cx.unknown("auth", &auth.unknown, raw::AUTH_KEYS);
    let key_file = cx
        .need(
            "auth.key_file",
            &auth.key_file,
            "the path of the authkeys-like key file",
        )
        .and_then(|v| cx.string("auth.key_file", v, "a file path"))
        .map(|p| cx.path(&p));
    let keyring = key_file
        .as_ref()
        .and_then(|path| match keyfile::load(path) {
            Ok(k) => Some(k),
            Err(errs) => {
                for source in errs {
                    cx.errors.push(ConfigError::KeyFile {
                        at: origins.at("auth.key_file"),
                        key: "auth.key_file".into(),
                        source,
                    });
                }
                None
            }
        });

    // [nova]
    let nova_raw = raw.nova.unwrap_or_default();
    cx.unknown("nova", &nova_raw.unknown, raw::NOVA_KEYS);
    let nova_path = match present(&nova_raw.conf) {
        None => Some(DEFAULT_NOVA_CONF.to_owned()),
        Some(v) => cx.string("nova.conf", v, "the path of nova.conf"),
    }
    .map(|p| cx.path(&p));
    let nova_conf = nova_path.as_ref().and_then(|path| match nova::load(path) {
        Ok(c) => Some(c),
        Err(errs) => {
            push_nova(cx, errs);
            None
        }
    });

    // [failover]
    let failover = check_failover(
        cx,
        raw.failover.unwrap_or_default(),
        paths.as_deref(),
        nova_conf.as_ref(),
    );
    if let (Some(f), Some(n)) = (&failover, &nova_conf) {
        let vips: Vec<IpAddr> = f.vips.iter().map(|v| v.address.addr()).collect();
        if let Err(e) = n.check_routing_source_ip(&vips) {
            push_nova(cx, vec![e]);
        }
    }

    // [state]
    let state = raw.state.unwrap_or_default();
    cx.unknown("state", &state.unknown, raw::STATE_KEYS);
    let state_dir = match present(&state.dir) {
        None => Some(DEFAULT_STATE_DIR.to_owned()),
        Some(v) => cx.string("state.dir", v, "a directory path"),
    }
    .map(|p| cx.path(&p));

    let daemon = check_daemon(cx, raw.daemon.unwrap_or_default());
    let announce = check_announce(cx, raw.announce.unwrap_or_default());
    let probes = check_probes(cx, raw.probes.unwrap_or_default());
    let bus = check_bus(cx, raw.bus.unwrap_or_default(), inputs);
    let mirror = check_mirror(cx, raw.mirror.unwrap_or_default(), timers.as_ref());

    let built = (|| {
        Some(Config {
            file: origins.file().to_owned(),
            cluster_name: cluster_name?,
            cluster_id: cluster_id?,
            this: this?,
            nodes: nodes?,
            paths: paths?,
            timers: timers?,
            key_file: key_file?,
            keyring: keyring?,
            failover: failover?,
            nova: nova_conf?,
            state_dir: state_dir?,
            daemon: daemon?,
            announce: announce?,
            probes: probes?,
            bus: bus?,
            mirror: mirror?,
        })
    })();
    match built {
        Some(config) if cx.errors.is_empty() => Ok((config, std::mem::take(&mut cx.warnings))),
        _ => {
            if cx.errors.is_empty() {
                // Every `None` above records an error; this guards that invariant.
                cx.missing("", "a complete configuration");
            }
            Err(std::mem::take(&mut cx.errors))
        }
    }
}

fn check_daemon(cx: &mut Ctx<'_>, d: raw::RawDaemon) -> Option<Daemon> {
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

fn check_announce(cx: &mut Ctx<'_>, a: raw::RawAnnounce) -> Option<Announce> {
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

fn check_mirror(
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

fn check_probes(cx: &mut Ctx<'_>, p: raw::RawProbes) -> Option<Probes> {
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

/// Environment variable that may hold the bus password.
pub const BUS_PASSWORD_ENV: &str = "NOVA_NETWORK_HA_BUS_PASSWORD";

fn check_bus(cx: &mut Ctx<'_>, b: raw::RawBus, inputs: &Inputs<'_>) -> Option<Option<Bus>> {
    cx.unknown("bus", &b.unknown, raw::BUS_KEYS);
    let url = match present(&b.url) {
        None => return Some(None),
        Some(v) => match &v.kind {
            ValueKind::String(s) if s.is_empty() => return Some(None),
            _ => cx.string(
                "bus.url",
                v,
                "an amqp:// or amqps:// URL, or \"\" for no bus",
            )?,
        },
    };
    let url_ok = match url.split_once("://") {
        Some(("amqp" | "amqps", rest)) => {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority.rsplit('@').next().unwrap_or_default();
            if authority
                .split('@')
                .next()
                .is_some_and(|userinfo| authority.contains('@') && userinfo.contains(':'))
            {
                cx.invalid(
                    "bus.url",
                    "a URL with a password",
                    "the user in the URL and the password in bus.password_file or $NOVA_NETWORK_HA_BUS_PASSWORD (a URL gets logged)",
                );
                false
            } else if host.is_empty() {
                cx.invalid(
                    "bus.url",
                    format!("{url:?}"),
                    "a URL with a host, like amqp://nova@10.0.0.5:5672/",
                );
                false
            } else {
                true
            }
        }
        _ => {
            cx.invalid("bus.url", format!("{url:?}"), "an amqp:// or amqps:// URL");
            false
        }
    };
    let password = match present(&b.password_file) {
        Some(v) if !matches!(&v.kind, ValueKind::String(s) if s.is_empty()) => {
            let file = cx.string("bus.password_file", v, "a file path")?;
            let path = cx.path(&file);
            match std::fs::metadata(&path) {
                Err(e) => {
                    cx.invalid(
                        "bus.password_file",
                        format!("{} ({e})", path.display()),
                        "a readable file holding the password",
                    );
                    None
                }
                Ok(meta) => {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = meta.permissions().mode() & 0o7777;
                    if mode & 0o077 != 0 {
                        cx.invalid(
                            "bus.password_file",
                            format!("{} with mode {mode:04o}", path.display()),
                            "a file that group and others cannot access (chmod 600)",
                        );
                        None
                    } else {
                        match std::fs::read_to_string(&path) {
                            Ok(text) => Some(Some(super::Secret(
                                text.trim_end_matches(['\n', '\r']).to_owned(),
                            ))),
                            Err(e) => {
                                cx.invalid(
                                    "bus.password_file",
                                    format!("{} ({e})", path.display()),
                                    "a readable file holding the password",
                                );
                                None
                            }
                        }
                    }
                }
            }
        }
        _ => Some((inputs.env_password)().map(super::Secret)),
    };
    let ca = match present(&b.ca_file) {
        Some(v) if !matches!(&v.kind, ValueKind::String(s) if s.is_empty()) => {
            let file = cx.string("bus.ca_file", v, "a PEM file of CA certificates")?;
            let path = cx.path(&file);
            if !url.starts_with("amqps://") {
                cx.invalid(
                    "bus.ca_file",
                    format!("{} with bus.url {:?}", path.display(), url),
                    "an amqps:// bus.url (the CA file is for TLS), or no bus.ca_file",
                );
                None
            } else {
                match std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|pem| pem_certificates(&pem).map(|n| (pem, n)))
                {
                    Ok((pem, certificates)) => Some(Some(super::CaFile {
                        path,
                        pem,
                        certificates,
                    })),
                    Err(e) => {
                        cx.invalid(
                            "bus.ca_file",
                            format!("{} ({e})", path.display()),
                            "a readable PEM file with at least one CERTIFICATE block",
                        );
                        None
                    }
                }
            }
        }
        _ => Some(None),
    };
    let exchange = match present(&b.exchange) {
        None => Some("nova-network-ha".to_owned()),
        Some(v) => cx.string("bus.exchange", v, "an exchange name"),
    };
    let mut duration =
        |key: &str, v: &Option<Value>, default: Duration| cx.positive_duration(key, v, default);
    let queue_interval = duration(
        "bus.queue_interval",
        &b.queue_interval,
        Duration::from_secs(1),
    );
    let consumer_grace = duration(
        "bus.consumer_grace",
        &b.consumer_grace,
        Duration::from_secs(10),
    );
    let backlog_window = duration(
        "bus.backlog_window",
        &b.backlog_window,
        Duration::from_secs(5),
    );
    if let (Some(q), Some(g)) = (queue_interval, consumer_grace)
        && g < q
    {
        cx.invalid(
            "bus.consumer_grace",
            format!("\"{g:?}\""),
            format!("at least bus.queue_interval ({q:?}): one sample is needed to see a consumer"),
        );
    }
    if let (Some(q), Some(w)) = (queue_interval, backlog_window)
        && w < 2 * q
    {
        cx.invalid(
            "bus.backlog_window",
            format!("\"{w:?}\""),
            format!(
                "at least 2 x bus.queue_interval ({:?}): a growth needs two samples",
                2 * q
            ),
        );
    }
    let alert_buffer = match present(&b.alert_buffer) {
        None => Some(1000),
        Some(v) => cx
            .int("bus.alert_buffer", v, 1, 1_000_000)
            .and_then(|n| usize::try_from(n).ok()),
    };
    let heartbeat_path = match present(&b.heartbeat_path) {
        None => Some(true),
        Some(v) => cx.boolean("bus.heartbeat_path", v),
    };
    if !url_ok {
        return None;
    }
    Some(Some(Bus {
        url,
        password: password?,
        ca: ca?,
        exchange: exchange?,
        queue_interval: queue_interval?,
        consumer_grace: consumer_grace?,
        backlog_window: backlog_window?,
        alert_buffer: alert_buffer?,
        heartbeat_path: heartbeat_path?,
    }))
}

/// How many PEM `CERTIFICATE` blocks `text` holds, each with valid base64; an error names
/// the line of the first broken block, or says that there is none.
fn pem_certificates(text: &str) -> Result<usize, String> {
    use base64::Engine as _;
    let mut count = 0;
    let mut block: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        match &mut block {
            None if line == "-----BEGIN CERTIFICATE-----" => block = Some((i + 1, String::new())),
            None => {}
            Some((start, body)) if line == "-----END CERTIFICATE-----" => {
                match base64::engine::general_purpose::STANDARD.decode(body.as_bytes()) {
                    Ok(der) if !der.is_empty() => count += 1,
                    _ => {
                        return Err(format!(
                            "the certificate at line {start} is not valid base64"
                        ));
                    }
                }
                block = None;
            }
            Some((_, body)) => body.push_str(line),
        }
    }
    if let Some((start, _)) = block {
        return Err(format!("the certificate at line {start} has no END line"));
    }
    if count == 0 {
        return Err("no -----BEGIN CERTIFICATE----- block".to_owned());
    }
    Ok(count)
}

fn push_nova(cx: &mut Ctx<'_>, errs: Vec<nova::NovaConfError>) {
    for source in errs {
        cx.errors.push(ConfigError::Nova {
            at: cx.origins.at("nova.conf"),
            key: "nova.conf".into(),
            source,
        });
    }
}

fn check_paths(cx: &mut Ctx<'_>, raws: Vec<raw::RawPath>) -> Option<Vec<HeartbeatPath>> {
    if raws.is_empty() {
        cx.missing("paths", "at least one [[paths]] heartbeat path");
        return None;
    }
    if raws.len() > usize::from(u8::MAX) {
        cx.invalid(
            "paths",
            format!("{} paths", raws.len()),
            "at most 255 paths",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, p) in raws.into_iter().enumerate() {
        let k = |f: &str| format!("paths[{i}].{f}");
        cx.unknown(&format!("paths[{i}]"), &p.unknown, raw::UDP_PATH_KEYS);
        let name = cx
            .need(
                &k("name"),
                &p.name,
                "a path name, used as the key in nodes.addresses",
            )
            .and_then(|v| cx.string(&k("name"), v, "a non-empty path name"));
        if let Some(n) = &name {
            if let Some(first) = names.get(n) {
                cx.invalid(
                    &k("name"),
                    format!("{n:?}"),
                    format!("a name not already used by paths[{first}]"),
                );
                ok = false;
            } else {
                names.insert(n.clone(), i);
            }
        }
        let kind = cx
            .need(&k("kind"), &p.kind, "the path kind, \"udp\"")
            .and_then(|v| cx.string(&k("kind"), v, "\"udp\""));
        let kind = match kind.as_deref() {
            Some("udp") => {
                let interface = cx
                    .need(
                        &k("interface"),
                        &p.interface,
                        "the interface heartbeats use",
                    )
                    .and_then(|v| cx.string(&k("interface"), v, IFNAME_EXPECTED));
                let interface = interface.filter(|s| {
                    let good = valid_ifname(s);
                    if !good {
                        cx.invalid(&k("interface"), format!("{s:?}"), IFNAME_EXPECTED);
                    }
                    good
                });
                let port = cx
                    .need(&k("port"), &p.port, "the UDP port (heartbeat uses 694)")
                    .and_then(|v| cx.int(&k("port"), v, 1, 65535))
                    .and_then(|n| u16::try_from(n).ok());
                match (interface, port) {
                    (Some(interface), Some(port)) => Some(PathKind::Udp { interface, port }),
                    _ => None,
                }
            }
            Some(other) => {
                cx.invalid(&k("kind"), format!("{other:?}"), "\"udp\"");
                None
            }
            None => None,
        };
        match (name, kind) {
            (Some(name), Some(kind)) => out.push(HeartbeatPath { name, kind }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn check_nodes(
    cx: &mut Ctx<'_>,
    raws: Vec<raw::RawNode>,
    paths: Option<&[HeartbeatPath]>,
) -> Option<Vec<Node>> {
    if raws.is_empty() {
        cx.missing("nodes", "the [[nodes]] of the pool, this one included");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<u16, usize> = HashMap::new();
    let mut prios: HashMap<u8, usize> = HashMap::new();
    let mut addrs: HashMap<(usize, IpAddr), usize> = HashMap::new();
    for (i, n) in raws.into_iter().enumerate() {
        let k = |f: &str| format!("nodes[{i}].{f}");
        cx.unknown(&format!("nodes[{i}]"), &n.unknown, raw::NODE_KEYS);
        let name = cx
            .need(
                &k("name"),
                &n.name,
                "the node's name, as `uname -n` prints it",
            )
            .and_then(|v| cx.string(&k("name"), v, "a non-empty node name"));
        if let Some(s) = &name
            && let Some(first) = names.insert(s.clone(), i)
        {
            cx.invalid(
                &k("name"),
                format!("{s:?}"),
                format!("a name not already used by nodes[{first}]"),
            );
            ok = false;
        }
        let id = cx
            .need(&k("id"), &n.id, "a node id in 1..=65535")
            .and_then(|v| cx.int(&k("id"), v, 1, 65535))
            .and_then(|x| u16::try_from(x).ok());
        if let Some(id) = id
            && let Some(first) = ids.insert(id, i)
        {
            cx.invalid(
                &k("id"),
                id.to_string(),
                format!("an id not already used by nodes[{first}]"),
            );
            ok = false;
        }
        let priority = cx
            .need(
                &k("priority"),
                &n.priority,
                "an election priority in 1..=255",
            )
            .and_then(|v| cx.int(&k("priority"), v, 1, 255))
            .and_then(|x| u8::try_from(x).ok());
        if let Some(p) = priority
            && let Some(first) = prios.insert(p, i)
        {
            cx.invalid(
                &k("priority"),
                p.to_string(),
                format!("a priority distinct from nodes[{first}]'s, so elections never tie"),
            );
            ok = false;
        }
        let addresses = cx
            .need(
                &k("addresses"),
                &n.addresses,
                "a table of path name = address",
            )
            .and_then(|v| node_addresses(cx, i, v, paths, &mut addrs));
        match (name, id, priority, addresses) {
            (Some(name), Some(id), Some(priority), Some(addresses)) => out.push(Node {
                name,
                id: NodeId(id),
                priority,
                addresses,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn node_addresses(
    cx: &mut Ctx<'_>,
    i: usize,
    v: &Value,
    paths: Option<&[HeartbeatPath]>,
    seen: &mut HashMap<(usize, IpAddr), usize>,
) -> Option<Vec<IpAddr>> {
    let key = format!("nodes[{i}].addresses");
    let ValueKind::Table(table) = &v.kind else {
        cx.invalid(
            &key,
            show(v),
            "a table of path name = address, like { hb0 = \"192.168.0.1\" }",
        );
        return None;
    };
    let paths = paths?;
    let names: Vec<&str> = paths.iter().map(|p| p.name.as_str()).collect();
    let mut ok = true;
    let mut by_name: BTreeMap<&str, IpAddr> = BTreeMap::new();
    let given: Vec<&str> = table.keys().map(String::as_str).collect();
    let sorted: BTreeMap<&String, &Value> = table.iter().collect();
    for (pname, addr) in sorted {
        let k = format!("{key}.{pname}");
        if !names.contains(&pname.as_str()) {
            cx.errors.push(ConfigError::UnknownKey {
                at: cx.origins.at(&k),
                key: k,
                expected: format!("a path name among [[paths]]: {}", names.join(", ")),
            });
            ok = false;
            continue;
        }
        let parsed = cx
            .string(&k, addr, "an IPv4 or IPv6 address")
            .and_then(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    cx.invalid(&k, format!("{s:?}"), "an IPv4 or IPv6 address");
                    None
                }
            });
        match parsed {
            Some(ip) => {
                by_name.insert(pname.as_str(), ip);
            }
            None => ok = false,
        }
    }
    let mut out = Vec::new();
    for (p, path) in paths.iter().enumerate() {
        match by_name.get(path.name.as_str()) {
            Some(&ip) => {
                if let Some(first) = seen.insert((p, ip), i) {
                    cx.invalid(
                        &format!("{key}.{}", path.name),
                        ip.to_string(),
                        format!("an address not already used by nodes[{first}] on this path"),
                    );
                    ok = false;
                }
                out.push(ip);
            }
            // Present but refused above: already reported.
            None if given.contains(&path.name.as_str()) => ok = false,
            None => {
                cx.missing(
                    &format!("{key}.{}", path.name),
                    format!("this node's address on heartbeat path {:?}", path.name),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn find_self(cx: &mut Ctx<'_>, nodes: &[Node], name: String, inputs: &Inputs<'_>) -> Option<usize> {
    let names = nodes
        .iter()
        .map(|n| format!("{:?}", n.name))
        .collect::<Vec<_>>()
        .join(", ");
    let (wanted, found) = if name.is_empty() {
        match (inputs.hostname)() {
            Ok(h) => (h.clone(), format!("empty and the hostname is {h:?}")),
            Err(e) => {
                cx.invalid(
                    "cluster.node_name",
                    format!("empty and the hostname cannot be read ({e})"),
                    "this node's name among [[nodes]]",
                );
                return None;
            }
        }
    } else {
        (name.clone(), format!("{name:?}"))
    };
    let idx = nodes.iter().position(|n| n.name == wanted);
    if idx.is_none() {
        cx.invalid(
            "cluster.node_name",
            found,
            format!("this node's name among [[nodes]]: {names}"),
        );
    }
    idx
}

fn check_timers(cx: &mut Ctx<'_>, t: raw::RawTimers) -> Option<Timers> {
    cx.unknown("timers", &t.unknown, raw::TIMERS_KEYS);
    let fmt = duration::format;
    let keepalive = cx
        .need(
            "timers.keepalive",
            &t.keepalive,
            "the heartbeat interval, like 250ms",
        )
        .and_then(|v| cx.duration("timers.keepalive", v));
    let keepalive = keepalive.filter(|k| {
        let ok = !k.is_zero();
        if !ok {
            cx.invalid("timers.keepalive", "\"0s\"", "a duration above 0");
        }
        ok
    });
    let deadtime = cx
        .need(
            "timers.deadtime",
            &t.deadtime,
            "the dead-peer time, like 4s",
        )
        .and_then(|v| cx.duration("timers.deadtime", v));
    // Other timers are still checked against a deadtime that breaks its own rule, so a config
    // with several timer mistakes reports each of them.
    let deadtime_written = deadtime;
    let deadtime = match (keepalive, deadtime) {
        (Some(k), Some(d)) if d <= 2 * k => {
            cx.invalid(
                "timers.deadtime",
                format!("{:?}", fmt(d)),
                format!(
                    "more than 2 x keepalive = {} (keepalive is {})",
                    fmt(2 * k),
                    fmt(k)
                ),
            );
            None
        }
        (_, d) => d,
    };
    let warntime = match present(&t.warntime) {
        Some(v) => {
            cx.duration("timers.warntime", v)
                .and_then(|w| match (keepalive, deadtime_written) {
                    (Some(k), Some(d)) if !(k < w && w < d) => {
                        cx.invalid(
                            "timers.warntime",
                            format!("{:?}", fmt(w)),
                            format!(
                                "strictly between keepalive ({}) and deadtime ({})",
                                fmt(k),
                                fmt(d)
                            ),
                        );
                        None
                    }
                    _ => Some(w),
                })
        }
        None => deadtime.map(|d| d / 2),
    };
    let initdead = match present(&t.initdead) {
        Some(v) => cx
            .duration("timers.initdead", v)
            .and_then(|i| match deadtime_written {
                Some(d) if i < d => {
                    cx.invalid(
                        "timers.initdead",
                        format!("{:?}", fmt(i)),
                        format!("at least deadtime ({})", fmt(d)),
                    );
                    None
                }
                _ => Some(i),
            }),
        None => deadtime.map(|d| 2 * d),
    };
    if let Some(i) = initdead
        && i < INITDEAD_WARN_BELOW
    {
        cx.warn(
                "timers.initdead",
                format!(
                    "is {}: below {}, peers still booting (slow switch ports, STP) may be declared dead at start-up (heartbeat warns too)",
                    fmt(i),
                    fmt(INITDEAD_WARN_BELOW)
                ),
            );
    }
    Some(Timers {
        keepalive: keepalive?,
        warntime: warntime?,
        deadtime: deadtime?,
        initdead: initdead?,
    })
}

fn check_failover(
    cx: &mut Ctx<'_>,
    f: raw::RawFailover,
    paths: Option<&[HeartbeatPath]>,
    nova: Option<&nova::NovaConf>,
) -> Option<Failover> {
    cx.unknown("failover", &f.unknown, raw::FAILOVER_KEYS);
    let auto_failback = match present(&f.auto_failback) {
        None => Some(false),
        Some(v) => cx.boolean("failover.auto_failback", v),
    };

    // VIPs
    let raws = f.vips.unwrap_or_default();
    let mut vips = Vec::new();
    let mut vips_ok = true;
    if raws.is_empty() {
        cx.missing("failover.vips", "at least one VIP, { address = \"10.2.3.120/32\", interface = \"eth1\" } (nova's routing_source_ip)");
        vips_ok = false;
    }
    for (i, v) in raws.into_iter().enumerate() {
        let k = |f: &str| format!("failover.vips[{i}].{f}");
        cx.unknown(&format!("failover.vips[{i}]"), &v.unknown, raw::VIP_KEYS);
        let expected = "an address with its prefix length, like 10.2.3.120/32";
        let address = cx
            .need(&k("address"), &v.address, expected)
            .and_then(|a| cx.string(&k("address"), a, expected))
            .and_then(|s| match s.parse::<IpNet>() {
                Ok(net) => Some(net),
                Err(_) => {
                    cx.invalid(&k("address"), format!("{s:?}"), expected);
                    None
                }
            });
        if let Some(a) = address
            && vips.iter().any(|x: &Vip| x.address.addr() == a.addr())
        {
            cx.invalid(
                &k("address"),
                a.to_string(),
                "an address not already listed in failover.vips",
            );
            vips_ok = false;
        }
        let interface = cx
            .need(
                &k("interface"),
                &v.interface,
                "the interface the VIP goes on",
            )
            .and_then(|a| cx.string(&k("interface"), a, IFNAME_EXPECTED))
            .filter(|s| {
                let good = valid_ifname(s);
                if !good {
                    cx.invalid(&k("interface"), format!("{s:?}"), IFNAME_EXPECTED);
                }
                good
            });
        match (address, interface) {
            (Some(address), Some(interface)) => vips.push(Vip { address, interface }),
            _ => vips_ok = false,
        }
    }

    // Interfaces that a pattern must never match, with the reason.
    let mut protected: Vec<(String, String)> = vec![("lo".into(), "the loopback".into())];
    for p in paths.unwrap_or_default() {
        if let Some(interface) = p.kind.interface() {
            protected.push((
                interface.to_owned(),
                format!("heartbeat path {:?} uses it", p.name),
            ));
        }
    }
    for v in &vips {
        protected.push((v.interface.clone(), format!("VIP {} is on it", v.address)));
    }
    if let Some(n) = nova {
        protected.push((n.public_interface.clone(), "nova's public_interface".into()));
        if let Some(i) = &n.flat_interface {
            protected.push((i.clone(), "nova's flat_interface".into()));
        }
        if let Some(i) = &n.vlan_interface {
            protected.push((i.clone(), "nova's vlan_interface".into()));
        }
    }

    let delete_interfaces = match present(&f.delete_interfaces) {
        None => Some(Vec::new()),
        Some(v) => cx
            .strings("failover.delete_interfaces", v)
            .and_then(|items| {
                let mut ok = true;
                let mut out = Vec::new();
                for (k, s) in items {
                    match check_pattern(&s, &protected) {
                        Ok(p) => out.push(p),
                        Err(expected) => {
                            cx.invalid(&k, format!("{s:?}"), expected);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            }),
    };

    let stop_processes = match present(&f.stop_processes) {
        None => Some(Vec::new()),
        Some(v) => cx.strings("failover.stop_processes", v).and_then(|items| {
            let mut ok = true;
            let mut out = Vec::new();
            for (k, s) in items {
                let p = PathBuf::from(&s);
                if p.is_absolute() && p.file_name().is_some() {
                    out.push(p);
                } else {
                    cx.invalid(&k, format!("{s:?}"), "an absolute executable path, like /usr/sbin/dnsmasq (matched exactly, never by name)");
                    ok = false;
                }
            }
            ok.then_some(out)
        }),
    };

    let key = "failover.nova_network_command";
    let nova_network_command = cx
        .need(key, &f.nova_network_command, "the nova-network command line, like [\"/usr/bin/nova-network\", \"--flagfile={nova_conf}\", \"--host={host}\"]")
        .and_then(|v| cx.strings(key, v))
        .and_then(|items| {
            if items.is_empty() || items[0].1.is_empty() {
                cx.invalid(key, "empty", "a non-empty command line starting with the nova-network executable");
                return None;
            }
            let mut ok = true;
            for (k, s) in &items {
                if let Some(bad) = unknown_placeholder(s) {
                    cx.invalid(k, format!("{s:?}"), format!("only the placeholders {{nova_conf}} and {{host}}, not {{{bad}}}"));
                    ok = false;
                }
            }
            ok.then(|| items.into_iter().map(|(_, s)| s).collect())
        });

    if !vips_ok {
        return None;
    }
    Some(Failover {
        auto_failback: auto_failback?,
        vips,
        delete_interfaces: delete_interfaces?,
        stop_processes: stop_processes?,
        nova_network_command: nova_network_command?,
    })
}

/// A `delete_interfaces` pattern, or what was expected of it.
fn check_pattern(s: &str, protected: &[(String, String)]) -> Result<glob::Pattern, String> {
    if s.trim().is_empty() {
        return Err("a non-empty glob pattern like \"br*\"".into());
    }
    if s == "*" {
        return Err("a pattern narrower than `*`, which would delete every interface".into());
    }
    let p = glob::Pattern::new(s).map_err(|e| format!("a valid glob pattern ({e})"))?;
    if let Some((name, why)) = protected.iter().find(|(n, _)| p.matches(n)) {
        return Err(format!("a pattern that never matches {name} ({why})"));
    }
    Ok(p)
}

/// The first `{name}` in `s` that is not a known placeholder.
fn unknown_placeholder(s: &str) -> Option<String> {
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}')?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Some(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    None
}
