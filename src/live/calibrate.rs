//! `pooltune live calibrate`: measures the database the simulator is to
//! predict, and writes the result as a workload `[database]` section.
//!
//! 1. **Connect latency**: `connects` sequential connects, each as the pool
//!    does it (connect, authenticate, prepare the statement), then closed.
//!    Fitted as a lognormal (median and sigma of ln x).
//! 2. **Per-query overhead**: `queries` sequential round trips of the live
//!    statement, half with a zero service time (`pg_sleep(0)`: the round
//!    trip), half with service times spread over 5-15 ms (measured minus
//!    requested): what a live query holds its connection beyond its service
//!    time. The spread matters: `pg_sleep` waits in whole milliseconds
//!    (rounded up), so a whole-millisecond probe would hide about 0.5 ms of
//!    overshoot that a trace's fractional service times pay. The mean of
//!    the 5-15 ms probes' overhead is written as `database.query_overhead`,
//!    the round trip the simulator adds to each query's hold time (about
//!    1 ms on the project's machine, 1-2 % of a 60 ms query).
//! 3. **Throughput vs concurrency** for a CPU-bound statement
//!    (`SELECT count(*) FROM generate_series(1, $1)`, sized to take about
//!    `cpu_query` alone), closed loop at each concurrency level, and the
//!    Universal Scalability Law fitted to it:
//!    `X(c) = lambda c / (1 + sigma (c - 1) + kappa c (c - 1))` (least
//!    squares on the linearised form `c X(1) / X(c) - 1 = sigma (c - 1) +
//!    kappa c (c - 1)`, both coefficients >= 0). This is the simulator's
//!    contention model for CPU-bound queries; `pg_sleep` uses no CPU, so for
//!    the live driver's default statement the right model is no contention,
//!    and the written section says so.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use super::clock::Stopwatch;
use super::conninfo::Target;
use super::{LiveError, STATEMENT};
use crate::core::metrics::{DistributionMs, Latency};
use crate::time::SimDuration;

/// Schema of `calibration.json`.
pub const CALIBRATION_SCHEMA: &str = "pooltune.calibration/1";

/// The CPU-bound statement (bound parameter: rows to count).
pub const CPU_STATEMENT: &str = "SELECT count(*) FROM generate_series(1::bigint, $1)";

#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    pub connects: u32,
    pub queries: u32,
    /// Concurrency levels for the throughput curve (ascending, from 1).
    pub levels: Vec<u32>,
    /// How long each level runs (after a short warm-up).
    pub level_duration: Duration,
    /// Target duration of one CPU-bound query alone.
    pub cpu_query: Duration,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions {
            connects: 50,
            queries: 500,
            levels: vec![1, 2, 3, 4, 6, 8, 12, 16],
            level_duration: Duration::from_secs(3),
            cpu_query: Duration::from_millis(5),
        }
    }
}

/// A lognormal fit: median and sigma of ln x.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LognormalFit {
    pub median_ms: f64,
    pub sigma: f64,
}

/// One concurrency level of the throughput curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub concurrency: u32,
    pub queries: u64,
    pub throughput_per_s: f64,
    pub mean_ms: f64,
    /// The USL fit's throughput at this level.
    pub fitted_per_s: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// Throughput of one client alone (queries per second).
    pub lambda_per_s: f64,
    pub sigma: f64,
    pub kappa: f64,
    /// Concurrency of peak throughput, sqrt((1 - sigma) / kappa) (none when kappa = 0).
    pub peak_concurrency: Option<f64>,
    /// Coefficient of determination of the fit on throughput.
    pub r_squared: f64,
}

/// What `calibrate` measured (`calibration.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub schema: String,
    pub pooltune_version: String,
    pub database: String,
    pub server_version: String,
    pub max_connections: u32,
    pub superuser_reserved_connections: u32,
    /// Connect + authenticate + prepare, as the pool opens a connection.
    pub connect_ms: DistributionMs,
    pub connect_fit: LognormalFit,
    /// `pg_sleep(0)` round trip on an open connection.
    pub round_trip_ms: DistributionMs,
    /// `pg_sleep(s)` round trip minus s, for s spread over 5-15 ms.
    pub sleep_overhead_ms: DistributionMs,
    pub cpu_statement: String,
    pub cpu_rows: i64,
    pub levels: Vec<Level>,
    pub usl: UslFit,
}

