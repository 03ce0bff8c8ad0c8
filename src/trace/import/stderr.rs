//! PostgreSQL stderr and syslog logs, read with the server's
//! `log_line_prefix` (like pgBadger's `--prefix`).
//!
//! The prefix is turned into a regular expression: `%t`/`%m`/`%n` give the
//! line's time, `%p` or `%c` the session, `%a`/`%u`/`%d`/`%i`/`%Q` the
//! application, user, database, command tag and query id; `%q` makes the
//! rest optional (background processes stop there); padding (`%-10u`) is
//! accepted. After the prefix comes `SEVERITY:  message`. A line that does
//! not match continues the previous entry (multi-line SQL). Without a
//! prefix, common ones are tried (PostgreSQL's default `%m [%p] `,
//! Debian's `%m [%p] %q%u@%d `, pgBadger's recommendation, RDS's).
//!
//! syslog lines (`Feb 11 13:15:39 host postgres[10808]: [3-1] PREFIX...`)
//! carry their own time (whole seconds, no year: `--year`, else the file's
//! modification year; a December-to-January step adds a year) and pid;
//! `[n-2]`, `[n-3]` chunks continue entry n (`#011` is a tab).

use std::path::Path;

use regex::bytes::{Captures, Regex};

use super::pglog::{Assembler, Entry};
use super::{Ctx, Format};
use crate::trace::error::{excerpt, TraceError};
use crate::trace::input::{self, LineReader};
use crate::trace::rules::Attrs;
use crate::trace::timestamp::{days_from_civil, parse_datetime, parse_epoch, parse_syslog};

/// Prefixes tried when none is given (most specific first).
pub const COMMON_PREFIXES: &[&str] = &[
    "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: user=%u,db=%d,app=%a,client=%h ",
    "%m [%p] %q%u@%d ",
    "%t [%p] %q%u@%d ",
    "%t:%r:%u@%d:[%p]:",
    "%m [%p] ",
    "%t [%p] ",
    "%m [%p]: ",
    "%t [%p]: ",
    "[%l-1] db=%d,user=%u,app=%a,client=%h ",
    "db=%d,user=%u,app=%a,client=%h ",
    "[%p]: [%l-1] db=%d,user=%u ",
    "[%l-1] user=%u,db=%d,app=%a,client=%h ",
    "user=%u,db=%d,app=%a,client=%h ",
    "",
];

const SEVERITIES: &str =
    "DEBUG[1-5]|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|QUERY|CONTEXT|STATEMENT|LOCATION";

/// A compiled `log_line_prefix`.
#[derive(Clone, Debug)]
pub struct Prefix {
    re: Regex,
    pub text: String,
    /// Which time escape the prefix has: `t`, `m`, `n`, or none.
    pub time: Option<char>,
    pub has_session: bool,
}

/// What a prefix match found in one line.
pub struct Parsed<'a> {
    pub time: Option<&'a [u8]>,
    pub pid: &'a [u8],
    pub session: &'a [u8],
    pub attrs: Attrs<'a>,
    pub severity: &'a [u8],
    pub message: &'a [u8],
    /// Byte offset of the message in the line.
    pub message_at: usize,
}

fn cap<'a>(c: &Captures<'a>, name: &str) -> &'a [u8] {
    c.name(name).map(|m| m.as_bytes()).unwrap_or(&[])
}

