//! Metric names: dotted paths into a run's serialized
//! [`RunSummary`](crate::summary::RunSummary), e.g. `acquire_wait_ms.p99`,
//! `pool.connection_seconds`, `by_priority.low.p_timeout`. Any numeric field
//! of `summary.json`'s run object works; names are checked against a real
//! summary before anything runs, so a typo fails at once with suggestions.

use std::sync::OnceLock;

use serde_json::Value;

use super::ExperimentError;
use crate::core::metrics::NullSink;
use crate::sim::queueing::QueueingModel;
use crate::sim::RunOptions;
use crate::summary::{run_summary, PolicyInfo, RunSummary};

/// What sweeps and the tuner record when no `--metric` is given.
pub const DEFAULT_METRICS: &[&str] = &[
    "acquire_wait_ms.mean",
    "acquire_wait_ms.p50",
    "acquire_wait_ms.p99",
    "acquire_wait_ms.p999",
    "p_wait",
    "p_timeout",
    "by_priority.high.p_timeout",
    "by_priority.normal.p_timeout",
    "by_priority.low.p_timeout",
    "by_priority.high.acquire_wait_ms.p99",
    "by_priority.normal.acquire_wait_ms.p99",
    "by_priority.low.acquire_wait_ms.p99",
    "response_ms.p99",
    "pool.size_mean",
    "pool.size_max",
    "pool.utilization_mean",
    "pool.connection_seconds",
    "pool.connections_opened",
    "pool.resize_events",
    "health.score",
    "requests.arrived",
];

/// The columns of the terminal table when no `--metric` is given.
pub const HEADLINE_METRICS: &[&str] = &[
    "acquire_wait_ms.p99",
    "p_timeout",
    "pool.size_mean",
    "pool.connection_seconds",
    "health.score",
];

/// A run summary of a one-request simulation, serialized: the shape every
/// metric name is checked against.
fn template() -> &'static Value {
    static T: OnceLock<Value> = OnceLock::new();
    T.get_or_init(|| {
        let model = QueueingModel::mmc(1, 1.0, 0.001, 1);
        let opts = RunOptions {
            sample_interval: None,
            ..RunOptions::default()
        };
        let outcome = model
            .run(1, &opts, &mut NullSink)
            .expect("a one-request M/M/1 run finishes");
        let info = PolicyInfo {
            name: String::new(),
            hash: String::new(),
            source: String::new(),
            description: String::new(),
            config: Value::Null,
        };
        serde_json::to_value(run_summary(&outcome, info, "", "")).expect("summaries serialize")
    })
}

/// Every numeric metric name, in `summary.json` order.
pub fn all_metric_names() -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Number(_) => out.push(prefix.to_string()),
            Value::Object(m) => {
                for (k, child) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, child, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", template(), &mut out);
    out
}

/// Checks that `name` is a numeric field of a run summary. `flag` is the
/// command-line text the name came from, for the message.
pub fn validate(flag: &str, name: &str) -> Result<(), ExperimentError> {
    let err = |m: String| Err(ExperimentError::spec(flag, m));
    if name.is_empty() {
        return err("expected a metric name such as acquire_wait_ms.p99".into());
    }
    let mut v = template();
    let mut walked: Vec<&str> = Vec::new();
    for seg in name.split('.') {
        match v {
            Value::Object(m) => match m.get(seg) {
                Some(child) => {
                    walked.push(seg);
                    v = child;
                }
                None => {
                    let at = if walked.is_empty() {
                        "a run summary".to_string()
                    } else {
                        format!("`{}`", walked.join("."))
                    };
                    let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
                    return err(format!(
                        "unknown metric `{name}`: {at} has no field `{seg}` (it has: {}){}",
                        keys.join(", "),
                        suggest(name)
                    ));
                }
            },
            _ => {
                return err(format!(
                    "unknown metric `{name}`: `{}` is a number, it has no fields",
                    walked.join(".")
                ))
            }
        }
    }
    match v {
        Value::Number(_) => Ok(()),
        Value::Object(_) => {
            let inside: Vec<String> = all_metric_names()
                .into_iter()
                .filter(|n| n.starts_with(&format!("{name}.")))
                .collect();
            err(format!(
                "`{name}` is a group of metrics, not a number; pick one of: {}",
                inside.join(", ")
            ))
        }
        _ => err(format!(
            "`{name}` is not a number (metrics must be numeric fields of a run summary){}",
            suggest(name)
        )),
    }
}

