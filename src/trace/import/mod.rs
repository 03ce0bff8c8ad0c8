//! Importers: recorded logs and spans to the canonical trace format.
//!
//! | format | arrival | service | time resolution |
//! | --- | --- | --- | --- |
//! | `csvlog` (PG 12: 23 columns, PG 13: 24, PG 14-17: 26) | log_time - duration | `duration:` | 1 ms |
//! | `jsonlog` (PG 15+), `cnpg` (CloudNativePG), `cloudsql` (Google Cloud Logging `textPayload`) | timestamp - duration | `duration:` | 1 ms (Cloud Logging: 1 us) |
//! | `stderr`, `syslog` (with the server's `log_line_prefix`) | time - duration | `duration:` | `%m`/`%n` 1 ms, `%t`/syslog 1 s |
//! | `pgbench` (`-l`, one file per thread, with or without `-R`) | completion - latency (the schedule with `-R`) | latency (minus the schedule lag with `-R`) | 1 us |
//! | `otlp` (OTLP/JSON spans with `db.system` postgresql) | start | end - start | as the producer wrote (1 ms for the JS SDK) |
//! | `arrivals` (any CSV or JSON Lines with a time column, e.g. public arrival-only traces) | the time column | none: give the replay a service distribution | as written |
//!
//! PostgreSQL logs write a statement's line when it *ends*, so arrival =
//! log time - duration, and arrivals come out of order: the importer sorts
//! (in bounded memory, see [`crate::trace::sort`]). Extended-protocol
//! statements log up to three lines (`parse`, `bind`, `execute`): they are
//! merged, per session and statement name, into one request whose service
//! is the sum of the three durations. With `log_statement = 'all'` plus
//! `log_duration`, the `statement:` line and the later bare `duration:` line
//! are paired per session. Priorities, kinds and classes come from
//! [`crate::trace::rules`].

pub mod arrivals;
pub mod csvlog;
pub mod detect;
pub mod jsonlog;
pub mod otlp;
pub mod pgbench;
pub mod pglog;
pub mod stderr;

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::canonical::{CanonicalWriter, Encoding, OptionalColumns};
use super::error::TraceError;
use super::input::LineReader;
use super::record::TraceMeta;
use super::rules::{Attrs, Rules};
use super::sort::{Pending, Sorter, DEFAULT_BUDGET};
use crate::core::request::Kind;

pub use detect::detect;

/// An input format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// pooltune's own format (CSV or JSON Lines).
    Canonical,
    Csvlog,
    Jsonlog,
    /// CloudNativePG's JSON wrapper around csvlog fields.
    Cnpg,
    /// Google Cloud Logging export whose `textPayload` is a stderr line.
    CloudSql,
    Stderr,
    Syslog,
    Pgbench,
    Otlp,
    Arrivals,
}

impl Format {
    pub const ALL: [Format; 10] = [
        Format::Canonical,
        Format::Csvlog,
        Format::Jsonlog,
        Format::Cnpg,
        Format::CloudSql,
        Format::Stderr,
        Format::Syslog,
        Format::Pgbench,
        Format::Otlp,
        Format::Arrivals,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Canonical => "canonical",
            Format::Csvlog => "csvlog",
            Format::Jsonlog => "jsonlog",
            Format::Cnpg => "cnpg",
            Format::CloudSql => "cloudsql",
            Format::Stderr => "stderr",
            Format::Syslog => "syslog",
            Format::Pgbench => "pgbench",
            Format::Otlp => "otlp",
            Format::Arrivals => "arrivals",
        }
    }

    pub fn parse(s: &str) -> Result<Format, TraceError> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "csv" | "pooltune" => "canonical",
            "gcl" | "cloud-logging" | "google" => "cloudsql",
            "cloudnativepg" => "cnpg",
            "json" => "jsonlog",
            "otel" | "opentelemetry" => "otlp",
            other => other,
        };
        Format::ALL
            .into_iter()
            .find(|f| f.name() == alias)
            .ok_or_else(|| {
                TraceError::Invalid(format!(
                    "unknown trace format `{s}` (known: auto, {})",
                    Format::ALL.map(|f| f.name()).join(", ")
                ))
            })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// pgbench with `-R`: what counts as a transaction's arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PgbenchArrival {
    /// The Poisson schedule (completion - latency): the demand, as an
    /// open-loop client meant it. Service = latency - schedule lag.
    #[default]
    Scheduled,
    /// When pgbench actually sent it (schedule + lag). Service = latency - lag.
    Sent,
}

