//! Importers on real data: the samples recorded with the local PostgreSQL
//! 15 and pgbench (`tests/data/`, see its README), and, when present, the
//! shared traces (`../shared/traces/`): counts that must agree between the
//! server's log, the client's log and pg_stat_statements.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pooltune::config::Document;
use pooltune::core::request::{Kind, Priority};
use pooltune::trace::canonical::CanonicalReader;
use pooltune::trace::import::{import_files, Format, ImportOptions, ImportReport};
use pooltune::trace::record::TraceRecord;
use pooltune::trace::rules::Rules;
use pooltune::trace::RecordStream;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `../shared/traces/<name>`, when the shared traces are there.
pub fn shared(name: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces")
        .join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

/// Files of `dir` whose names start with `prefix` (pgbench's per-thread
/// logs), sorted, without summaries.
pub fn thread_logs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(prefix) && !n.ends_with(".txt")
        })
        .collect();
    v.sort();
    v
}

/// Rules marking pgbench's statements with class `pgbench`.
fn pgbench_class() -> Rules {
    Rules::parse(&Document::new(
        "rules.toml",
        "[[rule]]\napplication = \"^pgbench$\"\nclass = \"pgbench\"\n",
    ))
    .unwrap()
}

pub fn import(inputs: &[PathBuf], opts: ImportOptions) -> (ImportReport, Vec<TraceRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.csv");
    let report =
        import_files(inputs, &opts, &out).unwrap_or_else(|e| panic!("importing {inputs:?}: {e}"));
    let mut r = CanonicalReader::open(&out, false).unwrap();
    let mut recs = Vec::new();
    let mut rec = TraceRecord::default();
    while r.next_record(&mut rec).unwrap() {
        recs.push(rec.clone());
    }
    assert_eq!(recs.len() as u64, report.requests);
    assert!(
        recs.windows(2).all(|w| w[0].arrival_ns <= w[1].arrival_ns),
        "sorted by arrival"
    );
    (report, recs)
}

fn opts() -> ImportOptions {
    ImportOptions::default()
}

fn with_rules(rules: Rules) -> ImportOptions {
    ImportOptions {
        rules,
        keep_sql: true,
        ..Default::default()
    }
}

/// query_id -> calls from a pg_stat_statements CSV export.
fn pgss(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            let q = f.next().unwrap().to_string();
            let calls: u64 = f.next().unwrap().parse().unwrap();
            (q, calls)
        })
        .collect()
}

fn per_query_id(recs: &[TraceRecord]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in recs {
        *m.entry(r.query_id.clone()).or_insert(0) += 1;
    }
    m
}

fn pgbench_transactions(summary: &Path) -> u64 {
    let text = std::fs::read_to_string(summary).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed"))
        .unwrap();
    // `1987`, or `200/200` for a run by transaction count.
    let n = line.rsplit(' ').next().unwrap();
    n.split('/').next().unwrap().parse().unwrap()
}

/// The key of a request for comparing imports of one run in several formats.
fn key(r: &TraceRecord) -> (u64, u64, Priority, Kind) {
    (r.arrival_ns, r.service_ns, r.priority, r.kind)
}

#[test]
fn csvlog_jsonlog_and_stderr_of_one_run_give_the_same_requests() {
    let prefix = "%m [%p] %q%u@%d app=%a ";
    let (rc, csv) = import(&[data("rate50.csv.gz")], with_rules(pgbench_class()));
    let (rj, json) = import(&[data("rate50.json.gz")], with_rules(pgbench_class()));
    let stderr_opts = ImportOptions {
        prefix: Some(prefix.into()),
        ..with_rules(pgbench_class())
    };
    let (rs, stderr) = import(&[data("rate50.stderr.log.bz2")], stderr_opts);
    assert_eq!(
        (rc.format.as_str(), rj.format.as_str(), rs.format.as_str()),
        ("csvlog", "jsonlog", "stderr")
    );
    assert_eq!(rc.time_resolution_ns, 1_000_000);
    assert_eq!(rs.time_resolution_ns, 1_000_000);
    let keys = |v: &[TraceRecord]| v.iter().map(key).collect::<Vec<_>>();
    assert_eq!(keys(&csv), keys(&json));
    assert_eq!(keys(&csv), keys(&stderr));
    // pgbench's statements: 7 per transaction (BEGIN, 3 UPDATE, SELECT,
    // INSERT, END) plus 5 set-up statements; the client logged the
    // transactions.
    let tx = pgbench_transactions(&data("pgbench.rate50.summary.txt"));
    for recs in [&csv, &json, &stderr] {
        let n = recs.iter().filter(|r| r.class == "pgbench").count() as u64;
        assert_eq!(n, 7 * tx + 5);
        assert_eq!(recs.iter().filter(|r| r.sql == "END;").count() as u64, tx);
    }
    // The client side of the same run: one request per transaction.
    let logs = thread_logs(&data(""), "pgbench.rate50.");
    assert_eq!(logs.len(), 2, "{logs:?}");
    let (_, client) = import(&logs, opts());
    assert_eq!(client.len() as u64, tx);
    // Kinds come from the command tag (csvlog) or the SQL (stderr).
    let writes = csv
        .iter()
        .filter(|r| r.class == "pgbench" && r.kind == Kind::Write)
        .count() as u64;
    assert_eq!(
        writes,
        4 * tx + 3,
        "3 UPDATE + INSERT per tx, 2 VACUUM + TRUNCATE"
    );
}

