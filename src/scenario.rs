//! A scenario: one workload and seed against several policies, each in its
//! own simulation (in parallel, one per thread), with common random numbers:
//! every policy sees exactly the same requests. Or a scenario file's
//! topology ([`run_topology`]): services, PgBouncer, servers, fleet events,
//! checked against its assertions.

use rayon::prelude::*;

use crate::check::assertions;
use crate::config::policy::{self, PolicySpec};
use crate::config::scenario::ScenarioSpec;
use crate::config::workload::{self, SourceSpec, WorkloadSpec};
use crate::config::{Document, Override};
use crate::core::metrics::SampleSink;
use crate::core::policy::Policy;
use crate::core::pool::PoolConfig;
use crate::core::request::Request;
use crate::error::{ConfigError, SimError};
use crate::rng::SeedTree;
use crate::sim::fleet::simulate_fleet;
use crate::sim::topology::{ServerSeries, ServiceSeries};
use crate::sim::{simulate_world, ClientWork, Payload};
use crate::summary::{
    fleet_run_summary, topology_summary, world_summary, PolicyInfo, RunSummary, ScenarioSummary,
    Summary, TraceInfo, SCHEMA,
};
use crate::time::{SimDuration, SimTime};
use crate::trace::canonical::CanonicalReader;
use crate::trace::error::TraceError;
use crate::trace::generate::Generator;
use crate::trace::synthetic::Synthetic;
use crate::trace::transform::Transformed;
use crate::trace::{RequestSource, StreamSource};

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

/// Resolves `--policy`/`--trace` arguments: a bare word is a shipped name
/// first, anything that looks like a path is a file. Returns the document
/// and its default name (the file stem).
pub fn resolve(
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

/// Loads a workload from a path or a shipped name. A path that is not a
/// `.toml` file is a recorded trace (canonical, or any format `pooltune
/// trace import` reads): it is replayed with the default database model and
/// run bounds, which `--set` can change (`--set database.max_connections=50`,
/// `--set arrivals.skip_bad=true`, `--set arrivals.speed=2`).
pub fn load_workload(arg: &str, overrides: &[Override]) -> Result<LoadedWorkload, ConfigError> {
    let path = std::path::Path::new(arg);
    let is_shipped = workload::SHIPPED.iter().any(|(n, _)| *n == arg);
    let is_toml = arg.to_ascii_lowercase().ends_with(".toml");
    if !is_shipped && !is_toml && path.is_file() {
        return load_trace_file(path, overrides);
    }
    let (doc, stem) = resolve("trace", arg, "traces", workload::SHIPPED)?;
    let spec = WorkloadSpec::load(&doc, &stem, overrides)?;
    Ok(LoadedWorkload {
        spec,
        source: doc.name,
    })
}

/// A recorded trace given directly: a workload document of its own,
/// `[arrivals] kind = "trace", path = ...`, with every other key at its
/// default.
fn load_trace_file(
    path: &std::path::Path,
    overrides: &[Override],
) -> Result<LoadedWorkload, ConfigError> {
    let shown = path.display().to_string();
    let text = format!(
        "[arrivals]\nkind = \"trace\"\npath = {}\n",
        toml::Value::String(shown.clone())
    );
    let doc = Document::new(shown.clone(), text);
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    // The name without compression and format extensions.
    let mut stem = name.as_str();
    for ext in [".gz", ".bz2", ".csv", ".jsonl", ".json", ".log"] {
        if let Some(s) = stem.strip_suffix(ext) {
            stem = s;
        }
    }
    let spec = WorkloadSpec::load_in(&doc, stem, overrides, std::path::Path::new(""), true)?;
    Ok(LoadedWorkload {
        spec,
        source: shown,
    })
}

/// Opens a workload's request stream for one run: the Poisson generator,
/// another generator, or a recorded trace (read through a cursor; the file
/// was checked when the workload was loaded).
pub fn open_source(w: &WorkloadSpec, seeds: &SeedTree) -> Result<WorkloadSource, TraceError> {
    Ok(match &w.source {
        SourceSpec::Poisson => WorkloadSource::Poisson(Synthetic::new(&w.synthetic, seeds)),
        SourceSpec::Generated(g) => WorkloadSource::Generated(Box::new(Generator::new(g, seeds))),
        SourceSpec::Trace(t) => {
            let reader = t.trace.open()?;
            WorkloadSource::Trace(Box::new(StreamSource::new(Transformed::new(
                reader,
                t.transform.clone(),
                seeds,
            ))))
        }
    })
}

/// A workload's request stream (see [`open_source`]). One per run, on the
/// stack: the Poisson generator stays unboxed (it is the hot path of the
/// validation runs), the rarer sources are boxed.
#[allow(clippy::large_enum_variant)]
pub enum WorkloadSource {
    Poisson(Synthetic),
    Generated(Box<Generator>),
    Trace(Box<StreamSource<Transformed<CanonicalReader>>>),
}

impl WorkloadSource {
    /// The error that ended a trace early, if any.
    pub fn take_error(&mut self) -> Option<TraceError> {
        match self {
            WorkloadSource::Trace(s) => s.take_error(),
            _ => None,
        }
    }

    /// Whether the simulator must close the loop (report each end).
    pub fn is_closed_loop(&self) -> bool {
        matches!(self, WorkloadSource::Generated(g) if g.is_closed_loop())
    }
}

impl RequestSource for WorkloadSource {
    #[inline]
    fn next_request(&mut self) -> Option<Request> {
        match self {
            WorkloadSource::Poisson(s) => s.next_request(),
            WorkloadSource::Generated(g) => g.next_request(),
            WorkloadSource::Trace(t) => t.next_request(),
        }
    }

    fn close_loop(&mut self) -> bool {
        match self {
            WorkloadSource::Generated(g) => g.close_loop(),
            _ => false,
        }
    }

    #[inline]
    fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
        match self {
            WorkloadSource::Generated(g) => g.finished(client, at),
            _ => None,
        }
    }
}

