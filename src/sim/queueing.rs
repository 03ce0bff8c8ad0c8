//! Textbook queueing models on the full engine: a fixed pool of `servers`
//! connections, Poisson arrivals, a service-time distribution, instant
//! connects. The validation tests, the benchmark and the peer comparison all
//! build their runs from this one description.

use crate::core::metrics::SampleSink;
use crate::core::policy::Fixed;
use crate::core::pool::PoolConfig;
use crate::dist::DurationDist;
use crate::error::SimError;
use crate::rng::SeedTree;
use crate::sim::{simulate, DatabaseModel, RunOptions, RunOutcome};
use crate::time::SimDuration;
use crate::trace::synthetic::{Synthetic, SyntheticSpec};

#[derive(Clone, Debug, PartialEq)]
pub struct QueueingModel {
    /// Connections, opened at start and never resized (c).
    pub servers: u32,
    /// Poisson arrival rate (lambda), per second.
    pub rate_per_s: f64,
    pub service: DurationDist,
    pub priority_mix: [f64; 3],
    /// Per priority (high, normal, low); `INFINITE` for none.
    pub acquire_timeout: [SimDuration; 3],
    /// Waiters beyond this are rejected (K - c of an M/M/c/K queue).
    pub max_waiters: u32,
    pub usl_sigma: f64,
    pub usl_kappa: f64,
    /// Arrivals in the run.
    pub requests: u64,
}

impl QueueingModel {
    /// M/M/c: exponential service with mean `mean_service_s`, one priority
    /// (normal), no timeout, no waiter cap, no contention.
    pub fn mmc(servers: u32, rate_per_s: f64, mean_service_s: f64, requests: u64) -> Self {
        QueueingModel {
            servers,
            rate_per_s,
            service: DurationDist::Exponential {
                mean_ns: mean_service_s * 1e9,
            },
            priority_mix: [0.0, 1.0, 0.0],
            acquire_timeout: [SimDuration::INFINITE; 3],
            max_waiters: u32::MAX,
            usl_sigma: 0.0,
            usl_kappa: 0.0,
            requests,
        }
    }

    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            min: self.servers,
            max: self.servers,
            initial: self.servers,
            acquire_timeout: self.acquire_timeout,
            max_waiters: self.max_waiters,
            lifecycle: Default::default(),
        }
    }

    pub fn database(&self) -> DatabaseModel {
        DatabaseModel {
            connect_latency: DurationDist::Constant { value_ns: 0 },
            max_connections: self.servers,
            usl_sigma: self.usl_sigma,
            usl_kappa: self.usl_kappa,
        }
    }

    pub fn workload(&self) -> SyntheticSpec {
        SyntheticSpec {
            rate_per_s: self.rate_per_s,
            service: self.service.clone(),
            priority_mix: self.priority_mix,
            write_fraction: 0.0,
            duration: None,
            max_requests: Some(self.requests),
        }
    }

    /// Runs the model under `seed`.
    pub fn run(
        &self,
        seed: u64,
        opts: &RunOptions,
        sink: &mut dyn SampleSink,
    ) -> Result<RunOutcome, SimError> {
        let seeds = SeedTree::new(seed);
        let source = Synthetic::new(&self.workload(), &seeds);
        simulate(
            &self.pool_config(),
            Box::new(Fixed),
            &self.database(),
            source,
            &seeds,
            opts,
            sink,
        )
    }
}
