//! The simulated database: connect latency, `max_connections`, backends
//! that break, a per-query round trip, and contention as a
//! processor-sharing slowdown (Universal Scalability Law).
//!
//! With `m` queries running, each progresses at rate
//! `1 / (1 + sigma (m - 1) + kappa m (m - 1))`. When `m` changes, every
//! running query's remaining work is rescaled. This uses virtual time: `V`
//! advances at the current rate, a query that starts at `V0` with work `w`
//! ends when `V` reaches `V0 + w`, so only the earliest such finish needs an
//! event (O(log n) per change). With sigma = kappa = 0 every query simply
//! takes its work, and the fast path schedules it directly.
//!
//! The database is shared by every application instance: one
//! `max_connections`, one contention model. It tracks, per connection slot
//! of each instance, whether a backend exists and still works, so that a
//! fault can break backends the pools do not know about yet: a query or a
//! check on a broken backend fails after one round trip, and a query running
//! on a backend when it breaks fails at that instant.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::Rng;
use serde::Serialize;

use crate::core::pool::ConnId;
use crate::dist::{DurationDist, Sampler};
use crate::rng::{SeedTree, Stream};
use crate::sim::fault::{DropAmount, FaultKind};
use crate::time::{SimDuration, SimTime};

/// Validated database model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatabaseModel {
    pub connect_latency: DurationDist,
    /// Connections beyond this are refused (after one round trip, see
    /// [`Wire::refusal_latency`]).
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

/// The round trips between the application and the server.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Wire {
    /// Added to every query's hold time (the statement's round trip), and
    /// the time a health check or validation takes. Default 0, so the
    /// queueing validation cases stay exact.
    pub query_overhead: SimDuration,
    /// What a refused connect costs (`max_connections` reached, server
    /// down): the server answers at once, so one round trip, not the full
    /// connect latency.
    pub refusal_latency: SimDuration,
}

impl Default for Wire {
    fn default() -> Self {
        Wire {
            query_overhead: SimDuration::ZERO,
            refusal_latency: SimDuration::from_millis(1),
        }
    }
}

/// What the database asks the driver to schedule for a query.
pub enum Completion {
    /// This connection's query ends at this time.
    At(SimTime, u16, ConnId),
    /// Wake the shared model at this time with this generation.
    Wake(SimTime, u32),
    /// The connection's backend is broken: the query fails at this time.
    FailAt(SimTime, u16, ConnId),
}

/// How a connect attempt goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectResult {
    /// A backend is set up; the connect completes after the latency.
    Accepted,
    /// Refused: `max_connections` reached.
    Full,
    /// Refused: the server is down (restart fault).
    Down,
    /// Fails after its latency (connect_failures fault).
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum SlotState {
    #[default]
    Free,
    /// A connect is under way; it holds a backend.
    Connecting,
    Open,
    /// The backend is gone; the pool has not noticed yet.
    Broken,
}

/// One connection slot of one instance.
#[derive(Clone, Debug, Default)]
struct Slot {
    state: SlotState,
    /// A query runs on it (one that a break would fail).
    running: bool,
    /// The running query's work (handed back to the pool when it fails).
    payload: SimDuration,
    /// The running query's end (fast path).
    end: SimTime,
    /// End times of queries failed by a break whose completion event is
    /// still queued (fast path): such an event is ignored when it fires.
    stale: Vec<SimTime>,
}

/// A query failed by a break: the driver answers `Pool::fail`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Killed {
    pub instance: u16,
    pub conn: ConnId,
    pub payload: SimDuration,
}

/// Counters of the database, over the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbStats {
    /// Connects refused at `max_connections`.
    pub refused: u64,
    /// Connects refused because the server was down.
    pub refused_down: u64,
    /// Connects that failed (connect_failures fault).
    pub connect_errors: u64,
    /// Most backends at once.
    pub backends_max: u32,
    /// Backends broken by faults.
    pub broken: u64,
    /// Queries failed: running when their backend broke, or started on a
    /// broken backend.
    pub queries_failed: u64,
    /// Checks answered, and how many found the backend broken or timed out.
    pub checks: u64,
    pub checks_failed: u64,
    /// Refusals (both kinds) per instance.
    pub refused_by_instance: Vec<u64>,
}

