//! Plots and the report: SVG structure and the Markdown summary are
//! snapshot-tested on a committed fixture (`fixtures/default-90s-seed1`: a
//! 90 s run of seed-80-30 and fixed-10, seed 1), so they change only when
//! the drawing changes, not when the simulator does. PNGs are checked for
//! size, content and determinism; the HTML page is opened in headless
//! Chromium, which must report no error and no network request (skipped
//! loudly without /usr/bin/chromium, unless POOLTUNE_REQUIRE_CHROMIUM=1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use tempfile::TempDir;

use pooltune::config::Override;
use pooltune::core::metrics::Sample;
use pooltune::report::html::{self, Input, RunInput};
use pooltune::report::plot::{
    self,
    sweep::{Better, Ci95, Estimate, Variant, SWEEP_SCHEMA},
    Chart, Comparison, Overlay, Palette, ParetoFront, Priorities, SweepData, SweepHeatmap,
    TimeSeries, Timeline, WaitCdf,
};
use pooltune::scenario::{self, LoadedPolicy};
use pooltune::summary::Summary;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fixtures/default-90s-seed1")
}

fn fixture() -> (Summary, TimeSeries) {
    let dir = fixture_dir();
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let summary = html::parse_summary(&text, &dir.join("summary.json")).unwrap();
    let series = TimeSeries::read(&dir.join("timeseries.csv")).unwrap();
    (summary, series)
}

fn palette(s: &Summary) -> Palette {
    let names: Vec<&str> = s.runs.iter().map(|r| r.policy.name.as_str()).collect();
    Palette::new(&names)
}

/// The structure of an SVG: its size, how many of each element, and every
/// text in drawing order (titles, axis labels with units, captions, values).
fn outline(svg: &str) -> String {
    let first = svg.lines().next().unwrap_or_default();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut texts = Vec::new();
    let mut lines = svg.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix('<') {
            let tag: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if !tag.is_empty() {
                *counts.entry(tag.clone()).or_default() += 1;
            }
            if tag == "text" {
                let content = lines.next().unwrap_or_default().trim().to_string();
                texts.push(content);
            }
        }
    }
    let mut out = format!("{first}\n");
    for (tag, n) in counts {
        out.push_str(&format!("<{tag}> x {n}\n"));
    }
    out.push_str("texts:\n");
    for t in texts {
        out.push_str(&format!("  {t}\n"));
    }
    out
}

fn png_info(bytes: &[u8]) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let pixels = &buf[..info.buffer_size()];
    let non_white = pixels.chunks(3).filter(|p| p != &[255, 255, 255]).count();
    (info.width, info.height, non_white)
}

/// Renders both ways; checks the PNG has the chart's size, is not blank, and
/// is byte-identical when drawn again. Returns the SVG.
fn render<C: Chart>(chart: &C) -> String {
    let svg = plot::svg(chart).unwrap();
    assert!(svg.starts_with("<svg "), "{}", &svg[..80.min(svg.len())]);
    assert_eq!(svg, plot::svg(chart).unwrap(), "SVG is deterministic");
    let png = plot::png(chart).unwrap();
    let (w, h, ink) = png_info(&png);
    assert_eq!((w, h), chart.size());
    assert!(
        ink > (w * h) as usize / 100,
        "{}: only {ink} non-white pixels",
        chart.name()
    );
    assert_eq!(png, plot::png(chart).unwrap(), "PNG is deterministic");
    svg
}

#[test]
fn comparison_outline() {
    let (s, ts) = fixture();
    let p = palette(&s);
    let svg = render(&Comparison::new(&s, Some(&ts), &p));
    insta::assert_snapshot!("comparison_outline", outline(&svg));
}

#[test]
fn timeline_outline() {
    let (s, ts) = fixture();
    let p = palette(&s);
    let svg = render(&Timeline::new(&ts, Some(&s), &p));
    assert!(svg.contains("time (s)") && svg.contains("arrivals (req/s)"));
    insta::assert_snapshot!("timeline_outline", outline(&svg));
}

#[test]
fn wait_cdf_outline() {
    let (s, _) = fixture();
    let p = palette(&s);
    let svg = render(&WaitCdf::new(&s, &p));
    insta::assert_snapshot!("wait_cdf_outline", outline(&svg));
}

#[test]
fn priorities_svg() {
    let (s, _) = fixture();
    let p = palette(&s);
    let svg = render(&Priorities::new(&s, &p));
    // The one chart pinned byte for byte; the others by their outline.
    insta::assert_snapshot!("priorities_svg", svg);
}

