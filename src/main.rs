//! The `nova-network-ha` command: clap, exit codes, and calls into the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

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
    /// Run the daemon [not available yet in this version: exits with an error].
    Run {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show this node's and its peers' state [not available yet: needs the daemon].
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask this node to become active [not available yet: needs the daemon].
    Takeover,
    /// Ask this node to hand the service to a healthy peer [not available yet: needs the daemon].
    Standby,
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
        Command::Run { .. } => not_yet("run"),
        Command::Status { .. } => not_yet("status"),
        Command::Takeover => not_yet("takeover"),
        Command::Standby => not_yet("standby"),
    }
}

/// The daemon and its status socket are not built yet; say so instead of pretending.
fn not_yet(command: &str) -> anyhow::Result<ExitCode> {
    bail!(
        "`{command}` is not available in this version: the daemon and its status socket are not \
         built yet (check-config and import-heartbeat work)"
    )
}

fn check_config(path: &Path) -> ExitCode {
    match nova_network_ha::config::load(path) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", nova_network_ha::config::render_plan(&loaded.config));
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
