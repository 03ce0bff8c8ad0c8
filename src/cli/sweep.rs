//! `pooltune sim sweep`: a grid of policy and workload keys, replicated
//! under common random numbers, with means, intervals and paired
//! differences.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Result;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use pooltune::experiments::metrics;
use pooltune::experiments::runner::{self, Progress};
use pooltune::experiments::shard::Shard;
use pooltune::experiments::sweep::{self, Sweep, SweepSpec};
use pooltune::experiments::ExperimentError;

use super::wall_clock;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// An aligned table.
    Table,
    /// sweep.json.
    Json,
    /// The table in Markdown.
    Md,
    /// sweep.csv.
    Csv,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A policy the grid applies to (repeatable; default seed-80-30).
    #[arg(long = "policy", value_name = "FILE|NAME")]
    policies: Vec<String>,
    /// A workload (repeatable; default `default`).
    #[arg(long = "trace", value_name = "FILE|NAME")]
    traces: Vec<String>,
    /// An axis of the grid: KEY=A..B:STEP (0.6..0.95:0.05, 5..25:5,
    /// 1s..5s:500ms) or KEY=V1,V2,... (10,15,20; instant,window_mean);
    /// K1,K2=... sets several keys together. Policy or workload keys, as
    /// --set takes them. Repeatable: the grid is the product.
    #[arg(long = "grid", value_name = "KEY=SPEC")]
    grid: Vec<String>,
    /// Fix a policy or workload key for every variant (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// A policy run as it is, next to the grid (repeatable); the first is
    /// the baseline unless --baseline says otherwise.
    #[arg(long = "reference", value_name = "FILE|NAME")]
    references: Vec<String>,
    /// The variant paired differences are taken against: an index, or
    /// key=value,... matching one variant per workload (keys: policy,
    /// trace, reference, or a grid key), e.g. `size.max=25`.
    #[arg(long, value_name = "INDEX|KEY=VALUE,...")]
    baseline: Option<String>,
    /// The master seed; replication r of every variant uses a seed derived
    /// from it and r.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Replications (seeds) per variant.
    #[arg(long, short = 'r', default_value_t = 5)]
    replications: usize,
    /// A metric to record: a dotted path into a run of summary.json, e.g.
    /// acquire_wait_ms.p99 (repeatable; default: a standard set; see
    /// --list-metrics).
    #[arg(long = "metric", value_name = "NAME")]
    metrics: Vec<String>,
    /// Output directory (default: reports/sweep-<trace>-<seed>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Worker threads (default: RAYON_NUM_THREADS, else one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Run only shard K of N (K from 0) and write its shard file into the
    /// output directory; `pooltune merge` puts the shards together.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Do not write the output directory.
    #[arg(long)]
    no_write: bool,
    /// Leave out grid points whose configuration is invalid (e.g.
    /// scale_down >= scale_up) instead of stopping; they are listed in
    /// sweep.json under "skipped".
    #[arg(long)]
    skip_invalid: bool,
    /// Print every metric name and exit.
    #[arg(long)]
    list_metrics: bool,
}

/// A progress bar on stderr, in simulated seconds, with an ETA.
pub(crate) struct Bar {
    bar: ProgressBar,
    done: AtomicU64,
    total: AtomicU64,
    stage: Mutex<String>,
}

impl Bar {
    pub(crate) fn new(sim_seconds: u64, runs: u64) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(sim_seconds), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {percent:>3}% · {msg} · {elapsed} elapsed, eta {eta}",
            )
            .expect("constant template is valid"),
        );
        bar.set_message(format!("0/{runs} simulations"));
        Bar {
            bar,
            done: AtomicU64::new(0),
            total: AtomicU64::new(runs),
            stage: Mutex::new(String::new()),
        }
    }

    fn update(&self) {
        let d = self.done.load(Ordering::Relaxed);
        let t = self.total.load(Ordering::Relaxed);
        let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
        self.bar.set_message(format!("{d}/{t} simulations{stage}"));
    }

    /// Adds simulations to the bar (the tuner learns its stages one by one).
    /// Adds a stage's simulations to the bar (the tuner learns its stages
    /// one by one).
    pub(crate) fn add_stage(&self, label: &str, sim_seconds: u64, runs: u64) {
        self.bar.inc_length(sim_seconds);
        self.total.fetch_add(runs, Ordering::Relaxed);
        if let Ok(mut s) = self.stage.lock() {
            *s = format!(" · {label}");
        }
        self.update();
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn advance(&self, sim_s: u64) {
        self.bar.inc(sim_s);
    }
    fn run_finished(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.update();
    }
}