impl Prefix {
    /// Compiles a `log_line_prefix` value (as set on the server, without
    /// the surrounding quotes).
    pub fn compile(prefix: &str) -> Result<Prefix, TraceError> {
        let mut re = String::from("^");
        let mut used: Vec<&str> = Vec::new();
        let mut time = None;
        let mut has_session = false;
        let mut optional_groups = 0;
        let mut chars = prefix.chars().peekable();
        let mut group = |name: &'static str, pat: &str, re: &mut String| {
            if used.contains(&name) {
                re.push_str(&format!("(?:{pat})"));
            } else {
                used.push(name);
                re.push_str(&format!("(?P<{name}>{pat})"));
            }
        };
        const TS: &str = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d";
        const ZONE: &str = r"(?: [A-Za-z][A-Za-z0-9_/+\-]{0,31}| [+-]\d\d(?::?\d\d)?)?";
        while let Some(c) = chars.next() {
            if c != '%' {
                re.push_str(&regex::escape(&c.to_string()));
                continue;
            }
            // Padding: %-10u, %10u.
            if chars.peek() == Some(&'-') {
                chars.next();
            }
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            let Some(e) = chars.next() else {
                return Err(TraceError::Invalid(format!(
                    "log_line_prefix `{prefix}` ends with a lone `%`"
                )));
            };
            match e {
                'a' => group("app", ".*?", &mut re),
                'u' => group("user", ".*?", &mut re),
                'd' => group("db", ".*?", &mut re),
                'r' => group("remote", ".*?", &mut re),
                'h' => group("host", ".*?", &mut re),
                'L' => group("local", ".*?", &mut re),
                'b' => group("btype", ".*?", &mut re),
                'p' => {
                    has_session = true;
                    group("pid", r"\d+", &mut re)
                }
                'P' => re.push_str(r"\d*"),
                't' => {
                    time.get_or_insert('t');
                    group("t", &format!("{TS}{ZONE}"), &mut re)
                }
                'm' => {
                    time.get_or_insert('m');
                    group("m", &format!(r"{TS}\.\d+{ZONE}"), &mut re)
                }
                'n' => {
                    time.get_or_insert('n');
                    group("n", r"\d+\.\d+", &mut re)
                }
                'i' => group("tag", ".*?", &mut re),
                'e' => re.push_str("[0-9A-Z]{5}"),
                'c' => {
                    has_session = true;
                    group("session", r"[0-9a-f]+\.[0-9a-f]+", &mut re)
                }
                'l' => re.push_str(r"\d+"),
                's' => re.push_str(&format!(r"{TS}{ZONE}")),
                'v' => re.push_str(r"[0-9/\-]*?"),
                'x' => re.push_str(r"\d+"),
                'q' => {
                    re.push_str("(?:");
                    optional_groups += 1;
                }
                'Q' => group("qid", r"-?\d+", &mut re),
                '%' => re.push('%'),
                other => {
                    return Err(TraceError::Invalid(format!(
                        "log_line_prefix `{prefix}`: unknown escape `%{other}` (PostgreSQL's are %a %u %d %r %h %L %b %p %P %t %m %n %i %e %c %l %s %v %x %q %Q %%)"
                    )))
                }
            }
        }
        for _ in 0..optional_groups {
            re.push_str(")?");
        }
        re.push_str(&format!("(?P<sev>{SEVERITIES}):  "));
        let re = Regex::new(&re).map_err(|e| {
            TraceError::Invalid(format!(
                "log_line_prefix `{prefix}` gives no usable pattern: {e}"
            ))
        })?;
        Ok(Prefix {
            re,
            text: prefix.to_string(),
            time,
            has_session,
        })
    }

    /// Matches one line (or a syslog line's text after its header).
    pub fn parse<'a>(&self, line: &'a [u8]) -> Option<Parsed<'a>> {
        let c = self.re.captures(line)?;
        let end = c.get(0).expect("whole match").end();
        let time = ["m", "t", "n"]
            .iter()
            .find_map(|n| c.name(n))
            .map(|m| m.as_bytes());
        Some(Parsed {
            time,
            pid: cap(&c, "pid"),
            session: cap(&c, "session"),
            attrs: Attrs {
                application: cap(&c, "app"),
                user: cap(&c, "user"),
                database: cap(&c, "db"),
                command: cap(&c, "tag"),
                query_id: cap(&c, "qid"),
                ..Default::default()
            },
            severity: cap(&c, "sev"),
            message: &line[end..],
            message_at: end,
        })
    }
}

/// The syslog header of a line: time (as seconds-of-year parts), pid,
/// chunk number and the text after `[n-m] `.
struct SyslogLine<'a> {
    month: u32,
    day: u32,
    tod_ns: i64,
    /// Absolute time when the stamp was ISO 8601 (rsyslog high precision).
    iso: Option<(i64, u8)>,
    pid: &'a [u8],
    chunk: u32,
    rest: &'a [u8],
}

