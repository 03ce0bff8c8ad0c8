//! `summary.json`: the output contract. Everything else (tables, CSV,
//! Markdown, plots) derives from it. Field order is fixed by the structs,
//! maps are ordered, and wall-clock figures never appear here.

use serde::{Deserialize, Serialize};

use crate::core::metrics::{ClassMetrics, DistributionMs, Integrals};
use crate::core::request::Priority;
use crate::sim::RunOutcome;

/// Schema name and version written into every summary.
pub const SCHEMA: &str = "pooltune.summary/1";

/// A scenario: one workload and seed, one run per policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub pooltune_version: String,
    pub scenario: String,
    pub seed: u64,
    pub trace: TraceInfo,
    pub runs: Vec<RunSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceInfo {
    pub name: String,
    pub hash: String,
    pub source: String,
    pub description: String,
    /// The effective workload, defaults filled in.
    pub config: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub hash: String,
    pub source: String,
    pub description: String,
    /// The effective policy, defaults filled in.
    pub config: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub policy: PolicyInfo,
    pub trace_name: String,
    pub trace_hash: String,
    pub seed: u64,
    pub sim_duration_s: f64,
    pub events: u64,
    pub requests: RequestCounts,
    /// Arrival to connection handed out (served) or to timeout (timed out).
    pub acquire_wait_ms: DistributionMs,
    /// Mean acquire wait of served requests only.
    pub acquire_wait_served_mean_ms: f64,
    pub query_ms: DistributionMs,
    pub response_ms: DistributionMs,
    /// Fraction of arrivals that found no idle connection.
    pub p_wait: f64,
    /// Fraction of arrivals that timed out waiting.
    pub p_timeout: f64,
    pub by_priority: ByPriority,
    pub pool: PoolSummary,
    pub database: DatabaseSummary,
    pub health: HealthSummary,
    /// Faults injected during the run (none yet in this version).
    pub faults: Vec<serde_json::Value>,
}

/// arrived = completed + timed_out + failed + rejected + in_flight_at_end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub arrived: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub failed: u64,
    pub rejected: u64,
    pub in_flight_at_end: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ByPriority {
    pub high: ClassSummary,
    pub normal: ClassSummary,
    pub low: ClassSummary,
}

