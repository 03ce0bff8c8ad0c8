//! Scaling out: `--shard K/N` runs a deterministic slice of the simulations
//! of a sweep (or of one tuning stage); `pooltune merge` puts the slices
//! together into exactly what one machine would have written.
//!
//! The simulations of a sweep are numbered in (variant, replication) order;
//! shard K of N runs those whose number is K modulo N (round robin, so
//! shards get similar mixes of cheap and expensive variants). K counts from
//! 0, as Kubernetes' `JOB_COMPLETION_INDEX` does. A shard file carries the
//! whole plan (so a merge needs no policy or trace file) and its results as
//! exact f64 bit patterns (so nothing is lost to decimal printing); a merge
//! checks that all shards share one plan, that every shard is there once,
//! and that every simulation is covered exactly once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ExperimentError;

/// Shard `index` of `count` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Parses `K/N` (K from 0 to N-1).
    pub fn parse(text: &str) -> Result<Shard, ExperimentError> {
        let flag = format!("--shard {text}");
        let bad = |m: String| ExperimentError::spec(flag.clone(), m);
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| bad("expected K/N, e.g. 0/4 (shard K of N, K from 0 to N-1)".into()))?;
        let k: usize = k
            .trim()
            .parse()
            .map_err(|_| bad(format!("K `{}` is not a whole number >= 0", k.trim())))?;
        let n: usize = n
            .trim()
            .parse()
            .map_err(|_| bad(format!("N `{}` is not a whole number >= 1", n.trim())))?;
        if n == 0 {
            return Err(bad("N must be at least 1".into()));
        }
        if k >= n {
            return Err(bad(format!(
                "K counts from 0: the shards of {n} are 0/{n} to {}/{n}, got {k}",
                n - 1
            )));
        }
        Ok(Shard { index: k, count: n })
    }

    /// Whether simulation number `task` belongs to this shard.
    pub fn contains(&self, task: usize) -> bool {
        task % self.count == self.index
    }

    /// The shard file's name, e.g. `sweep-shard-0-of-4.json`.
    pub fn file_name(&self, kind: &str) -> String {
        format!("{kind}-shard-{}-of-{}.json", self.index, self.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One simulation's metric values as exact bit patterns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The simulation's number in its plan (or stage).
    pub task: usize,
    /// `f64::to_bits` of each metric, in the plan's metric order.
    pub values: Vec<u64>,
}

impl RunRecord {
    pub fn new(task: usize, values: &[f64]) -> Self {
        RunRecord {
            task,
            values: values.iter().map(|v| v.to_bits()).collect(),
        }
    }

    pub fn floats(&self) -> Vec<f64> {
        self.values.iter().map(|b| f64::from_bits(*b)).collect()
    }
}

/// Shard files named by the inputs: files as given, and for a directory
/// every `*-shard-*-of-*.json` inside it (sorted by name).
pub fn discover(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ExperimentError> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|source| ExperimentError::Read {
                path: p.clone(),
                source,
            })?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_shard_name)
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        let shown: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(ExperimentError::Merge {
            message: format!(
                "no shard files (*-shard-K-of-N.json) in {}",
                shown.join(", ")
            ),
        });
    }
    Ok(out)
}

fn is_shard_name(n: &str) -> bool {
    n.ends_with(".json") && n.contains("-shard-") && n.contains("-of-")
}

/// The directory the inputs share, for a merge's default output.
pub fn common_dir(inputs: &[PathBuf]) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = inputs
        .iter()
        .map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."))
            }
        })
        .collect();
    let first = dirs.first()?.clone();
    dirs.iter().all(|d| *d == first).then_some(first)
}

/// The first place two JSON values differ, as a dotted path (for "the
/// shards come from different commands" messages).
pub fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    use serde_json::Value;
    fn walk(a: &Value, b: &Value, path: String) -> Option<String> {
        if a == b {
            return None;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match y.get(k) {
                        Some(vb) => {
                            if let Some(d) = walk(va, vb, p) {
                                return Some(d);
                            }
                        }
                        None => return Some(p),
                    }
                }
                y.keys().find(|k| !x.contains_key(*k)).map(|k| {
                    if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    }
                })
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    if let Some(d) = walk(va, vb, format!("{path}[{i}]")) {
                        return Some(d);
                    }
                }
                Some(format!("{path} (length {} vs {})", x.len(), y.len()))
            }
            _ => Some(format!("{path} ({a} vs {b})")),
        }
    }
    walk(a, b, String::new()).unwrap_or_else(|| "(nowhere)".into())
}

