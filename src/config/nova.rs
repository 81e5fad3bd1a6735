//! nova.conf: the flags nova-network will run with, read so that takeover and release act on
//! the same interfaces, bridges and addresses, and so the standby shares nova's `host`.
//!
//! Two forms, detected by the first line that is neither blank nor a comment:
//! - flagfile (what the seed uses): `--key=value`, boolean `--flag` / `--noflag`, nested
//!   `--flagfile=PATH` (followed, relative to the including file's directory), `#` comments;
//! - ini (oslo.config): a `[section]` header first, `key = value` (or `key: value`) lines,
//!   `#`/`;` comments; only `[DEFAULT]` is read, other sections are skipped.
//!
//! `$name` / `${name}` in values are replaced by other flags (nova's `$state_path`, `$my_ip`).
//! The last definition of a flag wins, as in nova. Owns parsing only; never touches the system.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// How deep `--flagfile` may nest before we call it a loop.
const MAX_DEPTH: usize = 8;
/// nova's default `state_path` on packaged installs.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/nova";
/// nova's default `public_interface`.
pub const DEFAULT_PUBLIC_INTERFACE: &str = "eth0";
/// nova's default `networks_path`.
pub const DEFAULT_NETWORKS_PATH: &str = "$state_path/networks";
/// nova's default `network_manager`.
pub const DEFAULT_NETWORK_MANAGER: &str = "nova.network.manager.VlanManager";

/// Why nova.conf is refused.
#[derive(Debug, thiserror::Error)]
pub enum NovaConfError {
    /// It (or a nested flagfile) cannot be read.
    #[error("{}: cannot read nova.conf: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line that is not a flag, a section header, a setting or a comment.
    #[error("{}:{line}: found {found:?}, expected {expected}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The line's text.
        found: String,
        /// What the form allows.
        expected: String,
    },
    /// A flag with a value of the wrong kind (a bad IP address, ...).
    #[error("{}:{line}: `{key}` is {found:?} (expected {expected})", file.display())]
    Value {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The flag.
        key: String,
        /// Its value.
        found: String,
        /// What it should be.
        expected: String,
    },
    /// `--flagfile` nests too deep or includes itself.
    #[error("{}:{line}: --flagfile={} nests more than {MAX_DEPTH} levels or loops (expected a finite chain of flagfiles)", file.display(), target.display())]
    FlagfileLoop {
        /// The including file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The included file.
        target: PathBuf,
    },
    /// No `host`: nova would use this server's hostname, so the standby would consume another
    /// queue than the active one.
    #[error("{}: no `host` flag (expected --host=<shared name> or `host = <shared name>` in [DEFAULT]: the standby must run nova-network with the same host so it consumes the same network.<host> queue)", file.display())]
    MissingHost {
        /// The file.
        file: PathBuf,
    },
    /// No `routing_source_ip`: nova would SNAT with `my_ip`, an address of this server that
    /// cannot move with the service.
    #[error("{}: no `routing_source_ip` flag (expected it set to one of the VIPs {vips}: otherwise nova SNATs with my_ip, this server's own address)", file.display())]
    MissingRoutingSourceIp {
        /// The file.
        file: PathBuf,
        /// The configured VIPs.
        vips: String,
    },
    /// `routing_source_ip` is not a VIP, so it would not move to the standby.
    #[error("{}:{line}: `routing_source_ip` is {ip} (expected one of the VIPs {vips}, so it moves with the service)", file.display())]
    RoutingNotVip {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The address.
        ip: IpAddr,
        /// The configured VIPs.
        vips: String,
    },
}

/// Which syntax a nova.conf is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NovaForm {
    /// `--key=value` lines (nova up to Essex).
    Flagfile,
    /// oslo.config ini with `[DEFAULT]`.
    Ini,
}

/// One flag as written, with where it was written (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The value as written (before `$name` substitution).
    pub value: String,
    /// The file it was read from (nova.conf or a nested flagfile).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

