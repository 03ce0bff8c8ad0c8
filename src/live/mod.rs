//! The live driver: the same sans-IO [`Pool`](crate::core::pool::Pool) and
//! the same [`Policy`](crate::core::policy::Policy) code the simulator runs,
//! driven by a real clock and real PostgreSQL connections (tokio +
//! tokio-postgres).
//!
//! ```text
//!  trace ──open loop, at arrival / speed──► Pool::acquire(now, priority, service)
//!                                             │ Effect::Open   ──► connect task ──► Pool::connected / connect_error
//!                                             │ Effect::Start  ──► query task: SELECT pg_sleep($1) ──► Pool::release / fail
//!                                             │ Effect::Close  ──► drop the client, await its connection task ──► Pool::closed
//!                                             │ Effect::ArmTimer ─► a real timer ──► Pool::expire
//!  policy interval (real timer) ──► Policy::decide(now, view, Tick) ──► Pool::apply
//! ```
//!
//! A closed-loop workload (`[arrivals] kind = "closed_loop"`) runs as one,
//! like pgbench without `-R`: each client's next request is asked of the
//! source when its previous one ends on the live clock, and issued a think
//! time later ([`run`]; `live.json`'s `closed_loop`, [`ClosedLoopReport`]).
//!
//! One task owns the pool and reacts to IO completions (a channel), timers,
//! arrivals and Ctrl-C; connects, queries and closes run in their own tasks.
//! Only [`clock`] reads the wall clock; the pool sees [`SimTime`] as in the
//! simulator, and its recorder produces the metrics, so `summary.json` is
//! written by the same code ([`crate::summary`]). What only a live run
//! measures (arrival lag, per-query client and server overhead, connect
//! latencies, errors) goes to a separate `live.json` ([`LiveReport`]).
//!
//! The statement is `SELECT pg_sleep($1)`, prepared once per connection,
//! with the request's service time in seconds as a bound `float8`
//! parameter: trace data is never interpolated into SQL. Instead, requests
//! can run statements of a workload file ([`statements`], bound
//! parameters) or the trace's recorded SQL in read-only transactions
//! ([`StatementSource`]); [`prepare`] makes pgbench's tables for the
//! former.

pub mod calibrate;
pub mod clock;
pub mod conninfo;
mod driver;
pub mod handle;
pub mod prepare;
pub mod statements;
pub mod tls;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::config::workload::SourceSpec;
use crate::core::metrics::{DistributionMs, SampleSink};
use crate::rng::SeedTree;
use crate::scenario::{open_source, LoadedPolicy, LoadedWorkload};
use crate::summary::{run_summary, PolicyInfo, Summary, TraceInfo, SCHEMA};
use crate::time::SimTime;
use crate::trace::transform::Transformed;

pub use conninfo::Target;
pub use driver::{run, LiveOptions, LiveOutcome, StatementSource};
pub use handle::{GetError, Guard, HandleOptions, HandleStats, PoolHandle};

/// The statement every request runs, with its service time in seconds.
pub const STATEMENT: &str = "SELECT pg_sleep($1)";

/// Schema of `live.json`.
pub const LIVE_SCHEMA: &str = "pooltune.live/1";

/// Why a live run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The database target is malformed (URL, environment).
    #[error("{0}")]
    Target(String),
    /// The database could not be reached before the run started.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },
    /// The run passed one of its bounds.
    #[error("live run limit reached: {0}")]
    Limit(String),
    /// An internal invariant was violated: a bug in pooltune.
    #[error("invariant violated at {at:?}: {what}; please report this with the command line")]
    Invariant { what: String, at: SimTime },
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

/// What only a live run measures: client-side overheads and errors,
/// written to `live.json` next to `summary.json` (never into it).
/// Wall-clock figures belong here; nothing here is deterministic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveReport {
    pub schema: String,
    pub pooltune_version: String,
    /// `user@host:port/dbname` (never the password).
    pub database: String,
    pub server_version: String,
    /// The server's `max_connections` setting.
    pub server_max_connections: u32,
    pub application_name: String,
    pub statement: String,
    /// Arrival times were divided by this (1 = real time).
    pub speed: f64,
    /// The run was stopped early (Ctrl-C): requests still waiting or running
    /// then are counted in `in_flight_at_end` of the summary.
    pub interrupted: bool,
    /// Wall time from the first arrival slot to the end of the run.
    pub wall_duration_s: f64,
    /// How late each request was issued against its scheduled time.
    pub arrival_lag_ms: DistributionMs,
    /// Connection held minus the request's service time, per completed
    /// request: client scheduling + round trip + server overhead.
    pub hold_overhead_ms: DistributionMs,
    /// The query's round trip measured in its task minus the service time:
    /// network + protocol + server overhead (the part a database model
    /// attributes to the database).
    pub round_trip_overhead_ms: DistributionMs,
    /// Connect + prepare latency of the pool's connections (successful).
    pub connect_ms: DistributionMs,
    pub connect_errors: u64,
    /// Connects refused with "too many connections" (SQLSTATE 53300).
    pub connects_refused: u64,
    pub query_errors: u64,
    /// Connections closed because they broke: a query failed on a closed
    /// connection, or an idle connection was closed by the server.
    pub connections_closed_broken: u64,
    /// Idle connections the server closed (found when their task ended).
    pub connections_lost: u64,
    /// Checks run on idle connections (health checks, keepalive,
    /// validation on checkout: `SELECT 1`, simple protocol, bounded by the
    /// policy's check timeout) and how many failed (error or timeout).
    #[serde(default)]
    pub checks: u64,
    #[serde(default)]
    pub checks_failed: u64,
    /// The first few distinct error messages (redacted).
    pub errors: Vec<String>,
    /// Cancel requests sent to queries still running at an interrupt.
    pub queries_cancelled: u64,
    /// Connections left when the run ended that had to be aborted because
    /// they did not close within the shutdown grace period.
    pub connections_aborted: u64,
    /// What the requests ran: `pg_sleep`, `file:PATH` (`--statements`) or
    /// `trace-sql` (`--sql-from-trace`). Empty in reports written before
    /// statement workloads existed.
    #[serde(default)]
    pub statement_source: String,
    /// Per statement: requests that picked it, completed and failed.
    #[serde(default)]
    pub statements: Vec<statements::StatementCount>,
    /// Set when the workload was a closed loop (`[arrivals] kind =
    /// "closed_loop"`: each client sends its next request a think time after
    /// its previous one ends, like pgbench without `-R`); `null` for an open
    /// loop (requests issued at their trace arrival times) and in reports
    /// written before closed loops ran live.
    #[serde(default)]
    pub closed_loop: Option<ClosedLoopReport>,
}

