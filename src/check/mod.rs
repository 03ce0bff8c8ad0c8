//! `pooltune check`: a policy regression gate for CI.
//!
//! A committed **check file** (TOML) names scenarios (policies x traces x
//! seeds, with `--set` overrides) and the metrics to guard (direction,
//! tolerance for single-seed scenarios, noise band for multi-seed ones).
//! Baseline summaries (one `summary.json` per scenario and seed) live in a
//! directory next to it. `check` re-runs every scenario, compares each
//! metric with its baseline and gives a verdict:
//!
//! | verdict | meaning |
//! | --- | --- |
//! | `improved` | changed beyond tolerance / noise, in the good direction |
//! | `regressed` | changed beyond tolerance / noise, in the bad direction |
//! | `within noise` | unchanged, or changed within tolerance / noise / significance |
//! | `missing` | no baseline for this scenario, seed or metric |
//!
//! A scenario file's assertions are a gate of their own: every one must
//! pass under every seed, and a failed one is a regression naming the
//! assertion and its subject. Its metrics (the whole fleet's `runs[0]`)
//! are compared with baselines like any other scenario's.
//!
//! How values are compared is in [`stats`]. The gate's outcome
//! ([`CheckReport::status`]) is `regression` if any metric regressed or
//! any assertion failed, else
//! `missing` if any baseline is missing, else `pass`; the CLI maps these to
//! exit codes 1, 2 and 0.
//!
//! ```toml
//! baselines = "shipped"            # directory, relative to this file (default: the file's stem)
//! [settings]                       # optional; these are the defaults
//! significance = 0.05
//! confidence = 0.95
//! resamples = 10000
//! bootstrap_seed = 0
//!
//! [[scenario]]
//! name = "seeds"                   # optional: ids become "seeds/<policy>@<trace>"
//! policies = ["seed-80-30", "fixed-10"]   # or policy = "..."; names or paths
//! traces = ["default"]             # or trace = "..."
//! seeds = [1, 2, 3, 4, 5, 6, 7, 8]
//! set = ["duration=2m"]            # overrides, as `sim run --set`
//!
//! [[scenario]]                     # a scenario file (a topology), instead
//! scenario = "../scenarios/rolling-restart.toml"   # of policies x traces
//! seeds = [1]                      # id: "rolling-restart" (or "<name>/...")
//! set = ["events.0.pause=5s"]      # overrides, as `sim run --scenario --set`
//!
//! [[metric]]
//! name = "acquire_wait_ms.p99"     # any number in a run's summary, dotted
//! better = "lower"                 # or "higher"
//! tolerance = 0.0                  # single seed: relative change allowed (0 = exact)
//! abs_tolerance = 0.0              # single seed: absolute change allowed
//! noise = 0.05                     # several seeds: relative noise band
//! abs_noise = 0.0                  # several seeds: absolute noise band (floor)
//! ```

pub mod assertions;
pub mod output;
pub mod stats;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::check::assertions::AssertionResult;
use crate::config::scenario::ScenarioSpec;
use crate::config::{deserialize, Document, Locator, Override};
use crate::core::metrics::NullSink;
use crate::error::{ConfigError, SimError};
use crate::report::html::parse_summary;
use crate::scenario::{self, LoadedPolicy, LoadedWorkload};
use crate::summary::{RunSummary, Summary};

pub use stats::{Shift, TestSettings};

