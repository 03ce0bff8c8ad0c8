//! Text outputs derived from `summary.json`: the comparison table (plain
//! text and Markdown) and the time-series CSV; plots ([`plot`]) and the
//! HTML/Markdown report ([`html`]).

pub mod html;
pub mod plot;
pub mod timeseries;
pub mod topology;

use crate::summary::{RunSummary, Summary};

struct Column {
    title: &'static str,
    right: bool,
    cell: fn(&RunSummary) -> String,
}

pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub(crate) fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

const COLUMNS: &[Column] = &[
    Column {
        title: "policy",
        right: false,
        cell: |r| r.policy.name.clone(),
    },
    Column {
        title: "completed",
        right: true,
        cell: |r| thousands(r.requests.completed),
    },
    Column {
        title: "timeouts h/n/l",
        right: true,
        cell: |r| {
            let b = &r.by_priority;
            format!(
                "{}/{}/{}",
                thousands(b.high.requests.timed_out),
                thousands(b.normal.requests.timed_out),
                thousands(b.low.requests.timed_out)
            )
        },
    },
    Column {
        title: "wait p50 ms",
        right: true,
        cell: |r| ms(r.acquire_wait_ms.p50),
    },
    Column {
        title: "wait p99 ms",
        right: true,
        cell: |r| ms(r.acquire_wait_ms.p99),
    },
    Column {
        title: "pool mean",
        right: true,
        cell: |r| format!("{:.1}", r.pool.size_mean),
    },
    Column {
        title: "min..max",
        right: true,
        cell: |r| format!("{}..{}", r.pool.size_min, r.pool.size_max),
    },
    Column {
        title: "resizes",
        right: true,
        cell: |r| thousands(r.pool.resize_events),
    },
    Column {
        title: "conn-s",
        right: true,
        cell: |r| thousands(r.pool.connection_seconds.round() as u64),
    },
    Column {
        title: "health",
        right: true,
        cell: |r| format!("{:.1}", r.health.score),
    },
];

/// The world table (failures, refusals, connect overhead, faults): shown
/// under the comparison when some run has more than one instance, faults,
/// failed requests, refusals or failed checks (absent otherwise, so plain
/// runs print as before).
const WORLD_COLUMNS: &[Column] = &[
    Column {
        title: "policy",
        right: false,
        cell: |r| r.policy.name.clone(),
    },
    Column {
        title: "instances",
        right: true,
        cell: |r| r.instances.to_string(),
    },
    Column {
        title: "failed",
        right: true,
        cell: |r| thousands(r.requests.failed),
    },
    Column {
        title: "rejected",
        right: true,
        cell: |r| thousands(r.requests.rejected),
    },
    Column {
        title: "refused",
        right: true,
        cell: |r| thousands(r.database.connects_refused + r.database.connects_refused_down),
    },
    Column {
        title: "backends max",
        right: true,
        cell: |r| r.database.backends_max.to_string(),
    },
    Column {
        title: "connect ms/req",
        right: true,
        cell: |r| format!("{:.3}", r.pool.connect_time_per_request_ms),
    },
    Column {
        title: "checks failed",
        right: true,
        cell: |r| format!("{}/{}", r.health.checks_failed, r.health.checks_run),
    },
    Column {
        title: "faults",
        right: true,
        cell: |r| r.faults.len().to_string(),
    },
    Column {
        title: "recovery max s",
        right: true,
        cell: |r| {
            if r.faults.is_empty() {
                "-".to_string()
            } else if r.faults.iter().any(|f| f.recovery_s.is_none()) {
                "never".to_string()
            } else {
                let worst = r
                    .faults
                    .iter()
                    .filter_map(|f| f.recovery_s)
                    .fold(0.0, f64::max);
                format!("{worst:.2}")
            }
        },
    },
];

fn has_world(s: &Summary) -> bool {
    s.runs.iter().any(|r| {
        r.instances > 1
            || !r.faults.is_empty()
            || r.requests.failed > 0
            || r.database.connects_refused + r.database.connects_refused_down > 0
            || r.health.checks_failed > 0
    })
}

fn aligned(s: &Summary, columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = s
        .runs
        .iter()
        .map(|r| columns.iter().map(|c| (c.cell)(r)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([c.title.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let fmt_row = |row: Vec<&str>| {
        let parts: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if columns[i].right {
                    format!("{v:>w$}", w = widths[i])
                } else {
                    format!("{v:<w$}", w = widths[i])
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = fmt_row(columns.iter().map(|c| c.title).collect());
    out.push('\n');
    for row in &cells {
        out.push_str(&fmt_row(row.iter().map(|v| v.as_str()).collect()));
        out.push('\n');
    }
    out
}

fn markdown_table(s: &Summary, columns: &[Column]) -> String {
    let mut out = String::from("|");
    for c in columns {
        out.push_str(&format!(" {} |", c.title));
    }
    out.push_str("\n|");
    for c in columns {
        out.push_str(if c.right { " ---: |" } else { " :--- |" });
    }
    out.push('\n');
    for r in &s.runs {
        out.push('|');
        for c in columns {
            out.push_str(&format!(" {} |", (c.cell)(r).replace('|', "\\|")));
        }
        out.push('\n');
    }
    out
}

fn header_line(s: &Summary) -> String {
    format!(
        "scenario {} · seed {} · trace {} ({}) · {} {}",
        s.scenario,
        s.seed,
        s.trace.name,
        s.trace.hash,
        s.runs.len(),
        if s.runs.len() == 1 {
            "policy"
        } else {
            "policies"
        }
    )
}

/// The comparison table as aligned plain text (and the world table, see
/// [`WORLD_COLUMNS`]).
pub fn table(s: &Summary) -> String {
    let mut out = header_line(s);
    out.push('\n');
    out.push_str(&aligned(s, COLUMNS));
    if has_world(s) {
        out.push('\n');
        out.push_str(&aligned(s, WORLD_COLUMNS));
    }
    out
}

/// The comparison table as Markdown (for pull-request comments), and the
/// world table when it applies.
pub fn markdown(s: &Summary) -> String {
    let mut out = format!("**pooltune** {}\n\n", header_line(s));
    out.push_str(&markdown_table(s, COLUMNS));
    if has_world(s) {
        out.push('\n');
        out.push_str(&markdown_table(s, WORLD_COLUMNS));
    }
    out
}

/// `summary.json` text: pretty, with a trailing newline.
pub fn json(s: &Summary) -> String {
    let mut t = serde_json::to_string_pretty(s).expect("summaries serialize");
    t.push('\n');
    t
}
