//! Pool size, active connections and waiting requests over time, with the
//! arrival rate overlaid: one panel per policy, all on the same axes.
//!
//! ```text
//!  seed-80-30 · lost 3,373 (1.87 %) · p99 wait 4,777 ms · ...      <- policy colour
//!  conns │ ── pool size   ▒▒ active              ·· arrival rate │ req/s
//!        │▁▁▁▂▂▂▃▃▃▃▃▃▃▃▃▃                                       │
//!  wait  │█▇▅▂                                      waiting reqs │
//!        └──────────────────────── time (min) ───────────────────┘
//! ```

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    axis_number, bold, colored, colored_bold, header, ms_label, nice_ceiling, pct_label, text,
    time_unit, Chart, DrawResult, Palette, PolicySeries, SeriesRow, TimeSeries, ARRIVALS, GRID,
    INK, MUTED, WAITING,
};
use crate::summary::{RunSummary, Summary};

/// Most points drawn per line; longer series are averaged into bins.
pub(crate) const MAX_POINTS: usize = 1200;

/// Axis ranges shared by every panel, so panels compare at a glance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scales {
    /// Seconds per unit of the time axis, and the unit's name.
    pub unit: (f64, &'static str),
    pub x_end: f64,
    pub conns_max: f64,
    pub rate_max: f64,
    pub waiting_max: f64,
    /// Length of one plotted point, in seconds (for the subtitle).
    pub bin_s: f64,
}

impl Scales {
    pub fn new(panels: &[(&PolicySeries, Vec<SeriesRow>)]) -> Scales {
        let end = panels
            .iter()
            .map(|(p, _)| p.end_s())
            .fold(0.0, f64::max)
            .max(1e-9);
        let unit = time_unit(end);
        let max = |f: fn(&SeriesRow) -> f64| {
            panels
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(f))
                .fold(0.0, f64::max)
        };
        let conns = max(|r| r.size_mean.max(r.size as f64).max(r.target as f64));
        let bin_s = panels
            .iter()
            .filter_map(|(_, rows)| rows.first().map(|r| r.window_s))
            .fold(0.0, f64::max);
        Scales {
            unit,
            x_end: end / unit.0,
            conns_max: nice_ceiling(conns * 1.05, 4.0),
            rate_max: nice_ceiling(max(|r| r.arrival_rate_per_s) * 1.1, 1.0),
            waiting_max: nice_ceiling(max(|r| r.waiting_mean) * 1.05, 4.0),
            bin_s,
        }
    }
}

/// The one-line verdict shown above a policy's panel.
pub(crate) fn caption(name: &str, run: Option<&RunSummary>) -> String {
    let Some(r) = run else {
        return name.to_string();
    };
    let lost = r.requests.timed_out + r.requests.rejected + r.requests.failed;
    let lost_frac = if r.requests.arrived == 0 {
        0.0
    } else {
        lost as f64 / r.requests.arrived as f64
    };
    format!(
        "{name} · lost {} ({}) · p99 wait {} · pool {}..{}, mean {:.1} · {} conn-s · health {:.1}",
        super::super::thousands(lost),
        pct_label(lost_frac),
        ms_label(r.acquire_wait_ms.p99),
        r.pool.size_min,
        r.pool.size_max,
        r.pool.size_mean,
        super::super::thousands(r.pool.connection_seconds.round() as u64),
        r.health.score
    )
}

/// Left and right label widths: identical for the main chart and the strip
/// so their time axes line up.
const LEFT: u32 = 64;
const RIGHT: u32 = 64;

