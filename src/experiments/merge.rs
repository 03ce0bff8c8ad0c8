//! `pooltune merge`: shard files in, what one machine would have written out.

use std::path::{Path, PathBuf};

use super::shard;
use super::sweep::{self, SweepReport, SweepShardFile};
use super::tune::{self, parse_json, TuneMerge, TuneShardFile};
use super::ExperimentError;

/// What a merge produced, and the directory it belongs in.
pub enum Merged {
    /// A whole sweep (the caller writes it into the directory).
    Sweep(Box<SweepReport>, PathBuf),
    /// One stage of a tuning run, or its end (the state is already written).
    Tune(TuneMerge, PathBuf),
}

/// Reads the shard files named by `inputs` (files, or directories holding
/// `*-shard-*-of-*.json`) and merges them. `out` defaults to the directory
/// the inputs share.
pub fn merge(inputs: &[PathBuf], out: Option<&Path>) -> Result<Merged, ExperimentError> {
    let files = shard::discover(inputs)?;
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => shard::common_dir(&files).ok_or_else(|| ExperimentError::Merge {
            message: "the shard files are in different directories; say where the result goes with --out DIR".into(),
        })?,
    };
    let mut texts = Vec::new();
    for f in &files {
        texts.push((f.clone(), super::read_file(f)?));
    }
    let schema_of = |p: &Path, t: &str| -> Result<String, ExperimentError> {
        let v: serde_json::Value = serde_json::from_str(t).map_err(|e| ExperimentError::Merge {
            message: format!("{}: not a shard file (not JSON: {e})", p.display()),
        })?;
        Ok(v.get("schema")
            .and_then(|s| s.as_str())
            .unwrap_or("none")
            .to_string())
    };
    let first = schema_of(&texts[0].0, &texts[0].1)?;
    for (p, t) in &texts[1..] {
        let s = schema_of(p, t)?;
        if s != first {
            return Err(ExperimentError::Merge {
                message: format!(
                    "{} is a `{s}` file but {} is a `{first}` file; merge one kind at a time",
                    p.display(),
                    texts[0].0.display()
                ),
            });
        }
    }
    match first.as_str() {
        sweep::SHARD_SCHEMA => {
            let parsed: Vec<(PathBuf, SweepShardFile)> = texts
                .iter()
                .map(|(p, t)| Ok((p.clone(), parse_json(p, t, sweep::SHARD_SCHEMA)?)))
                .collect::<Result<_, ExperimentError>>()?;
            Ok(Merged::Sweep(Box::new(sweep::merge(parsed)?), dir))
        }
        tune::SHARD_SCHEMA => {
            let parsed: Vec<(PathBuf, TuneShardFile)> = texts
                .iter()
                .map(|(p, t)| Ok((p.clone(), parse_json(p, t, tune::SHARD_SCHEMA)?)))
                .collect::<Result<_, ExperimentError>>()?;
            Ok(Merged::Tune(tune::merge(parsed, &dir)?, dir))
        }
        other => Err(ExperimentError::Merge {
            message: format!(
                "{}: schema `{other}` is not a shard file (expected `{}` or `{}`)",
                texts[0].0.display(),
                sweep::SHARD_SCHEMA,
                tune::SHARD_SCHEMA
            ),
        }),
    }
}