/// How to import.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportOptions {
    /// `None`: detect from the first file.
    pub format: Option<Format>,
    /// `log_line_prefix` for stderr and syslog (and the Cloud SQL payload);
    /// `None` tries common ones.
    pub prefix: Option<String>,
    /// Skip malformed lines (counted) instead of stopping at the first.
    pub skip_bad: bool,
    pub rules: Rules,
    /// Keep the SQL text in the trace (`sql` column).
    pub keep_sql: bool,
    /// Year of syslog stamps (they have none). Default: the file's
    /// modification year, else 1970.
    pub year: Option<i64>,
    pub pgbench_arrival: PgbenchArrival,
    /// `arrivals`: the time field (default: a column named like
    /// timestamp/time/arrival) and the unit of numeric times.
    pub time_field: Option<String>,
    pub time_unit_ns: Option<u64>,
    /// Output encoding; `None`: from the output file name.
    pub encoding: Option<Encoding>,
    /// Memory for sorting before spilling to temporary files.
    pub sort_budget: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            format: None,
            prefix: None,
            skip_bad: false,
            rules: Rules::default(),
            keep_sql: false,
            year: None,
            pgbench_arrival: PgbenchArrival::Scheduled,
            time_field: None,
            time_unit_ns: None,
            encoding: None,
            sort_budget: DEFAULT_BUDGET,
        }
    }
}

/// What an import did: counts for the summary and `trace stats`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    pub format: String,
    pub files: Vec<String>,
    /// Physical input lines read.
    pub lines: u64,
    pub requests: u64,
    /// Malformed lines skipped with `--skip-bad`.
    pub skipped_bad: u64,
    /// The first few of them, with file, line, field and reason.
    pub skipped_examples: Vec<String>,
    /// Entries that are not requests (connections, checkpoints, errors...).
    pub ignored: u64,
    /// Extended-protocol `parse`/`bind` lines folded into their `execute`.
    pub merged: u64,
    /// Lines that could not be paired (a `parse` never executed, a
    /// `statement:` with no later duration).
    pub unpaired: u64,
    /// pgbench transactions logged as `failed` or `skipped` (no latency).
    pub failed: u64,
    pub time_resolution_ns: u64,
    pub start_unix_ns: Option<i64>,
    /// Last arrival, ns after the first.
    pub span_ns: u64,
    pub by_priority: [u64; 3],
    pub writes: u64,
    pub warnings: Vec<String>,
    /// The log_line_prefix used (stderr, syslog, cloudsql).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// State shared by the parsers while importing: the sorter, the counters,
/// the rules.
pub struct Ctx<'a> {
    pub opts: &'a ImportOptions,
    pub sorter: Sorter,
    pub report: ImportReport,
    /// Index of the file being read.
    pub file: u32,
    /// Whether arrivals are absolute times (epoch ns).
    pub absolute: bool,
    /// True when the trace has no service times (`arrivals`).
    pub no_service: bool,
    unknown_zone_warned: bool,
}

const MAX_EXAMPLES: usize = 5;

impl<'a> Ctx<'a> {
    pub fn new(opts: &'a ImportOptions) -> Self {
        Ctx {
            opts,
            sorter: Sorter::new(opts.sort_budget),
            report: ImportReport {
                time_resolution_ns: 1,
                ..Default::default()
            },
            file: 0,
            absolute: true,
            no_service: false,
            unknown_zone_warned: false,
        }
    }

