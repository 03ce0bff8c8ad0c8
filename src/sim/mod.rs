//! The simulated driver: virtual time, an event heap, the trace merged in
//! through a cursor, one pool per application instance, the simulated
//! database they share, and faults. It runs the same pool and policy code as
//! the live driver.
//!
//! A run is a pure function of its inputs and seed: no clock, no OS entropy,
//! no hash-map order. Every run is bounded by `max_events` and `max_sim_time`.

pub mod db;
pub mod event;
pub mod fault;
pub mod fleet;
pub mod queueing;
pub mod topology;

use rand::Rng;
use rand_distr::{Distribution, Exp};

use crate::core::metrics::{Sample, SampleSink};
use crate::core::policy::Policy;
use crate::core::pool::{ConnId, Effect, Pool, PoolConfig};
use crate::core::request::Request;
use crate::error::SimError;
use crate::rng::{SeedTree, Stream};
use crate::time::{SimDuration, SimTime};
use crate::trace::RequestSource;

pub use db::{Database, DatabaseModel, DbStats, Wire};
use event::{Arrivals, Event, EventQueue, Phase};
pub use fault::{DropAmount, FaultKind, FaultRecord, FaultSpec, FaultTiming};

/// How a run is bounded and observed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunOptions {
    /// Stop with an error after this many events.
    pub max_events: u64,
    /// Stop with an error when simulated time passes this.
    pub max_sim_time: SimDuration,
    /// Time-series sampling interval (`None`: no time series).
    pub sample_interval: Option<SimDuration>,
    /// The run lasts at least until here (the trace's duration), so an idle
    /// tail still counts in connection-seconds and policy decisions.
    pub horizon: Option<SimDuration>,
    /// After the last arrival, keep going until every request has finished
    /// (true), or stop at the horizon and report what is still in flight.
    pub drain: bool,
    /// Check the pool's invariants after every event (slower; tests).
    pub check_invariants: bool,
    /// A fault's recovery ends when every instance has handed a request a
    /// working connection after a wait of at most this (see [`fault`]).
    pub recovery_wait: SimDuration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            max_events: 10_000_000_000,
            max_sim_time: SimDuration::from_secs(30 * 24 * 3600),
            sample_interval: Some(SimDuration::from_secs(1)),
            horizon: None,
            drain: true,
            check_invariants: false,
            recovery_wait: SimDuration::from_millis(100),
        }
    }
}

/// How arrivals are spread over application instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Request i goes to instance i mod N (a load balancer's default).
    #[default]
    RoundRobin,
    /// Each request to an instance drawn uniformly (seeded stream `balance`).
    Random,
}

/// Everything around the pools: the database, the wire, how requests reach
/// the instances, and the faults.
#[derive(Clone, Debug, PartialEq)]
pub struct World {
    pub database: DatabaseModel,
    pub wire: Wire,
    pub balance: Balance,
    pub faults: Vec<FaultSpec>,
}

impl World {
    /// A plain database: no round trip, no faults.
    pub fn plain(database: DatabaseModel) -> World {
        World {
            database,
            wire: Wire::default(),
            balance: Balance::RoundRobin,
            faults: Vec::new(),
        }
    }
}

/// What the plain loop's pools carry for each request: its work, and, from a
/// closed-loop source, the client to tell when it ends. Open-loop runs carry
/// the bare work (8 bytes), so the fast path pays nothing for closed loops.
pub trait Payload: Copy + std::fmt::Debug {
    /// Requests come from a closed-loop source: report their ends.
    const CLOSED: bool;
    fn new(request: &Request) -> Self;
    fn work(self) -> SimDuration;
    /// The payload of a request with `work` from `client`.
    fn from_parts(work: SimDuration, client: u32) -> Self;
    fn client(self) -> u32;
}

impl Payload for SimDuration {
    const CLOSED: bool = false;
    #[inline]
    fn new(request: &Request) -> Self {
        request.service
    }
    #[inline]
    fn work(self) -> SimDuration {
        self
    }
    #[inline]
    fn from_parts(work: SimDuration, _client: u32) -> Self {
        work
    }
    #[inline]
    fn client(self) -> u32 {
        0
    }
}

/// A closed-loop request's payload: its work and its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientWork {
    pub work: SimDuration,
    pub client: u32,
}

