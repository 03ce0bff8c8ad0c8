//! The acquire-wait distribution per policy: a CDF on a log time axis, with
//! the probability axis in "nines" (50 %, 90 %, 99 %, 99.9 % equally spaced)
//! so the tail, where policies differ, is as readable as the median.
//!
//! `summary.json` keeps quantiles, not the histogram, so the curve is drawn
//! through what it measured, and says so on the chart:
//! - P(no wait) = 1 - `p_wait` at the left edge (arrivals that found an
//!   idle connection wait exactly 0);
//! - `p50`, `p90`, `p99`, `p999` and `max` (drawn at 1 - 1/count) where they
//!   are above 0; markers are measured points, lines merely join them.
//!
//! A full CDF would need the histogram's bucket edges in the summary (e.g. an
//! `acquire_wait_ms.cdf` list of `[ms, fraction]` pairs); see the report.

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    axis_number, colored, header, ms_label, text, text_at, Chart, DrawResult, Palette, GRID, MUTED,
};
use crate::core::metrics::DistributionMs;
use crate::core::request::Priority;
use crate::summary::{RunSummary, Summary};

/// Waits at or below this many milliseconds are drawn at the left edge.
const MIN_FLOOR_MS: f64 = 0.001;

/// y = -log10(1 - F): 0 at F = 0, 1 at 90 %, 2 at 99 %, 3 at 99.9 %.
fn nines(f: f64) -> f64 {
    -(1.0 - f).max(1e-12).log10()
}

/// A measured point of a policy's wait CDF.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CdfPoint {
    /// Wait in ms (0 = no wait).
    pub ms: f64,
    /// Fraction of requests with a wait at most `ms`.
    pub fraction: f64,
    pub label: &'static str,
}

/// The measured points, in increasing order of both wait and fraction.
pub(crate) fn cdf_points(d: &DistributionMs, p_wait: f64) -> Vec<CdfPoint> {
    if d.count == 0 {
        return Vec::new();
    }
    let f0 = (1.0 - p_wait).clamp(0.0, 1.0);
    let top = 1.0 - 1.0 / d.count as f64;
    let mut pts = vec![CdfPoint {
        ms: 0.0,
        fraction: f0,
        label: "no wait",
    }];
    for (ms, fraction, label) in [
        (d.p50, 0.5, "p50"),
        (d.p90, 0.9, "p90"),
        (d.p99, 0.99, "p99"),
        (d.p999, 0.999, "p99.9"),
        (d.max, top, "max"),
    ] {
        let last = *pts.last().expect("starts with the no-wait point");
        if ms > 0.0 && ms >= last.ms && fraction > last.fraction {
            pts.push(CdfPoint {
                ms,
                fraction,
                label,
            });
        }
    }
    pts
}

fn distribution(r: &RunSummary, priority: Option<Priority>) -> (&DistributionMs, f64) {
    match priority {
        None => (&r.acquire_wait_ms, r.p_wait),
        Some(p) => {
            let c = r.by_priority.get(p);
            (&c.acquire_wait_ms, c.p_wait)
        }
    }
}

/// Acquire-wait CDF per policy (all priorities, or one).
pub struct WaitCdf<'a> {
    summary: &'a Summary,
    palette: &'a Palette,
    priority: Option<Priority>,
}

impl<'a> WaitCdf<'a> {
    pub fn new(summary: &'a Summary, palette: &'a Palette) -> Self {
        WaitCdf {
            summary,
            palette,
            priority: None,
        }
    }

