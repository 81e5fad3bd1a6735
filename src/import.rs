//! Import of a Linux-HA heartbeat setup (ha.cf, authkeys, haresources) as our TOML.
//!
//! Owns the reading of heartbeat's three files and the writing of the equivalent
//! `nova-network-ha.toml` text (the schema of `conf/nova-network-ha.toml`), commented with where
//! each value came from and what was assumed. It only reads the given directory (and, when it
//! must know which node it runs on and was not told, the hostname); it never writes a file,
//! never touches the network and never reuses heartbeat's secret.
//!
//! Every problem is collected, not just the first: each error names `ha.cf:<line>`,
//! `authkeys:<line>` or `haresources:<line>`, what was found and what was expected.

mod authkeys;
mod hacf;
mod haresources;
mod render;
mod timers;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use hacf::{At, AutoFailback};

/// Where the key file of the imported configuration lives.
pub const KEY_FILE: &str = "/etc/nova-network-ha/authkeys";

/// The shell command that makes a fresh HMAC-SHA256 key file (never derived from heartbeat's).
pub const KEY_COMMAND: &str = "umask 077; mkdir -p /etc/nova-network-ha; printf 'auth 1\\n1 hmac-sha256 %s\\n' \"$(openssl rand -hex 32)\" > /etc/nova-network-ha/authkeys";

/// Election priority of haresources' preferred node; the others get 100, 99, ... in node order.
pub const PREFERRED_PRIORITY: u8 = 150;

/// One of heartbeat's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    /// `ha.cf`, the cluster configuration.
    HaCf,
    /// `authkeys`, the shared secrets.
    AuthKeys,
    /// `haresources`, the resource group.
    HaResources,
}

impl File {
    /// The file's name in `/etc/ha.d`.
    pub fn name(self) -> &'static str {
        match self {
            File::HaCf => "ha.cf",
            File::AuthKeys => "authkeys",
            File::HaResources => "haresources",
        }
    }
}

/// One reason the import cannot produce a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.name(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ImportError {
    /// The file at fault.
    pub file: File,
    /// Its line (1-based), when one line is at fault.
    pub line: Option<usize>,
    /// What was found and what was expected.
    pub message: String,
}

/// Every error found, in file order (ha.cf, authkeys, haresources, then cross-file checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportErrors(pub Vec<ImportError>);

impl fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ImportErrors {}

/// A successful import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The configuration, in the schema of `conf/nova-network-ha.toml`, with comments.
    pub toml: String,
    /// What was converted, assumed or left behind on purpose.
    pub notes: Vec<String>,
    /// What the operator must check or complete before using the configuration.
    pub warnings: Vec<String>,
}

/// Collected errors, notes and warnings.
#[derive(Debug, Default)]
struct Diag {
    errors: Vec<ImportError>,
    notes: Vec<String>,
    warnings: Vec<String>,
}

fn located(file: File, line: Option<usize>, msg: &str) -> String {
    match line {
        Some(l) => format!("{}:{l}: {msg}", file.name()),
        None => format!("{}: {msg}", file.name()),
    }
}

impl Diag {
    fn error(&mut self, file: File, line: Option<usize>, message: String) {
        self.errors.push(ImportError {
            file,
            line,
            message,
        });
    }
    fn note(&mut self, file: File, line: Option<usize>, msg: String) {
        self.notes.push(located(file, line, &msg));
    }
    fn warn(&mut self, file: File, line: Option<usize>, msg: String) {
        self.warnings.push(located(file, line, &msg));
    }
    fn has_error_for(&self, file: File) -> bool {
        self.errors.iter().any(|e| e.file == file)
    }
}

/// Converts the heartbeat setup in `dir` (usually `/etc/ha.d`) into our TOML.
///
/// `this_node` names the node this ha.cf belongs to; it is needed only when a `ucast` line must
/// be attributed (heartbeat's ha.cf names the peers' addresses, not its own). When `None`, the
/// hostname is used if it is one of the `node` names; otherwise that is an error asking for
/// `--node NAME`.
pub fn import_dir(dir: &Path, this_node: Option<&str>) -> Result<Imported, ImportErrors> {
    let hostname = || {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
    };
    import_with(dir, this_node, &hostname)
}

