//! The canonical trace format: what `trace import` and `trace gen` write and
//! what `sim run --trace` replays. Two encodings of the same records, CSV
//! and JSON Lines, read and written streaming (one record at a time).
//!
//! ## CSV
//!
//! ```text
//! # pooltune-trace: 1
//! # start_unix_ns: 1795779663382079000
//! # start: 2026-11-27T11:41:03.382079Z
//! # time_resolution_ns: 1000000
//! # source: csvlog
//! # source_file: 0 rate200.csv
//! # requests: 13918
//! # skipped_lines: 0
//! arrival_ns,service_ns,priority,kind,conn,query_id,source_file,source_line
//! 0,813000,normal,read,6b096c4f.2957,2927491712846248394,0,10
//! ```
//!
//! - Leading `# key: value` lines are metadata (all optional; unknown keys
//!   are ignored, so they double as comments). `start_unix_ns` is the
//!   absolute time of arrival 0 (UTC); `time_resolution_ns` how uncertain
//!   arrivals are (1 ms for csvlog, 1 s for `%t`/syslog, 1 us for pgbench);
//!   `requests` the record count; `skipped_lines` how many malformed input
//!   lines `--skip-bad` dropped while producing the trace; `service: none`
//!   marks an arrival-only trace (service times 0: replay it with a
//!   synthetic service distribution).
//! - Then a header row naming the columns, in any order:
//!   - `arrival_ns` (or `arrival_us`, `arrival_ms`, `arrival_s`, decimals
//!     allowed): time from the trace start; non-decreasing. Required.
//!   - `service_ns` (or `service_us`, `service_ms`, `service_s`): the work
//!     once a connection is held. Required.
//!   - `priority`: `high`, `normal` or `low` (default `normal`).
//!   - `kind`: `read` or `write` (default `read`).
//!   - `conn` (connection or session key), `query_id`, `class` (a free
//!     label), `sql`: optional strings.
//!   - `source_file` (an index into the `source_file` metadata) and
//!     `source_line` (1-based line of the original input): provenance.
//! - Fields follow RFC 4180 (quotes around commas, quotes, line breaks).
//!   Other columns are an error (a misspelt column must not be ignored).
//!
//! ## JSON Lines
//!
//! An optional first line `{"pooltune_trace":1,"start_unix_ns":...,
//! "time_resolution_ns":...,"source":"...","source_files":[...],
//! "requests":...,"skipped_lines":...}`, then one object per request with
//! the same keys as the CSV columns (`{"arrival_ns":0,"service_ns":813000,
//! "priority":"normal","kind":"read","conn":"6b096c4f.2957"}`); numbers as
//! JSON numbers, strings as strings. Unknown keys are an error.
//!
//! Either may be gzip- or bzip2-compressed (detected from the bytes; written
//! when the output name ends in `.gz` or `.bz2`).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::csvrow::{push_field, read_record, CsvRow};
use super::error::{excerpt, TraceError};
use super::input::LineReader;
use super::num::{parse_decimal_ns, parse_u64, push_u64};
use super::record::{
    format_unix_ns, kind_name, parse_kind, parse_priority, TraceMeta, TraceRecord,
};
use crate::core::request::{Kind, Priority};

/// The two encodings of the canonical format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Csv,
    Jsonl,
}

impl Encoding {
    /// From an output file name: `.jsonl`/`.ndjson`/`.json` (optionally
    /// followed by `.gz`/`.bz2`) is JSON Lines, anything else CSV.
    pub fn from_path(path: &Path) -> Encoding {
        let name = path.to_string_lossy().to_ascii_lowercase();
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".bz2"))
            .unwrap_or(&name);
        if name.ends_with(".jsonl") || name.ends_with(".ndjson") || name.ends_with(".json") {
            Encoding::Jsonl
        } else {
            Encoding::Csv
        }
    }
}

/// The most physical lines one CSV record may span (multi-line SQL).
const MAX_RECORD_LINES: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct TimeCol {
    index: usize,
    unit_ns: u64,
}

#[derive(Clone, Debug, Default)]
struct Columns {
    names: Vec<String>,
    arrival: Option<TimeCol>,
    service: Option<TimeCol>,
    priority: Option<usize>,
    kind: Option<usize>,
    conn: Option<usize>,
    query_id: Option<usize>,
    class: Option<usize>,
    sql: Option<usize>,
    source_file: Option<usize>,
    source_line: Option<usize>,
}

const COLUMN_HELP: &str = "arrival_ns (or arrival_us, arrival_ms, arrival_s), service_ns (or service_us, service_ms, service_s), priority, kind, conn, query_id, class, sql, source_file, source_line";

fn time_unit(suffix: &str) -> Option<u64> {
    Some(match suffix {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return None,
    })
}

