//! Timestamps of PostgreSQL logs, syslog and JSON wrappers, parsed to
//! nanoseconds since the Unix epoch (UTC) without a date library.
//!
//! Accepted: `2026-11-27 11:41:03.383 UTC` (log_time, `%m`, `%t`), ISO 8601
//! (`2026-11-27T11:41:03.383456Z`, `+01:00`), a zone as an abbreviation
//! (`UTC`, `CET`, `PDT`, ...) or a numeric offset (`+01`, `-0530`); syslog
//! stamps without a year (`Feb 11 13:15:39`, see [`parse_syslog`]); epoch
//! seconds with a fraction (`%n`).

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A parsed timestamp: nanoseconds since the epoch, and whether its zone
/// was understood (an unknown abbreviation is taken as UTC, which shifts
/// absolute times but not the intervals between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub unix_ns: i64,
    pub zone_known: bool,
    /// Digits of the fraction of a second (0 for whole seconds, 3 for ms).
    pub frac_digits: u8,
}

#[inline]
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u32;
    }
    Some(v)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// Parses `HH:MM:SS[.fraction]` at `b[at..]`; returns (ns of day, fraction
/// digits, bytes used).
fn time_of_day(b: &[u8], at: usize) -> Option<(i64, u8, usize)> {
    let h = digits(b, at, 2)?;
    let mi = digits(b, at + 3, 2)?;
    let s = digits(b, at + 6, 2)?;
    if b.get(at + 2) != Some(&b':') || b.get(at + 5) != Some(&b':') || h > 24 || mi > 59 || s > 60 {
        return None;
    }
    let mut ns = (h as i64 * 3600 + mi as i64 * 60 + s as i64) * 1_000_000_000;
    let mut i = at + 8;
    let mut frac_digits = 0u8;
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        i += 1;
        let mut scale = 100_000_000i64;
        let start = i;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            ns += (c - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
        frac_digits = (i - start).min(9) as u8;
    }
    Some((ns, frac_digits, i - at))
}

/// UTC offsets of common zone abbreviations (seconds east of UTC). An
/// ambiguous one (CST, IST) takes its most common meaning in PostgreSQL logs.
pub fn zone_offset(abbrev: &[u8]) -> Option<i64> {
    let h = 3600;
    Some(match abbrev {
        b"UTC" | b"GMT" | b"Z" | b"UT" | b"WET" | b"Etc/UTC" => 0,
        b"BST" | b"CET" | b"WEST" | b"MET" | b"WAT" => h,
        b"CEST" | b"EET" | b"MEST" | b"SAST" | b"CAT" => 2 * h,
        b"EEST" | b"MSK" | b"EAT" | b"AST" => 3 * h,
        b"GST" => 4 * h,
        b"PKT" => 5 * h,
        b"IST" => 5 * h + 1800,
        b"ICT" | b"WIB" => 7 * h,
        b"HKT" | b"SGT" | b"AWST" | b"PHT" => 8 * h,
        b"JST" | b"KST" => 9 * h,
        b"ACST" => 9 * h + 1800,
        b"AEST" => 10 * h,
        b"ACDT" => 10 * h + 1800,
        b"AEDT" => 11 * h,
        b"NZST" => 12 * h,
        b"NZDT" => 13 * h,
        b"ADT" => -3 * h,
        b"EDT" => -4 * h,
        b"EST" | b"CDT" => -5 * h,
        b"CST" | b"MDT" => -6 * h,
        b"MST" | b"PDT" => -7 * h,
        b"PST" | b"AKDT" => -8 * h,
        b"AKST" => -9 * h,
        b"HST" => -10 * h,
        _ => return None,
    })
}

/// Parses a numeric offset `+01`, `-05:30`, `+0530`; seconds east of UTC.
fn numeric_offset(z: &[u8]) -> Option<i64> {
    let sign = match z.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &z[1..];
    let (h, m) = match rest.len() {
        2 => (digits(rest, 0, 2)?, 0),
        4 => (digits(rest, 0, 2)?, digits(rest, 2, 2)?),
        5 if rest[2] == b':' => (digits(rest, 0, 2)?, digits(rest, 3, 2)?),
        _ => return None,
    };
    if h > 15 || m > 59 {
        return None;
    }
    Some(sign * (h as i64 * 3600 + m as i64 * 60))
}

