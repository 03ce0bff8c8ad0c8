//! The report: a self-contained HTML page (plots inlined as SVG, no script,
//! no network resource: a Content-Security-Policy forbids any) and a
//! Markdown summary fit for a pull-request comment or a CI job summary,
//! both drawn from run directories (`summary.json`, `timeseries.csv`) and
//! sweep directories (`sweep.json`).
//!
//! ```text
//! DIR/summary.json ─┐
//! DIR/timeseries.csv┼─► Report { html, markdown, plots } ─► report.html, report.md,
//! DIR/sweep.json ───┘                                        plots/*.svg, plots/*.png
//! ```
//!
//! Both texts open with a *reading*: which policy to pick and why the others
//! lose, in words (see [`reading`]). Output is deterministic: no time stamp,
//! no absolute path unless one was given.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::core::request::Priority;
use crate::report::plot::{
    self, sweep::Better, Chart, Comparison, Palette, ParetoFront, PlotError, Priorities, SweepData,
    SweepHeatmap, TimeSeries, Timeline, WaitCdf,
};
use crate::report::{ms, thousands};
use crate::summary::{RunSummary, Summary, SCHEMA};

/// A report input could not be read, or an output not written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A directory holds neither `summary.json` nor `sweep.json`, or one of
    /// them is not what pooltune writes.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// An output could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One run directory: a scenario's summary and, when sampled, its time series.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// How the directory is named in the report (the path as given).
    pub label: String,
    pub summary: Summary,
    pub series: Option<TimeSeries>,
}

/// One report input.
#[derive(Debug, Clone)]
pub enum Input {
    Run(RunInput),
    Sweep { label: String, sweep: SweepData },
}

/// Reads a run directory (`summary.json`, optional `timeseries.csv`) or a
/// sweep directory (`sweep.json`).
pub fn load_dir(dir: &Path) -> Result<Input, ReportError> {
    let label = dir.display().to_string();
    let summary_path = dir.join("summary.json");
    let sweep_path = dir.join("sweep.json");
    if summary_path.is_file() {
        let text = read(&summary_path)?;
        let summary = parse_summary(&text, &summary_path)?;
        let csv = dir.join("timeseries.csv");
        let series = if csv.is_file() {
            Some(TimeSeries::read(&csv)?)
        } else {
            None
        };
        Ok(Input::Run(RunInput {
            label,
            summary,
            series,
        }))
    } else if sweep_path.is_file() {
        let text = read(&sweep_path)?;
        let sweep = SweepData::from_json(&text, &sweep_path.display().to_string())?;
        Ok(Input::Sweep { label, sweep })
    } else if !dir.is_dir() {
        Err(ReportError::Read {
            path: dir.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        })
    } else {
        Err(ReportError::Invalid {
            path: dir.to_path_buf(),
            message: "holds neither summary.json (from `pooltune sim run`) nor sweep.json (from `pooltune sim sweep`)".to_string(),
        })
    }
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a `summary.json`, checking its schema first so an old or foreign
/// file gets a message about the schema rather than a missing field.
pub fn parse_summary(text: &str, path: &Path) -> Result<Summary, ReportError> {
    let invalid = |message: String| ReportError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        Some(other) => {
            return Err(invalid(format!(
                "schema `{other}`, expected `{SCHEMA}` (written by another pooltune version?)"
            )))
        }
        None => {
            return Err(invalid(format!(
                "no `schema` key: not a pooltune summary ({SCHEMA})"
            )))
        }
    }
    serde_json::from_value(value).map_err(|e| invalid(format!("not a {SCHEMA} summary: {e}")))
}

/// Report options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Also render every plot as PNG (the HTML page uses the SVGs).
    pub png: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { png: true }
    }
}

/// A rendered plot, to be written as `plots/<file>.svg` (and `.png`).
#[derive(Debug, Clone)]
pub struct PlotFile {
    pub file: String,
    pub title: String,
    pub svg: String,
    pub png: Option<Vec<u8>>,
}

