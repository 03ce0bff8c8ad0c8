//! `pooltune sim run`: one workload against several policies, or a
//! scenario file's topology (`--scenario`).

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use pooltune::config::scenario::ScenarioSpec;
use pooltune::config::Override;
use pooltune::error::{ConfigError, Error, Origin};
use pooltune::report::{
    self,
    html::{self, Input, ReportError, RunInput},
    plot::TimeSeries,
    timeseries::{CsvSink, WithProgress},
};
use pooltune::scenario::{self, LoadedPolicy};
use pooltune::time::SimTime;

use super::{exit_code, lib, wall_clock};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// An aligned comparison table.
    Table,
    /// summary.json on standard output.
    Json,
    /// The comparison table in Markdown.
    Md,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A policy file or shipped name (repeatable); `all` runs every shipped
    /// policy (`pooltune sim list` shows them).
    #[arg(long = "policy", value_name = "FILE|NAME|all")]
    policies: Vec<String>,
    /// A workload file, a recorded trace, or a shipped name (`pooltune sim
    /// list` shows them). Repeated with recorded traces: they are replayed
    /// merged by arrival, each from its own start.
    #[arg(long, value_name = "FILE|NAME", default_value = scenario::DEFAULT_TRACE)]
    trace: Vec<String>,
    /// A scenario file (a topology: services, PgBouncer, primary and
    /// replicas, fleet events, assertions; see `scenarios/`), instead of
    /// `--policy`/`--trace`. Exits 1 when an assertion fails (the outputs
    /// are still written).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["policies", "trace"])]
    scenario: Option<PathBuf>,
    /// The master seed; every random stream derives from it.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory (default: reports/<scenario>-<seed>).
    #[arg(short = 'o', long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override a policy or workload key for this run, e.g.
    /// `--set resize.scale_up=0.7` or `--set arrivals.rate_per_s=500`
    /// (repeatable; prefix `policy.` or `trace.` to be explicit).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Do not write the output directory.
    #[arg(long)]
    no_write: bool,
    /// Write only summary.json, timeseries.csv and summary.md: no HTML
    /// report (report.html, report.md) and no plots/.
    #[arg(long)]
    no_report: bool,
}

/// `pooltune sim list`: shipped policies and workloads, name and description.
pub fn list() -> Result<()> {
    let mut out = String::from("policies (--policy NAME, or --policy all):\n");
    for (name, _) in pooltune::config::policy::SHIPPED {
        let p = lib(scenario::load_policy(name, &[]))?;
        out.push_str(&format!("  {name:<22} {}\n", p.spec.description));
    }
    out.push_str("\nworkloads (--trace NAME):\n");
    for (name, _) in pooltune::config::workload::SHIPPED {
        let w = lib(scenario::load_workload(name, &[]))?;
        out.push_str(&format!("  {name:<22} {}\n", w.spec.description));
    }
    print!("{out}");
    Ok(())
}

/// Runs `sim run` and returns its exit code: 0, or
/// [`exit_code::ASSERTION_FAILED`] for a scenario with a failed assertion.
pub fn run_with_code(args: RunArgs) -> Result<u8> {
    if let Some(path) = args.scenario.clone() {
        return run_topology(args, &path);
    }
    run_policies(args).map(|()| exit_code::OK)
}

