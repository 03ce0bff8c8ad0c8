//! Criterion benchmark of the full engine on the peers' M/M/c model:
//! c = 25, offered load 20 Erlangs, exponential service with mean 10 ms,
//! 5 million requests per iteration, all metrics on (HDR histograms per
//! priority, integrals, a time series sampled every simulated second).
//! Target (issue 2): at least 5 M requests per second of wall time.
//!
//! cargo bench --bench mmc

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use pooltune::core::metrics::NullSink;
use pooltune::core::policy::Fixed;
use pooltune::core::pool::PoolConfig;
use pooltune::dist::DurationDist;
use pooltune::rng::SeedTree;
use pooltune::sim::{simulate, DatabaseModel, RunOptions};
use pooltune::time::SimDuration;
use pooltune::trace::synthetic::{Synthetic, SyntheticSpec};

const REQUESTS: u64 = 5_000_000;

fn mmc(c: &mut Criterion) {
    let cfg = PoolConfig {
        min: 25,
        max: 25,
        initial: 25,
        acquire_timeout: [SimDuration::INFINITE; 3],
        max_waiters: u32::MAX,
    };
    let db = DatabaseModel {
        connect_latency: DurationDist::Constant { value_ns: 0 },
        max_connections: 25,
        usl_sigma: 0.0,
        usl_kappa: 0.0,
    };
    let spec = SyntheticSpec {
        rate_per_s: 2000.0,
        service: DurationDist::Exponential { mean_ns: 10e6 },
        priority_mix: [0.0, 1.0, 0.0],
        write_fraction: 0.0,
        duration: None,
        max_requests: Some(REQUESTS),
    };
    let opts = RunOptions {
        sample_interval: Some(SimDuration::from_secs(1)),
        ..RunOptions::default()
    };
    let mut group = c.benchmark_group("mmc_c25_a20");
    group.sample_size(10);
    group.throughput(Throughput::Elements(REQUESTS));
    group.bench_function("5M_requests_full_metrics", |b| {
        let mut seed = 0;
        b.iter(|| {
            seed += 1;
            let seeds = SeedTree::new(seed);
            let out = simulate(
                &cfg,
                &mut Fixed,
                &db,
                Synthetic::new(&spec, &seeds),
                &seeds,
                &opts,
                &mut NullSink,
            )
            .expect("run completes");
            assert_eq!(out.pool.classes()[1].completed, REQUESTS);
            out.events
        })
    });
    group.finish();
}

criterion_group!(benches, mmc);
criterion_main!(benches);
