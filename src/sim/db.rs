//! The simulated database: connect latency, `max_connections`, and
//! contention as a processor-sharing slowdown (Universal Scalability Law).
//!
//! With `m` queries running, each progresses at rate
//! `1 / (1 + sigma (m - 1) + kappa m (m - 1))`. When `m` changes, every
//! running query's remaining work is rescaled. This uses virtual time: `V`
//! advances at the current rate, a query that starts at `V0` with work `w`
//! ends when `V` reaches `V0 + w`, so only the earliest such finish needs an
//! event (O(log n) per change). With sigma = kappa = 0 every query simply
//! takes its work, and the fast path schedules it directly.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::core::pool::ConnId;
use crate::dist::{DurationDist, Sampler};
use crate::rng::{SeedTree, Stream};
use crate::time::{SimDuration, SimTime};

/// Validated database model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatabaseModel {
    pub connect_latency: DurationDist,
    /// Connections beyond this are refused (after the connect latency).
    pub max_connections: u32,
    pub usl_sigma: f64,
    pub usl_kappa: f64,
}

impl DatabaseModel {
    /// Speed of each query with `m` running (1 when uncontended).
    pub fn rate(&self, m: u32) -> f64 {
        let m = m as f64;
        1.0 / (1.0 + self.usl_sigma * (m - 1.0).max(0.0) + self.usl_kappa * m * (m - 1.0).max(0.0))
    }
}

/// What the database asks the driver to schedule.
pub enum Completion {
    /// This connection's query ends at this time.
    At(SimTime, ConnId),
    /// Wake the shared model at this time with this generation.
    Wake(SimTime, u32),
}

pub struct Database {
    model: DatabaseModel,
    connect: Sampler,
    connect_rng: Stream,
    /// Backends (server connections) that exist or are being set up.
    pub backends: u32,
    pub backends_max_seen: u32,
    pub refused: u64,
    shared: Option<Shared>,
}

struct Shared {
    vtime: f64,
    last: SimTime,
    running: BinaryHeap<Reverse<(u64, u64, ConnId)>>,
    seq: u64,
    generation: u32,
}

impl Database {
    pub fn new(model: &DatabaseModel, seeds: &SeedTree) -> Self {
        let shared = (model.usl_sigma != 0.0 || model.usl_kappa != 0.0).then(|| Shared {
            vtime: 0.0,
            last: SimTime::ZERO,
            running: BinaryHeap::new(),
            seq: 0,
            generation: 0,
        });
        Database {
            connect: model.connect_latency.sampler(),
            connect_rng: seeds.stream("connect"),
            model: model.clone(),
            backends: 0,
            backends_max_seen: 0,
            refused: 0,
            shared,
        }
    }

    /// A client starts connecting; returns the latency and whether the
    /// server accepts (false when `max_connections` is reached).
    pub fn connect(&mut self) -> (SimDuration, bool) {
        let latency = self.connect.sample(&mut self.connect_rng);
        if self.backends >= self.model.max_connections {
            self.refused += 1;
            return (latency, false);
        }
        self.backends += 1;
        self.backends_max_seen = self.backends_max_seen.max(self.backends);
        (latency, true)
    }

    pub fn disconnect(&mut self) {
        self.backends -= 1;
    }

    /// A query with `work` starts on `conn`.
    #[inline]
    pub fn start(&mut self, now: SimTime, conn: ConnId, work: SimDuration) -> Completion {
        let Some(s) = self.shared.as_mut() else {
            return Completion::At(now + work, conn);
        };
        Self::advance(s, &self.model, now);
        // Virtual finish times in ns of work, rounded up: ordering is exact.
        let finish = (s.vtime + work.as_nanos() as f64).ceil() as u64;
        s.running.push(Reverse((finish, s.seq, conn)));
        s.seq += 1;
        Self::reschedule(s, &self.model, now)
    }

    /// The shared model's wake-up fired; returns the finished connection and
    /// the next wake-up, or `None` if the wake-up is stale.
    pub fn wake(&mut self, now: SimTime, generation: u32) -> Option<(ConnId, Option<Completion>)> {
        let s = self.shared.as_mut()?;
        if generation != s.generation {
            return None;
        }
        Self::advance(s, &self.model, now);
        let Reverse((finish, _, conn)) = s.running.pop()?;
        s.vtime = s.vtime.max(finish as f64);
        let next = if s.running.is_empty() {
            s.generation = s.generation.wrapping_add(1);
            None
        } else {
            Some(Self::reschedule(s, &self.model, now))
        };
        Some((conn, next))
    }

    pub fn running(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.running.len())
    }

    fn advance(s: &mut Shared, model: &DatabaseModel, now: SimTime) {
        let m = s.running.len() as u32;
        if m > 0 {
            s.vtime += (now - s.last).as_nanos() as f64 * model.rate(m);
        }
        s.last = now;
    }

    fn reschedule(s: &mut Shared, model: &DatabaseModel, now: SimTime) -> Completion {
        s.generation = s.generation.wrapping_add(1);
        let Reverse((finish, _, _)) = *s.running.peek().expect("called with queries running");
        let rate = model.rate(s.running.len() as u32);
        let remaining = (finish as f64 - s.vtime).max(0.0) / rate;
        Completion::Wake(now + SimDuration(remaining.ceil() as u64), s.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(sigma: f64, kappa: f64) -> DatabaseModel {
        DatabaseModel {
            connect_latency: DurationDist::Constant { value_ns: 1000 },
            max_connections: 2,
            usl_sigma: sigma,
            usl_kappa: kappa,
        }
    }

    #[test]
    fn refuses_beyond_max_connections() {
        let mut db = Database::new(&model(0.0, 0.0), &SeedTree::new(1));
        assert!(db.connect().1 && db.connect().1);
        assert!(!db.connect().1);
        assert_eq!(db.refused, 1);
        db.disconnect();
        assert!(db.connect().1);
    }

    #[test]
    fn two_queries_share_the_server_at_the_usl_rate() {
        // sigma = 1: with 2 running each goes at 1/2 speed.
        let mut db = Database::new(&model(1.0, 0.0), &SeedTree::new(1));
        let t0 = SimTime(0);
        db.start(t0, 0, SimDuration(100));
        let Completion::Wake(t, g) = db.start(t0, 1, SimDuration(300)) else {
            panic!()
        };
        // First ends when 100 ns of work is done at half speed.
        assert_eq!(t, SimTime(200));
        let (c, next) = db.wake(t, g).unwrap();
        assert_eq!(c, 0);
        // The second has 200 ns of work left, now alone at full speed.
        let Some(Completion::Wake(t2, g2)) = next else {
            panic!()
        };
        assert_eq!(t2, SimTime(400));
        assert!(db.wake(t2, g).is_none(), "stale generation is ignored");
        assert_eq!(db.wake(t2, g2).unwrap().0, 1);
    }
}
