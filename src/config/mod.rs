//! Configuration: the TOML file (plus `NOVA_NETWORK_HA__SECTION__KEY` environment overrides),
//! the key file and nova.conf, loaded and validated into [`Config`].
//!
//! Flow: [`source`] merges the file and the environment with the `config` crate and records
//! each key's line; [`raw`] is the loose serde shape; [`validate`] converts and checks every
//! value, reading the key file ([`keyfile`]) and nova.conf ([`nova`]), and collects every
//! mistake into [`ConfigErrors`]; [`plan`] renders what a node would do, for `check-config`.
//! Relative paths in the file resolve against the file's directory. Owns no runtime state and
//! never touches interfaces, processes or sockets.

pub mod duration;
pub mod error;
pub mod keyfile;
pub mod nova;
pub mod plan;
pub mod raw;
pub mod source;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::cluster::{ClusterConfig, Member, NodeId, PathId, RespawnPolicy, Timers};
use crate::wire::Keyring;

pub use error::{ConfigError, ConfigErrors, Location, Origin};
pub use nova::NovaConf;
pub use plan::render_plan;
pub use validate::DEFAULT_ADMIN_SOCKET;

/// A member of the pool, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name (`uname -n` on that server).
    pub name: String,
    /// Its id in heartbeats.
    pub id: NodeId,
    /// Its election priority (distinct across the pool).
    pub priority: u8,
    /// Its address on each heartbeat path, indexed by [`PathId`].
    pub addresses: Vec<IpAddr>,
}

impl Node {
    /// Its address on `path`, the destination of unicast heartbeats to it.
    pub fn address(&self, path: PathId) -> Option<IpAddr> {
        self.addresses.get(usize::from(path.0)).copied()
    }
}

/// How heartbeats travel on a path; an enum so broadcast, multicast or serial can be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathKind {
    /// Unicast UDP to each peer's address on this path (heartbeat's `ucast`).
    Udp {
        /// Interface to send and receive on.
        interface: String,
        /// UDP port.
        port: u16,
    },
}

impl PathKind {
    /// The interface the path uses, if it has one (never to be deleted by takeover).
    pub fn interface(&self) -> Option<&str> {
        match self {
            PathKind::Udp { interface, .. } => Some(interface),
        }
    }
}

/// A heartbeat path; its index in [`Config::paths`] is its [`PathId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatPath {
    /// Its name, the key in each node's addresses.
    pub name: String,
    /// How it carries heartbeats.
    pub kind: PathKind,
}

/// A virtual IP that moves with the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// Address and prefix length, as `ip addr add` takes it.
    pub address: IpNet,
    /// Interface it goes on.
    pub interface: String,
}

/// What takeover and release act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// Whether a returning higher-priority node takes the service back.
    pub auto_failback: bool,
    /// The VIPs; nova's routing_source_ip is one of them.
    pub vips: Vec<Vip>,
    /// Interfaces (nova's bridges and VLANs) that may be deleted; checked never to match `lo`,
    /// a heartbeat path, a VIP's interface or nova's public/flat/vlan interface.
    pub delete_interfaces: Vec<glob::Pattern>,
    /// Executables that may be stopped, matched exactly (absolute paths).
    pub stop_processes: Vec<PathBuf>,
    /// nova-network's command line, with `{nova_conf}` and `{host}` placeholders.
    pub nova_network_command: Vec<String>,
}

/// How the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// The status socket (`status`, `takeover`, `standby` talk to it); mode 0600.
    pub admin_socket: PathBuf,
    /// nova-network exits tolerated (restarted in place) before the node fails over.
    pub respawn_budget: u32,
    /// Time nova-network gets between SIGTERM and SIGKILL.
    pub nova_stop_grace: Duration,
}

/// The warm standby: the active streams nova's network state to its peers, which apply it at
/// takeover before nova-network starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mirror {
    /// TCP port of the mirror stream (each node listens on its heartbeat paths' addresses).
    pub port: u16,
    /// The active confirms the standby's snapshot this often (a new one on every change).
    pub refresh: Duration,
    /// A snapshot not confirmed for longer is stale: not applied at takeover.
    pub max_age: Duration,
    /// How often the active checks iptables for a change (netfilter's generation number).
    pub iptables_check: Duration,
}

/// Gratuitous ARP / unsolicited NA for moved addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// Announcements per address in a burst (request and reply form each).
    pub count: u32,
    /// Interval between announcements of a burst.
    pub interval: Duration,
    /// A second burst this long after the first, for neighbours that missed it.
    pub repeat_after: Option<Duration>,
}

/// Local health probes beyond the nova-network process itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probes {
    /// A managed link (public interface, VIP interfaces) going down is a local failure.
    pub watch_links: bool,
    /// A log file watched for fatal lines (the seed's "syslog has reported any fatal error").
    pub log_file: Option<PathBuf>,
    /// Regular expressions (checked to compile) of fatal lines in `log_file`.
    pub fatal_patterns: Vec<String>,
}

/// A secret read from a file or the environment; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// CA certificates for the broker's TLS, read once when the configuration is loaded so a
/// missing or unreadable file is a configuration error, not a reconnect loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    /// Where they came from.
    pub path: PathBuf,
    /// The PEM text (one or more `CERTIFICATE` blocks).
    pub pem: String,
    /// How many certificates it holds.
    pub certificates: usize,
}