/// Least-squares USL fit to (concurrency, throughput) points; the point at
/// concurrency 1 gives lambda.
pub fn fit_usl(points: &[(u32, f64)]) -> UslFit {
    let lambda = points
        .iter()
        .find(|(c, _)| *c == 1)
        .map(|p| p.1)
        .unwrap_or_else(|| points.first().map_or(0.0, |p| p.1 / p.0 as f64));
    // y = sigma a + kappa b with a = c - 1, b = c (c - 1).
    let rows: Vec<(f64, f64, f64)> = points
        .iter()
        .filter(|(c, x)| *c > 1 && *x > 0.0)
        .map(|&(c, x)| {
            let c = c as f64;
            (c - 1.0, c * (c - 1.0), c * lambda / x - 1.0)
        })
        .collect();
    let (mut saa, mut sab, mut sbb, mut say, mut sby) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(a, b, y) in &rows {
        saa += a * a;
        sab += a * b;
        sbb += b * b;
        say += a * y;
        sby += b * y;
    }
    let det = saa * sbb - sab * sab;
    let (mut sigma, mut kappa) = if det.abs() > 1e-12 {
        ((say * sbb - sby * sab) / det, (saa * sby - sab * say) / det)
    } else {
        (0.0, 0.0)
    };
    if kappa < 0.0 || !kappa.is_finite() {
        kappa = 0.0;
        sigma = if saa > 0.0 { say / saa } else { 0.0 };
    }
    if sigma < 0.0 || !sigma.is_finite() {
        sigma = 0.0;
        kappa = if sbb > 0.0 { (sby / sbb).max(0.0) } else { 0.0 };
    }
    let usl = |c: f64| lambda * c / (1.0 + sigma * (c - 1.0) + kappa * c * (c - 1.0));
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len().max(1) as f64;
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let ss_res: f64 = points.iter().map(|p| (p.1 - usl(p.0 as f64)).powi(2)).sum();
    UslFit {
        lambda_per_s: lambda,
        sigma,
        kappa,
        peak_concurrency: (kappa > 0.0 && sigma < 1.0).then(|| ((1.0 - sigma) / kappa).sqrt()),
        r_squared: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            1.0
        },
    }
}

impl UslFit {
    pub fn throughput(&self, c: u32) -> f64 {
        let c = c as f64;
        self.lambda_per_s * c / (1.0 + self.sigma * (c - 1.0) + self.kappa * c * (c - 1.0))
    }
}

/// Lognormal fit of positive samples (ns): median = exp(mean ln x), sigma = sd(ln x).
pub fn fit_lognormal(samples_ns: &[u64]) -> LognormalFit {
    let logs: Vec<f64> = samples_ns
        .iter()
        .filter(|&&x| x > 0)
        .map(|&x| (x as f64).ln())
        .collect();
    if logs.is_empty() {
        return LognormalFit {
            median_ms: 0.0,
            sigma: 0.0,
        };
    }
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let var = if logs.len() > 1 {
        logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    LognormalFit {
        median_ms: mean.exp() / 1e6,
        sigma: var.sqrt(),
    }
}

async fn open(target: &Target) -> Result<(Client, tokio::task::JoinHandle<()>), LiveError> {
    let (client, conn) = target
        .config()
        .connect(target.tls())
        .await
        .map_err(|e| fail(target, e))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, task))
}

fn fail(target: &Target, e: tokio_postgres::Error) -> LiveError {
    let mut message = e.to_string();
    if let Some(src) = std::error::Error::source(&e) {
        message = format!("{message}: {src}");
    }
    LiveError::Connect {
        target: target.describe().to_string(),
        message: target.redact(&message),
    }
}

async fn close(client: Client, task: tokio::task::JoinHandle<()>) {
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}