/// "; did you mean ...?" for names that end like a real metric.
fn suggest(name: &str) -> String {
    let last = name.rsplit('.').next().unwrap_or(name);
    let all = all_metric_names();
    let mut hits: Vec<&String> = all
        .iter()
        .filter(|n| n.ends_with(&format!(".{name}")))
        .collect();
    if hits.is_empty() {
        hits = all
            .iter()
            .filter(|n| n.rsplit('.').next() == Some(last))
            .collect();
    }
    if hits.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = hits.iter().take(4).map(|s| s.as_str()).collect();
        format!("; did you mean {}?", shown.join(" or "))
    }
}

/// The value at a dotted path (`NaN` when it is absent or not a number).
pub fn lookup(v: &Value, name: &str) -> f64 {
    let mut cur = v;
    for seg in name.split('.') {
        match cur.get(seg) {
            Some(c) => cur = c,
            None => return f64::NAN,
        }
    }
    cur.as_f64().unwrap_or(f64::NAN)
}

/// The named metrics of one run, in the order given.
pub fn extract(run: &RunSummary, names: &[String]) -> Vec<f64> {
    let v = serde_json::to_value(run).expect("summaries serialize");
    names.iter().map(|n| lookup(&v, n)).collect()
}

/// Appends `extra` names not yet in `names`, keeping order.
pub fn union(names: &mut Vec<String>, extra: impl IntoIterator<Item = String>) {
    for e in extra {
        if !names.contains(&e) {
            names.push(e);
        }
    }
}

/// The natural range of a metric: probabilities and fractions in [0, 1],
/// the health score in [0, 100], everything else (counts, times, sizes) >= 0.
pub fn domain(name: &str) -> (f64, f64) {
    let last = name.rsplit('.').next().unwrap_or(name);
    match last {
        "p_wait" | "p_timeout" | "utilization_mean" | "failure_fraction" | "wait_pressure" => {
            (0.0, 1.0)
        }
        "score" if name.starts_with("health") => (0.0, 100.0),
        _ => (0.0, f64::INFINITY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_metrics() {
        for m in DEFAULT_METRICS.iter().chain(HEADLINE_METRICS) {
            validate("--metric", m).unwrap();
        }
        let all = all_metric_names();
        assert!(all.contains(&"pool.connection_seconds".to_string()));
        assert!(all.contains(&"by_priority.low.acquire_wait_ms.p999".to_string()));
        assert!(!all.iter().any(|n| n.starts_with("policy.")));
    }

    #[test]
    fn bad_names_say_what_exists() {
        let e = validate("--metric p99", "p99").unwrap_err().to_string();
        assert!(e.starts_with("--metric p99: unknown metric `p99`"), "{e}");
        assert!(e.contains("did you mean acquire_wait_ms.p99"), "{e}");
        let e = validate("--metric", "acquire_wait_ms.p98")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`acquire_wait_ms` has no field `p98`"), "{e}");
        assert!(e.contains("p99"), "{e}");
        let e = validate("--metric", "pool").unwrap_err().to_string();
        assert!(
            e.contains("group of metrics") && e.contains("pool.size_mean"),
            "{e}"
        );
        let e = validate("--metric", "policy.name").unwrap_err().to_string();
        assert!(e.contains("not a number"), "{e}");
    }

    #[test]
    fn lookup_follows_paths() {
        let v: Value = serde_json::json!({"a": {"b": 2.5}, "c": "x"});
        assert_eq!(lookup(&v, "a.b"), 2.5);
        assert!(lookup(&v, "a.z").is_nan());
        assert!(lookup(&v, "c").is_nan());
    }
}
