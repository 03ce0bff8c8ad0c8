//! Exact vs queueing theory: the simulator against closed-form results.
//!
//! * M/M/c (Erlang C): fixed pool, Poisson arrivals, exponential service, one
//!   priority, no timeout: `p_wait` and the mean acquire wait.
//! * M/M/c+D: the same with a constant acquire timeout D: `p_timeout`,
//!   `p_wait` and the mean wait over all arrivals (a timed-out request counts
//!   its wait, D).
//! * Non-preemptive priority M/M/c (Cobham): 2-3 priorities, no timeout: the
//!   mean wait of each class.
//!
//! The formulas are implemented below and checked first against the expected
//! values of `shared/validation/cases.json` (copied here as constants, case id
//! in a comment; nothing outside this crate is read at run time).
//!
//! Statistics. Every case runs with `SEEDS` independent seeds (fixed, so the
//! test is reproducible). Each seed gives one estimate per metric; the test
//! takes their mean and a Student-t confidence interval with `SEEDS - 1`
//! degrees of freedom. The plain 95 % interval is printed for every
//! comparison. What is asserted is the Bonferroni-corrected interval of each
//! test's family of m comparisons (level 1 - 0.05/m each), so that a correct
//! simulator fails a test with probability at most 5 %: with m = 18-32
//! comparisons and plain 95 % intervals, about one comparison per test would
//! fall outside by chance alone (a correct simulator would fail most runs).
//! The Bonferroni interval is the 95 % interval widened by the ratio of the
//! t quantiles only (1.8x to 2x here: 10 seeds, m = 18 to 32), never by a
//! fudge factor, and `deliberately_wrong_values_are_rejected` shows that it
//! still rejects nearby wrong answers (Erlang C with c - 1 or c + 1 servers,
//! FCFS instead of priority, no timeout instead of M/M/c+D, timed-out waits
//! counted as 0 instead of D).
//!
//! Units: the mean service time is 10 ms (mu = 100/s), so times are resolved
//! to 1 ns in 10^7 and the longest run stays far below `max_sim_time`.
//! Results below are in mean-service-time units, as in cases.json.
//!
//! Run in release mode: `cargo test --release --test integration validation
//! -- --nocapture` prints one table per family.

use std::sync::OnceLock;

use rayon::prelude::*;
use statrs::distribution::{ContinuousCDF, StudentsT};

use pooltune::core::metrics::NullSink;
use pooltune::core::policy::Fixed;
use pooltune::core::pool::PoolConfig;
use pooltune::dist::DurationDist;
use pooltune::rng::SeedTree;
use pooltune::sim::{simulate, DatabaseModel, RunOptions};
use pooltune::summary::{run_summary, PolicyInfo};
use pooltune::time::SimDuration;
use pooltune::trace::synthetic::{Synthetic, SyntheticSpec};

// ---------------------------------------------------------------------------
// Analytic formulas (README section 1 of shared/validation).
// ---------------------------------------------------------------------------

/// Erlang B by the stable recursion B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1)).
fn erlang_b(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    b
}

/// Erlang C: P(wait > 0) in M/M/c with offered load a < c.
fn erlang_c(c: u32, a: f64) -> f64 {
    assert!(a < c as f64, "Erlang C needs a < c (a = {a}, c = {c})");
    let b = erlang_b(c, a);
    let c = c as f64;
    c * b / (c - a * (1.0 - b))
}

/// M/M/c: (P(wait > 0), mean wait) with service rate mu.
fn mmc(c: u32, lam: f64, mu: f64) -> (f64, f64) {
    let p = erlang_c(c, lam / mu);
    (p, p / (c as f64 * mu - lam))
}

/// M/M/c+D, constant patience D (Baccelli-Hebuterne; README 1b).
#[derive(Debug, Clone, Copy)]
struct Mmcd {
    p_wait: f64,
    p_abandon: f64,
    /// Mean wait over all arrivals (abandoners count D).
    wq_all: f64,
}

