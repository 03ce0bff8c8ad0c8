//! The application-facing [`PoolHandle`] against a real, ephemeral
//! PostgreSQL: accounting, timeouts, a cancelled `get()`, broken and lost
//! connections replaced, nothing left on the server after `close`.
//! (Included from `live_run.rs`: the test binary's module list is not ours.)

use std::time::Duration;

use pooltune::core::lifecycle::Lifecycle;
use pooltune::core::policy::Fixed;
use pooltune::core::pool::PoolConfig;
use pooltune::core::request::Priority;
use pooltune::live::{self, GetError, HandleOptions, HandleStats, PoolHandle, Target};
use pooltune::time::SimDuration;

use crate::live_run::{assert_no_backends_left, our_backends};
use crate::pg_harness::PgCluster;

fn fixed(size: u32, timeout: Duration) -> PoolConfig {
    PoolConfig {
        min: size,
        max: size,
        initial: size,
        acquire_timeout: [SimDuration::from_nanos(timeout.as_nanos() as u64); 3],
        max_waiters: 100,
        lifecycle: Lifecycle::default(),
    }
}

async fn handle(pg: &PgCluster, config: PoolConfig) -> PoolHandle {
    let target = Target::from_env(Some(&pg.url())).unwrap();
    let options = HandleOptions {
        prepare: vec!["SELECT pg_backend_pid()".into()],
        ..HandleOptions::default()
    };
    PoolHandle::connect(target, config, Box::new(Fixed), options)
        .await
        .unwrap()
}

fn assert_conserved(s: &HandleStats) {
    assert_eq!(
        s.arrived,
        s.completed + s.timed_out + s.failed + s.rejected + s.in_flight,
        "{s:?}"
    );
}

/// Runs `f` on another thread: the harness's helpers start their own
/// runtime, which cannot run inside the test's.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// `PgCluster::query` from inside the test's runtime.
fn sql(pg: &PgCluster, text: &str) -> Vec<Option<String>> {
    off_runtime(|| pg.query(text))
}

/// Polls `f` for up to 10 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s: {what}");
}

#[test]
fn the_handle_hands_out_connections_times_out_waiters_and_accounts_for_each() {
    let Some(pg) = PgCluster::start("the_handle_hands_out_connections") else {
        return;
    };
    live::runtime().unwrap().block_on(async {
        let pool = handle(&pg, fixed(2, Duration::from_millis(200))).await;
        assert_eq!(off_runtime(|| our_backends(&pg)), 2);
        let a = pool.get(Priority::High).await.unwrap();
        let b = pool.get(Priority::Low).await.unwrap();
        let pid_a: i32 = a.query_one(a.statement(0), &[]).await.unwrap().get(0);
        let pid_b: i32 = b.query_one(b.statement(0), &[]).await.unwrap().get(0);
        assert_ne!(pid_a, pid_b, "two guards, two connections");
        // Both busy: the third waits its 200 ms and times out.
        let t0 = tokio::time::Instant::now();
        let e = pool.get(Priority::Normal).await.err().unwrap();
        let waited = t0.elapsed();
        assert!(matches!(e, GetError::TimedOut { .. }), "{e:?}");
        assert!(
            waited >= Duration::from_millis(195) && waited < Duration::from_millis(1000),
            "{waited:?}"
        );
        // A waiter is served by the next release, with the same connection.
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let c = pool.get(Priority::Normal).await.unwrap();
                let pid: i32 = c.query_one(c.statement(0), &[]).await.unwrap().get(0);
                pid
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(pool.stats().in_flight, 3);
        drop(a);
        assert_eq!(waiter.await.unwrap(), pid_a);
        drop(b);
        let s = pool.stats();
        assert_conserved(&s);
        assert_eq!(
            (s.arrived, s.completed, s.timed_out, s.in_flight),
            (4, 3, 1, 0),
            "{s:?}"
        );
        assert_eq!((s.size, s.open, s.opened), (2, 2, 2), "{s:?}");
        pool.check_invariants().unwrap();
        pool.close(Duration::from_secs(5)).await;
        assert!(matches!(
            pool.get(Priority::High).await.err(),
            Some(GetError::Closed)
        ));
    });
    assert_no_backends_left(&pg);
}

#[test]
fn a_get_dropped_while_waiting_neither_leaks_its_connection_nor_wedges_the_queue() {
    let Some(pg) = PgCluster::start("a_get_dropped_while_waiting") else {
        return;
    };
    live::runtime().unwrap().block_on(async {
        let pool = handle(&pg, fixed(1, Duration::from_secs(30))).await;
        let held = pool.get(Priority::Normal).await.unwrap();
        // Dropped while it waits (the bb8 bug: such a waiter kept a permit).
        let gave_up = tokio::time::timeout(Duration::from_millis(50), pool.get(Priority::High));
        assert!(gave_up.await.is_err(), "the only connection is held");
        assert_eq!(pool.stats().cancelled, 1);
        // A later waiter queues behind the abandoned one.
        let next = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let c = pool.get(Priority::Normal).await.unwrap();
                c.simple_query("SELECT 1").await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the queue moves on past the abandoned waiter")
            .unwrap();
        let s = pool.stats();
        assert_conserved(&s);
        // The abandoned request counts as failed; the others completed.
        assert_eq!(
            (s.arrived, s.completed, s.failed, s.in_flight, s.cancelled),
            (3, 2, 1, 0, 1),
            "{s:?}"
        );
        // The connection is back: an immediate get finds it.
        let again = tokio::time::timeout(Duration::from_millis(100), pool.get(Priority::Low))
            .await
            .expect("no leaked connection")
            .unwrap();
        drop(again);
        assert_eq!(pool.stats().open, 1);
        pool.check_invariants().unwrap();
        pool.close(Duration::from_secs(5)).await;
    });
    assert_no_backends_left(&pg);
}

