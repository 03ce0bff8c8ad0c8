//! Command-line glue: parse, call the library, print, map errors to exit codes.

pub mod exit_code;
mod sim_run;

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
}

#[derive(Subcommand, Debug)]
enum SimCommand {
    /// Run one workload against one or more policies and compare them.
    ///
    /// With no arguments: the built-in default workload against the seed
    /// policy (both variants) and fixed pools of 10 and 25.
    Run(RunArgs),
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
        Command::Sim(SimCommand::Run(args)) => sim_run::run(args),
    };
    match result {
        Ok(()) => exit_code::OK,
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
