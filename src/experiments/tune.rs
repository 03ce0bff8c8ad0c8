//! `pooltune tune`: find the policy that minimises (or maximises) an
//! objective subject to constraints on any metrics, spending simulations
//! where they decide something.
//!
//! # The search
//!
//! The space is the product of the `--free` axes (discrete: every range has
//! a step), applied to the starting policy. The search is **successive
//! halving over replications** (Jamieson & Talwalkar 2016; the fixed-budget
//! core of Hyperband) driving **random exploration followed by coordinate
//! search**, all under **common random numbers**:
//!
//! 1. *Explore.* A Latin-hypercube sample of the space (every value of every
//!    axis is drawn about equally often), plus the starting policy's own
//!    point, or the whole space when it is small. Each candidate runs one
//!    replication; the best third (by the ranking below) runs up to 3, the
//!    best third of those up to 9 (`--replications`), and so on. Most
//!    candidates are obviously bad after one replication (a pool of 2 at
//!    300 requests/s), so they cost one simulation, while the contenders
//!    earn enough replications to be told apart.
//! 2. *Refine.* Coordinate search around the best candidates with full
//!    replications: every one-step move along each axis from the best
//!    incumbent whose neighbourhood is not exhausted, plus a few random
//!    two-axis jumps. The new candidates go through the same halving, and
//!    one is promoted to the next rung only while it ranks ahead of the
//!    worst of the three incumbents *on the same replications*. Pool
//!    knobs interact, but each one's effect is roughly monotone and local
//!    (a larger minimum waits less and costs more), which is where
//!    coordinate moves do well; the jumps cross ridges between two knobs.
//!    When every neighbourhood is exhausted and budget is left, a fresh
//!    Latin-hypercube batch is explored (promoted only if it beats the
//!    incumbents) and refinement resumes, until the `--budget` is spent.
//!    At the low rungs a small relative constraint violation is forgiven
//!    (25 % after one replication, shrinking with more): a single run's
//!    p99 is noisy, and the cheapest good candidates sit right at the bound.
//! 3. *Confirm.* The finalists (the best three by means and the best three
//!    by confidence bounds) and the starting policy run `--confirm` fresh
//!    replications (seeds never used in the search). The result is chosen
//!    and reported on these alone, so the reported intervals are not
//!    flattered by the selection (the winner's curse of picking the best of
//!    many noisy estimates).
//!
//! Every candidate in a rung runs under the same seeds (replication r has
//! seed `replication_seed(seed, r)` for everyone), so rankings compare
//! candidates on identical requests: the noise that matters for a
//! comparison is the paired difference's, far below each estimate's own.
//!
//! *Ranking.* Candidates that meet every constraint come first, by
//! objective; the others after them, by their total relative violation
//! (sum over constraints of how far the mean lies beyond the bound,
//! relative to the bound). In the final choice (`--feasibility upper`,
//! the default) a constraint is met only when its whole 95 % interval is on
//! the right side of the bound.
//!
//! # Stages and sharding
//!
//! The search is a deterministic function of the results it has seen: it
//! is written as straight-line code that asks for batches of simulations
//! ("stages") and, replayed over a store of results, always asks for the
//! same batches. One machine runs each stage as it is asked for. With
//! `--shard K/N` a machine runs its slice of the next stage and writes a
//! shard file; `pooltune merge` adds the stage to `tune-state.json` and,
//! when the search is over, writes exactly the outputs one machine writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format::{num, pm, signed_pm, Table};
use super::grid::{self, Axis, Target};
use super::metrics;
use super::runner::{self, Job, Progress};
use super::shard::{self, Shard};
use super::stats::{self, Estimate};
use super::{replication_seed, resolve_document, to_json, ExperimentError, OrderedMap};
use crate::config::policy::PolicySpec;
use crate::config::{Document, Override};
use crate::error::ConfigError;
use crate::rng::SeedTree;
use crate::scenario::{self, LoadedPolicy, LoadedWorkload};
use crate::summary::TraceInfo;

/// Schema of `tune.json`.
pub const SCHEMA: &str = "pooltune.tune/1";
/// Schema of `tune-state.json` (the results merged so far).
pub const STATE_SCHEMA: &str = "pooltune.tune-state/1";
/// Schema of a tuning stage's shard file.
pub const SHARD_SCHEMA: &str = "pooltune.tune-shard/1";
/// File names in the output directory.
pub const STATE_FILE: &str = "tune-state.json";
pub const POLICY_FILE: &str = "tuned.toml";

/// Halving rate: each rung keeps the best 1/ETA.
const ETA: usize = 3;
/// Share of the budget spent on the first exploration, and on each later one.
const EXPLORE_SHARE: f64 = 0.4;
const RESTART_SHARE: f64 = 0.15;
/// Incumbents refined around, and finalists taken per ranking rule.
const INCUMBENTS: usize = 3;
const FINALISTS: usize = 3;
/// Refinement rounds at most.
const MAX_ROUNDS: usize = 50;
/// Relative constraint violation forgiven after one replication (divided
/// by the square root of the replications at later rungs).
const LOW_RUNG_SLACK: f64 = 0.25;
/// Spaces up to this size are enumerated instead of sampled.
const ENUMERATE_UP_TO: usize = 20_000;

/// How constraints are judged in the final choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feasibility {
    /// The mean meets the bound.
    Mean,
    /// The whole 95 % interval meets the bound (the conservative default).
    Upper,
}

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct TuneSpec {
    /// The starting policy: keys not free keep its values.
    pub policy: String,
    pub trace: String,
    pub sets: Vec<String>,
    /// `--free` axes (default: the policy's sizing knobs, see [`default_space`]).
    pub free: Vec<String>,
    /// `--minimize` / `--maximize` expression (default: minimize
    /// pool.connection_seconds).
    pub minimize: Option<String>,
    pub maximize: Option<String>,
    /// `--constraint` expressions (default: acquire_wait_ms.p99 <= 50,
    /// p_timeout <= 0.001).
    pub constraints: Vec<String>,
    /// Drop the default constraints without giving others.
    pub unconstrained: bool,
    /// Simulations for the search (exploration and refinement).
    pub budget: usize,
    /// Replications of a candidate that survives every halving.
    pub replications: usize,
    /// Fresh replications of the finalists and the starting policy.
    pub confirm: usize,
    pub feasibility: Feasibility,
    pub seed: u64,
    /// Extra metrics to record.
    pub metrics: Vec<String>,
    /// `X,Y`: the Pareto front's axes (both minimised).
    pub pareto: Option<String>,
}

impl Default for TuneSpec {
    fn default() -> Self {
        TuneSpec {
            policy: "seed-80-30".into(),
            trace: scenario::DEFAULT_TRACE.into(),
            sets: Vec::new(),
            free: Vec::new(),
            minimize: None,
            maximize: None,
            constraints: Vec::new(),
            unconstrained: false,
            budget: 600,
            replications: 9,
            confirm: 10,
            feasibility: Feasibility::Upper,
            seed: 42,
            metrics: Vec::new(),
            pareto: None,
        }
    }
}

/// The default objective and constraints.
pub const DEFAULT_OBJECTIVE: &str = "pool.connection_seconds";
pub const DEFAULT_CONSTRAINTS: &[&str] = &["acquire_wait_ms.p99 <= 50", "p_timeout <= 0.001"];
pub const DEFAULT_PARETO: [&str; 2] = ["pool.connection_seconds", "acquire_wait_ms.p99"];

/// The free axes used when none are given, by sizing rule: a fixed pool's
/// size; a threshold policy's bounds, thresholds, interval, step and signal;
/// for the other rules their bounds (min and start together, so a file that
/// sets `size.initial` stays valid) and their main knob.
pub fn default_space(base: &PolicySpec) -> Vec<String> {
    use crate::config::policy::Sizing;
    let max = base.pool.max.max(10);
    let bounds = || {
        vec![
            format!("size.min,size.initial=1..{max}"),
            format!("size.max={max}..{}", 2 * max),
        ]
    };
    let with = |extra: &[&str]| {
        let mut axes = bounds();
        axes.extend(extra.iter().map(|s| s.to_string()));
        axes
    };
    match &base.sizing {
        Sizing::Fixed => vec![format!("size.min,size.max=1..{}", 2 * max)],
        Sizing::Threshold(..) => vec![
            format!("size.min=1..{max}"),
            format!("size.max=2..{max}"),
            "resize.scale_up=0.5..0.95:0.05".into(),
            "resize.scale_down=0.05..0.6:0.05".into(),
            "resize.interval=5s,10s,15s,30s,60s".into(),
            "resize.step=1..4".into(),
            "resize.signal=instant,window_mean".into(),
        ],
        Sizing::Demand => vec![format!("size.max=1..{}", 2 * max)],
        Sizing::Reserve(_) => vec![
            format!("size.max=2..{}", 2 * max),
            "resize.reserve_size=0..10".into(),
            "resize.reserve_timeout=1s,2s,5s,10s".into(),
        ],
        Sizing::Aimd(_) => with(&["resize.backoff_ratio=0.5..0.95:0.05"]),
        Sizing::Vegas(_) => with(&["resize.smoothing=0.2..1:0.2"]),
        Sizing::Gradient(_) | Sizing::Gradient2(_) => with(&["resize.tolerance=1.0..3.0:0.5"]),
        Sizing::Envoy(_) => with(&["resize.buffer=0.1..0.5:0.05"]),
        Sizing::Flexy(_) => with(&["resize.max_overflow=0..10"]),
    }
}

/// Minimise or maximise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sense {
    Minimize,
    Maximize,
}

/// `coef * metric`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub coef: f64,
    pub metric: String,
}

/// A weighted sum of metrics to minimise or maximise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub sense: Sense,
    pub expression: String,
    pub terms: Vec<Term>,
}

/// `metric OP bound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }
    fn upper(self) -> bool {
        matches!(self, Op::Le | Op::Lt)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub expression: String,
    pub metric: String,
    pub op: Op,
    pub bound: f64,
}

