//! Command-line glue: parse, call the library, print, map errors to exit codes.

pub mod exit_code;

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use pooltune::config::Override;
use pooltune::error::{ConfigError, Error, SimError};
use pooltune::report::{self, timeseries::CsvSink};
use pooltune::scenario::{self, LoadedPolicy};

#[derive(Parser, Debug)]
#[command(
    name = "pooltune",
    version,
    about = "Decide connection-pool policy with evidence: a deterministic pool simulator",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate workloads against pool policies.
    #[command(subcommand)]
    Sim(SimCommand),
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// Run one workload against one or more policies and compare them.
    ///
    /// With no arguments: the built-in default workload against the seed
    /// policy (both variants) and fixed pools of 10 and 25.
    Run(RunArgs),
}

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
struct RunArgs {
    /// A policy file or shipped name (repeatable). Shipped: seed-80-30,
    /// seed-80-30-low10s, fixed-10, fixed-25.
    #[arg(long = "policy", value_name = "FILE|NAME")]
    policies: Vec<String>,
    /// A workload file or shipped name (default, mmc-c25-a20,
    /// mmc-c10-rho09-timeout, mmc-c10-priorities).
    #[arg(long, value_name = "FILE|NAME", default_value = scenario::DEFAULT_TRACE)]
    trace: String,
    /// The master seed; every random stream derives from it.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory (default: reports/<scenario>-<seed>).
    #[arg(long, value_name = "DIR")]
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
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

fn classify(e: anyhow::Error) -> Failure {
    let code = if let Some(err) = e.downcast_ref::<Error>() {
        match err {
            Error::Config(ConfigError::Read { .. }) => exit_code::IO,
            Error::Config(_) => exit_code::CONFIG,
            Error::Sim(SimError::Invariant { .. }) => exit_code::INTERNAL,
            Error::Sim(_) => exit_code::SIM_LIMIT,
            Error::Write { .. } => exit_code::IO,
        }
    } else if e.downcast_ref::<std::io::Error>().is_some() {
        exit_code::IO
    } else {
        exit_code::INTERNAL
    };
    Failure { code, error: e }
}

/// Parses arguments and runs; returns the exit code.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit_code::USAGE
            } else {
                exit_code::OK
            };
        }
    };
    let result = match cli.command {
        Command::Sim(SimCommand::Run(args)) => sim_run(args),
    };
    match result {
        Ok(()) => exit_code::OK,
        Err(e) => {
            let f = classify(e);
            eprintln!("error: {:#}", f.error);
            f.code
        }
    }
}

fn lib<T, E: Into<Error>>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow::Error::new(e.into()))
}

fn sim_run(args: RunArgs) -> Result<()> {
    let overrides = lib(args
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<std::result::Result<Vec<_>, _>>())?;
    let split = lib(scenario::split_overrides(&overrides))?;
    let workload = lib(scenario::load_workload(&args.trace, &split.workload))?;
    let names: Vec<String> = if args.policies.is_empty() {
        scenario::DEFAULT_POLICIES.iter().map(|s| s.to_string()).collect()
    } else {
        args.policies.clone()
    };
    let policies: Vec<LoadedPolicy> = lib(names
        .iter()
        .map(|n| scenario::load_policy(n, &split.policy))
        .collect::<std::result::Result<Vec<_>, _>>())?;
    let mut seen = std::collections::BTreeSet::new();
    for p in &policies {
        if !seen.insert(p.spec.name.clone()) {
            anyhow::bail!(Error::Config(ConfigError::BadOverride {
                assignment: format!("--policy {}", p.source),
                message: format!("two policies are named `{}`; names must differ to compare them", p.spec.name),
            }));
        }
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("reports").join(format!("{}-{}", workload.spec.name, args.seed)));
    eprintln!(
        "pooltune sim run: trace {} ({}), seed {}, {} {}",
        workload.spec.name,
        workload.source,
        args.seed,
        policies.len(),
        if policies.len() == 1 { "policy" } else { "policies" }
    );

    let started = wall_clock();
    let summary = if args.no_write {
        let mut sinks: Vec<pooltune::core::metrics::NullSink> =
            policies.iter().map(|_| pooltune::core::metrics::NullSink).collect();
        lib(scenario::run_scenario(&workload, &policies, args.seed, &mut sinks))?
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
            sinks.push(CsvSink::new(&p.spec.name, BufWriter::new(file), i == 0));
        }
        let summary = lib(scenario::run_scenario(&workload, &policies, args.seed, &mut sinks))?;
        for (sink, path) in sinks.into_iter().zip(&parts) {
            sink.finish().map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        }
        write_outputs(&out_dir, &summary, &parts)?;
        summary
    };
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

fn write_outputs(dir: &Path, summary: &pooltune::summary::Summary, parts: &[PathBuf]) -> Result<()> {
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

/// The one place the binary reads the wall clock: progress and speed on
/// stderr, never into summary.json.
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> Instant {
    Instant::now()
}
