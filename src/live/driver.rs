//! The live event loop: one task owns the pool; IO runs in spawned tasks
//! that report back through a channel.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{CancelToken, Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::clock::{LiveClock, Stopwatch};
use super::conninfo::Target;
use super::statements::{self, Picker, StatementCount, StatementFile, Value};
use super::{ClosedLoopReport, LiveError, LiveReport, LIVE_SCHEMA, STATEMENT};
use crate::core::lifecycle::OnBroken;
use crate::core::metrics::{CloseReason, Latency, SampleSink};
use crate::core::policy::Policy;
use crate::core::pool::{ConnId, Effect, Pool, PoolConfig};
use crate::core::request::{Kind, Priority, Request};
use crate::rng::SeedTree;
use crate::sim::{RunOptions, RunOutcome};
use crate::time::{SimDuration, SimTime};
use crate::trace::{RecordStream, RequestSource, TraceError, TraceRecord};

/// What each request runs.
#[derive(Clone, Debug, Default)]
pub enum StatementSource {
    /// `SELECT pg_sleep($1)` with the request's service time.
    #[default]
    PgSleep,
    /// A statement workload file (`live run --statements FILE`).
    File(Arc<StatementFile>),
    /// The trace's recorded SQL, in read-only sessions (`live run
    /// --sql-from-trace`); requests without SQL run `pg_sleep`. Only
    /// [`crate::live::run_scenario`] can replay it (it needs the records).
    RecordedSql,
}

impl StatementSource {
    /// A short name for `live.json`: `pg_sleep`, `file:PATH` or `trace-sql`.
    pub fn describe(&self) -> String {
        match self {
            StatementSource::PgSleep => "pg_sleep".to_string(),
            StatementSource::File(f) => format!("file:{}", f.source),
            StatementSource::RecordedSql => "trace-sql".to_string(),
        }
    }
}

/// Knobs only a live run has.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Issue each request at `arrival / speed` (1 = real time; 2 = twice as
    /// fast, i.e. twice the offered load: service times are not scaled).
    pub speed: f64,
    /// How long shutdown waits for running queries (after cancelling them)
    /// and for connections to close before aborting them.
    pub shutdown_grace: Duration,
    /// The seed that generated the trace (recorded in the summary).
    pub seed: u64,
    /// Prepare the statement once per connection (true), or send it unnamed
    /// with each request in one round trip (false: for poolers in
    /// transaction mode, such as PgBouncer before 1.21, where a connection's
    /// prepared statements do not follow it from one transaction to the next).
    pub prepared: bool,
    /// What each request runs (default `pg_sleep`).
    pub statements: StatementSource,
    /// Zero (the default): a server that cannot be reached before the run
    /// fails it at once. Otherwise a server that is down or starting up
    /// (connection refused or timed out, "starting up") does not stop the
    /// run: it starts on schedule, the pool connects with its own backoff,
    /// and the run fails only if no probe reaches the server within this
    /// long. A refused login fails at once either way.
    pub wait_for_server: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            speed: 1.0,
            shutdown_grace: Duration::from_secs(5),
            seed: 0,
            prepared: true,
            statements: StatementSource::PgSleep,
            wait_for_server: Duration::ZERO,
        }
    }
}

/// A finished live run: the pool with its metrics (exactly what the
/// simulator hands to the summary) and the live-only measurements.
pub struct LiveOutcome {
    pub outcome: RunOutcome,
    pub report: LiveReport,
}

/// What one request runs.
#[derive(Clone, Debug)]
pub(crate) enum Work {
    Sleep,
    /// Statement `index` of the statement file, with its parameters.
    Statement {
        index: usize,
        values: Vec<Value>,
    },
    /// The trace's recorded SQL, in a read-only transaction.
    Sql(String),
}

/// A request's work while it waits or runs. The pool carries a ticket
/// (see [`ticket`]) that finds it in the driver's table.
struct Job {
    service: SimDuration,
    work: Work,
    /// Index into the run's per-statement counts.
    count: usize,
    /// The closed-loop client that sent it (0 in an open loop).
    client: u32,
}

/// The pool's payload type is the simulator's (`SimDuration`, so the run
/// outcome is the same type); the live driver never reads it as a
/// duration: it is an opaque ticket naming the request's [`Job`].
fn ticket(id: u64) -> SimDuration {
    SimDuration(id)
}

/// Requests with the work each runs: a [`RequestSource`] with work
/// attached, closed loop included (see [`RequestSource::close_loop`]).
pub(crate) trait JobSource {
    fn next_job(&mut self) -> Option<(Request, Work)>;

    /// See [`RequestSource::close_loop`]: called once, before the first
    /// `next_job`.
    fn close_loop(&mut self) -> bool {
        false
    }

    /// See [`RequestSource::finished`]: the client's next request with its
    /// work, or `None` when the client stops.
    fn finished(&mut self, client: u32, at: SimTime) -> Option<(Request, Work)> {
        let _ = (client, at);
        None
    }
}

/// Every request runs `pg_sleep`.
pub(crate) struct SleepJobs<S>(pub S);

impl<S: RequestSource> JobSource for SleepJobs<S> {
    fn next_job(&mut self) -> Option<(Request, Work)> {
        self.0.next_request().map(|r| (r, Work::Sleep))
    }

    fn close_loop(&mut self) -> bool {
        self.0.close_loop()
    }

    fn finished(&mut self, client: u32, at: SimTime) -> Option<(Request, Work)> {
        self.0.finished(client, at).map(|r| (r, Work::Sleep))
    }
}

/// Each request picks a statement of a file when it arrives.
pub(crate) struct FileJobs<S> {
    pub source: S,
    pub picker: Picker,
}

