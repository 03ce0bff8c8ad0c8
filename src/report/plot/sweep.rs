//! Plots of a parameter sweep (`sweep.json`, schema `pooltune.sweep/1`):
//! a heatmap of one metric over two knobs, and the Pareto front of cost
//! (connection-seconds) against tail wait (p99).
//!
//! The contract read here (written by `pooltune sim sweep`):
//!
//! ```json
//! {"schema": "pooltune.sweep/1", "seed": 42, "replications": 5,
//!  "grid": {"resize.scale_up": [0.6, 0.7, 0.8]},
//!  "variants": [{"index": 0, "policy": "seed-80-30", "trace": "default",
//!                "params": {"resize.scale_up": 0.6},
//!                "metrics": {"acquire_wait_ms.p99": {"mean": 12.5, "ci95": 1.5, "n": 5}}}]}
//! ```
//!
//! `ci95` is the half-width of the 95 % interval of the mean (`[lo, hi]`
//! bounds are accepted too; `null` when there is no interval, with fewer
//! than two replications). Other keys (hashes, paired differences) are
//! ignored here.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    axis_number, colored, header, nice_ceiling, text, text_at, Chart, DrawResult, Palette,
    PlotError, GRID, INK, MUTED,
};

/// The schema this reader accepts.
pub const SWEEP_SCHEMA: &str = "pooltune.sweep/1";

/// A whole sweep: the grid and one entry per variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepData {
    pub schema: String,
    pub seed: u64,
    pub replications: u64,
    /// Knob -> the values swept, in the order swept.
    pub grid: BTreeMap<String, Vec<Value>>,
    pub variants: Vec<Variant>,
}

/// One point of the grid (a policy, a trace, knob values) and its metrics
/// over the replications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub index: u64,
    pub policy: String,
    pub trace: String,
    pub params: BTreeMap<String, Value>,
    /// Dotted metric name (`acquire_wait_ms.p99`) -> estimate.
    pub metrics: BTreeMap<String, Estimate>,
}

/// A metric's mean over replications and its 95 % interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    #[serde(default)]
    pub ci95: Option<Ci95>,
    pub n: u64,
}

/// The 95 % interval: a half-width (mean ± h) or explicit bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ci95 {
    HalfWidth(f64),
    Bounds([f64; 2]),
}

impl Estimate {
    /// Lower and upper bound of the interval.
    pub fn bounds(&self) -> (f64, f64) {
        match self.ci95 {
            Some(Ci95::HalfWidth(h)) => (self.mean - h.abs(), self.mean + h.abs()),
            Some(Ci95::Bounds([lo, hi])) => (lo.min(hi), lo.max(hi)),
            None => (self.mean, self.mean),
        }
    }
}

impl SweepData {
    /// Reads and checks a `sweep.json`.
    pub fn read(path: &Path) -> Result<SweepData, PlotError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlotError::Input {
            source_name: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses sweep JSON; `name` is used in error messages.
    pub fn from_json(text: &str, name: &str) -> Result<SweepData, PlotError> {
        let bad = |message: String| PlotError::Input {
            source_name: name.to_string(),
            message,
        };
        let data: SweepData =
            serde_json::from_str(text).map_err(|e| bad(format!("not a sweep: {e}")))?;
        if data.schema != SWEEP_SCHEMA {
            return Err(bad(format!(
                "schema `{}`, expected `{SWEEP_SCHEMA}`",
                data.schema
            )));
        }
        Ok(data)
    }

    /// The values of `key` in sweep order: the grid's list, or else the
    /// distinct values the variants use, in order of first appearance.
    pub fn values(&self, key: &str) -> Vec<Value> {
        if let Some(v) = self.grid.get(key) {
            return v.clone();
        }
        let mut out: Vec<Value> = Vec::new();
        for v in &self.variants {
            if let Some(x) = v.params.get(key) {
                if !out.contains(x) {
                    out.push(x.clone());
                }
            }
        }
        out
    }

    /// The two knobs a heatmap shows by default: the first two grid keys
    /// with more than one value.
    pub fn default_axes(&self) -> Option<(String, String)> {
        let keys: Vec<&String> = self
            .grid
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| k)
            .collect();
        match keys.as_slice() {
            [a, b, ..] => Some(((*a).clone(), (*b).clone())),
            _ => None,
        }
    }