#[test]
fn broken_and_lost_connections_of_the_handle_are_replaced() {
    let Some(pg) = PgCluster::start("broken_and_lost_connections_of_the_handle") else {
        return;
    };
    live::runtime().unwrap().block_on(async {
        let pool = handle(&pg, fixed(2, Duration::from_secs(5))).await;
        // A connection in use is terminated: its query fails; returned, it
        // is replaced and the request counts as failed.
        let g = pool.get(Priority::Normal).await.unwrap();
        let pid: i32 = g.query_one(g.statement(0), &[]).await.unwrap().get(0);
        sql(&pg, &format!("SELECT pg_terminate_backend({pid})"));
        assert!(g.query_one(g.statement(0), &[]).await.is_err());
        eventually("the client sees its connection closed", || g.is_closed()).await;
        drop(g);
        eventually("the pool is back to 2 open connections", || {
            pool.stats().open == 2
        })
        .await;
        let s = pool.stats();
        assert_eq!((s.failed, s.closed_broken, s.opened), (1, 1, 3), "{s:?}");
        // Idle connections terminated by the server are noticed (their
        // connection task ends) and replaced without any request failing.
        sql(
            &pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pooltune-live'",
        );
        eventually("both idle connections replaced", || {
            let s = pool.stats();
            s.lost == 2 && s.open == 2
        })
        .await;
        for _ in 0..4 {
            let c = pool.get(Priority::High).await.unwrap();
            c.query_one(c.statement(0), &[]).await.unwrap();
        }
        let s = pool.stats();
        assert_conserved(&s);
        assert_eq!(
            (s.completed, s.failed, s.closed_broken, s.opened),
            (4, 1, 3, 5),
            "{s:?}"
        );
        assert_eq!(off_runtime(|| our_backends(&pg)), 2);
        pool.check_invariants().unwrap();
        pool.close(Duration::from_secs(5)).await;
    });
    assert_no_backends_left(&pg);
}

/// A policy file with health checks every 200 ms (timeout 300 ms, one
/// failure closes), a fixed pool of 3.
const HEALTH_CHECKED_3: &str = r#"
name = "fixed-3-health"
[size]
min = 3
max = 3
[resize]
kind = "fixed"
[acquire_timeout]
high = "2s"
normal = "2s"
low = "2s"
[health_check]
interval = "200ms"
timeout = "300ms"
retries = 1
"#;

fn signal(sig: &str, pid: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn health_checks_find_a_hung_backend_and_the_pool_returns_to_its_size() {
    let Some(pg) = PgCluster::start("health_checks_find_a_hung_backend") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let path = crate::live_run::write(dir.path(), "p.toml", HEALTH_CHECKED_3);
    let policy = pooltune::scenario::load_policy(&path, &[]).unwrap();
    assert!(policy.spec.pool.lifecycle.health.is_some());
    live::runtime().unwrap().block_on(async {
        let target = Target::from_env(Some(&pg.url())).unwrap();
        let pool = PoolHandle::from_policy(target, &policy, HandleOptions::default())
            .await
            .unwrap();
        // Healthy connections pass their checks.
        eventually("checks run", || pool.stats().checks >= 3).await;
        assert_eq!(pool.stats().checks_failed, 0);
        // A hung backend (stopped, its socket open: nothing tells the
        // client) is found only by a check that times out.
        let pid = sql(
            &pg,
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pooltune-live' \
             ORDER BY pid LIMIT 1",
        )[0]
        .clone()
        .unwrap();
        signal("-STOP", &pid);
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while pool.stats().closed_broken == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        signal("-CONT", &pid);
        found.expect("a failed check closes the hung connection");
        eventually("the pool is back to 3 open connections", || {
            pool.stats().open == 3
        })
        .await;
        let s = pool.stats();
        assert!(s.checks_failed >= 1, "{s:?}");
        assert_eq!((s.closed_broken, s.opened, s.lost), (1, 4, 0), "{s:?}");
        // Requests meanwhile are served, none lost.
        for p in [Priority::High, Priority::Normal, Priority::Low] {
            let c = pool.get(p).await.unwrap();
            c.simple_query("SELECT 1").await.unwrap();
        }
        // Idle backends terminated by the server: closed and replaced.
        sql(
            &pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pooltune-live'",
        );
        eventually("all three replaced", || {
            let s = pool.stats();
            s.closed_broken == 4 && s.open == 3
        })
        .await;
        let c = pool.get(Priority::Normal).await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        drop(c);
        let s = pool.stats();
        assert_conserved(&s);
        assert_eq!((s.arrived, s.completed, s.failed), (4, 4, 0), "{s:?}");
        assert_eq!((s.size, s.opened), (3, 7), "{s:?}");
        pool.check_invariants().unwrap();
        pool.close(Duration::from_secs(5)).await;
    });
    assert_no_backends_left(&pg);
}
