//! The `pooltune` binary: outputs, formats, exit codes, determinism; and
//! snapshots of the comparison table in text and Markdown.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

use pooltune::config::Override;
use pooltune::core::metrics::NullSink;
use pooltune::report::{self, timeseries};
use pooltune::scenario::{self, LoadedPolicy};
use pooltune::summary::{Summary, SCHEMA};

const SHIPPED_POLICIES: [&str; 4] = ["seed-80-30", "seed-80-30-low10s", "fixed-10", "fixed-25"];

/// `pooltune sim run <args>` with `dir` as the current directory.
fn sim_run(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("pooltune").unwrap();
    cmd.current_dir(dir).arg("sim").arg("run").args(args);
    cmd
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_summary(json: &str) -> Summary {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a summary ({e}):\n{json}"))
}

/// Runs with `--out <dir>/<name>` and returns that directory's summary.json text.
fn run_to(dir: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    let out = dir.join(name);
    sim_run(dir, args)
        .arg("--out")
        .arg(&out)
        .arg("--format")
        .arg("json")
        .assert()
        .success();
    let json = read(&out.join("summary.json"));
    (out, json)
}

#[test]
fn default_run_compares_the_shipped_policies_and_writes_its_outputs() {
    let dir = TempDir::new().unwrap();
    let out = sim_run(dir.path(), &[]).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        stdout.starts_with("scenario default · seed 42 · trace default ("),
        "{stdout}"
    );
    for name in SHIPPED_POLICIES {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "no table row for {name}:\n{stdout}"
        );
    }

    let reports = dir.path().join("reports/default-42");
    let summary = parse_summary(&read(&reports.join("summary.json")));
    assert_eq!(summary.schema, SCHEMA);
    assert_eq!(summary.schema, "pooltune.summary/1");
    assert_eq!(summary.seed, 42);
    let names: Vec<&str> = summary
        .runs
        .iter()
        .map(|r| r.policy.name.as_str())
        .collect();
    assert_eq!(names, SHIPPED_POLICIES);
    for r in &summary.runs {
        let c = r.requests;
        assert!(c.arrived > 0, "{}: no arrivals", r.policy.name);
        assert_eq!(
            c.arrived,
            c.completed + c.timed_out + c.failed + c.rejected + c.in_flight_at_end,
            "{}: requests not conserved: {c:?}",
            r.policy.name
        );
    }
    let seed = &summary.runs[0];
    assert!(
        seed.pool.resize_events > 0 && seed.pool.size_max > seed.pool.size_min,
        "the seed policy never resized in the default run: {:?}",
        seed.pool
    );

    let csv = read(&reports.join("timeseries.csv"));
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some(timeseries::HEADER.join(",").as_str()));
    let rows: Vec<&str> = rows.collect();
    for name in SHIPPED_POLICIES {
        // The default workload lasts 10 minutes, sampled every second.
        let n = rows
            .iter()
            .filter(|r| r.split(',').next() == Some(name))
            .count();
        assert!(n >= 600, "{name}: {n} time-series rows");
    }
    assert!(rows
        .iter()
        .all(|r| r.split(',').count() == timeseries::HEADER.len()));
    assert!(read(&reports.join("summary.md")).contains("| seed-80-30 |"));
    // Only the outputs: no part files left behind.
    let mut files: Vec<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // ... and the report `sim run` writes by default (tests/integration/plots.rs).
    assert_eq!(
        files,
        [
            "plots",
            "report.html",
            "report.md",
            "summary.json",
            "summary.md",
            "timeseries.csv"
        ]
    );
}

#[test]
fn format_json_prints_the_summary_it_writes() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    let assert = sim_run(dir.path(), &["--format", "json", "--out"])
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    let _: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(stdout, read(&out.join("summary.json")));
}

