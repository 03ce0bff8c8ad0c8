//! An ephemeral PostgreSQL cluster for the live tests.
//!
//! [`PgCluster::start`] finds `initdb` and `pg_ctl` (on `PATH`, else the
//! newest `/usr/lib/postgresql/*/bin`, else `/usr/local/pgsql/bin`), creates a
//! cluster in a fresh temporary directory, starts it on a free loopback port
//! and stops it when dropped (also when the test panics). `initdb` refuses to
//! run as root, so as root the cluster belongs to the unprivileged user
//! `pooltune-test` (created with `useradd` if absent) and every server
//! command runs through `runuser`.
//!
//! TCP connections authenticate with SCRAM and a per-cluster sentinel
//! password (so tests can grep every output for it); the local socket trusts.
//!
//! Without PostgreSQL binaries, [`PgCluster::start`] prints a loud banner and
//! returns `None` (the test then returns early, i.e. skips); with
//! `POOLTUNE_REQUIRE_PG=1` (set by `.ci/run`) it panics instead.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

/// The unprivileged owner of test clusters when the tests run as root.
pub const TEST_USER: &str = "pooltune-test";

/// A running throwaway cluster; stopped and deleted on drop.
pub struct PgCluster {
    bin: PathBuf,
    /// `Some(user)` when server commands run as that user (tests run as root).
    run_as: Option<String>,
    dir: TempDir,
    pub port: u16,
    pub password: String,
    pub user: &'static str,
    /// The server has a certificate and refuses unencrypted TCP.
    pub tls: bool,
    /// Set once the server was stopped (by a test or by drop).
    stopped: std::sync::atomic::AtomicBool,
    /// Serialises live tests: they measure timing on a 2-core machine.
    _serial: MutexGuard<'static, ()>,
}

/// Live tests run one at a time: each measures real timings, and two clusters
/// plus two clients on two cores would disturb each other's measurements.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    let lock = LOCK.get_or_init(|| Mutex::new(()));
    // A test that panicked while holding the lock poisons it; the lock only
    // orders tests, so the next one may proceed.
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes to the real standard error, past the test harness's capture, so a
/// skip is seen even when the tests pass.
fn loud(msg: &str) {
    let bar = "!".repeat(78);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n{bar}\n{msg}\n{bar}\n");
}

fn required() -> bool {
    std::env::var("POOLTUNE_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// The directory holding `initdb` and `pg_ctl`, if any. `POOLTUNE_PG_BIN`,
/// when set, is the only place looked at (a specific installation).
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("POOLTUNE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return has_both(&dir).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_both(&d) {
                return Some(d);
            }
        }
    }
    // Debian and Ubuntu: /usr/lib/postgresql/<major>/bin; take the newest.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((major, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Some(bin);
    }
    let local = PathBuf::from("/usr/local/pgsql/bin");
    has_both(&local).then_some(local)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure `TEST_USER` exists (as root); idempotent, safe across threads.
