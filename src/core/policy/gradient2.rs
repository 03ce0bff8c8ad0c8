//! Gradient2 concurrency limit (Netflix concurrency-limits `Gradient2Limit`
//! behind its `WindowedLimit` wrapper, pool-policies.md section 5 [CL],
//! section 9 item 12).
//!
//! Samples are windowed: a query time under `min_rtt` (100 us) is ignored;
//! a window closes at the first sample after its end (`window` = 1 s after
//! the previous close; the first sample closes the first, empty window),
//! and is used only when it holds at least `window_min_samples` (10)
//! samples. A used window gives one update with its mean query time
//! (short rtt) and its largest inflight:
//! - long rtt: exponential average with weight 2 / (long_window + 1)
//!   (long_window 600), after a plain mean of the first 10 updates; when
//!   long / short > 2 the long rtt is cut by 5 % so recovery after overload
//!   is fast;
//! - inflight < L / 2: hold;
//! - g = clamp(tolerance x long / short, 0.5, 1) (tolerance 1.5);
//!   L' = g x L + queue_size (4); L <- (1 - s) L + s L' (s = 0.2), clamped to
//!   the pool's [min, max] (the anchor's 20..200 does not fit a pool).
//!
//! Drops are ignored, as in the anchor (its update never reads them).

use super::limit::{below_half, clamp_limit, follow_limit};
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gradient2Params {
    /// Starting limit (the pool's `size.initial`).
    pub initial: f64,
    /// [CL]: 0.2.
    pub smoothing: f64,
    /// [CL]: 1.5.
    pub tolerance: f64,
    /// Headroom added per update [CL]: 4.
    pub queue_size: u32,
    /// Samples of the long rtt's exponential average [CL]: 600.
    pub long_window: u32,
    /// Window length [CL]: 1 s.
    pub window: SimDuration,
    /// Fewest samples for a window to count [CL]: 10.
    pub window_min_samples: u32,
    /// Query times below this are ignored [CL]: 100 us.
    pub min_rtt: SimDuration,
}

const WARMUP: u32 = 10;

#[derive(Clone, Debug)]
pub struct Gradient2 {
    pub params: Gradient2Params,
    limit: f64,
    long: f64,
    long_count: u32,
    long_sum: f64,
    next_close: SimTime,
    win_sum: f64,
    win_count: u32,
    win_inflight: u32,
}

impl Gradient2 {
    pub fn new(params: Gradient2Params) -> Self {
        Gradient2 {
            limit: params.initial,
            params,
            long: 0.0,
            long_count: 0,
            long_sum: 0.0,
            next_close: SimTime::ZERO,
            win_sum: 0.0,
            win_count: 0,
            win_inflight: 0,
        }
    }

    /// The current limit L.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The long-term rtt in nanoseconds.
    pub fn long_rtt(&self) -> f64 {
        self.long
    }

    fn add_long(&mut self, rtt: f64) -> f64 {
        if self.long_count < WARMUP {
            self.long_count += 1;
            self.long_sum += rtt;
            self.long = self.long_sum / self.long_count as f64;
        } else {
            let factor = 2.0 / (self.params.long_window as f64 + 1.0);
            self.long = self.long * (1.0 - factor) + rtt * factor;
        }
        self.long
    }

    fn update(&mut self, view: &PoolView, short: f64, inflight: u32) {
        let p = self.params;
        let long = self.add_long(short);
        if long / short > 2.0 {
            self.long *= 0.95;
        }
        let l = self.limit;
        if below_half(inflight, l) {
            return;
        }
        let g = (p.tolerance * long / short).clamp(0.5, 1.0);
        let new = g * l + p.queue_size as f64;
        self.limit = clamp_limit(l * (1.0 - p.smoothing) + new * p.smoothing, view);
    }
}

impl Policy for Gradient2 {
    fn interval(&self) -> Option<SimDuration> {
        None
    }

    fn wants(&self) -> Wants {
        Wants {
            completed: true,
            ..Wants::NONE
        }
    }

