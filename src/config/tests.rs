//! Tests of the whole load: the example config, env overrides, every rule and the error texts
//! (file, key, line or env variable, found, expected).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const EXAMPLE: &str = include_str!("../../conf/nova-network-ha.toml");
const NOVA_FLAGFILE: &str = include_str!("../../tests/fixtures/nova.conf.flagfile");
const NOVA_INI: &str = include_str!("../../tests/fixtures/nova.conf.ini");
const KEYS: &str = "# test keys\nauth 1\n1 hmac-sha256 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
const HOST1: &str = "ubuntu-openstack-network-server-01";
const HOST2: &str = "ubuntu-openstack-network-server-02";

/// A temp dir with the config, a 0600 key file and a nova.conf beside it.
struct Fixture {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Fixture {
    fn new(text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("nova-network-ha.toml");
        std::fs::write(&conf, text).unwrap();
        let keys = dir.path().join("authkeys");
        std::fs::write(&keys, KEYS).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("nova.conf"), NOVA_FLAGFILE).unwrap();
        Fixture { dir, conf }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn load_env(&self, hostname: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with(
            &self.conf,
            &Options {
                hostname: Some(hostname.into()),
                env: Some(env),
            },
        )
    }

    fn load(&self) -> Result<Loaded, ConfigErrors> {
        self.load_env(HOST1, &[])
    }

