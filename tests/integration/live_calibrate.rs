//! `pooltune live calibrate` against the ephemeral cluster: it measures, and
//! what it writes is a workload the simulator reads.

use assert_cmd::Command;

use pooltune::live::calibrate::{Calibration, CALIBRATION_SCHEMA};

use crate::pg_harness::PgCluster;

#[test]
fn calibrate_measures_the_server_and_writes_a_model_the_simulator_reads() {
    let Some(pg) = PgCluster::start("calibrate_measures_the_server") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let out = dir.path().join("cal");
    let run = Command::cargo_bin("pooltune")
        .unwrap()
        .current_dir(dir.path())
        .args(["live", "calibrate", "--connects", "10", "--queries", "60"])
        .args([
            "--concurrency",
            "1,2,4",
            "--level-seconds",
            "1",
            "--cpu-query-ms",
            "3",
        ])
        .args(["--trace", "default", "--contention"])
        .arg("--database-url")
        .arg(pg.url())
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let o = run.get_output();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!("{stdout}");
    assert!(stdout.contains("USL lambda"), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&pg.password), "{text}");
    }
    let c: Calibration =
        serde_json::from_str(&std::fs::read_to_string(out.join("calibration.json")).unwrap())
            .unwrap();
    assert_eq!(c.schema, CALIBRATION_SCHEMA);
    assert_eq!(c.connect_ms.count, 10);
    assert!(
        c.connect_ms.p50 > 0.05 && c.connect_ms.p50 < 500.0,
        "{:?}",
        c.connect_ms
    );
    assert_eq!(c.round_trip_ms.count, 30);
    assert!(c.round_trip_ms.p50 < 50.0, "{:?}", c.round_trip_ms);
    assert_eq!(c.levels.len(), 3);
    assert!(c.levels.iter().all(|l| l.queries > 0), "{:?}", c.levels);
    assert!(c.usl.lambda_per_s > 0.0 && c.usl.sigma >= 0.0 && c.usl.kappa >= 0.0);
    assert_eq!(c.max_connections, 60);
    for f in ["calibration.json", "database.toml", "workload.toml"] {
        let text = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(!text.contains(&pg.password), "{f}: {text}");
    }
    // The simulator reads the calibrated workload, and uses its model.
    let sim = dir.path().join("sim");
    Command::cargo_bin("pooltune")
        .unwrap()
        .args([
            "sim",
            "run",
            "--policy",
            "fixed-10",
            "--set",
            "duration=5s",
            "--trace",
        ])
        .arg(out.join("workload.toml"))
        .arg("--out")
        .arg(&sim)
        .assert()
        .success();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sim.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["trace"]["name"], "default-calibrated");
    let db = &summary["trace"]["config"]["database"];
    assert_eq!(db["max_connections"], 57, "{db}");
    let sigma = db["usl_sigma"].as_f64().unwrap();
    assert!((sigma - c.usl.sigma).abs() < 1e-5, "{db} vs {:?}", c.usl);
    // The measured per-query overhead, read back by the simulator as the
    // same duration (microseconds) calibrate wrote.
    let overhead = db["query_overhead"]
        .as_str()
        .expect("query_overhead written");
    let us = (c.sleep_overhead_ms.mean * 1000.0).round().max(1.0);
    let written = pooltune::time::SimDuration::from_nanos(us as u64 * 1000).to_string();
    assert_eq!(overhead, written, "{db} vs {:?}", c.sleep_overhead_ms);
    // The section alone is valid TOML with the same table.
    let section: toml::Table = std::fs::read_to_string(out.join("database.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(section["database"]["connect_latency"]["median"].is_str());
    assert_eq!(
        section["database"]["query_overhead"].as_str(),
        Some(overhead)
    );
}
