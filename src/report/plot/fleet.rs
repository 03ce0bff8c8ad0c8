//! Scenario (topology) runs: one panel per service (pool size, target and
//! waiting requests over time, all its pools together) and one per server
//! (connects and closes per second, and backends), drawn from
//! `services.csv` and `servers.csv`.

use std::io::Read;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    axis_number, colored, header, nice_ceiling, text, time_unit, Chart, DrawResult, PlotError,
    ARRIVALS, GRID, MUTED, TABLEAU, WAITING,
};

/// One subject's per-second rows: its name and, per column, the values
/// (index = second).
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectSeries {
    pub name: String,
    /// Column names (after `second` and the name), in file order.
    pub columns: Vec<String>,
    /// `values[c][k]`: column c at second k.
    pub values: Vec<Vec<f64>>,
}

impl SubjectSeries {
    fn column(&self, name: &str) -> &[f64] {
        self.columns
            .iter()
            .position(|c| c == name)
            .map(|i| self.values[i].as_slice())
            .unwrap_or(&[])
    }
}

/// A per-second CSV (`servers.csv` or `services.csv`), subjects in file
/// order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FleetSeries {
    pub subjects: Vec<SubjectSeries>,
}

impl FleetSeries {
    pub fn read(path: &Path) -> Result<FleetSeries, PlotError> {
        let file = std::fs::File::open(path).map_err(|e| PlotError::Input {
            source_name: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_reader(file, &path.display().to_string())
    }

    /// Reads `second,<name>,<columns...>` rows.
    pub fn from_reader<R: Read>(r: R, name: &str) -> Result<FleetSeries, PlotError> {
        let bad = |message: String| PlotError::Input {
            source_name: name.to_string(),
            message,
        };
        let mut rd = csv::Reader::from_reader(r);
        let headers = rd.headers().map_err(|e| bad(e.to_string()))?.clone();
        if headers.len() < 3 || &headers[0] != "second" {
            return Err(bad(
                "expected a header `second,<name>,...` (servers.csv or services.csv)".to_string(),
            ));
        }
        let columns: Vec<String> = headers.iter().skip(2).map(str::to_string).collect();
        let mut out = FleetSeries::default();
        for (line, rec) in rd.records().enumerate() {
            let rec = rec.map_err(|e| bad(e.to_string()))?;
            let row = line + 2;
            let second: usize = rec[0]
                .parse()
                .map_err(|_| bad(format!("line {row}: `second` is not a number")))?;
            let subject = rec.get(1).unwrap_or("").to_string();
            if out.subjects.last().is_none_or(|s| s.name != subject) {
                out.subjects.push(SubjectSeries {
                    name: subject,
                    columns: columns.clone(),
                    values: vec![Vec::new(); columns.len()],
                });
            }
            let s = out.subjects.last_mut().expect("just pushed");
            for (c, v) in s.values.iter_mut().enumerate() {
                let x: f64 =
                    rec.get(c + 2).unwrap_or("").parse().map_err(|_| {
                        bad(format!("line {row}: `{}` is not a number", columns[c]))
                    })?;
                if v.len() <= second {
                    v.resize(second + 1, 0.0);
                }
                v[second] = x;
            }
        }
        Ok(out)
    }

    fn seconds(&self) -> usize {
        self.subjects
            .iter()
            .flat_map(|s| s.values.iter().map(Vec::len))
            .max()
            .unwrap_or(0)
    }
}

/// A line in every panel: column, legend label, colour, width.
struct Line {
    column: &'static str,
    label: &'static str,
    color: RGBColor,
    width: u32,
}

/// Which panels a [`FleetPanels`] draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panels {
    /// Per service: pool size, target, waiting requests.
    Services,
    /// Per server: connects/s, closes/s, backends.
    Servers,
}

/// One panel per service or per server, time axes shared.
pub struct FleetPanels<'a> {
    series: &'a FleetSeries,
    kind: Panels,
    /// Scenario name and seed, for the title.
    scenario: String,
    seed: u64,
}

impl<'a> FleetPanels<'a> {
    pub fn new(series: &'a FleetSeries, kind: Panels, scenario: &str, seed: u64) -> Self {
        FleetPanels {
            series,
            kind,
            scenario: scenario.to_string(),
            seed,
        }
    }

    fn lines(&self) -> [Line; 3] {
        match self.kind {
            Panels::Services => [
                Line {
                    column: "size",
                    label: "pool size (connections)",
                    color: TABLEAU[0],
                    width: 3,
                },
                Line {
                    column: "target",
                    label: "target (connections)",
                    color: ARRIVALS,
                    width: 1,
                },
                Line {
                    column: "waiting",
                    label: "waiting (requests)",
                    color: WAITING,
                    width: 2,
                },
            ],
            Panels::Servers => [
                Line {
                    column: "connects",
                    label: "connects/s",
                    color: TABLEAU[2],
                    width: 2,
                },
                Line {
                    column: "closes",
                    label: "closes/s",
                    color: TABLEAU[1],
                    width: 2,
                },
                Line {
                    column: "backends",
                    label: "backends (at the end of each second)",
                    color: TABLEAU[0],
                    width: 3,
                },
            ],
        }
    }
}

const PANEL_H: u32 = 200;