/// Why `check` could not do its job (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The check file, or a policy or workload it names, is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A scenario's simulation stopped without finishing.
    #[error("scenario {scenario}, seed {seed}: {source}")]
    Sim {
        scenario: String,
        seed: u64,
        #[source]
        source: SimError,
    },
    /// A baseline file exists but cannot be read or is not a summary.
    #[error("{}: {message}", path.display())]
    Baseline { path: PathBuf, message: String },
    /// A guarded metric is not a number in a run summary.
    #[error("{file}: metric `{metric}`: {message}")]
    Metric {
        file: String,
        metric: String,
        message: String,
    },
    /// A baseline could not be written (`--update`).
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------
// The check file.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFileRaw {
    #[serde(default)]
    description: String,
    baselines: Option<String>,
    #[serde(default)]
    settings: SettingsRaw,
    #[serde(default)]
    scenario: Vec<ScenarioRaw>,
    #[serde(default)]
    metric: Vec<MetricRaw>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsRaw {
    significance: Option<f64>,
    confidence: Option<f64>,
    resamples: Option<u32>,
    bootstrap_seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioRaw {
    name: Option<String>,
    scenario: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    policies: Vec<String>,
    trace: Option<String>,
    #[serde(default)]
    traces: Vec<String>,
    seeds: Vec<u64>,
    #[serde(default)]
    set: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricRaw {
    name: String,
    better: Better,
    #[serde(default)]
    tolerance: f64,
    #[serde(default)]
    abs_tolerance: f64,
    #[serde(default = "default_noise")]
    noise: f64,
    #[serde(default)]
    abs_noise: f64,
}

fn default_noise() -> f64 {
    0.02
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// A guarded metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Dotted path into a run summary, e.g. `acquire_wait_ms.p99`.
    pub name: String,
    pub better: Better,
    /// Single seed: relative change allowed.
    pub tolerance: f64,
    /// Single seed: absolute change allowed.
    pub abs_tolerance: f64,
    /// Several seeds: relative noise band (default 0.02).
    pub noise: f64,
    /// Several seeds: absolute noise band.
    pub abs_noise: f64,
}

/// One policy x trace, or one scenario file, run under each of its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `<policy>@<trace>` (or the scenario file's stem), prefixed by
    /// `<scenario name>/` when named.
    pub id: String,
    /// As written in the check file (empty for a scenario file).
    pub policy: String,
    pub trace: String,
    /// A scenario file (a topology), as written; its assertions gate.
    pub scenario: Option<String>,
    pub seeds: Vec<u64>,
    pub sets: Vec<String>,
}

/// A validated check file.
#[derive(Debug, Clone)]
pub struct CheckFile {
    pub path: PathBuf,
    pub description: String,
    /// Where the baselines live.
    pub baselines: PathBuf,
    pub settings: TestSettings,
    pub cases: Vec<Case>,
    pub metrics: Vec<Metric>,
}

impl CheckFile {
    /// Reads and validates a check file; errors name file, line, key.
    pub fn load(path: &Path) -> Result<CheckFile, ConfigError> {
        let doc = Document::read(path)?;
        Self::parse(&doc, path)
    }

    /// Validates `doc`, the text of the check file at `path`.
    pub fn parse(doc: &Document, path: &Path) -> Result<CheckFile, ConfigError> {
        let (raw, _): (CheckFileRaw, _) = deserialize(doc, &[])?;
        let loc = Locator::new(doc, &[]);
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "baselines".to_string());
        let baselines = dir.join(raw.baselines.as_deref().unwrap_or(&stem));

        let d = TestSettings::default();
        let s = &raw.settings;
        let settings = TestSettings {
            significance: s.significance.unwrap_or(d.significance),
            confidence: s.confidence.unwrap_or(d.confidence),
            resamples: s.resamples.map(|r| r as usize).unwrap_or(d.resamples),
            bootstrap_seed: s.bootstrap_seed.unwrap_or(d.bootstrap_seed),
        };
        if !(settings.significance > 0.0 && settings.significance < 1.0) {
            return Err(loc.invalid(
                "settings.significance",
                format!(
                    "expected a probability between 0 and 1 (exclusive), got {}",
                    settings.significance
                ),
            ));
        }
        if !(settings.confidence > 0.0 && settings.confidence < 1.0) {
            return Err(loc.invalid(
                "settings.confidence",
                format!(
                    "expected a level between 0 and 1 (exclusive), e.g. 0.95, got {}",
                    settings.confidence
                ),
            ));
        }
        if settings.resamples < 100 {
            return Err(loc.invalid(
                "settings.resamples",
                format!(
                    "expected at least 100 resamples, got {}",
                    settings.resamples
                ),
            ));
        }

        if raw.scenario.is_empty() {
            return Err(loc.invalid(
                "scenario",
                "expected at least one [[scenario]] (policies x traces x seeds)",
            ));
        }
        let mut cases: Vec<Case> = Vec::new();
        for (i, sc) in raw.scenario.iter().enumerate() {
            let key = |k: &str| format!("scenario.[{i}].{k}");
            let policies: Vec<String> = sc.policy.iter().chain(&sc.policies).cloned().collect();
            let traces: Vec<String> = sc.trace.iter().chain(&sc.traces).cloned().collect();
            if let Some(path) = &sc.scenario {
                if !policies.is_empty() || !traces.is_empty() {
                    return Err(loc.invalid(
                        &key("scenario"),
                        "a scenario file brings its own policies and workloads: expected `scenario` without `policy`/`policies`/`trace`/`traces`",
                    ));
                }
                if path.trim().is_empty() {
                    return Err(
                        loc.invalid(&key("scenario"), "expected the path of a scenario file")
                    );
                }
            } else if policies.is_empty() {
                return Err(loc.invalid(
                    &key("policies"),
                    "expected `policy = \"NAME|FILE\"` or `policies = [...]` (or `scenario = \"FILE\"`)",
                ));
            }
            if sc.scenario.is_none() && traces.is_empty() {
                return Err(loc.invalid(
                    &key("traces"),
                    "expected `trace = \"NAME|FILE\"` or `traces = [...]`",
                ));
            }
            if sc.seeds.is_empty() {
                return Err(loc.invalid(&key("seeds"), "expected at least one seed"));
            }
            let mut seeds = sc.seeds.clone();
            seeds.sort_unstable();
            seeds.dedup();
            if seeds.len() != sc.seeds.len() {
                return Err(loc.invalid(&key("seeds"), "a seed is listed twice"));
            }
            for s in &sc.set {
                Override::parse(s).map_err(|e| loc.invalid(&key("set"), e.to_string()))?;
            }
            if let Some(name) = &sc.name {
                if name.trim().is_empty() || name.contains("..") {
                    return Err(loc.invalid(&key("name"), "expected a non-empty name without `..`"));
                }
            }
            if let Some(path) = &sc.scenario {
                let id = match &sc.name {
                    Some(n) => format!("{n}/{}", stem_of(path)),
                    None => stem_of(path),
                };
                if cases.iter().any(|c| c.id == id) {
                    return Err(loc.invalid(
                        &key("name"),
                        format!("scenario `{id}` appears twice; give one of them a `name`"),
                    ));
                }
                cases.push(Case {
                    id,
                    policy: String::new(),
                    trace: String::new(),
                    scenario: Some(path.clone()),
                    seeds: sc.seeds.clone(),
                    sets: sc.set.clone(),
                });
                continue;
            }
            for p in &policies {
                for t in &traces {
                    let base = format!("{}@{}", stem_of(p), stem_of(t));
                    let id = match &sc.name {
                        Some(n) => format!("{n}/{base}"),
                        None => base,
                    };
                    if cases.iter().any(|c| c.id == id) {
                        return Err(loc.invalid(
                            &key("name"),
                            format!("scenario `{id}` appears twice; give one of them a `name`"),
                        ));
                    }
                    cases.push(Case {
                        id,
                        policy: p.clone(),
                        trace: t.clone(),
                        scenario: None,
                        seeds: sc.seeds.clone(),
                        sets: sc.set.clone(),
                    });
                }
            }
        }

        if raw.metric.is_empty() {
            return Err(loc.invalid(
                "metric",
                "expected at least one [[metric]] (name, better, tolerance / noise)",
            ));
        }
        let mut metrics: Vec<Metric> = Vec::new();
        for (i, m) in raw.metric.iter().enumerate() {
            let key = |k: &str| format!("metric.[{i}].{k}");
            if m.name.trim().is_empty() || m.name.split('.').any(|s| s.is_empty()) {
                return Err(loc.invalid(
                    &key("name"),
                    "expected a dotted path into a run summary, e.g. acquire_wait_ms.p99",
                ));
            }
            if metrics.iter().any(|x| x.name == m.name) {
                return Err(loc.invalid(&key("name"), format!("`{}` is guarded twice", m.name)));
            }
            for (k, v) in [
                ("tolerance", m.tolerance),
                ("abs_tolerance", m.abs_tolerance),
                ("noise", m.noise),
                ("abs_noise", m.abs_noise),
            ] {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(loc.invalid(&key(k), format!("expected a number >= 0, got {v}")));
                }
            }
            metrics.push(Metric {
                name: m.name.clone(),
                better: m.better,
                tolerance: m.tolerance,
                abs_tolerance: m.abs_tolerance,
                noise: m.noise,
                abs_noise: m.abs_noise,
            });
        }
        Ok(CheckFile {
            path: path.to_path_buf(),
            description: raw.description,
            baselines,
            settings,
            cases,
            metrics,
        })
    }

    /// Where a case's baseline for `seed` lives.
    pub fn baseline_path(&self, case: &Case, seed: u64) -> PathBuf {
        let mut p = self.baselines.clone();
        for part in case.id.split('/') {
            p.push(sanitize(part));
        }
        p.push(format!("seed-{seed}.json"));
        p
    }

    /// A policy or trace argument: shipped names as they are, relative
    /// paths relative to the check file's directory.
    fn resolve(&self, arg: &str) -> String {
        let looks_like_path = arg.ends_with(".toml") || arg.contains('/') || arg.contains('\\');
        let p = Path::new(arg);
        if looks_like_path && p.is_relative() {
            let dir = self.path.parent().unwrap_or(Path::new(""));
            dir.join(p).display().to_string()
        } else {
            arg.to_string()
        }
    }
}

