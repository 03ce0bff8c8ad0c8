//! PostgreSQL csvlog (`log_destination = 'csvlog'`). The version is told by
//! the column count: 23 (PG 12 and older), 24 (PG 13: + backend_type) or
//! 26 (PG 14-17: + leader_pid, query_id), each line on its own (a file
//! may hold several layouts: logs kept across a `pg_upgrade`). The real
//! layouts are tested on logs recorded with PostgreSQL 13 to 17
//! (`tests/data/versions/`). Only LOG lines whose message
//! starts with `duration:` or `statement:` matter (see [`super::pglog`]);
//! the rest are counted as ignored without parsing their times.
//!
//! This is the hot path of imports (the target is at least a million lines
//! per second): one reusable record buffer, memchr scanning, no allocation
//! per line.

use super::pglog::{is_request_message, Assembler, Entry};
use super::Ctx;
use crate::trace::csvrow::{read_record, CsvRow};
use crate::trace::error::{excerpt, TraceError};
use crate::trace::input::LineReader;
use crate::trace::rules::Attrs;
use crate::trace::timestamp::parse_datetime;

/// csvlog column names (PG 14-17 order; older versions are prefixes).
pub const COLUMNS: [&str; 26] = [
    "log_time",
    "user_name",
    "database_name",
    "process_id",
    "connection_from",
    "session_id",
    "session_line_num",
    "command_tag",
    "session_start_time",
    "virtual_transaction_id",
    "transaction_id",
    "error_severity",
    "sql_state_code",
    "message",
    "detail",
    "hint",
    "internal_query",
    "internal_query_pos",
    "context",
    "query",
    "query_pos",
    "location",
    "application_name",
    "backend_type",
    "leader_pid",
    "query_id",
];

/// A csvlog layout, told by a line's column count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    /// PostgreSQL 12 and older: 23 columns.
    Pg12,
    /// PostgreSQL 13: 24 (+ backend_type).
    Pg13,
    /// PostgreSQL 14 to 17: 26 (+ leader_pid, query_id).
    Pg14,
}

impl Layout {
    pub fn from_columns(n: usize) -> Option<Layout> {
        match n {
            23 => Some(Layout::Pg12),
            24 => Some(Layout::Pg13),
            26 => Some(Layout::Pg14),
            _ => None,
        }
    }

    pub fn columns(self) -> usize {
        match self {
            Layout::Pg12 => 23,
            Layout::Pg13 => 24,
            Layout::Pg14 => 26,
        }
    }

    /// The query_id column (0-based), from PostgreSQL 14 on.
    pub fn query_id_column(self) -> Option<usize> {
        (self == Layout::Pg14).then_some(25)
    }

    /// The server versions writing this layout.
    pub fn versions(self) -> &'static str {
        match self {
            Layout::Pg12 => "PostgreSQL 12 and older",
            Layout::Pg13 => "PostgreSQL 13",
            Layout::Pg14 => "PostgreSQL 14-17",
        }
    }
}

/// The layout of the first record of a csvlog file (gzip and bzip2 read
/// transparently), read the way [`import`] reads it; `None` when the file
/// is empty or its first record has another column count.
pub fn layout(path: &std::path::Path) -> Result<Option<Layout>, TraceError> {
    let mut lines = LineReader::open(path)?;
    let mut row = CsvRow::new();
    while read_record(&mut lines, row.raw_mut(), MAX_RECORD_LINES)?.is_some() {
        if row.raw().is_empty() {
            continue;
        }
        return Ok(match row.parse_raw() {
            Ok(()) => Layout::from_columns(row.len()),
            Err(_) => None,
        });
    }
    Ok(None)
}

/// The most physical lines one csvlog record may span (multi-line SQL).
const MAX_RECORD_LINES: usize = 100_000;