fn mmcd(c: u32, lam: f64, mu: f64, d: f64) -> Mmcd {
    assert!(c >= 1);
    let cmu = c as f64 * mu;
    let delta = lam - cmu;
    let a = lam / mu;
    // E = sum_{k<c} (a^k/k!) / (a^{c-1}/(c-1)!) = 1 / B(c-1, a).
    let e = 1.0 / erlang_b(c - 1, a);
    let edd = (delta * d).exp();
    let small = (delta * d).abs() < 1e-6;
    let j = if small {
        d + 1.0 / cmu
    } else {
        (edd - 1.0) / delta + edd / cmu
    };
    // [e^{dD}(dD - 1) + 1] / d^2, which tends to D^2/2 as d -> 0.
    let w_int = if small {
        d * d / 2.0 + delta * d * d * d / 3.0
    } else {
        (edd * (delta * d - 1.0) + 1.0) / (delta * delta)
    };
    let pi = 1.0 / (e + lam * j);
    Mmcd {
        p_wait: lam * j / (e + lam * j),
        p_abandon: lam * pi * edd / cmu,
        wq_all: lam * pi * (w_int + d * edd / cmu),
    }
}

/// Non-preemptive priority M/M/c, common mu (Cobham / Davis; README 1c):
/// the mean wait of each class, class 0 served first.
fn cobham(c: u32, mu: f64, lams: &[f64]) -> Vec<f64> {
    let lam: f64 = lams.iter().sum();
    let cmu = c as f64 * mu;
    let w0 = erlang_c(c, lam / mu) / cmu;
    let mut s_prev = 0.0;
    lams.iter()
        .map(|l| {
            let s = s_prev + l / cmu;
            let w = w0 / ((1.0 - s_prev) * (1.0 - s));
            s_prev = s;
            w
        })
        .collect()
}

fn assert_close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(
        err <= rel,
        "{what}: formula gives {got}, expected {want} (relative error {err:e})"
    );
}