/// Everything a report writes.
#[derive(Debug, Clone)]
pub struct Report {
    pub html: String,
    pub markdown: String,
    pub plots: Vec<PlotFile>,
}

// ---------------------------------------------------------------------------
// The reading: which policy, and why.

fn lost(r: &RunSummary) -> u64 {
    r.requests.timed_out + r.requests.rejected + r.requests.failed
}

fn frac(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

fn pct(f: f64) -> String {
    let p = f * 100.0;
    if p == 0.0 {
        "0 %".to_string()
    } else if p < 0.01 {
        "<0.01 %".to_string()
    } else {
        format!("{p:.2} %")
    }
}

fn ms_words(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v >= 100.0 {
        format!("{} ms", thousands(v.round() as u64))
    } else {
        format!("{} ms", ms(v))
    }
}

fn clock(t_s: f64) -> String {
    let t = t_s.round() as u64;
    if t >= 3600 {
        format!("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60)
    } else {
        format!("{}:{:02}", t / 60, t % 60)
    }
}

/// Health points within which policies count as equally healthy; the
/// cheapest of them is the pick.
pub const HEALTH_TIE: f64 = 1.0;

/// The verdict in words: the pick and one line per other policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Index into `summary.runs` of the pick (`None` with no runs).
    pub pick: Option<usize>,
    /// Why the pick, in a sentence (Markdown).
    pub headline: String,
    /// One line per other policy, in run order (Markdown).
    pub others: Vec<String>,
}

/// The pick is the policy with the fewest connection-seconds among those
/// whose health score is within [`HEALTH_TIE`] of the best (health weighs
/// lost requests most, then waiting; see `summary.rs`); ties go to the
/// healthier, then to the first listed. Each other policy gets what it
/// lost, how its pool behaved, when its queue peaked (from the time series,
/// when there is one) and what it costs relative to the pick.
pub fn reading(summary: &Summary, series: Option<&TimeSeries>) -> Reading {
    let runs = &summary.runs;
    if runs.is_empty() {
        return Reading {
            pick: None,
            headline: "no policy was run".to_string(),
            others: Vec::new(),
        };
    }
    let best_health = runs.iter().map(|r| r.health.score).fold(f64::MIN, f64::max);
    let pick = (0..runs.len())
        .filter(|&i| runs[i].health.score >= best_health - HEALTH_TIE)
        .min_by(|&a, &b| {
            let (ra, rb) = (&runs[a], &runs[b]);
            ra.pool
                .connection_seconds
                .total_cmp(&rb.pool.connection_seconds)
                .then(rb.health.score.total_cmp(&ra.health.score))
                .then(a.cmp(&b))
        })
        .expect("at least one run is within the tie of the best");
    let p = &runs[pick];
    let tied = runs
        .iter()
        .filter(|r| r.health.score >= best_health - HEALTH_TIE)
        .count();
    let headline = format!(
        "**Pick: {}**: health {:.1}{}, {} lost, p99 wait {}, {} connection-seconds{}.",
        p.policy.name,
        p.health.score,
        if p.health.score >= best_health {
            " (the best)"
        } else {
            ""
        },
        if lost(p) == 0 {
            "nothing".to_string()
        } else {
            format!(
                "{} requests ({})",
                thousands(lost(p)),
                pct(frac(lost(p), p.requests.arrived))
            )
        },
        ms_words(p.acquire_wait_ms.p99),
        thousands(p.pool.connection_seconds.round() as u64),
        if tied > 1 {
            format!(
                " (the cheapest of the {tied} policies within {HEALTH_TIE} health point of the best)"
            )
        } else {
            String::new()
        }
    );
    let others = runs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != pick)
        .map(|(_, r)| other_line(r, p, series))
        .collect();
    Reading {
        pick: Some(pick),
        headline,
        others,
    }
}

