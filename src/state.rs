//! Persistent local state: the boot generation.
//!
//! Owns the files under `state.dir` (today only `generation`). Uses `std::fs` only; never
//! touches the network, the cluster state machine or any clock.
//!
//! The boot generation is carried in every heartbeat so peers can tell a restarted node (whose
//! sequence numbers start over) from a replay. It must therefore grow on every start, even
//! across crashes: the new value is on disk, fsynced, before it is returned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Name of the boot generation file inside the state directory.
pub const GENERATION_FILE: &str = "generation";

/// Why the persistent state cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The state directory cannot be created.
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The generation file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The generation file does not hold one decimal number; it is never silently reset,
    /// since a reset would make peers drop our heartbeats as an old generation.
    #[error("corrupt boot generation in {path}: found {content:?}, expected one decimal number")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds (cut to 64 characters).
        content: String,
    },
    /// The generation is at its maximum and cannot grow.
    #[error("boot generation in {path} is at its maximum ({value}), it cannot grow")]
    Exhausted {
        /// The file.
        path: PathBuf,
        /// The value found.
        value: u64,
    },
    /// Writing, syncing or renaming the new generation failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// The next boot generation: the stored one plus one (0 when none is stored yet, so the first
/// start is 1), durably written to `state_dir/generation` before it is returned.
///
/// The write is atomic: a temporary file in the same directory is written and fsynced, renamed
/// over `generation`, and the directory is fsynced. The directory is created when missing.
pub fn next_generation(state_dir: &Path) -> Result<u64, StateError> {
    fs::create_dir_all(state_dir).map_err(|source| StateError::CreateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    let path = state_dir.join(GENERATION_FILE);
    let previous = match fs::read(&path) {
        Ok(bytes) => parse(&path, &bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let next = previous
        .checked_add(1)
        .ok_or_else(|| StateError::Exhausted {
            path: path.clone(),
            value: previous,
        })?;
    write_atomic(state_dir, &path, format!("{next}\n").as_bytes())?;
    Ok(next)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<u64, StateError> {
    let corrupt = || StateError::Corrupt {
        path: path.to_path_buf(),
        content: String::from_utf8_lossy(bytes).chars().take(64).collect(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt())?;
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(corrupt());
    }
    digits.parse().map_err(|_| corrupt())
}

fn write_atomic(dir: &Path, path: &Path, content: &[u8]) -> Result<(), StateError> {
    let tmp = dir.join(format!(".{GENERATION_FILE}.tmp"));
    let werr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StateError::Write { path: p, source }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(werr(&tmp))?;
    f.write_all(content).map_err(werr(&tmp))?;
    f.sync_all().map_err(werr(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(werr(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(werr(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one_and_grows_on_each_call() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nested/state");
        assert_eq!(next_generation(&state).unwrap(), 1);
        assert_eq!(next_generation(&state).unwrap(), 2);
        assert_eq!(next_generation(&state).unwrap(), 3);
        assert_eq!(
            fs::read_to_string(state.join(GENERATION_FILE)).unwrap(),
            "3\n"
        );
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&state).unwrap().count(), 1);
    }

    #[test]
    fn survives_as_a_file_written_by_someone_else() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(GENERATION_FILE), "41\n").unwrap();
        assert_eq!(next_generation(dir.path()).unwrap(), 42);
        // Survives a "restart": a fresh call reads what the last one wrote.
        assert_eq!(next_generation(dir.path()).unwrap(), 43);
    }

    #[test]
    fn corrupt_file_is_an_error_naming_file_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(GENERATION_FILE);
        for bad in ["", "twelve\n", "-3", "1 2", "99999999999999999999999"] {
            fs::write(&file, bad).unwrap();
            let err = next_generation(dir.path()).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{bad:?}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            // Not silently reset.
            assert_eq!(fs::read_to_string(&file).unwrap(), bad);
        }
    }

    #[test]
    fn exhausted_generation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(GENERATION_FILE), u64::MAX.to_string()).unwrap();
        assert!(matches!(
            next_generation(dir.path()),
            Err(StateError::Exhausted { .. })
        ));
    }
}