/// Runs one policy against the workload: `[app] instances` pools, each
/// running its own instance of the policy, against the workload's database
/// and faults.
pub fn run_one(
    workload: &LoadedWorkload,
    policy: &LoadedPolicy,
    seed: u64,
    sink: &mut dyn SampleSink,
) -> Result<RunSummary, SimError> {
    let seeds = SeedTree::new(seed);
    let w = &workload.spec;
    let trace_failed = |e: TraceError| {
        SimError::Invariant {
        what: format!(
            "the trace could not be replayed although it was checked when loaded (did the file change?): {e}"
        ),
        at: crate::time::SimTime::ZERO,
        seed,
    }
    };
    let mut source = open_source(w, &seeds).map_err(trace_failed)?;
    let policies = (0..w.instances).map(|_| policy.spec.build()).collect();
    let pool = &policy.spec.pool;
    let info = PolicyInfo {
        name: policy.spec.name.clone(),
        hash: policy.spec.hash.clone(),
        source: policy.source.clone(),
        description: policy.spec.description.clone(),
        config: policy.spec.effective.clone(),
    };
    // Closed-loop clients need each request's end: the pools then carry
    // the client with the work.
    let summary = if source.is_closed_loop() {
        run_world::<ClientWork>(pool, policies, w, &mut source, &seeds, sink, info)
    } else {
        run_world::<SimDuration>(pool, policies, w, &mut source, &seeds, sink, info)
    }?;
    if let Some(e) = source.take_error() {
        return Err(trace_failed(e));
    }
    Ok(summary)
}

