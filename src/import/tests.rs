//! Import tests on the seed's own files (tests/fixtures/heartbeat) and variations of them.

use super::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The shape of `conf/nova-network-ha.toml`: every key required, none unknown.
mod shape {
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        pub cluster: Cluster,
        pub nodes: Vec<Node>,
        pub paths: Vec<Path>,
        pub timers: Timers,
        pub auth: Auth,
        pub failover: Failover,
        pub nova: Nova,
        pub state: State,
        // Sections the import leaves at their defaults (nothing in /etc/ha.d maps to them).
        pub daemon: Option<toml::Table>,
        pub announce: Option<toml::Table>,
        pub probes: Option<toml::Table>,
        pub bus: Option<toml::Table>,
        pub mirror: Option<toml::Table>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Cluster {
        pub name: String,
        pub id: u32,
        pub node_name: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Node {
        pub name: String,
        pub id: u16,
        pub priority: u8,
        pub addresses: BTreeMap<String, String>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Path {
        pub name: String,
        pub kind: String,
        pub interface: String,
        pub port: u16,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Timers {
        pub keepalive: String,
        pub warntime: String,
        pub deadtime: String,
        pub initdead: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Auth {
        pub key_file: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Vip {
        pub address: String,
        pub interface: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Failover {
        pub auto_failback: bool,
        pub vips: Vec<Vip>,
        pub delete_interfaces: Vec<String>,
        pub stop_processes: Vec<String>,
        pub nova_network_command: Vec<String>,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct Nova {
        pub conf: String,
    }
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct State {
        pub dir: String,
    }
}

const PRIMARY: &str = "ubuntu-openstack-network-server-01";
const STANDBY: &str = "ubuntu-openstack-network-server-02";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/heartbeat")
        .join(name)
}

fn read_fixture(name: &str, file: &str) -> String {
    std::fs::read_to_string(fixture(name).join(file)).unwrap()
}

fn no_hostname() -> Option<String> {
    None
}

/// A heartbeat directory with these three files (`None`: file absent).
fn setup(hacf: Option<&str>, keys: Option<&str>, res: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("ha.cf", hacf), ("authkeys", keys), ("haresources", res)] {
        if let Some(text) = text {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
    }
    dir
}

fn seed_with_hacf(hacf: &str) -> tempfile::TempDir {
    setup(
        Some(hacf),
        Some(&read_fixture("seed-primary", "authkeys")),
        Some(&read_fixture("seed-primary", "haresources")),
    )
}

fn errors(r: Result<Imported, ImportErrors>) -> Vec<String> {
    match r {
        Ok(i) => panic!("imported:\n{}", i.toml),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn ok(r: Result<Imported, ImportErrors>) -> Imported {
    match r {
        Ok(i) => i,
        Err(e) => panic!("errors:\n{e}"),
    }
}

fn parse(toml_text: &str) -> shape::Config {
    match toml::from_str(toml_text) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{toml_text}"),
    }
}

#[test]
fn the_shape_is_the_example_files() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/nova-network-ha.toml"),
    )
    .unwrap();
    parse(&example);
}

#[test]
fn table_1_imports_cleanly() {
    let imported = ok(import_with(
        &fixture("seed-primary"),
        Some(PRIMARY),
        &no_hostname,
    ));
    let c = parse(&imported.toml);
    assert_eq!(c.cluster.name, "nova-network");
    assert_eq!(c.cluster.id, 1);
    assert_eq!(c.cluster.node_name, "");
    let nodes: Vec<_> = c
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.id, n.priority))
        .collect();
    assert_eq!(nodes, [(PRIMARY, 1, 150), (STANDBY, 2, 100)]);
    // Table 1 is the primary's: it names only the standby's address.
    assert!(c.nodes[0].addresses.is_empty());
    assert_eq!(
        c.nodes[1].addresses,
        BTreeMap::from([("hb0".to_string(), "192.168.0.9".to_string())])
    );
    assert_eq!(
        c.paths,
        [shape::Path {
            name: "hb0".into(),
            kind: "udp".into(),
            interface: "eth0".into(),
            port: 694
        }]
    );
    assert_eq!(
        c.timers,
        shape::Timers {
            keepalive: "250ms".into(),
            warntime: "3s".into(),
            deadtime: "4s".into(),
            initdead: "8s".into(),
        }
    );
    assert_eq!(c.auth.key_file, KEY_FILE);
    assert!(!c.failover.auto_failback);
    assert_eq!(
        c.failover.vips,
        [shape::Vip {
            address: "10.2.3.120/32".into(),
            interface: "eth1".into()
        }]
    );
    assert_eq!(c.nova.conf, "/etc/nova/nova.conf");
    assert!(
        imported
            .warnings
            .iter()
            .any(|w| w.contains("FILL IN") && w.contains(PRIMARY)),
        "{:#?}",
        imported.warnings
    );
    assert!(imported.toml.contains("# FILL IN hb0"));
    // The known-but-irrelevant directives are notes, with their line.
    for expected in [
        "ha.cf:1: logfacility daemon",
        "ha.cf:16: respawn",
        "ha.cf:17: use_logd yes",
    ] {
        assert!(
            imported.notes.iter().any(|n| n.starts_with(expected)),
            "{expected}: {:#?}",
            imported.notes
        );
    }
    assert!(imported.notes.iter().any(|n| n.contains("nova-network")));
}

#[test]
fn the_old_secret_is_never_reused_and_the_key_command_is_printed() {
    let imported = ok(import_with(
        &fixture("seed-primary"),
        Some(PRIMARY),
        &no_hostname,
    ));
    let everything = format!(
        "{}{}{}",
        imported.toml,
        imported.notes.join("\n"),
        imported.warnings.join("\n")
    );
    assert!(!everything.contains("YourSecretPassPhrase"));
    let note = imported
        .notes
        .iter()
        .find(|n| n.starts_with("authkeys: heartbeat's key 1 (sha1) is not reused"))
        .unwrap();
    assert!(note.contains(KEY_COMMAND), "{note}");
    assert!(KEY_COMMAND.contains("openssl rand -hex 32"));
    assert!(KEY_COMMAND.contains("umask 077"));
    assert!(imported.toml.contains(KEY_COMMAND));
}

#[test]
fn initdead_below_ten_seconds_is_a_warning() {
    let imported = ok(import_with(
        &fixture("seed-primary"),
        Some(PRIMARY),
        &no_hostname,
    ));
    assert!(
        imported
            .warnings
            .iter()
            .any(|w| w.starts_with("ha.cf:9: initdead 8s is below 10s")),
        "{:#?}",
        imported.warnings
    );
    let hacf = read_fixture("seed-primary", "ha.cf").replace("initdead 8", "initdead 10");
    let imported = ok(import_with(
        seed_with_hacf(&hacf).path(),
        Some(PRIMARY),
        &no_hostname,
    ));
    assert!(!imported.warnings.iter().any(|w| w.contains("initdead")));
}

#[test]
fn table_2_is_rejected_at_its_broken_line() {
    let errs = errors(import_with(
        &fixture("seed-standby"),
        Some(STANDBY),
        &no_hostname,
    ));
    assert_eq!(
        errs,
        [
            "ha.cf:13: use_logd: found \"yesuse_logd yes\", expected one boolean \
             (yes/no/on/off/true/false)"
        ]
    );
}

#[test]
fn table_2_fixed_gives_the_primary_its_address() {
    let hacf =
        read_fixture("seed-standby", "ha.cf").replace("use_logd yesuse_logd yes", "use_logd yes");
    let imported = ok(import_with(
        seed_with_hacf(&hacf).path(),
        Some(STANDBY),
        &no_hostname,
    ));
    let c = parse(&imported.toml);
    assert_eq!(c.nodes[0].addresses["hb0"], "192.168.0.1");
    assert!(c.nodes[1].addresses.is_empty());
}

#[test]
fn ucast_for_both_nodes_needs_no_node_name_and_matches_the_example() {
    let hacf = read_fixture("seed-primary", "ha.cf").replace(
        "ucast eth0 192.168.0.9#",
        "ucast eth0 192.168.0.1\nucast eth0 192.168.0.9#",
    );
    let imported = ok(import_with(
        seed_with_hacf(&hacf).path(),
        None,
        &no_hostname,
    ));
    let c = parse(&imported.toml);
    let example: shape::Config = parse(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/nova-network-ha.toml"),
        )
        .unwrap(),
    );
    assert_eq!(c.cluster, example.cluster);
    assert_eq!(c.nodes, example.nodes);
    assert_eq!(c.paths, example.paths);
    assert_eq!(c.auth, example.auth);
    assert_eq!(c.failover, example.failover);
    assert_eq!(c.nova, example.nova);
    assert_eq!(c.state, example.state);
    assert!(imported.warnings.iter().any(|w| w.contains("node order")));
}

#[test]
fn the_hostname_names_this_node_when_not_given() {
    let primary = || Some(PRIMARY.to_string());
    let imported = ok(import_with(&fixture("seed-primary"), None, &primary));
    assert_eq!(
        parse(&imported.toml).nodes[1].addresses["hb0"],
        "192.168.0.9"
    );

    let stranger = || Some("laptop".to_string());
    let errs = errors(import_with(&fixture("seed-primary"), None, &stranger));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("ha.cf:12: ucast eth0 192.168.0.9: cannot tell"));
    assert!(errs[0].contains("\"laptop\"") && errs[0].contains("--node NAME"));

    let errs = errors(import_with(
        &fixture("seed-primary"),
        Some("nope"),
        &primary,
    ));
    assert!(errs[0].contains("--node \"nope\""), "{errs:#?}");
}

#[test]
fn crc_is_refused() {
    let errs = errors(import_with(&fixture("crc"), Some(PRIMARY), &no_hostname));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("authkeys:2: key 1: found method \"crc\", expected sha1 or md5"),
        "{}",
        errs[0]
    );
}

