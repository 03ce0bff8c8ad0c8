//! The world models against exact oracles: the USL processor-sharing
//! database (case MU01 of ../shared/validation/cases.json) and the waiter
//! cap as a finite-capacity M/M/c/K queue (case BK02). Five seeds each; the
//! analytic value must lie in the 95 % Student-t interval of the seed means.

use rayon::prelude::*;
use statrs::distribution::{ContinuousCDF, StudentsT};

use pooltune::core::metrics::NullSink;
use pooltune::sim::queueing::QueueingModel;
use pooltune::sim::RunOptions;

const SEEDS: [u64; 6] = [101, 102, 103, 104, 105, 106];

/// (mean, 95 % half-width) across replications.
fn interval(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let t = StudentsT::new(0.0, 1.0, n - 1.0)
        .unwrap()
        .inverse_cdf(0.975);
    (mean, t * (var / n).sqrt())
}

fn check(case: &str, what: &str, xs: &[f64], expected: f64) {
    let (mean, half) = interval(xs);
    eprintln!("{case} {what}: expected {expected:.6}, simulated {mean:.6} ± {half:.6}");
    assert!(
        (mean - expected).abs() <= half,
        "{case} {what}: expected {expected}, simulated {mean} ± {half} (95 %)"
    );
}

struct Stats {
    p_wait_admitted: f64,
    p_block: f64,
    wq_admitted: f64,
    w: f64,
}

fn run(c: u32, lam: f64, max_waiters: u32, sigma: f64, kappa: f64, n: u64, seed: u64) -> Stats {
    // Time unit: 1 s = one mean service time.
    let model = QueueingModel {
        max_waiters,
        usl_sigma: sigma,
        usl_kappa: kappa,
        ..QueueingModel::mmc(c, lam, 1.0, n)
    };
    let opts = RunOptions {
        sample_interval: None,
        ..RunOptions::default()
    };
    let out = model.run(seed, &opts, &mut NullSink).unwrap();
    let m = &out.pool.classes()[1];
    let admitted = (m.arrived - m.rejected) as f64;
    Stats {
        p_wait_admitted: (m.found_busy - m.rejected) as f64 / m.arrived as f64,
        p_block: m.rejected as f64 / m.arrived as f64,
        wq_admitted: m.wait.mean_ns() / 1e9,
        w: m.response.sum_ns() as f64 / 1e9 / admitted,
    }
}

#[test]
fn usl_processor_sharing_matches_the_exact_birth_death_chain() {
    // MU01: M/M/10, lam = 7, USL sigma = 0.02, kappa = 0.001: every running
    // query slows down as more run (X(10) = 7.874 instead of 10).
    let runs: Vec<Stats> = SEEDS
        .par_iter()
        .map(|&s| run(10, 7.0, u32::MAX, 0.02, 0.001, 1_500_000, s))
        .collect();
    let col = |f: fn(&Stats) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    check(
        "MU01",
        "P(wait)",
        &col(|s| s.p_wait_admitted),
        0.600_877_160_874_923_7,
    );
    check(
        "MU01",
        "Wq",
        &col(|s| s.wq_admitted),
        0.687_490_084_965_002_9,
    );
    check("MU01", "W", &col(|s| s.w), 1.924_342_110_014_123_4);
    // Teeth: without contention (plain M/M/10, lam = 7) P(wait) is 0.2217,
    // far outside the interval.
    let (mean, half) = interval(&col(|s| s.p_wait_admitted));
    assert!((mean - 0.2217).abs() > 10.0 * half);
}

