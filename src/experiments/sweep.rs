//! `pooltune sim sweep`: policies x traces x a grid of keys, each variant
//! replicated under common random numbers, every metric with its mean and
//! 95 % interval, and paired differences against a baseline variant.
//!
//! Variants are numbered in a fixed order: by trace (as given), then by the
//! grid's workload-key axes, then the `--reference` policies (ungridded),
//! then by policy (as given) and the grid's policy-key axes (last axis
//! fastest). Replication r of every variant runs under
//! [`replication_seed`](super::replication_seed)`(seed, r)`, so all variants
//! see the same requests in replication r.
//!
//! Outputs (everything derives from the simulations' metric values, in
//! (variant, replication) order, so they are byte-identical whatever the
//! thread count, and after a sharded run and a merge):
//! `sweep.json` (schema `pooltune.sweep/1`), `sweep.csv` (one row per
//! variant), `sweep.md` (a Markdown table), `runs.csv` (one row per
//! simulation).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format::{pm, signed_pm, Table};
use super::grid::{self, Axis, Target};
use super::metrics;
use super::runner::{self, Job, Progress};
use super::shard::{self, RunRecord, Shard};
use super::stats::{self, Estimate};
use super::{replication_seed, to_json, ExperimentError, OrderedMap};
use crate::config::Override;
use crate::error::ConfigError;
use crate::scenario::{self, LoadedPolicy, LoadedWorkload};
use crate::summary::TraceInfo;

/// Schema of `sweep.json`.
pub const SCHEMA: &str = "pooltune.sweep/1";
/// Schema of a sweep's shard file.
pub const SHARD_SCHEMA: &str = "pooltune.sweep-shard/1";
/// The policy swept when none is named.
pub const DEFAULT_POLICY: &str = "seed-80-30";

/// What the user asked for (the command line, parsed but not checked).
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// Policies the grid applies to (default: the seed policy).
    pub policies: Vec<String>,
    /// Workloads (default: `default`).
    pub traces: Vec<String>,
    /// Policies run as they are (only `--set` and workload axes apply).
    pub references: Vec<String>,
    /// `--grid` arguments.
    pub grid: Vec<String>,
    /// `--set` arguments: fixed for every variant.
    pub sets: Vec<String>,
    pub seed: u64,
    pub replications: usize,
    /// `--metric` names (default: [`metrics::DEFAULT_METRICS`]).
    pub metrics: Vec<String>,
    /// `--baseline`: a variant index, or `key=value,...` picking one variant
    /// per workload. Default: the first reference, if any.
    pub baseline: Option<String>,
    /// Leave out grid points whose configuration is invalid instead of failing.
    pub skip_invalid: bool,
}

impl Default for SweepSpec {
    fn default() -> Self {
        SweepSpec {
            policies: Vec::new(),
            traces: Vec::new(),
            references: Vec::new(),
            grid: Vec::new(),
            sets: Vec::new(),
            seed: 42,
            replications: 5,
            metrics: Vec::new(),
            baseline: None,
            skip_invalid: false,
        }
    }
}

/// One variant as written in `sweep.json` (without its metrics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantInfo {
    pub index: usize,
    pub policy: String,
    pub policy_hash: String,
    pub trace: String,
    pub trace_hash: String,
    /// A `--reference` policy: not gridded; its `params` are the policy's
    /// own values of the grid's policy keys.
    pub reference: bool,
    /// The grid's keys and this variant's values, in grid order.
    pub params: OrderedMap<Value>,
    /// The variant paired differences are taken against.
    pub baseline: Option<usize>,
}

/// A grid point left out by `--skip-invalid`, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub policy: String,
    pub trace: String,
    pub params: OrderedMap<Value>,
    pub error: String,
}

/// Everything about a sweep but its results: what shard files carry and
/// what a merge needs to write the outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepPlan {
    pub schema: String,
    pub pooltune_version: String,
    pub seed: u64,
    pub replications: usize,
    /// The seed of each replication (`pooltune sim run --seed S` reproduces one run).
    pub replication_seeds: Vec<u64>,
    /// The first workload (the only one, usually).
    pub trace: TraceInfo,
    /// Every workload, with `--set` applied (grid values not).
    pub traces: Vec<TraceInfo>,
    pub grid: OrderedMap<Vec<Value>>,
    /// `--set` assignments applied to every variant.
    pub sets: Vec<String>,
    pub metrics: Vec<String>,
    /// The metrics of the text and Markdown tables.
    pub display: Vec<String>,
    /// How the baseline was chosen, if there is one.
    pub baseline: Option<String>,
    pub skipped: Vec<Skipped>,
    pub variants: Vec<VariantInfo>,
}

