//! Simulated time: integer nanoseconds, handed to the core by a driver.
//!
//! The core never reads a clock. Integer nanoseconds make event ordering exact
//! (no float ties, no drift) and cover about 584 years in a `u64`.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point in time, in nanoseconds since the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(pub u64);

/// A span of time in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimDuration(pub u64);

pub const NANOS_PER_MS: u64 = 1_000_000;
pub const NANOS_PER_S: u64 = 1_000_000_000;

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);
    /// A time later than any the simulator reaches; "never".
    pub const NEVER: SimTime = SimTime(u64::MAX);

    pub fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_S as f64
    }
    /// Time elapsed since `earlier`; zero if `earlier` is later (saturating).
    pub fn since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
    pub fn saturating_add(self, d: SimDuration) -> SimTime {
        SimTime(self.0.saturating_add(d.0))
    }
}

impl SimDuration {
    pub const ZERO: SimDuration = SimDuration(0);
    /// No limit (used for "no acquire timeout").
    pub const INFINITE: SimDuration = SimDuration(u64::MAX);

    pub fn from_nanos(n: u64) -> Self {
        SimDuration(n)
    }
    pub fn from_millis(ms: u64) -> Self {
        SimDuration(ms * NANOS_PER_MS)
    }
    pub fn from_secs(s: u64) -> Self {
        SimDuration(s * NANOS_PER_S)
    }
    /// Rounds to the nearest nanosecond; negative and NaN inputs give zero,
    /// too-large ones saturate.
    pub fn from_secs_f64(s: f64) -> Self {
        let ns = (s * NANOS_PER_S as f64).round();
        if ns.is_nan() || ns <= 0.0 {
            SimDuration(0)
        } else if ns >= u64::MAX as f64 {
            SimDuration(u64::MAX)
        } else {
            SimDuration(ns as u64)
        }
    }
    pub fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_S as f64
    }
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_MS as f64
    }
    pub fn is_infinite(self) -> bool {
        self.0 == u64::MAX
    }
}

impl Add<SimDuration> for SimTime {
    type Output = SimTime;
    fn add(self, d: SimDuration) -> SimTime {
        self.saturating_add(d)
    }
}

impl AddAssign<SimDuration> for SimTime {
    fn add_assign(&mut self, d: SimDuration) {
        *self = *self + d;
    }
}

impl Sub<SimTime> for SimTime {
    type Output = SimDuration;
    fn sub(self, earlier: SimTime) -> SimDuration {
        self.since(earlier)
    }
}

impl Add for SimDuration {
    type Output = SimDuration;
    fn add(self, o: SimDuration) -> SimDuration {
        SimDuration(self.0.saturating_add(o.0))
    }
}

impl fmt::Display for SimDuration {
    /// Formats in the same humane syntax the config accepts ("2.5s", "250ms").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_infinite() {
            return f.write_str("none");
        }
        let units: [(&str, u64); 6] = [
            ("h", 3600 * NANOS_PER_S),
            ("m", 60 * NANOS_PER_S),
            ("s", NANOS_PER_S),
            ("ms", NANOS_PER_MS),
            ("us", 1_000),
            ("ns", 1),
        ];
        let ns = self.0;
        if ns == 0 {
            return f.write_str("0s");
        }
        // The largest unit in which the value is written with at most 3 decimals, exactly.
        for (name, per) in units {
            if ns >= per || per == 1 {
                let whole = ns / per;
                let rem = ns % per;
                if rem == 0 {
                    return write!(f, "{whole}{name}");
                }
                let milli = per / 1000;
                if milli > 0 && rem.is_multiple_of(milli) {
                    let frac = format!("{:03}", rem / milli);
                    return write!(f, "{whole}.{}{name}", frac.trim_end_matches('0'));
                }
            }
        }
        write!(f, "{ns}ns")
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Seconds with nanosecond digits: readable at any magnitude.
        write!(f, "t={}.{:09}s", self.0 / NANOS_PER_S, self.0 % NANOS_PER_S)
    }
}

impl serde::Serialize for SimDuration {
    /// As the humane string the config accepts, e.g. "2.5s".
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Error from [`parse_duration`], with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a duration such as \"2.5s\", \"250ms\", \"30s\", \"10m\" or \"1h\" (units ns, us, ms, s, m, h){}, got \"{input}\"", if *allow_none { " or \"none\"" } else { "" })]
pub struct DurationParseError {
    pub input: String,
    pub allow_none: bool,
}

/// Parses a humane duration: a non-negative decimal number and a unit
/// (`ns`, `us`, `ms`, `s`, `m`, `h`), e.g. "2.5s", "250ms", "1h". Parsed exactly
/// in integer nanoseconds (no float rounding): "2.5s" is 2_500_000_000 ns.
/// Digits below one nanosecond are an error, not silently dropped.
pub fn parse_duration(input: &str) -> Result<SimDuration, DurationParseError> {
    let err = || DurationParseError {
        input: input.to_string(),
        allow_none: false,
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(err)?;
    let (num, unit) = s.split_at(split);
    let per: u64 = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => NANOS_PER_MS,
        "s" => NANOS_PER_S,
        "m" | "min" => 60 * NANOS_PER_S,
        "h" => 3600 * NANOS_PER_S,
        _ => return Err(err()),
    };
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, f),
        None => (num, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(err());
    }
    if frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return Err(err());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| err())?
    };
    // u64::MAX ns is reserved for "no limit"; it must be spelled "none".
    let mut ns = whole
        .checked_mul(per)
        .filter(|&v| v < u64::MAX)
        .ok_or_else(err)?;
    // Fraction digits: each must land on a whole nanosecond.
    let mut scale = per;
    for d in frac.chars() {
        let digit = d.to_digit(10).ok_or_else(err)? as u64;
        if !scale.is_multiple_of(10) {
            if digit != 0 {
                return Err(err());
            }
            continue;
        }
        scale /= 10;
        ns = ns.checked_add(digit * scale).ok_or_else(err)?;
    }
    if ns == u64::MAX {
        return Err(err());
    }
    Ok(SimDuration(ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_humane_durations_exactly() {
        assert_eq!(parse_duration("2.5s").unwrap(), SimDuration(2_500_000_000));
        assert_eq!(parse_duration("250ms").unwrap(), SimDuration(250_000_000));
        assert_eq!(
            parse_duration("10m").unwrap(),
            SimDuration(600 * NANOS_PER_S)
        );
        assert_eq!(
            parse_duration("1h").unwrap(),
            SimDuration(3600 * NANOS_PER_S)
        );
        assert_eq!(parse_duration("0.001ms").unwrap(), SimDuration(1_000));
        assert_eq!(parse_duration("7ns").unwrap(), SimDuration(7));
        assert_eq!(parse_duration(".5s").unwrap(), SimDuration(500_000_000));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "",
            "s",
            "5",
            "5 sec",
            "-1s",
            "1.5.2s",
            "1.s",
            "0.5ns",
            "abc",
            "1e3ms",
            "99999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let msg = parse_duration("5 sec").unwrap_err().to_string();
        assert!(
            msg.contains("expected a duration") && msg.contains("\"5 sec\""),
            "{msg}"
        );
    }

    #[test]
    fn display_round_trips_examples() {
        for s in [
            "2.5s", "250ms", "30s", "10m", "1h", "1.5us", "7ns", "0s", "1.25ms",
        ] {
            assert_eq!(parse_duration(s).unwrap().to_string(), s);
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(ns in 0u64..(1u64 << 52)) {
            let d = SimDuration(ns);
            prop_assert_eq!(parse_duration(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,16}") {
            let _ = parse_duration(&s);
        }
    }
}
