//! Local health probes: each watches one thing and reports pass/fail changes as
//! [`crate::cluster::Input::Health`] verdicts through a channel: [`links`] (netlink link
//! events), [`log`] (fatal lines), [`nova`] (the nova-network child's exit) and [`queue`]
//! (nova-network's queue as the broker sees it). They never decide anything: the state
//! machine does.

pub mod links;
pub mod log;
pub mod nova;
pub mod queue;

use tokio::sync::mpsc;
use tracing::error;

use crate::cluster::Probe;
use crate::config::Config;

/// A probe's verdict change, sent to the daemon loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Which probe.
    pub probe: Probe,
    /// Whether it passes now.
    pub ok: bool,
    /// What was seen, for the log and the alert.
    pub detail: String,
}

/// Starts the configured watching probes (links, the log file); their verdicts go to
/// `verdicts`. nova-network's exit and its queue are judged as it runs ([`nova`], [`queue`]).
pub fn spawn(config: &Config, verdicts: mpsc::Sender<Verdict>) -> Result<(), String> {
    if config.probes.watch_links {
        let mut interfaces: Vec<String> = config
            .failover
            .vips
            .iter()
            .map(|v| v.interface.clone())
            .collect();
        interfaces.push(config.nova.public_interface.clone());
        interfaces.sort();
        interfaces.dedup();
        let tx = verdicts.clone();
        tokio::spawn(async move {
            if let Err(e) = links::watch(interfaces, tx).await {
                error!(error = %e, "link probe stopped");
            }
        });
    }
    if let Some(file) = &config.probes.log_file {
        let watch = log::LogWatch::new(file.clone(), &config.probes.fatal_patterns)
            .map_err(|e| e.to_string())?;
        tokio::spawn(watch.run(verdicts));
    }
    Ok(())
}
