//! `pooltune report DIR...`: the HTML page and Markdown summary of run (or
//! sweep) directories.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};

use pooltune::report::html::{self, Options};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Print {
    /// The Markdown summary (for a pull-request comment or a CI job summary).
    Md,
    /// Nothing; only the files.
    None,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories (summary.json, optional timeseries.csv, as written by
    /// `sim run`) or sweep directories (sweep.json).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Where to write report.html, report.md and plots/ (default: the
    /// directory itself when one is given, else reports/report).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Draw SVG plots only (the HTML page embeds SVG either way).
    #[arg(long)]
    no_png: bool,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Print::Md)]
    print: Print,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let out = match (&args.out, args.dirs.as_slice()) {
        (Some(o), _) => o.clone(),
        (None, [one]) => one.clone(),
        (None, _) => Path::new("reports").join("report"),
    };
    let opts = Options { png: !args.no_png };
    let (report, written) = html::report_dirs(&args.dirs, &out, &opts)?;
    eprintln!(
        "pooltune report: {} {} -> {} ({} files: report.html, report.md, plots/)",
        args.dirs.len(),
        if args.dirs.len() == 1 {
            "input"
        } else {
            "inputs"
        },
        out.display(),
        written.len()
    );
    if args.print == Print::Md {
        print!("{}", report.markdown);
    }
    Ok(())
}
