//! The `nova-network-ha` command: clap, exit codes, and calls into the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use nova_network_ha::admin::{self, Request};

/// Where the daemon and `check-config` look for the configuration by default.
const DEFAULT_CONFIG: &str = "/etc/nova-network-ha/nova-network-ha.toml";

/// Keeps OpenStack's nova-network highly available across a pool of network servers.
#[derive(Debug, Parser)]
#[command(name = "nova-network-ha", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (as root, under systemd): heartbeats, failover, nova-network.
    Run {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log JSON lines instead of human text.
        #[arg(long)]
        log_json: bool,
    },
    /// Show this node's and its peers' state (asks the running daemon).
    Status {
        /// Print the daemon's JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Configuration file (for the admin socket's path).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Ask this node to become active; the active peer hands over first (like hb_takeover).
    Takeover {
        /// Configuration file (for the admin socket's path).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Ask this node to hand the service to the best healthy peer (like hb_standby).
    Standby {
        /// Configuration file (for the admin socket's path).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print the alerts published on the bus as they come, one JSON line each.
    WatchAlerts {
        /// Configuration file (for the bus URL and exchange).
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Routing key pattern: `<cluster>.<node>.<kind>`, `*` one word, `#` any.
        #[arg(long, default_value = "#")]
        binding: String,
    },
    /// Validate the configuration and nova.conf, and print the takeover plan; exit 1 on error.
    CheckConfig {
        /// Configuration file.
        #[arg(default_value = DEFAULT_CONFIG)]
        path: PathBuf,
    },
    /// Convert a Linux-HA heartbeat setup (ha.cf, authkeys, haresources) into our TOML.
    ImportHeartbeat {
        /// The heartbeat directory, usually /etc/ha.d.
        dir: PathBuf,
        /// Which `node` of ha.cf this file belongs to (default: the hostname).
        #[arg(long)]
        node: Option<String>,
        /// Write the TOML here instead of printing it (refuses to overwrite).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { path } => Ok(check_config(&path)),
        Command::ImportHeartbeat { dir, node, output } => {
            import_heartbeat(&dir, node.as_deref(), output.as_deref())
        }
        Command::Run { config, log_json } => daemon(&config, log_json),
        Command::Status { json, config } => status(&config, json),
        Command::Takeover { config } => operator(&config, Request::Takeover),
        Command::Standby { config } => operator(&config, Request::Standby),
        Command::WatchAlerts { config, binding } => watch_alerts(&config, &binding),
    }
}

/// Loads the configuration or returns every error, for the commands that need it.
fn load(path: &Path) -> anyhow::Result<nova_network_ha::config::Loaded> {
    nova_network_ha::config::load(path).map_err(|errors| {
        anyhow::anyhow!("{}: {} error(s):\n{errors}", path.display(), errors.0.len())
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn daemon(path: &Path, log_json: bool) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let loaded = load(path)?;
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "configuration");
    }
    runtime()?
        .block_on(nova_network_ha::daemon::run(loaded.config))
        .context("the daemon stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// The admin socket named by the configuration (without validating the rest of it, so
/// `status` works even while, say, nova.conf is being edited).
fn admin_socket(path: &Path) -> anyhow::Result<PathBuf> {
    match nova_network_ha::config::load(path) {
        Ok(loaded) => Ok(loaded.config.daemon.admin_socket),
        Err(errors) => {
            if path.exists() {
                tracing::debug!(%errors, "configuration has errors; using the default socket");
            }
            Ok(PathBuf::from(nova_network_ha::config::DEFAULT_ADMIN_SOCKET))
        }
    }
}

fn status(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let socket = admin_socket(path)?;
    let answer = runtime()?.block_on(admin::request(&socket, Request::Status))?;
    let status = answer.get("status").cloned().unwrap_or(answer);
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_status(&status));
    }
    Ok(ExitCode::SUCCESS)
}

fn operator(path: &Path, request: Request) -> anyhow::Result<ExitCode> {
    let socket = admin_socket(path)?;
    let answer = runtime()?.block_on(admin::request(&socket, request))?;
    if answer.get("ok").and_then(|v| v.as_bool()) == Some(true) {
        let state = answer.get("state").and_then(|v| v.as_str()).unwrap_or("?");
        println!("accepted; this node is now {state}");
        Ok(ExitCode::SUCCESS)
    } else {
        let why = answer
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or("no reason given");
        bail!("refused: {why}")
    }
}

fn watch_alerts(path: &Path, binding: &str) -> anyhow::Result<ExitCode> {
    let loaded = load(path)?;
    let Some(settings) = nova_network_ha::bus::BusSettings::from_config(&loaded.config) else {
        bail!(
            "{}: no [bus] url is configured: alerts go only to the log",
            path.display()
        );
    };
    runtime()?.block_on(async {
        nova_network_ha::bus::watch_alerts(&settings, binding, |_key, alert| {
            println!("{alert}");
            std::ops::ControlFlow::Continue(())
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The status document as text.
fn render_status(s: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let str_of = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let node = &s["node"];
    let _ = writeln!(
        out,
        "{} (id {}, priority {}): {}{}",
        str_of(node, "name"),
        str_of(node, "id"),
        str_of(node, "priority"),
        str_of(node, "state"),
        if node["fault"].is_null() {
            String::new()
        } else {
            format!(" (fault: {})", str_of(node, "fault"))
        }
    );
    let _ = writeln!(
        out,
        "  nova host {}, nova-network pid {}",
        str_of(s, "nova_host"),
        str_of(s, "nova_network_pid")
    );
    let vips = s["vips_held"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|x| x.as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "  VIPs held: {}",
        if vips.is_empty() { "none".into() } else { vips }
    );
    for p in s["peers"].as_array().into_iter().flatten() {
        let heard = p["last_heard_ms"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        format!(
                            "{k} {}",
                            if v.is_null() {
                                "never".to_owned()
                            } else {
                                format!("{v} ms ago")
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "peer {} (id {}, priority {}): {} {}; heard: {heard}",
            str_of(p, "name"),
            str_of(p, "id"),
            str_of(p, "priority"),
            if p["alive"].as_bool() == Some(true) {
                "alive"
            } else {
                "dead"
            },
            str_of(p, "state")
        );
    }
    if let Some(t) = s["last_transition"].as_object() {
        let steps = t
            .get("steps")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|x| format!("{} {} ms", str_of(x, "step"), str_of(x, "ms")))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "last {}: {} ms ({steps})",
            t.get("kind").and_then(|v| v.as_str()).unwrap_or("?"),
            t.get("total_ms")
                .map(ToString::to_string)
                .unwrap_or_default()
        );
    }
    out
}

fn check_config(path: &Path) -> ExitCode {
    match nova_network_ha::config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", nova_network_ha::config::render_plan(&loaded.config));
            print!(
                "{}",
                nova_network_ha::takeover::steps::render(&loaded.config)
            );
            let plan = nova_network_ha::takeover::Plan::from_config(&loaded.config);
            match runtime() {
                Ok(rt) => print!(
                    "{}",
                    rt.block_on(nova_network_ha::takeover::survey::render(&plan))
                ),
                Err(e) => eprintln!("warning: cannot look at this server's state: {e:#}"),
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: {} error(s):\n{errors}", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn import_heartbeat(
    dir: &Path,
    node: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let imported = match nova_network_ha::import::import_dir(dir, node) {
        Ok(imported) => imported,
        Err(errors) => {
            eprintln!(
                "{}: {} error(s), nothing written:\n{errors}",
                dir.display(),
                errors.0.len()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    match output {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(imported.toml.as_bytes())
                .context("writing the configuration to standard output")?;
        }
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
            file.write_all(imported.toml.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
