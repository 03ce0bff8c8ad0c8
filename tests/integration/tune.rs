//! `pooltune tune`: a known optimum (Erlang C), the default workload against
//! the seed policy, determinism across threads and shards, and clear errors.

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

use pooltune::experiments::runner::{with_threads, NoProgress};
use pooltune::experiments::tune::{TuneSpec, Tuner};

const OUTPUTS: [&str; 3] = ["tune.json", "tuned.toml", "tune.md"];

fn pooltune(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("pooltune").unwrap();
    cmd.current_dir(dir);
    cmd
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Erlang C: the probability that an arrival waits in an M/M/c queue with
/// offered load `a` (Erlangs), computed with the stable recursion of the
/// Erlang B formula.
fn erlang_c(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (k as f64 + a * b);
    }
    let rho = a / c as f64;
    b / (1.0 - rho + rho * b)
}

/// Mean wait in ms of M/M/c: C(c, a) / (c mu - lambda).
fn erlang_wq_ms(c: u32, lambda: f64, mean_service_s: f64) -> f64 {
    let a = lambda * mean_service_s;
    if c as f64 <= a {
        return f64::INFINITY;
    }
    erlang_c(c, a) / (c as f64 / mean_service_s - lambda) * 1e3
}

#[test]
fn erlang_c_helper_matches_known_values() {
    // README's benchmark: c = 25, a = 20 -> P(wait) = 0.20910.
    assert!((erlang_c(25, 20.0) - 0.20910).abs() < 1e-4);
    // M/M/2, rho 0.8: 0.71111.
    assert!((erlang_c(2, 1.6) - 0.711_11).abs() < 1e-4);
}

#[test]
fn finds_the_smallest_fixed_pool_meeting_an_erlang_c_wait_bound() {
    // M/M/c: Poisson 100/s, exponential service of mean 50 ms (a = 5
    // Erlangs), no timeouts, instant connects. A fixed pool's cost is
    // c x duration, so the optimum is the smallest c whose mean wait meets
    // the bound. Put the bound halfway (geometrically) between Wq(c* - 1) and
    // Wq(c*), so that neither side is a coin toss.
    let (lambda, service) = (100.0, 0.050);
    let want: u32 = 8;
    let bound =
        (erlang_wq_ms(want - 1, lambda, service) * erlang_wq_ms(want, lambda, service)).sqrt();
    let first_ok = (1..=20)
        .find(|&c| erlang_wq_ms(c, lambda, service) <= bound)
        .unwrap();
    assert_eq!(first_ok, want, "the formula's optimum");

    let dir = TempDir::new().unwrap();
    let trace = dir.path().join("mmc5.toml");
    std::fs::write(
        &trace,
        "name = \"mmc5\"\nrequests = 20000\n[arrivals]\nkind = \"poisson\"\nrate_per_s = 100.0\n\
         [service]\nkind = \"exponential\"\nmean = \"50ms\"\n[run]\nsample_interval = \"none\"\n",
    )
    .unwrap();
    let spec = TuneSpec {
        policy: "fixed-10".into(),
        trace: trace.to_str().unwrap().into(),
        sets: vec![
            "acquire_timeout.high=none".into(),
            "acquire_timeout.normal=none".into(),
            "acquire_timeout.low=none".into(),
        ],
        free: vec!["size.min,size.max=1..20".into()],
        constraints: vec![format!("acquire_wait_ms.mean <= {bound}")],
        budget: 200,
        replications: 5,
        confirm: 8,
        ..TuneSpec::default()
    };
    let mut tuner = Tuner::prepare(&spec).unwrap();
    let report = with_threads(Some(2), || tuner.run(&NoProgress, &|_, _| {}))
        .unwrap()
        .unwrap();
    let o = &report.output;
    assert_eq!(o.status, "feasible");
    assert_eq!(
        o.result.params.get("size.min,size.max"),
        Some(&Value::from(want)),
        "tuned to {:?}; finalists: {:?}",
        o.result.params,
        o.finalists
            .iter()
            .map(|f| (&f.params, f.feasible))
            .collect::<Vec<_>>()
    );
    // The predicted wait agrees with the formula within its interval (or
    // very nearly: 20,000 requests per run).
    let wq = o.result.metrics.get("acquire_wait_ms.mean").unwrap();
    let theory = erlang_wq_ms(want, lambda, service);
    assert!(
        (wq.mean - theory).abs() <= 2.0 * wq.ci95.unwrap() + 0.05 * theory,
        "Wq {wq:?} vs Erlang C {theory}"
    );
    // The whole 20-point space fits the budget, so the search enumerated it.
    assert_eq!(o.search.candidates_evaluated, 20);
    assert!(o.search.search_simulations <= 200);
    // The tuned file is the fixed pool of 8, as a policy file.
    assert!(
        report.policy_toml.contains("[size]\nmin = 8\nmax = 8\n"),
        "{}",
        report.policy_toml
    );
    assert!(report.policy_toml.contains("kind = \"fixed\""));
}