    fn errors(&self) -> Vec<String> {
        match self.load() {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    /// `file:line` of the first line containing `needle`.
    fn at(&self, needle: &str) -> String {
        let text = std::fs::read_to_string(&self.conf).unwrap();
        let line = text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in config"))
            + 1;
        format!("{}:{line}", self.conf.display())
    }
}

/// The example with its absolute /etc paths made relative (resolved beside the config).
fn example() -> String {
    EXAMPLE
        .replace("/etc/nova-network-ha/authkeys", "authkeys")
        .replace("/etc/nova/nova.conf", "nova.conf")
        .replace("/var/lib/nova-network-ha", "state")
}

/// The example with `from` replaced by `to` (which must occur).
fn with(from: &str, to: &str) -> Fixture {
    let text = example();
    assert!(text.contains(from), "{from:?} not in the example");
    Fixture::new(&text.replacen(from, to, 1))
}

fn one_error(f: &Fixture) -> String {
    let e = f.errors();
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

#[test]
fn example_config_loads() {
    let f = Fixture::new(&example());
    let l = f.load().unwrap();
    // The seed's nova.conf leaves metadata_host to nova's default, this server's own address.
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(
        l.warnings[0].contains("nova's `metadata_host` is not set"),
        "{:?}",
        l.warnings
    );
    let c = &l.config;
    assert_eq!(c.cluster_name, "nova-network");
    assert_eq!(c.cluster_id, 1);
    assert_eq!(c.this_node().name, HOST1);
    assert_eq!(
        c.peers().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        vec![HOST2]
    );
    assert_eq!(
        c.nodes[1].address(PathId(0)),
        Some("192.168.0.9".parse().unwrap())
    );
    assert_eq!(
        c.paths,
        vec![HeartbeatPath {
            name: "hb0".into(),
            kind: PathKind::Udp {
                interface: "eth0".into(),
                port: 694
            }
        }]
    );
    assert_eq!(
        c.timers,
        Timers {
            keepalive: Duration::from_millis(250),
            warntime: Duration::from_secs(2),
            deadtime: Duration::from_secs(4),
            initdead: Duration::from_secs(10),
        }
    );
    assert_eq!(c.key_file, f.file("authkeys"));
    assert_eq!(c.keyring.send_id(), 1);
    assert_eq!(c.state_dir, f.file("state"));
    assert!(!c.failover.auto_failback);
    assert_eq!(
        c.failover.vips,
        vec![Vip {
            address: "10.2.3.120/32".parse().unwrap(),
            interface: "eth1".into()
        }]
    );
    assert_eq!(
        c.failover
            .delete_interfaces
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        vec!["br*", "vlan*"]
    );
    assert_eq!(
        c.failover.stop_processes,
        vec![
            PathBuf::from("/usr/sbin/dnsmasq"),
            PathBuf::from("/usr/sbin/radvd")
        ]
    );
    assert_eq!(c.nova.host, "somehostname");
    assert_eq!(c.nova.path, f.file("nova.conf"));
    assert_eq!(
        c.nova_network_command(),
        vec![
            "/usr/bin/nova-network".to_owned(),
            format!("--flagfile={}", f.file("nova.conf").display()),
            "--host=somehostname".to_owned(),
        ]
    );
}

#[test]
fn cluster_config_maps_nodes_paths_and_timers() {
    let f = Fixture::new(&example());
    let c = f.load_env(HOST2, &[]).unwrap().config;
    let cc = c.cluster_config();
    assert_eq!(cc.me, NodeId(2));
    assert_eq!(cc.paths, 1);
    assert_eq!(cc.members.len(), 2);
    assert_eq!(
        cc.members[0],
        Member {
            id: NodeId(1),
            name: HOST1.into(),
            priority: 150
        }
    );
    assert_eq!(cc.timers, c.timers);
    assert!(!cc.auto_failback);
}

#[test]
fn node_name_wins_over_hostname() {
    let f = with("node_name = \"\"", &format!("node_name = \"{HOST2}\""));
    let c = f.load_env("somethingelse", &[]).unwrap().config;
    assert_eq!(c.this_node().name, HOST2);
}

#[test]
fn this_node_must_be_among_nodes() {
    let f = Fixture::new(&example());
    let e: Vec<String> = f
        .load_env("other-host", &[])
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0],
        format!(
            "{}: `cluster.node_name` is empty and the hostname is \"other-host\" (expected this node's name among [[nodes]]: \"{HOST1}\", \"{HOST2}\")",
            f.at("node_name =")
        )
    );
    let f = with("node_name = \"\"", "node_name = \"nope\"");
    let e = one_error(&f);
    assert!(
        e.starts_with(&format!(
            "{}: `cluster.node_name` is \"nope\" (expected this node's name among [[nodes]]",
            f.at("node_name =")
        )),
        "{e}"
    );
}

#[test]
fn env_overrides_keys() {
    let f = Fixture::new(&example());
    let c = f
        .load_env(
            HOST1,
            &[
                ("NOVA_NETWORK_HA__TIMERS__KEEPALIVE", "100ms"),
                ("NOVA_NETWORK_HA__TIMERS__DEADTIME", "300ms"),
                ("NOVA_NETWORK_HA__TIMERS__WARNTIME", "200ms"),
                ("NOVA_NETWORK_HA__CLUSTER__ID", "7"),
                ("NOVA_NETWORK_HA__CLUSTER__NODE_NAME", HOST2),
                ("NOVA_NETWORK_HA__FAILOVER__AUTO_FAILBACK", "true"),
                (
                    "NOVA_NETWORK_HA__FAILOVER__DELETE_INTERFACES",
                    "br*, vlan*,virbr*",
                ),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap()
        .config;
    assert_eq!(c.timers.keepalive, Duration::from_millis(100));
    assert_eq!(c.timers.deadtime, Duration::from_millis(300));
    assert_eq!(c.timers.warntime, Duration::from_millis(200));
    assert_eq!(c.cluster_id, 7);
    assert_eq!(c.this_node().name, HOST2);
    assert!(c.failover.auto_failback);
    assert_eq!(c.failover.delete_interfaces.len(), 3);
}

#[test]
fn env_errors_name_the_variable() {
    let f = Fixture::new(&example());
    let e: Vec<String> = f
        .load_env(
            HOST1,
            &[
                ("NOVA_NETWORK_HA__TIMERS__DEADTIME", "400ms"),
                ("NOVA_NETWORK_HA__TIMERS__WARNTIME", "300ms"),
                ("NOVA_NETWORK_HA__TIMERS__KEEPALIVES", "1s"),
            ],
        )
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let file = f.conf.display();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_eq!(
        e[0],
        format!(
            "{file} (overridden by env NOVA_NETWORK_HA__TIMERS__KEEPALIVES): unknown key `timers.keepalives` (expected one of: keepalive, warntime, deadtime, initdead)"
        )
    );
    assert_eq!(
        e[1],
        format!(
            "{file} (overridden by env NOVA_NETWORK_HA__TIMERS__DEADTIME): `timers.deadtime` is \"400ms\" (expected more than 2 x keepalive = 500ms (keepalive is 250ms))"
        )
    );
}

#[test]
fn relative_paths_resolve_beside_the_config() {
    let f = with("key_file = \"authkeys\"", "key_file = \"sub/keys\"");
    std::fs::create_dir(f.file("sub")).unwrap();
    std::fs::copy(f.file("authkeys"), f.file("sub/keys")).unwrap();
    let c = f.load().unwrap().config;
    assert_eq!(c.key_file, f.file("sub/keys"));
}

// ---- timers ----

#[test]
fn deadtime_must_exceed_twice_keepalive() {
    let f = Fixture::new(
        &example()
            .replacen("deadtime = \"4s\"", "deadtime = \"500ms\"", 1)
            .replacen("warntime = \"2s\"", "warntime = \"300ms\"", 1),
    );
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `timers.deadtime` is \"500ms\" (expected more than 2 x keepalive = 500ms (keepalive is 250ms))",
            f.at("deadtime =")
        )
    );
}

#[test]
fn warntime_strictly_between_keepalive_and_deadtime() {
    for bad in ["4s", "250ms", "5s", "100ms"] {
        let f = with("warntime = \"2s\"", &format!("warntime = \"{bad}\""));
        assert_eq!(
            one_error(&f),
            format!(
                "{}: `timers.warntime` is \"{bad}\" (expected strictly between keepalive (250ms) and deadtime (4s))",
                f.at("warntime =")
            )
        );
    }
}

#[test]
fn warntime_defaults_to_half_deadtime_and_initdead_to_twice() {
    let f = Fixture::new(
        &example()
            .replace("warntime = \"2s\"\n", "")
            .replace("initdead = \"10s\"\n", "")
            .replace("deadtime = \"4s\"", "deadtime = \"6s\""),
    );
    let t = f.load().unwrap().config.timers;
    assert_eq!(t.warntime, Duration::from_secs(3));
    assert_eq!(t.initdead, Duration::from_secs(12));
}

#[test]
fn initdead_below_deadtime_is_an_error() {
    let f = with("initdead = \"10s\"", "initdead = \"3s\"");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `timers.initdead` is \"3s\" (expected at least deadtime (4s))",
            f.at("initdead =")
        )
    );
}