/// One world run and its summary, with payload `P` (see [`Payload`]).
fn run_world<P: Payload>(
    pool: &PoolConfig,
    policies: Vec<Box<dyn Policy>>,
    w: &WorkloadSpec,
    source: &mut WorkloadSource,
    seeds: &SeedTree,
    sink: &mut dyn SampleSink,
    info: PolicyInfo,
) -> Result<RunSummary, SimError> {
    let outcome = simulate_world::<_, P>(pool, policies, &w.world(), source, seeds, &w.run, sink)?;
    Ok(world_summary(&outcome, info, &w.name, &w.hash))
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

/// A finished scenario (topology) run: its summary and the per-second
/// series of its servers and services (`servers.csv`, `services.csv`).
pub struct TopologyRun {
    pub summary: ScenarioSummary,
    /// In the topology's order (names in `summary.topology`).
    pub servers: Vec<ServerSeries>,
    pub services: Vec<ServiceSeries>,
}

impl TopologyRun {
    /// True when every assertion passed.
    pub fn passed(&self) -> bool {
        self.summary.topology.assertions_passed
    }
}

/// Runs a scenario file's topology once: opens its workloads (the shared
/// one on its own seed branch, each service's own workload on another, so
/// adding a workload never changes another's requests), runs the fleet,
/// checks the assertions and builds the summary. `source` is where the
/// scenario came from (its path), for the summary.
pub fn run_topology(
    spec: &ScenarioSpec,
    source: &str,
    seed: u64,
    sink: &mut dyn SampleSink,
) -> Result<TopologyRun, SimError> {
    let seeds = SeedTree::new(seed);
    let trace_failed = |name: &str, e: TraceError| {
        SimError::Invariant {
        what: format!(
            "workload `{name}`: the trace could not be replayed although it was checked when loaded (did the file change?): {e}"
        ),
        at: crate::time::SimTime::ZERO,
        seed,
    }
    };
    // The shared workload draws from the run's own seed tree, as `sim run
    // --trace` does: the same workload and seed replay the same requests,
    // so a scenario can be compared with a plain or a live run of it.
    let mut shared = match &spec.shared {
        Some(w) => Some(open_source(&w.spec, &seeds).map_err(|e| trace_failed(&w.spec.name, e))?),
        None => None,
    };
    let mut own = spec
        .own
        .iter()
        .enumerate()
        .map(|(i, w)| {
            open_source(&w.spec, &seeds.child("workload/own", i as u64))
                .map_err(|e| trace_failed(&w.spec.name, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outcome = simulate_fleet(
        &spec.topology,
        shared.as_mut().map(|s| s as &mut dyn RequestSource),
        own.iter_mut()
            .map(|s| s as &mut dyn RequestSource)
            .collect(),
        &seeds,
        &spec.run,
        sink,
    )?;
    if let (Some(s), Some(w)) = (shared.as_mut(), &spec.shared) {
        if let Some(e) = s.take_error() {
            return Err(trace_failed(&w.spec.name, e));
        }
    }
    for (s, w) in own.iter_mut().zip(&spec.own) {
        if let Some(e) = s.take_error() {
            return Err(trace_failed(&w.spec.name, e));
        }
    }
    let results = assertions::evaluate(&spec.assertions, &spec.topology, &outcome);
    let info = PolicyInfo {
        name: spec.name.clone(),
        hash: spec.hash.clone(),
        source: source.to_string(),
        description: spec.description.clone(),
        config: spec.effective.clone(),
    };
    let run = fleet_run_summary(&outcome, info, &spec.name, &spec.hash);
    let topology = topology_summary(&spec.topology, &outcome, results);
    let summary = ScenarioSummary {
        summary: Summary {
            schema: SCHEMA.to_string(),
            pooltune_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: spec.name.clone(),
            seed,
            trace: TraceInfo {
                name: spec.name.clone(),
                hash: spec.hash.clone(),
                source: source.to_string(),
                description: spec.description.clone(),
                config: spec.effective.clone(),
            },
            runs: vec![run],
        },
        topology,
    };
    Ok(TopologyRun {
        summary,
        servers: outcome.servers.into_iter().map(|s| s.series).collect(),
        services: outcome.services.into_iter().map(|s| s.series).collect(),
    })
}
