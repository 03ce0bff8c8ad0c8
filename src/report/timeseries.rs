//! The time-series CSV: one row per sample interval and policy, streamed to
//! disk as the simulation produces it (constant memory).

use std::io::Write;

use crate::core::metrics::{Sample, SampleSink};

/// Column names, in order.
pub const HEADER: &[&str] = &[
    "policy",
    "t_s",
    "window_s",
    "target",
    "size",
    "opening",
    "idle",
    "active",
    "waiting_high",
    "waiting_normal",
    "waiting_low",
    "size_mean",
    "active_mean",
    "waiting_mean",
    "utilization",
    "arrival_rate_per_s",
    "completed",
    "timed_out",
    "rejected",
    "failed",
    "opened",
    "closed",
    "checks_failed",
    "db_refused",
    "faults_active",
];

fn record(policy: &str, s: &Sample) -> [String; 25] {
    [
        policy.to_string(),
        s.t_s.to_string(),
        s.window_s.to_string(),
        s.target.to_string(),
        s.size.to_string(),
        s.opening.to_string(),
        s.idle.to_string(),
        s.active.to_string(),
        s.waiting_high.to_string(),
        s.waiting_normal.to_string(),
        s.waiting_low.to_string(),
        s.size_mean.to_string(),
        s.active_mean.to_string(),
        s.waiting_mean.to_string(),
        s.utilization.to_string(),
        s.arrival_rate_per_s.to_string(),
        s.completed.to_string(),
        s.timed_out.to_string(),
        s.rejected.to_string(),
        s.failed.to_string(),
        s.opened.to_string(),
        s.closed.to_string(),
        s.checks_failed.to_string(),
        s.db_refused.to_string(),
        s.faults_active.to_string(),
    ]
}

/// Writes samples as CSV rows tagged with the policy name. Write errors are
/// kept and reported by [`CsvSink::finish`], so nothing is lost silently.
pub struct CsvSink<W: Write> {
    policy: String,
    writer: csv::Writer<W>,
    error: Option<csv::Error>,
}

impl<W: Write> CsvSink<W> {
    /// `header`: write the header row first.
    pub fn new(policy: &str, out: W, header: bool) -> Self {
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(out);
        let error = if header {
            writer.write_record(HEADER).err()
        } else {
            None
        };
        CsvSink {
            policy: policy.to_string(),
            writer,
            error,
        }
    }

    /// Flushes; returns the first write error, if any.
    pub fn finish(mut self) -> Result<W, std::io::Error> {
        if let Some(e) = self.error.take() {
            return Err(std::io::Error::other(e));
        }
        self.writer.flush()?;
        self.writer
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Wraps a sink and reports progress to a callback (the CLI's progress bar).
pub struct WithProgress<S, F> {
    pub inner: S,
    pub on_progress: F,
}

impl<S: SampleSink, F: FnMut(crate::time::SimTime)> SampleSink for WithProgress<S, F> {
    fn record(&mut self, sample: &Sample) {
        self.inner.record(sample);
    }
    fn progress(&mut self, now: crate::time::SimTime, _events: u64) {
        (self.on_progress)(now);
    }
}

impl<W: Write> SampleSink for CsvSink<W> {
    fn record(&mut self, sample: &Sample) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.writer.write_record(record(&self.policy, sample)) {
            self.error = Some(e);
        }
    }
}