fn stem_of(arg: &str) -> String {
    Path::new(arg)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| arg.to_string())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running and comparing.

/// A verdict on one metric of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Regressed,
    WithinNoise,
    Missing,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Improved => "improved",
            Verdict::Regressed => "regressed",
            Verdict::WithinNoise => "within noise",
            Verdict::Missing => "missing",
        }
    }
}

/// One row of the result table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub scenario: String,
    pub policy: String,
    pub trace: String,
    pub seeds: Vec<u64>,
    pub metric: String,
    pub better: Better,
    /// Mean over seeds (the value, for one seed); `None` when missing.
    pub baseline: Option<f64>,
    pub current: f64,
    /// current - baseline (means).
    pub change: Option<f64>,
    /// change / |baseline|, when the baseline is not 0.
    pub change_rel: Option<f64>,
    /// Several seeds: bootstrap interval of the change, p-value, noise band.
    pub ci: Option<(f64, f64)>,
    pub p_value: Option<f64>,
    /// Tolerance (one seed) or noise band (several), in the metric's units.
    pub allowed: Option<f64>,
    pub verdict: Verdict,
    /// Why, in words (e.g. "exact", "p = 0.31: not significant", "no baseline file ...").
    pub note: String,
}

/// A case whose policy or trace changed since its baseline was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    pub scenario: String,
    pub what: String,
    pub baseline_hash: String,
    pub current_hash: String,
}