impl Constraint {
    /// How far `x` lies beyond the bound, relative to it (0 when met).
    fn violation(&self, x: f64) -> f64 {
        if x.is_nan() {
            return f64::INFINITY;
        }
        let scale = if self.bound.abs() > 0.0 {
            self.bound.abs()
        } else {
            1.0
        };
        let over = match self.op {
            Op::Le => x - self.bound,
            Op::Lt => x - self.bound + if x >= self.bound { 1e-12 } else { 0.0 },
            Op::Ge => self.bound - x,
            Op::Gt => self.bound - x + if x <= self.bound { 1e-12 } else { 0.0 },
        };
        over.max(0.0) / scale
    }

    /// The side of the estimate that must meet the bound under `rule`.
    fn judged(&self, e: &Estimate, rule: Feasibility) -> f64 {
        match (rule, self.op.upper()) {
            (Feasibility::Mean, _) => e.mean,
            (Feasibility::Upper, true) => e.upper(),
            (Feasibility::Upper, false) => e.lower(),
        }
    }
}

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Parses `--minimize`/`--maximize`: `metric`, `2.5*metric`, `a + 0.1*b - c`.
pub fn parse_objective(flag: &str, text: &str, sense: Sense) -> Result<Objective, ExperimentError> {
    let f = format!("{flag} {text}");
    let bad = |m: String| ExperimentError::spec(f.clone(), m);
    let mut terms = Vec::new();
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("expected a metric or a weighted sum such as pool.connection_seconds + 10*acquire_wait_ms.p99".into()));
    }
    // Split on + and - that start a term (not a number's exponent sign).
    let mut parts: Vec<(f64, String)> = Vec::new();
    let mut sign = 1.0;
    let mut leading_sign = false;
    let mut cur = String::new();
    for c in s.chars() {
        let t = cur.trim_end();
        let mut back = t.chars().rev();
        let exponent = matches!(back.next(), Some('e' | 'E'))
            && back.next().is_some_and(|d| d.is_ascii_digit() || d == '.');
        if (c == '+' || c == '-') && !exponent {
            if t.is_empty() {
                if !parts.is_empty() || leading_sign {
                    return Err(bad(format!("two operators in a row in `{s}`")));
                }
                leading_sign = true;
            } else {
                parts.push((sign, t.trim().to_string()));
                cur.clear();
            }
            sign = if c == '-' { -1.0 } else { 1.0 };
        } else {
            cur.push(c);
        }
    }
    if cur.trim().is_empty() {
        return Err(bad("the expression ends with an operator".into()));
    }
    parts.push((sign, cur.trim().to_string()));
    for (sign, part) in parts {
        let (coef, metric) = match part.split_once('*') {
            Some((a, b)) => match (parse_number(a), parse_number(b)) {
                (Some(c), None) => (c, b.trim().to_string()),
                (None, Some(c)) => (c, a.trim().to_string()),
                _ => {
                    return Err(bad(format!(
                        "`{part}`: expected NUMBER*METRIC (e.g. 10*acquire_wait_ms.p99)"
                    )))
                }
            },
            None => (1.0, part.clone()),
        };
        metrics::validate(&f, &metric)?;
        terms.push(Term {
            coef: sign * coef,
            metric,
        });
    }
    Ok(Objective {
        sense,
        expression: s.to_string(),
        terms,
    })
}

/// Parses `metric<=bound` (or `<`, `>=`, `>`).
pub fn parse_constraint(text: &str) -> Result<Constraint, ExperimentError> {
    let flag = format!("--constraint {text}");
    let bad = |m: String| ExperimentError::spec(flag.clone(), m);
    let form = "expected METRIC<=BOUND (or <, >=, >), e.g. acquire_wait_ms.p99<=50";
    let (op, i, len) = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
        .iter()
        .find_map(|(t, op)| text.find(t).map(|i| (*op, i, t.len())))
        .ok_or_else(|| bad(form.into()))?;
    let metric = text[..i].trim();
    let bound = text[i + len..].trim();
    if metric.is_empty() || bound.is_empty() || bound.starts_with(['<', '>', '=']) {
        return Err(bad(form.into()));
    }
    let bound = parse_number(bound)
        .ok_or_else(|| bad(format!("the bound `{bound}` is not a number; {form}")))?;
    metrics::validate(&flag, metric)?;
    Ok(Constraint {
        expression: format!("{metric} {} {bound}", op.text()),
        metric: metric.to_string(),
        op,
        bound,
    })
}

/// Checks that the constraints leave some value of every metric, within
/// its natural range (a probability between 0 and 1, ...).
pub fn check_consistent(cs: &[Constraint]) -> Result<(), ExperimentError> {
    let mut names: Vec<&str> = cs.iter().map(|c| c.metric.as_str()).collect();
    names.sort();
    names.dedup();
    for m in names {
        let (dlo, dhi) = metrics::domain(m);
        // (value, strict, which constraint set it; None = the metric's range)
        let mut lo: (f64, bool, Option<&Constraint>) = (dlo, false, None);
        let mut hi: (f64, bool, Option<&Constraint>) = (dhi, false, None);
        for c in cs.iter().filter(|c| c.metric == m) {
            match c.op {
                Op::Ge | Op::Gt => {
                    let strict = c.op == Op::Gt;
                    if c.bound > lo.0 || (c.bound == lo.0 && strict) {
                        lo = (c.bound, strict, Some(c));
                    }
                }
                Op::Le | Op::Lt => {
                    let strict = c.op == Op::Lt;
                    if c.bound < hi.0 || (c.bound == hi.0 && strict) {
                        hi = (c.bound, strict, Some(c));
                    }
                }
            }
        }
        let empty = lo.0 > hi.0 || (lo.0 == hi.0 && (lo.1 || hi.1));
        if empty {
            let range = |lo: f64, hi: f64| {
                if hi.is_infinite() {
                    format!("never below {lo}")
                } else {
                    format!("always between {lo} and {hi}")
                }
            };
            let message = match (lo.2, hi.2) {
                (Some(a), Some(b)) => {
                    let (a, b) = if cs.iter().position(|c| std::ptr::eq(c, a))
                        < cs.iter().position(|c| std::ptr::eq(c, b))
                    {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    format!(
                        "contradictory constraints: `{}` and `{}` leave no possible value of {m}",
                        a.expression, b.expression
                    )
                }
                (Some(c), None) | (None, Some(c)) => format!(
                    "`{}` can never be met: {m} is {}",
                    c.expression,
                    range(dlo, dhi)
                ),
                (None, None) => unreachable!("a metric's own range is not empty"),
            };
            // Name the flags in the order they were given.
            let flags: Vec<String> = cs
                .iter()
                .filter(|c| [lo.2, hi.2].iter().flatten().any(|x| std::ptr::eq(*x, *c)))
                .map(|c| format!("--constraint '{}'", c.expression))
                .collect();
            return Err(ExperimentError::spec(flags.join(" "), message));
        }
    }
    Ok(())
}

/// Everything about a tuning run but its results; identical on every
/// machine that runs a shard of it. Carries the starting policy's text, so
/// a merge needs no file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunePlan {
    pub schema: String,
    pub pooltune_version: String,
    pub seed: u64,
    pub policy_arg: String,
    pub policy_source: String,
    pub policy_stem: String,
    pub policy_text: String,
    pub policy_name: String,
    pub policy_hash: String,
    pub trace: TraceInfo,
    pub sets: Vec<String>,
    pub free: Vec<String>,
    pub objective: Objective,
    pub constraints: Vec<Constraint>,
    pub feasibility: Feasibility,
    pub metrics: Vec<String>,
    pub pareto: [String; 2],
    pub budget: usize,
    pub replications: usize,
    pub confirm: usize,
}

/// A candidate: a point of the space (one value index per axis), or the
/// starting policy exactly as given.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cand {
    Point(Vec<u32>),
    Start(StartTag),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartTag {
    Start,
}

const START: Cand = Cand::Start(StartTag::Start);

/// One simulation of the search: a candidate under replication `rep`.
pub type Task = (Cand, u32);

/// The space: axes over the starting policy, with every candidate's
/// configuration loaded once.
pub struct Space {
    axes: Vec<Axis>,
    doc: Document,
    stem: String,
    policy_sets: Vec<Override>,
    start: LoadedPolicy,
    memo: BTreeMap<Vec<u32>, Option<LoadedPolicy>>,
}

impl Space {
    fn new(plan: &TunePlan) -> Result<Space, ExperimentError> {
        let axes: Vec<Axis> = plan
            .free
            .iter()
            .map(|f| Axis::parse("--free", f))
            .collect::<Result<_, _>>()?;
        let sets: Vec<Override> = plan
            .sets
            .iter()
            .map(|s| Override::parse(s))
            .collect::<Result<_, ConfigError>>()?;
        let split = scenario::split_overrides(&sets)?;
        let doc = Document::new(plan.policy_source.clone(), plan.policy_text.clone());
        let spec = PolicySpec::load(&doc, &plan.policy_stem, &split.policy)?;
        Ok(Space {
            axes,
            start: LoadedPolicy {
                spec,
                source: doc.name.clone(),
            },
            doc,
            stem: plan.policy_stem.clone(),
            policy_sets: split.policy,
            memo: BTreeMap::new(),
        })
    }

    fn overrides(&self, point: &[u32]) -> Vec<Override> {
        let mut o = self.policy_sets.clone();
        for (a, &i) in self.axes.iter().zip(point) {
            o.extend(a.overrides(i as usize).0);
        }
        o
    }

    fn load(&self, point: &[u32]) -> Result<LoadedPolicy, ConfigError> {
        let spec = PolicySpec::load(&self.doc, &self.stem, &self.overrides(point))?;
        Ok(LoadedPolicy {
            spec,
            source: self.doc.name.clone(),
        })
    }

    /// Whether a point is a valid policy (memoised).
    fn valid(&mut self, point: &[u32]) -> bool {
        if !self.memo.contains_key(point) {
            let p = self.load(point).ok();
            self.memo.insert(point.to_vec(), p);
        }
        self.memo[point].is_some()
    }

