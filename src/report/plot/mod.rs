//! Plots drawn from `summary.json`, `timeseries.csv` and `sweep.json`, as
//! SVG text and PNG bytes (plotters).
//!
//! Every chart is a value implementing [`Chart`]: a fixed pixel size and one
//! `draw` function generic over the plotters backend, so the SVG and the PNG
//! are the same drawing. [`svg`] and [`png`] render it.
//!
//! - Sizes are fixed per chart (no dependence on the terminal or the data's
//!   magnitude), fonts are fixed, and every policy keeps its colour across
//!   every chart of a report ([`Palette`]).
//! - Text is laid out (and, in PNGs, rasterised) with DejaVu Sans, compiled
//!   into the binary from `assets/fonts/` through plotters' `ab_glyph`
//!   backend: no system font is looked up, so a PNG looks the same on every
//!   machine. SVGs name `DejaVu Sans, sans-serif` and leave the glyphs to
//!   the viewer.
//! - Output is deterministic: the same inputs give the same bytes.
//!
//! Charts: [`Timeline`] (pool size, active and waiting over time with the
//! arrival rate, one panel per policy), [`WaitCdf`] (acquire-wait
//! distribution per policy, log time axis), [`Priorities`] (timeouts and p99
//! wait per priority, grouped bars), [`Comparison`] (the overview: cost
//! against lost requests, p99 wait, and the timeline), [`SweepHeatmap`] and
//! [`ParetoFront`] (from a sweep), [`Overlay`] (two time series of the same
//! run, e.g. simulated against live), [`FleetPanels`] (a scenario run: one
//! panel per service or per server).

mod cdf;
mod comparison;
pub mod fleet;
pub mod overlay;
mod priorities;
pub mod series;
pub mod sweep;
mod timeline;

pub use cdf::WaitCdf;
pub use comparison::Comparison;
pub use fleet::{FleetPanels, FleetSeries, Panels};
pub use overlay::Overlay;
pub use priorities::Priorities;
pub use series::{PolicySeries, SeriesRow, TimeSeries};
pub use sweep::{ParetoFront, SweepData, SweepHeatmap};
pub use timeline::Timeline;

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// A plot could not be drawn or encoded.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters reported an error while drawing.
    #[error("drawing the {chart} plot: {message}")]
    Draw {
        chart: &'static str,
        message: String,
    },
    /// The bitmap could not be encoded as PNG.
    #[error("encoding the {chart} plot as PNG: {message}")]
    Png {
        chart: &'static str,
        message: String,
    },
    /// An input (time series, sweep) is unreadable or inconsistent.
    #[error("{source_name}: {message}")]
    Input {
        source_name: String,
        message: String,
    },
}

/// What a chart's `draw` returns.
pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A drawing with a fixed size, renderable to any plotters backend.
pub trait Chart {
    /// The file stem the chart is written under (`timeline` -> `timeline.svg`).
    fn name(&self) -> &'static str;
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the whole chart onto `root` (already filled white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// The font family every chart uses: registered for the bitmap backend
/// under this exact name, and written as-is into SVG `font-family`
/// attributes (a CSS font list, so viewers without DejaVu fall back).
pub const FONT: &str = "DejaVu Sans, sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static DEJAVU_SANS_BOLD: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");

/// Registers the committed fonts with plotters (once per process).
fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are valid TrueType files committed to the repository;
        // a failure here is a build problem, caught by every plot test.
        if plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_err()
            || plotters::style::register_font(FONT, FontStyle::Bold, DEJAVU_SANS_BOLD).is_err()
        {
            panic!("assets/fonts: DejaVu Sans is not a valid font file");
        }
    });
}

fn draw_error<E: std::error::Error + Send + Sync>(
    chart: &'static str,
    e: DrawingAreaErrorKind<E>,
) -> PlotError {
    PlotError::Draw {
        chart,
        message: e.to_string(),
    }
}

/// Renders `chart` as SVG text.
pub fn svg<C: Chart>(chart: &C) -> Result<String, PlotError> {
    register_fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, chart.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(chart.name(), e))?;
        chart.draw(&root).map_err(|e| draw_error(chart.name(), e))?;
        root.present().map_err(|e| draw_error(chart.name(), e))?;
    }
    Ok(out)
}

