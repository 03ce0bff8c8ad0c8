//! Text outputs of a scenario (topology) run: a table per service and per
//! server, and the assertions' verdicts, as aligned text (the terminal)
//! and Markdown (`summary.md`). Everything derives from `summary.json`.

use super::{ms, thousands};
use crate::summary::{ScenarioSummary, ServerSummary, ServiceSummary};

/// A column: title, right-aligned, and its cell.
type Col<T> = (&'static str, bool, fn(&T) -> String);

const SERVICE_COLUMNS: &[Col<ServiceSummary>] = &[
    ("service", false, |s| s.name.clone()),
    ("policy", false, |s| s.policy.clone()),
    ("inst", true, |s| s.instances.to_string()),
    ("starts", true, |s| s.generations.to_string()),
    ("arrived", true, |s| thousands(s.requests.arrived)),
    ("completed", true, |s| thousands(s.requests.completed)),
    ("timed out", true, |s| thousands(s.requests.timed_out)),
    ("failed", true, |s| thousands(s.requests.failed)),
    ("rejected", true, |s| thousands(s.requests.rejected)),
    ("unrouted", true, |s| thousands(s.requests.unrouted)),
    ("retried", true, |s| thousands(s.requests.retried)),
    ("reads on primary", true, |s| {
        format!(
            "{}/{}",
            thousands(s.requests.reads_on_primary),
            thousands(s.requests.reads)
        )
    }),
    ("wait p99 ms", true, |s| ms(s.acquire_wait_ms.p99)),
    ("resp p99 ms", true, |s| ms(s.response_ms.p99)),
    ("pool mean", true, |s| format!("{:.1}", s.pools.size_mean)),
    ("opened", true, |s| thousands(s.pools.connections_opened)),
];

const SERVER_COLUMNS: &[Col<ServerSummary>] = &[
    ("server", false, |s| s.name.clone()),
    ("role", false, |s| {
        if s.replica { "replica" } else { "primary" }.to_string()
    }),
    ("connects", true, |s| thousands(s.connects)),
    ("refused", true, |s| thousands(s.refused)),
    ("by rate", true, |s| thousands(s.refused_rate)),
    ("peak conn/s", true, |s| {
        format!("{} @{}s", s.peak_connects_per_s, s.peak_connects_second)
    }),
    ("closes", true, |s| thousands(s.closes)),
    ("peak close/s", true, |s| {
        format!("{} @{}s", s.peak_closes_per_s, s.peak_closes_second)
    }),
    ("backends max", true, |s| s.backends_max.to_string()),
    ("queries", true, |s| thousands(s.queries)),
    ("bans", true, |s| thousands(s.bans)),
];

fn cells<T>(rows: &[T], cols: &[Col<T>]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| cols.iter().map(|c| (c.2)(r)).collect())
        .collect()
}

fn aligned<T>(rows: &[T], cols: &[Col<T>]) -> String {
    let cells = cells(rows, cols);
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([c.0.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: Vec<&str>| {
        let parts: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if cols[i].1 {
                    format!("{v:>w$}", w = widths[i])
                } else {
                    format!("{v:<w$}", w = widths[i])
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(cols.iter().map(|c| c.0).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(|v| v.as_str()).collect()));
    }
    out
}

fn markdown<T>(rows: &[T], cols: &[Col<T>]) -> String {
    let mut out = String::from("|");
    for c in cols {
        out.push_str(&format!(" {} |", c.0));
    }
    out.push_str("\n|");
    for c in cols {
        out.push_str(if c.1 { " ---: |" } else { " :--- |" });
    }
    out.push('\n');
    for row in cells(rows, cols) {
        out.push('|');
        for v in row {
            out.push_str(&format!(" {} |", v.replace('|', "\\|")));
        }
        out.push('\n');
    }
    out
}

/// The bouncer's line, when there is one.
fn bouncer_line(s: &ScenarioSummary) -> Option<String> {
    let b = s.topology.bouncer.as_ref()?;
    let pools: Vec<String> = b
        .pools
        .iter()
        .map(|p| {
            format!(
                "{}: {} served, wait p99 {} ms, pool mean {:.1}",
                p.server,
                thousands(p.requests.completed),
                ms(p.acquire_wait_ms.p99),
                p.pool.size_mean
            )
        })
        .collect();
    Some(format!(
        "pgbouncer ({} mode): {} clients at most, {} refused; {}\n",
        b.mode,
        b.clients_max,
        thousands(b.clients_refused),
        pools.join("; ")
    ))
}

/// Every assertion, one line each: PASS/FAIL, kind, subject, detail.
pub fn assertion_lines(s: &ScenarioSummary) -> String {
    let t = &s.topology;
    if t.assertions.is_empty() {
        return "no assertions\n".to_string();
    }
    let mut out = String::new();
    for a in &t.assertions {
        out.push_str(&format!(
            "{} {} {}: {}\n",
            if a.passed { "PASS" } else { "FAIL" },
            a.kind,
            a.subject,
            a.detail
        ));
    }
    let failed = t.assertions.iter().filter(|a| !a.passed).count();
    out.push_str(&if failed == 0 {
        format!("all {} assertions passed\n", t.assertions.len())
    } else {
        format!("{failed} of {} assertions FAILED\n", t.assertions.len())
    });
    out
}

/// The scenario's tables as aligned text: services, servers, the bouncer,
/// then the assertions.
pub fn table(s: &ScenarioSummary) -> String {
    let t = &s.topology;
    let mut out = format!(
        "scenario {} · seed {} · {:.1} s simulated · {} services · {} servers\n\n",
        s.summary.scenario,
        s.summary.seed,
        t.sim_duration_s,
        t.services.len(),
        t.servers.len()
    );
    out.push_str(&aligned(&t.services, SERVICE_COLUMNS));
    out.push('\n');
    out.push_str(&aligned(&t.servers, SERVER_COLUMNS));
    if let Some(b) = bouncer_line(s) {
        out.push('\n');
        out.push_str(&b);
    }
    out.push('\n');
    out.push_str(&assertion_lines(s));
    out
}

/// The same as Markdown (`summary.md`).
pub fn markdown_tables(s: &ScenarioSummary) -> String {
    let t = &s.topology;
    let mut out = format!(
        "**pooltune** scenario {} · seed {} · {:.1} s simulated\n\n### Services\n\n",
        s.summary.scenario, s.summary.seed, t.sim_duration_s
    );
    out.push_str(&markdown(&t.services, SERVICE_COLUMNS));
    out.push_str("\n### Servers\n\n");
    out.push_str(&markdown(&t.servers, SERVER_COLUMNS));
    if let Some(b) = bouncer_line(s) {
        out.push('\n');
        out.push_str(&b);
    }
    out.push_str("\n### Assertions\n\n");
    if t.assertions.is_empty() {
        out.push_str("none\n");
    }
    for a in &t.assertions {
        out.push_str(&format!(
            "- **{}** `{}` {}: {}\n",
            if a.passed { "PASS" } else { "FAIL" },
            a.kind,
            a.subject,
            a.detail
        ));
    }
    out
}

/// `summary.json` text of a scenario run: pretty, trailing newline.
pub fn json(s: &ScenarioSummary) -> String {
    let mut t = serde_json::to_string_pretty(s).expect("summaries serialize");
    t.push('\n');
    t
}