#[test]
fn every_policy_keeps_its_colour_across_charts() {
    let (s, ts) = fixture();
    let p = palette(&s);
    let seed = p.hex("seed-80-30").to_uppercase();
    let fixed = p.hex("fixed-10").to_uppercase();
    assert_ne!(seed, fixed);
    for svg in [
        plot::svg(&Comparison::new(&s, Some(&ts), &p)).unwrap(),
        plot::svg(&Timeline::new(&ts, Some(&s), &p)).unwrap(),
        plot::svg(&WaitCdf::new(&s, &p)).unwrap(),
        plot::svg(&Priorities::new(&s, &p)).unwrap(),
    ] {
        assert!(svg.contains(&seed) && svg.contains(&fixed));
    }
}

/// A 4 x 3 grid of a threshold policy's knobs, with the contract's shape.
fn sweep() -> SweepData {
    let ups = [0.6, 0.7, 0.8, 0.9];
    let steps = [1, 2, 4];
    let mut variants = Vec::new();
    for (i, up) in ups.iter().enumerate() {
        for (j, step) in steps.iter().enumerate() {
            let cost = 2000.0 + 900.0 * (3 - i) as f64 + 300.0 * j as f64;
            let p99 = 40.0 + 900.0 * (i as f64).powi(2) / (1.0 + j as f64);
            let est = |mean: f64, rel: f64| Estimate {
                mean,
                ci95: Some(Ci95::HalfWidth(mean * rel)),
                n: 5,
            };
            variants.push(Variant {
                index: (i * steps.len() + j) as u64,
                policy: "seed-80-30".to_string(),
                trace: "default".to_string(),
                params: BTreeMap::from([
                    ("resize.scale_up".to_string(), serde_json::json!(up)),
                    ("resize.step".to_string(), serde_json::json!(step)),
                ]),
                metrics: BTreeMap::from([
                    ("pool.connection_seconds".to_string(), est(cost, 0.02)),
                    ("acquire_wait_ms.p99".to_string(), est(p99, 0.1)),
                ]),
            });
        }
    }
    SweepData {
        schema: SWEEP_SCHEMA.to_string(),
        seed: 42,
        replications: 5,
        grid: BTreeMap::from([
            (
                "resize.scale_up".to_string(),
                ups.iter().map(|v| serde_json::json!(v)).collect(),
            ),
            (
                "resize.step".to_string(),
                steps.iter().map(|v| serde_json::json!(v)).collect(),
            ),
        ]),
        variants,
    }
}

#[test]
fn sweep_heatmap_and_pareto_outline() {
    // Through the JSON contract, as `sweep` will write it.
    let json = serde_json::to_string_pretty(&sweep()).unwrap();
    let data = SweepData::from_json(&json, "sweep.json").unwrap();
    let heat = render(&SweepHeatmap::new(
        &data,
        "resize.scale_up",
        "resize.step",
        "acquire_wait_ms.p99",
        Better::Lower,
    ));
    insta::assert_snapshot!("sweep_heatmap_outline", outline(&heat));
    let front = ParetoFront::new(&data);
    let optimal: Vec<u64> = front
        .points()
        .iter()
        .filter(|p| p.optimal)
        .map(|p| p.index)
        .collect();
    assert_eq!(optimal, [9, 10, 11, 7, 8, 3, 4, 5, 0]);
    let pareto = render(&front);
    insta::assert_snapshot!("pareto_outline", outline(&pareto));
}

fn short_run(seed: u64) -> (Summary, TimeSeries) {
    let sets = [Override::parse("duration=30s").unwrap()];
    let split = scenario::split_overrides(&sets).unwrap();
    let workload = scenario::load_workload("default", &split.workload).unwrap();
    let policies: Vec<LoadedPolicy> = ["seed-80-30", "fixed-10"]
        .iter()
        .map(|p| scenario::load_policy(p, &split.policy).unwrap())
        .collect();
    let mut sinks: Vec<Vec<Sample>> = vec![Vec::new(), Vec::new()];
    let summary = scenario::run_scenario(&workload, &policies, seed, &mut sinks).unwrap();
    let ts = TimeSeries::from_samples(&[
        ("seed-80-30", sinks[0].as_slice()),
        ("fixed-10", sinks[1].as_slice()),
    ]);
    (summary, ts)
}

