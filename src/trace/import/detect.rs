//! Format detection from a file's first 64 KiB (decompressed).

use std::path::PathBuf;

use serde_json::Value;

use super::Format;
use crate::trace::csvrow::CsvRow;
use crate::trace::error::TraceError;
use crate::trace::input;
use crate::trace::timestamp::{parse_datetime, parse_syslog};

/// Detects the format of the first of `paths`.
pub fn detect(paths: &[PathBuf]) -> Result<Format, TraceError> {
    let Some(path) = paths.first() else {
        return Err(TraceError::Invalid("no input file".into()));
    };
    let head = input::head(path, 1 << 16)?;
    detect_bytes(&head).map_err(|m| TraceError::file(path.display().to_string(), m))
}

fn starts_with_datetime(l: &[u8]) -> bool {
    l.len() >= 19 && parse_datetime(&l[..19]).is_some()
}

fn is_pgbench_line(l: &[u8]) -> bool {
    let f: Vec<&[u8]> = l
        .split(|c| c.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
        .collect();
    let num = |f: &[u8]| !f.is_empty() && f.iter().all(u8::is_ascii_digit);
    match f.len() {
        6..=8 => f
            .iter()
            .enumerate()
            .all(|(i, x)| num(x) || (i == 2 && (*x == b"failed" || *x == b"skipped"))),
        11..=15 => f.iter().all(|x| num(x)),
        _ => false,
    }
}

fn json_keys_format(v: &Value) -> Option<Format> {
    let m = v.as_object()?;
    let has = |k: &str| m.contains_key(k);
    let any_time = |prefix: &str| {
        ["ns", "us", "ms", "s"]
            .iter()
            .any(|u| has(&format!("{prefix}_{u}")))
    };
    if has("pooltune_trace") || (any_time("arrival") && any_time("service")) {
        return Some(Format::Canonical);
    }
    if has("resourceSpans") {
        return Some(Format::Otlp);
    }
    if has("record") && has("logger") {
        return Some(Format::Cnpg);
    }
    if has("textPayload") || has("insertId") || has("logName") {
        return Some(Format::CloudSql);
    }
    if has("error_severity")
        || (has("timestamp") && has("message") && (has("pid") || has("session_id")))
    {
        return Some(Format::Jsonlog);
    }
    if m.keys().any(|k| {
        [
            "timestamp",
            "time",
            "arrival",
            "arrival_time",
            "ts",
            "start_time",
            "created_at",
        ]
        .iter()
        .any(|t| k.eq_ignore_ascii_case(t))
    }) {
        return Some(Format::Arrivals);
    }
    None
}

/// Detects a format from the first bytes of a file.
pub fn detect_bytes(head: &[u8]) -> Result<Format, String> {
    let mut lines: Vec<&[u8]> = head.split(|&c| c == b'\n').collect();
    if head.len() >= 1 << 16 && lines.len() > 1 {
        lines.pop(); // a partial last line
    }
    let lines: Vec<&[u8]> = lines
        .into_iter()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.trim_ascii().is_empty())
        .take(50)
        .collect();
    let Some(first) = lines.first().map(|l| l.trim_ascii()) else {
        return Err("the file is empty".into());
    };
    if first.starts_with(b"# pooltune-trace") {
        return Ok(Format::Canonical);
    }
    if first.starts_with(b"{") {
        if let Ok(v) = serde_json::from_slice::<Value>(first) {
            if let Some(f) = json_keys_format(&v) {
                return Ok(f);
            }
            return Err("a JSON object of no known kind (expected a pooltune trace, PostgreSQL jsonlog, CloudNativePG, Cloud Logging, OTLP/JSON spans, or records with a time field)".into());
        }
        if memchr::memmem::find(head, b"\"resourceSpans\"").is_some() {
            return Ok(Format::Otlp);
        }
    }
    let n = lines.len();
    let majority = |count: usize| count * 2 >= n && count > 0;
    // csvlog: a time stamp, then about 22 more comma-separated fields.
    let csvlog = lines
        .iter()
        .filter(|l| starts_with_datetime(l) && memchr::memchr_iter(b',', l).count() >= 22)
        .count();
    if majority(csvlog) {
        return Ok(Format::Csvlog);
    }
    if majority(lines.iter().filter(|l| is_pgbench_line(l)).count()) {
        return Ok(Format::Pgbench);
    }
    let syslog = lines
        .iter()
        .filter(|l| {
            (parse_syslog(l).is_some() || starts_with_datetime(l) && l.get(10) == Some(&b'T'))
                && memchr::memmem::find(l, b"]: ").is_some()
        })
        .count();
    if majority(syslog) {
        return Ok(Format::Syslog);
    }
    let severities: [&[u8]; 6] = [
        b"LOG:  ",
        b"ERROR:  ",
        b"FATAL:  ",
        b"WARNING:  ",
        b"STATEMENT:  ",
        b"DETAIL:  ",
    ];
    let stderr = lines
        .iter()
        .filter(|l| {
            (starts_with_datetime(l) || l.first().is_some_and(u8::is_ascii_digit))
                && severities
                    .iter()
                    .any(|s| memchr::memmem::find(l, s).is_some())
        })
        .count();
    if majority(stderr) {
        return Ok(Format::Stderr);
    }
    // A CSV header: canonical, or arrivals with a time column.
    let mut row = CsvRow::new();
    if row.parse(first).is_ok() && !row.is_empty() {
        let names: Vec<String> = (0..row.len())
            .map(|i| {
                String::from_utf8_lossy(row.get(i))
                    .trim()
                    .to_ascii_lowercase()
            })
            .collect();
        let has_prefix = |p: &str| names.iter().any(|n| n.starts_with(p));
        if has_prefix("arrival_") && has_prefix("service_") {
            return Ok(Format::Canonical);
        }
        if names.iter().any(|n| {
            [
                "timestamp",
                "time",
                "arrival",
                "arrival_time",
                "ts",
                "start_time",
                "created_at",
            ]
            .contains(&n.as_str())
        }) {
            return Ok(Format::Arrivals);
        }
    }
    if first.starts_with(b"#") {
        return Ok(Format::Canonical);
    }
    Err(format!(
        "cannot tell the format from its first lines (`{}`); give it with --format ({})",
        crate::trace::error::excerpt(first),
        Format::ALL.map(|f| f.name()).join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart() {
        let cases: [(&[u8], Format); 10] = [
            (b"# pooltune-trace: 1\narrival_ns,service_ns\n", Format::Canonical),
            (b"arrival_ns,service_ns,priority\n0,1,high\n", Format::Canonical),
            (b"{\"arrival_ns\":0,\"service_ns\":1}\n", Format::Canonical),
            (b"2026-11-27 11:41:03.280 UTC,,,10573,,6b096c4f.294d,1,,2026-11-27 11:41:03 UTC,,0,LOG,00000,\"x\",,,,,,,,,\"\",\"postmaster\",,0\n", Format::Csvlog),
            (b"0 1 1828 0 1795779663 414943 79\n1 1 2317 0 1795779663 425441 79\n", Format::Pgbench),
            (b"Feb 11 13:15:39 test-pc postgres[10808]: [1-1] db=,user= LOG:  x\n", Format::Syslog),
            (b"2017-09-06 08:40:10 UTC [20]: [1-1] user=,db= LOG:  database system was shut down\n", Format::Stderr),
            (b"{\"timestamp\":\"2026-11-27 11:41:03.280 UTC\",\"pid\":1,\"error_severity\":\"LOG\",\"message\":\"x\"}\n", Format::Jsonlog),
            (b"{\"resourceSpans\":[]}\n", Format::Otlp),
            (b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n", Format::Arrivals),
        ];
        for (text, want) in cases {
            assert_eq!(
                detect_bytes(text),
                Ok(want),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        assert!(detect_bytes(b"").unwrap_err().contains("empty"));
        assert!(detect_bytes(b"hello world\n")
            .unwrap_err()
            .contains("--format"));
        assert_eq!(
            detect_bytes(b"{\"logger\":\"postgres\",\"record\":{}}\n"),
            Ok(Format::Cnpg)
        );
        assert_eq!(
            detect_bytes(b"{\"insertId\":\"x\",\"textPayload\":\"y\"}\n"),
            Ok(Format::CloudSql)
        );
        assert_eq!(
            detect_bytes(b"{\n  \"resourceSpans\": [\n"),
            Ok(Format::Otlp)
        );
    }
}