#[test]
fn an_unknown_directive_is_an_error_with_its_line() {
    let hacf = read_fixture("seed-primary", "ha.cf").replace("udpport 694", "udpprot 694");
    let errs = errors(import_with(
        seed_with_hacf(&hacf).path(),
        Some(PRIMARY),
        &no_hostname,
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("ha.cf:10: found unknown directive \"udpprot\""),
        "{}",
        errs[0]
    );
}

#[test]
fn several_errors_are_collected() {
    let hacf = read_fixture("seed-primary", "ha.cf")
        .replace("keepalive 250ms", "keepalive fast")
        .replace("auto_failback off", "auto_failback maybe")
        .replace("udpport 694", "udpport 694\nfrobnicate on");
    let dir = setup(
        Some(&hacf),
        Some("auth 2\n1 sha1 secret\n"),
        Some("ubuntu-openstack-network-server-01 10.2.3.120 nova-network\n"),
    );
    let errs = errors(import_with(dir.path(), Some(PRIMARY), &no_hostname));
    let at: Vec<&str> = errs
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        at,
        [
            "ha.cf:3",
            "ha.cf:11",
            "ha.cf:14",
            "authkeys:1",
            "haresources:1"
        ],
        "{errs:#?}"
    );
    assert!(errs[0].contains("keepalive: found \"fast\", expected one time"));
    assert!(errs[2].contains("auto_failback: found \"maybe\""));
    assert!(errs[3].contains("auth: found key 2"));
    assert!(errs[4].contains("found no interface, expected ip/bits/interface"));
}