fn parse_syslog_line(line: &[u8]) -> Option<SyslogLine<'_>> {
    let (month, day, tod_ns, iso, mut i) = if let Some((m, d, tod, used)) = parse_syslog(line) {
        (m, d, tod, None, used)
    } else {
        // RFC 3339 stamp: up to the first space.
        let sp = memchr::memchr(b' ', line)?;
        let st = parse_datetime(&line[..sp])?;
        (0, 0, 0, Some((st.unix_ns, st.frac_digits)), sp)
    };
    // " host ident[pid]: "
    if line.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    let host_end = i + memchr::memchr(b' ', &line[i..])?;
    i = host_end + 1;
    let colon = i + memchr::memmem::find(&line[i..], b": ")?;
    let ident = &line[i..colon];
    let open = memchr::memchr(b'[', ident)?;
    if ident.last() != Some(&b']') {
        return None;
    }
    let pid = &ident[open + 1..ident.len() - 1];
    let mut rest = &line[colon + 2..];
    let mut chunk = 1;
    if rest.first() == Some(&b'[') {
        if let Some(close) = memchr::memchr(b']', rest) {
            let inner = &rest[1..close];
            if let Some(dash) = memchr::memchr(b'-', inner) {
                if let Ok(c) = std::str::from_utf8(&inner[dash + 1..])
                    .unwrap_or("")
                    .parse()
                {
                    chunk = c;
                    rest = rest[close + 1..]
                        .strip_prefix(b" ")
                        .unwrap_or(&rest[close + 1..]);
                }
            }
        }
    }
    Some(SyslogLine {
        month,
        day,
        tod_ns,
        iso,
        pid,
        chunk,
        rest,
    })
}

/// Tries the common prefixes on the first lines; the best one that
/// matches at least a fifth of them.
pub fn infer_prefix(head: &[u8], syslog: bool) -> Option<Prefix> {
    let lines: Vec<&[u8]> = head
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .take(500)
        .map(|l| {
            if syslog {
                parse_syslog_line(l).map(|s| s.rest).unwrap_or(&[])
            } else {
                l
            }
        })
        .collect();
    let mut best: Option<(usize, Prefix)> = None;
    for p in COMMON_PREFIXES {
        let Ok(prefix) = Prefix::compile(p) else {
            continue;
        };
        if !syslog && prefix.time.is_none() {
            continue;
        }
        let n = lines.iter().filter(|l| prefix.parse(l).is_some()).count();
        if n > best.as_ref().map_or(0, |b| b.0) {
            best = Some((n, prefix));
        }
    }
    best.filter(|(n, _)| *n * 5 >= lines.len() && *n > 0)
        .map(|(_, p)| p)
}

/// One entry being assembled from its lines.
#[derive(Default)]
struct Current {
    active: bool,
    is_log: bool,
    time_ns: i64,
    line: u64,
    session: Vec<u8>,
    app: Vec<u8>,
    user: Vec<u8>,
    db: Vec<u8>,
    tag: Vec<u8>,
    qid: Vec<u8>,
    message: Vec<u8>,
    message_col: usize,
}

impl Current {
    fn flush(&mut self, asm: &mut Assembler, ctx: &mut Ctx) -> Result<(), TraceError> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        if !self.is_log {
            ctx.report.ignored += 1;
            return Ok(());
        }
        let e = Entry {
            time_ns: self.time_ns,
            session: &self.session,
            message: &self.message,
            line: self.line,
            attrs: Attrs {
                application: &self.app,
                user: &self.user,
                database: &self.db,
                command: &self.tag,
                query_id: &self.qid,
                ..Default::default()
            },
            field: "message",
            column: Some(self.message_col + 1),
        };
        asm.feed(&e, ctx)
    }

    fn start(&mut self, p: &Parsed, time_ns: i64, line: u64, session: &[u8]) {
        self.active = true;
        self.is_log = p.severity == b"LOG";
        self.time_ns = time_ns;
        self.line = line;
        for (dst, src) in [
            (&mut self.session, session),
            (&mut self.app, p.attrs.application),
            (&mut self.user, p.attrs.user),
            (&mut self.db, p.attrs.database),
            (&mut self.tag, p.attrs.command),
            (&mut self.qid, p.attrs.query_id),
            (&mut self.message, p.message),
        ] {
            dst.clear();
            dst.extend_from_slice(src);
        }
        self.message_col = p.message_at;
    }
}

