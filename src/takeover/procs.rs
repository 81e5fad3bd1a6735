//! nova-network's stray dnsmasq and radvd: found by their exact executable in this network
//! namespace only, and only when they are nova's; then SIGTERM, a bounded wait, SIGKILL.
//! Replaces the seed's `killall dnsmasq radvd`, which matched by name, in every namespace, and
//! took libvirt's dnsmasq on virbr0 and a site's own with nova's.
//!
//! A process is nova's when `/proc/PID/exe` is one of the configured paths (a ` (deleted)`
//! suffix, left by a package upgrade, is ignored), `/proc/PID/ns/net` is the calling thread's
//! network namespace (`/proc/thread-self/ns/net`), and nova started it: its pid is in one of
//! nova's pid files under `networks_path` (`nova-*.pid`), or its command line names one of
//! nova's files there (dnsmasq's `--pid-file=`/`--dhcp-hostsfile=`, radvd's `-C`/`-p`). A
//! process is never signalled by name, nor when its start time changed (pid reuse).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often the bounded wait looks at `/proc`.
const POLL: Duration = Duration::from_millis(10);

/// Why processes could not be found or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/proc` (or our own namespace link) could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Proc {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A signal could not be sent (other than to a process already gone).
    #[error("cannot send {signal} to pid {pid} ({}): {source}", exe.display())]
    Signal {
        /// The pid.
        pid: i32,
        /// Its executable.
        exe: PathBuf,
        /// The signal.
        signal: Signal,
        /// The errno.
        source: nix::Error,
    },
    /// A process survived SIGKILL past the wait.
    #[error("pid {pid} ({}) still running after SIGKILL", exe.display())]
    Survived {
        /// The pid.
        pid: i32,
        /// Its executable.
        exe: PathBuf,
    },
}

/// A process found by [`find`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its pid.
    pub pid: i32,
    /// The configured executable it runs.
    pub exe: PathBuf,
    /// Why it is nova's (`pid file nova-br100.pid`, `command line names ...`); `None` when
    /// it is not, and is left alone.
    pub nova: Option<String>,
    /// Its start time (`/proc/PID/stat` field 22), to notice pid reuse.
    start: u64,
}

/// A process [`stop`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Its pid.
    pub pid: i32,
    /// Its executable.
    pub exe: PathBuf,
    /// Why it was nova's.
    pub why: String,
    /// Whether it needed SIGKILL.
    pub killed: bool,
}

/// The (device, inode) of a namespace link.
fn ns_id(path: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The executable of `pid`, without a ` (deleted)` suffix.
fn exe_of(pid: i32) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = link.to_string_lossy();
    Some(match s.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => link,
    })
}