#[test]
fn query_id_counts_match_pg_stat_statements() {
    let calls = pgss(&data("rate50.pg_stat_statements.csv"));
    for file in ["rate50.csv.gz", "rate50.json.gz"] {
        let (_, recs) = import(&[data(file)], opts());
        let counts = per_query_id(&recs);
        for (q, c) in &calls {
            assert_eq!(counts.get(q), Some(c), "{file}: query_id {q}");
        }
    }
}

#[test]
fn pgbench_logs_with_and_without_schedule_lag() {
    // With -R: arrival is the schedule (completion - time), service excludes the lag.
    let logs = thread_logs(&data(""), "pgbench.rate50.");
    let first = std::fs::read_to_string(&logs[0]).unwrap();
    let f: Vec<u64> = first
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    let (report, recs) = import(&logs, opts());
    assert_eq!(report.time_resolution_ns, 1_000);
    let r = recs
        .iter()
        .find(|r| r.source_file == Some(0) && r.source_line == Some(1))
        .unwrap();
    assert_eq!(r.service_ns, (f[2] - f[6]) * 1_000);
    assert_eq!(r.conn, f[0].to_string());
    let completion = f[4] as i64 * 1_000_000_000 + f[5] as i64 * 1_000;
    let start = report.start_unix_ns.unwrap();
    assert_eq!(
        start + r.arrival_ns as i64,
        completion - f[2] as i64 * 1_000
    );
    // Arrival at the actual send instead: lag later.
    let sent = ImportOptions {
        pgbench_arrival: pooltune::trace::import::PgbenchArrival::Sent,
        ..opts()
    };
    let (r2, recs2) = import(&logs, sent);
    let r_sent = recs2
        .iter()
        .find(|r| r.source_file == Some(0) && r.source_line == Some(1))
        .unwrap();
    assert_eq!(
        r2.start_unix_ns.unwrap() + r_sent.arrival_ns as i64,
        completion - f[2] as i64 * 1_000 + f[6] as i64 * 1_000
    );
    // Closed loop (no lag column): service = latency.
    let closed = thread_logs(&data(""), "pgbench.closed.");
    let (_, recs) = import(&closed, opts());
    assert_eq!(
        recs.len() as u64,
        pgbench_transactions(&data("pgbench.closed.summary.txt"))
    );
}

fn count_lines(path: &Path, needle: &str) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .count() as u64
}

#[test]
fn extended_protocol_lines_merge_into_one_request() {
    let path = data("extended.csv");
    let (report, recs) = import(std::slice::from_ref(&path), with_rules(pgbench_class()));
    let parse = count_lines(&path, " ms  parse ");
    let bind = count_lines(&path, " ms  bind ");
    let execute = count_lines(&path, " ms  execute ");
    assert!(parse > 0 && bind > 0 && execute > 0);
    assert_eq!(
        report.merged,
        parse + bind,
        "every parse and bind folded in"
    );
    assert_eq!(report.unpaired, 0);
    let executed = recs
        .iter()
        .filter(|r| r.class == "pgbench" && r.sql.starts_with("UPDATE pgbench_accounts"))
        .count() as u64;
    let ends = recs
        .iter()
        .filter(|r| r.class == "pgbench" && r.sql == "END;")
        .count() as u64;
    assert_eq!(
        executed, ends,
        "one request per statement of each transaction"
    );
    assert_eq!(
        recs.iter().filter(|r| r.class == "pgbench").count() as u64,
        execute + 2 * 5,
        "executes plus the set-up statements of the two runs"
    );
}

