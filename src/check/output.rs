//! The check result as a text table, Markdown (a pull-request comment or a
//! CI job summary) and JSON (schema `pooltune.check/1`).

use super::{CheckReport, Row, Status, Verdict};

/// A number for a table cell: 4 significant digits, thousands separated,
/// no exponent for the magnitudes pooltune produces.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    let s = if a >= 1000.0 {
        crate::report::thousands(a.round() as u64)
    } else {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{a:.decimals$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v < 0.0 && s != "0" {
        format!("-{s}")
    } else {
        s
    }
}

fn signed(v: f64) -> String {
    if v > 0.0 {
        format!("+{}", num(v))
    } else {
        num(v)
    }
}

fn signed_pct(f: f64) -> String {
    let p = f * 100.0;
    let s = if p.abs() >= 10.0 {
        format!("{p:.0}")
    } else if p.abs() >= 1.0 {
        format!("{p:.1}")
    } else {
        format!("{p:.2}")
    };
    if p > 0.0 {
        format!("+{s} %")
    } else {
        format!("{s} %")
    }
}

/// A p-value in words: "p = 0.031", "p < 0.001".
pub fn p_phrase(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_string()
    } else {
        format!("p = {p:.3}")
    }
}

/// The change column: absolute (relative) and, for several seeds, the
/// interval of the change.
fn change_cell(r: &Row) -> String {
    let Some(change) = r.change else {
        return String::new();
    };
    let mut s = signed(change);
    if let Some(rel) = r.change_rel {
        if change != 0.0 {
            s.push_str(&format!(" ({})", signed_pct(rel)));
        }
    }
    if let Some((lo, hi)) = r.ci {
        if !(lo == 0.0 && hi == 0.0) {
            s.push_str(&format!(" [{}, {}]", signed(lo), signed(hi)));
        }
    }
    s
}

fn seeds_cell(r: &Row) -> String {
    match r.seeds.as_slice() {
        [one] => one.to_string(),
        many => format!("{} seeds", many.len()),
    }
}

fn better_cell(r: &Row) -> &'static str {
    match r.better {
        super::Better::Lower => "lower",
        super::Better::Higher => "higher",
    }
}

const TITLES: [&str; 8] = [
    "scenario", "seeds", "metric", "better", "baseline", "current", "change", "verdict",
];

fn cells(r: &Row) -> [String; 8] {
    [
        r.scenario.clone(),
        seeds_cell(r),
        r.metric.clone(),
        better_cell(r).to_string(),
        r.baseline.map(num).unwrap_or_else(|| "-".to_string()),
        num(r.current),
        change_cell(r),
        r.verdict.label().to_string(),
    ]
}

