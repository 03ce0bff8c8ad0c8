//! `pooltune compare A B`: two `summary.json` files side by side, metric by
//! metric, with the difference and the relative error of B against A
//! (typically A = simulation, the prediction; B = live, the measurement).
//!
//! Runs are paired by policy name; when each side holds exactly one run
//! they are paired whatever their names. The relative error is
//! `(B - A) / |A|`; when A is 0 it is 0 if B is 0 too and undefined (null)
//! otherwise. For fractions (`p_wait`, `p_timeout`) the difference B - A (in
//! absolute terms, i.e. percentage points / 100) is usually the better
//! measure and is always reported next to it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::summary::{ClassSummary, RunSummary, Summary, SCHEMA};

/// Schema of the comparison's JSON form.
pub const COMPARE_SCHEMA: &str = "pooltune.compare/1";

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a pooltune summary: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: summary schema {found:?}, this pooltune reads {SCHEMA:?}", path.display())]
    Schema { path: PathBuf, found: String },
    #[error("no run to compare: A has policies [{a}], B has [{b}] and none is in both")]
    NoCommonRuns { a: String, b: String },
}

/// One side of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Side {
    pub path: String,
    pub scenario: String,
    pub trace_hash: String,
    pub seed: u64,
}

/// One metric of one pair of runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricRow {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    /// B - A.
    pub diff: f64,
    /// (B - A) / |A|; `None` when A is 0 and B is not.
    pub rel_error: Option<f64>,
}

/// One pair of runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunComparison {
    pub policy_a: String,
    pub policy_b: String,
    pub metrics: Vec<MetricRow>,
}

impl RunComparison {
    /// The row of `metric` (e.g. `"acquire_wait_ms.p50"`).
    pub fn get(&self, metric: &str) -> Option<&MetricRow> {
        self.metrics.iter().find(|m| m.metric == metric)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub schema: String,
    pub a: Side,
    pub b: Side,
    /// The two sides replayed the same trace (same name and hash).
    pub same_trace: bool,
    pub runs: Vec<RunComparison>,
    /// Policies present on one side only.
    pub unmatched: Vec<String>,
}

/// Reads a summary from a `summary.json` file or a directory holding one.
pub fn load_summary(path: &Path) -> Result<Summary, CompareError> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|source| CompareError::Read {
        path: file.clone(),
        source,
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CompareError::Parse {
            path: file.clone(),
            message: e.to_string(),
        })?;
    let schema = value
        .get("schema")
        .and_then(|s| s.as_str())
        .unwrap_or("")
        .to_string();
    if schema != SCHEMA {
        return Err(CompareError::Schema {
            path: file,
            found: schema,
        });
    }
    serde_json::from_value(value).map_err(|e| CompareError::Parse {
        path: file,
        message: e.to_string(),
    })
}

type Extract = fn(&RunSummary) -> f64;
/// A named metric's extractor.
type Metric = Box<dyn Fn(&RunSummary) -> f64>;

fn class_metrics(
    name: &'static str,
    pick: fn(&RunSummary) -> &ClassSummary,
) -> Vec<(String, Metric)> {
    let mut v: Vec<(String, Metric)> = Vec::new();
    let p = pick;
    v.push((
        format!("by_priority.{name}.requests.arrived"),
        Box::new(move |r| p(r).requests.arrived as f64),
    ));
    v.push((
        format!("by_priority.{name}.requests.timed_out"),
        Box::new(move |r| p(r).requests.timed_out as f64),
    ));
    v.push((
        format!("by_priority.{name}.p_wait"),
        Box::new(move |r| p(r).p_wait),
    ));
    v.push((
        format!("by_priority.{name}.p_timeout"),
        Box::new(move |r| p(r).p_timeout),
    ));
    v.push((
        format!("by_priority.{name}.acquire_wait_ms.mean"),
        Box::new(move |r| p(r).acquire_wait_ms.mean),
    ));
    v.push((
        format!("by_priority.{name}.acquire_wait_ms.p50"),
        Box::new(move |r| p(r).acquire_wait_ms.p50),
    ));
    v.push((
        format!("by_priority.{name}.acquire_wait_ms.p99"),
        Box::new(move |r| p(r).acquire_wait_ms.p99),
    ));
    v
}

