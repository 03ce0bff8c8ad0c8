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
//! connect = "loopback_tcp"   # a connect-latency preset (below), or:
//! connect_latency = { kind = "lognormal", median = "1.5ms", p99 = "5ms" }  # default constant 0s
//! query_overhead = "0.2ms"   # round trip added to each query, and a check's duration; default "0s"
//! refusal_latency = "0.2ms"  # what a refused connect costs; default the preset's round trip, else "1ms"
//! max_connections = 100      # default 100 (PostgreSQL's default)
//! usl_sigma = 0.0            # default 0
//! usl_kappa = 0.0            # default 0
//! [app]
//! instances = 8              # application instances, each its own pool; default 1
//! balance = "round_robin"    # or "random": how requests reach them; default "round_robin"
//! [[faults]]                 # any number; see `sim::fault`
//! kind = "restart"           # restart | drop_connections | latency_spike | slow_connects | connect_failures
//! at = "2m"                  # once at this time, or `rate_per_hour = 2.0` (Poisson, seeded)
//! downtime = "10s"           # restart: connects refused for this long
//! # drop_connections: count = 5, or fraction = 0.5
//! # latency_spike, slow_connects: factor = 5.0, duration = "30s"
//! # connect_failures: probability = 0.5, duration = "30s"
//! [run]
//! max_events = 10000000000   # default 1e10
//! max_sim_time = "240h"      # default "720h" (30 days; the largest unit is h)
//! sample_interval = "1s"     # default "1s"; "none" for no time series
//! drain = true               # default true
//! recovery_wait = "100ms"    # a fault's recovery ends at a checkout that waited at most this; default "100ms"
//! ```
//!
//! Connect presets (`../shared/validation/README.md` section 4: "setup
//! ~ 7 round trips + server CPU (0.3-1 ms fork/auth)"), each a lognormal
//! connect latency and the round trip a refusal costs:
//!
//! | preset | connect median / p99 | round trip | source |
//! | --- | --- | --- | --- |
//! | `local_socket` | 0.7 / 1.5 ms | 0.13 ms | Unix socket ~0.5-1 ms; SELECT 1 0.126 ms (Cybertec 2016); ~0.3 ms postmaster CPU per connect (Wartak 2026) |
//! | `loopback_tcp` | 1.5 / 3 ms | 0.21 ms | TCP loopback ~1-2 ms; SELECT 1 0.211 ms (Cybertec 2016) |
//! | `tls_in_region` | 5 / 12 ms | 0.6 ms | 8 round trips with TLS (Neon; aflukasz 2025), RTT 0.3-1 ms: ~3-10 ms |
//! | `cross_region` | 350 / 700 ms | 50 ms | RTT 30-80 ms: ~200-600 ms |

use serde::{Deserialize, Serialize};

use std::path::{Path, PathBuf};

use super::duration::{Dur, DurOrNone};
use super::{content_hash, deserialize, Document, Locator, Override};
use crate::dist::DurationDist;
use crate::error::{ConfigError, Origin};
use crate::sim::{
    Balance, DatabaseModel, DropAmount, FaultKind, FaultSpec, FaultTiming, RunOptions, Wire, World,
};
use crate::time::{SimDuration, NANOS_PER_S};
use crate::trace::error::TraceError;
use crate::trace::generate::{ArrivalProcess, GeneratorSpec, RateProfile, Spike};
use crate::trace::import::{Format, ImportOptions, PgbenchArrival};
use crate::trace::record::parse_priority;
use crate::trace::replay::{
    prepare, prepare_merged, service_sample, MergeInput, MergedTrace, PrepareOptions, PreparedTrace,
};
use crate::trace::rules::Rules;
use crate::trace::service::ServiceDist;
use crate::trace::synthetic::SyntheticSpec;
use crate::trace::transform::TransformSpec;

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
    "app",
    "faults",
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
    /// Required, except for a recorded trace (`arrivals.kind = "trace"`),
    /// where it replaces the recorded service times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRaw>,
    #[serde(default)]
    pub priority_mix: PriorityMixRaw,
    /// Fraction of requests that are writes. Default 0.
    #[serde(default)]
    pub write_fraction: f64,
    #[serde(default)]
    pub database: DatabaseRaw,
    /// Application instances. Omitted from the effective config (and its
    /// hash) when at its default.
    #[serde(default, skip_serializing_if = "AppRaw::is_default")]
    pub app: AppRaw,
    /// Faults injected during the run. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultRaw>,
    #[serde(default)]
    pub run: RunRaw,
}

/// A connect-latency preset (see the module documentation).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ConnectPreset {
    LocalSocket,
    LoopbackTcp,
    TlsInRegion,
    CrossRegion,
}

impl ConnectPreset {
    /// (connect median, connect p99, round trip), in microseconds.
    fn values_us(self) -> (f64, f64, u64) {
        match self {
            ConnectPreset::LocalSocket => (700.0, 1_500.0, 130),
            ConnectPreset::LoopbackTcp => (1_500.0, 3_000.0, 210),
            ConnectPreset::TlsInRegion => (5_000.0, 12_000.0, 600),
            ConnectPreset::CrossRegion => (350_000.0, 700_000.0, 50_000),
        }
    }

    /// The preset's connect latency.
    pub fn connect_latency(self) -> DurationDist {
        let (median, p99, _) = self.values_us();
        DurationDist::lognormal_from_median_p99(median * 1e3, p99 * 1e3)
    }

    /// The preset's round trip.
    pub fn round_trip(self) -> SimDuration {
        SimDuration::from_nanos(self.values_us().2 * 1_000)
    }
}

/// `[app]`: the application instances.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppRaw {
    /// Application instances, each running its own pool and policy against
    /// the one database. Default 1.
    #[serde(default = "one_u32")]
    pub instances: u32,
    /// How requests are spread over instances. Default "round_robin".
    #[serde(default)]
    pub balance: Balance,
}

fn one_u32() -> u32 {
    1
}

impl Default for AppRaw {
    fn default() -> Self {
        AppRaw {
            instances: 1,
            balance: Balance::RoundRobin,
        }
    }
}

impl AppRaw {
    fn is_default(&self) -> bool {
        *self == AppRaw::default()
    }
}

/// The fault kinds of `[[faults]]`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKindRaw {
    Restart,
    DropConnections,
    LatencySpike,
    SlowConnects,
    ConnectFailures,
}

impl FaultKindRaw {
    fn name(self) -> &'static str {
        match self {
            FaultKindRaw::Restart => "restart",
            FaultKindRaw::DropConnections => "drop_connections",
            FaultKindRaw::LatencySpike => "latency_spike",
            FaultKindRaw::SlowConnects => "slow_connects",
            FaultKindRaw::ConnectFailures => "connect_failures",
        }
    }

    /// The kind-specific keys each kind takes (besides kind, at, rate_per_hour).
    fn keys(self) -> &'static [&'static str] {
        match self {
            FaultKindRaw::Restart => &["downtime"],
            FaultKindRaw::DropConnections => &["count", "fraction"],
            FaultKindRaw::LatencySpike | FaultKindRaw::SlowConnects => &["factor", "duration"],
            FaultKindRaw::ConnectFailures => &["probability", "duration"],
        }
    }
}

/// One `[[faults]]` entry. Exactly one of `at` and `rate_per_hour`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRaw {
    pub kind: FaultKindRaw,
    /// Happens once at this simulated time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Dur>,
    /// Happens at random, this many times per simulated hour on average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_hour: Option<f64>,
    /// restart: how long connects are refused. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime: Option<Dur>,
    /// drop_connections: how many backends break (or `fraction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// drop_connections: which fraction of the backends breaks (or `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// latency_spike, slow_connects: the multiplier (> 0). Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// connect_failures: probability that a connect fails. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// latency_spike, slow_connects, connect_failures: how long. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Dur>,
}

