//! nova-network's netfilter state: its iptables chains (`nova-network-*`, the jumps to them,
//! and the shared `nova-filter-top` / `nova-postrouting-bottom` while only nova-network uses
//! them) and its ebtables rules ([`ebtables`]), removed in one `iptables-restore --noflush`
//! per family, what nova's `setup_iptables.sh clear all` did by hand, but leaving the chains
//! of nova-compute, nova-api and everyone else on the server as they were.
//!
//! Reads `iptables-save` / `ip6tables-save`, computes the scripts with pure functions
//! ([`rules`]) and applies them atomically (each table commits whole or not at all). IPv6 is
//! skipped, with a note, when `ip6tables` is absent.

pub mod ebtables;
pub mod rules;

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

pub use rules::{SHARED_CHAINS, dnat_destinations, fit, nova_part, removal_script};

/// The prefix of nova-network's wrapped chains: nova names them after the running binary
/// (`nova-network`), the way nova-compute's are `nova-compute-*`.
pub const NOVA_NETWORK_PREFIX: &str = "nova-network-";

/// Why the chains could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tool could not be run.
    #[error("cannot run {tool}: {source}")]
    Spawn {
        /// The tool (`iptables-save`, ...).
        tool: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tool exited with an error.
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        /// The tool.
        tool: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// An address family's pair of tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables-save` / `iptables-restore`.
    V4,
    /// `ip6tables-save` / `ip6tables-restore`.
    V6,
}

impl Family {
    pub(crate) fn save(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    pub(crate) fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

/// What [`remove_chains`] did for one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The family.
    pub family: Family,
    /// `table/chain` of every chain deleted (empty: nothing to do).
    pub chains: Vec<String>,
    /// Jumps deleted from other chains.
    pub jumps: usize,
    /// Why the family was skipped (its tools are missing), if it was.
    pub skipped: Option<String>,
}

/// `iptables-save` (or `ip6tables-save`): the dump, or `None` when the tool is not installed.
pub async fn save(family: Family) -> Result<Option<String>, Error> {
    match run(family.save(), &[], None).await {
        Ok(s) => Ok(Some(s)),
        Err(Error::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `iptables-restore --noflush` (or the IPv6 one) of `script`: each table commits whole or
/// not at all.
pub async fn restore_noflush(family: Family, script: &str) -> Result<(), Error> {
    run(family.restore(), &["--noflush"], Some(script))
        .await
        .map(|_| ())
}

/// Put `part` (a [`nova_part`] taken on another server) in place here, [`fit`] to this
/// server's rules so that the shared chains other nova binaries use here keep their rules.
pub async fn restore_part(family: Family, part: &str, prefix: &str) -> Result<(), Error> {
    let here = save(family).await?.unwrap_or_default();
    restore_noflush(family, &fit(part, &here, prefix)).await
}

/// Remove nova-network's chains ([`removal_script`]: `prefix*`, the jumps to them, a shared
/// chain they leave empty), IPv4 then IPv6, each family in one `iptables-restore --noflush`.
/// Nothing to do when there are none. IPv6 is skipped (reported in [`Removed::skipped`]) when
/// `ip6tables-save` cannot be run.
pub async fn remove_chains(prefix: &str) -> Result<Vec<Removed>, Error> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let save = match run(family.save(), &[], None).await {
            Ok(s) => s,
            Err(Error::Spawn { source, .. })
                if family == Family::V6 && source.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::info!(
                    step = "firewall",
                    family = "ipv6",
                    "ip6tables-save not found, IPv6 skipped"
                );
                out.push(Removed {
                    family,
                    chains: Vec::new(),
                    jumps: 0,
                    skipped: Some("ip6tables-save not found".into()),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some((script, chains, jumps)) = removal_script(&save, prefix) else {
            out.push(Removed {
                family,
                chains: Vec::new(),
                jumps: 0,
                skipped: None,
            });
            continue;
        };
        run(family.restore(), &["--noflush"], Some(&script)).await?;
        out.push(Removed {
            family,
            chains,
            jumps,
            skipped: None,
        });
    }
    Ok(out)
}

/// Run `tool args`, feeding `stdin`, and return its stdout.
pub(crate) async fn run(
    tool: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, Error> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn { tool, source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|source| Error::Spawn { tool, source })?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|source| Error::Spawn { tool, source })?;
    if !output.status.success() {
        return Err(Error::Failed {
            tool,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
