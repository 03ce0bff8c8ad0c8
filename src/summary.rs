//! `summary.json`: the output contract. Everything else (tables, CSV,
//! Markdown, plots) derives from it. Field order is fixed by the structs,
//! maps are ordered, and wall-clock figures never appear here.

use serde::{Deserialize, Serialize};

use crate::core::metrics::{ClassMetrics, DistributionMs, Integrals, PoolCounters};
use crate::core::pool::Pool;
use crate::core::request::Priority;
use crate::sim::topology::{FleetOutcome, Job, PoolMode, ServerOutcome, ServiceOutcome, Topology};
use crate::sim::{DbStats, FaultRecord, RunOutcome, WorldOutcome};
use crate::time::SimTime;

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

impl From<&PoolCounters> for ClosedByReason {
    fn from(c: &PoolCounters) -> Self {
        ClosedByReason {
            shrink: c.closed_shrink,
            end_of_run: c.closed_end_of_run,
            idle: c.closed_idle,
            lifetime: c.closed_lifetime,
            max_uses: c.closed_max_uses,
            broken: c.closed_broken,
        }
    }
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
pub fn run_summary<P>(
    outcome: &RunOutcome<P>,
    policy: PolicyInfo,
    trace_name: &str,
    trace_hash: &str,
) -> RunSummary {
    let db = DbView {
        refused: outcome.db_refused,
        backends_max: outcome.db_backends_max,
        stats: None,
    };
    build(
        &[&outcome.pool],
        None,
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
pub fn world_summary<P>(
    outcome: &WorldOutcome<P>,
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
    let pools: Vec<&Pool<P>> = outcome.pools.iter().collect();
    let mut s = build(
        &pools,
        None,
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

/// `classes`: the requests to report (end to end for a topology run); the
/// pools' own when None.
#[allow(clippy::too_many_arguments)]
fn build<T>(
    pools: &[&Pool<T>],
    classes: Option<&[ClassMetrics; 3]>,
    end: crate::time::SimTime,
    events: u64,
    seed: u64,
    db: DbView,
    faults: &[FaultRecord],
    policy: PolicyInfo,
    trace_name: &str,
    trace_hash: &str,
) -> RunSummary {
    let mut merged: [ClassMetrics; 3] = Default::default();
    let mut counters = PoolCounters::default();
    let mut integrals = Integrals::default();
    let (mut size_min, mut size_max, mut target_final) = (0, 0, 0);
    for p in pools {
        if classes.is_none() {
            for (a, m) in merged.iter_mut().zip(p.classes()) {
                a.merge(m);
            }
        }
        add_counters(&mut counters, p.counters());
        add_integrals(&mut integrals, p.integrals());
        let (lo, hi) = p.size_range_seen();
        size_min += lo;
        size_max += hi;
        target_final += p.target();
    }
    let classes = classes.unwrap_or(&merged);
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
            connections_closed: ClosedByReason::from(c),
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

// ---------------------------------------------------------------------------
// Topology runs (`sim run --scenario`).

/// `summary.json` of a scenario run: every field of a plain [`Summary`]
/// (its `runs[0]` is the whole fleet as one run, so the table, `compare`
/// and `check` read it as they read any summary), then `topology`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    #[serde(flatten)]
    pub summary: Summary,
    pub topology: TopologySummary,
}

/// The `topology` section: per service, per server, the PgBouncer layer,
/// the faults and the assertions' verdicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologySummary {
    /// Simulated time at the end of the run, seconds.
    pub sim_duration_s: f64,
    /// Services in scenario order.
    pub services: Vec<ServiceSummary>,
    /// Servers in scenario order: the primary first, then the replicas.
    pub servers: Vec<ServerSummary>,
    /// The PgBouncer layer (omitted without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bouncer: Option<BouncerSummary>,
    /// Every server fault occurrence, in the order they began, with the
    /// server it hit.
    pub faults: Vec<TopologyFault>,
    /// One verdict per assertion and subject (every server or service for
    /// an assertion on all of them), in the scenario's order.
    pub assertions: Vec<crate::check::assertions::AssertionResult>,
    /// True when every assertion passed (also with none).
    pub assertions_passed: bool,
}

/// One application service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    /// Its pools' policy (name).
    pub policy: String,
    /// Instance slots (as configured).
    pub instances: u32,
    /// Instances started over the run, replacements included (cold start
    /// = `instances`; each rolling restart adds `instances`).
    pub generations: u32,
    /// Seconds at which its instances started or were replaced.
    pub starts_s: Vec<f64>,
    /// Its requests end to end: a read retried on another server counts
    /// once, with its final outcome, and its times from first arrival.
    pub requests: ServiceRequestCounts,
    /// Arrival to connection handed out (or to timeout), end to end.
    pub acquire_wait_ms: DistributionMs,
    /// Arrival to completion, completed requests.
    pub response_ms: DistributionMs,
    pub by_priority: ServiceByPriority,
    /// All its pools together (every instance generation x server).
    pub pools: PoolGroupSummary,
}

/// arrived = completed + timed_out + failed + rejected + unrouted +
/// in_flight_at_end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequestCounts {
    pub arrived: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub failed: u64,
    /// Rejected by a full wait queue.
    pub rejected: u64,
    /// No instance of the service was up when it arrived (a load
    /// balancer's 503).
    pub unrouted: u64,
    pub in_flight_at_end: u64,
    /// Reads sent again to another server after failing on a replica.
    pub retried: u64,
    pub reads: u64,
    pub writes: u64,
    /// Reads served by the primary (no replica, read-your-writes, or every
    /// replica banned).
    pub reads_on_primary: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceByPriority {
    pub high: ServiceClassSummary,
    pub normal: ServiceClassSummary,
    pub low: ServiceClassSummary,
}

/// One priority of a service's requests. Its unrouted requests (no
/// instance up) count as `rejected` here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceClassSummary {
    pub requests: RequestCounts,
    /// timed_out / arrived.
    pub p_timeout: f64,
    pub acquire_wait_ms: DistributionMs,
    pub response_ms: DistributionMs,
}

/// Several pools together (a service's, or PgBouncer's for one server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolGroupSummary {
    /// Pools in the group.
    pub pools: u32,
    /// Time-weighted means of the sum over the pools, over the whole run
    /// (a pool counts 0 before it starts and after it closes).
    pub size_mean: f64,
    pub open_mean: f64,
    pub active_mean: f64,
    pub waiting_mean: f64,
    /// Sum of each pool's largest size.
    pub size_max: u32,
    /// Sum of the targets of the pools still running at the end.
    pub target_final: u32,
    /// Integral of established connections over time, all pools.
    pub connection_seconds: f64,
    pub connections_opened: u64,
    pub connections_closed: ClosedByReason,
    pub connect_failed: u64,
    /// Total time spent opening connections.
    pub connect_time_s: f64,
}

/// One database server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerSummary {
    pub name: String,
    /// False for the primary.
    pub replica: bool,
    /// Connect attempts that reached it (accepted or refused).
    pub connects: u64,
    pub accepted: u64,
    /// Connects refused, every reason (max_connections, rate limit, down).
    pub refused: u64,
    /// Of those, refused by its connects-per-second limit ...
    pub refused_rate: u64,
    /// ... at max_connections ...
    pub refused_max_connections: u64,
    /// ... and while it was down.
    pub refused_down: u64,
    /// Connects that failed (connect_failures fault).
    pub connect_errors: u64,
    /// Most backends at once.
    pub backends_max: u32,
    /// Backends closed by their clients.
    pub closes: u64,
    /// The busiest second for connects (attempts) and for closes: the
    /// count and the second it began at (the first such second). Only
    /// whole seconds within the run count, as in the assertions: the
    /// last, partial one holds the closes of every connection at the end.
    pub peak_connects_per_s: u32,
    pub peak_connects_second: u64,
    pub peak_closes_per_s: u32,
    pub peak_closes_second: u64,
    /// Queries it ran to completion, and queries failed by faults.
    pub queries: u64,
    pub queries_failed: u64,
    /// Backends broken by faults.
    pub backends_broken: u64,
    /// Times the routers banned it (replicas).
    pub bans: u64,
}

