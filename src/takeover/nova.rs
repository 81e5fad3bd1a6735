//! The nova-network child: started with `--flagfile=<nova.conf> --host=<shared host>` (what the
//! seed's `screen_it network "nova-network --flagfile=..."` did), watched without polling, and
//! stopped with SIGTERM, then SIGKILL to its process group after a grace period.
//!
//! Owns that one child and its process group; never signals anything else. It runs in its
//! own process group so a terminal's Ctrl-C does not reach it, and it is not killed when the
//! handle is dropped (the daemon decides when nova-network stops).

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Why the child could not be started, watched or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is empty.
    #[error("empty nova-network command line")]
    EmptyCommand,
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("cannot wait for nova-network (pid {pid}): {source}")]
    Wait {
        /// Its pid.
        pid: u32,
        /// The OS error.
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("cannot send {signal} to nova-network (pid {pid}): {source}")]
    Signal {
        /// Its pid.
        pid: u32,
        /// The signal.
        signal: Signal,
        /// The errno.
        source: nix::Error,
    },
}

/// A running nova-network.
///
/// Contract: [`NovaChild::wait`] resolves the moment the child exits (tokio reaps it on
/// SIGCHLD); call [`NovaChild::stop`] to end it; after either, the pid is no longer ours.
pub struct NovaChild {
    child: Child,
    pid: u32,
    status: Option<ExitStatus>,
}

impl NovaChild {
    /// Start `command` (program then arguments, as [`crate::config::Config::nova_network_command`]
    /// returns it) in its own process group, stdin from /dev/null, stdout/stderr inherited.
    pub fn spawn(command: &[String]) -> Result<NovaChild, Error> {
        let (program, args) = command.split_first().ok_or(Error::EmptyCommand)?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        // If the daemon dies (SIGKILL, crash), nova-network must not go on consuming the queue
        // behind the peer's back: the kernel sends it SIGTERM when its parent thread exits
        // (tokio's worker threads live as long as the runtime).
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; the closure allocates nothing.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGTERM))
                    .map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| Error::Spawn {
            program: program.clone(),
            source: std::io::Error::other("exited before its pid was read"),
        })?;
        tracing::info!(step = "nova", pid, program = %program, "nova-network started");
        Ok(NovaChild {
            child,
            pid,
            status: None,
        })
    }

    /// Its pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resolves when the child exits, with its status; at once if it already has. Cancel-safe.
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let status = self.child.wait().await.map_err(|source| Error::Wait {
            pid: self.pid,
            source,
        })?;
        self.status = Some(status);
        Ok(status)
    }

    /// SIGTERM to the child; if it has not exited after `grace`, SIGKILL to its whole process
    /// group; returns its exit status. A child already gone is not an error.
    pub async fn stop(&mut self, grace: Duration) -> Result<ExitStatus, Error> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let pid = i32::try_from(self.pid).unwrap_or(i32::MAX);
        self.signal(Signal::SIGTERM, || {
            kill(Pid::from_raw(pid), Signal::SIGTERM)
        })?;
        if let Ok(status) = tokio::time::timeout(grace, self.wait()).await {
            return status;
        }
        tracing::warn!(
            step = "nova",
            pid = self.pid,
            grace_ms = grace.as_millis() as u64,
            "nova-network ignored SIGTERM, killing its group"
        );
        self.signal(Signal::SIGKILL, || {
            killpg(Pid::from_raw(pid), Signal::SIGKILL)
        })?;
        self.wait().await
    }

    fn signal(&self, signal: Signal, send: impl FnOnce() -> nix::Result<()>) -> Result<(), Error> {
        match send() {
            Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
            Err(source) => Err(Error::Signal {
                pid: self.pid,
                signal,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn wait_resolves_when_child_exits() {
        rt().block_on(async {
            let mut c =
                NovaChild::spawn(&["/bin/sh".into(), "-c".into(), "exit 3".into()]).unwrap();
            let status = tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(status.code(), Some(3));
            assert_eq!(c.wait().await.unwrap().code(), Some(3));
        });
    }

    #[test]
    fn stop_terms_then_kills_group() {
        rt().block_on(async {
            // Own process group.
            let mut c = NovaChild::spawn(&["/bin/sleep".into(), "30".into()]).unwrap();
            let pgid = nix::unistd::getpgid(Some(Pid::from_raw(c.pid() as i32))).unwrap();
            assert_eq!(pgid.as_raw() as u32, c.pid());
            let t = tokio::time::Instant::now();
            let s = c.stop(Duration::from_secs(2)).await.unwrap();
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            assert!(s.code().is_none());
            // A child that ignores SIGTERM is killed after the grace.
            let mut c = NovaChild::spawn(&[
                "/bin/sh".into(),
                "-c".into(),
                "trap '' TERM; sleep 30 & wait; sleep 30".into(),
            ])
            .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t = tokio::time::Instant::now();
            let s = c.stop(Duration::from_millis(200)).await.unwrap();
            assert!(t.elapsed() >= Duration::from_millis(200));
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&s),
                Some(nix::libc::SIGKILL)
            );
        });
    }

    #[test]
    fn empty_command_refused() {
        assert!(matches!(NovaChild::spawn(&[]), Err(Error::EmptyCommand)));
    }
}
