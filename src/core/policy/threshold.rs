//! The seed policy: every `interval`, grow by `step` when utilization is
//! above `scale_up`, shrink by `step` when below `scale_down`.
//!
//! Its signal is weak by design (it is what the seed system shipped):
//! active / open saturates at 100 % however long the queue, and at size 2 a
//! single query already reads 50 %. pooltune measures that.

use serde::{Deserialize, Serialize};

use super::{Decision, Policy, PoolView, Signal};
use crate::time::{SimDuration, SimTime};

/// Which utilization the rule compares with its thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UtilizationSignal {
    /// active / open at the instant of the tick (the seed as written).
    Instant,
    /// Time-weighted active / open over the interval since the last tick.
    WindowMean,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdParams {
    pub interval: SimDuration,
    /// Grow when utilization > scale_up (in [0, 1]).
    pub scale_up: f64,
    /// Shrink when utilization < scale_down (in [0, scale_up)).
    pub scale_down: f64,
    /// Connections added or removed per decision (>= 1).
    pub step: u32,
    pub signal: UtilizationSignal,
}

#[derive(Clone, Debug)]
pub struct Threshold {
    pub params: ThresholdParams,
}

impl Threshold {
    pub fn new(params: ThresholdParams) -> Self {
        Threshold { params }
    }
}

impl Policy for Threshold {
    fn interval(&self) -> Option<SimDuration> {
        Some(self.params.interval)
    }

    fn decide(&mut self, _now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        if signal != Signal::Tick {
            return Decision::Hold;
        }
        let p = &self.params;
        let utilization = match p.signal {
            UtilizationSignal::Instant => view.utilization_now(),
            UtilizationSignal::WindowMean => view.window.utilization_mean,
        };
        let target = if utilization > p.scale_up {
            view.target.saturating_add(p.step).min(view.max)
        } else if utilization < p.scale_down {
            view.target.saturating_sub(p.step).max(view.min)
        } else {
            view.target
        };
        if target == view.target {
            Decision::Hold
        } else {
            Decision::Resize { target }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Threshold {
        Threshold::new(ThresholdParams {
            interval: SimDuration::from_secs(30),
            scale_up: 0.8,
            scale_down: 0.3,
            step: 1,
            signal: UtilizationSignal::Instant,
        })
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
}