#[test]
fn waiter_cap_matches_the_finite_capacity_queue() {
    // BK02: M/M/5/10 (K = 5 in service + 5 waiting), lam = 2.5.
    let runs: Vec<Stats> = SEEDS
        .par_iter()
        .map(|&s| run(5, 2.5, 5, 0.0, 0.0, 1_500_000, s))
        .collect();
    let col = |f: fn(&Stats) -> f64| runs.iter().map(f).collect::<Vec<_>>();
    check(
        "BK02",
        "P(block)",
        &col(|s| s.p_block),
        0.002_041_209_571_803_220_7,
    );
    check(
        "BK02",
        "P(wait, admitted)",
        &col(|s| s.p_wait_admitted),
        0.126_554_993_451_799_69,
    );
    check(
        "BK02",
        "Wq (admitted)",
        &col(|s| s.wq_admitted),
        0.046_634_769_575_149_07,
    );
}

/// The M/M/c-USL birth-death chain (the model `mmc_usl` of
/// ../shared/validation/oracles.py): in state n, min(n, c) queries run,
/// each at rate mu / (1 + sigma (k - 1) + kappa k (k - 1)). Returns
/// (throughput, mean response time W = L / lambda), mu = 1.
fn mmc_usl_oracle(c: u32, lam: f64, sigma: f64, kappa: f64) -> (f64, f64) {
    let death = |n: u32| {
        let k = n.min(c) as f64;
        k / (1.0 + sigma * (k - 1.0).max(0.0) + kappa * k * (k - 1.0).max(0.0))
    };
    // Unnormalized p(n) = prod lam / death(i); the tail decays
    // geometrically once n > c, so stop when it no longer matters.
    let (mut p, mut total, mut l, mut n) = (1.0f64, 1.0f64, 0.0f64, 0u32);
    loop {
        n += 1;
        p *= lam / death(n);
        total += p;
        l += n as f64 * p;
        if n > c && p < 1e-18 * total {
            break;
        }
    }
    let l = l / total;
    (lam, l / lam)
}

#[test]
fn usl_coherency_alone_matches_the_mmc_usl_oracle() {
    // issue 4: sigma = 0, kappa = 0.0025, a fixed pool of 25, lam = 9 (one
    // mean service time = 1 s). X(25) = 25 / (1 + 0.0025 * 25 * 24) = 10,
    // so the pool runs at 90 % of its contended capacity.
    let (c, lam, sigma, kappa) = (25, 9.0, 0.0, 0.0025);
    let (x, w) = mmc_usl_oracle(c, lam, sigma, kappa);
    // Cross-check the Rust chain against the shared oracle when present.
    let oracle =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/validation/oracles.py");
    if oracle.is_file() {
        let out = std::process::Command::new("python3")
            .arg(&oracle)
            .args(["mmc_usl", "--c", "25", "--lam", "9", "--sigma", "0"])
            .args(["--kappa", "0.0025", "--t", "0.5"])
            .output();
        if let Some(out) = out.ok().filter(|o| o.status.success()) {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let py_w = v["W_admitted"].as_f64().unwrap();
            assert!((py_w - w).abs() < 1e-9 * w, "oracle {py_w} vs chain {w}");
            assert!((v["throughput"].as_f64().unwrap() - x).abs() < 1e-9);
        }
    }
    let n = 1_000_000;
    let runs: Vec<(f64, f64)> = SEEDS
        .par_iter()
        .map(|&seed| {
            let model = QueueingModel {
                usl_sigma: sigma,
                usl_kappa: kappa,
                ..QueueingModel::mmc(c, lam, 1.0, n)
            };
            let opts = RunOptions {
                sample_interval: None,
                ..RunOptions::default()
            };
            let out = model.run(seed, &opts, &mut NullSink).unwrap();
            let m = &out.pool.classes()[1];
            let throughput = m.completed as f64 / out.end.as_secs_f64();
            (
                throughput,
                m.response.sum_ns() as f64 / 1e9 / m.completed as f64,
            )
        })
        .collect();
    let xs: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let ws: Vec<f64> = runs.iter().map(|r| r.1).collect();
    check("MU-issue4", "throughput", &xs, x);
    check("MU-issue4", "W", &ws, w);
    // Teeth: without contention (plain M/M/25 at lam = 9) W is 1.0000.
    let (mean, half) = interval(&ws);
    assert!((mean - 1.0).abs() > 10.0 * half);
}