fn other_line(r: &RunSummary, pick: &RunSummary, series: Option<&TimeSeries>) -> String {
    let mut parts = Vec::new();
    let n = lost(r);
    if n > 0 {
        let b = &r.by_priority;
        parts.push(format!(
            "lost {} requests ({}; high/normal/low {}/{}/{})",
            thousands(n),
            pct(frac(n, r.requests.arrived)),
            thousands(
                b.high.requests.timed_out + b.high.requests.rejected + b.high.requests.failed
            ),
            thousands(
                b.normal.requests.timed_out + b.normal.requests.rejected + b.normal.requests.failed
            ),
            thousands(b.low.requests.timed_out + b.low.requests.rejected + b.low.requests.failed),
        ));
    } else {
        parts.push("lost nothing".to_string());
    }
    parts.push(format!("p99 wait {}", ms_words(r.acquire_wait_ms.p99)));
    let mut pool = format!(
        "pool {}..{} (mean {:.1}",
        r.pool.size_min, r.pool.size_max, r.pool.size_mean
    );
    if r.pool.resize_events > 0 {
        let _ = write!(pool, ", {} resizes", thousands(r.pool.resize_events));
    }
    pool.push(')');
    parts.push(pool);
    if let Some(ps) = series.and_then(|s| s.get(&r.policy.name)) {
        let peak = ps
            .rows
            .iter()
            .max_by(|a, b| a.waiting_mean.total_cmp(&b.waiting_mean));
        if let Some(peak) = peak.filter(|p| p.waiting_mean >= 1.0) {
            let queued_s: f64 = ps
                .rows
                .iter()
                .filter(|row| row.waiting_mean >= 1.0)
                .map(|row| row.window_s)
                .sum();
            parts.push(format!(
                "queue peaked at {} waiting around {} and held at least one waiter for {} s",
                thousands(peak.waiting_mean.round() as u64),
                clock(peak.t_s - peak.window_s / 2.0),
                thousands(queued_s.round() as u64)
            ));
        }
    }
    let cost = r.pool.connection_seconds;
    let base = pick.pool.connection_seconds;
    let cost_words = if base > 0.0 && (cost - base).abs() / base >= 0.005 {
        if cost < base {
            format!(
                "{:.0} % fewer connection-seconds than {} ({})",
                (1.0 - cost / base) * 100.0,
                pick.policy.name,
                thousands(cost.round() as u64)
            )
        } else {
            format!(
                "{:.1}x the connection-seconds of {} ({})",
                cost / base,
                pick.policy.name,
                thousands(cost.round() as u64)
            )
        }
    } else {
        format!(
            "about the connection-seconds of {} ({})",
            pick.policy.name,
            thousands(cost.round() as u64)
        )
    };
    parts.push(cost_words);
    format!(
        "**{}** (health {:.1}): {}.",
        r.policy.name,
        r.health.score,
        parts.join("; ")
    )
}

// ---------------------------------------------------------------------------
// Building the report.

/// A file-name-safe slug.
fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

fn render<C: Chart>(
    chart: &C,
    prefix: &str,
    title: &str,
    opts: &Options,
) -> Result<PlotFile, PlotError> {
    Ok(PlotFile {
        file: format!("{prefix}{}", chart.name()),
        title: title.to_string(),
        svg: plot::svg(chart)?,
        png: if opts.png {
            Some(plot::png(chart)?)
        } else {
            None
        },
    })
}

