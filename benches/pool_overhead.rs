//! Pool overhead on a real PostgreSQL: pooltune's [`PoolHandle`] against
//! deadpool-postgres and bb8 (and 8 dedicated connections, no pool), in the
//! same process, on the same database, rounds interleaved.
//!
//! The method is the peer benchmark's (`../shared/peers/poolbench`):
//! - `get`: uncontended acquire + release with no query, ns per op;
//! - `load`: 64 tasks share 8 connections, each looping a prepared
//!   `SELECT 1` (1 s warm-up not recorded): queries/s, acquire and
//!   end-to-end latency percentiles, fewest and most queries per task.
//!
//! Pools are pre-opened (8 connections, the statement prepared on each);
//! no pool validates on checkout (deadpool `RecyclingMethod::Fast`, bb8
//! `test_on_check_out(false)`, pooltune's fixed policy without validation).
//!
//! ```sh
//! cargo bench --bench pool_overhead                       # an ephemeral cluster (as the live tests)
//! POOLTUNE_BENCH_URL=postgres://u:p@host/db cargo bench --bench pool_overhead
//! ```
//! Knobs (environment): `POOLTUNE_BENCH_ROUNDS` (3), `POOLTUNE_BENCH_GET_OPS`
//! (200000), `POOLTUNE_BENCH_LOAD_SECS` (10), `POOLTUNE_BENCH_TASKS` (64),
//! `POOLTUNE_BENCH_POOL` (8). Figures are medians over the rounds (range in
//! parentheses); absolute times vary 10-25 % between runs on a shared
//! machine, so compare within one run.

#![allow(clippy::disallowed_methods)] // a benchmark reads the wall clock

use std::sync::Arc;
use std::time::{Duration, Instant};

use bb8::ManageConnection;
use pooltune::core::lifecycle::Lifecycle;
use pooltune::core::policy::Fixed;
use pooltune::core::pool::PoolConfig;
use pooltune::core::request::Priority;
use pooltune::live::{HandleOptions, PoolHandle, Target};
use pooltune::time::SimDuration;
use tokio_postgres::{Client, NoTls, Statement};

#[allow(dead_code)]
#[path = "../tests/integration/pg_harness.rs"]
mod pg_harness;

const SQL: &str = "SELECT 1";
const SYSTEMS: [&str; 4] = ["pooltune", "deadpool", "bb8", "dedicated"];

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// bb8-postgres has no statement cache: each connection prepares the
/// statement once when it opens (as the peer bench does).
struct StmtManager(bb8_postgres::PostgresConnectionManager<NoTls>);

struct PgConn {
    client: Client,
    stmt: Statement,
}

impl ManageConnection for StmtManager {
    type Connection = PgConn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<PgConn, Self::Error> {
        let client = self.0.connect().await?;
        let stmt = client.prepare(SQL).await?;
        Ok(PgConn { client, stmt })
    }

    async fn is_valid(&self, conn: &mut PgConn) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.client).await
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

enum System {
    Pooltune(PoolHandle),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<StmtManager>),
    Dedicated(Vec<tokio::sync::Mutex<PgConn>>),
}

struct Db {
    url: String,
    config: tokio_postgres::Config,
}