impl<S: RequestSource> FileJobs<S> {
    fn with_statement(&mut self, r: Request) -> (Request, Work) {
        let (index, values) = self.picker.pick(r.kind, r.service);
        (r, Work::Statement { index, values })
    }
}

impl<S: RequestSource> JobSource for FileJobs<S> {
    fn next_job(&mut self) -> Option<(Request, Work)> {
        let r = self.source.next_request()?;
        Some(self.with_statement(r))
    }

    fn close_loop(&mut self) -> bool {
        self.source.close_loop()
    }

    fn finished(&mut self, client: u32, at: SimTime) -> Option<(Request, Work)> {
        let r = self.source.finished(client, at)?;
        Some(self.with_statement(r))
    }
}

/// A trace's records: each request runs its recorded SQL (or `pg_sleep`
/// when it has none). An error ends the stream and is kept.
pub(crate) struct TraceJobs<R> {
    records: R,
    rec: TraceRecord,
    pub error: Option<TraceError>,
}

impl<R: RecordStream> TraceJobs<R> {
    pub fn new(records: R) -> Self {
        TraceJobs {
            records,
            rec: TraceRecord::default(),
            error: None,
        }
    }
}

impl<R: RecordStream> JobSource for TraceJobs<R> {
    fn next_job(&mut self) -> Option<(Request, Work)> {
        if self.error.is_some() {
            return None;
        }
        match self.records.next_record(&mut self.rec) {
            Ok(true) => {
                let sql = self.rec.sql.trim();
                let work = if sql.is_empty() {
                    Work::Sleep
                } else {
                    Work::Sql(sql.to_string())
                };
                Some((self.rec.request(), work))
            }
            Ok(false) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// Completions reported by IO tasks.
enum IoEvent {
    Connected {
        conn: ConnId,
        client: Client,
        stmt: Option<Statement>,
        stmts: Arc<Vec<Statement>>,
        task: JoinHandle<()>,
        took: SimDuration,
    },
    ConnectFailed {
        conn: ConnId,
        message: String,
        refused: bool,
    },
    QueryDone {
        conn: ConnId,
        client: Client,
        stmt: Option<Statement>,
        result: Result<(), String>,
        rtt: SimDuration,
    },
    /// A check asked with `Effect::Check` ended (`ok`: answered in time).
    Checked {
        conn: ConnId,
        client: Client,
        ok: bool,
    },
    Closed {
        conn: ConnId,
    },
    /// A connection's task ended (the server closed it, or we did). Not an
    /// answer to an effect: it is not counted in `pending_io`.
    Lost {
        conn: ConnId,
        generation: u64,
    },
}

/// The driver's side of a pool connection slot.
#[derive(Default)]
struct Slot {
    client: Option<Client>,
    stmt: Option<Statement>,
    /// The statement file's statements, prepared on this connection.
    stmts: Arc<Vec<Statement>>,
    /// The running request's ticket.
    ticket: u64,
    /// The tokio-postgres connection future's task.
    task: Option<JoinHandle<()>>,
    cancel: Option<CancelToken>,
    /// A query or check task holds the client.
    busy: bool,
    /// The task holding the client runs a check, not a request's query
    /// (not cancelled at an interrupt: it ends within its timeout).
    checking: bool,
    started: SimTime,
    service: SimDuration,
    /// Which connection the slot holds (a `Lost` for an older one is stale).
    generation: u64,
}

const MAX_ERRORS_KEPT: usize = 8;

struct Driver<'a> {
    target: &'a Target,
    pool: Pool<SimDuration>,
    slots: Vec<Slot>,
    fx: Vec<Effect<SimDuration>>,
    tx: mpsc::UnboundedSender<IoEvent>,
    clock: LiveClock,
    prepared: bool,
    statements: StatementSource,
    /// A request whose connection broke under it fails (not requeued).
    pool_on_broken_fails: bool,
    /// Waiting and running requests' work, by ticket.
    jobs: BTreeMap<u64, Job>,
    next_ticket: u64,
    counts: Vec<StatementCount>,
    timers: [Option<SimTime>; 3],
    /// When the pool asked to be woken.
    wake_at: Option<SimTime>,
    /// IO tasks whose completion event has not been handled yet.
    pending_io: u64,
    next_generation: u64,
    connections_lost: u64,
    backends: u32,
    backends_max: u32,
    arrival_lag: Latency,
    hold_overhead: Latency,
    rtt_overhead: Latency,
    connect: Latency,
    connect_errors: u64,
    refused: u64,
    query_errors: u64,
    checks: u64,
    checks_failed: u64,
    errors: Vec<String>,
    /// The source is a closed loop: every end is reported to it.
    closed: bool,
    /// Closed loop: clients whose request ended, and when, not yet reported
    /// to the source (the main loop does, after each event).
    ended: Vec<(u32, SimTime)>,
    /// Closed loop: clients with a request waiting or running.
    busy_clients: BTreeSet<u32>,
}

/// Runs `source` against the database with `policy`, in real time.
///
/// `stop` ends the run early when it completes (the CLI passes Ctrl-C):
/// arrivals stop, the summary is taken at that instant (requests waiting or
/// running count as in flight), running queries are cancelled and every
/// connection is closed before this returns.
///
/// Each request runs what `live.statements` says; `RecordedSql` needs the
/// trace's records, so only [`crate::live::run_scenario`] replays it.
///
/// A closed-loop source ([`RequestSource::close_loop`]) is run as one, like
/// pgbench without `-R`: each client's next request comes from
/// [`RequestSource::finished`] when its previous one ends on the live clock
/// (served, timed out, rejected, failed for good). Times given to and taken
/// from the source are on its axis (live time × `speed`), so `speed`
/// divides think times as it divides open-loop arrival times. After `stop`
/// no client sends another request.
#[allow(clippy::too_many_arguments)]
pub async fn run<S: RequestSource>(
    target: &Target,
    pool_config: &PoolConfig,
    policy: Box<dyn Policy>,
    source: S,
    opts: &RunOptions,
    live: &LiveOptions,
    sink: &mut dyn SampleSink,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<LiveOutcome, LiveError> {
    match &live.statements {
        StatementSource::PgSleep => {
            let mut jobs = SleepJobs(source);
            run_jobs(target, pool_config, policy, &mut jobs, opts, live, sink, stop).await
        }
        StatementSource::File(f) => {
            let mut jobs = FileJobs {
                source,
                picker: Picker::new(f, SeedTree::new(live.seed).stream("live.statements")),
            };
            run_jobs(target, pool_config, policy, &mut jobs, opts, live, sink, stop).await
        }
        StatementSource::RecordedSql => Err(LiveError::Target(
            "replaying recorded SQL needs a recorded trace (a workload whose arrivals come from a trace file)"
                .to_string(),
        )),
    }
}

/// The statement source's rows of the per-statement counts.
fn initial_counts(source: &StatementSource) -> Vec<StatementCount> {
    let count = |name: &str, kind: &str, sql: &str| StatementCount {
        name: name.to_string(),
        kind: kind.to_string(),
        sql: sql.to_string(),
        picked: 0,
        completed: 0,
        failed: 0,
    };
    match source {
        StatementSource::PgSleep => vec![count("pg_sleep", "", STATEMENT)],
        StatementSource::File(f) => f
            .statements
            .iter()
            .map(|s| {
                let kind = match s.kind {
                    Kind::Read => "read",
                    Kind::Write => "write",
                };
                count(&s.name, kind, &s.sql)
            })
            .collect(),
        StatementSource::RecordedSql => vec![
            count("recorded", "", "(the trace's sql, read-only)"),
            count("pg_sleep", "", STATEMENT),
        ],
    }
}

/// [`run`] with the requests and their work from `jobs`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_jobs<J: JobSource>(
    target: &Target,
    pool_config: &PoolConfig,
    policy: Box<dyn Policy>,
    jobs: &mut J,
    opts: &RunOptions,
    live: &LiveOptions,
    sink: &mut dyn SampleSink,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Result<LiveOutcome, LiveError> {
    assert!(live.speed > 0.0 && live.speed.is_finite(), "speed > 0");
    if let StatementSource::File(f) = &live.statements {
        check_statements(target, f).await?;
    }
    // A server that is down may come up during the run (--wait-for-server):
    // then a probe keeps trying in the background while the pool, with its
    // own backoff, does the same.
    let mut probe: Option<JoinHandle<Result<(String, u32), LiveError>>> = None;
    let (mut server_version, mut server_max_connections) = match preflight(target).await {
        Ok(v) => v,
        // Down or starting up: the probe reports it or gives up.
        Err((_, true)) if !live.wait_for_server.is_zero() => {
            probe = Some(tokio::spawn(probe_until(
                target.clone(),
                live.wait_for_server,
            )));
            (String::new(), 0)
        }
        Err((e, _)) => return Err(e),
    };
    let mut fatal: Option<LiveError> = None;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let clock = LiveClock::start();
    let mut d = Driver {
        target,
        pool: Pool::new(
            pool_config.clone(),
            policy,
            SeedTree::new(live.seed).stream("pool"),
        ),
        slots: Vec::new(),
        fx: Vec::with_capacity(64),
        tx,
        clock,
        prepared: live.prepared,
        statements: live.statements.clone(),
        pool_on_broken_fails: pool_config.lifecycle.on_broken != OnBroken::Retry,
        jobs: BTreeMap::new(),
        next_ticket: 0,
        counts: initial_counts(&live.statements),
        timers: [None; 3],
        wake_at: None,
        pending_io: 0,
        next_generation: 1,
        connections_lost: 0,
        backends: 0,
        backends_max: 0,
        arrival_lag: Latency::default(),
        hold_overhead: Latency::default(),
        rtt_overhead: Latency::default(),
        connect: Latency::default(),
        connect_errors: 0,
        refused: 0,
        query_errors: 0,
        checks: 0,
        checks_failed: 0,
        errors: Vec::new(),
        closed: false,
        ended: Vec::new(),
        busy_clients: BTreeSet::new(),
    };
    // Source time (the trace's axis) to live time and back.
    let scale = |t: SimTime| SimTime((t.0 as f64 / live.speed).round() as u64);
    let unscale = |t: SimTime| SimTime((t.0 as f64 * live.speed).round() as u64);
    d.closed = jobs.close_loop();
    let mut cl = ClosedLoop::default();
    d.pool.start(SimTime::ZERO, &mut d.fx);
    d.apply_effects(SimTime::ZERO);
    let sample_interval = opts.sample_interval.filter(|si| si.0 > 0);
    let mut next_sample = sample_interval.map(|si| SimTime::ZERO + si);
    let mut last_sample = SimTime::ZERO;
    let mut next: Option<(Request, Work)> = jobs.next_job();
    if d.closed && next.is_some() {
        cl.clients += 1;
    }
    let mut last_arrival = SimTime::ZERO;
    let horizon = opts.horizon.map(|h| scale(SimTime(h.0)));
    let max_time = SimTime(opts.max_sim_time.0);
    let mut events: u64 = 0;
    let mut stop = stop;
    let mut interrupted = false;

    let end = 'run: loop {
        let now = d.clock.now();
        let end_at = horizon.unwrap_or(last_arrival).max(last_arrival);
        let done = if d.closed {
            // Every client stopped (none thinking, none waiting or
            // running), or, without drain, the horizon passed: clients
            // then in flight or thinking are reported as such.
            next.is_none()
                && now >= end_at
                && ((cl.thinking.is_empty() && d.pool.in_flight() == 0)
                    || (!opts.drain && horizon.is_some()))
        } else {
            next.is_none() && now >= end_at && (!opts.drain || d.pool.in_flight() == 0)
        };
        if done {
            break if opts.drain { now } else { end_at.min(now) };
        }
        if now > max_time {
            return Err(LiveError::Limit(format!(
                "run.max_sim_time = {} passed after {events} events",
                opts.max_sim_time
            )));
        }
        if events > opts.max_events {
            return Err(LiveError::Limit(format!(
                "run.max_events = {} processed",
                opts.max_events
            )));
        }
        let mut wake = [
            next.as_ref().map(|(r, _)| scale(r.arrival)),
            cl.thinking.keys().next().map(|&(at, _)| at),
            d.wake_at,
            next_sample,
            // Past: the run waits for requests in flight (an IO event or
            // the re-check below wakes it), not a timer that fires at once.
            next.is_none().then_some(end_at).filter(|&t| t > now),
        ]
        .into_iter()
        .chain(d.timers)
        .flatten()
        .min();
        // With nothing scheduled, wake now and then to re-check the end.
        if wake.is_none() {
            wake = Some(now + SimDuration::from_millis(100));
        }
        let wake = wake.expect("set above");
        tokio::select! {
            biased;
            _ = &mut stop => {
                interrupted = true;
                break d.clock.now();
            }
            found = async {
                match probe.as_mut() {
                    Some(p) => p.await,
                    None => std::future::pending().await,
                }
            }, if probe.is_some() => {
                probe = None;
                match found {
                    Ok(Ok((version, max))) => {
                        server_version = version;
                        server_max_connections = max;
                    }
                    Ok(Err(e)) => {
                        fatal = Some(e);
                        break d.clock.now();
                    }
                    Err(e) => {
                        fatal = Some(LiveError::Runtime(format!("the server probe failed: {e}")));
                        break d.clock.now();
                    }
                }
            }
            ev = rx.recv() => {
                let ev = ev.expect("the driver holds a sender");
                events += 1;
                let now = d.clock.now();
                d.on_io(now, ev);
            }
            _ = tokio::time::sleep_until(d.clock.deadline(wake)) => {
                let now = d.clock.now();
                for p in Priority::ALL {
                    if d.timers[p.index()].is_some_and(|at| at <= now) {
                        d.timers[p.index()] = None;
                        events += 1;
                        d.pool.expire(now, p, &mut d.fx);
                        d.apply_effects(now);
                    }
                }
                // Arrivals due: the source's (open loop, or each closed-loop
                // client's first request) merged with the closed-loop
                // clients' next requests, in arrival order.
                loop {
                    let first = next.as_ref().map(|(r, _)| scale(r.arrival));
                    let think = cl.thinking.keys().next().map(|&(at, _)| at);
                    let (r, work, ended) = match (first, think) {
                        (Some(a), t) if a <= now && t.is_none_or(|t| a <= t) => {
                            let (r, work) = next.take().expect("checked above");
                            next = jobs.next_job();
                            if d.closed && next.is_some() {
                                cl.clients += 1;
                            }
                            (r, work, None)
                        }
                        (_, Some(t)) if t <= now => {
                            let (_, (r, work, ended)) =
                                cl.thinking.pop_first().expect("checked above");
                            (r, work, Some(ended))
                        }
                        _ => break,
                    };
                    events += 1;
                    let at = scale(r.arrival);
                    d.arrival_lag.record(now - at);
                    if let Some(ended) = ended {
                        cl.think.record(now - ended);
                    }
                    last_arrival = last_arrival.max(at);
                    let id = match d.admit(now, &r, work) {
                        Ok(id) => id,
                        Err(e) => {
                            fatal = Some(e);
                            break 'run now;
                        }
                    };
                    d.pool.acquire(now, r.priority, ticket(id), &mut d.fx);
                    d.apply_effects(now);
                    // A request refused at once ended already: its client
                    // thinks again (below) before anything else is issued.
                    if !d.ended.is_empty() {
                        break;
                    }
                }
                if d.wake_at.is_some_and(|at| at <= now) {
                    events += 1;
                    d.wake_at = None;
                    d.pool.wake(now, &mut d.fx);
                    d.apply_effects(now);
                }
                if let (Some(t), Some(si)) = (next_sample, sample_interval) {
                    if t <= now {
                        events += 1;
                        sink.record(&d.pool.sample(now));
                        sink.progress(now, events);
                        last_sample = now;
                        next_sample = Some(catch_up(t, si, now));
                    }
                }
            }
        }
        // Closed loop: each client whose request ended gets its next one
        // from the source, a think time later (or stops).
        for (client, at) in std::mem::take(&mut d.ended) {
            match jobs.finished(client, unscale(at)) {
                Some((r, work)) => {
                    if r.client != client {
                        fatal = Some(LiveError::Invariant {
                            what: format!(
                                "the source answered the end of client {client}'s request with one of client {}",
                                r.client
                            ),
                            at,
                        });
                        break 'run now;
                    }
                    cl.seq += 1;
                    cl.thinking
                        .insert((scale(r.arrival).max(at), cl.seq), (r, work, at));
                }
                None => cl.stopped += 1,
            }
        }
        if opts.check_invariants {
            d.pool
                .check_invariants()
                .map_err(|what| LiveError::Invariant { what, at: now })?;
        }
    };

    // The summary is taken at `end`; then everything is shut down.
    if sample_interval.is_some() && end > last_sample {
        sink.record(&d.pool.sample(end));
    }
    d.pool.finish(end, &mut d.fx);
    d.apply_effects(end);
    d.pool
        .check_invariants()
        .map_err(|what| LiveError::Invariant { what, at: end })?;
    // Every closed-loop client is accounted for: stopped, thinking, or
    // with its one request in flight (the pool's count of those).
    let closed_loop = d.closed.then(|| ClosedLoopReport {
        clients: cl.clients,
        stopped: cl.stopped,
        thinking_at_end: (cl.thinking.len() + d.ended.len()) as u32,
        in_flight_at_end: d.busy_clients.len() as u32,
        think_ms: cl.think.summary_ms(),
    });
    if let Some(c) = &closed_loop {
        if c.stopped + c.thinking_at_end + c.in_flight_at_end != c.clients
            || u64::from(c.in_flight_at_end) != d.pool.in_flight()
        {
            fatal.get_or_insert(LiveError::Invariant {
                what: format!(
                    "closed-loop clients lost: {c:?}, but {} requests in flight",
                    d.pool.in_flight()
                ),
                at: end,
            });
        }
    }
    let wall = d.clock.now();
    let counters = d.pool.counters().clone();
    let Driver {
        pool,
        slots,
        pending_io,
        tx,
        arrival_lag,
        hold_overhead,
        rtt_overhead,
        connect,
        connect_errors,
        refused,
        query_errors,
        errors,
        backends_max,
        connections_lost,
        checks,
        checks_failed,
        counts,
        ..
    } = d;
    drop(tx);
    if let Some(p) = probe {
        p.abort();
    }
    let (cancelled, aborted) = shutdown(
        slots,
        pending_io,
        &mut rx,
        live.shutdown_grace,
        target.tls(),
    )
    .await;
    let report = LiveReport {
        schema: LIVE_SCHEMA.to_string(),
        pooltune_version: env!("CARGO_PKG_VERSION").to_string(),
        database: target.describe().to_string(),
        server_version: if server_version.is_empty() {
            "unknown (no probe reached the server)".to_string()
        } else {
            server_version
        },
        server_max_connections,
        application_name: target.application_name().to_string(),
        statement: match &live.statements {
            StatementSource::PgSleep => STATEMENT.to_string(),
            StatementSource::File(f) => format!(
                "{} statements of {} (see `statements`)",
                f.statements.len(),
                f.source
            ),
            StatementSource::RecordedSql => format!(
                "the trace's recorded SQL in read-only transactions; {STATEMENT} without it"
            ),
        },
        speed: live.speed,
        interrupted,
        wall_duration_s: wall.as_secs_f64(),
        arrival_lag_ms: arrival_lag.summary_ms(),
        hold_overhead_ms: hold_overhead.summary_ms(),
        round_trip_overhead_ms: rtt_overhead.summary_ms(),
        connect_ms: connect.summary_ms(),
        connect_errors,
        connects_refused: refused,
        query_errors,
        connections_closed_broken: counters.closed_broken,
        connections_lost,
        checks,
        checks_failed,
        errors,
        queries_cancelled: cancelled,
        connections_aborted: aborted,
        statement_source: live.statements.describe(),
        statements: counts,
        closed_loop,
    };
    if let Some(e) = fatal {
        return Err(e);
    }
    Ok(LiveOutcome {
        outcome: RunOutcome {
            pool,
            end,
            events,
            db_refused: refused,
            db_backends_max: backends_max,
            seed: live.seed,
        },
        report,
    })
}

/// The closed loop's side of a run: clients between two requests and the
/// count that proves none was lost.
#[derive(Default)]
struct ClosedLoop {
    /// Clients that sent a first request.
    clients: u32,
    /// Clients the source stopped (`finished` returned `None`).
    stopped: u32,
    /// Each thinking client's next request by (live issue time, sequence),
    /// with when its previous one ended.
    thinking: BTreeMap<(SimTime, u64), (Request, Work, SimTime)>,
    seq: u64,
    /// From a request's end to its client's next request being issued.
    think: Latency,
}

/// The first tick after `now` on the grid `t + k * iv` (a late timer does
/// not cause a burst of catch-up ticks).
fn catch_up(mut t: SimTime, iv: SimDuration, now: SimTime) -> SimTime {
    while t <= now {
        t += iv;
    }
    t
}

/// Whether a connect error may pass if the server is given time: it is
/// down (refused, timed out: no SQLSTATE) or starting up, not a refusal
/// of the login.
fn transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(c) => [
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::TOO_MANY_CONNECTIONS,
        ]
        .contains(c),
    }
}

