//! Two time series of the same run drawn over each other, e.g. the
//! simulator's prediction (solid) and a live measurement (dashed): pool size,
//! active connections and waiting requests, one panel per policy present in
//! both, each captioned with the mean absolute differences.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::timeline::{Scales, MAX_POINTS};
use super::{
    axis_number, colored, colored_bold, header, text, Chart, DrawResult, Palette, PolicySeries,
    SeriesRow, TimeSeries, GRID, INK, MUTED, WAITING,
};

/// Mean absolute differences between two series, over the windows whose
/// end times match (same sample interval).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Differences {
    pub windows: usize,
    pub size: f64,
    pub active: f64,
    pub waiting: f64,
}

/// Compares `a` and `b` window by window.
pub fn differences(a: &PolicySeries, b: &PolicySeries) -> Differences {
    let mut j = 0;
    let mut n = 0usize;
    let (mut size, mut active, mut waiting) = (0.0, 0.0, 0.0);
    for ra in &a.rows {
        while j < b.rows.len() && b.rows[j].t_s < ra.t_s - 1e-9 {
            j += 1;
        }
        if let Some(rb) = b.rows.get(j) {
            if (rb.t_s - ra.t_s).abs() <= 1e-9 {
                n += 1;
                size += (ra.size_mean - rb.size_mean).abs();
                active += (ra.active_mean - rb.active_mean).abs();
                waiting += (ra.waiting_mean - rb.waiting_mean).abs();
            }
        }
    }
    let d = n.max(1) as f64;
    Differences {
        windows: n,
        size: size / d,
        active: active / d,
        waiting: waiting / d,
    }
}

/// `a` (solid) against `b` (dashed), per policy present in both.
pub struct Overlay<'a> {
    a: &'a TimeSeries,
    b: &'a TimeSeries,
    label_a: String,
    label_b: String,
    palette: &'a Palette,
}

impl<'a> Overlay<'a> {
    pub fn new(
        a: &'a TimeSeries,
        label_a: &str,
        b: &'a TimeSeries,
        label_b: &str,
        palette: &'a Palette,
    ) -> Self {
        Overlay {
            a,
            b,
            label_a: label_a.to_string(),
            label_b: label_b.to_string(),
            palette,
        }
    }

    fn pairs(&self) -> Vec<(&'a PolicySeries, &'a PolicySeries)> {
        self.a
            .policies
            .iter()
            .filter_map(|p| self.b.get(&p.policy).map(|q| (p, q)))
            .collect()
    }
}

const PANEL_H: u32 = 250;

fn dashed<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    pts: Vec<(f64, f64)>,
    style: ShapeStyle,
) -> DrawResult<DB> {
    chart.draw_series(DashedLineSeries::new(pts, 7, 5, style))?;
    Ok(())
}

impl Chart for Overlay<'_> {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn size(&self) -> (u32, u32) {
        let n = self.pairs().len().max(1) as u32;
        (1200, 130 + n * PANEL_H + 40)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let pairs = self.pairs();
        let body = header(
            root,
            &format!("{} (solid) vs {} (dashed)", self.label_a, self.label_b),
            "pool size (thick), active connections (thin), waiting requests (strip); caption: mean absolute difference per window",
        )?;
        if pairs.is_empty() {
            body.draw(&Text::new(
                "no policy appears in both time series",
                (24, 20),
                colored(15, MUTED),
            ))?;
            return Ok(());
        }
        let binned: Vec<(&PolicySeries, Vec<SeriesRow>)> = pairs
            .iter()
            .flat_map(|(a, b)| [(*a, a.binned(MAX_POINTS)), (*b, b.binned(MAX_POINTS))])
            .collect();
        let s = Scales::new(&binned);
        let (div, unit) = s.unit;
        let x_end = s.x_end;
        let n = pairs.len();
        let mut rest = body.split_vertically(20).1;
        for (i, (a, b)) in pairs.iter().enumerate() {
            let last = i + 1 == n;
            let (area, next) = rest.split_vertically(if last { PANEL_H + 40 } else { PANEL_H });
            rest = next;
            let color = self.palette.color(&a.policy);
            let d = differences(a, b);
            let caption = format!(
                "{} · mean |Δ| per window: pool size {:.2}, active {:.2}, waiting {:.2} ({} windows)",
                a.policy, d.size, d.active, d.waiting, d.windows
            );
            let rows_a = &binned[2 * i].1;
            let rows_b = &binned[2 * i + 1].1;
            let (_, h) = area.dim_in_pixel();
            let labels = if last { 44 } else { 6 };
            let strip_h = (h as f64 * 0.3) as u32 + labels;
            let (top, strip) = area.split_vertically(h - strip_h);
            let fmt = |v: &f64| axis_number(*v);
            let mut chart = ChartBuilder::on(&top)
                .caption(caption, colored_bold(15, color))
                .margin_left(8)
                .margin_right(8)
                .margin_top(4)
                .x_label_area_size(0)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..x_end, 0.0..s.conns_max)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(WHITE)
                .bold_line_style(GRID)
                .y_labels(4)
                .y_label_formatter(&fmt)
                .y_desc("connections")
                .axis_desc_style(text(13))
                .label_style(text(12))
                .axis_style(MUTED)
                .draw()?;
            let pts = |rows: &[SeriesRow], f: fn(&SeriesRow) -> f64| -> Vec<(f64, f64)> {
                rows.iter().map(|r| (r.t_s / div, f(r))).collect()
            };
            chart.draw_series(LineSeries::new(
                pts(rows_a, |r| r.size_mean),
                color.stroke_width(3),
            ))?;
            chart.draw_series(LineSeries::new(
                pts(rows_a, |r| r.active_mean),
                color.mix(0.8).stroke_width(1),
            ))?;
            dashed(
                &mut chart,
                pts(rows_b, |r| r.size_mean),
                INK.stroke_width(3),
            )?;
            dashed(
                &mut chart,
                pts(rows_b, |r| r.active_mean),
                INK.stroke_width(1),
            )?;

            let mut strip_chart = ChartBuilder::on(&strip)
                .margin_left(8)
                .margin_right(8)
                .x_label_area_size(labels)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..x_end, 0.0..s.waiting_max)?;
            let desc = format!("time ({unit})");
            let mut mesh = strip_chart.configure_mesh();
            mesh.disable_x_mesh()
                .light_line_style(WHITE)
                .bold_line_style(GRID)
                .y_labels(2)
                .y_label_formatter(&fmt)
                .x_label_formatter(&fmt)
                .y_desc("waiting")
                .axis_desc_style(colored(13, WAITING))
                .label_style(text(12))
                .axis_style(MUTED);
            if last {
                mesh.x_desc(desc.as_str()).x_labels(12);
            } else {
                mesh.x_labels(0);
            }
            mesh.draw()?;
            strip_chart.draw_series(LineSeries::new(
                pts(rows_a, |r| r.waiting_mean),
                WAITING.stroke_width(2),
            ))?;
            dashed(
                &mut strip_chart,
                pts(rows_b, |r| r.waiting_mean),
                INK.stroke_width(1),
            )?;
        }
        Ok(())
    }
}