fn run_policies(args: RunArgs) -> Result<()> {
    let overrides = lib(args
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<std::result::Result<Vec<_>, _>>())?;
    let split = lib(scenario::split_overrides(&overrides))?;
    let workload = match args.trace.as_slice() {
        [one] => lib(scenario::load_workload(one, &split.workload))?,
        several => {
            let (spec, source) = lib(pooltune::config::workload::load_merged_traces(
                several,
                &split.workload,
            ))?;
            scenario::LoadedWorkload { spec, source }
        }
    };
    let names: Vec<String> = if args.policies.is_empty() {
        scenario::DEFAULT_POLICIES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.policies
            .iter()
            .flat_map(|p| {
                if p == "all" {
                    pooltune::config::policy::SHIPPED
                        .iter()
                        .map(|(n, _)| n.to_string())
                        .collect()
                } else {
                    vec![p.clone()]
                }
            })
            .collect()
    };
    let policies: Vec<LoadedPolicy> = lib(names
        .iter()
        .map(|n| scenario::load_policy(n, &split.policy))
        .collect::<std::result::Result<Vec<_>, _>>())?;
    let mut seen = std::collections::BTreeMap::new();
    for p in &policies {
        if let Some(first) = seen.insert(p.spec.name.clone(), p.source.clone()) {
            anyhow::bail!(Error::Config(ConfigError::Invalid {
                origin: Origin::WholeFile {
                    file: p.source.clone(),
                },
                key: "name".to_string(),
                message: format!(
                    "`{}` is also the name of the policy from {first}; the policies compared must have different names",
                    p.spec.name
                ),
            }));
        }
    }
    let out_dir = args.out.clone().unwrap_or_else(|| {
        Path::new("reports").join(format!("{}-{}", workload.spec.name, args.seed))
    });
    eprintln!(
        "pooltune sim run: trace {} ({}), seed {}, {} {}",
        workload.spec.name,
        workload.source,
        args.seed,
        policies.len(),
        if policies.len() == 1 {
            "policy"
        } else {
            "policies"
        }
    );

    let started = wall_clock();
    let bars = progress_bars(&workload, &policies);
    let summary = if args.no_write {
        let mut sinks: Vec<_> = bars
            .iter()
            .map(|bar| with_bar(pooltune::core::metrics::NullSink, bar))
            .collect();
        lib(scenario::run_scenario(
            &workload, &policies, args.seed, &mut sinks,
        ))?
    } else {
        fs::create_dir_all(&out_dir).map_err(|source| Error::Write {
            path: out_dir.clone(),
            source,
        })?;
        // Each run streams its rows to its own part file; parts are joined
        // in policy order so the CSV does not depend on thread timing.
        let parts: Vec<PathBuf> = (0..policies.len())
            .map(|i| out_dir.join(format!(".timeseries.{i}.part")))
            .collect();
        let mut sinks = Vec::new();
        for (i, (p, path)) in policies.iter().zip(&parts).enumerate() {
            let file = fs::File::create(path).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            let csv = CsvSink::new(&p.spec.name, BufWriter::new(file), i == 0);
            sinks.push(with_bar(csv, &bars[i]));
        }
        let summary = lib(scenario::run_scenario(
            &workload, &policies, args.seed, &mut sinks,
        ))?;
        for (sink, path) in sinks.into_iter().zip(&parts) {
            sink.inner.finish().map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        }
        write_outputs(&out_dir, &summary, &parts)?;
        if !args.no_report {
            write_report(&out_dir, &summary)?;
        }
        summary
    };
    for bar in &bars {
        bar.finish_and_clear();
    }
    let elapsed = wall_clock().duration_since(started).as_secs_f64();
    let events: u64 = summary.runs.iter().map(|r| r.events).sum();
    eprintln!(
        "simulated {} events in {:.2} s wall ({:.1} M events/s){}",
        events,
        elapsed,
        events as f64 / elapsed.max(1e-9) / 1e6,
        if args.no_write {
            String::new()
        } else {
            format!("; wrote {}", out_dir.display())
        }
    );
    match args.format {
        Format::Table => print!("{}", report::table(&summary)),
        Format::Json => print!("{}", report::json(&summary)),
        Format::Md => print!("{}", report::markdown(&summary)),
    }
    Ok(())
}

/// One progress bar per policy, in simulated seconds; drawn on stderr only
/// when it is a terminal (indicatif hides it otherwise).
fn progress_bars(
    workload: &scenario::LoadedWorkload,
    policies: &[LoadedPolicy],
) -> Vec<ProgressBar> {
    let w = &workload.spec.synthetic;
    let expected_end_s = match (w.duration, w.max_requests) {
        (Some(d), Some(n)) => d.as_secs_f64().min(n as f64 / w.rate_per_s),
        (Some(d), None) => d.as_secs_f64(),
        (None, Some(n)) => n as f64 / w.rate_per_s,
        (None, None) => 0.0,
    };
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{prefix:>20} {bar:30} {pos}/{len} simulated s, eta {eta}")
            .expect("constant template is valid");
    policies
        .iter()
        .map(|p| {
            let bar = multi.add(ProgressBar::new(expected_end_s.ceil() as u64));
            bar.set_style(style.clone());
            bar.set_prefix(p.spec.name.clone());
            bar
        })
        .collect()
}

fn with_bar<S>(inner: S, bar: &ProgressBar) -> WithProgress<S, impl FnMut(SimTime) + Send> {
    let bar = bar.clone();
    WithProgress {
        inner,
        on_progress: move |now: SimTime| bar.set_position(now.as_secs_f64() as u64),
    }
}

/// report.html, report.md and plots/ from what was just written.
fn write_report(dir: &Path, summary: &pooltune::summary::Summary) -> Result<()> {
    let csv = dir.join("timeseries.csv");
    let series = if csv.is_file() {
        Some(TimeSeries::read(&csv).map_err(ReportError::from)?)
    } else {
        None
    };
    let input = Input::Run(RunInput {
        label: dir.display().to_string(),
        summary: summary.clone(),
        series,
    });
    let report = html::build(&[input], &html::Options::default())?;
    html::write(dir, &report)?;
    Ok(())
}

fn write_outputs(
    dir: &Path,
    summary: &pooltune::summary::Summary,
    parts: &[PathBuf],
) -> Result<()> {
    let write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        fs::write(&path, text)
            .map_err(|source| Error::Write { path, source })
            .map_err(anyhow::Error::new)
    };
    // summary.json first: everything else derives from it.
    write("summary.json", &report::json(summary))?;
    let mut csv = Vec::new();
    for part in parts {
        csv.extend(fs::read(part).with_context(|| format!("reading {}", part.display()))?);
        fs::remove_file(part).with_context(|| format!("removing {}", part.display()))?;
    }
    fs::write(dir.join("timeseries.csv"), csv).map_err(|source| Error::Write {
        path: dir.join("timeseries.csv"),
        source,
    })?;
    write("summary.md", &report::markdown(summary))?;
    Ok(())
}