pub fn import(mut lines: LineReader, ctx: &mut Ctx) -> Result<(), TraceError> {
    let file = lines.name.clone();
    let mut row = CsvRow::new();
    let mut asm = Assembler::new();
    let col = |i: usize| COLUMNS.get(i).copied().unwrap_or("column");
    while let Some(line) = read_record(&mut lines, row.raw_mut(), MAX_RECORD_LINES)? {
        if row.raw().is_empty() {
            continue;
        }
        if let Err(e) = row.parse_raw() {
            ctx.bad(TraceError::bad(
                &file,
                line,
                Some(e.field),
                col(e.field - 1),
                e.message,
            ))?;
            continue;
        }
        let n = row.len();
        let Some(layout) = Layout::from_columns(n) else {
            let hint = if line == 1 && n < 10 {
                " (is this a csvlog file? give --format)"
            } else {
                ""
            };
            ctx.bad(TraceError::bad(
                &file,
                line,
                Some(n.min(26)),
                col(n.min(26) - 1),
                format!(
                    "expected 23 (PostgreSQL 12 and older), 24 (13) or 26 (14-17) csvlog columns, got {n} (truncated line?){hint}"
                ),
            ))?;
            continue;
        };
        if row.get(11) != b"LOG" {
            ctx.report.ignored += 1;
            continue;
        }
        let msg = row.get(13);
        if !is_request_message(msg) {
            ctx.report.ignored += 1;
            continue;
        }
        let ts = row.get(0);
        let Some(stamp) = parse_datetime(ts) else {
            ctx.bad(TraceError::bad(
                &file,
                line,
                Some(1),
                "log_time",
                format!(
                    "expected a time such as `2026-11-27 11:41:03.383 UTC`, got `{}`",
                    excerpt(ts)
                ),
            ))?;
            continue;
        };
        if !stamp.zone_known {
            ctx.unknown_zone(ts);
        }
        ctx.resolution_digits(stamp.frac_digits);
        let session = if row.get(5).is_empty() {
            row.get(3)
        } else {
            row.get(5)
        };
        let entry = Entry {
            time_ns: stamp.unix_ns,
            session,
            message: msg,
            line,
            attrs: Attrs {
                application: row.get(22),
                user: row.get(1),
                database: row.get(2),
                command: row.get(7),
                query_id: layout.query_id_column().map_or(&[], |c| row.get(c)),
                ..Default::default()
            },
            field: "message",
            column: Some(14),
        };
        asm.feed(&entry, ctx)?;
    }
    ctx.report.lines += lines.line;
    asm.finish(ctx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::trace::canonical::CanonicalReader;
    use crate::trace::import::{import_files, Format, ImportOptions};
    use crate::trace::record::TraceRecord;
    use crate::trace::RecordStream;

    /// A line of our PostgreSQL 15 recording (26 columns).
    const PG15: &str = "2026-11-28 05:16:13.433 UTC,\"postgres\",\"postgres\",20710,\"127.0.0.1:58890\",6b0a639d.50e6,3,\"SELECT\",2026-11-28 05:16:13 UTC,3/0,0,LOG,00000,\"duration: 0.885 ms  statement: select count(*) from pgbench_branches\",,,,,,,,,\"pgbench\",\"client backend\",,5314337695506712446";

    fn import(text: &str) -> Vec<TraceRecord> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, text).unwrap();
        let out = dir.path().join("out.csv");
        let opts = ImportOptions {
            format: Some(Format::Csvlog),
            ..Default::default()
        };
        import_files(&[input], &opts, &out).unwrap();
        let mut r = CanonicalReader::open(&out, false).unwrap();
        let mut v = Vec::new();
        let mut rec = TraceRecord::default();
        while r.next_record(&mut rec).unwrap() {
            v.push(rec.clone());
        }
        v
    }

    #[test]
    fn pg12_pg13_and_pg14_column_counts() {
        // PG 13 writes the same line without leader_pid and query_id (24
        // columns), PG 12 also without backend_type (23).
        let fields: Vec<&str> = PG15.rsplitn(3, ',').collect();
        let pg13 = fields[2];
        let pg12 = pg13.rsplit_once(',').unwrap().0;
        let a = import(&format!("{PG15}\n"));
        let b = import(&format!("{pg13}\n"));
        let c = import(&format!("{pg12}\r\n"));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].service_ns, 885_000);
        assert_eq!(a[0].query_id, "5314337695506712446");
        assert_eq!((b[0].service_ns, b[0].query_id.as_str()), (885_000, ""));
        assert_eq!(
            (c[0].service_ns, c[0].conn.as_str()),
            (885_000, "6b0a639d.50e6")
        );
    }

    #[test]
    fn multi_line_messages_and_escaped_quotes() {
        let multi = PG15.replace(
            "select count(*) from pgbench_branches",
            "select \"\"x\"\"\n  from t,\n  u",
        );
        let v = import(&format!("{multi}\n{PG15}\n"));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].source_line, Some(1));
        assert_eq!(v[1].source_line, Some(4));
    }
}
