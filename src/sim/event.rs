//! The event queue: a binary heap of small plain entries keyed by
//! (time, phase, insertion sequence), so equal-time events pop in a defined
//! order: by phase, then first-in first-out.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::core::pool::ConnId;
use crate::core::request::Priority;
use crate::time::SimTime;

/// Events name the application instance (`inst`) whose pool they concern.
///
/// Same-time order. A query that ends at the instant a waiter's deadline
/// passes frees its connection first, so that waiter is served; arrivals see
/// the state after completions, opens and timeouts; the policy and the
/// sampler see everything that happened at that instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Release = 0,
    Connect = 1,
    /// Faults begin and end after the instant's completions and connects.
    Fault = 2,
    Timeout = 3,
    Arrival = 4,
    Policy = 5,
    Sample = 6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A query ended on this connection (independent service; stale if a
    /// break failed the query, see `Database::done`).
    QueryDone {
        inst: u16,
        conn: ConnId,
    },
    /// A query started on a broken backend fails (after one round trip).
    QueryFailed {
        inst: u16,
        conn: ConnId,
    },
    /// A check answers; `in_time` false when it timed out.
    CheckDone {
        inst: u16,
        conn: ConnId,
        in_time: bool,
    },
    /// The shared-database model's next completion (stale if its generation
    /// is not the database's current one).
    DbWake(u32),
    ConnectDone {
        inst: u16,
        conn: ConnId,
    },
    ConnectFailed {
        inst: u16,
        conn: ConnId,
    },
    /// The `[[faults]]` entry with this index happens.
    FaultStart(u32),
    /// The fault occurrence with this record index ends.
    FaultEnd(u32),
    Timeout {
        inst: u16,
        priority: Priority,
    },
    /// The pool asked to be woken (its policy tick and lifecycle timers).
    PoolWake(u16),
    Sample,
}

/// An event type the queue can order: each event has a same-time phase.
pub trait Phased: Copy {
    fn phase(self) -> Phase;
}

impl Phased for Event {
    #[inline]
    fn phase(self) -> Phase {
        Event::phase(self)
    }
}

impl Event {
    pub fn phase(self) -> Phase {
        match self {
            Event::QueryDone { .. }
            | Event::QueryFailed { .. }
            | Event::CheckDone { .. }
            | Event::DbWake(_) => Phase::Release,
            Event::ConnectDone { .. } | Event::ConnectFailed { .. } => Phase::Connect,
            Event::FaultStart(_) | Event::FaultEnd(_) => Phase::Fault,
            Event::Timeout { .. } => Phase::Timeout,
            Event::PoolWake(_) => Phase::Policy,
            Event::Sample => Phase::Sample,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Entry<E = Event> {
    pub time: SimTime,
    /// phase in the top 8 bits, insertion sequence below.
    key: u64,
    pub event: E,
}

impl<E: Phased> Entry<E> {
    pub fn phase(&self) -> Phase {
        self.event.phase()
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        self.time == o.time && self.key == o.key
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.time, o.key).cmp(&(self.time, self.key))
    }
}

/// Min-queue of events.
pub struct EventQueue<E = Event> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

const SEQ_MASK: u64 = (1 << 56) - 1;

impl<E: Phased> EventQueue<E> {
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    pub fn push(&mut self, time: SimTime, event: E) {
        let key = ((event.phase() as u64) << 56) | (self.seq & SEQ_MASK);
        self.seq += 1;
        self.heap.push(Entry { time, key, event });
    }

    #[inline]
    pub fn peek(&self) -> Option<&Entry<E>> {
        self.heap.peek()
    }

    #[inline]
    pub fn pop(&mut self) -> Option<Entry<E>> {
        self.heap.pop()
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// Arrivals made during a run (closed-loop clients' next requests), popped
/// by time, then in the order they were pushed: deterministic ties.
pub(crate) struct Arrivals<T> {
    heap: BinaryHeap<Arrival<T>>,
    seq: u64,
}

struct Arrival<T> {
    at: SimTime,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Arrival<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Arrival<T> {}

impl<T> PartialOrd for Arrival<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Arrival<T> {
    // Reversed: the heap pops the earliest.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<T> Default for Arrivals<T> {
    fn default() -> Self {
        Arrivals {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> Arrivals<T> {
    pub(crate) fn push(&mut self, at: SimTime, item: T) {
        self.heap.push(Arrival {
            at,
            seq: self.seq,
            item,
        });
        self.seq += 1;
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<SimTime> {
        self.heap.peek().map(|a| a.at)
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|a| a.item)
    }

    /// Every item waiting, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|a| &a.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn an_event_stays_eight_bytes() {
        // The heap entry is time + key + event: keep it at 24 bytes.
        assert_eq!(std::mem::size_of::<Event>(), 8);
    }

    #[test]
    fn pops_by_time_then_phase_then_insertion() {
        let mut q = EventQueue::new();
        q.push(SimTime(5), Event::Sample);
        q.push(SimTime(5), Event::QueryDone { inst: 0, conn: 1 });
        q.push(SimTime(5), Event::QueryDone { inst: 1, conn: 2 });
        q.push(SimTime(3), Event::PoolWake(0));
        let low = Event::Timeout {
            inst: 0,
            priority: Priority::Low,
        };
        q.push(SimTime(5), low);
        q.push(SimTime(5), Event::FaultStart(0));
        let order: Vec<Event> = std::iter::from_fn(|| q.pop().map(|e| e.event)).collect();
        assert_eq!(
            order,
            vec![
                Event::PoolWake(0),
                Event::QueryDone { inst: 0, conn: 1 },
                Event::QueryDone { inst: 1, conn: 2 },
                Event::FaultStart(0),
                low,
                Event::Sample
            ]
        );
    }

    #[test]
    fn matches_a_sorted_shadow_under_random_operations() {
        // Model-based test: the heap against a BTreeMap keyed the same way.
        use rand::Rng;
        let mut rng = crate::rng::SeedTree::new(9).stream("heap");
        let mut q = EventQueue::new();
        let mut shadow: BTreeMap<(u64, u8, u64), u32> = BTreeMap::new();
        let mut seq = 0u64;
        for _ in 0..20_000 {
            if rng.random_bool(0.6) || shadow.is_empty() {
                let t = rng.random_range(0..1000u64);
                let c: u32 = rng.random_range(0..100);
                let ev = if c.is_multiple_of(2) {
                    Event::QueryDone { inst: 0, conn: c }
                } else {
                    Event::ConnectDone { inst: 0, conn: c }
                };
                q.push(SimTime(t), ev);
                shadow.insert((t, ev.phase() as u8, seq), c);
                seq += 1;
            } else {
                let (k, c) = shadow.pop_first().unwrap();
                let e = q.pop().unwrap();
                assert_eq!(e.time.0, k.0);
                match e.event {
                    Event::QueryDone { conn, .. } | Event::ConnectDone { conn, .. } => {
                        assert_eq!(conn, c)
                    }
                    _ => unreachable!(),
                }
            }
        }
        assert_eq!(q.len(), shadow.len());
    }
}
