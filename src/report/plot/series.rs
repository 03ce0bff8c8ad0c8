//! `timeseries.csv` read back for plotting: one series of rows per policy,
//! in the order the file lists them.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::PlotError;
use crate::core::metrics::Sample;

/// One sample interval of one policy (the columns the plots use).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    /// End of the window, seconds since the start of the run.
    pub t_s: f64,
    pub window_s: f64,
    pub target: u32,
    pub size: u32,
    pub active: u32,
    pub waiting_high: u32,
    pub waiting_normal: u32,
    pub waiting_low: u32,
    /// Time-weighted means over the window.
    pub size_mean: f64,
    pub active_mean: f64,
    pub waiting_mean: f64,
    pub utilization: f64,
    pub arrival_rate_per_s: f64,
    pub completed: u64,
    pub timed_out: u64,
    pub rejected: u64,
}

impl From<&Sample> for SeriesRow {
    fn from(s: &Sample) -> Self {
        SeriesRow {
            t_s: s.t_s,
            window_s: s.window_s,
            target: s.target,
            size: s.size,
            active: s.active,
            waiting_high: s.waiting_high,
            waiting_normal: s.waiting_normal,
            waiting_low: s.waiting_low,
            size_mean: s.size_mean,
            active_mean: s.active_mean,
            waiting_mean: s.waiting_mean,
            utilization: s.utilization,
            arrival_rate_per_s: s.arrival_rate_per_s,
            completed: s.completed,
            timed_out: s.timed_out,
            rejected: s.rejected,
        }
    }
}

/// A CSV record: the policy column, then a row (csv cannot deserialize
/// through `#[serde(flatten)]`, so the columns are listed again).
#[derive(Debug, Deserialize)]
struct CsvRow {
    policy: String,
    t_s: f64,
    window_s: f64,
    target: u32,
    size: u32,
    active: u32,
    waiting_high: u32,
    waiting_normal: u32,
    waiting_low: u32,
    size_mean: f64,
    active_mean: f64,
    waiting_mean: f64,
    utilization: f64,
    arrival_rate_per_s: f64,
    completed: u64,
    timed_out: u64,
    rejected: u64,
}

impl CsvRow {
    fn split(self) -> (String, SeriesRow) {
        (
            self.policy,
            SeriesRow {
                t_s: self.t_s,
                window_s: self.window_s,
                target: self.target,
                size: self.size,
                active: self.active,
                waiting_high: self.waiting_high,
                waiting_normal: self.waiting_normal,
                waiting_low: self.waiting_low,
                size_mean: self.size_mean,
                active_mean: self.active_mean,
                waiting_mean: self.waiting_mean,
                utilization: self.utilization,
                arrival_rate_per_s: self.arrival_rate_per_s,
                completed: self.completed,
                timed_out: self.timed_out,
                rejected: self.rejected,
            },
        )
    }
}

/// The rows of one policy, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySeries {
    pub policy: String,
    pub rows: Vec<SeriesRow>,
}

impl PolicySeries {
    /// The end of the last window (0 when empty).
    pub fn end_s(&self) -> f64 {
        self.rows.last().map(|r| r.t_s).unwrap_or(0.0)
    }

    /// At most `max_points` rows: consecutive windows merged by
    /// duration-weighted means (rates and means stay means; counts add up).
    /// A long run (a day at 1 s) thus draws as ~1,000 points per line.
    pub fn binned(&self, max_points: usize) -> Vec<SeriesRow> {
        let max_points = max_points.max(1);
        if self.rows.len() <= max_points {
            return self.rows.clone();
        }
        let per = self.rows.len().div_ceil(max_points);
        self.rows
            .chunks(per)
            .map(|chunk| {
                let total: f64 = chunk.iter().map(|r| r.window_s).sum();
                let w = |f: fn(&SeriesRow) -> f64| -> f64 {
                    if total > 0.0 {
                        chunk.iter().map(|r| f(r) * r.window_s).sum::<f64>() / total
                    } else {
                        chunk.iter().map(f).sum::<f64>() / chunk.len() as f64
                    }
                };
                let last = chunk.last().expect("chunks are non-empty");
                SeriesRow {
                    t_s: last.t_s,
                    window_s: total,
                    target: last.target,
                    size: last.size,
                    active: last.active,
                    waiting_high: last.waiting_high,
                    waiting_normal: last.waiting_normal,
                    waiting_low: last.waiting_low,
                    size_mean: w(|r| r.size_mean),
                    active_mean: w(|r| r.active_mean),
                    waiting_mean: w(|r| r.waiting_mean),
                    utilization: w(|r| r.utilization),
                    arrival_rate_per_s: w(|r| r.arrival_rate_per_s),
                    completed: chunk.iter().map(|r| r.completed).sum(),
                    timed_out: chunk.iter().map(|r| r.timed_out).sum(),
                    rejected: chunk.iter().map(|r| r.rejected).sum(),
                }
            })
            .collect()
    }
}

