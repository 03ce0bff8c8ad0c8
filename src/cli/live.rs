//! `pooltune live run`, `pooltune live prepare` and `pooltune live
//! calibrate`: the same pool and policy against a real PostgreSQL.

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use pooltune::config::Override;
use pooltune::core::metrics::{Sample, SampleSink};
use pooltune::error::Error;
use pooltune::live::{self, LiveOptions, StatementSource, Target};
use pooltune::report::{self, timeseries::CsvSink};
use pooltune::scenario;
use pooltune::time::SimTime;

use super::lib;

#[derive(Subcommand, Debug)]
pub enum LiveCommand {
    /// Replay a workload against a real PostgreSQL with one policy, in real
    /// time, through the same pool and policy code as `sim run`.
    ///
    /// Writes summary.json (same schema as `sim run`), timeseries.csv,
    /// summary.md and live.json (client-side overheads). The database comes
    /// from --database-url and/or the PG* environment variables (PGHOST,
    /// PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGPASSFILE...). Ctrl-C stops
    /// early: the summary is taken at that instant, queries still running are
    /// cancelled, connections closed, outputs written, exit code 130.
    Run(LiveRunArgs),
    /// Create pgbench-style tables (pgbench_accounts, _branches, _tellers,
    /// _history) for statement workloads such as workloads/pgbench-tpcb.toml.
    ///
    /// 100000 * SCALE accounts, 10 * SCALE tellers, SCALE branches, filled
    /// with generate_series in one transaction, then analyzed. If any of
    /// the tables exists, nothing changes: the existing tables are reported
    /// (exit 0); --force drops and recreates them.
    Prepare(PrepareArgs),
    /// Measure the database: connect latency, per-query overhead, and
    /// throughput vs concurrency (USL fit) for a CPU-bound statement.
    ///
    /// Writes calibration.json and database.toml (a workload [database]
    /// section) to --out; with --trace, also workload.toml: that workload with
    /// the calibrated [database], so `sim run --trace DIR/workload.toml`
    /// predicts this database.
    Calibrate(CalibrateArgs),
}

#[derive(Args, Debug)]
pub struct PrepareArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Scale factor: 100000 accounts per unit (as pgbench -s).
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// Drop and recreate the tables if they exist (their data is lost).
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Sequential connects measured.
    #[arg(long, default_value_t = 50)]
    connects: u32,
    /// Sequential round trips measured (half pg_sleep(0), half pg_sleep of 5-15 ms).
    #[arg(long, default_value_t = 500)]
    queries: u32,
    /// Concurrency levels of the throughput curve.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,6,8,12,16")]
    concurrency: Vec<u32>,
    /// Seconds each concurrency level runs.
    #[arg(long, default_value_t = 3.0)]
    level_seconds: f64,
    /// Milliseconds one CPU-bound query should take alone.
    #[arg(long, default_value_t = 5.0)]
    cpu_query_ms: f64,
    /// Also write this workload (file or shipped name) with the calibrated
    /// [database] section, as workload.toml.
    #[arg(long, value_name = "FILE|NAME")]
    trace: Option<String>,
    /// Write the CPU-bound USL fit as the contention model (default: no
    /// contention, right for the live driver's pg_sleep statement).
    #[arg(long)]
    contention: bool,
    /// Output directory.
    #[arg(long, value_name = "DIR", default_value = "reports/calibrate")]
    out: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Md,
}

/// Where to connect (shared by the live subcommands).
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// postgres://user:password@host:port/dbname or "host=... user=...";
    /// unset parts come from PG* variables. The password is never printed.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

impl DbArgs {
    pub fn target(&self) -> Result<Target> {
        lib_live(Target::from_env(self.database_url.as_deref()))
    }
}

#[derive(Args, Debug)]
pub struct LiveRunArgs {
    #[command(flatten)]
    db: DbArgs,
    /// A policy file or shipped name.
    #[arg(long, value_name = "FILE|NAME", default_value = "seed-80-30")]
    policy: String,
    /// A workload file or shipped name; its [database] section is ignored
    /// (the real database is the model).
    #[arg(long, value_name = "FILE|NAME", default_value = scenario::DEFAULT_TRACE)]
    trace: String,
    /// The seed that generates the workload's requests (the same requests
    /// `sim run --seed N` replays).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Issue requests at arrival / SPEED (2 = twice as fast: twice the load;
    /// service times are not scaled).
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// Override a policy or workload key, as in `sim run` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Output directory (default: reports/live-<workload>-<seed>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Do not write the output directory.
    #[arg(long)]
    no_write: bool,
    /// Send the statement unnamed with every request (one round trip)
    /// instead of preparing it once per connection: for poolers in
    /// transaction mode (PgBouncer before 1.21).
    #[arg(long)]
    no_prepare: bool,
    /// Run statements from a workload file instead of pg_sleep: each
    /// request picks one (by its kind when the file has both kinds,
    /// weighted, from the seed), with bound parameters (see workloads/).
    #[arg(long, value_name = "FILE", conflicts_with = "sql_from_trace")]
    statements: Option<PathBuf>,
    /// Run each request's SQL recorded in the trace (its `sql` column), as
    /// is, in read-only transactions (a write fails instead of changing
    /// data); requests without SQL run pg_sleep. The trace's statements
    /// still load the server: replay only traces you trust.
    #[arg(long)]
    sql_from_trace: bool,
    /// If the server cannot be reached at the start (down, starting up),
    /// start anyway and let the pool connect with its backoff; fail (exit
    /// 6) only if the server has not answered within DURATION ("30s").
    #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
    wait_for_server: Option<Duration>,
}