    fn policy(&self, c: &Cand) -> &LoadedPolicy {
        match c {
            Cand::Start(_) => &self.start,
            Cand::Point(p) => self.memo[p]
                .as_ref()
                .expect("only valid candidates are evaluated"),
        }
    }

    fn size(&self) -> usize {
        self.axes
            .iter()
            .fold(1usize, |n, a| n.saturating_mul(a.values.len()))
    }

    /// The parameters of a candidate, by axis label.
    fn params(&self, c: &Cand) -> OrderedMap<Value> {
        let mut m = OrderedMap::new();
        for (j, a) in self.axes.iter().enumerate() {
            let v = match c {
                Cand::Point(p) => a.json(p[j] as usize),
                Cand::Start(_) => value_at(&self.start.spec.effective, &a.keys[0].path),
            };
            m.push(a.label.clone(), v);
        }
        m
    }

    /// The point nearest to the starting policy's own values.
    fn snapped_start(&self) -> Vec<u32> {
        self.axes
            .iter()
            .map(|a| {
                let want = value_at(&self.start.spec.effective, &a.keys[0].path);
                nearest(a, &want) as u32
            })
            .collect()
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

fn nearest(a: &Axis, want: &Value) -> usize {
    let vals = a.json_values();
    if let Some(i) = vals.iter().position(|v| v == want) {
        return i;
    }
    let as_num = |v: &Value| -> Option<f64> {
        v.as_f64().or_else(|| {
            v.as_str()
                .and_then(|s| crate::time::parse_duration(s).ok())
                .map(|d| d.0 as f64)
        })
    };
    match as_num(want) {
        Some(w) => (0..vals.len())
            .filter_map(|i| as_num(&vals[i]).map(|x| (i, (x - w).abs())))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .map(|(i, _)| i)
            .unwrap_or(0),
        None => 0,
    }
}

/// Why the search stopped short: it needs a stage run, or it failed.
enum Stop {
    Need(Stage),
    Fail(ExperimentError),
}

impl From<ExperimentError> for Stop {
    fn from(e: ExperimentError) -> Self {
        Stop::Fail(e)
    }
}

/// A batch of simulations the search asks for.
#[derive(Clone, Debug)]
pub struct Stage {
    pub index: usize,
    pub label: String,
    pub tasks: Vec<Task>,
}

/// A stage that has run: what `tune.json` lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageLog {
    pub label: String,
    pub simulations: usize,
}

type Cache = BTreeMap<Task, Vec<f64>>;

/// Ranking score: violations first, then the objective (smaller is better).
#[derive(Clone, Copy, Debug)]
struct Score {
    violation: f64,
    objective: f64,
}

fn cmp_score(a: &Score, b: &Score) -> std::cmp::Ordering {
    let fix = |x: f64| if x.is_nan() { f64::INFINITY } else { x };
    fix(a.violation)
        .total_cmp(&fix(b.violation))
        .then(fix(a.objective).total_cmp(&fix(b.objective)))
}

struct Ctx<'a> {
    plan: &'a TunePlan,
    space: &'a mut Space,
    cache: &'a Cache,
    issued: BTreeSet<Task>,
    spent: usize,
    stages: Vec<StageLog>,
    objective_idx: Vec<(f64, usize)>,
    constraint_idx: Vec<usize>,
}

/// What the search found.
struct Found {
    /// Finalists and the start, best first by the confirmation ranking.
    ranking: Vec<Cand>,
    stages: Vec<StageLog>,
    search_sims: usize,
    confirm_sims: usize,
}