impl FaultRaw {
    fn present(&self) -> [(&'static str, bool); 6] {
        [
            ("downtime", self.downtime.is_some()),
            ("count", self.count.is_some()),
            ("fraction", self.fraction.is_some()),
            ("factor", self.factor.is_some()),
            ("probability", self.probability.is_some()),
            ("duration", self.duration.is_some()),
        ]
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalKind {
    /// Stationary Poisson: `rate_per_s`.
    Poisson,
    /// Non-homogeneous Poisson, rate linear between `points`.
    Piecewise,
    /// Non-homogeneous Poisson, rate constant between `steps`.
    Steps,
    /// Non-homogeneous Poisson, a sinusoid: `rate_per_s` (mean),
    /// `amplitude`, `period`, `peak_at`.
    Diurnal,
    /// On/off Markov-modulated Poisson: `rate_on`, `rate_off`, `mean_on`,
    /// `mean_off`.
    Mmpp,
    /// A base `rate_per_s` with `spikes`.
    FlashCrowd,
    /// `clients` with `think` time between a request's end and the next.
    ClosedLoop,
    /// A recorded trace: `path` (canonical, or any importable log), or
    /// `inputs` (several, merged by arrival; see [`InputRaw`]).
    Trace,
}

impl ArrivalKind {
    fn name(self) -> &'static str {
        match self {
            ArrivalKind::Poisson => "poisson",
            ArrivalKind::Piecewise => "piecewise",
            ArrivalKind::Steps => "steps",
            ArrivalKind::Diurnal => "diurnal",
            ArrivalKind::Mmpp => "mmpp",
            ArrivalKind::FlashCrowd => "flash_crowd",
            ArrivalKind::ClosedLoop => "closed_loop",
            ArrivalKind::Trace => "trace",
        }
    }

    /// The keys each kind takes (besides `kind`).
    fn keys(self) -> &'static [&'static str] {
        match self {
            ArrivalKind::Poisson => &["rate_per_s"],
            ArrivalKind::Piecewise => &["points", "period"],
            ArrivalKind::Steps => &["steps", "period"],
            ArrivalKind::Diurnal => &["rate_per_s", "amplitude", "period", "peak_at"],
            ArrivalKind::Mmpp => &["rate_on", "rate_off", "mean_on", "mean_off"],
            ArrivalKind::FlashCrowd => &["rate_per_s", "spikes"],
            ArrivalKind::ClosedLoop => &["clients", "think"],
            ArrivalKind::Trace => &[
                "path",
                "format",
                "prefix",
                "skip_bad",
                "rules",
                "start",
                "end",
                "speed",
                "load",
                "time_field",
                "time_unit",
                "year",
                "pgbench_arrival",
                "inputs",
            ],
        }
    }
}

/// The arrival process. Which keys apply depends on `kind` (see
/// [`ArrivalKind`]); keys of another kind are an error.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalsRaw {
    pub kind: ArrivalKind,
    /// Mean arrival rate, requests per second (> 0): poisson, diurnal
    /// (the mean), flash_crowd (the base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// piecewise: `[["0s", 100.0], ["1h", 400.0], ...]`, (time, rate per s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<(Dur, f64)>>,
    /// steps: `[["0s", 100.0], ["10m", 500.0], ...]`, (from, rate per s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<(Dur, f64)>>,
    /// piecewise, steps: repeat the profile every `period`; diurnal: the
    /// sinusoid's period (default "24h").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Dur>,
    /// diurnal: relative amplitude in [0, 1] (rate between mean*(1-a) and mean*(1+a)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amplitude: Option<f64>,
    /// diurnal: when the rate peaks (default "14h").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_at: Option<Dur>,
    /// mmpp: rates in the on and off states (off default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_on: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_off: Option<f64>,
    /// mmpp: mean sojourn in each state (exponential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_on: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_off: Option<Dur>,
    /// flash_crowd: the spikes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spikes: Option<Vec<SpikeRaw>>,
    /// closed_loop: number of clients and their think time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<ServiceRaw>,
    /// trace: the file (relative to this workload file), its format
    /// (default: detected), log_line_prefix (stderr, syslog), whether to
    /// skip malformed lines, a rules file (priorities, kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_bad: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    /// trace: replay only [start, end) of the trace (start becomes 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Dur>,
    /// trace: time compression (2.0 = arrivals twice as fast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// trace: load scaling by thinning (< 1) or duplicating (> 1) requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// trace, arrivals-only formats: the time field and the unit of numeric times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unit: Option<String>,
    /// trace, syslog: the year of the stamps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i64>,
    /// trace, pgbench -R: "scheduled" (default) or "sent".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbench_arrival: Option<String>,
    /// trace: several recorded traces merged by arrival, instead of `path`
    /// (see [`InputRaw`]). `skip_bad`, `start`, `end`, `speed` and `load`
    /// then apply to the merged trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<InputRaw>>,
}

/// One `[[arrivals.inputs]]` entry: a recorded trace to merge with the
/// others. Each input is on its own time axis from its own start (its time
/// 0 is the merged trace's time 0) unless `start_at` moves it; at equal
/// arrival times the earlier input comes first.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputRaw {
    /// The file (relative to the workload file): canonical, or any log
    /// `pooltune trace import` reads. Required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// As the single-trace keys of the same names, for this input: its
    /// format (default: detected), log_line_prefix, rules file (priorities,
    /// kinds), time field and unit (arrivals-only formats), syslog year,
    /// pgbench -R arrival ("scheduled" or "sent").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbench_arrival: Option<String>,
    /// Where this input's time 0 lands on the merged time axis (aligns
    /// traces that started at different times). Default "0s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Dur>,
    /// Load scaling of this input alone: thin (< 1) or duplicate (> 1) its
    /// requests, in (0, 1000]. Drawn from a fixed seed (every run replays
    /// the same merged trace; the global `arrivals.load` draws from the run
    /// seed). Default 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<f64>,
    /// Every request of this input gets this priority ("high", "normal" or
    /// "low"), over its rules. Default: the trace's own (from `rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
}

/// The keys of a single trace that an input takes instead when `inputs` is given.
const PER_INPUT_KEYS: &[&str] = &[
    "format",
    "prefix",
    "rules",
    "time_field",
    "time_unit",
    "year",
    "pgbench_arrival",
];

impl ArrivalsRaw {
    fn present(&self) -> [(&'static str, bool); 27] {
        [
            ("rate_per_s", self.rate_per_s.is_some()),
            ("points", self.points.is_some()),
            ("steps", self.steps.is_some()),
            ("period", self.period.is_some()),
            ("amplitude", self.amplitude.is_some()),
            ("peak_at", self.peak_at.is_some()),
            ("rate_on", self.rate_on.is_some()),
            ("rate_off", self.rate_off.is_some()),
            ("mean_on", self.mean_on.is_some()),
            ("mean_off", self.mean_off.is_some()),
            ("spikes", self.spikes.is_some()),
            ("clients", self.clients.is_some()),
            ("think", self.think.is_some()),
            ("path", self.path.is_some()),
            ("format", self.format.is_some()),
            ("prefix", self.prefix.is_some()),
            ("skip_bad", self.skip_bad.is_some()),
            ("rules", self.rules.is_some()),
            ("start", self.start.is_some()),
            ("end", self.end.is_some()),
            ("speed", self.speed.is_some()),
            ("load", self.load.is_some()),
            ("time_field", self.time_field.is_some()),
            ("time_unit", self.time_unit.is_some()),
            ("year", self.year.is_some()),
            ("pgbench_arrival", self.pgbench_arrival.is_some()),
            ("inputs", self.inputs.is_some()),
        ]
    }
}

/// One flash-crowd spike.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeRaw {
    /// When the rate starts to climb.
    pub at: Dur,
    /// The rate at the top (requests per second).
    pub peak_per_s: f64,
    /// Linear climb; default "0s".
    #[serde(default = "zero_dur")]
    pub rise: Dur,
    /// Time at the peak.
    pub hold: Dur,
    /// Linear fall back to the base; default "0s".
    #[serde(default = "zero_dur")]
    pub decay: Dur,
}

fn zero_dur() -> Dur {
    Dur(SimDuration::ZERO)
}

/// Kinds of service (and think-time) distributions: the [`DistKind`]s
/// plus Pareto and empirical.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Constant,
    Exponential,
    Lognormal,
    Uniform,
    /// Pareto type I: `min` (the scale) and `alpha` (the shape), optional `max` (a cap).
    Pareto,
    /// From data: `path` (a trace's service times, up to `sample` of them),
    /// `values` (a list of durations) or `quantiles` (`[[0.0, "1ms"], [0.5,
    /// "4ms"], [1.0, "90ms"]]`, linear in between).
    Empirical,
}