    fn policies(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for v in &self.variants {
            if !out.contains(&v.policy) {
                out.push(v.policy.clone());
            }
        }
        out
    }
}

/// A knob value for a label: numbers compactly, strings as they are.
pub fn value_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map(axis_number).unwrap_or_else(|| n.to_string()),
        other => other.to_string(),
    }
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// Viridis, 9 anchors: dark purple (0) to yellow (1).
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |p: u8, q: u8| (p as f64 + (q as f64 - p as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// One heatmap cell: the best mean among variants at these two knob values.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub x: usize,
    pub y: usize,
    pub value: f64,
    /// How many variants share this cell (other knobs, policies, traces).
    pub variants: usize,
}

/// A metric over two knobs; cells are coloured best (yellow) to worst
/// (purple). When other knobs (or several policies) vary too, each cell
/// shows the best variant at that pair of values, and the chart says so.
pub struct SweepHeatmap<'a> {
    sweep: &'a SweepData,
    x_key: String,
    y_key: String,
    metric: String,
    better: Better,
}

impl<'a> SweepHeatmap<'a> {
    pub fn new(
        sweep: &'a SweepData,
        x_key: &str,
        y_key: &str,
        metric: &str,
        better: Better,
    ) -> Self {
        SweepHeatmap {
            sweep,
            x_key: x_key.to_string(),
            y_key: y_key.to_string(),
            metric: metric.to_string(),
            better,
        }
    }

    /// The cells with a value, row by row.
    pub fn cells(&self) -> Vec<Cell> {
        let xs = self.sweep.values(&self.x_key);
        let ys = self.sweep.values(&self.y_key);
        let mut out = Vec::new();
        for (yi, yv) in ys.iter().enumerate() {
            for (xi, xv) in xs.iter().enumerate() {
                let vals: Vec<f64> = self
                    .sweep
                    .variants
                    .iter()
                    .filter(|v| {
                        v.params.get(&self.x_key) == Some(xv)
                            && v.params.get(&self.y_key) == Some(yv)
                    })
                    .filter_map(|v| v.metrics.get(&self.metric).map(|e| e.mean))
                    .filter(|m| m.is_finite())
                    .collect();
                if vals.is_empty() {
                    continue;
                }
                let value = match self.better {
                    Better::Lower => vals.iter().copied().fold(f64::INFINITY, f64::min),
                    Better::Higher => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                };
                out.push(Cell {
                    x: xi,
                    y: yi,
                    value,
                    variants: vals.len(),
                });
            }
        }
        out
    }
}

