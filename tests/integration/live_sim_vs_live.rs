//! Sim vs live: one test body, two drivers (in the spirit of turmoil's
//! simulated and real arms). The same trace (same seed: the very same
//! arrivals, service times and priorities) and the same fixed policy run in
//! the simulator and against a real PostgreSQL, where each request runs
//! `SELECT pg_sleep(service)`; `compare` then checks that they agree.
//!
//! Why they should agree, and how closely: both arms replay one realization,
//! so there is no sampling noise between them. What differs is only what
//! the simulator leaves out: each live query holds its connection about
//! 0.3-0.6 ms longer than its service time (round trip, protocol, pg_sleep's
//! own overshoot, task scheduling; `live.json` measures it), arrivals are
//! issued about 1 ms late (tokio's timer resolution; a near-constant shift),
//! and timeouts fire up to 1 ms late. With a mean service of 100 ms the
//! extra hold time is about 1 % more work per request; at utilization 0.83
//! the mean wait of an M/M/c queue moves by about 1/(1 - rho) = 6 times the
//! relative change in load, i.e. about 6 %. Each tolerance below is
//! `|live - sim| <= atol + rtol |sim|` (see `TOLERANCES`): rtol about three
//! times the expected shift, atol the live system's timing resolution (a
//! couple of ms: a median that sits near zero must not fail on 0.02 ms).
//! A simulator that mis-modelled the queue (one connection more or fewer)
//! fails the same check by far (the test checks that too).

use pooltune::compare::{compare_runs, RunComparison};
use pooltune::core::metrics::NullSink;
use pooltune::live::{self, LiveOptions, Target};
use pooltune::scenario::{self, LoadedPolicy, LoadedWorkload};
use pooltune::summary::RunSummary;

use crate::live_run::{assert_conserved, assert_no_backends_left, load};
use crate::pg_harness::PgCluster;

/// 40 s at 33 requests/s (about 1,300 requests), exponential service with
/// mean 100 ms: offered load 3.3 Erlangs on a fixed pool of 4 (utilization
/// 0.83: queueing happens, p_wait about 0.65), three priorities, and a short
/// low-priority timeout so that some requests time out.
const WORKLOAD: &str = r#"
name = "sim-vs-live"
duration = "40s"
[arrivals]
kind = "poisson"
rate_per_s = 33.0
[service]
kind = "exponential"
mean = "100ms"
[priority_mix]
high = 0.2
normal = 0.5
low = 0.3
[database]
connect_latency = { kind = "constant", value = "5ms" }
[run]
sample_interval = "1s"
"#;

const POLICY: &str = r#"
name = "fixed-4"
[size]
min = 4
max = 4
[resize]
kind = "fixed"
[acquire_timeout]
high = "3s"
normal = "1.5s"
low = "250ms"
"#;

const SEED: u64 = 2024;

/// One arm of the experiment.
enum Arm<'a> {
    Sim,
    Live(&'a PgCluster),
}

/// The test body's one entry point: the same workload, policy and seed,
/// whichever driver runs them.
fn run(arm: &Arm, w: &LoadedWorkload, p: &LoadedPolicy) -> RunSummary {
    match arm {
        Arm::Sim => scenario::run_one(w, p, SEED, &mut NullSink).unwrap(),
        Arm::Live(pg) => {
            let target = Target::from_env(Some(&pg.url())).unwrap();
            let rt = live::runtime().unwrap();
            let out = rt
                .block_on(live::run_scenario(
                    &target,
                    w,
                    p,
                    SEED,
                    &LiveOptions::default(),
                    &mut NullSink,
                    Box::pin(std::future::pending()),
                ))
                .unwrap();
            eprintln!(
                "live overheads: hold {:.3} ms mean, round trip {:.3} ms mean, arrival lag {:.3} ms mean",
                out.report.hold_overhead_ms.mean,
                out.report.round_trip_overhead_ms.mean,
                out.report.arrival_lag_ms.mean
            );
            out.summary.runs.into_iter().next().unwrap()
        }
    }
}

