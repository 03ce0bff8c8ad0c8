//! The simulated driver: virtual time, an event heap, the trace merged in
//! through a cursor, and the simulated database. It runs the same pool and
//! policy code as the live driver.
//!
//! A run is a pure function of its inputs and seed: no clock, no OS entropy,
//! no hash-map order. Every run is bounded by `max_events` and `max_sim_time`.

pub mod db;
pub mod event;
pub mod queueing;

use crate::core::metrics::SampleSink;
use crate::core::policy::Policy;
use crate::core::pool::{Effect, Pool, PoolConfig};
use crate::error::SimError;
use crate::rng::SeedTree;
use crate::time::{SimDuration, SimTime};
use crate::trace::RequestSource;

pub use db::{Database, DatabaseModel};
use event::{Event, EventQueue, Phase};

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
        }
    }
}

/// What a finished run hands to the summary.
pub struct RunOutcome {
    /// The pool at the end, with all its metrics.
    pub pool: Pool<SimDuration>,
    /// Simulated end time.
    pub end: SimTime,
    pub events: u64,
    pub db_refused: u64,
    pub db_backends_max: u32,
    pub seed: u64,
}

/// Runs one simulation.
pub fn simulate<S: RequestSource>(
    pool_config: &PoolConfig,
    policy: Box<dyn Policy>,
    db_model: &DatabaseModel,
    mut source: S,
    seeds: &SeedTree,
    opts: &RunOptions,
    sink: &mut dyn SampleSink,
) -> Result<RunOutcome, SimError> {
    let mut sim = Sim {
        pool: Pool::new(pool_config.clone(), policy, seeds.stream("pool")),
        db: Database::new(db_model, seeds),
        queue: EventQueue::new(),
        fx: Vec::with_capacity(64),
        now: SimTime::ZERO,
    };
    let seed = seeds.master();
    let max_time = SimTime(opts.max_sim_time.0);
    sim.pool.start(SimTime::ZERO, &mut sim.fx);
    sim.apply_effects();
    let sample_interval = opts.sample_interval.filter(|d| d.0 > 0);
    if let Some(si) = sample_interval {
        sim.queue.push(SimTime::ZERO + si, Event::Sample);
    }
    let mut last_sample = SimTime::ZERO;
    let mut next = source.next_request();
    let mut last_arrival = SimTime::ZERO;
    let horizon = opts.horizon.map(|h| SimTime(h.0));
    let mut events: u64 = 0;

    loop {
        let take_arrival = match (&next, sim.queue.peek()) {
            (Some(r), Some(e)) => (r.arrival, Phase::Arrival) < (e.time, e.phase()),
            (Some(_), None) => true,
            (None, Some(e)) => {
                let end = horizon.unwrap_or(last_arrival).max(last_arrival);
                let done = e.time > end && (!opts.drain || sim.pool.in_flight() == 0);
                if done {
                    break;
                }
                false
            }
            (None, None) => break,
        };
        events += 1;
        if events & 0xFFFF == 0 {
            sink.progress(sim.now, events);
        }
        if events > opts.max_events {
            return Err(SimError::MaxEvents {
                limit: opts.max_events,
                at: sim.now,
                seed,
            });
        }
        if take_arrival {
            let r = next.take().expect("checked above");
            if r.arrival > max_time {
                return Err(SimError::MaxSimTime {
                    limit: opts.max_sim_time,
                    events,
                    seed,
                });
            }
            sim.now = r.arrival;
            last_arrival = r.arrival;
            sim.pool
                .acquire(r.arrival, r.priority, r.service, &mut sim.fx);
            sim.apply_effects();
            next = source.next_request();
        } else {
            let e = sim.queue.pop().expect("peeked above");
            if e.time > max_time {
                return Err(SimError::MaxSimTime {
                    limit: opts.max_sim_time,
                    events,
                    seed,
                });
            }
            sim.now = e.time;
            let now = e.time;
            match e.event {
                Event::QueryDone(conn) => sim.pool.release(now, conn, &mut sim.fx),
                Event::DbWake(generation) => {
                    if let Some((conn, next_wake)) = sim.db.wake(now, generation) {
                        if let Some(c) = next_wake {
                            sim.schedule(c);
                        }
                        sim.pool.release(now, conn, &mut sim.fx);
                    }
                }
                Event::ConnectDone(conn) => sim.pool.connected(now, conn, &mut sim.fx),
                Event::ConnectFailed(conn) => sim.pool.connect_failed(now, conn),
                Event::Timeout(p) => sim.pool.expire(now, p, &mut sim.fx),
                Event::PoolWake => sim.pool.wake(now, &mut sim.fx),
                Event::Sample => {
                    sink.record(&sim.pool.sample(now));
                    last_sample = now;
                    if let Some(si) = sample_interval {
                        sim.queue.push(now + si, Event::Sample);
                    }
                }
            }
            sim.apply_effects();
        }
        if opts.check_invariants {
            sim.pool
                .check_invariants()
                .map_err(|what| SimError::Invariant {
                    what,
                    at: sim.now,
                    seed,
                })?;
        }
    }

    let end = match horizon {
        Some(h) if !opts.drain => h.max(last_arrival),
        Some(h) => h.max(sim.now),
        None => sim.now,
    };
    if sample_interval.is_some() && end > last_sample {
        sink.record(&sim.pool.sample(end));
    }
    sim.now = end;
    sim.pool.finish(end, &mut sim.fx);
    sim.apply_effects();
    sim.pool
        .check_invariants()
        .map_err(|what| SimError::Invariant {
            what,
            at: end,
            seed,
        })?;
    Ok(RunOutcome {
        end,
        events,
        db_refused: sim.db.refused,
        db_backends_max: sim.db.backends_max_seen,
        seed,
        pool: sim.pool,
    })
}

struct Sim {
    pool: Pool<SimDuration>,
    db: Database,
    queue: EventQueue,
    fx: Vec<Effect<SimDuration>>,
    now: SimTime,
}

impl Sim {
    #[inline]
    fn apply_effects(&mut self) {
        let now = self.now;
        // Index loop: `closed` below needs the pool while effects are read.
        let mut i = 0;
        while i < self.fx.len() {
            match self.fx[i] {
                Effect::Start { conn, payload, .. } => {
                    let c = self.db.start(now, conn, payload);
                    self.schedule(c);
                }
                Effect::Open(conn) => {
                    let (latency, accepted) = self.db.connect();
                    let ev = if accepted {
                        Event::ConnectDone(conn)
                    } else {
                        Event::ConnectFailed(conn)
                    };
                    self.queue.push(now + latency, ev);
                }
                Effect::Close { conn, .. } => {
                    self.db.disconnect();
                    self.pool.closed(now, conn);
                }
                Effect::ArmTimer { priority, at } => self.queue.push(at, Event::Timeout(priority)),
                Effect::Wake { at } => self.queue.push(at, Event::PoolWake),
                Effect::Check { .. } => unreachable!("health checks are not simulated yet"),
                Effect::TimedOut { .. } | Effect::Rejected { .. } | Effect::Failed { .. } => {}
            }
            i += 1;
        }
        self.fx.clear();
    }

    #[inline]
    fn schedule(&mut self, c: db::Completion) {
        match c {
            db::Completion::At(t, conn) => self.queue.push(t, Event::QueryDone(conn)),
            db::Completion::Wake(t, g) => self.queue.push(t, Event::DbWake(g)),
        }
    }
}
