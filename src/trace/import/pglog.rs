//! PostgreSQL log messages to requests, shared by the csvlog, jsonlog,
//! stderr and syslog importers.
//!
//! - `duration: 0.921 ms  statement: SQL` (simple protocol): one request,
//!   arrival = line time - duration.
//! - `duration: X ms  parse NAME: SQL`, `... bind NAME[/PORTAL]: SQL`,
//!   `... execute NAME[/PORTAL]: SQL` (extended protocol): merged per
//!   session and statement name into one request at `execute`; arrival =
//!   the first line's time - its duration, service = the sum of the
//!   durations. A named statement parsed once and executed many times
//!   (`-M prepared`) merges its parse into the first execute only.
//! - `statement: SQL` (log_statement) followed by a bare `duration: X ms`
//!   in the same session: one request with that SQL.
//! - `duration: X ms  plan:` (auto_explain) is not a request (the statement
//!   has its own line); neither is anything else (connections, errors...).

use std::collections::BTreeMap;

use super::Ctx;
use crate::trace::error::{excerpt, TraceError};
use crate::trace::num::parse_decimal_ns;
use crate::trace::rules::Attrs;

/// One log entry of a session, as the format-specific parser found it.
pub struct Entry<'a> {
    /// When the line was written (statement end), ns since the epoch.
    pub time_ns: i64,
    /// Session key (csvlog session_id, or the pid).
    pub session: &'a [u8],
    /// The message (csvlog column 14; after `LOG:  ` in stderr).
    pub message: &'a [u8],
    pub line: u64,
    /// Application, user, database, command tag, query id (conn and query
    /// are set here).
    pub attrs: Attrs<'a>,
    /// Where the message starts (for errors): the field name and column.
    pub field: &'static str,
    pub column: Option<usize>,
}

#[derive(Default)]
struct Session {
    /// Extended-protocol statements parsed or bound, not yet executed:
    /// (statement name, start ns, summed duration ns, first line, lines).
    pending: Vec<(Vec<u8>, i64, u64, u64, u64)>,
    /// A `statement:` line waiting for its bare `duration:` line.
    statement: Option<(Vec<u8>, u64)>,
}

/// Per-session state across entries.
#[derive(Default)]
pub struct Assembler {
    sessions: BTreeMap<Vec<u8>, Session>,
}

/// The most pending extended-protocol statements kept per session (a
/// client that prepares without ever executing must not grow memory).
const MAX_PENDING: usize = 256;

