//! JSON log lines: PostgreSQL's jsonlog (PG 15+), CloudNativePG's wrapper
//! (`{"logger":"postgres","record":{csvlog field names}}`) and Google Cloud
//! Logging exports whose `textPayload` is a stderr line (Cloud SQL; its
//! time is the entry's `timestamp`, in microseconds).

use std::borrow::Cow;

use serde::Deserialize;

use super::pglog::{is_request_message, Assembler, Entry};
use super::stderr::Prefix;
use super::{Ctx, Format};
use crate::trace::canonical::json_message;
use crate::trace::error::{excerpt, TraceError};
use crate::trace::input::LineReader;
use crate::trace::rules::Attrs;
use crate::trace::timestamp::{parse_datetime, Stamp};

/// A number or a string (jsonlog writes pid and query_id as numbers,
/// CloudNativePG as strings).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr<'a> {
    Int(i64),
    UInt(u64),
    Float(f64),
    #[serde(borrow)]
    Str(Cow<'a, str>),
}

impl NumOrStr<'_> {
    fn text(&self) -> Cow<'_, str> {
        match self {
            NumOrStr::Int(v) => Cow::Owned(v.to_string()),
            NumOrStr::UInt(v) => Cow::Owned(v.to_string()),
            NumOrStr::Float(v) => Cow::Owned(v.to_string()),
            NumOrStr::Str(s) => Cow::Borrowed(s),
        }
    }
}

/// PostgreSQL jsonlog keys (unknown ones are ignored: versions add keys).
/// The aliases are CloudNativePG's names for the same fields.
#[derive(Deserialize)]
struct JsonLog<'a> {
    #[serde(borrow, alias = "log_time")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "user_name")]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "database_name")]
    dbname: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "process_id")]
    pid: Option<NumOrStr<'a>>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "command_tag")]
    ps: Option<Cow<'a, str>>,
    #[serde(borrow)]
    error_severity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    application_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    query_id: Option<NumOrStr<'a>>,
}

/// A CloudNativePG log line: PostgreSQL's record under `record`.
#[derive(Deserialize)]
struct CnpgLine<'a> {
    #[serde(borrow)]
    logger: Option<Cow<'a, str>>,
    #[serde(borrow)]
    record: Option<JsonLog<'a>>,
}

/// A Google Cloud Logging entry.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GclEntry<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text_payload: Option<Cow<'a, str>>,
}

/// The Cloud SQL for PostgreSQL payload prefix.
pub const CLOUDSQL_PREFIX: &str = "[%p]: [%l-1] db=%d,user=%u ";

fn s<'a>(v: &'a Option<Cow<'a, str>>) -> &'a [u8] {
    v.as_deref().map(str::as_bytes).unwrap_or(&[])
}

