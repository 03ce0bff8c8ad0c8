//! Arrival-only traces: any CSV (with a header row) or JSON Lines file with
//! a time column, such as the public Azure LLM inference trace
//! (`TIMESTAMP` as `2023-11-16 18:17:03.9799600`) or Mooncake's
//! (`timestamp` in ms from the start). The time field is `--time-field`, or
//! the first column named timestamp, time, arrival, arrival_time, ts,
//! start_time or created_at (any case). Date-times are UTC unless they say
//! otherwise; numbers need `--time-unit` (s, ms, us, ns). Such a trace has
//! no service times: its header says `service: none`, and a replay must
//! give a service distribution (real arrivals, synthetic service).

use serde_json::Value;

use super::Ctx;
use crate::trace::canonical::json_message;
use crate::trace::csvrow::{read_record, CsvRow};
use crate::trace::error::{excerpt, TraceError};
use crate::trace::input::LineReader;
use crate::trace::num::parse_decimal_ns;
use crate::trace::rules::Attrs;
use crate::trace::timestamp::parse_datetime;

const TIME_NAMES: &[&str] = &[
    "timestamp",
    "time",
    "arrival",
    "arrival_time",
    "ts",
    "start_time",
    "created_at",
];

fn is_time_name(name: &str, given: Option<&str>) -> bool {
    match given {
        Some(g) => name == g,
        None => TIME_NAMES.iter().any(|t| name.eq_ignore_ascii_case(t)),
    }
}

/// Parses one time value: a date-time, or a number in the given unit.
/// Returns (ns, absolute, resolution ns).
fn time_value(raw: &[u8], unit: Option<u64>) -> Result<(i64, bool, u64), String> {
    let t = raw.trim_ascii();
    if let Some(st) = parse_datetime(t) {
        let res = 10u64.pow(9 - u32::from(st.frac_digits.min(9)));
        return Ok((st.unix_ns, true, res));
    }
    if t.first().is_some_and(|c| c.is_ascii_digit() || *c == b'.') {
        let Some(unit) = unit else {
            return Err(format!(
                "`{}` is a number: say its unit with --time-unit (s, ms, us or ns)",
                excerpt(t)
            ));
        };
        let frac = t
            .iter()
            .position(|&c| c == b'.')
            .map(|i| t.len() - i - 1)
            .unwrap_or(0);
        let res = (unit / 10u64.saturating_pow(frac as u32)).max(1);
        return parse_decimal_ns(t, unit)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| (v, false, res))
            .ok_or_else(|| format!("expected a non-negative number, got `{}`", excerpt(t)));
    }
    Err(format!(
        "expected a date-time (`2023-11-16 18:17:03.979`) or a number, got `{}`",
        excerpt(t)
    ))
}

/// A bad record: the field, its column, the message.
type Problem = (String, Option<usize>, String);

pub fn import(mut lines: LineReader, ctx: &mut Ctx) -> Result<(), TraceError> {
    let file = lines.name.clone();
    ctx.no_service = true;
    let given = ctx.opts.time_field.clone();
    let unit = ctx.opts.time_unit_ns;
    // The first non-empty line tells JSON Lines from CSV (and is CSV's header).
    let (first, first_line) = loop {
        match lines.next_line()? {
            None => return Ok(()),
            Some(l) if l.trim_ascii().is_empty() => continue,
            Some(l) => break (l.to_vec(), lines.line),
        }
    };
    let json = first.trim_ascii_start().first() == Some(&b'{');
    let mut row = CsvRow::new();
    let mut time_col = 0;
    if !json {
        row.parse(&first)
            .map_err(|e| TraceError::bad(&file, first_line, Some(e.field), "header", e.message))?;
        let names: Vec<String> = (0..row.len())
            .map(|i| String::from_utf8_lossy(row.get(i)).trim().to_string())
            .collect();
        time_col = names
            .iter()
            .position(|n| is_time_name(n, given.as_deref()))
            .ok_or_else(|| {
                TraceError::bad(
                    &file,
                    first_line,
                    None,
                    "header",
                    format!(
                        "no time column among {} (name it with --time-field)",
                        names.join(", ")
                    ),
                )
            })?;
    }
    let mut absolute_seen = false;
    let mut raw = Vec::new();
    let mut pending_first = json.then_some((first, first_line));
    loop {
        let line = if let Some((f, l)) = pending_first.take() {
            raw = f;
            l
        } else if json {
            match lines.next_line()? {
                None => break,
                Some(l) => {
                    raw.clear();
                    raw.extend_from_slice(l);
                    lines.line
                }
            }
        } else {
            match read_record(&mut lines, &mut raw, 1000)? {
                None => break,
                Some(l) => l,
            }
        };
        if raw.trim_ascii().is_empty() {
            continue;
        }
        let result: Result<(i64, bool, u64), Problem> = if json {
            match serde_json::from_slice::<Value>(&raw) {
                Err(e) => Err(("record".into(), Some(e.column()), json_message(&e))),
                Ok(Value::Object(m)) => {
                    match m.iter().find(|(k, _)| is_time_name(k, given.as_deref())) {
                        None => Err((
                            given.clone().unwrap_or_else(|| "timestamp".into()),
                            None,
                            "no time field (name it with --time-field)".to_string(),
                        )),
                        Some((k, v)) => {
                            let text = match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            time_value(text.as_bytes(), unit).map_err(|m| (k.clone(), None, m))
                        }
                    }
                }
                Ok(_) => Err(("record".into(), None, "expected a JSON object".into())),
            }
        } else {
            match row.parse(&raw) {
                Err(e) => Err(("record".into(), Some(e.field), e.message)),
                Ok(()) if time_col >= row.len() => Err((
                    "record".into(),
                    Some(row.len()),
                    format!(
                        "the row has {} fields, the time column is field {}",
                        row.len(),
                        time_col + 1
                    ),
                )),
                Ok(()) => time_value(row.get(time_col), unit)
                    .map_err(|m| ("time".into(), Some(time_col + 1), m)),
            }
        };
        match result {
            Ok((t, abs, res)) => {
                ctx.report.time_resolution_ns = ctx.report.time_resolution_ns.max(res);
                if !absolute_seen {
                    absolute_seen = true;
                    ctx.absolute = ctx.absolute && abs;
                }
                ctx.emit(t, 0, line, &Attrs::default())?;
            }
            Err((field, col, msg)) => ctx.bad(TraceError::bad(&file, line, col, field, msg))?,
        }
    }
    ctx.report.lines += lines.line;
    Ok(())
}