/// (metric, rtol, atol): |live - sim| <= atol + rtol |sim|. Waits in ms,
/// fractions absolute (0.02 = 2 percentage points).
const TOLERANCES: &[(&str, f64, f64)] = &[
    // The same trace: exactly the same requests.
    ("requests.arrived", 0.0, 0.0),
    ("throughput_per_s", 0.02, 0.0),
    ("p_wait", 0.0, 0.05),
    ("p_timeout", 0.0, 0.02),
    ("acquire_wait_ms.mean", 0.20, 2.0),
    ("acquire_wait_ms.p50", 0.20, 2.0),
    ("acquire_wait_ms.p90", 0.20, 2.0),
    ("acquire_wait_ms.p99", 0.20, 2.0),
    ("by_priority.high.acquire_wait_ms.mean", 0.25, 2.0),
    ("by_priority.normal.acquire_wait_ms.mean", 0.25, 2.0),
    ("by_priority.low.acquire_wait_ms.mean", 0.25, 2.0),
    ("by_priority.low.p_timeout", 0.0, 0.04),
    // The live query holds its connection ~1 ms longer than its service.
    ("query_ms.mean", 0.03, 0.0),
    ("pool.size_mean", 0.01, 0.0),
    ("pool.utilization_mean", 0.05, 0.0),
];

/// Checks every tolerance; returns the violations.
fn violations(c: &RunComparison) -> Vec<String> {
    let mut bad = Vec::new();
    for &(metric, rtol, atol) in TOLERANCES {
        let m = c
            .get(metric)
            .unwrap_or_else(|| panic!("no metric {metric}"));
        let allowed = atol + rtol * m.a.abs();
        if m.diff.abs() > allowed {
            bad.push(format!(
                "{metric}: sim {} live {}: |diff| {:.4} > {allowed:.4} (= {atol} + {rtol} x |sim|)",
                m.a,
                m.b,
                m.diff.abs()
            ));
        }
    }
    // Timeouts per priority: counts, within max(5, 25 %) of the simulated.
    for p in ["high", "normal", "low"] {
        let m = c
            .get(&format!("by_priority.{p}.requests.timed_out"))
            .unwrap();
        let allowed = (0.25 * m.a).max(5.0);
        if m.diff.abs() > allowed {
            bad.push(format!(
                "{p} timeouts: sim {} live {} (allowed +-{allowed})",
                m.a, m.b
            ));
        }
    }
    bad
}

#[test]
fn sim_and_live_agree_on_the_same_trace_and_policy() {
    let Some(pg) = PgCluster::start("sim_and_live_agree") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let (w, p) = load(dir.path(), WORKLOAD, POLICY);
    let sim = run(&Arm::Sim, &w, &p);
    let live = run(&Arm::Live(&pg), &w, &p);
    assert_conserved(&sim);
    assert_conserved(&live);
    assert_no_backends_left(&pg);
    let c = compare_runs(&sim, &live);
    let text = pooltune::compare::table(&pooltune::compare::Comparison {
        schema: pooltune::compare::COMPARE_SCHEMA.into(),
        a: side("sim"),
        b: side("live"),
        same_trace: true,
        runs: vec![c.clone()],
        unmatched: vec![],
    });
    eprintln!("{text}");
    // The workload really queues and times out (otherwise agreement is cheap).
    assert!(sim.p_wait > 0.3, "p_wait {}", sim.p_wait);
    assert!(
        sim.by_priority.low.requests.timed_out >= 20,
        "{:?}",
        sim.by_priority.low.requests
    );
    let bad = violations(&c);
    assert!(
        bad.is_empty(),
        "sim and live disagree:\n{}\n{text}",
        bad.join("\n")
    );
    // The same check rejects a simulator that is wrong: one connection more
    // or less, or no priorities, moves the metrics well outside the bounds.
    for (what, policy) in [
        ("a connection fewer", POLICY.replace("= 4", "= 3")),
        ("a connection more", POLICY.replace("= 4", "= 5")),
    ] {
        let wrong = scenario::load_policy(
            &crate::live_run::write(dir.path(), "wrong.toml", &policy),
            &[],
        )
        .unwrap();
        let wrong_sim = run(&Arm::Sim, &w, &wrong);
        let bad = violations(&compare_runs(&wrong_sim, &live));
        assert!(!bad.is_empty(), "a simulator with {what} would pass");
    }
}

fn side(name: &str) -> pooltune::compare::Side {
    pooltune::compare::Side {
        path: name.into(),
        scenario: "sim-vs-live".into(),
        trace_hash: String::new(),
        seed: SEED,
    }
}
