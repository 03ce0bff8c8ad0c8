//! The records of the canonical trace format and its file-level metadata.

use crate::core::request::{Kind, Priority, Request};
use crate::time::{SimDuration, SimTime};

/// One request of a trace as the canonical format stores it. String fields
/// are empty when absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    /// Nanoseconds from the trace start (the first arrival is usually 0).
    pub arrival_ns: u64,
    /// Nanoseconds of work once the request holds a connection.
    pub service_ns: u64,
    pub priority: Priority,
    pub kind: Kind,
    /// Connection or session key (csvlog session_id, pgbench client, ...).
    pub conn: String,
    /// Query identifier (PostgreSQL query_id = pg_stat_statements.queryid).
    pub query_id: String,
    /// A free label set by the importer or a rule (e.g. an application name).
    pub class: String,
    /// The statement text, when kept.
    pub sql: String,
    /// Index of the source file (into the trace's `source_files`), if known.
    pub source_file: Option<u32>,
    /// 1-based line of the source file the request came from, if known.
    pub source_line: Option<u64>,
}

impl Default for TraceRecord {
    fn default() -> Self {
        TraceRecord {
            arrival_ns: 0,
            service_ns: 0,
            priority: Priority::Normal,
            kind: Kind::Read,
            conn: String::new(),
            query_id: String::new(),
            class: String::new(),
            sql: String::new(),
            source_file: None,
            source_line: None,
        }
    }
}

impl TraceRecord {
    /// The request the simulator replays.
    #[inline]
    pub fn request(&self) -> Request {
        Request {
            arrival: SimTime(self.arrival_ns),
            service: SimDuration(self.service_ns),
            priority: self.priority,
            kind: self.kind,
            client: 0,
        }
    }
}

/// Parses a priority name: `high`, `normal`, `low` (any case; `h`, `n`,
/// `l` and `medium` too).
pub fn parse_priority(s: &[u8]) -> Option<Priority> {
    match s {
        b"normal" | b"n" => return Some(Priority::Normal),
        b"high" | b"h" => return Some(Priority::High),
        b"low" | b"l" => return Some(Priority::Low),
        _ => {}
    }
    let lower = std::str::from_utf8(s).ok()?.trim().to_ascii_lowercase();
    match lower.as_str() {
        "high" | "h" => Some(Priority::High),
        "normal" | "n" | "medium" => Some(Priority::Normal),
        "low" | "l" => Some(Priority::Low),
        _ => None,
    }
}

/// Parses a kind name: `read` or `write` (any case; `r`, `w`).
pub fn parse_kind(s: &[u8]) -> Option<Kind> {
    match s {
        b"read" | b"r" => return Some(Kind::Read),
        b"write" | b"w" => return Some(Kind::Write),
        _ => {}
    }
    let lower = std::str::from_utf8(s).ok()?.trim().to_ascii_lowercase();
    match lower.as_str() {
        "read" | "r" => Some(Kind::Read),
        "write" | "w" => Some(Kind::Write),
        _ => None,
    }
}

pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Read => "read",
        Kind::Write => "write",
    }
}

/// File-level facts of a trace, written in its header.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct TraceMeta {
    /// Format version (1).
    pub version: u32,
    /// Absolute time of arrival 0, nanoseconds since the Unix epoch (UTC),
    /// when the source had absolute times.
    pub start_unix_ns: Option<i64>,
    /// Uncertainty of arrival times: 1 for generated traces, 1 ms for
    /// csvlog/jsonlog (log_time has ms), 1 s for `%t`/syslog stamps, 1 us for
    /// pgbench logs. Arrivals may be off by up to this much.
    pub time_resolution_ns: u64,
    /// What produced the trace (`csvlog`, `pgbench`, `gen steady`, ...).
    pub source: String,
    /// The source files, in the order `source_file` indexes them.
    pub source_files: Vec<String>,
    /// Number of requests, when known when the header was written.
    pub requests: Option<u64>,
    /// Malformed input lines skipped by `--skip-bad` while producing it.
    pub skipped_lines: u64,
    /// The source had arrivals only (service times are 0): a replay must
    /// give a service distribution.
    pub no_service: bool,
}

impl TraceMeta {
    pub fn new(source: impl Into<String>, time_resolution_ns: u64) -> Self {
        TraceMeta {
            version: 1,
            start_unix_ns: None,
            time_resolution_ns,
            source: source.into(),
            source_files: Vec::new(),
            requests: None,
            skipped_lines: 0,
            no_service: false,
        }
    }
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with the
/// digits needed (`2026-11-27T11:41:03.383Z`).
pub fn format_unix_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = super::timestamp::civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(parse_priority(b"HIGH"), Some(Priority::High));
        assert_eq!(parse_priority(b" low "), Some(Priority::Low));
        assert_eq!(parse_priority(b"urgent"), None);
        assert_eq!(parse_kind(b"Write"), Some(Kind::Write));
        assert_eq!(parse_kind(b"update"), None);
    }

    #[test]
    fn unix_times_format_as_rfc3339() {
        assert_eq!(format_unix_ns(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_unix_ns(1_795_779_663_383_000_000),
            "2026-11-27T11:41:03.383Z"
        );
        assert_eq!(format_unix_ns(-1), "1969-12-31T23:59:59.999999999Z");
    }
}
