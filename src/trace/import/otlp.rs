//! OpenTelemetry spans in OTLP/JSON (`resourceSpans[].scopeSpans[].spans[]`,
//! as the Collector's file exporter writes them, one export request per
//! line; a single pretty-printed document works too). Spans whose
//! `db.system.name` (or the older `db.system`) is `postgresql` are
//! requests: arrival = `startTimeUnixNano`, service = end - start (the
//! client's view, network included). Attributes feed the rules: the
//! resource's `service.name` as application, `db.user`, `db.namespace` (or
//! `db.name`), `db.query.text` (or `db.statement`), `db.operation.name` (or
//! `db.operation`) as command. Spans without a statement or operation
//! (`pg.connect`) are not requests. The time resolution is the coarsest
//! the start times show (the JS SDK's are whole milliseconds).

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::Ctx;
use crate::trace::canonical::json_message;
use crate::trace::error::TraceError;
use crate::trace::input::LineReader;
use crate::trace::num::parse_u64;
use crate::trace::rules::Attrs;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Export<'a> {
    #[serde(default, borrow)]
    resource_spans: Vec<ResourceSpans<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    #[serde(default, borrow)]
    resource: Option<Resource<'a>>,
    #[serde(default, borrow)]
    scope_spans: Vec<ScopeSpans<'a>>,
    /// Before OTLP 0.15.
    #[serde(default, borrow)]
    instrumentation_library_spans: Vec<ScopeSpans<'a>>,
}

#[derive(Deserialize)]
struct Resource<'a> {
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Deserialize)]
struct ScopeSpans<'a> {
    #[serde(default, borrow)]
    spans: Vec<Span<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Span<'a> {
    #[serde(borrow)]
    start_time_unix_nano: Option<NanoTime<'a>>,
    #[serde(borrow)]
    end_time_unix_nano: Option<NanoTime<'a>>,
    #[serde(default, borrow)]
    attributes: Vec<KeyValue<'a>>,
    #[serde(default, borrow)]
    trace_id: Option<Cow<'a, str>>,
}

/// Nanoseconds as a decimal string (the OTLP/JSON rule for 64-bit
/// integers) or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum NanoTime<'a> {
    Num(u64),
    #[serde(borrow)]
    Str(Cow<'a, str>),
}

impl NanoTime<'_> {
    fn get(&self) -> Option<u64> {
        match self {
            NanoTime::Num(v) => Some(*v),
            NanoTime::Str(s) => parse_u64(s.as_bytes()),
        }
    }
}

#[derive(Deserialize)]
struct KeyValue<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<AnyValue<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValue<'a> {
    #[serde(default, borrow)]
    string_value: Option<Cow<'a, str>>,
}

fn attr<'a>(attrs: &'a [KeyValue<'a>], keys: &[&str]) -> &'a [u8] {
    for k in keys {
        if let Some(v) = attrs
            .iter()
            .find(|a| a.key == *k)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.string_value.as_deref())
        {
            return v.as_bytes();
        }
    }
    &[]
}

fn is_postgres(attrs: &[KeyValue]) -> bool {
    let v = attr(attrs, &["db.system.name", "db.system"]);
    v.eq_ignore_ascii_case(b"postgresql") || v.eq_ignore_ascii_case(b"postgres")
}