/// The closing line: counts and the outcome with its exit code.
pub fn outcome(report: &CheckReport, allow_missing: bool) -> String {
    let c = &report.counts;
    let verdict = match report.status {
        Status::Regression => {
            let mut names: Vec<String> = report
                .rows
                .iter()
                .filter(|r| r.verdict == Verdict::Regressed)
                .map(|r| format!("{} {}", r.scenario, r.metric))
                .collect();
            // Each failed assertion once, whatever the seeds it failed under.
            for a in report.assertions.iter().filter(|a| !a.result.passed) {
                let name = format!(
                    "{} assertion {} {}",
                    a.scenario, a.result.kind, a.result.subject
                );
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            format!("FAIL: regression in {} (exit 1)", names.join(", "))
        }
        Status::Missing if !allow_missing => {
            "FAIL: baselines missing, nothing to compare with (exit 2; `--update` writes them, `--allow-missing` passes without them)".to_string()
        }
        Status::Missing => "pass: no regression; missing baselines allowed (exit 0)".to_string(),
        Status::Pass => "pass: no regression (exit 0)".to_string(),
    };
    let assertions = if report.assertions.is_empty() {
        String::new()
    } else {
        format!(
            "; assertions: {} passed, {} failed",
            c.assertions_passed, c.assertions_failed
        )
    };
    format!(
        "{} regressed, {} improved, {} within noise, {} missing{assertions}: {verdict}",
        c.regressed, c.improved, c.within_noise, c.missing
    )
}

fn header(report: &CheckReport) -> String {
    let scenarios = {
        let mut ids: Vec<&str> = report.rows.iter().map(|r| r.scenario.as_str()).collect();
        ids.dedup();
        ids.len()
    };
    let metrics = {
        let mut m: Vec<&str> = report.rows.iter().map(|r| r.metric.as_str()).collect();
        m.sort_unstable();
        m.dedup();
        m.len()
    };
    format!(
        "pooltune check {}: {} scenarios x {} metrics, baselines {} (several seeds: paired t-test at {}, {:.0} % bootstrap interval vs noise band)",
        report.check_file,
        scenarios,
        metrics,
        report.baselines,
        report.settings.significance,
        report.settings.confidence * 100.0
    )
}

/// The aligned text table.
pub fn text(report: &CheckReport, allow_missing: bool) -> String {
    let rows: Vec<[String; 8]> = report.rows.iter().map(cells).collect();
    let mut widths = TITLES.map(|t| t.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let right = [false, true, false, false, true, true, false, false];
    let line = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right[i] {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = header(report);
    out.push('\n');
    out.push_str(&line(TITLES.to_vec()));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
        out.push('\n');
    }
    let notes = notes(report);
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out.push('\n');
    out.push_str(&outcome(report, allow_missing));
    out.push('\n');
    out
}

/// Why each non-trivial verdict is what it is, failed assertions, and
/// configuration changes.
fn notes(report: &CheckReport) -> Vec<String> {
    let mut out = Vec::new();
    for a in report.assertions.iter().filter(|a| !a.result.passed) {
        out.push(format!(
            "FAIL {} seed {}: assertion {} {}: {}",
            a.scenario, a.seed, a.result.kind, a.result.subject, a.result.detail
        ));
    }
    let mut missing_said: Vec<&str> = Vec::new();
    for r in &report.rows {
        if r.verdict == Verdict::Missing && r.baseline.is_none() {
            // A missing baseline file is said once per scenario.
            if !missing_said.contains(&r.scenario.as_str()) {
                missing_said.push(&r.scenario);
                out.push(format!("missing {}: {}", r.scenario, r.note));
            }
            continue;
        }
        let interesting = match r.verdict {
            Verdict::WithinNoise => r.change.is_some_and(|c| c != 0.0),
            _ => true,
        };
        if interesting && !r.note.is_empty() {
            out.push(format!(
                "{} {} {}: {}",
                r.verdict.label(),
                r.scenario,
                r.metric,
                r.note
            ));
        }
    }
    for c in &report.config_changes {
        out.push(format!(
            "changed since the baseline: {} in {} (hash {} -> {})",
            c.what, c.scenario, c.baseline_hash, c.current_hash
        ));
    }
    out
}

/// The Markdown table, headed by the outcome.
pub fn markdown(report: &CheckReport, allow_missing: bool) -> String {
    let mut out = format!("**{}**\n\n", outcome(report, allow_missing));
    out.push_str(&format!("{}\n\n", header(report)));
    out.push('|');
    for t in TITLES {
        out.push_str(&format!(" {t} |"));
    }
    out.push_str("\n| :--- | ---: | :--- | :--- | ---: | ---: | :--- | :--- |\n");
    for r in &report.rows {
        let c = cells(r);
        out.push('|');
        for (i, cell) in c.iter().enumerate() {
            let cell = cell.replace('|', "\\|");
            if i == 7 && r.verdict != Verdict::WithinNoise {
                out.push_str(&format!(" **{cell}** |"));
            } else {
                out.push_str(&format!(" {cell} |"));
            }
        }
        out.push('\n');
    }
    let notes = notes(report);
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&format!("- {}\n", n.replace('|', "\\|")));
        }
    }
    out
}

/// The JSON document (schema `pooltune.check/1`), pretty, newline-terminated.
pub fn json(report: &CheckReport) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("check reports serialize");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(4777.31), "4,777");
        assert_eq!(num(0.0123456), "0.01235");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(-2.0), "-2");
        assert_eq!(num(100.0), "100");
        assert_eq!(signed(3.0), "+3");
        assert_eq!(signed_pct(0.123), "+12 %");
        assert_eq!(signed_pct(-0.05), "-5.0 %");
        assert_eq!(p_phrase(0.0001), "p < 0.001");
        assert_eq!(p_phrase(0.0306), "p = 0.031");
    }
}
