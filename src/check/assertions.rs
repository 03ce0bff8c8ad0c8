//! Scenario assertions: properties of a topology run checked at its end
//! (like the temporal-dsql pool simulator's), reported in `summary.json`
//! and usable as a gate by `pooltune check`.
//!
//! Every per-second quantity is counted over whole seconds of simulated
//! time (second k = [k s, k+1 s)).

use serde::Serialize;

use crate::core::request::Priority;
use crate::time::SimDuration;

/// Which servers or services an assertion looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every server (or service), each on its own.
    All,
    /// One, by index into the topology's list (the name is kept for
    /// messages).
    One { index: usize, name: String },
}

/// One `[[assert]]` entry, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Assertion {
    /// Connect attempts reaching a server (accepted or refused) in any one
    /// second are at most `max`.
    MaxConnectsPerS { server: Scope, max: u32 },
    /// Backends closed on a server in any one second are at most `max`
    /// (a thundering herd of retirements or a mass reconnect).
    MaxClosesPerS { server: Scope, max: u32 },
    /// Connects refused by a server (every reason) over the run are at
    /// most `max`.
    MaxRefusals { server: Scope, max: u64 },
    /// Every pool of the service reaches its target within `within` of
    /// its instance starting (cold start or replacement).
    ConvergeWithin { service: Scope, within: SimDuration },
    /// Once converged, every pool of the service keeps its size at its
    /// target for at least `for_` (or until it stops or the run ends).
    StableFor { service: Scope, for_: SimDuration },
    /// The service's requests of `priority` (all if None) that timed out,
    /// as a fraction of those that arrived, are at most `max`.
    MaxTimeoutRate {
        service: Scope,
        priority: Option<Priority>,
        max: f64,
    },
    /// The service's p99 acquire wait (end to end, from first arrival) for
    /// `priority` (all if None) is at most `max`.
    MaxP99Wait {
        service: Scope,
        priority: Option<Priority>,
        max: SimDuration,
    },
    /// Requests the service lost (failed + unrouted) are at most `max`.
    MaxLost { service: Scope, max: u64 },
}

/// An assertion's verdict, as `summary.json` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct AssertionResult {
    /// `kind` as written in the scenario file (`max_connects_per_s`...).
    pub kind: String,
    /// What it looked at: a server or service name (one row per server or
    /// service when the scope is all of them).
    pub subject: String,
    /// The bound, in the unit the kind implies (count, per second,
    /// fraction, milliseconds, seconds).
    pub limit: f64,
    /// What the run showed, same unit (`null` when it never happened, for
    /// example a pool that never converged).
    pub observed: Option<f64>,
    pub passed: bool,
    /// One line a human reads: what failed, when.
    pub detail: String,
}