pub struct Database {
    model: DatabaseModel,
    wire: Wire,
    connect: Sampler,
    connect_rng: Stream,
    fail_rng: Stream,
    /// Backends (server connections) that exist or are being set up.
    pub backends: u32,
    pub stats: DbStats,
    slots: Vec<Vec<Slot>>,
    /// Fault state, set by the driver.
    pub down: bool,
    pub service_factor: f64,
    pub connect_factor: f64,
    pub connect_fail_p: f64,
    shared: Option<Shared>,
    /// Breaks failed queries in the shared model since the last resync.
    resync: bool,
}

struct Shared {
    vtime: f64,
    last: SimTime,
    /// (virtual finish, sequence, instance << 32 | conn)
    running: BinaryHeap<Reverse<(u64, u64, u64)>>,
    seq: u64,
    generation: u32,
}

#[inline]
fn key(instance: u16, conn: ConnId) -> u64 {
    ((instance as u64) << 32) | conn as u64
}

#[inline]
fn scale(d: SimDuration, f: f64) -> SimDuration {
    if f == 1.0 {
        d
    } else {
        SimDuration::from_nanos_f64(d.as_nanos() as f64 * f)
    }
}

impl Database {
    /// A database for `instances` application instances.
    pub fn new(model: &DatabaseModel, wire: Wire, instances: usize, seeds: &SeedTree) -> Self {
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
            fail_rng: seeds.stream("connect_failures"),
            model: model.clone(),
            wire,
            backends: 0,
            stats: DbStats {
                refused_by_instance: vec![0; instances],
                ..DbStats::default()
            },
            slots: vec![Vec::new(); instances],
            down: false,
            service_factor: 1.0,
            connect_factor: 1.0,
            connect_fail_p: 0.0,
            shared,
            resync: false,
        }
    }

    /// Registers one more client (a pool that connects here); returns its
    /// index.
    pub fn add_client(&mut self) -> u16 {
        self.slots.push(Vec::new());
        self.stats.refused_by_instance.push(0);
        u16::try_from(self.slots.len() - 1).expect("at most 65536 clients per server")
    }

    /// Sets the fault state from the faults in progress: factors multiply,
    /// connect failure probabilities combine as independent.
    pub fn set_faults<'a>(&mut self, active: impl Iterator<Item = &'a FaultKind>) {
        self.down = false;
        self.service_factor = 1.0;
        self.connect_factor = 1.0;
        let mut ok = 1.0;
        for k in active {
            match *k {
                FaultKind::Restart { .. } => self.down = true,
                FaultKind::LatencySpike { factor, .. } => self.service_factor *= factor,
                FaultKind::SlowConnects { factor, .. } => self.connect_factor *= factor,
                FaultKind::ConnectFailures { probability, .. } => ok *= 1.0 - probability,
                FaultKind::DropConnections(_) => {}
            }
        }
        self.connect_fail_p = 1.0 - ok;
    }

    /// The backends a fault of this kind breaks at its start: every live
    /// one for a restart, a seeded sample for a connection drop.
    pub fn victims(&self, kind: &FaultKind, rng: &mut Stream) -> Vec<(u16, ConnId)> {
        match *kind {
            FaultKind::Restart { .. } => self.live_slots(),
            FaultKind::DropConnections(amount) => {
                let mut live = self.live_slots();
                let k = match amount {
                    DropAmount::Count(c) => (c as usize).min(live.len()),
                    DropAmount::Fraction(f) => {
                        ((live.len() as f64 * f).ceil() as usize).min(live.len())
                    }
                };
                // A partial Fisher-Yates shuffle: k distinct backends.
                for j in 0..k {
                    let pick = rng.random_range(j..live.len());
                    live.swap(j, pick);
                }
                live.truncate(k);
                live
            }
            _ => Vec::new(),
        }
    }

    pub fn wire(&self) -> Wire {
        self.wire
    }

    #[inline]
    fn slot(&mut self, instance: u16, conn: ConnId) -> &mut Slot {
        let v = &mut self.slots[instance as usize];
        let i = conn as usize;
        if i >= v.len() {
            v.resize(i + 1, Slot::default());
        }
        &mut v[i]
    }

    /// A client of `instance` starts connecting slot `conn`; returns the
    /// time until the answer and how it goes.
    pub fn connect(&mut self, instance: u16, conn: ConnId) -> (SimDuration, ConnectResult) {
        // Drawn first in every case, so refusals do not shift later draws.
        let latency = scale(
            self.connect.sample(&mut self.connect_rng),
            self.connect_factor,
        );
        let refused = if self.down {
            self.stats.refused_down += 1;
            Some(ConnectResult::Down)
        } else if self.backends >= self.model.max_connections {
            self.stats.refused += 1;
            Some(ConnectResult::Full)
        } else {
            None
        };
        if let Some(r) = refused {
            self.stats.refused_by_instance[instance as usize] += 1;
            return (self.wire.refusal_latency, r);
        }
        if self.connect_fail_p > 0.0 && self.fail_rng.random_bool(self.connect_fail_p.min(1.0)) {
            self.stats.connect_errors += 1;
            return (latency, ConnectResult::Error);
        }
        self.backends += 1;
        self.stats.backends_max = self.stats.backends_max.max(self.backends);
        self.slot(instance, conn).state = SlotState::Connecting;
        (latency, ConnectResult::Accepted)
    }

    /// An accepted connect completes; false if its backend broke meanwhile
    /// (the connect fails).
    pub fn connected(&mut self, instance: u16, conn: ConnId) -> bool {
        let s = self.slot(instance, conn);
        if s.state == SlotState::Connecting {
            s.state = SlotState::Open;
            true
        } else {
            s.state = SlotState::Free;
            false
        }
    }

    /// The pool closed the connection in this slot.
    pub fn disconnect(&mut self, instance: u16, conn: ConnId) {
        let s = self.slot(instance, conn);
        let held = matches!(s.state, SlotState::Open | SlotState::Connecting);
        s.state = SlotState::Free;
        s.running = false;
        if held {
            self.backends -= 1;
        }
    }

    /// Whether the slot's backend works.
    pub fn alive(&self, instance: u16, conn: ConnId) -> bool {
        self.slots[instance as usize]
            .get(conn as usize)
            .is_some_and(|s| s.state == SlotState::Open)
    }

    /// A query with `work` starts on `conn` of `instance`. Its hold time is
    /// the round trip plus its work (times a latency spike's factor).
    #[inline]
    pub fn start(
        &mut self,
        now: SimTime,
        instance: u16,
        conn: ConnId,
        work: SimDuration,
    ) -> Completion {
        let overhead = scale(self.wire.query_overhead, self.service_factor);
        let payload = work;
        let work = scale(work, self.service_factor);
        let shared = self.shared.is_some();
        let s = self.slot(instance, conn);
        // Unscaled: a failed query retried after a latency spike must not
        // carry the spike's factor twice.
        s.payload = payload;
        if s.state != SlotState::Open {
            self.stats.queries_failed += 1;
            return Completion::FailAt(now + overhead, instance, conn);
        }
        s.running = true;
        if !shared {
            let end = now + overhead + work;
            s.end = end;
            return Completion::At(end, instance, conn);
        }
        let s = self.shared.as_mut().expect("checked above");
        Self::advance(s, &self.model, now);
        // The round trip is counted as work here: under contention it is
        // slowed down with the query (a simplification; 0 by default).
        let w = (overhead + work).as_nanos() as f64;
        // Virtual finish times in ns of work, rounded up: ordering is exact.
        let finish = (s.vtime + w).ceil() as u64;
        s.running
            .push(Reverse((finish, s.seq, key(instance, conn))));
        s.seq += 1;
        Self::reschedule(s, &self.model, now)
    }

    /// The payload of the query last started on this slot (for a query
    /// that failed on a broken backend).
    pub fn payload(&self, instance: u16, conn: ConnId) -> SimDuration {
        self.slots[instance as usize][conn as usize].payload
    }

    /// A fast-path completion event fired: false if it belongs to a query
    /// that a break already failed.
    #[inline]
    pub fn done(&mut self, now: SimTime, instance: u16, conn: ConnId) -> bool {
        let s = &mut self.slots[instance as usize][conn as usize];
        if !s.stale.is_empty() {
            if let Some(i) = s.stale.iter().position(|&t| t == now) {
                s.stale.swap_remove(i);
                return false;
            }
        }
        s.running = false;
        true
    }

    /// The shared model's wake-up fired; returns the finished connection and
    /// the next wake-up, or `None` if the wake-up is stale.
    pub fn wake(
        &mut self,
        now: SimTime,
        generation: u32,
    ) -> Option<((u16, ConnId), Option<Completion>)> {
        let s = self.shared.as_mut()?;
        if generation != s.generation {
            return None;
        }
        Self::advance(s, &self.model, now);
        let Reverse((finish, _, k)) = s.running.pop()?;
        s.vtime = s.vtime.max(finish as f64);
        let next = if s.running.is_empty() {
            s.generation = s.generation.wrapping_add(1);
            None
        } else {
            Some(Self::reschedule(s, &self.model, now))
        };
        let (instance, conn) = ((k >> 32) as u16, k as u32);
        self.slots[instance as usize][conn as usize].running = false;
        Some(((instance, conn), next))
    }

    pub fn running(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.running.len())
    }

    /// A check (health check, keepalive, validation) on `conn`: when it
    /// answers and whether it can succeed. It takes one round trip; longer
    /// than `timeout`, it fails at the timeout. Whether the backend works
    /// is decided when it answers ([`Database::check_answer`]).
    pub fn check(&self, now: SimTime, timeout: SimDuration) -> (SimTime, bool) {
        let rtt = scale(self.wire.query_overhead, self.service_factor);
        if rtt > timeout {
            (now.saturating_add(timeout), false)
        } else {
            (now + rtt, true)
        }
    }

    /// The check on `conn` answers now: ok if it could succeed and the
    /// backend works.
    pub fn check_answer(&mut self, instance: u16, conn: ConnId, in_time: bool) -> bool {
        let ok = in_time && self.alive(instance, conn);
        self.stats.checks += 1;
        if !ok {
            self.stats.checks_failed += 1;
        }
        ok
    }

    /// Backends that exist now: (instance, conn) of each established or
    /// connecting slot, in slot order.
    pub fn live_slots(&self) -> Vec<(u16, ConnId)> {
        let mut out = Vec::new();
        for (i, v) in self.slots.iter().enumerate() {
            for (c, s) in v.iter().enumerate() {
                if matches!(s.state, SlotState::Open | SlotState::Connecting) {
                    out.push((i as u16, c as ConnId));
                }
            }
        }
        out
    }

    /// The backend of `conn` breaks now. A query running on it fails at
    /// this instant (returned); a connect under way will fail when it
    /// completes.
    pub fn break_backend(&mut self, instance: u16, conn: ConnId) -> Option<Killed> {
        let s = &mut self.slots[instance as usize][conn as usize];
        if !matches!(s.state, SlotState::Open | SlotState::Connecting) {
            return None;
        }
        s.state = SlotState::Broken;
        self.backends -= 1;
        self.stats.broken += 1;
        if !s.running {
            return None;
        }
        s.running = false;
        let payload = s.payload;
        self.stats.queries_failed += 1;
        if self.shared.is_none() {
            // Its completion event is already queued: mark it stale. Another
            // query on this slot ending at the very same instant would look
            // the same, and then ignoring either of the two is equivalent.
            let end = s.end;
            s.stale.push(end);
        } else {
            self.resync = true;
        }
        Some(Killed {
            instance,
            conn,
            payload,
        })
    }

    /// After breaks: removes the failed queries from the shared model and
    /// returns its next wake-up (None: nothing changed or none running).
    pub fn resync(&mut self, now: SimTime) -> Option<Completion> {
        if !std::mem::take(&mut self.resync) {
            return None;
        }
        let s = self.shared.as_mut()?;
        // Progress up to now at the old concurrency, then drop the failed.
        Self::advance(s, &self.model, now);
        let slots = &self.slots;
        s.running
            .retain(|Reverse((_, _, k))| slots[(k >> 32) as usize][(*k as u32) as usize].running);
        if s.running.is_empty() {
            s.generation = s.generation.wrapping_add(1);
            None
        } else {
            Some(Self::reschedule(s, &self.model, now))
        }
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

    fn db(sigma: f64, kappa: f64) -> Database {
        Database::new(&model(sigma, kappa), Wire::default(), 1, &SeedTree::new(1))
    }

    #[test]
    fn refuses_beyond_max_connections_after_one_round_trip() {
        let mut db = db(0.0, 0.0);
        assert_eq!(db.connect(0, 0).1, ConnectResult::Accepted);
        assert_eq!(
            db.connect(0, 1),
            (SimDuration(1000), ConnectResult::Accepted)
        );
        let (latency, r) = db.connect(0, 2);
        assert_eq!(r, ConnectResult::Full);
        assert_eq!(latency, Wire::default().refusal_latency);
        assert_eq!(db.stats.refused, 1);
        db.disconnect(0, 0);
        assert_eq!(db.connect(0, 0).1, ConnectResult::Accepted);
        db.down = true;
        db.disconnect(0, 0);
        assert_eq!(db.connect(0, 0).1, ConnectResult::Down);
        assert_eq!(db.stats.refused_by_instance, vec![2]);
    }

    #[test]
    fn two_queries_share_the_server_at_the_usl_rate() {
        // sigma = 1: with 2 running each goes at 1/2 speed.
        let mut db = db(1.0, 0.0);
        for c in 0..2 {
            db.connect(0, c);
            assert!(db.connected(0, c));
        }
        let t0 = SimTime(0);
        db.start(t0, 0, 0, SimDuration(100));
        let Completion::Wake(t, g) = db.start(t0, 0, 1, SimDuration(300)) else {
            panic!()
        };
        // First ends when 100 ns of work is done at half speed.
        assert_eq!(t, SimTime(200));
        let (c, next) = db.wake(t, g).unwrap();
        assert_eq!(c, (0, 0));
        // The second has 200 ns of work left, now alone at full speed.
        let Some(Completion::Wake(t2, g2)) = next else {
            panic!()
        };
        assert_eq!(t2, SimTime(400));
        assert!(db.wake(t2, g).is_none(), "stale generation is ignored");
        assert_eq!(db.wake(t2, g2).unwrap().0, (0, 1));
    }

    #[test]
    fn a_break_fails_the_running_query_and_frees_the_shared_server() {
        let mut db = db(1.0, 0.0);
        for c in 0..2 {
            db.connect(0, c);
            db.connected(0, c);
        }
        db.start(SimTime(0), 0, 0, SimDuration(100));
        db.start(SimTime(0), 0, 1, SimDuration(300));
        // At t = 100 each has done 50 ns of work; query 1 breaks.
        let k = db.break_backend(0, 1).unwrap();
        assert_eq!((k.conn, k.payload), (1, SimDuration(300)));
        assert_eq!(db.backends, 1);
        // Query 0 has 50 ns left, now alone: ends at 150.
        let Some(Completion::Wake(t, g)) = db.resync(SimTime(100)) else {
            panic!()
        };
        assert_eq!(t, SimTime(150));
        assert_eq!(db.wake(t, g).unwrap().0, (0, 0));
        assert!(!db.alive(0, 1));
        // A query on the broken backend fails after the round trip (0).
        assert!(matches!(
            db.start(SimTime(200), 0, 1, SimDuration(5)),
            Completion::FailAt(SimTime(200), 0, 1)
        ));
        // Closing a broken backend does not count it twice.
        db.disconnect(0, 1);
        assert_eq!(db.backends, 1);
    }

    #[test]
    fn a_fast_path_query_failed_by_a_break_ignores_its_completion() {
        let mut db = db(0.0, 0.0);
        db.connect(0, 0);
        db.connected(0, 0);
        let Completion::At(end, 0, 0) = db.start(SimTime(0), 0, 0, SimDuration(100)) else {
            panic!()
        };
        assert!(db.break_backend(0, 0).is_some());
        db.disconnect(0, 0);
        db.connect(0, 0);
        db.connected(0, 0);
        let Completion::At(end2, ..) = db.start(SimTime(20), 0, 0, SimDuration(100)) else {
            panic!()
        };
        assert!(!db.done(end, 0, 0), "the failed query's event is stale");
        assert!(db.done(end2, 0, 0));
    }

    #[test]
    fn a_connect_under_way_fails_when_its_backend_breaks() {
        let mut db = db(0.0, 0.0);
        db.connect(0, 0);
        assert!(db.break_backend(0, 0).is_none());
        assert!(!db.connected(0, 0));
        assert_eq!(db.backends, 0);
    }
}