/// A service-time distribution: the keys of [`DistRaw`], plus `alpha`
/// (pareto) and `path`, `sample`, `values`, `quantiles` (empirical).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRaw {
    pub kind: ServiceKind,
    pub value: Option<Dur>,
    pub mean: Option<Dur>,
    pub median: Option<Dur>,
    pub p99: Option<Dur>,
    pub sigma: Option<f64>,
    pub min: Option<Dur>,
    pub max: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Dur>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<Vec<(f64, Dur)>>,
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
    /// A connect-latency preset: local_socket, loopback_tcp, tls_in_region,
    /// cross_region (exclusive with `connect_latency`). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectPreset>,
    /// Time to open a connection. Default: constant 0s.
    pub connect_latency: Option<DistRaw>,
    /// Round trip added to each query's hold time, and the time a check
    /// takes. Default "0s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_overhead: Option<Dur>,
    /// What a refused connect (max_connections, server down) costs.
    /// Default: the preset's round trip, else "1ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_latency: Option<Dur>,
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
            connect: None,
            connect_latency: None,
            query_overhead: None,
            refusal_latency: None,
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
    /// A fault's recovery ends at the first checkout (in every instance)
    /// that waited at most this. Default "100ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_wait: Option<Dur>,
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
            recovery_wait: None,
        }
    }
}

/// Where a workload's requests come from.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// Stationary Poisson with a basic service distribution: exactly
    /// [`WorkloadSpec::synthetic`] (the generator the validation suite uses).
    Poisson,
    /// Any other generated workload.
    Generated(Box<GeneratorSpec>),
    /// A recorded trace.
    Trace(Box<TraceWorkload>),
}

/// A recorded trace to replay, and what to do to it on the way.
#[derive(Debug, Clone)]
pub struct TraceWorkload {
    pub trace: PreparedTrace,
    pub transform: TransformSpec,
}

/// A validated workload: what to generate, against which database, within
/// which bounds.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub name: String,
    pub description: String,
    /// For `arrivals.kind = "poisson"` with a basic service distribution:
    /// the generator itself. For any other source (see `source`): its
    /// Poisson equivalent (the same mean rate, mean service, mixes and
    /// bounds), kept so that code reading rates and bounds works for every
    /// workload; replay the real thing through `scenario::open_source`.
    pub synthetic: SyntheticSpec,
    /// Where the requests come from.
    pub source: SourceSpec,
    pub database: DatabaseModel,
    /// Round trips (`database.query_overhead`, `database.refusal_latency`).
    pub wire: Wire,
    /// `[app]`: application instances (>= 1) and how requests reach them.
    pub instances: u32,
    pub balance: Balance,
    pub faults: Vec<FaultSpec>,
    pub run: RunOptions,
    pub effective: serde_json::Value,
    pub hash: String,
}

impl WorkloadSpec {
    /// The world the pools run in: database, round trips, balance, faults.
    pub fn world(&self) -> World {
        World {
            database: self.database.clone(),
            wire: self.wire,
            balance: self.balance,
            faults: self.faults.clone(),
        }
    }

    /// Loads a workload document. Paths in it (`arrivals.path`,
    /// `service.path`, `arrivals.rules`) are relative to the document's
    /// directory when the document is a file, else to the current directory.
    pub fn load(
        doc: &Document,
        default_name: &str,
        overrides: &[Override],
    ) -> Result<Self, ConfigError> {
        let path = Path::new(&doc.name);
        let base = if path.is_file() {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            PathBuf::new()
        };
        Self::load_in(doc, default_name, overrides, &base, false)
    }

    /// As [`WorkloadSpec::load`], with the directory relative paths start
    /// from; `direct_trace` when the document stands for a trace file given
    /// directly (its errors are then located in the trace itself).
    pub fn load_in(
        doc: &Document,
        default_name: &str,
        overrides: &[Override],
        base_dir: &Path,
        direct_trace: bool,
    ) -> Result<Self, ConfigError> {
        let loc = Locator::new(doc, overrides);
        let (raw, table): (WorkloadFile, toml::Table) =
            deserialize(doc, overrides).map_err(|e| relocate_input_error(doc, &loc, e))?;
        let ctx = LoadCtx {
            loc: &loc,
            doc,
            overrides,
            base_dir,
            direct_trace,
            table: &table,
        };
        validate(raw, default_name, &ctx)
    }

    /// Simulated seconds the workload is expected to last (for progress):
    /// its duration, or its request count at its mean rate, whichever ends
    /// first; a trace's own span.
    pub fn expected_end_s(&self) -> f64 {
        let s = &self.synthetic;
        match (s.duration, s.max_requests) {
            (Some(d), Some(n)) => d.as_secs_f64().min(n as f64 / s.rate_per_s),
            (Some(d), None) => d.as_secs_f64(),
            (None, Some(n)) => n as f64 / s.rate_per_s,
            (None, None) => 0.0,
        }
    }
}

/// Several recorded trace files given directly (`sim run --trace a.csv
/// --trace b.log`): one workload merging them by arrival, each from its own
/// start, every other key at its default (which `overrides` change, as for
/// a single trace). Returns the workload and where it came from.
pub fn load_merged_traces(
    paths: &[String],
    overrides: &[Override],
) -> Result<(WorkloadSpec, String), ConfigError> {
    let mut text = String::from("[arrivals]\nkind = \"trace\"\n");
    let mut stems = Vec::new();
    for p in paths {
        let not_a_trace = |message: &str| ConfigError::Invalid {
            origin: Origin::WholeFile { file: p.clone() },
            key: "trace".to_string(),
            message: message.to_string(),
        };
        let path = Path::new(p);
        if p.to_ascii_lowercase().ends_with(".toml") || SHIPPED.iter().any(|(n, _)| n == p) {
            return Err(not_a_trace(
                "--trace given several times merges recorded trace files; a workload file or a shipped name cannot be merged (list the traces as [[arrivals.inputs]] of one workload file instead)",
            ));
        }
        if !path.is_file() {
            return Err(not_a_trace(
                "no such file (--trace given several times merges recorded trace files)",
            ));
        }
        text.push_str(&format!(
            "[[arrivals.inputs]]\npath = {}\n",
            toml::Value::String(p.clone())
        ));
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.clone());
        // The name without compression and format extensions.
        let mut stem = name.as_str();
        for ext in [".gz", ".bz2", ".csv", ".jsonl", ".json", ".log"] {
            if let Some(s) = stem.strip_suffix(ext) {
                stem = s;
            }
        }
        stems.push(stem.to_string());
    }
    let source = paths.join(" + ");
    let doc = Document::new(format!("merge of {source}"), text);
    let spec = WorkloadSpec::load_in(&doc, &stems.join("+"), overrides, Path::new(""), true)?;
    Ok((spec, source))
}

/// What validation needs besides the raw values.
struct LoadCtx<'a> {
    loc: &'a Locator<'a>,
    doc: &'a Document,
    overrides: &'a [Override],
    base_dir: &'a Path,
    direct_trace: bool,
    table: &'a toml::Table,
}

impl LoadCtx<'_> {
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() || self.base_dir.as_os_str().is_empty() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn trace_error(&self, e: TraceError, key: &str) -> ConfigError {
        if self.direct_trace {
            e.into_config_direct()
        } else {
            e.into_config(self.doc, self.overrides, key)
        }
    }

    fn given(&self, key: &str) -> bool {
        self.table.contains_key(key) || self.overrides.iter().any(|o| o.path[0] == key)
    }
}

fn fraction(loc: &Locator, key: &str, v: f64) -> Result<f64, ConfigError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(loc.invalid(key, format!("expected a fraction in [0, 1], got {v}")))
    }
}

fn positive_rate(loc: &Locator, key: &str, v: Option<f64>) -> Result<f64, ConfigError> {
    let Some(v) = v else {
        return Err(loc.invalid(key, "required key is missing"));
    };
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(loc.invalid(
            key,
            format!("expected a positive rate in requests per second, got {v}"),
        ))
    }
}

