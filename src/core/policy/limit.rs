//! Shared plumbing of the sizing rules: how a rule's wish becomes a
//! [`Decision`], and how an adaptive concurrency limit maps to a pool size.

use super::{Decision, PoolView, Signal, Wants};
use crate::time::SimDuration;

/// What the latency-driven limits (AIMD, Vegas, Gradient) listen to: a
/// completion carries a latency sample, a drop only the decrease.
pub const LATENCY_SIGNALS: Wants = Wants {
    completed: true,
    dropped: true,
    ..Wants::NONE
};

/// The sample a latency-driven limit takes from `signal`: `(None, 0)` for a
/// drop (no latency), `(Some(query), inflight)` for a completion, `None` for
/// any other signal (the rule holds).
pub fn latency_sample(signal: Signal) -> Option<(Option<SimDuration>, u32)> {
    match signal {
        Signal::Dropped { .. } => Some((None, 0)),
        Signal::Completed {
            query, inflight, ..
        } => Some((Some(query), inflight)),
        _ => None,
    }
}

/// The anchors' app-limited check: a sample taken with fewer than L / 2
/// queries in flight says nothing about the limit, so it holds.
pub fn below_half(inflight: u32, limit: f64) -> bool {
    (inflight as f64) * 2.0 < limit
}

/// The decision of a rule whose pool follows its adaptive limit.
pub fn follow_limit(view: &PoolView, limit: f64) -> Decision {
    resize_to(view, target_for_limit(limit, view))
}

/// `Resize` to `target` clamped to the view's [min, max], or `Hold` when
/// that is the current target (so the pool records only real resizes).
pub fn resize_to(view: &PoolView, target: u32) -> Decision {
    let target = target.clamp(view.min, view.max.max(view.min));
    if target == view.target {
        Decision::Hold
    } else {
        Decision::Resize { target }
    }
}

/// The pool size of an adaptive limit `limit` (section 9 of
/// pool-policies.md): `min(max, ceil(limit))`, and at least `min`.
pub fn target_for_limit(limit: f64, view: &PoolView) -> u32 {
    let ceil = if limit.is_finite() && limit > 0.0 {
        limit.ceil().min(u32::MAX as f64) as u32
    } else {
        0
    };
    ceil.clamp(view.min, view.max.max(view.min))
}

/// Keeps an adaptive limit inside the pool's envelope, so a limit never
/// winds up far beyond what the pool can open (the anchors clamp to their
/// own [min, max]; a pool's are `size.min` and `size.max`).
pub fn clamp_limit(limit: f64, view: &PoolView) -> f64 {
    let lo = view.min.max(1) as f64;
    let hi = (view.max.max(1) as f64).max(lo);
    if limit.is_nan() {
        lo
    } else {
        limit.clamp(lo, hi)
    }
}

/// Connections the pool already intends to add: the target (or the size,
/// when more are open or opening than the target) minus the established
/// connections. HikariCP's "pending creations".
pub fn pending_creates(view: &PoolView) -> u32 {
    view.target.max(view.size).saturating_sub(view.open())
}

/// Signals and views the rules' hand-computed tests share.
#[cfg(test)]
pub mod testing {
    use super::super::{PoolView, Signal};
    use crate::time::SimDuration;

    /// A completion of a `query` that ran with `inflight` in flight.
    pub fn completed(query: SimDuration, inflight: u32) -> Signal {
        Signal::Completed {
            query,
            waited: SimDuration::ZERO,
            inflight,
        }
    }

    /// A completion of a query of `ms` milliseconds.
    pub fn done(ms: u64, inflight: u32) -> Signal {
        completed(SimDuration::from_millis(ms), inflight)
    }

    /// A pool of [2, 25] at target 10, nothing open.
    pub fn view() -> PoolView {
        PoolView {
            min: 2,
            max: 25,
            target: 10,
            ..PoolView::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(min: u32, max: u32, target: u32) -> PoolView {
        PoolView {
            min,
            max,
            target,
            ..PoolView::default()
        }
    }

    #[test]
    fn limit_maps_to_ceil_within_the_envelope() {
        let v = view(2, 25, 10);
        assert_eq!(target_for_limit(9.01, &v), 10);
        assert_eq!(target_for_limit(10.0, &v), 10);
        assert_eq!(target_for_limit(0.5, &v), 2);
        assert_eq!(target_for_limit(250.0, &v), 25);
        assert_eq!(target_for_limit(f64::NAN, &v), 2);
        assert_eq!(resize_to(&v, 10), Decision::Hold);
        assert_eq!(resize_to(&v, 40), Decision::Resize { target: 25 });
        assert_eq!(clamp_limit(1.0, &v), 2.0);
        assert_eq!(clamp_limit(30.5, &v), 25.0);
    }

    #[test]
    fn half_the_limit_holds_and_samples_come_from_completions_and_drops() {
        assert!(below_half(4, 9.0));
        assert!(!below_half(5, 10.0));
        assert!(!below_half(5, 9.5));
        let done = Signal::Completed {
            query: SimDuration::from_millis(7),
            waited: SimDuration::ZERO,
            inflight: 3,
        };
        assert_eq!(
            latency_sample(done),
            Some((Some(SimDuration::from_millis(7)), 3))
        );
        let drop = Signal::Dropped {
            priority: crate::core::request::Priority::Low,
        };
        assert_eq!(latency_sample(drop), Some((None, 0)));
        assert_eq!(latency_sample(Signal::Tick), None);
        assert_eq!(
            follow_limit(&view(2, 25, 10), 12.5),
            Decision::Resize { target: 13 }
        );
    }

    #[test]
    fn pending_counts_what_the_pool_still_opens() {
        let mut v = view(0, 25, 5);
        v.idle = 1;
        v.active = 2;
        v.opening = 1;
        v.size = 4;
        // Target 5, 3 established: 2 more are coming (1 opening, 1 queued).
        assert_eq!(pending_creates(&v), 2);
        v.target = 2;
        // Over target (shrinking): only the one opening.
        assert_eq!(pending_creates(&v), 1);
    }
}