impl Payload for ClientWork {
    const CLOSED: bool = true;
    #[inline]
    fn new(request: &Request) -> Self {
        ClientWork {
            work: request.service,
            client: request.client,
        }
    }
    #[inline]
    fn work(self) -> SimDuration {
        self.work
    }
    #[inline]
    fn from_parts(work: SimDuration, client: u32) -> Self {
        ClientWork { work, client }
    }
    #[inline]
    fn client(self) -> u32 {
        self.client
    }
}

/// What a finished single-pool run hands to the summary.
pub struct RunOutcome<P = SimDuration> {
    /// The pool at the end, with all its metrics.
    pub pool: Pool<P>,
    /// Simulated end time.
    pub end: SimTime,
    pub events: u64,
    /// Connects refused (max_connections reached, or server down).
    pub db_refused: u64,
    pub db_backends_max: u32,
    pub seed: u64,
}

/// What a finished run of the whole world hands to the summary.
pub struct WorldOutcome<P = SimDuration> {
    /// One pool per application instance, at the end, with its metrics.
    pub pools: Vec<Pool<P>>,
    pub end: SimTime,
    pub events: u64,
    pub seed: u64,
    pub db: DbStats,
    /// Every fault occurrence, in the order they began.
    pub faults: Vec<FaultRecord>,
}

/// Runs one pool against a plain database (no round trip, no faults): the
/// queueing models, the validation suite and the benchmark. `P` is
/// [`SimDuration`] for open-loop sources, [`ClientWork`] for closed loops.
pub fn simulate<S: RequestSource, P: Payload>(
    pool_config: &PoolConfig,
    policy: Box<dyn Policy>,
    db_model: &DatabaseModel,
    source: S,
    seeds: &SeedTree,
    opts: &RunOptions,
    sink: &mut dyn SampleSink,
) -> Result<RunOutcome<P>, SimError> {
    let world = World::plain(db_model.clone());
    let mut out = simulate_world(pool_config, vec![policy], &world, source, seeds, opts, sink)?;
    Ok(RunOutcome {
        pool: out.pools.pop().expect("one instance"),
        end: out.end,
        events: out.events,
        db_refused: out.db.refused + out.db.refused_down,
        db_backends_max: out.db.backends_max,
        seed: out.seed,
    })
}