impl SweepPlan {
    /// Simulations: variants x replications, numbered (variant, replication).
    pub fn tasks(&self) -> usize {
        self.variants.len() * self.replications
    }
}

/// A prepared sweep: the plan and the loaded configurations.
pub struct Sweep {
    pub plan: SweepPlan,
    workloads: Vec<LoadedWorkload>,
    policies: Vec<LoadedPolicy>,
    /// Per variant: index into `workloads` and `policies`.
    slots: Vec<(usize, usize)>,
}

fn parse_sets(sets: &[String]) -> Result<Vec<Override>, ExperimentError> {
    Ok(sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, ConfigError>>()?)
}

/// `--metric` names, validated; defaults when none are given. Returns
/// (recorded metrics, displayed metrics).
pub fn metric_lists(
    given: &[String],
    flag: &str,
) -> Result<(Vec<String>, Vec<String>), ExperimentError> {
    if given.is_empty() {
        return Ok((
            metrics::DEFAULT_METRICS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            metrics::HEADLINE_METRICS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ));
    }
    let mut out = Vec::new();
    for m in given {
        metrics::validate(&format!("{flag} {m}"), m)?;
        metrics::union(&mut out, [m.clone()]);
    }
    Ok((out.clone(), out))
}

fn trace_info(w: &LoadedWorkload) -> TraceInfo {
    TraceInfo {
        name: w.spec.name.clone(),
        hash: w.spec.hash.clone(),
        source: w.source.clone(),
        description: w.spec.description.clone(),
        config: w.spec.effective.clone(),
    }
}

fn value_at(v: &Value, path: &[String]) -> Value {
    let mut cur = v;
    for seg in path {
        match cur.get(seg) {
            Some(c) => cur = c,
            None => return Value::Null,
        }
    }
    cur.clone()
}

fn variant_label(policy: &str, trace: &str, params: &OrderedMap<Value>) -> String {
    let mut parts = vec![format!("policy {policy}"), format!("trace {trace}")];
    for (k, v) in params.iter() {
        let v = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        parts.push(format!("{k}={v}"));
    }
    parts.join(", ")
}

