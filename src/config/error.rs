//! Configuration errors: each names the file, the key, the line (or the environment variable
//! that overrode the key), what was found and what was expected.
//!
//! Owns the error types only; the checks that raise them live in `validate`, `keyfile` and
//! `nova`.

use std::fmt;
use std::path::PathBuf;

use super::keyfile::KeyFileError;
use super::nova::NovaConfError;

/// Where a key's value came from: a line of the file, an environment variable, or neither known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// 1-based line in the config file.
    Line(usize),
    /// The environment variable that overrode the key.
    Env(String),
    /// Not known (e.g. a key that is missing from a file without the enclosing table).
    File,
}

/// A place in the configuration, printed `file:line` or `file (env VAR)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file.
    pub file: PathBuf,
    /// Where in it (or in the environment).
    pub origin: Origin,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Line(line) => write!(f, "{}:{line}", self.file.display()),
            Origin::Env(var) => write!(f, "{} (overridden by env {var})", self.file.display()),
            Origin::File => write!(f, "{}", self.file.display()),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("{}: cannot read the config file: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("{}:{line}: toml syntax error: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// The merged file and environment do not have the expected shape (a table where a list
    /// of tables is expected, ...); reported by the `config` crate, which stops at the first.
    #[error("{at}: `{key}`: {message}")]
    Shape {
        /// Where.
        at: Location,
        /// The dotted key.
        key: String,
        /// What the `config` crate found and expected.
        message: String,
    },
    /// A key we do not know: most likely a typo, which would silently keep a default.
    #[error("{at}: unknown key `{key}` (expected one of: {expected})")]
    UnknownKey {
        /// Where.
        at: Location,
        /// The dotted key.
        key: String,
        /// The keys allowed there.
        expected: String,
    },
    /// A required key is absent.
    #[error("{at}: `{key}` is missing (expected {expected})")]
    Missing {
        /// Where (the enclosing table when known).
        at: Location,
        /// The dotted key.
        key: String,
        /// What should be there.
        expected: String,
    },
    /// A key has a value we refuse.
    #[error("{at}: `{key}` is {found} (expected {expected})")]
    Invalid {
        /// Where.
        at: Location,
        /// The dotted key.
        key: String,
        /// The value found, quoted, or a description of it.
        found: String,
        /// What is expected instead.
        expected: String,
    },
    /// The key file named by `auth.key_file` is refused.
    #[error("{source} (key file from `{key}` at {at})")]
    KeyFile {
        /// Where the key file is named.
        at: Location,
        /// `auth.key_file`.
        key: String,
        /// What is wrong with it.
        source: KeyFileError,
    },
    /// The nova.conf named by `nova.conf` is refused.
    #[error("{source} (nova.conf from `{key}` at {at})")]
    Nova {
        /// Where the nova.conf is named.
        at: Location,
        /// `nova.conf`.
        key: String,
        /// What is wrong with it.
        source: NovaConfError,
    },
}

/// Every error found in one load, so `check-config` can list them all at once.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// How many errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}