pub(crate) fn lib<T>(r: std::result::Result<T, ExperimentError>) -> Result<T> {
    r.map_err(anyhow::Error::new)
}

pub fn run(args: SweepArgs) -> Result<()> {
    if args.list_metrics {
        for m in metrics::all_metric_names() {
            println!("{m}");
        }
        return Ok(());
    }
    let shard = lib(args.shard.as_deref().map(Shard::parse).transpose())?;
    if shard.is_some() && args.no_write {
        return lib(Err(ExperimentError::spec(
            "--no-write",
            "a shard's results go to its shard file; --shard needs the output directory",
        )));
    }
    let spec = SweepSpec {
        policies: args.policies.clone(),
        traces: args.traces.clone(),
        references: args.references.clone(),
        grid: args.grid.clone(),
        sets: args.sets.clone(),
        seed: args.seed,
        replications: args.replications,
        metrics: args.metrics.clone(),
        baseline: args.baseline.clone(),
        skip_invalid: args.skip_invalid,
    };
    let sweep = lib(Sweep::prepare(&spec))?;
    let plan = &sweep.plan;
    let out_dir = args.out.clone().unwrap_or_else(|| {
        Path::new("reports").join(format!("sweep-{}-{}", plan.trace.name, plan.seed))
    });
    let tasks = plan.tasks();
    let mine = match shard {
        Some(s) => (0..tasks).filter(|t| s.contains(*t)).count(),
        None => tasks,
    };
    eprintln!(
        "pooltune sim sweep: {} variant{} x {} replication{} = {} simulations, seed {}{}",
        plan.variants.len(),
        if plan.variants.len() == 1 { "" } else { "s" },
        plan.replications,
        if plan.replications == 1 { "" } else { "s" },
        tasks,
        plan.seed,
        match shard {
            Some(s) => format!("; shard {s} runs {mine} of them"),
            None => String::new(),
        }
    );
    if !plan.skipped.is_empty() {
        eprintln!(
            "note: {} invalid grid point{} left out (--skip-invalid), e.g. {}",
            plan.skipped.len(),
            if plan.skipped.len() == 1 { "" } else { "s" },
            plan.skipped[0].error
        );
    }

    let started = wall_clock();
    let bar = Bar::new(sweep.expected_sim_seconds(shard), mine as u64);
    let results = lib(runner::with_threads(args.threads, || {
        sweep.run(shard, &bar)
    }))?;
    bar.finish();
    let results = lib(results)?;
    let elapsed = wall_clock().duration_since(started).as_secs_f64();
    let speed = format!(
        "{mine} simulations in {elapsed:.2} s wall ({:.1} simulations/s)",
        mine as f64 / elapsed.max(1e-9)
    );

    if let Some(s) = shard {
        let file = sweep.shard_file(s, &results);
        let name = s.file_name("sweep");
        lib(pooltune::experiments::write_json(&out_dir, &name, &file))?;
        eprintln!(
            "{speed}; wrote {}\nwhen every shard is done: pooltune merge {}",
            out_dir.join(&name).display(),
            out_dir.display()
        );
        return Ok(());
    }
    let values: Vec<Vec<f64>> = results.into_iter().map(|(_, v)| v).collect();
    let report = sweep::finalize(plan, &values);
    if !args.no_write {
        lib(report.write(&out_dir))?;
    }
    eprintln!(
        "{speed}{}",
        if args.no_write {
            String::new()
        } else {
            format!("; wrote {}", out_dir.display())
        }
    );
    print_report(&report, args.format);
    Ok(())
}

pub(crate) fn print_report(report: &sweep::SweepReport, format: Format) {
    match format {
        Format::Table => print!("{}", report.table),
        Format::Json => print!("{}", report.json),
        Format::Md => print!("{}", report.markdown),
        Format::Csv => print!("{}", report.csv),
    }
}