    /// One request. `attrs` feed the rules; the SQL is kept with `keep_sql`.
    pub fn emit(
        &mut self,
        arrival: i64,
        service_ns: u64,
        line: u64,
        attrs: &Attrs,
    ) -> Result<(), TraceError> {
        let d = self.opts.rules.decide(attrs);
        let query_id = if attrs.query_id == b"0" {
            &[][..]
        } else {
            attrs.query_id
        };
        self.report.by_priority[d.priority.index()] += 1;
        self.report.writes += u64::from(d.kind == Kind::Write);
        self.report.requests += 1;
        self.sorter.push(&Pending {
            arrival,
            service_ns,
            priority: d.priority.index() as u8,
            kind: u8::from(d.kind == Kind::Write),
            file: self.file,
            line,
            conn: attrs.conn,
            query_id,
            class: d.class.map(str::as_bytes).unwrap_or(&[]),
            sql: if self.opts.keep_sql { attrs.query } else { &[] },
        })
    }

    /// A malformed line: an error, or (with `skip_bad`) a count.
    pub fn bad(&mut self, e: TraceError) -> Result<(), TraceError> {
        if self.opts.skip_bad && !e.is_io() {
            self.report.skipped_bad += 1;
            if self.report.skipped_examples.len() < MAX_EXAMPLES {
                self.report.skipped_examples.push(e.to_string());
            }
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Notes the resolution of a time stamp with `frac_digits` decimals.
    pub fn resolution_digits(&mut self, frac_digits: u8) {
        let r = 10u64.pow(9 - u32::from(frac_digits.min(9)));
        self.report.time_resolution_ns = self.report.time_resolution_ns.max(r);
    }

    pub fn unknown_zone(&mut self, stamp: &[u8]) {
        if !self.unknown_zone_warned {
            self.unknown_zone_warned = true;
            self.report.warnings.push(format!(
                "unknown time zone in `{}`: times taken as UTC (absolute times may be off; intervals are not)",
                super::error::excerpt(stamp)
            ));
        }
    }
}

/// Imports `inputs` (several files of one format are merged: pgbench's
/// per-thread logs, rotated server logs) into a canonical trace at `out`.
pub fn import_files(
    inputs: &[PathBuf],
    opts: &ImportOptions,
    out: &Path,
) -> Result<ImportReport, TraceError> {
    if inputs.is_empty() {
        return Err(TraceError::Invalid("no input file".into()));
    }
    let format = match opts.format {
        Some(f) => f,
        None => detect(inputs)?,
    };
    let mut ctx = Ctx::new(opts);
    ctx.report.format = format.name().to_string();
    if format == Format::Pgbench {
        // pgbench writes one log per thread: `prefix.pid`, `prefix.pid.1`, ...
        for p in inputs {
            let sibling = PathBuf::from(format!("{}.1", p.display()));
            if sibling.is_file() && !inputs.contains(&sibling) {
                ctx.report.warnings.push(format!(
                    "{} looks like another pgbench thread's log of the same run: give every thread's file to import the whole run",
                    sibling.display()
                ));
            }
        }
    }
    let mut canonical_meta: Option<TraceMeta> = None;
    for (i, path) in inputs.iter().enumerate() {
        ctx.file = i as u32;
        ctx.report.files.push(path.display().to_string());
        let before = ctx.report.requests;
        match format {
            Format::Canonical => {
                canonical_meta = Some(canonical(path, &mut ctx)?);
            }
            Format::Csvlog => csvlog::import(LineReader::open(path)?, &mut ctx)?,
            Format::Jsonlog | Format::Cnpg | Format::CloudSql => {
                jsonlog::import(LineReader::open(path)?, format, &mut ctx)?
            }
            Format::Stderr | Format::Syslog => {
                stderr::import(path, format, &mut ctx)?;
            }
            Format::Pgbench => pgbench::import(LineReader::open(path)?, &mut ctx)?,
            Format::Otlp => otlp::import(path, &mut ctx)?,
            Format::Arrivals => arrivals::import(LineReader::open(path)?, &mut ctx)?,
        }
        if ctx.report.requests == before && inputs.len() > 1 {
            ctx.report
                .warnings
                .push(format!("{}: no request in this file", path.display()));
        }
    }
    if ctx.sorter.is_empty() {
        let r = &ctx.report;
        let hint = match format {
            Format::Csvlog | Format::Jsonlog | Format::Cnpg | Format::CloudSql | Format::Stderr | Format::Syslog => {
                " (requests come from `duration:` lines: set log_min_duration_statement = 0 and lc_messages = 'C' on the server)"
            }
            Format::Otlp => " (only spans with db.system = postgresql are requests)",
            _ => "",
        };
        return Err(TraceError::file(
            inputs[0].display().to_string(),
            format!(
                "no request found in {} ({}): {} lines read, {} entries that are not requests, {} malformed lines skipped{hint}",
                if inputs.len() == 1 { "the file".to_string() } else { format!("{} files", inputs.len()) },
                format.name(),
                r.lines,
                r.ignored,
                r.skipped_bad
            ),
        ));
    }
    let origin = ctx.sorter.min_arrival().expect("not empty");
    let seen = ctx.sorter.seen;
    let mut meta = TraceMeta::new(format.name(), ctx.report.time_resolution_ns.max(1));
    if let Some(m) = &canonical_meta {
        meta.source = m.source.clone();
        meta.time_resolution_ns = m.time_resolution_ns;
    }
    meta.start_unix_ns = ctx.absolute.then_some(origin);
    if let (Some(m), true) = (&canonical_meta, inputs.len() == 1) {
        meta.start_unix_ns = m.start_unix_ns;
    }
    meta.source_files = inputs.iter().map(|p| p.display().to_string()).collect();
    meta.requests = Some(ctx.sorter.len());
    meta.skipped_lines = ctx.report.skipped_bad;
    meta.no_service = ctx.no_service;
    let cols = OptionalColumns {
        priority: true,
        kind: true,
        conn: seen.conn,
        query_id: seen.query_id,
        class: seen.class,
        sql: seen.sql,
        source_file: inputs.len() > 1,
        source_line: true,
    };
    let encoding = opts.encoding.unwrap_or_else(|| Encoding::from_path(out));
    let mut w = CanonicalWriter::create(out, encoding, &meta, cols)?;
    let mut last = 0;
    ctx.sorter.finish(origin, &mut |r| {
        last = r.arrival_ns;
        w.write(r)
    })?;
    w.finish()?;
    let mut report = ctx.report;
    report.start_unix_ns = meta.start_unix_ns;
    report.span_ns = last;
    report.time_resolution_ns = meta.time_resolution_ns;
    Ok(report)
}

/// Re-imports a canonical trace (to merge several, or apply rules).
fn canonical(path: &Path, ctx: &mut Ctx) -> Result<TraceMeta, TraceError> {
    use super::RecordStream;
    let mut r = super::canonical::CanonicalReader::open(path, ctx.opts.skip_bad)?;
    let meta = r.meta().clone();
    let base = meta.start_unix_ns.unwrap_or(0);
    if meta.start_unix_ns.is_none() {
        ctx.absolute = false;
    }
    ctx.report.time_resolution_ns = ctx.report.time_resolution_ns.max(meta.time_resolution_ns);
    ctx.no_service |= meta.no_service;
    let mut rec = super::record::TraceRecord::default();
    while r.next_record(&mut rec)? {
        ctx.report.lines += 1;
        let attrs = Attrs {
            query: rec.sql.as_bytes(),
            conn: rec.conn.as_bytes(),
            query_id: rec.query_id.as_bytes(),
            ..Default::default()
        };
        let line = rec.source_line.unwrap_or(0);
        let arrival = base.saturating_add(rec.arrival_ns as i64);
        if ctx.opts.rules.is_empty() {
            ctx.report.by_priority[rec.priority.index()] += 1;
            ctx.report.writes += u64::from(rec.kind == Kind::Write);
            ctx.report.requests += 1;
            ctx.sorter.push(&Pending {
                arrival,
                service_ns: rec.service_ns,
                priority: rec.priority.index() as u8,
                kind: u8::from(rec.kind == Kind::Write),
                file: ctx.file,
                line,
                conn: rec.conn.as_bytes(),
                query_id: rec.query_id.as_bytes(),
                class: rec.class.as_bytes(),
                sql: if ctx.opts.keep_sql {
                    rec.sql.as_bytes()
                } else {
                    &[]
                },
            })?;
        } else {
            ctx.emit(arrival, rec.service_ns, line, &attrs)?;
        }
    }
    ctx.report.skipped_bad += r.skipped();
    Ok(meta)
}