/// Renders `chart` as PNG bytes (8-bit RGB).
pub fn png<C: Chart>(chart: &C) -> Result<Vec<u8>, PlotError> {
    register_fonts();
    let (w, h) = chart.size();
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        chart.draw(&root).map_err(|e| draw_error(chart.name(), e))?;
        root.present().map_err(|e| draw_error(chart.name(), e))?;
    }
    let png_error = |e: png::EncodingError| PlotError::Png {
        chart: chart.name(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(png_error)?;
        writer.write_image_data(&rgb).map_err(png_error)?;
        writer.finish().map_err(png_error)?;
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Colours: one per policy, the same in every chart.

/// Tableau 10 (colour-blind-aware, readable on white), darkened yellow.
const TABLEAU: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7), // blue
    RGBColor(0xF2, 0x8E, 0x2B), // orange
    RGBColor(0xE1, 0x57, 0x59), // red
    RGBColor(0x76, 0xB7, 0xB2), // teal
    RGBColor(0x59, 0xA1, 0x4F), // green
    RGBColor(0xC9, 0xA8, 0x1A), // yellow (darkened for contrast)
    RGBColor(0xB0, 0x7A, 0xA1), // purple
    RGBColor(0xFF, 0x9D, 0xA7), // pink
    RGBColor(0x9C, 0x75, 0x5F), // brown
    RGBColor(0x79, 0x70, 0x6E), // grey
];

/// Colours pinned for the shipped policies, so every report and the README
/// show them alike: the seed's variants warm, fixed pools cool.
const PINNED: &[(&str, usize)] = &[
    ("seed-80-30", 2),        // red
    ("seed-80-30-low10s", 6), // purple
    ("fixed-10", 0),          // blue
    ("fixed-25", 4),          // green
];

/// Neutral colours for what is not a policy.
pub(crate) const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub(crate) const GRID: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
pub(crate) const ARRIVALS: RGBColor = RGBColor(0x88, 0x88, 0x88);
pub(crate) const WAITING: RGBColor = RGBColor(0x5A, 0x4A, 0x78);
pub(crate) const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);

/// A colour per policy name. Shipped policies have pinned colours; any other
/// name takes the palette slot its name hashes to (FNV-1a, stable across
/// runs and machines), moving to the next free slot when that one is taken
/// in this palette. Names are placed pinned first, then in sorted order, so
/// the same set of names always gets the same colours, whatever their order.
#[derive(Debug, Clone)]
pub struct Palette {
    entries: Vec<(String, RGBColor)>,
}

impl Palette {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Palette {
        let mut sorted: Vec<&str> = names.iter().map(|s| s.as_ref()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut used = [false; TABLEAU.len()];
        let mut entries = Vec::new();
        for name in &sorted {
            if let Some(&(_, slot)) = PINNED.iter().find(|(n, _)| n == name) {
                used[slot] = true;
                entries.push((name.to_string(), TABLEAU[slot]));
            }
        }
        for name in &sorted {
            if PINNED.iter().any(|(n, _)| n == name) {
                continue;
            }
            let start = (fnv1a(name) % TABLEAU.len() as u64) as usize;
            let slot = (0..TABLEAU.len())
                .map(|i| (start + i) % TABLEAU.len())
                .find(|&s| !used[s])
                .unwrap_or(start);
            used[slot] = true;
            entries.push((name.to_string(), TABLEAU[slot]));
        }
        Palette { entries }
    }

    /// The colour of `name` (grey for a name the palette was not built with).
    pub fn color(&self, name: &str) -> RGBColor {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .unwrap_or(ARRIVALS)
    }

    /// `#rrggbb` of `name`'s colour (for HTML legends).
    pub fn hex(&self, name: &str) -> String {
        let RGBColor(r, g, b) = self.color(name);
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------------------
// Text styles and small layout helpers shared by the charts.

pub(crate) fn text(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&INK)
}

pub(crate) fn bold(size: u32) -> TextStyle<'static> {
    (FONT, size, FontStyle::Bold).into_font().color(&INK)
}

pub(crate) fn colored(size: u32, color: RGBColor) -> TextStyle<'static> {
    (FONT, size).into_font().color(&color)
}

pub(crate) fn colored_bold(size: u32, color: RGBColor) -> TextStyle<'static> {
    (FONT, size, FontStyle::Bold).into_font().color(&color)
}