impl Sweep {
    /// Checks the specification and loads every variant's configuration.
    /// Nothing runs yet.
    pub fn prepare(spec: &SweepSpec) -> Result<Sweep, ExperimentError> {
        if spec.replications == 0 {
            return Err(ExperimentError::spec(
                "--replications 0",
                "expected at least 1 replication (5 or more give useful intervals)",
            ));
        }
        let sets = parse_sets(&spec.sets)?;
        let split = scenario::split_overrides(&sets)?;
        let axes: Vec<Axis> = spec
            .grid
            .iter()
            .map(|g| Axis::parse("--grid", g))
            .collect::<Result<_, _>>()?;
        for a in &axes {
            let t = a.keys[0].target;
            if a.keys.iter().any(|k| k.target != t) {
                return Err(ExperimentError::spec(
                    a.flag.clone(),
                    "keys set together must all be policy keys or all workload keys",
                ));
            }
        }
        grid::check_disjoint(&axes, &sets)?;
        let (metric_names, display) = metric_lists(&spec.metrics, "--metric")?;

        let trace_args: Vec<String> = if spec.traces.is_empty() {
            vec![scenario::DEFAULT_TRACE.to_string()]
        } else {
            spec.traces.clone()
        };
        let policy_args: Vec<String> = if spec.policies.is_empty() {
            vec![DEFAULT_POLICY.to_string()]
        } else {
            spec.policies.clone()
        };

        // Base documents (with --set): check the grid's keys against them.
        let base_traces: Vec<LoadedWorkload> = trace_args
            .iter()
            .map(|t| scenario::load_workload(t, &split.workload))
            .collect::<Result<_, _>>()?;
        let base_policies: Vec<LoadedPolicy> = policy_args
            .iter()
            .map(|p| scenario::load_policy(p, &split.policy))
            .collect::<Result<_, _>>()?;
        let references: Vec<LoadedPolicy> = spec
            .references
            .iter()
            .map(|p| scenario::load_policy(p, &split.policy))
            .collect::<Result<_, _>>()?;
        for a in &axes {
            for k in &a.keys {
                match k.target {
                    Target::Policy => {
                        for p in base_policies.iter().chain(&references) {
                            grid::check_key(&a.flag, k, &p.source, &p.spec.effective)?;
                        }
                    }
                    Target::Trace => {
                        for w in &base_traces {
                            grid::check_key(&a.flag, k, &w.source, &w.spec.effective)?;
                        }
                    }
                }
            }
        }
        check_unique_names(
            "--policy/--reference",
            base_policies
                .iter()
                .chain(&references)
                .map(|p| (&p.spec.name, &p.source)),
        )?;
        check_unique_names(
            "--trace",
            base_traces.iter().map(|w| (&w.spec.name, &w.source)),
        )?;

        let trace_axes: Vec<usize> = (0..axes.len())
            .filter(|&i| axes[i].keys[0].target == Target::Trace)
            .collect();
        let policy_axes: Vec<usize> = (0..axes.len())
            .filter(|&i| axes[i].keys[0].target == Target::Policy)
            .collect();
        let sub = |idx: &[usize]| idx.iter().map(|&i| axes[i].clone()).collect::<Vec<_>>();
        let (t_axes, p_axes) = (sub(&trace_axes), sub(&policy_axes));
        let t_points = grid::product_len(&t_axes)?;
        let p_points = grid::product_len(&p_axes)?;
        let total = trace_args.len() as u128
            * t_points as u128
            * (references.len() as u128 + policy_args.len() as u128 * p_points as u128);
        if total > grid::MAX_GRID_POINTS as u128 {
            return Err(ExperimentError::spec(
                "--grid",
                format!(
                    "the sweep has {total} variants; at most {}",
                    grid::MAX_GRID_POINTS
                ),
            ));
        }

        let mut workloads: Vec<LoadedWorkload> = Vec::new();
        let mut policies: Vec<LoadedPolicy> = Vec::new();
        let mut slots: Vec<(usize, usize)> = Vec::new();
        let mut infos: Vec<VariantInfo> = Vec::new();
        let mut groups: Vec<usize> = Vec::new();
        let mut skipped: Vec<Skipped> = Vec::new();
        let mut group = 0usize;

        for (ti, targ) in trace_args.iter().enumerate() {
            for tp in 0..t_points {
                let tvals = grid::point(&t_axes, tp);
                let mut params_t: Vec<(usize, Value)> = Vec::new();
                let mut w_over = split.workload.clone();
                let mut assigns = Vec::new();
                for (j, &ai) in trace_axes.iter().enumerate() {
                    let (_, t) = axes[ai].overrides(tvals[j]);
                    assigns.extend(t.iter().map(|o| o.assignment.clone()));
                    w_over.extend(t);
                    params_t.push((ai, axes[ai].json(tvals[j])));
                }
                let params_for = |extra: &[(usize, Value)]| -> OrderedMap<Value> {
                    let mut m = OrderedMap::new();
                    for (ai, a) in axes.iter().enumerate() {
                        let v = params_t
                            .iter()
                            .chain(extra)
                            .find(|(i, _)| *i == ai)
                            .map(|(_, v)| v.clone())
                            .unwrap_or(Value::Null);
                        m.push(a.label.clone(), v);
                    }
                    m
                };
                let workload = match scenario::load_workload(targ, &w_over) {
                    Ok(w) => w,
                    Err(e @ ConfigError::Read { .. }) => return Err(e.into()),
                    Err(e) => {
                        let params = params_for(&[]);
                        let message = grid::rewrite_origin(&e.to_string(), "--grid", &assigns);
                        let name = &base_traces[ti].spec.name;
                        if spec.skip_invalid {
                            skipped.push(Skipped {
                                policy: "*".into(),
                                trace: name.clone(),
                                params,
                                error: message,
                            });
                            continue;
                        }
                        return Err(invalid_point(
                            &format!("trace {name}{}", param_suffix(&params)),
                            message,
                        ));
                    }
                };
                workloads.push(workload);
                let wi = workloads.len() - 1;
                let trace_name = workloads[wi].spec.name.clone();
                let trace_hash = workloads[wi].spec.hash.clone();

                for r in &references {
                    let extra: Vec<(usize, Value)> = policy_axes
                        .iter()
                        .map(|&ai| (ai, value_at(&r.spec.effective, &axes[ai].keys[0].path)))
                        .collect();
                    policies.push(r.clone());
                    slots.push((wi, policies.len() - 1));
                    groups.push(group);
                    infos.push(VariantInfo {
                        index: infos.len(),
                        policy: r.spec.name.clone(),
                        policy_hash: r.spec.hash.clone(),
                        trace: trace_name.clone(),
                        trace_hash: trace_hash.clone(),
                        reference: true,
                        params: params_for(&extra),
                        baseline: None,
                    });
                }
                for parg in &policy_args {
                    for pp in 0..p_points {
                        let pvals = grid::point(&p_axes, pp);
                        let mut p_over = split.policy.clone();
                        let mut assigns = Vec::new();
                        let mut extra = Vec::new();
                        for (j, &ai) in policy_axes.iter().enumerate() {
                            let (p, _) = axes[ai].overrides(pvals[j]);
                            assigns.extend(p.iter().map(|o| o.assignment.clone()));
                            p_over.extend(p);
                            extra.push((ai, axes[ai].json(pvals[j])));
                        }
                        let params = params_for(&extra);
                        match scenario::load_policy(parg, &p_over) {
                            Ok(p) => {
                                infos.push(VariantInfo {
                                    index: infos.len(),
                                    policy: p.spec.name.clone(),
                                    policy_hash: p.spec.hash.clone(),
                                    trace: trace_name.clone(),
                                    trace_hash: trace_hash.clone(),
                                    reference: false,
                                    params,
                                    baseline: None,
                                });
                                policies.push(p);
                                slots.push((wi, policies.len() - 1));
                                groups.push(group);
                            }
                            Err(e @ ConfigError::Read { .. }) => return Err(e.into()),
                            Err(e) => {
                                let message =
                                    grid::rewrite_origin(&e.to_string(), "--grid", &assigns);
                                if spec.skip_invalid {
                                    skipped.push(Skipped {
                                        policy: parg.clone(),
                                        trace: trace_name.clone(),
                                        params,
                                        error: message,
                                    });
                                } else {
                                    return Err(invalid_point(
                                        &variant_label(parg, &trace_name, &params),
                                        message,
                                    ));
                                }
                            }
                        }
                    }
                }
                group += 1;
            }
        }
        if infos.is_empty() {
            let first = skipped
                .first()
                .map(|s| format!(" (the first: {})", s.error))
                .unwrap_or_default();
            return Err(ExperimentError::spec(
                "--grid",
                format!("every grid point is invalid{first}"),
            ));
        }

        let baseline_text = match (&spec.baseline, references.first()) {
            (Some(b), _) => Some(b.clone()),
            (None, Some(r)) => Some(format!("policy={}", r.spec.name)),
            (None, None) => None,
        };
        if let Some(sel) = &baseline_text {
            let flag = match &spec.baseline {
                Some(b) => format!("--baseline {b}"),
                None => "--reference (the first is the baseline)".to_string(),
            };
            let chosen = resolve_baseline(&flag, sel, &infos, &groups, &axes)?;
            for (v, b) in chosen.into_iter().enumerate() {
                infos[v].baseline = b;
            }
        }

        let mut grid_map = OrderedMap::new();
        for a in &axes {
            grid_map.push(a.label.clone(), a.json_values());
        }
        let traces: Vec<TraceInfo> = base_traces.iter().map(trace_info).collect();
        let plan = SweepPlan {
            schema: SCHEMA.to_string(),
            pooltune_version: env!("CARGO_PKG_VERSION").to_string(),
            seed: spec.seed,
            replications: spec.replications,
            replication_seeds: (0..spec.replications as u64)
                .map(|r| replication_seed(spec.seed, r))
                .collect(),
            trace: traces[0].clone(),
            traces,
            grid: grid_map,
            sets: sets.iter().map(|s| s.assignment.clone()).collect(),
            metrics: metric_names,
            display,
            baseline: baseline_text,
            skipped,
            variants: infos,
        };
        Ok(Sweep {
            plan,
            workloads,
            policies,
            slots,
        })
    }

