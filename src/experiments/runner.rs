//! Runs a list of simulations in parallel: one simulation per rayon task,
//! results in the order of the list whatever the thread count.

use rayon::prelude::*;

use super::metrics;
use super::ExperimentError;
use crate::core::metrics::{Sample, SampleSink};
use crate::scenario::{run_one, LoadedPolicy, LoadedWorkload};
use crate::time::SimTime;

/// Where progress goes (a progress bar in the binary). Called from worker
/// threads; never influences results.
pub trait Progress: Sync {
    /// Simulated seconds completed, added up over all runs.
    fn advance(&self, sim_s: u64);
    /// One simulation finished.
    fn run_finished(&self);
}

/// Discards progress.
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _: u64) {}
    fn run_finished(&self) {}
}

/// One simulation: a workload, a policy and a seed; `label` names it in errors.
pub struct Job<'a> {
    pub workload: &'a LoadedWorkload,
    pub policy: &'a LoadedPolicy,
    pub seed: u64,
    pub label: String,
}

/// Simulated seconds a workload is expected to last (for progress): its
/// duration, or its request cap at its arrival rate, whichever ends first.
pub fn expected_sim_seconds(w: &LoadedWorkload) -> u64 {
    let s = &w.spec.synthetic;
    let secs = match (s.duration, s.max_requests) {
        (Some(d), Some(n)) => d.as_secs_f64().min(n as f64 / s.rate_per_s),
        (Some(d), None) => d.as_secs_f64(),
        (None, Some(n)) => n as f64 / s.rate_per_s,
        (None, None) => 0.0,
    };
    secs.ceil().max(1.0) as u64
}

struct ProgressSink<'a> {
    progress: &'a dyn Progress,
    reported: u64,
    cap: u64,
}

impl SampleSink for ProgressSink<'_> {
    fn record(&mut self, _: &Sample) {}
    fn progress(&mut self, now: SimTime, _events: u64) {
        let s = (now.as_secs_f64() as u64).min(self.cap);
        if s > self.reported {
            self.progress.advance(s - self.reported);
            self.reported = s;
        }
    }
}

/// Runs every job (in parallel on the current rayon pool) and extracts
/// `metric_names` from each run. Results are in job order; when several
/// jobs fail, the error of the first failing job (in job order) is returned,
/// so even failures do not depend on thread timing.
pub fn run_jobs(
    jobs: &[Job<'_>],
    metric_names: &[String],
    progress: &dyn Progress,
) -> Result<Vec<Vec<f64>>, ExperimentError> {
    let results: Vec<Result<Vec<f64>, ExperimentError>> = jobs
        .par_iter()
        .with_max_len(1)
        .map(|job| {
            let cap = expected_sim_seconds(job.workload);
            let mut sink = ProgressSink {
                progress,
                reported: 0,
                cap,
            };
            let run = run_one(job.workload, job.policy, job.seed, &mut sink);
            progress.advance(cap - sink.reported);
            progress.run_finished();
            let run = run.map_err(|source| ExperimentError::Sim {
                context: job.label.clone(),
                source,
            })?;
            Ok(metrics::extract(&run, metric_names))
        })
        .collect();
    results.into_iter().collect()
}

/// Runs `f` on a rayon pool of `threads` threads, or on the global pool
/// (`RAYON_NUM_THREADS`, else one thread per core) when `None`.
pub fn with_threads<R: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> R + Send,
) -> Result<R, ExperimentError> {
    match threads {
        None => Ok(f()),
        Some(0) => Err(ExperimentError::spec(
            "--threads 0",
            "expected at least 1 thread",
        )),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| ExperimentError::Internal(format!("cannot start {n} threads: {e}")))?;
            Ok(pool.install(f))
        }
    }
}