impl Chart for FleetPanels<'_> {
    fn name(&self) -> &'static str {
        match self.kind {
            Panels::Services => "services",
            Panels::Servers => "servers",
        }
    }

    fn size(&self) -> (u32, u32) {
        let n = self.series.subjects.len().max(1) as u32;
        (1200, 100 + n * PANEL_H + 40)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (what, unit_note) = match self.kind {
            Panels::Services => (
                "Services over time",
                "all of a service's pools together (every instance and server); per second",
            ),
            Panels::Servers => (
                "Servers over time",
                "connect attempts (accepted or refused) and backends closed per second; backends at each second's end",
            ),
        };
        let title = format!("{what} · scenario {} · seed {}", self.scenario, self.seed);
        let body = header(root, &title, unit_note)?;
        let lines = self.lines();
        // Legend.
        let mut x = 24;
        for l in &lines {
            body.draw(&PathElement::new(
                vec![(x, 12), (x + 24, 12)],
                l.color.stroke_width(l.width),
            ))?;
            body.draw(&Text::new(l.label, (x + 30, 5), text(13)))?;
            x += 60 + 8 * l.label.len() as i32;
        }
        let body = body.split_vertically(32).1;
        let subjects = &self.series.subjects;
        if subjects.is_empty() {
            body.draw(&Text::new("no per-second series", (24, 20), text(16)))?;
            return Ok(());
        }
        let seconds = self.series.seconds().max(1) as f64;
        let (div, unit) = time_unit(seconds);
        let x_end = seconds / div;
        // One y scale for every panel, so panels compare at a glance.
        let y_max = nice_ceiling(
            subjects
                .iter()
                .flat_map(|s| {
                    lines
                        .iter()
                        .flat_map(|l| s.column(l.column).iter().copied())
                })
                .fold(0.0, f64::max),
            1.0,
        );
        let n = subjects.len();
        let (_, h) = body.dim_in_pixel();
        let each = (h - 40) / n as u32;
        let mut rest = body;
        for (i, s) in subjects.iter().enumerate() {
            let last = i + 1 == n;
            let (this, next) = rest.split_vertically(if last { each + 40 } else { each });
            let fmt = |v: &f64| axis_number(*v);
            let mut chart = ChartBuilder::on(&this)
                .caption(&s.name, colored(15, MUTED))
                .margin_left(8)
                .margin_right(24)
                .margin_top(4)
                .x_label_area_size(if last { 44 } else { 6 })
                .y_label_area_size(64)
                .build_cartesian_2d(0.0..x_end, 0.0..y_max)?;
            let mut mesh = chart.configure_mesh();
            mesh.disable_x_mesh()
                .light_line_style(WHITE)
                .bold_line_style(GRID)
                .y_labels(4)
                .y_label_formatter(&fmt)
                .x_label_formatter(&fmt)
                .y_desc(match self.kind {
                    Panels::Services => "connections / requests",
                    Panels::Servers => "per second / backends",
                })
                .axis_desc_style(text(13))
                .label_style(text(12))
                .axis_style(MUTED);
            let x_desc = format!("time ({unit})");
            if last {
                mesh.x_desc(x_desc.as_str());
            } else {
                mesh.x_labels(0);
            }
            mesh.draw()?;
            for l in &lines {
                let v = s.column(l.column);
                // Second k's value is drawn over [k, k+1).
                let points = v
                    .iter()
                    .enumerate()
                    .flat_map(|(k, &y)| [(k as f64 / div, y), ((k + 1) as f64 / div, y)]);
                chart.draw_series(LineSeries::new(points, l.color.stroke_width(l.width)))?;
            }
            rest = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVERS: &str = "second,server,connects,accepted,refused,closes,backends\n0,primary,5,5,0,0,5\n1,primary,7,6,1,2,9\n0,replica-1,3,3,0,0,3\n";

    #[test]
    fn reads_subjects_in_file_order_with_their_columns() {
        let s = FleetSeries::from_reader(SERVERS.as_bytes(), "servers.csv").unwrap();
        let names: Vec<&str> = s.subjects.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["primary", "replica-1"]);
        assert_eq!(s.subjects[0].column("backends"), [5.0, 9.0]);
        assert_eq!(s.subjects[1].column("connects"), [3.0]);
        assert_eq!(s.seconds(), 2);
        let e = FleetSeries::from_reader("t_s,x\n".as_bytes(), "x.csv").unwrap_err();
        assert!(e.to_string().starts_with("x.csv: expected a header"), "{e}");
        let e = FleetSeries::from_reader(
            "second,server,connects\n0,p,lots\n".as_bytes(),
            "servers.csv",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "servers.csv: line 2: `connects` is not a number"
        );
    }

    #[test]
    fn one_panel_per_subject_and_the_same_bytes_every_time() {
        let s = FleetSeries::from_reader(SERVERS.as_bytes(), "servers.csv").unwrap();
        let chart = FleetPanels::new(&s, Panels::Servers, "demo", 1);
        assert_eq!(chart.name(), "servers");
        assert_eq!(chart.size(), (1200, 100 + 2 * PANEL_H + 40));
        let a = super::super::svg(&chart).unwrap();
        assert_eq!(a, super::super::svg(&chart).unwrap());
        for label in [
            "primary",
            "replica-1",
            "connects/s",
            "time (s)",
            "scenario demo",
        ] {
            assert!(a.contains(label), "no `{label}` in the SVG");
        }
        let png = super::super::png(&chart).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