#[test]
fn overlay_of_two_runs_of_the_same_scenario() {
    // Live runs do not exist yet: two simulated runs stand in for sim and
    // live. The same seed overlays exactly; another seed differs a little.
    let (s, a) = short_run(1);
    let (_, same) = short_run(1);
    let (_, other) = short_run(2);
    let p = palette(&s);
    assert_eq!(a, same);
    for (name, pa) in a.policies.iter().map(|p| (&p.policy, p)) {
        // 30 s of arrivals, then the queue drains: at least 30 windows.
        let d = plot::overlay::differences(pa, same.get(name).unwrap());
        assert!(d.windows >= 30 && d.windows == pa.rows.len(), "{d:?}");
        assert_eq!((d.size, d.active, d.waiting), (0.0, 0.0, 0.0));
        let d = plot::overlay::differences(pa, other.get(name).unwrap());
        assert!(d.windows >= 30, "{d:?}");
        assert!(d.active > 0.0, "{name}: {d:?}");
    }
    let svg = render(&Overlay::new(&a, "sim seed 1", &other, "sim seed 2", &p));
    let o = outline(&svg);
    assert!(
        o.contains("sim seed 1 (solid) vs sim seed 2 (dashed)"),
        "{o}"
    );
    for name in [
        "seed-80-30 · mean |Δ| per window",
        "fixed-10 · mean |Δ| per window",
    ] {
        assert!(o.contains(name), "{o}");
    }
}

fn fixture_report(png: bool) -> html::Report {
    let (summary, series) = fixture();
    let input = Input::Run(RunInput {
        label: "tests/integration/fixtures/default-90s-seed1".to_string(),
        summary,
        series: Some(series),
    });
    html::build(&[input], &html::Options { png }).unwrap()
}

#[test]
fn report_markdown() {
    insta::assert_snapshot!("report_markdown", fixture_report(false).markdown);
}

/// Every way a page could load something: none may appear.
fn assert_self_contained(page: &str) {
    for needle in [
        "http://", "https://", "<script", "<link", "<img", "<iframe", "src=", "href=", "url(",
        "@import",
    ] {
        assert!(!page.contains(needle), "the page contains `{needle}`");
    }
    assert!(page.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    ));
}

#[test]
fn report_html_is_self_contained() {
    let r = fixture_report(true);
    assert_self_contained(&r.html);
    assert_eq!(r.html.matches("<svg ").count(), 4, "four inline plots");
    assert_eq!(r.html.matches("<figure").count(), 4);
    assert!(
        r.html.contains("<strong>Pick: fixed-10</strong>"),
        "the reading is there"
    );
    let files: Vec<&str> = r.plots.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(files, ["comparison", "timeline", "wait_cdf", "priorities"]);
    assert!(r.plots.iter().all(|p| p.png.is_some()));
}

fn pooltune(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::cargo_bin("pooltune")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut f: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    f.sort();
    f
}