impl Columns {
    fn from_header(row: &CsvRow, file: &str, line: u64) -> Result<Columns, TraceError> {
        let mut c = Columns::default();
        for i in 0..row.len() {
            let name = String::from_utf8_lossy(row.get(i)).trim().to_string();
            let bad = |msg: String| TraceError::bad(file, line, Some(i + 1), name.clone(), msg);
            let slot: &mut Option<usize> = match name.as_str() {
                "priority" => &mut c.priority,
                "kind" => &mut c.kind,
                "conn" => &mut c.conn,
                "query_id" => &mut c.query_id,
                "class" => &mut c.class,
                "sql" => &mut c.sql,
                "source_file" => &mut c.source_file,
                "source_line" => &mut c.source_line,
                other => {
                    let (which, unit) = match other.split_once('_') {
                        Some((w @ ("arrival" | "service"), u)) => (w, time_unit(u)),
                        _ => ("", None),
                    };
                    let Some(unit_ns) = unit else {
                        return Err(bad(format!(
                            "unknown column (a canonical trace has: {COLUMN_HELP})"
                        )));
                    };
                    let col = if which == "arrival" {
                        &mut c.arrival
                    } else {
                        &mut c.service
                    };
                    if col.is_some() {
                        return Err(bad(format!("a second {which} column")));
                    }
                    *col = Some(TimeCol { index: i, unit_ns });
                    c.names.push(name);
                    continue;
                }
            };
            if slot.is_some() {
                return Err(bad("the column appears twice".to_string()));
            }
            *slot = Some(i);
            c.names.push(name);
        }
        if c.arrival.is_none() || c.service.is_none() {
            let missing = if c.arrival.is_none() {
                "arrival_ns"
            } else {
                "service_ns"
            };
            return Err(TraceError::bad(
                file,
                line,
                None,
                missing,
                format!(
                    "the header row has no `{missing}` column (a canonical trace has: {COLUMN_HELP})"
                ),
            ));
        }
        Ok(c)
    }
}

/// The JSON Lines header object.
#[derive(Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields)]
struct JsonHeader {
    pooltune_trace: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_unix_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<String>,
    #[serde(default = "one")]
    time_resolution_ns: u64,
    #[serde(default)]
    source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    source_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests: Option<u64>,
    #[serde(default)]
    skipped_lines: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    no_service: bool,
}

fn one() -> u64 {
    1
}

/// One JSON Lines record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord<'a> {
    arrival_ns: Option<u64>,
    arrival_us: Option<f64>,
    arrival_ms: Option<f64>,
    arrival_s: Option<f64>,
    service_ns: Option<u64>,
    service_us: Option<f64>,
    service_ms: Option<f64>,
    service_s: Option<f64>,
    #[serde(borrow)]
    priority: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    conn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    query_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    class: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sql: Option<Cow<'a, str>>,
    source_file: Option<u32>,
    source_line: Option<u64>,
}

/// A streaming reader of a canonical trace (either encoding, optionally
/// compressed). With `skip_bad`, malformed records are counted and
/// skipped; otherwise the first one is an error naming file, line, field.
pub struct CanonicalReader {
    lines: LineReader,
    encoding: Encoding,
    cols: Columns,
    meta: TraceMeta,
    /// A JSON record line read while looking for the header.
    pending: Option<(Vec<u8>, u64)>,
    raw: Vec<u8>,
    row: CsvRow,
    skip_bad: bool,
    skipped: u64,
    last_arrival: Option<u64>,
    /// Whether to fill the string fields (replay does not need them).
    pub want_strings: bool,
}

impl CanonicalReader {
    /// Opens a canonical trace and reads its metadata and header.
    pub fn open(path: &Path, skip_bad: bool) -> Result<CanonicalReader, TraceError> {
        let mut lines = LineReader::open(path)?;
        let file = lines.name.clone();
        let mut meta = TraceMeta::new("", 1);
        meta.version = 0;
        let mut r = loop {
            let Some(l) = lines.next_line()? else {
                return Err(TraceError::file(
                    file,
                    format!("empty: no header row (a canonical trace starts with a header row of {COLUMN_HELP}, or is JSON Lines)"),
                ));
            };
            let owned = trim_ascii(l).to_vec();
            let l = owned.as_slice();
            if l.is_empty() {
                continue;
            }
            if let Some(m) = l.strip_prefix(b"#") {
                parse_meta_line(&mut meta, m, &file, lines.line)?;
                continue;
            }
            if l.starts_with(b"{") {
                let line_no = lines.line;
                let copy = l.to_vec();
                let mut r = CanonicalReader::new(
                    lines,
                    Encoding::Jsonl,
                    Columns::default(),
                    meta,
                    skip_bad,
                );
                match serde_json::from_slice::<JsonHeader>(&copy) {
                    Ok(h) => r.meta = header_meta(h),
                    Err(_) if !copy_has_key(&copy, "pooltune_trace") => {
                        r.pending = Some((copy, line_no));
                    }
                    Err(e) => {
                        return Err(TraceError::bad(
                            &file,
                            line_no,
                            None,
                            "pooltune_trace",
                            format!("bad header object: {e}"),
                        ))
                    }
                }
                break r;
            }
            let mut row = CsvRow::new();
            let header_line = lines.line;
            let l = l.to_vec();
            row.parse(&l).map_err(|e| {
                TraceError::bad(&file, header_line, Some(e.field), "header", e.message)
            })?;
            let cols = Columns::from_header(&row, &file, header_line)?;
            break CanonicalReader::new(lines, Encoding::Csv, cols, meta, skip_bad);
        };
        if r.meta.version == 0 {
            r.meta.version = 1;
        }
        r.meta.time_resolution_ns = r.meta.time_resolution_ns.max(1);
        Ok(r)
    }