/// (id, c, lam, mu, D, P_wait, P_abandon, Wq_all) of a cases.json "mmcd" case.
type MmcdCase = (&'static str, u32, f64, f64, f64, f64, f64, f64);

#[test]
fn formulas_reproduce_the_expected_values_of_cases_json() {
    const R: f64 = 1e-12;
    // (id, c, lam, mu, P_wait, Wq) from cases.json, model "mmc".
    let mmc_cases: [(&str, u32, f64, f64, f64, f64); 6] = [
        ("EC01", 1, 0.1, 1.0, 0.1, 0.11111111111111112),
        ("EC02", 1, 0.9, 1.0, 0.9, 9.000000000000002),
        ("EC03", 2, 1.0, 1.0, 0.3333333333333333, 0.3333333333333333),
        ("EC04", 5, 4.0, 1.0, 0.5541125541125541, 0.5541125541125541),
        (
            "EC05",
            10,
            6.0,
            1.0,
            0.1012992426874175,
            0.025324810671854374,
        ),
        (
            "EC09",
            10,
            1800.0,
            200.0,
            0.668731524107697,
            0.003343657620538485,
        ),
    ];
    for (id, c, lam, mu, p, wq) in mmc_cases {
        let (gp, gw) = mmc(c, lam, mu);
        assert_close(&format!("{id} P_wait"), gp, p, R);
        assert_close(&format!("{id} Wq"), gw, wq, R);
    }
    // Published cross-checks of cases.json: Erlang C c=3, a=2 is 4/9 (hand
    // calculation); Erlang B of 15 lines at 8.108 E is 1 % (erlang.com);
    // M/M/5 with lam = 3.7, mu = 1.33 has Wq = 0.0629 (studylib OPRE sheet,
    // oracles.py 0.06291279414417207); BK01: B(2, 1) = 0.2.
    assert_close("Erlang C(3, 2)", erlang_c(3, 2.0), 4.0 / 9.0, R);
    assert_close(
        "Erlang B(15, 8.108)",
        erlang_b(15, 8.108),
        0.009999631942598775,
        1e-10,
    );
    assert_close("M/M/5 Wq", mmc(5, 3.7, 1.33).1, 0.06291279414417207, 1e-10);
    assert_close("BK01 Erlang B(2, 1)", erlang_b(2, 1.0), 0.2, R);

    // From cases.json, model "mmcd".
    let mmcd_cases: [MmcdCase; 4] = [
        (
            "CD01",
            1,
            0.9,
            1.0,
            0.1,
            0.4951015628698751,
            0.44988715236680543,
            0.04724566790057187,
        ),
        (
            "CD02",
            2,
            1.0,
            1.0,
            1.0,
            0.2897879301021261,
            0.06531810484681079,
            0.15915172040850456,
        ),
        (
            "CD03",
            5,
            4.9,
            1.0,
            1.0,
            0.684181545986367,
            0.10931956983376584,
            0.3919608396714871,
        ),
        (
            "CD04",
            10,
            9.5,
            1.0,
            2.0,
            0.7548533854569995,
            0.021344261228845245,
            0.6559363217601893,
        ),
    ];
    for (id, c, lam, mu, d, p, pab, wq) in mmcd_cases {
        let g = mmcd(c, lam, mu, d);
        assert_close(&format!("{id} P_wait"), g.p_wait, p, 1e-10);
        assert_close(&format!("{id} P_abandon"), g.p_abandon, pab, 1e-10);
        assert_close(&format!("{id} Wq_all"), g.wq_all, wq, 1e-10);
    }
    // README 1b: for c = 1, P(ab) = (1-rho) rho e^{-(mu-lam)D} / (1 - rho^2 e^{-(mu-lam)D}).
    let (lam, d): (f64, f64) = (0.9, 0.1);
    let x = (-(1.0 - lam) * d).exp();
    assert_close(
        "c=1 closed form",
        mmcd(1, lam, 1.0, d).p_abandon,
        (1.0 - lam) * lam * x / (1.0 - lam * lam * x),
        R,
    );
    // Limits: D -> infinity gives Erlang C, D -> 0 gives Erlang B (loss).
    let big = mmcd(10, 8.0, 1.0, 200.0);
    let (p, w) = mmc(10, 8.0, 1.0);
    assert_close("D->inf P_wait", big.p_wait, p, 1e-9);
    assert_close("D->inf Wq", big.wq_all, w, 1e-9);
    assert!(big.p_abandon < 1e-12);
    assert_close(
        "D->0 P_abandon",
        mmcd(10, 8.0, 1.0, 1e-9).p_abandon,
        erlang_b(10, 8.0),
        1e-6,
    );
    // delta = 0 (lam = c mu) takes the limit branch; it must join the general one.
    let at = mmcd(4, 4.0, 1.0, 1.5);
    let near = mmcd(4, 4.0 + 1e-5, 1.0, 1.5);
    assert_close("delta=0 P_abandon", at.p_abandon, near.p_abandon, 1e-4);
    assert_close("delta=0 Wq_all", at.wq_all, near.wq_all, 1e-4);

    // (id, c, lams, [Wq per class]) from cases.json, model "priority" (mu = 1).
    let pr_cases: [(&str, u32, &[f64], &[f64]); 3] = [
        (
            "PR01",
            1,
            &[0.3, 0.5],
            &[1.1428571428571428, 5.7142857142857135],
        ),
        (
            "PR02",
            5,
            &[1.0, 1.5, 2.0],
            &[0.1906233051832339, 0.3812466103664678, 3.0499728829317423],
        ),
        (
            "PR03",
            10,
            &[2.0, 3.0],
            &[0.004513169894790023, 0.009026339789580047],
        ),
    ];
    for (id, c, lams, wqs) in pr_cases {
        let g = cobham(c, 1.0, lams);
        for (k, (got, want)) in g.iter().zip(wqs).enumerate() {
            assert_close(&format!("{id} class {} Wq", k + 1), *got, *want, R);
        }
        // Work conservation: the lambda-weighted mean is FCFS Erlang C.
        let lam: f64 = lams.iter().sum();
        let mean = g.iter().zip(lams.iter()).map(|(w, l)| w * l).sum::<f64>() / lam;
        assert_close(
            &format!("{id} conservation"),
            mean,
            mmc(c, lam, 1.0).1,
            1e-12,
        );
    }
}

// ---------------------------------------------------------------------------
// Running the simulator.
// ---------------------------------------------------------------------------

/// Mean service time, the time unit of every case (mu = 1 per unit).
const UNIT_NS: f64 = 10e6;
/// Independent seeds per case.
const SEEDS: usize = 10;

/// One simulated system, in units of the mean service time (mu = 1).
#[derive(Debug, Clone, Copy)]
struct Setup {
    c: u32,
    /// Arrival rate per priority (high, normal, low).
    lam: [f64; 3],
    /// Constant acquire timeout D (every priority); `None`: wait forever.
    timeout: Option<f64>,
    /// Arrivals per seed.
    n: u64,
}

impl Setup {
    fn single(c: u32, lam: f64, timeout: Option<f64>, n: u64) -> Setup {
        Setup {
            c,
            lam: [0.0, lam, 0.0],
            timeout,
            n,
        }
    }
}

/// What one seed's run measured.
#[derive(Debug, Clone, Copy, Default)]
struct Run {
    arrived: [u64; 3],
    found_busy: [u64; 3],
    timed_out: [u64; 3],
    /// Sum of acquire waits (served and timed out), in units.
    wait_sum: [f64; 3],
}

impl Run {
    fn total(x: &[u64; 3]) -> f64 {
        x.iter().sum::<u64>() as f64
    }
    fn p_wait(&self) -> f64 {
        Self::total(&self.found_busy) / Self::total(&self.arrived)
    }
    fn p_timeout(&self) -> f64 {
        Self::total(&self.timed_out) / Self::total(&self.arrived)
    }
    fn wait_all(&self) -> f64 {
        self.wait_sum.iter().sum::<f64>() / Self::total(&self.arrived)
    }
    fn class_wait(&self, p: usize) -> f64 {
        self.wait_sum[p] / self.arrived[p] as f64
    }
    fn class_p_wait(&self, p: usize) -> f64 {
        self.found_busy[p] as f64 / self.arrived[p] as f64
    }
}

fn simulate_once(s: &Setup, seed: u64) -> Run {
    let total: f64 = s.lam.iter().sum();
    let timeout = match s.timeout {
        Some(d) => SimDuration::from_nanos_f64(d * UNIT_NS),
        None => SimDuration::INFINITE,
    };
    let pool = PoolConfig {
        min: s.c,
        max: s.c,
        initial: s.c,
        acquire_timeout: [timeout; 3],
        max_waiters: u32::MAX,
        lifecycle: Default::default(),
    };
    let db = DatabaseModel {
        connect_latency: DurationDist::Constant { value_ns: 0 },
        max_connections: 10_000,
        usl_sigma: 0.0,
        usl_kappa: 0.0,
    };
    let seeds = SeedTree::new(seed);
    let spec = SyntheticSpec {
        rate_per_s: total * 1e9 / UNIT_NS,
        service: DurationDist::Exponential { mean_ns: UNIT_NS },
        priority_mix: [s.lam[0] / total, s.lam[1] / total, s.lam[2] / total],
        write_fraction: 0.0,
        duration: None,
        max_requests: Some(s.n),
    };
    let source = Synthetic::new(&spec, &seeds);
    let opts = RunOptions {
        sample_interval: None,
        ..Default::default()
    };
    let out = simulate::<_, SimDuration>(
        &pool,
        Box::new(Fixed),
        &db,
        source,
        &seeds,
        &opts,
        &mut NullSink,
    )
    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let classes = out.pool.classes();
    // Exact identities of a drained run that started empty: the time
    // integral of the queue length is the sum of all waits, and that of the
    // active connections the sum of all query times.
    let ig = out.pool.integrals();
    assert_eq!(
        ig.waiting,
        classes.iter().map(|m| m.wait.sum_ns()).sum::<u128>(),
        "seed {seed}"
    );
    assert_eq!(
        ig.active,
        classes.iter().map(|m| m.query.sum_ns()).sum::<u128>(),
        "seed {seed}"
    );
    // The summary reports the same figures this test estimates from.
    let info = PolicyInfo {
        name: "fixed".into(),
        hash: String::new(),
        source: "validation test".into(),
        description: String::new(),
        config: serde_json::Value::Null,
    };
    let summary = run_summary(&out, info, "validation", "");
    let found_busy: u64 = classes.iter().map(|m| m.found_busy).sum();
    let timed_out: u64 = classes.iter().map(|m| m.timed_out).sum();
    let wait_ns: u128 = classes.iter().map(|m| m.wait.sum_ns()).sum();
    assert_eq!(summary.requests.arrived, s.n);
    assert_eq!(summary.requests.in_flight_at_end, 0);
    assert_eq!(summary.p_wait, found_busy as f64 / s.n as f64);
    assert_eq!(summary.p_timeout, timed_out as f64 / s.n as f64);
    assert_close(
        "summary mean wait",
        summary.acquire_wait_ms.mean,
        wait_ns as f64 / s.n as f64 / 1e6,
        1e-9,
    );
    let mut r = Run::default();
    for (p, m) in classes.iter().enumerate() {
        // Drained run: every arrival was served or timed out, nothing else.
        assert_eq!(
            m.completed + m.timed_out,
            m.arrived,
            "seed {seed} class {p}"
        );
        assert_eq!(m.wait.count(), m.arrived, "seed {seed} class {p}");
        assert_eq!(m.rejected + m.failed, 0);
        if s.timeout.is_none() {
            assert_eq!(m.timed_out, 0);
        }
        r.arrived[p] = m.arrived;
        r.found_busy[p] = m.found_busy;
        r.timed_out[p] = m.timed_out;
        r.wait_sum[p] = m.wait.sum_ns() as f64 / UNIT_NS;
    }
    assert_eq!(r.arrived.iter().sum::<u64>(), s.n);
    r
}

/// Runs every case with `SEEDS` seeds, all in parallel. Seeds differ between
/// cases too (case index in the seed), so cases are independent.
fn run_cases(family: u64, setups: &[Setup]) -> Vec<Vec<Run>> {
    let jobs: Vec<(usize, usize)> = (0..setups.len())
        .flat_map(|i| (0..SEEDS).map(move |k| (i, k)))
        .collect();
    let runs: Vec<Run> = jobs
        .par_iter()
        .map(|&(i, k)| {
            simulate_once(
                &setups[i],
                family * 1_000_000 + i as u64 * 1000 + k as u64 + 1,
            )
        })
        .collect();
    runs.chunks(SEEDS).map(|c| c.to_vec()).collect()
}

// ---------------------------------------------------------------------------
// Statistics.
// ---------------------------------------------------------------------------

/// Mean of per-seed estimates with its standard error.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    mean: f64,
    se: f64,
    k: usize,
}

