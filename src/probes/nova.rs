//! nova-network supervision: the running child is owned by a task that reports its exit the
//! instant it happens (tokio reaps it on SIGCHLD, no polling) and stops it on request.
//!
//! Reports only; whether an exit is restarted in place or moves the service is the respawn
//! budget's decision ([`crate::cluster::respawn`]), taken by the state machine.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::takeover::nova::NovaChild;

/// nova-network exited on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    /// Its pid.
    pub pid: u32,
    /// How it ended, for the log.
    pub status: String,
}

/// Control of a supervised nova-network.
#[derive(Debug)]
pub struct Supervised {
    pid: u32,
    stop: oneshot::Sender<oneshot::Sender<()>>,
}

impl Supervised {
    /// Owns `child` in a task: its exit is sent on `exits`; [`Supervised::stop`] ends it
    /// (SIGTERM, then SIGKILL after `grace`).
    pub fn start(mut child: NovaChild, grace: Duration, exits: mpsc::Sender<Exited>) -> Supervised {
        let pid = child.pid();
        let (stop, mut stop_rx) = oneshot::channel::<oneshot::Sender<()>>();
        tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let status = match status {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    };
                    let _ = exits.send(Exited { pid, status }).await;
                }
                done = &mut stop_rx => {
                    if let Err(e) = child.stop(grace).await {
                        warn!(pid, error = %e, "stopping nova-network");
                    }
                    if let Ok(done) = done {
                        let _ = done.send(());
                    }
                }
            }
        });
        info!(pid, "nova-network started");
        Supervised { pid, stop }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops it and waits until it is gone (or its task already ended).
    pub async fn stop(self) {
        let (done, wait) = oneshot::channel();
        if self.stop.send(done).is_ok() {
            let _ = wait.await;
        }
    }
}