#[test]
fn our_timer_rules_are_errors_at_the_line() {
    let hacf = read_fixture("seed-primary", "ha.cf").replace("warntime 3", "warntime 5");
    let errs = errors(import_with(
        seed_with_hacf(&hacf).path(),
        Some(PRIMARY),
        &no_hostname,
    ));
    assert_eq!(
        errs,
        [
            "ha.cf:7: warntime: found 5s, expected strictly between keepalive (250ms) and \
          deadtime (4s)"
        ]
    );
    let hacf = read_fixture("seed-primary", "ha.cf")
        .replace("deadtime 4", "deadtime 500ms")
        .replace("warntime 3", "warntime 300ms");
    let errs = errors(import_with(
        seed_with_hacf(&hacf).path(),
        Some(PRIMARY),
        &no_hostname,
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    // The rule and its words are the configuration's own (`cluster::timers`).
    assert_eq!(
        errs[0],
        "ha.cf:5: deadtime: found 500ms, expected more than 2 x keepalive = 500ms (keepalive is 250ms)"
    );
}

#[test]
fn missing_files_are_each_named() {
    let dir = setup(None, None, None);
    let errs = errors(import_with(dir.path(), Some(PRIMARY), &no_hostname));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].starts_with("ha.cf: cannot read"));
    assert!(errs[1].starts_with("authkeys: cannot read"));
    assert!(errs[2].starts_with("haresources: cannot read"));
}