fn read(dir: &Path, file: File, d: &mut Diag) -> Option<String> {
    let path = dir.join(file.name());
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) => {
            d.error(
                file,
                None,
                format!(
                    "cannot read {}: {e}, expected heartbeat's {} there",
                    path.display(),
                    file.name()
                ),
            );
            None
        }
    }
}

fn import_with(
    dir: &Path,
    this_node: Option<&str>,
    hostname: &dyn Fn() -> Option<String>,
) -> Result<Imported, ImportErrors> {
    let mut d = Diag::default();
    let cf = read(dir, File::HaCf, &mut d).map(|t| hacf::parse(&t, &mut d));
    let keys = read(dir, File::AuthKeys, &mut d).map(|t| authkeys::parse(&t, &mut d));
    check_key_file_mode(dir, &mut d);
    let res = read(dir, File::HaResources, &mut d).map(|t| haresources::parse(&t, &mut d));
    let (Some(cf), Some(keys), Some(res)) = (cf, keys, res) else {
        return Err(ImportErrors(d.errors));
    };
    let plan = plan(&cf, &keys, &res, this_node, hostname, &mut d);
    match plan {
        Some(plan) if d.errors.is_empty() => Ok(Imported {
            toml: render::render(&plan),
            notes: d.notes,
            warnings: d.warnings,
        }),
        _ => Err(ImportErrors(d.errors)),
    }
}

fn check_key_file_mode(dir: &Path, d: &mut Diag) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir.join(File::AuthKeys.name()))
        && meta.permissions().mode() & 0o077 != 0
    {
        d.warn(
            File::AuthKeys,
            None,
            format!(
                "mode {:o} lets group or others read the old secret (heartbeat requires 600); \
                 it is not reused, but treat it as leaked",
                meta.permissions().mode() & 0o777
            ),
        );
    }
}

/// One imported node.
struct NodePlan {
    name: String,
    id: u16,
    priority: u8,
    source: String,
    /// Per path: the address and where it came from, or `None` when the operator must fill it.
    addresses: Vec<Option<(IpAddr, String)>>,
}

/// One imported heartbeat path.
struct PathPlan {
    interface: String,
    port: u16,
    source: String,
}

/// One imported timer: milliseconds and where it came from.
struct Timer {
    ms: u64,
    source: String,
}

/// Everything the TOML is written from.
struct Plan {
    nodes: Vec<NodePlan>,
    paths: Vec<PathPlan>,
    keepalive: Timer,
    warntime: Timer,
    deadtime: Timer,
    initdead: Timer,
    auto_failback: (bool, String),
    vips: Vec<haresources::Vip>,
    key_source: String,
}

fn src<T>(file: File, at: &At<T>) -> String {
    format!("{}:{} \"{}\"", file.name(), at.line, at.text)
}