/// Probes the server until it answers, with a backoff from 100 ms to 1 s,
/// for at most `wait`; fails at once on a refused login.
async fn probe_until(target: Target, wait: Duration) -> Result<(String, u32), LiveError> {
    let sw = Stopwatch::start();
    let mut backoff = Duration::from_millis(100);
    loop {
        let left = wait.saturating_sub(Duration::from_nanos(sw.elapsed().0));
        if left.is_zero() {
            // One last try, whose error is the one reported.
            return preflight(&target).await.map_err(|(e, _)| match e {
                LiveError::Connect { target, message } => LiveError::Connect {
                    target,
                    message: format!(
                        "{message} (still unreachable after --wait-for-server {:.1}s)",
                        wait.as_secs_f64()
                    ),
                },
                e => e,
            });
        }
        tokio::time::sleep(backoff.min(left)).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
        match preflight(&target).await {
            Ok(v) => return Ok(v),
            Err((e, false)) => return Err(e),
            Err((_, true)) => {}
        }
    }
}

/// Prepares every statement of the file once, before the run: a missing
/// table or a typo fails the run at once with the statement's name rather
/// than every connect of the pool.
async fn check_statements(target: &Target, file: &StatementFile) -> Result<(), LiveError> {
    let Ok((client, connection)) = target.config().connect(target.tls()).await else {
        // The preflight reports an unreachable server.
        return Ok(());
    };
    let task = tokio::spawn(connection);
    let mut result = Ok(());
    for (i, s) in file.statements.iter().enumerate() {
        if let Err(e) = client.prepare(&s.sql).await {
            if e.code().is_none() {
                break;
            }
            result = Err(LiveError::Target(format!(
                "{}: statement[{}] `{}`: the server cannot prepare it: {}{}",
                file.source,
                i + 1,
                s.name,
                target.redact(&error_text(&e)),
                if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
                    " (for the pgbench tables, run `pooltune live prepare` first)"
                } else {
                    ""
                }
            )));
            break;
        }
    }
    drop(client);
    let _ = task.await;
    result
}

