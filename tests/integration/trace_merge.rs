//! Merged traces as a workload (`[[arrivals.inputs]]`) and `sim run
//! --trace A --trace B`: the committed csvlog and pgbench samples replay
//! together to the sum of their requests, each input with its own priority
//! rules, by arrival with ties by input order; the same seed gives the same
//! summary.json; the workload hash covers every input's bytes and settings;
//! bad inputs give errors naming the workload key and the trace's line.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

use pooltune::config::workload::{SourceSpec, WorkloadSpec};
use pooltune::config::Document;
use pooltune::core::request::Priority;
use pooltune::rng::SeedTree;
use pooltune::scenario;
use pooltune::trace::replay::{prepare, PrepareOptions};
use pooltune::trace::RequestSource;

use super::trace_import::data;

fn pooltune(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("pooltune").unwrap();
    cmd.current_dir(dir);
    cmd
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A TOML string literal of a path.
fn lit(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

fn load(text: &str) -> Result<WorkloadSpec, String> {
    WorkloadSpec::load(&Document::new("w.toml", text), "w", &[]).map_err(|e| e.to_string())
}

/// Every request a workload replays: (arrival ns, service ns, priority).
fn replay(w: &WorkloadSpec, seed: u64) -> Vec<(u64, u64, Priority)> {
    let mut src = scenario::open_source(w, &SeedTree::new(seed)).unwrap();
    let mut out = Vec::new();
    while let Some(r) = src.next_request() {
        out.push((r.arrival.0, r.service.0, r.priority));
    }
    assert!(src.take_error().is_none());
    out
}

/// The requests of one trace replayed alone.
fn requests_of(path: &Path) -> u64 {
    prepare(path, &PrepareOptions::default())
        .unwrap()
        .info
        .requests
}

fn csvlog() -> PathBuf {
    data("rate50.csv.gz")
}

/// The first thread's log of pgbench's closed-loop run.
fn pgbench() -> PathBuf {
    super::trace_import::thread_logs(&data(""), "pgbench.closed.")
        .into_iter()
        .next()
        .unwrap()
}

fn two_inputs(first_extra: &str, second_extra: &str) -> String {
    format!(
        "[arrivals]\nkind = \"trace\"\n[[arrivals.inputs]]\npath = {}\n{first_extra}\n[[arrivals.inputs]]\npath = {}\n{second_extra}\n",
        lit(&csvlog()),
        lit(&pgbench())
    )
}

#[test]
fn merged_inputs_replay_to_the_sum_of_their_requests() {
    let (a, b) = (requests_of(&csvlog()), requests_of(&pgbench()));
    assert!(a > 0 && b > 0);
    let w = load(&two_inputs("priority = \"high\"", "priority = \"low\"")).unwrap();
    let SourceSpec::Trace(t) = &w.source else {
        panic!("a merged trace is a trace source")
    };
    assert_eq!(t.trace.info.requests, a + b);
    assert_eq!(t.trace.info.priority_counts, [a, 0, b]);
    let got = replay(&w, 1);
    assert_eq!(got.len() as u64, a + b);
    assert!(
        got.windows(2).all(|p| p[0].0 <= p[1].0),
        "sorted by arrival"
    );
    let high = got.iter().filter(|r| r.2 == Priority::High).count() as u64;
    let low = got.iter().filter(|r| r.2 == Priority::Low).count() as u64;
    assert_eq!((high, low), (a, b));
    // Each input starts at its own time 0.
    assert_eq!(got[0].0, 0);
    let first_low = got.iter().find(|r| r.2 == Priority::Low).unwrap().0;
    let first_high = got.iter().find(|r| r.2 == Priority::High).unwrap().0;
    assert_eq!(first_high.min(first_low), 0);
    // start_at moves an input on the merged axis, by exactly that much.
    let w = load(&two_inputs(
        "priority = \"high\"",
        "priority = \"low\"\nstart_at = \"2s\"",
    ))
    .unwrap();
    let shifted = replay(&w, 1);
    assert_eq!(shifted.len() as u64, a + b);
    let first_low_shifted = shifted.iter().find(|r| r.2 == Priority::Low).unwrap().0;
    assert_eq!(first_low_shifted, first_low + 2_000_000_000);
    // The same requests, whatever the seed (no global transform draws).
    let mut x = replay(&w, 1);
    let mut y = replay(&w, 2);
    x.sort_unstable();
    y.sort_unstable();
    assert_eq!(x, y);
}

#[test]
fn per_input_rules_apply_to_their_input_only() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("api-rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nquery = \"(?i)^\\\\s*update\"\npriority = \"high\"\n",
    )
    .unwrap();
    // The csvlog alone with its rules: how many requests they make high.
    let single = load(&format!(
        "[arrivals]\nkind = \"trace\"\npath = {}\nrules = {}\n",
        lit(&csvlog()),
        lit(&rules)
    ))
    .unwrap();
    let SourceSpec::Trace(t) = &single.source else {
        panic!()
    };
    let [high, normal, low] = t.trace.info.priority_counts;
    assert!(high > 0 && normal > 0 && low == 0, "{high} {normal} {low}");
    let b = requests_of(&pgbench());
    // Merged: the rules apply to the csvlog only; the pgbench input has its own.
    let w = load(&two_inputs(
        &format!("rules = {}", lit(&rules)),
        "priority = \"low\"",
    ))
    .unwrap();
    let SourceSpec::Trace(t) = &w.source else {
        panic!()
    };
    assert_eq!(t.trace.info.priority_counts, [high, normal, b]);
    // The same rules on the pgbench input instead: its SQL is not logged,
    // so nothing there matches, and the csvlog keeps its own priorities.
    let w = load(&two_inputs("", &format!("rules = {}", lit(&rules)))).unwrap();
    let SourceSpec::Trace(t) = &w.source else {
        panic!()
    };
    assert_eq!(
        t.trace.info.priority_counts,
        [0, high + normal + b, 0],
        "rules of one input leak into another"
    );
    // An input's `priority` overrides its rules.
    let w = load(&two_inputs(
        &format!("rules = {}\npriority = \"low\"", lit(&rules)),
        "",
    ))
    .unwrap();
    let SourceSpec::Trace(t) = &w.source else {
        panic!()
    };
    assert_eq!(t.trace.info.priority_counts, [0, b, high + normal]);
}

#[test]
fn order_is_by_arrival_with_ties_by_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    // Service times tell the inputs apart: a's are 1x, b's 2x.
    std::fs::write(&a, "arrival_ns,service_ns\n0,10\n5,11\n5,12\n9,13\n").unwrap();
    std::fs::write(&b, "arrival_ns,service_ns\n5,20\n7,21\n9,22\n").unwrap();
    let order = |first: &Path, second: &Path, offset: &str| {
        let text = format!(
            "[arrivals]\nkind = \"trace\"\n[[arrivals.inputs]]\npath = {}\n[[arrivals.inputs]]\npath = {}\nstart_at = \"{offset}\"\n",
            lit(first),
            lit(second)
        );
        replay(&load(&text).unwrap(), 7)
            .into_iter()
            .map(|r| (r.0, r.1))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        order(&a, &b, "0s"),
        vec![
            (0, 10),
            (5, 11),
            (5, 12),
            (5, 20),
            (7, 21),
            (9, 13),
            (9, 22)
        ]
    );
    assert_eq!(
        order(&b, &a, "0s"),
        vec![
            (0, 10),
            (5, 20),
            (5, 11),
            (5, 12),
            (7, 21),
            (9, 22),
            (9, 13)
        ]
    );
    // b moved 2 ns later: its 5 and 7 become 7 and 9, after a's 9 at the tie.
    assert_eq!(
        order(&a, &b, "2ns"),
        vec![
            (0, 10),
            (5, 11),
            (5, 12),
            (7, 20),
            (9, 13),
            (9, 21),
            (11, 22)
        ]
    );
}

