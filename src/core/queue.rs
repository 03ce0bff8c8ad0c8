//! The wait queue: requests waiting for a connection, one FIFO per priority,
//! each waiter with its acquire deadline, and the discipline that picks who
//! is served when a connection frees.
//!
//! Deadlines are FIFO within a priority (one timeout per priority), so one
//! lazily re-armed timer per priority queue expires them in order. Arrivals
//! are FIFO within a priority too (a retried waiter goes back to the head it
//! left), so the longest-waiting waiter of a priority is always its head:
//! every discipline compares heads only, and the early drop removes heads.
//!
//! Timer contract: while a queue's head has a finite deadline, a timer is
//! armed at or before it. Serving or dropping heads only moves the head's
//! deadline later, so the armed timer may fire early (harmless: `expire`
//! re-arms for the head) and the pool never has to re-arm after a drop.

use std::collections::VecDeque;

use crate::core::lifecycle::{Discipline, QueueDrop};
use crate::core::request::Priority;
use crate::time::{SimDuration, SimTime};

/// A request waiting for a connection.
#[derive(Clone, Debug)]
pub struct Waiter<T> {
    pub arrival: SimTime,
    pub deadline: SimTime,
    pub payload: T,
}

/// State of the CoDel-style early drop (Elixir DBConnection's queue_target /
/// queue_interval).
#[derive(Clone, Copy, Debug)]
struct Codel {
    rule: QueueDrop,
    /// The current interval is overloaded: waiters older than 2 x target
    /// are dropped.
    overloaded: bool,
    /// Shortest wait of a checkout in the current interval (zero once a
    /// connection freed with nobody waiting); None: no checkout yet.
    min_wait: Option<SimDuration>,
    /// A waiter reached its acquire timeout in the current interval.
    timed_out: bool,
}

/// The waiters of a pool.
pub struct WaitQueue<T> {
    queues: [VecDeque<Waiter<T>>; 3],
    /// When each queue's timer was last armed (None: not armed).
    armed: [Option<SimTime>; 3],
    len: u32,
    /// Strict order and no early drop: `pop_next` takes the fast path.
    plain: bool,
    discipline: Discipline,
    codel: Option<Codel>,
}

impl<T> WaitQueue<T> {
    pub fn new(discipline: Discipline, drop: Option<QueueDrop>) -> Self {
        WaitQueue {
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            armed: [None; 3],
            len: 0,
            plain: discipline == Discipline::Strict && drop.is_none(),
            discipline,
            codel: drop.map(|rule| Codel {
                rule,
                overloaded: false,
                min_wait: None,
                timed_out: false,
            }),
        }
    }

    /// Waiters of all priorities.
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waiters of one priority.
    pub fn len_of(&self, p: Priority) -> u32 {
        self.queues[p.index()].len() as u32
    }

    /// Age of the oldest waiter of `p` (zero when none waits).
    pub fn oldest_wait(&self, p: Priority, now: SimTime) -> SimDuration {
        self.queues[p.index()]
            .front()
            .map_or(SimDuration::ZERO, |w| now - w.arrival)
    }

    /// Whether the early drop judged the current interval overloaded
    /// (always false without one).
    pub fn overloaded(&self) -> bool {
        self.codel.is_some_and(|c| c.overloaded)
    }

    /// Appends a waiter; returns the time at which `p`'s timer must be armed
    /// (when it is not armed yet and the deadline is finite).
    #[inline]
    pub fn push(&mut self, p: Priority, w: Waiter<T>) -> Option<SimTime> {
        let i = p.index();
        debug_assert!(
            self.queues[i]
                .back()
                .is_none_or(|b| b.deadline <= w.deadline),
            "deadlines within a priority are FIFO-ordered"
        );
        let deadline = w.deadline;
        self.queues[i].push_back(w);
        self.len += 1;
        if self.armed[i].is_none() && deadline != SimTime::NEVER {
            self.armed[i] = Some(deadline);
            Some(deadline)
        } else {
            None
        }
    }

    /// Puts a waiter back at the head of its queue (a retry after a broken
    /// connection keeps its place and its deadline). Returns the time at
    /// which `p`'s timer must be armed: the new head's deadline, when the
    /// timer is not already armed at or before it.
    pub fn push_front(&mut self, p: Priority, w: Waiter<T>) -> Option<SimTime> {
        let i = p.index();
        let deadline = w.deadline;
        self.queues[i].push_front(w);
        self.len += 1;
        if deadline != SimTime::NEVER && self.armed[i].is_none_or(|at| at > deadline) {
            self.armed[i] = Some(deadline);
            Some(deadline)
        } else {
            None
        }
    }

