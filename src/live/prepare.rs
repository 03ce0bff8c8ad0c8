//! `pooltune live prepare`: pgbench-style tables for statement workloads
//! (`workloads/pgbench-*.toml`), as `pgbench -i` makes them: 100000 *
//! scale accounts, 10 * scale tellers, scale branches, an empty history.

use serde::Serialize;

use super::conninfo::Target;
use super::driver::error_text;
use super::LiveError;

/// The tables, in the order they are reported.
pub const TABLES: [&str; 4] = [
    "pgbench_accounts",
    "pgbench_branches",
    "pgbench_tellers",
    "pgbench_history",
];

/// Accounts per unit of scale (as pgbench).
pub const ACCOUNTS_PER_SCALE: i64 = 100_000;

/// The largest scale: account ids are `integer`s (as in pgbench).
pub const MAX_SCALE: u32 = 20_000;

/// What `prepare` found or did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prepared {
    /// `user@host:port/dbname`.
    pub database: String,
    /// False: the tables were there already (nothing changed).
    pub created: bool,
    /// The scale made, or found (rows of `pgbench_branches`; 0 when it is missing).
    pub scale: i64,
    /// Tables found (or made) with their rows: exact for the ones made,
    /// `count(*)` for branches and tellers when found, the planner's
    /// estimate for accounts and history when found (a count of a large
    /// table would take long).
    pub tables: Vec<(String, i64)>,
    /// Tables of the set that do not exist (when found, not made).
    pub missing: Vec<String>,
}

fn failed(target: &Target, what: &str, e: &tokio_postgres::Error) -> LiveError {
    LiveError::Connect {
        target: target.describe().to_string(),
        message: format!("{what}: {}", target.redact(&error_text(e))),
    }
}

/// Creates the tables (one transaction: all or nothing), then analyzes
/// them. When any of them exists and `force` is false, changes nothing and
/// reports what is there; with `force`, drops and recreates them.
pub async fn prepare(target: &Target, scale: u32, force: bool) -> Result<Prepared, LiveError> {
    if !(1..=MAX_SCALE).contains(&scale) {
        return Err(LiveError::Target(format!(
            "--scale must be from 1 to {MAX_SCALE} (account ids are integers), got {scale}"
        )));
    }
    let (mut client, connection) = target
        .config()
        .connect(target.tls())
        .await
        .map_err(|e| failed(target, "connect", &e))?;
    let task = tokio::spawn(connection);
    let result = run(target, &mut client, scale, force).await;
    drop(client);
    let _ = task.await;
    result
}

async fn existing(client: &tokio_postgres::Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let names: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c \
             WHERE c.relname = ANY($1) AND c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid)",
            &[&names],
        )
        .await?;
    let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(TABLES
        .iter()
        .filter(|t| found.iter().any(|f| f == *t))
        .map(|t| t.to_string())
        .collect())
}

async fn run(
    target: &Target,
    client: &mut tokio_postgres::Client,
    scale: u32,
    force: bool,
) -> Result<Prepared, LiveError> {
    let found = existing(client)
        .await
        .map_err(|e| failed(target, "look for the tables", &e))?;
    if !found.is_empty() && !force {
        let mut tables = Vec::new();
        let mut found_scale = 0;
        for t in &found {
            // Table names are our constants, never input.
            let sql = if *t == "pgbench_branches" || *t == "pgbench_tellers" {
                format!("SELECT count(*) FROM {t}")
            } else {
                format!("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = '{t}'::regclass")
            };
            let n: i64 = client
                .query_one(sql.as_str(), &[])
                .await
                .map_err(|e| failed(target, &format!("count {t}"), &e))?
                .get(0);
            if *t == "pgbench_branches" {
                found_scale = n;
            }
            tables.push((t.clone(), n));
        }
        return Ok(Prepared {
            database: target.describe().to_string(),
            created: false,
            scale: found_scale,
            tables,
            missing: TABLES
                .iter()
                .filter(|t| !found.iter().any(|f| f == *t))
                .map(|t| t.to_string())
                .collect(),
        });
    }
    let n = i64::from(scale);
    let tx = client
        .transaction()
        .await
        .map_err(|e| failed(target, "begin", &e))?;
    let ddl = "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
        CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
        CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) WITH (fillfactor = 100);
        CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) WITH (fillfactor = 100);
        CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) WITH (fillfactor = 100);";
    tx.batch_execute(ddl)
        .await
        .map_err(|e| failed(target, "create the tables", &e))?;
    // Filled before the primary keys are added, as pgbench does (faster).
    let fills: [(&str, &str); 3] = [
        (
            "pgbench_branches",
            "INSERT INTO pgbench_branches (bid, bbalance) SELECT b, 0 FROM generate_series(1, $1::bigint) b",
        ),
        (
            "pgbench_tellers",
            "INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT t, (t - 1) / 10 + 1, 0 FROM generate_series(1, 10 * $1::bigint) t",
        ),
        (
            "pgbench_accounts",
            "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, 100000 * $1::bigint) a",
        ),
    ];
    let mut rows = Vec::new();
    for (table, sql) in fills {
        let k = tx
            .execute(sql, &[&n])
            .await
            .map_err(|e| failed(target, &format!("fill {table}"), &e))?;
        rows.push((table.to_string(), k as i64));
    }
    tx.batch_execute(
        "ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid);
         ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid);
         ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid);",
    )
    .await
    .map_err(|e| failed(target, "add the primary keys", &e))?;
    tx.commit()
        .await
        .map_err(|e| failed(target, "commit", &e))?;
    client
        .batch_execute(
            "ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history",
        )
        .await
        .map_err(|e| failed(target, "analyze", &e))?;
    let by = |t: &str| rows.iter().find(|(n, _)| n == t).map_or(0, |r| r.1);
    Ok(Prepared {
        database: target.describe().to_string(),
        created: true,
        scale: n,
        tables: TABLES.iter().map(|t| (t.to_string(), by(t))).collect(),
        missing: Vec::new(),
    })
}