    fn decide(&mut self, now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        let Signal::Completed {
            query, inflight, ..
        } = signal
        else {
            return Decision::Hold;
        };
        if query < self.params.min_rtt || query.as_nanos() == 0 {
            return Decision::Hold;
        }
        self.win_sum += query.as_nanos() as f64;
        self.win_count += 1;
        self.win_inflight = self.win_inflight.max(inflight);
        if now <= self.next_close {
            return Decision::Hold;
        }
        let (sum, count, inflight) = (self.win_sum, self.win_count, self.win_inflight);
        self.win_sum = 0.0;
        self.win_count = 0;
        self.win_inflight = 0;
        self.next_close = now.saturating_add(self.params.window);
        if count < self.params.window_min_samples {
            return Decision::Hold;
        }
        self.update(view, sum / count as f64, inflight);
        follow_limit(view, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::limit::testing::done;

    fn params(window_min_samples: u32) -> Gradient2Params {
        Gradient2Params {
            initial: 10.0,
            smoothing: 0.2,
            tolerance: 1.5,
            queue_size: 4,
            long_window: 600,
            window: SimDuration::from_secs(1),
            window_min_samples,
            min_rtt: SimDuration::from_nanos(100_000),
        }
    }

    fn at_ms(ms: u64) -> SimTime {
        SimTime(ms * 1_000_000)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn update_rule_by_hand() {
        let mut g = Gradient2::new(params(1));
        let v = PoolView {
            min: 2,
            max: 25,
            target: 10,
            ..PoolView::default()
        };
        // t=0.5s: closes the first window (1 sample): long = 10 ms (mean of 1);
        // g = clamp(1.5 x 10/10) = 1; L' = 10 + 4 = 14; L = 0.8 x 10 + 0.2 x 14 = 10.8.
        assert_eq!(
            g.decide(at_ms(500), &v, done(10, 8)),
            Decision::Resize { target: 11 }
        );
        assert!(close(g.limit(), 10.8));
        // t=1.0s: inside the window (closes after 1.5 s): accumulated only.
        assert_eq!(g.decide(at_ms(1_000), &v, done(30, 9)), Decision::Hold);
        assert!(close(g.limit(), 10.8));
        // t=1.6s: window {30, 30} ms, mean 30, inflight 9; long = (10 + 30)/2 = 20;
        // g = clamp(1.5 x 20/30 = 1); L' = 14.8; L = 0.8 x 10.8 + 0.2 x 14.8 = 11.6.
        g.decide(at_ms(1_600), &v, done(30, 9));
        assert!(close(g.limit(), 11.6), "{}", g.limit());
        // t=3s: short 100 ms, inflight 12; long = 140/3 = 46.67 ms;
        // g = 1.5 x 46.67/100 = 0.7; L' = 0.7 x 11.6 + 4 = 12.12;
        // L = 0.8 x 11.6 + 0.2 x 12.12 = 11.704.
        g.decide(at_ms(3_000), &v, done(100, 12));
        assert!(close(g.limit(), 11.704), "{}", g.limit());
        // t=4.1s (the window closes after 4 s): short 10 ms; long = 150/4 = 37.5 ms; 37.5/10 > 2: long cut to 35.625;
        // g = clamp(1.5 x 37.5/10) = 1 (the uncut long); L' = 15.704;
        // L = 0.8 x 11.704 + 0.2 x 15.704 = 12.504.
        g.decide(at_ms(4_100), &v, done(10, 12));
        assert!(close(g.limit(), 12.504), "{}", g.limit());
        assert!(close(g.long_rtt(), 35.625e6), "{}", g.long_rtt());
        // t=5.2s: inflight 6 < 12.504 / 2: hold. The long rtt still updates,
        // from the warm-up mean (the cut does not touch the sum): 160/5 = 32 ms,
        // 32/10 > 2: cut to 30.4 ms.
        g.decide(at_ms(5_200), &v, done(10, 6));
        assert!(close(g.limit(), 12.504));
        assert!(close(g.long_rtt(), 30.4e6), "{}", g.long_rtt());
        // A sample under 100 us is ignored (it does not even close a window).
        g.decide(
            at_ms(9_000),
            &v,
            Signal::Completed {
                query: SimDuration::from_nanos(50_000),
                waited: SimDuration::ZERO,
                inflight: 25,
            },
        );
        assert!(close(g.limit(), 12.504));
    }

    #[test]
    fn thin_windows_are_discarded() {
        let mut g = Gradient2::new(params(10));
        let v = PoolView {
            min: 2,
            max: 25,
            target: 10,
            ..PoolView::default()
        };
        // First sample closes the first window with 1 < 10 samples: discarded.
        g.decide(at_ms(1), &v, done(10, 10));
        // 9 samples in the next second, then one after it closes: 10 samples.
        for i in 0..9 {
            g.decide(at_ms(100 + i * 100), &v, done(10, 10));
        }
        assert_eq!(g.limit(), 10.0);
        g.decide(at_ms(1_002), &v, done(10, 10));
        // long = short = 10 ms: g = 1; L = 0.8 x 10 + 0.2 x 14 = 10.8.
        assert!(close(g.limit(), 10.8), "{}", g.limit());
    }
}