/// `sim run --scenario FILE`: one topology run; its outputs beside the
/// usual ones (servers.csv, services.csv); exit 1 when an assertion fails.
fn run_topology(args: RunArgs, path: &Path) -> Result<u8> {
    let overrides = lib(args
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<std::result::Result<Vec<_>, _>>())?;
    let spec = lib(ScenarioSpec::load(path, &overrides))?;
    let source = path.display().to_string();
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("reports").join(format!("{}-{}", spec.name, args.seed)));
    eprintln!(
        "pooltune sim run: scenario {} ({source}), seed {}, {} services, {} servers{}",
        spec.name,
        args.seed,
        spec.topology.services.len(),
        spec.topology.servers.len(),
        if spec.topology.bouncer.is_some() {
            ", PgBouncer"
        } else {
            ""
        }
    );
    let started = wall_clock();
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{prefix:>20} {bar:30} {pos}/{len} simulated s, eta {eta}")
            .expect("constant template is valid");
    let expected_end_s = spec.run.horizon.map_or(0.0, |h| h.as_secs_f64());
    let bar = multi.add(ProgressBar::new(expected_end_s.ceil() as u64));
    bar.set_style(style);
    bar.set_prefix(spec.name.clone());
    let run = if args.no_write {
        let mut sink = with_bar(pooltune::core::metrics::NullSink, &bar);
        lib(scenario::run_topology(&spec, &source, args.seed, &mut sink))?
    } else {
        fs::create_dir_all(&out_dir).map_err(|source| Error::Write {
            path: out_dir.clone(),
            source,
        })?;
        let part = out_dir.join(".timeseries.0.part");
        let file = fs::File::create(&part).map_err(|source| Error::Write {
            path: part.clone(),
            source,
        })?;
        let mut sink = with_bar(CsvSink::new(&spec.name, BufWriter::new(file), true), &bar);
        let run = lib(scenario::run_topology(&spec, &source, args.seed, &mut sink))?;
        sink.inner.finish().map_err(|source| Error::Write {
            path: part.clone(),
            source,
        })?;
        write_topology_outputs(&out_dir, &run, &part)?;
        if !args.no_report {
            write_topology_report(&out_dir)?;
        }
        run
    };
    bar.finish_and_clear();
    let elapsed = wall_clock().duration_since(started).as_secs_f64();
    let s = &run.summary;
    let r = &s.summary.runs[0];
    eprintln!(
        "simulated {} events, {} requests in {:.2} s wall ({:.1} M events/s, {:.2} M requests/s){}",
        r.events,
        r.requests.arrived,
        elapsed,
        r.events as f64 / elapsed.max(1e-9) / 1e6,
        r.requests.arrived as f64 / elapsed.max(1e-9) / 1e6,
        if args.no_write {
            String::new()
        } else {
            format!("; wrote {}", out_dir.display())
        }
    );
    match args.format {
        Format::Table => print!("{}", report::topology::table(s)),
        Format::Json => print!("{}", report::topology::json(s)),
        Format::Md => print!("{}", report::topology::markdown_tables(s)),
    }
    Ok(if run.passed() {
        exit_code::OK
    } else {
        exit_code::ASSERTION_FAILED
    })
}

fn write_topology_outputs(dir: &Path, run: &scenario::TopologyRun, part: &Path) -> Result<()> {
    let write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        fs::write(&path, text)
            .map_err(|source| Error::Write { path, source })
            .map_err(anyhow::Error::new)
    };
    let s = &run.summary;
    // summary.json first: everything else derives from it.
    write("summary.json", &report::topology::json(s))?;
    let ts = dir.join("timeseries.csv");
    fs::rename(part, &ts).map_err(|source| Error::Write { path: ts, source })?;
    let t = &s.topology;
    let servers: Vec<String> = t.servers.iter().map(|x| x.name.clone()).collect();
    let services: Vec<String> = t.services.iter().map(|x| x.name.clone()).collect();
    write(
        "servers.csv",
        &report::timeseries::servers_csv(&servers, &run.servers),
    )?;
    write(
        "services.csv",
        &report::timeseries::services_csv(&services, &run.services),
    )?;
    let mut md = report::topology::markdown_tables(s);
    md.push('\n');
    md.push_str(&report::markdown(&s.summary));
    write("summary.md", &md)?;
    Ok(())
}

/// report.html, report.md and plots/ of a scenario run: the run's usual
/// section (the whole fleet as one run), then per-service and per-server
/// panels (`pooltune report DIR` draws the same).
fn write_topology_report(dir: &Path) -> Result<()> {
    html::report_dirs(&[dir.to_path_buf()], dir, &html::Options::default())?;
    Ok(())
}