/// Draws a title line and an optional subtitle at the top of `area` and
/// returns the rest.
pub(crate) fn header<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    area.draw(&Text::new(title.to_string(), (16, 12), bold(20)))?;
    let mut used = 40;
    if !subtitle.is_empty() {
        area.draw(&Text::new(
            subtitle.to_string(),
            (16, 40),
            colored(14, MUTED),
        ))?;
        used = 64;
    }
    Ok(area.split_vertically(used).1)
}

/// Draws `label` with its anchor at the absolute backend pixel `abs`, onto
/// `area` (an area that contains that pixel: typically the one a chart was
/// built on, which includes its label areas). Positions that fall outside an
/// area are clamped to its edge by plotters, so labels outside a plotting
/// area must be drawn on a parent area like this.
pub(crate) fn text_at<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
    abs: (i32, i32),
    style: &TextStyle,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (bx, by) = area.get_base_pixel();
    area.draw(&Text::new(
        label.to_string(),
        (abs.0 - bx, abs.1 - by),
        style.clone(),
    ))
}

/// The unit a time axis is labelled in for a run of `span_s` seconds.
pub(crate) fn time_unit(span_s: f64) -> (f64, &'static str) {
    if span_s <= 300.0 {
        (1.0, "s")
    } else if span_s <= 3.0 * 3600.0 {
        (60.0, "min")
    } else {
        (3600.0, "h")
    }
}

/// A round upper bound for an axis showing values up to `max` (at least `floor`).
pub(crate) fn nice_ceiling(max: f64, floor: f64) -> f64 {
    let m = max.max(floor);
    if m <= 0.0 || !m.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(m.log10().floor());
    for step in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m <= step * mag * 1.0000001 {
            return step * mag;
        }
    }
    10.0 * mag
}

/// A compact axis label: 1200 -> "1,200", 0.5 -> "0.5", 2.25 -> "2.25".
pub(crate) fn axis_number(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if v.abs() >= 1000.0 {
        let neg = v < 0.0;
        let s = super::thousands(v.abs().round() as u64);
        return if neg { format!("-{s}") } else { s };
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A duration in milliseconds for a label: "0 ms", "0.42 ms", "4,777 ms", "12.5 s".
pub(crate) fn ms_label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{} s", axis_number((v / 100.0).round() / 10.0))
    } else if v >= 100.0 {
        format!("{} ms", super::thousands(v.round() as u64))
    } else {
        format!("{} ms", super::ms(v))
    }
}

/// A percentage for a label: 0 -> "0 %", 0.0187 -> "1.87 %", 0.25 -> "25 %".
pub(crate) fn pct_label(f: f64) -> String {
    let p = f * 100.0;
    if p == 0.0 {
        "0 %".to_string()
    } else if p < 0.01 {
        "<0.01 %".to_string()
    } else if p < 10.0 {
        format!("{} %", axis_number((p * 100.0).round() / 100.0))
    } else {
        format!("{} %", axis_number((p * 10.0).round() / 10.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_is_stable_and_distinct() {
        let a = Palette::new(&["zeta", "alpha", "fixed-10", "seed-80-30"]);
        let b = Palette::new(&["seed-80-30", "fixed-10", "alpha", "zeta"]);
        for n in ["zeta", "alpha", "fixed-10", "seed-80-30"] {
            assert_eq!(a.color(n), b.color(n), "{n}");
        }
        assert_eq!(a.hex("fixed-10"), "#4e79a7");
        assert_eq!(a.hex("seed-80-30"), "#e15759");
        let names: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
        let p = Palette::new(&names);
        let mut colors: Vec<_> = names.iter().map(|n| p.hex(n)).collect();
        colors.sort();
        colors.dedup();
        assert_eq!(colors.len(), 10, "ten names, ten colours");
    }

    #[test]
    fn labels() {
        assert_eq!(nice_ceiling(27.0, 1.0), 30.0);
        assert_eq!(nice_ceiling(1180.0, 1.0), 1200.0);
        assert_eq!(nice_ceiling(0.0, 5.0), 5.0);
        assert_eq!(axis_number(1200.0), "1,200");
        assert_eq!(axis_number(0.5), "0.5");
        assert_eq!(ms_label(4777.0), "4,777 ms");
        assert_eq!(ms_label(10000.0), "10 s");
        assert_eq!(ms_label(0.0), "0.00 ms");
        assert_eq!(pct_label(0.0187), "1.87 %");
        assert_eq!(pct_label(0.0), "0 %");
        assert_eq!(time_unit(600.0), (60.0, "min"));
    }
}
