//! `summary.json`: the output contract. Everything else (tables, CSV,
//! Markdown, plots) derives from it. Field order is fixed by the structs,
//! maps are ordered, and wall-clock figures never appear here.

use serde::{Deserialize, Serialize};

use crate::core::metrics::{ClassMetrics, DistributionMs, Integrals, PoolCounters};
use crate::core::pool::Pool;
use crate::core::request::Priority;
use crate::sim::{DbStats, FaultRecord, RunOutcome, WorldOutcome};
use crate::time::SimDuration;

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
    /// Every fault occurrence of the run, in the order they began (see
    /// `sim::fault` for the recovery's definition).
    pub faults: Vec<FaultRecord>,
    /// Application instances (each its own pool). Totals above are over
    /// all of them. Default 1.
    #[serde(default = "one")]
    pub instances: u32,
    /// One row per instance when there are several (omitted for one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_instance: Vec<InstanceSummary>,
}

fn one() -> u32 {
    1
}

/// One application instance of a run with several.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub instance: u32,
    pub requests: RequestCounts,
    pub size_min: u32,
    pub size_max: u32,
    pub size_mean: f64,
    pub connections_opened: u64,
    pub connect_failed: u64,
    /// Its connects the database refused (max_connections, server down).
    pub connects_refused: u64,
    pub connection_seconds: f64,
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

/// With several instances, sizes and counts are sums over instances
/// (`size_min`/`size_max`: the sums of each instance's smallest and largest).
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
    /// Connection overhead: connect time spent per completed request, in
    /// ms (`connect_time_s` / completed). What a pool saves against opening
    /// a connection per request (the no-pool policy).
    #[serde(default)]
    pub connect_time_per_request_ms: f64,
    pub resize_events: u64,
    pub grow_events: u64,
    pub shrink_events: u64,
    /// Connects retried after a failure (create backoff).
    #[serde(default)]
    pub connect_retries: u64,
    /// Health checks and keepalives run on idle connections, and failed.
    #[serde(default)]
    pub checks: u64,
    #[serde(default)]
    pub checks_failed: u64,
    /// Validations on checkout, and how many found the connection broken.
    #[serde(default)]
    pub validations: u64,
    #[serde(default)]
    pub validations_failed: u64,
    /// Requests handed a broken connection that went back to the queue.
    #[serde(default)]
    pub broken_retries: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedByReason {
    pub shrink: u64,
    pub end_of_run: u64,
    #[serde(default)]
    pub idle: u64,
    #[serde(default)]
    pub lifetime: u64,
    #[serde(default)]
    pub max_uses: u64,
    #[serde(default)]
    pub broken: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSummary {
    /// Connects refused because the server was at max_connections (and,
    /// in simulated runs, because it was down: `connects_refused_down`).
    pub connects_refused: u64,
    /// Most server backends at once.
    pub backends_max: u32,
    /// Connects refused while the server was down (restart fault).
    #[serde(default)]
    pub connects_refused_down: u64,
    /// Connects that failed (connect_failures fault).
    #[serde(default)]
    pub connect_errors: u64,
    /// Backends broken by faults.
    #[serde(default)]
    pub backends_broken: u64,
    /// Queries failed by the database: running when their backend broke,
    /// or started on a broken backend.
    #[serde(default)]
    pub queries_failed: u64,
}

/// The 0-100 health score; see [`health_score`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub score: f64,
    /// Fraction of arrivals that timed out, failed or were rejected.
    pub failure_fraction: f64,
    /// Mean over served requests of min(1, wait / that priority's timeout).
    pub wait_pressure: f64,
    /// Checks of every kind (health checks, keepalives, validations) run,
    /// and failed.
    pub checks_run: u64,
    pub checks_failed: u64,
}