impl Estimate {
    fn of(xs: &[f64]) -> Estimate {
        let k = xs.len();
        assert!(k >= 5, "at least 5 seeds");
        let mean = xs.iter().sum::<f64>() / k as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64;
        Estimate {
            mean,
            se: (var / k as f64).sqrt(),
            k,
        }
    }
    /// Two-sided Student-t quantile for confidence `1 - alpha`.
    fn t(&self, alpha: f64) -> f64 {
        StudentsT::new(0.0, 1.0, (self.k - 1) as f64)
            .expect("valid t distribution")
            .inverse_cdf(1.0 - alpha / 2.0)
    }
    fn half_width(&self, alpha: f64) -> f64 {
        self.t(alpha) * self.se
    }
    /// Is `value` inside the `1 - alpha` confidence interval?
    fn contains(&self, value: f64, alpha: f64) -> bool {
        (self.mean - value).abs() <= self.half_width(alpha)
    }
    /// (estimate - value) / standard error: a t statistic with k-1 dof.
    fn z(&self, value: f64) -> f64 {
        (self.mean - value) / self.se
    }
}

/// One comparison: a metric of one case against its analytic value.
struct Row {
    case: String,
    metric: String,
    expected: f64,
    est: Estimate,
}

/// Prints a family's table and asserts that each analytic value lies in its
/// Bonferroni-corrected interval (family-wise level 95 %).
fn check_family(title: &str, rows: &[Row]) {
    use std::fmt::Write;
    let m = rows.len();
    let alpha = 0.05 / m as f64;
    // One eprint per table, so tables of tests running in parallel do not interleave.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {title}: {m} comparisons, {SEEDS} seeds each; hw95 = 95% half-width, hwB = Bonferroni (level 1-0.05/{m}) half-width, z = (estimate-expected)/se"
    );
    let _ = writeln!(
        out,
        "{:<18} {:<14} {:>12} {:>12} {:>10} {:>10} {:>7}  verdict",
        "case", "metric", "expected", "estimate", "hw95", "hwB", "z"
    );
    let mut outside95 = 0;
    let mut failures = Vec::new();
    for r in rows {
        let in95 = r.est.contains(r.expected, 0.05);
        let in_b = r.est.contains(r.expected, alpha);
        outside95 += usize::from(!in95);
        let verdict = match (in95, in_b) {
            (true, _) => "ok",
            (false, true) => "outside 95% only",
            (false, false) => "FAIL",
        };
        let _ = writeln!(
            out,
            "{:<18} {:<14} {:>12.6} {:>12.6} {:>10.6} {:>10.6} {:>7.2}  {verdict}",
            r.case,
            r.metric,
            r.expected,
            r.est.mean,
            r.est.half_width(0.05),
            r.est.half_width(alpha),
            r.est.z(r.expected),
        );
        if !in_b {
            failures.push(format!(
                "{} {}: expected {} but estimate {} +- {} (z = {:.2})",
                r.case,
                r.metric,
                r.expected,
                r.est.mean,
                r.est.half_width(alpha),
                r.est.z(r.expected)
            ));
        }
    }
    let _ = writeln!(
        out,
        "-- {title}: {outside95} of {m} outside the plain 95% interval (about {:.1} expected by chance)",
        m as f64 * 0.05
    );
    eprint!("{out}");
    assert!(
        failures.is_empty(),
        "{title}: outside the family-wise 95% interval:\n{}",
        failures.join("\n")
    );
}

