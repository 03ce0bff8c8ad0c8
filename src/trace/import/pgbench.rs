//! pgbench per-transaction logs (`pgbench -l`): one line per transaction,
//! `client_id transaction_no time script_no time_epoch time_us
//! [schedule_lag] [retries]`, one file per thread (`prefix.pid`,
//! `prefix.pid.1`, ...; give them all, they are merged by arrival).
//!
//! `time_epoch.time_us` is the *completion*; `time` the latency in us. With
//! `-R` (a seventh column, the schedule lag), `time` counts from the
//! *scheduled* start: arrival = completion - time is the Poisson schedule,
//! and the work once sent is time - lag. [`super::PgbenchArrival::Sent`]
//! moves arrivals to the actual send (schedule + lag) instead. Without
//! `-R`, arrival = completion - time and service = time. `failed` and
//! `skipped` transactions have no latency: they are counted, not replayed.
//! Seven columns are read as `-R`'s lag (pgbench writes retries there only
//! with `--max-tries` and no `-R`). `--aggregate-interval` logs hold
//! per-interval sums and cannot be replayed: they are refused.

use super::{Ctx, PgbenchArrival};
use crate::trace::error::{excerpt, TraceError};
use crate::trace::input::LineReader;
use crate::trace::num::parse_u64;
use crate::trace::rules::Attrs;

const FIELDS: [&str; 8] = [
    "client_id",
    "transaction_no",
    "time",
    "script_no",
    "time_epoch",
    "time_us",
    "schedule_lag",
    "retries",
];

pub fn import(mut lines: LineReader, ctx: &mut Ctx) -> Result<(), TraceError> {
    let file = lines.name.clone();
    ctx.resolution_digits(6);
    while let Some((line, raw)) = lines.next_numbered()? {
        let mut fields: [&[u8]; 16] = [&[]; 16];
        let mut n = 0;
        for f in raw
            .split(|c| c.is_ascii_whitespace())
            .filter(|f| !f.is_empty())
        {
            if n < fields.len() {
                fields[n] = f;
            }
            n += 1;
        }
        if n == 0 {
            continue;
        }
        if n >= 11 && line == 1 {
            return Err(TraceError::file(
                &file,
                format!(
                    "this looks like a pgbench --aggregate-interval log ({n} columns of per-interval sums): it has no per-transaction times and cannot be replayed; record with `pgbench -l` without --aggregate-interval"
                ),
            ));
        }
        if !(6..=8).contains(&n) {
            ctx.bad(TraceError::bad(
                &file,
                line,
                Some(n.min(9)),
                if n < 6 { FIELDS[n] } else { "line" },
                format!(
                    "expected 6 to 8 space-separated fields (client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]), got {n}: `{}`",
                    excerpt(raw)
                ),
            ))?;
            continue;
        }
        let num = |i: usize| -> Result<u64, TraceError> {
            parse_u64(fields[i]).ok_or_else(|| {
                TraceError::bad(
                    &file,
                    line,
                    Some(i + 1),
                    FIELDS[i],
                    format!("expected a whole number, got `{}`", excerpt(fields[i])),
                )
            })
        };
        let parsed = (|| -> Result<Option<(i64, u64, u64)>, TraceError> {
            num(0)?;
            num(1)?;
            num(3)?;
            let epoch = num(4)?;
            let us = num(5)?;
            if us >= 1_000_000 {
                return Err(TraceError::bad(
                    &file,
                    line,
                    Some(6),
                    "time_us",
                    format!("expected microseconds below 1000000, got {us}"),
                ));
            }
            let lag_us = if n >= 7 { num(6)? } else { 0 };
            if n == 8 {
                num(7)?;
            }
            if matches!(fields[2], b"failed" | b"skipped") {
                return Ok(None);
            }
            let time_us = num(2)?;
            if lag_us > time_us {
                return Err(TraceError::bad(
                    &file,
                    line,
                    Some(7),
                    "schedule_lag",
                    format!("the schedule lag ({lag_us} us) exceeds the latency ({time_us} us), which includes it"),
                ));
            }
            let completion = (epoch as i128 * 1_000_000_000 + us as i128 * 1_000) as i64;
            let scheduled = completion - time_us as i64 * 1_000;
            let arrival = match ctx.opts.pgbench_arrival {
                PgbenchArrival::Scheduled => scheduled,
                PgbenchArrival::Sent => scheduled + lag_us as i64 * 1_000,
            };
            Ok(Some((arrival, (time_us - lag_us) * 1_000, lag_us)))
        })();
        match parsed {
            Ok(Some((arrival, service, _))) => {
                let attrs = Attrs {
                    conn: fields[0],
                    script: fields[3],
                    ..Default::default()
                };
                ctx.emit(arrival, service, line, &attrs)?;
            }
            Ok(None) => ctx.report.failed += 1,
            Err(e) => ctx.bad(e)?,
        }
    }
    ctx.report.lines += lines.line;
    Ok(())
}
