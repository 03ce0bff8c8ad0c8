//! Faults on the real server: backends terminated mid-run, and a fast
//! restart mid-run. The pool recovers; every request is accounted
//! (arrived = completed + timed_out + failed + rejected + in_flight); no
//! connection of ours is left on the server afterwards.

use std::time::Duration;

use pooltune::core::metrics::Sample;
use pooltune::live::{self, LiveOptions, LiveScenario, Target};

use crate::live_run::{assert_conserved, assert_no_backends_left, load, our_backends};
use crate::pg_harness::PgCluster;

/// 8 s at 40 requests/s, 50 ms queries, on a fixed pool of 4 (utilization
/// 0.5): the fault comes at about 3 s.
const WORKLOAD: &str = r#"
name = "live-faults"
duration = "8s"
[arrivals]
kind = "poisson"
rate_per_s = 40.0
[service]
kind = "constant"
value = "50ms"
[run]
sample_interval = "1s"
"#;

const FIXED_4: &str = r#"
name = "fixed-4"
[size]
min = 4
max = 4
[resize]
kind = "fixed"
[acquire_timeout]
high = "3s"
normal = "3s"
low = "3s"
"#;

/// Runs the workload live while `fault` runs on another thread once the
/// pool is up (plus `delay`); returns the outcome and the time series.
fn run_with_fault(
    pg: &PgCluster,
    delay: Duration,
    fault: impl FnOnce(&PgCluster) + Send,
) -> (LiveScenario, Vec<Sample>) {
    let dir = tempfile::TempDir::new().unwrap();
    let (w, p) = load(dir.path(), WORKLOAD, FIXED_4);
    let target = Target::from_env(Some(&pg.url())).unwrap();
    let rt = live::runtime().unwrap();
    let mut samples = Vec::new();
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..200 {
                if our_backends(pg) >= 4 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(delay);
            fault(pg);
        });
        rt.block_on(live::run_scenario(
            &target,
            &w,
            &p,
            11,
            &LiveOptions::default(),
            &mut samples,
            Box::pin(std::future::pending()),
        ))
        .unwrap()
    });
    (out, samples)
}

#[test]
fn terminated_backends_fail_their_queries_and_are_replaced() {
    let Some(pg) = PgCluster::start("terminated_backends") else {
        return;
    };
    let (out, samples) = run_with_fault(&pg, Duration::from_secs(3), |pg| {
        let killed = pg.query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'pooltune-live'",
        );
        assert_eq!(killed[0].as_deref(), Some("4"), "{killed:?}");
    });
    let r = &out.summary.runs[0];
    let rep = &out.report;
    eprintln!(
        "{:?}\n{:?}\nbroken {} lost {} errors {:?}",
        r.requests, r.pool, rep.connections_closed_broken, rep.connections_lost, rep.errors
    );
    assert_conserved(r);
    assert_eq!(r.requests.in_flight_at_end, 0);
    // Each of the 4 connections broke (busy: its query failed; idle: its
    // end was noticed) and was replaced.
    assert_eq!(rep.connections_closed_broken, 4, "{rep:?}");
    assert_eq!(r.pool.connections_opened, 8, "{:?}", r.pool);
    assert_eq!(
        r.requests.failed, rep.query_errors,
        "every failed query is a failed request"
    );
    assert!(r.requests.failed <= 4, "{:?}", r.requests);
    // The pool recovered: the last seconds completed requests again.
    let tail: u64 = samples.iter().rev().take(3).map(|s| s.completed).sum();
    assert!(tail > 50, "{samples:?}");
    assert!(r.requests.completed as f64 > 0.98 * r.requests.arrived as f64 - 4.0);
    assert_no_backends_left(&pg);
}

#[test]
fn the_pool_recovers_from_a_fast_restart_of_the_server() {
    let Some(pg) = PgCluster::start("fast_restart") else {
        return;
    };
    let (out, samples) = run_with_fault(&pg, Duration::from_secs(2), |pg| {
        pg.restart().unwrap();
    });
    let r = &out.summary.runs[0];
    let rep = &out.report;
    eprintln!("{:?}\n{:?}\nreport {rep:?}", r.requests, r.pool);
    assert_conserved(r);
    assert_eq!(r.requests.in_flight_at_end, 0);
    assert!(rep.connections_closed_broken >= 4, "{rep:?}");
    assert!(r.pool.connections_opened >= 8, "{:?}", r.pool);
    // Back at full size, serving, at the end.
    let last = samples.last().unwrap();
    assert_eq!(last.size, 4, "{samples:?}");
    let tail: u64 = samples.iter().rev().take(3).map(|s| s.completed).sum();
    assert!(tail > 50, "{samples:?}");
    assert_no_backends_left(&pg);
}
