//! Policy files (`policies/*.toml`): raw serde structs, then a validated
//! [`PolicySpec`]. Every key is optional except `resize.kind`; each table's
//! defaults are below (and on each field). "none" disables a mechanism;
//! durations are strings with a unit ("2.5s", "250ms", "10m").
//!
//! ```toml
//! name = "seed-80-30"     # default: the file name without .toml
//! description = "..."     # default ""
//!
//! [size]
//! min = 2                 # default 2: fewest connections the rule may keep
//! max = 25                # default 25
//! initial = 2             # default: min (fixed: max); opened at start, and
//!                         # the starting limit L of the adaptive rules
//!
//! [resize]
//! kind = "threshold"      # required: "fixed" | "threshold" | "demand" | "reserve"
//!                         # | "aimd" | "vegas" | "gradient" | "gradient2" | "envoy" | "flexy"
//! # threshold (the seed and its repair):
//! interval = "30s"        # default "30s" (reserve: "333ms", envoy: "100ms")
//! signal = "instant"      # default "instant"; "window_mean", "waiters", "oldest_wait"
//! scale_up = 0.8          # default 0.8 (instant / window_mean only): grow when above
//! scale_down = 0.3        # default 0.3: shrink when below (queue signals: the
//!                         # window mean, and only while nobody waits)
//! step = 1                # default 1: sets step_up and step_down together
//! step_up = 1             # default: step
//! step_down = 1           # default: step
//! waiters_above = 0       # signal "waiters" only, default 0: grow when waiters > pending creates + this
//! oldest_wait_above = "100ms" # signal "oldest_wait" only, default "100ms" (ours)
//! up_cooldown = "0s"      # default "0s": least time between two growths
//! down_cooldown = "0s"    # default "0s": least time since the last resize before a shrink
//! down_consecutive_checks = 1 # default 1: low ticks in a row before shrinking
//! # reserve (PgBouncer): the pool size is size.max - reserve_size
//! reserve_size = 0        # default 0 (reserve_pool_size)
//! reserve_timeout = "5s"  # default "5s" (reserve_pool_timeout)
//! # aimd
//! backoff_ratio = 0.9     # default 0.9, in [0.5, 1) (also gradient)
//! timeout = "5s"          # default "5s": a slower query counts as a drop
//! # vegas
//! smoothing = 1.0         # default: vegas 1.0, gradient 0.2, gradient2 0.2; in (0, 1]
//! probe_multiplier = 30   # default 30
//! seed = 0                # default 0: seed of the rule's jitter stream (vegas, gradient, envoy)
//! # gradient
//! tolerance = 2.0         # default: gradient 2.0, gradient2 1.5; >= 1
//! probe_interval = 1000   # default 1000 samples (+ up to as many again); "none" never probes
//! # gradient2
//! queue_size = 4          # default 4
//! long_window = 600       # default 600 samples
//! window = "1s"           # default "1s"
//! window_min_samples = 10 # default 10
//! min_rtt = "100us"       # default "100us": shorter queries are ignored
//! # envoy
//! percentile = 0.5        # default 0.5, in (0, 1]
//! min_rtt_interval = "60s" # default "60s"
//! jitter = 0.15           # default 0.15, in [0, 1)
//! request_count = 50      # default 50
//! min_concurrency = 3     # default 3
//! buffer = 0.25           # default 0.25
//! # flexy
//! max_overflow = 5        # default 5 (ours): size.initial + max_overflow <= size.max
//!
//! [acquire_timeout]
//! high = "10s"            # each default "30s" (HikariCP's connectionTimeout); "none" = wait forever
//! normal = "5s"
//! low = "2.5s"
//!
//! [queue]
//! max_waiters = 100000    # default 100000; arrivals beyond it are rejected
//! discipline = "strict"   # default "strict"; "aging", "shares"
//! aging_step = "1s"       # aging only, default "1s" (ours): one priority level per step waited
//! share_high = 0.6        # shares only, defaults 0.6 / 0.3 / 0.1 (ours); sum to 1
//! share_normal = 0.3
//! share_low = 0.1
//! drop_target = "none"    # default "none"; CoDel-style early drop (DBConnection queue_target 50ms)
//! drop_interval = "1s"    # with drop_target only, default "1s" (queue_interval)
//!
//! [connections]
//! min_idle = 0            # default 0: idle connections kept ready (<= size.max)
//! idle_timeout = "none"   # default "none": close connections idle longer (never below size.min)
//! housekeeping = "30s"    # default "30s": period of the idle reaper and min_idle refill
//! max_lifetime = "none"   # default "none": retire connections older than this
//! lifetime_jitter = 0.0   # with max_lifetime only, default 0, in [0, 1)
//! lifetime_stagger = false # with max_lifetime only, default false: retirements max_lifetime / size apart
//! max_uses = "none"       # default "none": close after this many uses (>= 1; 1 = no pool)
//! keepalive = "none"      # default "none": check a connection idle this long (< max_lifetime)
//! max_concurrent_creates = "none" # default "none" (unbounded); >= 1
//! create_interval = "none" # default "none": connects start at least this far apart (warm-up stagger)
//! creator = "background"  # default "background"; "caller" (the waiting request opens and waits)
//! idle_order = "lifo"     # default "lifo"; "fifo"
//! on_broken = "fail"      # default "fail"; "retry"
//!
//! [validation]
//! on_checkout = false     # default false: check an idle connection when it is handed out
//! bypass = "500ms"        # with on_checkout only, default "500ms": idle for less -> unchecked
//! timeout = "5s"          # with on_checkout only, default "5s"; below every acquire timeout
//!
//! [health_check]
//! interval = "none"       # default "none": check every idle connection this often
//! timeout = "5s"          # with interval only, default "5s"
//! retries = 3             # with interval only, default 3 (>= 1): failed checks before closing
//!
//! [create_backoff]
//! initial = "10ms"        # default "10ms" (HikariCP)
//! max = "5s"              # default "5s", >= initial
//! multiplier = 2.0        # default 2.0, >= 1
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::{Dur, DurOrNone};
use super::{content_hash, deserialize, Document, Locator, Override};
use crate::core::lifecycle::{
    Backoff, Creator, Discipline, HealthCheck, IdleOrder, Lifecycle, Lifetime, OnBroken, QueueDrop,
    Validation,
};
use crate::core::policy::{
    Aimd, AimdParams, Demand, Envoy, EnvoyParams, Fixed, Flexy, FlexyParams, Gradient, Gradient2,
    Gradient2Params, GradientParams, Policy, Reserve, ReserveParams, Threshold, ThresholdParams,
    ThresholdTuning, UtilizationSignal, Vegas, VegasParams,
};
use crate::core::pool::PoolConfig;
use crate::error::ConfigError;
use crate::time::SimDuration;