fn parse_wait(s: &str) -> std::result::Result<Duration, String> {
    match pooltune::time::parse_duration(s) {
        Ok(d) if d.0 <= 24 * 3600 * 1_000_000_000 => Ok(Duration::from_nanos(d.0)),
        Ok(_) => Err("expected at most 24h".to_string()),
        Err(e) => Err(format!("{e} (expected a duration such as 30s or 2m)")),
    }
}

fn parse_speed(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && v <= 1000.0 => Ok(v),
        _ => Err(format!("expected a number in (0, 1000], got {s:?}")),
    }
}

pub fn run(cmd: LiveCommand) -> Result<u8> {
    match cmd {
        LiveCommand::Run(args) => live_run(args),
        LiveCommand::Prepare(args) => prepare(args),
        LiveCommand::Calibrate(args) => calibrate(args),
    }
}

/// Maps live errors into the binary's error type (for exit codes).
pub fn lib_live<T>(r: std::result::Result<T, live::LiveError>) -> Result<T> {
    r.map_err(anyhow::Error::new)
}

/// A sample sink that also moves the progress bar (elapsed seconds).
struct Progress<S> {
    inner: S,
    bar: ProgressBar,
}

impl<S: SampleSink> SampleSink for Progress<S> {
    fn record(&mut self, sample: &Sample) {
        self.inner.record(sample);
    }
    fn progress(&mut self, now: SimTime, _events: u64) {
        self.bar.set_position(now.as_secs_f64() as u64);
    }
}