impl Ctx<'_> {
    fn metric_index(plan: &TunePlan, name: &str) -> usize {
        plan.metrics
            .iter()
            .position(|m| m == name)
            .expect("objective, constraint and Pareto metrics are recorded")
    }

    /// Asks for `tasks`; succeeds when all have results.
    fn require(&mut self, label: String, tasks: Vec<Task>, search: bool) -> Result<(), Stop> {
        let mut new = Vec::new();
        for t in tasks {
            if self.issued.insert(t.clone()) {
                new.push(t);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        if search {
            self.spent += new.len();
        }
        let index = self.stages.len();
        self.stages.push(StageLog {
            label: label.clone(),
            simulations: new.len(),
        });
        let missing = new.iter().filter(|t| !self.cache.contains_key(*t)).count();
        if missing == 0 {
            return Ok(());
        }
        if missing != new.len() {
            return Err(Stop::Fail(ExperimentError::Merge {
                message: format!(
                    "the stored results hold part of stage {index} ({label}): {} of {} simulations; the state file is damaged",
                    new.len() - missing,
                    new.len()
                ),
            }));
        }
        Err(Stop::Need(Stage {
            index,
            label,
            tasks: new,
        }))
    }

    fn series(&self, c: &Cand, reps: std::ops::Range<u32>, metric: usize) -> Vec<f64> {
        reps.map(|r| self.cache[&(c.clone(), r)][metric]).collect()
    }

    fn objective_series(&self, c: &Cand, reps: std::ops::Range<u32>) -> Vec<f64> {
        reps.map(|r| {
            let v = &self.cache[&(c.clone(), r)];
            let s: f64 = self.objective_idx.iter().map(|(k, i)| k * v[*i]).sum();
            match self.plan.objective.sense {
                Sense::Minimize => s,
                Sense::Maximize => -s,
            }
        })
        .collect()
    }

    /// Score on replications `reps`, constraints judged by `rule`; each
    /// constraint's relative violation up to `slack` is forgiven.
    fn score(&self, c: &Cand, reps: std::ops::Range<u32>, rule: Feasibility, slack: f64) -> Score {
        let mut violation = 0.0;
        for (con, &mi) in self.plan.constraints.iter().zip(&self.constraint_idx) {
            let e = stats::estimate(&self.series(c, reps.clone(), mi));
            violation += (con.violation(con.judged(&e, rule)) - slack).max(0.0);
        }
        let objective = stats::estimate(&self.objective_series(c, reps)).mean;
        Score {
            violation,
            objective,
        }
    }

    fn rank(
        &self,
        cands: &[Cand],
        reps: std::ops::Range<u32>,
        rule: Feasibility,
        slack: f64,
    ) -> Vec<Cand> {
        let mut scored: Vec<(Score, &Cand)> = cands
            .iter()
            .map(|c| (self.score(c, reps.clone(), rule, slack), c))
            .collect();
        scored.sort_by(|a, b| cmp_score(&a.0, &b.0).then(a.1.cmp(b.1)));
        scored.into_iter().map(|(_, c)| c.clone()).collect()
    }

    fn reps_of(&self, c: &Cand) -> u32 {
        let mut r = 0;
        while self.issued.contains(&(c.clone(), r)) {
            r += 1;
        }
        r
    }

    /// Successive halving of `cands` over the rungs; with `incumbents`, a
    /// candidate is promoted only while it ranks ahead of the worst of them
    /// on the same replications.
    fn halving(
        &mut self,
        what: &str,
        cands: Vec<Cand>,
        incumbents: &[Cand],
    ) -> Result<Vec<Cand>, Stop> {
        let rungs = rungs(self.plan.replications);
        let mut alive = cands;
        for (ri, &r) in rungs.iter().enumerate() {
            if alive.is_empty() {
                break;
            }
            let tasks: Vec<Task> = alive
                .iter()
                .flat_map(|c| (0..r as u32).map(move |rep| (c.clone(), rep)))
                .collect();
            let label = format!(
                "{what}: {} candidate{} x {r} replication{}",
                alive.len(),
                if alive.len() == 1 { "" } else { "s" },
                if r == 1 { "" } else { "s" }
            );
            self.require(label, tasks, true)?;
            if ri + 1 == rungs.len() {
                break;
            }
            // One replication's p99 is noisy: forgive small violations at
            // low rungs, so that cheap candidates near a bound are not
            // dropped on one unlucky seed.
            let slack = LOW_RUNG_SLACK / (r as f64).sqrt();
            let ranked = self.rank(&alive, 0..r as u32, Feasibility::Mean, slack);
            let keep = alive.len().div_ceil(ETA);
            let mut next: Vec<Cand> = ranked.into_iter().take(keep).collect();
            if !incumbents.is_empty() {
                let worst = incumbents
                    .iter()
                    .map(|c| self.score(c, 0..r as u32, Feasibility::Mean, slack))
                    .max_by(cmp_score)
                    .expect("non-empty");
                next.retain(|c| {
                    cmp_score(
                        &self.score(c, 0..r as u32, Feasibility::Mean, slack),
                        &worst,
                    )
                    .is_lt()
                });
            }
            alive = next;
        }
        Ok(alive)
    }

    /// Simulations a halving of `n` new candidates costs at most.
    fn halving_cost(&self, n: usize) -> usize {
        let mut cost = 0;
        let mut alive = n;
        let mut prev = 0;
        for r in rungs(self.plan.replications) {
            cost += alive * (r - prev);
            prev = r;
            alive = alive.div_ceil(ETA);
        }
        cost
    }

    /// `n` new valid points: the starting policy's and a Latin-hypercube
    /// sample (`batch` 0), a fresh sample avoiding every point run so far
    /// (later batches), or the whole space.
    fn explore_candidates(&mut self, n: usize, exhaustive: bool, batch: u64) -> Vec<Cand> {
        let size = self.space.size();
        let dims: Vec<usize> = self.space.axes.iter().map(|a| a.values.len()).collect();
        let mut out: Vec<Vec<u32>> = Vec::new();
        let mut seen: BTreeSet<Vec<u32>> = self
            .issued
            .iter()
            .filter_map(|(c, _)| match c {
                Cand::Point(p) => Some(p.clone()),
                Cand::Start(_) => None,
            })
            .collect();
        let start = self.space.snapped_start();
        if batch == 0 && !seen.contains(&start) && self.space.valid(&start) {
            seen.insert(start.clone());
            out.push(start);
        }
        if exhaustive {
            for i in 0..size {
                let mut idx = i;
                let mut p = vec![0u32; dims.len()];
                for j in (0..dims.len()).rev() {
                    p[j] = (idx % dims[j]) as u32;
                    idx /= dims[j];
                }
                if !seen.contains(&p) && self.space.valid(&p) {
                    seen.insert(p.clone());
                    out.push(p);
                }
            }
            return out.into_iter().map(Cand::Point).collect();
        }
        let mut rng = SeedTree::new(self.plan.seed).indexed("tune-explore", batch);
        // Latin hypercube: axis j's value for sample i comes from stratum perm_j[i].
        let perms: Vec<Vec<usize>> = dims
            .iter()
            .map(|_| {
                let mut p: Vec<usize> = (0..n).collect();
                p.shuffle(&mut rng);
                p
            })
            .collect();
        for i in 0..n {
            if out.len() >= n {
                break;
            }
            let mut p: Vec<u32> = dims
                .iter()
                .zip(&perms)
                .map(|(&m, perm)| {
                    let u: f64 = rng.random();
                    (((perm[i] as f64 + u) / n as f64 * m as f64) as usize).min(m - 1) as u32
                })
                .collect();
            let mut tries = 0;
            while (seen.contains(&p) || !self.space.valid(&p)) && tries < 64 {
                p = dims
                    .iter()
                    .map(|&m| rng.random_range(0..m) as u32)
                    .collect();
                tries += 1;
            }
            if tries < 64 {
                seen.insert(p.clone());
                out.push(p);
            }
        }
        out.into_iter().map(Cand::Point).collect()
    }

    /// New candidates around the incumbents (best first): every one-step
    /// move along each axis from the best incumbent whose neighbourhood is
    /// not exhausted yet, plus random two-axis jumps from the best one.
    fn neighbours(&mut self, incumbents: &[Cand], round: usize) -> Vec<Cand> {
        let dims: Vec<usize> = self.space.axes.iter().map(|a| a.values.len()).collect();
        let mut rng = SeedTree::new(self.plan.seed).indexed("tune-refine", round as u64);
        let mut out: Vec<Vec<u32>> = Vec::new();
        let mut seen: BTreeSet<Vec<u32>> = BTreeSet::new();
        let mut fresh = |ctx: &mut Self, p: Vec<u32>, out: &mut Vec<Vec<u32>>| {
            if !seen.contains(&p)
                && !ctx.issued.contains(&(Cand::Point(p.clone()), 0))
                && ctx.space.valid(&p)
            {
                seen.insert(p.clone());
                out.push(p);
            }
        };
        for inc in incumbents {
            let Cand::Point(base) = inc else { continue };
            let before = out.len();
            for j in 0..dims.len() {
                for d in [-1i64, 1] {
                    let v = base[j] as i64 + d;
                    if v >= 0 && (v as usize) < dims[j] {
                        let mut p = base.clone();
                        p[j] = v as u32;
                        fresh(self, p, &mut out);
                    }
                }
            }
            if out.len() > before {
                break;
            }
        }
        if let Some(Cand::Point(best)) = incumbents.first() {
            if dims.len() >= 2 {
                for _ in 0..(dims.len() / 2).max(2) {
                    let mut p = best.clone();
                    let a = rng.random_range(0..dims.len());
                    let mut b = rng.random_range(0..dims.len() - 1);
                    if b >= a {
                        b += 1;
                    }
                    for j in [a, b] {
                        let step =
                            rng.random_range(1..=2i64) * if rng.random::<bool>() { 1 } else { -1 };
                        p[j] = (p[j] as i64 + step).clamp(0, dims[j] as i64 - 1) as u32;
                    }
                    fresh(self, p, &mut out);
                }
            }
        }
        out.into_iter().map(Cand::Point).collect()
    }

    fn full(&self) -> Vec<Cand> {
        let r = self.plan.replications as u32;
        let mut all: BTreeSet<Cand> = BTreeSet::new();
        for (c, _) in &self.issued {
            if matches!(c, Cand::Point(_)) {
                all.insert(c.clone());
            }
        }
        all.into_iter().filter(|c| self.reps_of(c) >= r).collect()
    }

    fn search(&mut self) -> Result<Found, Stop> {
        let r_full = self.plan.replications as u32;
        // 1. Explore.
        let fits = |ctx: &Self, budget: usize| {
            let mut n = 1;
            while ctx.halving_cost(n + 1) <= budget {
                n += 1;
            }
            n
        };
        let n0 = fits(self, (self.plan.budget as f64 * EXPLORE_SHARE) as usize)
            .max(fits(self, self.plan.budget).min(ETA * ETA));
        let whole = self.space.size();
        let exhaustive = whole <= ENUMERATE_UP_TO && self.halving_cost(whole) <= self.plan.budget;
        let initial = self.explore_candidates(n0, exhaustive, 0);
        if initial.is_empty() {
            return Err(Stop::Fail(ExperimentError::spec(
                "--free",
                "no point of the space is a valid policy (check the ranges against the policy's rules, e.g. size.min <= size.max, scale_down < scale_up)",
            )));
        }
        self.halving("explore", initial, &[])?;
        // 2. Refine; when the neighbourhoods are exhausted and budget is
        //    left, explore afresh (the new points must beat the incumbents
        //    to be promoted) and refine again.
        let mut batch = 0;
        for round in 1..=MAX_ROUNDS {
            let full = self.full();
            let incumbents: Vec<Cand> = self
                .rank(&full, 0..r_full, Feasibility::Mean, 0.0)
                .into_iter()
                .take(INCUMBENTS)
                .collect();
            let left = self.plan.budget.saturating_sub(self.spent);
            let mut props = self.neighbours(&incumbents, round);
            while !props.is_empty() && self.halving_cost(props.len()) > left {
                props.pop();
            }
            if !props.is_empty() {
                self.halving(&format!("refine {round}"), props, &incumbents)?;
                continue;
            }
            let n = fits(
                self,
                left.min((self.plan.budget as f64 * RESTART_SHARE) as usize),
            );
            if self.halving_cost(n) > left || n < ETA {
                break;
            }
            batch += 1;
            let fresh = self.explore_candidates(n, false, batch);
            if fresh.is_empty() {
                break;
            }
            self.halving(&format!("explore again {batch}"), fresh, &incumbents)?;
        }
        let search_sims = self.spent;
        // 3. Confirm on fresh seeds.
        let full = self.full();
        let mut finalists: Vec<Cand> = Vec::new();
        let by_mean = self.rank(&full, 0..r_full, Feasibility::Mean, 0.0);
        let by_rule = self.rank(&full, 0..r_full, self.plan.feasibility, 0.0);
        for c in by_mean
            .iter()
            .take(FINALISTS)
            .chain(by_rule.iter().take(FINALISTS))
        {
            if !finalists.contains(c) {
                finalists.push(c.clone());
            }
        }
        finalists.push(START);
        let confirm = r_full..r_full + self.plan.confirm as u32;
        let tasks: Vec<Task> = finalists
            .iter()
            .flat_map(|c| confirm.clone().map(move |r| (c.clone(), r)))
            .collect();
        let confirm_sims = tasks.len();
        self.require(
            format!(
                "confirm: {} finalists and the starting policy x {} fresh replications",
                finalists.len() - 1,
                self.plan.confirm
            ),
            tasks,
            false,
        )?;
        let ranking = self.rank(&finalists, confirm, self.plan.feasibility, 0.0);
        Ok(Found {
            ranking,
            stages: self.stages.clone(),
            search_sims,
            confirm_sims,
        })
    }
}

/// Replications per rung: 1, 3, 9, ... up to `r` (always ending at `r`).
fn rungs(r: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut x = 1;
    while x < r {
        out.push(x);
        x *= ETA;
    }
    out.push(r);
    out
}

/// A prepared tuning run.
pub struct Tuner {
    pub plan: TunePlan,
    space: Space,
    workload: Option<LoadedWorkload>,
    /// Things the user should know before the search runs.
    pub notes: Vec<String>,
}

/// The search's result store, as kept in `tune-state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneState {
    pub schema: String,
    pub plan: TunePlan,
    /// Stages merged so far.
    pub stages: usize,
    pub results: Vec<StateRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub candidate: Cand,
    pub replication: u32,
    /// `f64::to_bits` of each metric, in the plan's order.
    pub values: Vec<u64>,
}

/// A shard of one stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneShardFile {
    pub schema: String,
    pub shard: Shard,
    pub plan: TunePlan,
    pub stage: usize,
    pub label: String,
    pub stage_simulations: usize,
    pub runs: Vec<TuneRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneRun {
    /// The simulation's number within its stage.
    pub task: usize,
    pub candidate: Cand,
    pub replication: u32,
    pub values: Vec<u64>,
}

impl TuneState {
    fn cache(&self) -> Cache {
        self.results
            .iter()
            .map(|r| {
                (
                    (r.candidate.clone(), r.replication),
                    r.values.iter().map(|b| f64::from_bits(*b)).collect(),
                )
            })
            .collect()
    }

    fn from_cache(plan: &TunePlan, stages: usize, cache: &Cache) -> TuneState {
        TuneState {
            schema: STATE_SCHEMA.to_string(),
            plan: plan.clone(),
            stages,
            results: cache
                .iter()
                .map(|((c, r), v)| StateRecord {
                    candidate: c.clone(),
                    replication: *r,
                    values: v.iter().map(|x| x.to_bits()).collect(),
                })
                .collect(),
        }
    }
}

/// Where a search stands given some results.
pub enum Step {
    /// The next stage to run.
    Next(Stage),
    /// Done.
    Done(Box<TuneReport>),
}

