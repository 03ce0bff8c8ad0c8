//! The overview a reader looks at first ("which policy, and why"):
//!
//! ```text
//! ┌ cost vs lost requests ┐ ┌ arrivals / pool / waiting, policy 1 ──────┐
//! │  ● (conn-s, lost %)   │ │                                           │
//! ├ p99 acquire wait ─────┤ ├ policy 2 ─────────────────────────────────┤
//! │ ████▏                 │ │                                           │
//! ├ timeouts by priority ─┤ ├ ...                                       │
//! │ ██▒▒░░                │ │                                           │
//! └───────────────────────┘ └───────────────────────────────────────────┘
//! ```
//!
//! Left: what each policy costs (connection-seconds) against what it loses
//! (requests timed out, rejected or failed), its p99 wait, and who lost
//! (timeouts by priority). Right: the time series, which show why.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::timeline::{bin_note, draw_legend, draw_panel, panels, Scales};
use super::{
    axis_number, colored, header, ms_label, nice_ceiling, pct_label, text, text_at, Chart,
    DrawResult, Palette, TimeSeries, GRID, INK, MUTED,
};
use crate::summary::{RunSummary, Summary};

fn lost(r: &RunSummary) -> (u64, f64) {
    let n = r.requests.timed_out + r.requests.rejected + r.requests.failed;
    let f = if r.requests.arrived == 0 {
        0.0
    } else {
        n as f64 / r.requests.arrived as f64
    };
    (n, f)
}

/// The overview figure: scoreboard on the left, time series on the right.
pub struct Comparison<'a> {
    summary: &'a Summary,
    series: Option<&'a TimeSeries>,
    palette: &'a Palette,
}

impl<'a> Comparison<'a> {
    /// `series`: the run's `timeseries.csv` (without it, the right column
    /// says that no time series was sampled).
    pub fn new(summary: &'a Summary, series: Option<&'a TimeSeries>, palette: &'a Palette) -> Self {
        Comparison {
            summary,
            series,
            palette,
        }
    }
}

const LEFT_W: u32 = 440;
const PANEL_H: u32 = 196;

fn draw_scatter<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &Summary,
    palette: &Palette,
) -> DrawResult<DB> {
    let x_max = nice_ceiling(
        s.runs
            .iter()
            .map(|r| r.pool.connection_seconds)
            .fold(0.0, f64::max)
            * 1.12,
        1.0,
    );
    let y_max = nice_ceiling(
        s.runs.iter().map(|r| lost(r).1 * 100.0).fold(0.0, f64::max) * 1.25,
        1.0,
    );
    let fmt = |v: &f64| axis_number(*v);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Cost vs lost requests (best: bottom left)",
            (super::FONT, 16).into_font().color(&INK),
        )
        .margin(8)
        .margin_right(18)
        .x_label_area_size(42)
        .y_label_area_size(58)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_desc("connection-seconds (cost)")
        .y_desc("lost requests (%)")
        .axis_desc_style(text(13))
        .label_style(text(12))
        .axis_style(MUTED)
        .draw()?;
    // Points with the same position are drawn with a small offset so each
    // stays visible; the legend below gives the exact values.
    let mut placed: Vec<(i32, i32)> = Vec::new();
    for r in &s.runs {
        let color = palette.color(&r.policy.name);
        let (px, py) = chart.backend_coord(&(r.pool.connection_seconds, lost(r).1 * 100.0));
        let mut off = 0;
        while placed
            .iter()
            .any(|&(x, y)| (x - (px + off)).abs() < 6 && (y - (py - off)).abs() < 6)
        {
            off += 7;
        }
        placed.push((px + off, py - off));
        let base = chart.plotting_area().get_base_pixel();
        let at = (px + off - base.0, py - off - base.1);
        let plot = chart.plotting_area().strip_coord_spec();
        plot.draw(&Circle::new(at, 8, color.filled()))?;
        plot.draw(&Circle::new(at, 8, WHITE.stroke_width(1)))?;
    }
    Ok(())
}

fn draw_key<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &Summary,
    palette: &Palette,
) -> DrawResult<DB> {
    let mut y = 6;
    for r in &s.runs {
        let color = palette.color(&r.policy.name);
        let (n, f) = lost(r);
        area.draw(&Circle::new((22, y + 9), 6, color.filled()))?;
        area.draw(&Text::new(r.policy.name.clone(), (36, y), text(14)))?;
        area.draw(&Text::new(
            format!(
                "{} conn-s · lost {} ({})",
                super::super::thousands(r.pool.connection_seconds.round() as u64),
                super::super::thousands(n),
                pct_label(f)
            ),
            (190, y + 1),
            colored(13, MUTED),
        ))?;
        y += 22;
    }
    Ok(())
}

/// One bar of [`draw_hbars`]: stacked segments (value, alpha of the policy
/// colour) and the label written after it.
type Bar = (Vec<(f64, f64)>, String);

