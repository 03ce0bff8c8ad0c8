//! PgBouncer's pool with a reserve (pool-policies.md section 3 [P-C][P-O],
//! `default_pool_size`, `reserve_pool_size`, `reserve_pool_timeout`):
//! connections open on demand (a client waits and no server is idle or
//! coming) up to `pool_size`; once the oldest waiter has waited
//! `reserve_timeout`, up to `reserve_size` more open, one per check; when
//! nobody waits the target returns to `pool_size` (the extra connections
//! close as they go idle).
//!
//! Checked when a request starts waiting and on a tick every `interval`
//! (PgBouncer's janitor runs every 1/3 s [P-J]).

use super::limit::{pending_creates, resize_to};
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReserveParams {
    /// PgBouncer default_pool_size (20).
    pub pool_size: u32,
    /// PgBouncer reserve_pool_size (0).
    pub reserve_size: u32,
    /// PgBouncer reserve_pool_timeout (5 s).
    pub reserve_timeout: SimDuration,
    /// The janitor's period (1/3 s).
    pub interval: SimDuration,
}

#[derive(Clone, Debug)]
pub struct Reserve {
    pub params: ReserveParams,
}

impl Reserve {
    pub fn new(params: ReserveParams) -> Self {
        Reserve { params }
    }
}

impl Policy for Reserve {
    fn interval(&self) -> Option<SimDuration> {
        Some(self.params.interval)
    }

    fn wants(&self) -> Wants {
        Wants {
            queued: true,
            ..Wants::NONE
        }
    }

    fn decide(&mut self, _now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        if !matches!(signal, Signal::Tick | Signal::Queued { .. }) {
            return Decision::Hold;
        }
        let p = &self.params;
        let waiting = view.waiting_total();
        if waiting == 0 {
            // Nobody waits: the reserve is released.
            return if view.target > p.pool_size {
                resize_to(view, p.pool_size)
            } else {
                Decision::Hold
            };
        }
        if waiting <= pending_creates(view) {
            return Decision::Hold;
        }
        let oldest = view.oldest_wait.iter().max().copied().unwrap_or_default();
        let ceiling = if oldest >= p.reserve_timeout {
            p.pool_size.saturating_add(p.reserve_size)
        } else {
            p.pool_size
        };
        let next = view.target.max(view.size).saturating_add(1);
        if next > ceiling {
            return Decision::Hold;
        }
        resize_to(view, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::request::Priority;

    #[test]
    fn opens_the_reserve_after_the_oldest_waiter_waited_the_timeout() {
        let mut r = Reserve::new(ReserveParams {
            pool_size: 2,
            reserve_size: 1,
            reserve_timeout: SimDuration::from_secs(5),
            interval: SimDuration::from_millis(333),
        });
        let q = Signal::Queued {
            priority: Priority::Normal,
        };
        // Pool 2 open and busy at target 2, 1 waiter for 0 s: at pool_size, hold.
        let mut v = PoolView {
            min: 0,
            max: 3,
            target: 2,
            size: 2,
            active: 2,
            waiting: [0, 1, 0],
            ..PoolView::default()
        };
        assert_eq!(r.decide(SimTime::ZERO, &v, q), Decision::Hold);
        // 4.9 s: still below the reserve timeout.
        v.oldest_wait = [
            SimDuration::ZERO,
            SimDuration::from_millis(4_900),
            SimDuration::ZERO,
        ];
        assert_eq!(r.decide(SimTime::ZERO, &v, Signal::Tick), Decision::Hold);
        // 5 s: reserve opens one: 3.
        v.oldest_wait[1] = SimDuration::from_secs(5);
        assert_eq!(
            r.decide(SimTime::ZERO, &v, Signal::Tick),
            Decision::Resize { target: 3 }
        );
        // At pool + reserve: hold.
        v.target = 3;
        v.size = 3;
        v.active = 3;
        assert_eq!(r.decide(SimTime::ZERO, &v, Signal::Tick), Decision::Hold);
        // Nobody waits: back to 2.
        v.waiting = [0; 3];
        v.oldest_wait = [SimDuration::ZERO; 3];
        assert_eq!(
            r.decide(SimTime::ZERO, &v, Signal::Tick),
            Decision::Resize { target: 2 }
        );
        // Below pool_size, a waiter with nothing coming grows by one at once.
        let v = PoolView {
            min: 0,
            max: 3,
            target: 1,
            size: 1,
            active: 1,
            waiting: [1, 0, 0],
            ..PoolView::default()
        };
        assert_eq!(
            r.decide(SimTime::ZERO, &v, q),
            Decision::Resize { target: 2 }
        );
    }
}