    /// The waiter to serve with a connection that just freed, by the
    /// discipline. `size` is the pool's size and `active` its running
    /// queries per priority (for reserved shares).
    ///
    /// Under an early-drop rule ([`QueueDrop`]) waiters found overdue are
    /// removed and handed to `dropped` (the pool counts them as timed out).
    #[inline]
    pub fn pop_next(
        &mut self,
        now: SimTime,
        size: u32,
        active: [u32; 3],
        dropped: &mut dyn FnMut(Priority, Waiter<T>),
    ) -> Option<(Priority, Waiter<T>)> {
        if self.plain {
            // The M/M/c hot path: strict order, nothing else to track.
            if self.len == 0 {
                return None;
            }
            for p in Priority::ALL {
                if let Some(w) = self.queues[p.index()].pop_front() {
                    self.len -= 1;
                    return Some((p, w));
                }
            }
            return None;
        }
        self.pop_disciplined(now, size, active, dropped)
    }

    fn pop_disciplined(
        &mut self,
        now: SimTime,
        size: u32,
        active: [u32; 3],
        dropped: &mut dyn FnMut(Priority, Waiter<T>),
    ) -> Option<(Priority, Waiter<T>)> {
        if let Some(c) = self.codel {
            if c.overloaded {
                self.drop_overdue(now, c.rule.target, dropped);
            }
        }
        let served = self.choose(now, size, active).map(|i| {
            let w = self.queues[i].pop_front().expect("chosen queue has a head");
            self.len -= 1;
            (Priority::ALL[i], w)
        });
        if let Some(c) = &mut self.codel {
            // A connection that frees with nobody left waiting is spare
            // capacity: it counts as a checkout without wait (DBConnection
            // resets its delay to 0 when a checkin finds the queue empty).
            let wait = served
                .as_ref()
                .map_or(SimDuration::ZERO, |(_, w)| now - w.arrival);
            c.min_wait = Some(c.min_wait.map_or(wait, |m| m.min(wait)));
        }
        served
    }

    /// Index of the queue whose head the discipline serves next.
    fn choose(&self, now: SimTime, size: u32, active: [u32; 3]) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let waiting = |i: usize| !self.queues[i].is_empty();
        match self.discipline {
            Discipline::Strict => (0..3).find(|&i| waiting(i)),
            Discipline::Aging { step } => {
                // A zero step would divide by zero: one level per nanosecond.
                let step = step.as_nanos().max(1);
                let mut best: Option<(i64, usize)> = None;
                for (i, q) in self.queues.iter().enumerate() {
                    if let Some(w) = q.front() {
                        let levels = ((now - w.arrival).as_nanos() / step).min(i64::MAX as u64);
                        let rank = i as i64 - levels as i64;
                        // Strictly lower only: ties go to the higher priority.
                        if best.is_none_or(|(r, _)| rank < r) {
                            best = Some((rank, i));
                        }
                    }
                }
                best.map(|(_, i)| i)
            }
            Discipline::Shares { shares } => (0..3)
                .find(|&i| waiting(i) && active[i] < share_limit(size, shares[i]))
                .or_else(|| (0..3).find(|&i| waiting(i))),
        }
    }

    /// Drops the waiters that waited longer than 2 x `target`. Arrivals are
    /// FIFO within a priority, so they are heads: O(1) per dropped waiter.
    fn drop_overdue(
        &mut self,
        now: SimTime,
        target: SimDuration,
        dropped: &mut dyn FnMut(Priority, Waiter<T>),
    ) {
        let limit = SimDuration(target.as_nanos().saturating_mul(2));
        for p in Priority::ALL {
            let q = &mut self.queues[p.index()];
            while q.front().is_some_and(|w| now - w.arrival > limit) {
                let w = q.pop_front().expect("front exists");
                self.len -= 1;
                dropped(p, w);
            }
        }
    }

    /// `p`'s timer fired: removes the waiters whose deadline has passed
    /// (handing each to `expired`) and returns when to re-arm the timer.
    pub fn expire(
        &mut self,
        now: SimTime,
        p: Priority,
        mut expired: impl FnMut(Waiter<T>),
    ) -> Option<SimTime> {
        let i = p.index();
        self.armed[i] = None;
        let before = self.len;
        while self.queues[i].front().is_some_and(|w| w.deadline <= now) {
            let w = self.queues[i].pop_front().expect("front exists");
            self.len -= 1;
            expired(w);
        }
        if self.len != before {
            if let Some(c) = &mut self.codel {
                c.timed_out = true;
            }
        }
        let head = self.queues[i].front().map(|w| w.deadline)?;
        if head == SimTime::NEVER {
            return None;
        }
        self.armed[i] = Some(head);
        Some(head)
    }

    /// Period of the early-drop rule's interval timer (the pool calls
    /// [`WaitQueue::on_interval`] at every multiple of it); `None` when off.
    pub fn interval(&self) -> Option<SimDuration> {
        self.codel.map(|c| c.rule.interval)
    }

    /// The early-drop interval ended at `now`: decides whether the queue is
    /// overloaded for the next interval and drops overdue waiters.
    ///
    /// The interval that ended was overloaded when every checkout in it
    /// waited longer than the target (a connection freed with nobody
    /// waiting counts as a checkout without wait). With no checkout at all,
    /// it was overloaded when a waiter timed out in it or the oldest waiter
    /// has by now waited longer than the target (what DBConnection's poll
    /// does); an interval without waiters, or whose only waiters arrived
    /// within the last target, is not.
    pub fn on_interval(&mut self, now: SimTime, dropped: &mut dyn FnMut(Priority, Waiter<T>)) {
        let Some(c) = self.codel else {
            return;
        };
        let target = c.rule.target;
        let overloaded = match c.min_wait {
            Some(wait) => wait > target,
            None => {
                c.timed_out
                    || Priority::ALL
                        .into_iter()
                        .any(|p| self.oldest_wait(p, now) > target)
            }
        };
        self.codel = Some(Codel {
            overloaded,
            min_wait: None,
            timed_out: false,
            ..c
        });
        if overloaded {
            self.drop_overdue(now, target, dropped);
        }
    }

    /// Removes every waiter (end of a live run, or a pool being torn down).
    pub fn drain(&mut self) -> impl Iterator<Item = (Priority, Waiter<T>)> + '_ {
        self.len = 0;
        self.armed = [None; 3];
        let [h, n, l] = &mut self.queues;
        h.drain(..)
            .map(|w| (Priority::High, w))
            .chain(n.drain(..).map(|w| (Priority::Normal, w)))
            .chain(l.drain(..).map(|w| (Priority::Low, w)))
    }

    /// Checks that the counters agree with the queues and that each queue
    /// whose head has a deadline has a timer armed no later than it.
    pub fn check(&self) -> Result<(), String> {
        let queued: usize = self.queues.iter().map(|q| q.len()).sum();
        if queued as u32 != self.len {
            return Err("waiter count disagrees with the queues".into());
        }
        for p in Priority::ALL {
            let i = p.index();
            let Some(head) = self.queues[i].front() else {
                continue;
            };
            if head.deadline != SimTime::NEVER && self.armed[i].is_none_or(|at| at > head.deadline)
            {
                return Err(format!(
                    "{} queue: head deadline {} but timer armed at {:?}",
                    p.name(),
                    head.deadline,
                    self.armed[i]
                ));
            }
        }
        Ok(())
    }
}