async fn build(name: &str, db: &Db, size: usize) -> System {
    match name {
        "pooltune" => {
            let target = Target::from_env(Some(&db.url)).expect("a valid URL");
            let config = PoolConfig {
                min: size as u32,
                max: size as u32,
                initial: size as u32,
                acquire_timeout: [SimDuration::from_secs(30); 3],
                max_waiters: u32::MAX,
                lifecycle: Lifecycle::default(),
            };
            let options = HandleOptions {
                prepare: vec![SQL.to_string()],
                ..HandleOptions::default()
            };
            let pool = PoolHandle::connect(target, config, Box::new(Fixed), options)
                .await
                .expect("pooltune pool");
            System::Pooltune(pool)
        }
        "deadpool" => {
            use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
            let mgr = Manager::from_config(
                db.config.clone(),
                NoTls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            let pool = Pool::builder(mgr).max_size(size).build().unwrap();
            let mut held = Vec::new();
            for _ in 0..size {
                let c = pool.get().await.unwrap();
                let st = c.prepare_cached(SQL).await.unwrap();
                c.query(&st, &[]).await.unwrap();
                held.push(c);
            }
            drop(held);
            System::Deadpool(pool)
        }
        "bb8" => {
            let mgr = StmtManager(bb8_postgres::PostgresConnectionManager::new(
                db.config.clone(),
                NoTls,
            ));
            let pool = bb8::Pool::builder()
                .max_size(size as u32)
                .test_on_check_out(false)
                .build(mgr)
                .await
                .unwrap();
            let mut held = Vec::new();
            for _ in 0..size {
                let c = pool.get().await.unwrap();
                c.client.query(&c.stmt, &[]).await.unwrap();
                held.push(c);
            }
            drop(held);
            System::Bb8(pool)
        }
        "dedicated" => {
            let mut v = Vec::new();
            for _ in 0..size {
                let (client, conn) = db.config.connect(NoTls).await.expect("connect");
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let stmt = client.prepare(SQL).await.unwrap();
                v.push(tokio::sync::Mutex::new(PgConn { client, stmt }));
            }
            System::Dedicated(v)
        }
        other => panic!("unknown system {other}"),
    }
}

async fn teardown(sys: System) {
    if let System::Pooltune(p) = &sys {
        let s = p.stats();
        assert_eq!(
            s.arrived,
            s.completed + s.in_flight,
            "pooltune accounting: {s:?}"
        );
        p.close(Duration::from_secs(5)).await;
    }
    drop(sys);
}

/// One acquire + SELECT 1 + release: (acquire ns, end-to-end ns).
async fn one_op(sys: &System, shard: usize) -> (u64, u64) {
    let t0 = Instant::now();
    let t1;
    let rows = match sys {
        System::Pooltune(p) => {
            let c = p.get(Priority::Normal).await.unwrap();
            t1 = Instant::now();
            c.query(c.statement(0), &[]).await.unwrap()
        }
        System::Deadpool(p) => {
            let c = p.get().await.unwrap();
            t1 = Instant::now();
            let st = c.prepare_cached(SQL).await.unwrap();
            c.query(&st, &[]).await.unwrap()
        }
        System::Bb8(p) => {
            let c = p.get().await.unwrap();
            t1 = Instant::now();
            c.client.query(&c.stmt, &[]).await.unwrap()
        }
        System::Dedicated(v) => {
            let c = v[shard % v.len()].lock().await;
            t1 = Instant::now();
            c.client.query(&c.stmt, &[]).await.unwrap()
        }
    };
    let t2 = Instant::now();
    assert_eq!(rows.len(), 1);
    ((t1 - t0).as_nanos() as u64, (t2 - t0).as_nanos() as u64)
}

async fn get_only(sys: &System) {
    match sys {
        System::Pooltune(p) => drop(p.get(Priority::Normal).await.unwrap()),
        System::Deadpool(p) => drop(p.get().await.unwrap()),
        System::Bb8(p) => drop(p.get().await.unwrap()),
        System::Dedicated(v) => drop(v[0].lock().await),
    }
}

/// Uncontended acquire + release: ns per op.
async fn get_bench(sys: &System, n: usize) -> f64 {
    for _ in 0..(n / 10).max(100) {
        get_only(sys).await;
    }
    let start = Instant::now();
    for _ in 0..n {
        get_only(sys).await;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

#[derive(Clone, Copy, Debug, Default)]
struct Load {
    tps: f64,
    acq_p50: f64,
    acq_p99: f64,
    acq_p999: f64,
    acq_max: f64,
    e2e_p50: f64,
    e2e_p99: f64,
    ops_min: f64,
    ops_max: f64,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn load_bench(sys: Arc<System>, tasks: usize, secs: f64) -> Load {
    let mut out = Load::default();
    for (warm, dur) in [(true, 1.0), (false, secs)] {
        let start = Instant::now() + Duration::from_millis(100);
        let deadline = start + Duration::from_secs_f64(dur);
        let mut hs = Vec::new();
        for i in 0..tasks {
            let sys = sys.clone();
            hs.push(tokio::spawn(async move {
                let mut acq = Vec::with_capacity(1 << 15);
                let mut e2e = Vec::with_capacity(1 << 15);
                tokio::time::sleep_until(start.into()).await;
                while Instant::now() < deadline {
                    let (a, e) = one_op(&sys, i).await;
                    acq.push(a);
                    e2e.push(e);
                }
                (acq, e2e)
            }));
        }
        let (mut acq, mut e2e, mut per_task) = (Vec::new(), Vec::new(), Vec::new());
        for h in hs {
            let (a, e) = h.await.unwrap();
            per_task.push(e.len());
            acq.extend(a);
            e2e.extend(e);
        }
        if warm {
            continue;
        }
        acq.sort_unstable();
        e2e.sort_unstable();
        out = Load {
            tps: e2e.len() as f64 / secs,
            acq_p50: pct(&acq, 0.5),
            acq_p99: pct(&acq, 0.99),
            acq_p999: pct(&acq, 0.999),
            acq_max: pct(&acq, 1.0),
            e2e_p50: pct(&e2e, 0.5),
            e2e_p99: pct(&e2e, 0.99),
            ops_min: *per_task.iter().min().unwrap() as f64,
            ops_max: *per_task.iter().max().unwrap() as f64,
        };
    }
    out
}

/// "median (min-max)".
fn med(v: &[f64], digits: usize) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s[s.len() / 2];
    if s.len() == 1 {
        return format!("{m:.digits$}");
    }
    format!(
        "{m:.digits$} ({:.digits$}-{:.digits$})",
        s[0],
        s[s.len() - 1]
    )
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() {
    let rounds: usize = env_or("POOLTUNE_BENCH_ROUNDS", 3);
    let get_ops: usize = env_or("POOLTUNE_BENCH_GET_OPS", 200_000);
    let secs: f64 = env_or("POOLTUNE_BENCH_LOAD_SECS", 10.0);
    let tasks: usize = env_or("POOLTUNE_BENCH_TASKS", 64);
    let size: usize = env_or("POOLTUNE_BENCH_POOL", 8);
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let (_cluster, db) = match std::env::var("POOLTUNE_BENCH_URL") {
        Ok(url) => {
            let config: tokio_postgres::Config = url.parse().expect("POOLTUNE_BENCH_URL");
            (None, Db { url, config })
        }
        Err(_) => {
            let Some(pg) = pg_harness::PgCluster::start("pool_overhead") else {
                return;
            };
            let db = Db {
                url: format!("{}?sslmode=disable", pg.url()),
                config: pg.config(),
            };
            (Some(pg), db)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut gets: Vec<Vec<f64>> = vec![Vec::new(); SYSTEMS.len()];
    let mut loads: Vec<Vec<Load>> = vec![Vec::new(); SYSTEMS.len()];
    rt.block_on(async {
        for r in 1..=rounds {
            for (i, name) in SYSTEMS.iter().enumerate() {
                let sys = build(name, &db, size).await;
                let ns = get_bench(&sys, get_ops).await;
                eprintln!("round {r} get  {name:<10} {ns:8.1} ns/op");
                gets[i].push(ns);
                teardown(sys).await;
            }
            for (i, name) in SYSTEMS.iter().enumerate() {
                let sys = Arc::new(build(name, &db, size).await);
                let l = load_bench(sys.clone(), tasks, secs).await;
                eprintln!(
                    "round {r} load {name:<10} {:8.0} tps acq p50 {:.0} p99.9 {:.0} max {:.0} us",
                    l.tps, l.acq_p50, l.acq_p999, l.acq_max
                );
                loads[i].push(l);
                let sys = Arc::try_unwrap(sys).unwrap_or_else(|_| panic!("tasks ended"));
                teardown(sys).await;
            }
        }
    });
    println!(
        "\npool overhead: {rounds} rounds, median (range); uncontended get+release {get_ops} ops; \
         {tasks} tasks on {size} connections, prepared SELECT 1, {secs} s"
    );
    println!("\n| system | get+release ns/op | ratio to deadpool |");
    println!("|---|---|---|");
    let dp_get = median(&gets[1]);
    for (i, name) in SYSTEMS.iter().enumerate() {
        println!(
            "| {name} | {} | {:.2} |",
            med(&gets[i], 1),
            median(&gets[i]) / dp_get
        );
    }
    println!(
        "\n| system | tps | tps / deadpool | acq p50 us | acq p99 us | acq p99.9 us | acq max us | e2e p50 us | e2e p99 us | ops/task min-max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let dp_tps = median(&loads[1].iter().map(|l| l.tps).collect::<Vec<_>>());
    for (i, name) in SYSTEMS.iter().enumerate() {
        let f = |g: fn(&Load) -> f64| loads[i].iter().map(g).collect::<Vec<_>>();
        println!(
            "| {name} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {:.0}-{:.0} |",
            med(&f(|l| l.tps), 0),
            median(&f(|l| l.tps)) / dp_tps,
            med(&f(|l| l.acq_p50), 1),
            med(&f(|l| l.acq_p99), 1),
            med(&f(|l| l.acq_p999), 1),
            med(&f(|l| l.acq_max), 0),
            med(&f(|l| l.e2e_p50), 1),
            med(&f(|l| l.e2e_p99), 1),
            median(&f(|l| l.ops_min)),
            median(&f(|l| l.ops_max)),
        );
    }
}