/// The gate's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing regressed, no baseline missing.
    Pass,
    /// At least one metric regressed.
    Regression,
    /// Nothing regressed, but a baseline is missing.
    Missing,
}

/// A scenario file's assertion under one seed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssertionRow {
    pub scenario: String,
    pub seed: u64,
    #[serde(flatten)]
    pub result: AssertionResult,
}

/// Everything `check` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    pub check_file: String,
    pub baselines: String,
    pub settings: SettingsOut,
    pub rows: Vec<Row>,
    /// Every assertion of every scenario file, under every seed.
    pub assertions: Vec<AssertionRow>,
    pub config_changes: Vec<ConfigChange>,
    pub counts: Counts,
    pub status: Status,
}

/// The settings used, as written into the JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SettingsOut {
    pub significance: f64,
    pub confidence: f64,
    pub resamples: usize,
    pub bootstrap_seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub improved: usize,
    pub regressed: usize,
    pub within_noise: usize,
    pub missing: usize,
    /// Scenario-file assertions that failed (each a regression), and passed.
    pub assertions_failed: usize,
    pub assertions_passed: usize,
}

/// The JSON output's schema name.
pub const CHECK_SCHEMA: &str = "pooltune.check/1";

/// One case's fresh runs, one summary per seed (in seed order).
#[derive(Debug, Clone)]
pub struct CaseRuns {
    pub case: Case,
    pub summaries: Vec<Summary>,
    /// A scenario file's: its assertions' verdicts per seed (empty for a
    /// policy x trace case).
    pub assertions: Vec<Vec<AssertionResult>>,
    /// A scenario file's: its full `summary.json` per seed (with the
    /// `topology` section), written as its baseline.
    pub full: Vec<String>,
}

/// What a case needs to run.
enum Loaded {
    Plain(Box<(LoadedWorkload, LoadedPolicy)>),
    Topology(Box<ScenarioSpec>, String),
}

/// One run's result.
struct Ran {
    summary: Summary,
    assertions: Vec<AssertionResult>,
    full: Option<String>,
}