#[test]
fn initdead_below_10s_is_a_warning_like_heartbeat() {
    let f = with("initdead = \"10s\"", "initdead = \"8s\"");
    let mut l = f.load().unwrap();
    l.warnings.retain(|w| !w.contains("metadata_host"));
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0].starts_with(&format!(
            "{}: `timers.initdead` is 8s: below 10s",
            f.at("initdead =")
        )),
        "{}",
        l.warnings[0]
    );
}

#[test]
fn durations_need_a_unit_and_a_string() {
    let f = with("keepalive = \"250ms\"", "keepalive = \"250\"");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `timers.keepalive` is \"250\" (expected a duration like 250ms, 4s or 1m; no unit)",
            f.at("keepalive =")
        )
    );
    let f = with("keepalive = \"250ms\"", "keepalive = 250");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `timers.keepalive` is 250 (expected a duration like 250ms, 4s or 1m, as a string)",
            f.at("keepalive =")
        )
    );
    let f = with("keepalive = \"250ms\"", "keepalive = \"0s\"");
    assert!(one_error(&f).contains("`timers.keepalive` is \"0s\" (expected a duration above 0)"));
}

#[test]
fn missing_timer_names_the_table_line() {
    let f = with("deadtime = \"4s\"\n", "");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `timers.deadtime` is missing (expected the dead-peer time, like 4s)",
            f.at("[timers]")
        )
    );
}

// ---- nodes and paths ----

#[test]
fn node_names_ids_and_priorities_unique() {
    let f = with(
        &format!("name = \"{HOST2}\""),
        &format!("name = \"{HOST1}\""),
    );
    assert_eq!(
        one_error(&f),
        format!(
            "{}:{}: `nodes[1].name` is \"{HOST1}\" (expected a name not already used by nodes[0])",
            f.conf.display(),
            nth_line(&f, &format!("name = \"{HOST1}\""), 2)
        )
    );
    let f = with("id = 2", "id = 1");
    assert_eq!(
        one_error(&f),
        format!(
            "{}:{}: `nodes[1].id` is 1 (expected an id not already used by nodes[0])",
            f.conf.display(),
            nth_line(&f, "id = 1", 3)
        )
    );
    let f = with("priority = 100", "priority = 150");
    assert_eq!(
        one_error(&f),
        format!(
            "{}:{}: `nodes[1].priority` is 150 (expected a priority distinct from nodes[0]'s, so elections never tie)",
            f.conf.display(),
            nth_line(&f, "priority = 150", 2)
        )
    );
}

/// The line of the `n`th (1-based) line containing `needle`.
fn nth_line(f: &Fixture, needle: &str, n: usize) -> usize {
    let text = std::fs::read_to_string(&f.conf).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(n - 1)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("no {n}th {needle}"))
}

#[test]
fn ranges_and_types_are_checked() {
    let f = with("priority = 100", "priority = 300");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `nodes[1].priority` is 300 (expected an integer in 1..=255)",
            f.at("priority = 300")
        )
    );
    let f = with("id = 1\n", "id = \"one\"\n");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `cluster.id` is \"one\" (expected an integer in 0..=4294967295)",
            f.at("id = \"one\"")
        )
    );
    let f = with("auto_failback = false", "auto_failback = \"off\"");
    assert!(
        one_error(&f).ends_with("`failover.auto_failback` is \"off\" (expected true or false)")
    );
}