fn ensure_test_user() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let exists = || {
            Command::new("id")
                .arg("-u")
                .arg(TEST_USER)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if exists() {
            return Ok(());
        }
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(TEST_USER)
            .output()
            .map_err(|e| format!("useradd: {e}"))?;
        // Another test process may have created it meanwhile.
        if out.status.success() || exists() {
            Ok(())
        } else {
            Err(format!(
                "useradd {TEST_USER} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    })
    .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn check(what: &str, out: std::io::Result<Output>) -> Result<Output, String> {
    let out = out.map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl PgCluster {
    /// Starts a cluster, or returns `None` (after a loud message) when no
    /// PostgreSQL is installed and `POOLTUNE_REQUIRE_PG` is not 1.
    pub fn start(test: &str) -> Option<PgCluster> {
        Self::start_with(test, false)
    }

    /// Like [`PgCluster::start`]; with `tls`, the server has a self-signed
    /// certificate (made with `openssl`) and refuses TCP connections that
    /// are not encrypted (`hostnossl ... reject`).
    pub fn start_with(test: &str, tls: bool) -> Option<PgCluster> {
        let Some(bin) = find_bin_dir() else {
            let msg = format!(
                "SKIPPING live test `{test}`: no PostgreSQL server binaries (initdb, pg_ctl) on PATH\n\
                 or in /usr/lib/postgresql/*/bin (or POOLTUNE_PG_BIN). Install them\n\
                 (Debian: apt-get install postgresql)\n\
                 or set POOLTUNE_REQUIRE_PG=1 to make this a failure."
            );
            if required() {
                panic!("POOLTUNE_REQUIRE_PG=1 but {msg}");
            }
            loud(&msg);
            return None;
        };
        let serial = serial();
        match Self::try_start(&bin, serial, tls) {
            Ok(c) => Some(c),
            Err(e) => panic!(
                "cannot start a PostgreSQL test cluster from {}: {e}",
                bin.display()
            ),
        }
    }

    fn try_start(
        bin: &Path,
        serial: MutexGuard<'static, ()>,
        tls: bool,
    ) -> Result<PgCluster, String> {
        let run_as = if is_root() {
            ensure_test_user()?;
            Some(TEST_USER.to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("pooltune-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        // A sentinel: unique, and easy to grep for in every output.
        let password = format!(
            "Sentinel-PW-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
                .trim_start_matches("pooltune-pg-")
        );
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).map_err(|e| format!("pwfile: {e}"))?;
        std::fs::create_dir(dir.path().join("sock")).map_err(|e| format!("sock dir: {e}"))?;
        let mut cluster = PgCluster {
            bin: bin.to_path_buf(),
            run_as,
            dir,
            port: 0,
            password,
            user: "postgres",
            stopped: std::sync::atomic::AtomicBool::new(false),
            tls,
            _serial: serial,
        };
        if let Some(user) = &cluster.run_as {
            check(
                "chown",
                Command::new("chown")
                    .arg("-R")
                    .arg(user)
                    .arg(cluster.dir.path())
                    .output(),
            )?;
        }
        let data = cluster.data_dir();
        let mut initdb = cluster.server_cmd("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"]);
        check("initdb", initdb.output())?;
        std::fs::remove_file(&pwfile).map_err(|e| format!("pwfile: {e}"))?;
        if tls {
            cluster.make_tls()?;
        }
        // A port can be taken between probing and binding: retry a few times.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn server_cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A self-signed certificate for the server, and pg_hba.conf rules that
    /// refuse unencrypted TCP (first match wins: they go first).
    fn make_tls(&self) -> Result<(), String> {
        let data = self.data_dir();
        let (crt, key) = (data.join("server.crt"), data.join("server.key"));
        check(
            "openssl req",
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&crt)
                .output(),
        )?;
        check("chmod", Command::new("chmod").arg("600").arg(&key).output())?;
        if let Some(user) = &self.run_as {
            check(
                "chown",
                Command::new("chown").arg(user).arg(&key).arg(&crt).output(),
            )?;
        }
        let hba = data.join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).map_err(|e| format!("pg_hba.conf: {e}"))?;
        std::fs::write(
            &hba,
            format!("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n{old}"),
        )
        .map_err(|e| format!("pg_hba.conf: {e}"))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=60 \
             -c shared_buffers=32MB",
            self.port,
            self.socket_dir().display()
        );
        if self.tls {
            opts.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let mut c = self.server_cmd("pg_ctl");
        c.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "30", "-o", &opts, "start"]);
        check("pg_ctl start", c.output()).map(|_| ()).map_err(|e| {
            let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Stops the server at once (`-m immediate`); used by drop and fault tests.
    pub fn stop(&self) -> Result<(), String> {
        if self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let mut c = self.server_cmd("pg_ctl");
        c.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        check("pg_ctl stop", c.output()).map(|_| ())
    }

    /// Starts a server stopped with [`PgCluster::stop`] again, on the same
    /// port with the same settings (a server that comes up late).
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl_start()?;
        self.stopped
            .store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Restarts the server (`-m fast`: disconnects every client), keeping
    /// its port and settings.
    pub fn restart(&self) -> Result<(), String> {
        let mut c = self.server_cmd("pg_ctl");
        c.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-m", "fast", "-w", "-t", "30", "restart"]);
        check("pg_ctl restart", c.output()).map(|_| ())
    }

    /// A connection URL with the sentinel password (TCP, loopback).
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            self.user, self.password, self.port
        )
    }

    /// A tokio-postgres config for test-side queries.
    pub fn config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user(self.user)
            .password(self.password.as_str())
            .dbname("postgres")
            .application_name("pooltune-test-harness")
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// Runs `sql` (simple protocol, over the local socket, which trusts)
    /// and returns the first column of every row.
    pub fn query(&self, sql: &str) -> Vec<Option<String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut local = tokio_postgres::Config::new();
        local
            .host_path(self.socket_dir())
            .port(self.port)
            .user(self.user)
            .dbname("postgres")
            .application_name("pooltune-test-harness")
            .connect_timeout(Duration::from_secs(10));
        rt.block_on(async {
            let (client, conn) = local
                .connect(tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("harness connect: {e}"));
            let task = tokio::spawn(conn);
            let rows = client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("harness query {sql:?}: {e}"));
            drop(client);
            let _ = task.await;
            rows.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).map(|s| s.to_string()))
                    }
                    _ => None,
                })
                .collect()
        })
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            loud(&format!(
                "pooltune test harness: stopping the cluster failed: {e}"
            ));
        }
    }
}

