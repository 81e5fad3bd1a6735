//! The binary's commands, run as an operator would: exit codes and what they print
//! (docs/design.md section 2).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECRET_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nova-network-ha"))
}

pub(crate) fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory holding a key file (mode 0600) and the seed's nova.conf, and the example
/// configuration pointed at them through environment overrides.
pub(crate) struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("authkeys");
        fs::write(&key, format!("auth 1\n1 hmac-sha256 {SECRET_HEX}\n")).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        Setup { dir }
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("authkeys")
    }

    pub(crate) fn check_config(&self, config: &Path) -> Output {
        bin()
            .arg("check-config")
            .arg(config)
            .env("NOVA_NETWORK_HA__AUTH__KEY_FILE", self.key())
            .env(
                "NOVA_NETWORK_HA__NOVA__CONF",
                repo("tests/fixtures/nova.conf.flagfile"),
            )
            .env(
                "NOVA_NETWORK_HA__CLUSTER__NODE_NAME",
                "ubuntu-openstack-network-server-01",
            )
            .env("NOVA_NETWORK_HA__STATE__DIR", self.dir.path().join("state"))
            .output()
            .unwrap()
    }
}

#[test]
fn check_config_prints_the_plan_for_the_example() {
    let setup = Setup::new();
    let out = setup.check_config(&repo("conf/nova-network-ha.toml"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for needle in [
        "this node: ubuntu-openstack-network-server-01 (id 1, priority 150)",
        "ubuntu-openstack-network-server-02 (id 2, priority 100) hb0=192.168.0.9",
        "timers: keepalive 250ms",
        "10.2.3.120/32 on eth1",
        "host somehostname (queue network.somehostname)",
        "--host=somehostname",
        "takeover, in order:",
        "release, in order:",
    ] {
        assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
    }
}

#[test]
fn check_config_lists_every_error_with_file_line_and_expectation() {
    let setup = Setup::new();
    let example = fs::read_to_string(repo("conf/nova-network-ha.toml")).unwrap();
    let bad = example
        .replace("keepalive = \"250ms\"", "keepalive = \"3s\"")
        .replace("priority = 100", "priority = 150");
    let path = setup.dir.path().join("bad.toml");
    fs::write(&path, bad).unwrap();
    let out = setup.check_config(&path);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "no plan on error: {stdout}");
    let file = path.display().to_string();
    assert!(stderr.contains("3 error(s)"), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:52: `timers.warntime` is \"2s\"")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}:34: `nodes[1].priority` is 150 (expected")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:54: `timers.deadtime` is \"4s\" (expected more than 2 x keepalive"
        )),
        "{stderr}"
    );
}

#[test]
fn check_config_refuses_a_key_file_readable_by_others() {
    let setup = Setup::new();
    fs::set_permissions(setup.key(), fs::Permissions::from_mode(0o644)).unwrap();
    let out = setup.check_config(&repo("conf/nova-network-ha.toml"));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&setup.key().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("0644"), "{stderr}");
}