#[test]
fn every_node_needs_a_valid_address_on_every_path() {
    let f = with("addresses = { hb0 = \"192.168.0.9\" }", "addresses = {}");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `nodes[1].addresses.hb0` is missing (expected this node's address on heartbeat path \"hb0\")",
            f.at("addresses = {}")
        )
    );
    let f = with("\"192.168.0.9\"", "\"192.168.0.999\"");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `nodes[1].addresses.hb0` is \"192.168.0.999\" (expected an IPv4 or IPv6 address)",
            f.at("192.168.0.999")
        )
    );
    let f = with(
        "{ hb0 = \"192.168.0.9\" }",
        "{ hb0 = \"192.168.0.9\", hb1 = \"10.0.0.1\" }",
    );
    assert_eq!(
        one_error(&f),
        format!(
            "{}: unknown key `nodes[1].addresses.hb1` (expected one of: a path name among [[paths]]: hb0)",
            f.at("hb1 =")
        )
    );
}

#[test]
fn at_least_one_path() {
    let text = example();
    let start = text.find("\n[[paths]]").unwrap();
    let end = text.find("\n[timers]").unwrap();
    let f = Fixture::new(&format!("{}{}", &text[..start], &text[end..]));
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `paths` is missing (expected at least one [[paths]] heartbeat path)",
            f.conf.display()
        )
    );
}

#[test]
fn path_kind_and_port_checked() {
    let f = with("kind = \"udp\"", "kind = \"serial\"");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `paths[0].kind` is \"serial\" (expected \"udp\")",
            f.at("kind =")
        )
    );
    let f = with("port = 694", "port = 70000");
    assert!(one_error(&f).ends_with("`paths[0].port` is 70000 (expected an integer in 1..=65535)"));
    let f = with("interface = \"eth0\"", "interface = \"a/b\"");
    assert!(one_error(&f).contains("`paths[0].interface` is \"a/b\" (expected an interface name"));
}

// ---- failover ----

#[test]
fn vips_are_cidrs_with_an_interface() {
    let f = with("\"10.2.3.120/32\"", "\"10.2.3.120\"");
    let e = f.errors();
    assert_eq!(
        e[0],
        format!(
            "{}: `failover.vips[0].address` is \"10.2.3.120\" (expected an address with its prefix length, like 10.2.3.120/32)",
            f.at("vips =")
        )
    );
    let f = with("interface = \"eth1\"", "interface = \"\"");
    let e = f.errors();
    assert!(
        e.iter().any(|m| m.starts_with(&format!(
            "{}: `failover.vips[0].interface` is \"\" (expected an interface name",
            f.at("vips =")
        ))),
        "{e:#?}"
    );
}

#[test]
fn delete_interfaces_never_match_protected_interfaces() {
    let cases = [
        (
            "eth*",
            "a pattern that never matches eth0 (heartbeat path \"hb0\" uses it)",
        ),
        (
            "*",
            "a pattern narrower than `*`, which would delete every interface",
        ),
        ("l?", "a pattern that never matches lo (the loopback)"),
        (
            "eth1",
            "a pattern that never matches eth1 (VIP 10.2.3.120/32 is on it)",
        ),
        (
            "eth2",
            "a pattern that never matches eth2 (nova's flat_interface)",
        ),
        ("", "a non-empty glob pattern like \"br*\""),
    ];
    for (pat, expected) in cases {
        let f = with("[\"br*\", \"vlan*\"]", &format!("[\"br*\", \"{pat}\"]"));
        assert_eq!(
            one_error(&f),
            format!(
                "{}: `failover.delete_interfaces[1]` is {pat:?} (expected {expected})",
                f.at("delete_interfaces =")
            )
        );
    }
    let f = with("[\"br*\", \"vlan*\"]", "[\"br[\"]");
    assert!(
        one_error(&f).contains(
            "`failover.delete_interfaces[0]` is \"br[\" (expected a valid glob pattern ("
        )
    );
}

#[test]
fn stop_processes_are_absolute() {
    let f = with("\"/usr/sbin/radvd\"", "\"radvd\"");
    assert_eq!(
        one_error(&f),
        format!(
            "{}: `failover.stop_processes[1]` is \"radvd\" (expected an absolute executable path, like /usr/sbin/dnsmasq (matched exactly, never by name))",
            f.at("stop_processes =")
        )
    );
}

