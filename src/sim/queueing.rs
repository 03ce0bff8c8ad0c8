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

/// The finite-source M/M/c//N queue (the machine-repairman model): `n`
/// closed-loop clients, each thinking an exponential time of mean `think_s`
/// between the end of one request and the next, in front of `c` servers
/// with exponential service of mean `service_s`. Exact, from the
/// birth-death chain on the number of requests at the pool.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FiniteSource {
    /// Requests completed per second.
    pub throughput_per_s: f64,
    /// Mean acquire wait per request, in seconds (Little: Lq / X).
    pub mean_wait_s: f64,
    /// Probability that a request finds every server busy: by the arrival
    /// theorem, P(n >= c) in the same system with n - 1 clients.
    pub p_wait: f64,
}

impl FiniteSource {
    pub fn new(clients: u32, servers: u32, think_s: f64, service_s: f64) -> FiniteSource {
        assert!(clients >= 1 && servers >= 1 && think_s > 0.0 && service_s > 0.0);
        let c = servers as usize;
        let p = Self::stationary(clients, c, think_s, service_s);
        let x: f64 = p
            .iter()
            .enumerate()
            .map(|(k, pk)| pk * k.min(c) as f64 / service_s)
            .sum();
        let lq: f64 = p
            .iter()
            .enumerate()
            .map(|(k, pk)| pk * k.saturating_sub(c) as f64)
            .sum();
        let seen = Self::stationary(clients - 1, c, think_s, service_s);
        FiniteSource {
            throughput_per_s: x,
            mean_wait_s: lq / x,
            p_wait: seen.iter().skip(c).sum(),
        }
    }

    /// P(k requests at the pool), k = 0..=n, for `n` clients.
    fn stationary(n: u32, c: usize, z: f64, s: f64) -> Vec<f64> {
        // Plain products stay within f64 for the sizes used here (n <= 1000).
        let mut p = vec![1.0f64; n as usize + 1];
        for k in 1..p.len() {
            let birth = (n as usize - (k - 1)) as f64 / z;
            let death = k.min(c) as f64 / s;
            p[k] = p[k - 1] * birth / death;
        }
        let total: f64 = p.iter().sum();
        p.iter().map(|pk| pk / total).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::FiniteSource;

    #[test]
    fn finite_source_matches_hand_cases() {
        // One client never waits: X = 1 / (Z + S).
        let one = FiniteSource::new(1, 1, 2.0, 0.5);
        assert!((one.throughput_per_s - 1.0 / 2.5).abs() < 1e-12);
        assert_eq!((one.mean_wait_s, one.p_wait), (0.0, 0.0));
        // As many servers as clients: nobody waits either.
        let wide = FiniteSource::new(5, 5, 1.0, 1.0);
        assert!((wide.throughput_per_s - 5.0 / 2.0).abs() < 1e-12);
        assert!(wide.mean_wait_s.abs() < 1e-12 && wide.p_wait.abs() < 1e-12);
        // M/M/1//2 with Z = S = 1: p ∝ 1, 2, 2 -> X = 4/5; Lq = 2/5;
        // Wq = 1/2; an arrival sees the 1-client system busy w.p. 1/2.
        let two = FiniteSource::new(2, 1, 1.0, 1.0);
        assert!((two.throughput_per_s - 0.8).abs() < 1e-12);
        assert!((two.mean_wait_s - 0.5).abs() < 1e-12);
        assert!((two.p_wait - 0.5).abs() < 1e-12);
        // The response-time law holds: N = X (Z + Wq + S).
        let m = FiniteSource::new(20, 4, 1.0, 0.25);
        let n = m.throughput_per_s * (1.0 + m.mean_wait_s + 0.25);
        assert!((n - 20.0).abs() < 1e-9, "{m:?}");
    }
}
