//! Faults injected into the simulated world (`[[faults]]` in a workload),
//! and what the run records about each occurrence.
//!
//! A fault happens at a scheduled time (`at`) or at random times drawn at
//! `rate_per_hour` (a Poisson process from the seeded stream
//! `fault/<index>`, so a run stays a pure function of its seed). Kinds:
//!
//! | kind | effect |
//! | --- | --- |
//! | `restart` | every backend breaks at once (running queries fail at that instant, checks and queries on the old connections fail), connects in progress fail, and new connects are refused for `downtime` |
//! | `drop_connections` | `count` backends, or a `fraction` of them, chosen at random, break |
//! | `latency_spike` | queries that start during `duration` take `factor` x their service time (and the round trip) |
//! | `slow_connects` | connects that start during `duration` take `factor` x their latency |
//! | `connect_failures` | connects that start during `duration` fail with `probability` (after their latency) |
//!
//! Recovery: the time from the end of the fault (a restart: when the server
//! is back; a drop: the instant it happened) until every application
//! instance has handed a request a working connection after the request
//! waited at most `run.recovery_wait` (default 100 ms). `None` when that did
//! not happen before the run ended.

use serde::{Deserialize, Serialize};

use crate::time::SimDuration;

/// How many backends a `drop_connections` fault breaks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DropAmount {
    Count(u32),
    /// This fraction of the backends (rounded up), chosen at random.
    Fraction(f64),
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    Restart {
        downtime: SimDuration,
    },
    DropConnections(DropAmount),
    LatencySpike {
        factor: f64,
        duration: SimDuration,
    },
    SlowConnects {
        factor: f64,
        duration: SimDuration,
    },
    ConnectFailures {
        probability: f64,
        duration: SimDuration,
    },
}

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Restart { .. } => "restart",
            FaultKind::DropConnections(_) => "drop_connections",
            FaultKind::LatencySpike { .. } => "latency_spike",
            FaultKind::SlowConnects { .. } => "slow_connects",
            FaultKind::ConnectFailures { .. } => "connect_failures",
        }
    }

    /// How long the fault lasts (0 for an instantaneous drop).
    pub fn duration(&self) -> SimDuration {
        match *self {
            FaultKind::Restart { downtime } => downtime,
            FaultKind::DropConnections(_) => SimDuration::ZERO,
            FaultKind::LatencySpike { duration, .. }
            | FaultKind::SlowConnects { duration, .. }
            | FaultKind::ConnectFailures { duration, .. } => duration,
        }
    }
}

/// When a fault happens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultTiming {
    /// Once, at this simulated time.
    At(SimDuration),
    /// Repeatedly, at exponential intervals with this mean rate per hour of
    /// simulated time (the first one an exponential interval after 0).
    Rate { per_hour: f64 },
}

/// One `[[faults]]` entry, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    pub timing: FaultTiming,
}

/// One occurrence of a fault, as `summary.json` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Index of the `[[faults]]` entry (0-based).
    pub fault: usize,
    pub kind: String,
    /// When it began and ended, seconds since the start of the run.
    pub start_s: f64,
    pub end_s: f64,
    /// Backends it broke.
    pub connections_broken: u64,
    /// Queries running on those backends, failed at that instant.
    pub queries_failed: u64,
    /// Seconds from `end_s` until the pools served again (see the module
    /// documentation); `null` if they had not by the end of the run.
    pub recovery_s: Option<f64>,
}