/// The metrics compared, in order.
fn metrics() -> Vec<(String, Metric)> {
    let plain: &[(&str, Extract)] = &[
        ("throughput_per_s", |r| {
            if r.sim_duration_s > 0.0 {
                r.requests.completed as f64 / r.sim_duration_s
            } else {
                0.0
            }
        }),
        ("duration_s", |r| r.sim_duration_s),
        ("requests.arrived", |r| r.requests.arrived as f64),
        ("requests.completed", |r| r.requests.completed as f64),
        ("requests.timed_out", |r| r.requests.timed_out as f64),
        ("requests.failed", |r| r.requests.failed as f64),
        ("requests.rejected", |r| r.requests.rejected as f64),
        ("requests.in_flight_at_end", |r| {
            r.requests.in_flight_at_end as f64
        }),
        ("p_wait", |r| r.p_wait),
        ("p_timeout", |r| r.p_timeout),
        ("acquire_wait_ms.mean", |r| r.acquire_wait_ms.mean),
        ("acquire_wait_ms.p50", |r| r.acquire_wait_ms.p50),
        ("acquire_wait_ms.p90", |r| r.acquire_wait_ms.p90),
        ("acquire_wait_ms.p99", |r| r.acquire_wait_ms.p99),
        ("acquire_wait_ms.p999", |r| r.acquire_wait_ms.p999),
        ("acquire_wait_ms.max", |r| r.acquire_wait_ms.max),
        ("acquire_wait_served_mean_ms", |r| {
            r.acquire_wait_served_mean_ms
        }),
        ("query_ms.mean", |r| r.query_ms.mean),
        ("query_ms.p50", |r| r.query_ms.p50),
        ("query_ms.p99", |r| r.query_ms.p99),
        ("response_ms.mean", |r| r.response_ms.mean),
        ("response_ms.p50", |r| r.response_ms.p50),
        ("response_ms.p99", |r| r.response_ms.p99),
    ];
    let pool: &[(&str, Extract)] = &[
        ("pool.size_mean", |r| r.pool.size_mean),
        ("pool.size_min", |r| r.pool.size_min as f64),
        ("pool.size_max", |r| r.pool.size_max as f64),
        ("pool.open_mean", |r| r.pool.open_mean),
        ("pool.active_mean", |r| r.pool.active_mean),
        ("pool.waiting_mean", |r| r.pool.waiting_mean),
        ("pool.utilization_mean", |r| r.pool.utilization_mean),
        ("pool.connections_opened", |r| {
            r.pool.connections_opened as f64
        }),
        ("pool.connection_seconds", |r| r.pool.connection_seconds),
        ("pool.connect_time_s", |r| r.pool.connect_time_s),
        ("pool.resize_events", |r| r.pool.resize_events as f64),
        ("health.score", |r| r.health.score),
    ];
    let mut v: Vec<(String, Metric)> = plain
        .iter()
        .map(|(n, f)| (n.to_string(), Box::new(*f) as Metric))
        .collect();
    v.extend(class_metrics("high", |r| &r.by_priority.high));
    v.extend(class_metrics("normal", |r| &r.by_priority.normal));
    v.extend(class_metrics("low", |r| &r.by_priority.low));
    v.extend(
        pool.iter()
            .map(|(n, f)| (n.to_string(), Box::new(*f) as Metric)),
    );
    v
}

/// (B - A) / |A|, 0 when both are 0, `None` when only A is 0.
pub fn rel_error(a: f64, b: f64) -> Option<f64> {
    if a == 0.0 {
        (b == 0.0).then_some(0.0)
    } else {
        Some((b - a) / a.abs())
    }
}

/// Compares one pair of runs.
pub fn compare_runs(a: &RunSummary, b: &RunSummary) -> RunComparison {
    let metrics = metrics()
        .into_iter()
        .map(|(metric, f)| {
            let (va, vb) = (f(a), f(b));
            MetricRow {
                metric,
                a: va,
                b: vb,
                diff: vb - va,
                rel_error: rel_error(va, vb),
            }
        })
        .collect();
    RunComparison {
        policy_a: a.policy.name.clone(),
        policy_b: b.policy.name.clone(),
        metrics,
    }
}

