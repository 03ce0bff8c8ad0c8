//! Library errors. Every variant carries the context a user needs to fix the
//! problem: the file, line, column and key for config errors; the seed, limit
//! and simulated time for run errors.

use std::path::PathBuf;

use crate::time::{SimDuration, SimTime};

/// Where a config value came from: a line and column in a file, or a
/// `--set key=value` override on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// 1-based line and column in `file`.
    File {
        file: String,
        line: usize,
        column: usize,
    },
    /// The whole file (no finer location is known, e.g. a missing key).
    WholeFile { file: String },
    /// A command-line override.
    Override { file: String, assignment: String },
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { file, line, column } => write!(f, "{file}:{line}:{column}"),
            Origin::WholeFile { file } => write!(f, "{file}"),
            Origin::Override { file, assignment } => {
                write!(f, "{file} (overridden by --set {assignment})")
            }
        }
    }
}

/// A config or trace-spec error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{origin}: invalid TOML: {message}")]
    Syntax { origin: Origin, message: String },
    /// A key is unknown, missing, of the wrong type or out of range.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: Origin,
        key: String,
        message: String,
    },
    /// A `--set` argument is malformed or names no known key.
    #[error("--set {assignment}: {message}")]
    BadOverride { assignment: String, message: String },
    /// A `--policy` or `--trace` argument names neither a file nor a shipped name.
    #[error("{what} `{name}`: no such file, and not a shipped name (shipped: {shipped})")]
    UnknownName {
        what: &'static str,
        name: String,
        shipped: String,
    },
}

/// Why a simulation stopped without finishing.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The run processed `limit` events and had not finished.
    #[error("run limit reached: max_events = {limit} events processed by simulated {at} without finishing (seed {seed}); raise run.max_events or shorten the trace")]
    MaxEvents { limit: u64, at: SimTime, seed: u64 },
    /// The simulated clock passed `limit`.
    #[error("run limit reached: simulated time passed run.max_sim_time = {limit} after {events} events (seed {seed}); raise run.max_sim_time, shorten the trace, or check for an overloaded pool that never drains")]
    MaxSimTime {
        limit: SimDuration,
        events: u64,
        seed: u64,
    },
    /// An internal invariant was violated: a bug in pooltune, reported with
    /// what is needed to reproduce it.
    #[error("invariant violated at simulated {at} (seed {seed}): {what}; please report this with the command line")]
    Invariant {
        what: String,
        at: SimTime,
        seed: u64,
    },
}

/// Any error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Sim(#[from] SimError),
    /// Writing an output failed.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
