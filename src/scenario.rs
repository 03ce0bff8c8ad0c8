//! A scenario: one workload and seed against several policies, each in its
//! own simulation (in parallel, one per thread), with common random numbers:
//! every policy sees exactly the same requests.

use rayon::prelude::*;

use crate::config::policy::{self, PolicySpec};
use crate::config::workload::{self, WorkloadSpec};
use crate::config::{Document, Override};
use crate::core::metrics::SampleSink;
use crate::error::{ConfigError, SimError};
use crate::rng::SeedTree;
use crate::sim::simulate;
use crate::summary::{run_summary, PolicyInfo, RunSummary, Summary, TraceInfo, SCHEMA};
use crate::trace::synthetic::Synthetic;

/// A policy and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub spec: PolicySpec,
    pub source: String,
}

/// A workload and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedWorkload {
    pub spec: WorkloadSpec,
    pub source: String,
}

/// The policies `sim run` compares when none is named.
pub const DEFAULT_POLICIES: &[&str] = &["seed-80-30", "seed-80-30-low10s", "fixed-10", "fixed-25"];
/// The workload `sim run` uses when none is named.
pub const DEFAULT_TRACE: &str = "default";

/// `--set` overrides split by the document they apply to.
#[derive(Debug, Default, Clone)]
pub struct SplitOverrides {
    pub policy: Vec<Override>,
    pub workload: Vec<Override>,
}

/// Routes each override by its first key segment. `policy.` and `trace.`
/// prefixes make the target explicit.
pub fn split_overrides(all: &[Override]) -> Result<SplitOverrides, ConfigError> {
    let mut out = SplitOverrides::default();
    for o in all {
        let first = o.path[0].as_str();
        let strip = |o: &Override| -> Result<Override, ConfigError> {
            if o.path.len() < 2 {
                return Err(ConfigError::BadOverride {
                    assignment: o.assignment.clone(),
                    message: format!("`{first}.` must be followed by a key"),
                });
            }
            Ok(Override {
                path: o.path[1..].to_vec(),
                ..o.clone()
            })
        };
        match first {
            "policy" => out.policy.push(strip(o)?),
            "trace" | "workload" => out.workload.push(strip(o)?),
            k if policy::TOP_LEVEL_KEYS.contains(&k) => out.policy.push(o.clone()),
            k if workload::TOP_LEVEL_KEYS.contains(&k) => out.workload.push(o.clone()),
            _ => {
                return Err(ConfigError::BadOverride {
                    assignment: o.assignment.clone(),
                    message: format!(
                        "unknown key `{first}`: policy keys start with {}; workload keys with {} (or prefix with `policy.` / `trace.`)",
                        policy::TOP_LEVEL_KEYS.join(", "),
                        workload::TOP_LEVEL_KEYS.join(", ")
                    ),
                })
            }
        }
    }
    Ok(out)
}

fn resolve(
    what: &'static str,
    arg: &str,
    dir: &str,
    shipped: &[(&str, &str)],
) -> Result<(Document, String), ConfigError> {
    let path = std::path::Path::new(arg);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.to_string());
    // Anything that looks like a path is a path; a bare word is a shipped
    // name first, so a stray file in the current directory cannot shadow it.
    let looks_like_path = arg.ends_with(".toml") || arg.contains('/') || arg.contains('\\');
    if !looks_like_path {
        if let Some((name, text)) = shipped.iter().find(|(n, _)| *n == arg) {
            let doc = Document::new(format!("{dir}/{name}.toml (built-in)"), *text);
            return Ok((doc, name.to_string()));
        }
    }
    if looks_like_path || path.is_file() {
        return Ok((Document::read(path)?, stem));
    }
    Err(ConfigError::UnknownName {
        what,
        name: arg.to_string(),
        shipped: shipped
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Loads a policy from a path or a shipped name.
pub fn load_policy(arg: &str, overrides: &[Override]) -> Result<LoadedPolicy, ConfigError> {
    let (doc, stem) = resolve("policy", arg, "policies", policy::SHIPPED)?;
    let spec = PolicySpec::load(&doc, &stem, overrides)?;
    Ok(LoadedPolicy {
        spec,
        source: doc.name,
    })
}

/// Loads a workload from a path or a shipped name.
pub fn load_workload(arg: &str, overrides: &[Override]) -> Result<LoadedWorkload, ConfigError> {
    let (doc, stem) = resolve("trace", arg, "traces", workload::SHIPPED)?;
    let spec = WorkloadSpec::load(&doc, &stem, overrides)?;
    Ok(LoadedWorkload {
        spec,
        source: doc.name,
    })
}

/// Runs one policy against the workload.
pub fn run_one(
    workload: &LoadedWorkload,
    policy: &LoadedPolicy,
    seed: u64,
    sink: &mut dyn SampleSink,
) -> Result<RunSummary, SimError> {
    let seeds = SeedTree::new(seed);
    let w = &workload.spec;
    let source = Synthetic::new(&w.synthetic, &seeds);
    let mut rule = policy.spec.build();
    let outcome = simulate(
        &policy.spec.pool,
        rule.as_mut(),
        &w.database,
        source,
        &seeds,
        &w.run,
        sink,
    )?;
    let info = PolicyInfo {
        name: policy.spec.name.clone(),
        hash: policy.spec.hash.clone(),
        source: policy.source.clone(),
        description: policy.spec.description.clone(),
        config: policy.spec.effective.clone(),
    };
    Ok(run_summary(&outcome, info, &w.name, &w.hash))
}

/// Runs every policy (in parallel) and assembles the summary, runs in the
/// order the policies were given. `sinks[i]` receives policy i's time series.
pub fn run_scenario<K: SampleSink + Send>(
    workload: &LoadedWorkload,
    policies: &[LoadedPolicy],
    seed: u64,
    sinks: &mut [K],
) -> Result<Summary, SimError> {
    assert_eq!(sinks.len(), policies.len(), "one sink per policy");
    let runs: Vec<Result<RunSummary, SimError>> = policies
        .par_iter()
        .zip(sinks.par_iter_mut())
        .map(|(p, sink)| run_one(workload, p, seed, sink))
        .collect();
    let runs = runs.into_iter().collect::<Result<Vec<_>, _>>()?;
    let w = &workload.spec;
    Ok(Summary {
        schema: SCHEMA.to_string(),
        pooltune_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: w.name.clone(),
        seed,
        trace: TraceInfo {
            name: w.name.clone(),
            hash: w.hash.clone(),
            source: workload.source.clone(),
            description: w.description.clone(),
            config: w.effective.clone(),
        },
        runs,
    })
}