fn live_run(args: LiveRunArgs) -> Result<u8> {
    let overrides = lib(args
        .sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<std::result::Result<Vec<_>, _>>())?;
    let split = lib(scenario::split_overrides(&overrides))?;
    let workload = lib(scenario::load_workload(&args.trace, &split.workload))?;
    let policy = lib(scenario::load_policy(&args.policy, &split.policy))?;
    let statements = match (&args.statements, args.sql_from_trace) {
        (Some(path), _) => StatementSource::File(Arc::new(lib(live::statements::load(path))?)),
        (None, true) => StatementSource::RecordedSql,
        (None, false) => StatementSource::PgSleep,
    };
    let target = args.db.target()?;
    let out_dir = args.out.clone().unwrap_or_else(|| {
        Path::new("reports").join(format!("live-{}-{}", workload.spec.name, args.seed))
    });
    let w = &workload.spec.synthetic;
    let expected_s = match (w.duration, w.max_requests) {
        (Some(d), Some(n)) => d.as_secs_f64().min(n as f64 / w.rate_per_s),
        (Some(d), None) => d.as_secs_f64(),
        (None, Some(n)) => n as f64 / w.rate_per_s,
        (None, None) => 0.0,
    } / args.speed;
    eprintln!(
        "pooltune live run: {} · policy {} · trace {} ({}) · seed {} · speed {} · statements {} · about {:.0} s",
        target.describe(),
        policy.spec.name,
        workload.spec.name,
        workload.source,
        args.seed,
        args.speed,
        statements.describe(),
        expected_s
    );
    if let Some(w) = args.wait_for_server {
        eprintln!(
            "a server that cannot be reached yet gets up to {:.1} s to come up",
            w.as_secs_f64()
        );
    }
    let bar =
        ProgressBar::with_draw_target(Some(expected_s.ceil() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>20} {bar:30} {pos}/{len} s, eta {eta}")
            .expect("constant template is valid"),
    );
    bar.set_prefix(policy.spec.name.clone());

    let part = out_dir.join(".timeseries.live.part");
    let csv = if args.no_write {
        None
    } else {
        fs::create_dir_all(&out_dir).map_err(|source| Error::Write {
            path: out_dir.clone(),
            source,
        })?;
        let file = fs::File::create(&part).map_err(|source| Error::Write {
            path: part.clone(),
            source,
        })?;
        Some(CsvSink::new(&policy.spec.name, BufWriter::new(file), true))
    };
    let mut sink = Progress {
        inner: SinkOrNull(csv),
        bar: bar.clone(),
    };
    let rt = lib_live(live::runtime())?;
    let opts = LiveOptions {
        speed: args.speed,
        seed: args.seed,
        prepared: !args.no_prepare,
        statements,
        wait_for_server: args.wait_for_server.unwrap_or(Duration::ZERO),
        ..LiveOptions::default()
    };
    let result = rt.block_on(async {
        let stop = Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                // No signal handling available: never stop early.
                std::future::pending::<()>().await;
            }
        });
        live::run_scenario(
            &target, &workload, &policy, args.seed, &opts, &mut sink, stop,
        )
        .await
    });
    bar.finish_and_clear();
    let done = lib_live(result)?;
    if done.report.interrupted {
        eprintln!(
            "interrupted after {:.1} s: {} requests still in flight are counted as such; {} running queries cancelled; connections closed",
            done.report.wall_duration_s,
            done.summary.runs[0].requests.in_flight_at_end,
            done.report.queries_cancelled
        );
    }
    let rep = &done.report;
    eprintln!(
        "server {} · connect p50 {:.2} ms · round-trip overhead p50 {:.3} ms · arrival lag p50 {:.3} ms · errors: {} connect, {} query",
        rep.server_version,
        rep.connect_ms.p50,
        rep.round_trip_overhead_ms.p50,
        rep.arrival_lag_ms.p50,
        rep.connect_errors,
        rep.query_errors
    );
    for e in &rep.errors {
        eprintln!("  error seen: {e}");
    }
    if rep.statements.len() > 1 || rep.statement_source != "pg_sleep" {
        eprintln!("statements ({}):", rep.statement_source);
        for s in &rep.statements {
            eprintln!(
                "  {:<24} picked {:>7}  completed {:>7}  failed {:>5}",
                s.name, s.picked, s.completed, s.failed
            );
        }
    }
    if let Some(csv) = sink.inner.0 {
        csv.finish().map_err(|source| Error::Write {
            path: part.clone(),
            source,
        })?;
        let write = |name: &str, text: &str| -> Result<()> {
            let path = out_dir.join(name);
            fs::write(&path, text)
                .map_err(|source| Error::Write { path, source })
                .map_err(anyhow::Error::new)
        };
        write("summary.json", &report::json(&done.summary))?;
        let ts = out_dir.join("timeseries.csv");
        fs::rename(&part, &ts).map_err(|source| Error::Write { path: ts, source })?;
        write("summary.md", &report::markdown(&done.summary))?;
        write("live.json", &live::report_json(&done.report))?;
        eprintln!("wrote {}", out_dir.display());
    }
    match args.format {
        Format::Table => print!("{}", report::table(&done.summary)),
        Format::Json => print!("{}", report::json(&done.summary)),
        Format::Md => print!("{}", report::markdown(&done.summary)),
    }
    Ok(if done.report.interrupted {
        super::exit_code::INTERRUPTED
    } else {
        super::exit_code::OK
    })
}

/// A CSV sink, or nothing (`--no-write`).
struct SinkOrNull<S>(Option<S>);

impl<S: SampleSink> SampleSink for SinkOrNull<S> {
    fn record(&mut self, sample: &Sample) {
        if let Some(s) = &mut self.0 {
            s.record(sample);
        }
    }
}

fn prepare(args: PrepareArgs) -> Result<u8> {
    let target = args.db.target()?;
    eprintln!(
        "pooltune live prepare: {} · scale {}{}",
        target.describe(),
        args.scale,
        if args.force { " · --force" } else { "" }
    );
    let rt = lib_live(live::runtime())?;
    let p = lib_live(rt.block_on(live::prepare::prepare(&target, args.scale, args.force)))?;
    if p.created {
        println!(
            "created the pgbench tables at scale {} in {}:",
            p.scale, p.database
        );
    } else {
        println!(
            "the pgbench tables exist already in {} (scale {}); nothing changed (--force recreates them):",
            p.database, p.scale
        );
    }
    for (t, n) in &p.tables {
        println!("  {t:<18} {n:>12} rows");
    }
    for t in &p.missing {
        println!("  {t:<18} missing");
    }
    Ok(super::exit_code::OK)
}