    /// Simulated seconds of every simulation this sweep (or `shard` of it)
    /// runs, for a progress bar's length.
    pub fn expected_sim_seconds(&self, shard: Option<Shard>) -> u64 {
        (0..self.plan.tasks())
            .filter(|t| shard.is_none_or(|s| s.contains(*t)))
            .map(|t| {
                let (wi, _) = self.slots[t / self.plan.replications];
                runner::expected_sim_seconds(&self.workloads[wi])
            })
            .sum()
    }

    /// Runs every simulation, or those of `shard`; returns (simulation
    /// number, metric values) in simulation order.
    pub fn run(
        &self,
        shard: Option<Shard>,
        progress: &dyn Progress,
    ) -> Result<Vec<(usize, Vec<f64>)>, ExperimentError> {
        let k = self.plan.replications;
        let tasks: Vec<usize> = (0..self.plan.tasks())
            .filter(|t| shard.is_none_or(|s| s.contains(*t)))
            .collect();
        let jobs: Vec<Job> = tasks
            .iter()
            .map(|&t| {
                let (v, r) = (t / k, t % k);
                let (wi, pi) = self.slots[v];
                let info = &self.plan.variants[v];
                Job {
                    workload: &self.workloads[wi],
                    policy: &self.policies[pi],
                    seed: self.plan.replication_seeds[r],
                    label: format!(
                        "variant {v} ({}), replication {r} (seed {})",
                        variant_label(&info.policy, &info.trace, &info.params),
                        self.plan.replication_seeds[r]
                    ),
                }
            })
            .collect();
        let values = runner::run_jobs(&jobs, &self.plan.metrics, progress)?;
        Ok(tasks.into_iter().zip(values).collect())
    }