/// What we need from nova.conf, with nova's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NovaConf {
    /// The nova.conf path.
    pub path: PathBuf,
    /// Its form.
    pub form: NovaForm,
    /// nova's `host`: the `network.<host>` queue both servers consume.
    pub host: String,
    /// The SNAT address (must be a VIP); `None` when not set.
    pub routing_source_ip: Option<IpAddr>,
    /// Where floating IPs are bound (nova default `eth0`).
    pub public_interface: String,
    /// FlatManager / FlatDHCP interface bridged to VMs.
    pub flat_interface: Option<String>,
    /// FlatManager bridge name.
    pub flat_network_bridge: Option<String>,
    /// VlanManager parent interface.
    pub vlan_interface: Option<String>,
    /// nova's `state_path` (default `/var/lib/nova`).
    pub state_path: PathBuf,
    /// Where dnsmasq/radvd files live (default `$state_path/networks`).
    pub networks_path: PathBuf,
    /// VM address range, when set.
    pub fixed_range: Option<IpNet>,
    /// Floating address range, when set.
    pub floating_range: Option<IpNet>,
    /// nova's `dhcpbridge` helper, when set.
    pub dhcpbridge: Option<String>,
    /// Whether IPv6 (radvd) is used.
    pub use_ipv6: bool,
    /// The network manager class (default VlanManager).
    pub network_manager: String,
    /// This server's address as nova sees it, when set.
    pub my_ip: Option<IpAddr>,
    /// Where nova's metadata forward (169.254.169.254:80) sends the VMs, as written; nova's
    /// default is `$my_ip`, this server's own address.
    pub metadata_host: Option<String>,
    /// Every flag read, by name (the last definition wins).
    pub raw: BTreeMap<String, Flag>,
}

impl NovaConf {
    /// The flag `key` as written, if set.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        self.raw.get(key)
    }

    /// Why the VMs' metadata would stop answering after a failover, if it would: nova's
    /// metadata forward DNATs 169.254.169.254 to `metadata_host`, and when that is this
    /// server's own address (nova's default, `$my_ip`), it is gone with this server. `None`
    /// when it names a VIP or another host. The text starts with where it was read.
    pub fn metadata_host_warning(&self, vips: &[IpAddr]) -> Option<String> {
        let vip_list = vips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let advice = format!(
            "after a failover the VMs' metadata (169.254.169.254) would go to the server that is down: set metadata_host to a VIP ({vip_list}) and run the metadata service on every network server, or to a host that is not one of them"
        );
        match (&self.metadata_host, self.flag("metadata_host")) {
            (None, _) => Some(format!(
                "{}: nova's `metadata_host` is not set, so nova uses my_ip ({}), this server's own address: {advice}",
                self.path.display(),
                self.my_ip
                    .map_or_else(|| "not set either".to_owned(), |ip| ip.to_string())
            )),
            (Some(host), Some(flag)) => {
                let ip = host.parse::<IpAddr>().ok()?;
                (Some(ip) == self.my_ip && !vips.contains(&ip)).then(|| {
                    format!(
                        "{}:{}: nova's `metadata_host` {ip} is my_ip, this server's own address: {advice}",
                        flag.file.display(),
                        flag.line
                    )
                })
            }
            (Some(_), None) => None,
        }
    }

    /// Check that `routing_source_ip` is set and is one of `vips`.
    pub fn check_routing_source_ip(&self, vips: &[IpAddr]) -> Result<(), NovaConfError> {
        let list = format!(
            "[{}]",
            vips.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        match self.routing_source_ip {
            None => Err(NovaConfError::MissingRoutingSourceIp {
                file: self.path.clone(),
                vips: list,
            }),
            Some(ip) if vips.contains(&ip) => Ok(()),
            Some(ip) => {
                let (file, line) = self
                    .flag("routing_source_ip")
                    .map_or((self.path.clone(), 0), |f| (f.file.clone(), f.line));
                Err(NovaConfError::RoutingNotVip {
                    file,
                    line,
                    ip,
                    vips: list,
                })
            }
        }
    }
}

/// Read and parse nova.conf at `path` (following nested flagfiles); every error is reported.
pub fn load(path: &Path) -> Result<NovaConf, Vec<NovaConfError>> {
    let mut raw = BTreeMap::new();
    let mut errors = Vec::new();
    let text = std::fs::read_to_string(path).map_err(|source| {
        vec![NovaConfError::Read {
            file: path.to_owned(),
            source,
        }]
    })?;
    let mut stack = vec![path.to_owned()];
    let form = read_text(path, &text, &mut stack, &mut raw, &mut errors);
    let conf = extract(path, form, raw, &mut errors);
    match conf {
        Some(conf) if errors.is_empty() => Ok(conf),
        _ => Err(errors),
    }
}

