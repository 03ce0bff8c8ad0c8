//! `pooltune merge`: combine the shard files of a sweep, or of one stage of
//! a tuning run, into exactly what one machine would have written.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use pooltune::experiments::merge::{self, Merged};
use pooltune::experiments::tune::TuneMerge;

use super::sweep::{self, lib};
use super::tune;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard files, or directories holding them (`*-shard-K-of-N.json`).
    #[arg(required = true, value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// Where the merged outputs go (default: the directory the shards are in).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// What to print on standard output (csv: sweeps only; toml: tuning only).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Md,
    Csv,
    Toml,
}

pub fn run(args: MergeArgs) -> Result<()> {
    match lib(merge::merge(&args.inputs, args.out.as_deref()))? {
        Merged::Sweep(report, dir) => {
            lib(report.write(&dir))?;
            eprintln!(
                "merged {} simulations of {} variants; wrote {}",
                report.output.variants.len() * report.output.replications,
                report.output.variants.len(),
                dir.display()
            );
            let format = match args.format {
                Format::Json => sweep::Format::Json,
                Format::Md => sweep::Format::Md,
                Format::Csv => sweep::Format::Csv,
                Format::Table | Format::Toml => sweep::Format::Table,
            };
            sweep::print_report(&report, format);
        }
        Merged::Tune(TuneMerge::Stage { merged, next }, dir) => {
            eprintln!(
                "merged {merged} into {}\nnext: stage {} ({}), {} simulations: run the shards again (pooltune tune ... --shard K/N --out {}), then pooltune merge {}",
                dir.join(pooltune::experiments::tune::STATE_FILE).display(),
                next.index,
                next.label,
                next.tasks.len(),
                dir.display(),
                dir.display()
            );
        }
        Merged::Tune(TuneMerge::Done(report), dir) => {
            lib(report.write(&dir))?;
            eprintln!(
                "the search is complete; wrote {} (policy: {})",
                dir.display(),
                dir.join(pooltune::experiments::tune::POLICY_FILE).display()
            );
            let format = match args.format {
                Format::Json => tune::Format::Json,
                Format::Md => tune::Format::Md,
                Format::Toml => tune::Format::Toml,
                Format::Table | Format::Csv => tune::Format::Table,
            };
            tune::print_report(&report, format);
        }
    }
    Ok(())
}