    /// The shard file for `shard` from its simulations' results.
    pub fn shard_file(&self, shard: Shard, results: &[(usize, Vec<f64>)]) -> SweepShardFile {
        SweepShardFile {
            schema: SHARD_SCHEMA.to_string(),
            shard,
            plan: self.plan.clone(),
            runs: results.iter().map(|(t, v)| RunRecord::new(*t, v)).collect(),
        }
    }
}

fn param_suffix(params: &OrderedMap<Value>) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(", {}", parts.join(", "))
    }
}

fn invalid_point(label: &str, message: String) -> ExperimentError {
    ExperimentError::Variant {
        label: format!("--grid point ({label})"),
        message: format!("{message} (use --skip-invalid to leave such points out)"),
    }
}

fn check_unique_names<'a>(
    flag: &str,
    items: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<(), ExperimentError> {
    let mut seen: Vec<(&String, &String)> = Vec::new();
    for (name, source) in items {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(ExperimentError::spec(
                flag,
                format!(
                    "`{name}` ({source}) has the same name as {first}; the policies and traces of a sweep must have different names"
                ),
            ));
        }
        seen.push((name, source));
    }
    Ok(())
}

/// Picks the baseline of each variant: `sel` is a variant index or
/// `key=value,...` (keys: `policy`, `trace`, `reference`, or grid labels)
/// matching at most one variant per workload group.
fn resolve_baseline(
    flag: &str,
    sel: &str,
    infos: &[VariantInfo],
    groups: &[usize],
    axes: &[Axis],
) -> Result<Vec<Option<usize>>, ExperimentError> {
    let bad = |m: String| ExperimentError::spec(flag, m);
    let mut out = vec![None; infos.len()];
    if let Ok(i) = sel.trim().parse::<usize>() {
        if i >= infos.len() {
            return Err(bad(format!(
                "variant {i} does not exist (the sweep has variants 0 to {})",
                infos.len() - 1
            )));
        }
        for (v, g) in groups.iter().enumerate() {
            if *g == groups[i] {
                out[v] = Some(i);
            }
        }
        return Ok(out);
    }
    // Keys may contain commas (`size.min,size.max=5`), so the selector is
    // read key by key: a known key and `=`, then the value up to the next
    // `,KEY=` or the end.
    let mut keys: Vec<String> = ["policy", "trace", "reference"]
        .iter()
        .map(|s| s.to_string())
        .chain(axes.iter().map(|a| a.label.clone()))
        .collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let starts_key = |s: &str| {
        keys.iter()
            .find(|k| s.starts_with(&format!("{k}=")))
            .cloned()
    };
    let mut conds: Vec<(String, Value)> = Vec::new();
    let mut rest = sel.trim();
    while !rest.is_empty() {
        let Some(k) = starts_key(rest) else {
            let typed = rest.split('=').next().unwrap_or(rest);
            let labels: Vec<&str> = axes.iter().map(|a| a.label.as_str()).collect();
            return Err(bad(if rest.contains('=') {
                format!(
                    "unknown key `{typed}`: use policy, trace, reference{}{}",
                    if labels.is_empty() {
                        ""
                    } else {
                        " or a grid key: "
                    },
                    labels.join(", ")
                )
            } else {
                format!(
                    "expected a variant index or key=value,... (e.g. policy=fixed-10 or size.max=20), got `{rest}`"
                )
            }));
        };
        rest = &rest[k.len() + 1..];
        let end = rest
            .char_indices()
            .find(|(i, c)| *c == ',' && starts_key(&rest[i + 1..]).is_some())
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let value = Override::parse(&format!("v={}", rest[..end].trim()))?.value;
        conds.push((k, grid::toml_to_json(&value)));
        rest = if end < rest.len() {
            &rest[end + 1..]
        } else {
            ""
        };
    }
    let same = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    };
    let matches = |info: &VariantInfo| {
        conds.iter().all(|(k, want)| match k.as_str() {
            "policy" => want.as_str() == Some(info.policy.as_str()),
            "trace" => want.as_str() == Some(info.trace.as_str()),
            "reference" => want.as_bool() == Some(info.reference),
            label => info.params.get(label).is_some_and(|v| same(v, want)),
        })
    };
    let n_groups = groups.iter().max().map(|g| g + 1).unwrap_or(0);
    let mut any = false;
    for g in 0..n_groups {
        let hits: Vec<usize> = (0..infos.len())
            .filter(|&v| groups[v] == g && matches(&infos[v]))
            .collect();
        match hits.len() {
            0 => {}
            1 => {
                any = true;
                for v in 0..infos.len() {
                    if groups[v] == g {
                        out[v] = Some(hits[0]);
                    }
                }
            }
            n => {
                let shown: Vec<String> = hits.iter().take(5).map(|h| h.to_string()).collect();
                return Err(bad(format!(
                    "matches {n} variants of one workload (variants {}{}); add keys to pick one",
                    shown.join(", "),
                    if n > 5 { ", ..." } else { "" }
                )));
            }
        }
    }
    if !any {
        return Err(bad("matches no variant".into()));
    }
    Ok(out)
}

