//! `pooltune live run` and `pooltune compare` as a user runs them: outputs,
//! exit codes, Ctrl-C, and the password kept out of everything written.

use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use pooltune::live::LiveReport;
use pooltune::summary::{Summary, SCHEMA};

use crate::live_run::{assert_conserved, assert_no_backends_left, our_backends, write};
use crate::pg_harness::{pooltune, PgCluster};

const WORKLOAD: &str = r#"
name = "live-cli"
duration = "3s"
[arrivals]
kind = "poisson"
rate_per_s = 30.0
[service]
kind = "constant"
value = "30ms"
[priority_mix]
high = 0.3
normal = 0.7
"#;

/// Every file under `dir`, with its text.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((
                p.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned(),
            ));
        }
    }
    out
}

fn assert_secret_free(password: &str, what: &str, text: &str) {
    assert!(
        !text.contains(password),
        "the password appears in {what}:\n{text}"
    );
}

#[test]
fn live_run_writes_the_sim_outputs_and_never_the_password() {
    let Some(pg) = PgCluster::start("live_run_writes_the_sim_outputs") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", WORKLOAD);
    let out_dir = dir.path().join("out");
    // Password in the URL.
    let run = pooltune()
        .current_dir(dir.path())
        .args([
            "live", "run", "--policy", "fixed-10", "--trace", &trace, "--seed", "5",
        ])
        .arg("--database-url")
        .arg(pg.url())
        .arg("--out")
        .arg(&out_dir)
        .args(["--format", "json"])
        .assert()
        .success();
    let o = run.get_output();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_secret_free(&pg.password, "stdout", &stdout);
    assert_secret_free(&pg.password, "stderr", &stderr);
    assert!(
        stderr.contains(&format!("postgres@127.0.0.1:{}/postgres", pg.port)),
        "{stderr}"
    );
    let summary: Summary = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary.schema, SCHEMA);
    assert_eq!(summary.runs[0].policy.name, "fixed-10");
    assert_conserved(&summary.runs[0]);
    assert_eq!(
        summary.runs[0].requests.completed,
        summary.runs[0].requests.arrived
    );
    let written = files(&out_dir);
    let names: Vec<&str> = written
        .iter()
        .map(|(p, _)| Path::new(p).file_name().unwrap().to_str().unwrap())
        .collect();
    for f in ["summary.json", "timeseries.csv", "summary.md", "live.json"] {
        assert!(names.contains(&f), "{f} missing: {names:?}");
    }
    for (path, text) in &written {
        assert_secret_free(&pg.password, path, text);
    }
    let on_disk: Summary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, summary);
    let report: LiveReport =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("live.json")).unwrap()).unwrap();
    assert!(!report.interrupted);
    assert_eq!(report.connect_ms.count, 10);
    let csv = std::fs::read_to_string(out_dir.join("timeseries.csv")).unwrap();
    assert!(csv.starts_with("policy,t_s,"), "{csv}");
    assert!(csv.lines().count() >= 4, "{csv}");

    // Password from PGPASSWORD, compared with the simulator's prediction.
    let sim_dir = dir.path().join("sim");
    pooltune()
        .current_dir(dir.path())
        .args([
            "sim", "run", "--policy", "fixed-10", "--trace", &trace, "--seed", "5",
        ])
        .arg("--out")
        .arg(&sim_dir)
        .assert()
        .success();
    let out2 = dir.path().join("out2");
    let run = pooltune()
        .current_dir(dir.path())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", &pg.password)
        .env("PGDATABASE", "postgres")
        .args([
            "live", "run", "--policy", "fixed-10", "--trace", &trace, "--seed", "5",
        ])
        .arg("--out")
        .arg(&out2)
        .assert()
        .success();
    let o = run.get_output();
    assert_secret_free(&pg.password, "stdout", &String::from_utf8_lossy(&o.stdout));
    assert_secret_free(&pg.password, "stderr", &String::from_utf8_lossy(&o.stderr));
    let cmp = dir.path().join("cmp.json");
    let run = pooltune()
        .arg("compare")
        .arg(&sim_dir)
        .arg(out2.join("summary.json"))
        .arg("--out")
        .arg(&cmp)
        .assert()
        .success();
    let table = String::from_utf8_lossy(&run.get_output().stdout).into_owned();
    assert!(table.contains("policy fixed-10 vs fixed-10"), "{table}");
    assert!(table.contains("throughput_per_s"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cmp).unwrap()).unwrap();
    assert_eq!(json["schema"], "pooltune.compare/1");
    assert_eq!(json["same_trace"], true);
    let arrived = json["runs"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "requests.arrived")
        .unwrap();
    // The same seed: the very same requests.
    assert_eq!(arrived["diff"], 0.0);
    for (path, text) in files(&out2) {
        assert_secret_free(&pg.password, &path, &text);
    }
    assert_no_backends_left(&pg);
}