fn plan(
    cf: &hacf::HaCf,
    keys: &authkeys::AuthKeys,
    res: &haresources::HaResources,
    this_node: Option<&str>,
    hostname: &dyn Fn() -> Option<String>,
    d: &mut Diag,
) -> Option<Plan> {
    let names: Vec<&str> = cf.nodes.iter().map(|n| n.value.as_str()).collect();
    let find = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));

    // Nodes and priorities.
    if names.len() < 2 {
        d.error(
            File::HaCf,
            None,
            format!(
                "found {} node name(s) {names:?}, expected at least two `node` names",
                names.len()
            ),
        );
    } else if names.len() > 100 {
        d.error(
            File::HaCf,
            None,
            format!("found {} nodes, expected at most 100", names.len()),
        );
    }
    let preferred = match &res.preferred {
        Some((name, line)) => match find(name) {
            Some(i) => Some((i, *line)),
            None => {
                d.error(
                    File::HaResources,
                    Some(*line),
                    format!(
                        "found preferred node {name:?}, expected one of ha.cf's nodes {names:?}"
                    ),
                );
                None
            }
        },
        None => None,
    };
    let mut nodes: Vec<NodePlan> = Vec::new();
    let mut next_priority = 100u8;
    for (i, n) in cf.nodes.iter().enumerate() {
        let (priority, why) = match preferred {
            Some((p, line)) if p == i => (
                PREFERRED_PRIORITY,
                format!("preferred node in haresources:{line}"),
            ),
            _ => {
                let p = next_priority;
                next_priority = next_priority.saturating_sub(1);
                (p, "not preferred: 100, 99, ... in node order".to_string())
            }
        };
        nodes.push(NodePlan {
            name: n.value.clone(),
            id: u16::try_from(i + 1).unwrap_or(u16::MAX),
            priority,
            source: format!(
                "{}; id {} by node order, priority {priority} ({why})",
                src(File::HaCf, n),
                i + 1
            ),
            addresses: Vec::new(),
        });
    }

    // Paths and addresses.
    let port = match &cf.udpport {
        Some(p) => (p.value, src(File::HaCf, p)),
        None => {
            d.note(
                File::HaCf,
                None,
                "udpport not set: heartbeat's default 694 is used".to_string(),
            );
            (694, "heartbeat's default udpport".to_string())
        }
    };
    let mut paths: Vec<PathPlan> = Vec::new();
    for u in &cf.ucast {
        if !paths.iter().any(|p| p.interface == u.value.0) {
            paths.push(PathPlan {
                interface: u.value.0.clone(),
                port: port.0,
                source: format!("{}; port from {}", src(File::HaCf, u), port.1),
            });
        }
    }
    if paths.is_empty() {
        d.error(
            File::HaCf,
            None,
            "found no `ucast` line, expected at least one `ucast <interface> <peer address>` \
             (unicast UDP is the heartbeat path nova-network-ha carries over)"
                .to_string(),
        );
    }
    for node in &mut nodes {
        node.addresses = vec![None; paths.len()];
    }
    let mut this: Option<Result<usize, String>> = None;
    let n = nodes.len();
    for (pi, path) in paths.iter().enumerate() {
        let targets: Vec<&At<(String, IpAddr)>> = cf
            .ucast
            .iter()
            .filter(|u| u.value.0 == path.interface)
            .collect();
        if let Some(dup) = targets.iter().enumerate().find_map(|(j, t)| {
            targets[..j]
                .iter()
                .find(|o| o.value.1 == t.value.1)
                .map(|o| (t, o))
        }) {
            d.error(
                File::HaCf,
                Some(dup.0.line),
                format!(
                    "ucast: found {} on {} again, expected each address once (first on line {})",
                    dup.0.value.1, path.interface, dup.1.line
                ),
            );
            continue;
        }
        let hb = format!("hb{pi}");
        let owners: Vec<usize> = if n >= 2 && targets.len() == n {
            if n > 1 {
                d.warn(
                    File::HaCf,
                    Some(targets[0].line),
                    format!(
                        "{} ucast addresses on {} for {n} nodes: assumed they follow the node \
                         order ({}); heartbeat ignored the one to itself, so check each node's \
                         addresses.{hb}",
                        targets.len(),
                        path.interface,
                        nodes
                            .iter()
                            .zip(&targets)
                            .map(|(nd, t)| format!("{} = {}", nd.name, t.value.1))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            (0..n).collect()
        } else if n >= 2 && targets.len() == n - 1 {
            let me = this
                .get_or_insert_with(|| which_node(this_node, hostname, &names))
                .clone();
            match me {
                Err(why) => {
                    d.error(
                        File::HaCf,
                        Some(targets[0].line),
                        format!(
                            "ucast {} {}: cannot tell which node owns this address: {why}",
                            path.interface, targets[0].value.1
                        ),
                    );
                    continue;
                }
                Ok(me) => {
                    let peers: Vec<usize> = (0..n).filter(|&i| i != me).collect();
                    if peers.len() > 1 {
                        d.warn(
                            File::HaCf,
                            Some(targets[0].line),
                            format!(
                                "ucast lines on {} assumed to follow the node order of the peers \
                                 of {}; check each node's addresses.{hb}",
                                path.interface, nodes[me].name
                            ),
                        );
                    }
                    d.warn(
                        File::HaCf,
                        None,
                        format!(
                            "FILL IN: {}'s own address on {} ({hb}) is not in this ha.cf, which \
                             names only the addresses heartbeat sends to; add it to that node's \
                             addresses (the peer's ha.cf has it as its ucast address)",
                            nodes[me].name, path.interface
                        ),
                    );
                    peers
                }
            }
        } else {
            if n >= 2 {
                d.error(
                    File::HaCf,
                    Some(targets[0].line),
                    format!(
                        "ucast: found {} addresses on {} for {n} nodes, expected one per peer \
                         ({}) or one per node ({n})",
                        targets.len(),
                        path.interface,
                        n - 1
                    ),
                );
            }
            continue;
        };
        for (owner, t) in owners.into_iter().zip(&targets) {
            nodes[owner].addresses[pi] = Some((t.value.1, src(File::HaCf, t)));
        }
    }

    let [keepalive, warntime, deadtime, initdead] = timers::plan(cf, d);

    // auto_failback.
    let auto_failback = match (&cf.auto_failback, &cf.nice_failback) {
        (Some(at), _) => {
            let on = match at.value {
                AutoFailback::On => true,
                AutoFailback::Off => false,
                AutoFailback::Legacy => {
                    d.note(
                        File::HaCf,
                        Some(at.line),
                        "auto_failback legacy: heartbeat failed back (as `on`) when every node \
                         supported it; written as true"
                            .to_string(),
                    );
                    true
                }
            };
            (on, src(File::HaCf, at))
        }
        (None, Some(nice)) => {
            d.note(
                File::HaCf,
                Some(nice.line),
                "nice_failback is heartbeat's old, inverted auto_failback".to_string(),
            );
            (!nice.value, src(File::HaCf, nice))
        }
        (None, None) => {
            d.warn(
                File::HaCf,
                None,
                "auto_failback not set: heartbeat then used `legacy` (fail back); written as \
                 true, set it to false to keep the service where it is after a failover"
                    .to_string(),
            );
            (true, "not in ha.cf: heartbeat's legacy default".to_string())
        }
    };

    // Key: never reused.
    let key_source = match &keys.active {
        Some((id, method)) => {
            d.note(
                File::AuthKeys,
                None,
                format!(
                    "heartbeat's key {id} ({method}) is not reused: nova-network-ha signs with \
                     HMAC-SHA256 and a secret of at least 32 random bytes. Make a new key file \
                     on one node, then copy it to the others: {KEY_COMMAND}"
                ),
            );
            format!("heartbeat's authkeys used key {id} ({method}); its secret is NOT reused")
        }
        None => String::new(),
    };

    d.note(
        File::HaResources,
        None,
        "failover.delete_interfaces, stop_processes and nova_network_command are the example's \
         defaults, which do what the seed's nova-network script did (killall dnsmasq radvd, \
         clean-vlans, start nova-network with --flagfile=/etc/nova/nova.conf)"
            .to_string(),
    );
    d.note(
        File::HaCf,
        None,
        "assumed: cluster.name \"nova-network\", cluster.id 1, nova.conf at /etc/nova/nova.conf \
         (its --host must be the same on every node), state.dir /var/lib/nova-network-ha"
            .to_string(),
    );

    if !d.errors.is_empty() {
        return None;
    }
    Some(Plan {
        nodes,
        paths,
        keepalive,
        warntime,
        deadtime,
        initdead,
        auto_failback,
        vips: res.vips.clone(),
        key_source,
    })
}

/// The index of the node this ha.cf belongs to, or why it is unknown.
fn which_node(
    this_node: Option<&str>,
    hostname: &dyn Fn() -> Option<String>,
    names: &[&str],
) -> Result<usize, String> {
    let find = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
    match this_node {
        Some(name) => find(name)
            .ok_or_else(|| format!("--node {name:?} is not one of the `node` names {names:?}")),
        None => match hostname() {
            Some(h) => find(&h).ok_or_else(|| {
                format!(
                    "the hostname {h:?} is not one of the `node` names {names:?}; pass \
                     --node NAME to say which node this ha.cf comes from"
                )
            }),
            None => Err(
                "the hostname is unknown; pass --node NAME to say which node this ha.cf \
                 comes from"
                    .to_string(),
            ),
        },
    }
}

/// A duration as our configuration writes it: `4s` when whole seconds, else `250ms`.
fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests;