/// Runs the world: one application instance per policy (each its own pool
/// with `pool_config`, its lifecycle draws from the seeded stream
/// `pool/<i>`), arrivals spread over them by `world.balance`, one shared
/// database. The time series gets one row per interval for all instances
/// together (sums; utilization weighted by size).
///
/// With `P = ClientWork` the loop calls the source's `close_loop` and
/// reports every request's end to it (see [`RequestSource::finished`]):
/// served, timed out, refused, or failed for good.
pub fn simulate_world<S: RequestSource, P: Payload>(
    pool_config: &PoolConfig,
    policies: Vec<Box<dyn Policy>>,
    world: &World,
    mut source: S,
    seeds: &SeedTree,
    opts: &RunOptions,
    sink: &mut dyn SampleSink,
) -> Result<WorldOutcome<P>, SimError> {
    let n = policies.len();
    assert!(
        (1..=u16::MAX as usize).contains(&n),
        "1 to 65535 application instances"
    );
    let pools = policies
        .into_iter()
        .enumerate()
        .map(|(i, p)| Pool::new(pool_config.clone(), p, seeds.indexed("pool", i as u64)))
        .collect();
    let mut sim = Sim {
        pools,
        db: Database::new(&world.database, world.wire, n, seeds),
        queue: EventQueue::new(),
        fx: Vec::with_capacity(64),
        now: SimTime::ZERO,
        faults: world
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| (*f, seeds.indexed("fault", i as u64)))
            .collect(),
        records: Vec::new(),
        active: Vec::new(),
        window_faults: 0,
        recovering: Vec::new(),
        recovery_wait: opts.recovery_wait,
        marks: SampleMarks::default(),
        clients: Vec::new(),
        ended: Vec::new(),
    };
    let closed = P::CLOSED && source.close_loop();
    let seed = seeds.master();
    let bounds = Bounds::new(opts, seed);
    for i in 0..n {
        sim.pools[i].start(SimTime::ZERO, &mut sim.fx);
        sim.apply_effects(i as u16);
    }
    for i in 0..sim.faults.len() {
        let (spec, rng) = &mut sim.faults[i];
        let at = match spec.timing {
            FaultTiming::At(t) => Some(SimTime(t.0)),
            FaultTiming::Rate { per_hour } => next_occurrence(SimTime::ZERO, per_hour, rng),
        };
        if let Some(at) = at {
            sim.queue.push(at, Event::FaultStart(i as u32));
        }
    }
    let sample_interval = opts.sample_interval.filter(|d| d.0 > 0);
    if let Some(si) = sample_interval {
        sim.queue.push(SimTime::ZERO + si, Event::Sample);
    }
    let mut balance_rng = seeds.stream("balance");
    let mut next_inst = 0usize;
    let mut last_sample = SimTime::ZERO;
    let mut next = source.next_request();
    // Closed loop: the clients' next requests, by (arrival, order returned).
    let mut follow: Arrivals<Request> = Arrivals::default();
    let mut last_arrival = SimTime::ZERO;
    let horizon = opts.horizon.map(|h| SimTime(h.0));
    let mut events: u64 = 0;
    // A closed loop without a horizon makes new arrivals while anything
    // is in flight: it may only stop once nothing is.
    let may_cut = !opts.drain && (horizon.is_some() || !closed);

    loop {
        // The trace cursor first at equal times, then follow-ups.
        let from_cursor = closed
            && match (&next, follow.peek()) {
                (Some(r), Some(t)) => r.arrival <= t,
                (Some(_), None) => true,
                (None, _) => false,
            };
        let arrival = if closed && !from_cursor {
            follow.peek()
        } else {
            next.as_ref().map(|r| r.arrival)
        };
        let take_arrival = match (arrival, sim.queue.peek()) {
            (Some(a), Some(e)) => (a, Phase::Arrival) < (e.time, e.phase()),
            (Some(_), None) => true,
            (None, Some(e)) => {
                let end = horizon.unwrap_or(last_arrival).max(last_arrival);
                let done = e.time > end && (may_cut || sim.in_flight() == 0);
                if done {
                    break;
                }
                false
            }
            (None, None) => break,
        };
        bounds.event(&mut events, sim.now, sink)?;
        if take_arrival {
            let r = if closed && !from_cursor {
                follow.pop().expect("checked above")
            } else {
                next.take().expect("checked above")
            };
            bounds.time(r.arrival, events)?;
            sim.now = r.arrival;
            last_arrival = r.arrival;
            let inst = if n == 1 {
                0
            } else {
                match world.balance {
                    Balance::RoundRobin => {
                        let i = next_inst;
                        next_inst = if i + 1 == n { 0 } else { i + 1 };
                        i
                    }
                    Balance::Random => balance_rng.random_range(0..n),
                }
            };
            sim.pools[inst].acquire(r.arrival, r.priority, P::new(&r), &mut sim.fx);
            sim.apply_effects(inst as u16);
            if next.is_none() {
                next = source.next_request();
            }
        } else {
            let e = sim.queue.pop().expect("peeked above");
            bounds.time(e.time, events)?;
            sim.now = e.time;
            let now = e.time;
            match e.event {
                Event::QueryDone { inst, conn } => {
                    if sim.db.done(now, inst, conn) {
                        sim.ended_on(inst, conn);
                        sim.pools[inst as usize].release(now, conn, &mut sim.fx);
                        sim.apply_effects(inst);
                    }
                }
                Event::DbWake(generation) => {
                    if let Some(((inst, conn), next_wake)) = sim.db.wake(now, generation) {
                        if let Some(c) = next_wake {
                            sim.schedule(c);
                        }
                        sim.ended_on(inst, conn);
                        sim.pools[inst as usize].release(now, conn, &mut sim.fx);
                        sim.apply_effects(inst);
                    }
                }
                Event::QueryFailed { inst, conn } => {
                    let payload = sim.payload_on(inst, conn);
                    sim.pools[inst as usize].fail(now, conn, false, payload, &mut sim.fx);
                    sim.apply_effects(inst);
                }
                Event::CheckDone {
                    inst,
                    conn,
                    in_time,
                } => {
                    let ok = sim.db.check_answer(inst, conn, in_time);
                    sim.pools[inst as usize].checked(now, conn, ok, &mut sim.fx);
                    sim.apply_effects(inst);
                }
                Event::ConnectDone { inst, conn } => {
                    let pool = &mut sim.pools[inst as usize];
                    if sim.db.connected(inst, conn) {
                        pool.connected(now, conn, &mut sim.fx);
                    } else {
                        pool.connect_error(now, conn, &mut sim.fx);
                    }
                    sim.apply_effects(inst);
                }
                Event::ConnectFailed { inst, conn } => {
                    sim.pools[inst as usize].connect_error(now, conn, &mut sim.fx);
                    sim.apply_effects(inst);
                }
                Event::Timeout { inst, priority } => {
                    sim.pools[inst as usize].expire(now, priority, &mut sim.fx);
                    sim.apply_effects(inst);
                }
                Event::PoolWake(inst) => {
                    sim.pools[inst as usize].wake(now, &mut sim.fx);
                    sim.apply_effects(inst);
                }
                Event::FaultStart(i) => sim.fault_start(i as usize),
                Event::FaultEnd(r) => sim.fault_end(r as usize),
                Event::Sample => {
                    let s = sim.sample(now);
                    sink.record(&s);
                    last_sample = now;
                    if let Some(si) = sample_interval {
                        sim.queue.push(now + si, Event::Sample);
                    }
                }
            }
        }
        if closed {
            for client in sim.ended.drain(..) {
                if let Some(r) = source.finished(client, sim.now) {
                    follow.push(r.arrival, r);
                }
            }
        }
        if opts.check_invariants {
            sim.check_invariants(seed)?;
        }
    }

    let end = match horizon {
        Some(h) if !opts.drain => h.max(last_arrival),
        Some(h) => h.max(sim.now),
        None => sim.now,
    };
    if sample_interval.is_some() && end > last_sample {
        let s = sim.sample(end);
        sink.record(&s);
    }
    sim.now = end;
    for i in 0..n {
        sim.pools[i].finish(end, &mut sim.fx);
        sim.apply_effects(i as u16);
    }
    sim.check_invariants(seed)?;
    Ok(WorldOutcome {
        end,
        events,
        seed,
        db: sim.db.stats.clone(),
        faults: sim.records,
        pools: sim.pools,
    })
}

