//! The seed policy and its repair: every `interval`, grow by `step_up` when
//! the signal reads high, shrink by `step_down` when it reads low.
//!
//! As the seed wrote it (`UtilizationSignal::Instant`, step 1, no
//! hysteresis) its signal is weak by design: active / open saturates at
//! 100 % however long the queue, and at size 2 a single query already reads
//! 50 %. pooltune measures that.
//!
//! The repair (pool-policies.md section 7, items 1 and 2; section 9 item 2):
//! - a queue-aware signal: `Waiters` grows when more requests wait than
//!   connections are coming (HikariCP's "waiters > pending creations"
//!   [H-P]); `OldestWait` grows when the oldest waiter has waited longer
//!   than a threshold (PgBouncer's `maxwait`, "the signal that the pool is
//!   too small" [P-U]). Both also react when a request starts waiting
//!   ([`Signal::Queued`]), not only on the tick, and both shrink only when
//!   nobody waits and the time-weighted utilization of the interval is below
//!   `scale_down`;
//! - separate `step_up` / `step_down`;
//! - cooldowns: no growth within `up_cooldown` of the previous growth, no
//!   shrink within `down_cooldown` of the previous resize (either way);
//! - hysteresis: shrink only after `down_consecutive_checks` consecutive low
//!   ticks; once there, at most one `step_down` per tick while it stays low.

use serde::{Deserialize, Serialize};

use super::limit::{pending_creates, resize_to};
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::time::{SimDuration, SimTime};

/// What the rule compares with its thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UtilizationSignal {
    /// active / open at the instant of the tick (the seed as written).
    Instant,
    /// Time-weighted active / open over the interval since the last tick.
    WindowMean,
    /// Waiters against pending creates (see [`ThresholdTuning::waiters_above`]).
    Waiters,
    /// Age of the oldest waiter (see [`ThresholdTuning::oldest_wait_above`]).
    OldestWait,
}

impl UtilizationSignal {
    /// The queue-aware signals, which also react to `Signal::Queued`.
    pub fn is_queue_aware(self) -> bool {
        matches!(
            self,
            UtilizationSignal::Waiters | UtilizationSignal::OldestWait
        )
    }
}

/// The seed's knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdParams {
    pub interval: SimDuration,
    /// Grow when utilization > scale_up (in [0, 1]; utilization signals only).
    pub scale_up: f64,
    /// Shrink when utilization < scale_down (in [0, scale_up)).
    pub scale_down: f64,
    /// Connections added per growth (>= 1); also removed per shrink unless
    /// [`ThresholdTuning::step_down`] says otherwise.
    pub step: u32,
    pub signal: UtilizationSignal,
}

/// The repair's knobs. `ThresholdTuning::default()` is the seed as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdTuning {
    /// Connections removed per shrink; `None` = `step`.
    pub step_down: Option<u32>,
    /// Minimum time between two growths. Default 0.
    pub up_cooldown: SimDuration,
    /// Minimum time since the last resize (up or down) before a shrink. Default 0.
    pub down_cooldown: SimDuration,
    /// Consecutive low ticks before the first shrink (>= 1). Default 1.
    pub down_consecutive_checks: u32,
    /// `Waiters`: grow when waiters > pending creates + this. Default 0.
    pub waiters_above: u32,
    /// `OldestWait`: grow when the oldest waiter has waited longer. Default 100 ms.
    pub oldest_wait_above: SimDuration,
}

