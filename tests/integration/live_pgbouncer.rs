//! The live driver through PgBouncer in front of the cluster: session mode
//! (prepared statements work as on a direct connection) and transaction mode
//! with `--no-prepare` (PgBouncer 1.18 does not carry prepared statements
//! across transactions), where 8 pool connections share 2 server backends.

use pooltune::core::metrics::NullSink;
use pooltune::live::{self, LiveOptions, Target};

use crate::live_run::{assert_conserved, load};
use crate::pg_harness::{PgBouncer, PgCluster};

const WORKLOAD: &str = r#"
name = "live-pgbouncer"
duration = "3s"
[arrivals]
kind = "poisson"
rate_per_s = 40.0
[service]
kind = "constant"
value = "20ms"
[priority_mix]
high = 0.5
normal = 0.0
low = 0.5
"#;

const FIXED_8: &str = r#"
name = "fixed-8"
[size]
min = 8
max = 8
[resize]
kind = "fixed"
[acquire_timeout]
high = "2s"
normal = "2s"
low = "2s"
"#;

#[test]
fn the_live_driver_runs_through_pgbouncer_in_session_and_transaction_mode() {
    let Some(pg) = PgCluster::start("through_pgbouncer") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let (w, p) = load(dir.path(), WORKLOAD, FIXED_8);
    let rt = live::runtime().unwrap();
    for (mode, prepared, server_pool) in [("session", true, 20), ("transaction", false, 2)] {
        let Some(bouncer) = PgBouncer::start(&pg, "through_pgbouncer", mode, server_pool) else {
            return;
        };
        let target = Target::from_env(Some(bouncer.url())).unwrap();
        let opts = LiveOptions {
            prepared,
            ..LiveOptions::default()
        };
        let out = rt
            .block_on(live::run_scenario(
                &target,
                &w,
                &p,
                3,
                &opts,
                &mut NullSink,
                Box::pin(std::future::pending()),
            ))
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let r = &out.summary.runs[0];
        assert_conserved(r);
        assert_eq!(r.requests.failed, 0, "{mode}: {:?}", out.report.errors);
        assert_eq!(
            r.requests.completed, r.requests.arrived,
            "{mode}: {:?}",
            r.requests
        );
        assert!(r.requests.completed > 60, "{mode}: {:?}", r.requests);
        assert_eq!(r.pool.connections_opened, 8, "{mode}");
        // Transaction mode: 8 client connections, at most 2 server backends.
        let backends: u32 = pg.query(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND application_name <> 'pooltune-test-harness'",
        )[0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
        assert!(
            backends <= server_pool,
            "{mode}: {backends} server backends"
        );
        drop(bouncer);
    }
}