/// Horizontal bars, one per policy (stacked segments), with a label at the
/// bar's end. The axis runs to `headroom` x the longest bar, rounded up to
/// a multiple of `step`, leaving room for the labels.
#[allow(clippy::too_many_arguments)]
fn draw_hbars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    s: &Summary,
    palette: &Palette,
    title: &str,
    x_desc: &str,
    (headroom, step): (f64, f64),
    bar: &dyn Fn(&RunSummary) -> Bar,
) -> DrawResult<DB> {
    let n = s.runs.len().max(1);
    let bars: Vec<Bar> = s.runs.iter().map(bar).collect();
    let max = bars
        .iter()
        .map(|(parts, _)| parts.iter().map(|p| p.0).sum::<f64>())
        .fold(0.0, f64::max);
    let x_max = nice_ceiling(max * headroom, step);
    let fmt = |v: &f64| axis_number(*v);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (super::FONT, 16).into_font().color(&INK))
        .margin(8)
        .margin_right(18)
        .x_label_area_size(40)
        .y_label_area_size(140)
        .build_cartesian_2d(0.0..x_max, 0.0..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .x_labels(5)
        .y_labels(0)
        .x_label_formatter(&fmt)
        .x_desc(x_desc)
        .axis_desc_style(text(13))
        .label_style(text(12))
        .axis_style(MUTED)
        .draw()?;
    for (i, (r, (parts, label))) in s.runs.iter().zip(&bars).enumerate() {
        // First policy on top.
        let y = (n - 1 - i) as f64;
        let color = palette.color(&r.policy.name);
        let single = parts.len() == 1;
        let mut x = 0.0;
        for &(v, alpha) in parts {
            if v > 0.0 || single {
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y + 0.18), (x + v, y + 0.82)],
                    color.mix(alpha).filled(),
                )))?;
            }
            x += v;
        }
        let (px, py) = chart.backend_coord(&(x, y + 0.5));
        text_at(
            area,
            label,
            (px + 6, py),
            &text(13).pos(Pos::new(HPos::Left, VPos::Center)),
        )?;
        let (lx, _) = chart.backend_coord(&(0.0, y + 0.5));
        text_at(
            area,
            &r.policy.name,
            (lx - 8, py),
            &text(13).pos(Pos::new(HPos::Right, VPos::Center)),
        )?;
    }
    Ok(())
}

/// Timeouts per policy stacked by priority: high (dark), normal, low
/// (light) shares of the policy colour, the three counts after the bar.
fn timeouts_bar(r: &RunSummary) -> Bar {
    let b = &r.by_priority;
    let parts = vec![
        (b.high.requests.timed_out as f64, 1.0),
        (b.normal.requests.timed_out as f64, 0.65),
        (b.low.requests.timed_out as f64, 0.35),
    ];
    let label = if r.requests.timed_out == 0 {
        "none".to_string()
    } else {
        format!(
            "{} / {} / {}",
            super::super::thousands(b.high.requests.timed_out),
            super::super::thousands(b.normal.requests.timed_out),
            super::super::thousands(b.low.requests.timed_out)
        )
    };
    (parts, label)
}

impl Chart for Comparison<'_> {
    fn name(&self) -> &'static str {
        "comparison"
    }

    fn size(&self) -> (u32, u32) {
        let n = self.summary.runs.len().max(1) as u32;
        let right = 40 + n * PANEL_H + 40;
        let left = 330 + 22 * n + 2 * (70 + 34 * n);
        (1320, 80 + right.max(left))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let s = self.summary;
        // The reading in one line: which policy, and on what grounds.
        let pick = crate::report::html::reading(s, self.series)
            .headline
            .replace("**", "");
        let body = header(
            root,
            &format!(
                "pooltune · {} policies · trace {} · seed {} · same requests for every policy",
                s.runs.len(),
                s.trace.name,
                s.seed
            ),
            "",
        )?;
        body.draw(&Text::new(pick, (16, -4), colored(15, INK)))?;
        let body = body.split_vertically(26).1;
        let (left, right) = body.split_horizontally(LEFT_W);
        let n = s.runs.len().max(1) as u32;
        let (scatter, rest) = left.split_vertically(300);
        draw_scatter(&scatter, s, self.palette)?;
        let (key, rest) = rest.split_vertically(22 * n + 16);
        draw_key(&key, s, self.palette)?;
        let (p99, timeouts) = rest.split_vertically(70 + 34 * n);
        draw_hbars(
            &p99,
            s,
            self.palette,
            "p99 acquire wait",
            "ms",
            (1.45, 1.0),
            &|r| {
                let v = r.acquire_wait_ms.p99;
                (vec![(v, 1.0)], ms_label(v))
            },
        )?;
        let (timeouts, _) = timeouts.split_vertically(70 + 34 * n);
        draw_hbars(
            &timeouts,
            s,
            self.palette,
            "Timeouts by priority: high / normal / low",
            "requests timed out",
            (1.6, 10.0),
            &timeouts_bar,
        )?;

        let panel_list = self
            .series
            .map(|ts| panels(ts, Some(s)))
            .unwrap_or_default();
        let scales = Scales::new(&panel_list);
        right.draw(&Text::new(
            format!("Over time ({})", bin_note(&scales)),
            (8, 0),
            (super::FONT, 16).into_font().color(&INK),
        ))?;
        draw_legend(&right, (12, 32))?;
        let right = right.split_vertically(44).1;
        if panel_list.is_empty() {
            right.draw(&Text::new(
                "no time series was sampled (run.sample_interval = \"none\")",
                (12, 20),
                colored(14, MUTED),
            ))?;
            return Ok(());
        }
        let count = panel_list.len();
        let mut rest = right;
        for (i, (p, rows)) in panel_list.iter().enumerate() {
            let last = i + 1 == count;
            let (this, next) = rest.split_vertically(if last { PANEL_H + 38 } else { PANEL_H });
            let run = s.runs.iter().find(|r| r.policy.name == p.policy);
            draw_panel(
                &this,
                rows,
                self.palette.color(&p.policy),
                &short_caption(&p.policy, run),
                &scales,
                last,
            )?;
            rest = next;
        }
        Ok(())
    }
}

/// The panel caption in the overview (the scoreboard has the rest).
fn short_caption(name: &str, run: Option<&RunSummary>) -> String {
    match run {
        Some(r) => format!(
            "{name} · pool {}..{} (mean {:.1}, {} resizes) · health {:.1}",
            r.pool.size_min,
            r.pool.size_max,
            r.pool.size_mean,
            r.pool.resize_events,
            r.health.score
        ),
        None => name.to_string(),
    }
}