#[test]
fn per_input_load_scales_that_input_only_and_deterministically() {
    let (a, b) = (requests_of(&csvlog()), requests_of(&pgbench()));
    let text = two_inputs(
        "priority = \"high\"\nload = 3.0",
        "priority = \"low\"\nload = 0.5",
    );
    let w = load(&text).unwrap();
    let got = replay(&w, 1);
    let high = got.iter().filter(|r| r.2 == Priority::High).count() as u64;
    let low = got.iter().filter(|r| r.2 == Priority::Low).count() as u64;
    // Load 3: every request and two copies each.
    assert_eq!(high, 3 * a);
    // Load 0.5 keeps each request with probability 1/2: within 4 sigma.
    let sd = (b as f64 * 0.25).sqrt();
    assert!(
        ((low as f64) - b as f64 / 2.0).abs() < 4.0 * sd,
        "{low} of {b}"
    );
    assert!(
        got.windows(2).all(|p| p[0].0 <= p[1].0),
        "sorted by arrival"
    );
    // The same thinning at every load of the workload.
    assert_eq!(replay(&load(&text).unwrap(), 9), got);
}

/// Runs `sim run` in `dir` writing to `out`; returns summary.json's bytes.
fn run_to(dir: &Path, args: &[&str], out: &str) -> Vec<u8> {
    let o = pooltune(dir)
        .args([
            "sim",
            "run",
            "--no-report",
            "--policy",
            "fixed-10",
            "-o",
            out,
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr_of(&o));
    std::fs::read(dir.join(out).join("summary.json")).unwrap()
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn same_seed_same_summary_and_the_hash_covers_every_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("w")).unwrap();
    // The csvlog decompressed, so that a test can edit its text.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(csvlog()).unwrap()),
        &mut text,
    )
    .unwrap();
    std::fs::write(d.join("w/api.csv"), &text).unwrap();
    std::fs::copy(pgbench(), d.join("w/batch.log")).unwrap();
    let workload = |extra: &str| {
        format!(
            "name = \"m\"\n[arrivals]\nkind = \"trace\"\n[[arrivals.inputs]]\npath = \"api.csv\"\nformat = \"csvlog\"\npriority = \"high\"\n[[arrivals.inputs]]\npath = \"batch.log\"\nformat = \"pgbench\"\npriority = \"low\"\n{extra}"
        )
    };
    std::fs::write(d.join("w/m.toml"), workload("")).unwrap();
    let a = run_to(d, &["--trace", "w/m.toml", "--seed", "5"], "a");
    let b = run_to(d, &["--trace", "w/m.toml", "--seed", "5"], "b");
    assert_eq!(a, b, "summary.json differs between two runs of one seed");
    let s = json(&a);
    let (na, nb) = (requests_of(&csvlog()), requests_of(&pgbench()));
    assert_eq!(s["runs"][0]["requests"]["arrived"], na + nb);
    assert_eq!(
        s["runs"][0]["by_priority"]["high"]["requests"]["arrived"],
        na
    );
    assert_eq!(
        s["runs"][0]["by_priority"]["low"]["requests"]["arrived"],
        nb
    );
    let inputs = &s["trace"]["config"]["trace_file"]["inputs"];
    assert_eq!(inputs[0]["path"], "api.csv");
    assert_eq!(inputs[1]["requests"], nb);
    let hash = s["trace"]["hash"].as_str().unwrap().to_string();
    let hash_of = |bytes: &[u8]| json(bytes)["trace"]["hash"].as_str().unwrap().to_string();

    // The same workload loaded from another directory: the same hash.
    let from_w = run_to(&d.join("w"), &["--trace", "m.toml", "--seed", "5"], "c");
    assert_eq!(hash_of(&from_w), hash);

    // An input setting changed: another hash.
    std::fs::write(d.join("w/m.toml"), workload("start_at = \"1s\"\n")).unwrap();
    assert_ne!(hash_of(&run_to(d, &["--trace", "w/m.toml"], "d")), hash);

    // One letter of a statement's text changed: every request is the same
    // (arrival, service, priority, kind), the file is not: another hash.
    std::fs::write(d.join("w/m.toml"), workload("")).unwrap();
    assert!(text.contains("from pgbench_branches"));
    std::fs::write(
        d.join("w/api.csv"),
        text.replacen("from pgbench_branches", "from pgbench_brancheZ", 1),
    )
    .unwrap();
    let changed = json(&run_to(d, &["--trace", "w/m.toml", "--seed", "5"], "e"));
    let trace_file = &changed["trace"]["config"]["trace_file"];
    assert_eq!(
        trace_file["requests_hash"],
        s["trace"]["config"]["trace_file"]["requests_hash"]
    );
    assert_ne!(
        trace_file["inputs"][0]["file_sha256"],
        inputs[0]["file_sha256"]
    );
    assert_ne!(changed["trace"]["hash"].as_str().unwrap(), hash);
}