#[test]
fn check_config_names_a_missing_file() {
    let out = bin()
        .args(["check-config", "/nonexistent/nnha.toml"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/nnha.toml"), "{stderr}");
}

#[test]
fn import_heartbeat_converts_the_seed_primary() {
    let out = bin()
        .arg("import-heartbeat")
        .arg(repo("tests/fixtures/heartbeat/seed-primary"))
        .args(["--node", "ubuntu-openstack-network-server-01"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let toml: toml::Table = stdout.parse().unwrap();
    assert_eq!(toml["timers"]["keepalive"].as_str(), Some("250ms"));
    assert_eq!(toml["nodes"].as_array().map(Vec::len), Some(2));
    // sha1 is not carried over: the operator is told how to make a new key.
    assert!(stderr.contains("openssl rand -hex 32"), "{stderr}");
    assert!(!stdout.contains("YourSecretPassPhrase"));
    // heartbeat warns about initdead below 10 s; so do we.
    assert!(
        stderr.contains("warning:") && stderr.contains("initdead"),
        "{stderr}"
    );
}

#[test]
fn import_heartbeat_rejects_the_seed_standby_naming_the_line() {
    let out = bin()
        .arg("import-heartbeat")
        .arg(repo("tests/fixtures/heartbeat/seed-standby"))
        .args(["--node", "ubuntu-openstack-network-server-02"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("ha.cf:13: use_logd: found \"yesuse_logd yes\""),
        "{stderr}"
    );
    assert!(stderr.contains("nothing written"), "{stderr}");
}

#[test]
fn import_heartbeat_output_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.toml");
    let run = || {
        bin()
            .arg("import-heartbeat")
            .arg(repo("tests/fixtures/heartbeat/seed-primary"))
            .args(["--node", "ubuntu-openstack-network-server-01", "--output"])
            .arg(&target)
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let first = fs::read_to_string(&target).unwrap();
    assert!(first.contains("[timers]"));
    let again = run();
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr.contains("must not exist yet"), "{stderr}");
    assert_eq!(fs::read_to_string(&target).unwrap(), first);
}

#[test]
fn bad_arguments_are_usage_errors() {
    for (args, names) in [
        (vec!["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (vec!["import-heartbeat"], "<DIR>"),
        (vec!["status", "--yaml"], "unexpected argument '--yaml'"),
        (vec!["check-config", "a", "b"], "unexpected argument 'b'"),
        (
            vec!["import-heartbeat", "d", "--node"],
            "a value is required for '--node <NODE>'",
        ),
    ] {
        let out = bin().args(&args).output().unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
}

#[test]
fn operator_commands_name_the_socket_when_no_daemon_runs() {
    let setup = Setup::new();
    let example = fs::read_to_string(repo("conf/nova-network-ha.toml")).unwrap();
    let socket = setup.dir.path().join("admin.sock");
    let config = setup.dir.path().join("n.toml");
    fs::write(
        &config,
        example.replace(
            "/run/nova-network-ha/admin.sock",
            &socket.display().to_string(),
        ),
    )
    .unwrap();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["takeover"],
        vec!["standby"],
    ] {
        let out = bin()
            .args(&args)
            .arg("--config")
            .arg(&config)
            .env("NOVA_NETWORK_HA__AUTH__KEY_FILE", setup.key())
            .env(
                "NOVA_NETWORK_HA__NOVA__CONF",
                repo("tests/fixtures/nova.conf.flagfile"),
            )
            .env(
                "NOVA_NETWORK_HA__CLUSTER__NODE_NAME",
                "ubuntu-openstack-network-server-01",
            )
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stdout.is_empty(), "no fake output: {stdout}");
        assert!(
            stderr.contains(&format!(
                "no nova-network-ha daemon answers on {}",
                socket.display()
            )),
            "{stderr}"
        );
    }
}

#[test]
fn run_refuses_a_bad_configuration_listing_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    fs::write(&config, "[timers]\nkeepalive = \"fast\"\n").unwrap();
    let out = bin()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("`timers.keepalive` is \"fast\""),
        "{stderr}"
    );
}

#[test]
fn an_import_missing_an_address_is_refused_by_check_config_naming_it() {
    let setup = Setup::new();
    let imported = setup.dir.path().join("imported.toml");
    let out = bin()
        .arg("import-heartbeat")
        .arg(repo("tests/fixtures/heartbeat/seed-primary"))
        .args(["--node", "ubuntu-openstack-network-server-01", "--output"])
        .arg(&imported)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The primary's ha.cf names only the peer's address: the import says so ...
    assert!(stderr.contains("FILL IN"), "{stderr}");
    // ... and check-config refuses the result until it is filled in.
    let out = setup.check_config(&imported);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`nodes[0].addresses.hb0` is missing (expected this node's address"),
        "{stderr}"
    );
}