impl Default for ThresholdTuning {
    fn default() -> Self {
        ThresholdTuning {
            step_down: None,
            up_cooldown: SimDuration::ZERO,
            down_cooldown: SimDuration::ZERO,
            down_consecutive_checks: 1,
            waiters_above: 0,
            oldest_wait_above: SimDuration::from_millis(100),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Threshold {
    pub params: ThresholdParams,
    pub tuning: ThresholdTuning,
    last_up: Option<SimTime>,
    last_resize: Option<SimTime>,
    low_streak: u32,
}

impl Threshold {
    /// The seed's rule (no hysteresis, no cooldown, step down = step up).
    pub fn new(params: ThresholdParams) -> Self {
        Threshold::with_tuning(params, ThresholdTuning::default())
    }

    pub fn with_tuning(params: ThresholdParams, tuning: ThresholdTuning) -> Self {
        Threshold {
            params,
            tuning,
            last_up: None,
            last_resize: None,
            low_streak: 0,
        }
    }

    fn reads_high(&self, view: &PoolView) -> bool {
        let p = &self.params;
        match p.signal {
            UtilizationSignal::Instant => view.utilization_now() > p.scale_up,
            UtilizationSignal::WindowMean => view.window.utilization_mean > p.scale_up,
            UtilizationSignal::Waiters => {
                view.waiting_total() as u64
                    > pending_creates(view) as u64 + self.tuning.waiters_above as u64
            }
            UtilizationSignal::OldestWait => {
                view.oldest_wait.iter().max().copied().unwrap_or_default()
                    > self.tuning.oldest_wait_above
            }
        }
    }

    fn reads_low(&self, view: &PoolView) -> bool {
        let p = &self.params;
        match p.signal {
            UtilizationSignal::Instant => view.utilization_now() < p.scale_down,
            UtilizationSignal::WindowMean => view.window.utilization_mean < p.scale_down,
            UtilizationSignal::Waiters | UtilizationSignal::OldestWait => {
                view.waiting_total() == 0 && view.window.utilization_mean < p.scale_down
            }
        }
    }

    fn since(now: SimTime, t: Option<SimTime>) -> SimDuration {
        t.map(|t| now.since(t)).unwrap_or(SimDuration::INFINITE)
    }

    fn grow(&mut self, now: SimTime, view: &PoolView) -> Decision {
        if Self::since(now, self.last_up) < self.tuning.up_cooldown {
            return Decision::Hold;
        }
        let d = resize_to(view, view.target.saturating_add(self.params.step));
        if d != Decision::Hold {
            self.last_up = Some(now);
            self.last_resize = Some(now);
        }
        d
    }
}

impl Policy for Threshold {
    fn interval(&self) -> Option<SimDuration> {
        Some(self.params.interval)
    }

    fn wants(&self) -> Wants {
        Wants {
            queued: self.params.signal.is_queue_aware(),
            ..Wants::NONE
        }
    }

    fn decide(&mut self, now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        match signal {
            Signal::Tick => {}
            // A new waiter: only growth can follow (the tick owns shrinking).
            Signal::Queued { .. } if self.params.signal.is_queue_aware() => {
                return if self.reads_high(view) {
                    self.grow(now, view)
                } else {
                    Decision::Hold
                };
            }
            _ => return Decision::Hold,
        }
        if self.reads_high(view) {
            self.low_streak = 0;
            return self.grow(now, view);
        }
        if !self.reads_low(view) {
            self.low_streak = 0;
            return Decision::Hold;
        }
        self.low_streak = self.low_streak.saturating_add(1);
        if self.low_streak < self.tuning.down_consecutive_checks
            || Self::since(now, self.last_resize) < self.tuning.down_cooldown
        {
            return Decision::Hold;
        }
        let step = self.tuning.step_down.unwrap_or(self.params.step);
        let d = resize_to(view, view.target.saturating_sub(step));
        if d != Decision::Hold {
            self.last_resize = Some(now);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(signal: UtilizationSignal) -> ThresholdParams {
        ThresholdParams {
            interval: SimDuration::from_secs(30),
            scale_up: 0.8,
            scale_down: 0.3,
            step: 1,
            signal,
        }
    }

    fn rule() -> Threshold {
        Threshold::new(params(UtilizationSignal::Instant))
    }

    fn view(target: u32, idle: u32, active: u32) -> PoolView {
        PoolView {
            min: 2,
            max: 25,
            target,
            size: idle + active,
            idle,
            active,
            ..PoolView::default()
        }
    }

    fn at(s: u64) -> SimTime {
        SimTime(s * 1_000_000_000)
    }

    #[test]
    fn grows_above_and_shrinks_below_the_thresholds() {
        let mut r = rule();
        let t = SimTime::ZERO;
        assert_eq!(
            r.decide(t, &view(5, 0, 5), Signal::Tick),
            Decision::Resize { target: 6 }
        );
        assert_eq!(
            r.decide(t, &view(5, 4, 1), Signal::Tick),
            Decision::Resize { target: 4 }
        );
        assert_eq!(r.decide(t, &view(10, 5, 5), Signal::Tick), Decision::Hold);
        // Exactly at a threshold: no change (strict comparisons, as specified).
        assert_eq!(r.decide(t, &view(10, 2, 8), Signal::Tick), Decision::Hold);
        assert_eq!(r.decide(t, &view(10, 7, 3), Signal::Tick), Decision::Hold);
    }

    #[test]
    fn respects_bounds() {
        let mut r = rule();
        let t = SimTime::ZERO;
        assert_eq!(r.decide(t, &view(25, 0, 25), Signal::Tick), Decision::Hold);
        assert_eq!(r.decide(t, &view(2, 2, 0), Signal::Tick), Decision::Hold);
    }

    #[test]
    fn one_query_at_size_two_reads_fifty_percent() {
        // The seed's weak signal: utilization jumps in steps of 1/size.
        let v = view(2, 1, 1);
        assert_eq!(v.utilization_now(), 0.5);
    }

    #[test]
    fn the_seed_ignores_queued_signals() {
        let mut r = rule();
        let mut v = view(5, 0, 5);
        v.waiting = [0, 9, 0];
        assert_eq!(r.wants(), Wants::NONE);
        assert_eq!(
            r.decide(
                SimTime::ZERO,
                &v,
                Signal::Queued {
                    priority: crate::core::request::Priority::Normal
                }
            ),
            Decision::Hold
        );
    }

    #[test]
    fn waiters_signal_grows_per_waiter_beyond_pending_creates() {
        let mut r = Threshold::new(params(UtilizationSignal::Waiters));
        assert!(r.wants().queued);
        let q = Signal::Queued {
            priority: crate::core::request::Priority::Normal,
        };
        // 5 open and busy, target 5: 1 waiter > 0 pending -> 6.
        let mut v = view(5, 0, 5);
        v.waiting = [0, 1, 0];
        assert_eq!(r.decide(at(1), &v, q), Decision::Resize { target: 6 });
        // Target 6, still 5 open: 1 pending; a 2nd waiter: 2 > 1 -> 7.
        v.target = 6;
        v.waiting = [0, 2, 0];
        assert_eq!(r.decide(at(1), &v, q), Decision::Resize { target: 7 });
        // Target 7 (2 pending) and 2 waiters: 2 > 2 is false -> hold.
        v.target = 7;
        assert_eq!(r.decide(at(1), &v, q), Decision::Hold);
        // Nobody waits, the window was 10 % busy: low -> 7 - 1 = 6.
        let mut calm = view(7, 6, 1);
        calm.window.utilization_mean = 0.1;
        assert_eq!(
            r.decide(at(30), &calm, Signal::Tick),
            Decision::Resize { target: 6 }
        );
        // A waiter blocks shrinking even when the window was idle.
        calm.waiting = [1, 0, 0];
        calm.target = 6;
        calm.size = 6;
        calm.idle = 0;
        calm.active = 6;
        assert_eq!(
            r.decide(at(60), &calm, Signal::Tick),
            Decision::Resize { target: 7 }
        );
    }

    #[test]
    fn oldest_wait_signal_compares_the_oldest_waiter() {
        let mut r = Threshold::with_tuning(
            params(UtilizationSignal::OldestWait),
            ThresholdTuning {
                oldest_wait_above: SimDuration::from_millis(200),
                ..ThresholdTuning::default()
            },
        );
        let mut v = view(5, 0, 5);
        v.waiting = [0, 1, 1];
        v.oldest_wait = [
            SimDuration::ZERO,
            SimDuration::from_millis(150),
            SimDuration::from_millis(200),
        ];
        // 200 ms is not above 200 ms.
        assert_eq!(r.decide(at(30), &v, Signal::Tick), Decision::Hold);
        v.oldest_wait[2] = SimDuration::from_millis(201);
        assert_eq!(
            r.decide(at(60), &v, Signal::Tick),
            Decision::Resize { target: 6 }
        );
    }

    #[test]
    fn hysteresis_cooldowns_and_steps() {
        // Repaired seed: 3 low checks, down cooldown 5 min, step down 2, up cooldown 60 s.
        let mut r = Threshold::with_tuning(
            params(UtilizationSignal::Instant),
            ThresholdTuning {
                step_down: Some(2),
                up_cooldown: SimDuration::from_secs(60),
                down_cooldown: SimDuration::from_secs(300),
                down_consecutive_checks: 3,
                ..ThresholdTuning::default()
            },
        );
        let busy = |t| view(t, 0, t);
        let calm = |t| view(t, t, 0);
        // t=0: grow 10 -> 11 (last up 0).
        assert_eq!(
            r.decide(at(0), &busy(10), Signal::Tick),
            Decision::Resize { target: 11 }
        );
        // t=30: busy again but 30 s < 60 s up cooldown: hold.
        assert_eq!(r.decide(at(30), &busy(11), Signal::Tick), Decision::Hold);
        // t=60: 60 s since the last growth: 11 -> 12 (last resize 60).
        assert_eq!(
            r.decide(at(60), &busy(11), Signal::Tick),
            Decision::Resize { target: 12 }
        );
        // t=90, 120: low streak 1, 2 (< 3): hold.
        assert_eq!(r.decide(at(90), &calm(12), Signal::Tick), Decision::Hold);
        assert_eq!(r.decide(at(120), &calm(12), Signal::Tick), Decision::Hold);
        // t=150: streak 3, but 150 - 60 = 90 s < 300 s down cooldown: hold.
        assert_eq!(r.decide(at(150), &calm(12), Signal::Tick), Decision::Hold);
        // A mid reading (50 %) resets the streak.
        assert_eq!(
            r.decide(at(180), &view(12, 6, 6), Signal::Tick),
            Decision::Hold
        );
        // t=210, 240: streak 1, 2; t=270: streak 3 but 270 - 60 = 210 s < 300 s.
        for s in [210, 240, 270] {
            assert_eq!(r.decide(at(s), &calm(12), Signal::Tick), Decision::Hold);
        }
        // t=360: streak 4, 300 s since the last resize: 12 - 2 = 10.
        assert_eq!(
            r.decide(at(360), &calm(12), Signal::Tick),
            Decision::Resize { target: 10 }
        );
        // t=390: still low but the shrink at 360 restarts the down cooldown.
        assert_eq!(r.decide(at(390), &calm(10), Signal::Tick), Decision::Hold);
        // t=660: 300 s later, the streak kept counting: 10 - 2 = 8.
        assert_eq!(
            r.decide(at(660), &calm(10), Signal::Tick),
            Decision::Resize { target: 8 }
        );
    }
}