/// The PgBouncer layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BouncerSummary {
    /// `transaction` or `session`.
    pub mode: String,
    /// Client connects refused at max_client_conn.
    pub clients_refused: u64,
    /// Most client connections at once.
    pub clients_max: u32,
    /// Its server pool for each server, in server order.
    pub pools: Vec<BouncerPoolSummary>,
}

/// PgBouncer's pool of connections to one server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BouncerPoolSummary {
    pub server: String,
    /// Requests (transactions or client sessions) that went through it.
    pub requests: RequestCounts,
    /// Wait for one of its server connections.
    pub acquire_wait_ms: DistributionMs,
    pub pool: PoolGroupSummary,
}

/// A fault occurrence and the server it hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyFault {
    pub server: String,
    #[serde(flatten)]
    pub record: FaultRecord,
}

/// `counts` that never underflows (a class's arrivals as the engine counts
/// them, whatever else it counted).
fn counts_sat(m: &ClassMetrics) -> RequestCounts {
    RequestCounts {
        arrived: m.arrived,
        completed: m.completed,
        timed_out: m.timed_out,
        failed: m.failed,
        rejected: m.rejected,
        in_flight_at_end: m
            .arrived
            .saturating_sub(m.completed + m.timed_out + m.failed + m.rejected),
    }
}

