//! The live driver against a real, ephemeral PostgreSQL (see `pg_harness`):
//! accounting, the summary schema, connections closed at the end, and an
//! interrupt that stops the run early with every request accounted.

use std::path::Path;
use std::time::Duration;

use pooltune::core::metrics::Sample;
use pooltune::live::{self, LiveOptions, Target};
use pooltune::scenario::{self, LoadedPolicy, LoadedWorkload};
use pooltune::summary::{RunSummary, SCHEMA};

use crate::pg_harness::PgCluster;

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

pub fn load(dir: &Path, workload: &str, policy: &str) -> (LoadedWorkload, LoadedPolicy) {
    let w = scenario::load_workload(&write(dir, "w.toml", workload), &[]).unwrap();
    let p = scenario::load_policy(&write(dir, "p.toml", policy), &[]).unwrap();
    (w, p)
}

/// Connections of the live driver still on the server.
pub fn our_backends(pg: &PgCluster) -> usize {
    pg.query("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pooltune-live'")[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

/// Backends go away a little after the client closes: poll briefly.
pub fn assert_no_backends_left(pg: &PgCluster) {
    for _ in 0..50 {
        if our_backends(pg) == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} pooltune-live connections left in pg_stat_activity",
        our_backends(pg)
    );
}

pub fn assert_conserved(r: &RunSummary) {
    let q = r.requests;
    assert_eq!(
        q.arrived,
        q.completed + q.timed_out + q.failed + q.rejected + q.in_flight_at_end,
        "{q:?}"
    );
}

const SMALL_WORKLOAD: &str = r#"
name = "live-small"
duration = "4s"
[arrivals]
kind = "poisson"
rate_per_s = 40.0
[service]
kind = "constant"
value = "20ms"
[priority_mix]
high = 0.2
normal = 0.5
low = 0.3
[run]
sample_interval = "500ms"
"#;

const FIXED_3: &str = r#"
name = "fixed-3"
[size]
min = 3
max = 3
[resize]
kind = "fixed"
[acquire_timeout]
high = "1s"
normal = "1s"
low = "1s"
"#;

#[test]
fn a_live_run_accounts_for_every_request_and_closes_its_connections() {
    let Some(pg) = PgCluster::start("a_live_run_accounts_for_every_request") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let (w, p) = load(dir.path(), SMALL_WORKLOAD, FIXED_3);
    let target = Target::from_env(Some(&pg.url())).unwrap();
    let rt = live::runtime().unwrap();
    let mut samples: Vec<Sample> = Vec::new();
    let out = rt
        .block_on(live::run_scenario(
            &target,
            &w,
            &p,
            7,
            &LiveOptions::default(),
            &mut samples,
            Box::pin(std::future::pending()),
        ))
        .unwrap();
    let s = &out.summary;
    assert_eq!(s.schema, SCHEMA);
    assert_eq!(s.seed, 7);
    let r = &s.runs[0];
    assert_conserved(r);
    assert!(r.requests.arrived > 100, "{:?}", r.requests);
    assert_eq!(r.requests.completed, r.requests.arrived, "{:?}", r.requests);
    assert_eq!(r.requests.failed, 0);
    // The service is 20 ms; the query holds the connection a little longer.
    assert!(
        r.query_ms.p50 >= 20.0 && r.query_ms.p50 < 30.0,
        "{:?}",
        r.query_ms
    );
    assert_eq!((r.pool.size_min, r.pool.size_max), (3, 3));
    assert_eq!(r.pool.connections_opened, 3);
    assert_eq!(r.pool.connections_closed.end_of_run, 3);
    assert!(
        r.sim_duration_s >= 4.0 && r.sim_duration_s < 5.0,
        "{}",
        r.sim_duration_s
    );
    assert!(samples.len() >= 8, "{} samples", samples.len());
    let rep = &out.report;
    assert!(!rep.interrupted);
    assert_eq!(rep.connect_ms.count, 3);
    assert!(
        rep.server_version.starts_with(char::is_numeric),
        "{}",
        rep.server_version
    );
    assert!(
        rep.round_trip_overhead_ms.mean < 10.0,
        "{:?}",
        rep.round_trip_overhead_ms
    );
    assert_no_backends_left(&pg);
    eprintln!(
        "live run: {:?}\nquery {:?}\nreport {rep:#?}",
        r.requests, r.query_ms
    );
}
