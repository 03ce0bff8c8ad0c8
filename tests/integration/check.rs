//! `pooltune check`: a knob change that worsens p99 wait fails the gate
//! (exit 1, naming the metric); a change inside the noise band passes; a
//! missing baseline is reported as `missing` (exit 2, or 0 with
//! `--allow-missing`); a broken check file is a tool error (exit 2).

use std::path::Path;

use assert_cmd::Command;
use tempfile::TempDir;

/// A fixed pool of `n` connections (timeouts as the seed's).
fn fixed_policy(n: u32) -> String {
    format!(
        "name = \"mine\"\n\n[size]\nmin = {n}\nmax = {n}\n\n[resize]\nkind = \"fixed\"\n\n[acquire_timeout]\nhigh = \"10s\"\nnormal = \"5s\"\nlow = \"2.5s\"\n"
    )
}

/// One deterministic seed and six paired seeds, 60 simulated seconds of the
/// default workload (about 18,000 requests a run).
const GATE: &str = r#"
baselines = "gate-baselines"

[[scenario]]
policy = "mine.toml"
trace = "default"
seeds = [1]
set = ["duration=60s"]

[[scenario]]
name = "seeds"
policy = "mine.toml"
trace = "default"
seeds = [1, 2, 3, 4, 5, 6]
set = ["duration=60s"]

[[metric]]
name = "acquire_wait_ms.p99"
better = "lower"
tolerance = 0.01
abs_tolerance = 0.5
noise = 0.05
abs_noise = 1.0

[[metric]]
name = "pool.connection_seconds"
better = "lower"
tolerance = 0.15
noise = 0.15
"#;

fn setup(policy_size: u32, gate: &str) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("mine.toml"), fixed_policy(policy_size)).unwrap();
    std::fs::write(dir.path().join("gate.toml"), gate).unwrap();
    dir
}

fn check(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("pooltune")
        .unwrap()
        .current_dir(dir)
        .arg("check")
        .arg("gate.toml")
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The table row of `scenario` and `metric`.
fn row<'a>(stdout: &'a str, scenario: &str, metric: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some(scenario) && l.split_whitespace().any(|x| x == metric)
        })
        .unwrap_or_else(|| panic!("no row for {scenario} {metric}:\n{stdout}"))
}