#[test]
fn nova_network_command_non_empty_with_known_placeholders() {
    let text = example();
    let line = text
        .lines()
        .find(|l| l.starts_with("nova_network_command"))
        .unwrap();
    let f = Fixture::new(&text.replace(line, "nova_network_command = []"));
    assert!(one_error(&f).ends_with("`failover.nova_network_command` is empty (expected a non-empty command line starting with the nova-network executable)"));
    let f = with("\"--host={host}\"", "\"--host={hostname}\"");
    assert!(one_error(&f).ends_with("`failover.nova_network_command[2]` is \"--host={hostname}\" (expected only the placeholders {nova_conf} and {host}, not {hostname})"));
}

// ---- unknown keys, syntax, several mistakes ----

#[test]
fn unknown_keys_are_named() {
    let f = with(
        "keepalive = \"250ms\"",
        "keepalive = \"250ms\"\nkeepalivee = \"1s\"",
    );
    assert_eq!(
        one_error(&f),
        format!(
            "{}: unknown key `timers.keepalivee` (expected one of: keepalive, warntime, deadtime, initdead)",
            f.at("keepalivee")
        )
    );
    let f = with("[state]", "[states]\nx = 1\n[state]");
    assert!(one_error(&f).starts_with(&format!(
        "{}: unknown key `states` (expected one of: cluster, nodes,",
        f.at("[states]")
    )));
    let f = with("priority = 150", "priority = 150\ncolour = \"red\"");
    assert!(one_error(&f).starts_with(&format!(
        "{}: unknown key `nodes[0].colour` (expected one of: name, id, priority, addresses)",
        f.at("colour")
    )));
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    let f = with("port = 694", "port = = 694");
    let e = f.errors();
    assert!(!e.is_empty());
    assert!(
        e[0].starts_with(&format!("{}: toml syntax error: ", f.at("port = ="))),
        "{}",
        e[0]
    );
}

#[test]
fn shape_errors_name_the_key() {
    let text = example();
    let start = text.find("\n[timers]").unwrap();
    let end = text.find("\n[auth]").unwrap();
    // A top-level key must come before the first table header.
    let f = Fixture::new(&format!("timers = 5\n{}{}", &text[..start], &text[end..]));
    let e = one_error(&f);
    assert!(
        e.starts_with(&format!("{}: `timers`: found", f.at("timers = 5"))),
        "{e}"
    );
}

#[test]
fn three_mistakes_three_errors() {
    let f = Fixture::new(
        &example()
            .replace("priority = 100", "priority = 150")
            .replace("keepalive = \"250ms\"", "keepalive = \"250 ms\"")
            .replace("\"/usr/sbin/radvd\"", "\"radvd\""),
    );
    let e = f.errors();
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(e.iter().any(|m| m.contains("`nodes[1].priority`")));
    assert!(e.iter().any(|m| m.contains("`timers.keepalive`")));
    assert!(e.iter().any(|m| m.contains("`failover.stop_processes[1]`")));
    // Display lists one per line.
    let all = f.load().unwrap_err().to_string();
    assert_eq!(all.lines().count(), 3, "{all}");
}

#[test]
fn missing_config_file() {
    let e = load(Path::new("/nonexistent/nnha.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/nonexistent/nnha.toml: cannot read the config file"),
        "{e}"
    );
}

// ---- key file and nova.conf through the full load ----