impl ByPriority {
    pub fn get(&self, p: Priority) -> &ClassSummary {
        match p {
            Priority::High => &self.high,
            Priority::Normal => &self.normal,
            Priority::Low => &self.low,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassSummary {
    pub requests: RequestCounts,
    pub p_wait: f64,
    pub p_timeout: f64,
    pub acquire_wait_ms: DistributionMs,
    pub acquire_wait_served_mean_ms: f64,
    pub query_ms: DistributionMs,
    pub response_ms: DistributionMs,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolSummary {
    /// Smallest and largest size (opening + open connections) seen.
    pub size_min: u32,
    pub size_max: u32,
    /// Time-weighted mean size.
    pub size_mean: f64,
    /// Time-weighted mean of established connections.
    pub open_mean: f64,
    pub active_mean: f64,
    pub waiting_mean: f64,
    /// Time-weighted active / open.
    pub utilization_mean: f64,
    pub target_final: u32,
    pub connections_opened: u64,
    pub connections_closed: ClosedByReason,
    pub connect_failed: u64,
    /// Integral of established connections over time.
    pub connection_seconds: f64,
    /// Total time spent opening connections.
    pub connect_time_s: f64,
    pub resize_events: u64,
    pub grow_events: u64,
    pub shrink_events: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedByReason {
    pub shrink: u64,
    pub end_of_run: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSummary {
    /// Connects refused because the server was at max_connections.
    pub connects_refused: u64,
    /// Most server backends at once.
    pub backends_max: u32,
}

/// The 0-100 health score; see [`health_score`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub score: f64,
    /// Fraction of arrivals that timed out, failed or were rejected.
    pub failure_fraction: f64,
    /// Mean over served requests of min(1, wait / that priority's timeout).
    pub wait_pressure: f64,
    pub checks_run: u64,
    pub checks_failed: u64,
}

/// The health score, 0 (bad) to 100 (good), from what was measured:
///
/// ```text
/// score = 100 - 60 * min(1, 10 * failure_fraction)
///             - 30 * wait_pressure
///             - 10 * checks_failed / checks_run      (0 when no checks ran)
/// ```
///
/// Failures weigh most: each 1 % of requests that time out, fail or are
/// rejected costs 6 points, and 10 % costs all 60. Wait pressure says how
/// close served requests came to their timeout (0 = never waited, 1 = all
/// waited until their deadline). Failed health checks cost the last 10.
pub fn health_score(
    failure_fraction: f64,
    wait_pressure: f64,
    checks_run: u64,
    checks_failed: u64,
) -> f64 {
    let checks = if checks_run == 0 {
        0.0
    } else {
        checks_failed as f64 / checks_run as f64
    };
    let s = 100.0
        - 60.0 * (10.0 * failure_fraction).min(1.0)
        - 30.0 * wait_pressure.min(1.0)
        - 10.0 * checks;
    // One decimal: the score is a summary, not a measurement.
    (s.clamp(0.0, 100.0) * 10.0).round() / 10.0
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

fn counts(m: &ClassMetrics) -> RequestCounts {
    RequestCounts {
        arrived: m.arrived,
        completed: m.completed,
        timed_out: m.timed_out,
        failed: m.failed,
        rejected: m.rejected,
        in_flight_at_end: m.arrived - m.completed - m.timed_out - m.failed - m.rejected,
    }
}

fn served_mean_ms(m: &ClassMetrics) -> f64 {
    let served = m.wait.count() - m.timed_out;
    if served == 0 {
        0.0
    } else {
        m.wait_served_sum_ns as f64 / served as f64 / 1e6
    }
}

fn class_summary(m: &ClassMetrics) -> ClassSummary {
    ClassSummary {
        requests: counts(m),
        p_wait: ratio(m.found_busy, m.arrived),
        p_timeout: ratio(m.timed_out, m.arrived),
        acquire_wait_ms: m.wait.summary_ms(),
        acquire_wait_served_mean_ms: served_mean_ms(m),
        query_ms: m.query.summary_ms(),
        response_ms: m.response.summary_ms(),
    }
}

/// Builds one run's summary from a finished simulation.
pub fn run_summary(
    outcome: &RunOutcome,
    policy: PolicyInfo,
    trace_name: &str,
    trace_hash: &str,
) -> RunSummary {
    let pool = &outcome.pool;
    let classes = pool.classes();
    let mut all = ClassMetrics::default();
    for m in classes {
        all.merge(m);
    }
    let c = pool.counters();
    let ig: &Integrals = pool.integrals();
    let span = ig.span_ns;
    let (size_min, size_max) = pool.size_range_seen();
    let served = all.wait.count() - all.timed_out;
    let failure_fraction = ratio(all.timed_out + all.failed + all.rejected, all.arrived);
    let wait_pressure = if served == 0 {
        0.0
    } else {
        all.wait_pressure_sum / served as f64
    };
    RunSummary {
        policy,
        trace_name: trace_name.to_string(),
        trace_hash: trace_hash.to_string(),
        seed: outcome.seed,
        sim_duration_s: outcome.end.as_secs_f64(),
        events: outcome.events,
        requests: counts(&all),
        acquire_wait_ms: all.wait.summary_ms(),
        acquire_wait_served_mean_ms: served_mean_ms(&all),
        query_ms: all.query.summary_ms(),
        response_ms: all.response.summary_ms(),
        p_wait: ratio(all.found_busy, all.arrived),
        p_timeout: ratio(all.timed_out, all.arrived),
        by_priority: ByPriority {
            high: class_summary(&classes[0]),
            normal: class_summary(&classes[1]),
            low: class_summary(&classes[2]),
        },
        pool: PoolSummary {
            size_min,
            size_max,
            size_mean: Integrals::mean(ig.size, span),
            open_mean: Integrals::mean(ig.open, span),
            active_mean: Integrals::mean(ig.active, span),
            waiting_mean: Integrals::mean(ig.waiting, span),
            utilization_mean: ig.utilization(),
            target_final: pool.target(),
            connections_opened: c.opened,
            connections_closed: ClosedByReason {
                shrink: c.closed_shrink,
                end_of_run: c.closed_end_of_run,
            },
            connect_failed: c.connect_failed,
            connection_seconds: ig.open as f64 / 1e9,
            connect_time_s: c.connect_time_ns as f64 / 1e9,
            resize_events: c.resize_events,
            grow_events: c.grow_events,
            shrink_events: c.shrink_events,
        },
        database: DatabaseSummary {
            connects_refused: outcome.db_refused,
            backends_max: outcome.db_backends_max,
        },
        health: HealthSummary {
            score: health_score(failure_fraction, wait_pressure, 0, 0),
            failure_fraction,
            wait_pressure,
            checks_run: 0,
            checks_failed: 0,
        },
        faults: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_score_pins_its_formula() {
        assert_eq!(health_score(0.0, 0.0, 0, 0), 100.0);
        // 1 % failures cost 6 points.
        assert_eq!(health_score(0.01, 0.0, 0, 0), 94.0);
        // 10 % or more costs all 60.
        assert_eq!(health_score(0.5, 0.0, 0, 0), 40.0);
        // Waiting half the timeout on average costs 15.
        assert_eq!(health_score(0.0, 0.5, 0, 0), 85.0);
        // Failed checks cost up to 10.
        assert_eq!(health_score(0.0, 0.0, 10, 5), 95.0);
        assert_eq!(health_score(1.0, 1.0, 1, 1), 0.0);
    }

    #[test]
    fn health_score_falls_as_things_get_worse() {
        let mut last = 101.0;
        for i in 0..=20 {
            let f = i as f64 / 100.0;
            let s = health_score(f, f, 100, i);
            assert!(s <= last && (0.0..=100.0).contains(&s));
            last = s;
        }
    }
}