/// A class's limit under reserved shares: max(1, ceil(size x share)).
fn share_limit(size: u32, share: f64) -> u32 {
    // 25 x 0.28 is 7.000000000000001 in binary floating point: without the
    // tolerance its ceiling would be 8.
    let limit = (size as f64 * share - 1e-9).ceil();
    // `as` saturates (NaN gives 0), so odd shares cannot panic.
    (limit as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ms(n: u64) -> SimDuration {
        SimDuration::from_millis(n)
    }

    fn at(n: u64) -> SimTime {
        SimTime(n * 1_000_000)
    }

    /// A waiter named `name`, arrived at `arrival_ms`, timing out after
    /// `timeout_ms` (None: never).
    fn waiter(
        name: &'static str,
        arrival_ms: u64,
        timeout_ms: Option<u64>,
    ) -> Waiter<&'static str> {
        Waiter {
            arrival: at(arrival_ms),
            deadline: timeout_ms.map_or(SimTime::NEVER, |t| at(arrival_ms + t)),
            payload: name,
        }
    }

    /// Serves one waiter at `now_ms`; returns its name and every drop.
    fn serve(
        q: &mut WaitQueue<&'static str>,
        now_ms: u64,
        size: u32,
        active: [u32; 3],
    ) -> (Option<&'static str>, Vec<&'static str>) {
        let mut dropped = Vec::new();
        let served = q
            .pop_next(at(now_ms), size, active, &mut |_, w| {
                dropped.push(w.payload)
            })
            .map(|(_, w)| w.payload);
        q.check().unwrap();
        (served, dropped)
    }

    fn push_all(q: &mut WaitQueue<&'static str>, ws: &[(Priority, &'static str, u64)]) {
        for &(p, name, arrival) in ws {
            q.push(p, waiter(name, arrival, None));
        }
    }

    #[test]
    fn strict_serves_the_highest_priority_oldest_first() {
        let mut q = WaitQueue::new(Discipline::Strict, None);
        use Priority::*;
        push_all(
            &mut q,
            &[
                (Low, "l1", 0),
                (Normal, "n1", 1),
                (High, "h1", 2),
                (Normal, "n2", 3),
            ],
        );
        let order: Vec<_> = (0..5).map(|_| serve(&mut q, 500, 1, [0; 3]).0).collect();
        assert_eq!(
            order,
            vec![Some("h1"), Some("n1"), Some("n2"), Some("l1"), None]
        );
    }

    #[test]
    fn aging_promotes_a_waiter_one_level_per_step() {
        use Priority::*;
        let mut q = WaitQueue::new(Discipline::Aging { step: ms(100) }, None);
        push_all(
            &mut q,
            &[(Low, "low", 0), (Normal, "normal", 50), (High, "high", 120)],
        );
        // At 150 ms: low waited 150 (rank 2 - 1 = 1), normal 100 (1 - 1 = 0),
        // high 30 (0 - 0 = 0): the tie goes to the higher priority.
        assert_eq!(serve(&mut q, 150, 1, [0; 3]).0, Some("high"));
        // At 210 ms: low waited 210 (2 - 2 = 0), normal 160 (1 - 1 = 0): tie.
        assert_eq!(serve(&mut q, 210, 1, [0; 3]).0, Some("normal"));
        // Low now beats a fresh high: waited 300 (2 - 3 = -1) against 0.
        push_all(&mut q, &[(High, "high2", 290)]);
        assert_eq!(serve(&mut q, 300, 1, [0; 3]).0, Some("low"));
        assert_eq!(serve(&mut q, 300, 1, [0; 3]).0, Some("high2"));
        // Under strict order the same arrivals serve high first.
        let mut s = WaitQueue::new(Discipline::Strict, None);
        push_all(&mut s, &[(Low, "low", 0), (High, "high2", 290)]);
        assert_eq!(serve(&mut s, 300, 1, [0; 3]).0, Some("high2"));
    }

    #[test]
    fn share_limits_round_up_and_never_fall_below_one() {
        assert_eq!([0.6, 0.3, 0.1].map(|s| share_limit(10, s)), [6, 3, 1]);
        assert_eq!([0.6, 0.3, 0.1].map(|s| share_limit(7, s)), [5, 3, 1]);
        // Products a rounding error above an integer keep that integer.
        assert_eq!(
            [0.28, 0.56, 0.16].map(|s| share_limit(25, s)),
            [7, 14, 4],
            "25 x 0.28 is 7.000000000000001 in floating point"
        );
        assert_eq!(share_limit(100, 0.07), 7);
        assert_eq!(share_limit(10, 0.0), 1);
        assert_eq!(share_limit(0, 0.5), 1);
        assert_eq!(share_limit(10, f64::NAN), 1);
    }

    #[test]
    fn shares_pass_over_a_class_at_its_limit_and_borrow_idle_share() {
        use Priority::*;
        let shares = Discipline::Shares {
            shares: [0.6, 0.3, 0.1],
        };
        // Limits for size 10: high 6, normal 3, low 1.
        let cases: [([u32; 3], Priority); 5] = [
            ([2, 3, 1], High),   // high under its limit: strict order
            ([6, 1, 0], Normal), // high at its limit: normal is under its own
            ([6, 3, 0], Low),    // high and normal full: low is under its 1
            ([7, 4, 0], Low),    // over the limit is passed over too
            ([6, 3, 1], High),   // everyone full: strict order (borrowing)
        ];
        for (active, expect) in cases {
            let mut q = WaitQueue::new(shares, None);
            push_all(
                &mut q,
                &[(Low, "low", 0), (Normal, "normal", 0), (High, "high", 0)],
            );
            let (p, _) = q.pop_next(at(1), 10, active, &mut |_, _| {}).unwrap();
            assert_eq!(p, expect, "active {active:?}");
        }
        // Only low waits: it borrows the idle share far beyond its limit.
        let mut q = WaitQueue::new(shares, None);
        push_all(&mut q, &[(Low, "low1", 0), (Low, "low2", 1)]);
        assert_eq!(serve(&mut q, 5, 10, [0, 0, 9]).0, Some("low1"));
        // Normal under its limit waits behind a full high: normal goes first.
        push_all(&mut q, &[(High, "high", 6), (Normal, "normal", 7)]);
        assert_eq!(serve(&mut q, 8, 10, [6, 2, 1]).0, Some("normal"));
        assert_eq!(serve(&mut q, 8, 10, [6, 3, 1]).0, Some("high"));
        assert_eq!(serve(&mut q, 8, 10, [6, 3, 1]).0, Some("low2"));
    }

    fn codel() -> WaitQueue<&'static str> {
        WaitQueue::new(
            Discipline::Strict,
            Some(QueueDrop {
                target: ms(10),
                interval: ms(100),
            }),
        )
    }

    fn interval_end(q: &mut WaitQueue<&'static str>, now_ms: u64) -> Vec<&'static str> {
        let mut dropped = Vec::new();
        q.on_interval(at(now_ms), &mut |_, w| dropped.push(w.payload));
        q.check().unwrap();
        dropped
    }

    #[test]
    fn codel_drops_waiters_older_than_twice_the_target_after_a_slow_interval() {
        use Priority::*;
        let mut q = codel();
        assert_eq!(q.interval(), Some(ms(100)));
        push_all(
            &mut q,
            &[(Normal, "w1", 0), (Normal, "w2", 10), (Normal, "w3", 20)],
        );
        push_all(&mut q, &[(Low, "w4", 80), (Normal, "w5", 85)]);
        // Every checkout of [0, 100) waits longer than the 10 ms target.
        assert_eq!(serve(&mut q, 50, 1, [0; 3]), (Some("w1"), vec![]));
        assert_eq!(serve(&mut q, 70, 1, [0; 3]), (Some("w2"), vec![]));
        assert!(!q.overloaded());
        // At 100 ms: overloaded; w3 waited 80 > 20 and is dropped, w4 waited
        // exactly 20 (not longer) and w5 15: both stay.
        assert_eq!(interval_end(&mut q, 100), vec!["w3"]);
        assert!(q.overloaded());
        assert_eq!(q.len(), 2);
        // At 110 ms, before serving: w5 (25) and w4 (30) are dropped, the
        // fresh w6 (5 ms) is served.
        push_all(&mut q, &[(Normal, "w6", 105)]);
        assert_eq!(
            serve(&mut q, 110, 1, [0; 3]),
            (Some("w6"), vec!["w5", "w4"])
        );
        // That checkout waited 5 ms <= target: the next interval is light.
        assert!(interval_end(&mut q, 200).is_empty());
        assert!(!q.overloaded());
        // Not overloaded: a 50 ms wait is served, not dropped.
        push_all(&mut q, &[(Normal, "w7", 200)]);
        assert_eq!(serve(&mut q, 250, 1, [0; 3]), (Some("w7"), vec![]));
        // One slow checkout in 200..300: overloaded again.
        assert!(interval_end(&mut q, 300).is_empty());
        assert!(q.overloaded());
    }

    #[test]
    fn codel_judges_an_interval_without_checkouts_by_its_waiters() {
        use Priority::*;
        // No waiter at all: not overloaded.
        let mut q = codel();
        assert!(interval_end(&mut q, 100).is_empty());
        assert!(!q.overloaded());
        // A waiter that arrived 5 ms before the end: not overloaded yet.
        push_all(&mut q, &[(Low, "late", 195)]);
        assert!(interval_end(&mut q, 200).is_empty());
        assert!(!q.overloaded());
        // The same waiter still unserved 105 ms later: overloaded, dropped.
        assert_eq!(interval_end(&mut q, 300), vec!["late"]);
        assert!(q.overloaded());
        // A connection frees with nobody waiting: spare capacity, light.
        assert_eq!(serve(&mut q, 310, 1, [0; 3]), (None, vec![]));
        assert!(interval_end(&mut q, 400).is_empty());
        assert!(!q.overloaded());
        // A waiter times out and nobody is served: overloaded.
        let mut q = codel();
        q.push(High, waiter("gives-up", 410, Some(5)));
        let mut expired = Vec::new();
        assert_eq!(q.expire(at(415), High, |w| expired.push(w.payload)), None);
        assert_eq!(expired, vec!["gives-up"]);
        assert!(interval_end(&mut q, 500).is_empty());
        assert!(q.overloaded());
    }

    #[test]
    fn timers_are_rearmed_for_the_new_head_after_drops_and_push_front() {
        use Priority::*;
        let mut q = codel();
        assert_eq!(q.push(Normal, waiter("a", 0, Some(1000))), Some(at(1000)));
        assert_eq!(q.push(Normal, waiter("b", 50, Some(1000))), None);
        assert_eq!(q.push(Normal, waiter("c", 90, Some(1000))), None);
        assert_eq!(serve(&mut q, 60, 1, [0; 3]).0, Some("a"));
        // Slow interval: b (50 ms) is dropped at 100, c (10 ms) stays.
        assert_eq!(interval_end(&mut q, 100), vec!["b"]);
        // The timer armed for a fires early; it re-arms for c, the new head.
        let mut expired = Vec::new();
        assert_eq!(
            q.expire(at(1000), Normal, |w| expired.push(w.payload)),
            Some(at(1090))
        );
        assert!(expired.is_empty());
        // A retry of a (deadline 1000, already armed later at 1090) moves the
        // timer back to its deadline.
        assert_eq!(
            q.push_front(Normal, waiter("a", 0, Some(1000))),
            Some(at(1000))
        );
        // The retried a expires at its deadline; the timer re-arms for c.
        assert_eq!(
            q.expire(at(1000), Normal, |w| expired.push(w.payload)),
            Some(at(1090))
        );
        assert_eq!(expired, vec!["a"]);
        // A retry whose deadline the armed timer already covers arms nothing:
        // h (1 ms old, not overdue) is served (c, 906 ms old, is dropped
        // first: the queue is still overloaded), then put back.
        assert_eq!(q.push(High, waiter("h", 995, Some(1000))), Some(at(1995)));
        assert_eq!(serve(&mut q, 996, 1, [0; 3]), (Some("h"), vec!["c"]));
        assert_eq!(q.push_front(High, waiter("h", 995, Some(1000))), None);
        q.check().unwrap();
        assert_eq!(q.expire(at(1995), High, |w| expired.push(w.payload)), None);
        assert_eq!(expired, vec!["a", "h"]);
        // Without a deadline there is nothing to arm.
        assert_eq!(q.push_front(High, waiter("never", 0, None)), None);
        q.check().unwrap();
    }

    // ---- Reference model -------------------------------------------------

    /// The reference: every waiter in one Vec, scanned in O(n); no FIFO
    /// assumption (it drops and expires waiters wherever they are).
    #[derive(Clone, Debug)]
    struct ModelWaiter {
        id: u64,
        p: usize,
        /// Queue order within a priority (push_front takes lower keys).
        key: i64,
        arrival: SimTime,
        deadline: SimTime,
    }

    struct Model {
        discipline: Discipline,
        /// Shares in percent, for exact integer limits.
        shares_pct: [u64; 3],
        drop: Option<QueueDrop>,
        ws: Vec<ModelWaiter>,
        back: i64,
        front: i64,
        overloaded: bool,
        min_wait: Option<SimDuration>,
        timed_out: bool,
    }

    impl Model {
        fn head(&self, p: usize) -> Option<usize> {
            (0..self.ws.len())
                .filter(|&j| self.ws[j].p == p)
                .min_by_key(|&j| self.ws[j].key)
        }

        /// Exact integer limit: max(1, ceil(size x pct / 100)).
        fn limit(&self, size: u32, p: usize) -> u64 {
            (size as u64 * self.shares_pct[p]).div_ceil(100).max(1)
        }

        fn push(&mut self, w: ModelWaiter, front: bool) {
            let key = if front {
                self.front -= 1;
                self.front
            } else {
                self.back += 1;
                self.back
            };
            self.ws.push(ModelWaiter { key, ..w });
        }

        fn remove(&mut self, keep: impl Fn(&ModelWaiter) -> bool) -> Vec<u64> {
            let mut gone: Vec<u64> = self.ws.iter().filter(|w| !keep(w)).map(|w| w.id).collect();
            self.ws.retain(keep);
            gone.sort();
            gone
        }

        fn drop_overdue(&mut self, now: SimTime) -> Vec<u64> {
            let limit = self.drop.unwrap().target.as_nanos() as u128 * 2;
            self.remove(|w| ((now - w.arrival).as_nanos() as u128) <= limit)
        }

        fn pop(
            &mut self,
            now: SimTime,
            size: u32,
            active: [u32; 3],
        ) -> (Option<(usize, u64)>, Vec<u64>) {
            let dropped = if self.drop.is_some() && self.overloaded {
                self.drop_overdue(now)
            } else {
                vec![]
            };
            let heads: Vec<usize> = (0..3).filter_map(|p| self.head(p)).collect();
            let chosen = match self.discipline {
                Discipline::Strict => heads.first().copied(),
                Discipline::Aging { step } => heads.iter().copied().min_by_key(|&j| {
                    let w = &self.ws[j];
                    let levels =
                        (now - w.arrival).as_nanos() as i128 / step.as_nanos().max(1) as i128;
                    (w.p as i128 - levels, w.p)
                }),
                Discipline::Shares { .. } => heads
                    .iter()
                    .copied()
                    .find(|&j| {
                        let p = self.ws[j].p;
                        (active[p] as u64) < self.limit(size, p)
                    })
                    .or(heads.first().copied()),
            };
            let served = chosen.map(|j| {
                let w = self.ws.remove(j);
                (w.p, w.id, now - w.arrival)
            });
            if self.drop.is_some() {
                let wait = served.map_or(SimDuration::ZERO, |s| s.2);
                self.min_wait = Some(self.min_wait.map_or(wait, |m| m.min(wait)));
            }
            (served.map(|s| (s.0, s.1)), dropped)
        }

        fn expire(&mut self, now: SimTime, p: usize) -> Vec<u64> {
            let gone = self.remove(|w| w.p != p || w.deadline > now);
            if !gone.is_empty() {
                self.timed_out = true;
            }
            gone
        }

        fn on_interval(&mut self, now: SimTime) -> Vec<u64> {
            let Some(rule) = self.drop else {
                return vec![];
            };
            let oldest = self.ws.iter().map(|w| now - w.arrival).max();
            self.overloaded = match self.min_wait {
                Some(m) => m > rule.target,
                None => self.timed_out || oldest.is_some_and(|o| o > rule.target),
            };
            self.min_wait = None;
            self.timed_out = false;
            if self.overloaded {
                self.drop_overdue(now)
            } else {
                vec![]
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push {
            p: usize,
            dt: u64,
        },
        PushFront,
        Pop {
            dt: u64,
            size: u32,
            active: [u32; 3],
            /// Under shares, set these classes' active count to exactly
            /// their limit (the edge where rounding matters).
            at_limit: [bool; 3],
        },
        Advance {
            dt: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 0..40u64).prop_map(|(p, dt)| Op::Push { p, dt }),
            1 => Just(Op::PushFront),
            3 => (
                0..40u64,
                1..30u32,
                prop::array::uniform3(0..8u32),
                prop::array::uniform3(any::<bool>())
            )
                .prop_map(|(dt, size, active, at_limit)| Op::Pop {
                    dt,
                    size,
                    active,
                    at_limit
                }),
            1 => (0..150u64).prop_map(|dt| Op::Advance { dt }),
        ]
    }

    fn discipline() -> impl Strategy<Value = (Discipline, [u64; 3])> {
        prop_oneof![
            Just((Discipline::Strict, [0; 3])),
            // Shares whose limits at size 25 are a rounding error above an
            // integer in floating point (25 x 0.28 = 7.000000000000001).
            Just((
                Discipline::Shares {
                    shares: [0.28, 0.56, 0.16]
                },
                [28, 56, 16]
            )),
            (0..200u64).prop_map(|s| (Discipline::Aging { step: ms(s) }, [0; 3])),
            (0..=100u64, 0..=100u64).prop_map(|(a, b)| {
                let b = b.min(100 - a);
                let pct = [a, b, 100 - a - b];
                (
                    Discipline::Shares {
                        shares: pct.map(|x| x as f64 / 100.0),
                    },
                    pct,
                )
            }),
        ]
    }

    fn timeout() -> impl Strategy<Value = Option<u64>> {
        prop_oneof![4 => (1..400u64).prop_map(Some), 1 => Just(None)]
    }

    fn queue_drop() -> impl Strategy<Value = Option<QueueDrop>> {
        prop_oneof![
            1 => Just(None),
            2 => (0..40u64, 10..200u64).prop_map(|(t, i)| Some(QueueDrop {
                target: ms(t),
                interval: ms(i),
            })),
        ]
    }

    /// Drives the queue and the model like the pool does (one timer slot per
    /// priority, overwritten when re-armed, as the live driver keeps them;
    /// the interval timer at every multiple of the interval) and compares
    /// every outcome.
    struct Harness {
        q: WaitQueue<u64>,
        m: Model,
        timeouts: [Option<u64>; 3],
        now: SimTime,
        slots: [Option<SimTime>; 3],
        next_interval: Option<SimTime>,
        next_id: u64,
        /// Served waiters, most recent last (a retry puts back the last one,
        /// which keeps deadlines FIFO within a priority).
        served: Vec<(Priority, Waiter<u64>)>,
        /// Waiters in the queue, by id.
        inside: BTreeMap<u64, bool>,
    }

    impl Harness {
        fn leave(&mut self, id: u64) -> Result<(), TestCaseError> {
            let was = self.inside.insert(id, false);
            prop_assert_eq!(was, Some(true), "waiter {} left without being inside", id);
            Ok(())
        }

        fn enter(&mut self, id: u64) -> Result<(), TestCaseError> {
            let was = self.inside.insert(id, true);
            prop_assert_ne!(was, Some(true), "waiter {} entered twice", id);
            Ok(())
        }

        fn head_deadline(&self, p: usize) -> Option<SimTime> {
            self.q.queues[p].front().map(|w| w.deadline)
        }

        fn arm(&mut self, p: usize, a: Option<SimTime>) -> Result<(), TestCaseError> {
            if let Some(a) = a {
                // Every arm time handed out is the head's deadline.
                prop_assert_eq!(Some(a), self.head_deadline(p));
                self.slots[p] = Some(a);
            }
            Ok(())
        }

        /// Fires the due timers in time order up to `t`, then sets the clock.
        fn advance(&mut self, t: SimTime) -> Result<(), TestCaseError> {
            loop {
                let timer = (0..3)
                    .filter_map(|p| self.slots[p].map(|a| (a.max(self.now), p)))
                    .min();
                let iv = self.next_interval;
                match (timer, iv) {
                    (Some((a, p)), _) if a <= t && iv.is_none_or(|i| a <= i) => {
                        self.now = a;
                        self.slots[p] = None;
                        let mut got = Vec::new();
                        let re = self.q.expire(a, Priority::ALL[p], |w| got.push(w.payload));
                        got.sort();
                        for &id in &got {
                            self.leave(id)?;
                        }
                        prop_assert_eq!(&got, &self.m.expire(a, p));
                        self.arm(p, re)?;
                    }
                    (_, Some(i)) if i <= t => {
                        self.now = i;
                        self.next_interval = Some(i + self.q.interval().unwrap());
                        let mut got = Vec::new();
                        self.q.on_interval(i, &mut |_, w| got.push(w.payload));
                        got.sort();
                        for &id in &got {
                            self.leave(id)?;
                        }
                        prop_assert_eq!(&got, &self.m.on_interval(i));
                        prop_assert_eq!(self.q.overloaded(), self.m.overloaded);
                    }
                    _ => break,
                }
                self.q.check().map_err(TestCaseError::fail)?;
            }
            self.now = self.now.max(t);
            // The timer contract: nobody outlives their deadline.
            for (p, qu) in self.q.queues.iter().enumerate() {
                for w in qu {
                    prop_assert!(w.deadline > self.now, "{:?} overdue in queue {}", w, p);
                }
            }
            Ok(())
        }

        fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
            match op {
                Op::Push { p, dt } => {
                    self.advance(self.now + ms(dt))?;
                    let id = self.next_id;
                    self.next_id += 1;
                    let w = Waiter {
                        arrival: self.now,
                        deadline: self.timeouts[p].map_or(SimTime::NEVER, |t| self.now + ms(t)),
                        payload: id,
                    };
                    self.m.push(model_waiter(p, &w), false);
                    self.enter(id)?;
                    let a = self.q.push(Priority::ALL[p], w);
                    self.arm(p, a)?;
                }
                Op::PushFront => {
                    if let Some((p, w)) = self.served.pop() {
                        let i = p.index();
                        self.m.push(model_waiter(i, &w), true);
                        self.enter(w.payload)?;
                        let a = self.q.push_front(p, w);
                        self.arm(i, a)?;
                    }
                }
                Op::Pop {
                    dt,
                    size,
                    mut active,
                    at_limit,
                } => {
                    self.advance(self.now + ms(dt))?;
                    if matches!(self.m.discipline, Discipline::Shares { .. }) {
                        for p in 0..3 {
                            if at_limit[p] {
                                active[p] = self.m.limit(size, p) as u32;
                            }
                        }
                    }
                    let mut got = Vec::new();
                    let served = self
                        .q
                        .pop_next(self.now, size, active, &mut |_, w| got.push(w.payload));
                    got.sort();
                    let (m_served, m_dropped) = self.m.pop(self.now, size, active);
                    prop_assert_eq!(&got, &m_dropped);
                    prop_assert_eq!(
                        served.as_ref().map(|(p, w)| (p.index(), w.payload)),
                        m_served
                    );
                    for &id in &got {
                        self.leave(id)?;
                    }
                    if let Some((p, w)) = served {
                        self.leave(w.payload)?;
                        self.served.push((p, w));
                    }
                }
                Op::Advance { dt } => self.advance(self.now + ms(dt))?,
            }
            self.q.check().map_err(TestCaseError::fail)?;
            prop_assert_eq!(self.q.len() as usize, self.m.ws.len());
            for p in Priority::ALL {
                let n = self.m.ws.iter().filter(|w| w.p == p.index()).count();
                prop_assert_eq!(self.q.len_of(p) as usize, n);
            }
            prop_assert_eq!(self.q.overloaded(), self.m.overloaded);
            Ok(())
        }
    }

    fn model_waiter(p: usize, w: &Waiter<u64>) -> ModelWaiter {
        ModelWaiter {
            id: w.payload,
            p,
            key: 0,
            arrival: w.arrival,
            deadline: w.deadline,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_discipline_matches_the_reference_model(
            (discipline, shares_pct) in discipline(),
            drop in queue_drop(),
            timeouts in prop::array::uniform3(timeout()),
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut h = Harness {
                q: WaitQueue::new(discipline, drop),
                m: Model {
                    discipline,
                    shares_pct,
                    drop,
                    ws: Vec::new(),
                    back: 0,
                    front: 0,
                    overloaded: false,
                    min_wait: None,
                    timed_out: false,
                },
                timeouts,
                now: SimTime::ZERO,
                slots: [None; 3],
                next_interval: drop.map(|d| SimTime::ZERO + d.interval),
                next_id: 0,
                served: Vec::new(),
                inside: BTreeMap::new(),
            };
            for op in ops {
                h.step(op)?;
            }
            let mut left: Vec<u64> = h.q.drain().map(|(_, w)| w.payload).collect();
            left.sort();
            let mut expect: Vec<u64> = h.m.ws.iter().map(|w| w.id).collect();
            expect.sort();
            prop_assert_eq!(&left, &expect);
            for id in left {
                h.leave(id)?;
            }
            // Every waiter left exactly once per time it entered.
            prop_assert!(h.inside.values().all(|&inside| !inside));
            prop_assert_eq!(h.q.len(), 0);
            h.q.check().map_err(TestCaseError::fail)?;
        }
    }
}