#[test]
fn the_harness_starts_a_cluster_that_needs_its_password_and_stops_it() {
    let Some(pg) = PgCluster::start("the_harness_starts_a_cluster") else {
        return;
    };
    let version = pg.query("SHOW server_version");
    assert!(
        version[0]
            .as_deref()
            .is_some_and(|v| v.starts_with(char::is_numeric)),
        "{version:?}"
    );
    // TCP connections need the password: a wrong one is refused.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut bad = pg.config();
    bad.password("wrong");
    let err = rt
        .block_on(bad.connect(tokio_postgres::NoTls))
        .err()
        .expect("a wrong password is refused");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err}"
    );
    // Dropping the cluster stops the server and deletes its directory.
    let port = pg.port;
    let dir = pg.dir.path().to_path_buf();
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens on {port}"
    );
}

/// A PgBouncer in front of a [`PgCluster`], run as the cluster's user,
/// stopped when dropped.
pub struct PgBouncer {
    dir: PathBuf,
    url: String,
}

fn find_pgbouncer() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("pgbouncer");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = PathBuf::from("/usr/sbin/pgbouncer");
    p.is_file().then_some(p)
}

impl PgBouncer {
    /// Starts PgBouncer in `pool_mode` ("session" or "transaction") with at
    /// most `server_pool` server connections; `None` (after a loud message)
    /// when it is not installed, unless `POOLTUNE_REQUIRE_PG=1`.
    pub fn start(pg: &PgCluster, test: &str, pool_mode: &str, server_pool: u32) -> Option<Self> {
        let Some(exe) = find_pgbouncer() else {
            let msg = format!(
                "SKIPPING PgBouncer test `{test}`: no `pgbouncer` on PATH or in /usr/sbin\n\
                 (Debian: apt-get install pgbouncer); POOLTUNE_REQUIRE_PG=1 makes this a failure."
            );
            if required() {
                panic!("POOLTUNE_REQUIRE_PG=1 but {msg}");
            }
            loud(&msg);
            return None;
        };
        let dir = pg.dir.path().join(format!("pgbouncer-{pool_mode}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        // The auth file holds the password in plain text: PgBouncer then
        // answers SCRAM from clients and logs in to the server with it.
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"{}\" \"{}\"\n", pg.user, pg.password),
        )
        .unwrap();
        let ini = format!(
            "[databases]\n\
             postgres = host=127.0.0.1 port={pgport} dbname=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = {server_pool}\n\
             max_client_conn = 200\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            pgport = pg.port,
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        if let Some(user) = &pg.run_as {
            check(
                "chown",
                Command::new("chown").arg("-R").arg(user).arg(&dir).output(),
            )
            .unwrap();
        }
        let mut c = match &pg.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        c.arg("-d").arg(dir.join("pgbouncer.ini"));
        check("pgbouncer -d", c.output()).unwrap_or_else(|e| panic!("{e}"));
        let bouncer = PgBouncer {
            url: format!(
                "postgres://{}:{}@127.0.0.1:{port}/postgres",
                pg.user, pg.password
            ),
            dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(bouncer);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(bouncer.dir.join("pgbouncer.log")).unwrap_or_default();
        panic!("PgBouncer did not listen on {port}:\n{log}");
    }

    /// A URL through PgBouncer (with the cluster's sentinel password).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) else {
            return;
        };
        let pid = pid.trim().to_string();
        // SIGTERM: immediate shutdown. Then wait for the process to go.
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            let alive = Command::new("kill")
                .args(["-0", &pid])
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        loud(&format!(
            "pooltune test harness: PgBouncer {pid} did not stop"
        ));
    }
}

/// The pooltune binary with the caller's PG* variables removed, so a live
/// test only ever reaches the cluster it names.
pub fn pooltune() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("pooltune").unwrap();
    // The live driver completes its target from PG* variables: keep the
    // caller's out of the tests.
    for v in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGPASSFILE",
        "PGSSLMODE",
    ] {
        c.env_remove(v);
    }
    c
}