#[test]
fn a_knob_change_that_worsens_p99_wait_fails_with_the_metric_named() {
    let dir = setup(5, GATE);
    let (code, _, stderr) = check(dir.path(), &["--update"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(dir
        .path()
        .join("gate-baselines/mine@default/seed-1.json")
        .is_file());
    assert!(dir
        .path()
        .join("gate-baselines/seeds/mine@default/seed-6.json")
        .is_file());
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, 0, "unchanged policy must pass:\n{stdout}{stderr}");
    assert!(
        stdout.contains("0 regressed, 0 improved, 4 within noise, 0 missing"),
        "{stdout}"
    );

    // One connection fewer: at 300 req/s of ~10 ms queries (3 busy on
    // average) the tail wait grows several-fold.
    std::fs::write(dir.path().join("mine.toml"), fixed_policy(4)).unwrap();
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, 1, "a regression exits 1:\n{stdout}{stderr}");
    for scenario in ["mine@default", "seeds/mine@default"] {
        let r = row(&stdout, scenario, "acquire_wait_ms.p99");
        assert!(r.ends_with("regressed"), "{r}");
    }
    // ... while the smaller pool costs 20 % less: beyond the 15 % band.
    assert!(row(&stdout, "mine@default", "pool.connection_seconds").ends_with("improved"));
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("2 regressed, 2 improved, 0 within noise, 0 missing: FAIL: regression in mine@default acquire_wait_ms.p99, seeds/mine@default acquire_wait_ms.p99 (exit 1)"),
        "{last}"
    );
    assert!(
        stdout.contains("changed since the baseline: policy mine in mine@default (hash"),
        "{stdout}"
    );

    // Markdown and JSON say the same.
    let (code, md, _) = check(dir.path(), &["--format", "md"]);
    assert_eq!(code, 1);
    assert!(md.starts_with("**2 regressed, 2 improved"), "{md}");
    assert!(md.contains("| acquire_wait_ms.p99 | lower |") && md.contains("**regressed**"));
    let (code, json, _) = check(dir.path(), &["--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["schema"], "pooltune.check/1");
    assert_eq!(v["status"], "regression");
    assert_eq!(v["counts"]["regressed"], 2);
    let seeds_p99 = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scenario"] == "seeds/mine@default" && r["metric"] == "acquire_wait_ms.p99")
        .unwrap();
    assert_eq!(seeds_p99["verdict"], "regressed");
    assert!(seeds_p99["p_value"].as_f64().unwrap() < 0.05);
    let ci = seeds_p99["ci"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() > seeds_p99["allowed"].as_f64().unwrap());

    // --update accepts the change; the gate passes again.
    let (code, _, _) = check(dir.path(), &["--update"]);
    assert_eq!(code, 0);
    let (code, stdout, _) = check(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn a_change_inside_the_noise_band_passes() {
    // Only the multi-seed scenario: ten connections instead of eleven.
    let gate = GATE.replace(
        "[[scenario]]\npolicy = \"mine.toml\"\ntrace = \"default\"\nseeds = [1]\nset = [\"duration=60s\"]\n",
        "",
    );
    let dir = setup(10, &gate);
    assert_eq!(check(dir.path(), &["--update"]).0, 0);
    std::fs::write(dir.path().join("mine.toml"), fixed_policy(11)).unwrap();
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Connection-seconds rose by exactly 10 % on every seed: significant,
    // but inside the 15 % band, so not a regression.
    let r = row(&stdout, "seeds/mine@default", "pool.connection_seconds");
    assert!(
        r.contains("+60 (+10.0 %)") && r.ends_with("within noise"),
        "{r}"
    );
    assert!(
        stdout.contains("within noise seeds/mine@default pool.connection_seconds: p < 0.001, but the 95 % interval reaches into the noise band ±90"),
        "{stdout}"
    );
    assert!(row(&stdout, "seeds/mine@default", "acquire_wait_ms.p99").ends_with("within noise"));
    assert!(stdout.ends_with(
        "0 regressed, 0 improved, 2 within noise, 0 missing: pass: no regression (exit 0)\n"
    ));
}

#[test]
fn a_missing_baseline_is_reported_as_missing_and_exits_2() {
    let dir = setup(5, GATE);
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(row(&stdout, "mine@default", "acquire_wait_ms.p99").ends_with("missing"));
    assert!(
        stdout.contains(
            "missing mine@default: no baseline file gate-baselines/mine@default/seed-1.json"
        ),
        "{stdout}"
    );
    assert!(stdout
        .lines()
        .last()
        .unwrap()
        .contains("0 regressed, 0 improved, 0 within noise, 4 missing: FAIL: baselines missing"));
    // Lenient mode passes without them.
    let (code, stdout, _) = check(dir.path(), &["--allow-missing"]);
    assert_eq!(code, 0, "{stdout}");

    // One seed's baseline gone: that scenario's metrics are missing.
    assert_eq!(check(dir.path(), &["--update"]).0, 0);
    std::fs::remove_file(
        dir.path()
            .join("gate-baselines/seeds/mine@default/seed-3.json"),
    )
    .unwrap();
    let (code, stdout, _) = check(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        stdout.contains("missing seeds/mine@default: no baseline for seed 3"),
        "{stdout}"
    );
    assert!(row(&stdout, "mine@default", "acquire_wait_ms.p99").ends_with("within noise"));
}

#[test]
fn tool_errors_exit_2_with_the_location() {
    let dir = setup(
        5,
        &GATE.replace(
            "better = \"lower\"\ntolerance = 0.15",
            "better = \"less\"\ntolerance = 0.15",
        ),
    );
    let (code, stdout, stderr) = check(dir.path(), &[]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("error: gate.toml:")
            && stderr.contains(
                "key `metric.[1].better`: unknown variant `less`, expected `lower` or `higher`"
            ),
        "{stderr}"
    );

    // An unknown metric is named.
    let dir = setup(
        5,
        &GATE.replace("pool.connection_seconds", "pool.conection_seconds"),
    );
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "error: gate.toml: metric `pool.conection_seconds`: not a number in a run summary"
        ),
        "{stderr}"
    );

    // A policy that does not exist, and a missing check file.
    let dir = setup(5, &GATE.replace("mine.toml", "nope.toml"));
    let (code, _, stderr) = check(dir.path(), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("nope.toml: cannot read"), "{stderr}");
    let out = Command::cargo_bin("pooltune")
        .unwrap()
        .current_dir(dir.path())
        .args(["check", "absent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_shipped_check_file_passes_against_its_committed_baselines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::cargo_bin("pooltune")
        .unwrap()
        .current_dir(root)
        .args(["check", "checks/shipped.toml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 regressed"), "{stdout}");
}
