//! Criterion benchmark of the topology engine (issue 8): a fleet of 8
//! application instances, each with a fixed pool of 25 per server, a
//! primary and 2 read replicas, reads (80 %) round-robin over the
//! replicas, writes to the primary; 12,000 requests/s with exponential
//! service (mean 5 ms) and three priorities; 1 million requests per
//! iteration, every metric on (per-service, per-server, per-second series,
//! the time series sampled every simulated second).
//! Target: at least 1 million requests per second of wall time.
//!
//! cargo bench --bench fleet

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use pooltune::config::Override;
use pooltune::core::metrics::NullSink;
use pooltune::dist::DurationDist;
use pooltune::rng::SeedTree;
use pooltune::scenario::load_policy;
use pooltune::sim::db::{DatabaseModel, Wire};
use pooltune::sim::fleet::simulate_fleet;
use pooltune::sim::topology::{
    ReplicaSelection, Routing, Server, Service, ServiceWorkload, Topology,
};
use pooltune::sim::{Balance, RunOptions};
use pooltune::time::SimDuration;
use pooltune::trace::synthetic::{Synthetic, SyntheticSpec};

const REQUESTS: u64 = 1_000_000;

fn topology() -> Topology {
    let set: Vec<Override> = ["size.min=25", "size.max=25"]
        .iter()
        .map(|s| Override::parse(s).unwrap())
        .collect();
    let policy = load_policy("fixed-25", &set).unwrap().spec;
    let server = |name: &str| Server {
        name: name.into(),
        model: DatabaseModel {
            connect_latency: DurationDist::Constant {
                value_ns: 2_000_000,
            },
            max_connections: 500,
            usl_sigma: 0.0,
            usl_kappa: 0.0,
        },
        wire: Wire::default(),
        max_connects_per_s: Some(100.0),
        lag: SimDuration::ZERO,
    };
    Topology {
        services: vec![Service {
            name: "api".into(),
            instances: 8,
            policy,
            workload: ServiceWorkload::Share(1.0),
            balance: Balance::RoundRobin,
            start_at: SimDuration::ZERO,
            start_stagger: SimDuration::ZERO,
        }],
        bouncer: None,
        servers: vec![server("primary"), server("replica-1"), server("replica-2")],
        routing: Routing {
            reads_to_replicas: true,
            replica_selection: ReplicaSelection::RoundRobin,
            read_your_writes: false,
            ban_time: SimDuration::from_secs(60),
            read_retries: 1,
        },
        events: Vec::new(),
        faults: Vec::new(),
    }
}

fn fleet(c: &mut Criterion) {
    let topo = topology();
    let load = SyntheticSpec {
        rate_per_s: 12_000.0,
        service: DurationDist::Exponential { mean_ns: 5e6 },
        priority_mix: [0.2, 0.6, 0.2],
        write_fraction: 0.2,
        duration: None,
        max_requests: Some(REQUESTS),
    };
    let opts = RunOptions {
        sample_interval: Some(SimDuration::from_secs(1)),
        ..RunOptions::default()
    };
    let mut group = c.benchmark_group("fleet_8x25_2_replicas");
    group.sample_size(10);
    group.throughput(Throughput::Elements(REQUESTS));
    group.bench_function("1M_requests", |b| {
        let mut seed = 0;
        b.iter(|| {
            seed += 1;
            let seeds = SeedTree::new(seed);
            let mut src = Synthetic::new(&load, &seeds);
            let out = simulate_fleet(
                &topo,
                Some(&mut src),
                Vec::new(),
                &seeds,
                &opts,
                &mut NullSink,
            )
            .expect("run completes");
            let done: u64 = out.services[0]
                .requests
                .classes
                .iter()
                .map(|c| c.completed)
                .sum();
            assert!(done > REQUESTS * 99 / 100);
            out.events
        })
    });
    group.finish();
}

criterion_group!(benches, fleet);
criterion_main!(benches);