/// A shard's results, with the plan they belong to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepShardFile {
    pub schema: String,
    pub shard: Shard,
    pub plan: SweepPlan,
    pub runs: Vec<RunRecord>,
}

/// Paired differences against the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VsBaseline {
    pub baseline: usize,
    /// `this - baseline`, replication by replication.
    pub metrics: OrderedMap<Estimate>,
}

/// One variant in `sweep.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantResult {
    pub index: usize,
    pub policy: String,
    pub policy_hash: String,
    pub trace: String,
    pub trace_hash: String,
    pub reference: bool,
    pub params: OrderedMap<Value>,
    pub metrics: OrderedMap<Estimate>,
    pub vs_baseline: Option<VsBaseline>,
}

/// `sweep.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepOutput {
    pub schema: String,
    pub pooltune_version: String,
    pub seed: u64,
    pub replications: usize,
    pub replication_seeds: Vec<u64>,
    pub trace: TraceInfo,
    pub traces: Vec<TraceInfo>,
    pub grid: OrderedMap<Vec<Value>>,
    pub sets: Vec<String>,
    pub metrics: Vec<String>,
    pub baseline: Option<String>,
    pub skipped: Vec<Skipped>,
    pub variants: Vec<VariantResult>,
}

/// A finished sweep: the output and its renderings.
pub struct SweepReport {
    pub output: SweepOutput,
    pub json: String,
    pub csv: String,
    pub markdown: String,
    pub runs_csv: String,
    pub table: String,
}

impl SweepReport {
    /// Writes sweep.json (first: everything else derives from it),
    /// sweep.csv, sweep.md and runs.csv into `dir`.
    pub fn write(&self, dir: &std::path::Path) -> Result<(), ExperimentError> {
        super::write_file(dir, "sweep.json", &self.json)?;
        super::write_file(dir, "sweep.csv", &self.csv)?;
        super::write_file(dir, "sweep.md", &self.markdown)?;
        super::write_file(dir, "runs.csv", &self.runs_csv)
    }
}

