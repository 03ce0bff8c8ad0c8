//! Statement workloads against the real ephemeral PostgreSQL: `live
//! prepare` (pgbench tables), `live run --statements FILE` (weighted,
//! seeded, bound parameters), `live run --sql-from-trace` (recorded SQL in
//! read-only sessions), and statement-file errors.

use std::path::{Path, PathBuf};

use pooltune::config::Document;
use pooltune::live::statements;
use pooltune::live::LiveReport;
use pooltune::summary::Summary;
use proptest::prelude::*;

use crate::live_run::{assert_conserved, assert_no_backends_left, write};
use crate::pg_harness::{pooltune, PgCluster};

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(name)
}

fn count(pg: &PgCluster, sql: &str) -> i64 {
    pg.query(sql)[0].as_deref().unwrap().parse().unwrap()
}

fn prepare(pg: &PgCluster, extra: &[&str]) -> (String, String) {
    let run = pooltune()
        .args(["live", "prepare"])
        .args(extra)
        .arg("--database-url")
        .arg(pg.url())
        .assert()
        .success();
    let o = run.get_output();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(!out.contains(&pg.password) && !err.contains(&pg.password));
    (out, err)
}

/// Runs `live run` with `args`, writing to `out`; returns the summary and
/// live.json.
fn live_run(pg: &PgCluster, dir: &Path, out: &Path, args: &[&str]) -> (Summary, LiveReport) {
    let run = pooltune()
        .current_dir(dir)
        .args(["live", "run", "--format", "json"])
        .args(args)
        .arg("--database-url")
        .arg(pg.url())
        .arg("--out")
        .arg(out)
        .assert()
        .success();
    let o = run.get_output();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!stderr.contains(&pg.password), "{stderr}");
    let summary: Summary = serde_json::from_slice(&o.stdout).unwrap();
    let report: LiveReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("live.json")).unwrap()).unwrap();
    assert!(!std::fs::read_to_string(out.join("live.json"))
        .unwrap()
        .contains(&pg.password));
    (summary, report)
}

#[test]
fn live_prepare_creates_the_pgbench_tables_with_their_rows_and_is_idempotent() {
    let Some(pg) = PgCluster::start("live_prepare_creates_the_pgbench_tables") else {
        return;
    };
    let (out, _) = prepare(&pg, &["--scale", "2"]);
    assert!(
        out.contains("created the pgbench tables at scale 2"),
        "{out}"
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM pgbench_accounts"), 200_000);
    assert_eq!(count(&pg, "SELECT count(*) FROM pgbench_tellers"), 20);
    assert_eq!(count(&pg, "SELECT count(*) FROM pgbench_branches"), 2);
    assert_eq!(count(&pg, "SELECT count(*) FROM pgbench_history"), 0);
    assert_eq!(
        count(
            &pg,
            "SELECT count(DISTINCT aid) FROM pgbench_accounts WHERE aid BETWEEN 1 AND 200000"
        ),
        200_000
    );
    // Accounts belong to their branch as in pgbench.
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM pgbench_accounts WHERE bid <> (aid - 1) / 100000 + 1"
        ),
        0
    );
    // Primary keys exist, and the tables were analyzed.
    assert_eq!(
        count(&pg, "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text LIKE 'pgbench_%'"),
        3
    );
    assert_eq!(
        count(
            &pg,
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'pgbench_accounts'"
        ),
        200_000
    );
    // Again without --force: reported, nothing changed.
    pg.query("UPDATE pgbench_branches SET bbalance = 42 WHERE bid = 1");
    let (out, _) = prepare(&pg, &["--scale", "1"]);
    assert!(out.contains("exist already"), "{out}");
    assert!(out.contains("(scale 2)"), "{out}");
    assert!(out.contains("pgbench_accounts"), "{out}");
    assert_eq!(count(&pg, "SELECT count(*) FROM pgbench_accounts"), 200_000);
    assert_eq!(
        count(&pg, "SELECT bbalance FROM pgbench_branches WHERE bid = 1"),
        42
    );
    // --force recreates them at the new scale.
    let (out, _) = prepare(&pg, &["--scale", "1", "--force"]);
    assert!(
        out.contains("created the pgbench tables at scale 1"),
        "{out}"
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM pgbench_accounts"), 100_000);
    assert_eq!(count(&pg, "SELECT sum(bbalance) FROM pgbench_branches"), 0);
    // A scale out of range is refused before connecting.
    pooltune()
        .args(["live", "prepare", "--scale", "0", "--database-url"])
        .arg(pg.url())
        .assert()
        .code(3);
}