fn validate(
    mut raw: WorkloadFile,
    default_name: &str,
    ctx: &LoadCtx,
) -> Result<WorkloadSpec, ConfigError> {
    let loc = ctx.loc;
    let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
    if name.trim().is_empty() {
        return Err(loc.invalid("name", "expected a non-empty name"));
    }
    let kind = raw.arrivals.kind;
    let is_trace = kind == ArrivalKind::Trace;
    if !is_trace && raw.duration.is_none() && raw.requests.is_none() {
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
    let allowed = kind.keys();
    for (key, set) in raw.arrivals.present() {
        if set && !allowed.contains(&key) {
            return Err(loc.invalid_related(
                &format!("arrivals.{key}"),
                &["arrivals.kind"],
                format!(
                    "does not apply to kind = \"{}\" (it takes: {})",
                    kind.name(),
                    allowed.join(", ")
                ),
            ));
        }
    }
    if kind == ArrivalKind::Poisson {
        positive_rate(loc, "arrivals.rate_per_s", raw.arrivals.rate_per_s)?;
    }
    let service = match &raw.service {
        Some(s) => Some(service_dist(ctx, "service", s)?),
        None if is_trace => None,
        None => return Err(loc.invalid("service", "required key is missing")),
    };
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
    let (connect_latency, wire) = database_connect(loc, "database", db)?;
    if raw.app.instances == 0 || raw.app.instances > u16::MAX as u32 {
        return Err(loc.invalid(
            "app.instances",
            format!(
                "expected 1 to {} application instances, got {}",
                u16::MAX,
                raw.app.instances
            ),
        ));
    }
    let faults = raw
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| fault_spec(ctx, i, f))
        .collect::<Result<Vec<_>, _>>()?;
    database_limits(loc, "database", db)?;
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
    let duration = raw.duration.map(|d| d.0);
    let bounds = (duration, raw.requests);
    let (source, synthetic, trace_json) = if is_trace {
        let (t, synthetic, json) = trace_source(&raw, ctx, service, mix, write_fraction, bounds)?;
        (SourceSpec::Trace(Box::new(t)), synthetic, Some(json))
    } else {
        let service = service.expect("required above for generated workloads");
        let arrivals = arrival_process(&raw.arrivals, ctx)?;
        let service_mean = service.mean_ns();
        let horizon = duration.map_or(3600 * NANOS_PER_S, |d| d.0);
        let rate = arrivals.mean_rate(
            horizon,
            if service_mean.is_finite() {
                service_mean
            } else {
                0.0
            },
        );
        let equivalent = match &service {
            ServiceDist::Basic(d) => d.clone(),
            other => DurationDist::Constant {
                value_ns: if other.mean_ns().is_finite() {
                    other.mean_ns() as u64
                } else {
                    u64::MAX / 2
                },
            },
        };
        let synthetic = SyntheticSpec {
            rate_per_s: if rate > 0.0 { rate } else { f64::MIN_POSITIVE },
            service: equivalent,
            priority_mix: mix,
            write_fraction,
            duration,
            max_requests: raw.requests,
        };
        let source = match (&arrivals, &service) {
            (ArrivalProcess::Poisson { .. }, ServiceDist::Basic(_)) => SourceSpec::Poisson,
            _ => SourceSpec::Generated(Box::new(GeneratorSpec {
                arrivals,
                service,
                priority_mix: mix,
                write_fraction,
                duration,
                max_requests: raw.requests,
            })),
        };
        (source, synthetic, None)
    };
    let run = RunOptions {
        max_events: r.max_events,
        max_sim_time: r.max_sim_time.0,
        sample_interval: r.sample_interval.0,
        horizon: duration,
        drain: r.drain,
        check_invariants: false,
        recovery_wait: r
            .recovery_wait
            .map_or(RunOptions::default().recovery_wait, |d| d.0),
    };
    raw.name = Some(name.clone());
    let mut effective = serde_json::to_value(&raw).expect("workload serializes");
    if let (Some(json), Some(obj)) = (trace_json, effective.as_object_mut()) {
        // A trace's priorities and kinds are its own unless these are given.
        for key in ["priority_mix", "write_fraction"] {
            if !ctx.given(key) {
                obj.remove(key);
            }
        }
        obj.insert("trace_file".to_string(), json);
    }
    let hash = content_hash(&effective);
    Ok(WorkloadSpec {
        name,
        description: raw.description.clone(),
        synthetic,
        source,
        database: DatabaseModel {
            connect_latency,
            max_connections: db.max_connections,
            usl_sigma: db.usl_sigma,
            usl_kappa: db.usl_kappa,
        },
        wire,
        instances: raw.app.instances,
        balance: raw.app.balance,
        faults,
        run,
        effective,
        hash,
    })
}

/// Validates the connect side of a `[database]` table whose keys are under
/// `prefix` (`database` in a workload file): the connect latency (a preset
/// or a distribution) and the round trips. Shared with the scenario file's
/// `[[servers]]`.
pub(crate) fn database_connect(
    loc: &Locator,
    prefix: &str,
    db: &DatabaseRaw,
) -> Result<(DurationDist, Wire), ConfigError> {
    let connect_latency = match (&db.connect_latency, db.connect) {
        (Some(_), Some(_)) => return Err(loc.invalid_related(
            &format!("{prefix}.connect_latency"),
            &[&format!("{prefix}.connect")],
            "expected either `connect` (a preset) or `connect_latency` (a distribution), not both",
        )),
        (Some(d), None) => dist(loc, &format!("{prefix}.connect_latency"), d)?,
        (None, Some(p)) => p.connect_latency(),
        (None, None) => DurationDist::Constant { value_ns: 0 },
    };
    let wire = Wire {
        query_overhead: db.query_overhead.map_or(SimDuration::ZERO, |d| d.0),
        refusal_latency: match (db.refusal_latency, db.connect) {
            (Some(d), _) => d.0,
            (None, Some(p)) => p.round_trip(),
            (None, None) => Wire::default().refusal_latency,
        },
    };
    Ok((connect_latency, wire))
}

/// Validates the server side of a `[database]` table whose keys are under
/// `prefix`: max_connections and the USL coefficients.
pub(crate) fn database_limits(
    loc: &Locator,
    prefix: &str,
    db: &DatabaseRaw,
) -> Result<(), ConfigError> {
    if db.max_connections == 0 {
        return Err(loc.invalid(
            &format!("{prefix}.max_connections"),
            "expected at least 1, got 0",
        ));
    }
    for (key, v) in [("usl_sigma", db.usl_sigma), ("usl_kappa", db.usl_kappa)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(loc.invalid(
                &format!("{prefix}.{key}"),
                format!("expected a finite coefficient >= 0, got {v}"),
            ));
        }
    }
    Ok(())
}

/// Where key `key` of the `index`-th `[[faults]]` entry is (the generic
/// locator does not descend into arrays of tables).
fn fault_origin(ctx: &LoadCtx, index: usize, key: &str) -> Origin {
    let generic = ctx.loc.origin(&format!("faults.{key}"));
    if matches!(generic, Origin::Override { .. }) {
        return generic;
    }
    let found = (|| {
        let root = toml::de::DeTable::parse(&ctx.doc.text).ok()?;
        let (k, v) = root
            .get_ref()
            .iter()
            .find(|(k, _)| k.get_ref() == "faults")?;
        let toml::de::DeValue::Array(items) = v.get_ref() else {
            return Some(k.span().start);
        };
        let item = items.get(index)?;
        let toml::de::DeValue::Table(t) = item.get_ref() else {
            return Some(item.span().start);
        };
        match t.iter().find(|(k, _)| k.get_ref() == key) {
            Some((k, _)) => Some(k.span().start),
            // A missing key: the entry's first key.
            None => t.iter().map(|(k, _)| k.span().start).min(),
        }
    })();
    match found {
        Some(offset) => {
            let (line, column) = super::line_col(&ctx.doc.text, offset);
            Origin::File {
                file: ctx.doc.name.clone(),
                line,
                column,
            }
        }
        None => generic,
    }
}

/// Validates one `[[faults]]` entry.
fn fault_spec(ctx: &LoadCtx, index: usize, f: &FaultRaw) -> Result<FaultSpec, ConfigError> {
    let err = |key: &str, message: String| ConfigError::Invalid {
        origin: fault_origin(ctx, index, key),
        key: format!("faults[{index}].{key}"),
        message,
    };
    fault_from_raw(f, &err)
}

