//! On-demand growth, as HikariCP, bb8, sqlx and deadpool grow
//! (pool-policies.md section 5, "HikariCP's demand-driven rule, written as
//! a policy" [H-P]; [BB], [SX], [DP]): when a request starts waiting and
//! more requests wait than connections are coming (pending creates), open
//! one more, up to `size.max`. The rule never shrinks: the lifecycle's idle
//! timeout closes idle connections (never below `size.min`) and the pool's
//! target shrinks with them.
//!
//! Whether the request itself waits for the new connection (deadpool) or
//! any freed connection serves it first (HikariCP) is the lifecycle's
//! `creator`, not this rule.

use super::limit::{pending_creates, resize_to};
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Debug, Default)]
pub struct Demand;

impl Policy for Demand {
    fn interval(&self) -> Option<SimDuration> {
        None
    }

    fn wants(&self) -> Wants {
        Wants {
            queued: true,
            ..Wants::NONE
        }
    }

    fn decide(&mut self, _now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        if !matches!(signal, Signal::Queued { .. }) {
            return Decision::Hold;
        }
        let pending = pending_creates(view);
        if view.waiting_total() <= pending {
            return Decision::Hold;
        }
        // One more than the pool is already steering to (or holds).
        resize_to(view, view.target.max(view.size).saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::request::Priority;

    const Q: Signal = Signal::Queued {
        priority: Priority::Normal,
    };

    #[test]
    fn grows_one_at_a_time_while_waiters_outnumber_pending_creates() {
        let mut d = Demand;
        // No-pool start: min 0, nothing open, 1 waiter, nothing coming -> 1.
        let mut v = PoolView {
            min: 0,
            max: 3,
            waiting: [0, 1, 0],
            ..PoolView::default()
        };
        assert_eq!(
            d.decide(SimTime::ZERO, &v, Q),
            Decision::Resize { target: 1 }
        );
        // Target 1, 1 opening (size 1, open 0): pending 1; 2 waiters > 1 -> 2.
        v.target = 1;
        v.size = 1;
        v.opening = 1;
        v.waiting = [0, 2, 0];
        assert_eq!(
            d.decide(SimTime::ZERO, &v, Q),
            Decision::Resize { target: 2 }
        );
        // Target 2, 1 opening, 0 open: pending 2; 2 waiters -> hold.
        v.target = 2;
        assert_eq!(d.decide(SimTime::ZERO, &v, Q), Decision::Hold);
        // 3 waiters -> 3 = max.
        v.waiting = [1, 2, 0];
        assert_eq!(
            d.decide(SimTime::ZERO, &v, Q),
            Decision::Resize { target: 3 }
        );
        // At max: a 4th waiter changes nothing.
        v.target = 3;
        v.waiting = [1, 3, 0];
        assert_eq!(d.decide(SimTime::ZERO, &v, Q), Decision::Hold);
        // Ticks and completions never resize.
        assert_eq!(d.decide(SimTime::ZERO, &v, Signal::Tick), Decision::Hold);
        assert_eq!(d.interval(), None);
    }
}