impl Chart for SweepHeatmap<'_> {
    fn name(&self) -> &'static str {
        "sweep_heatmap"
    }

    fn size(&self) -> (u32, u32) {
        (1000, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let xs = self.sweep.values(&self.x_key);
        let ys = self.sweep.values(&self.y_key);
        let cells = self.cells();
        let shared = cells.iter().any(|c| c.variants > 1);
        let direction = match self.better {
            Better::Lower => "lower is better",
            Better::Higher => "higher is better",
        };
        let subtitle = format!(
            "mean over {} replications (seed {}); {direction}{}",
            self.sweep.replications,
            self.sweep.seed,
            if shared {
                "; each cell: the best variant over the other knobs and policies"
            } else {
                ""
            }
        );
        let body = header(
            root,
            &format!(
                "Sweep: {} by {} and {}",
                self.metric, self.x_key, self.y_key
            ),
            &subtitle,
        )?;
        let (plot_area, bar_area) = body.split_horizontally(body.dim_in_pixel().0 - 150);
        let nx = xs.len().max(1);
        let ny = ys.len().max(1);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(12)
            .x_label_area_size(56)
            .y_label_area_size(96)
            .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc(self.x_key.as_str())
            .y_desc(self.y_key.as_str())
            .axis_desc_style(text(14))
            .axis_style(MUTED)
            .draw()?;
        let (lo, hi) = cells
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), c| {
                (l.min(c.value), h.max(c.value))
            });
        // 1 = best.
        let goodness = |v: f64| {
            if hi > lo {
                match self.better {
                    Better::Lower => (hi - v) / (hi - lo),
                    Better::Higher => (v - lo) / (hi - lo),
                }
            } else {
                1.0
            }
        };
        let base = chart.plotting_area().get_base_pixel();
        let plot = chart.plotting_area().strip_coord_spec();
        for (i, v) in xs.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            text_at(
                &plot_area,
                &value_label(v),
                (px, py + 8),
                &text(13).pos(Pos::new(HPos::Center, VPos::Top)),
            )?;
        }
        for (i, v) in ys.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(0.0, i as f64 + 0.5));
            text_at(
                &plot_area,
                &value_label(v),
                (px - 8, py),
                &text(13).pos(Pos::new(HPos::Right, VPos::Center)),
            )?;
        }
        // The best cell is outlined, when there is one (not all equal).
        let best = cells
            .iter()
            .filter(|_| hi > lo)
            .max_by(|a, b| goodness(a.value).total_cmp(&goodness(b.value)));
        for (xi, _) in xs.iter().enumerate() {
            for (yi, _) in ys.iter().enumerate() {
                let rect = [(xi as f64, yi as f64), (xi as f64 + 1.0, yi as f64 + 1.0)];
                match cells.iter().find(|c| c.x == xi && c.y == yi) {
                    Some(c) => {
                        let g = goodness(c.value);
                        chart.draw_series(std::iter::once(Rectangle::new(
                            rect,
                            viridis(g).filled(),
                        )))?;
                        let ink = if g > 0.55 { INK } else { WHITE };
                        let (px, py) = chart.backend_coord(&(xi as f64 + 0.5, yi as f64 + 0.5));
                        plot.draw(&Text::new(
                            axis_number(round_sig(c.value, 3)),
                            (px - base.0, py - base.1),
                            colored(14, ink).pos(Pos::new(HPos::Center, VPos::Center)),
                        ))?;
                    }
                    None => {
                        chart.draw_series(std::iter::once(Rectangle::new(rect, GRID.filled())))?;
                        let (px, py) = chart.backend_coord(&(xi as f64 + 0.5, yi as f64 + 0.5));
                        plot.draw(&Text::new(
                            "no data",
                            (px - base.0, py - base.1),
                            colored(12, MUTED).pos(Pos::new(HPos::Center, VPos::Center)),
                        ))?;
                    }
                }
                chart.draw_series(std::iter::once(Rectangle::new(rect, WHITE.stroke_width(2))))?;
            }
        }
        if let Some(b) = best {
            let rect = [
                (b.x as f64 + 0.04, b.y as f64 + 0.04),
                (b.x as f64 + 0.96, b.y as f64 + 0.96),
            ];
            chart.draw_series(std::iter::once(Rectangle::new(rect, INK.stroke_width(3))))?;
        }
        // Colour bar: best at the top.
        let (_, bh) = bar_area.dim_in_pixel();
        let top = 24;
        let bottom = bh as i32 - 80;
        for y in top..bottom {
            let g = 1.0 - (y - top) as f64 / (bottom - top) as f64;
            bar_area.draw(&Rectangle::new([(20, y), (44, y + 1)], viridis(g).filled()))?;
        }
        if lo.is_finite() && hi == lo {
            bar_area.draw(&Text::new(
                format!("all {}", axis_number(round_sig(lo, 3))),
                (52, top - 2),
                text(13),
            ))?;
        } else if lo.is_finite() {
            let (best_v, worst_v) = match self.better {
                Better::Lower => (lo, hi),
                Better::Higher => (hi, lo),
            };
            bar_area.draw(&Text::new(
                format!("{} (best)", axis_number(round_sig(best_v, 3))),
                (52, top - 2),
                text(13),
            ))?;
            bar_area.draw(&Text::new(
                axis_number(round_sig(worst_v, 3)),
                (52, bottom - 14),
                text(13),
            ))?;
        }
        bar_area.draw(&Text::new(
            self.metric.clone(),
            (8, bottom + 12),
            colored(12, MUTED),
        ))?;
        Ok(())
    }
}

