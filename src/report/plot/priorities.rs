//! Per-priority timeouts and p99 acquire wait: grouped bars, one group per
//! priority, one bar per policy (in its colour), the value written on top.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    axis_number, header, ms_label, nice_ceiling, pct_label, text, text_at, Chart, DrawResult,
    Palette, GRID, INK, MUTED,
};
use crate::core::request::Priority;
use crate::summary::{ClassSummary, Summary};

/// One panel of grouped bars: `value(class)` per policy and priority.
pub(crate) struct Bars<'a> {
    pub title: &'a str,
    pub y_desc: &'a str,
    /// The plotted value and its label.
    pub value: fn(&ClassSummary) -> (f64, String),
}

pub(crate) fn timeouts_bars() -> Bars<'static> {
    Bars {
        title: "Timed out (% of that priority's arrivals)",
        y_desc: "timed out (%)",
        value: |c| {
            let f = c.p_timeout;
            let label = if c.requests.timed_out == 0 {
                "0".to_string()
            } else {
                format!(
                    "{} ({})",
                    pct_label(f),
                    super::super::thousands(c.requests.timed_out)
                )
            };
            (f * 100.0, label)
        },
    }
}

pub(crate) fn p99_bars() -> Bars<'static> {
    Bars {
        title: "p99 acquire wait (ms)",
        y_desc: "p99 wait (ms)",
        value: |c| (c.acquire_wait_ms.p99, ms_label(c.acquire_wait_ms.p99)),
    }
}

pub(crate) fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    summary: &Summary,
    palette: &Palette,
    bars: &Bars,
) -> DrawResult<DB> {
    let n = summary.runs.len().max(1);
    let values: Vec<Vec<(f64, String)>> = Priority::ALL
        .iter()
        .map(|&p| {
            summary
                .runs
                .iter()
                .map(|r| (bars.value)(r.by_priority.get(p)))
                .collect()
        })
        .collect();
    let max = values.iter().flatten().map(|(v, _)| *v).fold(0.0, f64::max);
    // Room above the tallest bar for its (vertical) label.
    let y_max = nice_ceiling(max * 1.6, 1.0);
    let fmt_y = |v: &f64| axis_number(*v);
    let mut chart = ChartBuilder::on(area)
        .caption(bars.title, (super::FONT, 16).into_font().color(&INK))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..3.0, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .x_labels(0)
        .y_labels(5)
        .y_label_formatter(&fmt_y)
        .y_desc(bars.y_desc)
        .axis_desc_style(text(13))
        .label_style(text(12))
        .axis_style(MUTED)
        .draw()?;
    let group = 0.8;
    let w = group / n as f64;
    let label_style = text(12).transform(FontTransform::Rotate270);
    for (g, p) in Priority::ALL.iter().enumerate() {
        let x_center = g as f64 + 0.5;
        let (px, py) = chart.backend_coord(&(x_center, 0.0));
        text_at(
            area,
            &format!("{} priority", p.name()),
            (px, py + 10),
            &text(14).pos(Pos::new(HPos::Center, VPos::Top)),
        )?;
        for (i, r) in summary.runs.iter().enumerate() {
            let (v, label) = &values[g][i];
            let x0 = g as f64 + (1.0 - group) / 2.0 + i as f64 * w;
            let color = palette.color(&r.policy.name);
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0 + w * 0.08, 0.0), (x0 + w * 0.92, *v)],
                color.filled(),
            )))?;
            let (lx, ly) = chart.backend_coord(&(x0 + w / 2.0, *v));
            text_at(area, label, (lx - 7, ly - 6), &label_style)?;
        }
    }
    Ok(())
}

/// Draws a one-line legend of policy colours from `(x, y)`; returns the
/// x after the last entry.
pub(crate) fn draw_policy_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    summary: &Summary,
    palette: &Palette,
    (x0, y): (i32, i32),
) -> Result<i32, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut x = x0;
    for r in &summary.runs {
        let name = &r.policy.name;
        area.draw(&Rectangle::new(
            [(x, y - 7), (x + 16, y + 7)],
            palette.color(name).filled(),
        ))?;
        area.draw(&Text::new(name.clone(), (x + 22, y - 8), text(14)))?;
        let (w, _) = area
            .estimate_text_size(name, &text(14))
            .unwrap_or((8 * name.len() as u32, 14));
        x += 22 + w as i32 + 28;
    }
    Ok(x)
}

/// Timeouts and p99 wait per priority, side by side.
pub struct Priorities<'a> {
    summary: &'a Summary,
    palette: &'a Palette,
}

impl<'a> Priorities<'a> {
    pub fn new(summary: &'a Summary, palette: &'a Palette) -> Self {
        Priorities { summary, palette }
    }
}

impl Chart for Priorities<'_> {
    fn name(&self) -> &'static str {
        "priorities"
    }

    fn size(&self) -> (u32, u32) {
        (1200, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let s = self.summary;
        let body = header(
            root,
            &format!(
                "Per priority: timeouts and p99 acquire wait · trace {} · seed {}",
                s.trace.name, s.seed
            ),
            "the pool serves the highest waiting priority first, so lower priorities absorb a shortage",
        )?;
        draw_policy_legend(&body, s, self.palette, (24, 12))?;
        let body = body.split_vertically(30).1;
        let (left, right) = body.split_horizontally(600);
        draw_bars(&left, s, self.palette, &timeouts_bars())?;
        draw_bars(&right, s, self.palette, &p99_bars())?;
        Ok(())
    }
}