/// Checks that all shard files come from one command (the same `plan`;
/// `what` names such commands in the error, e.g. "sweeps") and that the
/// shard numbers are complete ([`check_complete`]).
pub fn check_one_plan<F, P: Serialize + PartialEq>(
    files: &[(PathBuf, F)],
    plan: impl Fn(&F) -> &P,
    shard: impl Fn(&F) -> Shard,
    what: &str,
) -> Result<(), ExperimentError> {
    let (first_path, first) = &files[0];
    let first_json = serde_json::to_value(plan(first)).expect("plans serialize");
    for (p, f) in &files[1..] {
        if plan(f) != plan(first) {
            let other = serde_json::to_value(plan(f)).expect("plans serialize");
            return Err(ExperimentError::Merge {
                message: format!(
                    "{} and {} come from different {what} (they differ at `{}`); merge only the shards of one command",
                    first_path.display(),
                    p.display(),
                    first_difference(&first_json, &other)
                ),
            });
        }
    }
    let list: Vec<(Shard, PathBuf)> = files.iter().map(|(p, f)| (shard(f), p.clone())).collect();
    check_complete(&list)?;
    Ok(())
}

/// Checks that the shard numbers found are exactly 0..N-1, each once.
pub fn check_complete(shards: &[(Shard, PathBuf)]) -> Result<usize, ExperimentError> {
    let n = shards[0].0.count;
    for (s, p) in shards {
        if s.count != n {
            return Err(ExperimentError::Merge {
                message: format!(
                    "{} is shard {s}, but {} is shard {}: all shards must split the work the same way (same N)",
                    p.display(),
                    shards[0].1.display(),
                    shards[0].0
                ),
            });
        }
    }
    for k in 0..n {
        let with_k: Vec<&PathBuf> = shards
            .iter()
            .filter(|(s, _)| s.index == k)
            .map(|(_, p)| p)
            .collect();
        match with_k.len() {
            0 => {
                return Err(ExperimentError::Merge {
                    message: format!(
                        "shard {k}/{n} is missing (found {} of {n} shards); run it with --shard {k}/{n}, or wait for it to finish",
                        shards.len()
                    ),
                })
            }
            1 => {}
            _ => {
                let shown: Vec<String> = with_k.iter().map(|p| p.display().to_string()).collect();
                return Err(ExperimentError::Merge {
                    message: format!("shard {k}/{n} is given twice: {}", shown.join(" and ")),
                });
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_slice() {
        let s = Shard::parse("1/3").unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        let mine: Vec<usize> = (0..10).filter(|t| s.contains(*t)).collect();
        assert_eq!(mine, [1, 4, 7]);
        assert_eq!(s.file_name("sweep"), "sweep-shard-1-of-3.json");
        assert_eq!(Shard::parse("0/1").unwrap().count, 1);
        for (bad, why) in [
            ("3/3", "K counts from 0"),
            ("1", "expected K/N"),
            ("a/3", "not a whole number"),
            ("0/0", "at least 1"),
            ("-1/3", "not a whole number"),
        ] {
            let e = Shard::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--shard {bad}:")), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn records_keep_exact_bits() {
        let v = [0.1 + 0.2, f64::NAN, 1e-300, -0.0];
        let r = RunRecord::new(3, &v);
        let json = serde_json::to_string(&r).unwrap();
        let back: RunRecord = serde_json::from_str(&json).unwrap();
        let f = back.floats();
        assert_eq!(f[0].to_bits(), v[0].to_bits());
        assert!(f[1].is_nan());
        assert_eq!(f[3].to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn completeness() {
        let p = |s: &str| PathBuf::from(s);
        let a = (Shard { index: 0, count: 2 }, p("a"));
        let b = (Shard { index: 1, count: 2 }, p("b"));
        assert_eq!(check_complete(&[a.clone(), b.clone()]).unwrap(), 2);
        let e = check_complete(std::slice::from_ref(&a))
            .unwrap_err()
            .to_string();
        assert!(e.contains("shard 1/2 is missing"), "{e}");
        let e = check_complete(&[a.clone(), a.clone(), b])
            .unwrap_err()
            .to_string();
        assert!(e.contains("given twice"), "{e}");
        let c = (Shard { index: 0, count: 3 }, p("c"));
        let e = check_complete(&[a, c]).unwrap_err().to_string();
        assert!(e.contains("same N"), "{e}");
    }

    #[test]
    fn differences_are_located() {
        let a = serde_json::json!({"x": {"y": [1, 2]}, "z": 1});
        let b = serde_json::json!({"x": {"y": [1, 3]}, "z": 1});
        assert_eq!(first_difference(&a, &b), "x.y[1] (2 vs 3)");
    }
}