const TPCB_WORKLOAD: &str = r#"
name = "tpcb"
duration = "3s"
[arrivals]
kind = "poisson"
rate_per_s = 40.0
[service]
kind = "constant"
value = "5ms"
"#;

#[test]
fn live_tpcb_statements_write_one_history_row_per_completed_request() {
    let Some(pg) = PgCluster::start("live_tpcb_statements") else {
        return;
    };
    prepare(&pg, &[]);
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", TPCB_WORKLOAD);
    let file = shipped("pgbench-tpcb.toml");
    let out = dir.path().join("out");
    let (summary, report) = live_run(
        &pg,
        dir.path(),
        &out,
        &[
            "--policy",
            "fixed-10",
            "--trace",
            &trace,
            "--seed",
            "3",
            "--statements",
            file.to_str().unwrap(),
        ],
    );
    let r = &summary.runs[0];
    assert_conserved(r);
    assert!(r.requests.arrived > 60, "{:?}", r.requests);
    assert_eq!(report.statement_source, format!("file:{}", file.display()));
    assert_eq!(report.statements.len(), 1);
    let s = &report.statements[0];
    assert_eq!(s.name, "tpcb_transaction");
    assert_eq!(s.picked, r.requests.arrived);
    assert_eq!(s.completed, r.requests.completed);
    assert_eq!(s.failed, r.requests.failed);
    assert_eq!(s.failed, 0, "{:?}", report.errors);
    // Each completed request ran pgbench's whole transaction exactly once.
    let history = count(&pg, "SELECT count(*) FROM pgbench_history");
    assert_eq!(history as u64, s.completed);
    let delta = count(&pg, "SELECT coalesce(sum(delta), 0) FROM pgbench_history");
    for t in [
        "SELECT sum(abalance) FROM pgbench_accounts",
        "SELECT sum(tbalance) FROM pgbench_tellers",
        "SELECT sum(bbalance) FROM pgbench_branches",
    ] {
        assert_eq!(count(&pg, t), delta, "{t}");
    }
    // Parameters were drawn, not constant: many different accounts.
    assert!(count(&pg, "SELECT count(DISTINCT aid) FROM pgbench_history") as u64 > s.completed / 2);
    assert_no_backends_left(&pg);

    // The select-only mix runs too (and writes nothing).
    let out2 = dir.path().join("out2");
    let select = shipped("pgbench-select.toml");
    let (summary, report) = live_run(
        &pg,
        dir.path(),
        &out2,
        &[
            "--policy",
            "fixed-10",
            "--trace",
            &trace,
            "--statements",
            select.to_str().unwrap(),
        ],
    );
    assert_eq!(
        report.statements[0].completed,
        summary.runs[0].requests.completed
    );
    assert!(report.statements[0].completed > 60);
    assert_eq!(count(&pg, "SELECT count(*) FROM pgbench_history"), history);
}

const MIX_WORKLOAD: &str = r#"
name = "mix"
duration = "4s"
write_fraction = 0.5
[arrivals]
kind = "poisson"
rate_per_s = 50.0
[service]
kind = "constant"
value = "2ms"
"#;

const MIX_STATEMENTS: &str = r#"
description = "two writes 3:1 and a read, each leaving a trace"

[[statement]]
name = "w1"
kind = "write"
weight = 3
sql = "INSERT INTO marks (name, v) VALUES ('w1', $1)"
params = [{ uniform = [1, 1000] }]

[[statement]]
name = "w2"
kind = "write"
weight = 1
sql = "INSERT INTO marks (name, v) VALUES ($2, $1)"
params = [{ uniform = [1, 1000] }, { constant = "w2" }]

[[statement]]
name = "r"
kind = "read"
sql = "SELECT count(*) FROM marks WHERE v = $1 AND $2::float8 >= 0"
params = [{ constant = 7 }, { service = "seconds" }]
"#;