/// Runs the three measurements. `progress` receives a line per step.
pub async fn calibrate(
    target: &Target,
    opts: &CalibrateOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Calibration, LiveError> {
    let (client, task) = open(target).await?;
    let server_version = show(&client, "server_version")
        .await
        .map_err(|e| fail(target, e))?;
    let max_connections: u32 = show(&client, "max_connections")
        .await
        .map_err(|e| fail(target, e))?
        .parse()
        .unwrap_or(0);
    let reserved: u32 = show(&client, "superuser_reserved_connections")
        .await
        .map_err(|e| fail(target, e))?
        .parse()
        .unwrap_or(0);

    // 1. Connect latency, as the pool opens a connection.
    progress(&format!("connect latency: {} connects", opts.connects));
    let mut connect = Latency::default();
    let mut connect_ns = Vec::with_capacity(opts.connects as usize);
    for _ in 0..opts.connects {
        let sw = Stopwatch::start();
        let (c, t) = open(target).await?;
        c.prepare_typed(STATEMENT, &[Type::FLOAT8])
            .await
            .map_err(|e| fail(target, e))?;
        let took = sw.elapsed();
        connect.record(took);
        connect_ns.push(took.as_nanos());
        close(c, t).await;
    }

    // 2. Per-query overhead on an open connection.
    progress(&format!(
        "round trips: {} x pg_sleep(0), pg_sleep(5..15 ms)",
        opts.queries
    ));
    let sleep = client
        .prepare_typed(STATEMENT, &[Type::FLOAT8])
        .await
        .map_err(|e| fail(target, e))?;
    let mut rtt = Latency::default();
    let mut sleep_over = Latency::default();
    for i in 0..opts.queries {
        // Odd probes: 5 ms plus a fraction of 10 ms that is not a whole
        // number of milliseconds (golden-ratio steps cover [0, 1) evenly).
        let frac = (f64::from(i) * 0.618_033_988_749_895).fract();
        let secs = if i % 2 == 0 { 0.0 } else { 0.005 + 0.01 * frac };
        let sw = Stopwatch::start();
        client
            .execute(&sleep, &[&secs])
            .await
            .map_err(|e| fail(target, e))?;
        let took = sw.elapsed();
        if i % 2 == 0 {
            rtt.record(took);
        } else {
            let asked = SimDuration::from_secs_f64(secs);
            sleep_over.record(SimDuration(took.0.saturating_sub(asked.0)));
        }
    }

    // 3. Throughput vs concurrency, CPU-bound.
    let cpu = client
        .prepare_typed(CPU_STATEMENT, &[Type::INT8])
        .await
        .map_err(|e| fail(target, e))?;
    let rows = size_cpu_query(&client, &cpu, opts.cpu_query)
        .await
        .map_err(|e| fail(target, e))?;
    close(client, task).await;
    let mut points = Vec::new();
    let mut levels = Vec::new();
    for &c in &opts.levels {
        progress(&format!(
            "throughput: {c} concurrent clients for {:.1} s",
            opts.level_duration.as_secs_f64()
        ));
        let (n, mean_ms) = run_level(target, c, rows, opts.level_duration).await?;
        let x = n as f64 / opts.level_duration.as_secs_f64();
        points.push((c, x));
        levels.push(Level {
            concurrency: c,
            queries: n,
            throughput_per_s: x,
            mean_ms,
            fitted_per_s: 0.0,
        });
    }
    let usl = fit_usl(&points);
    for l in &mut levels {
        l.fitted_per_s = usl.throughput(l.concurrency);
    }
    Ok(Calibration {
        schema: CALIBRATION_SCHEMA.to_string(),
        pooltune_version: env!("CARGO_PKG_VERSION").to_string(),
        database: target.describe().to_string(),
        server_version,
        max_connections,
        superuser_reserved_connections: reserved,
        connect_ms: connect.summary_ms(),
        connect_fit: fit_lognormal(&connect_ns),
        round_trip_ms: rtt.summary_ms(),
        sleep_overhead_ms: sleep_over.summary_ms(),
        cpu_statement: CPU_STATEMENT.to_string(),
        cpu_rows: rows,
        levels,
        usl,
    })
}

/// A server setting (`what` is a constant name, never user input).
async fn show(client: &Client, what: &'static str) -> Result<String, tokio_postgres::Error> {
    client
        .query_one(&format!("SHOW {what}"), &[])
        .await
        .map(|r| r.get::<_, String>(0))
}

/// Rows for the CPU-bound query to take about `target` alone (doubling,
/// then scaling from the last measurement).
async fn size_cpu_query(
    client: &Client,
    stmt: &Statement,
    target: Duration,
) -> Result<i64, tokio_postgres::Error> {
    let mut rows: i64 = 10_000;
    for _ in 0..20 {
        let sw = Stopwatch::start();
        client.query_one(stmt, &[&rows]).await?;
        let took = sw.elapsed().as_secs_f64();
        if took >= target.as_secs_f64() / 4.0 {
            // Median of 3 at the scaled size, to steady the estimate.
            let scaled = ((rows as f64) * target.as_secs_f64() / took).max(1000.0) as i64;
            let mut t = Vec::new();
            for _ in 0..3 {
                let sw = Stopwatch::start();
                client.query_one(stmt, &[&scaled]).await?;
                t.push(sw.elapsed().as_secs_f64());
            }
            t.sort_by(f64::total_cmp);
            return Ok(((scaled as f64) * target.as_secs_f64() / t[1]).max(1000.0) as i64);
        }
        rows *= 2;
    }
    Ok(rows)
}

/// `c` clients loop the CPU-bound query for `duration` (after a warm-up of
/// a tenth of it); returns (queries completed in the window, mean ms).
async fn run_level(
    target: &Target,
    c: u32,
    rows: i64,
    duration: Duration,
) -> Result<(u64, f64), LiveError> {
    let mut conns = Vec::new();
    for _ in 0..c {
        let (client, task) = open(target).await?;
        let stmt = client
            .prepare_typed(CPU_STATEMENT, &[Type::INT8])
            .await
            .map_err(|e| fail(target, e))?;
        conns.push((client, task, stmt));
    }
    let warmup = duration / 10;
    let start = tokio::time::Instant::now();
    let (from, until) = (start + warmup, start + warmup + duration);
    let mut workers = Vec::new();
    for (client, task, stmt) in conns {
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut busy = 0.0f64;
            loop {
                let sw = Stopwatch::start();
                let began = tokio::time::Instant::now();
                let r = client.query_one(&stmt, &[&rows]).await;
                let ended = tokio::time::Instant::now();
                // Counted: queries wholly inside the window [from, until).
                if r.is_err() || ended >= until {
                    close(client, task).await;
                    return r.map(|_| (n, busy));
                }
                if began >= from {
                    n += 1;
                    busy += sw.elapsed().as_secs_f64();
                }
            }
        }));
    }
    let (mut n, mut busy) = (0u64, 0.0f64);
    for w in workers {
        match w.await {
            Ok(Ok((k, b))) => {
                n += k;
                busy += b;
            }
            Ok(Err(e)) => return Err(fail(target, e)),
            Err(e) => return Err(LiveError::Runtime(e.to_string())),
        }
    }
    Ok((n, if n > 0 { busy * 1e3 / n as f64 } else { 0.0 }))
}