#[test]
fn a_wrong_password_or_no_server_is_a_clear_error_with_exit_code_6() {
    let Some(pg) = PgCluster::start("a_wrong_password_is_a_clear_error") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", WORKLOAD);
    let wrong = format!("{}-but-wrong", pg.password);
    let url = format!("postgres://postgres:{wrong}@127.0.0.1:{}/postgres", pg.port);
    let run = pooltune()
        .current_dir(dir.path())
        .args(["live", "run", "--trace", &trace, "--no-write"])
        .arg("--database-url")
        .arg(&url)
        .assert()
        .code(6);
    let o = run.get_output();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot connect to postgres@127.0.0.1:{}", pg.port)),
        "{stderr}"
    );
    assert_secret_free(&wrong, "stderr", &stderr);
    assert_secret_free(&pg.password, "stderr", &stderr);
    assert_secret_free(&wrong, "stdout", &String::from_utf8_lossy(&o.stdout));
    // Nobody listening.
    pg.stop().unwrap();
    let run = pooltune()
        .current_dir(dir.path())
        .args(["live", "run", "--trace", &trace, "--no-write"])
        .arg("--database-url")
        .arg(pg.url())
        .assert()
        .code(6);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(stderr.contains("cannot connect to"), "{stderr}");
    assert_secret_free(&pg.password, "stderr", &stderr);
    // A malformed URL is a usage problem (3), and its text is not echoed.
    let run = pooltune()
        .args(["live", "run", "--no-write", "--database-url"])
        .arg("postgres://u:Hush-Hush@127.0.0.1:notaport/db")
        .assert()
        .code(3);
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    assert!(stderr.contains("invalid --database-url"), "{stderr}");
    assert_secret_free("Hush-Hush", "stderr", &stderr);
}

#[test]
fn ctrl_c_stops_early_accounts_for_everything_and_closes_connections() {
    let Some(pg) = PgCluster::start("ctrl_c_stops_early") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    // 60 s of long queries: it must be the interrupt that ends it.
    let trace = write(
        dir.path(),
        "w.toml",
        &WORKLOAD
            .replace("duration = \"3s\"", "duration = \"60s\"")
            .replace("value = \"30ms\"", "value = \"400ms\""),
    );
    let out_dir = dir.path().join("out");
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("pooltune"))
        .current_dir(dir.path())
        .args(["live", "run", "--policy", "fixed-10", "--trace", &trace])
        .arg("--database-url")
        .arg(pg.url())
        .arg("--out")
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the pool is up and busy, then press Ctrl-C.
    // (Polling by count: the tests, like the core, do not read the clock.)
    for _ in 0..200 {
        if our_backends(&pg) >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let kill = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut status = None;
    for _ in 0..400 {
        status = child.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = child.kill();
        panic!("pooltune live run did not stop within 20 s of Ctrl-C");
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted after"), "{stderr}");
    let summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    let r = &summary.runs[0];
    assert_conserved(r);
    assert!(r.sim_duration_s < 30.0, "{}", r.sim_duration_s);
    assert!(r.requests.completed > 0, "{:?}", r.requests);
    let report: LiveReport =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("live.json")).unwrap()).unwrap();
    assert!(report.interrupted);
    // 400 ms queries at 30/s on 10 connections: some were running.
    assert!(
        r.requests.in_flight_at_end > 0 && report.queries_cancelled > 0,
        "{:?} {report:?}",
        r.requests
    );
    assert_eq!(report.connections_aborted, 0);
    assert_no_backends_left(&pg);
    for (path, text) in files(&out_dir) {
        assert_secret_free(&pg.password, &path, &text);
    }
}

