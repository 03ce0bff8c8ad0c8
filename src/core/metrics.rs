//! The metrics recorder: HDR histograms for acquire wait, query and response
//! time per priority, counters, and time-weighted integrals. Constant memory:
//! no per-request record is ever kept.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::core::request::Priority;
use crate::time::{SimDuration, SimTime, NANOS_PER_S};

/// Largest value a histogram tracks exactly (1 hour, in ns); larger values
/// are recorded as this value (and counted in `max` as themselves).
pub const HISTOGRAM_MAX_NS: u64 = 3600 * NANOS_PER_S;
/// Significant decimal digits of every histogram (0.1 % relative precision).
pub const HISTOGRAM_SIGFIG: u8 = 3;

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, HISTOGRAM_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// One latency distribution: an HDR histogram plus exact sum and max.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hist: new_histogram(),
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl Latency {
    #[inline]
    pub fn record(&mut self, d: SimDuration) {
        let ns = d.as_nanos();
        self.hist.saturating_record(ns);
        self.sum_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Exact mean (from the running sum, not the histogram), in ns.
    pub fn mean_ns(&self) -> f64 {
        if self.count() == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count() as f64
        }
    }

    pub fn sum_ns(&self) -> u128 {
        self.sum_ns
    }

    /// The value at quantile `q` (0.1 % precision), in ns.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count() == 0 {
            0
        } else {
            self.hist.value_at_quantile(q).min(self.max_ns)
        }
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// Adds another distribution into this one.
    pub fn merge(&mut self, other: &Latency) {
        self.hist
            .add(&other.hist)
            .expect("histograms share bounds, so adding cannot fail");
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The summary form written to `summary.json`, in milliseconds.
    pub fn summary_ms(&self) -> DistributionMs {
        let ms = |ns: u64| ns as f64 / 1e6;
        DistributionMs {
            count: self.count(),
            mean: self.mean_ns() / 1e6,
            p50: ms(self.quantile_ns(0.50)),
            p90: ms(self.quantile_ns(0.90)),
            p99: ms(self.quantile_ns(0.99)),
            p999: ms(self.quantile_ns(0.999)),
            max: ms(self.max_ns),
        }
    }
}

/// A distribution as written in `summary.json` (all values in ms).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct DistributionMs {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Counters and distributions for one priority class.
#[derive(Clone, Debug, Default)]
pub struct ClassMetrics {
    pub arrived: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Arrivals that found no idle connection (they waited, or were rejected).
    pub found_busy: u64,
    /// Acquire wait of every request that left the queue: served (arrival to
    /// connection handed out) and timed out (arrival to timeout).
    pub wait: Latency,
    /// Acquire wait of served requests only.
    pub wait_served_sum_ns: u128,
    /// Time holding the connection (the query), completed requests.
    pub query: Latency,
    /// Arrival to completion, completed requests.
    pub response: Latency,
    /// Sum over served requests of wait / acquire timeout, capped at 1 (for
    /// the health score's wait-pressure term).
    pub wait_pressure_sum: f64,
}

impl ClassMetrics {
    pub fn merge(&mut self, o: &ClassMetrics) {
        self.arrived += o.arrived;
        self.completed += o.completed;
        self.timed_out += o.timed_out;
        self.failed += o.failed;
        self.rejected += o.rejected;
        self.found_busy += o.found_busy;
        self.wait.merge(&o.wait);
        self.wait_served_sum_ns += o.wait_served_sum_ns;
        self.query.merge(&o.query);
        self.response.merge(&o.response);
        self.wait_pressure_sum += o.wait_pressure_sum;
    }
}

/// Why a connection was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The policy shrank the pool.
    Shrink,
    /// The run ended (connections still open are closed at the end).
    EndOfRun,
    /// The connection broke: a query, a check or a validation on it failed,
    /// or the driver learnt that the server closed it.
    Broken,
    /// Idle longer than the idle timeout (reaped).
    Idle,
    /// Older than its (jittered) maximum lifetime.
    Lifetime,
    /// Used `max_uses` times (1 = the no-pool baseline).
    MaxUses,
}

/// Pool-wide counters.
#[derive(Clone, Debug, Default)]
pub struct PoolCounters {
    pub opened: u64,
    pub connect_failed: u64,
    pub closed_shrink: u64,
    pub closed_end_of_run: u64,
    /// Connections closed because they broke ([`CloseReason::Broken`]).
    pub closed_broken: u64,
    pub closed_idle: u64,
    pub closed_lifetime: u64,
    pub closed_max_uses: u64,
    /// Connects retried after a failure (each after its backoff delay).
    pub connect_retries: u64,
    /// Health checks and keepalives run on idle connections, and how many failed.
    pub checks: u64,
    pub checks_failed: u64,
    /// Validations on checkout, and how many found the connection broken.
    pub validations: u64,
    pub validations_failed: u64,
    /// Requests handed a broken connection that went back to the queue
    /// (`on_broken = "retry"`).
    pub broken_retries: u64,
    /// Total time spent connecting (successful and failed connects).
    pub connect_time_ns: u128,
    /// Policy decisions that changed the target size.
    pub resize_events: u64,
    pub grow_events: u64,
    pub shrink_events: u64,
}

