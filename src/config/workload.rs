//! Workload files (`traces/*.toml`): a synthetic request stream, the
//! simulated database it runs against, and the run's bounds.
//!
//! ```toml
//! name = "default"
//! duration = "10m"           # arrivals stop after this (and/or `requests`)
//! requests = 1000000         # optional cap on the number of requests
//! [arrivals]
//! kind = "poisson"
//! rate_per_s = 300.0
//! [service]                  # constant | exponential | lognormal | uniform
//! kind = "lognormal"
//! median = "8ms"
//! p99 = "40ms"               # or sigma = 0.7
//! [priority_mix]             # default: all normal
//! high = 0.1
//! normal = 0.7
//! low = 0.2
//! write_fraction = 0.0       # default 0
//! [database]
//! connect_latency = { kind = "lognormal", median = "1.5ms", p99 = "5ms" }  # default constant 0s
//! max_connections = 100      # default 100 (PostgreSQL's default)
//! usl_sigma = 0.0            # default 0
//! usl_kappa = 0.0            # default 0
//! [run]
//! max_events = 10000000000   # default 1e10
//! max_sim_time = "240h"      # default "720h" (30 days; the largest unit is h)
//! sample_interval = "1s"     # default "1s"; "none" for no time series
//! drain = true               # default true
//! ```

use serde::{Deserialize, Serialize};

use super::duration::{Dur, DurOrNone};
use super::{content_hash, deserialize, Document, Locator, Override};
use crate::dist::DurationDist;
use crate::error::ConfigError;
use crate::sim::{DatabaseModel, RunOptions};
use crate::time::SimDuration;
use crate::trace::synthetic::SyntheticSpec;

