//! `pooltune tune`: search a policy's knobs for the best objective under
//! constraints; write the policy file and a report.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, ValueEnum};

use pooltune::experiments::runner;
use pooltune::experiments::shard::Shard;
use pooltune::experiments::tune::{Feasibility, TuneReport, TuneSpec, Tuner};
use pooltune::experiments::ExperimentError;

use super::sweep::{lib, Bar};
use super::wall_clock;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The comparison table: starting policy vs tuned.
    Table,
    /// tune.json.
    Json,
    /// The Markdown report (with the Pareto front).
    Md,
    /// The tuned policy file.
    Toml,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// The mean meets each bound.
    Mean,
    /// The whole 95 % interval meets each bound.
    Upper,
}

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The starting policy (file or shipped name): keys that are not free
    /// keep its values, and the report compares against it.
    #[arg(long, value_name = "FILE|NAME", default_value = "seed-80-30")]
    policy: String,
    /// The workload to tune for.
    #[arg(long, value_name = "FILE|NAME", default_value = "default")]
    trace: String,
    /// Fix a policy or workload key (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// A free policy key and its values: KEY=A..B:STEP or KEY=V1,V2,...
    /// (as --grid of sim sweep; K1,K2=... ties keys). Repeatable. Default
    /// for a threshold policy: size.min, size.max, resize.scale_up,
    /// scale_down, interval, step and signal; for a fixed pool: its size.
    #[arg(long = "free", value_name = "KEY=SPEC")]
    free: Vec<String>,
    /// The objective to minimise: a metric or a weighted sum, e.g.
    /// `pool.connection_seconds + 20*acquire_wait_ms.p99` (default
    /// pool.connection_seconds).
    #[arg(long, value_name = "EXPR", conflicts_with = "maximize")]
    minimize: Option<String>,
    /// The objective to maximise instead.
    #[arg(long, value_name = "EXPR")]
    maximize: Option<String>,
    /// A constraint METRIC<=BOUND (or <, >=, >), repeatable. Default:
    /// acquire_wait_ms.p99<=50 and p_timeout<=0.001.
    #[arg(long = "constraint", value_name = "EXPR")]
    constraints: Vec<String>,
    /// Drop the default constraints (when giving none).
    #[arg(long, conflicts_with = "constraints")]
    no_constraints: bool,
    /// Simulations the search may spend (the confirmation comes on top).
    #[arg(long, default_value_t = 600)]
    budget: usize,
    /// Replications a candidate earns by surviving every halving.
    #[arg(long, short = 'r', default_value_t = 9)]
    replications: usize,
    /// Fresh replications for the finalists and the starting policy.
    #[arg(long, default_value_t = 10)]
    confirm: usize,
    /// How the final choice judges constraints.
    #[arg(long, value_enum, default_value_t = Rule::Upper)]
    feasibility: Rule,
    /// The master seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Another metric to record and report (repeatable).
    #[arg(long = "metric", value_name = "NAME")]
    metrics: Vec<String>,
    /// The Pareto front's two metrics, both minimised (default
    /// pool.connection_seconds,acquire_wait_ms.p99).
    #[arg(long, value_name = "X,Y")]
    pareto: Option<String>,
    /// Output directory (default: reports/tune-<trace>-<seed>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Worker threads (default: RAYON_NUM_THREADS, else one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Run shard K of N (K from 0) of the next stage of the search, given
    /// the state in the output directory; `pooltune merge DIR` merges the
    /// stage. Repeat both until DIR/tune.json appears.
    #[arg(long, value_name = "K/N")]
    shard: Option<String>,
    /// What to print on standard output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Do not write the output directory.
    #[arg(long)]
    no_write: bool,
}

pub fn run(args: TuneArgs) -> Result<()> {
    let shard = lib(args.shard.as_deref().map(Shard::parse).transpose())?;
    if shard.is_some() && args.no_write {
        return lib(Err(ExperimentError::spec(
            "--no-write",
            "a sharded search keeps its state in the output directory; --shard needs it",
        )));
    }
    let spec = TuneSpec {
        policy: args.policy.clone(),
        trace: args.trace.clone(),
        sets: args.sets.clone(),
        free: args.free.clone(),
        minimize: args.minimize.clone(),
        maximize: args.maximize.clone(),
        constraints: args.constraints.clone(),
        unconstrained: args.no_constraints,
        budget: args.budget,
        replications: args.replications,
        confirm: args.confirm,
        feasibility: match args.feasibility {
            Rule::Mean => Feasibility::Mean,
            Rule::Upper => Feasibility::Upper,
        },
        seed: args.seed,
        metrics: args.metrics.clone(),
        pareto: args.pareto.clone(),
    };
    let mut tuner = lib(Tuner::prepare(&spec))?;
    for n in &tuner.notes {
        eprintln!("note: {n}");
    }
    let plan = &tuner.plan;
    let out_dir = args.out.clone().unwrap_or_else(|| {
        Path::new("reports").join(format!("tune-{}-{}", plan.trace.name, plan.seed))
    });
    eprintln!(
        "pooltune tune: policy {} on trace {}, seed {}; {} free key{}, budget {} simulations{}",
        plan.policy_name,
        plan.trace.name,
        plan.seed,
        plan.free.len(),
        if plan.free.len() == 1 { "" } else { "s" },
        plan.budget,
        match shard {
            Some(s) => format!("; shard {s} of the next stage"),
            None => String::new(),
        }
    );
    let per_run = tuner.sim_seconds_per_run();
    let bar = Bar::new(0, 0);
    let on_stage = |label: &str, n: usize| {
        bar.add_stage(label, per_run * n as u64, n as u64);
    };
    let started = wall_clock();

    if let Some(s) = shard {
        let done = lib(runner::with_threads(args.threads, || {
            tuner.run_shard(&out_dir, s, &bar, &on_stage)
        }))?;
        bar.finish();
        match lib(done)? {
            None => eprintln!(
                "the search in {} is complete; the result is {}",
                out_dir.display(),
                out_dir.join("tune.json").display()
            ),
            Some((stage, path, n)) => eprintln!(
                "stage {} ({}): ran {n} of its {} simulations in {:.2} s wall; wrote {}\nwhen every shard is done: pooltune merge {}",
                stage.index,
                stage.label,
                stage.tasks.len(),
                wall_clock().duration_since(started).as_secs_f64(),
                path.display(),
                out_dir.display()
            ),
        }
        return Ok(());
    }

    let report = lib(runner::with_threads(args.threads, || {
        tuner.run(&bar, &on_stage)
    }))?;
    bar.finish();
    let report = lib(report)?;
    let sims = report.output.search.search_simulations + report.output.search.confirm_simulations;
    let elapsed = wall_clock().duration_since(started).as_secs_f64();
    if !args.no_write {
        lib(report.write(&out_dir))?;
    }
    eprintln!(
        "{sims} simulations in {elapsed:.2} s wall ({:.1} simulations/s){}",
        sims as f64 / elapsed.max(1e-9),
        if args.no_write {
            String::new()
        } else {
            format!(
                "; wrote {} (policy: {})",
                out_dir.display(),
                out_dir.join("tuned.toml").display()
            )
        }
    );
    print_report(&report, args.format);
    Ok(())
}

pub(crate) fn print_report(report: &TuneReport, format: Format) {
    match format {
        Format::Table => print!("{}", report.table),
        Format::Json => print!("{}", report.json),
        Format::Md => print!("{}", report.markdown),
        Format::Toml => print!("{}", report.policy_toml),
    }
}