impl Tuner {
    /// Checks the specification and loads the policy and workload.
    pub fn prepare(spec: &TuneSpec) -> Result<Tuner, ExperimentError> {
        if spec.replications == 0 {
            return Err(ExperimentError::spec(
                "--replications 0",
                "expected at least 1 replication per candidate",
            ));
        }
        if spec.confirm < 2 {
            return Err(ExperimentError::spec(
                format!("--confirm {}", spec.confirm),
                "expected at least 2 confirmation replications (an interval needs two)",
            ));
        }
        if spec.budget == 0 {
            return Err(ExperimentError::spec(
                "--budget 0",
                "expected at least 1 simulation",
            ));
        }
        let sets: Vec<Override> = spec
            .sets
            .iter()
            .map(|s| Override::parse(s))
            .collect::<Result<_, ConfigError>>()?;
        let split = scenario::split_overrides(&sets)?;
        let workload = scenario::load_workload(&spec.trace, &split.workload)?;
        let (doc, stem) = resolve_document("policy", &spec.policy)?;
        let base = PolicySpec::load(&doc, &stem, &split.policy)?;

        let free: Vec<String> = if spec.free.is_empty() {
            default_space(&base)
        } else {
            spec.free.clone()
        };
        let axes: Vec<Axis> = free
            .iter()
            .map(|f| Axis::parse("--free", f))
            .collect::<Result<_, _>>()?;
        for a in &axes {
            for k in &a.keys {
                if k.target == Target::Trace {
                    return Err(ExperimentError::spec(
                        a.flag.clone(),
                        format!(
                            "`{}` is a workload key; the tuner varies policy keys only (fix workload keys with --set, or sweep them with pooltune sim sweep)",
                            k.typed
                        ),
                    ));
                }
                grid::check_key(&a.flag, k, &doc.name, &base.effective)?;
            }
        }
        grid::check_disjoint(&axes, &sets)?;

        let objective = match (&spec.minimize, &spec.maximize) {
            (Some(_), Some(_)) => {
                return Err(ExperimentError::spec(
                    "--minimize/--maximize",
                    "give one objective, not both",
                ))
            }
            (Some(m), None) => parse_objective("--minimize", m, Sense::Minimize)?,
            (None, Some(m)) => parse_objective("--maximize", m, Sense::Maximize)?,
            (None, None) => parse_objective("--minimize", DEFAULT_OBJECTIVE, Sense::Minimize)?,
        };
        let constraint_texts: Vec<String> = if !spec.constraints.is_empty() {
            spec.constraints.clone()
        } else if spec.unconstrained {
            Vec::new()
        } else {
            DEFAULT_CONSTRAINTS.iter().map(|s| s.to_string()).collect()
        };
        let constraints: Vec<Constraint> = constraint_texts
            .iter()
            .map(|c| parse_constraint(c))
            .collect::<Result<_, _>>()?;
        check_consistent(&constraints)?;
        let pareto: [String; 2] = match &spec.pareto {
            None => [DEFAULT_PARETO[0].into(), DEFAULT_PARETO[1].into()],
            Some(p) => {
                let flag = format!("--pareto {p}");
                let (x, y) = p.split_once(',').ok_or_else(|| {
                    ExperimentError::spec(flag.clone(), "expected X,Y: two metrics, both minimised")
                })?;
                let (x, y) = (x.trim().to_string(), y.trim().to_string());
                metrics::validate(&flag, &x)?;
                metrics::validate(&flag, &y)?;
                [x, y]
            }
        };
        let mut metric_names: Vec<String> = metrics::DEFAULT_METRICS
            .iter()
            .map(|s| s.to_string())
            .collect();
        for m in &spec.metrics {
            metrics::validate(&format!("--metric {m}"), m)?;
        }
        metrics::union(&mut metric_names, spec.metrics.iter().cloned());
        metrics::union(
            &mut metric_names,
            objective.terms.iter().map(|t| t.metric.clone()),
        );
        metrics::union(
            &mut metric_names,
            constraints.iter().map(|c| c.metric.clone()),
        );
        metrics::union(&mut metric_names, pareto.iter().cloned());

        let plan = TunePlan {
            schema: SCHEMA.to_string(),
            pooltune_version: env!("CARGO_PKG_VERSION").to_string(),
            seed: spec.seed,
            policy_arg: spec.policy.clone(),
            policy_source: doc.name.clone(),
            policy_stem: stem,
            policy_text: doc.text.clone(),
            policy_name: base.name.clone(),
            policy_hash: base.hash.clone(),
            trace: TraceInfo {
                name: workload.spec.name.clone(),
                hash: workload.spec.hash.clone(),
                source: workload.source.clone(),
                description: workload.spec.description.clone(),
                config: workload.spec.effective.clone(),
            },
            sets: sets.iter().map(|s| s.assignment.clone()).collect(),
            free,
            objective,
            constraints,
            feasibility: spec.feasibility,
            metrics: metric_names,
            pareto,
            budget: spec.budget,
            replications: spec.replications,
            confirm: spec.confirm,
        };
        let mut space = Space::new(&plan)?;
        let mut notes = Vec::new();
        let start = space.snapped_start();
        if !space.valid(&start) {
            // Say why with the policy's own message.
            let e = space.load(&start).expect_err("invalid");
            let assigns: Vec<String> = space
                .axes
                .iter()
                .zip(&start)
                .flat_map(|(a, &i)| a.overrides(i as usize).0)
                .map(|o| o.assignment)
                .collect();
            notes.push(format!(
                "the space's point nearest the starting policy is not a valid policy, so the search starts without it: {}",
                grid::rewrite_origin(&e.to_string(), "--free", &assigns)
            ));
        }
        Ok(Tuner {
            plan,
            space,
            workload: Some(workload),
            notes,
        })
    }

    /// A tuner rebuilt from a plan alone (for a merge; it cannot simulate).
    pub fn from_plan(plan: TunePlan) -> Result<Tuner, ExperimentError> {
        let space = Space::new(&plan)?;
        Ok(Tuner {
            plan,
            space,
            workload: None,
            notes: Vec::new(),
        })
    }

    /// Replays the search over `cache`: the next stage to run, or the result.
    fn advance(&mut self, cache: &Cache) -> Result<Step, ExperimentError> {
        let plan = self.plan.clone();
        let objective_idx = plan
            .objective
            .terms
            .iter()
            .map(|t| (t.coef, Ctx::metric_index(&plan, &t.metric)))
            .collect();
        let constraint_idx = plan
            .constraints
            .iter()
            .map(|c| Ctx::metric_index(&plan, &c.metric))
            .collect();
        let mut ctx = Ctx {
            plan: &plan,
            space: &mut self.space,
            cache,
            issued: BTreeSet::new(),
            spent: 0,
            stages: Vec::new(),
            objective_idx,
            constraint_idx,
        };
        match ctx.search() {
            Ok(found) => Ok(Step::Done(Box::new(report(
                &plan,
                &self.space,
                cache,
                found,
            )?))),
            Err(Stop::Need(stage)) => Ok(Step::Next(stage)),
            Err(Stop::Fail(e)) => Err(e),
        }
    }

    /// Simulated seconds one simulation covers (for progress bars).
    pub fn sim_seconds_per_run(&self) -> u64 {
        self.workload
            .as_ref()
            .map(runner::expected_sim_seconds)
            .unwrap_or(1)
    }

    /// Runs `tasks` (numbered within their stage) and returns their values.
    fn run_tasks(
        &self,
        tasks: &[(usize, Task)],
        progress: &dyn Progress,
    ) -> Result<Vec<Vec<f64>>, ExperimentError> {
        let workload = self
            .workload
            .as_ref()
            .ok_or_else(|| ExperimentError::Internal("a merge cannot simulate".into()))?;
        let jobs: Vec<Job> = tasks
            .iter()
            .map(|(_, (c, r))| {
                let seed = replication_seed(self.plan.seed, *r as u64);
                Job {
                    workload,
                    policy: self.space.policy(c),
                    seed,
                    label: format!(
                        "candidate {}, replication {r} (seed {seed})",
                        describe(&self.space.params(c))
                    ),
                }
            })
            .collect();
        runner::run_jobs(&jobs, &self.plan.metrics, progress)
    }

    /// Runs the whole search on this machine. `on_stage` hears of each
    /// stage before it runs (label, simulations).
    pub fn run(
        &mut self,
        progress: &dyn Progress,
        on_stage: &dyn Fn(&str, usize),
    ) -> Result<TuneReport, ExperimentError> {
        let mut cache = Cache::new();
        loop {
            match self.advance(&cache)? {
                Step::Done(r) => return Ok(*r),
                Step::Next(stage) => {
                    on_stage(&stage.label, stage.tasks.len());
                    let tasks: Vec<(usize, Task)> =
                        stage.tasks.iter().cloned().enumerate().collect();
                    let values = self.run_tasks(&tasks, progress)?;
                    for ((_, t), v) in tasks.into_iter().zip(values) {
                        cache.insert(t, v);
                    }
                }
            }
        }
    }