#[test]
fn key_file_mode_0644_refused() {
    let f = Fixture::new(&example());
    std::fs::set_permissions(f.file("authkeys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        one_error(&f),
        format!(
            "{}: mode 0644 gives group or others access to the key file (expected 0600 or stricter, e.g. chmod 600) (key file from `auth.key_file` at {})",
            f.file("authkeys").display(),
            f.at("key_file =")
        )
    );
}

#[test]
fn key_file_errors_have_lines() {
    let f = Fixture::new(&example());
    std::fs::write(f.file("authkeys"), "auth 1\n1 hmac-sha256 abcd\n").unwrap();
    let e = one_error(&f);
    assert!(
        e.starts_with(&format!(
            "{}:2: the secret of key 1 is 2 bytes long",
            f.file("authkeys").display()
        )),
        "{e}"
    );
}

#[test]
fn nova_conf_without_host_refused() {
    let f = Fixture::new(&example());
    std::fs::write(f.file("nova.conf"), "--routing_source_ip=10.2.3.120\n").unwrap();
    let e = one_error(&f);
    assert!(
        e.starts_with(&format!(
            "{}: no `host` flag",
            f.file("nova.conf").display()
        )),
        "{e}"
    );
    assert!(e.contains("same network.<host> queue"), "{e}");
    assert!(
        e.ends_with(&format!(
            "(nova.conf from `nova.conf` at {})",
            f.at("conf = ")
        )),
        "{e}"
    );
}

#[test]
fn routing_source_ip_not_a_vip_refused() {
    let f = Fixture::new(&example());
    std::fs::write(
        f.file("nova.conf"),
        NOVA_FLAGFILE.replace(
            "--routing_source_ip=10.2.3.120",
            "--routing_source_ip=10.2.3.11",
        ),
    )
    .unwrap();
    let e = one_error(&f);
    assert!(
        e.starts_with(&format!(
            "{}:2: `routing_source_ip` is 10.2.3.11 (expected one of the VIPs [10.2.3.120]",
            f.file("nova.conf").display()
        )),
        "{e}"
    );
}

#[test]
fn nova_conf_errors_join_config_errors() {
    let f = with("priority = 100", "priority = 150");
    std::fs::write(
        f.file("nova.conf"),
        format!("{NOVA_FLAGFILE}oops\n--my_ip=1.2.3\n"),
    )
    .unwrap();
    let e = f.errors();
    assert_eq!(e.len(), 3, "{e:#?}");
    let nova = f.file("nova.conf").display().to_string();
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{nova}:18: found \"oops\""))),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{nova}:19: `my_ip` is \"1.2.3\""))),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m.contains("`nodes[1].priority`")),
        "{e:#?}"
    );
}

#[test]
fn ini_nova_conf_loads_and_protects_its_interfaces() {
    let f = with("[\"br*\", \"vlan*\"]", "[\"br*\", \"vlan*\", \"eth2\"]");
    std::fs::write(f.file("nova.conf"), NOVA_INI).unwrap();
    // eth2 is nova's vlan_interface in the ini fixture.
    assert!(
        one_error(&f)
            .ends_with("(expected a pattern that never matches eth2 (nova's vlan_interface))")
    );
    let f = Fixture::new(&example());
    std::fs::write(f.file("nova.conf"), NOVA_INI).unwrap();
    let c = f.load().unwrap().config;
    assert_eq!(c.nova.form, nova::NovaForm::Ini);
    assert_eq!(c.nova.host, "somehostname");
    assert!(c.nova.use_ipv6);
}

// ---- plan ----

#[test]
fn plan_shows_nodes_nova_and_ordered_steps() {
    let f = Fixture::new(&example());
    let c = f.load().unwrap().config;
    let plan = render_plan(&c) + &crate::takeover::steps::render(&c);
    for needle in [
        &format!("this node: {HOST1} (id 1, priority 150) hb0=192.168.0.1"),
        &format!("  {HOST2} (id 2, priority 100) hb0=192.168.0.9"),
        "  0 hb0: udp unicast on eth0 port 694",
        "timers: keepalive 250ms, warntime 2s, deadtime 4s, initdead 10s",
        "  10.2.3.120/32 on eth1",
        "  host somehostname (queue network.somehostname)",
        "nova (",
        ", flagfile form):",
        "public_interface eth1, flat_interface eth2, flat_network_bridge br100",
        "  2. stop nova's stray processes (/usr/sbin/dnsmasq, /usr/sbin/radvd) in this namespace: those named in nova's pid files under /var/lib/nova/networks (nova-*.pid) or whose command line names a nova-* file there; any other (libvirt's dnsmasq, a site's own) is left alone",
        "  3. delete nova's leftover bridges and VLANs: links matching br*, vlan* that nova marked as its own (flat_network_bridge br100, a nova-BRIDGE.conf or nova-ra-BRIDGE.conf under /var/lib/nova/networks, or a VLAN port of such a bridge); other matching links are left alone",
        "  4. remove nova-network's netfilter state: its iptables chains (nova-network-*) and the jumps to them, nova-filter-top and nova-postrouting-bottom only when no other nova binary (nova-compute, nova-api) uses them",
        "  5. add VIPs: 10.2.3.120/32 on eth1",
        "  6. gratuitous ARP / unsolicited NA for: 10.2.3.120 on eth1",
        &format!(
            "  8. start nova-network: /usr/bin/nova-network --flagfile={} --host=somehostname",
            f.file("nova.conf").display()
        ),
        "  10. become Active once nova-network runs; no bus configured",
        "  3. delete floating IPs: host addresses on eth1 that nova-network's nat chains DNAT (every pool), and those inside floating_range 10.2.3.104/29; never a VIP",
        "  4. delete VIPs: 10.2.3.120/32 on eth1",
        "  5. delete the addresses of nova's bridges and VLANs (those the links step deletes, matching br*, vlan*): nova's gateways",
        "  then the peer is told (it may take over now), and:",
        "  6. delete nova's leftover bridges and VLANs",
    ] {
        assert!(plan.contains(needle), "{needle:?} not in:\n{plan}");
    }
    let takeover = plan.find("takeover, in order:").unwrap();
    let release = plan.find("release, in order:").unwrap();
    assert!(takeover < release);
    let steps: Vec<usize> = [
        "  1. fence",
        "  2. stop",
        "  3. delete",
        "  4. remove",
        "  5. add",
        "  6. grat",
        "  7. apply the mirror",
        "  8. start",
        "  9. while",
        "  10. become",
    ]
    .iter()
    .map(|s| plan[takeover..].find(s).unwrap_or_else(|| panic!("{s}")))
    .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{plan}");
}