/// Connects once before the run: a clear error if the database cannot be
/// reached, and the server's version and max_connections for the report.
/// The flag says whether the error may pass with time ([`transient`]).
async fn preflight(target: &Target) -> Result<(String, u32), (LiveError, bool)> {
    let fail = |e: tokio_postgres::Error| {
        (
            LiveError::Connect {
                target: target.describe().to_string(),
                message: target.redact(&error_text(&e)),
            },
            transient(&e),
        )
    };
    let (client, connection) = target.config().connect(target.tls()).await.map_err(fail)?;
    let task = tokio::spawn(connection);
    let result = async {
        let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
        let max: String = client.query_one("SHOW max_connections", &[]).await?.get(0);
        Ok::<_, tokio_postgres::Error>((version, max.parse().unwrap_or(0)))
    }
    .await;
    drop(client);
    let _ = task.await;
    result.map_err(fail)
}

/// The error with its cause (tokio-postgres puts the server's message in
/// the source).
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

/// A health check or validation: a trivial query in the simple protocol
/// (one round trip, no statement), answered within `timeout`.
pub(crate) async fn check(client: &Client, timeout: SimDuration) -> bool {
    let query = client.simple_query("SELECT 1");
    match tokio::time::Instant::now().checked_add(Duration::from_nanos(timeout.0)) {
        Some(deadline) => matches!(tokio::time::timeout_at(deadline, query).await, Ok(Ok(_))),
        // Beyond any instant: no bound.
        None => query.await.is_ok(),
    }
}