/// Waits up to `polls` x 50 ms for `child` to exit; returns its output and
/// how many polls it took (`None`: still running, killed).
fn wait_for_exit(
    mut child: std::process::Child,
    polls: u32,
) -> Option<(std::process::Output, u32)> {
    for n in 0..polls {
        if child.try_wait().unwrap().is_some() {
            return Some((child.wait_with_output().unwrap(), n));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn spawn_live_run(dir: &Path, args: &[&str], url: &str) -> std::process::Child {
    StdCommand::new(assert_cmd::cargo::cargo_bin("pooltune"))
        .current_dir(dir)
        .args(["live", "run"])
        .args(args)
        .arg("--database-url")
        .arg(url)
        .env_remove("PGPASSWORD")
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGDATABASE")
        .env_remove("PGPASSFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn live_server_down_at_start_exits_6_quickly_naming_host_and_port() {
    let Some(pg) = PgCluster::start("live_server_down_at_start") else {
        return;
    };
    pg.stop().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", WORKLOAD);
    let child = spawn_live_run(
        dir.path(),
        &["--trace", &trace, "--no-write", "--policy", "fixed-10"],
        &pg.url(),
    );
    let (out, polls) = wait_for_exit(child, 200).expect("exits while the server is down");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    // Quickly: a closed port refuses at once (well under 5 s).
    assert!(polls < 100, "took {polls} polls of 50 ms: {stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot connect to postgres@127.0.0.1:{}/postgres",
            pg.port
        )),
        "{stderr}"
    );
    assert_secret_free(&pg.password, "stderr", &stderr);
    assert_secret_free(
        &pg.password,
        "stdout",
        &String::from_utf8_lossy(&out.stdout),
    );

    // --wait-for-server: it waits that long, then gives up with 6 too.
    let child = spawn_live_run(
        dir.path(),
        &[
            "--trace",
            &trace,
            "--no-write",
            "--policy",
            "fixed-10",
            "--wait-for-server",
            "1.5s",
        ],
        &pg.url(),
    );
    let (out, polls) = wait_for_exit(child, 400).expect("gives up after its wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        polls >= 20,
        "gave up after {polls} polls of 50 ms: {stderr}"
    );
    assert!(
        stderr.contains("still unreachable after --wait-for-server 1.5s"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", pg.port)),
        "{stderr}"
    );
    assert_secret_free(&pg.password, "stderr", &stderr);
}

#[test]
fn live_server_started_late_the_run_recovers_with_the_pool_backoff() {
    let Some(pg) = PgCluster::start("live_server_started_late") else {
        return;
    };
    pg.stop().unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(
        dir.path(),
        "w.toml",
        &WORKLOAD
            .replace("duration = \"3s\"", "duration = \"8s\"")
            .replace("value = \"30ms\"", "value = \"10ms\""),
    );
    let out_dir = dir.path().join("out");
    let child = spawn_live_run(
        dir.path(),
        &[
            "--trace",
            &trace,
            "--policy",
            "fixed-10",
            "--format",
            "json",
            "--wait-for-server",
            "30s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &pg.url(),
    );
    // The server comes up about 3 s into the run.
    std::thread::sleep(Duration::from_secs(3));
    pg.start_again().unwrap();
    let (out, _) = wait_for_exit(child, 1200).expect("the run ends");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let summary: Summary = serde_json::from_slice(&out.stdout).unwrap();
    let r = &summary.runs[0];
    assert_conserved(r);
    let report: LiveReport =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("live.json")).unwrap()).unwrap();
    // Connects failed while it was down, then the pool got its connections.
    assert!(report.connect_errors > 0, "{report:?}");
    assert!(
        report.server_version.starts_with(char::is_numeric),
        "{}",
        report.server_version
    );
    assert_eq!(report.connect_ms.count, 10, "{report:?}");
    // Requests after the start were served; most of the run's were.
    assert!(
        r.requests.completed * 2 > r.requests.arrived,
        "{:?}",
        r.requests
    );
    assert_no_backends_left(&pg);
    for (path, text) in files(&out_dir) {
        assert_secret_free(&pg.password, &path, &text);
    }
    assert_secret_free(&pg.password, "stderr", &stderr);
}
