//! AIMD concurrency limit (Netflix concurrency-limits `AIMDLimit`,
//! pool-policies.md section 5 [CL], section 9 item 9): on a drop (an acquire
//! timeout) or a query slower than `timeout`, L <- floor(backoff_ratio x L);
//! otherwise, when the query started with inflight >= L / 2, L <- L + 1.
//! L is an integer, as in the anchor, clamped to the pool's [min, max] (the
//! anchor's own bounds 20..200 do not fit a pool); the pool's target is L.

use super::limit::{below_half, latency_sample, resize_to, LATENCY_SIGNALS};
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AimdParams {
    /// Starting limit (the pool's `size.initial`).
    pub initial: u32,
    /// Multiplicative decrease, in [0.5, 1) [CL]: 0.9.
    pub backoff_ratio: f64,
    /// A query slower than this counts as a drop [CL]: 5 s.
    pub timeout: SimDuration,
}

#[derive(Clone, Debug)]
pub struct Aimd {
    pub params: AimdParams,
    limit: u32,
}

impl Aimd {
    pub fn new(params: AimdParams) -> Self {
        Aimd {
            limit: params.initial,
            params,
        }
    }

    /// The current limit L.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn backoff(&self) -> u32 {
        (self.limit as f64 * self.params.backoff_ratio).floor() as u32
    }
}

impl Policy for Aimd {
    fn interval(&self) -> Option<SimDuration> {
        None
    }

    fn wants(&self) -> Wants {
        LATENCY_SIGNALS
    }

    fn decide(&mut self, _now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        let Some((query, inflight)) = latency_sample(signal) else {
            return Decision::Hold;
        };
        let next = match query {
            None => self.backoff(),
            Some(query) if query > self.params.timeout => self.backoff(),
            Some(_) if below_half(inflight, self.limit as f64) => self.limit,
            Some(_) => self.limit.saturating_add(1),
        };
        self.limit = next.clamp(view.min.max(1), view.max.max(1));
        resize_to(view, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::limit::testing::done;
    use crate::core::request::Priority;

    #[test]
    fn additive_increase_multiplicative_decrease() {
        let mut a = Aimd::new(AimdParams {
            initial: 10,
            backoff_ratio: 0.9,
            timeout: SimDuration::from_secs(5),
        });
        let drop = Signal::Dropped {
            priority: Priority::Normal,
        };
        let mut v = PoolView {
            min: 2,
            max: 25,
            target: 10,
            ..PoolView::default()
        };
        let mut limits = Vec::new();
        let seq = [
            done(10, 5),    // 5 x 2 = 10 >= 10: 10 + 1 = 11
            done(10, 4),    // 4 x 2 = 8 < 11: hold 11
            drop,           // floor(11 x 0.9 = 9.9) = 9
            done(6_000, 9), // 6 s > 5 s timeout: floor(9 x 0.9 = 8.1) = 8
            done(10, 4),    // 4 x 2 = 8 >= 8: 9
        ];
        for s in seq {
            if let Decision::Resize { target } = a.decide(SimTime::ZERO, &v, s) {
                v.target = target;
            }
            limits.push(a.limit());
        }
        assert_eq!(limits, vec![11, 11, 9, 8, 9]);
        assert_eq!(v.target, 9);
        // Repeated drops: 9 -> 8 (8.1) -> 7 (7.2) -> 6 (6.3) -> 5 (5.4) -> 4 (4.5)
        // -> 3 (3.6) -> 2 (2.7) -> 1 (1.8), clamped to min 2 -> 2.
        let mut limits = Vec::new();
        for _ in 0..9 {
            a.decide(SimTime::ZERO, &v, drop);
            limits.push(a.limit());
        }
        assert_eq!(limits, vec![8, 7, 6, 5, 4, 3, 2, 2, 2]);
        // Additive increase stops at max 25.
        for _ in 0..40 {
            a.decide(SimTime::ZERO, &v, done(1, 25));
        }
        assert_eq!(a.limit(), 25);
    }
}