/// Compares two summaries (`pa`, `pb`: where they came from, for the output).
pub fn compare(a: &Summary, pa: &str, b: &Summary, pb: &str) -> Result<Comparison, CompareError> {
    let mut runs = Vec::new();
    let mut unmatched = Vec::new();
    if a.runs.len() == 1 && b.runs.len() == 1 {
        runs.push(compare_runs(&a.runs[0], &b.runs[0]));
    } else {
        for ra in &a.runs {
            match b.runs.iter().find(|rb| rb.policy.name == ra.policy.name) {
                Some(rb) => runs.push(compare_runs(ra, rb)),
                None => unmatched.push(format!("{} (A only)", ra.policy.name)),
            }
        }
        for rb in &b.runs {
            if !a.runs.iter().any(|ra| ra.policy.name == rb.policy.name) {
                unmatched.push(format!("{} (B only)", rb.policy.name));
            }
        }
    }
    if runs.is_empty() {
        let names = |s: &Summary| {
            s.runs
                .iter()
                .map(|r| r.policy.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(CompareError::NoCommonRuns {
            a: names(a),
            b: names(b),
        });
    }
    let side = |s: &Summary, path: &str| Side {
        path: path.to_string(),
        scenario: s.scenario.clone(),
        trace_hash: s.trace.hash.clone(),
        seed: s.seed,
    };
    Ok(Comparison {
        schema: COMPARE_SCHEMA.to_string(),
        a: side(a, pa),
        b: side(b, pb),
        same_trace: a.trace.name == b.trace.name && a.trace.hash == b.trace.hash,
        runs,
        unmatched,
    })
}

fn num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.5}")
    }
}

fn rel(r: Option<f64>) -> String {
    match r {
        None => "n/a".to_string(),
        Some(x) => format!("{:+.1} %", x * 100.0),
    }
}

fn rows(c: &RunComparison) -> Vec<[String; 5]> {
    c.metrics
        .iter()
        .map(|m| {
            [
                m.metric.clone(),
                num(m.a),
                num(m.b),
                format!("{}{}", if m.diff > 0.0 { "+" } else { "" }, num(m.diff)),
                rel(m.rel_error),
            ]
        })
        .collect()
}

const HEAD: [&str; 5] = ["metric", "A", "B", "B - A", "rel. error"];

fn header(c: &Comparison) -> String {
    let mut s = format!(
        "A: {} (scenario {}, seed {})\nB: {} (scenario {}, seed {})\n",
        c.a.path, c.a.scenario, c.a.seed, c.b.path, c.b.scenario, c.b.seed
    );
    if !c.same_trace {
        s.push_str("note: A and B replayed different traces (name or hash differ)\n");
    }
    for u in &c.unmatched {
        s.push_str(&format!("unmatched: {u}\n"));
    }
    s
}

/// The comparison as aligned plain text, one table per pair of runs.
pub fn table(c: &Comparison) -> String {
    let mut out = header(c);
    for run in &c.runs {
        out.push_str(&format!("\npolicy {} vs {}\n", run.policy_a, run.policy_b));
        let body = rows(run);
        let widths: Vec<usize> = (0..5)
            .map(|i| {
                body.iter()
                    .map(|r| r[i].chars().count())
                    .chain([HEAD[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |r: [&str; 5]| {
            let mut s = format!("{:<w$}", r[0], w = widths[0]);
            for i in 1..5 {
                s.push_str(&format!("  {:>w$}", r[i], w = widths[i]));
            }
            s.push('\n');
            s
        };
        out.push_str(&line(HEAD));
        for r in &body {
            out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        }
    }
    out
}

/// The comparison as Markdown tables.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    for line in header(c).lines() {
        out.push_str(line);
        out.push_str("  \n");
    }
    for run in &c.runs {
        out.push_str(&format!(
            "\n**policy {} vs {}**\n\n| {} |\n| :--- | ---: | ---: | ---: | ---: |\n",
            run.policy_a,
            run.policy_b,
            HEAD.join(" | ")
        ));
        for r in rows(run) {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
    }
    out
}

/// The comparison as JSON (schema `pooltune.compare/1`), with a trailing newline.
pub fn json(c: &Comparison) -> String {
    let mut t = serde_json::to_string_pretty(c).expect("comparisons serialize");
    t.push('\n');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_errors_handle_zero() {
        assert_eq!(rel_error(0.0, 0.0), Some(0.0));
        assert_eq!(rel_error(0.0, 1.0), None);
        assert_eq!(rel_error(2.0, 3.0), Some(0.5));
        assert_eq!(rel_error(-2.0, -3.0), Some(-0.5));
        assert_eq!(rel(None), "n/a");
        assert_eq!(rel(Some(-0.1234)), "-12.3 %");
    }

    #[test]
    fn every_metric_name_is_unique() {
        let names: Vec<String> = metrics().into_iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }
}