/// Builds the report for `inputs` (in order).
pub fn build(inputs: &[Input], opts: &Options) -> Result<Report, ReportError> {
    let several = inputs.len() > 1;
    let mut used_prefixes: Vec<String> = Vec::new();
    let mut sections = Vec::new();
    for input in inputs {
        let prefix = if several {
            let base = match input {
                Input::Run(r) => slug(&format!("{}-{}", r.summary.trace.name, r.summary.seed)),
                Input::Sweep { sweep, .. } => slug(&format!("sweep-{}", sweep.seed)),
            };
            let mut p = base.clone();
            let mut k = 2;
            while used_prefixes.contains(&p) {
                p = format!("{base}-{k}");
                k += 1;
            }
            used_prefixes.push(p.clone());
            format!("{p}-")
        } else {
            String::new()
        };
        sections.push(match input {
            Input::Run(run) => run_section(run, &prefix, opts)?,
            Input::Sweep { label, sweep } => sweep_section(label, sweep, &prefix, opts)?,
        });
    }
    let mut markdown = String::new();
    let mut body = String::new();
    if several {
        markdown.push_str("## pooltune report\n\n");
        markdown.push_str(&overview_markdown(inputs));
        body.push_str(&overview_html(inputs));
    }
    for s in &sections {
        markdown.push_str(&s.markdown);
        body.push_str(&s.html);
    }
    let plots: Vec<PlotFile> = sections.into_iter().flat_map(|s| s.plots).collect();
    let title = match inputs {
        [Input::Run(r)] => format!(
            "pooltune report: trace {} · seed {}",
            r.summary.trace.name, r.summary.seed
        ),
        [Input::Sweep { sweep, .. }] => format!("pooltune report: sweep · seed {}", sweep.seed),
        _ => format!("pooltune report: {} inputs", inputs.len()),
    };
    let html = page(&title, &body);
    Ok(Report {
        html,
        markdown,
        plots,
    })
}

struct Section {
    html: String,
    markdown: String,
    plots: Vec<PlotFile>,
}