fn load_case(file: &CheckFile, case: &Case) -> Result<Loaded, ConfigError> {
    let overrides = case
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = &case.scenario {
        let path = file.resolve(path);
        let spec = ScenarioSpec::load(Path::new(&path), &overrides)?;
        return Ok(Loaded::Topology(Box::new(spec), path));
    }
    let split = scenario::split_overrides(&overrides)?;
    let workload = scenario::load_workload(&file.resolve(&case.trace), &split.workload)?;
    let policy = scenario::load_policy(&file.resolve(&case.policy), &split.policy)?;
    Ok(Loaded::Plain(Box::new((workload, policy))))
}

/// Runs every case under each of its seeds (in parallel, one simulation
/// per thread); results in check-file order.
pub fn run_cases(file: &CheckFile) -> Result<Vec<CaseRuns>, CheckError> {
    let loaded = file
        .cases
        .iter()
        .map(|c| load_case(file, c))
        .collect::<Result<Vec<_>, _>>()?;
    let tasks: Vec<(usize, u64)> = file
        .cases
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.seeds.iter().map(move |&s| (i, s)))
        .collect();
    let results: Vec<Result<Ran, CheckError>> = tasks
        .par_iter()
        .map(|&(i, seed)| {
            let failed = |source| CheckError::Sim {
                scenario: file.cases[i].id.clone(),
                seed,
                source,
            };
            match &loaded[i] {
                Loaded::Plain(wp) => {
                    let (w, p) = wp.as_ref();
                    let mut sinks = [NullSink];
                    let summary =
                        scenario::run_scenario(w, std::slice::from_ref(p), seed, &mut sinks)
                            .map_err(failed)?;
                    Ok(Ran {
                        summary,
                        assertions: Vec::new(),
                        full: None,
                    })
                }
                Loaded::Topology(spec, source) => {
                    let run = scenario::run_topology(spec, source, seed, &mut NullSink)
                        .map_err(failed)?;
                    Ok(Ran {
                        full: Some(crate::report::topology::json(&run.summary)),
                        assertions: run.summary.topology.assertions,
                        summary: run.summary.summary,
                    })
                }
            }
        })
        .collect();
    let mut out: Vec<CaseRuns> = file
        .cases
        .iter()
        .map(|c| CaseRuns {
            case: c.clone(),
            summaries: Vec::new(),
            assertions: Vec::new(),
            full: Vec::new(),
        })
        .collect();
    for ((i, _), r) in tasks.iter().zip(results) {
        let r = r?;
        let cr = &mut out[*i];
        cr.summaries.push(r.summary);
        if let Some(full) = r.full {
            cr.assertions.push(r.assertions);
            cr.full.push(full);
        }
    }
    Ok(out)
}

/// The number at dotted `path` in a run summary, if it is one.
pub fn metric_value(run: &serde_json::Value, path: &str) -> Option<f64> {
    let mut v = run;
    for seg in path.split('.') {
        v = v.get(seg)?;
    }
    v.as_f64()
}

/// A run summary as JSON *text parsed back*: baselines are read from text,
/// and serde_json's float parsing is not always correctly rounded, so fresh
/// values take the same path (same text, same parse, same bits) to compare
/// exactly.
fn run_json(s: &Summary) -> serde_json::Value {
    s.runs
        .first()
        .map(|r: &RunSummary| {
            let text = serde_json::to_string(r).expect("summaries serialize");
            serde_json::from_str(&text).expect("a serialized summary parses")
        })
        .unwrap_or(serde_json::Value::Null)
}

/// Reads a baseline summary; `Ok(None)` when the file does not exist.
fn read_baseline(path: &Path) -> Result<Option<Summary>, CheckError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CheckError::Baseline {
                path: path.to_path_buf(),
                message: format!("cannot read: {e}"),
            })
        }
    };
    let s = parse_summary(&text, path).map_err(|e| CheckError::Baseline {
        path: path.to_path_buf(),
        message: match e {
            crate::report::html::ReportError::Invalid { message, .. } => message,
            other => other.to_string(),
        },
    })?;
    if s.runs.len() != 1 {
        return Err(CheckError::Baseline {
            path: path.to_path_buf(),
            message: format!(
                "expected one run (one policy) per baseline, found {}",
                s.runs.len()
            ),
        });
    }
    Ok(Some(s))
}

