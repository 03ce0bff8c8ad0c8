//! `pooltune sim sweep` and `pooltune merge`: byte-identical outputs with 1
//! and 2 threads and after sharding, the sweep.json contract, common random
//! numbers, and clear errors for bad specifications.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

use pooltune::experiments::runner::{with_threads, NoProgress};
use pooltune::experiments::sweep::{self, Sweep, SweepSpec};

/// A short default workload (1 simulated minute, about 18,000 requests).
const SHORT: &str = "duration=1m";
const OUTPUTS: [&str; 4] = ["sweep.json", "sweep.csv", "sweep.md", "runs.csv"];

fn pooltune(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("pooltune").unwrap();
    cmd.current_dir(dir);
    cmd
}

/// A 13-variant sweep (a 3 x 4 grid and a reference) with 3 replications.
fn grid_args() -> Vec<String> {
    [
        "sim",
        "sweep",
        // Not in alphabetical order: outputs keep the order given.
        "--grid",
        "size.min=2..4",
        "--grid",
        "resize.scale_up=0.6..0.9:0.1",
        "--reference",
        "fixed-10",
        "--set",
        SHORT,
        "-r",
        "3",
        "--metric",
        "acquire_wait_ms.p99",
        "--metric",
        "pool.connection_seconds",
        "--metric",
        "requests.arrived",
        "--metric",
        "by_priority.low.p_timeout",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_ok(dir: &Path, args: &[String], extra: &[&str]) -> String {
    let out = pooltune(dir).args(args).args(extra).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

/// Runs and expects exit code `code`; returns stderr.
fn run_err(dir: &Path, args: &[&str], code: i32) -> String {
    let out = pooltune(dir).args(args).assert().code(code);
    String::from_utf8(out.get_output().stderr.clone()).unwrap()
}

fn same_outputs(a: &Path, b: &Path) {
    for f in OUTPUTS {
        assert_eq!(
            read(&a.join(f)),
            read(&b.join(f)),
            "{f} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn output_is_byte_identical_with_one_and_two_threads() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let mut outs: Vec<PathBuf> = Vec::new();
    for (name, threads) in [("t1", "1"), ("t2", "2"), ("t2b", "2")] {
        let out = d.join(name);
        run_ok(
            d,
            &grid_args(),
            &["--threads", threads, "--out", out.to_str().unwrap()],
        );
        outs.push(out);
    }
    same_outputs(&outs[0], &outs[1]);
    same_outputs(&outs[0], &outs[2]);
    // RAYON_NUM_THREADS is honoured too.
    let env_out = d.join("env1");
    pooltune(d)
        .env("RAYON_NUM_THREADS", "1")
        .args(grid_args())
        .args(["--out", env_out.to_str().unwrap()])
        .assert()
        .success();
    same_outputs(&outs[0], &env_out);
}

#[test]
fn sharded_then_merged_equals_unsharded() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let whole = d.join("whole");
    run_ok(d, &grid_args(), &["--out", whole.to_str().unwrap()]);
    let shards = d.join("shards");
    for k in 0..3 {
        run_ok(
            d,
            &grid_args(),
            &[
                "--shard",
                &format!("{k}/3"),
                "--out",
                shards.to_str().unwrap(),
            ],
        );
        assert!(shards.join(format!("sweep-shard-{k}-of-3.json")).is_file());
    }
    assert!(
        !shards.join("sweep.json").exists(),
        "a shard writes no sweep.json"
    );
    // A missing shard is named.
    let err = run_err(
        d,
        &[
            "merge",
            shards.join("sweep-shard-0-of-3.json").to_str().unwrap(),
            shards.join("sweep-shard-2-of-3.json").to_str().unwrap(),
            "--out",
            d.join("partial").to_str().unwrap(),
        ],
        3,
    );
    assert!(err.contains("shard 1/3 is missing"), "{err}");
    // The whole set merges into exactly what one machine writes.
    pooltune(d)
        .args(["merge", shards.to_str().unwrap()])
        .assert()
        .success();
    same_outputs(&whole, &shards);
    // One shard count per sweep; shards of another sweep are refused.
    let other = d.join("other");
    let mut args = grid_args();
    args.extend(["--seed".to_string(), "7".to_string()]);
    run_ok(
        d,
        &args,
        &["--shard", "1/3", "--out", other.to_str().unwrap()],
    );
    let err = run_err(
        d,
        &[
            "merge",
            shards.join("sweep-shard-0-of-3.json").to_str().unwrap(),
            other.join("sweep-shard-1-of-3.json").to_str().unwrap(),
            shards.join("sweep-shard-2-of-3.json").to_str().unwrap(),
            "--out",
            d.join("mixed").to_str().unwrap(),
        ],
        3,
    );
    assert!(err.contains("come from different sweeps"), "{err}");
    assert!(err.contains("seed"), "{err}");
}

#[test]
fn sweep_json_follows_the_contract() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let out = d.join("o");
    run_ok(d, &grid_args(), &["--out", out.to_str().unwrap()]);
    let text = read(&out.join("sweep.json"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], "pooltune.sweep/1");
    assert_eq!(v["seed"], 42);
    assert_eq!(v["replications"], 3);
    assert_eq!(v["trace"]["name"], "default");
    // The grid keeps the order given (not alphabetical).
    let grid_pos = |k: &str| text.find(&format!("\"{k}\": [")).unwrap();
    assert!(grid_pos("size.min") < grid_pos("resize.scale_up"));
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"size.min\": ") || l.contains("\"resize.scale_up\": "))
        .map(|l| if l.contains("size.min") { "s" } else { "r" })
        .collect();
    assert!(
        keys.chunks(2).all(|c| c == ["s", "r"]),
        "params keep the grid order: {keys:?}"
    );
    assert_eq!(
        v["grid"]["resize.scale_up"],
        serde_json::json!([0.6, 0.7, 0.8, 0.9])
    );
    assert_eq!(v["grid"]["size.min"], serde_json::json!([2, 3, 4]));
    let variants = v["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 13);
    // The reference first, then the grid with its last axis fastest.
    assert_eq!(variants[0]["policy"], "fixed-10");
    assert_eq!(variants[0]["reference"], true);
    assert_eq!(variants[0]["params"]["size.min"], 10);
    assert_eq!(variants[0]["params"]["resize.scale_up"], Value::Null);
    assert_eq!(
        variants[1]["params"],
        serde_json::json!({"size.min": 2, "resize.scale_up": 0.6})
    );
    assert_eq!(
        variants[2]["params"],
        serde_json::json!({"size.min": 2, "resize.scale_up": 0.7})
    );
    assert_eq!(
        variants[5]["params"],
        serde_json::json!({"size.min": 3, "resize.scale_up": 0.6})
    );
    for (i, var) in variants.iter().enumerate() {
        assert_eq!(var["index"], i);
        let keys: Vec<&String> = var["params"].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 2);
        for m in [
            "acquire_wait_ms.p99",
            "pool.connection_seconds",
            "requests.arrived",
            "by_priority.low.p_timeout",
        ] {
            let e = &var["metrics"][m];
            assert!(e["mean"].is_number(), "{m}: {e}");
            assert!(e["ci95"].is_number(), "{m}: {e}");
            assert_eq!(e["n"], 3);
        }
        // The first reference is the baseline; the others carry paired differences.
        if i == 0 {
            assert!(var["vs_baseline"].is_null());
        } else {
            assert_eq!(var["vs_baseline"]["baseline"], 0);
            assert!(var["vs_baseline"]["metrics"]["pool.connection_seconds"]["mean"].is_number());
        }
    }
    // No wall-clock figure anywhere.
    for word in ["elapsed", "wall", "per_second"] {
        assert!(!text.contains(word), "sweep.json mentions {word}");
    }
    // Common random numbers: every variant sees the same arrivals in a
    // replication (runs.csv has them per replication), and the seeds are the
    // same for every variant.
    let runs = read(&out.join("runs.csv"));
    let mut lines = runs.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "requests.arrived")
        .unwrap();
    let mut by_rep: Vec<Vec<(String, String)>> = vec![Vec::new(); 3];
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let rep: usize = f[1].parse().unwrap();
        by_rep[rep].push((f[2].to_string(), f[col].to_string()));
    }
    for rep in &by_rep {
        assert_eq!(rep.len(), 13);
        assert!(rep.iter().all(|x| *x == rep[0]), "{rep:?}");
    }
    assert_ne!(by_rep[0][0], by_rep[1][0]);
}

