//! Policies: pure functions `(now, view of the pool, signal) -> decision`.
//!
//! A policy reads no clock and does no IO. The simulated and the live driver
//! both call the same `decide`, so a policy tuned in simulation is the policy
//! that runs against a real database.
//!
//! The sizing rules (`resize.kind` in a policy file), each in its own file
//! with its source in pool-policies.md:
//! - `fixed`: never resize (HikariCP's recommendation);
//! - `threshold`: the seed's utilization thresholds, and its repair
//!   (queue-aware signals, hysteresis, cooldowns);
//! - `demand`: grow by one when waiters outnumber pending creates
//!   (HikariCP, bb8, sqlx, deadpool); shrink is the lifecycle's idle timeout;
//! - `reserve`: PgBouncer's pool size plus a reserve opened after a wait;
//! - `aimd`, `vegas`, `gradient`, `gradient2`: Netflix concurrency-limits,
//!   the limit L mapped to the pool's target as min(max, ceil(L));
//! - `envoy`: Envoy's adaptive-concurrency gradient controller;
//! - `flexy`: FlexyPool's grow-on-timeout.
//!
//! Queue disciplines (priority shares, aging) and CoDel-style early drop
//! are lifecycle settings (`crate::core::lifecycle`), not rules.

mod aimd;
mod demand;
mod envoy;
mod fixed;
mod flexy;
mod gradient;
mod gradient2;
pub mod limit;
mod reserve;
mod threshold;
mod vegas;

pub use aimd::{Aimd, AimdParams};
pub use demand::Demand;
pub use envoy::{Envoy, EnvoyParams};
pub use fixed::Fixed;
pub use flexy::{Flexy, FlexyParams};
pub use gradient::{Gradient, GradientParams};
pub use gradient2::{Gradient2, Gradient2Params};
pub use reserve::{Reserve, ReserveParams};
pub use threshold::{Threshold, ThresholdParams, ThresholdTuning, UtilizationSignal};
pub use vegas::{Vegas, VegasParams};

use crate::core::request::Priority;
use crate::time::{SimDuration, SimTime};

/// Why the policy is being asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The policy's periodic timer (every [`Policy::interval`]). The view's
    /// `window` covers the time since the previous tick.
    Tick,
    /// A request found no idle connection and joined the wait queue (the
    /// view already counts it). Delivered when [`Wants::queued`].
    Queued { priority: Priority },
    /// A request's query finished: `query` is its hold time (the latency
    /// sample of the adaptive-concurrency family), `inflight` the number of
    /// queries running when it started (itself included), `waited` its
    /// acquire wait. Delivered when [`Wants::completed`].
    Completed {
        query: SimDuration,
        waited: SimDuration,
        inflight: u32,
    },
    /// A request gave up waiting (acquire timeout or early drop): the "drop"
    /// of the adaptive-concurrency family. Delivered when [`Wants::dropped`].
    Dropped { priority: Priority },
}

/// Which event signals a policy wants besides its ticks. Each costs a call
/// per event, so the pool only makes the calls a policy asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wants {
    pub queued: bool,
    pub completed: bool,
    pub dropped: bool,
}

impl Wants {
    pub const NONE: Wants = Wants {
        queued: false,
        completed: false,
        dropped: false,
    };
}

/// What the policy wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep the current target size.
    Hold,
    /// Set the target size (the pool clamps it to its [min, max] bounds,
    /// opens connections to reach it and closes idle ones above it).
    Resize { target: u32 },
}

/// Activity since the policy was last asked (a window).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PolicyWindow {
    pub span: SimDuration,
    /// Time-weighted active / open over the window (0 when nothing was open).
    pub utilization_mean: f64,
    /// Time-weighted mean number of waiters over the window.
    pub waiting_mean: f64,
    pub arrived: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub rejected: u64,
}

/// What a policy may see of the pool: a copy, so a policy cannot mutate it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolView {
    pub now: SimTime,
    pub min: u32,
    pub max: u32,
    /// The size the pool is steering to.
    pub target: u32,
    /// Connections counted in the pool: opening + idle + active.
    pub size: u32,
    /// Connections being opened (pending creates).
    pub opening: u32,
    pub idle: u32,
    pub active: u32,
    /// Waiters by priority (high, normal, low).
    pub waiting: [u32; 3],
    /// Age of the oldest waiter by priority (zero when none waits).
    pub oldest_wait: [SimDuration; 3],
    pub window: PolicyWindow,
}

impl PoolView {
    /// Established connections (idle + active).
    pub fn open(&self) -> u32 {
        self.idle + self.active
    }
    pub fn waiting_total(&self) -> u32 {
        self.waiting.iter().sum()
    }
    /// Instantaneous utilization = active / open, as the seed policy defines
    /// it; 1 when nothing is open but requests wait, 0 when nothing is open.
    pub fn utilization_now(&self) -> f64 {
        if self.open() == 0 {
            if self.waiting_total() > 0 {
                1.0
            } else {
                0.0
            }
        } else {
            self.active as f64 / self.open() as f64
        }
    }
}

/// A pool sizing policy.
pub trait Policy: Send {
    /// How often the policy wants a [`Signal::Tick`]; `None` for never.
    fn interval(&self) -> Option<SimDuration>;
    /// Which event signals the policy wants (none by default).
    fn wants(&self) -> Wants {
        Wants::NONE
    }
    /// Decide. Must depend only on its arguments and the policy's own state.
    fn decide(&mut self, now: SimTime, view: &PoolView, signal: Signal) -> Decision;
}