fn estimate(runs: &[Run], f: impl Fn(&Run) -> f64) -> Estimate {
    Estimate::of(&runs.iter().map(f).collect::<Vec<_>>())
}

// ---------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------

/// Cases with their runs: (name, setup, one run per seed).
type Cases = Vec<(String, Setup, Vec<Run>)>;

/// Arrivals per seed: heavier traffic needs longer runs (README: at least 5
/// seeds and 5M arrivals at rho >= 0.95).
fn arrivals_for(rho: f64) -> u64 {
    if rho >= 0.95 {
        5_000_000
    } else if rho >= 0.8 {
        2_000_000
    } else {
        1_000_000
    }
}

/// The Erlang C grid: c in {1, 2, 10, 25} x rho in {0.5, 0.8, 0.95}, plus the
/// cases.json points EC02 (c=1, rho 0.9), EC04 (c=5, rho 0.8), EC05 (c=10,
/// rho 0.6) and EC09 (c=10, rho 0.9).
fn erlang_c_grid() -> &'static [(String, Setup, Vec<Run>)] {
    static GRID: OnceLock<Cases> = OnceLock::new();
    GRID.get_or_init(|| {
        let mut points: Vec<(String, u32, f64)> = Vec::new();
        for c in [1, 2, 10, 25] {
            for rho in [0.5, 0.8, 0.95] {
                points.push((format!("c={c} rho={rho}"), c, rho));
            }
        }
        points.push(("EC02 c=1 rho=0.9".into(), 1, 0.9));
        points.push(("EC04 c=5 rho=0.8".into(), 5, 0.8));
        points.push(("EC05 c=10 rho=0.6".into(), 10, 0.6));
        points.push(("EC09 c=10 rho=0.9".into(), 10, 0.9));
        let setups: Vec<Setup> = points
            .iter()
            .map(|(_, c, rho)| Setup::single(*c, rho * *c as f64, None, arrivals_for(*rho)))
            .collect();
        let runs = run_cases(1, &setups);
        points
            .into_iter()
            .zip(setups)
            .zip(runs)
            .map(|(((name, _, _), s), r)| (name, s, r))
            .collect()
    })
}