/// The first `a` followed by `b` (short patterns; no searcher to build).
fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(a, &hay[from..]) {
        let at = from + i;
        if hay.get(at + 1) == Some(&b) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

fn statement_name(rest: &[u8]) -> (&[u8], &[u8]) {
    // `NAME: SQL` or `NAME/PORTAL: SQL`; NAME may be `<unnamed>`.
    match find2(rest, b':', b' ') {
        Some(i) => {
            let name = &rest[..i];
            let name = match memchr::memchr(b'/', name) {
                Some(j) => &name[..j],
                None => name,
            };
            (name, &rest[i + 2..])
        }
        None => (rest, &[]),
    }
}

impl Assembler {
    pub fn new() -> Self {
        Assembler::default()
    }

    /// Feeds one LOG entry.
    pub fn feed(&mut self, e: &Entry, ctx: &mut Ctx) -> Result<(), TraceError> {
        let msg = e.message;
        if let Some(rest) = msg.strip_prefix(b"duration: ") {
            let ms_end = find2(rest, b' ', b'm').filter(|&i| rest.get(i + 2) == Some(&b's'));
            let Some(ms_end) = ms_end else {
                return ctx.bad(TraceError::bad(
                    &ctx.report.files[ctx.file as usize],
                    e.line,
                    e.column,
                    e.field,
                    format!("expected `duration: <ms> ms`, got `{}`", excerpt(msg)),
                ));
            };
            let Some(dur) = parse_decimal_ns(&rest[..ms_end], 1_000_000) else {
                return ctx.bad(TraceError::bad(
                    &ctx.report.files[ctx.file as usize],
                    e.line,
                    e.column,
                    e.field,
                    format!(
                        "expected a duration in milliseconds, got `{}`",
                        excerpt(&rest[..ms_end])
                    ),
                ));
            };
            let tail = &rest[ms_end + 3..];
            if tail.is_empty() {
                // log_duration / log_statement pairing.
                let stmt = self
                    .sessions
                    .get_mut(e.session)
                    .and_then(|s| s.statement.take());
                let (sql, merged): (Vec<u8>, u64) = match stmt {
                    Some((sql, _)) => (sql, 1),
                    None => (Vec::new(), 0),
                };
                ctx.report.merged += merged;
                return self.emit(e, ctx, e.time_ns - dur as i64, dur, &sql);
            }
            let tail = tail.strip_prefix(b"  ").unwrap_or(tail);
            if let Some(sql) = tail.strip_prefix(b"statement: ") {
                return self.emit(e, ctx, e.time_ns - dur as i64, dur, sql);
            }
            if let Some(r) = tail.strip_prefix(b"parse ") {
                let (name, _) = statement_name(r);
                let s = self.sessions.entry(e.session.to_vec()).or_default();
                if s.pending.len() >= MAX_PENDING {
                    s.pending.remove(0);
                    ctx.report.unpaired += 1;
                }
                if let Some(i) = s.pending.iter().position(|p| p.0 == name) {
                    // Re-parsed before it was executed: the old one is lost.
                    s.pending.remove(i);
                    ctx.report.unpaired += 1;
                }
                s.pending
                    .push((name.to_vec(), e.time_ns - dur as i64, dur, e.line, 1));
                return Ok(());
            }
            if let Some(r) = tail.strip_prefix(b"bind ") {
                let (name, _) = statement_name(r);
                let s = self.sessions.entry(e.session.to_vec()).or_default();
                match s.pending.iter_mut().find(|p| p.0 == name) {
                    Some(p) => {
                        p.2 += dur;
                        p.4 += 1;
                    }
                    None => {
                        if s.pending.len() >= MAX_PENDING {
                            s.pending.remove(0);
                            ctx.report.unpaired += 1;
                        }
                        s.pending
                            .push((name.to_vec(), e.time_ns - dur as i64, dur, e.line, 1))
                    }
                }
                return Ok(());
            }
            if let Some(r) = tail.strip_prefix(b"execute ") {
                let r = r.strip_prefix(b"fetch from ").unwrap_or(r);
                let (name, sql) = statement_name(r);
                let pending = self.sessions.get_mut(e.session).and_then(|s| {
                    let i = s.pending.iter().position(|p| p.0 == name)?;
                    Some(s.pending.remove(i))
                });
                return match pending {
                    Some((_, start, d, _, lines)) => {
                        ctx.report.merged += lines;
                        self.emit(e, ctx, start, d + dur, sql)
                    }
                    None => self.emit(e, ctx, e.time_ns - dur as i64, dur, sql),
                };
            }
            if tail.starts_with(b"plan:") {
                ctx.report.ignored += 1;
                return Ok(());
            }
            // `fastpath function call: ...` and anything else with a duration.
            return self.emit(e, ctx, e.time_ns - dur as i64, dur, tail);
        }
        if let Some(sql) = msg.strip_prefix(b"statement: ") {
            let s = self.sessions.entry(e.session.to_vec()).or_default();
            if s.statement.replace((sql.to_vec(), e.line)).is_some() {
                ctx.report.unpaired += 1;
            }
            return Ok(());
        }
        ctx.report.ignored += 1;
        Ok(())
    }

    fn emit(
        &mut self,
        e: &Entry,
        ctx: &mut Ctx,
        arrival: i64,
        service: u64,
        sql: &[u8],
    ) -> Result<(), TraceError> {
        let mut attrs = e.attrs;
        attrs.conn = e.session;
        attrs.query = sql;
        ctx.emit(arrival, service, e.line, &attrs)
    }

    /// Counts what never paired (call at the end of each file).
    pub fn finish(&mut self, ctx: &mut Ctx) {
        for s in self.sessions.values() {
            ctx.report.unpaired += s.pending.len() as u64 + u64::from(s.statement.is_some());
        }
        self.sessions.clear();
    }
}

/// A message field from a log line that stops at the first line break of
/// a multi-line message is fine: durations and statement names are on the
/// first line. This checks that a message looks like a PostgreSQL one at all.
pub fn is_request_message(msg: &[u8]) -> bool {
    msg.starts_with(b"duration: ") || msg.starts_with(b"statement: ")
}