#[test]
fn beats_the_seed_policy_on_the_default_workload() {
    // The issue's case: the default workload, the seed policy's knobs free,
    // minimise connection-seconds subject to p99 wait <= 50 ms and
    // p_timeout <= 0.1 % (all defaults).
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let out = d.join("t");
    let run = pooltune(d)
        .args(["tune", "--out", out.to_str().unwrap()])
        .assert()
        .success();
    let stdout = String::from_utf8(run.get_output().stdout.clone()).unwrap();
    assert!(stdout.contains("start: seed-80-30"), "{stdout}");
    let v: Value = serde_json::from_str(&read(&out.join("tune.json"))).unwrap();
    assert_eq!(v["schema"], "pooltune.tune/1");
    assert_eq!(v["status"], "feasible", "{stdout}");
    let fig = |who: &str, m: &str| v[who]["metrics"][m].clone();
    let mean = |who: &str, m: &str| fig(who, m)["mean"].as_f64().unwrap();
    let ci = |who: &str, m: &str| fig(who, m)["ci95"].as_f64().unwrap();
    // Meets both constraints with its whole interval...
    assert!(mean("result", "acquire_wait_ms.p99") + ci("result", "acquire_wait_ms.p99") <= 50.0);
    assert!(mean("result", "p_timeout") + ci("result", "p_timeout") <= 0.001);
    // ...where the seed meets neither...
    assert!(mean("start", "acquire_wait_ms.p99") > 50.0);
    assert!(mean("start", "p_timeout") > 0.001);
    // ...at fewer connection-seconds (the paired difference on the same
    // fresh seeds; its interval is in the report).
    assert!(mean("result", "pool.connection_seconds") < mean("start", "pool.connection_seconds"));
    let d_cs = &v["vs_start"]["pool.connection_seconds"];
    assert!(d_cs["mean"].as_f64().unwrap() < 0.0, "{d_cs}");
    assert!(d_cs["ci95"].as_f64().unwrap() > 0.0, "{d_cs}");
    assert!(stdout.contains("tuned − start"), "{stdout}");
    // The Pareto front and the evaluated points are there for the plots.
    let ev = v["evaluated"].as_array().unwrap();
    assert!(ev.len() > 20);
    assert!(ev.iter().any(|e| e["pareto"] == true));
    assert!(ev[0]["metrics"]["pool.connection_seconds"]["mean"].is_number());
    assert_eq!(
        v["pareto"],
        serde_json::json!(["pool.connection_seconds", "acquire_wait_ms.p99"])
    );

    // The policy file is ready to use, and is the policy that was tuned.
    let tuned = out.join("tuned.toml");
    let sim = pooltune(d)
        .args([
            "sim",
            "run",
            "--policy",
            tuned.to_str().unwrap(),
            "--policy",
            "seed-80-30",
            "--no-write",
            "--format",
            "json",
        ])
        .assert()
        .success();
    let s: Value = serde_json::from_slice(&sim.get_output().stdout).unwrap();
    assert_eq!(s["runs"][0]["policy"]["name"], "seed-80-30-tuned");
    assert_eq!(s["runs"][0]["policy"]["hash"], v["result"]["hash"]);
}

