//! Criterion benchmark of the full engine on the peers' M/M/c model:
//! c = 25, offered load 20 Erlangs, exponential service with mean 10 ms,
//! 5 million requests per iteration, all metrics on (HDR histograms per
//! priority, integrals, a time series sampled every simulated second).
//! Target (issue 2): at least 5 M requests per second of wall time.
//!
//! cargo bench --bench mmc

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use pooltune::core::metrics::NullSink;
use pooltune::sim::queueing::QueueingModel;
use pooltune::sim::RunOptions;
use pooltune::time::SimDuration;

const REQUESTS: u64 = 5_000_000;

fn mmc(c: &mut Criterion) {
    let model = QueueingModel::mmc(25, 2000.0, 0.010, REQUESTS);
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
            let out = model
                .run(seed, &opts, &mut NullSink)
                .expect("run completes");
            assert_eq!(out.pool.classes()[1].completed, REQUESTS);
            out.events
        })
    });
    group.finish();
}

criterion_group!(benches, mmc);
criterion_main!(benches);