/// A closed-loop live run's clients (`live.json`'s `closed_loop`). Every
/// client is counted once at the end:
/// `clients = stopped + thinking_at_end + in_flight_at_end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClosedLoopReport {
    /// Clients that sent a first request (the workload's `clients`, unless
    /// the run ended before some started).
    pub clients: u32,
    /// Clients that were done (their duration or request count reached).
    pub stopped: u32,
    /// Clients between two requests when the run ended (an interrupt, or the
    /// horizon without drain): their next request was never sent.
    pub thinking_at_end: u32,
    /// Clients whose request was waiting or running when the run ended
    /// (the summary's `in_flight_at_end`).
    pub in_flight_at_end: u32,
    /// From a request's end to its client's next request being issued, on
    /// the live clock: the think time / speed plus the driver's timer lag.
    pub think_ms: DistributionMs,
}

/// Builds a multi-threaded runtime for a live run (two workers: the live
/// tests and the benchmark machine have two cores).
pub fn runtime() -> Result<tokio::runtime::Runtime, LiveError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LiveError::Runtime(e.to_string()))
}

/// A live run of one workload with one policy: the live counterpart of
/// [`crate::scenario::run_scenario`], writing the same [`Summary`] (one run)
/// with the same summary code, plus the [`LiveReport`].
pub struct LiveScenario {
    pub summary: Summary,
    pub report: LiveReport,
}

/// Runs `policy` against `workload`'s requests (generated from `seed`,
/// exactly the requests `sim run` replays with that seed) on `target`.
pub async fn run_scenario(
    target: &Target,
    workload: &LoadedWorkload,
    policy: &LoadedPolicy,
    seed: u64,
    live: &LiveOptions,
    sink: &mut dyn SampleSink,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<LiveScenario, LiveError> {
    let seeds = SeedTree::new(seed);
    let w = &workload.spec;
    let live = LiveOptions {
        seed,
        ..live.clone()
    };
    let ended_early = |e: crate::trace::TraceError| {
        LiveError::Target(format!(
            "workload {}: the trace ended early: {e}",
            workload.source
        ))
    };
    let out = if let StatementSource::RecordedSql = live.statements {
        // The same records `open_source` replays, with their SQL.
        let SourceSpec::Trace(t) = &w.source else {
            return Err(LiveError::Target(format!(
                "workload {}: --sql-from-trace replays a recorded trace's SQL, but this workload's requests are generated",
                workload.source
            )));
        };
        let reader = t
            .trace
            .open_full()
            .map_err(|e| LiveError::Target(format!("workload {}: {e}", workload.source)))?;
        let mut jobs =
            driver::TraceJobs::new(Transformed::new(reader, t.transform.clone(), &seeds));
        let out = driver::run_jobs(
            target,
            &policy.spec.pool,
            policy.spec.build(),
            &mut jobs,
            &w.run,
            &live,
            sink,
            stop,
        )
        .await?;
        if let Some(e) = jobs.error.take() {
            return Err(ended_early(e));
        }
        out
    } else {
        // The very request stream `sim run` replays (generator or recorded trace).
        let mut source = open_source(w, &seeds)
            .map_err(|e| LiveError::Target(format!("workload {}: {e}", workload.source)))?;
        let out = run(
            target,
            &policy.spec.pool,
            policy.spec.build(),
            &mut source,
            &w.run,
            &live,
            sink,
            stop,
        )
        .await?;
        if let Some(e) = source.take_error() {
            return Err(ended_early(e));
        }
        out
    };
    let info = PolicyInfo {
        name: policy.spec.name.clone(),
        hash: policy.spec.hash.clone(),
        source: policy.source.clone(),
        description: policy.spec.description.clone(),
        config: policy.spec.effective.clone(),
    };
    let run = run_summary(&out.outcome, info, &w.name, &w.hash);
    let summary = Summary {
        schema: SCHEMA.to_string(),
        pooltune_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario: w.name.clone(),
        seed,
        trace: TraceInfo {
            name: w.name.clone(),
            hash: w.hash.clone(),
            source: workload.source.clone(),
            description: w.description.clone(),
            config: w.effective.clone(),
        },
        runs: vec![run],
    };
    Ok(LiveScenario {
        summary,
        report: out.report,
    })
}

/// `live.json` text: pretty, with a trailing newline.
pub fn report_json(r: &LiveReport) -> String {
    let mut t = serde_json::to_string_pretty(r).expect("reports serialize");
    t.push('\n');
    t
}