/// Every policy's series from one `timeseries.csv`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeSeries {
    pub policies: Vec<PolicySeries>,
}

impl TimeSeries {
    /// Reads a `timeseries.csv` file.
    pub fn read(path: &Path) -> Result<TimeSeries, PlotError> {
        let file = std::fs::File::open(path).map_err(|e| PlotError::Input {
            source_name: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_reader(file, &path.display().to_string())
    }

    /// Parses CSV text with the header of [`crate::report::timeseries::HEADER`]
    /// (extra columns are ignored). `name` is used in error messages.
    pub fn from_reader<R: Read>(r: R, name: &str) -> Result<TimeSeries, PlotError> {
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(r);
        let mut out = TimeSeries::default();
        for (i, rec) in reader.deserialize::<CsvRow>().enumerate() {
            let rec = rec.map_err(|e| PlotError::Input {
                source_name: name.to_string(),
                message: format!("row {}: {e}", i + 2),
            })?;
            let (policy, row) = rec.split();
            match out.policies.iter_mut().find(|p| p.policy == policy) {
                Some(p) => p.rows.push(row),
                None => out.policies.push(PolicySeries {
                    policy,
                    rows: vec![row],
                }),
            }
        }
        Ok(out)
    }

    /// A series built from samples kept in memory (tests, short runs).
    pub fn from_samples(runs: &[(&str, &[Sample])]) -> TimeSeries {
        TimeSeries {
            policies: runs
                .iter()
                .map(|(name, samples)| PolicySeries {
                    policy: name.to_string(),
                    rows: samples.iter().map(SeriesRow::from).collect(),
                })
                .collect(),
        }
    }

    pub fn get(&self, policy: &str) -> Option<&PolicySeries> {
        self.policies.iter().find(|p| p.policy == policy)
    }

    /// The latest window end over all policies.
    pub fn end_s(&self) -> f64 {
        self.policies.iter().map(|p| p.end_s()).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "policy,t_s,window_s,target,size,opening,idle,active,waiting_high,waiting_normal,waiting_low,size_mean,active_mean,waiting_mean,utilization,arrival_rate_per_s,completed,timed_out,rejected
a,1,1,2,2,0,0,2,0,1,2,2,1.5,3,0.75,300,290,1,0
a,2,1,2,2,0,1,1,0,0,0,2,0.5,1,0.25,100,110,0,0
b,1,1,10,10,0,8,2,0,0,0,10,2,0,0.2,300,300,0,0
";

    #[test]
    fn reads_policies_in_file_order_and_bins_by_weighted_means() {
        let ts = TimeSeries::from_reader(CSV.as_bytes(), "test.csv").unwrap();
        let names: Vec<&str> = ts.policies.iter().map(|p| p.policy.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = ts.get("a").unwrap();
        assert_eq!(a.rows.len(), 2);
        assert_eq!(a.rows[0].waiting_normal, 1);
        let binned = a.binned(1);
        assert_eq!(binned.len(), 1);
        assert_eq!(binned[0].t_s, 2.0);
        assert_eq!(binned[0].window_s, 2.0);
        assert_eq!(binned[0].active_mean, 1.0);
        assert_eq!(binned[0].arrival_rate_per_s, 200.0);
        assert_eq!(binned[0].completed, 400);
        assert_eq!(ts.end_s(), 2.0);
    }

    #[test]
    fn a_bad_row_names_the_file_and_row() {
        let bad = CSV.replace("a,2,1,", "a,two,1,");
        let err = TimeSeries::from_reader(bad.as_bytes(), "x.csv").unwrap_err();
        assert!(err.to_string().starts_with("x.csv: row 3:"), "{err}");
    }
}