/// The health score, 0 (bad) to 100 (good), from what was measured:
///
/// ```text
/// failure_fraction = (timed_out + failed + rejected) / arrived
/// wait_pressure    = mean over served requests of min(1, wait / acquire timeout of its priority)
///                    (a priority without a timeout adds 0)
/// score = 100 - 60 * min(1, 10 * failure_fraction)
///             - 30 * min(1, wait_pressure)
///             - 10 * checks_failed / checks_run      (0 when no checks ran)
/// clamped to [0, 100], rounded to one decimal
/// ```
///
/// Lost requests weigh most, whatever the way they were lost (timed out
/// waiting, failed on a broken connection or connect, rejected by a full
/// queue): each 1 % of arrivals costs 6 points, and 10 % costs all 60. Wait
/// pressure says how close served requests came to their deadline (0 =
/// never waited, 1 = all waited until it): up to 30. Failed checks
/// (health checks, keepalives, validations: broken connections found
/// before a request was handed one) cost the last 10, in proportion.
pub fn health_score(
    failure_fraction: f64,
    wait_pressure: f64,
    checks_run: u64,
    checks_failed: u64,
) -> f64 {
    let checks = if checks_run == 0 {
        0.0
    } else {
        (checks_failed as f64 / checks_run as f64).min(1.0)
    };
    let s = 100.0
        - 60.0 * (10.0 * failure_fraction).clamp(0.0, 1.0)
        - 30.0 * wait_pressure.clamp(0.0, 1.0)
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

/// Sums pool counters (several instances).
fn add_counters(a: &mut PoolCounters, c: &PoolCounters) {
    a.opened += c.opened;
    a.connect_failed += c.connect_failed;
    a.closed_shrink += c.closed_shrink;
    a.closed_end_of_run += c.closed_end_of_run;
    a.closed_broken += c.closed_broken;
    a.closed_idle += c.closed_idle;
    a.closed_lifetime += c.closed_lifetime;
    a.closed_max_uses += c.closed_max_uses;
    a.connect_retries += c.connect_retries;
    a.checks += c.checks;
    a.checks_failed += c.checks_failed;
    a.validations += c.validations;
    a.validations_failed += c.validations_failed;
    a.broken_retries += c.broken_retries;
    a.connect_time_ns += c.connect_time_ns;
    a.resize_events += c.resize_events;
    a.grow_events += c.grow_events;
    a.shrink_events += c.shrink_events;
}

fn add_integrals(a: &mut Integrals, i: &Integrals) {
    a.size += i.size;
    a.open += i.open;
    a.active += i.active;
    a.waiting += i.waiting;
    // Every instance covers the same span.
    a.span_ns = a.span_ns.max(i.span_ns);
}

/// What the database side reports, whichever driver ran.
struct DbView<'a> {
    refused: u64,
    backends_max: u32,
    stats: Option<&'a DbStats>,
}

/// Builds one run's summary from a finished single-pool run (simulated
/// with [`crate::sim::simulate`], or live).
pub fn run_summary(
    outcome: &RunOutcome,
    policy: PolicyInfo,
    trace_name: &str,
    trace_hash: &str,
) -> RunSummary {
    let db = DbView {
        refused: outcome.db_refused,
        backends_max: outcome.db_backends_max,
        stats: None,
    };
    let pools = std::slice::from_ref(&outcome.pool);
    build(
        pools,
        outcome.end,
        outcome.events,
        outcome.seed,
        db,
        &[],
        policy,
        trace_name,
        trace_hash,
    )
}

/// Builds one run's summary from a finished world: totals over instances,
/// one row per instance when there are several, the database's counters
/// and the faults.
pub fn world_summary(
    outcome: &WorldOutcome,
    policy: PolicyInfo,
    trace_name: &str,
    trace_hash: &str,
) -> RunSummary {
    let st = &outcome.db;
    let db = DbView {
        refused: st.refused,
        backends_max: st.backends_max,
        stats: Some(st),
    };
    let mut s = build(
        &outcome.pools,
        outcome.end,
        outcome.events,
        outcome.seed,
        db,
        &outcome.faults,
        policy,
        trace_name,
        trace_hash,
    );
    if outcome.pools.len() > 1 {
        s.per_instance = outcome
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut all = ClassMetrics::default();
                for m in p.classes() {
                    all.merge(m);
                }
                let (size_min, size_max) = p.size_range_seen();
                let ig = p.integrals();
                InstanceSummary {
                    instance: i as u32,
                    requests: counts(&all),
                    size_min,
                    size_max,
                    size_mean: Integrals::mean(ig.size, ig.span_ns),
                    connections_opened: p.counters().opened,
                    connect_failed: p.counters().connect_failed,
                    connects_refused: st.refused_by_instance.get(i).copied().unwrap_or(0),
                    connection_seconds: ig.open as f64 / 1e9,
                }
            })
            .collect();
    }
    s
}