impl PoolCounters {
    /// Connections closed for any reason.
    pub fn closed(&self) -> u64 {
        self.closed_shrink
            + self.closed_end_of_run
            + self.closed_broken
            + self.closed_idle
            + self.closed_lifetime
            + self.closed_max_uses
    }
}

/// Time integrals (value x nanoseconds), updated at every state change.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Integrals {
    /// Connections counted in the pool size (opening + open).
    pub size: u128,
    /// Established connections (idle + active): connection-nanoseconds.
    pub open: u128,
    pub active: u128,
    pub waiting: u128,
    pub span_ns: u128,
}

impl Integrals {
    pub fn minus(&self, earlier: &Integrals) -> Integrals {
        Integrals {
            size: self.size - earlier.size,
            open: self.open - earlier.open,
            active: self.active - earlier.active,
            waiting: self.waiting - earlier.waiting,
            span_ns: self.span_ns - earlier.span_ns,
        }
    }

    /// Mean utilization: time-weighted active over time-weighted open.
    pub fn utilization(&self) -> f64 {
        if self.open == 0 {
            0.0
        } else {
            self.active as f64 / self.open as f64
        }
    }

    pub fn mean(v: u128, span_ns: u128) -> f64 {
        if span_ns == 0 {
            0.0
        } else {
            v as f64 / span_ns as f64
        }
    }
}

/// Counts that a time-series row or a policy window reports as deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowCounts {
    pub arrived: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub rejected: u64,
    /// Requests failed (query errors, failed caller connects).
    pub failed: u64,
    /// Connections opened, and closed for any reason.
    pub opened: u64,
    pub closed: u64,
    /// Failed health checks, keepalives and validations.
    pub checks_failed: u64,
}

impl WindowCounts {
    pub fn minus(&self, e: &WindowCounts) -> WindowCounts {
        WindowCounts {
            arrived: self.arrived - e.arrived,
            completed: self.completed - e.completed,
            timed_out: self.timed_out - e.timed_out,
            rejected: self.rejected - e.rejected,
            failed: self.failed - e.failed,
            opened: self.opened - e.opened,
            closed: self.closed - e.closed,
            checks_failed: self.checks_failed - e.checks_failed,
        }
    }
}

/// A mark: integrals and counters at a point in time, to compute window deltas.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mark {
    pub at: SimTime,
    pub integrals: Integrals,
    pub counts: WindowCounts,
}

/// One row of the time series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// End of the window, seconds since the start of the run.
    pub t_s: f64,
    pub window_s: f64,
    pub target: u32,
    pub size: u32,
    pub opening: u32,
    pub idle: u32,
    pub active: u32,
    pub waiting_high: u32,
    pub waiting_normal: u32,
    pub waiting_low: u32,
    /// Time-weighted mean over the window.
    pub size_mean: f64,
    pub active_mean: f64,
    pub waiting_mean: f64,
    pub utilization: f64,
    pub arrival_rate_per_s: f64,
    pub completed: u64,
    pub timed_out: u64,
    pub rejected: u64,
    /// Requests failed in the window (query or connect errors).
    pub failed: u64,
    /// Connections opened and closed (any reason) in the window.
    pub opened: u64,
    pub closed: u64,
    /// Health checks, keepalives and validations that failed in the window.
    pub checks_failed: u64,
    /// Set by the simulator: connects the database refused in the window,
    /// and faults active at the end of the window.
    pub db_refused: u64,
    pub faults_active: u32,
}

impl Sample {
    /// Adds another pool's row to this one (several pools as one row):
    /// sizes, means, rates and window counts add up; `t_s`, `window_s`,
    /// `utilization` (the caller weights it by size), `db_refused` and
    /// `faults_active` are left to the caller.
    pub fn add(&mut self, t: &Sample) {
        self.target += t.target;
        self.size += t.size;
        self.opening += t.opening;
        self.idle += t.idle;
        self.active += t.active;
        self.waiting_high += t.waiting_high;
        self.waiting_normal += t.waiting_normal;
        self.waiting_low += t.waiting_low;
        self.size_mean += t.size_mean;
        self.active_mean += t.active_mean;
        self.waiting_mean += t.waiting_mean;
        self.arrival_rate_per_s += t.arrival_rate_per_s;
        self.completed += t.completed;
        self.timed_out += t.timed_out;
        self.rejected += t.rejected;
        self.failed += t.failed;
        self.opened += t.opened;
        self.closed += t.closed;
        self.checks_failed += t.checks_failed;
    }
}

/// Receives time-series rows as the run produces them (streamed, so memory
/// does not grow with the run's length).
pub trait SampleSink {
    fn record(&mut self, sample: &Sample);
    /// Called every few tens of thousands of events with the simulated time
    /// reached (for progress bars); ignored by default.
    fn progress(&mut self, _now: SimTime, _events: u64) {}
}

/// Discards samples (benchmarks).
pub struct NullSink;
impl SampleSink for NullSink {
    fn record(&mut self, _: &Sample) {}
}

/// Keeps samples in memory (tests, short runs).
impl SampleSink for Vec<Sample> {
    fn record(&mut self, sample: &Sample) {
        self.push(sample.clone());
    }
}

/// Per-priority array helper.
pub fn by_priority<T>(f: impl Fn(Priority) -> T) -> [T; 3] {
    [f(Priority::High), f(Priority::Normal), f(Priority::Low)]
}
