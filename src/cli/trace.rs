//! `pooltune trace import|stats|gen|transform`: recorded logs to canonical
//! traces, what a trace holds, synthetic traces from a spec, and windows,
//! scaling and merges.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

use pooltune::config::workload::{parse_service, SourceSpec};
use pooltune::config::Override;
use pooltune::rng::SeedTree;
use pooltune::scenario;
use pooltune::trace::canonical::{CanonicalWriter, Encoding, OptionalColumns};
use pooltune::trace::import::{self, Format, ImportOptions, ImportReport, PgbenchArrival};
use pooltune::trace::record::{format_unix_ns, TraceMeta, TraceRecord};
use pooltune::trace::replay::{prepare, PrepareOptions, PreparedTrace};
use pooltune::trace::rules::Rules;
use pooltune::trace::stats;
use pooltune::trace::transform::{Merged, TransformSpec, Transformed};
use pooltune::trace::{RecordStream, RequestSource, TraceError};

use super::{lib, wall_clock};

#[derive(Subcommand, Debug)]
pub enum TraceCommand {
    /// Import recorded logs or spans into a canonical trace.
    ///
    /// Formats: csvlog (PostgreSQL 12-17), jsonlog, cnpg (CloudNativePG),
    /// cloudsql (Google Cloud Logging), stderr and syslog (with the server's
    /// log_line_prefix), pgbench (-l logs; give every thread's file), otlp
    /// (OTLP/JSON spans), arrivals (any CSV/JSON Lines with a time column),
    /// canonical (to merge or re-classify). gzip and bzip2 are read as is.
    Import(ImportArgs),
    /// Summarise a trace (canonical, or any importable log): count, span,
    /// rate over time, inter-arrival and service percentiles, burstiness,
    /// mixes, Little's-law concurrency, skipped lines.
    Stats(StatsArgs),
    /// Write the requests a workload spec generates (or replays) as a
    /// canonical trace.
    Gen(GenArgs),
    /// Window, scale, merge a trace, or give it synthetic service times.
    Transform(TransformArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ArrivalArg {
    Scheduled,
    Sent,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum UnitArg {
    S,
    Ms,
    Us,
    Ns,
}

/// How to read inputs (shared by import, stats and transform).
#[derive(Args, Debug, Clone)]
pub struct ReadArgs {
    /// Input format (default: detected from the first file).
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    format: String,
    /// The server's log_line_prefix (stderr, syslog, cloudsql), e.g.
    /// '%m [%p] %q%u@%d '. Default: common ones are tried.
    #[arg(long, value_name = "PREFIX", allow_hyphen_values = true)]
    prefix: Option<String>,
    /// Skip malformed lines (they are counted and reported) instead of
    /// stopping at the first.
    #[arg(long)]
    skip_bad: bool,
    /// Priority, kind and class rules (TOML, `[[rule]]` tables).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// The year of syslog time stamps (they have none).
    #[arg(long)]
    year: Option<i64>,
    /// pgbench -R logs: arrival at the schedule (default) or when sent.
    #[arg(long, value_enum, default_value_t = ArrivalArg::Scheduled)]
    pgbench_arrival: ArrivalArg,
    /// arrivals format: the time field (default: timestamp, time, ...).
    #[arg(long, value_name = "NAME")]
    time_field: Option<String>,
    /// arrivals format: the unit of numeric times.
    #[arg(long, value_enum)]
    time_unit: Option<UnitArg>,
}

impl ReadArgs {
    fn options(&self) -> Result<(Option<Format>, ImportOptions), TraceError> {
        let format = match self.format.as_str() {
            "auto" => None,
            f => Some(Format::parse(f)?),
        };
        let rules = match &self.rules {
            Some(p) => Rules::load(p)?,
            None => Rules::default(),
        };
        Ok((
            format,
            ImportOptions {
                format,
                prefix: self.prefix.clone(),
                skip_bad: self.skip_bad,
                rules,
                year: self.year,
                pgbench_arrival: match self.pgbench_arrival {
                    ArrivalArg::Scheduled => PgbenchArrival::Scheduled,
                    ArrivalArg::Sent => PgbenchArrival::Sent,
                },
                time_field: self.time_field.clone(),
                time_unit_ns: self.time_unit.map(|u| match u {
                    UnitArg::S => 1_000_000_000,
                    UnitArg::Ms => 1_000_000,
                    UnitArg::Us => 1_000,
                    UnitArg::Ns => 1,
                }),
                ..Default::default()
            },
        ))
    }

    fn prepare(&self, path: &Path) -> Result<PreparedTrace, TraceError> {
        let (format, import) = self.options()?;
        prepare(path, &PrepareOptions { format, import })
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Input files (several of one format are merged, e.g. pgbench's
    /// per-thread logs `prefix.pid`, `prefix.pid.1`, ...).
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// Output trace (`.csv` or `.jsonl`, optionally `.gz`/`.bz2`; `-` for
    /// standard output).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// Keep the SQL text (a `sql` column).
    #[arg(long)]
    keep_sql: bool,
    /// Memory for sorting by arrival before spilling to temporary files (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    sort_memory: usize,
    /// Print the import report as JSON on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A trace: canonical, or any importable log.
    #[arg(value_name = "FILE")]
    input: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// Print the statistics as JSON on standard output.
    #[arg(long)]
    json: bool,
    /// Write the arrival rate per time bin as CSV (bin_start_s, requests, rate_per_s).
    #[arg(long, value_name = "FILE")]
    rate_csv: Option<PathBuf>,
    /// Time bins for the rate over time (at most).
    #[arg(long, default_value_t = 2000)]
    bins: u64,
}

#[derive(Args, Debug)]
pub struct GenArgs {
    /// A workload file or shipped name (steady, diurnal-day, flash-crowd,
    /// slow-query-storm, default, ...).
    #[arg(value_name = "SPEC")]
    spec: String,
    /// Output trace (`.csv` or `.jsonl`, optionally `.gz`/`.bz2`; `-` for
    /// standard output).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The master seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Override a workload key, e.g. `--set requests=1000`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TransformArgs {
    /// Input traces (several are merged by arrival, each from its own start).
    #[arg(required = true, value_name = "FILE")]
    inputs: Vec<PathBuf>,
    /// Output trace.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// Keep arrivals from this time on (it becomes 0), e.g. 30s.
    #[arg(long, value_name = "DURATION")]
    start: Option<String>,
    /// Keep arrivals before this time.
    #[arg(long, value_name = "DURATION")]
    end: Option<String>,
    /// Compress time: arrivals at t / SPEED.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Scale load by thinning (< 1) or duplicating (> 1) requests.
    #[arg(long, default_value_t = 1.0)]
    load: f64,
    /// Replace service times, e.g. '{ kind = "lognormal", median = "8ms", p99 = "40ms" }'.
    #[arg(long, value_name = "TOML")]
    service: Option<String>,
    /// Replace priorities: HIGH,NORMAL,LOW fractions, e.g. 0.1,0.7,0.2.
    #[arg(long, value_name = "H,N,L")]
    priority_mix: Option<String>,
    /// Replace kinds: the fraction of writes.
    #[arg(long)]
    write_fraction: Option<f64>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this (output) time.
    #[arg(long, value_name = "DURATION")]
    duration: Option<String>,
    /// The master seed (thinning, duplication, synthetic service).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(cmd: TraceCommand) -> Result<()> {
    match cmd {
        TraceCommand::Import(a) => import_cmd(a),
        TraceCommand::Stats(a) => stats_cmd(a),
        TraceCommand::Gen(a) => gen_cmd(a),
        TraceCommand::Transform(a) => transform_cmd(a),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The import report in words.
pub fn describe(r: &ImportReport) -> String {
    let mut o = format!(
        "{} requests from {} ({}): {} lines, {} not requests, {} merged (extended protocol / log_statement), {} unpaired, {} skipped malformed{}\n",
        thousands(r.requests),
        r.files.join(", "),
        r.format,
        thousands(r.lines),
        thousands(r.ignored),
        thousands(r.merged),
        thousands(r.unpaired),
        thousands(r.skipped_bad),
        if r.failed > 0 {
            format!(", {} failed/skipped transactions", thousands(r.failed))
        } else {
            String::new()
        }
    );
    o.push_str(&format!(
        "span {:.3} s · time resolution {}{}{}\n",
        r.span_ns as f64 / 1e9,
        pooltune::time::SimDuration(r.time_resolution_ns),
        r.start_unix_ns
            .map(|s| format!(" · starts {}", format_unix_ns(s)))
            .unwrap_or_default(),
        r.prefix
            .as_ref()
            .map(|p| format!(" · log_line_prefix '{p}'"))
            .unwrap_or_default()
    ));
    for e in &r.skipped_examples {
        o.push_str(&format!("skipped: {e}\n"));
    }
    for w in &r.warnings {
        o.push_str(&format!("warning: {w}\n"));
    }
    o
}

fn import_cmd(a: ImportArgs) -> Result<()> {
    let (_, mut opts) = a.read.options()?;
    opts.keep_sql = a.keep_sql;
    opts.sort_budget = a.sort_memory.max(1) << 20;
    let started = wall_clock();
    let report = import::import_files(&a.inputs, &opts, &a.output)?;
    let secs = wall_clock().duration_since(started).as_secs_f64();
    eprint!("{}", describe(&report));
    eprintln!(
        "imported in {secs:.2} s ({:.2} M lines/s); wrote {}",
        report.lines as f64 / secs.max(1e-9) / 1e6,
        a.output.display()
    );
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    }
    Ok(())
}

fn stats_cmd(a: StatsArgs) -> Result<()> {
    let trace = a.read.prepare(&a.input)?;
    let mut reader = trace.open()?;
    let mut s = stats::compute(&mut reader, Some(trace.info.last_arrival_ns), a.bins.max(1))?;
    s.skipped_lines = trace.info.skipped_lines;
    if trace.info.format != "canonical csv" && trace.info.format != "canonical jsonl" {
        s.source = format!("{}, imported", trace.info.format);
    }
    if let Some(path) = &a.rate_csv {
        let mut text = String::from("bin_start_s,requests,rate_per_s\n");
        for (i, c) in s.rate.counts.iter().enumerate() {
            text.push_str(&format!(
                "{},{c},{}\n",
                i as f64 * s.rate.bin_s,
                *c as f64 / s.rate.bin_s
            ));
        }
        std::fs::write(path, text).map_err(|source| TraceError::Write {
            path: path.clone(),
            source,
        })?;
    }
    if a.json {
        let mut v = serde_json::to_value(&s).expect("stats serialize");
        if let Some(r) = &trace.import {
            v["import"] = serde_json::to_value(r).expect("report serializes");
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print!("{}", stats::render(&a.input.display().to_string(), &s));
        if let Some(r) = &trace.import {
            print!("import            {}", describe(r));
        }
    }
    Ok(())
}

/// Copies a record stream to a canonical file.
fn write_stream(
    stream: &mut dyn RecordStream,
    out: &Path,
    mut meta: TraceMeta,
    cols: OptionalColumns,
) -> Result<u64, TraceError> {
    meta.requests = None;
    let mut w = CanonicalWriter::create(out, Encoding::from_path(out), &meta, cols)?;
    let mut rec = TraceRecord::default();
    while stream.next_record(&mut rec)? {
        w.write(&rec)?;
    }
    w.finish()
}

fn gen_cmd(a: GenArgs) -> Result<()> {
    let overrides = lib(a
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<std::result::Result<Vec<_>, _>>())?;
    let w = lib(scenario::load_workload(&a.spec, &overrides))?;
    let seeds = SeedTree::new(a.seed);
    let spec = &w.spec;
    let n = match &spec.source {
        SourceSpec::Trace(t) => {
            let reader = t.trace.open_full()?;
            let mut tr = Transformed::new(reader, t.transform.clone(), &seeds);
            let meta = tr.meta().clone();
            write_stream(&mut tr, &a.output, meta, OptionalColumns::all())?
        }
        _ => {
            let mut src = lib(scenario::open_source(spec, &seeds)
                .map_err(|e| pooltune::error::Error::Config(e.into_config_direct())))?;
            // A closed loop's arrivals depend on the pool's waits, which a
            // file cannot know: say what it holds instead.
            let approx = if src.is_closed_loop() {
                eprintln!(
                    "note: {} is a closed loop; the trace holds each client's schedule as if no request waited (sim run --trace {} simulates the real loop)",
                    spec.name, spec.name
                );
                ", closed loop written as if no request waited"
            } else {
                ""
            };
            let mut meta =
                TraceMeta::new(format!("gen {} (seed {}{approx})", spec.name, a.seed), 1);
            meta.source_files = vec![w.source.clone()];
            let mut wr = CanonicalWriter::create(
                &a.output,
                Encoding::from_path(&a.output),
                &meta,
                OptionalColumns::minimal(),
            )?;
            let mut rec = TraceRecord::default();
            while let Some(r) = src.next_request() {
                rec.arrival_ns = r.arrival.0;
                rec.service_ns = r.service.0;
                rec.priority = r.priority;
                rec.kind = r.kind;
                wr.write(&rec)?;
            }
            wr.finish()?
        }
    };
    eprintln!(
        "wrote {} requests of {} (seed {}) to {}",
        thousands(n),
        spec.name,
        a.seed,
        a.output.display()
    );
    Ok(())
}

fn transform_cmd(a: TransformArgs) -> Result<()> {
    let dur = |s: &Option<String>, flag: &str| -> Result<Option<u64>, TraceError> {
        s.as_ref()
            .map(|v| {
                pooltune::time::parse_duration(v)
                    .map(|d| d.0)
                    .map_err(|e| TraceError::Invalid(format!("{flag} {v}: {e}")))
            })
            .transpose()
    };
    let service = match &a.service {
        Some(t) => Some(lib(parse_service("--service", t))?),
        None => None,
    };
    let priority_mix = match &a.priority_mix {
        None => None,
        Some(t) => {
            let v: Vec<f64> = t
                .split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| {
                    TraceError::Invalid(format!(
                        "--priority-mix {t}: expected three numbers HIGH,NORMAL,LOW"
                    ))
                })?;
            if v.len() != 3
                || v.iter().any(|x| !(0.0..=1.0).contains(x))
                || (v.iter().sum::<f64>() - 1.0).abs() > 1e-9
            {
                return Err(TraceError::Invalid(format!(
                    "--priority-mix {t}: expected three fractions that sum to 1, e.g. 0.1,0.7,0.2"
                ))
                .into());
            }
            Some([v[0], v[1], v[2]])
        }
    };
    if let Some(w) = a.write_fraction {
        if !(0.0..=1.0).contains(&w) {
            return Err(TraceError::Invalid(format!(
                "--write-fraction {w}: expected a fraction in [0, 1]"
            ))
            .into());
        }
    }
    let spec = TransformSpec {
        start_ns: dur(&a.start, "--start")?,
        end_ns: dur(&a.end, "--end")?,
        speed: a.speed,
        load: a.load,
        service,
        priority_mix,
        write_fraction: a.write_fraction,
        max_requests: a.requests,
        horizon_ns: dur(&a.duration, "--duration")?,
    };
    spec.validate()?;
    let mut traces = Vec::new();
    for p in &a.inputs {
        traces.push(a.read.prepare(p)?);
    }
    for t in &traces {
        if t.info.no_service && spec.service.is_none() {
            return Err(TraceError::file(
                t.path.display().to_string(),
                "has arrival times only: give --service to replay it with synthetic service times",
            )
            .into());
        }
    }
    let seeds = SeedTree::new(a.seed);
    let input: Box<dyn RecordStream + Send> = if traces.len() == 1 {
        Box::new(traces[0].open_full()?)
    } else {
        let mut v: Vec<Box<dyn RecordStream + Send>> = Vec::new();
        for t in &traces {
            v.push(Box::new(t.open_full()?));
        }
        Box::new(Merged::new(v))
    };
    let mut tr = Transformed::new(input, spec, &seeds);
    let mut meta = tr.meta().clone();
    meta.no_service = meta.no_service && a.service.is_none();
    let n = write_stream(&mut tr, &a.output, meta, OptionalColumns::all())?;
    eprintln!("wrote {} requests to {}", thousands(n), a.output.display());
    Ok(())
}
