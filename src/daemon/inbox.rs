//! Everything that reaches the loop, each source on its own channel: heartbeat packets, probe
//! verdicts, admin calls, transition outcomes, nova-network's exits and restarts, the mirror's
//! reconcile, the bus, and the stop signal. [`Inbox::next`] waits for whichever comes first.

use ipnet::IpNet;
use tokio::sync::mpsc;

use super::heartbeat::Packet;
use super::transition::Finished;
use crate::admin::Call;
use crate::bus::BusEvent;
use crate::probes::Verdict;
use crate::probes::nova::Exited;
use crate::takeover::nova::NovaChild;

/// Capacity of each channel.
const CAPACITY: usize = 1024;

/// One event for the loop.
pub enum Event {
    /// A datagram on a heartbeat path.
    Packet(Packet),
    /// A probe's verdict changed.
    Verdict(Verdict),
    /// An operator request from the admin socket.
    Admin(Call),
    /// A takeover or release task finished.
    Finished(Finished),
    /// nova-network exited on its own.
    NovaExited(Exited),
    /// nova-network was started again after its back-off (or could not be).
    NovaRestarted(Result<NovaChild, String>),
    /// The mirror's reconcile finished: the floating IPs removed, or why it failed.
    Reconciled(Result<Vec<IpNet>, String>),
    /// Something from the message bus.
    Bus(BusEvent),
    /// SIGTERM or SIGINT.
    Shutdown,
}

/// The sending ends, one per source; cheap to clone.
#[derive(Clone)]
pub struct Senders {
    pub packets: mpsc::Sender<Packet>,
    pub verdicts: mpsc::Sender<Verdict>,
    pub calls: mpsc::Sender<Call>,
    pub finished: mpsc::Sender<Finished>,
    pub exits: mpsc::Sender<Exited>,
    pub restarted: mpsc::Sender<Result<NovaChild, String>>,
    pub reconciled: mpsc::Sender<Result<Vec<IpNet>, String>>,
    pub shutdown: mpsc::Sender<()>,
}

/// The receiving ends.
pub struct Inbox {
    packets: mpsc::Receiver<Packet>,
    verdicts: mpsc::Receiver<Verdict>,
    calls: mpsc::Receiver<Call>,
    finished: mpsc::Receiver<Finished>,
    exits: mpsc::Receiver<Exited>,
    restarted: mpsc::Receiver<Result<NovaChild, String>>,
    reconciled: mpsc::Receiver<Result<Vec<IpNet>, String>>,
    shutdown: mpsc::Receiver<()>,
    /// The bus's events, once it is started.
    pub bus: Option<mpsc::Receiver<BusEvent>>,
}

impl Inbox {
    /// Empty channels.
    pub fn new() -> (Inbox, Senders) {
        let (packets, packets_rx) = mpsc::channel(CAPACITY);
        let (verdicts, verdicts_rx) = mpsc::channel(64);
        let (calls, calls_rx) = mpsc::channel(64);
        let (finished, finished_rx) = mpsc::channel(16);
        let (exits, exits_rx) = mpsc::channel(16);
        let (restarted, restarted_rx) = mpsc::channel(16);
        let (reconciled, reconciled_rx) = mpsc::channel(16);
        let (shutdown, shutdown_rx) = mpsc::channel(4);
        (
            Inbox {
                packets: packets_rx,
                verdicts: verdicts_rx,
                calls: calls_rx,
                finished: finished_rx,
                exits: exits_rx,
                restarted: restarted_rx,
                reconciled: reconciled_rx,
                shutdown: shutdown_rx,
                bus: None,
            },
            Senders {
                packets,
                verdicts,
                calls,
                finished,
                exits,
                restarted,
                reconciled,
                shutdown,
            },
        )
    }

    /// The next event from any source; `None` once every source is closed.
    pub async fn next(&mut self) -> Option<Event> {
        let bus = async {
            match &mut self.bus {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(p) = self.packets.recv() => Some(Event::Packet(p)),
            Some(v) = self.verdicts.recv() => Some(Event::Verdict(v)),
            Some(c) = self.calls.recv() => Some(Event::Admin(c)),
            Some(f) = self.finished.recv() => Some(Event::Finished(f)),
            Some(e) = self.exits.recv() => Some(Event::NovaExited(e)),
            Some(r) = self.restarted.recv() => Some(Event::NovaRestarted(r)),
            Some(r) = self.reconciled.recv() => Some(Event::Reconciled(r)),
            Some(e) = bus => Some(Event::Bus(e)),
            Some(()) = self.shutdown.recv() => Some(Event::Shutdown),
            else => None,
        }
    }
}

/// SIGTERM and SIGINT, each sent to the loop as a stop request.
pub fn spawn_signals(shutdown: mpsc::Sender<()>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if shutdown.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
