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
use crate::cluster::{NodeId, Timers, timers};

mod bus;
mod failover;
mod pool;
mod sections;

pub use bus::BUS_PASSWORD_ENV;
use bus::check_bus;
use failover::check_failover;
use pool::{check_nodes, check_paths, check_timers, find_self};
pub use sections::DEFAULT_MIRROR_PORT;
use sections::{check_announce, check_daemon, check_mirror, check_probes};

/// Default pool name.
pub const DEFAULT_CLUSTER_NAME: &str = "nova-network";
/// Default nova.conf.
pub const DEFAULT_NOVA_CONF: &str = "/etc/nova/nova.conf";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nova-network-ha";
/// Default status socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/nova-network-ha/admin.sock";
/// Default grace between SIGTERM and SIGKILL for nova-network.
pub const DEFAULT_NOVA_STOP_GRACE: Duration = Duration::from_secs(5);
/// Default announcements per address in a burst.
pub const DEFAULT_ANNOUNCE_COUNT: u32 = 3;
/// Default delay of the second announcement burst.
pub const DEFAULT_ANNOUNCE_REPEAT: Duration = Duration::from_secs(1);
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
        if let Some(w) = n.metadata_host_warning(&vips) {
            cx.warnings.push(w);
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

fn push_nova(cx: &mut Ctx<'_>, errs: Vec<nova::NovaConfError>) {
    for source in errs {
        cx.errors.push(ConfigError::Nova {
            at: cx.origins.at("nova.conf"),
            key: "nova.conf".into(),
            source,
        });
    }
}