    /// Reads `dir/tune-state.json` if present (checking that it belongs to
    /// this plan).
    pub fn load_state(&self, dir: &Path) -> Result<Option<TuneState>, ExperimentError> {
        let path = dir.join(STATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let state: TuneState = parse_json(&path, &super::read_file(&path)?, STATE_SCHEMA)?;
        if state.plan != self.plan {
            let a = serde_json::to_value(&state.plan).expect("plans serialize");
            let b = serde_json::to_value(&self.plan).expect("plans serialize");
            return Err(ExperimentError::Merge {
                message: format!(
                    "{} belongs to another tuning run (it differs at `{}`); use another --out directory, or delete it to start over",
                    path.display(),
                    shard::first_difference(&a, &b)
                ),
            });
        }
        Ok(Some(state))
    }

    /// Runs this machine's slice of the next stage (given the state in
    /// `dir`) and writes its shard file there. Returns the stage and the
    /// shard file's path, or `None` when the search is already complete.
    pub fn run_shard(
        &mut self,
        dir: &Path,
        shard: Shard,
        progress: &dyn Progress,
        on_stage: &dyn Fn(&str, usize),
    ) -> Result<Option<(Stage, PathBuf, usize)>, ExperimentError> {
        let cache = self.load_state(dir)?.map(|s| s.cache()).unwrap_or_default();
        let stage = match self.advance(&cache)? {
            Step::Done(_) => return Ok(None),
            Step::Next(s) => s,
        };
        let mine: Vec<(usize, Task)> = stage
            .tasks
            .iter()
            .cloned()
            .enumerate()
            .filter(|(t, _)| shard.contains(*t))
            .collect();
        on_stage(&stage.label, mine.len());
        let values = self.run_tasks(&mine, progress)?;
        let file = TuneShardFile {
            schema: SHARD_SCHEMA.to_string(),
            shard,
            plan: self.plan.clone(),
            stage: stage.index,
            label: stage.label.clone(),
            stage_simulations: stage.tasks.len(),
            runs: mine
                .iter()
                .zip(values)
                .map(|((t, (c, r)), v)| TuneRun {
                    task: *t,
                    candidate: c.clone(),
                    replication: *r,
                    values: v.iter().map(|x| x.to_bits()).collect(),
                })
                .collect(),
        };
        let name = shard.file_name("tune");
        super::write_file(dir, &name, &to_json(&file))?;
        let n = mine.len();
        Ok(Some((stage, dir.join(name), n)))
    }
}

/// What a tuning merge did.
pub enum TuneMerge {
    /// A stage was merged; another follows.
    Stage { merged: String, next: Stage },
    /// The search is complete.
    Done(Box<TuneReport>),
}

/// Merges the shard files of one stage into `dir/tune-state.json`; when
/// the search is over, returns the report (the caller writes it).
pub fn merge(
    files: Vec<(PathBuf, TuneShardFile)>,
    dir: &Path,
) -> Result<TuneMerge, ExperimentError> {
    shard::check_one_plan(&files, |f| &f.plan, |f| f.shard, "tuning runs")?;
    let (first_path, first) = &files[0];
    for (p, f) in &files[1..] {
        if f.stage != first.stage {
            return Err(ExperimentError::Merge {
                message: format!(
                    "{} is for stage {} but {} for stage {}; merge the shards of one stage",
                    first_path.display(),
                    first.stage,
                    p.display(),
                    f.stage
                ),
            });
        }
    }
    let mut tuner = Tuner::from_plan(first.plan.clone())?;
    let state = tuner.load_state(dir)?;
    let mut cache = state.as_ref().map(|s| s.cache()).unwrap_or_default();
    let stage = match tuner.advance(&cache)? {
        Step::Done(_) => {
            return Err(ExperimentError::Merge {
                message: format!(
                    "{} already holds a complete search; these shards are left over from an earlier stage",
                    dir.join(STATE_FILE).display()
                ),
            })
        }
        Step::Next(s) => s,
    };
    if stage.index != first.stage || stage.tasks.len() != first.stage_simulations {
        return Err(ExperimentError::Merge {
            message: format!(
                "the shards are for stage {} ({}), but {} expects stage {} ({}); remove stale shard files",
                first.stage,
                first.label,
                dir.join(STATE_FILE).display(),
                stage.index,
                stage.label
            ),
        });
    }
    let mut got: Vec<Option<Vec<f64>>> = vec![None; stage.tasks.len()];
    for (p, f) in &files {
        for r in &f.runs {
            let bad = |m: String| ExperimentError::Merge {
                message: format!("{}: {m}", p.display()),
            };
            let Some(want) = stage.tasks.get(r.task) else {
                return Err(bad(format!(
                    "simulation {} is not in stage {}",
                    r.task, stage.index
                )));
            };
            if !f.shard.contains(r.task) || want != &(r.candidate.clone(), r.replication) {
                return Err(bad(format!(
                    "simulation {} is not what shard {} of stage {} runs",
                    r.task, f.shard, stage.index
                )));
            }
            if r.values.len() != tuner.plan.metrics.len() || got[r.task].is_some() {
                return Err(bad(format!(
                    "simulation {} is malformed or repeated",
                    r.task
                )));
            }
            got[r.task] = Some(r.values.iter().map(|b| f64::from_bits(*b)).collect());
        }
    }
    if let Some(t) = got.iter().position(|g| g.is_none()) {
        return Err(ExperimentError::Merge {
            message: format!(
                "simulation {t} of stage {} is in no shard file: shard {}/{} is incomplete",
                stage.index,
                t % first.shard.count,
                first.shard.count
            ),
        });
    }
    for (t, v) in stage.tasks.iter().zip(got) {
        cache.insert(t.clone(), v.expect("checked"));
    }
    let new_state = TuneState::from_cache(&tuner.plan, stage.index + 1, &cache);
    super::write_file(dir, STATE_FILE, &to_json(&new_state))?;
    for (p, _) in &files {
        std::fs::remove_file(p).map_err(|source| ExperimentError::Write {
            path: p.clone(),
            source,
        })?;
    }
    match tuner.advance(&cache)? {
        Step::Done(r) => Ok(TuneMerge::Done(r)),
        Step::Next(next) => Ok(TuneMerge::Stage {
            merged: format!("stage {} ({})", stage.index, stage.label),
            next,
        }),
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    schema: &str,
) -> Result<T, ExperimentError> {
    #[derive(Deserialize)]
    struct Head {
        schema: Option<String>,
    }
    let head: Head = serde_json::from_str(text).map_err(|e| ExperimentError::Merge {
        message: format!("{}: not a pooltune JSON file: {e}", path.display()),
    })?;
    let found = head.schema.unwrap_or_else(|| "none".into());
    if found != schema {
        return Err(ExperimentError::Merge {
            message: format!("{}: schema `{found}`, expected `{schema}`", path.display()),
        });
    }
    // Straight from the text, not through serde_json::Value: a Value sorts
    // object keys, and the order of grid axes and parameters is part of
    // the output.
    serde_json::from_str(text).map_err(|e| ExperimentError::Merge {
        message: format!("{}: malformed {schema} file: {e}", path.display()),
    })
}

fn describe(params: &OrderedMap<Value>) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    parts.join(", ")
}

/// One constraint judged on an estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstraintCheck {
    pub expression: String,
    pub estimate: Estimate,
    /// Met under the plan's feasibility rule.
    pub met: bool,
}

/// A policy's predicted figures on the confirmation replications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub name: String,
    pub hash: String,
    pub params: OrderedMap<Value>,
    pub objective: Estimate,
    pub constraints: Vec<ConstraintCheck>,
    pub feasible: bool,
    pub metrics: OrderedMap<Estimate>,
}

/// One evaluated point of the search (for the Pareto front).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluated {
    pub id: usize,
    pub params: OrderedMap<Value>,
    /// Search replications it ran.
    pub n: usize,
    pub objective: f64,
    /// Meets every constraint by its means.
    pub feasible: bool,
    /// On the Pareto front of the two `pareto` metrics (both minimised).
    pub pareto: bool,
    pub metrics: OrderedMap<Estimate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchInfo {
    pub budget: usize,
    pub replications: usize,
    pub halving_rate: usize,
    pub confirm: usize,
    pub search_simulations: usize,
    pub confirm_simulations: usize,
    pub candidates_evaluated: usize,
    pub stages: Vec<StageLog>,
}

/// `tune.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneOutput {
    pub schema: String,
    pub pooltune_version: String,
    pub seed: u64,
    pub policy: PolicyRef,
    pub trace: TraceInfo,
    pub sets: Vec<String>,
    pub space: OrderedMap<Vec<Value>>,
    pub objective: Objective,
    pub constraints: Vec<Constraint>,
    pub feasibility: Feasibility,
    pub search: SearchInfo,
    /// "feasible", or "infeasible" when no finalist met the constraints.
    pub status: String,
    /// The starting policy itself came out best (the file is then a copy
    /// of it under a new name).
    pub result_is_start: bool,
    pub policy_file: String,
    /// The tuned policy's figures on fresh replications.
    pub result: Figures,
    /// The starting policy's figures on the same replications.
    pub start: Figures,
    /// Result minus start, replication by replication (same seeds).
    pub vs_start: OrderedMap<Estimate>,
    /// Every finalist on the confirmation replications, best first.
    pub finalists: Vec<Figures>,
    pub pareto: [String; 2],
    pub evaluated: Vec<Evaluated>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub name: String,
    pub hash: String,
    pub source: String,
}

/// A finished tuning run: `tune.json`, the policy file, a Markdown report
/// and the text table.
pub struct TuneReport {
    pub output: TuneOutput,
    pub json: String,
    pub policy_toml: String,
    pub markdown: String,
    pub table: String,
}

impl TuneReport {
    /// Writes tune.json (first), tuned.toml and tune.md into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ExperimentError> {
        super::write_file(dir, "tune.json", &self.json)?;
        super::write_file(dir, POLICY_FILE, &self.policy_toml)?;
        super::write_file(dir, "tune.md", &self.markdown)
    }
}