/// A duration in the config syntax, rounded to microseconds.
fn dur(ms: f64) -> String {
    let us = (ms * 1000.0).round().max(1.0) as u64;
    SimDuration::from_nanos(us * 1000).to_string()
}

/// The `[database]` section the simulator reads (`contention`: write the
/// USL fit; otherwise no contention, right for `pg_sleep` replays).
pub fn database_table(c: &Calibration, contention: bool) -> toml::Table {
    let mut latency = toml::Table::new();
    latency.insert("kind".into(), "lognormal".into());
    latency.insert("median".into(), dur(c.connect_fit.median_ms).into());
    latency.insert(
        "sigma".into(),
        ((c.connect_fit.sigma * 1e4).round() / 1e4).into(),
    );
    let mut db = toml::Table::new();
    db.insert("connect_latency".into(), latency.into());
    // The mean: what the hold times, hence utilization and queueing, add up.
    db.insert(
        "query_overhead".into(),
        dur(c.sleep_overhead_ms.mean.max(0.0)).into(),
    );
    let usable = c
        .max_connections
        .saturating_sub(c.superuser_reserved_connections)
        .max(1);
    db.insert("max_connections".into(), i64::from(usable).into());
    let (s, k) = if contention {
        (c.usl.sigma, c.usl.kappa)
    } else {
        (0.0, 0.0)
    };
    db.insert("usl_sigma".into(), ((s * 1e6).round() / 1e6).into());
    db.insert("usl_kappa".into(), ((k * 1e6).round() / 1e6).into());
    db
}