/// A connection with what its requests need: in read-only mode
/// `default_transaction_read_only` set; when preparing, `pg_sleep` (unless
/// a statement file replaces it) or the file's statements prepared.
type Connected = (
    Client,
    Option<Statement>,
    Arc<Vec<Statement>>,
    JoinHandle<()>,
);

async fn connect_and_prepare(
    target: &Target,
    prepare: bool,
    statements: &StatementSource,
    on_end: impl FnOnce() + Send + 'static,
) -> Result<Connected, tokio_postgres::Error> {
    let (client, connection) = target.config().connect(target.tls()).await?;
    let task = tokio::spawn(async move {
        // Ends when we close the client, or when the server closes the
        // connection (terminated backend, restart): then the driver is told.
        let _ = connection.await;
        on_end();
    });
    let setup = async {
        if matches!(statements, StatementSource::RecordedSql) {
            // Every transaction of this session is read-only unless a
            // statement says otherwise (and each recorded statement runs
            // inside `BEGIN READ ONLY` ... `ROLLBACK` as well).
            client
                .batch_execute("SET default_transaction_read_only = on")
                .await?;
        }
        if !prepare {
            return Ok((None, Arc::new(Vec::new())));
        }
        match statements {
            StatementSource::File(f) => {
                let mut v = Vec::with_capacity(f.statements.len());
                for s in &f.statements {
                    v.push(client.prepare(&s.sql).await?);
                }
                Ok((None, Arc::new(v)))
            }
            _ => Ok((
                Some(client.prepare_typed(STATEMENT, &[Type::FLOAT8]).await?),
                Arc::new(Vec::new()),
            )),
        }
    }
    .await;
    match setup {
        Ok((stmt, stmts)) => Ok((client, stmt, stmts, task)),
        Err(e) => {
            drop(client);
            let _ = task.await;
            Err(e)
        }
    }
}

