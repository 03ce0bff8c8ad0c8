//! FlexyPool's grow-on-timeout (pool-policies.md section 5, "FlexyPool"
//! [FP], `IncrementPoolOnTimeoutConnectionAcquiringStrategy`): each acquire
//! timeout raises the pool's size by one, from the base size up to
//! base + `max_overflow`. It never shrinks (FlexyPool does not).
//! FlexyPool's retry strategy is not modelled.

use super::limit::resize_to;
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlexyParams {
    /// The underlying pool's size (`size.initial`).
    pub base: u32,
    /// Connections the pool may add beyond `base` (ours: 5).
    pub max_overflow: u32,
}

#[derive(Clone, Debug)]
pub struct Flexy {
    pub params: FlexyParams,
}

impl Flexy {
    pub fn new(params: FlexyParams) -> Self {
        Flexy { params }
    }
}

impl Policy for Flexy {
    fn interval(&self) -> Option<SimDuration> {
        None
    }

    fn wants(&self) -> Wants {
        Wants {
            dropped: true,
            ..Wants::NONE
        }
    }

    fn decide(&mut self, _now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        if !matches!(signal, Signal::Dropped { .. }) {
            return Decision::Hold;
        }
        let ceiling = self.params.base.saturating_add(self.params.max_overflow);
        let target = view.target.saturating_add(1).min(ceiling);
        if target <= view.target {
            return Decision::Hold;
        }
        resize_to(view, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::request::Priority;

    #[test]
    fn one_more_per_timeout_up_to_the_overflow() {
        let mut f = Flexy::new(FlexyParams {
            base: 10,
            max_overflow: 2,
        });
        let drop = Signal::Dropped {
            priority: Priority::Low,
        };
        let mut v = PoolView {
            min: 10,
            max: 25,
            target: 10,
            ..PoolView::default()
        };
        // 10 -> 11 -> 12 = 10 + 2, then held at the overflow cap.
        let mut seen = Vec::new();
        for _ in 0..4 {
            match f.decide(SimTime::ZERO, &v, drop) {
                Decision::Resize { target } => {
                    v.target = target;
                    seen.push(target);
                }
                Decision::Hold => seen.push(0),
            }
        }
        assert_eq!(seen, vec![11, 12, 0, 0]);
        // Queued waiters and ticks do not grow it.
        let q = Signal::Queued {
            priority: Priority::High,
        };
        v.target = 10;
        assert_eq!(f.decide(SimTime::ZERO, &v, q), Decision::Hold);
        assert_eq!(f.decide(SimTime::ZERO, &v, Signal::Tick), Decision::Hold);
    }
}