/// A comment block describing the calibration (for the TOML files).
pub fn comment(c: &Calibration, contention: bool) -> String {
    let mut s = format!(
        "# Calibrated by `pooltune live calibrate` against {} (PostgreSQL {}).\n\
         # connect (+ auth + prepare): p50 {:.3} ms, p99 {:.3} ms over {} connects;\n\
         #   lognormal fit median {:.3} ms, sigma {:.3}.\n\
         # query round trip (pg_sleep(0)): p50 {:.3} ms; pg_sleep(5..15 ms) overhead mean {:.3} ms\n\
         #   (query_overhead: that mean, added to each query's hold time by the simulator).\n\
         # max_connections {} - {} reserved for superusers.\n",
        c.database,
        c.server_version,
        c.connect_ms.p50,
        c.connect_ms.p99,
        c.connect_ms.count,
        c.connect_fit.median_ms,
        c.connect_fit.sigma,
        c.round_trip_ms.p50,
        c.sleep_overhead_ms.mean,
        c.max_connections,
        c.superuser_reserved_connections,
    );
    s.push_str(&format!(
        "# CPU-bound throughput ({}, {} rows): USL lambda {:.1}/s, sigma {:.4}, kappa {:.5}, R^2 {:.3}.\n",
        c.cpu_statement, c.cpu_rows, c.usl.lambda_per_s, c.usl.sigma, c.usl.kappa, c.usl.r_squared
    ));
    if contention {
        s.push_str("# usl_sigma/usl_kappa: the fit above (for CPU-bound workloads).\n");
    } else {
        s.push_str(
            "# usl_sigma = usl_kappa = 0: the live driver's pg_sleep uses no CPU, so it does not\n\
             # contend; `--contention` writes the CPU-bound fit instead.\n",
        );
    }
    s
}

/// `workload_text` (a workload file) with its `[database]` section replaced
/// by the calibrated one and `-calibrated` appended to its name.
pub fn calibrated_workload(
    workload_text: &str,
    name: &str,
    c: &Calibration,
    contention: bool,
) -> Result<String, String> {
    let mut doc: toml::Table = workload_text.parse().map_err(|e| format!("{e}"))?;
    let base = doc
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or(name)
        .to_string();
    doc.insert("name".into(), format!("{base}-calibrated").into());
    doc.insert("database".into(), database_table(c, contention).into());
    let body = toml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!("{}{body}", comment(c, contention)))
}

/// The `[database]` section alone, as TOML text with its comment.
pub fn database_toml(c: &Calibration, contention: bool) -> String {
    let mut doc = toml::Table::new();
    doc.insert("database".into(), database_table(c, contention).into());
    format!(
        "{}{}",
        comment(c, contention),
        toml::to_string(&doc).expect("a table serializes")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usl_fit_recovers_known_coefficients() {
        let truth = UslFit {
            lambda_per_s: 200.0,
            sigma: 0.05,
            kappa: 0.002,
            peak_concurrency: None,
            r_squared: 1.0,
        };
        let pts: Vec<(u32, f64)> = [1, 2, 4, 8, 16, 32]
            .iter()
            .map(|&c| (c, truth.throughput(c)))
            .collect();
        let fit = fit_usl(&pts);
        assert!((fit.sigma - 0.05).abs() < 1e-9, "{fit:?}");
        assert!((fit.kappa - 0.002).abs() < 1e-9, "{fit:?}");
        assert!((fit.r_squared - 1.0).abs() < 1e-9);
        let peak = fit.peak_concurrency.unwrap();
        assert!((peak - (0.95f64 / 0.002).sqrt()).abs() < 1e-6);
    }

    #[test]
    fn the_usl_fit_never_goes_negative() {
        // Superlinear noise: no negative coefficients.
        let fit = fit_usl(&[(1, 100.0), (2, 205.0), (4, 410.0)]);
        assert!(fit.sigma >= 0.0 && fit.kappa >= 0.0, "{fit:?}");
        // Flat: all contention.
        let fit = fit_usl(&[(1, 100.0), (2, 100.0), (4, 100.0), (8, 100.0)]);
        assert!(fit.sigma > 0.9, "{fit:?}");
    }

    #[test]
    fn the_lognormal_fit_reads_median_and_sigma() {
        let xs: Vec<u64> = [1.0f64, 2.0, 4.0]
            .iter()
            .map(|m| (m * 1e6) as u64)
            .collect();
        let f = fit_lognormal(&xs);
        assert!((f.median_ms - 2.0).abs() < 1e-9, "{f:?}");
        assert!((f.sigma - 2f64.ln()).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn durations_are_written_in_the_config_syntax() {
        assert_eq!(dur(2.1344), "2.134ms");
        assert_eq!(dur(0.0004), "1us");
        assert_eq!(dur(1500.0), "1.5s");
    }
}
