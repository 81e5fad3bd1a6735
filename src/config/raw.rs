//! The raw shape of the config file, as serde reads it from the merged sources.
//!
//! Sections and lists of tables are typed; every leaf is a loose [`Value`] so that one bad
//! value does not stop the read: `validate` converts each leaf and reports every mistake.
//! Unknown keys are captured (not denied at the first) so all of them are reported.

use std::collections::BTreeMap;

use config::Value;
use serde::Deserialize;

/// Keys not in the schema, collected to be reported.
pub type Unknown = BTreeMap<String, Value>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    /// `[cluster]`.
    pub cluster: Option<RawCluster>,
    /// `[[nodes]]`.
    pub nodes: Option<Vec<RawNode>>,
    /// `[[paths]]`.
    pub paths: Option<Vec<RawPath>>,
    /// `[timers]`.
    pub timers: Option<RawTimers>,
    /// `[auth]`.
    pub auth: Option<RawAuth>,
    /// `[failover]`.
    pub failover: Option<RawFailover>,
    /// `[nova]`.
    pub nova: Option<RawNova>,
    /// `[state]`.
    pub state: Option<RawState>,
    /// `[daemon]`.
    pub daemon: Option<RawDaemon>,
    /// `[announce]`.
    pub announce: Option<RawAnnounce>,
    /// `[probes]`.
    pub probes: Option<RawProbes>,
    /// `[bus]`.
    pub bus: Option<RawBus>,
    /// `[mirror]`.
    pub mirror: Option<RawMirror>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Top-level keys, for "expected one of".
pub const TOP_KEYS: &str = "cluster, nodes, paths, timers, auth, failover, nova, state, daemon, announce, probes, bus, mirror";

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawCluster {
    /// Pool name.
    pub name: Option<Value>,
    /// Cluster id.
    pub id: Option<Value>,
    /// This node's name, or empty for the hostname.
    pub node_name: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[cluster]` keys.
pub const CLUSTER_KEYS: &str = "name, id, node_name";

/// One `[[nodes]]` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawNode {
    /// Node name.
    pub name: Option<Value>,
    /// Node id.
    pub id: Option<Value>,
    /// Election priority.
    pub priority: Option<Value>,
    /// Path name -> address.
    pub addresses: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[[nodes]]` keys.
pub const NODE_KEYS: &str = "name, id, priority, addresses";

/// One `[[paths]]` entry; the keys after `kind` depend on the kind.
#[derive(Debug, Default, Deserialize)]
pub struct RawPath {
    /// Path name.
    pub name: Option<Value>,
    /// Path kind (`udp`).
    pub kind: Option<Value>,
    /// udp: interface.
    pub interface: Option<Value>,
    /// udp: port.
    pub port: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[[paths]]` keys for kind udp.
pub const UDP_PATH_KEYS: &str = "name, kind, interface, port";

/// `[timers]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawTimers {
    /// Heartbeat interval.
    pub keepalive: Option<Value>,
    /// Late heartbeat warning.
    pub warntime: Option<Value>,
    /// Dead peer.
    pub deadtime: Option<Value>,
    /// Start-up grace.
    pub initdead: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[timers]` keys.
pub const TIMERS_KEYS: &str = "keepalive, warntime, deadtime, initdead";

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAuth {
    /// authkeys-like file.
    pub key_file: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[auth]` keys.
pub const AUTH_KEYS: &str = "key_file";

/// `[failover]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawFailover {
    /// Take the service back on return.
    pub auto_failback: Option<Value>,
    /// Virtual IPs.
    pub vips: Option<Vec<RawVip>>,
    /// Interface globs that may be deleted.
    pub delete_interfaces: Option<Value>,
    /// Executables that may be stopped.
    pub stop_processes: Option<Value>,
    /// nova-network command line.
    pub nova_network_command: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[failover]` keys.
pub const FAILOVER_KEYS: &str =
    "auto_failback, vips, delete_interfaces, stop_processes, nova_network_command";

/// One `failover.vips` entry.
#[derive(Debug, Default, Deserialize)]
pub struct RawVip {
    /// CIDR address.
    pub address: Option<Value>,
    /// Interface it goes on.
    pub interface: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `failover.vips[]` keys.
pub const VIP_KEYS: &str = "address, interface";

/// `[nova]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawNova {
    /// nova.conf path.
    pub conf: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[nova]` keys.
pub const NOVA_KEYS: &str = "conf";

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawState {
    /// State directory.
    pub dir: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[state]` keys.
pub const STATE_KEYS: &str = "dir";

/// `[daemon]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawDaemon {
    /// The status socket.
    pub admin_socket: Option<Value>,
    /// How many times nova-network may be restarted in place before failing over.
    pub respawn_budget: Option<Value>,
    /// How long nova-network gets between SIGTERM and SIGKILL.
    pub nova_stop_grace: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[daemon]` keys.
pub const DAEMON_KEYS: &str = "admin_socket, respawn_budget, nova_stop_grace";

/// `[announce]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAnnounce {
    /// Gratuitous ARPs / NAs per address in a burst.
    pub count: Option<Value>,
    /// Interval between them.
    pub interval: Option<Value>,
    /// When to send the second burst ("0s": none).
    pub repeat_after: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[mirror]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawMirror {
    /// Keep a mirror of nova's network state on the standby.
    pub enabled: Option<Value>,
    /// TCP port of the mirror stream, on the heartbeat paths' addresses.
    pub port: Option<Value>,
    /// How often the active confirms that the standby's snapshot is current.
    pub refresh: Option<Value>,
    /// A snapshot not confirmed for this long is not used.
    pub max_age: Option<Value>,
    /// Interval of the iptables change check.
    pub iptables_check: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[mirror]` keys.
pub const MIRROR_KEYS: &str = "enabled, port, refresh, max_age, iptables_check";

/// `[announce]` keys.
pub const ANNOUNCE_KEYS: &str = "count, interval, repeat_after";

/// `[probes]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawProbes {
    /// Whether a managed link going down is a local failure.
    pub watch_links: Option<Value>,
    /// A log file to watch for fatal lines.
    pub log_file: Option<Value>,
    /// Regular expressions of fatal lines.
    pub fatal_patterns: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[probes]` keys.
pub const PROBES_KEYS: &str = "watch_links, log_file, fatal_patterns";

/// `[bus]`.
#[derive(Debug, Default, Deserialize)]
pub struct RawBus {
    /// AMQP URL ("" disables the bus).
    pub url: Option<Value>,
    /// File holding the password.
    pub password_file: Option<Value>,
    /// PEM file of CA certificates trusted for `amqps://`.
    pub ca_file: Option<Value>,
    /// Topic exchange of the alerts.
    pub exchange: Option<Value>,
    /// Interval of the queue probe.
    pub queue_interval: Option<Value>,
    /// Time without a consumer before nova-network is failing.
    pub consumer_grace: Option<Value>,
    /// Time a growing backlog is tolerated.
    pub backlog_window: Option<Value>,
    /// Alerts kept while the broker is away.
    pub alert_buffer: Option<Value>,
    /// Heartbeats through the broker too.
    pub heartbeat_path: Option<Value>,
    /// Anything else.
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// `[bus]` keys.
pub const BUS_KEYS: &str = "url, password_file, ca_file, exchange, queue_interval, consumer_grace, backlog_window, alert_buffer, heartbeat_path";