/// The prefix to use: the given one, or one inferred from the file's head.
pub fn resolve_prefix(
    path: &Path,
    format: Format,
    given: Option<&str>,
) -> Result<Prefix, TraceError> {
    let syslog = format == Format::Syslog;
    match given {
        Some(p) => {
            let prefix = Prefix::compile(p)?;
            if !syslog && format != Format::CloudSql && prefix.time.is_none() {
                return Err(TraceError::Invalid(format!(
                    "log_line_prefix `{p}` has no time escape (%t, %m or %n): a stderr log needs one to give arrival times"
                )));
            }
            Ok(prefix)
        }
        None => {
            let head = input::head(path, 1 << 16)?;
            infer_prefix(&head, syslog).ok_or_else(|| {
                TraceError::file(
                    path.display().to_string(),
                    format!(
                        "cannot tell this log's log_line_prefix: give it with --prefix (the server's setting, e.g. --prefix '%m [%p] %q%u@%d '); tried: {}",
                        COMMON_PREFIXES.iter().filter(|p| !p.is_empty()).map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
                    ),
                )
            })
        }
    }
}

fn file_year(path: &Path) -> i64 {
    let Ok(m) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        return 1970;
    };
    let secs = match m.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => 0,
    };
    crate::trace::timestamp::civil_from_days(secs.div_euclid(86_400)).0
}