#[test]
fn erlang_c_fixed_pool_no_timeout() {
    let mut rows = Vec::new();
    for (name, s, runs) in erlang_c_grid() {
        let (p, wq) = mmc(s.c, s.lam[1], 1.0);
        rows.push(Row {
            case: name.clone(),
            metric: "p_wait".into(),
            expected: p,
            est: estimate(runs, Run::p_wait),
        });
        rows.push(Row {
            case: name.clone(),
            metric: "mean_wait".into(),
            expected: wq,
            est: estimate(runs, Run::wait_all),
        });
    }
    check_family("M/M/c vs Erlang C", &rows);
}

/// (id, c, lam, D, arrivals per seed): cases.json CD01-CD04, plus two grid
/// points of our own (c = 25 at rho 0.9 and c = 1 at rho 0.95, longer D).
fn mmcd_cases() -> &'static [(String, Setup, Vec<Run>)] {
    static CASES: OnceLock<Cases> = OnceLock::new();
    CASES.get_or_init(|| {
        let points: [(&str, u32, f64, f64, u64); 6] = [
            ("CD01 c=1 D=0.1", 1, 0.9, 0.1, 2_000_000),
            ("CD02 c=2 D=1", 2, 1.0, 1.0, 1_000_000),
            ("CD03 c=5 D=1", 5, 4.9, 1.0, 5_000_000),
            ("CD04 c=10 D=2", 10, 9.5, 2.0, 5_000_000),
            ("c=25 r.9 D=0.2", 25, 22.5, 0.2, 2_000_000),
            ("c=1 r.95 D=5", 1, 0.95, 5.0, 5_000_000),
        ];
        let setups: Vec<Setup> = points
            .iter()
            .map(|&(_, c, lam, d, n)| Setup::single(c, lam, Some(d), n))
            .collect();
        let runs = run_cases(2, &setups);
        points
            .iter()
            .zip(setups)
            .zip(runs)
            .map(|((p, s), r)| (p.0.to_string(), s, r))
            .collect()
    })
}

