//! Traces: the stream of requests the core replays, read through a cursor and
//! never loaded whole (constant memory in trace length).

pub mod synthetic;

use crate::core::request::Request;

/// A source of requests sorted by arrival time.
pub trait RequestSource {
    /// The next request, or `None` when the trace is exhausted. Arrivals are
    /// non-decreasing.
    fn next_request(&mut self) -> Option<Request>;
}
