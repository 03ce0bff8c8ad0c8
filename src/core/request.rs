//! What flows through the pool: requests with a priority and a kind.

use serde::{Deserialize, Serialize};

use crate::time::{SimDuration, SimTime};

/// Acquire priority. A freed connection goes to the oldest waiter of the
/// highest non-empty priority (strict priority, FIFO within one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High = 0,
    Normal = 1,
    Low = 2,
}

impl Priority {
    /// All priorities, highest first (the service order).
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// Read or write; used for routing and mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Read,
    Write,
}

/// One database request of a trace: when it arrives, how much work it does
/// once it holds a connection, and how it is classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub arrival: SimTime,
    /// Work the query needs on an uncontended server.
    pub service: SimDuration,
    pub priority: Priority,
    pub kind: Kind,
    /// The closed-loop client that sent it (see
    /// [`RequestSource::finished`](crate::trace::RequestSource::finished));
    /// 0 from open-loop sources.
    pub client: u32,
}