/// Runs one request's work on `client`: its result (the error text
/// unredacted) after the whole exchange.
async fn execute(
    client: &Client,
    stmt: Option<&Statement>,
    stmts: &[Statement],
    statements: &StatementSource,
    work: &Work,
    service: SimDuration,
) -> Result<(), String> {
    let pg = |e: tokio_postgres::Error| error_text(&e);
    match work {
        Work::Sleep => {
            let secs = service.as_secs_f64();
            match stmt {
                Some(stmt) => client.execute(stmt, &[&secs]).await.map(|_| ()),
                // Unnamed, in one round trip (Parse, Bind, Execute, Sync):
                // fine behind transaction poolers.
                None => client
                    .query_typed(STATEMENT, &[(&secs, Type::FLOAT8)])
                    .await
                    .map(|_| ()),
            }
            .map_err(pg)
        }
        Work::Statement { index, values } => {
            let prepared = stmts.get(*index);
            let mut bound = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                let ty = prepared.and_then(|s| s.params().get(i));
                bound.push(
                    statements::bind(v, ty).map_err(|m| format!("parameter ${}: {m}", i + 1))?,
                );
            }
            match prepared {
                Some(s) => {
                    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = bound
                        .iter()
                        .map(|(b, _)| b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    client.execute(s, &refs).await.map(|_| ()).map_err(pg)
                }
                None => {
                    let StatementSource::File(f) = statements else {
                        return Err("no statement file".to_string());
                    };
                    let sql = &f.statements[*index].sql;
                    let typed: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> = bound
                        .iter()
                        .map(|(b, t)| {
                            (
                                b.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync),
                                t.clone(),
                            )
                        })
                        .collect();
                    client
                        .query_typed(sql, &typed)
                        .await
                        .map(|_| ())
                        .map_err(pg)
                }
            }
        }
        Work::Sql(sql) => {
            // The extended protocol takes one statement only (no `;`
            // chains), inside a read-only transaction that is rolled back:
            // a write fails, and a setting the statement changes is undone.
            client.batch_execute("BEGIN READ ONLY").await.map_err(pg)?;
            let result = client.query_typed(sql, &[]).await.map(|_| ()).map_err(pg);
            let end = client.batch_execute("ROLLBACK").await.map_err(pg);
            result.and(end)
        }
    }
}