/// Parses `YYYY-MM-DD[ T]HH:MM:SS[.f][ ZONE|Z|±hh[:mm]]`; the whole input
/// must be used. `None` if it is not such a timestamp.
pub fn parse_datetime(b: &[u8]) -> Option<Stamp> {
    let y = digits(b, 0, 4)? as i64;
    let m = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&m) {
        return None;
    }
    if d == 0 || d > days_in_month(y, m) {
        return None;
    }
    if !matches!(b.get(10), Some(b' ') | Some(b'T')) {
        return None;
    }
    let (tod, frac_digits, used) = time_of_day(b, 11)?;
    let mut rest = &b[11 + used..];
    let mut offset = 0i64;
    let mut zone_known = true;
    if !rest.is_empty() {
        if rest[0] == b' ' {
            rest = &rest[1..];
        }
        if rest.is_empty() {
            return None;
        }
        if let Some(o) = zone_offset(rest).or_else(|| numeric_offset(rest)) {
            offset = o;
        } else if rest.iter().all(|c| c.is_ascii_alphabetic()) && rest.len() <= 6 {
            zone_known = false;
        } else {
            return None;
        }
    }
    let days = days_from_civil(y, m, d);
    Some(Stamp {
        unix_ns: days * 86_400_000_000_000 + tod - offset * 1_000_000_000,
        zone_known,
        frac_digits,
    })
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Parses a syslog stamp `Mon DD HH:MM:SS` (RFC 3164: no year, no zone;
/// the day may be space-padded) at the start of `b`. Returns the month, the
/// seconds since the start of that year's month... as (month 1-12, day,
/// ns of day) and the bytes used; the caller supplies the year.
pub fn parse_syslog(b: &[u8]) -> Option<(u32, u32, i64, usize)> {
    let mon = b.get(0..3)?;
    let m = MONTHS.iter().position(|x| x.as_slice() == mon)? as u32 + 1;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let (d, at) = if b.get(4) == Some(&b' ') {
        (digits(b, 5, 1)?, 6)
    } else {
        (digits(b, 4, 2)?, 6)
    };
    if b.get(at) != Some(&b' ') || d == 0 || d > 31 {
        return None;
    }
    let (tod, _, used) = time_of_day(b, at + 1)?;
    Some((m, d, tod, at + 1 + used))
}

/// Parses epoch seconds with an optional fraction (`1517420461.123`).
pub fn parse_epoch(b: &[u8]) -> Option<i64> {
    let ns = super::num::parse_decimal_ns(b, 1_000_000_000)?;
    i64::try_from(ns).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        for days in [-800_000, -1, 0, 1, 59, 365, 20_000, 20_784, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn postgres_log_times() {
        let s = parse_datetime(b"2026-11-27 11:41:03.383 UTC").unwrap();
        assert_eq!(s.unix_ns, 1_795_779_663_383_000_000);
        assert_eq!(s.frac_digits, 3);
        let cet = parse_datetime(b"2020-03-11 20:40:43 CET").unwrap();
        let utc = parse_datetime(b"2020-03-11 19:40:43 UTC").unwrap();
        assert_eq!(cet.unix_ns, utc.unix_ns);
        assert_eq!(cet.frac_digits, 0);
        let iso = parse_datetime(b"2020-03-11T19:40:43.123456Z").unwrap();
        assert_eq!(iso.unix_ns, utc.unix_ns + 123_456_000);
        let off = parse_datetime(b"2020-03-11T21:10:43+01:30").unwrap();
        assert_eq!(off.unix_ns, utc.unix_ns);
        let neg = parse_datetime(b"2020-03-11 14:40:43 -05").unwrap();
        assert_eq!(neg.unix_ns, utc.unix_ns);
        let odd = parse_datetime(b"2020-03-11 19:40:43 XYZT").unwrap();
        assert!(!odd.zone_known);
        assert_eq!(odd.unix_ns, utc.unix_ns);
    }

    #[test]
    fn rejects_non_timestamps() {
        for bad in [
            &b""[..],
            b"2026-13-01 00:00:00",
            b"2026-02-30 00:00:00",
            b"2026-11-27 11:41",
            b"2026-11-27 11:61:00",
            b"2026-11-27 11:41:03.",
            b"2026-11-27 11:41:03 U T C",
            b"20261127 114103",
        ] {
            assert!(
                parse_datetime(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn syslog_and_epoch() {
        assert_eq!(
            parse_syslog(b"Feb 11 13:15:39 host x"),
            Some((2, 11, (13 * 3600 + 15 * 60 + 39) * 1_000_000_000, 15))
        );
        assert_eq!(
            parse_syslog(b"Feb  1 00:00:01 h"),
            Some((2, 1, 1_000_000_000, 15))
        );
        assert!(parse_syslog(b"Foo 11 13:15:39").is_none());
        assert_eq!(parse_epoch(b"1.5"), Some(1_500_000_000));
    }
}