#[test]
fn log_statement_lines_pair_with_their_durations() {
    let opts = ImportOptions {
        prefix: Some("%m [%p] %q%u@%d app=%a ".into()),
        ..with_rules(pgbench_class())
    };
    let path = data("logstatement.stderr.log");
    let (report, recs) = import(std::slice::from_ref(&path), opts);
    let statements = count_lines(&path, "LOG:  statement: ");
    let durations = count_lines(&path, "LOG:  duration: ");
    assert_eq!(statements, durations);
    assert_eq!(report.merged, statements);
    assert_eq!(report.unpaired, 0);
    assert_eq!(recs.len() as u64, durations);
    assert!(
        recs.iter().all(|r| !r.sql.is_empty()),
        "each request has its statement"
    );
}

#[test]
fn rules_assign_priorities_and_kinds() {
    let rules = Rules::parse(&Document::new(
        "r.toml",
        "[[rule]]\napplication = \"^psql$\"\npriority = \"high\"\n\
         [[rule]]\nquery = \"^SELECT abalance\"\npriority = \"low\"\nkind = \"write\"\n",
    ))
    .unwrap();
    let (_, recs) = import(&[data("rate50.csv.gz")], with_rules(rules));
    let high = recs.iter().filter(|r| r.priority == Priority::High).count();
    let low: Vec<_> = recs
        .iter()
        .filter(|r| r.priority == Priority::Low)
        .collect();
    assert!(high >= 1);
    assert!(
        !low.is_empty()
            && low
                .iter()
                .all(|r| r.kind == Kind::Write && r.sql.starts_with("SELECT abalance"))
    );
}

#[test]
fn otlp_spans_from_the_opentelemetry_sdk() {
    let rules = Rules::parse(&Document::new(
        "r.toml",
        "[[rule]]\napplication = \"^checkout-api$\"\nclass = \"checkout\"\n",
    ))
    .unwrap();
    let (report, recs) = import(&[data("otel/spans.otlp.jsonl")], with_rules(rules));
    assert_eq!(report.format, "otlp");
    // 3 clients x 40 statements (every 4th an UPDATE); 3 connect spans are not requests.
    assert_eq!(recs.len(), 120);
    assert_eq!(report.ignored, 3);
    assert_eq!(recs.iter().filter(|r| r.kind == Kind::Write).count(), 30);
    assert!(recs
        .iter()
        .all(|r| r.class == "checkout" && r.service_ns > 0));
    assert_eq!(
        report.time_resolution_ns, 1_000_000,
        "the JS SDK starts spans on whole ms"
    );
}

// ---- the shared traces (skipped when absent) ----

#[test]
fn shared_rate200_csvlog_pgbench_and_pg_stat_statements_agree() {
    let Some(dir) = shared("csvlog-local") else {
        return;
    };
    let (report, recs) = import(&[dir.join("rate200.csv")], with_rules(pgbench_class()));
    assert_eq!(report.format, "csvlog");
    let pgbench = recs.iter().filter(|r| r.class == "pgbench").count();
    assert_eq!(pgbench, 13_914);
    assert_eq!(pgbench, 7 * 1_987 + 5);
    let calls = pgss(&dir.join("pg_stat_statements.rate200.csv"));
    let counts = per_query_id(&recs);
    assert!(calls.len() >= 12);
    for (q, c) in &calls {
        assert_eq!(counts.get(q), Some(c), "query_id {q}");
    }
    let logs = vec![
        dir.join("logged_rate200.10585"),
        dir.join("logged_rate200.10585.1"),
    ];
    let (_, client) = import(&logs, opts());
    assert_eq!(client.len(), 1_987);
    // The same transactions seen from both sides start within the run.
    let (_, json) = import(&[dir.join("rate200.head3000.json")], opts());
    assert_eq!(json.len(), 2_973);
    let keys = |v: &[TraceRecord]| v.iter().map(key).take(2_000).collect::<Vec<_>>();
    assert_eq!(
        keys(&json),
        keys(&recs),
        "jsonlog and csvlog of the same run"
    );
}

#[test]
fn shared_extended_and_prepared_protocols() {
    let Some(dir) = shared("csvlog-local") else {
        return;
    };
    let (report, recs) = import(
        &[dir.join("extended_prepared.csv")],
        with_rules(pgbench_class()),
    );
    assert_eq!(report.unpaired, 0);
    let tx_ext = pgbench_transactions(&dir.join("extended.summary.txt"));
    let tx_prep = pgbench_transactions(&dir.join("prepared.summary.txt"));
    assert_eq!((tx_ext, tx_prep), (48, 44));
    let accounts = recs
        .iter()
        .filter(|r| r.sql.starts_with("UPDATE pgbench_accounts"))
        .count() as u64;
    assert_eq!(accounts, tx_ext + tx_prep);
    let statements = recs.iter().filter(|r| r.class == "pgbench").count() as u64;
    assert_eq!(statements, 7 * (tx_ext + tx_prep) + 2 * 5);
}