#[test]
fn mmcd_constant_acquire_timeout() {
    let mut rows = Vec::new();
    for (name, s, runs) in mmcd_cases() {
        let want = mmcd(s.c, s.lam[1], 1.0, s.timeout.expect("has a timeout"));
        for (metric, expected, f) in [
            (
                "p_timeout",
                want.p_abandon,
                Run::p_timeout as fn(&Run) -> f64,
            ),
            ("p_wait", want.p_wait, Run::p_wait),
            ("mean_wait_all", want.wq_all, Run::wait_all),
        ] {
            rows.push(Row {
                case: name.clone(),
                metric: metric.into(),
                expected,
                est: estimate(runs, f),
            });
        }
    }
    check_family("M/M/c+D (constant timeout)", &rows);
}

/// cases.json PR01-PR03 (class 1 = high), plus a 3-class c = 25 point of our
/// own. PR03 runs on the high and low queues (normal empty), to exercise a
/// skipped priority.
fn priority_cases() -> &'static [(String, Setup, Vec<Run>)] {
    static CASES: OnceLock<Cases> = OnceLock::new();
    CASES.get_or_init(|| {
        let points: [(&str, u32, [f64; 3], u64); 4] = [
            ("PR01 c=1 r.8", 1, [0.3, 0.5, 0.0], 2_000_000),
            ("PR02 c=5 r.9", 5, [1.0, 1.5, 2.0], 5_000_000),
            ("PR03 c=10 r.5", 10, [2.0, 0.0, 3.0], 1_000_000),
            ("c=25 r.95", 25, [5.0, 10.0, 8.75], 5_000_000),
        ];
        let setups: Vec<Setup> = points
            .iter()
            .map(|&(_, c, lam, n)| Setup {
                c,
                lam,
                timeout: None,
                n,
            })
            .collect();
        let runs = run_cases(3, &setups);
        points
            .iter()
            .zip(setups)
            .zip(runs)
            .map(|((p, s), r)| (p.0.to_string(), s, r))
            .collect()
    })
}

/// The priorities with traffic, highest first, and their rates.
fn active_classes(s: &Setup) -> (Vec<usize>, Vec<f64>) {
    let idx: Vec<usize> = (0..3).filter(|&p| s.lam[p] > 0.0).collect();
    let lams = idx.iter().map(|&p| s.lam[p]).collect();
    (idx, lams)
}

const CLASS_NAMES: [&str; 3] = ["high", "normal", "low"];

#[test]
fn priority_classes_match_cobham() {
    let mut rows = Vec::new();
    for (name, s, runs) in priority_cases() {
        let (idx, lams) = active_classes(s);
        let want = cobham(s.c, 1.0, &lams);
        let total: f64 = lams.iter().sum();
        let p_wait = erlang_c(s.c, total);
        for (&p, w) in idx.iter().zip(&want) {
            rows.push(Row {
                case: name.clone(),
                metric: format!("wait {}", CLASS_NAMES[p]),
                expected: *w,
                est: estimate(runs, |r| r.class_wait(p)),
            });
            // Every class sees all c connections busy with probability C(c, a).
            rows.push(Row {
                case: name.clone(),
                metric: format!("p_wait {}", CLASS_NAMES[p]),
                expected: p_wait,
                est: estimate(runs, |r| r.class_p_wait(p)),
            });
        }
    }
    check_family("non-preemptive priority vs Cobham", &rows);
}