pub fn import(mut lines: LineReader, format: Format, ctx: &mut Ctx) -> Result<(), TraceError> {
    let file = lines.name.clone();
    let mut asm = Assembler::new();
    let prefix = if format == Format::CloudSql {
        let p = ctx
            .opts
            .prefix
            .clone()
            .unwrap_or_else(|| CLOUDSQL_PREFIX.to_string());
        ctx.report.prefix = Some(p.clone());
        Some(Prefix::compile(&p)?)
    } else {
        None
    };
    let mut pid_text = String::new();
    let (mut matched, mut unmatched) = (0u64, 0u64);
    let mut unmatched_example: Option<(u64, String)> = None;
    let mut qid_text = String::new();
    while let Some((line, raw)) = lines.next_numbered()? {
        let raw = raw.to_vec();
        if raw.iter().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let json_err = |e: serde_json::Error| {
            TraceError::bad(
                &file,
                line,
                Some(e.column()),
                "record",
                format!("not a JSON object: {}", json_message(&e)),
            )
        };
        let bad_time = |t: &[u8], field: &str| {
            TraceError::bad(
                &file,
                line,
                None,
                field,
                format!(
                    "expected a time such as `2026-11-27 11:41:03.383 UTC`, got `{}`",
                    excerpt(t)
                ),
            )
        };
        let time = |t: &[u8], field: &str, ctx: &mut Ctx| -> Result<Option<Stamp>, TraceError> {
            match parse_datetime(t) {
                Some(st) => {
                    if !st.zone_known {
                        ctx.unknown_zone(t);
                    }
                    ctx.resolution_digits(st.frac_digits);
                    Ok(Some(st))
                }
                None => ctx.bad(bad_time(t, field)).map(|()| None),
            }
        };
        match format {
            Format::Jsonlog | Format::Cnpg => {
                // CloudNativePG wraps the same record under other key names
                // (serde aliases on `JsonLog`), inside {"logger", "record"}.
                let (j, time_field, message_field) = if format == Format::Jsonlog {
                    match serde_json::from_slice::<JsonLog>(&raw) {
                        Ok(j) => (j, "timestamp", "message"),
                        Err(e) => {
                            ctx.bad(json_err(e))?;
                            continue;
                        }
                    }
                } else {
                    let c: CnpgLine = match serde_json::from_slice(&raw) {
                        Ok(c) => c,
                        Err(e) => {
                            ctx.bad(json_err(e))?;
                            continue;
                        }
                    };
                    match (c.logger.as_deref(), c.record) {
                        (Some("postgres"), Some(r)) => (r, "record.log_time", "record.message"),
                        _ => {
                            ctx.report.ignored += 1;
                            continue;
                        }
                    }
                };
                let msg = s(&j.message);
                if s(&j.error_severity) != b"LOG" || !is_request_message(msg) {
                    ctx.report.ignored += 1;
                    continue;
                }
                let Some(st) = time(s(&j.timestamp), time_field, ctx)? else {
                    continue;
                };
                pid_text.clear();
                if let Some(p) = &j.pid {
                    pid_text.push_str(&p.text());
                }
                qid_text.clear();
                if let Some(q) = &j.query_id {
                    qid_text.push_str(&q.text());
                }
                let session = if j.session_id.is_some() {
                    s(&j.session_id)
                } else {
                    pid_text.as_bytes()
                };
                asm.feed(
                    &Entry {
                        time_ns: st.unix_ns,
                        session,
                        message: msg,
                        line,
                        attrs: Attrs {
                            application: s(&j.application_name),
                            user: s(&j.user),
                            database: s(&j.dbname),
                            command: s(&j.ps),
                            query_id: qid_text.as_bytes(),
                            ..Default::default()
                        },
                        field: message_field,
                        column: None,
                    },
                    ctx,
                )?;
            }
            Format::CloudSql => {
                let j: GclEntry = match serde_json::from_slice(&raw) {
                    Ok(j) => j,
                    Err(e) => {
                        ctx.bad(json_err(e))?;
                        continue;
                    }
                };
                let Some(text) = j.text_payload.as_deref() else {
                    ctx.report.ignored += 1;
                    continue;
                };
                let prefix = prefix.as_ref().expect("compiled for cloudsql");
                let Some(p) = prefix.parse(text.as_bytes()) else {
                    // A continuation of a multi-line message (Cloud Logging
                    // splits them): durations are on the first line.
                    unmatched += 1;
                    if unmatched_example.is_none() {
                        unmatched_example = Some((line, excerpt(text.as_bytes())));
                    }
                    ctx.report.ignored += 1;
                    continue;
                };
                matched += 1;
                if p.severity != b"LOG" || !is_request_message(p.message) {
                    ctx.report.ignored += 1;
                    continue;
                }
                let Some(st) = time(s(&j.timestamp), "timestamp", ctx)? else {
                    continue;
                };
                let session = if p.session.is_empty() {
                    p.pid
                } else {
                    p.session
                };
                asm.feed(
                    &Entry {
                        time_ns: st.unix_ns,
                        session,
                        message: p.message,
                        line,
                        attrs: p.attrs,
                        field: "textPayload",
                        column: None,
                    },
                    ctx,
                )?;
            }
            other => {
                return Err(TraceError::Invalid(format!(
                    "the JSON log reader does not read `{other}`"
                )))
            }
        }
    }
    ctx.report.lines += lines.line;
    asm.finish(ctx);
    if let (0, Some((line, text)), Some(p)) = (matched, unmatched_example, &prefix) {
        return Err(TraceError::bad(
            &file,
            line,
            None,
            "textPayload",
            format!(
                "no entry's textPayload starts with the log_line_prefix `{}` and a severity (first: `{text}`): give the instance's prefix with --prefix",
                p.text
            ),
        ));
    }
    let _ = unmatched;
    Ok(())
}