    /// Only the requests of `priority`.
    pub fn for_priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// Acquire timeouts configured in the policies: (ms, as written, which
/// priorities), distinct, shortest first.
fn timeouts(summary: &Summary, priority: Option<Priority>) -> Vec<(f64, String, String)> {
    let mut out: Vec<(f64, String, String)> = Vec::new();
    for r in &summary.runs {
        let Some(t) = r.policy.config.get("acquire_timeout") else {
            continue;
        };
        for (key, name) in [("high", "high"), ("normal", "normal"), ("low", "low")] {
            if let Some(p) = priority {
                if p.name() != key {
                    continue;
                }
            }
            let Some(written) = t.get(key).and_then(|v| v.as_str()) else {
                continue;
            };
            let Some(ms) = parse_ms(written) else {
                continue;
            };
            match out.iter_mut().find(|(m, _, _)| *m == ms) {
                Some((_, _, l)) => {
                    if !l.split('/').any(|x| x == name) {
                        l.push('/');
                        l.push_str(name);
                    }
                }
                None => out.push((ms, written.to_string(), name.to_string())),
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// "2.5s" / "250ms" -> milliseconds (only the units the effective config uses).
fn parse_ms(s: &str) -> Option<f64> {
    crate::time::parse_duration(s)
        .ok()
        .map(|d| d.as_nanos() as f64 / 1e6)
}

impl Chart for WaitCdf<'_> {
    fn name(&self) -> &'static str {
        "wait_cdf"
    }

    fn size(&self) -> (u32, u32) {
        (1000, 620)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let s = self.summary;
        let which = match self.priority {
            None => "all priorities".to_string(),
            Some(p) => format!("{} priority", p.name()),
        };
        let body = header(
            root,
            &format!(
                "Acquire wait distribution · {which} · trace {} · seed {}",
                s.trace.name, s.seed
            ),
            "markers: measured (left edge: share that waited 0; p50, p90, p99, p99.9, max); lines join them · wait includes time to timeout",
        )?;
        let curves: Vec<(&str, Vec<CdfPoint>)> = s
            .runs
            .iter()
            .map(|r| {
                let (d, p_wait) = distribution(r, self.priority);
                (r.policy.name.as_str(), cdf_points(d, p_wait))
            })
            .collect();
        let positive = curves
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|p| p.ms))
            .filter(|&v| v > 0.0);
        let (min_pos, max_pos) = positive.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let x_min = if min_pos.is_finite() {
            (min_pos.max(MIN_FLOOR_MS).log10().floor() - 1.0).max(MIN_FLOOR_MS.log10())
        } else {
            -2.0
        };
        let x_max = if max_pos > 0.0 {
            (max_pos.log10() + 0.15).max(x_min + 2.0)
        } else {
            x_min + 3.0
        };
        let top_count = s
            .runs
            .iter()
            .map(|r| distribution(r, self.priority).0.count)
            .max()
            .unwrap_or(1)
            .max(10);
        let y_max = ((top_count as f64).log10() + 0.25).min(6.25);

        let (plot_area, legend_area) = body.split_horizontally(body.dim_in_pixel().0 - 220);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(52)
            .y_label_area_size(92)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("acquire wait (ms, log scale)")
            .y_desc("requests with wait ≤ t (nines scale)")
            .axis_desc_style(text(14))
            .axis_style(MUTED)
            .draw()?;
        let area = chart.plotting_area().strip_coord_spec();
        let base = chart.plotting_area().get_base_pixel();
        let coord = chart.as_coord_spec().clone();
        // Pixel relative to the plotting area, and absolute.
        let to_px = |x: f64, y: f64| {
            let (px, py) = coord.translate(&(x, y));
            (px - base.0, py - base.1)
        };
        let abs = |x: f64, y: f64| coord.translate(&(x, y));
        let (w, h) = area.dim_in_pixel();
        // Decade grid and labels on the time axis.
        let mut d = x_min.ceil() as i32;
        while d as f64 <= x_max + 1e-9 {
            let (px, _) = to_px(d as f64, 0.0);
            area.draw(&PathElement::new(vec![(px, 0), (px, h as i32)], GRID))?;
            let label = if (d as f64 - x_min).abs() < 1e-9 {
                format!("≤{}", axis_number(10f64.powi(d)))
            } else {
                axis_number(10f64.powi(d))
            };
            let (ax, ay) = abs(d as f64, 0.0);
            text_at(
                &plot_area,
                &label,
                (ax, ay + 10),
                &text(13).pos(Pos::new(HPos::Center, VPos::Top)),
            )?;
            d += 1;
        }
        // Nines grid and labels on the probability axis.
        for (f, label) in [
            (0.0, "0 %"),
            (0.5, "50 %"),
            (0.9, "90 %"),
            (0.99, "99 %"),
            (0.999, "99.9 %"),
            (0.9999, "99.99 %"),
            (0.99999, "99.999 %"),
            (0.999999, "99.9999 %"),
        ] {
            let y = nines(f);
            if y > y_max {
                break;
            }
            let (_, py) = to_px(x_min, y);
            area.draw(&PathElement::new(vec![(0, py), (w as i32, py)], GRID))?;
            let (ax, ay) = abs(x_min, y);
            text_at(
                &plot_area,
                label,
                (ax - 10, ay),
                &text(13).pos(Pos::new(HPos::Right, VPos::Center)),
            )?;
        }
        // Configured acquire timeouts: where waits are cut off.
        for (ms, written, who) in timeouts(s, self.priority) {
            let x = ms.log10();
            if x <= x_min || x >= x_max {
                continue;
            }
            chart.draw_series(DashedLineSeries::new(
                [(x, 0.0), (x, y_max)],
                4,
                4,
                MUTED.mix(0.6).stroke_width(1),
            ))?;
            let (px, _) = to_px(x, y_max);
            area.draw(&Text::new(
                format!("{who} timeout {written}"),
                (px - 16, 6),
                colored(12, MUTED)
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Right, VPos::Top)),
            ))?;
        }
        for (name, pts) in &curves {
            let color = self.palette.color(name);
            let xy: Vec<(f64, f64)> = pts
                .iter()
                .map(|p| {
                    let x = if p.ms > 0.0 {
                        p.ms.log10().max(x_min)
                    } else {
                        x_min
                    };
                    (x, nines(p.fraction).min(y_max))
                })
                .collect();
            chart.draw_series(LineSeries::new(xy.clone(), color.stroke_width(3)))?;
            chart.draw_series(
                xy.iter()
                    .map(|&(x, y)| Circle::new((x, y), 5, color.filled())),
            )?;
        }
        // Legend: colour, name, and the measured tail in words.
        let mut y = 24;
        legend_area.draw(&Text::new("policy · p99 wait", (0, y - 18), text(13)))?;
        for r in &s.runs {
            let (d, p_wait) = distribution(r, self.priority);
            let color = self.palette.color(&r.policy.name);
            legend_area.draw(&PathElement::new(
                vec![(0, y + 8), (24, y + 8)],
                color.stroke_width(3),
            ))?;
            legend_area.draw(&Circle::new((12, y + 8), 5, color.filled()))?;
            legend_area.draw(&Text::new(r.policy.name.clone(), (32, y), text(14)))?;
            legend_area.draw(&Text::new(
                format!(
                    "p99 {} · waited {}",
                    ms_label(d.p99),
                    super::pct_label(p_wait)
                ),
                (32, y + 18),
                colored(12, MUTED),
            ))?;
            y += 48;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(p50: f64, p90: f64, p99: f64, p999: f64, max: f64) -> DistributionMs {
        DistributionMs {
            count: 100_000,
            mean: 0.0,
            p50,
            p90,
            p99,
            p999,
            max,
        }
    }

    #[test]
    fn points_start_at_the_no_wait_share_and_only_rise() {
        let pts = cdf_points(&dist(0.0, 0.0, 4777.0, 9000.0, 10000.0), 0.05);
        let labels: Vec<&str> = pts.iter().map(|p| p.label).collect();
        assert_eq!(labels, ["no wait", "p99", "p99.9", "max"]);
        assert_eq!(pts[0].fraction, 0.95);
        assert_eq!(pts[3].fraction, 1.0 - 1.0 / 100_000.0);
        assert!(nines(0.99) > 1.99 && nines(0.99) < 2.01);
    }

    #[test]
    fn inconsistent_points_are_skipped() {
        // p50 > 0 but 70 % never waited: the p50 point would go backwards.
        let pts = cdf_points(&dist(1.0, 2.0, 3.0, 4.0, 5.0), 0.3);
        let labels: Vec<&str> = pts.iter().map(|p| p.label).collect();
        assert_eq!(labels, ["no wait", "p90", "p99", "p99.9", "max"]);
        let empty = DistributionMs {
            count: 0,
            ..dist(0.0, 0.0, 0.0, 0.0, 0.0)
        };
        assert!(cdf_points(&empty, 0.0).is_empty());
    }
}