fn calibrate(args: CalibrateArgs) -> Result<u8> {
    use pooltune::live::calibrate as cal;
    let mut levels = args.concurrency.clone();
    levels.sort_unstable();
    levels.dedup();
    if levels.first() != Some(&1) || !(args.level_seconds > 0.0 && args.level_seconds <= 600.0) {
        anyhow::bail!(live::LiveError::Target(
            "--concurrency must include 1 (the USL fit's reference) and --level-seconds be in (0, 600]"
                .to_string()
        ));
    }
    if !(args.cpu_query_ms > 0.0 && args.cpu_query_ms <= 10_000.0)
        || args.connects == 0
        || args.queries < 2
    {
        anyhow::bail!(live::LiveError::Target(
            "--cpu-query-ms must be in (0, 10000], --connects >= 1, --queries >= 2".to_string()
        ));
    }
    // Resolve the workload first: a bad name fails before any measurement.
    let workload_text = match &args.trace {
        None => None,
        Some(t) => {
            let shipped = pooltune::config::workload::SHIPPED
                .iter()
                .any(|(n, _)| n == t);
            if !shipped && !t.to_ascii_lowercase().ends_with(".toml") {
                anyhow::bail!(live::LiveError::Target(format!(
                    "--trace {t}: calibrate rewrites a workload file's [database] section, so it needs a workload .toml file or a shipped name"
                )));
            }
            let loaded = lib(scenario::load_workload(t, &[]))?;
            let text = match pooltune::config::workload::SHIPPED
                .iter()
                .find(|(n, _)| n == t)
            {
                Some((_, text)) => text.to_string(),
                None => fs::read_to_string(t)
                    .map_err(|source| pooltune::error::ConfigError::Read {
                        path: PathBuf::from(t),
                        source,
                    })
                    .map_err(|e| anyhow::Error::new(Error::from(e)))?,
            };
            Some((loaded.spec.name, text))
        }
    };
    let target = args.db.target()?;
    let opts = cal::CalibrateOptions {
        connects: args.connects,
        queries: args.queries,
        levels,
        level_duration: Duration::from_secs_f64(args.level_seconds),
        cpu_query: Duration::from_secs_f64(args.cpu_query_ms / 1e3),
    };
    eprintln!("pooltune live calibrate: {}", target.describe());
    let rt = lib_live(live::runtime())?;
    let c = lib_live(rt.block_on(cal::calibrate(&target, &opts, &mut |step| {
        eprintln!("  {step}")
    })))?;
    fs::create_dir_all(&args.out).map_err(|source| Error::Write {
        path: args.out.clone(),
        source,
    })?;
    let write = |name: &str, text: &str| -> Result<()> {
        let path = args.out.join(name);
        fs::write(&path, text)
            .map_err(|source| Error::Write { path, source })
            .map_err(anyhow::Error::new)
    };
    let mut json = serde_json::to_string_pretty(&c).expect("calibrations serialize");
    json.push('\n');
    write("calibration.json", &json)?;
    write("database.toml", &cal::database_toml(&c, args.contention))?;
    if let Some((name, text)) = workload_text {
        let w = cal::calibrated_workload(&text, &name, &c, args.contention)
            .map_err(|message| live::LiveError::Target(format!("--trace: {message}")))?;
        write("workload.toml", &w)?;
        // It must load: the simulator reads it.
        let path = args.out.join("workload.toml");
        lib(scenario::load_workload(&path.display().to_string(), &[]))?;
    }
    println!("database {} · PostgreSQL {}", c.database, c.server_version);
    println!(
        "connect (+auth+prepare)  p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms  (lognormal median {:.3} ms, sigma {:.3}; {} connects)",
        c.connect_ms.p50, c.connect_ms.p99, c.connect_ms.max, c.connect_fit.median_ms, c.connect_fit.sigma, c.connect_ms.count
    );
    println!(
        "round trip pg_sleep(0)   p50 {:.3} ms  p99 {:.3} ms;  pg_sleep(5..15 ms) overhead mean {:.3} ms  p99 {:.3} ms",
        c.round_trip_ms.p50, c.round_trip_ms.p99, c.sleep_overhead_ms.mean, c.sleep_overhead_ms.p99
    );
    println!(
        "CPU-bound query ({} rows): USL lambda {:.1}/s  sigma {:.4}  kappa {:.5}  R^2 {:.3}{}",
        c.cpu_rows,
        c.usl.lambda_per_s,
        c.usl.sigma,
        c.usl.kappa,
        c.usl.r_squared,
        c.usl
            .peak_concurrency
            .map(|p| format!("  peak at {p:.1} clients"))
            .unwrap_or_default()
    );
    println!(
        "{:>11}  {:>9}  {:>10}  {:>10}  {:>9}",
        "concurrency", "queries", "measured/s", "fitted/s", "mean ms"
    );
    for l in &c.levels {
        println!(
            "{:>11}  {:>9}  {:>10.1}  {:>10.1}  {:>9.2}",
            l.concurrency, l.queries, l.throughput_per_s, l.fitted_per_s, l.mean_ms
        );
    }
    eprintln!("wrote {}", args.out.display());
    Ok(super::exit_code::OK)
}
