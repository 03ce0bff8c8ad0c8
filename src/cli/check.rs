//! `pooltune check FILE`: re-run the scenarios of a check file, compare them
//! with the committed baselines, and exit 0 (pass), 1 (a metric regressed)
//! or 2 (the tool could not decide: bad check file, missing baselines, a
//! failed run, unreadable or unwritable files).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use pooltune::check::{self, output, CheckError, CheckFile, Status};

use super::exit_code;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// An aligned table with notes and the outcome.
    Text,
    /// A Markdown table headed by the outcome.
    Md,
    /// JSON, schema pooltune.check/1.
    Json,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The check file (TOML): scenarios, metrics, baselines directory.
    /// The project's own: checks/shipped.toml.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Rewrite the baselines from this run (after a deliberate change);
    /// prints the comparison with the old baselines first, exits 0.
    #[arg(long)]
    update: bool,
    /// Pass (exit 0) when baselines are missing instead of exiting 2.
    #[arg(long)]
    allow_missing: bool,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write the Markdown table to this file (e.g. a CI job summary).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

/// Runs the check and returns its exit code; every error is a tool error
/// (exit 2), printed once.
pub fn main(args: CheckArgs) -> u8 {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", super::message(&e));
            exit_code::CHECK_ERROR
        }
    }
}

fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let file = CheckFile::load(&args.file).map_err(CheckError::from)?;
    let tasks: usize = file.cases.iter().map(|c| c.seeds.len()).sum();
    eprintln!(
        "pooltune check: {} scenarios, {} runs, {} metrics; baselines {}",
        file.cases.len(),
        tasks,
        file.metrics.len(),
        file.baselines.display()
    );
    let runs = check::run_cases(&file)?;
    let report = check::compare(&file, &runs)?;
    match args.format {
        Format::Text => print!("{}", output::text(&report, args.allow_missing)),
        Format::Md => print!("{}", output::markdown(&report, args.allow_missing)),
        Format::Json => print!("{}", output::json(&report)),
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, output::markdown(&report, args.allow_missing)).map_err(|source| {
            CheckError::Write {
                path: path.clone(),
                source,
            }
        })?;
    }
    if args.update {
        let written = check::update_baselines(&file, &runs)?;
        eprintln!(
            "updated {} baseline files under {}",
            written.len(),
            file.baselines.display()
        );
        return Ok(exit_code::OK);
    }
    Ok(match report.status {
        Status::Pass => exit_code::OK,
        Status::Regression => exit_code::REGRESSION,
        Status::Missing if args.allow_missing => exit_code::OK,
        Status::Missing => exit_code::CHECK_ERROR,
    })
}