#[test]
fn sim_run_merges_several_trace_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = (csvlog(), pgbench());
    let args = [
        "--trace",
        c.to_str().unwrap(),
        "--trace",
        p.to_str().unwrap(),
    ];
    let s = json(&run_to(dir.path(), &args, "out"));
    assert_eq!(
        s["runs"][0]["requests"]["arrived"],
        requests_of(&c) + requests_of(&p)
    );
    assert_eq!(s["trace"]["config"]["trace_file"]["format"], "merge of 2");
    let name = s["trace"]["name"].as_str().unwrap();
    assert!(name.starts_with("rate50+pgbench.closed."), "{name}");
    // A workload file cannot be one of several --trace values.
    let o = pooltune(dir.path())
        .args(["sim", "run", "--no-write", "--trace", c.to_str().unwrap()])
        .args(["--trace", "default"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr_of(&o).contains(
            "error: default: key `trace`: --trace given several times merges recorded trace files"
        ),
        "{}",
        stderr_of(&o)
    );
}

#[test]
fn bad_inputs_exit_3_naming_the_key_and_the_trace_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = lit(&csvlog());
    let p = lit(&pgbench());
    let cases = [
        (
            // The pgbench log read as csvlog: its first line is not csvlog.
            format!("[arrivals]\nkind = \"trace\"\n[[arrivals.inputs]]\npath = {c}\n[[arrivals.inputs]]\npath = {p}\nformat = \"csvlog\"\n"),
            format!("error: w.toml:6:1: key `arrivals.inputs[1].path`: trace {}:1", pgbench().display()),
        ),
        (
            format!("[arrivals]\nkind = \"trace\"\n[[arrivals.inputs]]\npath = {c}\n[[arrivals.inputs]]\npath = \"missing.log\"\n"),
            "error: w.toml:6:1: key `arrivals.inputs[1].path`: trace missing.log: cannot read: ".to_string(),
        ),
        (
            format!("[arrivals]\nkind = \"trace\"\n[[arrivals.inputs]]\npath = {c}\npriority = \"urgent\"\n"),
            "error: w.toml:5:1: key `arrivals.inputs[0].priority`: expected \"high\", \"normal\" or \"low\", got \"urgent\"".to_string(),
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(d.join("w.toml"), &text).unwrap();
        let o = pooltune(d)
            .args(["sim", "run", "--no-write", "--trace", "w.toml"])
            .output()
            .unwrap();
        let err = stderr_of(&o);
        assert_eq!(o.status.code(), Some(3), "{text}\n{err}");
        assert!(
            err.lines().last().unwrap().starts_with(&expected),
            "expected {expected}\ngot {err}"
        );
    }
}