#[test]
fn live_statement_picks_follow_kind_and_weight_and_repeat_with_the_seed() {
    let Some(pg) = PgCluster::start("live_statement_picks") else {
        return;
    };
    pg.query("CREATE TABLE marks (name text, v int)");
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", MIX_WORKLOAD);
    let file = write(dir.path(), "mix.toml", MIX_STATEMENTS);
    let args = |extra: &'static [&'static str]| {
        let mut a: Vec<&str> = vec![
            "--policy",
            "fixed-10",
            "--trace",
            &trace,
            "--seed",
            "11",
            "--statements",
            &file,
        ];
        a.extend_from_slice(extra);
        a
    };
    let (s1, r1) = live_run(&pg, dir.path(), &dir.path().join("a"), &args(&[]));
    let rows = |name: &str| {
        count(
            &pg,
            &format!("SELECT count(*) FROM marks WHERE name = '{name}'"),
        ) as u64
    };
    let by = |r: &LiveReport, name: &str| {
        r.statements
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap()
    };
    let picked: Vec<u64> = r1.statements.iter().map(|s| s.picked).collect();
    assert_eq!(picked.iter().sum::<u64>(), s1.runs[0].requests.arrived);
    assert_eq!(rows("w1"), by(&r1, "w1").completed);
    assert_eq!(rows("w2"), by(&r1, "w2").completed);
    assert!(
        r1.statements.iter().all(|s| s.failed == 0),
        "{:?}",
        r1.errors
    );
    let writes = by(&r1, "w1").picked + by(&r1, "w2").picked;
    let reads = by(&r1, "r").picked;
    // write_fraction 0.5: both kinds arrive, and each runs its own kind.
    assert!(writes > 50 && reads > 50, "{writes} {reads}");
    // Weights 3:1 among the writes.
    let f = by(&r1, "w1").picked as f64 / writes as f64;
    assert!((0.6..0.9).contains(&f), "{f}");

    // The same seed, unprepared (parameters sent typed, one round trip):
    // the same statements are picked.
    let (_, r2) = live_run(
        &pg,
        dir.path(),
        &dir.path().join("b"),
        &args(&["--no-prepare"]),
    );
    let picked2: Vec<u64> = r2.statements.iter().map(|s| s.picked).collect();
    assert_eq!(picked, picked2);
    assert!(
        r2.statements.iter().all(|s| s.failed == 0),
        "{:?}",
        r2.errors
    );
    assert_eq!(
        rows("w1"),
        by(&r1, "w1").completed + by(&r2, "w1").completed
    );
    // Another seed picks differently.
    let (_, r3) = live_run(
        &pg,
        dir.path(),
        &dir.path().join("c"),
        &[
            "--policy",
            "fixed-10",
            "--trace",
            &trace,
            "--seed",
            "12",
            "--statements",
            &file,
        ],
    );
    let picked3: Vec<u64> = r3.statements.iter().map(|s| s.picked).collect();
    assert_ne!(picked, picked3);
}

#[test]
fn live_sql_from_trace_replays_reads_and_a_write_fails_read_only() {
    let Some(pg) = PgCluster::start("live_sql_from_trace") else {
        return;
    };
    pg.query("CREATE TABLE victims (id int)");
    let dir = tempfile::TempDir::new().unwrap();
    // One connection: a setting a statement changes would reach the next
    // statements, which try to write.
    let trace = write(
        dir.path(),
        "t.csv",
        "arrival_ns,service_ns,priority,kind,sql\n\
         0,1000000,normal,read,SELECT 1\n\
         100000000,1000000,normal,read,\"SELECT count(*) FROM pg_class WHERE relname <> 'x, y'\"\n\
         200000000,1000000,normal,write,INSERT INTO victims VALUES (1)\n\
         300000000,20000000,normal,read,\n\
         400000000,1000000,normal,write,SET default_transaction_read_only = off\n\
         500000000,1000000,normal,write,INSERT INTO victims VALUES (2)\n\
         600000000,1000000,normal,read,\"SELECT set_config('default_transaction_read_only', 'off', false)\"\n\
         700000000,1000000,normal,write,\"UPDATE victims SET id = 3; INSERT INTO victims VALUES (4)\"\n\
         800000000,1000000,normal,write,INSERT INTO victims VALUES (5)\n",
    );
    let out = dir.path().join("out");
    let (summary, report) = live_run(
        &pg,
        dir.path(),
        &out,
        &[
            "--policy",
            "fixed-10",
            "--set",
            "size.min=1",
            "--set",
            "size.max=1",
            "--trace",
            &trace,
            "--sql-from-trace",
        ],
    );
    let r = &summary.runs[0];
    assert_conserved(r);
    assert_eq!(r.requests.arrived, 9);
    // The three INSERTs and the two-statement string fail; the rest runs.
    assert_eq!(r.requests.failed, 4, "{:?}", report.errors);
    assert_eq!(r.requests.completed, 5);
    assert_eq!(count(&pg, "SELECT count(*) FROM victims"), 0);
    assert_eq!(report.statement_source, "trace-sql");
    let rec = &report.statements[0];
    assert_eq!((rec.name.as_str(), rec.picked), ("recorded", 8));
    assert_eq!((rec.completed, rec.failed), (4, 4));
    let sleep = &report.statements[1];
    assert_eq!(
        (sleep.name.as_str(), sleep.picked, sleep.completed),
        ("pg_sleep", 1, 1)
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("read-only transaction")),
        "{:?}",
        report.errors
    );
    assert_no_backends_left(&pg);
    // A generated workload has no recorded SQL: refused.
    let run = pooltune()
        .current_dir(dir.path())
        .args([
            "live",
            "run",
            "--no-write",
            "--sql-from-trace",
            "--database-url",
        ])
        .arg(pg.url())
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(stderr.contains("generated"), "{stderr}");
}