#[test]
fn sim_run_writes_the_report_by_default() {
    let dir = TempDir::new().unwrap();
    let out = pooltune(
        dir.path(),
        &["sim", "run", "--set", "duration=30s", "--out", "r"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = dir.path().join("r");
    assert_eq!(
        files_in(&r),
        [
            "plots",
            "report.html",
            "report.md",
            "summary.json",
            "summary.md",
            "timeseries.csv"
        ]
    );
    assert_eq!(
        files_in(&r.join("plots")),
        [
            "comparison.png",
            "comparison.svg",
            "priorities.png",
            "priorities.svg",
            "timeline.png",
            "timeline.svg",
            "wait_cdf.png",
            "wait_cdf.svg"
        ]
    );
    let page = std::fs::read_to_string(r.join("report.html")).unwrap();
    assert_self_contained(&page);
    let md = std::fs::read_to_string(r.join("report.md")).unwrap();
    assert!(md.starts_with("## pooltune report: trace default · seed 42 · 4 policies"));

    let out = pooltune(
        dir.path(),
        &[
            "sim",
            "run",
            "--set",
            "duration=30s",
            "--out",
            "plain",
            "--no-report",
        ],
    );
    assert!(out.status.success());
    assert_eq!(
        files_in(&dir.path().join("plain")),
        ["summary.json", "summary.md", "timeseries.csv"]
    );
}

#[test]
fn report_command_reads_run_and_sweep_directories() {
    let dir = TempDir::new().unwrap();
    let sweep_dir = dir.path().join("sweep");
    std::fs::create_dir_all(&sweep_dir).unwrap();
    std::fs::write(
        sweep_dir.join("sweep.json"),
        serde_json::to_string_pretty(&sweep()).unwrap(),
    )
    .unwrap();
    let fixture = fixture_dir();
    let out = pooltune(
        dir.path(),
        &[
            "report",
            fixture.to_str().unwrap(),
            "sweep",
            "--out",
            "both",
            "--no-png",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(
        md.starts_with("## pooltune report\n\n| trace · seed | policy |"),
        "{md}"
    );
    assert!(md.contains("| default · 1 | fixed-10 (pick) |"), "{md}");
    assert!(md.contains("## pooltune report: sweep · 12 variants · 5 replications · seed 42"));
    let both = dir.path().join("both");
    assert_eq!(files_in(&both), ["plots", "report.html", "report.md"]);
    assert_eq!(
        files_in(&both.join("plots")),
        [
            "default-1-comparison.svg",
            "default-1-priorities.svg",
            "default-1-timeline.svg",
            "default-1-wait_cdf.svg",
            "sweep-42-pareto.svg",
            "sweep-42-sweep_heatmap.svg"
        ]
    );
    assert_self_contained(&std::fs::read_to_string(both.join("report.html")).unwrap());

    // A directory without summary.json or sweep.json: invalid input (exit 3).
    let out = pooltune(dir.path(), &["report", "both"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error: both: holds neither summary.json")
    );
    // A directory that does not exist: exit 4.
    let out = pooltune(dir.path(), &["report", "absent"]);
    assert_eq!(out.status.code(), Some(4));
}

/// Debian's chromium, when installed.
fn chromium() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/chromium");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("POOLTUNE_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        panic!("POOLTUNE_REQUIRE_CHROMIUM=1 but /usr/bin/chromium is missing (apt-get install chromium)");
    }
    eprintln!(
        "SKIPPED: the headless-Chromium check of the HTML report: /usr/bin/chromium not found \
         (apt-get install chromium; set POOLTUNE_REQUIRE_CHROMIUM=1 to make this a failure)"
    );
    None
}

/// Loads `page` in headless Chromium with no network at all (every host
/// name resolves to nothing) and returns the DOM after load and the log.
fn load_in_chromium(bin: &Path, page: &Path, profile: &Path) -> (String, String) {
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .timeout(Duration::from_secs(90))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Test-only instrumentation (never in the report itself): records every
/// error, CSP violation and fetched resource, and what rendered.
const HARNESS: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || e.type)), true);
window.addEventListener('securitypolicyviolation', e => window.__errors.push('csp: ' + e.blockedURI + ' ' + e.violatedDirective));
window.addEventListener('load', () => {
  const svgs = Array.from(document.querySelectorAll('figure svg'));
  const result = {
    errors: window.__errors,
    resources: performance.getEntriesByType('resource').map(r => r.name),
    svgs: svgs.length,
    drawn: svgs.filter(s => { const b = s.getBoundingClientRect(); return b.width > 100 && b.height > 100 && s.querySelectorAll('text').length > 5; }).length,
    title: document.title,
  };
  const pre = document.createElement('pre');
  pre.id = 'harness';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"#;

#[test]
fn the_html_report_opens_in_headless_chromium_without_errors_or_network() {
    let Some(bin) = chromium() else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let report = fixture_report(false);
    let page = dir.path().join("report.html");
    std::fs::write(&page, &report.html).unwrap();

    // The page as shipped: it renders, and the browser logs no complaint.
    let (dom, log) = load_in_chromium(&bin, &page, &dir.path().join("profile-a"));
    assert!(
        dom.contains("<h1>pooltune report: trace default · seed 1</h1>"),
        "{dom}"
    );
    assert_eq!(dom.matches("<svg ").count(), 4);
    for bad in [
        "Uncaught",
        "Refused to",
        "Failed to load",
        "net::ERR",
        "CONSOLE",
    ] {
        assert!(!log.contains(bad), "chromium logged `{bad}`:\n{log}");
    }

    // The same page with the test harness: only script execution is added to
    // its Content-Security-Policy, everything else stays forbidden.
    let csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";
    assert!(report.html.contains(csp));
    let instrumented = report
        .html
        .replacen(csp, &format!("{csp}; script-src 'unsafe-inline'"), 1)
        .replacen("<head>\n", &format!("<head>\n{HARNESS}\n"), 1);
    let harness_page = dir.path().join("harness.html");
    std::fs::write(&harness_page, instrumented).unwrap();
    let (dom, log) = load_in_chromium(&bin, &harness_page, &dir.path().join("profile-b"));
    let json = dom
        .split("<pre id=\"harness\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or_else(|| panic!("the harness did not run:\n{dom}\n{log}"))
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    let result: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    assert_eq!(
        result["resources"],
        serde_json::json!([]),
        "network requests: {result}"
    );
    assert_eq!(result["svgs"], 4, "{result}");
    assert_eq!(
        result["drawn"], 4,
        "every plot renders with its text: {result}"
    );
    assert_eq!(result["title"], "pooltune report: trace default · seed 1");
}