/// Statistics and renderings from the plan and every simulation's values
/// (`values[variant * replications + replication]`).
pub fn finalize(plan: &SweepPlan, values: &[Vec<f64>]) -> SweepReport {
    let k = plan.replications;
    assert_eq!(values.len(), plan.tasks(), "one result per simulation");
    let series =
        |v: usize, m: usize| -> Vec<f64> { (0..k).map(|r| values[v * k + r][m]).collect() };
    let variants: Vec<VariantResult> = plan
        .variants
        .iter()
        .map(|info| {
            let v = info.index;
            let mut ms = OrderedMap::new();
            for (mi, name) in plan.metrics.iter().enumerate() {
                ms.push(name.clone(), stats::estimate(&series(v, mi)));
            }
            let vs_baseline = info.baseline.filter(|b| *b != v).map(|b| {
                let mut d = OrderedMap::new();
                for (mi, name) in plan.metrics.iter().enumerate() {
                    d.push(name.clone(), stats::paired(&series(v, mi), &series(b, mi)));
                }
                VsBaseline {
                    baseline: b,
                    metrics: d,
                }
            });
            VariantResult {
                index: v,
                policy: info.policy.clone(),
                policy_hash: info.policy_hash.clone(),
                trace: info.trace.clone(),
                trace_hash: info.trace_hash.clone(),
                reference: info.reference,
                params: info.params.clone(),
                metrics: ms,
                vs_baseline,
            }
        })
        .collect();
    let output = SweepOutput {
        schema: plan.schema.clone(),
        pooltune_version: plan.pooltune_version.clone(),
        seed: plan.seed,
        replications: plan.replications,
        replication_seeds: plan.replication_seeds.clone(),
        trace: plan.trace.clone(),
        traces: plan.traces.clone(),
        grid: plan.grid.clone(),
        sets: plan.sets.clone(),
        metrics: plan.metrics.clone(),
        baseline: plan.baseline.clone(),
        skipped: plan.skipped.clone(),
        variants,
    };
    let json = to_json(&output);
    let csv = variants_csv(&output);
    let runs_csv = runs_csv(plan, values);
    let table = display_table(plan, &output);
    let markdown = format!(
        "**pooltune sweep** {}\n\n{}{}",
        header_line(&output),
        table.markdown(),
        baseline_note(&output)
    );
    let text = format!(
        "{}\n{}{}",
        header_line(&output),
        table.text(),
        baseline_note(&output)
    );
    SweepReport {
        output,
        json,
        csv,
        markdown,
        runs_csv,
        table: text,
    }
}

fn header_line(o: &SweepOutput) -> String {
    let traces: Vec<String> = o
        .traces
        .iter()
        .map(|t| format!("{} ({})", t.name, t.hash))
        .collect();
    format!(
        "sweep · seed {} · {} replication{} · trace {} · {} variant{}{}",
        o.seed,
        o.replications,
        if o.replications == 1 { "" } else { "s" },
        traces.join(", "),
        o.variants.len(),
        if o.variants.len() == 1 { "" } else { "s" },
        if o.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} invalid grid points skipped)", o.skipped.len())
        }
    )
}