/// Parse nova.conf text already read (nested flagfiles are still read from disk).
pub fn parse(path: &Path, text: &str) -> Result<NovaConf, Vec<NovaConfError>> {
    let mut raw = BTreeMap::new();
    let mut errors = Vec::new();
    let mut stack = vec![path.to_owned()];
    let form = read_text(path, text, &mut stack, &mut raw, &mut errors);
    match extract(path, form, raw, &mut errors) {
        Some(conf) if errors.is_empty() => Ok(conf),
        _ => Err(errors),
    }
}

fn significant(line: &str, form: NovaForm) -> Option<&str> {
    let t = line.trim();
    let comment = match form {
        NovaForm::Flagfile => t.starts_with('#'),
        NovaForm::Ini => t.starts_with('#') || t.starts_with(';'),
    };
    (!t.is_empty() && !comment).then_some(t)
}

fn detect(text: &str) -> NovaForm {
    let first = text.lines().find_map(|l| significant(l, NovaForm::Ini));
    match first {
        Some(l) if l.starts_with('[') => NovaForm::Ini,
        _ => NovaForm::Flagfile,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn read_text(
    file: &Path,
    text: &str,
    stack: &mut Vec<PathBuf>,
    raw: &mut BTreeMap<String, Flag>,
    errors: &mut Vec<NovaConfError>,
) -> NovaForm {
    let form = detect(text);
    match form {
        NovaForm::Flagfile => read_flagfile(file, text, stack, raw, errors),
        NovaForm::Ini => read_ini(file, text, raw, errors),
    }
    form
}

fn read_flagfile(
    file: &Path,
    text: &str,
    stack: &mut Vec<PathBuf>,
    raw: &mut BTreeMap<String, Flag>,
    errors: &mut Vec<NovaConfError>,
) {
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        let Some(t) = significant(l, NovaForm::Flagfile) else {
            continue;
        };
        let syntax = |found: &str| NovaConfError::Syntax {
            file: file.to_owned(),
            line,
            found: found.to_owned(),
            expected: "`--key=value`, `--flag`, `--noflag` or a `#` comment (flagfile form)".into(),
        };
        let Some(flag) = t.strip_prefix("--") else {
            errors.push(syntax(t));
            continue;
        };
        let (key, value) = match flag.split_once('=') {
            Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
            None => match flag.strip_prefix("no") {
                Some(k) if !k.is_empty() => (k.to_owned(), "false".to_owned()),
                _ => (flag.to_owned(), "true".to_owned()),
            },
        };
        if !valid_name(&key) {
            errors.push(syntax(t));
            continue;
        }
        if key == "flagfile" {
            include(file, line, &value, stack, raw, errors);
            continue;
        }
        raw.insert(
            key,
            Flag {
                value,
                file: file.to_owned(),
                line,
            },
        );
    }
}

fn include(
    file: &Path,
    line: usize,
    value: &str,
    stack: &mut Vec<PathBuf>,
    raw: &mut BTreeMap<String, Flag>,
    errors: &mut Vec<NovaConfError>,
) {
    let target = match file.parent() {
        Some(dir) => dir.join(value),
        None => PathBuf::from(value),
    };
    if stack.len() >= MAX_DEPTH || stack.contains(&target) {
        errors.push(NovaConfError::FlagfileLoop {
            file: file.to_owned(),
            line,
            target,
        });
        return;
    }
    match std::fs::read_to_string(&target) {
        Ok(text) => {
            stack.push(target.clone());
            read_text(&target, &text, stack, raw, errors);
            stack.pop();
        }
        Err(source) => errors.push(NovaConfError::Read {
            file: target,
            source,
        }),
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn read_ini(
    file: &Path,
    text: &str,
    raw: &mut BTreeMap<String, Flag>,
    errors: &mut Vec<NovaConfError>,
) {
    let mut section: Option<String> = None;
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        let Some(t) = significant(l, NovaForm::Ini) else {
            continue;
        };
        let syntax = |expected: &str| NovaConfError::Syntax {
            file: file.to_owned(),
            line,
            found: t.to_owned(),
            expected: expected.to_owned(),
        };
        if let Some(name) = t.strip_prefix('[') {
            match name.strip_suffix(']') {
                Some(n) if !n.trim().is_empty() => section = Some(n.trim().to_owned()),
                _ => errors.push(syntax("a `[section]` header")),
            }
            continue;
        }
        let cut = t.find(['=', ':']);
        let Some((key, value)) = cut.map(|c| (t[..c].trim(), t[c + 1..].trim())) else {
            errors.push(syntax(
                "`key = value`, a `[section]` header or a `#`/`;` comment (ini form)",
            ));
            continue;
        };
        if !valid_name(key) {
            errors.push(syntax(
                "`key = value` with a key of letters, digits and `_`",
            ));
            continue;
        }
        if section.as_deref() == Some("DEFAULT") {
            raw.insert(
                key.to_owned(),
                Flag {
                    value: unquote(value).to_owned(),
                    file: file.to_owned(),
                    line,
                },
            );
        }
    }
}

/// Replace `$name` and `${name}` by the flag `name` (or nova's default for `state_path`).
fn interpolate(value: &str, raw: &BTreeMap<String, Flag>, depth: usize) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, tail) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(end) => (&b[..end], &b[end + 1..]),
                None => ("", after),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let found = raw
            .get(name)
            .map(|f| f.value.clone())
            .or_else(|| (name == "state_path").then(|| DEFAULT_STATE_PATH.to_owned()));
        match found {
            Some(v) if depth < MAX_DEPTH => out.push_str(&interpolate(&v, raw, depth + 1)),
            _ => {
                out.push('$');
                out.push_str(&rest[pos + 1..pos + 1 + (after.len() - tail.len())]);
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn extract(
    path: &Path,
    form: NovaForm,
    raw: BTreeMap<String, Flag>,
    errors: &mut Vec<NovaConfError>,
) -> Option<NovaConf> {
    let get = |key: &str| -> Option<(String, &Flag)> {
        raw.get(key).map(|f| (interpolate(&f.value, &raw, 0), f))
    };
    let bad = |key: &str, f: &Flag, found: &str, expected: &str| NovaConfError::Value {
        file: f.file.clone(),
        line: f.line,
        key: key.to_owned(),
        found: found.to_owned(),
        expected: expected.to_owned(),
    };
    let ip = |key: &str, errors: &mut Vec<NovaConfError>| -> Option<IpAddr> {
        let (v, f) = get(key)?;
        v.parse()
            .map_err(|_| errors.push(bad(key, f, &v, "an IPv4 or IPv6 address")))
            .ok()
    };
    let routing_source_ip = ip("routing_source_ip", errors);
    let my_ip = ip("my_ip", errors);
    let net = |key: &str, errors: &mut Vec<NovaConfError>| -> Option<IpNet> {
        let (v, f) = get(key)?;
        v.parse()
            .map_err(|_| errors.push(bad(key, f, &v, "a CIDR range like 10.0.0.0/8")))
            .ok()
    };
    let fixed_range = net("fixed_range", errors);
    let floating_range = net("floating_range", errors);
    let use_ipv6 = match get("use_ipv6") {
        None => false,
        Some((v, f)) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                errors.push(bad("use_ipv6", f, &v, "true or false"));
                false
            }
        },
    };
    let text = |key: &str| get(key).map(|(v, _)| v).filter(|v| !v.is_empty());
    let host = match get("host") {
        Some((v, _)) if !v.is_empty() => Some(v),
        Some((v, f)) => {
            errors.push(bad("host", f, &v, "a non-empty shared host name"));
            None
        }
        None => {
            errors.push(NovaConfError::MissingHost {
                file: path.to_owned(),
            });
            None
        }
    };
    let state_path = text("state_path").unwrap_or_else(|| DEFAULT_STATE_PATH.to_owned());
    let networks_path =
        text("networks_path").unwrap_or_else(|| interpolate(DEFAULT_NETWORKS_PATH, &raw, 0));
    Some(NovaConf {
        path: path.to_owned(),
        form,
        host: host?,
        routing_source_ip,
        public_interface: text("public_interface")
            .unwrap_or_else(|| DEFAULT_PUBLIC_INTERFACE.to_owned()),
        flat_interface: text("flat_interface"),
        flat_network_bridge: text("flat_network_bridge"),
        vlan_interface: text("vlan_interface"),
        state_path: state_path.into(),
        networks_path: networks_path.into(),
        fixed_range,
        floating_range,
        dhcpbridge: text("dhcpbridge"),
        use_ipv6,
        network_manager: text("network_manager")
            .unwrap_or_else(|| DEFAULT_NETWORK_MANAGER.to_owned()),
        my_ip,
        metadata_host: text("metadata_host"),
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn msgs(r: Result<NovaConf, Vec<NovaConfError>>) -> Vec<String> {
        r.unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn seed_flagfile_form() {
        let c = load(&fixture("nova.conf.flagfile")).unwrap();
        assert_eq!(c.form, NovaForm::Flagfile);
        assert_eq!(c.host, "somehostname");
        assert_eq!(c.routing_source_ip, Some("10.2.3.120".parse().unwrap()));
        assert_eq!(c.public_interface, "eth1");
        assert_eq!(c.flat_interface.as_deref(), Some("eth2"));
        assert_eq!(c.flat_network_bridge.as_deref(), Some("br100"));
        assert_eq!(c.fixed_range, Some("10.0.0.0/24".parse().unwrap()));
        assert_eq!(c.floating_range, Some("10.2.3.104/29".parse().unwrap()));
        assert_eq!(c.networks_path, PathBuf::from("/var/lib/nova/networks"));
        assert!(!c.use_ipv6);
        assert_eq!(c.flag("host").map(|f| f.line), Some(8));
        assert_eq!(c.flag("daemon").map(|f| f.value.as_str()), Some("false"));
        assert_eq!(c.flag("verbose").map(|f| f.value.as_str()), Some("true"));
    }

    #[test]
    fn ini_form() {
        let c = load(&fixture("nova.conf.ini")).unwrap();
        assert_eq!(c.form, NovaForm::Ini);
        assert_eq!(c.host, "somehostname");
        assert_eq!(c.routing_source_ip, Some("10.2.3.120".parse().unwrap()));
        assert_eq!(c.public_interface, "eth1");
        assert_eq!(c.vlan_interface.as_deref(), Some("eth2"));
        assert_eq!(c.state_path, PathBuf::from("/srv/nova"));
        assert_eq!(c.networks_path, PathBuf::from("/srv/nova/networks"));
        assert!(c.use_ipv6);
        assert_eq!(c.network_manager, "nova.network.manager.FlatDHCPManager");
        // Keys of other sections are not nova-network's flags.
        assert!(c.flag("connection").is_none());
        assert_eq!(c.flag("my_ip").map(|f| f.line), Some(9));
    }

    #[test]
    fn defaults_are_novas() {
        let c = parse(Path::new("n"), "--host=h\n").unwrap();
        assert_eq!(c.public_interface, "eth0");
        assert_eq!(c.networks_path, PathBuf::from("/var/lib/nova/networks"));
        assert_eq!(c.network_manager, DEFAULT_NETWORK_MANAGER);
        assert_eq!(c.routing_source_ip, None);
        assert_eq!(c.flat_interface, None);
    }

    #[test]
    fn missing_host_explains_the_queue() {
        let m = msgs(parse(
            Path::new("/etc/nova/nova.conf"),
            "# nothing\n--routing_source_ip=10.2.3.120\n",
        ));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("/etc/nova/nova.conf: no `host` flag"),
            "{}",
            m[0]
        );
        assert!(m[0].contains("same network.<host> queue"), "{}", m[0]);
        let m = msgs(parse(Path::new("n"), "[DEFAULT]\nverbose = true\n"));
        assert!(m[0].starts_with("n: no `host` flag"), "{}", m[0]);
    }

    #[test]
    fn malformed_lines_and_bad_ips_have_lines() {
        let text = "# c\n--host=h\n\nrouting_source_ip=1.2.3.4\n--routing_source_ip=10.2.3.300\n--fixed_range=10.0.0.0\n--use_ipv6=maybe\n--=x\n";
        let m = msgs(parse(Path::new("n"), text));
        assert_eq!(m.len(), 5, "{m:#?}");
        assert!(
            m[0].starts_with("n:4: found \"routing_source_ip=1.2.3.4\", expected `--key=value`"),
            "{}",
            m[0]
        );
        assert!(m[1].starts_with("n:8: found \"--=x\""), "{}", m[1]);
        assert_eq!(
            m[2],
            "n:5: `routing_source_ip` is \"10.2.3.300\" (expected an IPv4 or IPv6 address)"
        );
        assert_eq!(
            m[3],
            "n:6: `fixed_range` is \"10.0.0.0\" (expected a CIDR range like 10.0.0.0/8)"
        );
        assert_eq!(
            m[4],
            "n:7: `use_ipv6` is \"maybe\" (expected true or false)"
        );
    }

    #[test]
    fn ini_errors_have_lines_and_only_default_counts() {
        let text =
            "[DEFAULT]\nhost = h\n[database]\nconnection = mysql://x\n; c\nbroken line\n[DEFAULT\n";
        let m = msgs(parse(Path::new("n"), text));
        assert_eq!(m.len(), 2, "{m:#?}");
        assert!(m[0].starts_with("n:6: found \"broken line\""), "{}", m[0]);
        assert!(
            m[1].starts_with("n:7: found \"[DEFAULT\", expected a `[section]` header"),
            "{}",
            m[1]
        );
        let c = parse(Path::new("n"), "[DEFAULT]\nhost = \"h\"\nmy_ip: 10.0.0.9\n").unwrap();
        assert_eq!(c.host, "h");
        assert_eq!(c.my_ip, Some("10.0.0.9".parse().unwrap()));
    }

    #[test]
    fn last_definition_wins_and_dollar_vars_expand() {
        let c = parse(
            Path::new("n"),
            "--host=a\n--host=b\n--my_ip=10.2.3.5\n--routing_source_ip=$my_ip\n--state_path=/x\n--networks_path=${state_path}/net\n",
        )
        .unwrap();
        assert_eq!(c.host, "b");
        assert_eq!(c.routing_source_ip, Some("10.2.3.5".parse().unwrap()));
        assert_eq!(c.networks_path, PathBuf::from("/x/net"));
    }

    #[test]
    fn nested_flagfiles_are_followed_and_loops_refused() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("nova.conf");
        std::fs::write(
            &main,
            "--flagfile=common.conf\n--routing_source_ip=10.2.3.120\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("common.conf"),
            "--host=shared\n--bad\nnot a flag\n",
        )
        .unwrap();
        let m = msgs(load(&main));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with(&format!(
                "{}:3: found \"not a flag\"",
                dir.path().join("common.conf").display()
            )),
            "{}",
            m[0]
        );
        std::fs::write(
            dir.path().join("common.conf"),
            "--host=shared\n--flagfile=nova.conf\n",
        )
        .unwrap();
        let m = msgs(load(&main));
        assert!(m[0].contains(":2: --flagfile="), "{}", m[0]);
        std::fs::write(dir.path().join("common.conf"), "--host=shared\n").unwrap();
        let c = load(&main).unwrap();
        assert_eq!(c.host, "shared");
        assert_eq!(
            c.flag("host").map(|f| f.file.clone()),
            Some(dir.path().join("common.conf"))
        );
    }

    #[test]
    fn metadata_host_on_this_server_is_warned_about() {
        let vips: Vec<IpAddr> = vec!["10.2.3.120".parse().unwrap()];
        let warn = |text: &str| {
            parse(Path::new("n"), text)
                .unwrap()
                .metadata_host_warning(&vips)
        };
        let w = warn("--host=h\n--my_ip=10.2.3.11\n").unwrap();
        assert!(
            w.starts_with("n: nova's `metadata_host` is not set, so nova uses my_ip (10.2.3.11)"),
            "{w}"
        );
        assert!(w.contains("set metadata_host to a VIP (10.2.3.120)"), "{w}");
        let w = warn("--host=h\n--my_ip=10.2.3.11\n--metadata_host=10.2.3.11\n").unwrap();
        assert!(
            w.starts_with("n:3: nova's `metadata_host` 10.2.3.11 is my_ip"),
            "{w}"
        );
        assert_eq!(
            warn("--host=h\n--my_ip=10.2.3.11\n--metadata_host=10.2.3.120\n"),
            None
        );
        assert_eq!(warn("--host=h\n--metadata_host=api.example.org\n"), None);
        assert_eq!(
            warn("--host=h\n--my_ip=10.2.3.11\n--metadata_host=10.9.0.5\n"),
            None
        );
    }

    #[test]
    fn routing_source_ip_must_be_a_vip() {
        let c = parse(
            Path::new("n"),
            "--host=h\n\n--routing_source_ip=10.2.3.99\n",
        )
        .unwrap();
        let vips: Vec<IpAddr> = vec!["10.2.3.120".parse().unwrap()];
        let e = c.check_routing_source_ip(&vips).unwrap_err().to_string();
        assert_eq!(
            e,
            "n:3: `routing_source_ip` is 10.2.3.99 (expected one of the VIPs [10.2.3.120], so it moves with the service)"
        );
        let c = parse(Path::new("n"), "--host=h\n").unwrap();
        let e = c.check_routing_source_ip(&vips).unwrap_err().to_string();
        assert!(e.starts_with("n: no `routing_source_ip` flag"), "{e}");
        let c = parse(Path::new("n"), "--host=h\n--routing_source_ip=10.2.3.120\n").unwrap();
        assert!(c.check_routing_source_ip(&vips).is_ok());
    }
}