fn round_sig(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let mag = v.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits - 1 - mag);
    (v * scale).round() / scale
}

/// A variant's position in the cost/quality plane.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontPoint {
    pub index: u64,
    pub policy: String,
    pub cost: Estimate,
    pub quality: Estimate,
    pub params: BTreeMap<String, Value>,
    /// No other variant is at least as good on both and better on one.
    pub optimal: bool,
}

/// Cost against tail wait, both to be minimised; the Pareto-optimal
/// variants are joined by a staircase and labelled with their knobs.
pub struct ParetoFront<'a> {
    sweep: &'a SweepData,
    cost: String,
    quality: String,
    palette: Palette,
}

impl<'a> ParetoFront<'a> {
    /// Connection-seconds against p99 acquire wait.
    pub fn new(sweep: &'a SweepData) -> Self {
        Self::with_metrics(sweep, "pool.connection_seconds", "acquire_wait_ms.p99")
    }

    /// Any two metrics where lower is better.
    pub fn with_metrics(sweep: &'a SweepData, cost: &str, quality: &str) -> Self {
        ParetoFront {
            sweep,
            cost: cost.to_string(),
            quality: quality.to_string(),
            palette: Palette::new(&sweep.policies()),
        }
    }

    /// Every variant with both metrics, front points marked, sorted by cost.
    pub fn points(&self) -> Vec<FrontPoint> {
        let mut pts: Vec<FrontPoint> = self
            .sweep
            .variants
            .iter()
            .filter_map(|v| {
                let c = v.metrics.get(&self.cost)?;
                let q = v.metrics.get(&self.quality)?;
                (c.mean.is_finite() && q.mean.is_finite()).then(|| FrontPoint {
                    index: v.index,
                    policy: v.policy.clone(),
                    cost: c.clone(),
                    quality: q.clone(),
                    params: v.params.clone(),
                    optimal: false,
                })
            })
            .collect();
        pts.sort_by(|a, b| {
            a.cost
                .mean
                .total_cmp(&b.cost.mean)
                .then(a.quality.mean.total_cmp(&b.quality.mean))
                .then(a.index.cmp(&b.index))
        });
        let mut best_q = f64::INFINITY;
        for p in &mut pts {
            if p.quality.mean < best_q {
                p.optimal = true;
                best_q = p.quality.mean;
            }
        }
        pts
    }
}

fn params_label(p: &FrontPoint) -> String {
    let knobs: Vec<String> = p
        .params
        .iter()
        .map(|(k, v)| {
            let short = k.rsplit('.').next().unwrap_or(k);
            format!("{short}={}", value_label(v))
        })
        .collect();
    if knobs.is_empty() {
        format!("#{} {}", p.index, p.policy)
    } else {
        format!("#{} {}", p.index, knobs.join(" "))
    }
}