impl Driver<'_> {
    fn slot(&mut self, conn: ConnId) -> &mut Slot {
        let i = conn as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, Slot::default);
        }
        &mut self.slots[i]
    }

    /// Files a request's work and returns its ticket. A closed-loop client
    /// never has two requests in flight: one that would is a bug of the
    /// source or of this driver, reported rather than run.
    fn admit(&mut self, now: SimTime, r: &Request, work: Work) -> Result<u64, LiveError> {
        if self.closed && !self.busy_clients.insert(r.client) {
            return Err(LiveError::Invariant {
                what: format!(
                    "closed-loop client {} sent a request while its previous one was in flight",
                    r.client
                ),
                at: now,
            });
        }
        let service = r.service;
        let id = self.next_ticket;
        self.next_ticket += 1;
        let count = match (&work, &self.statements) {
            (Work::Statement { index, .. }, _) => *index,
            (Work::Sleep, StatementSource::RecordedSql) => 1,
            _ => 0,
        };
        self.counts[count].picked += 1;
        self.jobs.insert(
            id,
            Job {
                service,
                work,
                count,
                client: r.client,
            },
        );
        Ok(id)
    }

    /// The request with ticket `id` ended at `now` (served, timed out,
    /// refused or failed for good): its work is dropped and, in a closed
    /// loop, its client is due to think.
    fn end_job(&mut self, id: u64, now: SimTime) {
        if let Some(job) = self.jobs.remove(&id) {
            if self.closed {
                self.busy_clients.remove(&job.client);
                self.ended.push((job.client, now));
            }
        }
    }

    fn note_error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS_KEPT && !self.errors.contains(&message) {
            self.errors.push(message);
        }
    }

    fn on_io(&mut self, now: SimTime, ev: IoEvent) {
        if !matches!(ev, IoEvent::Lost { .. }) {
            self.pending_io -= 1;
        }
        match ev {
            IoEvent::Connected {
                conn,
                client,
                stmt,
                stmts,
                task,
                took,
            } => {
                self.connect.record(took);
                self.backends += 1;
                self.backends_max = self.backends_max.max(self.backends);
                let slot = self.slot(conn);
                slot.cancel = Some(client.cancel_token());
                slot.client = Some(client);
                slot.stmt = stmt;
                slot.stmts = stmts;
                slot.task = Some(task);
                self.pool.connected(now, conn, &mut self.fx);
            }
            IoEvent::ConnectFailed {
                conn,
                message,
                refused,
            } => {
                self.connect_errors += 1;
                if refused {
                    self.refused += 1;
                }
                self.note_error(message);
                // The pool retries after its create backoff (a Wake).
                self.pool.connect_error(now, conn, &mut self.fx);
            }
            IoEvent::QueryDone {
                conn,
                client,
                stmt,
                result,
                rtt,
            } => {
                let slot = self.slot(conn);
                slot.busy = false;
                let usable = !client.is_closed();
                slot.client = Some(client);
                slot.stmt = stmt;
                let (started, service, id) = (slot.started, slot.service, slot.ticket);
                let count = self.jobs.get(&id).map(|j| j.count);
                match result {
                    Ok(()) => {
                        self.hold_overhead
                            .record(SimDuration((now - started).0.saturating_sub(service.0)));
                        self.rtt_overhead
                            .record(SimDuration(rtt.0.saturating_sub(service.0)));
                        if let Some(c) = count {
                            self.counts[c].completed += 1;
                        }
                        self.end_job(id, now);
                        self.pool.release(now, conn, &mut self.fx);
                    }
                    Err(message) => {
                        self.query_errors += 1;
                        self.note_error(message);
                        if let Some(c) = count {
                            self.counts[c].failed += 1;
                        }
                        // A request sent back to its queue keeps its work.
                        if usable || self.pool_on_broken_fails {
                            self.end_job(id, now);
                        }
                        self.pool.fail(now, conn, usable, ticket(id), &mut self.fx);
                    }
                }
            }
            IoEvent::Checked { conn, client, ok } => {
                let slot = self.slot(conn);
                slot.busy = false;
                slot.checking = false;
                // A connection the server closed while the check ran fails
                // it even if the answer raced in.
                let ok = ok && !client.is_closed();
                slot.client = Some(client);
                self.checks += 1;
                if !ok {
                    self.checks_failed += 1;
                }
                // The pool decides: back to idle, retry, or close and replace.
                self.pool.checked(now, conn, ok, &mut self.fx);
            }
            IoEvent::Closed { conn } => self.pool.closed(now, conn),
            IoEvent::Lost { conn, generation } => {
                let slot = self.slot(conn);
                // Busy: its query fails and reports; closed by us: stale.
                if slot.generation == generation && slot.client.is_some() && !slot.busy {
                    self.connections_lost += 1;
                    self.pool.lost(now, conn, &mut self.fx);
                }
            }
        }
        self.apply_effects(now);
    }

    /// Carries out what the pool asked for.
    fn apply_effects(&mut self, now: SimTime) {
        let mut fx = std::mem::take(&mut self.fx);
        for e in fx.drain(..) {
            match e {
                Effect::Open(conn) => {
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    self.slot(conn).generation = generation;
                    self.pending_io += 1;
                    let tx = self.tx.clone();
                    let target = self.target.clone();
                    let prepare = self.prepared;
                    let statements = self.statements.clone();
                    tokio::spawn(async move {
                        let sw = Stopwatch::start();
                        let watch = tx.clone();
                        let on_end = move || {
                            let _ = watch.send(IoEvent::Lost { conn, generation });
                        };
                        let ev = match connect_and_prepare(&target, prepare, &statements, on_end)
                            .await
                        {
                            Ok((client, stmt, stmts, task)) => IoEvent::Connected {
                                conn,
                                client,
                                stmt,
                                stmts,
                                task,
                                took: sw.elapsed(),
                            },
                            Err(e) => IoEvent::ConnectFailed {
                                conn,
                                refused: e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS),
                                message: target.redact(&error_text(&e)),
                            },
                        };
                        let _ = tx.send(ev);
                    });
                }
                Effect::Start { conn, payload, .. } => {
                    let id = payload.0;
                    let (service, work) = match self.jobs.get(&id) {
                        Some(j) => (j.service, j.work.clone()),
                        // Cannot happen: a ticket stays filed until its
                        // request ends. Run nothing rather than panic.
                        None => (SimDuration::ZERO, Work::Sleep),
                    };
                    let statements = self.statements.clone();
                    let slot = self.slot(conn);
                    let client = slot.client.take().expect("a started connection is open");
                    let stmt = slot.stmt.clone();
                    let stmts = slot.stmts.clone();
                    slot.busy = true;
                    slot.started = now;
                    slot.service = service;
                    slot.ticket = id;
                    self.pending_io += 1;
                    let tx = self.tx.clone();
                    let target = self.target.clone();
                    tokio::spawn(async move {
                        let sw = Stopwatch::start();
                        let result =
                            execute(&client, stmt.as_ref(), &stmts, &statements, &work, service)
                                .await
                                .map_err(|e| target.redact(&e));
                        let rtt = sw.elapsed();
                        let _ = tx.send(IoEvent::QueryDone {
                            conn,
                            client,
                            stmt,
                            result,
                            rtt,
                        });
                    });
                }
                Effect::Close { conn, reason } => {
                    let slot = self.slot(conn);
                    let client = slot.client.take();
                    // A `Lost` from this connection's end is ours: stale.
                    slot.generation = 0;
                    slot.stmt = None;
                    slot.cancel = None;
                    let task = slot.task.take();
                    if client.is_some() {
                        self.backends -= 1;
                    }
                    debug_assert!(
                        client.is_some() || reason == CloseReason::Broken,
                        "closing a connection that is not open"
                    );
                    self.pending_io += 1;
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        // Dropping the client sends Terminate; the
                        // connection task then ends.
                        drop(client);
                        if let Some(task) = task {
                            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
                        }
                        let _ = tx.send(IoEvent::Closed { conn });
                    });
                }
                Effect::ArmTimer { priority, at } => self.timers[priority.index()] = Some(at),
                Effect::Wake { at } => {
                    self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
                }
                Effect::Check { conn, timeout } => {
                    let slot = self.slot(conn);
                    let client = slot.client.take().expect("a checked connection is open");
                    slot.busy = true;
                    slot.checking = true;
                    self.pending_io += 1;
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        let ok = check(&client, timeout).await;
                        let _ = tx.send(IoEvent::Checked { conn, client, ok });
                    });
                }
                // The pool counted the request (timed out, rejected, or
                // failed: its connect failed or it was handed a broken
                // connection); in a closed loop its client thinks next.
                Effect::TimedOut { payload, .. }
                | Effect::Rejected { payload, .. }
                | Effect::Failed { payload, .. } => self.end_job(payload.0, now),
            }
        }
        // Nothing above calls the pool: hand the (empty) buffer back.
        self.fx = fx;
    }
}

