//! Small exact number parsers and formatters for the trace hot paths (no
//! float rounding: decimal fractions are parsed to integer nanoseconds).

/// Parses an unsigned decimal integer (ASCII digits only, no sign, no
/// spaces); `None` if empty, not a number or above `u64::MAX`.
#[inline]
pub fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Parses a signed decimal integer (an optional leading `-` or `+`).
#[inline]
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    match b.first() {
        Some(b'-') => {
            let v = parse_u64(&b[1..])?;
            if v <= i64::MAX as u64 + 1 {
                Some((v as i128).wrapping_neg() as i64)
            } else {
                None
            }
        }
        Some(b'+') => i64::try_from(parse_u64(&b[1..])?).ok(),
        _ => i64::try_from(parse_u64(b)?).ok(),
    }
}

/// Parses a non-negative decimal number (`12`, `12.5`, `.5`; no exponent)
/// in units of `unit_ns` nanoseconds (a power of ten) into whole nanoseconds, exactly;
/// digits below one nanosecond are rounded half up. `None` if malformed
/// or out of range.
pub fn parse_decimal_ns(b: &[u8], unit_ns: u64) -> Option<u64> {
    let (whole, frac) = match memchr::memchr(b'.', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[..0]),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let w = if whole.is_empty() {
        0
    } else {
        parse_u64(whole)?
    };
    let mut ns = w.checked_mul(unit_ns)?;
    let mut scale = unit_ns;
    let mut round_up = false;
    let mut below_ns = false;
    for &c in frac {
        let d = c.wrapping_sub(b'0') as u64;
        if d > 9 {
            return None;
        }
        if scale >= 10 && scale.is_multiple_of(10) {
            scale /= 10;
            ns = ns.checked_add(d * scale)?;
        } else if !below_ns {
            // The first digit below a nanosecond decides the rounding.
            below_ns = true;
            round_up = d >= 5;
        }
    }
    if round_up {
        ns = ns.checked_add(1)?;
    }
    Some(ns)
}

/// Appends the decimal digits of `v` to `out`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends the decimal digits of `v` (with a `-` if negative) to `out`.
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-"), None);
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        out.push(b' ');
        push_i64(&mut out, i64::MIN);
        assert_eq!(out, b"0 18446744073709551615 -9223372036854775808");
    }

    #[test]
    fn decimals_are_exact() {
        let ms = 1_000_000;
        assert_eq!(parse_decimal_ns(b"0.921", ms), Some(921_000));
        assert_eq!(parse_decimal_ns(b"12", ms), Some(12_000_000));
        assert_eq!(parse_decimal_ns(b".5", 1_000_000_000), Some(500_000_000));
        assert_eq!(
            parse_decimal_ns(b"1.0000000005", 1_000_000_000),
            Some(1_000_000_001)
        );
        assert_eq!(
            parse_decimal_ns(b"1.0000000004", 1_000_000_000),
            Some(1_000_000_000)
        );
        assert_eq!(parse_decimal_ns(b"1.2345", 1_000), Some(1_235));
        assert_eq!(parse_decimal_ns(b"7", 1), Some(7));
        assert_eq!(parse_decimal_ns(b"7.5", 1), Some(8));
        assert_eq!(parse_decimal_ns(b".", 1), None);
        assert_eq!(parse_decimal_ns(b"1.2.3", 1), None);
        assert_eq!(parse_decimal_ns(b"1e3", 1), None);
        assert_eq!(parse_decimal_ns(b"-1", 1), None);
        assert_eq!(parse_decimal_ns(b"99999999999999999999", 1), None);
    }
}