impl Chart for ParetoFront<'_> {
    fn name(&self) -> &'static str {
        "pareto"
    }

    fn size(&self) -> (u32, u32) {
        (1100, 700)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let pts = self.points();
        let body = header(
            root,
            &format!("Pareto front: {} vs {}", self.cost, self.quality),
            &format!(
                "{} variants, mean over {} replications (seed {}) with 95 % intervals; filled: not beaten on both; lower-left is better",
                pts.len(),
                self.sweep.replications,
                self.sweep.seed
            ),
        )?;
        let (plot_area, legend_area) = body.split_horizontally(body.dim_in_pixel().0 - 300);
        let x_max = nice_ceiling(
            pts.iter().map(|p| p.cost.bounds().1).fold(0.0, f64::max) * 1.08,
            1.0,
        );
        let y_max = nice_ceiling(
            pts.iter().map(|p| p.quality.bounds().1).fold(0.0, f64::max) * 1.12,
            1.0,
        );
        let fmt = |v: &f64| axis_number(*v);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(52)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .x_desc(self.cost.as_str())
            .y_desc(self.quality.as_str())
            .axis_desc_style(text(14))
            .label_style(text(12))
            .axis_style(MUTED)
            .draw()?;
        // The front as a staircase: from each optimal point right to the
        // next one's cost, then down.
        let front: Vec<&FrontPoint> = pts.iter().filter(|p| p.optimal).collect();
        let mut stairs = Vec::new();
        for (i, p) in front.iter().enumerate() {
            stairs.push((p.cost.mean, p.quality.mean));
            if let Some(next) = front.get(i + 1) {
                stairs.push((next.cost.mean, p.quality.mean));
            }
        }
        chart.draw_series(LineSeries::new(stairs, INK.stroke_width(2)))?;
        for p in &pts {
            let color = self.palette.color(&p.policy);
            let alpha = if p.optimal { 1.0 } else { 0.45 };
            let (c_lo, c_hi) = p.cost.bounds();
            let (q_lo, q_hi) = p.quality.bounds();
            let bar = color.mix(alpha).stroke_width(1);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(c_lo, p.quality.mean), (c_hi, p.quality.mean)],
                bar,
            )))?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(p.cost.mean, q_lo), (p.cost.mean, q_hi)],
                bar,
            )))?;
            let at = (p.cost.mean, p.quality.mean);
            if p.optimal {
                chart.draw_series(std::iter::once(Circle::new(at, 7, color.filled())))?;
            } else {
                chart.draw_series(std::iter::once(Circle::new(
                    at,
                    6,
                    color.mix(alpha).stroke_width(2),
                )))?;
            }
        }
        let base = chart.plotting_area().get_base_pixel();
        let plot = chart.plotting_area().strip_coord_spec();
        // Front points carry their index; the list on the right gives
        // their knobs (long labels would overlap where the front is dense).
        for p in &front {
            let (px, py) = chart.backend_coord(&(p.cost.mean, p.quality.mean));
            plot.draw(&Text::new(
                format!("#{}", p.index),
                (px - base.0 + 9, py - base.1 - 17),
                text(12),
            ))?;
        }
        let mut y = 16;
        legend_area.draw(&Text::new("policy", (0, y - 14), text(13)))?;
        for name in self.sweep.policies() {
            legend_area.draw(&Circle::new(
                (10, y + 10),
                6,
                self.palette.color(&name).filled(),
            ))?;
            legend_area.draw(&Text::new(name, (24, y + 2), text(13)))?;
            y += 24;
        }
        y += 12;
        legend_area.draw(&Text::new(
            "front, cheapest first",
            (0, y),
            (super::FONT, 13, FontStyle::Bold).into_font().color(&INK),
        ))?;
        y += 22;
        let (_, lh) = legend_area.dim_in_pixel();
        let fit = ((lh as i32 - y) / 36).max(0) as usize;
        for (i, p) in front.iter().enumerate() {
            if i + 1 == fit && front.len() > fit {
                legend_area.draw(&Text::new(
                    format!("... and {} more (see the report)", front.len() - i),
                    (0, y),
                    colored(12, MUTED),
                ))?;
                break;
            }
            legend_area.draw(&Text::new(params_label(p), (0, y), text(12)))?;
            legend_area.draw(&Text::new(
                format!(
                    "{} · {}",
                    axis_number(round_sig(p.cost.mean, 4)),
                    axis_number(round_sig(p.quality.mean, 4))
                ),
                (12, y + 15),
                colored(12, MUTED),
            ))?;
            y += 36;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SweepData {
        let mut variants = Vec::new();
        let ups = [0.6, 0.7, 0.8, 0.9];
        let steps = [1, 2, 4];
        let mut index = 0;
        for (i, up) in ups.iter().enumerate() {
            for (j, step) in steps.iter().enumerate() {
                let cost = 2000.0 + 900.0 * (3 - i) as f64 + 300.0 * j as f64;
                let p99 = 40.0 + 900.0 * (i as f64).powi(2) / (1.0 + j as f64);
                let mut params = BTreeMap::new();
                params.insert("resize.scale_up".to_string(), serde_json::json!(up));
                params.insert("resize.step".to_string(), serde_json::json!(step));
                let mut metrics = BTreeMap::new();
                metrics.insert(
                    "pool.connection_seconds".to_string(),
                    Estimate {
                        mean: cost,
                        ci95: Some(Ci95::HalfWidth(cost * 0.02)),
                        n: 5,
                    },
                );
                metrics.insert(
                    "acquire_wait_ms.p99".to_string(),
                    Estimate {
                        mean: p99,
                        ci95: Some(Ci95::HalfWidth(p99 * 0.1)),
                        n: 5,
                    },
                );
                variants.push(Variant {
                    index,
                    policy: "seed-80-30".to_string(),
                    trace: "default".to_string(),
                    params,
                    metrics,
                });
                index += 1;
            }
        }
        let mut grid = BTreeMap::new();
        grid.insert(
            "resize.scale_up".to_string(),
            ups.iter().map(|v| serde_json::json!(v)).collect(),
        );
        grid.insert(
            "resize.step".to_string(),
            steps.iter().map(|v| serde_json::json!(v)).collect(),
        );
        SweepData {
            schema: SWEEP_SCHEMA.to_string(),
            seed: 42,
            replications: 5,
            grid,
            variants,
        }
    }

    #[test]
    fn round_trips_the_contract_and_checks_the_schema() {
        let s = sample();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(SweepData::from_json(&json, "x").unwrap(), s);
        let other = json.replace(SWEEP_SCHEMA, "pooltune.sweep/9");
        let err = SweepData::from_json(&other, "sweep.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sweep.json: schema `pooltune.sweep/9`, expected `pooltune.sweep/1`"
        );
        let bounds = r#"{"mean": 2.0, "ci95": [1.0, 3.5], "n": 3}"#;
        let e: Estimate = serde_json::from_str(bounds).unwrap();
        assert_eq!(e.bounds(), (1.0, 3.5));
        let none: Estimate =
            serde_json::from_str(r#"{"mean": 2.0, "ci95": null, "n": 1}"#).unwrap();
        assert_eq!(none.bounds(), (2.0, 2.0));
        assert_eq!(
            s.default_axes(),
            Some(("resize.scale_up".to_string(), "resize.step".to_string()))
        );
    }

    #[test]
    fn heatmap_cells_and_front() {
        let s = sample();
        let h = SweepHeatmap::new(
            &s,
            "resize.scale_up",
            "resize.step",
            "acquire_wait_ms.p99",
            Better::Lower,
        );
        let cells = h.cells();
        assert_eq!(cells.len(), 12);
        assert!(cells.iter().all(|c| c.variants == 1));
        assert_eq!(cells[0].value, 40.0);
        let front = ParetoFront::new(&s).points();
        assert_eq!(front.len(), 12);
        let optimal: Vec<u64> = front
            .iter()
            .filter(|p| p.optimal)
            .map(|p| p.index)
            .collect();
        // Cheapest first; each next optimal point waits strictly less.
        let mut last = f64::INFINITY;
        for p in front.iter().filter(|p| p.optimal) {
            assert!(p.quality.mean < last);
            last = p.quality.mean;
        }
        assert!(optimal.contains(&0), "{optimal:?}");
        assert_eq!(value_label(&serde_json::json!(0.7)), "0.7");
        assert_eq!(value_label(&serde_json::json!("2.5s")), "2.5s");
    }
}