#[test]
fn live_statements_a_missing_table_fails_before_the_run_naming_the_statement() {
    let Some(pg) = PgCluster::start("live_statements_missing_table") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", TPCB_WORKLOAD);
    let run = pooltune()
        .current_dir(dir.path())
        .args([
            "live",
            "run",
            "--no-write",
            "--trace",
            &trace,
            "--statements",
        ])
        .arg(shipped("pgbench-select.toml"))
        .arg("--database-url")
        .arg(pg.url())
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(stderr.contains("select_balance"), "{stderr}");
    assert!(stderr.contains("pooltune live prepare"), "{stderr}");
    assert!(!stderr.contains(&pg.password));
}

#[test]
fn live_statement_file_errors_name_file_line_and_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let cases: [(&str, &str, &str); 4] = [
        (
            "[[statement]]\nkind = \"read\"\nsql = \"SELECT $1\"\nparams = [{ uniform = [9, 1] }]\n",
            ":4:",
            "statement[1].params[1].uniform",
        ),
        (
            "[[statement]]\nkind = \"read\"\nsql = \"SELECT 1\"\n\n[[statement]]\nkind = \"reed\"\nsql = \"SELECT 2\"\n",
            ":6:",
            "statement[2].kind",
        ),
        (
            "[[statement]]\nkind = \"read\"\nsql = \"SELECT $1, $2\"\nparams = [{ constant = 1 }]\n",
            ":3:",
            "statement[1].params",
        ),
        (
            "[[statement]]\nkind = \"read\"\nsql = \"SELECT 1\"\nweigth = 2\n",
            ":4:",
            "weigth",
        ),
    ];
    for (i, (text, line, key)) in cases.iter().enumerate() {
        let path = write(dir.path(), &format!("bad{i}.toml"), text);
        let run = pooltune()
            .args(["live", "run", "--no-write", "--statements", &path])
            .args(["--database-url", "postgres://u:Hush-Hush@127.0.0.1:1/db"])
            .assert()
            .code(3);
        let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!("{path}{line}")),
            "case {i}: {stderr}"
        );
        assert!(stderr.contains(key), "case {i}: {stderr}");
        assert!(!stderr.contains("Hush-Hush"));
    }
    // The shipped files are valid.
    for f in ["pgbench-select.toml", "pgbench-tpcb.toml"] {
        let file = statements::load(&shipped(f)).unwrap();
        assert_eq!(file.scale, 1);
        assert!(!file.statements.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Arbitrary text never panics the parser.
    #[test]
    fn live_statement_parser_never_panics_on_any_text(text in "\\PC{0,300}") {
        let _ = statements::parse(&Document::new("p.toml", text));
    }

    /// Nor do edits of a valid file (a byte replaced, a cut).
    #[test]
    fn live_statement_parser_never_panics_on_edited_files(
        at in 0usize..400,
        with in prop::sample::select(vec!["", "\"", "[", "]", "=", "$", "$0", "$99999999999999999999", "-1", "1e999", "{", "}", ",", "\n", "'"]),
        cut in 0usize..400,
    ) {
        let good = std::fs::read_to_string(shipped("pgbench-tpcb.toml")).unwrap();
        let at = at.min(good.len());
        let mut t = good.clone();
        if t.is_char_boundary(at) {
            t.insert_str(at, with);
        }
        let cut = cut.min(t.len());
        let t2: String = t.chars().take(cut).collect();
        for text in [t, t2] {
            if let Ok(f) = statements::parse(&Document::new("p.toml", text)) {
                // Whatever parses is usable: picks never panic either.
                let mut p = statements::Picker::new(&f, pooltune::rng::SeedTree::new(1).stream("p"));
                for k in [pooltune::core::request::Kind::Read, pooltune::core::request::Kind::Write] {
                    let (i, v) = p.pick(k, pooltune::time::SimDuration::from_millis(3));
                    prop_assert!(i < f.statements.len());
                    prop_assert_eq!(v.len(), f.statements[i].params.len());
                }
            }
        }
    }
}