/// One policy's panel: connections (left axis) and arrival rate (right
/// axis) above, waiting requests in a strip below. `x_labels`: draw the time
/// axis labels under the strip.
pub(crate) fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[SeriesRow],
    color: RGBColor,
    caption: &str,
    s: &Scales,
    x_labels: bool,
) -> DrawResult<DB> {
    let (_, h) = area.dim_in_pixel();
    let bottom_labels = if x_labels { 44 } else { 6 };
    let strip_h = ((h as f64 - 26.0 - bottom_labels as f64) * 0.30) as u32 + bottom_labels;
    let (top, strip) = area.split_vertically(h - strip_h);
    let strip = strip.margin(8, 0, 0, 0);
    let div = s.unit.0;
    let fmt_x = |v: &f64| axis_number(*v);
    let fmt_y = |v: &f64| axis_number(*v);

    let mut chart = ChartBuilder::on(&top)
        .caption(caption, colored_bold(15, color))
        .margin_left(8)
        .margin_right(8)
        .margin_top(4)
        .x_label_area_size(0)
        .y_label_area_size(LEFT)
        .right_y_label_area_size(RIGHT)
        .build_cartesian_2d(0.0..s.x_end, 0.0..s.conns_max)?
        .set_secondary_coord(0.0..s.x_end, 0.0..s.rate_max);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .y_labels(4)
        .y_label_formatter(&fmt_y)
        .y_desc("connections")
        .axis_desc_style(text(13))
        .label_style(text(12))
        .axis_style(MUTED)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_labels(4)
        .y_label_formatter(&fmt_y)
        .y_desc("arrivals (req/s)")
        .axis_desc_style(colored(13, ARRIVALS))
        .label_style(colored(12, ARRIVALS))
        .axis_style(ARRIVALS)
        .draw()?;
    chart.draw_secondary_series(LineSeries::new(
        rows.iter().map(|r| (r.t_s / div, r.arrival_rate_per_s)),
        ARRIVALS.mix(0.6).stroke_width(1),
    ))?;
    chart.draw_series(
        AreaSeries::new(
            rows.iter().map(|r| (r.t_s / div, r.active_mean)),
            0.0,
            color.mix(0.30),
        )
        .border_style(color.mix(0.7).stroke_width(1)),
    )?;
    chart.draw_series(LineSeries::new(
        rows.iter().map(|r| (r.t_s / div, r.size_mean)),
        color.stroke_width(3),
    ))?;

    // No right label area (its labels would repeat the left ones): the
    // margin keeps the strip's time axis aligned with the chart above.
    let mut strip_chart = ChartBuilder::on(&strip)
        .margin_left(8)
        .margin_right(8 + RIGHT)
        .x_label_area_size(bottom_labels)
        .y_label_area_size(LEFT)
        .build_cartesian_2d(0.0..s.x_end, 0.0..s.waiting_max)?;
    let unit_desc = format!("time ({})", s.unit.1);
    let mut mesh = strip_chart.configure_mesh();
    mesh.disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .y_labels(2)
        .y_label_formatter(&fmt_y)
        .y_desc("waiting")
        .axis_desc_style(text(13))
        .label_style(text(12))
        .axis_style(MUTED)
        .x_label_formatter(&fmt_x);
    if x_labels {
        mesh.x_desc(unit_desc.as_str()).x_labels(12);
    } else {
        mesh.x_labels(0);
    }
    mesh.draw()?;
    strip_chart.draw_series(
        AreaSeries::new(
            rows.iter().map(|r| (r.t_s / div, r.waiting_mean)),
            0.0,
            WAITING.mix(0.45),
        )
        .border_style(WAITING.stroke_width(1)),
    )?;
    Ok(())
}