/// `(state, start time)` from `/proc/PID/stat`; `None` when the process is gone.
fn stat_of(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall is index 19 after the state (field 3).
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` still runs with start time `start` (a zombie counts as gone).
fn alive(pid: i32, start: u64) -> bool {
    matches!(stat_of(pid), Some((state, s)) if s == start && state != 'Z' && state != 'X')
}

/// Pids named in nova's pid files directly under `dir` (`nova-BRIDGE.pid` for dnsmasq,
/// `nova-ra-BRIDGE.pid` for radvd), with the file's name; unreadable or malformed files are
/// skipped.
pub fn pid_files(dir: &Path) -> BTreeMap<i32, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("nova-") && name.ends_with(".pid")) {
                return None;
            }
            let pid = std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse::<i32>()
                .ok()?;
            (pid > 0).then_some((pid, name))
        })
        .collect()
}

/// The argument of `cmdline` (NUL-separated, as in `/proc/PID/cmdline`) that names one of
/// nova's files (`nova-*`) directly under `dir`, bare or as an `--option=PATH` value.
pub fn names_nova_file(cmdline: &[u8], dir: &Path) -> Option<String> {
    cmdline
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .find(|arg| {
            let value = match arg.split_once('=') {
                Some((opt, v)) if opt.starts_with('-') => v,
                _ => arg,
            };
            let path = Path::new(value);
            path.parent() == Some(dir)
                && path
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with("nova-"))
        })
        .map(|a| a.into_owned())
}

/// Why `pid` is nova's: named in one of its pid files, or its command line names one of its
/// files under `dir`.
fn nova_mark(pid: i32, dir: &Path, pid_files: &BTreeMap<i32, String>) -> Option<String> {
    if let Some(file) = pid_files.get(&pid) {
        return Some(format!("pid file {file}"));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    names_nova_file(&cmdline, dir).map(|arg| format!("command line names {arg}"))
}

/// nova's processes running one of `executables` in this thread's network namespace (see
/// the module's rules), from a scan of `/proc` plus nova's pid files under `networks_path`.
pub fn find(executables: &[PathBuf], networks_path: &Path) -> Result<Vec<Found>, Error> {
    Ok(scan(executables, networks_path)?
        .into_iter()
        .filter(|f| f.nova.is_some())
        .collect())
}

/// Every process running one of `executables` in this thread's network namespace, nova's
/// or not ([`Found::nova`] says which): what `check-config` shows.
pub fn scan(executables: &[PathBuf], networks_path: &Path) -> Result<Vec<Found>, Error> {
    if executables.is_empty() {
        return Ok(Vec::new());
    }
    let own = Path::new("/proc/thread-self/ns/net");
    let our_ns = ns_id(own).map_err(|source| Error::Proc {
        path: own.to_owned(),
        source,
    })?;
    // A configured path that is a symlink shows in /proc as its target.
    let wanted: Vec<(PathBuf, PathBuf)> = executables
        .iter()
        .map(|e| {
            (
                e.clone(),
                std::fs::canonicalize(e).unwrap_or_else(|_| e.clone()),
            )
        })
        .collect();
    let entries = std::fs::read_dir("/proc").map_err(|source| Error::Proc {
        path: "/proc".into(),
        source,
    })?;
    let me = std::process::id();
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| u32::try_from(*p).ok() != Some(me))
        .collect();
    // networks_path as nova's command lines spell it, and as the kernel resolves it.
    let dir = std::fs::canonicalize(networks_path).unwrap_or_else(|_| networks_path.to_owned());
    let nova_pids = pid_files(networks_path);
    pids.extend(nova_pids.keys());
    let mut found = BTreeMap::new();
    for pid in pids {
        if found.contains_key(&pid) {
            continue;
        }
        let Some(exe) = exe_of(pid) else { continue };
        let Some((configured, _)) = wanted.iter().find(|(c, real)| *c == exe || *real == exe)
        else {
            continue;
        };
        if ns_id(Path::new(&format!("/proc/{pid}/ns/net"))).ok() != Some(our_ns) {
            continue;
        }
        let Some((state, start)) = stat_of(pid) else {
            continue;
        };
        if state == 'Z' {
            continue;
        }
        let nova = nova_mark(pid, networks_path, &nova_pids).or_else(|| {
            if dir == networks_path {
                None
            } else {
                nova_mark(pid, &dir, &nova_pids)
            }
        });
        found.insert(
            pid,
            Found {
                pid,
                exe: configured.clone(),
                nova,
                start,
            },
        );
    }
    Ok(found.into_values().collect())
}

/// Send `signal` to `p` unless it is gone or its pid was reused; `ESRCH` is not an error.
fn signal(p: &Found, signal: Signal) -> Result<(), Error> {
    if !alive(p.pid, p.start) {
        return Ok(());
    }
    match kill(Pid::from_raw(p.pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(Error::Signal {
            pid: p.pid,
            exe: p.exe.clone(),
            signal,
            source,
        }),
    }
}

/// Wait up to `grace` (polling `/proc` every 10 ms) for every process of `procs` to end;
/// returns those still running.
async fn wait_gone(procs: Vec<Found>, grace: Duration) -> Vec<Found> {
    let deadline = tokio::time::Instant::now() + grace;
    let mut left = procs;
    loop {
        left.retain(|p| alive(p.pid, p.start));
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The signal a process is stopped with first: SIGKILL for radvd, whose SIGTERM sends a last
/// advertisement withdrawing the router (lifetime 0), so the VMs would drop their IPv6
/// default route until the new active's radvd speaks, while the new active takes the
/// router's link-local address over and keeps that route working; SIGTERM for the rest.
fn first_signal(exe: &Path) -> Signal {
    if exe.file_name().is_some_and(|n| n == "radvd") {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    }
}

/// Stop every process [`find`] reports: SIGTERM to all (SIGKILL to radvd, see
/// [`first_signal`]), wait up to `grace`, SIGKILL to the survivors, wait up to `grace` again.
/// Returns what it stopped (empty: nothing ran).
pub async fn stop(
    executables: &[PathBuf],
    networks_path: &Path,
    grace: Duration,
) -> Result<Vec<Stopped>, Error> {
    let found = find(executables, networks_path)?;
    for p in &found {
        signal(p, first_signal(&p.exe))?;
    }
    let survivors = wait_gone(found.clone(), grace).await;
    let stubborn: Vec<&Found> = survivors
        .iter()
        .filter(|p| first_signal(&p.exe) != Signal::SIGKILL)
        .collect();
    for p in &stubborn {
        signal(p, Signal::SIGKILL)?;
    }
    if let Some(p) = wait_gone(survivors.clone(), grace).await.first() {
        return Err(Error::Survived {
            pid: p.pid,
            exe: p.exe.clone(),
        });
    }
    Ok(found
        .into_iter()
        .map(|p| Stopped {
            killed: first_signal(&p.exe) == Signal::SIGKILL
                || stubborn.iter().any(|s| s.pid == p.pid),
            pid: p.pid,
            exe: p.exe,
            why: p.nova.unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_own_process() {
        let (state, start) = stat_of(std::process::id() as i32).unwrap();
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
    }

    #[test]
    fn pid_files_read_novas_numbers_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nova-br100.pid"), "1234\n").unwrap();
        std::fs::write(dir.path().join("nova-ra-br100.pid"), "99").unwrap();
        std::fs::write(dir.path().join("libvirt.pid"), "77").unwrap();
        std::fs::write(dir.path().join("nova-bad.pid"), "x").unwrap();
        std::fs::write(dir.path().join("nova-br100.conf"), "5").unwrap();
        let pids = pid_files(dir.path());
        assert_eq!(
            pids.into_iter().collect::<Vec<_>>(),
            vec![
                (99, "nova-ra-br100.pid".to_owned()),
                (1234, "nova-br100.pid".to_owned())
            ]
        );
    }

    #[test]
    fn command_line_must_name_a_nova_file_in_networks_path() {
        let dir = Path::new("/var/lib/nova/networks");
        let nova = b"dnsmasq\0--strict-order\0--pid-file=/var/lib/nova/networks/nova-br100.pid\0";
        assert_eq!(
            names_nova_file(nova, dir).as_deref(),
            Some("--pid-file=/var/lib/nova/networks/nova-br100.pid")
        );
        let radvd = b"radvd\0-C\0/var/lib/nova/networks/nova-ra-br100.conf\0-p\0x\0";
        assert!(names_nova_file(radvd, dir).is_some());
        let libvirt = b"/usr/sbin/dnsmasq\0--conf-file=/var/lib/libvirt/dnsmasq/default.conf\0";
        assert!(names_nova_file(libvirt, dir).is_none());
        // Elsewhere, or not nova's name, or under a subdirectory: not nova's.
        let other = b"dnsmasq\0--pid-file=/var/lib/nova/networks/site.pid\0--conf-file=/var/lib/nova/networks/x/nova-a.conf\0";
        assert!(names_nova_file(other, dir).is_none());
    }
}