/// A run's bounds, checked the same way by both event loops.
pub(crate) struct Bounds {
    max_events: u64,
    max_time: SimTime,
    max_sim_time: SimDuration,
    seed: u64,
}

impl Bounds {
    pub(crate) fn new(opts: &RunOptions, seed: u64) -> Self {
        Bounds {
            max_events: opts.max_events,
            max_time: SimTime(opts.max_sim_time.0),
            max_sim_time: opts.max_sim_time,
            seed,
        }
    }

    /// Counts one more event at `now`: progress every 65,536 events, and
    /// the `max_events` bound.
    #[inline]
    pub(crate) fn event(
        &self,
        events: &mut u64,
        now: SimTime,
        sink: &mut dyn SampleSink,
    ) -> Result<(), SimError> {
        *events += 1;
        if *events & 0xFFFF == 0 {
            sink.progress(now, *events);
        }
        if *events > self.max_events {
            return Err(SimError::MaxEvents {
                limit: self.max_events,
                at: now,
                seed: self.seed,
            });
        }
        Ok(())
    }

    /// The `max_sim_time` bound for something happening at `t`.
    #[inline]
    pub(crate) fn time(&self, t: SimTime, events: u64) -> Result<(), SimError> {
        if t > self.max_time {
            return Err(SimError::MaxSimTime {
                limit: self.max_sim_time,
                events,
                seed: self.seed,
            });
        }
        Ok(())
    }
}

/// The next occurrence of a fault drawn at `per_hour` after `now`.
pub(crate) fn next_occurrence(now: SimTime, per_hour: f64, rng: &mut Stream) -> Option<SimTime> {
    let exp = Exp::new(per_hour / 3600.0).ok()?;
    let gap_s: f64 = exp.sample(rng);
    Some(now.saturating_add(SimDuration::from_secs_f64(gap_s)))
}

/// A fault that has ended and whose recovery is being measured.
struct Recovery {
    record: usize,
    since: SimTime,
    /// Instances that have served since.
    served: Vec<bool>,
    left: usize,
}

/// Counters at the previous sample, for the time series' deltas.
#[derive(Default)]
struct SampleMarks {
    opened: u64,
    closed: u64,
    failed: u64,
    checks_failed: u64,
    refused: u64,
}

struct Sim<P> {
    pools: Vec<Pool<P>>,
    db: Database,
    queue: EventQueue,
    fx: Vec<Effect<P>>,
    now: SimTime,
    /// Each `[[faults]]` entry with its stream (occurrence times, choices).
    faults: Vec<(FaultSpec, Stream)>,
    records: Vec<FaultRecord>,
    /// Faults in progress: (record, kind).
    active: Vec<(usize, FaultKind)>,
    /// Faults active at some point of the current sample window.
    window_faults: u32,
    recovering: Vec<Recovery>,
    recovery_wait: SimDuration,
    marks: SampleMarks,
    /// Closed loop: the client whose request runs on each connection slot
    /// (by instance, then slot).
    clients: Vec<Vec<u32>>,
    /// Closed loop: clients whose requests ended at `now`, to report.
    ended: Vec<u32>,
}

