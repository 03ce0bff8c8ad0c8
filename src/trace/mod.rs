//! Traces: the stream of requests the core replays, read through a cursor and
//! never loaded whole (constant memory in trace length).
//!
//! - [`canonical`]: the canonical trace format (CSV and JSON Lines), its
//!   streaming reader and writer;
//! - [`import`]: PostgreSQL csvlog, jsonlog, stderr/syslog, CloudNativePG
//!   and Cloud Logging logs, pgbench logs, OTLP spans and arrival-only
//!   traces to the canonical format ([`sort`] orders them in bounded
//!   memory, [`rules`] assign priorities, kinds and classes);
//! - [`replay`]: a recorded trace prepared for `sim run` (imported when it
//!   is a log, checked once, cached); [`StreamSource`] replays it;
//! - [`transform`]: windows, load scaling, merges, synthetic service;
//! - [`synthetic`] (stationary Poisson) and [`generate`] (rate profiles by
//!   thinning, MMPP, flash crowds, closed-loop clients) generators;
//!   [`service`]: service-time distributions (Pareto, empirical);
//! - [`stats`]: what `pooltune trace stats` reports.

pub mod canonical;
pub mod csvrow;
pub mod error;
pub mod generate;
pub mod import;
pub mod input;
pub mod num;
pub mod record;
pub mod replay;
pub mod rules;
pub mod service;
pub mod sort;
pub mod stats;
pub mod synthetic;
pub mod timestamp;
pub mod transform;

use crate::core::request::Request;
use crate::time::SimTime;

pub use error::TraceError;
pub use record::{TraceMeta, TraceRecord};

/// A source of requests sorted by arrival time.
///
/// A closed-loop source (clients that send their next request a think time
/// after their previous one ends, like pgbench without `-R`) cannot know
/// its arrivals in advance. A driver that can report ends calls
/// [`close_loop`](Self::close_loop) once, before the first request; when it
/// returns true, `next_request` yields each client's first request only,
/// and every later one comes from [`finished`](Self::finished). The driver
/// merges the two by arrival time. A driver that never calls `close_loop`
/// (`trace gen`, `trace stats`) gets the open approximation: each client's
/// schedule as if no request ever waited.
pub trait RequestSource {
    /// The next request, or `None` when the trace is exhausted. Arrivals are
    /// non-decreasing.
    fn next_request(&mut self) -> Option<Request>;

    /// The driver will call [`finished`](Self::finished) for every request
    /// that ends. True when this source is a closed loop and relies on it;
    /// false (the default) for open-loop sources, which ignore `finished`.
    fn close_loop(&mut self) -> bool {
        false
    }

    /// The request of `client` ended at `at` (served, timed out, refused or
    /// failed for good; not when it is retried). Returns the client's next
    /// request (arrival at or after `at`), or `None` when the client stops
    /// (duration or request count reached).
    fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
        let _ = (client, at);
        None
    }
}

impl<S: RequestSource + ?Sized> RequestSource for Box<S> {
    #[inline]
    fn next_request(&mut self) -> Option<Request> {
        (**self).next_request()
    }
    fn close_loop(&mut self) -> bool {
        (**self).close_loop()
    }
    #[inline]
    fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
        (**self).finished(client, at)
    }
}

impl<S: RequestSource + ?Sized> RequestSource for &mut S {
    #[inline]
    fn next_request(&mut self) -> Option<Request> {
        (**self).next_request()
    }
    fn close_loop(&mut self) -> bool {
        (**self).close_loop()
    }
    #[inline]
    fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
        (**self).finished(client, at)
    }
}

/// A stream of full trace records (what readers, importers and transforms
/// pass along), sorted by arrival.
pub trait RecordStream {
    /// Reads the next record into `rec`; `false` at the end.
    fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError>;
    /// The stream's metadata (start time, resolution, source).
    fn meta(&self) -> &TraceMeta;
}

impl<S: RecordStream + ?Sized> RecordStream for Box<S> {
    fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
        (**self).next_record(rec)
    }
    fn meta(&self) -> &TraceMeta {
        (**self).meta()
    }
}

impl RecordStream for canonical::CanonicalReader {
    #[inline]
    fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
        self.next_into(rec)
    }
    fn meta(&self) -> &TraceMeta {
        canonical::CanonicalReader::meta(self)
    }
}

/// Replays a record stream as requests. An error ends the stream early and
/// is kept for [`StreamSource::take_error`].
pub struct StreamSource<S> {
    inner: S,
    rec: TraceRecord,
    error: Option<TraceError>,
}

impl<S: RecordStream> StreamSource<S> {
    pub fn new(inner: S) -> Self {
        StreamSource {
            inner,
            rec: TraceRecord::default(),
            error: None,
        }
    }

    pub fn take_error(&mut self) -> Option<TraceError> {
        self.error.take()
    }
}

impl<S: RecordStream> RequestSource for StreamSource<S> {
    #[inline]
    fn next_request(&mut self) -> Option<Request> {
        if self.error.is_some() {
            return None;
        }
        match self.inner.next_record(&mut self.rec) {
            Ok(true) => Some(self.rec.request()),
            Ok(false) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}