fn pool_group<'a, T: 'a>(
    pools: impl IntoIterator<Item = (&'a Pool<T>, bool)>,
    end: SimTime,
) -> PoolGroupSummary {
    let mut c = PoolCounters::default();
    let mut ig = Integrals::default();
    let (mut n, mut size_max, mut target_final) = (0u32, 0u32, 0u32);
    for (p, running) in pools {
        n += 1;
        add_counters(&mut c, p.counters());
        let i = p.integrals();
        ig.size += i.size;
        ig.open += i.open;
        ig.active += i.active;
        ig.waiting += i.waiting;
        size_max += p.size_range_seen().1;
        if running {
            target_final += p.target();
        }
    }
    // Over the whole run: pools started later cover less of it.
    let span = end.as_nanos() as u128;
    PoolGroupSummary {
        pools: n,
        size_mean: Integrals::mean(ig.size, span),
        open_mean: Integrals::mean(ig.open, span),
        active_mean: Integrals::mean(ig.active, span),
        waiting_mean: Integrals::mean(ig.waiting, span),
        size_max,
        target_final,
        connection_seconds: ig.open as f64 / 1e9,
        connections_opened: c.opened,
        connections_closed: ClosedByReason::from(&c),
        connect_failed: c.connect_failed,
        connect_time_s: c.connect_time_ns as f64 / 1e9,
    }
}

fn service_class(m: &ClassMetrics, unrouted: u64) -> ServiceClassSummary {
    let mut requests = counts_sat(m);
    requests.rejected += unrouted;
    requests.in_flight_at_end = requests.in_flight_at_end.saturating_sub(unrouted);
    ServiceClassSummary {
        requests,
        p_timeout: ratio(m.timed_out, m.arrived),
        acquire_wait_ms: m.wait.summary_ms(),
        response_ms: m.response.summary_ms(),
    }
}

/// The busiest second: count and (first) second.
fn peak(series: &[u32]) -> (u32, u64) {
    let mut best = (0, 0);
    for (k, &n) in series.iter().enumerate() {
        if n > best.0 {
            best = (n, k as u64);
        }
    }
    best
}

fn sum(series: &[u32]) -> u64 {
    series.iter().map(|&n| n as u64).sum()
}

/// Every service's requests, by priority, end to end.
pub fn fleet_classes(outcome: &FleetOutcome) -> [ClassMetrics; 3] {
    let mut classes: [ClassMetrics; 3] = Default::default();
    for s in &outcome.services {
        for (a, m) in classes.iter_mut().zip(&s.requests.classes) {
            a.merge(m);
        }
    }
    classes
}

fn service_summary(t: &Topology, i: usize, s: &ServiceOutcome, end: SimTime) -> ServiceSummary {
    let r = &s.requests;
    let mut all = ClassMetrics::default();
    for m in &r.classes {
        all.merge(m);
    }
    let c = counts_sat(&all);
    let cfg = t.services.get(i);
    ServiceSummary {
        name: s.name.clone(),
        policy: cfg.map(|c| c.policy.name.clone()).unwrap_or_default(),
        instances: cfg.map_or(0, |c| c.instances as u32),
        generations: s.starts.len() as u32,
        starts_s: s.starts.iter().map(|t| t.as_secs_f64()).collect(),
        requests: ServiceRequestCounts {
            arrived: c.arrived,
            completed: c.completed,
            timed_out: c.timed_out,
            failed: c.failed,
            rejected: c.rejected,
            unrouted: r.unrouted,
            in_flight_at_end: c.in_flight_at_end.saturating_sub(r.unrouted),
            retried: r.retried,
            reads: r.reads,
            writes: r.writes,
            reads_on_primary: r.reads_on_primary,
        },
        acquire_wait_ms: all.wait.summary_ms(),
        response_ms: all.response.summary_ms(),
        by_priority: ServiceByPriority {
            high: service_class(&r.classes[0], r.unrouted_by_priority[0]),
            normal: service_class(&r.classes[1], r.unrouted_by_priority[1]),
            low: service_class(&r.classes[2], r.unrouted_by_priority[2]),
        },
        pools: pool_group(s.pools.iter().map(|p| (&p.pool, p.stopped.is_none())), end),
    }
}

fn server_summary(s: &ServerOutcome, end: SimTime) -> ServerSummary {
    use crate::check::assertions::within_run;
    let (peak_connects_per_s, peak_connects_second) = peak(within_run(&s.series.connects, end));
    let (peak_closes_per_s, peak_closes_second) = peak(within_run(&s.series.closes, end));
    ServerSummary {
        name: s.name.clone(),
        replica: s.replica,
        connects: sum(&s.series.connects),
        accepted: sum(&s.series.accepted),
        refused: crate::check::assertions::server_refusals(s),
        refused_rate: s.refused_rate,
        refused_max_connections: s.stats.refused,
        refused_down: s.stats.refused_down,
        connect_errors: s.stats.connect_errors,
        backends_max: s.stats.backends_max,
        closes: sum(&s.series.closes),
        peak_connects_per_s,
        peak_connects_second,
        peak_closes_per_s,
        peak_closes_second,
        queries: s.queries,
        queries_failed: s.stats.queries_failed,
        backends_broken: s.stats.broken,
        bans: s.bans,
    }
}

/// The `topology` section from a finished fleet run and its assertions'
/// verdicts.
pub fn topology_summary(
    topology: &Topology,
    outcome: &FleetOutcome,
    assertions: Vec<crate::check::assertions::AssertionResult>,
) -> TopologySummary {
    let server_name = |i: usize| {
        outcome
            .servers
            .get(i)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    };
    let bouncer = outcome.bouncer.as_ref().map(|b| BouncerSummary {
        mode: match topology.bouncer.as_ref().map(|b| b.mode) {
            Some(PoolMode::Session) => "session",
            _ => "transaction",
        }
        .to_string(),
        clients_refused: b.clients_refused,
        clients_max: b.clients_max,
        pools: b
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut all = ClassMetrics::default();
                for m in p.classes() {
                    all.merge(m);
                }
                BouncerPoolSummary {
                    server: server_name(i),
                    requests: counts_sat(&all),
                    acquire_wait_ms: all.wait.summary_ms(),
                    pool: pool_group([(p, true)], outcome.end),
                }
            })
            .collect(),
    });
    let assertions_passed = assertions.iter().all(|a| a.passed);
    TopologySummary {
        sim_duration_s: outcome.end.as_secs_f64(),
        services: outcome
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| service_summary(topology, i, s, outcome.end))
            .collect(),
        servers: outcome
            .servers
            .iter()
            .map(|s| server_summary(s, outcome.end))
            .collect(),
        bouncer,
        faults: outcome
            .faults
            .iter()
            .map(|f| TopologyFault {
                server: topology
                    .faults
                    .get(f.fault)
                    .map(|sf| server_name(sf.server))
                    .unwrap_or_default(),
                record: f.clone(),
            })
            .collect(),
        assertions,
        assertions_passed,
    }
}