// ---------------------------------------------------------------------------
// The check has teeth.
// ---------------------------------------------------------------------------

/// Nearby wrong answers must fall outside the same (Bonferroni) intervals the
/// tests above accept. This fails if the intervals were so wide, or the runs
/// so short, that the checks could not tell a right answer from a wrong one.
#[test]
fn deliberately_wrong_values_are_rejected() {
    use std::fmt::Write;
    // The widest interval any family above uses: that of the largest family.
    let widest = [
        erlang_c_grid().len() * 2,
        mmcd_cases().len() * 3,
        priority_cases()
            .iter()
            .map(|(_, s, _)| active_classes(s).0.len() * 2)
            .sum(),
    ];
    let alpha = 0.05 / *widest.iter().max().expect("three families") as f64;
    let mut out =
        String::from("\n== deliberately wrong values (must lie outside the widest interval)\n");
    let mut report = Vec::new();
    let mut reject = |what: String, est: Estimate, wrong: f64| {
        let rejected = !est.contains(wrong, alpha);
        let _ = writeln!(
            out,
            "{what:<44} wrong {wrong:>10.6} estimate {:>10.6} +- {:>9.6} z {:>9.1} {}",
            est.mean,
            est.half_width(alpha),
            est.z(wrong),
            if rejected { "rejected" } else { "NOT rejected" }
        );
        report.push((what, rejected));
    };

    // Erlang C with one server fewer and one more: every grid point with c >= 2.
    for (name, s, runs) in erlang_c_grid() {
        let a = s.lam[1];
        if s.c < 2 {
            continue;
        }
        if a < (s.c - 1) as f64 {
            let (p, w) = mmc(s.c - 1, a, 1.0);
            reject(
                format!("{name} p_wait, C(c-1)"),
                estimate(runs, Run::p_wait),
                p,
            );
            reject(
                format!("{name} mean_wait, C(c-1)"),
                estimate(runs, Run::wait_all),
                w,
            );
        }
        let (p, w) = mmc(s.c + 1, a, 1.0);
        reject(
            format!("{name} p_wait, C(c+1)"),
            estimate(runs, Run::p_wait),
            p,
        );
        reject(
            format!("{name} mean_wait, C(c+1)"),
            estimate(runs, Run::wait_all),
            w,
        );
    }
    // M/M/c+D: the Erlang C answer (timeout ignored) and the Erlang B answer
    // (timeout 0, i.e. every busy arrival lost).
    for (name, s, runs) in mmcd_cases() {
        let a = s.lam[1];
        if a < s.c as f64 {
            let (p, w) = mmc(s.c, a, 1.0);
            reject(
                format!("{name} p_wait, no timeout"),
                estimate(runs, Run::p_wait),
                p,
            );
            reject(
                format!("{name} mean_wait_all, no timeout"),
                estimate(runs, Run::wait_all),
                w,
            );
        }
        reject(
            format!("{name} p_timeout, Erlang B"),
            estimate(runs, Run::p_timeout),
            erlang_b(s.c, a),
        );
        // A subtler slip: the waits of timed-out requests counted as 0
        // instead of D (the mean over served requests, times their share).
        let d = s.timeout.expect("has a timeout");
        let right = mmcd(s.c, a, 1.0, d);
        reject(
            format!("{name} mean_wait_all, timeouts as 0"),
            estimate(runs, Run::wait_all),
            right.wq_all - right.p_abandon * d,
        );
    }
    // Priorities: the FCFS mean wait for the highest and the lowest class.
    for (name, s, runs) in priority_cases() {
        let (idx, lams) = active_classes(s);
        let fcfs = mmc(s.c, lams.iter().sum(), 1.0).1;
        for &p in [idx[0], idx[idx.len() - 1]].iter() {
            reject(
                format!("{name} wait {}, FCFS", CLASS_NAMES[p]),
                estimate(runs, |r| r.class_wait(p)),
                fcfs,
            );
        }
    }

    let missed: Vec<&String> = report.iter().filter(|(_, r)| !r).map(|(w, _)| w).collect();
    let _ = writeln!(
        out,
        "-- wrong values rejected: {} of {}",
        report.len() - missed.len(),
        report.len()
    );
    eprint!("{out}");
    assert!(missed.is_empty(), "wrong values not rejected: {missed:?}");
}