/// Validates a fault's keys; `err(key, message)` makes the error for a key
/// of the entry (it knows where the entry is). Shared with the scenario
/// file's `[[faults]]`.
pub(crate) fn fault_from_raw(
    f: &FaultRaw,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<FaultSpec, ConfigError> {
    let kind = f.kind.name();
    let allowed = f.kind.keys();
    for (key, set) in f.present() {
        if set && !allowed.contains(&key) {
            return Err(err(
                key,
                format!(
                    "does not apply to kind = \"{kind}\" (it takes: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let timing = match (f.at, f.rate_per_hour) {
        (Some(at), None) => FaultTiming::At(at.0),
        (None, Some(r)) if r.is_finite() && r > 0.0 => FaultTiming::Rate { per_hour: r },
        (None, Some(r)) => {
            return Err(err(
                "rate_per_hour",
                format!("expected a positive rate (faults per simulated hour), got {r}"),
            ))
        }
        _ => {
            return Err(err(
                "at",
                "expected exactly one of `at` (a time such as \"2m\") and `rate_per_hour` (a positive number)"
                    .to_string(),
            ))
        }
    };
    let positive = |key: &str, v: Option<Dur>| match v {
        Some(d) if d.0 .0 > 0 => Ok(d.0),
        Some(_) => Err(err(key, "expected a positive duration, got 0s".to_string())),
        None => Err(err(
            key,
            format!("kind = \"{kind}\" needs `{key}` (a duration such as \"30s\")"),
        )),
    };
    let factor = || match f.factor {
        Some(x) if x.is_finite() && x > 0.0 => Ok(x),
        Some(x) => Err(err(
            "factor",
            format!("expected a positive factor, got {x}"),
        )),
        None => Err(err(
            "factor",
            format!("kind = \"{kind}\" needs `factor` (a multiplier such as 5.0)"),
        )),
    };
    let kind = match f.kind {
        FaultKindRaw::Restart => FaultKind::Restart {
            downtime: positive("downtime", f.downtime)?,
        },
        FaultKindRaw::DropConnections => match (f.count, f.fraction) {
            (Some(c), None) if c > 0 => FaultKind::DropConnections(DropAmount::Count(c)),
            (None, Some(x)) if x.is_finite() && x > 0.0 && x <= 1.0 => {
                FaultKind::DropConnections(DropAmount::Fraction(x))
            }
            (Some(_), None) => return Err(err("count", "expected at least 1, got 0".to_string())),
            (None, Some(x)) => {
                return Err(err(
                    "fraction",
                    format!("expected a fraction in (0, 1], got {x}"),
                ))
            }
            _ => {
                return Err(err(
                    "count",
                    "kind = \"drop_connections\" needs exactly one of `count` and `fraction`"
                        .to_string(),
                ))
            }
        },
        FaultKindRaw::LatencySpike => FaultKind::LatencySpike {
            factor: factor()?,
            duration: positive("duration", f.duration)?,
        },
        FaultKindRaw::SlowConnects => FaultKind::SlowConnects {
            factor: factor()?,
            duration: positive("duration", f.duration)?,
        },
        FaultKindRaw::ConnectFailures => FaultKind::ConnectFailures {
            probability: match f.probability {
                Some(p) if p.is_finite() && (0.0..=1.0).contains(&p) => p,
                Some(p) => {
                    return Err(err(
                        "probability",
                        format!("expected a probability in [0, 1], got {p}"),
                    ))
                }
                None => {
                    return Err(err(
                        "probability",
                        "kind = \"connect_failures\" needs `probability` (e.g. 0.5)".to_string(),
                    ))
                }
            },
            duration: positive("duration", f.duration)?,
        },
    };
    Ok(FaultSpec { kind, timing })
}

/// The recorded-trace source: prepare (import, check) the file, build the
/// transform, and its Poisson equivalent.
fn trace_source(
    raw: &WorkloadFile,
    ctx: &LoadCtx,
    service: Option<ServiceDist>,
    mix: [f64; 3],
    write_fraction: f64,
    (duration, requests): (Option<SimDuration>, Option<u64>),
) -> Result<(TraceWorkload, SyntheticSpec, serde_json::Value), ConfigError> {
    let loc = ctx.loc;
    let a = &raw.arrivals;
    let skip_bad = a.skip_bad.unwrap_or(false);
    let (trace, inputs_json) = match (&a.path, &a.inputs) {
        (Some(_), Some(_)) => {
            return Err(loc.invalid_related(
                "arrivals.inputs",
                &["arrivals.path"],
                "give either `path` (one trace) or `inputs` (several traces, merged), not both",
            ))
        }
        (None, None) => {
            return Err(loc.invalid(
                "arrivals.path",
                "kind = \"trace\" needs `path` (a trace file: canonical, or any log `pooltune trace import` reads), or `inputs` (several, merged: [[arrivals.inputs]] tables with a `path` each)",
            ))
        }
        (Some(path), None) => {
            let keys = ReadKeys {
                format: &a.format,
                prefix: &a.prefix,
                rules: &a.rules,
                time_field: &a.time_field,
                time_unit: &a.time_unit,
                year: a.year,
                pgbench_arrival: &a.pgbench_arrival,
            };
            let options = prepare_options(
                ctx,
                &keys,
                skip_bad,
                &|k, m| loc.invalid(&format!("arrivals.{k}"), m),
                &|e| ctx.trace_error(e, "arrivals.rules"),
            )?;
            let trace = prepare(&ctx.path(path), &options)
                .map_err(|e| ctx.trace_error(e, "arrivals.path"))?;
            if trace.info.no_service && service.is_none() {
                return Err(loc.invalid(
                    "service",
                    format!(
                        "the trace {} has arrival times only (format {}): give a [service] distribution to replay it",
                        path, trace.info.format
                    ),
                ));
            }
            (trace, None)
        }
        (None, Some(inputs)) => {
            let merged = merged_trace(ctx, a, inputs, skip_bad, service.is_some())?;
            let json = serde_json::to_value(&merged.inputs).expect("input infos serialize");
            (merged.trace, Some(json))
        }
    };
    let info = &trace.info;
    let speed = a.speed.unwrap_or(1.0);
    if !(speed.is_finite() && speed > 0.0) {
        return Err(loc.invalid(
            "arrivals.speed",
            format!("expected a positive factor, got {speed}"),
        ));
    }
    let load = a.load.unwrap_or(1.0);
    if !(load.is_finite() && load > 0.0 && load <= 1000.0) {
        return Err(loc.invalid(
            "arrivals.load",
            format!("expected a factor in (0, 1000], got {load}"),
        ));
    }
    let start_ns = a.start.map(|d| d.0 .0);
    let end_ns = a.end.map(|d| d.0 .0);
    if let (Some(s), Some(e)) = (start_ns, end_ns) {
        if e <= s {
            return Err(loc.invalid_related(
                "arrivals.end",
                &["arrivals.start"],
                format!(
                    "expected end after start ({}), got {}",
                    SimDuration(s),
                    SimDuration(e)
                ),
            ));
        }
    }
    if let Some(s) = start_ns {
        if s > info.last_arrival_ns {
            return Err(loc.invalid(
                "arrivals.start",
                format!(
                    "the trace's last arrival is at {}: a window starting at {} holds no request",
                    SimDuration(info.last_arrival_ns),
                    SimDuration(s)
                ),
            ));
        }
    }
    let transform = TransformSpec {
        start_ns,
        end_ns,
        speed,
        load,
        service: service.clone(),
        priority_mix: ctx.given("priority_mix").then_some(mix),
        write_fraction: ctx.given("write_fraction").then_some(write_fraction),
        max_requests: requests,
        horizon_ns: duration.map(|d| d.0),
    };
    // The Poisson equivalent (estimates and code that reads rates).
    let win_start = start_ns.unwrap_or(0).max(info.first_arrival_ns);
    let win_end = end_ns
        .unwrap_or(u64::MAX)
        .min(info.last_arrival_ns.saturating_add(1));
    let span_in = win_end.saturating_sub(win_start).max(1);
    let frac =
        (span_in as f64 / (info.last_arrival_ns - info.first_arrival_ns).max(1) as f64).min(1.0);
    let n_est = (info.requests as f64 * frac * load).max(1.0);
    let span_out = (span_in as f64 / speed).max(1.0);
    let mut rate = n_est / (span_out / NANOS_PER_S as f64);
    if !rate.is_finite() || rate <= 0.0 {
        rate = 1.0;
    }
    let service_mean = match &service {
        Some(s) if s.mean_ns().is_finite() => s.mean_ns(),
        Some(_) => 0.0,
        None => info.service_mean_ns,
    };
    let total = info.requests.max(1) as f64;
    let recorded_mix = [
        info.priority_counts[0] as f64 / total,
        info.priority_counts[1] as f64 / total,
        info.priority_counts[2] as f64 / total,
    ];
    let synthetic = SyntheticSpec {
        rate_per_s: rate,
        service: DurationDist::Constant {
            value_ns: service_mean as u64,
        },
        priority_mix: transform.priority_mix.unwrap_or(recorded_mix),
        write_fraction: transform
            .write_fraction
            .unwrap_or(info.writes as f64 / total),
        duration: Some(duration.map_or(SimDuration(span_out as u64), |d| {
            d.min(SimDuration(span_out as u64))
        })),
        max_requests: Some(
            requests
                .map_or(n_est as u64, |r| r.min(n_est as u64))
                .max(1),
        ),
    };
    let mut json = serde_json::to_value(info).expect("trace info serializes");
    if let (Some(inputs), Some(obj)) = (inputs_json, json.as_object_mut()) {
        // Every input's bytes and settings: same inputs, same hash.
        obj.insert("inputs".to_string(), inputs);
    }
    Ok((TraceWorkload { trace, transform }, synthetic, json))
}

/// The keys that say how to read one trace (the single `arrivals.path`, or
/// one of `arrivals.inputs`).
struct ReadKeys<'a> {
    format: &'a Option<String>,
    prefix: &'a Option<String>,
    rules: &'a Option<String>,
    time_field: &'a Option<String>,
    time_unit: &'a Option<String>,
    year: Option<i64>,
    pgbench_arrival: &'a Option<String>,
}

/// Validates the reading keys of one trace; `err(key, message)` makes the
/// error for a key (`format`, ...; it knows where the key is), `rules_err`
/// the error for a rules file that does not load.
fn prepare_options(
    ctx: &LoadCtx,
    keys: &ReadKeys,
    skip_bad: bool,
    err: &dyn Fn(&str, String) -> ConfigError,
    rules_err: &dyn Fn(TraceError) -> ConfigError,
) -> Result<PrepareOptions, ConfigError> {
    let mut import = ImportOptions {
        skip_bad,
        prefix: keys.prefix.clone(),
        year: keys.year,
        time_field: keys.time_field.clone(),
        ..Default::default()
    };
    let format = match keys.format.as_deref() {
        None | Some("auto") => None,
        Some(f) => Some(Format::parse(f).map_err(|e| err("format", e.to_string()))?),
    };
    if let Some(u) = keys.time_unit {
        import.time_unit_ns = Some(match u.as_str() {
            "s" => NANOS_PER_S,
            "ms" => 1_000_000,
            "us" => 1_000,
            "ns" => 1,
            other => {
                return Err(err(
                    "time_unit",
                    format!("expected s, ms, us or ns, got \"{other}\""),
                ))
            }
        });
    }
    if let Some(p) = keys.pgbench_arrival {
        import.pgbench_arrival = match p.as_str() {
            "scheduled" => PgbenchArrival::Scheduled,
            "sent" => PgbenchArrival::Sent,
            other => {
                return Err(err(
                    "pgbench_arrival",
                    format!("expected \"scheduled\" or \"sent\", got \"{other}\""),
                ))
            }
        };
    }
    if let Some(r) = keys.rules {
        import.rules = Rules::load(&ctx.path(r)).map_err(rules_err)?;
    }
    Ok(PrepareOptions { format, import })
}

/// A parse error inside an `[[arrivals.inputs]]` entry (an unknown key, a
/// wrong type) names the entry's key and points at it: the generic locator
/// does not descend into arrays of tables.
fn relocate_input_error(doc: &Document, loc: &Locator, e: ConfigError) -> ConfigError {
    let ConfigError::Invalid {
        origin,
        key,
        message,
    } = e
    else {
        return e;
    };
    let entry = key
        .strip_prefix("arrivals.inputs.[")
        .and_then(|rest| rest.split_once("]."))
        .and_then(|(i, sub)| Some((i.parse::<usize>().ok()?, sub)));
    match entry {
        Some((index, sub)) if !matches!(origin, Origin::Override { .. }) => ConfigError::Invalid {
            origin: input_origin_in(doc, loc, index, sub.split('.').next().unwrap_or(sub)),
            key: format!("arrivals.inputs[{index}].{sub}"),
            message,
        },
        _ => ConfigError::Invalid {
            origin,
            key,
            message,
        },
    }
}

/// Where key `key` of the `index`-th `[[arrivals.inputs]]` entry is (the
/// generic locator does not descend into arrays of tables).
fn input_origin(ctx: &LoadCtx, index: usize, key: &str) -> Origin {
    input_origin_in(ctx.doc, ctx.loc, index, key)
}

fn input_origin_in(doc: &Document, loc: &Locator, index: usize, key: &str) -> Origin {
    let generic = loc.origin(&format!("arrivals.inputs.{key}"));
    if matches!(generic, Origin::Override { .. }) {
        return generic;
    }
    let found = (|| {
        let root = toml::de::DeTable::parse(&doc.text).ok()?;
        let (_, arrivals) = root
            .get_ref()
            .iter()
            .find(|(k, _)| k.get_ref() == "arrivals")?;
        let toml::de::DeValue::Table(arrivals) = arrivals.get_ref() else {
            return Some(arrivals.span().start);
        };
        let (k, v) = arrivals.iter().find(|(k, _)| k.get_ref() == "inputs")?;
        let toml::de::DeValue::Array(items) = v.get_ref() else {
            return Some(k.span().start);
        };
        let Some(item) = items.get(index) else {
            return Some(k.span().start);
        };
        let toml::de::DeValue::Table(t) = item.get_ref() else {
            return Some(item.span().start);
        };
        match t.iter().find(|(k, _)| k.get_ref() == key) {
            Some((k, _)) => Some(k.span().start),
            // A missing key: the entry's first key, else the entry.
            None => t
                .iter()
                .map(|(k, _)| k.span().start)
                .min()
                .or(Some(item.span().start)),
        }
    })();
    match found {
        Some(offset) => {
            let (line, column) = super::line_col(&doc.text, offset);
            Origin::File {
                file: doc.name.clone(),
                line,
                column,
            }
        }
        None => generic,
    }
}

/// Validates `[[arrivals.inputs]]` and prepares the merged trace.
fn merged_trace(
    ctx: &LoadCtx,
    a: &ArrivalsRaw,
    inputs: &[InputRaw],
    skip_bad: bool,
    has_service: bool,
) -> Result<MergedTrace, ConfigError> {
    let loc = ctx.loc;
    for (key, set) in a.present() {
        if set && PER_INPUT_KEYS.contains(&key) {
            return Err(loc.invalid_related(
                &format!("arrivals.{key}"),
                &["arrivals.inputs"],
                format!("applies to a single `path`: with `inputs`, give `{key}` in each [[arrivals.inputs]] entry it concerns"),
            ));
        }
    }
    if inputs.is_empty() {
        return Err(loc.invalid(
            "arrivals.inputs",
            "expected at least one [[arrivals.inputs]] entry with a `path`",
        ));
    }
    let err_at = |i: usize, key: &str, message: String| ConfigError::Invalid {
        origin: input_origin(ctx, i, key),
        key: format!("arrivals.inputs[{i}].{key}"),
        message,
    };
    // A trace's own error (a file that does not exist or does not parse) is
    // reported at the input's key, with the trace's file, line and field.
    let trace_err = |i: usize, key: &str, e: TraceError| -> ConfigError {
        if ctx.direct_trace {
            return e.into_config_direct();
        }
        match e {
            TraceError::Read { path, source } if source.kind() != std::io::ErrorKind::NotFound => {
                ConfigError::Read { path, source }
            }
            other => err_at(i, key, format!("trace {other}")),
        }
    };
    let mut prepared = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let Some(path) = &input.path else {
            return Err(err_at(
                i,
                "path",
                "each input needs `path` (a trace file: canonical, or any log `pooltune trace import` reads)".into(),
            ));
        };
        let keys = ReadKeys {
            format: &input.format,
            prefix: &input.prefix,
            rules: &input.rules,
            time_field: &input.time_field,
            time_unit: &input.time_unit,
            year: input.year,
            pgbench_arrival: &input.pgbench_arrival,
        };
        let options = prepare_options(ctx, &keys, skip_bad, &|k, m| err_at(i, k, m), &|e| {
            trace_err(i, "rules", e)
        })?;
        let load = input.load.unwrap_or(1.0);
        if !(load.is_finite() && load > 0.0 && load <= 1000.0) {
            return Err(err_at(
                i,
                "load",
                format!("expected a factor in (0, 1000], got {load}"),
            ));
        }
        let priority = match input.priority.as_deref() {
            None => None,
            Some(p) => Some(parse_priority(p.as_bytes()).ok_or_else(|| {
                err_at(
                    i,
                    "priority",
                    format!("expected \"high\", \"normal\" or \"low\", got \"{p}\""),
                )
            })?),
        };
        prepared.push(MergeInput {
            path: ctx.path(path),
            options,
            start_at_ns: input.start_at.map_or(0, |d| d.0 .0),
            load,
            priority,
        });
    }
    let merged = prepare_merged(&prepared).map_err(|e| match e.input {
        Some(i) => trace_err(i, "path", e.error),
        None => ctx.trace_error(e.error, "arrivals.inputs"),
    })?;
    let mut merged = merged;
    for (info, input) in merged.inputs.iter_mut().zip(inputs) {
        // As written (relative to the workload file): the hash must not
        // depend on the directory the workload was loaded from.
        info.path = input.path.clone().unwrap_or_default();
    }
    if !has_service {
        if let Some((i, info)) = merged
            .inputs
            .iter()
            .enumerate()
            .find(|(_, info)| info.no_service)
        {
            return Err(err_at(
                i,
                "path",
                format!(
                    "the trace {} has arrival times only (format {}): give a [service] distribution to replay it",
                    inputs[i].path.as_deref().unwrap_or("?"),
                    info.format
                ),
            ));
        }
    }
    Ok(merged)
}

fn dur_ns(d: &Dur) -> u64 {
    d.0 .0
}

/// Validates a generated arrival process (not `trace`).
fn arrival_process(a: &ArrivalsRaw, ctx: &LoadCtx) -> Result<ArrivalProcess, ConfigError> {
    let loc = ctx.loc;
    let need = |v: bool, key: &str, what: &str| {
        if v {
            Ok(())
        } else {
            Err(loc.invalid(
                &format!("arrivals.{key}"),
                format!("kind = \"{}\" needs `{key}` ({what})", a.kind.name()),
            ))
        }
    };
    let rate_ok = |key: &str, v: f64, allow_zero: bool| {
        if v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v <= 1e12 {
            Ok(v)
        } else {
            Err(loc.invalid(
                key,
                format!(
                    "expected a {} rate in requests per second, got {v}",
                    if allow_zero {
                        "non-negative"
                    } else {
                        "positive"
                    }
                ),
            ))
        }
    };
    let period = a.period.map(|p| dur_ns(&p));
    if period == Some(0) {
        return Err(loc.invalid("arrivals.period", "expected a positive duration, got 0s"));
    }
    let series = |key: &str, pts: &[(Dur, f64)]| -> Result<Vec<(u64, f64)>, ConfigError> {
        let k = format!("arrivals.{key}");
        if pts.is_empty() {
            return Err(loc.invalid(&k, "expected at least one [time, rate] pair"));
        }
        let mut out: Vec<(u64, f64)> = Vec::with_capacity(pts.len());
        for (i, (t, r)) in pts.iter().enumerate() {
            let t = dur_ns(t);
            rate_ok(&k, *r, true)?;
            if let Some(prev) = out.last() {
                if t <= prev.0 {
                    return Err(loc.invalid(
                        &k,
                        format!(
                            "times must increase: pair {} is at {} after {}",
                            i + 1,
                            SimDuration(t),
                            SimDuration(prev.0)
                        ),
                    ));
                }
            }
            if let Some(p) = period {
                if t >= p {
                    return Err(loc.invalid(
                        &k,
                        format!(
                            "pair {} is at {}, not within the period ({})",
                            i + 1,
                            SimDuration(t),
                            SimDuration(p)
                        ),
                    ));
                }
            }
            out.push((t, *r));
        }
        if out.iter().all(|p| p.1 == 0.0) {
            return Err(loc.invalid(&k, "every rate is 0: no request would ever arrive"));
        }
        Ok(out)
    };
    Ok(match a.kind {
        ArrivalKind::Poisson => ArrivalProcess::Poisson {
            rate_per_s: positive_rate(loc, "arrivals.rate_per_s", a.rate_per_s)?,
        },
        ArrivalKind::Piecewise => {
            need(a.points.is_some(), "points", "[[time, rate], ...]")?;
            ArrivalProcess::Profile(RateProfile::Piecewise {
                points: series("points", a.points.as_deref().unwrap_or(&[]))?,
                period_ns: period,
            })
        }
        ArrivalKind::Steps => {
            need(a.steps.is_some(), "steps", "[[from, rate], ...]")?;
            ArrivalProcess::Profile(RateProfile::Steps {
                steps: series("steps", a.steps.as_deref().unwrap_or(&[]))?,
                period_ns: period,
            })
        }
        ArrivalKind::Diurnal => {
            let mean = positive_rate(loc, "arrivals.rate_per_s", a.rate_per_s)?;
            need(a.amplitude.is_some(), "amplitude", "a fraction in [0, 1]")?;
            let amp = a.amplitude.unwrap_or(0.0);
            if !(amp.is_finite() && (0.0..=1.0).contains(&amp)) {
                return Err(loc.invalid(
                    "arrivals.amplitude",
                    format!("expected a fraction in [0, 1], got {amp}"),
                ));
            }
            let period_ns = period.unwrap_or(24 * 3600 * NANOS_PER_S);
            ArrivalProcess::Profile(RateProfile::Diurnal {
                mean_per_s: mean,
                amplitude: amp,
                period_ns,
                peak_ns: a.peak_at.map_or(14 * 3600 * NANOS_PER_S, |d| dur_ns(&d)) % period_ns,
            })
        }
        ArrivalKind::Mmpp => {
            need(
                a.rate_on.is_some(),
                "rate_on",
                "requests per second while on",
            )?;
            need(a.mean_on.is_some(), "mean_on", "a duration")?;
            need(a.mean_off.is_some(), "mean_off", "a duration")?;
            let rate_on = rate_ok("arrivals.rate_on", a.rate_on.unwrap_or(0.0), false)?;
            let rate_off = rate_ok("arrivals.rate_off", a.rate_off.unwrap_or(0.0), true)?;
            let mut means = [0.0; 2];
            for (i, (key, d)) in [("mean_on", a.mean_on), ("mean_off", a.mean_off)]
                .into_iter()
                .enumerate()
            {
                let v = d.map_or(0, |d| dur_ns(&d));
                if v == 0 {
                    return Err(loc.invalid(
                        &format!("arrivals.{key}"),
                        "expected a positive duration, got 0s",
                    ));
                }
                means[i] = v as f64;
            }
            ArrivalProcess::Mmpp {
                rate_on,
                rate_off,
                mean_on_ns: means[0],
                mean_off_ns: means[1],
            }
        }
        ArrivalKind::FlashCrowd => {
            let base = rate_ok(
                "arrivals.rate_per_s",
                a.rate_per_s
                    .ok_or_else(|| loc.invalid("arrivals.rate_per_s", "required key is missing"))?,
                true,
            )?;
            need(
                a.spikes.is_some(),
                "spikes",
                "[{ at, peak_per_s, rise, hold, decay }, ...]",
            )?;
            let mut spikes = Vec::new();
            for (i, sp) in a.spikes.as_deref().unwrap_or(&[]).iter().enumerate() {
                let key = "arrivals.spikes";
                let peak = rate_ok(key, sp.peak_per_s, false)?;
                if peak < base {
                    return Err(loc.invalid(
                        key,
                        format!(
                            "spike {}: peak_per_s ({peak}) is below the base rate ({base})",
                            i + 1
                        ),
                    ));
                }
                spikes.push(Spike {
                    at_ns: dur_ns(&sp.at),
                    peak_per_s: peak,
                    rise_ns: dur_ns(&sp.rise),
                    hold_ns: dur_ns(&sp.hold),
                    decay_ns: dur_ns(&sp.decay),
                });
            }
            if spikes.is_empty() && base == 0.0 {
                return Err(loc.invalid(
                    "arrivals.spikes",
                    "no spike and a base rate of 0: no request would ever arrive",
                ));
            }
            ArrivalProcess::Profile(RateProfile::FlashCrowd {
                base_per_s: base,
                spikes,
            })
        }
        ArrivalKind::ClosedLoop => {
            need(a.clients.is_some(), "clients", "a number of clients")?;
            need(
                a.think.is_some(),
                "think",
                "a think-time distribution, e.g. { kind = \"exponential\", mean = \"100ms\" }",
            )?;
            let clients = a.clients.unwrap_or(0);
            if clients == 0 || clients > 1_000_000 {
                return Err(loc.invalid(
                    "arrivals.clients",
                    format!("expected 1 to 1000000 clients, got {clients}"),
                ));
            }
            let think = service_dist(ctx, "arrivals.think", a.think.as_ref().expect("checked"))?;
            ArrivalProcess::ClosedLoop { clients, think }
        }
        ArrivalKind::Trace => {
            return Err(loc.invalid(
                "arrivals.kind",
                "a recorded trace is not a generated process",
            ))
        }
    })
}

/// Parses a service distribution given as a TOML inline table (the
/// command line's `--service '{ kind = "lognormal", median = "8ms", p99 =
/// "40ms" }'`); `origin` names it in errors, paths are relative to the
/// current directory.
pub fn parse_service(origin: &str, table: &str) -> Result<ServiceDist, ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wrap {
        service: ServiceRaw,
    }
    let doc = Document::new(origin, format!("service = {table}\n"));
    let (w, t): (Wrap, toml::Table) = deserialize(&doc, &[])?;
    let loc = Locator::new(&doc, &[]);
    let ctx = LoadCtx {
        loc: &loc,
        doc: &doc,
        overrides: &[],
        base_dir: Path::new(""),
        direct_trace: false,
        table: &t,
    };
    service_dist(&ctx, "service", &w.service)
}

/// Validates a service (or think-time) distribution at `key`.
fn service_dist(ctx: &LoadCtx, key: &str, s: &ServiceRaw) -> Result<ServiceDist, ConfigError> {
    let loc = ctx.loc;
    let k = |sub: &str| format!("{key}.{sub}");
    let kind_name = serde_json::to_value(s.kind).expect("kind serializes");
    let kind_name = kind_name.as_str().unwrap_or("?").to_string();
    let extra = [
        ("alpha", s.alpha.is_some()),
        ("path", s.path.is_some()),
        ("sample", s.sample.is_some()),
        ("values", s.values.is_some()),
        ("quantiles", s.quantiles.is_some()),
    ];
    let basic = |dk: DistKind| -> Result<ServiceDist, ConfigError> {
        for (name, set) in extra {
            if set {
                let allowed: &[&str] = match dk {
                    DistKind::Constant => &["value"],
                    DistKind::Exponential => &["mean"],
                    DistKind::Lognormal => &["median", "p99", "sigma"],
                    DistKind::Uniform => &["min", "max"],
                };
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
        let d = DistRaw {
            kind: dk,
            value: s.value,
            mean: s.mean,
            median: s.median,
            p99: s.p99,
            sigma: s.sigma,
            min: s.min,
            max: s.max,
        };
        Ok(ServiceDist::Basic(dist(loc, key, &d)?))
    };
    let only = |allowed: &[&str]| -> Result<(), ConfigError> {
        let present = [
            ("value", s.value.is_some()),
            ("mean", s.mean.is_some()),
            ("median", s.median.is_some()),
            ("p99", s.p99.is_some()),
            ("sigma", s.sigma.is_some()),
            ("min", s.min.is_some()),
            ("max", s.max.is_some()),
        ];
        for (name, set) in present.into_iter().chain(extra) {
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
        Ok(())
    };
    match s.kind {
        ServiceKind::Constant => basic(DistKind::Constant),
        ServiceKind::Exponential => basic(DistKind::Exponential),
        ServiceKind::Lognormal => basic(DistKind::Lognormal),
        ServiceKind::Uniform => basic(DistKind::Uniform),
        ServiceKind::Pareto => {
            only(&["min", "alpha", "max"])?;
            let min = s.min.map(|d| d.0 .0).ok_or_else(|| {
                loc.invalid(
                    &k("min"),
                    "kind = \"pareto\" needs `min` (the scale, a duration such as \"1ms\")",
                )
            })?;
            if min == 0 {
                return Err(loc.invalid(&k("min"), "expected a positive duration, got 0s"));
            }
            let alpha = s.alpha.ok_or_else(|| {
                loc.invalid(
                    &k("alpha"),
                    "kind = \"pareto\" needs `alpha` (the tail index, e.g. 1.5)",
                )
            })?;
            if !(alpha.is_finite() && alpha > 0.0 && alpha <= 100.0) {
                return Err(loc.invalid(
                    &k("alpha"),
                    format!("expected a tail index in (0, 100], got {alpha}"),
                ));
            }
            let max = s.max.map(|d| d.0 .0);
            if let Some(m) = max {
                if m <= min {
                    return Err(loc.invalid_related(
                        &k("max"),
                        &[&k("min")],
                        format!(
                            "expected max above min ({}), got {}",
                            SimDuration(min),
                            SimDuration(m)
                        ),
                    ));
                }
            } else if alpha <= 1.0 {
                return Err(loc.invalid(
                    &k("alpha"),
                    format!("with alpha = {alpha} <= 1 the mean is infinite: give `max` (a cap), or alpha > 1"),
                ));
            }
            Ok(ServiceDist::pareto(min as f64, alpha, max))
        }
        ServiceKind::Empirical => {
            only(&["path", "sample", "values", "quantiles"])?;
            let given = [s.path.is_some(), s.values.is_some(), s.quantiles.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given != 1 {
                return Err(loc.invalid(
                    &k("path"),
                    "kind = \"empirical\" needs exactly one of `path` (a trace whose service times to sample), `values` (a list of durations) or `quantiles` ([[probability, duration], ...])",
                ));
            }
            if s.sample.is_some() && s.path.is_none() {
                return Err(loc.invalid_related(
                    &k("sample"),
                    &[&k("path")],
                    "`sample` applies to `path` only",
                ));
            }
            if let Some(values) = &s.values {
                if values.is_empty() {
                    return Err(loc.invalid(&k("values"), "expected at least one duration"));
                }
                return Ok(ServiceDist::from_sample(
                    values.iter().map(|d| d.0 .0).collect(),
                    "values",
                ));
            }
            if let Some(q) = &s.quantiles {
                if q.len() < 2 {
                    return Err(loc.invalid(
                        &k("quantiles"),
                        "expected at least two [probability, duration] pairs, from 0.0 to 1.0",
                    ));
                }
                let mut pts = Vec::new();
                for (i, (p, d)) in q.iter().enumerate() {
                    let v = d.0 .0 as f64;
                    if !(p.is_finite() && (0.0..=1.0).contains(p)) {
                        return Err(loc.invalid(
                            &k("quantiles"),
                            format!("pair {}: the probability must be in [0, 1], got {p}", i + 1),
                        ));
                    }
                    if let Some(&(pp, pv)) = pts.last() {
                        if *p <= pp || v < pv {
                            return Err(loc.invalid(
                                &k("quantiles"),
                                format!("pair {}: probabilities must increase and durations must not decrease", i + 1),
                            ));
                        }
                    }
                    pts.push((*p, v));
                }
                if pts[0].0 != 0.0 || pts[pts.len() - 1].0 != 1.0 {
                    return Err(loc.invalid(
                        &k("quantiles"),
                        "the first probability must be 0.0 and the last 1.0",
                    ));
                }
                return Ok(ServiceDist::from_quantiles(pts, "quantiles"));
            }
            let path = s.path.as_deref().expect("one of three");
            let sample = s.sample.unwrap_or(100_000);
            if sample == 0 || sample > 10_000_000 {
                return Err(loc.invalid(
                    &k("sample"),
                    format!("expected 1 to 10000000 values, got {sample}"),
                ));
            }
            let trace = prepare(&ctx.path(path), &PrepareOptions::default())
                .map_err(|e| ctx.trace_error(e, &k("path")))?;
            if trace.info.no_service {
                return Err(loc.invalid(
                    &k("path"),
                    format!("the trace {path} has no service times (arrivals only)"),
                ));
            }
            let values = service_sample(&trace, sample as usize)
                .map_err(|e| ctx.trace_error(e, &k("path")))?;
            Ok(ServiceDist::from_sample(values, path.to_string()))
        }
    }
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
    ("steady", include_str!("../../traces/steady.toml")),
    ("diurnal-day", include_str!("../../traces/diurnal-day.toml")),
    ("flash-crowd", include_str!("../../traces/flash-crowd.toml")),
    (
        "slow-query-storm",
        include_str!("../../traces/slow-query-storm.toml"),
    ),
    ("closed-loop", include_str!("../../traces/closed-loop.toml")),
];