fn spans(
    doc: &Export,
    line: u64,
    file: &str,
    ctx: &mut Ctx,
    min_zeros: &mut u8,
) -> Result<(), TraceError> {
    for (ri, rs) in doc.resource_spans.iter().enumerate() {
        let app = rs
            .resource
            .as_ref()
            .map(|r| attr(&r.attributes, &["service.name"]))
            .unwrap_or(&[]);
        for (si, ss) in rs
            .scope_spans
            .iter()
            .chain(&rs.instrumentation_library_spans)
            .enumerate()
        {
            for (pi, sp) in ss.spans.iter().enumerate() {
                if !is_postgres(&sp.attributes) {
                    ctx.report.ignored += 1;
                    continue;
                }
                let path = format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                let start = sp.start_time_unix_nano.as_ref().and_then(NanoTime::get);
                let end = sp.end_time_unix_nano.as_ref().and_then(NanoTime::get);
                let (Some(start), Some(end)) = (start, end) else {
                    ctx.bad(TraceError::bad(
                        file,
                        line,
                        None,
                        format!("{path}.startTimeUnixNano"),
                        "expected startTimeUnixNano and endTimeUnixNano (nanoseconds as decimal strings)",
                    ))?;
                    continue;
                };
                if end < start || start > i64::MAX as u64 {
                    ctx.bad(TraceError::bad(
                        file,
                        line,
                        None,
                        format!("{path}.endTimeUnixNano"),
                        format!("the span ends ({end}) before it starts ({start})"),
                    ))?;
                    continue;
                }
                let a = &sp.attributes;
                let query = attr(a, &["db.query.text", "db.statement"]);
                let command = attr(a, &["db.operation.name", "db.operation"]);
                if query.is_empty() && command.is_empty() {
                    // Not a statement: a connect span (`pg.connect`) or the like.
                    ctx.report.ignored += 1;
                    continue;
                }
                // Producers differ in precision (the JS SDK starts spans on
                // whole milliseconds): the resolution is the largest power
                // of ten dividing every start time.
                let mut zeros = 0u8;
                let mut t = start;
                while zeros < 9 && t % 10 == 0 {
                    zeros += 1;
                    t /= 10;
                }
                *min_zeros = (*min_zeros).min(zeros);
                let attrs = Attrs {
                    application: app,
                    user: attr(a, &["db.user"]),
                    database: attr(a, &["db.namespace", "db.name"]),
                    query,
                    command,
                    conn: sp.trace_id.as_deref().map(str::as_bytes).unwrap_or(&[]),
                    ..Default::default()
                };
                ctx.emit(start as i64, end - start, line, &attrs)?;
            }
        }
    }
    Ok(())
}

/// The most a single pretty-printed OTLP document may take in memory.
const MAX_DOCUMENT: u64 = 1 << 30;

pub fn import(path: &Path, ctx: &mut Ctx) -> Result<(), TraceError> {
    let mut lines = LineReader::open(path)?;
    let file = lines.name.clone();
    let mut pending: Option<(Vec<u8>, u64)> = None;
    let mut min_zeros = 9u8;
    while let Some((line, raw)) = lines.next_numbered()? {
        if raw.iter().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let raw = raw.to_vec();
        match serde_json::from_slice::<Export>(&raw) {
            Ok(doc) => spans(&doc, line, &file, ctx, &mut min_zeros)?,
            Err(e) if e.is_eof() && raw.first() == Some(&b'{') => {
                // A pretty-printed document: read the rest and parse it whole.
                pending = Some((raw, line));
                break;
            }
            Err(e) => ctx.bad(TraceError::bad(
                &file,
                line,
                Some(e.column()),
                "record",
                format!("not an OTLP/JSON export request: {}", json_message(&e)),
            ))?,
        }
    }
    if let Some((mut text, first_line)) = pending {
        text.push(b'\n');
        let before = lines.line;
        let mut input = lines.into_input().take(MAX_DOCUMENT);
        input
            .read_to_end(&mut text)
            .map_err(|e| TraceError::read(path, e))?;
        let total_lines = before + text.iter().filter(|&&c| c == b'\n').count() as u64;
        ctx.report.lines += total_lines;
        let mut de = serde_json::Deserializer::from_slice(&text).into_iter::<Export>();
        for doc in &mut de {
            match doc {
                Ok(doc) => spans(&doc, first_line, &file, ctx, &mut min_zeros)?,
                Err(e) => {
                    return Err(TraceError::bad(
                        &file,
                        first_line + e.line() as u64 - 1,
                        Some(e.column()),
                        "document",
                        format!("not an OTLP/JSON export request: {}", json_message(&e)),
                    ))
                }
            }
        }
        ctx.resolution_digits(9 - min_zeros);
        return Ok(());
    }
    ctx.report.lines += lines.line;
    ctx.resolution_digits(9 - min_zeros);
    Ok(())
}