/// Compares fresh runs with the baselines on disk.
pub fn compare(file: &CheckFile, runs: &[CaseRuns]) -> Result<CheckReport, CheckError> {
    let mut rows = Vec::new();
    let mut config_changes = Vec::new();
    for cr in runs {
        let case = &cr.case;
        let current: Vec<serde_json::Value> = cr.summaries.iter().map(run_json).collect();
        let mut baselines: Vec<Option<Summary>> = Vec::new();
        for &seed in &case.seeds {
            baselines.push(read_baseline(&file.baseline_path(case, seed))?);
        }
        let missing_seeds: Vec<u64> = case
            .seeds
            .iter()
            .zip(&baselines)
            .filter(|(_, b)| b.is_none())
            .map(|(s, _)| *s)
            .collect();
        let cur_run = &cr.summaries[0].runs[0];
        if let Some(b) = baselines.iter().flatten().next() {
            let br = &b.runs[0];
            if br.policy.hash != cur_run.policy.hash {
                config_changes.push(ConfigChange {
                    scenario: case.id.clone(),
                    what: match case.scenario {
                        Some(_) => format!("scenario {}", cur_run.policy.name),
                        None => format!("policy {}", cur_run.policy.name),
                    },
                    baseline_hash: br.policy.hash.clone(),
                    current_hash: cur_run.policy.hash.clone(),
                });
            }
            if case.scenario.is_none() && br.trace_hash != cur_run.trace_hash {
                config_changes.push(ConfigChange {
                    scenario: case.id.clone(),
                    what: format!("trace {}", cur_run.trace_name),
                    baseline_hash: br.trace_hash.clone(),
                    current_hash: cur_run.trace_hash.clone(),
                });
            }
        }
        let base_json: Vec<Option<serde_json::Value>> =
            baselines.iter().map(|b| b.as_ref().map(run_json)).collect();
        for m in &file.metrics {
            let cur: Vec<f64> = current
                .iter()
                .map(|v| {
                    metric_value(v, &m.name).ok_or_else(|| CheckError::Metric {
                        file: file.path.display().to_string(),
                        metric: m.name.clone(),
                        message: "not a number in a run summary (see summary.json for the names, e.g. acquire_wait_ms.p99, p_timeout, by_priority.low.p_timeout, pool.connection_seconds, health.score)".to_string(),
                    })
                })
                .collect::<Result<_, _>>()?;
            let cur_mean = cur.iter().sum::<f64>() / cur.len() as f64;
            let mut row = Row {
                scenario: case.id.clone(),
                policy: cur_run.policy.name.clone(),
                trace: cur_run.trace_name.clone(),
                seeds: case.seeds.clone(),
                metric: m.name.clone(),
                better: m.better,
                baseline: None,
                current: cur_mean,
                change: None,
                change_rel: None,
                ci: None,
                p_value: None,
                allowed: None,
                verdict: Verdict::Missing,
                note: String::new(),
            };
            if !missing_seeds.is_empty() {
                row.note = if missing_seeds.len() == case.seeds.len() {
                    format!(
                        "no baseline file {}",
                        file.baseline_path(case, case.seeds[0]).display(),
                    )
                } else {
                    format!(
                        "no baseline for seed{} {}",
                        if missing_seeds.len() == 1 { "" } else { "s" },
                        missing_seeds
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                rows.push(row);
                continue;
            }
            let base: Option<Vec<f64>> = base_json
                .iter()
                .map(|b| b.as_ref().and_then(|v| metric_value(v, &m.name)))
                .collect();
            let Some(base) = base else {
                row.note = format!("the baseline has no number `{}`", m.name);
                rows.push(row);
                continue;
            };
            let base_mean = base.iter().sum::<f64>() / base.len() as f64;
            row.baseline = Some(base_mean);
            row.change = Some(cur_mean - base_mean);
            row.change_rel = (base_mean != 0.0).then(|| (cur_mean - base_mean) / base_mean.abs());
            let shift = if case.seeds.len() == 1 {
                let allowed = (m.tolerance * base_mean.abs()).max(m.abs_tolerance);
                row.allowed = Some(allowed);
                let shift = stats::compare_exact(base_mean, cur_mean, m.tolerance, m.abs_tolerance);
                row.note = if cur_mean == base_mean {
                    "exact".to_string()
                } else if shift == Shift::None {
                    format!("within tolerance ±{}", output::num(allowed))
                } else if allowed == 0.0 {
                    "changed (compared exactly)".to_string()
                } else {
                    format!("beyond tolerance ±{}", output::num(allowed))
                };
                shift
            } else {
                let label = format!("{}/{}", case.id, m.name);
                let r = stats::compare_paired(
                    &base,
                    &cur,
                    m.noise,
                    m.abs_noise,
                    &file.settings,
                    &label,
                );
                row.ci = Some(r.ci);
                row.p_value = Some(r.p);
                row.allowed = Some(r.band);
                row.note = if r.change == 0.0 && r.ci == (0.0, 0.0) {
                    "exact on every seed".to_string()
                } else if r.p >= file.settings.significance {
                    format!(
                        "{}: not significant at {}",
                        output::p_phrase(r.p),
                        file.settings.significance
                    )
                } else if r.shift == Shift::None {
                    format!(
                        "{}, but the {:.0} % interval reaches into the noise band ±{}",
                        output::p_phrase(r.p),
                        file.settings.confidence * 100.0,
                        output::num(r.band)
                    )
                } else {
                    format!(
                        "{}; the {:.0} % interval lies outside the noise band ±{}",
                        output::p_phrase(r.p),
                        file.settings.confidence * 100.0,
                        output::num(r.band)
                    )
                };
                r.shift
            };
            row.verdict = match (shift, m.better) {
                (Shift::None, _) => Verdict::WithinNoise,
                (Shift::Up, Better::Lower) | (Shift::Down, Better::Higher) => Verdict::Regressed,
                (Shift::Up, Better::Higher) | (Shift::Down, Better::Lower) => Verdict::Improved,
            };
            rows.push(row);
        }
    }
    let mut assertions = Vec::new();
    for cr in runs {
        for (seed, results) in cr.case.seeds.iter().zip(&cr.assertions) {
            for a in results {
                assertions.push(AssertionRow {
                    scenario: cr.case.id.clone(),
                    seed: *seed,
                    result: a.clone(),
                });
            }
        }
    }
    let mut counts = Counts::default();
    for a in &assertions {
        if a.result.passed {
            counts.assertions_passed += 1;
        } else {
            counts.assertions_failed += 1;
        }
    }
    for r in &rows {
        match r.verdict {
            Verdict::Improved => counts.improved += 1,
            Verdict::Regressed => counts.regressed += 1,
            Verdict::WithinNoise => counts.within_noise += 1,
            Verdict::Missing => counts.missing += 1,
        }
    }
    let status = if counts.regressed > 0 || counts.assertions_failed > 0 {
        Status::Regression
    } else if counts.missing > 0 {
        Status::Missing
    } else {
        Status::Pass
    };
    Ok(CheckReport {
        schema: CHECK_SCHEMA,
        check_file: file.path.display().to_string(),
        baselines: file.baselines.display().to_string(),
        settings: SettingsOut {
            significance: file.settings.significance,
            confidence: file.settings.confidence,
            resamples: file.settings.resamples,
            bootstrap_seed: file.settings.bootstrap_seed,
        },
        rows,
        assertions,
        config_changes,
        counts,
        status,
    })
}

/// Writes every case's fresh runs as its baselines (`--update`), and removes
/// baseline files of seeds a case no longer lists. Returns the files written.
pub fn update_baselines(file: &CheckFile, runs: &[CaseRuns]) -> Result<Vec<PathBuf>, CheckError> {
    let mut written = Vec::new();
    for cr in runs {
        let case = &cr.case;
        let dir = file
            .baseline_path(case, case.seeds[0])
            .parent()
            .expect("a baseline path has a directory")
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| CheckError::Write {
            path: dir.clone(),
            source,
        })?;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut stale: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    match name.as_deref().and_then(|n| n.strip_prefix("seed-")) {
                        Some(rest) => rest
                            .strip_suffix(".json")
                            .and_then(|s| s.parse::<u64>().ok())
                            .is_some_and(|s| !case.seeds.contains(&s)),
                        None => false,
                    }
                })
                .collect();
            stale.sort();
            for p in stale {
                std::fs::remove_file(&p).map_err(|source| CheckError::Write {
                    path: p.clone(),
                    source,
                })?;
            }
        }
        for (k, (seed, summary)) in case.seeds.iter().zip(&cr.summaries).enumerate() {
            let path = file.baseline_path(case, *seed);
            // A scenario file's baseline is its whole summary.json.
            let text = match cr.full.get(k) {
                Some(full) => full.clone(),
                None => crate::report::json(summary),
            };
            std::fs::write(&path, text).map_err(|source| CheckError::Write {
                path: path.clone(),
                source,
            })?;
            written.push(path);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CheckFile, ConfigError> {
        CheckFile::parse(
            &Document::new("checks/x.toml", text),
            Path::new("checks/x.toml"),
        )
    }

    const OK: &str = r#"
[[scenario]]
policies = ["seed-80-30", "fixed-10"]
trace = "default"
seeds = [1, 2]
set = ["duration=30s"]

[[scenario]]
name = "one"
policy = "../policies/mine.toml"
trace = "default"
seeds = [7]

[[metric]]
name = "acquire_wait_ms.p99"
better = "lower"
"#;

    #[test]
    fn expands_policies_by_traces_and_names_baselines() {
        let f = parse(OK).unwrap();
        let ids: Vec<&str> = f.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["seed-80-30@default", "fixed-10@default", "one/mine@default"]
        );
        assert_eq!(f.baselines, Path::new("checks/x"));
        assert_eq!(
            f.baseline_path(&f.cases[2], 7),
            Path::new("checks/x/one/mine@default/seed-7.json")
        );
        assert_eq!(
            f.resolve("../policies/mine.toml"),
            "checks/../policies/mine.toml"
        );
        assert_eq!(f.resolve("fixed-10"), "fixed-10");
        assert_eq!(f.metrics[0].noise, 0.02);
        assert_eq!(f.settings, TestSettings::default());
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let bad = OK.replace("better = \"lower\"", "better = \"smaller\"");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("checks/x.toml:"), "{e}");
        assert!(e.contains("metric"), "{e}");
        let no_metric = OK.split("[[metric]]").next().unwrap().to_string();
        assert_eq!(
            parse(&no_metric).unwrap_err().to_string(),
            "checks/x.toml: key `metric`: expected at least one [[metric]] (name, better, tolerance / noise)"
        );
        let dup = OK.replace("seeds = [7]", "seeds = [7, 7]");
        assert!(parse(&dup)
            .unwrap_err()
            .to_string()
            .contains("a seed is listed twice"));
        let twice = OK
            .replace("name = \"one\"\n", "")
            .replace("../policies/mine.toml", "fixed-10");
        assert!(parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("scenario `fixed-10@default` appears twice"));
    }

    #[test]
    fn a_scenario_file_is_one_case_and_takes_no_policy() {
        let text = r#"
[[scenario]]
scenario = "../scenarios/rolling-restart.toml"
seeds = [1, 2]
set = ["events.0.pause=0s"]

[[scenario]]
name = "again"
scenario = "../scenarios/rolling-restart.toml"
seeds = [3]

[[metric]]
name = "acquire_wait_ms.p99"
better = "lower"
"#;
        let f = parse(text).unwrap();
        let ids: Vec<&str> = f.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["rolling-restart", "again/rolling-restart"]);
        assert_eq!(
            f.cases[0].scenario.as_deref(),
            Some("../scenarios/rolling-restart.toml")
        );
        assert_eq!(f.cases[0].sets, ["events.0.pause=0s"]);
        assert_eq!(
            f.baseline_path(&f.cases[1], 3),
            Path::new("checks/x/again/rolling-restart/seed-3.json")
        );
        let both = text.replacen("seeds = [1, 2]", "seeds = [1, 2]\ntrace = \"default\"", 1);
        let e = parse(&both).unwrap_err().to_string();
        assert!(e.contains("scenario.[0].scenario"), "{e}");
        assert!(e.contains("without `policy`"), "{e}");
        let twice = text.replace("name = \"again\"\n", "");
        assert!(parse(&twice)
            .unwrap_err()
            .to_string()
            .contains("scenario `rolling-restart` appears twice"));
    }

    #[test]
    fn metric_paths() {
        let v = serde_json::json!({"a": {"b": 2.5}, "c": "x"});
        assert_eq!(metric_value(&v, "a.b"), Some(2.5));
        assert_eq!(metric_value(&v, "a.x"), None);
        assert_eq!(metric_value(&v, "c"), None);
    }
}