/// Top-level tables of a policy file; a `--set` key starting with one of
/// these applies to the policy.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "size",
    "resize",
    "acquire_timeout",
    "queue",
    "connections",
    "validation",
    "health_check",
    "create_backoff",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Shown in tables and summaries. Default: the file name without `.toml`.
    pub name: Option<String>,
    /// What the policy is and where its numbers come from. Default: empty.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub size: SizeRaw,
    pub resize: ResizeRaw,
    #[serde(default)]
    pub acquire_timeout: AcquireTimeoutRaw,
    #[serde(default)]
    pub queue: QueueRaw,
    #[serde(default)]
    pub connections: ConnectionsRaw,
    #[serde(default)]
    pub validation: ValidationRaw,
    #[serde(default)]
    pub health_check: HealthCheckRaw,
    #[serde(default)]
    pub create_backoff: BackoffRaw,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SizeRaw {
    /// Fewest connections the policy may keep. Default 2.
    #[serde(default = "default_min")]
    pub min: u32,
    /// Most connections the pool may hold. Default 25.
    #[serde(default = "default_max")]
    pub max: u32,
    /// Connections opened at start, and the starting limit of the adaptive
    /// rules. Default: `min` (for `fixed`: `max`).
    pub initial: Option<u32>,
}

fn default_min() -> u32 {
    2
}
fn default_max() -> u32 {
    25
}

