//! Command-line glue: parse, call the library, print, map errors to exit codes.

mod check;
mod compare;
pub mod exit_code;
mod live;
mod merge;
mod report;
mod sim_run;
mod sweep;
mod trace;
mod tune;

use sim_run::RunArgs;

use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};

use pooltune::error::{ConfigError, Error, SimError};

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
    /// Run a policy as a real pool against a live PostgreSQL.
    #[command(subcommand)]
    Live(live::LiveCommand),
    /// Compare two summary.json files metric by metric (e.g. sim vs live).
    Compare(compare::CompareArgs),
    /// Search a policy's knobs: minimise an objective under constraints;
    /// writes a ready-to-use policy file.
    Tune(tune::TuneArgs),
    /// Combine the shard files of a sweep (or of one tuning stage) into what
    /// one machine would have written.
    Merge(merge::MergeArgs),
    /// Import, summarise, generate and transform request traces.
    #[command(subcommand)]
    Trace(trace::TraceCommand),
    /// Build the HTML report (plots inlined) and Markdown summary of run
    /// or sweep directories.
    Report(report::ReportArgs),
    /// Re-run a check file's scenarios against its baselines: the CI gate
    /// (exit 0 pass, 1 regression, 2 tool error or missing baselines).
    Check(check::CheckArgs),
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// Run one workload against one or more policies and compare them.
    ///
    /// With no arguments: the built-in default workload against the seed
    /// policy (both variants) and fixed pools of 10 and 25.
    Run(RunArgs),
    /// Sweep a grid of policy and workload keys, with replications, 95 %
    /// intervals and paired differences (common random numbers).
    Sweep(sweep::SweepArgs),
    /// List the shipped policies and workloads with their descriptions.
    List,
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
    } else if let Some(err) = e.downcast_ref::<pooltune::live::LiveError>() {
        use pooltune::live::LiveError;
        match err {
            LiveError::Target(_) => exit_code::CONFIG,
            LiveError::Connect { .. } => exit_code::DATABASE,
            LiveError::Limit(_) => exit_code::SIM_LIMIT,
            LiveError::Invariant { .. } | LiveError::Runtime(_) => exit_code::INTERNAL,
        }
    } else if let Some(err) = e.downcast_ref::<pooltune::compare::CompareError>() {
        match err {
            pooltune::compare::CompareError::Read { .. } => exit_code::IO,
            _ => exit_code::CONFIG,
        }
    } else if let Some(err) = e.downcast_ref::<pooltune::experiments::ExperimentError>() {
        err.exit_code()
    } else if let Some(err) = e.downcast_ref::<pooltune::trace::TraceError>() {
        if err.is_io() {
            exit_code::IO
        } else {
            exit_code::CONFIG
        }
    } else if let Some(err) = e.downcast_ref::<pooltune::report::html::ReportError>() {
        use pooltune::report::html::ReportError;
        match err {
            ReportError::Read { .. } | ReportError::Write { .. } => exit_code::IO,
            ReportError::Invalid { .. } => exit_code::CONFIG,
            ReportError::Plot(_) => exit_code::INTERNAL,
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
        Command::Sim(SimCommand::Run(args)) => sim_run::run_with_code(args),
        Command::Live(cmd) => live::run(cmd),
        Command::Compare(args) => compare::run(args),
        Command::Sim(SimCommand::Sweep(args)) => sweep::run(args).map(|()| exit_code::OK),
        Command::Sim(SimCommand::List) => sim_run::list().map(|()| exit_code::OK),
        Command::Tune(args) => tune::run(args).map(|()| exit_code::OK),
        Command::Merge(args) => merge::run(args).map(|()| exit_code::OK),
        Command::Trace(cmd) => trace::run(cmd).map(|()| exit_code::OK),
        Command::Report(args) => report::run(args).map(|()| exit_code::OK),
        // check maps its own errors: every tool error exits 2.
        Command::Check(args) => Ok(check::main(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let f = classify(e);
            eprintln!("error: {}", message(&f.error));
            f.code
        }
    }
}

/// The error and its causes, each once: library errors already include
/// their cause's text (e.g. the I/O error after the path), so a cause whose
/// text is already there is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

pub(crate) fn lib<T, E: Into<Error>>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow::Error::new(e.into()))
}

/// The one place the binary reads the wall clock: progress and speed on
/// stderr, never into summary.json.
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_clock() -> Instant {
    Instant::now()
}
