//! The wait queue: requests waiting for a connection, one FIFO per priority,
//! each waiter with its acquire deadline, and the discipline that picks who
//! is served when a connection frees.
//!
//! Deadlines are FIFO within a priority (one timeout per priority), so one
//! lazily re-armed timer per priority queue expires them in order.

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

/// The waiters of a pool.
pub struct WaitQueue<T> {
    queues: [VecDeque<Waiter<T>>; 3],
    timer_armed: [bool; 3],
    len: u32,
    discipline: Discipline,
    drop: Option<QueueDrop>,
}

impl<T> WaitQueue<T> {
    pub fn new(discipline: Discipline, drop: Option<QueueDrop>) -> Self {
        WaitQueue {
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            timer_armed: [false; 3],
            len: 0,
            discipline,
            drop,
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
        self.arm(i, deadline)
    }

    /// Puts a waiter back at the head of its queue (a retry after a broken
    /// connection keeps its place and its deadline).
    pub fn push_front(&mut self, p: Priority, w: Waiter<T>) -> Option<SimTime> {
        let i = p.index();
        let deadline = w.deadline;
        self.queues[i].push_front(w);
        self.len += 1;
        // The head changed: its deadline may be earlier than the armed one.
        self.timer_armed[i] = false;
        self.arm(i, deadline)
    }

    fn arm(&mut self, i: usize, deadline: SimTime) -> Option<SimTime> {
        if !self.timer_armed[i] && deadline != SimTime::NEVER {
            self.timer_armed[i] = true;
            Some(deadline)
        } else {
            None
        }
    }

    /// The waiter to serve with a connection that just freed, by the
    /// discipline. `size` is the pool's size and `active` its running
    /// queries per priority (for reserved shares).
    #[inline]
    ///
    /// Under an early-drop rule ([`QueueDrop`]) waiters found overdue are
    /// removed and handed to `dropped` (the pool counts them as timed out).
    pub fn pop_next(
        &mut self,
        _now: SimTime,
        _size: u32,
        _active: [u32; 3],
        _dropped: &mut dyn FnMut(Priority, Waiter<T>),
    ) -> Option<(Priority, Waiter<T>)> {
        if self.len == 0 {
            return None;
        }
        match self.discipline {
            Discipline::Strict | Discipline::Aging { .. } | Discipline::Shares { .. } => {
                for p in Priority::ALL {
                    if let Some(w) = self.queues[p.index()].pop_front() {
                        self.len -= 1;
                        return Some((p, w));
                    }
                }
                None
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
        self.timer_armed[i] = false;
        while self.queues[i].front().is_some_and(|w| w.deadline <= now) {
            let w = self.queues[i].pop_front().expect("front exists");
            self.len -= 1;
            expired(w);
        }
        let head = self.queues[i].front().map(|w| w.deadline)?;
        self.arm(i, head)
    }

    /// Period of the early-drop rule's interval timer (the pool calls
    /// [`WaitQueue::on_interval`] at every multiple of it); `None` when off.
    pub fn interval(&self) -> Option<SimDuration> {
        self.drop.map(|d| d.interval)
    }

    /// The early-drop interval ended at `now`: decides whether the queue is
    /// overloaded for the next interval and drops overdue waiters.
    pub fn on_interval(&mut self, _now: SimTime, _dropped: &mut dyn FnMut(Priority, Waiter<T>)) {}

    /// Removes every waiter (end of a live run, or a pool being torn down).
    pub fn drain(&mut self) -> impl Iterator<Item = (Priority, Waiter<T>)> + '_ {
        self.len = 0;
        self.timer_armed = [false; 3];
        let [h, n, l] = &mut self.queues;
        h.drain(..)
            .map(|w| (Priority::High, w))
            .chain(n.drain(..).map(|w| (Priority::Normal, w)))
            .chain(l.drain(..).map(|w| (Priority::Low, w)))
    }

    /// Checks that the counters agree with the queues.
    pub fn check(&self) -> Result<(), String> {
        let queued: usize = self.queues.iter().map(|q| q.len()).sum();
        if queued as u32 != self.len {
            return Err("waiter count disagrees with the queues".into());
        }
        Ok(())
    }
}