/// nova's RabbitMQ: the queue probe, alerts, and heartbeats through the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bus {
    /// `amqp://user@host:port/vhost` or `amqps://...` (TLS); no password inside.
    pub url: String,
    /// The password, from `password_file` or `NOVA_NETWORK_HA_BUS_PASSWORD`.
    pub password: Option<Secret>,
    /// For `amqps://`: a PEM file of CA certificates trusted besides the system's (a
    /// broker with its own CA), with its text as read at load time.
    pub ca: Option<CaFile>,
    /// Topic exchange the alerts are published on.
    pub exchange: String,
    /// How often `network.<host>` is sampled.
    pub queue_interval: Duration,
    /// No consumer on the queue for this long after nova-network started: it is failing.
    pub consumer_grace: Duration,
    /// A backlog growing for this long while a consumer is attached: nova-network is hung.
    pub backlog_window: Duration,
    /// Alerts kept while the broker is away (the oldest are dropped and counted).
    pub alert_buffer: usize,
    /// Heartbeats also go through the broker (a fanout exchange): one more path.
    pub heartbeat_path: bool,
}

/// The validated configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file it was read from.
    pub file: PathBuf,
    /// Pool name, used in alert routing keys.
    pub cluster_name: String,
    /// Cluster id carried in heartbeats.
    pub cluster_id: u32,
    /// Index of this node in `nodes`.
    pub this: usize,
    /// Every node, this one included.
    pub nodes: Vec<Node>,
    /// Heartbeat paths, indexed by [`PathId`].
    pub paths: Vec<HeartbeatPath>,
    /// Heartbeat timers.
    pub timers: Timers,
    /// The key file (absolute or relative to the config's directory).
    pub key_file: PathBuf,
    /// The keys read from it.
    pub keyring: Keyring,
    /// Takeover and release settings.
    pub failover: Failover,
    /// nova.conf, parsed (its path is `nova.path`).
    pub nova: NovaConf,
    /// Where the boot generation and other local state are kept.
    pub state_dir: PathBuf,
    /// How the daemon runs.
    pub daemon: Daemon,
    /// Address announcements.
    pub announce: Announce,
    /// Local health probes.
    pub probes: Probes,
    /// nova's RabbitMQ, if configured.
    pub bus: Option<Bus>,
    /// The warm standby's mirror, unless switched off.
    pub mirror: Option<Mirror>,
}

impl Config {
    /// This node.
    pub fn this_node(&self) -> &Node {
        &self.nodes[self.this]
    }

    /// The other nodes of the pool.
    pub fn peers(&self) -> impl Iterator<Item = &Node> {
        let this = self.this;
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != this)
            .map(|(_, n)| n)
    }

    /// A node's name (`node N` for an id not in the pool), for logs.
    pub fn node_name(&self, id: NodeId) -> String {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .map_or_else(|| format!("node {}", id.0), |n| n.name.clone())
    }

    /// What the state machine needs; path ids are indexes into `paths`.
    pub fn cluster_config(&self) -> ClusterConfig {
        ClusterConfig {
            me: self.this_node().id,
            members: self
                .nodes
                .iter()
                .map(|n| Member {
                    id: n.id,
                    name: n.name.clone(),
                    priority: n.priority,
                })
                .collect(),
            // Validation caps paths at 255.
            paths: u8::try_from(self.paths.len()).unwrap_or(u8::MAX),
            timers: self.timers,
            auto_failback: self.failover.auto_failback,
            path_names: self.paths.iter().map(|p| p.name.clone()).collect(),
            respawn: RespawnPolicy {
                budget: self.daemon.respawn_budget,
                ..RespawnPolicy::default()
            },
        }
    }

    /// The nova-network command line with `{nova_conf}` and `{host}` filled in.
    pub fn nova_network_command(&self) -> Vec<String> {
        let conf = self.nova.path.display().to_string();
        self.failover
            .nova_network_command
            .iter()
            .map(|a| {
                a.replace("{nova_conf}", &conf)
                    .replace("{host}", &self.nova.host)
            })
            .collect()
    }
}

/// A validated configuration and the warnings to log (heartbeat-style: accepted, but risky).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings, each naming file, key and why.
    pub warnings: Vec<String>,
}

/// What [`load_with`] takes from the caller instead of the system, for tests.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// This node's hostname (used when `cluster.node_name` is empty); `None` reads it.
    pub hostname: Option<String>,
    /// Environment variables; `None` uses the process environment.
    pub env: Option<HashMap<String, String>>,
}

/// Load, merge with the process environment, and validate the config at `path`, reading the
/// key file and nova.conf it names. Every error is returned, not only the first.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_with(path, &Options::default())
}

/// [`load`] with the hostname and environment given.
pub fn load_with(path: &Path, options: &Options) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    let env = match &options.env {
        Some(env) => env.clone(),
        None => std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
    };
    let (raw, origins) = source::merge(path, &text, &env).map_err(ConfigErrors)?;
    let hostname = || -> Result<String, String> {
        match &options.hostname {
            Some(h) => Ok(h.clone()),
            None => nix::unistd::gethostname()
                .map_err(|e| e.to_string())?
                .into_string()
                .map_err(|h| format!("{h:?} is not UTF-8")),
        }
    };
    let bus_password = || env.get(validate::BUS_PASSWORD_ENV).cloned();
    let inputs = validate::Inputs {
        hostname: &hostname,
        env_password: &bus_password,
    };
    let (config, warnings) = validate::validate(raw, &origins, &inputs).map_err(ConfigErrors)?;
    Ok(Loaded { config, warnings })
}
