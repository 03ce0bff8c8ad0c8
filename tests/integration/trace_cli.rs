//! `pooltune trace ...` and `sim run --trace FILE` from the outside: exit
//! codes, messages that name file, line and field, `--skip-bad` counts in
//! `trace stats` and in summary.json, transforms; and no input makes a
//! parser panic (property tests, one per format).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use proptest::prelude::*;
use tempfile::TempDir;

use pooltune::trace::import::{import_files, Format, ImportOptions};

use super::trace_import::{data, thread_logs};

fn pooltune(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("pooltune").unwrap();
    cmd.current_dir(dir);
    cmd
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A real csvlog line of our recording (26 columns).
const CSVLOG_LINE: &str = "2026-11-28 05:16:13.433 UTC,\"postgres\",\"postgres\",20710,\"127.0.0.1:58890\",6b0a639d.50e6,3,\"SELECT\",2026-11-28 05:16:13 UTC,3/0,0,LOG,00000,\"duration: 0.885 ms  statement: select count(*) from pgbench_branches\",,,,,,,,,\"pgbench\",\"client backend\",,5314337695506712446";

/// (what, format, file contents, expected message after `error: <file>`).
fn malformed_cases() -> Vec<(&'static str, &'static str, String, &'static str)> {
    let good = CSVLOG_LINE.to_string();
    vec![
        (
            "truncated csvlog line",
            "csvlog",
            format!("{good}\n{}\n", &good[..good.find("duration").unwrap() + 12]),
            ":2:14: field `message`: a quoted field is not closed (truncated line?)",
        ),
        (
            "wrong csvlog column count",
            "csvlog",
            format!("{good}\n{}\n", good.rsplit_once(',').unwrap().0),
            ":2:25: field `leader_pid`: expected 23 (PostgreSQL 12 and older), 24 (13) or 26 (14-17) csvlog columns, got 25 (truncated line?)",
        ),
        (
            "bad duration number",
            "csvlog",
            format!("{good}\n{}\n", good.replace("0.885 ms", "0.8x5 ms")),
            ":2:14: field `message`: expected a duration in milliseconds, got `0.8x5`",
        ),
        (
            "bad log time",
            "csvlog",
            format!("{good}\n{}\n", good.replacen("2026-11-28 05:16:13.433", "2026-13-28 05:16:13.433", 1)),
            ":2:1: field `log_time`: expected a time such as `2026-11-27 11:41:03.383 UTC`, got `2026-13-28 05:16:13.433 UTC`",
        ),
        (
            "bad pgbench number",
            "pgbench",
            "0 1 1828 0 1795779663 414943 79\n1 1 23x7 0 1795779663 425441 79\n".into(),
            ":2:3: field `time`: expected a whole number, got `23x7`",
        ),
        (
            "pgbench microseconds out of range",
            "pgbench",
            "0 1 1828 0 1795779663 1414943\n".into(),
            ":1:6: field `time_us`: expected microseconds below 1000000, got 1414943",
        ),
        (
            "unknown priority",
            "canonical",
            "arrival_ns,service_ns,priority\n0,10,high\n5,10,urgent\n".into(),
            ":3:3: field `priority`: unknown priority `urgent` (expected high, normal or low)",
        ),
        (
            "non-monotone arrivals",
            "canonical",
            "arrival_ns,service_ns\n10,1\n5,1\n".into(),
            ":3:1: field `arrival_ns`: arrivals must be non-decreasing, got 5 ns after 10 ns (`pooltune trace import` sorts a trace)",
        ),
        (
            "negative time",
            "canonical",
            "arrival_s,service_ms\n-1.5,2\n".into(),
            ":2:1: field `arrival_s`: expected a non-negative decimal number, got `-1.5`",
        ),
        (
            "garbage bytes",
            "jsonlog",
            "\u{1}\u{2}garbage\u{7f}\n".into(),
            ":1:1: field `record`: not a JSON object: expected value",
        ),
        (
            "empty file",
            "csvlog",
            String::new(),
            ": no request found in the file (csvlog): 0 lines read, 0 entries that are not requests, 0 malformed lines skipped (requests come from `duration:` lines: set log_min_duration_statement = 0 and lc_messages = 'C' on the server)",
        ),
    ]
}

#[test]
fn malformed_input_names_file_line_and_field_or_is_skipped_and_counted() {
    let dir = TempDir::new().unwrap();
    for (what, format, text, want) in malformed_cases() {
        let input = write(dir.path(), "in.log", text.as_bytes());
        let out = pooltune(dir.path())
            .args([
                "trace", "import", "--format", format, "in.log", "-o", "out.csv",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{what}: {}", stderr_of(&out));
        assert_eq!(
            stderr_of(&out).trim_end(),
            format!("error: in.log{want}"),
            "{what}"
        );
        // With --skip-bad, the bad line is counted and the rest imported.
        let has_good = !matches!(
            what,
            "empty file" | "garbage bytes" | "negative time" | "pgbench microseconds out of range"
        );
        let out = pooltune(dir.path())
            .args([
                "trace",
                "import",
                "--skip-bad",
                "--format",
                format,
                "in.log",
                "-o",
                "out.csv",
            ])
            .output()
            .unwrap();
        if has_good {
            assert!(out.status.success(), "{what}: {}", stderr_of(&out));
            assert!(
                stderr_of(&out).contains("1 skipped malformed"),
                "{what}: {}",
                stderr_of(&out)
            );
            let stats = pooltune(dir.path())
                .args(["trace", "stats", "out.csv"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&stats.stdout).into_owned();
            assert!(text.contains("skipped malformed lines 1"), "{what}: {text}");
        } else {
            assert_eq!(out.status.code(), Some(3), "{what}: nothing valid left");
        }
        drop(input);
    }
}

#[test]
fn sim_run_replays_a_recorded_trace_and_counts_skipped_lines() {
    let dir = TempDir::new().unwrap();
    // A raw csvlog, imported on the fly, against one policy.
    let run = |args: &[&str]| {
        let out = pooltune(dir.path())
            .args([
                "sim",
                "run",
                "--no-write",
                "--format",
                "json",
                "--policy",
                "fixed-10",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let csvlog = data("rate50.csv.gz");
    let s = run(&["--trace", csvlog.to_str().unwrap()]);
    assert_eq!(s["runs"][0]["requests"]["arrived"], 611);
    assert_eq!(s["trace"]["config"]["trace_file"]["format"], "csvlog");
    assert_eq!(s["trace"]["name"], "rate50");
    // Twice as fast: the same requests over half the time.
    let fast = run(&[
        "--trace",
        csvlog.to_str().unwrap(),
        "--set",
        "arrivals.speed=2",
    ]);
    assert_eq!(fast["runs"][0]["requests"]["arrived"], 611);
    assert!(fast["runs"][0]["sim_duration_s"].as_f64() < s["runs"][0]["sim_duration_s"].as_f64());
    // A canonical trace with one malformed line: an error naming it, or
    // with skip_bad, a count in summary.json.
    write(
        dir.path(),
        "t.csv",
        b"arrival_ns,service_ns,priority\n0,1000000,high\n1000,oops,low\n2000,2000000,low\n",
    );
    let out = pooltune(dir.path())
        .args(["sim", "run", "--no-write", "--trace", "t.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stderr_of(&out).lines().last().unwrap(),
        "error: t.csv:3:2: key `service_ns`: expected a non-negative whole number of nanoseconds, got `oops`"
    );
    let s = run(&["--trace", "t.csv", "--set", "arrivals.skip_bad=true"]);
    assert_eq!(s["runs"][0]["requests"]["arrived"], 2);
    assert_eq!(s["trace"]["config"]["trace_file"]["skipped_lines"], 1);
    // A workload file naming the trace, relative to itself, with a database model.
    std::fs::create_dir(dir.path().join("w")).unwrap();
    std::fs::copy(data("rate50.csv.gz"), dir.path().join("w/rate50.csv.gz")).unwrap();
    write(
        dir.path(),
        "w/replay.toml",
        b"name = \"replay\"\n[arrivals]\nkind = \"trace\"\npath = \"rate50.csv.gz\"\nstart = \"500ms\"\n[database]\nmax_connections = 20\nusl_kappa = 0.001\n",
    );
    let s = run(&["--trace", "w/replay.toml"]);
    let arrived = s["runs"][0]["requests"]["arrived"].as_u64().unwrap();
    assert!(arrived > 300 && arrived < 611, "{arrived}");
    // A broken path in the workload file points at its key.
    write(
        dir.path(),
        "w/bad.toml",
        b"[arrivals]\nkind = \"trace\"\npath = \"nope.csv\"\n",
    );
    let out = pooltune(dir.path())
        .args(["sim", "run", "--no-write", "--trace", "w/bad.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr_of(&out).contains("w/nope.csv: cannot read"),
        "{}",
        stderr_of(&out)
    );
    // An arrival-only trace needs a service distribution.
    write(
        dir.path(),
        "arr.csv",
        b"timestamp,tokens\n2023-11-16 18:17:03.98,10\n2023-11-16 18:17:04.5,3\n",
    );
    let out = pooltune(dir.path())
        .args(["sim", "run", "--no-write", "--trace", "arr.csv"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr_of(&out).contains("has arrival times only"),
        "{}",
        stderr_of(&out)
    );
    let s = run(&[
        "--trace",
        "arr.csv",
        "--set",
        "service={kind=\"constant\",value=\"5ms\"}",
    ]);
    assert_eq!(s["runs"][0]["requests"]["arrived"], 2);
}

#[test]
fn stats_gen_and_transform_commands() {
    let dir = TempDir::new().unwrap();
    // gen: same seed, same bytes; another seed, other bytes.
    let gen = |seed: &str, out: &str| {
        let o = pooltune(dir.path())
            .args([
                "trace",
                "gen",
                "steady",
                "--set",
                "duration=\"20s\"",
                "--seed",
                seed,
                "-o",
                out,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr_of(&o));
        std::fs::read(dir.path().join(out)).unwrap()
    };
    let a = gen("7", "a.csv");
    assert_eq!(a, gen("7", "b.csv"));
    assert_ne!(a, gen("8", "c.csv"));
    // stats --json on the generated trace: Poisson inter-arrivals (cv ~ 1).
    let o = pooltune(dir.path())
        .args([
            "trace",
            "stats",
            "--json",
            "a.csv",
            "--rate-csv",
            "rate.csv",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n = s["requests"].as_u64().unwrap();
    assert!((n as f64 - 4000.0).abs() < 5.0 * 4000f64.sqrt(), "{n}");
    let cv = s["interarrival_ms"]["cv"].as_f64().unwrap();
    assert!((cv - 1.0).abs() < 0.08, "{cv}");
    assert!(std::fs::read_to_string(dir.path().join("rate.csv"))
        .unwrap()
        .starts_with("bin_start_s,requests,rate_per_s\n"));
    // transform: window and merge of the pgbench client logs, keeping order.
    let logs = thread_logs(&data(""), "pgbench.rate50.");
    let mut args: Vec<String> = vec!["trace".into(), "transform".into()];
    args.extend(logs.iter().map(|p| p.display().to_string()));
    args.extend(
        [
            "--format", "pgbench", "--start", "0.5s", "--end", "1.5s", "--speed", "2", "-o",
            "w.jsonl",
        ]
        .map(String::from),
    );
    let o = pooltune(dir.path()).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = std::fs::read_to_string(dir.path().join("w.jsonl")).unwrap();
    let arrivals: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["arrival_ns"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(!arrivals.is_empty());
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        *arrivals.last().unwrap() < 500_000_000,
        "a 1 s window at speed 2"
    );
    // Real arrivals, synthetic service.
    let o = pooltune(dir.path())
        .args([
            "trace",
            "transform",
            "a.csv",
            "--service",
            "{ kind = \"constant\", value = \"3ms\" }",
            "-o",
            "s.csv",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = std::fs::read_to_string(dir.path().join("s.csv")).unwrap();
    assert!(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .skip(1)
        .all(|l| l.split(',').nth(1) == Some("3000000")));
    // Bad flags say what is wrong.
    let o = pooltune(dir.path())
        .args(["trace", "transform", "a.csv", "--speed", "0", "-o", "x.csv"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr_of(&o).contains("speed must be a positive number"),
        "{}",
        stderr_of(&o)
    );
}

/// Every format's parser on arbitrary bytes (and on a real line with
/// arbitrary bytes around it): an error or a trace, never a panic.
fn never_panics(format: Format, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, bytes).unwrap();
    for skip_bad in [false, true] {
        let opts = ImportOptions {
            format: Some(format),
            skip_bad,
            prefix: matches!(format, Format::Stderr | Format::Syslog)
                .then(|| "%m [%p] %q%u@%d ".to_string()),
            time_unit_ns: Some(1_000_000),
            ..Default::default()
        };
        let _ = import_files(
            std::slice::from_ref(&input),
            &opts,
            &dir.path().join("out.csv"),
        );
    }
    let _ = pooltune::trace::import::detect::detect_bytes(bytes);
}

fn seeds() -> Vec<&'static str> {
    vec![
        CSVLOG_LINE,
        "0 1 1828 0 1795779663 414943 79",
        "{\"timestamp\":\"2026-11-27 11:41:03.280 UTC\",\"pid\":1,\"session_id\":\"a.b\",\"error_severity\":\"LOG\",\"message\":\"duration: 1.0 ms  statement: x\"}",
        "2022-02-17 14:45:10.440 UTC [691] postgres@db LOG:  duration: 0.140 ms  parse <unnamed>: select 1",
        "Feb 11 13:15:39 h postgres[1]: [1-1] LOG:  duration: 1 ms  statement: x",
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":\"5\",\"endTimeUnixNano\":\"3\",\"attributes\":[{\"key\":\"db.system\",\"value\":{\"stringValue\":\"postgresql\"}}]}]}]}]}",
        "arrival_ns,service_ns,priority,kind\n0,1,high,read",
        "timestamp,x\n2023-11-16 18:17:03.9799600,1",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Each case feeds every parser.
    #[test]
    fn no_parser_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        seed in 0usize..8,
        cut in 0usize..400,
    ) {
        // A real line, cut anywhere and followed by noise.
        let line = seeds()[seed].as_bytes();
        let mut mixed = line[..cut.min(line.len())].to_vec();
        mixed.push(b'\n');
        mixed.extend_from_slice(&bytes);
        mixed.push(b'\n');
        mixed.extend_from_slice(line);
        for format in Format::ALL {
            never_panics(format, &bytes);
            never_panics(format, &mixed);
        }
    }
}