impl<P: Payload> Sim<P> {
    /// Closed loop: the request running on `conn` ends now.
    #[inline]
    fn ended_on(&mut self, inst: u16, conn: ConnId) {
        if P::CLOSED {
            self.ended.push(self.clients[inst as usize][conn as usize]);
        }
    }

    /// The payload of the request running on `conn`.
    #[inline]
    fn payload_on(&self, inst: u16, conn: ConnId) -> P {
        let work = self.db.payload(inst, conn);
        if P::CLOSED {
            P::from_parts(work, self.clients[inst as usize][conn as usize])
        } else {
            P::from_parts(work, 0)
        }
    }

    /// Carries out the effects instance `inst`'s pool asked for.
    #[inline]
    fn apply_effects(&mut self, inst: u16) {
        let now = self.now;
        // Index loop: `closed` below needs the pool while effects are read.
        let mut i = 0;
        while i < self.fx.len() {
            match self.fx[i] {
                Effect::Start {
                    conn,
                    payload,
                    waited,
                    ..
                } => {
                    if !self.recovering.is_empty()
                        && waited <= self.recovery_wait
                        && self.db.alive(inst, conn)
                    {
                        self.served(inst);
                    }
                    if P::CLOSED {
                        let slots = &mut self.clients;
                        if slots.len() <= inst as usize {
                            slots.resize(inst as usize + 1, Vec::new());
                        }
                        let s = &mut slots[inst as usize];
                        if s.len() <= conn as usize {
                            s.resize(conn as usize + 1, 0);
                        }
                        s[conn as usize] = payload.client();
                    }
                    let c = self.db.start(now, inst, conn, payload.work());
                    self.schedule(c);
                }
                Effect::Open(conn) => {
                    let (latency, result) = self.db.connect(inst, conn);
                    let ev = if result == db::ConnectResult::Accepted {
                        Event::ConnectDone { inst, conn }
                    } else {
                        Event::ConnectFailed { inst, conn }
                    };
                    self.queue.push(now + latency, ev);
                }
                Effect::Close { conn, .. } => {
                    self.db.disconnect(inst, conn);
                    self.pools[inst as usize].closed(now, conn);
                }
                Effect::ArmTimer { priority, at } => {
                    self.queue.push(at, Event::Timeout { inst, priority })
                }
                Effect::Wake { at } => self.queue.push(at, Event::PoolWake(inst)),
                Effect::Check { conn, timeout } => {
                    let (at, in_time) = self.db.check(now, timeout);
                    self.queue.push(
                        at,
                        Event::CheckDone {
                            inst,
                            conn,
                            in_time,
                        },
                    );
                }
                Effect::TimedOut { payload, .. }
                | Effect::Rejected { payload, .. }
                | Effect::Failed { payload, .. } => {
                    if P::CLOSED {
                        self.ended.push(payload.client());
                    }
                }
            }
            i += 1;
        }
        self.fx.clear();
    }

    #[inline]
    fn schedule(&mut self, c: db::Completion) {
        match c {
            db::Completion::At(t, inst, conn) => {
                self.queue.push(t, Event::QueryDone { inst, conn })
            }
            db::Completion::Wake(t, g) => self.queue.push(t, Event::DbWake(g)),
            db::Completion::FailAt(t, inst, conn) => {
                self.queue.push(t, Event::QueryFailed { inst, conn })
            }
        }
    }

    fn in_flight(&self) -> u64 {
        self.pools.iter().map(|p| p.in_flight()).sum()
    }

    fn check_invariants(&self, seed: u64) -> Result<(), SimError> {
        for (i, p) in self.pools.iter().enumerate() {
            p.check_invariants().map_err(|what| SimError::Invariant {
                what: if self.pools.len() > 1 {
                    format!("instance {i}: {what}")
                } else {
                    what
                },
                at: self.now,
                seed,
            })?;
        }
        Ok(())
    }

    /// Instance `inst` served a request promptly on a working connection.
    fn served(&mut self, inst: u16) {
        let now = self.now;
        for r in &mut self.recovering {
            if now >= r.since && !r.served[inst as usize] {
                r.served[inst as usize] = true;
                r.left -= 1;
                if r.left == 0 {
                    self.records[r.record].recovery_s = Some((now - r.since).as_secs_f64());
                }
            }
        }
        self.recovering.retain(|r| r.left > 0);
    }

