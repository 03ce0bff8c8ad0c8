//! Experiments: many simulations, honest error bars, and a search that does
//! not waste them.
//!
//! ```text
//!  --grid / --free axes ──► variants (policy x trace x grid point)
//!                               │  x replications r = 0..k, seed = SeedTree(master).child("replication", r)
//!                               ▼  (the same seeds for every variant: common random numbers)
//!                     tasks (variant, replication) ──► rayon, one simulation per task
//!                               │  sorted by (variant, replication)
//!                               ▼
//!           metrics by dotted path into RunSummary ──► mean, 95 % Student-t interval,
//!                                                       paired differences vs a baseline
//! ```
//!
//! - [`grid`]: `key=a..b:step` and `key=v1,v2` axes, expanded in a fixed order.
//! - [`metrics`]: metric names (dotted paths into the serialized
//!   [`RunSummary`](crate::summary::RunSummary)), validated before anything runs.
//! - [`stats`]: means, 95 % intervals (statrs' Student t), paired differences.
//! - [`runner`]: runs a list of tasks in parallel with progress reporting.
//! - [`sweep`]: `pooltune sim sweep`; writes `sweep.json`, `sweep.csv`,
//!   `sweep.md`, `runs.csv`.
//! - [`tune`]: `pooltune tune`; successive halving over seeds with random
//!   and coordinate search, confirmation on fresh seeds, a policy TOML.
//! - [`shard`]: `--shard K/N` slices; [`merge`]: `pooltune merge`.
//!
//! Determinism: a replication's seed depends only on the master seed and
//! the replication index; results are ordered by (variant, replication)
//! whatever the thread count or shard layout, and numbers cross machines as
//! exact bit patterns, so a merged sweep is byte-identical to an unsharded
//! one. Wall-clock figures never enter these outputs.

pub mod grid;
pub mod merge;
pub mod metrics;
pub mod runner;
pub mod shard;
pub mod stats;
pub mod sweep;
pub mod tune;

mod format;
mod ordered;

pub use ordered::OrderedMap;

use std::path::{Path, PathBuf};

use crate::config::{policy, workload, Document};
use crate::error::{ConfigError, SimError};
use crate::rng::SeedTree;

/// An error of a sweep, a tuning run or a merge. Each names the flag, the
/// key, the variant or the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A bad command-line specification (`--grid`, `--free`, `--metric`,
    /// `--constraint`, `--shard`, ...): the message names the flag as typed.
    #[error("{flag}: {message}")]
    Spec { flag: String, message: String },
    /// A policy or workload could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// One variant's configuration is invalid (e.g. a grid point with
    /// scale_down >= scale_up); `label` says which variant.
    #[error("{label}: {message}")]
    Variant { label: String, message: String },
    /// A simulation stopped at a bound or hit an internal invariant.
    #[error("{context}: {source}")]
    Sim {
        context: String,
        #[source]
        source: SimError,
    },
    /// Shard files that do not fit together, or are not shard files.
    #[error("{message}")]
    Merge { message: String },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An internal consistency check failed: a bug in pooltune.
    #[error("internal error: {0}; please report this with the command line")]
    Internal(String),
}

impl ExperimentError {
    pub fn spec(flag: impl Into<String>, message: impl Into<String>) -> Self {
        ExperimentError::Spec {
            flag: flag.into(),
            message: message.into(),
        }
    }

    /// The exit code documented in the README for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExperimentError::Config(ConfigError::Read { .. })
            | ExperimentError::Read { .. }
            | ExperimentError::Write { .. } => 4,
            ExperimentError::Spec { .. }
            | ExperimentError::Config(_)
            | ExperimentError::Variant { .. }
            | ExperimentError::Merge { .. } => 3,
            ExperimentError::Sim {
                source: SimError::Invariant { .. },
                ..
            }
            | ExperimentError::Internal(_) => 70,
            ExperimentError::Sim { .. } => 5,
        }
    }
}

/// The seed of replication `index` under `master`: the same for every
/// variant (common random numbers). `pooltune sim run --seed S` with this
/// seed reproduces the replication exactly.
pub fn replication_seed(master: u64, index: u64) -> u64 {
    SeedTree::new(master).child("replication", index).master()
}

/// A policy or workload document resolved the way `sim run` resolves
/// `--policy` and `--trace`: a bare word is a shipped name first, anything
/// that looks like a path is a file. Returns the document and its default
/// name (the file stem). The tuner keeps the text, so a merge on another
/// machine needs no file.
pub fn resolve_document(
    what: &'static str,
    arg: &str,
) -> Result<(Document, String), ExperimentError> {
    let (dir, shipped) = match what {
        "policy" => ("policies", policy::SHIPPED),
        _ => ("traces", workload::SHIPPED),
    };
    Ok(crate::scenario::resolve(what, arg, dir, shipped)?)
}

/// Pretty JSON with a trailing newline, as every pooltune output file.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    let mut t = serde_json::to_string_pretty(value).expect("experiment outputs serialize");
    t.push('\n');
    t
}

/// Writes `text` to `dir/name`, creating `dir`. The file appears whole or
/// not at all (written beside it, then renamed), so a shard killed while
/// writing, or a merge reading while another shard finishes, never sees
/// half a file.
pub(crate) fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), ExperimentError> {
    std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            ExperimentError::Write { path, source }
        })
}

/// Writes `value` as pretty JSON to `dir/name`, creating `dir`.
pub fn write_json<T: serde::Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), ExperimentError> {
    write_file(dir, name, &to_json(value))
}

/// Reads a whole file.
pub(crate) fn read_file(path: &Path) -> Result<String, ExperimentError> {
    std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_seeds_are_stable_and_distinct() {
        let a: Vec<u64> = (0..5).map(|r| replication_seed(42, r)).collect();
        let b: Vec<u64> = (0..5).map(|r| replication_seed(42, r)).collect();
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
        assert_ne!(replication_seed(42, 0), replication_seed(43, 0));
    }

    #[test]
    fn documents_resolve_like_sim_run() {
        let (doc, stem) = resolve_document("policy", "seed-80-30").unwrap();
        assert_eq!(doc.name, "policies/seed-80-30.toml (built-in)");
        assert_eq!(stem, "seed-80-30");
        let e = resolve_document("trace", "no-such-trace").unwrap_err();
        assert!(e.to_string().contains("no-such-trace"), "{e}");
        assert_eq!(e.exit_code(), 3);
    }
}