/// Top-level keys of a workload file; a `--set` key starting with one of
/// these applies to the workload.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "duration",
    "requests",
    "arrivals",
    "service",
    "priority_mix",
    "write_fraction",
    "database",
    "run",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadFile {
    /// Shown in reports and used in the output directory name. Default: file name.
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Arrivals stop after this simulated time. At least one of `duration`
    /// and `requests` is required.
    pub duration: Option<Dur>,
    /// Arrivals stop after this many requests.
    pub requests: Option<u64>,
    pub arrivals: ArrivalsRaw,
    pub service: DistRaw,
    #[serde(default)]
    pub priority_mix: PriorityMixRaw,
    /// Fraction of requests that are writes. Default 0.
    #[serde(default)]
    pub write_fraction: f64,
    #[serde(default)]
    pub database: DatabaseRaw,
    #[serde(default)]
    pub run: RunRaw,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalKind {
    Poisson,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalsRaw {
    pub kind: ArrivalKind,
    /// Mean arrival rate, requests per second (> 0).
    pub rate_per_s: f64,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DistKind {
    Constant,
    Exponential,
    Lognormal,
    Uniform,
}

/// A duration distribution. Which keys apply depends on `kind`:
/// constant: `value`; exponential: `mean`; lognormal: `median` and one of
/// `p99` or `sigma` (of ln X); uniform: `min` and `max`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DistRaw {
    pub kind: DistKind,
    pub value: Option<Dur>,
    pub mean: Option<Dur>,
    pub median: Option<Dur>,
    pub p99: Option<Dur>,
    pub sigma: Option<f64>,
    pub min: Option<Dur>,
    pub max: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityMixRaw {
    /// Fractions of requests per priority; must sum to 1. Default 0 / 1 / 0.
    #[serde(default)]
    pub high: f64,
    #[serde(default = "one")]
    pub normal: f64,
    #[serde(default)]
    pub low: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for PriorityMixRaw {
    fn default() -> Self {
        PriorityMixRaw {
            high: 0.0,
            normal: 1.0,
            low: 0.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseRaw {
    /// Time to open a connection. Default: constant 0s.
    pub connect_latency: Option<DistRaw>,
    /// Server connection limit; connects beyond it are refused. Default 100.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// USL contention coefficient sigma (>= 0). Default 0.
    #[serde(default)]
    pub usl_sigma: f64,
    /// USL coherency coefficient kappa (>= 0). Default 0.
    #[serde(default)]
    pub usl_kappa: f64,
}

fn default_max_connections() -> u32 {
    100
}

impl Default for DatabaseRaw {
    fn default() -> Self {
        DatabaseRaw {
            connect_latency: None,
            max_connections: default_max_connections(),
            usl_sigma: 0.0,
            usl_kappa: 0.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunRaw {
    /// Stop with an error after this many events. Default 10_000_000_000.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// Stop with an error when simulated time passes this. Default "720h".
    #[serde(default = "default_max_sim_time")]
    pub max_sim_time: Dur,
    /// Time-series interval. Default "1s"; "none" disables the time series.
    #[serde(default = "default_sample_interval")]
    pub sample_interval: DurOrNone,
    /// Finish requests still in flight after the last arrival. Default true.
    #[serde(default = "default_true")]
    pub drain: bool,
}

fn default_max_events() -> u64 {
    10_000_000_000
}
fn default_max_sim_time() -> Dur {
    Dur(SimDuration::from_secs(720 * 3600))
}
fn default_sample_interval() -> DurOrNone {
    DurOrNone(Some(SimDuration::from_secs(1)))
}
fn default_true() -> bool {
    true
}

impl Default for RunRaw {
    fn default() -> Self {
        RunRaw {
            max_events: default_max_events(),
            max_sim_time: default_max_sim_time(),
            sample_interval: default_sample_interval(),
            drain: true,
        }
    }
}

/// A validated workload: what to generate, against which database, within
/// which bounds.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub name: String,
    pub description: String,
    pub synthetic: SyntheticSpec,
    pub database: DatabaseModel,
    pub run: RunOptions,
    pub effective: serde_json::Value,
    pub hash: String,
}

impl WorkloadSpec {
    pub fn load(
        doc: &Document,
        default_name: &str,
        overrides: &[Override],
    ) -> Result<Self, ConfigError> {
        let (raw, _table): (WorkloadFile, _) = deserialize(doc, overrides)?;
        let loc = Locator::new(doc, overrides);
        validate(raw, default_name, &loc)
    }
}

fn fraction(loc: &Locator, key: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(loc.invalid(key, format!("expected a fraction in [0, 1], got {v}")))
    }
}

fn validate(
    mut raw: WorkloadFile,
    default_name: &str,
    loc: &Locator,
) -> Result<WorkloadSpec, ConfigError> {
    let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
    if name.trim().is_empty() {
        return Err(loc.invalid("name", "expected a non-empty name"));
    }
    if raw.duration.is_none() && raw.requests.is_none() {
        return Err(loc.invalid(
            "duration",
            "expected `duration` (e.g. \"10m\") or `requests` (a count), or both: the trace must end",
        ));
    }
    if let Some(d) = raw.duration {
        if d.0 .0 == 0 {
            return Err(loc.invalid("duration", "expected a positive duration, got 0s"));
        }
    }
    if raw.requests == Some(0) {
        return Err(loc.invalid("requests", "expected at least 1 request, got 0"));
    }
    let rate = raw.arrivals.rate_per_s;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(loc.invalid(
            "arrivals.rate_per_s",
            format!("expected a positive rate in requests per second, got {rate}"),
        ));
    }
    let service = dist(loc, "service", &raw.service)?;
    let m = &raw.priority_mix;
    let mix = [
        fraction(loc, "priority_mix.high", m.high)?,
        fraction(loc, "priority_mix.normal", m.normal)?,
        fraction(loc, "priority_mix.low", m.low)?,
    ];
    let sum: f64 = mix.iter().sum();
    if (sum - 1.0).abs() > 1e-9 {
        return Err(loc.invalid_related(
            "priority_mix",
            &[
                "priority_mix.high",
                "priority_mix.normal",
                "priority_mix.low",
            ],
            format!(
                "expected high + normal + low = 1, got {} + {} + {} = {sum}",
                mix[0], mix[1], mix[2]
            ),
        ));
    }
    let write_fraction = fraction(loc, "write_fraction", raw.write_fraction)?;
    let db = &raw.database;
    let connect_latency = match &db.connect_latency {
        Some(d) => dist(loc, "database.connect_latency", d)?,
        None => DurationDist::Constant { value_ns: 0 },
    };
    if db.max_connections == 0 {
        return Err(loc.invalid("database.max_connections", "expected at least 1, got 0"));
    }
    for (key, v) in [
        ("database.usl_sigma", db.usl_sigma),
        ("database.usl_kappa", db.usl_kappa),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(loc.invalid(key, format!("expected a finite coefficient >= 0, got {v}")));
        }
    }
    let r = &raw.run;
    if r.max_events == 0 {
        return Err(loc.invalid("run.max_events", "expected at least 1, got 0"));
    }
    if r.max_sim_time.0 .0 == 0 {
        return Err(loc.invalid("run.max_sim_time", "expected a positive duration, got 0s"));
    }
    if r.sample_interval.0 == Some(SimDuration::ZERO) {
        return Err(loc.invalid(
            "run.sample_interval",
            "expected a positive duration or \"none\", got 0s",
        ));
    }
    let run = RunOptions {
        max_events: r.max_events,
        max_sim_time: r.max_sim_time.0,
        sample_interval: r.sample_interval.0,
        horizon: raw.duration.map(|d| d.0),
        drain: r.drain,
        check_invariants: false,
    };
    raw.name = Some(name.clone());
    let effective = serde_json::to_value(&raw).expect("workload serializes");
    let hash = content_hash(&effective);
    Ok(WorkloadSpec {
        name,
        description: raw.description.clone(),
        synthetic: SyntheticSpec {
            rate_per_s: rate,
            service,
            priority_mix: mix,
            write_fraction,
            duration: raw.duration.map(|d| d.0),
            max_requests: raw.requests,
        },
        database: DatabaseModel {
            connect_latency,
            max_connections: db.max_connections,
            usl_sigma: db.usl_sigma,
            usl_kappa: db.usl_kappa,
        },
        run,
        effective,
        hash,
    })
}

/// Validates a distribution table at `key`.
fn dist(loc: &Locator, key: &str, d: &DistRaw) -> Result<DurationDist, ConfigError> {
    let k = |sub: &str| format!("{key}.{sub}");
    let allowed: &[&str] = match d.kind {
        DistKind::Constant => &["value"],
        DistKind::Exponential => &["mean"],
        DistKind::Lognormal => &["median", "p99", "sigma"],
        DistKind::Uniform => &["min", "max"],
    };
    let kind_name = serde_json::to_value(d.kind).expect("kind serializes");
    let kind_name = kind_name.as_str().unwrap_or("?");
    let present = [
        ("value", d.value.is_some()),
        ("mean", d.mean.is_some()),
        ("median", d.median.is_some()),
        ("p99", d.p99.is_some()),
        ("sigma", d.sigma.is_some()),
        ("min", d.min.is_some()),
        ("max", d.max.is_some()),
    ];
    for (name, set) in present {
        if set && !allowed.contains(&name) {
            return Err(loc.invalid_related(
                &k(name),
                &[&k("kind")],
                format!(
                    "does not apply to kind = \"{kind_name}\" (it takes: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let need = |v: Option<Dur>, name: &str| {
        v.map(|d| d.0).ok_or_else(|| {
            loc.invalid(
                &k(name),
                format!("kind = \"{kind_name}\" needs `{name}` (a duration such as \"10ms\")"),
            )
        })
    };
    let positive = |v: SimDuration, name: &str| {
        if v.0 == 0 {
            Err(loc.invalid(&k(name), "expected a positive duration, got 0s"))
        } else {
            Ok(v)
        }
    };
    Ok(match d.kind {
        DistKind::Constant => DurationDist::Constant {
            value_ns: need(d.value, "value")?.0,
        },
        DistKind::Exponential => DurationDist::Exponential {
            mean_ns: positive(need(d.mean, "mean")?, "mean")?.0 as f64,
        },
        DistKind::Lognormal => {
            let median = positive(need(d.median, "median")?, "median")?.0 as f64;
            match (d.p99, d.sigma) {
                (Some(p99), None) => {
                    let p99 = p99.0 .0 as f64;
                    if p99 <= median {
                        return Err(loc.invalid_related(
                            &k("p99"),
                            &[&k("median")],
                            format!(
                                "expected p99 above the median ({}), got {}",
                                SimDuration(median as u64),
                                SimDuration(p99 as u64)
                            ),
                        ));
                    }
                    DurationDist::lognormal_from_median_p99(median, p99)
                }
                (None, Some(sigma)) => {
                    if !(sigma.is_finite() && sigma > 0.0 && sigma <= 10.0) {
                        return Err(loc.invalid(
                            &k("sigma"),
                            format!("expected a standard deviation of ln(x) in (0, 10], got {sigma}"),
                        ));
                    }
                    DurationDist::Lognormal {
                        mu: median.ln(),
                        sigma,
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(loc.invalid_related(&k("sigma"),&[&k("p99")], "give either p99 or sigma, not both"))
                }
                (None, None) => {
                    return Err(loc.invalid(
                        &k("p99"),
                        "kind = \"lognormal\" needs `p99` (a duration) or `sigma` (of ln x) besides `median`",
                    ))
                }
            }
        }
        DistKind::Uniform => {
            let min = need(d.min, "min")?;
            let max = need(d.max, "max")?;
            if min > max {
                return Err(loc.invalid_related(
                    &k("min"),
                    &[&k("max")],
                    format!("expected min <= max, got min {min} > max {max}"),
                ));
            }
            DurationDist::Uniform {
                min_ns: min.0,
                max_ns: max.0,
            }
        }
    })
}

/// Workloads shipped in `traces/`, compiled into the binary.
pub const SHIPPED: &[(&str, &str)] = &[
    ("default", include_str!("../../traces/default.toml")),
    ("mmc-c25-a20", include_str!("../../traces/mmc-c25-a20.toml")),
    (
        "mmc-c10-rho09-timeout",
        include_str!("../../traces/mmc-c10-rho09-timeout.toml"),
    ),
    (
        "mmc-c10-priorities",
        include_str!("../../traces/mmc-c10-priorities.toml"),
    ),
];