fn run_section(run: &RunInput, prefix: &str, opts: &Options) -> Result<Section, ReportError> {
    let s = &run.summary;
    let names: Vec<&str> = s.runs.iter().map(|r| r.policy.name.as_str()).collect();
    let palette = Palette::new(&names);
    let series = run.series.as_ref().filter(|t| !t.policies.is_empty());
    let mut plots = vec![render(
        &Comparison::new(s, series, &palette),
        prefix,
        "Overview: cost against lost requests, p99 wait, timeouts by priority, and the pool over time",
        opts,
    )?];
    if let Some(ts) = series {
        plots.push(render(
            &Timeline::new(ts, Some(s), &palette),
            prefix,
            "Pool size, active connections and waiting requests over time, with the arrival rate",
            opts,
        )?);
    }
    plots.push(render(
        &WaitCdf::new(s, &palette),
        prefix,
        "Acquire-wait distribution (log time axis)",
        opts,
    )?);
    plots.push(render(
        &Priorities::new(s, &palette),
        prefix,
        "Timeouts and p99 acquire wait per priority",
        opts,
    )?);
    let reading = reading(s, series);
    let heading = format!(
        "trace {} · seed {} · {} {}",
        s.trace.name,
        s.seed,
        s.runs.len(),
        if s.runs.len() == 1 {
            "policy"
        } else {
            "policies"
        }
    );

    // Markdown.
    let mut md = String::new();
    let _ = writeln!(md, "## pooltune report: {heading}\n");
    let _ = writeln!(
        md,
        "Trace `{}` ({}), hash {}; {} simulated s; every policy saw the same requests. Source: `{}`.\n",
        s.trace.name,
        s.trace.description,
        s.trace.hash,
        s.runs
            .first()
            .map(|r| thousands(r.sim_duration_s.round() as u64))
            .unwrap_or_default(),
        run.label
    );
    let _ = writeln!(md, "{}\n", reading.headline);
    for line in &reading.others {
        let _ = writeln!(md, "- {line}");
    }
    if !reading.others.is_empty() {
        md.push('\n');
    }
    // The comparison table, without its own header line.
    let table = crate::report::markdown(s);
    let table = table.split_once("\n\n").map(|(_, t)| t).unwrap_or(&table);
    md.push_str(table);
    md.push('\n');
    md.push_str(&priority_markdown(s));
    let _ = writeln!(
        md,
        "Plots: {} ({} in `plots/`); all of it in `report.html`.\n",
        plots
            .iter()
            .map(|p| format!("`{}`", p.file))
            .collect::<Vec<_>>()
            .join(", "),
        if opts.png { "SVG and PNG" } else { "SVG" }
    );

    // HTML.
    let mut h = String::new();
    let _ = writeln!(h, "<section>\n<h2>{}</h2>", esc(&heading));
    let _ = writeln!(
        h,
        "<p class=\"meta\">trace <code>{}</code> ({}), hash <code>{}</code> · source <code>{}</code> · every policy saw the same requests</p>",
        esc(&s.trace.name),
        esc(&s.trace.description),
        esc(&s.trace.hash),
        esc(&run.label)
    );
    let _ = writeln!(
        h,
        "<div class=\"reading\">\n<p>{}</p>",
        md_inline(&reading.headline)
    );
    if !reading.others.is_empty() {
        h.push_str("<ul>\n");
        for line in &reading.others {
            let _ = writeln!(h, "<li>{}</li>", md_inline(line));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</div>\n");
    h.push_str(&comparison_table_html(s, &palette));
    for p in &plots {
        h.push_str(&figure(p));
    }
    h.push_str(&priority_table_html(s));
    h.push_str("<details><summary>Effective policies and workload</summary>\n");
    for r in &s.runs {
        let _ = writeln!(
            h,
            "<h4>{} <code>{}</code></h4><p class=\"meta\">{} · {}</p><pre>{}</pre>",
            esc(&r.policy.name),
            esc(&r.policy.hash),
            esc(&r.policy.source),
            esc(&r.policy.description),
            esc(&serde_json::to_string_pretty(&r.policy.config).unwrap_or_default())
        );
    }
    let _ = writeln!(
        h,
        "<h4>workload {}</h4><pre>{}</pre>",
        esc(&s.trace.name),
        esc(&serde_json::to_string_pretty(&s.trace.config).unwrap_or_default())
    );
    h.push_str("</details>\n</section>\n");
    Ok(Section {
        html: h,
        markdown: md,
        plots,
    })
}

/// The metric a sweep heatmap shows: p99 wait when the sweep has it, else
/// its first metric.
fn heatmap_metric(sweep: &SweepData) -> Option<String> {
    let has = |m: &str| sweep.variants.iter().any(|v| v.metrics.contains_key(m));
    if has("acquire_wait_ms.p99") {
        return Some("acquire_wait_ms.p99".to_string());
    }
    sweep
        .variants
        .iter()
        .find_map(|v| v.metrics.keys().next().cloned())
}

fn better_for(metric: &str) -> Better {
    if metric.starts_with("health") || metric.ends_with("completed") {
        Better::Higher
    } else {
        Better::Lower
    }
}

fn sweep_section(
    label: &str,
    sweep: &SweepData,
    prefix: &str,
    opts: &Options,
) -> Result<Section, ReportError> {
    let mut plots = Vec::new();
    if let (Some((x, y)), Some(metric)) = (sweep.default_axes(), heatmap_metric(sweep)) {
        plots.push(render(
            &SweepHeatmap::new(sweep, &x, &y, &metric, better_for(&metric)),
            prefix,
            &format!("{metric} over {x} and {y}"),
            opts,
        )?);
    }
    let front = ParetoFront::new(sweep);
    let points = front.points();
    if !points.is_empty() {
        plots.push(render(
            &front,
            prefix,
            "Pareto front: connection-seconds against p99 acquire wait",
            opts,
        )?);
    }
    let optimal: Vec<String> = points
        .iter()
        .filter(|p| p.optimal)
        .map(|p| {
            let knobs: Vec<String> = p
                .params
                .iter()
                .map(|(k, v)| format!("{k}={}", plot::sweep::value_label(v)))
                .collect();
            format!(
                "#{} {} {} ({} conn-s, p99 {})",
                p.index,
                p.policy,
                knobs.join(" "),
                thousands(p.cost.mean.round() as u64),
                ms_words(p.quality.mean)
            )
        })
        .collect();
    let heading = format!(
        "sweep · {} variants · {} replications · seed {}",
        sweep.variants.len(),
        sweep.replications,
        sweep.seed
    );
    let mut md = format!("## pooltune report: {heading}\n\nSource: `{label}`.\n\n");
    if !optimal.is_empty() {
        md.push_str("Pareto-optimal variants (cheapest first):\n\n");
        for o in &optimal {
            let _ = writeln!(md, "- {o}");
        }
        md.push('\n');
    }
    let mut h = format!(
        "<section>\n<h2>{}</h2>\n<p class=\"meta\">source <code>{}</code></p>\n",
        esc(&heading),
        esc(label)
    );
    if !optimal.is_empty() {
        h.push_str("<p>Pareto-optimal variants (cheapest first):</p><ul>\n");
        for o in &optimal {
            let _ = writeln!(h, "<li>{}</li>", esc(o));
        }
        h.push_str("</ul>\n");
    }
    for p in &plots {
        h.push_str(&figure(p));
    }
    h.push_str("</section>\n");
    Ok(Section {
        html: h,
        markdown: md,
        plots,
    })
}

fn overview_rows(inputs: &[Input]) -> Vec<(String, &RunSummary, bool)> {
    let mut rows = Vec::new();
    for input in inputs {
        if let Input::Run(run) = input {
            let pick = reading(&run.summary, run.series.as_ref()).pick;
            for (i, r) in run.summary.runs.iter().enumerate() {
                rows.push((
                    format!("{} · {}", run.summary.trace.name, run.summary.seed),
                    r,
                    pick == Some(i),
                ));
            }
        }
    }
    rows
}

fn overview_markdown(inputs: &[Input]) -> String {
    let rows = overview_rows(inputs);
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "| trace · seed | policy | lost | wait p99 | conn-s | health |\n| :--- | :--- | ---: | ---: | ---: | ---: |\n",
    );
    for (scenario, r, pick) in rows {
        let _ = writeln!(
            md,
            "| {} | {}{} | {} | {} | {} | {:.1} |",
            scenario,
            r.policy.name,
            if pick { " (pick)" } else { "" },
            pct(frac(lost(r), r.requests.arrived)),
            ms_words(r.acquire_wait_ms.p99),
            thousands(r.pool.connection_seconds.round() as u64),
            r.health.score
        );
    }
    md.push('\n');
    md
}

fn overview_html(inputs: &[Input]) -> String {
    let rows = overview_rows(inputs);
    if rows.is_empty() {
        return String::new();
    }
    let mut h = String::from(
        "<section>\n<h2>Across inputs</h2>\n<table>\n<thead><tr><th>trace · seed</th><th>policy</th><th>lost</th><th>wait p99</th><th>conn-s</th><th>health</th></tr></thead>\n<tbody>\n",
    );
    for (scenario, r, pick) in rows {
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td></tr>",
            if pick { " class=\"pick\"" } else { "" },
            esc(&scenario),
            esc(&r.policy.name),
            pct(frac(lost(r), r.requests.arrived)),
            esc(&ms_words(r.acquire_wait_ms.p99)),
            thousands(r.pool.connection_seconds.round() as u64),
            r.health.score
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");
    h
}

fn priority_markdown(s: &Summary) -> String {
    let mut md = String::from(
        "\nBy priority (timed out / arrived; acquire wait p50, p99, max):\n\n| policy | high | normal | low |\n| :--- | :--- | :--- | :--- |\n",
    );
    for r in &s.runs {
        let cells: Vec<String> = Priority::ALL
            .iter()
            .map(|&p| {
                let c = r.by_priority.get(p);
                format!(
                    "{} / {}; {} · {} · {}",
                    thousands(c.requests.timed_out),
                    thousands(c.requests.arrived),
                    ms_words(c.acquire_wait_ms.p50),
                    ms_words(c.acquire_wait_ms.p99),
                    ms_words(c.acquire_wait_ms.max)
                )
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", r.policy.name, cells.join(" | "));
    }
    md.push('\n');
    md
}

fn comparison_table_html(s: &Summary, palette: &Palette) -> String {
    let mut h = String::from(
        "<table>\n<thead><tr><th>policy</th><th>completed</th><th>lost</th><th>timeouts h/n/l</th><th>wait p50</th><th>wait p99</th><th>wait max</th><th>pool mean</th><th>min..max</th><th>resizes</th><th>conn-s</th><th>health</th></tr></thead>\n<tbody>\n",
    );
    for r in &s.runs {
        let b = &r.by_priority;
        let _ = writeln!(
            h,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"n\">{}</td><td class=\"n\">{} ({})</td><td class=\"n\">{}/{}/{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{}..{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}</td></tr>",
            palette.hex(&r.policy.name),
            esc(&r.policy.name),
            thousands(r.requests.completed),
            thousands(lost(r)),
            pct(frac(lost(r), r.requests.arrived)),
            thousands(b.high.requests.timed_out),
            thousands(b.normal.requests.timed_out),
            thousands(b.low.requests.timed_out),
            esc(&ms_words(r.acquire_wait_ms.p50)),
            esc(&ms_words(r.acquire_wait_ms.p99)),
            esc(&ms_words(r.acquire_wait_ms.max)),
            r.pool.size_mean,
            r.pool.size_min,
            r.pool.size_max,
            thousands(r.pool.resize_events),
            thousands(r.pool.connection_seconds.round() as u64),
            r.health.score
        );
    }
    h.push_str("</tbody>\n</table>\n");
    h
}

fn priority_table_html(s: &Summary) -> String {
    let mut h = String::from(
        "<details><summary>By priority</summary>\n<table>\n<thead><tr><th>policy</th><th>priority</th><th>arrived</th><th>timed out</th><th>waited</th><th>wait p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr></thead>\n<tbody>\n",
    );
    for r in &s.runs {
        for p in Priority::ALL {
            let c = r.by_priority.get(p);
            let w = &c.acquire_wait_ms;
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{} ({})</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&r.policy.name),
                p.name(),
                thousands(c.requests.arrived),
                thousands(c.requests.timed_out),
                pct(c.p_timeout),
                pct(c.p_wait),
                esc(&ms_words(w.p50)),
                esc(&ms_words(w.p90)),
                esc(&ms_words(w.p99)),
                esc(&ms_words(w.p999)),
                esc(&ms_words(w.max)),
            );
        }
    }
    h.push_str("</tbody>\n</table>\n</details>\n");
    h
}

/// An inline SVG figure. The SVG namespace declaration is dropped (HTML
/// parses inline `<svg>` without it), so the page contains no URL at all.
fn figure(p: &PlotFile) -> String {
    let svg = p
        .svg
        .replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
        .replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(&p.title)),
            1,
        );
    format!(
        "<figure id=\"{}\">\n{}<figcaption>{}</figcaption>\n</figure>\n",
        esc(&p.file),
        svg,
        esc(&p.title)
    )
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `s` and turns its `**bold**` spans into `<strong>`.
fn md_inline(s: &str) -> String {
    let e = esc(s);
    let mut out = String::new();
    let mut open = false;
    for (i, part) in e.split("**").enumerate() {
        if i > 0 {
            out.push_str(if open { "</strong>" } else { "<strong>" });
            open = !open;
        }
        out.push_str(part);
    }
    if open {
        out.push_str("</strong>");
    }
    out
}

const STYLE: &str = "body{font-family:'DejaVu Sans',system-ui,sans-serif;margin:24px auto;max-width:1360px;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#666;font-size:.9em}.reading{background:#f6f8fa;border-left:4px solid #4e79a7;padding:.4em 1em;margin:1em 0}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.pick td{font-weight:bold}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em;vertical-align:-.05em;border-radius:2px}
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto;display:block}figcaption{color:#666;font-size:.9em}
pre{background:#f6f8fa;padding:.6em;overflow:auto;font-size:.85em}details{margin:1em 0}summary{cursor:pointer}";

/// The page: no script, no external resource; the Content-Security-Policy
/// makes a browser refuse any fetch, should one ever slip in.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"pooltune {}\">\n<title>{}</title>\n<style>\n{}\n</style>\n</head>\n<body>\n<h1>{}</h1>\n{}</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(title),
        STYLE,
        esc(title),
        body
    )
}