impl Default for SizeRaw {
    fn default() -> Self {
        SizeRaw {
            min: default_min(),
            max: default_max(),
            initial: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResizeKind {
    /// The seed rule: utilization (or queue) thresholds on a timer.
    Threshold,
    /// Never resize: `size.min == size.max` connections.
    Fixed,
    /// Grow by one when waiters outnumber pending creates (HikariCP, bb8,
    /// sqlx, deadpool); shrink by the idle timeout.
    Demand,
    /// PgBouncer: pool size plus a reserve opened after a wait.
    Reserve,
    /// Netflix AIMD limit.
    Aimd,
    /// Netflix Vegas limit.
    Vegas,
    /// Netflix Gradient (v1) limit.
    Gradient,
    /// Netflix Gradient2 limit.
    Gradient2,
    /// Envoy's adaptive-concurrency gradient controller.
    Envoy,
    /// FlexyPool grow-on-timeout.
    Flexy,
}

impl ResizeKind {
    fn name(self) -> &'static str {
        match self {
            ResizeKind::Threshold => "threshold",
            ResizeKind::Fixed => "fixed",
            ResizeKind::Demand => "demand",
            ResizeKind::Reserve => "reserve",
            ResizeKind::Aimd => "aimd",
            ResizeKind::Vegas => "vegas",
            ResizeKind::Gradient => "gradient",
            ResizeKind::Gradient2 => "gradient2",
            ResizeKind::Envoy => "envoy",
            ResizeKind::Flexy => "flexy",
        }
    }
}

/// A count or "none" (no limit), e.g. `max_uses = 1`, `max_uses = "none"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CountOrNone(pub Option<u32>);

impl<'de> Deserialize<'de> for CountOrNone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CountOrNone;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number from 0 to 4294967295 or \"none\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CountOrNone, E> {
                u32::try_from(v)
                    .map(|n| CountOrNone(Some(n)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CountOrNone, E> {
                u32::try_from(v)
                    .map(|n| CountOrNone(Some(n)))
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CountOrNone, E> {
                if v.trim() == "none" {
                    Ok(CountOrNone(None))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for CountOrNone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(n) => s.serialize_u32(n),
            None => s.serialize_str("none"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeRaw {
    pub kind: ResizeKind,
    /// threshold, reserve, envoy: the tick period. Default "30s" (threshold),
    /// "333ms" (reserve: PgBouncer's janitor, 1/3 s), "100ms" (envoy).
    pub interval: Option<Dur>,
    /// threshold, utilization signals: grow when utilization > scale_up. Default 0.8.
    pub scale_up: Option<f64>,
    /// threshold: shrink when utilization < scale_down. Default 0.3.
    pub scale_down: Option<f64>,
    /// threshold: step_up and step_down at once. Default 1.
    pub step: Option<u32>,
    /// threshold: connections added per growth. Default: step.
    pub step_up: Option<u32>,
    /// threshold: connections removed per shrink. Default: step.
    pub step_down: Option<u32>,
    /// threshold: "instant" (active/open at the tick, the seed as written),
    /// "window_mean" (time-weighted over the interval), "waiters" (waiters
    /// against pending creates) or "oldest_wait". Default "instant".
    pub signal: Option<UtilizationSignal>,
    /// threshold, signal "waiters": grow when waiters > pending creates + this. Default 0.
    pub waiters_above: Option<u32>,
    /// threshold, signal "oldest_wait": grow when the oldest waiter waited
    /// longer. Default "100ms" (ours).
    pub oldest_wait_above: Option<Dur>,
    /// threshold: least time between two growths. Default "0s".
    pub up_cooldown: Option<Dur>,
    /// threshold: least time since the last resize before a shrink. Default "0s".
    pub down_cooldown: Option<Dur>,
    /// threshold: consecutive low ticks before shrinking. Default 1.
    pub down_consecutive_checks: Option<u32>,
    /// reserve: PgBouncer reserve_pool_size. Default 0.
    pub reserve_size: Option<u32>,
    /// reserve: PgBouncer reserve_pool_timeout. Default "5s".
    pub reserve_timeout: Option<Dur>,
    /// aimd, gradient: multiplicative decrease. Default 0.9.
    pub backoff_ratio: Option<f64>,
    /// aimd: a query slower than this counts as a drop. Default "5s".
    pub timeout: Option<Dur>,
    /// vegas (default 1.0), gradient (0.2), gradient2 (0.2).
    pub smoothing: Option<f64>,
    /// vegas: samples between probes per unit of limit. Default 30.
    pub probe_multiplier: Option<u32>,
    /// gradient (default 2.0), gradient2 (1.5).
    pub tolerance: Option<f64>,
    /// gradient: samples between probes; "none" never probes. Default 1000.
    pub probe_interval: Option<CountOrNone>,
    /// gradient2: headroom per update. Default 4.
    pub queue_size: Option<u32>,
    /// gradient2: samples of the long average. Default 600.
    pub long_window: Option<u32>,
    /// gradient2: window length. Default "1s".
    pub window: Option<Dur>,
    /// gradient2: fewest samples of a window. Default 10.
    pub window_min_samples: Option<u32>,
    /// gradient2: shorter queries are ignored. Default "100us".
    pub min_rtt: Option<Dur>,
    /// envoy: percentile of the window's query times. Default 0.5.
    pub percentile: Option<f64>,
    /// envoy: period of the minRTT measurement. Default "60s".
    pub min_rtt_interval: Option<Dur>,
    /// envoy: random extra delay of a measurement, fraction of the interval. Default 0.15.
    pub jitter: Option<f64>,
    /// envoy: samples of a minRTT measurement. Default 50.
    pub request_count: Option<u32>,
    /// envoy: the limit's floor and the measurement's pin. Default 3.
    pub min_concurrency: Option<u32>,
    /// envoy: minRTT headroom. Default 0.25.
    pub buffer: Option<f64>,
    /// flexy: connections beyond size.initial. Default 5 (ours).
    pub max_overflow: Option<u32>,
    /// vegas, gradient, envoy: seed of the rule's own random stream. Default 0.
    pub seed: Option<u64>,
}

use ResizeKind as K;

/// Which kinds each rule-specific `resize` key applies to.
const RESIZE_KEYS: &[(&str, &[ResizeKind])] = &[
    ("interval", &[K::Threshold, K::Reserve, K::Envoy]),
    ("scale_up", &[K::Threshold]),
    ("scale_down", &[K::Threshold]),
    ("step", &[K::Threshold]),
    ("step_up", &[K::Threshold]),
    ("step_down", &[K::Threshold]),
    ("signal", &[K::Threshold]),
    ("waiters_above", &[K::Threshold]),
    ("oldest_wait_above", &[K::Threshold]),
    ("up_cooldown", &[K::Threshold]),
    ("down_cooldown", &[K::Threshold]),
    ("down_consecutive_checks", &[K::Threshold]),
    ("reserve_size", &[K::Reserve]),
    ("reserve_timeout", &[K::Reserve]),
    ("backoff_ratio", &[K::Aimd, K::Gradient]),
    ("timeout", &[K::Aimd]),
    ("smoothing", &[K::Vegas, K::Gradient, K::Gradient2]),
    ("probe_multiplier", &[K::Vegas]),
    ("tolerance", &[K::Gradient, K::Gradient2]),
    ("probe_interval", &[K::Gradient]),
    ("queue_size", &[K::Gradient2]),
    ("long_window", &[K::Gradient2]),
    ("window", &[K::Gradient2]),
    ("window_min_samples", &[K::Gradient2]),
    ("min_rtt", &[K::Gradient2]),
    ("percentile", &[K::Envoy]),
    ("min_rtt_interval", &[K::Envoy]),
    ("jitter", &[K::Envoy]),
    ("request_count", &[K::Envoy]),
    ("min_concurrency", &[K::Envoy]),
    ("buffer", &[K::Envoy]),
    ("max_overflow", &[K::Flexy]),
    ("seed", &[K::Vegas, K::Gradient, K::Envoy]),
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireTimeoutRaw {
    /// Default "30s" (HikariCP's connectionTimeout); "none" waits forever.
    #[serde(default = "default_timeout")]
    pub high: DurOrNone,
    #[serde(default = "default_timeout")]
    pub normal: DurOrNone,
    #[serde(default = "default_timeout")]
    pub low: DurOrNone,
}

fn default_timeout() -> DurOrNone {
    DurOrNone(Some(SimDuration::from_secs(30)))
}

fn none() -> DurOrNone {
    DurOrNone(None)
}

impl Default for AcquireTimeoutRaw {
    fn default() -> Self {
        AcquireTimeoutRaw {
            high: default_timeout(),
            normal: default_timeout(),
            low: default_timeout(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum DisciplineKind {
    /// Oldest waiter of the highest non-empty priority.
    #[default]
    Strict,
    /// A waiter gains a priority level per `aging_step` waited.
    Aging,
    /// Reserved shares per priority with borrowing.
    Shares,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRaw {
    /// Waiters (all priorities) beyond which arrivals are rejected. Default 100000.
    #[serde(default = "default_max_waiters")]
    pub max_waiters: u32,
    /// "strict", "aging" or "shares". Default "strict".
    #[serde(default)]
    pub discipline: DisciplineKind,
    /// aging: one priority level per this long waited. Default "1s" (ours).
    pub aging_step: Option<Dur>,
    /// shares: fraction of the pool reserved for high priority. Default 0.6 (ours).
    pub share_high: Option<f64>,
    /// shares: for normal priority. Default 0.3 (ours).
    pub share_normal: Option<f64>,
    /// shares: for low priority. Default 0.1 (ours). The three sum to 1.
    pub share_low: Option<f64>,
    /// CoDel-style early drop: the wait every checkout of an interval must
    /// exceed before the queue counts as overloaded (DBConnection
    /// queue_target, 50 ms). Default "none" (off).
    #[serde(default = "none")]
    pub drop_target: DurOrNone,
    /// With drop_target: the interval (DBConnection queue_interval). Default "1s".
    pub drop_interval: Option<Dur>,
}

fn default_max_waiters() -> u32 {
    100_000
}

impl Default for QueueRaw {
    fn default() -> Self {
        QueueRaw {
            max_waiters: default_max_waiters(),
            discipline: DisciplineKind::Strict,
            aging_step: None,
            share_high: None,
            share_normal: None,
            share_low: None,
            drop_target: none(),
            drop_interval: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CreatorKind {
    #[default]
    Background,
    Caller,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IdleOrderKind {
    #[default]
    Lifo,
    Fifo,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnBrokenKind {
    #[default]
    Fail,
    Retry,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsRaw {
    /// Idle connections kept ready, opened as they are used (HikariCP
    /// minimumIdle, bb8 min_idle); at most size.max. Default 0.
    #[serde(default)]
    pub min_idle: u32,
    /// Close connections idle longer than this, never below size.min.
    /// Default "none".
    #[serde(default = "none")]
    pub idle_timeout: DurOrNone,
    /// Period of the idle reaper and the min_idle refill. Default "30s".
    #[serde(default = "default_housekeeping")]
    pub housekeeping: Dur,
    /// Retire connections older than this (HikariCP maxLifetime). Default "none".
    #[serde(default = "none")]
    pub max_lifetime: DurOrNone,
    /// With max_lifetime: each lifetime is max x (1 - u), u uniform in
    /// [0, jitter). In [0, 1). Default 0.
    pub lifetime_jitter: Option<f64>,
    /// With max_lifetime: space retirements max_lifetime / size apart
    /// (PgBouncer). Default false.
    pub lifetime_stagger: Option<bool>,
    /// Close a connection after this many uses (1 = a new connection per
    /// request). Default "none".
    #[serde(default)]
    pub max_uses: CountOrNone,
    /// Check a connection idle this long (HikariCP keepaliveTime); below
    /// max_lifetime. Default "none".
    #[serde(default = "none")]
    pub keepalive: DurOrNone,
    /// Connects in flight at once. Default "none" (unbounded).
    #[serde(default)]
    pub max_concurrent_creates: CountOrNone,
    /// Connects start at least this far apart: a warm-up stagger that keeps
    /// a fleet restarting together under a connect rate limit. Default
    /// "none".
    #[serde(default = "none")]
    pub create_interval: DurOrNone,
    /// "background" (a creator opens connections; any freed one serves the
    /// oldest waiter) or "caller" (the request opens one and waits for it:
    /// deadpool). Default "background".
    #[serde(default)]
    pub creator: CreatorKind,
    /// "lifo" (most recently used first) or "fifo". Default "lifo".
    #[serde(default)]
    pub idle_order: IdleOrderKind,
    /// A request handed a broken connection: "fail" or "retry". Default "fail".
    #[serde(default)]
    pub on_broken: OnBrokenKind,
}

fn default_housekeeping() -> Dur {
    Dur(SimDuration::from_secs(30))
}

impl Default for ConnectionsRaw {
    fn default() -> Self {
        ConnectionsRaw {
            min_idle: 0,
            idle_timeout: none(),
            housekeeping: default_housekeeping(),
            max_lifetime: none(),
            lifetime_jitter: None,
            lifetime_stagger: None,
            max_uses: CountOrNone(None),
            keepalive: none(),
            max_concurrent_creates: CountOrNone(None),
            create_interval: none(),
            creator: CreatorKind::Background,
            idle_order: IdleOrderKind::Lifo,
            on_broken: OnBrokenKind::Fail,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRaw {
    /// Check an idle connection when it is handed out. Default false.
    #[serde(default)]
    pub on_checkout: bool,
    /// With on_checkout: a connection idle for less is handed out unchecked
    /// (HikariCP's alive bypass). Default "500ms".
    pub bypass: Option<Dur>,
    /// With on_checkout: a slower check fails (HikariCP validationTimeout);
    /// below every acquire timeout. Default "5s".
    pub timeout: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckRaw {
    /// Check every idle connection this often. Default "none" (off).
    #[serde(default = "none")]
    pub interval: DurOrNone,
    /// With interval: a slower check fails. Default "5s".
    pub timeout: Option<Dur>,
    /// With interval: consecutive failed checks before the connection is
    /// closed and replaced (>= 1). Default 3.
    pub retries: Option<u32>,
}

impl Default for HealthCheckRaw {
    fn default() -> Self {
        HealthCheckRaw {
            interval: none(),
            timeout: None,
            retries: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffRaw {
    /// Delay after the first failed connect. Default "10ms" (HikariCP).
    #[serde(default = "default_backoff_initial")]
    pub initial: Dur,
    /// Cap of the delay (>= initial). Default "5s" (HikariCP).
    #[serde(default = "default_backoff_max")]
    pub max: Dur,
    /// Factor per consecutive failure (>= 1). Default 2.0.
    #[serde(default = "default_backoff_multiplier")]
    pub multiplier: f64,
}

fn default_backoff_initial() -> Dur {
    Dur(Backoff::default().initial)
}
fn default_backoff_max() -> Dur {
    Dur(Backoff::default().max)
}
fn default_backoff_multiplier() -> f64 {
    Backoff::default().multiplier
}

impl Default for BackoffRaw {
    fn default() -> Self {
        BackoffRaw {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            multiplier: default_backoff_multiplier(),
        }
    }
}

/// The sizing rule of a validated policy, with every parameter resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Sizing {
    Fixed,
    Threshold(ThresholdParams, ThresholdTuning),
    Demand,
    Reserve(ReserveParams),
    Aimd(AimdParams),
    Vegas(VegasParams),
    Gradient(GradientParams),
    Gradient2(Gradient2Params),
    Envoy(EnvoyParams),
    Flexy(FlexyParams),
}

impl Sizing {
    /// A fresh rule instance.
    pub fn build(&self) -> Box<dyn Policy> {
        match self {
            Sizing::Fixed => Box::new(Fixed),
            Sizing::Threshold(p, t) => Box::new(Threshold::with_tuning(*p, *t)),
            Sizing::Demand => Box::new(Demand),
            Sizing::Reserve(p) => Box::new(Reserve::new(*p)),
            Sizing::Aimd(p) => Box::new(Aimd::new(*p)),
            Sizing::Vegas(p) => Box::new(Vegas::new(*p)),
            Sizing::Gradient(p) => Box::new(Gradient::new(*p)),
            Sizing::Gradient2(p) => Box::new(Gradient2::new(*p)),
            Sizing::Envoy(p) => Box::new(Envoy::new(*p)),
            Sizing::Flexy(p) => Box::new(Flexy::new(*p)),
        }
    }
}

/// The coarse view of the rule that the tuner's default search space reads
/// (`experiments::tune::default_space`): the seed's thresholds for
/// `threshold`, `Fixed` (tune the pool's size) for every other kind.
/// [`PolicySpec::sizing`] is the rule that runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Fixed,
    Threshold(ThresholdParams),
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub name: String,
    pub description: String,
    pub pool: PoolConfig,
    /// The tuner's coarse view of the rule (see [`Rule`]).
    pub rule: Rule,
    /// The sizing rule that runs.
    pub sizing: Sizing,
    /// The effective config with every default filled in (for summaries).
    pub effective: serde_json::Value,
    /// Hash of `effective`.
    pub hash: String,
}

impl PolicySpec {
    /// A fresh policy instance (policies keep per-run state).
    pub fn build(&self) -> Box<dyn Policy> {
        self.sizing.build()
    }

    /// Loads and validates a policy document with overrides.
    pub fn load(
        doc: &Document,
        default_name: &str,
        overrides: &[Override],
    ) -> Result<Self, ConfigError> {
        let (raw, _table): (PolicyFile, _) = deserialize(doc, overrides)?;
        let loc = Locator::new(doc, overrides);
        validate(raw, default_name, &loc)
    }
}

fn positive(loc: &Locator, key: &str, d: SimDuration) -> Result<SimDuration, ConfigError> {
    if d.0 == 0 {
        return Err(loc.invalid(key, "expected a positive duration, got 0s"));
    }
    Ok(d)
}

fn at_least_one(loc: &Locator, key: &str, n: u32, unit: &str) -> Result<u32, ConfigError> {
    if n == 0 {
        return Err(loc.invalid(key, format!("expected at least 1{unit}, got 0")));
    }
    Ok(n)
}

/// `v` in [lo, hi] (or [lo, hi) when `hi_open`), else an error naming the range.
fn in_range(
    loc: &Locator,
    key: &str,
    v: f64,
    (lo, hi, hi_open): (f64, f64, bool),
    what: &str,
) -> Result<f64, ConfigError> {
    let ok = v >= lo && if hi_open { v < hi } else { v <= hi };
    if !ok {
        let close = if hi_open { ')' } else { ']' };
        return Err(loc.invalid(
            key,
            format!("expected {what} in [{lo}, {hi}{close}, got {v}"),
        ));
    }
    Ok(v)
}

fn in_unit_open_closed(loc: &Locator, key: &str, v: f64, what: &str) -> Result<f64, ConfigError> {
    if !(v > 0.0 && v <= 1.0) {
        return Err(loc.invalid(key, format!("expected {what} in (0, 1], got {v}")));
    }
    Ok(v)
}

fn at_least(loc: &Locator, key: &str, v: f64, lo: f64, what: &str) -> Result<f64, ConfigError> {
    if !(v >= lo && v.is_finite()) {
        return Err(loc.invalid(key, format!("expected {what} >= {lo}, got {v}")));
    }
    Ok(v)
}

fn only_with(loc: &Locator, key: &str, related: &str, condition: &str) -> ConfigError {
    loc.invalid_related(key, &[related], format!("only applies with {condition}"))
}

/// Rejects the first key in `keys` that is set: it only applies with `condition` on `needs`.
fn reject_if_set(
    loc: &Locator,
    keys: &[(&str, bool)],
    needs: &str,
    condition: &str,
) -> Result<(), ConfigError> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(only_with(loc, key, needs, condition)),
        None => Ok(()),
    }
}

/// A positive duration from an optional key, `default` when it is absent.
fn positive_or(
    loc: &Locator,
    key: &str,
    given: Option<Dur>,
    default: SimDuration,
) -> Result<SimDuration, ConfigError> {
    positive(loc, key, given.map_or(default, |d| d.0))
}

/// `resize.smoothing` (Vegas, Gradient, Gradient2): a weight in (0, 1].
fn resize_smoothing(r: &ResizeRaw, loc: &Locator, default: f64) -> Result<f64, ConfigError> {
    let v = r.smoothing.unwrap_or(default);
    in_unit_open_closed(loc, "resize.smoothing", v, "a smoothing weight")
}

/// `resize.tolerance` (Gradient, Gradient2): a latency ratio of at least 1.
fn resize_tolerance(r: &ResizeRaw, loc: &Locator, default: f64) -> Result<f64, ConfigError> {
    let v = r.tolerance.unwrap_or(default);
    at_least(loc, "resize.tolerance", v, 1.0, "a latency tolerance")
}

/// `resize.backoff_ratio` (AIMD, Gradient): a decrease factor in [0.5, 1), 0.9 by default [CL].
fn resize_backoff_ratio(r: &ResizeRaw, loc: &Locator) -> Result<f64, ConfigError> {
    let v = r.backoff_ratio.unwrap_or(0.9);
    in_range(
        loc,
        "resize.backoff_ratio",
        v,
        (0.5, 1.0, true),
        "a decrease factor",
    )
}

/// Rejects rule-specific `resize` keys set for a kind they do not apply to.
fn check_resize_keys(r: &ResizeRaw, loc: &Locator) -> Result<(), ConfigError> {
    // TOML leaves absent keys out and keeps NaN (JSON would turn it into null).
    let set = toml::Value::try_from(r).unwrap_or(toml::Value::Table(Default::default()));
    for (key, kinds) in RESIZE_KEYS {
        let given = set.get(key).is_some();
        if !given || kinds.contains(&r.kind) {
            continue;
        }
        let names: Vec<String> = kinds.iter().map(|k| format!("\"{}\"", k.name())).collect();
        let list = match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        let why = if r.kind == K::Fixed {
            "a fixed pool never resizes".to_string()
        } else {
            format!("this policy's kind is \"{}\"", r.kind.name())
        };
        return Err(loc.invalid_related(
            &format!("resize.{key}"),
            &["resize.kind"],
            format!("only applies to resize.kind = {list}; {why}"),
        ));
    }
    Ok(())
}

/// Validates the rule's keys, fills their defaults into `r` (for the
/// effective config) and returns the rule.
fn sizing(
    r: &mut ResizeRaw,
    size: &SizeRaw,
    initial: u32,
    loc: &Locator,
) -> Result<Sizing, ConfigError> {
    check_resize_keys(r, loc)?;
    let seed = r.seed.unwrap_or(0);
    Ok(match r.kind {
        K::Fixed => {
            if size.min != size.max {
                return Err(loc.invalid_related(
                    "size.min",
                    &["size.max", "resize.kind"],
                    format!(
                        "resize.kind = \"fixed\" needs size.min == size.max (the pool's one size), got min {} and max {}",
                        size.min, size.max
                    ),
                ));
            }
            Sizing::Fixed
        }
        K::Threshold => threshold(r, loc)?,
        K::Demand => Sizing::Demand,
        K::Reserve => {
            let interval =
                positive_or(loc, "resize.interval", r.interval, SimDuration(333_000_000))?;
            let reserve_size = r.reserve_size.unwrap_or(0);
            let floor = size.min.max(1);
            if reserve_size > size.max.saturating_sub(floor) {
                return Err(loc.invalid_related(
                    "resize.reserve_size",
                    &["size.max", "size.min"],
                    format!(
                        "expected reserve_size <= size.max - max(size.min, 1) = {} (the pool size is size.max - reserve_size), got {reserve_size}",
                        size.max.saturating_sub(floor)
                    ),
                ));
            }
            let reserve_timeout = r.reserve_timeout.map_or(SimDuration::from_secs(5), |d| d.0);
            r.interval = Some(Dur(interval));
            r.reserve_size = Some(reserve_size);
            r.reserve_timeout = Some(Dur(reserve_timeout));
            Sizing::Reserve(ReserveParams {
                pool_size: size.max - reserve_size,
                reserve_size,
                reserve_timeout,
                interval,
            })
        }
        K::Aimd => {
            let backoff_ratio = resize_backoff_ratio(r, loc)?;
            let timeout = positive_or(loc, "resize.timeout", r.timeout, SimDuration::from_secs(5))?;
            r.backoff_ratio = Some(backoff_ratio);
            r.timeout = Some(Dur(timeout));
            Sizing::Aimd(AimdParams {
                initial,
                backoff_ratio,
                timeout,
            })
        }
        K::Vegas => {
            let smoothing = resize_smoothing(r, loc, 1.0)?;
            let probe_multiplier = at_least_one(
                loc,
                "resize.probe_multiplier",
                r.probe_multiplier.unwrap_or(30),
                " sample per unit of limit",
            )?;
            r.smoothing = Some(smoothing);
            r.probe_multiplier = Some(probe_multiplier);
            r.seed = Some(seed);
            Sizing::Vegas(VegasParams {
                initial: initial as f64,
                smoothing,
                probe_multiplier,
                seed,
            })
        }
        K::Gradient => {
            let smoothing = resize_smoothing(r, loc, 0.2)?;
            let tolerance = resize_tolerance(r, loc, 2.0)?;
            let backoff_ratio = resize_backoff_ratio(r, loc)?;
            let probe_interval = r.probe_interval.unwrap_or(CountOrNone(Some(1000)));
            if probe_interval.0 == Some(0) {
                return Err(loc.invalid(
                    "resize.probe_interval",
                    "expected at least 1 sample or \"none\", got 0",
                ));
            }
            r.smoothing = Some(smoothing);
            r.tolerance = Some(tolerance);
            r.backoff_ratio = Some(backoff_ratio);
            r.probe_interval = Some(probe_interval);
            r.seed = Some(seed);
            Sizing::Gradient(GradientParams {
                initial: initial as f64,
                smoothing,
                tolerance,
                backoff_ratio,
                probe_interval: probe_interval.0,
                seed,
            })
        }
        K::Gradient2 => {
            let smoothing = resize_smoothing(r, loc, 0.2)?;
            let tolerance = resize_tolerance(r, loc, 1.5)?;
            let queue_size = r.queue_size.unwrap_or(4);
            let long_window = at_least_one(
                loc,
                "resize.long_window",
                r.long_window.unwrap_or(600),
                " sample",
            )?;
            let window = positive_or(loc, "resize.window", r.window, SimDuration::from_secs(1))?;
            let window_min_samples = at_least_one(
                loc,
                "resize.window_min_samples",
                r.window_min_samples.unwrap_or(10),
                " sample",
            )?;
            let min_rtt = r.min_rtt.map_or(SimDuration::from_nanos(100_000), |d| d.0);
            r.smoothing = Some(smoothing);
            r.tolerance = Some(tolerance);
            r.queue_size = Some(queue_size);
            r.long_window = Some(long_window);
            r.window = Some(Dur(window));
            r.window_min_samples = Some(window_min_samples);
            r.min_rtt = Some(Dur(min_rtt));
            Sizing::Gradient2(Gradient2Params {
                initial: initial as f64,
                smoothing,
                tolerance,
                queue_size,
                long_window,
                window,
                window_min_samples,
                min_rtt,
            })
        }
        K::Envoy => {
            let interval = positive_or(
                loc,
                "resize.interval",
                r.interval,
                SimDuration::from_millis(100),
            )?;
            let percentile = in_unit_open_closed(
                loc,
                "resize.percentile",
                r.percentile.unwrap_or(0.5),
                "a percentile",
            )?;
            let min_rtt_interval = positive_or(
                loc,
                "resize.min_rtt_interval",
                r.min_rtt_interval,
                SimDuration::from_secs(60),
            )?;
            let jitter = in_range(
                loc,
                "resize.jitter",
                r.jitter.unwrap_or(0.15),
                (0.0, 1.0, true),
                "a fraction of min_rtt_interval",
            )?;
            let request_count = at_least_one(
                loc,
                "resize.request_count",
                r.request_count.unwrap_or(50),
                " sample",
            )?;
            let min_concurrency = at_least_one(
                loc,
                "resize.min_concurrency",
                r.min_concurrency.unwrap_or(3),
                " connection",
            )?;
            let buffer = at_least(
                loc,
                "resize.buffer",
                r.buffer.unwrap_or(0.25),
                0.0,
                "a buffer",
            )?;
            r.interval = Some(Dur(interval));
            r.percentile = Some(percentile);
            r.min_rtt_interval = Some(Dur(min_rtt_interval));
            r.jitter = Some(jitter);
            r.request_count = Some(request_count);
            r.min_concurrency = Some(min_concurrency);
            r.buffer = Some(buffer);
            r.seed = Some(seed);
            Sizing::Envoy(EnvoyParams {
                initial,
                interval,
                percentile,
                min_rtt_interval,
                jitter,
                request_count,
                min_concurrency,
                buffer,
                seed,
            })
        }
        K::Flexy => {
            let max_overflow = r.max_overflow.unwrap_or(5);
            if initial as u64 + max_overflow as u64 > size.max as u64 {
                return Err(loc.invalid_related(
                    "resize.max_overflow",
                    &["size.max", "size.initial"],
                    format!(
                        "expected size.initial + max_overflow <= size.max, got {initial} + {max_overflow} > {}",
                        size.max
                    ),
                ));
            }
            r.max_overflow = Some(max_overflow);
            Sizing::Flexy(FlexyParams {
                base: initial,
                max_overflow,
            })
        }
    })
}

fn threshold(r: &mut ResizeRaw, loc: &Locator) -> Result<Sizing, ConfigError> {
    use UtilizationSignal as S;
    let interval = positive_or(
        loc,
        "resize.interval",
        r.interval,
        SimDuration::from_secs(30),
    )?;
    let signal = r.signal.unwrap_or(S::Instant);
    let queue_aware = signal.is_queue_aware();
    for (key, set, condition) in [
        (
            "resize.scale_up",
            queue_aware && r.scale_up.is_some(),
            "resize.signal = \"instant\" or \"window_mean\"; a queue signal grows on the queue",
        ),
        (
            "resize.waiters_above",
            signal != S::Waiters && r.waiters_above.is_some(),
            "resize.signal = \"waiters\"",
        ),
        (
            "resize.oldest_wait_above",
            signal != S::OldestWait && r.oldest_wait_above.is_some(),
            "resize.signal = \"oldest_wait\"",
        ),
    ] {
        reject_if_set(loc, &[(key, set)], "resize.signal", condition)?;
    }
    let scale_up = r.scale_up.unwrap_or(0.8);
    let scale_down = r.scale_down.unwrap_or(0.3);
    if !(0.0..=1.0).contains(&scale_up) {
        return Err(loc.invalid(
            "resize.scale_up",
            format!("expected a utilization fraction in [0, 1], got {scale_up}"),
        ));
    }
    if !(0.0..=1.0).contains(&scale_down) {
        return Err(loc.invalid(
            "resize.scale_down",
            format!("expected a utilization fraction in [0, 1], got {scale_down}"),
        ));
    }
    if !queue_aware && scale_down >= scale_up {
        return Err(loc.invalid_related(
            "resize.scale_down",
            &["resize.scale_up"],
            format!(
                "expected scale_down < scale_up (a band in which the pool holds), got scale_down {scale_down} >= scale_up {scale_up}"
            ),
        ));
    }
    if r.step.is_some() && (r.step_up.is_some() || r.step_down.is_some()) {
        return Err(loc.invalid_related(
            "resize.step",
            &["resize.step_up", "resize.step_down"],
            "expected either step (both directions) or step_up / step_down, not both",
        ));
    }
    let step = r.step.unwrap_or(1);
    if step == 0 {
        return Err(loc.invalid(
            "resize.step",
            "expected at least 1 connection per step, got 0",
        ));
    }
    let step_up = at_least_one(
        loc,
        "resize.step_up",
        r.step_up.unwrap_or(step),
        " connection per step",
    )?;
    let step_down = at_least_one(
        loc,
        "resize.step_down",
        r.step_down.unwrap_or(step),
        " connection per step",
    )?;
    let defaults = ThresholdTuning::default();
    let oldest_wait_above = positive_or(
        loc,
        "resize.oldest_wait_above",
        r.oldest_wait_above,
        defaults.oldest_wait_above,
    )?;
    let tuning = ThresholdTuning {
        step_down: Some(step_down),
        up_cooldown: r.up_cooldown.map_or(defaults.up_cooldown, |d| d.0),
        down_cooldown: r.down_cooldown.map_or(defaults.down_cooldown, |d| d.0),
        down_consecutive_checks: at_least_one(
            loc,
            "resize.down_consecutive_checks",
            r.down_consecutive_checks
                .unwrap_or(defaults.down_consecutive_checks),
            " check",
        )?,
        waiters_above: r.waiters_above.unwrap_or(defaults.waiters_above),
        oldest_wait_above,
    };
    r.interval = Some(Dur(interval));
    r.signal = Some(signal);
    r.scale_up = (!queue_aware).then_some(scale_up);
    r.scale_down = Some(scale_down);
    r.step = None;
    r.step_up = Some(step_up);
    r.step_down = Some(step_down);
    r.waiters_above = (signal == S::Waiters).then_some(tuning.waiters_above);
    r.oldest_wait_above = (signal == S::OldestWait).then_some(Dur(oldest_wait_above));
    r.up_cooldown = Some(Dur(tuning.up_cooldown));
    r.down_cooldown = Some(Dur(tuning.down_cooldown));
    r.down_consecutive_checks = Some(tuning.down_consecutive_checks);
    Ok(Sizing::Threshold(
        ThresholdParams {
            interval,
            scale_up,
            scale_down,
            step: step_up,
            signal,
        },
        tuning,
    ))
}

fn discipline(q: &mut QueueRaw, loc: &Locator) -> Result<Discipline, ConfigError> {
    let aging_only = [("queue.aging_step", q.aging_step.is_some())];
    let shares_only = [
        ("queue.share_high", q.share_high.is_some()),
        ("queue.share_normal", q.share_normal.is_some()),
        ("queue.share_low", q.share_low.is_some()),
    ];
    for (keys, kind) in [(&aging_only[..], "aging"), (&shares_only[..], "shares")] {
        let wanted = match kind {
            "aging" => DisciplineKind::Aging,
            _ => DisciplineKind::Shares,
        };
        if q.discipline == wanted {
            continue;
        }
        reject_if_set(
            loc,
            keys,
            "queue.discipline",
            &format!("queue.discipline = \"{kind}\""),
        )?;
    }
    Ok(match q.discipline {
        DisciplineKind::Strict => Discipline::Strict,
        DisciplineKind::Aging => {
            let step = positive_or(
                loc,
                "queue.aging_step",
                q.aging_step,
                SimDuration::from_secs(1),
            )?;
            q.aging_step = Some(Dur(step));
            Discipline::Aging { step }
        }
        DisciplineKind::Shares => {
            let mut shares = [0.6, 0.3, 0.1];
            for (i, (key, v)) in [
                ("queue.share_high", q.share_high),
                ("queue.share_normal", q.share_normal),
                ("queue.share_low", q.share_low),
            ]
            .into_iter()
            .enumerate()
            {
                let v = v.unwrap_or(shares[i]);
                shares[i] = in_range(loc, key, v, (0.0, 1.0, false), "a share of the pool")?;
            }
            let sum: f64 = shares.iter().sum();
            if (sum - 1.0).abs() > 1e-9 {
                return Err(loc.invalid_related(
                    "queue.share_high",
                    &["queue.share_normal", "queue.share_low"],
                    format!(
                        "expected share_high + share_normal + share_low = 1, got {} + {} + {} = {sum}",
                        shares[0], shares[1], shares[2]
                    ),
                ));
            }
            q.share_high = Some(shares[0]);
            q.share_normal = Some(shares[1]);
            q.share_low = Some(shares[2]);
            Discipline::Shares { shares }
        }
    })
}

fn queue_drop(q: &mut QueueRaw, loc: &Locator) -> Result<Option<QueueDrop>, ConfigError> {
    let Some(target) = q.drop_target.0 else {
        reject_if_set(
            loc,
            &[("queue.drop_interval", q.drop_interval.is_some())],
            "queue.drop_target",
            "queue.drop_target set (early drop is off)",
        )?;
        return Ok(None);
    };
    let target = positive(loc, "queue.drop_target", target)?;
    let interval = positive_or(
        loc,
        "queue.drop_interval",
        q.drop_interval,
        SimDuration::from_secs(1),
    )?;
    q.drop_interval = Some(Dur(interval));
    Ok(Some(QueueDrop { target, interval }))
}

fn lifecycle(
    raw: &mut PolicyFile,
    acquire_timeout: &[SimDuration; 3],
    loc: &Locator,
) -> Result<Lifecycle, ConfigError> {
    let max = raw.size.max;
    let c = &mut raw.connections;
    if c.min_idle > max {
        return Err(loc.invalid_related(
            "connections.min_idle",
            &["size.max"],
            format!("expected min_idle <= size.max = {max}, got {}", c.min_idle),
        ));
    }
    let idle_timeout = c
        .idle_timeout
        .0
        .map(|d| positive(loc, "connections.idle_timeout", d))
        .transpose()?;
    let housekeeping = positive(loc, "connections.housekeeping", c.housekeeping.0)?;
    let lifetime = match c.max_lifetime.0 {
        None => {
            reject_if_set(
                loc,
                &[
                    ("connections.lifetime_jitter", c.lifetime_jitter.is_some()),
                    ("connections.lifetime_stagger", c.lifetime_stagger.is_some()),
                ],
                "connections.max_lifetime",
                "connections.max_lifetime set (it is \"none\")",
            )?;
            None
        }
        Some(d) => {
            let max = positive(loc, "connections.max_lifetime", d)?;
            let jitter = in_range(
                loc,
                "connections.lifetime_jitter",
                c.lifetime_jitter.unwrap_or(0.0),
                (0.0, 1.0, true),
                "a fraction of max_lifetime",
            )?;
            let stagger = c.lifetime_stagger.unwrap_or(false);
            c.lifetime_jitter = Some(jitter);
            c.lifetime_stagger = Some(stagger);
            Some(Lifetime {
                max,
                jitter,
                stagger,
            })
        }
    };
    if c.max_uses.0 == Some(0) {
        return Err(loc.invalid(
            "connections.max_uses",
            "expected at least 1 use or \"none\", got 0",
        ));
    }
    let keepalive = match c.keepalive.0 {
        Some(k) => {
            let k = positive(loc, "connections.keepalive", k)?;
            if let Some(l) = lifetime {
                if k >= l.max {
                    return Err(loc.invalid_related(
                        "connections.keepalive",
                        &["connections.max_lifetime"],
                        format!(
                            "expected keepalive < max_lifetime = {} (a connection retires before it would be checked), got {k}",
                            l.max
                        ),
                    ));
                }
            }
            Some(k)
        }
        None => None,
    };
    if let Some(iv) = c.create_interval.0 {
        positive(loc, "connections.create_interval", iv)?;
    }
    if c.max_concurrent_creates.0 == Some(0) {
        return Err(loc.invalid(
            "connections.max_concurrent_creates",
            "expected at least 1 connect at a time or \"none\", got 0",
        ));
    }
    let v = &mut raw.validation;
    let validation = if !v.on_checkout {
        reject_if_set(
            loc,
            &[
                ("validation.bypass", v.bypass.is_some()),
                ("validation.timeout", v.timeout.is_some()),
            ],
            "validation.on_checkout",
            "validation.on_checkout = true",
        )?;
        None
    } else {
        let bypass = v.bypass.map_or(SimDuration::from_millis(500), |d| d.0);
        let timeout = positive_or(
            loc,
            "validation.timeout",
            v.timeout,
            SimDuration::from_secs(5),
        )?;
        for (name, t) in ["high", "normal", "low"].iter().zip(acquire_timeout) {
            if !t.is_infinite() && timeout >= *t {
                return Err(loc.invalid_related(
                    "validation.timeout",
                    &[&format!("acquire_timeout.{name}")],
                    format!(
                        "expected a validation timeout below every acquire timeout (HikariCP: validationTimeout < connectionTimeout), got {timeout} >= acquire_timeout.{name} = {t}"
                    ),
                ));
            }
        }
        v.bypass = Some(Dur(bypass));
        v.timeout = Some(Dur(timeout));
        Some(Validation { bypass, timeout })
    };
    let h = &mut raw.health_check;
    let health = match h.interval.0 {
        None => {
            reject_if_set(
                loc,
                &[
                    ("health_check.timeout", h.timeout.is_some()),
                    ("health_check.retries", h.retries.is_some()),
                ],
                "health_check.interval",
                "health_check.interval set (health checks are off)",
            )?;
            None
        }
        Some(interval) => {
            let interval = positive(loc, "health_check.interval", interval)?;
            let timeout = positive_or(
                loc,
                "health_check.timeout",
                h.timeout,
                SimDuration::from_secs(5),
            )?;
            let retries = at_least_one(
                loc,
                "health_check.retries",
                h.retries.unwrap_or(3),
                " failed check",
            )?;
            h.timeout = Some(Dur(timeout));
            h.retries = Some(retries);
            Some(HealthCheck {
                interval,
                timeout,
                retries,
            })
        }
    };
    let b = &raw.create_backoff;
    let initial = positive(loc, "create_backoff.initial", b.initial.0)?;
    if b.max.0 < initial {
        return Err(loc.invalid_related(
            "create_backoff.max",
            &["create_backoff.initial"],
            format!("expected max >= initial = {initial}, got {}", b.max.0),
        ));
    }
    let multiplier = at_least(
        loc,
        "create_backoff.multiplier",
        b.multiplier,
        1.0,
        "a growth factor",
    )?;
    let c = &raw.connections;
    let discipline = discipline(&mut raw.queue, loc)?;
    let queue_drop = queue_drop(&mut raw.queue, loc)?;
    Ok(Lifecycle {
        min_idle: c.min_idle,
        idle_timeout,
        housekeeping,
        lifetime,
        max_uses: c.max_uses.0,
        validation,
        keepalive,
        health,
        max_concurrent_creates: c.max_concurrent_creates.0,
        create_interval: c.create_interval.0,
        create_backoff: Backoff {
            initial,
            max: b.max.0,
            multiplier,
        },
        creator: match c.creator {
            CreatorKind::Background => Creator::Background,
            CreatorKind::Caller => Creator::Caller,
        },
        idle_order: match c.idle_order {
            IdleOrderKind::Lifo => IdleOrder::Lifo,
            IdleOrderKind::Fifo => IdleOrder::Fifo,
        },
        on_broken: match c.on_broken {
            OnBrokenKind::Fail => OnBroken::Fail,
            OnBrokenKind::Retry => OnBroken::Retry,
        },
        discipline,
        queue_drop,
    })
}

fn validate(
    mut raw: PolicyFile,
    default_name: &str,
    loc: &Locator,
) -> Result<PolicySpec, ConfigError> {
    let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
    if name.trim().is_empty() {
        return Err(loc.invalid("name", "expected a non-empty name"));
    }
    let s = &raw.size;
    if s.max == 0 {
        return Err(loc.invalid("size.max", "expected at least 1 connection, got 0"));
    }
    if s.min > s.max {
        return Err(loc.invalid_related(
            "size.min",
            &["size.max"],
            format!(
                "expected size.min <= size.max, got min {} > max {}",
                s.min, s.max
            ),
        ));
    }
    let kind = raw.resize.kind;
    let initial = s.initial.unwrap_or(if kind == ResizeKind::Fixed {
        s.max
    } else {
        s.min
    });
    if initial < s.min || initial > s.max {
        return Err(loc.invalid_related(
            "size.initial",
            &["size.min", "size.max"],
            format!(
                "expected a value in [size.min, size.max] = [{}, {}], got {initial}",
                s.min, s.max
            ),
        ));
    }
    let size = raw.size.clone();
    let sizing = sizing(&mut raw.resize, &size, initial, loc)?;
    let t = &raw.acquire_timeout;
    let mut acquire_timeout = [SimDuration::INFINITE; 3];
    for (i, (key, v)) in [("high", t.high), ("normal", t.normal), ("low", t.low)]
        .into_iter()
        .enumerate()
    {
        if let Some(d) = v.0 {
            if d.0 == 0 {
                return Err(loc.invalid(
                    &format!("acquire_timeout.{key}"),
                    "expected a positive duration or \"none\", got 0s",
                ));
            }
            acquire_timeout[i] = d;
        }
    }
    if raw.queue.max_waiters == 0 {
        return Err(loc.invalid("queue.max_waiters", "expected at least 1, got 0"));
    }
    let lifecycle = lifecycle(&mut raw, &acquire_timeout, loc)?;
    // Fill defaults so the summary records what actually ran.
    raw.name = Some(name.clone());
    raw.size.initial = Some(initial);
    let effective = serde_json::to_value(&raw).expect("policy serializes");
    let hash = content_hash(&effective);
    let rule = match &sizing {
        Sizing::Threshold(p, _) => Rule::Threshold(*p),
        _ => Rule::Fixed,
    };
    Ok(PolicySpec {
        name,
        description: raw.description.clone(),
        pool: PoolConfig {
            min: raw.size.min,
            max: raw.size.max,
            initial,
            acquire_timeout,
            max_waiters: raw.queue.max_waiters,
            lifecycle,
        },
        rule,
        sizing,
        effective,
        hash,
    })
}

/// Policies shipped in `policies/`, compiled into the binary so shipped
/// names work from any directory.
pub const SHIPPED: &[(&str, &str)] = &[
    ("seed-80-30", include_str!("../../policies/seed-80-30.toml")),
    (
        "seed-80-30-low10s",
        include_str!("../../policies/seed-80-30-low10s.toml"),
    ),
    (
        "seed-repaired",
        include_str!("../../policies/seed-repaired.toml"),
    ),
    ("fixed-10", include_str!("../../policies/fixed-10.toml")),
    ("fixed-25", include_str!("../../policies/fixed-25.toml")),
    (
        "hikari-fixed",
        include_str!("../../policies/hikari-fixed.toml"),
    ),
    (
        "hikari-elastic",
        include_str!("../../policies/hikari-elastic.toml"),
    ),
    (
        "pgbouncer-txn",
        include_str!("../../policies/pgbouncer-txn.toml"),
    ),
    (
        "pgbouncer-reserve",
        include_str!("../../policies/pgbouncer-reserve.toml"),
    ),
    (
        "bb8-default",
        include_str!("../../policies/bb8-default.toml"),
    ),
    (
        "sqlx-default",
        include_str!("../../policies/sqlx-default.toml"),
    ),
    (
        "deadpool-default",
        include_str!("../../policies/deadpool-default.toml"),
    ),
    ("no-pool", include_str!("../../policies/no-pool.toml")),
    ("aimd", include_str!("../../policies/aimd.toml")),
    ("vegas", include_str!("../../policies/vegas.toml")),
    ("gradient", include_str!("../../policies/gradient.toml")),
    ("gradient2", include_str!("../../policies/gradient2.toml")),
    (
        "envoy-gradient",
        include_str!("../../policies/envoy-gradient.toml"),
    ),
    (
        "codel-queue",
        include_str!("../../policies/codel-queue.toml"),
    ),
    (
        "flexy-overflow",
        include_str!("../../policies/flexy-overflow.toml"),
    ),
    (
        "priority-partitions",
        include_str!("../../policies/priority-partitions.toml"),
    ),
];