/// Imports one stderr or syslog file.
pub fn import(path: &Path, format: Format, ctx: &mut Ctx) -> Result<(), TraceError> {
    let syslog = format == Format::Syslog;
    let prefix = resolve_prefix(path, format, ctx.opts.prefix.as_deref())?;
    ctx.report.prefix = Some(prefix.text.clone());
    if ctx.opts.prefix.is_none() && !ctx.report.warnings.iter().any(|w| w.contains("inferred")) {
        ctx.report.warnings.push(format!(
            "log_line_prefix inferred as '{}': give the server's own with --prefix so that every field it logs (application, user, ...) is read",
            prefix.text
        ));
    }
    if !prefix.has_session && !syslog {
        ctx.report.warnings.push(format!(
            "log_line_prefix `{}` has no %p or %c: statements cannot be paired per session (extended protocol, log_statement)",
            prefix.text
        ));
    }
    let mut lines = LineReader::open(path)?;
    let file = lines.name.clone();
    let mut asm = Assembler::new();
    let mut cur = Current::default();
    let mut year = ctx.opts.year.unwrap_or_else(|| file_year(path));
    let mut last_month = 0u32;
    let mut matched = 0u64;
    let mut decoded = Vec::new();
    while let Some((line, raw)) = lines.next_numbered()? {
        if raw.is_empty() {
            continue;
        }
        let (text, sys): (&[u8], Option<SyslogLine>) = if syslog {
            match parse_syslog_line(raw) {
                Some(s) => {
                    decoded.clear();
                    // PostgreSQL's syslog output escapes tabs as #011.
                    let mut rest = s.rest;
                    while let Some(i) = memchr::memmem::find(rest, b"#011") {
                        decoded.extend_from_slice(&rest[..i]);
                        decoded.push(b'\t');
                        rest = &rest[i + 4..];
                    }
                    decoded.extend_from_slice(rest);
                    (&decoded[..], Some(s))
                }
                None => {
                    ctx.bad(TraceError::bad(
                        &file,
                        line,
                        Some(1),
                        "syslog header",
                        format!(
                            "expected `Mon DD HH:MM:SS host ident[pid]: ...`, got `{}`",
                            excerpt(raw)
                        ),
                    ))?;
                    continue;
                }
            }
        } else {
            (raw, None)
        };
        let continuation = sys.as_ref().is_some_and(|s| s.chunk > 1);
        let parsed = if continuation {
            None
        } else {
            prefix.parse(text)
        };
        let Some(p) = parsed else {
            if cur.active {
                cur.message.push(b'\n');
                cur.message.extend_from_slice(text);
                continue;
            }
            if continuation {
                ctx.report.ignored += 1;
                continue;
            }
            if matched == 0 && line >= 1000 {
                return Err(TraceError::file(
                    &file,
                    format!(
                        "none of the first 1000 lines starts with the log_line_prefix `{}` followed by `LOG:  ` (or another severity): give the server's prefix with --prefix",
                        prefix.text
                    ),
                ));
            }
            ctx.bad(TraceError::bad(
                &file,
                line,
                Some(1),
                "log_line_prefix",
                format!(
                    "the line does not start with the log_line_prefix `{}` and a severity (`LOG:  `): `{}`",
                    prefix.text,
                    excerpt(text)
                ),
            ))?;
            continue;
        };
        matched += 1;
        // The entry's time.
        let time_ns = match (&sys, p.time) {
            (_, Some(t)) => {
                let st = if prefix.time == Some('n') {
                    parse_epoch(t).map(|ns| (ns, 3u8, true))
                } else {
                    parse_datetime(t).map(|s| (s.unix_ns, s.frac_digits, s.zone_known))
                };
                match st {
                    Some((ns, digits, known)) => {
                        if !known {
                            ctx.unknown_zone(t);
                        }
                        ctx.resolution_digits(digits);
                        ns
                    }
                    None => {
                        cur.flush(&mut asm, ctx)?;
                        ctx.bad(TraceError::bad(
                            &file,
                            line,
                            None,
                            "time",
                            format!("expected a time stamp, got `{}`", excerpt(t)),
                        ))?;
                        continue;
                    }
                }
            }
            (Some(s), None) => match s.iso {
                Some((ns, digits)) => {
                    ctx.resolution_digits(digits);
                    ns
                }
                None => {
                    if last_month == 12 && s.month == 1 {
                        year += 1;
                    }
                    last_month = s.month;
                    ctx.resolution_digits(0);
                    days_from_civil(year, s.month, s.day) * 86_400_000_000_000 + s.tod_ns
                }
            },
            (None, None) => {
                return Err(TraceError::Invalid(format!(
                    "log_line_prefix `{}` has no time escape (%t, %m or %n)",
                    prefix.text
                )))
            }
        };
        cur.flush(&mut asm, ctx)?;
        let session: &[u8] = if !p.session.is_empty() {
            p.session
        } else if !p.pid.is_empty() {
            p.pid
        } else {
            sys.as_ref().map(|s| s.pid).unwrap_or(&[])
        };
        cur.start(&p, time_ns, line, session);
    }
    cur.flush(&mut asm, ctx)?;
    ctx.report.lines += lines.line;
    asm.finish(ctx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_compile_and_match() {
        let p = Prefix::compile("%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ").unwrap();
        let line = b"2017-09-06 08:41:41 UTC [36]: [121-1] user=postgres,db=postgres,app=pgbench,client=172.23.0.1 LOG:  duration: 2.280 ms  statement: END;";
        let m = p.parse(line).unwrap();
        assert_eq!(m.time, Some(&b"2017-09-06 08:41:41 UTC"[..]));
        assert_eq!(m.pid, b"36");
        assert_eq!(m.attrs.application, b"pgbench");
        assert_eq!(m.attrs.user, b"postgres");
        assert_eq!(m.severity, b"LOG");
        assert_eq!(m.message, b"duration: 2.280 ms  statement: END;");

        let rds = Prefix::compile("%t:%r:%u@%d:[%p]:").unwrap();
        let m = rds
            .parse(b"2020-03-11 20:40:43 CET::@:[12760]:LOG:  starting")
            .unwrap();
        assert_eq!(m.pid, b"12760");
        assert_eq!(m.message, b"starting");

        let q = Prefix::compile("%m [%p] [queryid=%Q] %u@%d ").unwrap();
        let m = q.parse(b"2022-02-17 14:45:10.440 UTC [691] [queryid=-108127] postgres@stackoverflow LOG:  duration: 0.140 ms  statement: x").unwrap();
        assert_eq!(m.attrs.query_id, b"-108127");
        assert_eq!(m.attrs.database, b"stackoverflow");

        let deb = Prefix::compile("%m [%p] %q%u@%d ").unwrap();
        assert!(deb
            .parse(b"2024-01-01 00:00:00.000 UTC [5] LOG:  checkpoint starting")
            .is_some());
        assert!(deb
            .parse(b"2024-01-01 00:00:00.000 UTC [5] app@db LOG:  duration: 1 ms")
            .is_some());
        assert!(Prefix::compile("%m %").is_err());
        assert!(Prefix::compile("%m %y")
            .unwrap_err()
            .to_string()
            .contains("unknown escape `%y`"));
    }

    #[test]
    fn syslog_headers() {
        let s =
            parse_syslog_line(b"Feb 11 13:15:39 test-pc postgres[10808]: [3-2] db=,user= HINT:  x")
                .unwrap();
        assert_eq!((s.month, s.day, s.pid, s.chunk), (2, 11, &b"10808"[..], 2));
        assert_eq!(s.rest, b"db=,user= HINT:  x");
        assert!(parse_syslog_line(b"garbage").is_none());
        let iso =
            parse_syslog_line(b"2019-02-11T13:15:39.123456+01:00 h postgres[1]: [1-1] x").unwrap();
        assert!(iso.iso.is_some());
    }
}
