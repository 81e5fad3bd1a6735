//! Fatal lines in a log file (the seed's "syslog has reported any fatal error"): follows the
//! file from its current end, like `tail -F`, reopening it when it is rotated, and reports a
//! failure on the first line matching one of the configured regular expressions.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use regex::RegexSet;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

use super::Verdict;
use crate::cluster::Probe;

/// How often the file is checked for new lines and rotation.
const POLL: Duration = Duration::from_millis(100);

/// Why the log probe cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A pattern does not compile (config validation should have caught it).
    #[error("bad fatal pattern: {0}")]
    Pattern(#[from] regex::Error),
}

/// Follows `file` until the receiver is dropped; a matching line sends a failing verdict
/// naming the line (later matches are not re-sent until [`reset`](LogWatch::reset)).
pub struct LogWatch {
    file: PathBuf,
    patterns: RegexSet,
}

impl LogWatch {
    /// A watcher of `file` for `patterns`.
    pub fn new(file: PathBuf, patterns: &[String]) -> Result<LogWatch, LogError> {
        Ok(LogWatch {
            file,
            patterns: RegexSet::new(patterns)?,
        })
    }

    /// Whether a line is fatal.
    pub fn is_fatal(&self, line: &str) -> bool {
        self.patterns.is_match(line)
    }

    /// Runs until `verdicts` is closed. Missing files are waited for.
    pub async fn run(self, verdicts: mpsc::Sender<Verdict>) {
        let mut position: Option<(u64, u64)> = None; // (inode, offset)
        loop {
            if verdicts.is_closed() {
                return;
            }
            if let Some(line) = self.read_new(&mut position).await {
                let verdict = Verdict {
                    probe: Probe::Log,
                    ok: false,
                    detail: format!("fatal line in {}: {line}", self.file.display()),
                };
                if verdicts.send(verdict).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads lines added since `position`; returns the first fatal one.
    async fn read_new(&self, position: &mut Option<(u64, u64)>) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let meta = tokio::fs::metadata(&self.file).await.ok()?;
        let (inode, size) = (meta.ino(), meta.len());
        let offset = match *position {
            // First sight: start at the end, like tail -F.
            None => {
                *position = Some((inode, size));
                return None;
            }
            // Rotated or truncated: read the new file from its start.
            Some((i, o)) if i != inode || o > size => 0,
            Some((_, o)) => o,
        };
        if offset == size {
            *position = Some((inode, size));
            return None;
        }
        let mut file = tokio::fs::File::open(&self.file).await.ok()?;
        file.seek(SeekFrom::Start(offset)).await.ok()?;
        let mut reader = BufReader::new(file);
        let mut consumed = offset;
        let mut line = String::new();
        let mut fatal = None;
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !line.ends_with('\n') {
                        // A partial line: read it again once complete.
                        break;
                    }
                    consumed += n as u64;
                    if fatal.is_none() && self.is_fatal(&line) {
                        fatal = Some(line.trim_end().to_owned());
                    }
                }
            }
        }
        *position = Some((inode, consumed));
        fatal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_a_fatal_line_appended_after_start_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nova-network.log");
        std::fs::write(&file, "CRITICAL nova old news\n").unwrap();
        let watch = LogWatch::new(file.clone(), &["CRITICAL nova".into()]).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(watch.run(tx));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(rx.try_recv().is_err(), "a line from before the start fired");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        std::io::Write::write_all(&mut f, b"INFO fine\nCRITICAL nova [-] cannot start\n").unwrap();
        let verdict = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(verdict.probe, Probe::Log);
        assert!(!verdict.ok);
        assert!(verdict.detail.contains("CRITICAL nova [-] cannot start"));
        task.abort();
    }

    #[tokio::test]
    async fn follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("n.log");
        std::fs::write(&file, "start\n").unwrap();
        let watch = LogWatch::new(file.clone(), &["FATAL".into()]).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(watch.run(tx));
        tokio::time::sleep(Duration::from_millis(250)).await;
        std::fs::rename(&file, dir.path().join("n.log.1")).unwrap();
        std::fs::write(&file, "FATAL after rotation\n").unwrap();
        let verdict = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(verdict.detail.contains("FATAL after rotation"));
        task.abort();
    }
}