#[test]
fn format_md_prints_a_markdown_table() {
    let dir = TempDir::new().unwrap();
    let assert = sim_run(dir.path(), &["--format", "md", "--no-write"])
        .assert()
        .success();
    let stdout = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("**pooltune** scenario default · seed 42"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("| policy | completed |"), "{stdout}");
    assert!(lines[3].starts_with("| :--- | ---: |"), "{stdout}");
    assert_eq!(lines.len(), 4 + SHIPPED_POLICIES.len(), "{stdout}");
    for (line, name) in lines[4..].iter().zip(SHIPPED_POLICIES) {
        assert!(line.starts_with(&format!("| {name} |")), "{line}");
    }
    // --no-write writes nothing.
    assert!(!dir.path().join("reports").exists());
}

#[test]
fn set_changes_the_policy_and_its_hash() {
    let dir = TempDir::new().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["--policy", "seed-80-30", "--no-write", "--format", "json"];
        args.extend_from_slice(extra);
        let assert = sim_run(dir.path(), &args).assert().success();
        parse_summary(std::str::from_utf8(&assert.get_output().stdout).unwrap())
    };
    let plain = run(&[]);
    let changed = run(&["--set", "resize.scale_up=0.9"]);
    let (a, b) = (&plain.runs[0].policy, &changed.runs[0].policy);
    assert_eq!(a.config["resize"]["scale_up"], 0.8);
    assert_eq!(b.config["resize"]["scale_up"], 0.9);
    assert_ne!(a.hash, b.hash, "the hash must follow the effective config");
    assert_eq!(
        plain.trace.hash, changed.trace.hash,
        "a policy --set leaves the trace alone"
    );
    // Setting a value to what it already is changes nothing.
    assert_eq!(
        run(&["--set", "resize.scale_up=0.8"]).runs[0].policy.hash,
        a.hash
    );
}

#[test]
fn invalid_config_exits_3_naming_file_and_key() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[resize]\nkind = \"threshold\"\nscale_upp = 0.9\n").unwrap();
    sim_run(dir.path(), &["--no-write", "--policy"])
        .arg(&file)
        .assert()
        .code(3)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "error: {}:3:1: key `resize.scale_upp`: unknown field `scale_upp`",
            file.display()
        )));
    sim_run(dir.path(), &["--no-write", "--set", "resize.scale_up=2"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: policies/seed-80-30.toml (built-in) (overridden by --set resize.scale_up=2): key `resize.scale_up`: expected a utilization fraction in [0, 1], got 2",
        ));
    sim_run(dir.path(), &["--no-write", "--set", "colour=red"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: --set colour=red: unknown key `colour`",
        ));
    assert!(
        !dir.path().join("reports").exists(),
        "nothing is written when the config is invalid"
    );
}

#[test]
fn missing_policy_file_exits_4_naming_the_path_once() {
    let dir = TempDir::new().unwrap();
    let assert = sim_run(dir.path(), &["--no-write", "--policy", "nope/missing.toml"])
        .assert()
        .code(4);
    let stderr = String::from_utf8(assert.get_output().stderr.clone()).unwrap();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.starts_with("error: nope/missing.toml: cannot read: "),
        "{line}"
    );
    // The I/O error's text appears once, not once per error in the chain.
    let cause = line.trim_start_matches("error: nope/missing.toml: cannot read: ");
    assert_eq!(line.matches(cause).count(), 1, "{line}");
}

#[test]
fn unknown_shipped_name_exits_3_listing_the_shipped_names() {
    // Not a path (no `/`, no `.toml`): a mistyped name, reported as a config
    // error with the names that exist.
    let dir = TempDir::new().unwrap();
    sim_run(dir.path(), &["--no-write", "--policy", "seed-80-31"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: policy `seed-80-31`: no such file, and not a shipped name (shipped: seed-80-30, seed-80-30-low10s, seed-repaired, fixed-10, fixed-25, hikari-fixed, hikari-elastic, pgbouncer-txn, pgbouncer-reserve, bb8-default, sqlx-default, deadpool-default, no-pool, aimd, vegas, gradient, gradient2, envoy-gradient, codel-queue, flexy-overflow, priority-partitions)",
        ));
    sim_run(dir.path(), &["--no-write", "--trace", "defualt"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: trace `defualt`: no such file, and not a shipped name",
        ));
}