fn baseline_note(o: &SweepOutput) -> String {
    match &o.baseline {
        Some(b) => format!(
            "\nΔ: paired difference (variant − baseline, same seeds) with its 95 % interval; baseline {b}.\n"
        ),
        None => String::new(),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn display_table(plan: &SweepPlan, o: &SweepOutput) -> Table {
    let many_policies = o.variants.iter().any(|v| v.policy != o.variants[0].policy);
    let many_traces = o.traces.len() > 1;
    let has_baseline = o.variants.iter().any(|v| v.vs_baseline.is_some());
    let mut header = vec!["#".to_string()];
    let mut right = vec![true];
    if many_policies {
        header.push("policy".into());
        right.push(false);
    }
    if many_traces {
        header.push("trace".into());
        right.push(false);
    }
    for k in o.grid.keys() {
        header.push(k.to_string());
        right.push(true);
    }
    for m in &plan.display {
        header.push(m.clone());
        right.push(true);
        if has_baseline {
            header.push(format!("Δ {m}"));
            right.push(true);
        }
    }
    let rows = o
        .variants
        .iter()
        .map(|v| {
            let mut row = vec![v.index.to_string()];
            if many_policies {
                row.push(v.policy.clone());
            }
            if many_traces {
                row.push(v.trace.clone());
            }
            for p in v.params.values() {
                row.push(cell(p));
            }
            for m in &plan.display {
                let e = v.metrics.get(m).expect("displayed metrics are recorded");
                row.push(pm(e.mean, e.ci95));
                if has_baseline {
                    row.push(match &v.vs_baseline {
                        Some(d) => {
                            let e = d.metrics.get(m).expect("recorded");
                            signed_pm(e.mean, e.ci95)
                        }
                        None if plan.variants[v.index].baseline == Some(v.index) => {
                            "baseline".into()
                        }
                        None => "-".into(),
                    });
                }
            }
            row
        })
        .collect();
    Table {
        header,
        right,
        rows,
    }
}

fn float_cell(x: f64) -> String {
    if x.is_nan() {
        String::new()
    } else {
        x.to_string()
    }
}

fn csv_text(rows: Vec<Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.write_record(&r).expect("writing CSV to memory");
    }
    String::from_utf8(w.into_inner().expect("flushing CSV to memory")).expect("CSV is UTF-8")
}

fn variants_csv(o: &SweepOutput) -> String {
    let has_baseline = o.variants.iter().any(|v| v.vs_baseline.is_some());
    let mut header: Vec<String> = ["index", "policy", "trace", "reference"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(o.grid.keys().map(|k| k.to_string()));
    header.push("n".into());
    if has_baseline {
        header.push("baseline".into());
    }
    for m in &o.metrics {
        header.push(format!("{m}.mean"));
        header.push(format!("{m}.ci95"));
        if has_baseline {
            header.push(format!("{m}.diff"));
            header.push(format!("{m}.diff_ci95"));
        }
    }
    let mut rows = vec![header];
    for v in &o.variants {
        let mut r = vec![
            v.index.to_string(),
            v.policy.clone(),
            v.trace.clone(),
            v.reference.to_string(),
        ];
        r.extend(v.params.values().map(|p| match p {
            Value::Null => String::new(),
            other => cell(other),
        }));
        r.push(o.replications.to_string());
        if has_baseline {
            r.push(
                v.vs_baseline
                    .as_ref()
                    .map(|d| d.baseline.to_string())
                    .unwrap_or_default(),
            );
        }
        for m in &o.metrics {
            let e = v.metrics.get(m).expect("recorded");
            r.push(float_cell(e.mean));
            r.push(e.ci95.map(float_cell).unwrap_or_default());
            if has_baseline {
                match v.vs_baseline.as_ref().and_then(|d| d.metrics.get(m)) {
                    Some(d) => {
                        r.push(float_cell(d.mean));
                        r.push(d.ci95.map(float_cell).unwrap_or_default());
                    }
                    None => {
                        r.push(String::new());
                        r.push(String::new());
                    }
                }
            }
        }
        rows.push(r);
    }
    csv_text(rows)
}

fn runs_csv(plan: &SweepPlan, values: &[Vec<f64>]) -> String {
    let k = plan.replications;
    let mut header: Vec<String> = ["variant", "replication", "seed"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    header.extend(plan.metrics.iter().cloned());
    let mut rows = vec![header];
    for (t, vals) in values.iter().enumerate() {
        let mut r = vec![
            (t / k).to_string(),
            (t % k).to_string(),
            plan.replication_seeds[t % k].to_string(),
        ];
        r.extend(vals.iter().map(|x| float_cell(*x)));
        rows.push(r);
    }
    csv_text(rows)
}

/// Runs a whole sweep on this machine.
pub fn run_sweep(sweep: &Sweep, progress: &dyn Progress) -> Result<SweepReport, ExperimentError> {
    let results = sweep.run(None, progress)?;
    let values: Vec<Vec<f64>> = results.into_iter().map(|(_, v)| v).collect();
    Ok(finalize(&sweep.plan, &values))
}

/// Merges sweep shard files (already parsed) into the unsharded report.
pub fn merge(
    files: Vec<(std::path::PathBuf, SweepShardFile)>,
) -> Result<SweepReport, ExperimentError> {
    shard::check_one_plan(&files, |f| &f.plan, |f| f.shard, "sweeps")?;
    let first = &files[0].1;
    let plan = &first.plan;
    let mut slots: Vec<Option<Vec<f64>>> = vec![None; plan.tasks()];
    for (p, f) in &files {
        for r in &f.runs {
            let bad = |m: String| ExperimentError::Merge {
                message: format!("{}: {m}", p.display()),
            };
            if r.task >= slots.len() {
                return Err(bad(format!(
                    "simulation {} does not exist (the sweep has {})",
                    r.task,
                    slots.len()
                )));
            }
            if !f.shard.contains(r.task) {
                return Err(bad(format!(
                    "simulation {} does not belong to shard {}",
                    r.task, f.shard
                )));
            }
            if r.values.len() != plan.metrics.len() {
                return Err(bad(format!(
                    "simulation {} has {} values for {} metrics",
                    r.task,
                    r.values.len(),
                    plan.metrics.len()
                )));
            }
            if slots[r.task].is_some() {
                return Err(bad(format!("simulation {} appears twice", r.task)));
            }
            slots[r.task] = Some(r.floats());
        }
    }
    if let Some(t) = slots.iter().position(|s| s.is_none()) {
        let n = files[0].1.shard.count;
        return Err(ExperimentError::Merge {
            message: format!(
                "simulation {t} (variant {}, replication {}) is in no shard file: shard {}/{n} is incomplete",
                t / plan.replications,
                t % plan.replications,
                t % n
            ),
        });
    }
    let values: Vec<Vec<f64>> = slots.into_iter().map(|s| s.expect("checked")).collect();
    Ok(finalize(plan, &values))
}