#[test]
fn env_cannot_reach_into_lists_of_tables() {
    let f = Fixture::new(&example());
    let e = f
        .load_env(HOST1, &[("NOVA_NETWORK_HA__NODES__0__PRIORITY", "200")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{} (overridden by env NOVA_NETWORK_HA__NODES__0__PRIORITY): `nodes.0.priority` is \"200\" (expected a key outside [[nodes]], [[paths]] and failover.vips, which can only be changed in the file)",
            f.conf.display()
        )
    );
}

#[test]
fn every_timer_mistake_is_reported_even_when_deadtime_is_wrong_too() {
    // keepalive 3s: deadtime 4s is not above 2 x keepalive, and warntime 2s is below keepalive.
    let f = with("keepalive = \"250ms\"", "keepalive = \"3s\"");
    let e = f.errors();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e.iter().any(|m| m.contains("`timers.deadtime` is \"4s\"")));
    assert!(e.iter().any(|m| m.contains(
        "`timers.warntime` is \"2s\" (expected strictly between keepalive (3s) and deadtime (4s))"
    )));
}

#[test]
fn probes_need_valid_regexes_and_patterns_for_a_log_file() {
    let f = with(
        "fatal_patterns = [\"CRITICAL nova\", \"Unable to connect to AMQP server\"]",
        "fatal_patterns = [\"CRITICAL (nova\"]",
    );
    let e = one_error(&f);
    assert!(
        e.starts_with(&format!(
            "{}: `probes.fatal_patterns[0]` is \"CRITICAL (nova\" (expected a regular expression",
            f.at("fatal_patterns =")
        )),
        "{e}"
    );
    let f = Fixture::new(
        &example()
            .replacen(
                "log_file = \"\"",
                "log_file = \"/var/log/nova/nova-network.log\"",
                1,
            )
            .replacen(
                "fatal_patterns = [\"CRITICAL nova\", \"Unable to connect to AMQP server\"]",
                "fatal_patterns = []",
                1,
            ),
    );
    assert!(
        one_error(&f).contains("`probes.fatal_patterns` is missing (expected at least one regular expression when probes.log_file is set)"),
        "{:?}",
        f.errors()
    );
}

#[test]
fn daemon_and_announce_ranges_are_checked() {
    let f = with("respawn_budget = 0", "respawn_budget = -1");
    assert!(
        one_error(&f).contains("`daemon.respawn_budget` is -1 (expected an integer in 0..=100)")
    );
    let f = with("count = 3", "count = 0");
    assert!(one_error(&f).contains("`announce.count` is 0 (expected an integer in 1..=100)"));
    let f = with("repeat_after = \"1s\"", "repeat_after = \"0s\"");
    let c = f.load().unwrap().config;
    assert_eq!(c.announce.repeat_after, None);
}

#[test]
fn bus_is_off_by_default_and_checked_when_set() {
    let f = Fixture::new(&example());
    assert_eq!(f.load().unwrap().config.bus, None);
    // A password in the URL is refused: URLs get logged.
    let f = with("url = \"\"", "url = \"amqp://nova:secret@10.9.0.10:5672/\"");
    let e = one_error(&f);
    assert!(e.contains("`bus.url` is a URL with a password (expected the user in the URL and the password in bus.password_file"), "{e}");
    assert!(!e.contains("secret"), "the password leaked: {e}");
    let f = with("url = \"\"", "url = \"http://10.9.0.10/\"");
    assert!(
        one_error(&f)
            .contains("`bus.url` is \"http://10.9.0.10/\" (expected an amqp:// or amqps:// URL)")
    );
    // Thresholds against the interval.
    let f = Fixture::new(
        &example()
            .replacen("url = \"\"", "url = \"amqp://nova@10.9.0.10/\"", 1)
            .replacen("backlog_window = \"5s\"", "backlog_window = \"1s\"", 1),
    );
    assert!(
        one_error(&f).contains(
            "`bus.backlog_window` is \"1s\" (expected at least 2 x bus.queue_interval (2s)"
        ),
        "{:?}",
        f.errors()
    );
}

