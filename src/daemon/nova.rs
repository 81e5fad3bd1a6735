//! Our nova-network as the loop sees it: the supervised child, its restarts after the respawn
//! budget's back-off, and the queue probe that judges it while it runs here. The state machine
//! decides whether an exit is restarted or moves the service; this carries it out.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Config;
use crate::probes::nova::{Exited, Supervised};
use crate::probes::queue::{QueueProbe, Verdict};
use crate::takeover::nova::NovaChild;

/// The nova-network of this node.
pub struct Nova {
    command: Vec<String>,
    grace: Duration,
    running: Option<Supervised>,
    /// Judges it by its queue while it runs here (with a bus).
    probe: Option<QueueProbe>,
    exits: mpsc::Sender<Exited>,
    restarted: mpsc::Sender<Result<NovaChild, String>>,
}

impl Nova {
    /// None running yet; exits and restarts are reported on the given channels.
    pub fn new(
        config: &Config,
        exits: mpsc::Sender<Exited>,
        restarted: mpsc::Sender<Result<NovaChild, String>>,
    ) -> Nova {
        Nova {
            command: config.nova_network_command(),
            grace: config.daemon.nova_stop_grace,
            running: None,
            probe: config.bus.as_ref().map(|b| {
                QueueProbe::new(b.consumer_grace, b.backlog_window)
                    .with_queue(format!("network.{}", config.nova.host))
            }),
            exits,
            restarted,
        }
    }

    /// Whether it runs.
    pub fn runs(&self) -> bool {
        self.running.is_some()
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(Supervised::pid)
    }

    /// `child` runs: supervised, and judged by its queue with a fresh grace.
    pub fn supervise(&mut self, child: NovaChild) {
        self.running = Some(Supervised::start(child, self.grace, self.exits.clone()));
        if let Some(probe) = &mut self.probe {
            probe.started(Instant::now().into_std());
        }
    }

    /// A release takes it (to stop it); its queue is no longer ours to judge.
    pub fn release(&mut self) -> Option<Supervised> {
        if let Some(probe) = &mut self.probe {
            probe.stopped();
        }
        self.running.take()
    }

    /// An exit was reported: true if it was ours (now gone).
    pub fn exited(&mut self, exit: &Exited) -> bool {
        if self.pid() != Some(exit.pid) {
            return false;
        }
        self.running = None;
        warn!(pid = exit.pid, status = %exit.status, "nova-network exited");
        true
    }

    /// Starts it again in place after `after`; the child comes back on the restart channel.
    pub fn restart(&self, after: Duration, attempt: u32, budget: u32) {
        warn!(
            attempt,
            budget,
            after_ms = after.as_millis() as u64,
            "restarting nova-network in place"
        );
        let command = self.command.clone();
        let restarted = self.restarted.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let child = NovaChild::spawn(&command).map_err(|e| e.to_string());
            let _ = restarted.send(child).await;
        });
    }

    /// A child restarted after its back-off: supervised while `active` (and none runs), else
    /// stopped at once (a release began meanwhile).
    pub fn restarted(&mut self, child: NovaChild, active: bool) {
        if active && self.running.is_none() {
            self.supervise(child);
            return;
        }
        let late = Supervised::start(child, self.grace, self.exits.clone());
        info!(
            pid = late.pid(),
            "no longer active: stopping the restarted nova-network"
        );
        tokio::spawn(late.stop());
    }

    /// A queue sample: the probe's verdict when it changed.
    pub fn sample(&mut self, consumers: u32, messages: u32) -> Option<Verdict> {
        let now = Instant::now().into_std();
        self.probe.as_mut()?.sample(now, consumers, messages)
    }

    /// The broker is back: nova-network reconnects too, so its consumer gets a fresh grace
    /// and an outage of the broker never counts against it.
    pub fn bus_reconnected(&mut self) {
        if let Some(probe) = &mut self.probe
            && probe.is_started()
        {
            probe.started(Instant::now().into_std());
        }
    }
}