    /// The `[[faults]]` entry `index` happens now.
    fn fault_start(&mut self, index: usize) {
        let now = self.now;
        let (spec, _) = self.faults[index];
        let record = self.records.len();
        let duration = spec.kind.duration();
        self.records.push(FaultRecord {
            fault: index,
            kind: spec.kind.name().to_string(),
            start_s: now.as_secs_f64(),
            end_s: (now.saturating_add(duration)).as_secs_f64(),
            connections_broken: 0,
            queries_failed: 0,
            recovery_s: None,
        });
        self.window_faults += 1;
        if duration.0 > 0 {
            self.active.push((record, spec.kind));
            self.set_fault_state();
        }
        let victims = self.db.victims(&spec.kind, &mut self.faults[index].1);
        if !victims.is_empty() {
            self.break_backends(record, &victims);
        }
        if duration.0 > 0 {
            self.queue
                .push(now.saturating_add(duration), Event::FaultEnd(record as u32));
        } else {
            self.begin_recovery(record);
        }
        if let FaultTiming::Rate { per_hour } = spec.timing {
            if let Some(at) = next_occurrence(now, per_hour, &mut self.faults[index].1) {
                self.queue.push(at, Event::FaultStart(index as u32));
            }
        }
    }

    /// The fault occurrence `record` ends now.
    fn fault_end(&mut self, record: usize) {
        self.active.retain(|(r, _)| *r != record);
        self.set_fault_state();
        self.begin_recovery(record);
    }

    fn begin_recovery(&mut self, record: usize) {
        let n = self.pools.len();
        self.recovering.push(Recovery {
            record,
            since: self.now,
            served: vec![false; n],
            left: n,
        });
    }

    /// The database's fault state from the faults in progress.
    fn set_fault_state(&mut self) {
        self.db.set_faults(self.active.iter().map(|(_, k)| k));
    }

    /// Breaks these backends now; the queries running on them fail.
    fn break_backends(&mut self, record: usize, victims: &[(u16, u32)]) {
        let now = self.now;
        let before = self.db.stats.broken;
        let mut killed = Vec::new();
        for &(inst, conn) in victims {
            if let Some(k) = self.db.break_backend(inst, conn) {
                killed.push(k);
            }
        }
        if let Some(c) = self.db.resync(now) {
            self.schedule(c);
        }
        let r = &mut self.records[record];
        r.connections_broken += self.db.stats.broken - before;
        r.queries_failed += killed.len() as u64;
        for k in killed {
            let payload = if P::CLOSED {
                P::from_parts(
                    k.payload,
                    self.clients[k.instance as usize][k.conn as usize],
                )
            } else {
                P::from_parts(k.payload, 0)
            };
            self.pools[k.instance as usize].fail(now, k.conn, false, payload, &mut self.fx);
            self.apply_effects(k.instance);
        }
    }

    /// One time-series row for every instance together.
    fn sample(&mut self, now: SimTime) -> Sample {
        let mut s = self.pools[0].sample(now);
        let mut weighted_util = s.utilization * s.size_mean;
        for p in &mut self.pools[1..] {
            let t = p.sample(now);
            s.add(&t);
            weighted_util += t.utilization * t.size_mean;
        }
        if self.pools.len() > 1 {
            s.utilization = if s.size_mean > 0.0 {
                weighted_util / s.size_mean
            } else {
                0.0
            };
        }
        // Deltas of the counters, over every instance.
        let mut m = SampleMarks::default();
        for p in &self.pools {
            let c = p.counters();
            m.opened += c.opened;
            m.closed += c.closed_shrink
                + c.closed_end_of_run
                + c.closed_broken
                + c.closed_idle
                + c.closed_lifetime
                + c.closed_max_uses;
            m.failed += p.classes().iter().map(|k| k.failed).sum::<u64>();
        }
        let st = &self.db.stats;
        m.checks_failed = st.checks_failed;
        m.refused = st.refused + st.refused_down;
        s.opened = m.opened - self.marks.opened;
        s.closed = m.closed - self.marks.closed;
        s.failed = m.failed - self.marks.failed;
        s.checks_failed = m.checks_failed - self.marks.checks_failed;
        s.db_refused = m.refused - self.marks.refused;
        s.faults_active = self.window_faults;
        self.marks = m;
        self.window_faults = self.active.len() as u32;
        s
    }
}