#[test]
fn shared_pgbench_logs() {
    let Some(dir) = shared("pgbench-local") else {
        return;
    };
    for (prefix, summary) in [
        ("tpcb.10060", "tpcb.summary.txt"),
        ("tpcb_rate500.10153", "tpcb_rate500.summary.txt"),
    ] {
        let logs = thread_logs(&dir, prefix);
        let (_, recs) = import(&logs, opts());
        assert_eq!(
            recs.len() as u64,
            pgbench_transactions(&dir.join(summary)),
            "{prefix}"
        );
        // pgbench's latency average includes the lag: mean(time) in the file.
        let mean_ms =
            recs.iter().map(|r| r.service_ns as f64).sum::<f64>() / recs.len() as f64 / 1e6;
        assert!(mean_ms > 0.5 && mean_ms < 20.0, "{prefix}: {mean_ms}");
    }
    let (_, recs) = import(&thread_logs(&dir, "select.9934"), opts());
    assert_eq!(recs.len(), 53_458);
    let e = import_files(
        &thread_logs(&dir, "select_agg1s.10383"),
        &opts(),
        &std::env::temp_dir().join("pooltune-agg-test.csv"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--aggregate-interval"), "{e}");
}

#[test]
fn shared_pgbadger_fixtures() {
    let Some(dir) = shared("pgbadger-fixtures") else {
        return;
    };
    let (r, _) = import(&[dir.join("light.postgres.log.bz2")], opts());
    assert_eq!(
        (r.format.as_str(), r.requests, r.time_resolution_ns),
        ("stderr", 629, 1_000_000_000)
    );
    let syslog = ImportOptions {
        year: Some(2019),
        ..opts()
    };
    let (r, recs) = import(&[dir.join("pg-syslog.1.bz2")], syslog);
    assert_eq!((r.format.as_str(), r.requests), ("syslog", 59_871));
    assert_eq!(
        pooltune::trace::record::format_unix_ns(r.start_unix_ns.unwrap())[..10],
        *"2019-02-11"
    );
    assert!(recs.iter().all(|r| !r.conn.is_empty()));
    let (r, _) = import(&[dir.join("rds.log.bz2")], opts());
    assert_eq!((r.format.as_str(), r.requests), ("stderr", 114_594));
    let qid = ImportOptions {
        prefix: Some("%m [%p] [queryid=%Q] %u@%d ".into()),
        ..opts()
    };
    let (r, recs) = import(&[dir.join("queryid.log.gz")], qid);
    assert_eq!(r.requests, 20);
    assert!(recs.iter().all(|r| !r.query_id.is_empty()));
    let (r, _) = import(&[dir.join("cnpg.log.gz")], opts());
    assert_eq!((r.format.as_str(), r.requests), ("cnpg", 400));
    // Cloud SQL export: parsed, but it holds no statement durations.
    let e = import_files(
        &[dir.join("cloudsql.log.gz")],
        &opts(),
        &std::env::temp_dir().join("pooltune-cs.csv"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no request found") && e.contains("(cloudsql)"),
        "{e}"
    );
    // Native jsonlog with no statements (autovacuum reports).
    let e = import_files(
        &[dir.join("pg_vacuums.json.gz")],
        &opts(),
        &std::env::temp_dir().join("pooltune-vac.csv"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no request found") && e.contains("(jsonlog)"),
        "{e}"
    );
}

#[test]
fn shared_arrival_only_public_traces() {
    if let Some(dir) = shared("azure-llm-2023") {
        let (r, recs) = import(&[dir.join("AzureLLMInferenceTrace_code.csv")], opts());
        assert_eq!((r.format.as_str(), r.requests), ("arrivals", 8_819));
        assert_eq!(r.time_resolution_ns, 100, "7 fractional digits");
        assert!(recs.iter().all(|r| r.service_ns == 0));
    }
    if let Some(dir) = shared("mooncake-fast25") {
        let ms = ImportOptions {
            format: Some(Format::Arrivals),
            time_unit_ns: Some(1_000_000),
            ..opts()
        };
        let (r, recs) = import(&[dir.join("conversation_trace.jsonl")], ms);
        assert_eq!(r.requests, 12_031);
        assert!(r.start_unix_ns.is_none(), "relative times");
        assert_eq!(recs[0].arrival_ns, 0);
        let e = import_files(
            &[dir.join("conversation_trace.jsonl")],
            &opts(),
            &std::env::temp_dir().join("pooltune-mc.csv"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--time-unit"), "{e}");
    }
}