fn report(
    plan: &TunePlan,
    space: &Space,
    cache: &Cache,
    found: Found,
) -> Result<TuneReport, ExperimentError> {
    let r_full = plan.replications as u32;
    let confirm = r_full..r_full + plan.confirm as u32;
    let series = |c: &Cand, reps: std::ops::Range<u32>, mi: usize| -> Vec<f64> {
        reps.map(|r| cache[&(c.clone(), r)][mi]).collect()
    };
    let obj_series = |c: &Cand, reps: std::ops::Range<u32>| -> Vec<f64> {
        reps.map(|r| {
            let v = &cache[&(c.clone(), r)];
            plan.objective
                .terms
                .iter()
                .map(|t| {
                    t.coef
                        * v[plan
                            .metrics
                            .iter()
                            .position(|m| *m == t.metric)
                            .expect("recorded")]
                })
                .sum()
        })
        .collect()
    };
    let midx = |name: &str| {
        plan.metrics
            .iter()
            .position(|m| m == name)
            .expect("recorded")
    };
    let figures = |c: &Cand| -> Figures {
        let p = space.policy(c);
        let mut ms = OrderedMap::new();
        for (mi, m) in plan.metrics.iter().enumerate() {
            ms.push(m.clone(), stats::estimate(&series(c, confirm.clone(), mi)));
        }
        let constraints: Vec<ConstraintCheck> = plan
            .constraints
            .iter()
            .map(|con| {
                let e = stats::estimate(&series(c, confirm.clone(), midx(&con.metric)));
                ConstraintCheck {
                    expression: con.expression.clone(),
                    estimate: e,
                    met: con.violation(con.judged(&e, plan.feasibility)) == 0.0,
                }
            })
            .collect();
        Figures {
            name: p.spec.name.clone(),
            hash: p.spec.hash.clone(),
            params: space.params(c),
            objective: stats::estimate(&obj_series(c, confirm.clone())),
            feasible: constraints.iter().all(|c| c.met),
            constraints,
            metrics: ms,
        }
    };
    let winner = found.ranking[0].clone();
    let mut result = figures(&winner);
    let start = figures(&START);
    let status = if result.feasible {
        "feasible"
    } else {
        "infeasible"
    };
    let mut vs_start = OrderedMap::new();
    for (mi, m) in plan.metrics.iter().enumerate() {
        vs_start.push(
            m.clone(),
            stats::paired(
                &series(&winner, confirm.clone(), mi),
                &series(&START, confirm.clone(), mi),
            ),
        );
    }
    let finalists: Vec<Figures> = found.ranking.iter().map(&figures).collect();

    // The tuned policy file.
    let tuned_name = format!("{}-tuned", plan.policy_name);
    let constraint_text: Vec<&str> = plan
        .constraints
        .iter()
        .map(|c| c.expression.as_str())
        .collect();
    let goal = format!(
        "{} {}{}",
        match plan.objective.sense {
            Sense::Minimize => "minimize",
            Sense::Maximize => "maximize",
        },
        plan.objective.expression,
        if constraint_text.is_empty() {
            String::new()
        } else {
            format!(" subject to {}", constraint_text.join(", "))
        }
    );
    let description = format!(
        "tuned by pooltune {} from {} for trace {} ({}), seed {}: {goal}",
        plan.pooltune_version, plan.policy_name, plan.trace.name, plan.trace.hash, plan.seed
    );
    let mut effective = space.policy(&winner).spec.effective.clone();
    effective["name"] = Value::String(tuned_name.clone());
    effective["description"] = Value::String(description);
    let header = toml_header(plan, &result, &start, status, &goal);
    let policy_toml = format!("{header}{}", policy_toml(&effective));
    // The file must load back to exactly this policy.
    let reloaded = PolicySpec::load(
        &Document::new(POLICY_FILE, policy_toml.clone()),
        "tuned",
        &[],
    )
    .map_err(|e| ExperimentError::Internal(format!("the tuned policy does not load: {e}")))?;
    if reloaded.effective != effective {
        return Err(ExperimentError::Internal(
            "the tuned policy file does not load back to the tuned policy".into(),
        ));
    }
    result.name = tuned_name;
    result.hash = reloaded.hash;

    // Every evaluated point, with the Pareto front.
    let mut cands: BTreeSet<Cand> = BTreeSet::new();
    for (c, r) in cache.keys() {
        if *r < r_full {
            cands.insert(c.clone());
        }
    }
    let (px, py) = (midx(&plan.pareto[0]), midx(&plan.pareto[1]));
    let mut evaluated: Vec<Evaluated> = Vec::new();
    for c in &cands {
        let n = (0..r_full)
            .take_while(|r| cache.contains_key(&(c.clone(), *r)))
            .count() as u32;
        let mut ms = OrderedMap::new();
        for (mi, m) in plan.metrics.iter().enumerate() {
            ms.push(m.clone(), stats::estimate(&series(c, 0..n, mi)));
        }
        let feasible = plan.constraints.iter().all(|con| {
            let e = ms.get(&con.metric).expect("recorded");
            con.violation(e.mean) == 0.0
        });
        evaluated.push(Evaluated {
            id: evaluated.len(),
            params: space.params(c),
            n: n as usize,
            objective: stats::estimate(&obj_series(c, 0..n)).mean,
            feasible,
            pareto: false,
            metrics: ms,
        });
    }
    let xy: Vec<(f64, f64)> = evaluated
        .iter()
        .map(|e| (e.metrics.0[px].1.mean, e.metrics.0[py].1.mean))
        .collect();
    for i in 0..xy.len() {
        let (x, y) = xy[i];
        // Dominated by a point at least as good on both and better on one;
        // of identical points only the first counts.
        let dominated = xy
            .iter()
            .enumerate()
            .any(|(j, &(x2, y2))| j != i && x2 <= x && y2 <= y && (x2 < x || y2 < y || j < i));
        evaluated[i].pareto = !dominated && !x.is_nan() && !y.is_nan();
    }

    let mut space_map = OrderedMap::new();
    for a in &space.axes {
        space_map.push(a.label.clone(), a.json_values());
    }
    let output = TuneOutput {
        schema: SCHEMA.to_string(),
        pooltune_version: plan.pooltune_version.clone(),
        seed: plan.seed,
        policy: PolicyRef {
            name: plan.policy_name.clone(),
            hash: plan.policy_hash.clone(),
            source: plan.policy_source.clone(),
        },
        trace: plan.trace.clone(),
        sets: plan.sets.clone(),
        space: space_map,
        objective: plan.objective.clone(),
        constraints: plan.constraints.clone(),
        feasibility: plan.feasibility,
        search: SearchInfo {
            budget: plan.budget,
            replications: plan.replications,
            halving_rate: ETA,
            confirm: plan.confirm,
            search_simulations: found.search_sims,
            confirm_simulations: found.confirm_sims,
            candidates_evaluated: cands.len(),
            stages: found.stages,
        },
        status: status.to_string(),
        result_is_start: matches!(winner, Cand::Start(_)),
        policy_file: POLICY_FILE.to_string(),
        result,
        start,
        vs_start,
        finalists,
        pareto: plan.pareto.clone(),
        evaluated,
    };
    let json = to_json(&output);
    let (table, markdown) = render(&output, &goal);
    Ok(TuneReport {
        output,
        json,
        policy_toml,
        markdown,
        table,
    })
}

fn toml_header(
    plan: &TunePlan,
    result: &Figures,
    start: &Figures,
    status: &str,
    goal: &str,
) -> String {
    let mut h = String::new();
    h.push_str(&format!(
        "# Tuned by pooltune {} (pooltune tune), seed {}.\n",
        plan.pooltune_version, plan.seed
    ));
    h.push_str(&format!(
        "# Starting policy: {} ({}); trace: {} ({}).\n",
        plan.policy_name, plan.policy_source, plan.trace.name, plan.trace.hash
    ));
    if !plan.sets.is_empty() {
        h.push_str(&format!("# With --set {}.\n", plan.sets.join(" --set ")));
    }
    h.push_str(&format!("# Goal: {goal}.\n"));
    if status != "feasible" {
        h.push_str("# WARNING: no policy found meets every constraint; this is the closest one.\n");
    }
    h.push_str(&format!(
        "# Predicted on {} fresh replications (mean ± 95 % interval), tuned vs start:\n",
        plan.confirm
    ));
    let mut shown: Vec<String> = plan
        .objective
        .terms
        .iter()
        .map(|t| t.metric.clone())
        .collect();
    metrics::union(
        &mut shown,
        plan.constraints.iter().map(|c| c.metric.clone()),
    );
    metrics::union(
        &mut shown,
        ["pool.size_mean".to_string(), "health.score".to_string()],
    );
    for m in shown {
        let (Some(a), Some(b)) = (result.metrics.get(&m), start.metrics.get(&m)) else {
            continue;
        };
        h.push_str(&format!(
            "#   {m}: {}  (start: {})\n",
            pm(a.mean, a.ci95),
            pm(b.mean, b.ci95)
        ));
    }
    h.push_str("# Use it with: pooltune sim run --policy <this file>\n\n");
    h
}

/// A policy's effective config as a TOML file, in the file's usual order.
fn policy_toml(effective: &Value) -> String {
    const TOP: &[&str] = &["name", "description"];
    const TABLES: &[(&str, &[&str])] = &[
        ("size", &["min", "max", "initial"]),
        (
            "resize",
            &[
                "kind",
                "interval",
                "scale_up",
                "scale_down",
                "step",
                "signal",
            ],
        ),
        ("acquire_timeout", &["high", "normal", "low"]),
        ("queue", &["max_waiters"]),
    ];
    let Value::Object(root) = effective else {
        return String::new();
    };
    let ordered = |m: &serde_json::Map<String, Value>, first: &[&str]| -> Vec<(String, Value)> {
        let mut keys: Vec<String> = first
            .iter()
            .filter(|k| m.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        keys.extend(m.keys().filter(|k| !first.contains(&k.as_str())).cloned());
        keys.into_iter()
            .map(|k| {
                let v = m[&k].clone();
                (k, v)
            })
            .collect()
    };
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(if let Some(i) = n.as_i64() {
                toml::Value::Integer(i).to_string()
            } else {
                toml::Value::Float(n.as_f64().unwrap_or(f64::NAN)).to_string()
            }),
            Value::String(s) => Some(toml::Value::String(s.clone()).to_string()),
            _ => None,
        }
    };
    let mut out = String::new();
    let table_names: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
    for (k, v) in ordered(root, TOP) {
        if v.is_object() {
            continue;
        }
        if let Some(s) = scalar(&v) {
            out.push_str(&format!("{k} = {s}\n"));
        }
    }
    let mut tables: Vec<(String, Value)> = ordered(root, &table_names)
        .into_iter()
        .filter(|(_, v)| v.is_object())
        .collect();
    tables.sort_by_key(|(k, _)| {
        table_names
            .iter()
            .position(|t| t == k)
            .unwrap_or(usize::MAX)
    });
    for (name, t) in tables {
        let Value::Object(m) = &t else { continue };
        let first = TABLES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .unwrap_or(&[]);
        out.push_str(&format!("\n[{name}]\n"));
        for (k, v) in ordered(m, first) {
            if let Some(s) = scalar(&v) {
                out.push_str(&format!("{k} = {s}\n"));
            }
        }
    }
    out
}