    fn new(
        lines: LineReader,
        encoding: Encoding,
        cols: Columns,
        meta: TraceMeta,
        skip_bad: bool,
    ) -> Self {
        CanonicalReader {
            lines,
            encoding,
            cols,
            meta,
            pending: None,
            raw: Vec::with_capacity(256),
            row: CsvRow::new(),
            skip_bad,
            skipped: 0,
            last_arrival: None,
            want_strings: true,
        }
    }

    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Malformed records skipped so far (with `skip_bad`).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Names the file differently in messages.
    pub fn rename(&mut self, name: &str) {
        self.lines.name = name.to_string();
    }

    /// The file's display name.
    pub fn name(&self) -> &str {
        &self.lines.name
    }

    /// Reads the next record into `rec`; `false` at the end.
    pub fn next_into(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
        loop {
            let line = match self.encoding {
                Encoding::Csv => {
                    match read_record(&mut self.lines, &mut self.raw, MAX_RECORD_LINES)? {
                        None => return Ok(false),
                        Some(l) => l,
                    }
                }
                Encoding::Jsonl => {
                    if let Some((bytes, l)) = self.pending.take() {
                        self.raw = bytes;
                        l
                    } else {
                        match self.lines.next_line()? {
                            None => return Ok(false),
                            Some(b) => {
                                self.raw.clear();
                                self.raw.extend_from_slice(b);
                                self.lines.line
                            }
                        }
                    }
                }
            };
            let t = trim_ascii(&self.raw);
            if t.is_empty() || (self.encoding == Encoding::Csv && t[0] == b'#') {
                continue;
            }
            let parsed = match self.encoding {
                Encoding::Csv => self.parse_csv(rec, line),
                Encoding::Jsonl => self.parse_json(rec, line),
            };
            let checked = parsed.and_then(|()| {
                if let Some(last) = self.last_arrival {
                    if rec.arrival_ns < last {
                        let field = match self.encoding {
                            Encoding::Csv => self.cols.names[self.cols.arrival.map(|a| a.index).unwrap_or(0)].clone(),
                            Encoding::Jsonl => "arrival_ns".to_string(),
                        };
                        return Err(TraceError::bad(
                            &self.lines.name,
                            line,
                            self.cols.arrival.map(|a| a.index + 1),
                            field,
                            format!(
                                "arrivals must be non-decreasing, got {} ns after {} ns (`pooltune trace import` sorts a trace)",
                                rec.arrival_ns, last
                            ),
                        ));
                    }
                }
                Ok(())
            });
            match checked {
                Ok(()) => {
                    self.last_arrival = Some(rec.arrival_ns);
                    return Ok(true);
                }
                Err(e) if self.skip_bad && !e.is_io() => {
                    self.skipped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn parse_csv(&mut self, rec: &mut TraceRecord, line: u64) -> Result<(), TraceError> {
        let file = &self.lines.name;
        let cols = &self.cols;
        self.row.parse(&self.raw).map_err(|e| {
            TraceError::bad(
                file,
                line,
                Some(e.field),
                field_name(cols, e.field - 1),
                e.message,
            )
        })?;
        let row = &self.row;
        if row.len() != cols.names.len() {
            return Err(TraceError::bad(
                file,
                line,
                Some(row.len().min(cols.names.len()) + 1),
                field_name(cols, row.len().min(cols.names.len())),
                format!(
                    "expected {} fields ({}), got {}",
                    cols.names.len(),
                    cols.names.join(","),
                    row.len()
                ),
            ));
        }
        let time = |tc: TimeCol| -> Result<u64, TraceError> {
            let raw = row.get(tc.index);
            let v = if tc.unit_ns == 1 {
                parse_u64(raw)
            } else {
                parse_decimal_ns(raw, tc.unit_ns)
            };
            v.ok_or_else(|| {
                TraceError::bad(
                    file,
                    line,
                    Some(tc.index + 1),
                    cols.names[tc.index].clone(),
                    format!(
                        "expected a non-negative {}, got `{}`",
                        if tc.unit_ns == 1 {
                            "whole number of nanoseconds"
                        } else {
                            "decimal number"
                        },
                        excerpt(raw)
                    ),
                )
            })
        };
        rec.arrival_ns = time(cols.arrival.expect("checked at open"))?;
        rec.service_ns = time(cols.service.expect("checked at open"))?;
        rec.priority = match cols.priority {
            Some(i) if !row.get(i).is_empty() => parse_priority(row.get(i)).ok_or_else(|| {
                TraceError::bad(
                    file,
                    line,
                    Some(i + 1),
                    "priority",
                    format!(
                        "unknown priority `{}` (expected high, normal or low)",
                        excerpt(row.get(i))
                    ),
                )
            })?,
            _ => Priority::Normal,
        };
        rec.kind = match cols.kind {
            Some(i) if !row.get(i).is_empty() => parse_kind(row.get(i)).ok_or_else(|| {
                TraceError::bad(
                    file,
                    line,
                    Some(i + 1),
                    "kind",
                    format!(
                        "unknown kind `{}` (expected read or write)",
                        excerpt(row.get(i))
                    ),
                )
            })?,
            _ => Kind::Read,
        };
        let opt_u64 = |col: Option<usize>, name: &str| -> Result<Option<u64>, TraceError> {
            match col {
                Some(i) if !row.get(i).is_empty() => {
                    parse_u64(row.get(i)).map(Some).ok_or_else(|| {
                        TraceError::bad(
                            file,
                            line,
                            Some(i + 1),
                            name,
                            format!("expected a whole number, got `{}`", excerpt(row.get(i))),
                        )
                    })
                }
                _ => Ok(None),
            }
        };
        let sf = opt_u64(cols.source_file, "source_file")?;
        rec.source_file = match sf {
            Some(v) => Some(u32::try_from(v).map_err(|_| {
                TraceError::bad(
                    file,
                    line,
                    cols.source_file.map(|i| i + 1),
                    "source_file",
                    "expected a file index below 2^32",
                )
            })?),
            None => None,
        };
        rec.source_line = opt_u64(cols.source_line, "source_line")?;
        if self.want_strings {
            let text =
                |col: Option<usize>, out: &mut String, name: &str| -> Result<(), TraceError> {
                    out.clear();
                    if let Some(i) = col {
                        let s = std::str::from_utf8(row.get(i)).map_err(|_| {
                            TraceError::bad(file, line, Some(i + 1), name, "not valid UTF-8")
                        })?;
                        out.push_str(s);
                    }
                    Ok(())
                };
            text(cols.conn, &mut rec.conn, "conn")?;
            text(cols.query_id, &mut rec.query_id, "query_id")?;
            text(cols.class, &mut rec.class, "class")?;
            text(cols.sql, &mut rec.sql, "sql")?;
        }
        Ok(())
    }

    fn parse_json(&mut self, rec: &mut TraceRecord, line: u64) -> Result<(), TraceError> {
        let file = &self.lines.name;
        let mut de = serde_json::Deserializer::from_slice(&self.raw);
        let j: JsonRecord = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if path == "." || path.is_empty() {
                "record".to_string()
            } else {
                path
            };
            TraceError::bad(
                file,
                line,
                Some(inner.column()),
                field,
                json_message(&inner),
            )
        })?;
        de.end().map_err(|e| {
            TraceError::bad(file, line, Some(e.column()), "record", json_message(&e))
        })?;
        let pick = |ns: Option<u64>,
                    us: Option<f64>,
                    ms: Option<f64>,
                    s: Option<f64>,
                    name: &str|
         -> Result<u64, TraceError> {
            let given = [ns.is_some(), us.is_some(), ms.is_some(), s.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            if given != 1 {
                return Err(TraceError::bad(
                    file,
                    line,
                    None,
                    format!("{name}_ns"),
                    format!(
                    "expected exactly one of {name}_ns, {name}_us, {name}_ms, {name}_s, got {given}"
                ),
                ));
            }
            if let Some(v) = ns {
                return Ok(v);
            }
            let (v, unit, key) = match (us, ms, s) {
                (Some(v), _, _) => (v, 1_000, "us"),
                (_, Some(v), _) => (v, 1_000_000, "ms"),
                (_, _, Some(v)) => (v, 1_000_000_000, "s"),
                _ => unreachable!("one is given"),
            };
            parse_decimal_ns(format!("{v}").as_bytes(), unit).ok_or_else(|| {
                TraceError::bad(
                    file,
                    line,
                    None,
                    format!("{name}_{key}"),
                    format!("expected a non-negative number, got {v}"),
                )
            })
        };
        rec.arrival_ns = pick(
            j.arrival_ns,
            j.arrival_us,
            j.arrival_ms,
            j.arrival_s,
            "arrival",
        )?;
        rec.service_ns = pick(
            j.service_ns,
            j.service_us,
            j.service_ms,
            j.service_s,
            "service",
        )?;
        rec.priority = match &j.priority {
            Some(p) => parse_priority(p.as_bytes()).ok_or_else(|| {
                TraceError::bad(
                    file,
                    line,
                    None,
                    "priority",
                    format!(
                        "unknown priority `{}` (expected high, normal or low)",
                        excerpt(p.as_bytes())
                    ),
                )
            })?,
            None => Priority::Normal,
        };
        rec.kind = match &j.kind {
            Some(k) => parse_kind(k.as_bytes()).ok_or_else(|| {
                TraceError::bad(
                    file,
                    line,
                    None,
                    "kind",
                    format!(
                        "unknown kind `{}` (expected read or write)",
                        excerpt(k.as_bytes())
                    ),
                )
            })?,
            None => Kind::Read,
        };
        rec.source_file = j.source_file;
        rec.source_line = j.source_line;
        if self.want_strings {
            let set = |out: &mut String, v: &Option<Cow<str>>| {
                out.clear();
                if let Some(v) = v {
                    out.push_str(v);
                }
            };
            set(&mut rec.conn, &j.conn);
            set(&mut rec.query_id, &j.query_id);
            set(&mut rec.class, &j.class);
            set(&mut rec.sql, &j.sql);
        }
        Ok(())
    }
}

/// serde_json's message without its " at line L column C" (the error
/// already names the line and column).
pub fn json_message(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn field_name(cols: &Columns, i: usize) -> String {
    cols.names
        .get(i)
        .cloned()
        .unwrap_or_else(|| format!("column {}", i + 1))
}

fn copy_has_key(json: &[u8], key: &str) -> bool {
    let needle = format!("\"{key}\"");
    json.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn header_meta(h: JsonHeader) -> TraceMeta {
    TraceMeta {
        version: h.pooltune_trace,
        start_unix_ns: h.start_unix_ns,
        time_resolution_ns: h.time_resolution_ns,
        source: h.source,
        source_files: h.source_files,
        requests: h.requests,
        skipped_lines: h.skipped_lines,
        no_service: h.no_service,
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map(|i| i + 1)
        .unwrap_or(start);
    &b[start..end.max(start)]
}

/// Reads one `# key: value` metadata line into `meta`.
fn parse_meta_line(
    meta: &mut TraceMeta,
    body: &[u8],
    file: &str,
    line: u64,
) -> Result<(), TraceError> {
    let text = String::from_utf8_lossy(body);
    let Some((key, value)) = text.split_once(':') else {
        return Ok(()); // a plain comment
    };
    let key = key.trim();
    let value = value.trim();
    let bad = |what: &str| {
        TraceError::bad(
            file,
            line,
            None,
            key,
            format!("expected {what}, got `{}`", excerpt(value.as_bytes())),
        )
    };
    match key {
        "pooltune-trace" => {
            meta.version = value.parse().map_err(|_| bad("a format version (1)"))?;
            if meta.version != 1 {
                return Err(TraceError::bad(
                    file,
                    line,
                    None,
                    key,
                    format!(
                        "this pooltune reads format version 1, the file is version {}",
                        meta.version
                    ),
                ));
            }
        }
        "start_unix_ns" => {
            meta.start_unix_ns = Some(
                value
                    .parse()
                    .map_err(|_| bad("nanoseconds since the Unix epoch"))?,
            )
        }
        "time_resolution_ns" => {
            meta.time_resolution_ns = value
                .parse()
                .map_err(|_| bad("a whole number of nanoseconds"))?
        }
        "source" => meta.source = value.to_string(),
        "source_file" => {
            let (idx, name) = value.split_once(' ').ok_or_else(|| bad("`INDEX NAME`"))?;
            let idx: usize = idx.parse().map_err(|_| bad("`INDEX NAME`"))?;
            if idx != meta.source_files.len() {
                return Err(bad(&format!(
                    "source_file {} next",
                    meta.source_files.len()
                )));
            }
            meta.source_files.push(name.to_string());
        }
        "requests" => meta.requests = Some(value.parse().map_err(|_| bad("a request count"))?),
        "skipped_lines" => meta.skipped_lines = value.parse().map_err(|_| bad("a line count"))?,
        "service" => {
            meta.no_service = match value {
                "none" => true,
                "recorded" => false,
                _ => return Err(bad("`recorded` or `none`")),
            }
        }
        _ => {}
    }
    Ok(())
}

/// Which optional columns a writer emits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionalColumns {
    pub priority: bool,
    pub kind: bool,
    pub conn: bool,
    pub query_id: bool,
    pub class: bool,
    pub sql: bool,
    pub source_file: bool,
    pub source_line: bool,
}

impl OptionalColumns {
    /// Priority and kind only (generated traces).
    pub fn minimal() -> Self {
        OptionalColumns {
            priority: true,
            kind: true,
            ..Default::default()
        }
    }

    /// Every optional column (merges and re-writes that keep everything).
    pub fn all() -> Self {
        OptionalColumns {
            priority: true,
            kind: true,
            conn: true,
            query_id: true,
            class: true,
            sql: true,
            source_file: true,
            source_line: true,
        }
    }
}

/// A streaming writer of a canonical trace.
pub struct CanonicalWriter {
    out: Box<dyn Write + Send>,
    path: PathBuf,
    encoding: Encoding,
    cols: OptionalColumns,
    buf: Vec<u8>,
    written: u64,
    last_arrival: u64,
}

impl CanonicalWriter {
    /// Creates `path` (`-` is standard output), compressed when its name ends
    /// in `.gz` or `.bz2`, and writes the header.
    pub fn create(
        path: &Path,
        encoding: Encoding,
        meta: &TraceMeta,
        cols: OptionalColumns,
    ) -> Result<CanonicalWriter, TraceError> {
        let werr = |source| TraceError::Write {
            path: path.to_path_buf(),
            source,
        };
        let raw: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(File::create(path).map_err(werr)?)
        };
        let name = path.to_string_lossy().to_ascii_lowercase();
        let out: Box<dyn Write + Send> = if name.ends_with(".gz") {
            Box::new(BufWriter::with_capacity(
                1 << 20,
                flate2::write::GzEncoder::new(raw, flate2::Compression::default()),
            ))
        } else if name.ends_with(".bz2") {
            Box::new(BufWriter::with_capacity(
                1 << 20,
                bzip2::write::BzEncoder::new(raw, bzip2::Compression::default()),
            ))
        } else {
            Box::new(BufWriter::with_capacity(1 << 20, raw))
        };
        Self::new(out, path, encoding, meta, cols)
    }

    /// A writer onto any stream (tests, pipes).
    pub fn new(
        out: Box<dyn Write + Send>,
        path: &Path,
        encoding: Encoding,
        meta: &TraceMeta,
        cols: OptionalColumns,
    ) -> Result<CanonicalWriter, TraceError> {
        let mut w = CanonicalWriter {
            out,
            path: path.to_path_buf(),
            encoding,
            cols,
            buf: Vec::with_capacity(1 << 16),
            written: 0,
            last_arrival: 0,
        };
        let mut head = Vec::new();
        match encoding {
            Encoding::Csv => {
                head.extend_from_slice(b"# pooltune-trace: 1\n");
                if let Some(s) = meta.start_unix_ns {
                    head.extend_from_slice(
                        format!("# start_unix_ns: {s}\n# start: {}\n", format_unix_ns(s))
                            .as_bytes(),
                    );
                }
                head.extend_from_slice(
                    format!("# time_resolution_ns: {}\n", meta.time_resolution_ns.max(1))
                        .as_bytes(),
                );
                if !meta.source.is_empty() {
                    head.extend_from_slice(
                        format!("# source: {}\n", one_line(&meta.source)).as_bytes(),
                    );
                }
                for (i, f) in meta.source_files.iter().enumerate() {
                    head.extend_from_slice(
                        format!("# source_file: {i} {}\n", one_line(f)).as_bytes(),
                    );
                }
                if let Some(n) = meta.requests {
                    head.extend_from_slice(format!("# requests: {n}\n").as_bytes());
                }
                head.extend_from_slice(
                    format!("# skipped_lines: {}\n", meta.skipped_lines).as_bytes(),
                );
                if meta.no_service {
                    head.extend_from_slice(b"# service: none\n");
                }
                head.extend_from_slice(b"arrival_ns,service_ns");
                for (on, name) in w.column_names() {
                    if on {
                        head.push(b',');
                        head.extend_from_slice(name.as_bytes());
                    }
                }
                head.push(b'\n');
            }
            Encoding::Jsonl => {
                let h = JsonHeader {
                    pooltune_trace: 1,
                    start_unix_ns: meta.start_unix_ns,
                    start: meta.start_unix_ns.map(format_unix_ns),
                    time_resolution_ns: meta.time_resolution_ns.max(1),
                    source: meta.source.clone(),
                    source_files: meta.source_files.clone(),
                    requests: meta.requests,
                    skipped_lines: meta.skipped_lines,
                    no_service: meta.no_service,
                };
                head.extend(serde_json::to_vec(&h).expect("header serializes"));
                head.push(b'\n');
            }
        }
        w.out.write_all(&head).map_err(|e| w.werr(e))?;
        Ok(w)
    }

    fn column_names(&self) -> [(bool, &'static str); 8] {
        let c = self.cols;
        [
            (c.priority, "priority"),
            (c.kind, "kind"),
            (c.conn, "conn"),
            (c.query_id, "query_id"),
            (c.class, "class"),
            (c.sql, "sql"),
            (c.source_file, "source_file"),
            (c.source_line, "source_line"),
        ]
    }

    fn werr(&self, source: std::io::Error) -> TraceError {
        TraceError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one record. Records must come sorted by arrival.
    pub fn write(&mut self, r: &TraceRecord) -> Result<(), TraceError> {
        debug_assert!(
            r.arrival_ns >= self.last_arrival,
            "records are written sorted"
        );
        self.last_arrival = r.arrival_ns;
        let c = self.cols;
        let b = &mut self.buf;
        match self.encoding {
            Encoding::Csv => {
                push_u64(b, r.arrival_ns);
                b.push(b',');
                push_u64(b, r.service_ns);
                if c.priority {
                    b.push(b',');
                    b.extend_from_slice(r.priority.name().as_bytes());
                }
                if c.kind {
                    b.push(b',');
                    b.extend_from_slice(kind_name(r.kind).as_bytes());
                }
                for (on, s) in [
                    (c.conn, &r.conn),
                    (c.query_id, &r.query_id),
                    (c.class, &r.class),
                    (c.sql, &r.sql),
                ] {
                    if on {
                        b.push(b',');
                        push_field(b, s.as_bytes());
                    }
                }
                for (on, v) in [
                    (c.source_file, r.source_file.map(u64::from)),
                    (c.source_line, r.source_line),
                ] {
                    if on {
                        b.push(b',');
                        if let Some(v) = v {
                            push_u64(b, v);
                        }
                    }
                }
                b.push(b'\n');
            }
            Encoding::Jsonl => {
                b.extend_from_slice(b"{\"arrival_ns\":");
                push_u64(b, r.arrival_ns);
                b.extend_from_slice(b",\"service_ns\":");
                push_u64(b, r.service_ns);
                if c.priority {
                    b.extend_from_slice(b",\"priority\":\"");
                    b.extend_from_slice(r.priority.name().as_bytes());
                    b.push(b'"');
                }
                if c.kind {
                    b.extend_from_slice(b",\"kind\":\"");
                    b.extend_from_slice(kind_name(r.kind).as_bytes());
                    b.push(b'"');
                }
                for (on, name, s) in [
                    (c.conn, "conn", &r.conn),
                    (c.query_id, "query_id", &r.query_id),
                    (c.class, "class", &r.class),
                    (c.sql, "sql", &r.sql),
                ] {
                    if on && !s.is_empty() {
                        b.extend_from_slice(format!(",\"{name}\":").as_bytes());
                        serde_json::to_writer(&mut *b, s.as_str()).expect("strings serialize");
                    }
                }
                for (on, name, v) in [
                    (c.source_file, "source_file", r.source_file.map(u64::from)),
                    (c.source_line, "source_line", r.source_line),
                ] {
                    if let (true, Some(v)) = (on, v) {
                        b.extend_from_slice(format!(",\"{name}\":").as_bytes());
                        push_u64(b, v);
                    }
                }
                b.extend_from_slice(b"}\n");
            }
        }
        self.written += 1;
        if self.buf.len() >= 1 << 16 {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<(), TraceError> {
        let res = self.out.write_all(&self.buf);
        self.buf.clear();
        res.map_err(|e| self.werr(e))
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and closes (finishing any compression).
    pub fn finish(mut self) -> Result<u64, TraceError> {
        self.flush_buf()?;
        self.out.flush().map_err(|e| self.werr(e))?;
        // Dropping the encoder writes its trailer; flush has pushed all data.
        let written = self.written;
        drop(self.out);
        Ok(written)
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<TraceRecord> {
        vec![
            TraceRecord {
                arrival_ns: 0,
                service_ns: 813_000,
                conn: "6b096c4f.2957".into(),
                query_id: "-2927491712846248394".into(),
                sql: "SELECT 1, \"x\"\nFROM t".into(),
                source_file: Some(0),
                source_line: Some(10),
                ..Default::default()
            },
            TraceRecord {
                arrival_ns: 5,
                service_ns: 1,
                priority: Priority::High,
                kind: Kind::Write,
                class: "billing".into(),
                source_file: Some(0),
                source_line: Some(12),
                ..Default::default()
            },
        ]
    }

    fn write(enc: Encoding, recs: &[TraceRecord], path: &Path) {
        let mut meta = TraceMeta::new("test", 1_000_000);
        meta.start_unix_ns = Some(1_795_779_663_382_079_000);
        meta.source_files = vec!["a.csv".into()];
        meta.requests = Some(recs.len() as u64);
        let mut w = CanonicalWriter::create(path, enc, &meta, OptionalColumns::all()).unwrap();
        for r in recs {
            w.write(r).unwrap();
        }
        assert_eq!(w.finish().unwrap(), recs.len() as u64);
    }

    fn read_all(path: &Path) -> (TraceMeta, Vec<TraceRecord>) {
        let mut r = CanonicalReader::open(path, false).unwrap();
        let mut out = Vec::new();
        let mut rec = TraceRecord::default();
        while r.next_into(&mut rec).unwrap() {
            out.push(rec.clone());
        }
        (r.meta().clone(), out)
    }

    #[test]
    fn both_encodings_and_compressions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["t.csv", "t.jsonl", "t.csv.gz", "t.jsonl.bz2"] {
            let path = dir.path().join(name);
            write(Encoding::from_path(&path), &sample(), &path);
            let (meta, recs) = read_all(&path);
            assert_eq!(recs, sample(), "{name}");
            assert_eq!(meta.start_unix_ns, Some(1_795_779_663_382_079_000));
            assert_eq!(meta.time_resolution_ns, 1_000_000);
            assert_eq!(meta.requests, Some(2));
            assert_eq!(meta.source_files, vec!["a.csv".to_string()]);
        }
    }

    fn read_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let mut r = match CanonicalReader::open(&path, false) {
            Ok(r) => r,
            Err(e) => return e.to_string().replace(&path.display().to_string(), "t.csv"),
        };
        let mut rec = TraceRecord::default();
        loop {
            match r.next_into(&mut rec) {
                Ok(true) => {}
                Ok(false) => panic!("no error in {text:?}"),
                Err(e) => return e.to_string().replace(&path.display().to_string(), "t.csv"),
            }
        }
    }

    #[test]
    fn malformed_input_names_file_line_and_field() {
        assert_eq!(
            read_err("arrival_ns,service_ns\n1,abc\n"),
            "t.csv:2:2: field `service_ns`: expected a non-negative whole number of nanoseconds, got `abc`"
        );
        assert_eq!(
            read_err("arrival_ns,service_ns,priority\n1,2,urgent\n"),
            "t.csv:2:3: field `priority`: unknown priority `urgent` (expected high, normal or low)"
        );
        assert_eq!(
            read_err("arrival_ns,service_ns\n1,2\n3\n"),
            "t.csv:3:2: field `service_ns`: expected 2 fields (arrival_ns,service_ns), got 1"
        );
        assert_eq!(
            read_err("arrival_ns,service_ns\n5,2\n3,1\n"),
            "t.csv:3:1: field `arrival_ns`: arrivals must be non-decreasing, got 3 ns after 5 ns (`pooltune trace import` sorts a trace)"
        );
        assert_eq!(
            read_err("arrival_ns,service_ns\n-1,2\n"),
            "t.csv:2:1: field `arrival_ns`: expected a non-negative whole number of nanoseconds, got `-1`"
        );
        assert!(read_err("arrival,service_ns\n")
            .starts_with("t.csv:1:1: field `arrival`: unknown column"));
        assert!(read_err("").starts_with("t.csv: empty"));
        assert!(read_err("# pooltune-trace: 1\n").starts_with("t.csv: empty"));
        assert_eq!(
            read_err("{\"arrival_ns\":1,\"service_ns\":\"x\"}\n"),
            "t.csv:1:32: field `service_ns`: invalid type: string \"x\", expected u64"
        );
        assert!(
            read_err("{\"arrival_ns\":1,\"service_ns\":2,\"prio\":1}\n").starts_with("t.csv:1:")
        );
        assert!(read_err("{\"arrival_ns\":1}\n")
            .contains("field `service_ns`: expected exactly one of"));
        assert!(read_err("arrival_ns,service_ns\n1,\"2\n").contains("not closed"));
    }

    #[test]
    fn skip_bad_counts_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(
            &path,
            b"arrival_ns,service_ns\n1,2\nx,3\n0,1\n4,5\n\xff\xfe\n",
        )
        .unwrap();
        let mut r = CanonicalReader::open(&path, true).unwrap();
        let mut rec = TraceRecord::default();
        let mut got = Vec::new();
        while r.next_into(&mut rec).unwrap() {
            got.push(rec.arrival_ns);
        }
        assert_eq!(got, vec![1, 4]);
        assert_eq!(r.skipped(), 3);
    }

    #[test]
    fn decimal_units_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "service_ms,arrival_s\n0.921,1.5\n").unwrap();
        let (_, recs) = read_all(&path);
        assert_eq!(recs[0].arrival_ns, 1_500_000_000);
        assert_eq!(recs[0].service_ns, 921_000);
        std::fs::write(&path, "{\"arrival_s\":0.25,\"service_ms\":2.5}\n").unwrap();
        let (_, recs) = read_all(&path);
        assert_eq!(
            (recs[0].arrival_ns, recs[0].service_ns),
            (250_000_000, 2_500_000)
        );
    }

    #[test]
    fn trace_source_replays_requests() {
        use crate::trace::{RequestSource, StreamSource};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        write(Encoding::Csv, &sample(), &path);
        let mut r = CanonicalReader::open(&path, false).unwrap();
        r.want_strings = false;
        let mut s = StreamSource::new(r);
        let a = s.next_request().unwrap();
        let b = s.next_request().unwrap();
        assert!(s.next_request().is_none());
        assert!(s.take_error().is_none());
        assert_eq!((a.arrival.0, a.service.0), (0, 813_000));
        assert_eq!((b.priority, b.kind), (Priority::High, Kind::Write));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), header in 0usize..3) {
            let mut text = match header {
                0 => b"arrival_ns,service_ns,priority,kind,sql\n".to_vec(),
                1 => b"{\"pooltune_trace\":1}\n".to_vec(),
                _ => Vec::new(),
            };
            text.extend_from_slice(&bytes);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p");
            std::fs::write(&path, &text).unwrap();
            for skip in [false, true] {
                if let Ok(mut r) = CanonicalReader::open(&path, skip) {
                    let mut rec = TraceRecord::default();
                    for _ in 0..1000 {
                        match r.next_into(&mut rec) {
                            Ok(true) => {}
                            _ => break,
                        }
                    }
                }
            }
        }
    }
}