/// After the summary: cancel running queries, wait (bounded) for every IO
/// task, close every connection. Returns (queries cancelled, connections
/// aborted).
async fn shutdown(
    mut slots: Vec<Slot>,
    mut pending_io: u64,
    rx: &mut mpsc::UnboundedReceiver<IoEvent>,
    grace: Duration,
    tls: MakeRustlsConnect,
) -> (u64, u64) {
    // One deadline for the whole shutdown: never more than `grace` in all
    // for cancelling and draining, and `grace` again for closing.
    let deadline = tokio::time::Instant::now() + grace;
    let cancels: Vec<JoinHandle<()>> = slots
        .iter()
        .filter(|s| s.busy && !s.checking)
        .filter_map(|s| s.cancel.clone())
        .map(|token| {
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = token.cancel_query(tls).await;
            })
        })
        .collect();
    let cancelled = cancels.len() as u64;
    for c in cancels {
        let abort = c.abort_handle();
        if tokio::time::timeout_at(deadline, c).await.is_err() {
            abort.abort();
        }
    }
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    while pending_io > 0 {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                pending_io -= 1;
                match ev {
                    IoEvent::Connected { client, task, .. } => {
                        drop(client);
                        tasks.push(task);
                    }
                    IoEvent::QueryDone { conn, client, .. }
                    | IoEvent::Checked { conn, client, .. } => {
                        drop(client);
                        if let Some(t) = slots.get_mut(conn as usize).and_then(|s| s.task.take()) {
                            tasks.push(t);
                        }
                    }
                    IoEvent::ConnectFailed { .. } | IoEvent::Closed { .. } => {}
                    // Not an answer to an effect (uncounted).
                    IoEvent::Lost { .. } => pending_io += 1,
                }
            }
            // Every sender is gone (cannot happen while tasks run) or the grace passed.
            Ok(None) | Err(_) => break,
        }
    }
    for slot in &mut slots {
        slot.client = None;
        if let Some(t) = slot.task.take() {
            tasks.push(t);
        }
    }
    let mut aborted = 0;
    let deadline = tokio::time::Instant::now() + grace;
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            abort.abort();
            aborted += 1;
        }
    }
    (cancelled, aborted)
}
