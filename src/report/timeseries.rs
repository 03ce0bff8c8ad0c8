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

/// `servers.csv` columns, in order.
pub const SERVERS_HEADER: &[&str] = &[
    "second", "server", "connects", "accepted", "refused", "closes", "backends",
];

/// `services.csv` columns, in order.
pub const SERVICES_HEADER: &[&str] = &[
    "second",
    "service",
    "size",
    "target",
    "active",
    "waiting",
    "instances_up",
    "completed",
    "timed_out",
];

/// Seconds a set of per-second series covers (the longest of them).
fn seconds(lens: &[usize]) -> usize {
    lens.iter().copied().max().unwrap_or(0)
}

fn at<T: Copy + Default + ToString>(v: &[T], k: usize) -> String {
    v.get(k).copied().unwrap_or_default().to_string()
}

/// `servers.csv`: one row per server and second (second k = [k s, k+1 s)),
/// servers in topology order. A second a series does not reach counts 0.
pub fn servers_csv(names: &[String], series: &[crate::sim::topology::ServerSeries]) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(SERVERS_HEADER).expect("writing to memory");
    for (name, s) in names.iter().zip(series) {
        let n = seconds(&[
            s.connects.len(),
            s.accepted.len(),
            s.refused.len(),
            s.closes.len(),
            s.backends.len(),
        ]);
        for k in 0..n {
            w.write_record([
                k.to_string(),
                name.clone(),
                at(&s.connects, k),
                at(&s.accepted, k),
                at(&s.refused, k),
                at(&s.closes, k),
                at(&s.backends, k),
            ])
            .expect("writing to memory");
        }
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of UTF-8 is UTF-8")
}

/// `services.csv`: one row per service and second, all its pools together
/// (sizes and counts summed over its instances and servers).
pub fn services_csv(names: &[String], series: &[crate::sim::topology::ServiceSeries]) -> String {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(SERVICES_HEADER).expect("writing to memory");
    for (name, s) in names.iter().zip(series) {
        let n = seconds(&[
            s.size.len(),
            s.target.len(),
            s.active.len(),
            s.waiting.len(),
            s.instances_up.len(),
            s.completed.len(),
            s.timed_out.len(),
        ]);
        for k in 0..n {
            w.write_record([
                k.to_string(),
                name.clone(),
                at(&s.size, k),
                at(&s.target, k),
                at(&s.active, k),
                at(&s.waiting, k),
                at(&s.instances_up, k),
                at(&s.completed, k),
                at(&s.timed_out, k),
            ])
            .expect("writing to memory");
        }
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of UTF-8 is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::topology::{ServerSeries, ServiceSeries};

    #[test]
    fn servers_csv_one_row_per_server_and_second_padding_short_series() {
        let s = ServerSeries {
            connects: vec![5, 7],
            accepted: vec![5, 6],
            refused: vec![0, 1],
            closes: vec![0],
            backends: vec![5, 11, 11],
        };
        let text = servers_csv(&["primary".to_string()], &[s]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "second,server,connects,accepted,refused,closes,backends",
                "0,primary,5,5,0,0,5",
                "1,primary,7,6,1,0,11",
                "2,primary,0,0,0,0,11",
            ]
        );
    }

    #[test]
    fn services_csv_in_service_order() {
        let a = ServiceSeries {
            size: vec![4],
            target: vec![4],
            active: vec![1],
            waiting: vec![0],
            instances_up: vec![2],
            completed: vec![30],
            timed_out: vec![1],
        };
        let text = services_csv(
            &["api".to_string(), "batch".to_string()],
            &[a, ServiceSeries::default()],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[1], "0,api,4,4,1,0,2,30,1");
        assert_eq!(lines[0].split(',').count(), SERVICES_HEADER.len());
    }
}