/// The whole fleet as one run (`runs[0]` of a scenario's summary): every
/// service's requests end to end (unrouted ones counted as `rejected` in
/// the totals, and as lost in the health score), every application pool's
/// counters and integrals, the servers' database counters summed
/// (`backends_max`: the sum of each server's most), the faults.
pub fn fleet_run_summary(
    outcome: &FleetOutcome,
    policy: PolicyInfo,
    trace_name: &str,
    trace_hash: &str,
) -> RunSummary {
    let mut st = DbStats::default();
    let mut refused = 0;
    for s in &outcome.servers {
        refused += crate::check::assertions::server_refusals(s);
        st.refused += s.stats.refused;
        st.refused_down += s.stats.refused_down;
        st.connect_errors += s.stats.connect_errors;
        st.backends_max += s.stats.backends_max;
        st.broken += s.stats.broken;
        st.queries_failed += s.stats.queries_failed;
        st.checks += s.stats.checks;
        st.checks_failed += s.stats.checks_failed;
    }
    let db = DbView {
        refused,
        backends_max: st.backends_max,
        stats: Some(&st),
    };
    let pools: Vec<&Pool<Job>> = outcome
        .services
        .iter()
        .flat_map(|s| s.pools.iter().map(|p| &p.pool))
        .collect();
    let classes = fleet_classes(outcome);
    let mut s = build(
        &pools,
        Some(&classes),
        outcome.end,
        outcome.events,
        outcome.seed,
        db,
        &outcome.faults,
        policy,
        trace_name,
        trace_hash,
    );
    // Pools of stopped instances keep the target they had; only running
    // ones count at the end.
    s.pool.target_final = outcome
        .services
        .iter()
        .flat_map(|s| &s.pools)
        .filter(|p| p.stopped.is_none())
        .map(|p| p.pool.target())
        .sum();
    let unrouted: u64 = outcome.services.iter().map(|s| s.requests.unrouted).sum();
    let r = &mut s.requests;
    r.rejected += unrouted;
    r.in_flight_at_end = r.in_flight_at_end.saturating_sub(unrouted);
    let h = &mut s.health;
    h.failure_fraction = ratio(r.timed_out + r.failed + r.rejected, r.arrived);
    h.score = health_score(
        h.failure_fraction,
        h.wait_pressure,
        h.checks_run,
        h.checks_failed,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SimDuration;

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

    fn fleet() -> (Topology, FleetOutcome) {
        use crate::sim::topology::{
            ReplicaSelection, Routing, ServerSeries, ServiceRequests, ServiceSeries,
        };
        let topology = Topology {
            services: Vec::new(),
            bouncer: None,
            servers: Vec::new(),
            routing: Routing {
                reads_to_replicas: false,
                replica_selection: ReplicaSelection::RoundRobin,
                read_your_writes: false,
                ban_time: SimDuration::from_secs(1),
                read_retries: 0,
            },
            events: Vec::new(),
            faults: Vec::new(),
        };
        let mut requests = ServiceRequests::default();
        let c = &mut requests.classes[1];
        c.arrived = 10;
        c.completed = 6;
        c.timed_out = 1;
        requests.unrouted = 3;
        requests.reads = 7;
        requests.writes = 3;
        let outcome = FleetOutcome {
            end: SimTime(2_500_000_000),
            events: 1,
            seed: 9,
            services: vec![ServiceOutcome {
                name: "api".to_string(),
                requests,
                pools: Vec::new(),
                series: ServiceSeries::default(),
                starts: vec![SimTime::ZERO],
            }],
            servers: vec![ServerOutcome {
                name: "primary".to_string(),
                replica: false,
                stats: DbStats {
                    refused: 2,
                    ..DbStats::default()
                },
                refused_rate: 4,
                queries: 6,
                bans: 0,
                series: ServerSeries {
                    connects: vec![5, 9, 60],
                    accepted: vec![5, 3, 60],
                    refused: vec![0, 6, 0],
                    closes: vec![1, 0, 60],
                    backends: vec![5, 8, 0],
                },
            }],
            bouncer: None,
            faults: Vec::new(),
        };
        (topology, outcome)
    }

    #[test]
    fn topology_section_counts_unrouted_and_trims_the_last_partial_second() {
        let (t, o) = fleet();
        let s = topology_summary(&t, &o, Vec::new());
        assert!(s.assertions_passed, "no assertion fails");
        let r = &s.services[0].requests;
        assert_eq!(
            (r.arrived, r.completed, r.timed_out, r.unrouted),
            (10, 6, 1, 3)
        );
        assert_eq!(r.in_flight_at_end, 0);
        assert_eq!(s.services[0].generations, 1);
        let sv = &s.servers[0];
        assert_eq!(
            (sv.connects, sv.accepted, sv.refused, sv.refused_rate),
            (74, 68, 6, 4)
        );
        // Second 2 ([2 s, 3 s)) is cut by the end at 2.5 s: its closes are
        // the run's end, not a herd.
        assert_eq!((sv.peak_connects_per_s, sv.peak_connects_second), (9, 1));
        assert_eq!((sv.peak_closes_per_s, sv.peak_closes_second), (1, 0));
        assert_eq!(sv.closes, 61);
    }

    #[test]
    fn the_fleet_as_one_run_counts_unrouted_as_rejected() {
        let (_, o) = fleet();
        let info = PolicyInfo {
            name: "s".to_string(),
            hash: "h".to_string(),
            source: "f".to_string(),
            description: String::new(),
            config: serde_json::Value::Null,
        };
        let run = fleet_run_summary(&o, info, "s", "h");
        let q = &run.requests;
        assert_eq!((q.arrived, q.rejected, q.in_flight_at_end), (10, 3, 0));
        assert_eq!(
            q.arrived,
            q.completed + q.timed_out + q.failed + q.rejected + q.in_flight_at_end
        );
        // 1 timed out + 3 unrouted of 10: 40 % lost, all 60 points.
        assert_eq!(run.health.failure_fraction, 0.4);
        assert_eq!(run.health.score, 40.0);
        assert_eq!(run.database.connects_refused, 6);
    }
}