/// The legend row under a timeline's title: what each mark means.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x0, y): (i32, i32),
) -> Result<i32, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut x = x0;
    let label = |area: &DrawingArea<DB, Shift>, x: i32, s: &str| {
        area.draw(&Text::new(s.to_string(), (x, y - 8), text(13)))
    };
    area.draw(&PathElement::new(
        vec![(x, y), (x + 26, y)],
        INK.stroke_width(3),
    ))?;
    label(area, x + 32, "pool size (policy colour)")?;
    x += 215;
    area.draw(&Rectangle::new(
        [(x, y - 7), (x + 26, y + 7)],
        INK.mix(0.3).filled(),
    ))?;
    label(area, x + 32, "active connections")?;
    x += 190;
    area.draw(&PathElement::new(
        vec![(x, y), (x + 26, y)],
        ARRIVALS.stroke_width(1),
    ))?;
    label(area, x + 32, "arrival rate (right axis)")?;
    x += 215;
    area.draw(&Rectangle::new(
        [(x, y - 7), (x + 26, y + 7)],
        WAITING.mix(0.45).filled(),
    ))?;
    label(area, x + 32, "waiting requests (strip)")?;
    Ok(x + 220)
}

/// Panels in summary order when a summary is given (else file order), each
/// with its binned rows.
pub(crate) fn panels<'a>(
    series: &'a TimeSeries,
    summary: Option<&Summary>,
) -> Vec<(&'a PolicySeries, Vec<SeriesRow>)> {
    let ordered: Vec<&PolicySeries> = match summary {
        Some(s) => s
            .runs
            .iter()
            .filter_map(|r| series.get(&r.policy.name))
            .chain(
                series
                    .policies
                    .iter()
                    .filter(|p| !s.runs.iter().any(|r| r.policy.name == p.policy)),
            )
            .collect(),
        None => series.policies.iter().collect(),
    };
    ordered
        .into_iter()
        .map(|p| (p, p.binned(MAX_POINTS)))
        .collect()
}

pub(crate) fn bin_note(s: &Scales) -> String {
    if s.bin_s > 0.0 {
        format!("time-weighted means per {} s", axis_number(s.bin_s))
    } else {
        String::new()
    }
}

/// Pool size / active / waiting over time, one panel per policy.
pub struct Timeline<'a> {
    series: &'a TimeSeries,
    summary: Option<&'a Summary>,
    palette: &'a Palette,
}

impl<'a> Timeline<'a> {
    /// `summary` (optional) orders the panels and adds each policy's key
    /// figures to its caption.
    pub fn new(series: &'a TimeSeries, summary: Option<&'a Summary>, palette: &'a Palette) -> Self {
        Timeline {
            series,
            summary,
            palette,
        }
    }
}

pub(crate) const PANEL_H: u32 = 230;

impl Chart for Timeline<'_> {
    fn name(&self) -> &'static str {
        "timeline"
    }

    fn size(&self) -> (u32, u32) {
        let n = self.series.policies.len().max(1) as u32;
        (1200, 100 + n * PANEL_H + 38)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let panels = panels(self.series, self.summary);
        let scales = Scales::new(&panels);
        let title = match self.summary {
            Some(s) => format!("Pool over time · trace {} · seed {}", s.trace.name, s.seed),
            None => "Pool over time".to_string(),
        };
        let subtitle = format!(
            "every policy sees the same requests; axes shared across panels; {}",
            bin_note(&scales)
        );
        let body = header(root, &title, &subtitle)?;
        draw_legend(&body, (24, 14))?;
        let body = body.split_vertically(32).1;
        if panels.is_empty() {
            body.draw(&Text::new(
                "no time series (sample_interval = \"none\")",
                (24, 20),
                bold(16),
            ))?;
            return Ok(());
        }
        let n = panels.len();
        let (_, h) = body.dim_in_pixel();
        let each = (h - 38) / n as u32;
        let mut rest = body;
        for (i, (p, rows)) in panels.iter().enumerate() {
            let last = i + 1 == n;
            let (this, next) = rest.split_vertically(if last { each + 38 } else { each });
            let run = self
                .summary
                .and_then(|s| s.runs.iter().find(|r| r.policy.name == p.policy));
            draw_panel(
                &this,
                rows,
                self.palette.color(&p.policy),
                &caption(&p.policy, run),
                &scales,
                last,
            )?;
            rest = next;
        }
        Ok(())
    }
}
