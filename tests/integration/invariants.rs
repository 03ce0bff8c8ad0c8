//! Invariants under random configurations: conservation of requests, pool
//! size within [min, max], and the pool's own consistency checks after every
//! event (the simulator's checker).

use proptest::prelude::*;

use pooltune::core::metrics::Sample;
use pooltune::core::policy::{Fixed, Policy, Threshold, ThresholdParams, UtilizationSignal};
use pooltune::core::pool::PoolConfig;
use pooltune::dist::DurationDist;
use pooltune::rng::SeedTree;
use pooltune::sim::{simulate, DatabaseModel, RunOptions};
use pooltune::summary::{run_summary, PolicyInfo};
use pooltune::time::SimDuration;
use pooltune::trace::synthetic::{Synthetic, SyntheticSpec};

#[derive(Debug, Clone)]
struct Case {
    min: u32,
    max: u32,
    threshold: Option<(f64, f64, u32, u64)>,
    timeouts_ms: [Option<u64>; 3],
    max_waiters: u32,
    rate: f64,
    service_mean_ms: f64,
    mix: [f64; 3],
    connect_ms: u64,
    max_connections: u32,
    usl: (f64, f64),
    seed: u64,
    drain: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1u32..8, 0u32..20),
        prop::option::of((0.3f64..1.0, 0.0f64..0.3, 1u32..4, 100u64..5000)),
        prop::array::uniform3(prop::option::of(1u64..2000)),
        1u32..500,
        (10.0f64..3000.0, 0.1f64..30.0),
        (0.0f64..1.0, 0.0f64..1.0),
        (0u64..20, 1u32..40),
        (0.0f64..0.1, 0.0f64..0.01),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                (min, extra),
                threshold,
                timeouts_ms,
                max_waiters,
                (rate, service_mean_ms),
                (a, b),
                (connect_ms, max_connections),
                usl,
                seed,
                drain,
            )| {
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                Case {
                    min,
                    max: min + extra,
                    threshold,
                    timeouts_ms,
                    max_waiters,
                    rate,
                    service_mean_ms,
                    mix: [lo, hi - lo, 1.0 - hi],
                    connect_ms,
                    max_connections,
                    usl,
                    seed,
                    drain,
                }
            },
        )
}

fn run(c: &Case) {
    let timeout = |t: Option<u64>| {
        t.map(SimDuration::from_millis)
            .unwrap_or(SimDuration::INFINITE)
    };
    let cfg = PoolConfig {
        min: c.min,
        max: c.max,
        initial: c.min,
        acquire_timeout: [
            timeout(c.timeouts_ms[0]),
            timeout(c.timeouts_ms[1]),
            timeout(c.timeouts_ms[2]),
        ],
        max_waiters: c.max_waiters,
        lifecycle: Default::default(),
    };
    let policy: Box<dyn Policy> = match c.threshold {
        Some((up, down, step, interval_ms)) => Box::new(Threshold::new(ThresholdParams {
            interval: SimDuration::from_millis(interval_ms),
            scale_up: up,
            scale_down: down,
            step,
            signal: if step % 2 == 0 {
                UtilizationSignal::WindowMean
            } else {
                UtilizationSignal::Instant
            },
        })),
        None => Box::new(Fixed),
    };
    let db = DatabaseModel {
        connect_latency: DurationDist::Exponential {
            mean_ns: (c.connect_ms as f64 * 1e6).max(1.0),
        },
        max_connections: c.max_connections,
        usl_sigma: c.usl.0,
        usl_kappa: c.usl.1,
    };
    let spec = SyntheticSpec {
        rate_per_s: c.rate,
        service: DurationDist::Exponential {
            mean_ns: c.service_mean_ms * 1e6,
        },
        priority_mix: c.mix,
        write_fraction: 0.0,
        duration: Some(SimDuration::from_secs(20)),
        max_requests: Some(20_000),
    };
    let seeds = SeedTree::new(c.seed);
    let opts = RunOptions {
        check_invariants: true,
        horizon: Some(SimDuration::from_secs(20)),
        drain: c.drain,
        sample_interval: Some(SimDuration::from_millis(500)),
        max_sim_time: SimDuration::from_secs(100_000),
        ..RunOptions::default()
    };
    let mut samples: Vec<Sample> = Vec::new();
    let out = simulate::<_, SimDuration>(
        &cfg,
        policy,
        &db,
        Synthetic::new(&spec, &seeds),
        &seeds,
        &opts,
        &mut samples,
    );
    let out = match out {
        Ok(o) => o,
        // Without timeouts an overloaded pool may legitimately never drain.
        Err(pooltune::error::SimError::MaxSimTime { .. }) => return,
        Err(e) => panic!("{e} in {c:?}"),
    };
    let s = run_summary(
        &out,
        PolicyInfo {
            name: "p".into(),
            hash: String::new(),
            source: String::new(),
            description: String::new(),
            config: serde_json::Value::Null,
        },
        "t",
        "h",
    );
    let r = s.requests;
    assert_eq!(
        r.arrived,
        r.completed + r.timed_out + r.failed + r.rejected + r.in_flight_at_end,
        "conservation in {c:?}"
    );
    if c.drain {
        assert_eq!(
            r.in_flight_at_end, 0,
            "a drained run leaves nothing in flight"
        );
    }
    assert!(s.pool.size_max <= c.max, "size above max in {c:?}");
    if s.pool.connect_failed == 0 {
        assert!(s.pool.size_min >= c.min, "size below min in {c:?}");
    }
    for row in &samples {
        assert!(row.size <= c.max && row.target >= c.min && row.target <= c.max);
    }
    let class_sum: u64 = [
        &s.by_priority.high,
        &s.by_priority.normal,
        &s.by_priority.low,
    ]
    .iter()
    .map(|b| b.requests.arrived)
    .sum();
    assert_eq!(class_sum, r.arrived);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_random_configurations(c in case()) {
        run(&c);
    }
}