#[test]
fn a_replication_is_reproduced_by_sim_run_with_its_seed() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let out = d.join("o");
    run_ok(d, &grid_args(), &["--out", out.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let seed = v["replication_seeds"][2].as_u64().unwrap();
    // Variant 6: size.min 3, scale_up 0.7 (see the contract test).
    assert_eq!(
        v["variants"][6]["params"],
        serde_json::json!({"size.min": 3, "resize.scale_up": 0.7})
    );
    let json = run_ok(
        d,
        &[
            "sim",
            "run",
            "--policy",
            "seed-80-30",
            "--set",
            SHORT,
            "--set",
            "resize.scale_up=0.7",
            "--set",
            "size.min=3",
            "--seed",
            &seed.to_string(),
            "--format",
            "json",
            "--no-write",
        ]
        .map(String::from),
        &[],
    );
    let s: Value = serde_json::from_str(&json).unwrap();
    let p99 = s["runs"][0]["acquire_wait_ms"]["p99"].as_f64().unwrap();
    let runs = read(&out.join("runs.csv"));
    let mut lines = runs.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "acquire_wait_ms.p99")
        .unwrap();
    let row: Vec<&str> = lines
        .find(|l| l.starts_with("6,2,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(row[2], seed.to_string());
    assert_eq!(row[col].parse::<f64>().unwrap(), p99);
    assert_eq!(
        s["runs"][0]["policy"]["hash"], v["variants"][6]["policy_hash"],
        "the variant is the policy sim run loads with the same --set"
    );
}

#[test]
fn paired_differences_under_common_random_numbers_are_tighter() {
    // Fixed pools of 4, 5 and 6 on the same requests: each pool's figures
    // vary from seed to seed, but the difference between two pools much
    // less, because both see the same bursts and the same run length.
    let spec = SweepSpec {
        policies: vec!["fixed-10".into()],
        grid: vec!["size.min,size.max=4..6".into()],
        sets: vec![SHORT.into()],
        replications: 6,
        metrics: vec![
            "acquire_wait_ms.mean".into(),
            "pool.connection_seconds".into(),
            "requests.arrived".into(),
        ],
        baseline: Some("size.min,size.max=5".into()),
        ..SweepSpec::default()
    };
    let sw = Sweep::prepare(&spec).unwrap();
    let report = with_threads(Some(2), || sweep::run_sweep(&sw, &NoProgress))
        .unwrap()
        .unwrap();
    let o = &report.output;
    assert_eq!(o.variants.len(), 3);
    assert!(o.variants[1].vs_baseline.is_none(), "the baseline itself");
    let base = &o.variants[1];
    for i in [0, 2] {
        let v = &o.variants[i];
        let d = v.vs_baseline.as_ref().unwrap();
        assert_eq!(d.baseline, 1);
        // The paired interval against the interval of a difference of two
        // independent estimates, sqrt(h_a^2 + h_b^2).
        for (m, factor) in [
            ("acquire_wait_ms.mean", 1.0),
            ("pool.connection_seconds", 0.5),
        ] {
            let (a, b) = (v.metrics.get(m).unwrap(), base.metrics.get(m).unwrap());
            let unpaired = (a.ci95.unwrap().powi(2) + b.ci95.unwrap().powi(2)).sqrt();
            let paired = d.metrics.get(m).unwrap().ci95.unwrap();
            assert!(
                paired < factor * unpaired,
                "variant {i}, {m}: paired ci {paired} vs unpaired {unpaired}"
            );
        }
        // Identical arrivals: the difference is exactly zero.
        let arr = d.metrics.get("requests.arrived").unwrap();
        assert_eq!((arr.mean, arr.ci95), (0.0, Some(0.0)));
    }
    // More connections, less waiting, and the interval says so.
    let d4 = o.variants[0]
        .vs_baseline
        .as_ref()
        .unwrap()
        .metrics
        .get("acquire_wait_ms.mean")
        .unwrap();
    assert!(d4.lower() > 0.0, "{d4:?}");
}

#[test]
fn bad_specifications_give_clear_errors() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let sweep = |extra: &[&str], code: i32| {
        let mut args = vec!["sim", "sweep", "--set", SHORT, "--no-write"];
        if !extra.contains(&"-r") {
            args.extend(["-r", "2"]);
        }
        args.extend_from_slice(extra);
        run_err(d, &args, code)
    };
    let e = sweep(&["--grid", "resize.scale_upp=0.6..0.9:0.1"], 3);
    assert!(
        e.contains("error: --grid resize.scale_upp=0.6..0.9:0.1: unknown key `resize.scale_upp`"),
        "{e}"
    );
    assert!(
        e.contains("scale_up"),
        "the message lists the keys that exist: {e}"
    );
    let e = sweep(&["--grid", "bogus=1,2"], 3);
    assert!(e.contains("--grid bogus=1,2: unknown key `bogus`"), "{e}");
    let e = sweep(&["--grid", "resize.scale_up=0.9..0.6:0.05"], 3);
    assert!(
        e.contains("--grid resize.scale_up=0.9..0.6:0.05: empty range"),
        "{e}"
    );
    let e = sweep(&["--grid", "resize.scale_up=0.6..0.9"], 3);
    assert!(e.contains("needs a step"), "{e}");
    let e = sweep(&["--grid", "size.max=5..25:0"], 3);
    assert!(e.contains("step must be positive"), "{e}");
    let e = sweep(&["--metric", "p99"], 3);
    assert!(
        e.contains("--metric p99: unknown metric `p99`") && e.contains("acquire_wait_ms.p99"),
        "{e}"
    );
    let e = sweep(&["--grid", "size.max=10,20", "--set", "size.max=5"], 3);
    assert!(e.contains("also fixed by --set size.max=5"), "{e}");
    let e = sweep(
        &["--grid", "size.max=10,20", "--baseline", "size.max=15"],
        3,
    );
    assert!(
        e.contains("--baseline size.max=15: matches no variant"),
        "{e}"
    );
    let e = sweep(&["--shard", "3/3"], 3);
    assert!(e.contains("--shard 3/3: K counts from 0"), "{e}");
    let e = sweep(&["-r", "0"], 3);
    assert!(e.contains("--replications 0"), "{e}");
    // An invalid grid point names the point, the key and the way out...
    let e = sweep(&["--grid", "resize.scale_down=0.2,0.9"], 3);
    assert!(e.contains("resize.scale_down=0.9"), "{e}");
    assert!(e.contains("scale_down < scale_up"), "{e}");
    assert!(e.contains("set by --grid resize.scale_down=0.9"), "{e}");
    assert!(e.contains("--skip-invalid"), "{e}");
    // ...which leaves it out and says so.
    let out = pooltune(d)
        .args([
            "sim",
            "sweep",
            "--set",
            SHORT,
            "--no-write",
            "-r",
            "2",
            "--grid",
            "resize.scale_down=0.2,0.9",
            "--skip-invalid",
            "--format",
            "json",
        ])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["variants"].as_array().unwrap().len(), 1);
    assert_eq!(v["skipped"][0]["params"]["resize.scale_down"], 0.9);
    // Usage errors are clap's.
    run_err(d, &["sim", "sweep", "--bogus"], 2);
}