#[test]
fn two_policies_with_one_name_exit_3() {
    let dir = TempDir::new().unwrap();
    sim_run(dir.path(), &["--no-write", "--policy", "fixed-10", "--policy", "fixed-10"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "error: policies/fixed-10.toml (built-in): key `name`: `fixed-10` is also the name of the policy from policies/fixed-10.toml (built-in); the policies compared must have different names",
        ));
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new().unwrap();
    sim_run(dir.path(), &["--no-such-flag"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--no-such-flag"));
    sim_run(dir.path(), &["--format", "xml"]).assert().code(2);
    sim_run(dir.path(), &["--seed", "-1"]).assert().code(2);
    Command::cargo_bin("pooltune")
        .unwrap()
        .current_dir(dir.path())
        .assert()
        .code(2);
    Command::cargo_bin("pooltune")
        .unwrap()
        .args(["sim", "run", "--help"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("--policy"));
}

#[test]
fn unwritable_output_exits_4() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    sim_run(dir.path(), &["--out"])
        .arg(file.join("out"))
        .assert()
        .code(4)
        .stderr(predicate::str::contains(format!(
            "error: {}: cannot write: ",
            file.join("out").display()
        )));
}

#[test]
fn hitting_max_events_exits_5_naming_the_limit_and_seed() {
    let dir = TempDir::new().unwrap();
    sim_run(
        dir.path(),
        &["--no-write", "--seed", "9", "--set", "run.max_events=1000"],
    )
    .assert()
    .code(5)
    .stdout("")
    .stderr(
        predicate::str::contains("error: run limit reached: max_events = 1000 events processed")
            .and(predicate::str::contains("(seed 9)"))
            .and(predicate::str::contains("raise run.max_events")),
    );
}

#[test]
fn same_seed_gives_identical_bytes_another_seed_does_not() {
    let dir = TempDir::new().unwrap();
    let (out_a, a) = run_to(dir.path(), "a", &["--seed", "1"]);
    let (out_b, b) = run_to(dir.path(), "b", &["--seed", "1"]);
    assert_eq!(a, b, "summary.json differs between two runs with seed 1");
    assert_eq!(
        read(&out_a.join("timeseries.csv")),
        read(&out_b.join("timeseries.csv"))
    );
    let (_, c) = run_to(dir.path(), "c", &["--seed", "2"]);
    assert_ne!(a, c, "seeds 1 and 2 gave the same summary");
    let (sa, sc) = (parse_summary(&a), parse_summary(&c));
    assert_eq!((sa.seed, sc.seed), (1, 2));
    assert_ne!(sa.runs[0].requests.arrived, sc.runs[0].requests.arrived);
}

/// The default workload shortened to 90 s (three decisions of the seed
/// rule), seed 1, the seed policy against a fixed pool of 10.
fn small_scenario() -> Summary {
    let sets = [Override::parse("duration=90s").unwrap()];
    let split = scenario::split_overrides(&sets).unwrap();
    let workload = scenario::load_workload("default", &split.workload).unwrap();
    let policies: Vec<LoadedPolicy> = ["seed-80-30", "fixed-10"]
        .iter()
        .map(|p| scenario::load_policy(p, &split.policy).unwrap())
        .collect();
    let mut sinks = vec![NullSink, NullSink];
    scenario::run_scenario(&workload, &policies, 1, &mut sinks).unwrap()
}

#[test]
fn snapshot_table() {
    insta::assert_snapshot!("table_default_90s_seed1", report::table(&small_scenario()));
}

#[test]
fn snapshot_markdown() {
    insta::assert_snapshot!(
        "markdown_default_90s_seed1",
        report::markdown(&small_scenario())
    );
}
