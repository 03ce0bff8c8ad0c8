//! Number formatting and aligned tables for the human-readable outputs
//! (JSON and CSV carry full precision).

/// `x` with about four significant digits, no exponent between 1e-4 and
/// 1e4; thousands separators above. `-` for NaN.
pub fn num(x: f64) -> String {
    sig(x, 4)
}

/// A half-width or other secondary figure: two significant digits.
pub fn half(x: f64) -> String {
    sig(x, 2)
}

fn sig(x: f64, digits: i32) -> String {
    if x.is_nan() {
        return "-".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if a >= 10f64.powi(digits) {
        return thousands(x.round());
    }
    if a < 1e-4 {
        return format!("{:.*e}", (digits - 1) as usize, x);
    }
    let mag = a.log10().floor() as i32;
    let decimals = (digits - 1 - mag).max(0) as usize;
    format!("{x:.decimals$}")
}

fn thousands(x: f64) -> String {
    let neg = x < 0.0;
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if neg {
        format!("-{out}")
    } else {
        out
    }
}

/// "mean ± half" (just the mean when there is no interval).
pub fn pm(mean: f64, ci: Option<f64>) -> String {
    match ci {
        Some(h) if !mean.is_nan() => format!("{} ± {}", num(mean), half(h)),
        _ => num(mean),
    }
}

/// A signed difference "+d ± half".
pub fn signed_pm(mean: f64, ci: Option<f64>) -> String {
    let m = if mean > 0.0 {
        format!("+{}", num(mean))
    } else {
        num(mean)
    };
    match ci {
        Some(h) if !mean.is_nan() => format!("{m} ± {}", half(h)),
        _ => m,
    }
}

/// A table: a header row and rows of cells; `right[i]` aligns column i right.
pub struct Table {
    pub header: Vec<String>,
    pub right: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Aligned plain text, columns separated by two spaces.
    pub fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let pad = widths[i] - c.chars().count();
                    if self.right[i] {
                        format!("{}{c}", " ".repeat(pad))
                    } else {
                        format!("{c}{}", " ".repeat(pad))
                    }
                })
                .collect();
            parts.join("  ").trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    /// A Markdown table.
    pub fn markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("|");
        for h in &self.header {
            out.push_str(&format!(" {} |", esc(h)));
        }
        out.push_str("\n|");
        for r in &self.right {
            out.push_str(if *r { " ---: |" } else { " :--- |" });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for c in row {
                out.push_str(&format!(" {} |", esc(c)));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(2850.4), "2850");
        assert_eq!(num(12345.6), "12,346");
        assert_eq!(num(123.456), "123.5");
        assert_eq!(num(4.777), "4.777");
        assert_eq!(num(0.0123456), "0.01235");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(0.00001234), "1.234e-5");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(half(0.00123), "0.0012");
        assert_eq!(pm(10.0, Some(1.234)), "10.00 ± 1.2");
        assert_eq!(signed_pm(-3.0, Some(0.5)), "-3.000 ± 0.50");
        assert_eq!(signed_pm(3.0, None), "+3.000");
    }

    #[test]
    fn tables_align() {
        let t = Table {
            header: vec!["a".into(), "bb".into()],
            right: vec![false, true],
            rows: vec![vec!["xyz".into(), "1".into()]],
        };
        assert_eq!(t.text(), "a    bb\nxyz   1\n");
        assert!(t.markdown().contains("| :--- | ---: |"));
    }
}