fn render(o: &TuneOutput, goal: &str) -> (String, String) {
    let head = format!(
        "tune · seed {} · trace {} ({}) · starting policy {} · {goal}",
        o.seed, o.trace.name, o.trace.hash, o.policy.name
    );
    let search = format!(
        "search: {} simulations over {} candidates in {} stages (successive halving x{} up to {} replications); confirmation: {} simulations on {} fresh seeds",
        o.search.search_simulations,
        o.search.candidates_evaluated,
        o.search.stages.len(),
        o.search.halving_rate,
        o.search.replications,
        o.search.confirm_simulations,
        o.search.confirm
    );
    let verdict = if o.result_is_start {
        format!(
            "result: no candidate beat the starting policy {}; {} is a copy of it{}",
            o.start.name,
            o.result.name,
            if o.status == "feasible" {
                ""
            } else {
                " (and it does NOT meet every constraint)"
            }
        )
    } else if o.status == "feasible" {
        format!(
            "result: {} meets every constraint{}",
            o.result.name,
            match o.objective.sense {
                Sense::Minimize if o.result.objective.mean < o.start.objective.mean =>
                    " at a lower objective than the starting policy",
                Sense::Maximize if o.result.objective.mean > o.start.objective.mean =>
                    " at a higher objective than the starting policy",
                _ => "",
            }
        )
    } else {
        "result: NO policy met every constraint; the closest one is shown".to_string()
    };
    // Parameters, then figures.
    let mut rows: Vec<Vec<String>> = Vec::new();
    for ((k, a), b) in o.result.params.iter().zip(o.start.params.values()) {
        rows.push(vec![k.to_string(), cell(b), cell(a), String::new()]);
    }
    // The objective's own row only when it is not simply one metric.
    let plain = o.objective.terms.len() == 1 && o.objective.terms[0].coef == 1.0;
    let mut shown: Vec<String> = if plain {
        Vec::new()
    } else {
        vec!["objective".into()]
    };
    let mut metric_rows: Vec<String> = Vec::new();
    metrics::union(
        &mut metric_rows,
        o.objective.terms.iter().map(|t| t.metric.clone()),
    );
    metrics::union(
        &mut metric_rows,
        o.constraints.iter().map(|c| c.metric.clone()),
    );
    metrics::union(
        &mut metric_rows,
        metrics::HEADLINE_METRICS.iter().map(|s| s.to_string()),
    );
    shown.extend(metric_rows.iter().cloned());
    for m in &shown {
        let (a, b, d) = if m == "objective" {
            let d = stats::Estimate {
                mean: o.result.objective.mean - o.start.objective.mean,
                ci95: None,
                n: o.result.objective.n,
            };
            (o.result.objective, o.start.objective, d)
        } else {
            let (Some(a), Some(b), Some(d)) = (
                o.result.metrics.get(m),
                o.start.metrics.get(m),
                o.vs_start.get(m),
            ) else {
                continue;
            };
            (*a, *b, *d)
        };
        rows.push(vec![
            m.clone(),
            pm(b.mean, b.ci95),
            pm(a.mean, a.ci95),
            if m == "objective" {
                String::new()
            } else {
                signed_pm(d.mean, d.ci95)
            },
        ]);
    }
    for (a, b) in o.result.constraints.iter().zip(&o.start.constraints) {
        let yn = |c: &ConstraintCheck| if c.met { "met" } else { "NOT met" };
        rows.push(vec![
            format!("{}?", a.expression),
            yn(b).to_string(),
            yn(a).to_string(),
            String::new(),
        ]);
    }
    let table = Table {
        header: vec![
            String::new(),
            format!("start: {}", o.start.name),
            format!("tuned: {}", o.result.name),
            "tuned − start".to_string(),
        ],
        right: vec![false, true, true, true],
        rows,
    };
    let note = format!(
        "figures: mean ± 95 % interval over {} fresh replications; the difference is paired (same seeds); constraints judged by {}",
        o.search.confirm,
        match o.feasibility {
            Feasibility::Upper => "the whole interval",
            Feasibility::Mean => "the mean",
        }
    );
    let text = format!("{head}\n{search}\n{verdict}\n\n{}{note}\n", table.text());

    // Markdown: the same, plus the Pareto front and the finalists.
    let mut md = format!(
        "**pooltune tune** {head}\n\n{search}\n\n**{verdict}** (policy file `{}`)\n\n{}\n{note}\n",
        o.policy_file,
        table.markdown()
    );
    let front: Vec<&Evaluated> = {
        let mut f: Vec<&Evaluated> = o.evaluated.iter().filter(|e| e.pareto).collect();
        f.sort_by(|a, b| {
            a.metrics
                .get(&o.pareto[0])
                .map(|e| e.mean)
                .unwrap_or(f64::NAN)
                .total_cmp(
                    &b.metrics
                        .get(&o.pareto[0])
                        .map(|e| e.mean)
                        .unwrap_or(f64::NAN),
                )
        });
        f
    };
    if !front.is_empty() {
        let mut header = vec!["#".to_string()];
        header.extend(o.space.keys().map(|k| k.to_string()));
        header.extend([
            o.pareto[0].clone(),
            o.pareto[1].clone(),
            "n".into(),
            "feasible".into(),
        ]);
        let right = vec![true; header.len()];
        let rows = front
            .iter()
            .map(|e| {
                let mut r = vec![e.id.to_string()];
                r.extend(e.params.values().map(cell));
                for m in &o.pareto {
                    let x = e.metrics.get(m).expect("recorded");
                    r.push(num(x.mean));
                }
                r.push(e.n.to_string());
                r.push(if e.feasible { "yes" } else { "no" }.into());
                r
            })
            .collect();
        md.push_str(&format!(
            "\n### Pareto front ({} vs {}, means over the search replications)\n\n{}",
            o.pareto[0],
            o.pareto[1],
            Table {
                header,
                right,
                rows
            }
            .markdown()
        ));
    }
    (text, md)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_end_at_the_replications() {
        assert_eq!(rungs(9), [1, 3, 9]);
        assert_eq!(rungs(5), [1, 3, 5]);
        assert_eq!(rungs(1), [1]);
        assert_eq!(rungs(3), [1, 3]);
    }

    #[test]
    fn objectives_parse() {
        let o = parse_objective("--minimize", "pool.connection_seconds", Sense::Minimize).unwrap();
        assert_eq!(
            o.terms,
            [Term {
                coef: 1.0,
                metric: "pool.connection_seconds".into()
            }]
        );
        let o = parse_objective(
            "--minimize",
            "pool.connection_seconds + 10*acquire_wait_ms.p99 - p_wait*2e-1",
            Sense::Minimize,
        )
        .unwrap();
        assert_eq!(o.terms.len(), 3);
        assert_eq!(o.terms[1].coef, 10.0);
        assert_eq!(o.terms[2].coef, -0.2);
        assert_eq!(o.terms[2].metric, "p_wait");
        let e = parse_objective("--minimize", "p99", Sense::Minimize)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--minimize p99: unknown metric"), "{e}");
        assert!(parse_objective("--minimize", "a +", Sense::Minimize).is_err());
        assert!(parse_objective("--minimize", "", Sense::Minimize).is_err());
        assert!(parse_objective("--minimize", "x*y", Sense::Minimize).is_err());
    }

    #[test]
    fn constraints_parse_and_contradictions_are_caught() {
        let c = parse_constraint("acquire_wait_ms.p99<=50").unwrap();
        assert_eq!((c.op, c.bound), (Op::Le, 50.0));
        assert_eq!(c.expression, "acquire_wait_ms.p99 <= 50");
        let c = parse_constraint("health.score > 90").unwrap();
        assert_eq!(c.op, Op::Gt);
        for (bad, why) in [
            ("p99<=50", "unknown metric"),
            ("acquire_wait_ms.p99", "expected METRIC<=BOUND"),
            ("acquire_wait_ms.p99<=fast", "not a number"),
            ("acquire_wait_ms.p99<==5", "expected METRIC<=BOUND"),
        ] {
            let e = parse_constraint(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--constraint {bad}:")), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
        let p = |s: &str| parse_constraint(s).unwrap();
        let e = check_consistent(&[p("p_timeout<=0.001"), p("p_timeout>=0.01")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("contradictory constraints"), "{e}");
        assert!(
            e.contains("p_timeout <= 0.001") && e.contains("p_timeout >= 0.01"),
            "{e}"
        );
        let e = check_consistent(&[p("p_timeout>=2")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("can never be met") && e.contains("between 0 and 1"),
            "{e}"
        );
        let e = check_consistent(&[p("acquire_wait_ms.p99<0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("never below 0"), "{e}");
        check_consistent(&[p("p_timeout<=0.01"), p("p_timeout>=0.01")]).unwrap();
        assert!(check_consistent(&[p("p_timeout<0.01"), p("p_timeout>=0.01")]).is_err());
        check_consistent(&[p("acquire_wait_ms.p99<=50"), p("p_timeout<=0.001")]).unwrap();
    }

    #[test]
    fn violations_are_relative() {
        let c = parse_constraint("acquire_wait_ms.p99<=50").unwrap();
        assert_eq!(c.violation(40.0), 0.0);
        assert_eq!(c.violation(75.0), 0.5);
        let e = Estimate {
            mean: 45.0,
            ci95: Some(10.0),
            n: 5,
        };
        assert_eq!(c.judged(&e, Feasibility::Mean), 45.0);
        assert_eq!(c.judged(&e, Feasibility::Upper), 55.0);
        let g = parse_constraint("health.score>=90").unwrap();
        assert_eq!(g.judged(&e, Feasibility::Upper), 35.0);
    }

    #[test]
    fn policy_files_come_out_in_the_usual_order() {
        let spec = scenario::load_policy("seed-80-30", &[]).unwrap().spec;
        let text = policy_toml(&spec.effective);
        assert!(
            text.starts_with("name = \"seed-80-30\"\ndescription = "),
            "{text}"
        );
        let i = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} in {text}"));
        assert!(i("[size]") < i("[resize]") && i("[resize]") < i("[acquire_timeout]"));
        assert!(i("kind = \"threshold\"") < i("interval = \"30s\""));
        let back = PolicySpec::load(&Document::new("x.toml", text), "x", &[]).unwrap();
        assert_eq!(back.effective, spec.effective);
        let fixed = scenario::load_policy("fixed-10", &[]).unwrap().spec;
        let text = policy_toml(&fixed.effective);
        assert!(!text.contains("scale_up"), "{text}");
        let back = PolicySpec::load(&Document::new("x.toml", text), "x", &[]).unwrap();
        assert_eq!(back.effective, fixed.effective);
    }
}
