//! `pooltune compare A B`: two summaries side by side with relative errors.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use pooltune::compare;
use pooltune::error::Error;

use super::exit_code;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Md,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The reference summary (e.g. the simulation): a summary.json or a
    /// directory holding one.
    a: PathBuf,
    /// The summary compared with it (e.g. the live run).
    b: PathBuf,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also write the comparison as JSON to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub fn run(args: CompareArgs) -> Result<u8> {
    let a = compare::load_summary(&args.a)?;
    let b = compare::load_summary(&args.b)?;
    let c = compare::compare(
        &a,
        &args.a.display().to_string(),
        &b,
        &args.b.display().to_string(),
    )?;
    if let Some(path) = &args.out {
        std::fs::write(path, compare::json(&c)).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
    }
    match args.format {
        Format::Table => print!("{}", compare::table(&c)),
        Format::Json => print!("{}", compare::json(&c)),
        Format::Md => print!("{}", compare::markdown(&c)),
    }
    Ok(exit_code::OK)
}