#[test]
fn haresources_forms() {
    let keys = read_fixture("seed-primary", "authkeys");
    let hacf = read_fixture("seed-primary", "ha.cf");
    let run = |res: &str| {
        import_with(
            setup(Some(&hacf), Some(&keys), Some(res)).path(),
            Some(PRIMARY),
            &no_hostname,
        )
    };

    // IPaddr:: form, dotted netmask, alias label, a second VIP on a continuation line.
    let i = ok(run(
        "ubuntu-openstack-network-server-01 IPaddr::10.2.3.120/255.255.255.0/eth1:0 \\\n  10.2.3.121/32/eth1 nova-network\n",
    ));
    let c = parse(&i.toml);
    let vips: Vec<_> = c
        .failover
        .vips
        .iter()
        .map(|v| (v.address.as_str(), v.interface.as_str()))
        .collect();
    assert_eq!(vips, [("10.2.3.120/24", "eth1"), ("10.2.3.121/32", "eth1")]);

    // The standby preferred: priorities follow.
    let c = parse(
        &ok(run(
            "ubuntu-openstack-network-server-02 10.2.3.120/32/eth1\n",
        ))
        .toml,
    );
    assert_eq!((c.nodes[0].priority, c.nodes[1].priority), (100, 150));

    // Two groups, an unknown node, another resource.
    let errs = errors(run(
        "ubuntu-openstack-network-server-01 10.2.3.120/32/eth1\nother-node 10.2.3.121/32/eth1\n",
    ));
    assert!(
        errs[0].starts_with("haresources:2: found a resource group preferring \"other-node\""),
        "{errs:#?}"
    );
    let errs = errors(run("someone 10.2.3.120/32/eth1\n"));
    assert!(
        errs[0].starts_with("haresources:1: found preferred node \"someone\""),
        "{errs:#?}"
    );
    let i = ok(run(
        "ubuntu-openstack-network-server-01 10.2.3.120/32/eth1 apache2\n",
    ));
    assert!(
        i.warnings
            .iter()
            .any(|w| w.contains("\"apache2\" is not carried over"))
    );
}

#[test]
fn toml_strings_are_escaped() {
    for s in ["a\"b\\c", "it's", "line\nbreak", ""] {
        let t: toml::Table = toml::from_str(&format!("x = {}", super::render::q(s))).unwrap();
        assert_eq!(t["x"].as_str(), Some(s));
    }
    assert_eq!(duration(250), "250ms");
    assert_eq!(duration(4000), "4s");
}
#[test]
fn control_characters_cannot_break_the_toml() {
    let hacf = read_fixture("seed-primary", "ha.cf").replace(
        "node ubuntu-openstack-network-server-02",
        "node ubuntu-openstack-network-server-02\u{7}\u{1b}x",
    );
    let name = "ubuntu-openstack-network-server-02\u{7}\u{1b}x";
    let i = ok(import_with(
        seed_with_hacf(&hacf).path(),
        Some(PRIMARY),
        &no_hostname,
    ));
    assert_eq!(parse(&i.toml).nodes[1].name, name);
}