#[test]
fn bus_ca_file_is_for_amqps_and_must_hold_certificates() {
    let amqps = |ca: &str| {
        Fixture::new(
            &example()
                .replacen("url = \"\"", "url = \"amqps://nova@10.9.0.10:5671/\"", 1)
                .replacen("ca_file = \"\"", &format!("ca_file = \"{ca}\""), 1),
        )
    };
    let f = amqps("ca.pem");
    let e = one_error(&f);
    assert!(e.contains("`bus.ca_file` is "), "{e}");
    assert!(e.contains("ca.pem (No such file"), "{e}");
    assert!(
        e.contains("(expected a readable PEM file with at least one CERTIFICATE block)"),
        "{e}"
    );
    std::fs::write(f.file("ca.pem"), "not a certificate\n").unwrap();
    assert!(one_error(&f).contains("ca.pem (no -----BEGIN CERTIFICATE----- block)"));
    std::fs::write(
        f.file("ca.pem"),
        "# ours\n-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(one_error(&f).contains("ca.pem (the certificate at line 2 is not valid base64)"));
    let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
    std::fs::write(f.file("ca.pem"), pem.repeat(2)).unwrap();
    let loaded = f.load().unwrap();
    let ca = loaded.config.bus.as_ref().unwrap().ca.as_ref().unwrap();
    assert_eq!(
        (ca.certificates, ca.pem.as_str()),
        (2, pem.repeat(2).as_str())
    );
    let plan = crate::config::plan::render_plan(&loaded.config);
    assert!(
        plan.contains("TLS trusting 2 CA certificate(s) from ")
            && plan.contains("ca.pem besides the system's"),
        "{plan}"
    );
    // A CA file with a plain amqp:// URL is a mistake: the operator meant TLS.
    let f = Fixture::new(
        &example()
            .replacen("url = \"\"", "url = \"amqp://nova@10.9.0.10/\"", 1)
            .replacen("ca_file = \"\"", "ca_file = \"ca.pem\"", 1),
    );
    std::fs::write(f.file("ca.pem"), pem).unwrap();
    let e = one_error(&f);
    assert!(
        e.contains("(expected an amqps:// bus.url (the CA file is for TLS), or no bus.ca_file)"),
        "{e}"
    );
}

#[test]
fn mirror_is_on_by_default_and_its_age_bound_checked() {
    let c = Fixture::new(&example()).load().unwrap().config;
    let m = c.mirror.unwrap();
    assert_eq!((m.port, m.max_age), (7791, Duration::from_secs(10)));
    assert!(crate::config::render_plan(&c).contains("mirror: TCP port 7791"));
    let f = with("max_age = \"10s\"", "max_age = \"1s\"");
    let e = one_error(&f);
    assert!(
        e.contains(
            "`mirror.max_age` is \"1s\" (expected at least timers.deadtime + mirror.refresh"
        ),
        "{e}"
    );
    let f = with("enabled = true\n# TCP port", "enabled = false\n# TCP port");
    let c = f.load().unwrap().config;
    assert_eq!(c.mirror, None);
    assert!(crate::config::render_plan(&c).contains("mirror: off"));
    let f = with("port = 7791", "port = 0");
    assert!(one_error(&f).contains("`mirror.port` is 0 (expected an integer in 1..=65535)"));
}

#[test]
fn bus_password_comes_from_a_private_file_or_the_environment() {
    let f = Fixture::new(
        &example()
            .replacen("url = \"\"", "url = \"amqp://nova@10.9.0.10/\"", 1)
            .replacen("password_file = \"\"", "password_file = \"bus.pw\"", 1),
    );
    let pw = f.file("bus.pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = one_error(&f);
    assert!(
        e.contains("with mode 0644 (expected a file that group and others cannot access"),
        "{e}"
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bus = f.load().unwrap().config.bus.unwrap();
    assert_eq!(bus.password, Some(crate::config::Secret("s3cret".into())));
    assert_eq!(format!("{:?}", bus.password), "Some(Secret(***))");
    let f = with("url = \"\"", "url = \"amqp://nova@10.9.0.10/\"");
    let loaded = f
        .load_env(HOST1, &[("NOVA_NETWORK_HA_BUS_PASSWORD", "fromenv")])
        .unwrap();
    assert_eq!(
        loaded.config.bus.unwrap().password,
        Some(crate::config::Secret("fromenv".into()))
    );
}