#[allow(clippy::too_many_arguments)]
fn build(
    pools: &[Pool<SimDuration>],
    end: crate::time::SimTime,
    events: u64,
    seed: u64,
    db: DbView,
    faults: &[FaultRecord],
    policy: PolicyInfo,
    trace_name: &str,
    trace_hash: &str,
) -> RunSummary {
    let mut classes: [ClassMetrics; 3] = Default::default();
    let mut counters = PoolCounters::default();
    let mut integrals = Integrals::default();
    let (mut size_min, mut size_max, mut target_final) = (0, 0, 0);
    for p in pools {
        for (a, m) in classes.iter_mut().zip(p.classes()) {
            a.merge(m);
        }
        add_counters(&mut counters, p.counters());
        add_integrals(&mut integrals, p.integrals());
        let (lo, hi) = p.size_range_seen();
        size_min += lo;
        size_max += hi;
        target_final += p.target();
    }
    let classes = &classes;
    let mut all = ClassMetrics::default();
    for m in classes {
        all.merge(m);
    }
    let c = &counters;
    let ig = &integrals;
    let span = ig.span_ns;
    // Checks: the database saw every check a simulated pool ran; a live
    // pool counts its own.
    let (checks_run, checks_failed) = match db.stats {
        Some(st) => (st.checks, st.checks_failed),
        None => (
            c.checks + c.validations,
            c.checks_failed + c.validations_failed,
        ),
    };
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
        seed,
        sim_duration_s: end.as_secs_f64(),
        events,
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
            target_final,
            connections_opened: c.opened,
            connections_closed: ClosedByReason {
                shrink: c.closed_shrink,
                end_of_run: c.closed_end_of_run,
                idle: c.closed_idle,
                lifetime: c.closed_lifetime,
                max_uses: c.closed_max_uses,
                broken: c.closed_broken,
            },
            connect_failed: c.connect_failed,
            connection_seconds: ig.open as f64 / 1e9,
            connect_time_s: c.connect_time_ns as f64 / 1e9,
            connect_time_per_request_ms: if all.completed == 0 {
                0.0
            } else {
                c.connect_time_ns as f64 / 1e6 / all.completed as f64
            },
            resize_events: c.resize_events,
            grow_events: c.grow_events,
            shrink_events: c.shrink_events,
            connect_retries: c.connect_retries,
            checks: c.checks,
            checks_failed: c.checks_failed,
            validations: c.validations,
            validations_failed: c.validations_failed,
            broken_retries: c.broken_retries,
        },
        database: DatabaseSummary {
            connects_refused: db.refused,
            backends_max: db.backends_max,
            connects_refused_down: db.stats.map_or(0, |s| s.refused_down),
            connect_errors: db.stats.map_or(0, |s| s.connect_errors),
            backends_broken: db.stats.map_or(0, |s| s.broken),
            queries_failed: db.stats.map_or(0, |s| s.queries_failed),
        },
        health: HealthSummary {
            score: health_score(failure_fraction, wait_pressure, checks_run, checks_failed),
            failure_fraction,
            wait_pressure,
            checks_run,
            checks_failed,
        },
        faults: faults.to_vec(),
        instances: pools.len() as u32,
        per_instance: Vec::new(),
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
    fn health_score_terms_saturate_and_stay_in_bounds() {
        // Each term is capped: more than 10 % lost, pressure above 1 or
        // more failed checks than checks cannot push the score below 0.
        assert_eq!(health_score(0.2, 0.0, 0, 0), 40.0);
        assert_eq!(health_score(0.0, 2.0, 0, 0), 70.0);
        assert_eq!(health_score(0.0, 0.0, 1, 5), 90.0);
        assert_eq!(health_score(-1.0, -1.0, 0, 0), 100.0);
        // The terms add: 1 % lost (6) + pressure 0.1 (3) + 1 in 4 checks (2.5).
        assert_eq!(health_score(0.01, 0.1, 4, 1), 88.5);
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