/// Writes `report.html`, `report.md` and `plots/` into `dir` (created if
/// needed); returns the paths written, in order.
pub fn write(dir: &Path, report: &Report) -> Result<Vec<PathBuf>, ReportError> {
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| ReportError::Write {
        path: plots_dir.clone(),
        source,
    })?;
    let mut written = Vec::new();
    let mut put = |path: PathBuf, bytes: &[u8]| -> Result<(), ReportError> {
        std::fs::write(&path, bytes).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
        Ok(())
    };
    for p in &report.plots {
        put(plots_dir.join(format!("{}.svg", p.file)), p.svg.as_bytes())?;
        if let Some(png) = &p.png {
            put(plots_dir.join(format!("{}.png", p.file)), png)?;
        }
    }
    put(dir.join("report.md"), report.markdown.as_bytes())?;
    put(dir.join("report.html"), report.html.as_bytes())?;
    Ok(written)
}

/// Loads `dirs`, builds the report and writes it into `out`.
pub fn report_dirs(
    dirs: &[PathBuf],
    out: &Path,
    opts: &Options,
) -> Result<(Report, Vec<PathBuf>), ReportError> {
    let inputs = dirs
        .iter()
        .map(|d| load_dir(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut report = build(&inputs, opts)?;
    // One scenario run: its per-service and per-server panels too.
    if let ([dir], [Input::Run(run)]) = (dirs, inputs.as_slice()) {
        let (services, servers) = (dir.join("services.csv"), dir.join("servers.csv"));
        if services.is_file() && servers.is_file() {
            add_fleet_panels(
                &mut report,
                &plot::FleetSeries::read(&services)?,
                &plot::FleetSeries::read(&servers)?,
                &run.summary.scenario,
                run.summary.seed,
                opts,
            )?;
        }
    }
    let written = write(out, &report)?;
    Ok((report, written))
}

/// Adds a scenario run's panels to a report: one per service (pool size,
/// target, waiting) and one per server (connects/s, closes/s, backends),
/// from `services.csv` and `servers.csv`, after the run's section.
pub fn add_fleet_panels(
    report: &mut Report,
    services: &plot::FleetSeries,
    servers: &plot::FleetSeries,
    scenario: &str,
    seed: u64,
    opts: &Options,
) -> Result<(), ReportError> {
    let plots = [
        render(
            &plot::FleetPanels::new(services, plot::Panels::Services, scenario, seed),
            "",
            "Per service: pool size, target and waiting requests over time (all its pools together)",
            opts,
        )?,
        render(
            &plot::FleetPanels::new(servers, plot::Panels::Servers, scenario, seed),
            "",
            "Per server: connects and closes per second, and backends, over time",
            opts,
        )?,
    ];
    let mut h = String::from("<section>\n<h2>Services and servers</h2>\n");
    let mut md = String::from("## Services and servers\n\n");
    for p in &plots {
        h.push_str(&figure(p));
        let _ = writeln!(md, "![{}](plots/{}.svg)\n", p.title, p.file);
    }
    h.push_str("</section>\n");
    match report.html.rfind("</body>") {
        Some(i) => report.html.insert_str(i, &h),
        None => report.html.push_str(&h),
    }
    report.markdown.push_str(&md);
    report.plots.extend(plots);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_bold() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(md_inline("**a** b <c>"), "<strong>a</strong> b &lt;c&gt;");
        assert_eq!(slug("default · 42/x"), "default-42-x");
        assert_eq!(clock(31.0), "0:31");
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn a_summary_of_another_schema_is_named_as_such() {
        let err = parse_summary(r#"{"schema": "other/2"}"#, Path::new("x/summary.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "x/summary.json: schema `other/2`, expected `pooltune.summary/1` (written by another pooltune version?)"
        );
    }
}