/// A small tuning run on a short workload.
fn small_args() -> Vec<String> {
    [
        "tune",
        "--set",
        "duration=1m",
        "--budget",
        "60",
        "-r",
        "3",
        "--confirm",
        "3",
        "--free",
        "size.min=1..6",
        "--free",
        "size.max=4..8",
        "--free",
        "resize.scale_up=0.6..0.9:0.1",
        "--free",
        "resize.interval=10s,30s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn output_is_identical_with_one_and_two_threads_and_after_sharded_stages() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let run = |extra: &[&str]| {
        pooltune(d)
            .args(small_args())
            .args(extra)
            .assert()
            .success();
    };
    let t1 = d.join("t1");
    let t2 = d.join("t2");
    run(&["--threads", "1", "--out", t1.to_str().unwrap()]);
    run(&["--threads", "2", "--out", t2.to_str().unwrap()]);
    for f in OUTPUTS {
        assert_eq!(read(&t1.join(f)), read(&t2.join(f)), "{f}: 1 vs 2 threads");
    }
    // Stage by stage on two "machines", merged after each stage.
    let sh = d.join("sh");
    let mut stages = 0;
    while !sh.join("tune.json").exists() {
        stages += 1;
        assert!(stages < 40, "the staged search does not end");
        for k in 0..2 {
            run(&["--shard", &format!("{k}/2"), "--out", sh.to_str().unwrap()]);
        }
        pooltune(d)
            .args(["merge", sh.to_str().unwrap()])
            .assert()
            .success();
        assert!(sh.join("tune-state.json").exists());
    }
    let v: Value = serde_json::from_str(&read(&t1.join("tune.json"))).unwrap();
    assert_eq!(stages, v["search"]["stages"].as_array().unwrap().len());
    for f in OUTPUTS {
        assert_eq!(
            read(&t1.join(f)),
            read(&sh.join(f)),
            "{f}: sharded vs one machine"
        );
    }
    // Shards of a finished search are refused, as is a state of another run.
    let mut other = small_args();
    other.extend(["--seed".into(), "9".into()]);
    let out = pooltune(d)
        .args(other)
        .args(["--shard", "0/2", "--out", sh.to_str().unwrap()])
        .assert()
        .code(3);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("belongs to another tuning run") && err.contains("seed"),
        "{err}"
    );
}

#[test]
fn bad_specifications_give_clear_errors() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let tune = |extra: &[&str], code: i32| -> String {
        let out = pooltune(d)
            .args(["tune", "--no-write", "--set", "duration=1m"])
            .args(extra)
            .assert()
            .code(code);
        String::from_utf8(out.get_output().stderr.clone()).unwrap()
    };
    let e = tune(&["--free", "resize.scale_upp=0.5..0.9:0.1"], 3);
    assert!(
        e.contains("--free resize.scale_upp=0.5..0.9:0.1: unknown key `resize.scale_upp`"),
        "{e}"
    );
    let e = tune(&["--free", "size.max=25..5"], 3);
    assert!(e.contains("--free size.max=25..5: empty range"), "{e}");
    let e = tune(
        &[
            "--constraint",
            "p_timeout<=0.001",
            "--constraint",
            "p_timeout>=0.01",
        ],
        3,
    );
    assert!(e.contains("contradictory constraints"), "{e}");
    assert!(
        e.contains("p_timeout <= 0.001") && e.contains("p_timeout >= 0.01"),
        "{e}"
    );
    let e = tune(&["--constraint", "p_wait<=-1"], 3);
    assert!(e.contains("can never be met"), "{e}");
    let e = tune(&["--constraint", "p99<=50"], 3);
    assert!(
        e.contains("--constraint p99<=50: unknown metric `p99`"),
        "{e}"
    );
    let e = tune(&["--minimize", "pool.conection_seconds"], 3);
    assert!(
        e.contains("--minimize pool.conection_seconds: unknown metric"),
        "{e}"
    );
    let e = tune(&["--free", "arrivals.rate_per_s=100,200"], 3);
    assert!(e.contains("is a workload key"), "{e}");
    let e = tune(&["--free", "size.max=5,10", "--set", "size.max=7"], 3);
    assert!(e.contains("also fixed by --set size.max=7"), "{e}");
    let e = tune(&["--confirm", "1"], 3);
    assert!(e.contains("--confirm 1"), "{e}");
    tune(&["--minimize", "p_wait", "--maximize", "health.score"], 2);
}
