//! The simulated world of issue 4: faults, broken connections, several
//! application instances against one database, the connect-cost presets and
//! the summary's accounting. Each scenario is a workload and a policy
//! written as TOML and run through the library (`scenario::run_one`), the
//! way `sim run` does.

use pooltune::config::policy::PolicySpec;
use pooltune::config::workload::WorkloadSpec;
use pooltune::config::Document;
use pooltune::core::metrics::Sample;
use pooltune::scenario::{run_one, LoadedPolicy, LoadedWorkload};
use pooltune::summary::RunSummary;

fn policy(text: &str) -> LoadedPolicy {
    let spec = PolicySpec::load(&Document::new("p.toml", text), "p", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    LoadedPolicy {
        spec,
        source: "test".into(),
    }
}

fn workload(text: &str) -> LoadedWorkload {
    let spec = WorkloadSpec::load(&Document::new("w.toml", text), "w", &[])
        .unwrap_or_else(|e| panic!("{e}"));
    LoadedWorkload {
        spec,
        source: "test".into(),
    }
}

fn run(w: &str, p: &str, seed: u64) -> (RunSummary, Vec<Sample>) {
    let mut samples: Vec<Sample> = Vec::new();
    let s = run_one(&workload(w), &policy(p), seed, &mut samples).unwrap_or_else(|e| panic!("{e}"));
    (s, samples)
}

/// Every request is accounted for, in the totals and per priority.
fn assert_accounted(s: &RunSummary) {
    let r = &s.requests;
    assert_eq!(
        r.arrived,
        r.completed + r.timed_out + r.failed + r.rejected + r.in_flight_at_end,
        "{r:?}"
    );
    let mut arrived = 0;
    for p in pooltune::core::request::Priority::ALL {
        arrived += s.by_priority.get(p).requests.arrived;
    }
    assert_eq!(arrived, r.arrived);
    for row in &s.per_instance {
        let r = &row.requests;
        assert_eq!(
            r.arrived,
            r.completed + r.timed_out + r.failed + r.rejected + r.in_flight_at_end
        );
    }
}

/// A fixed pool of `n` with the seed's acquire timeouts and health checks
/// (15 s interval, 5 s timeout, 3 retries).
fn fixed_with_seed_checks(n: u32) -> String {
    format!(
        r#"
name = "fixed-{n}-checks"
[size]
min = {n}
max = {n}
[resize]
kind = "fixed"
[acquire_timeout]
high = "10s"
normal = "5s"
low = "2.5s"
[health_check]
interval = "15s"
timeout = "5s"
retries = 3
"#
    )
}

const BASE: &str = r#"
duration = "120s"
[arrivals]
kind = "poisson"
rate_per_s = 200.0
[service]
kind = "lognormal"
median = "8ms"
p99 = "40ms"
[priority_mix]
high = 0.1
normal = 0.7
low = 0.2
[database]
connect = "loopback_tcp"
query_overhead = "0.2ms"
"#;

#[test]
fn a_restart_breaks_every_connection_and_the_pool_serves_again_within_one_check_interval() {
    let w = format!("{BASE}\n[[faults]]\nkind = \"restart\"\nat = \"40s\"\ndowntime = \"10s\"\n");
    let (s, ts) = run(&w, &fixed_with_seed_checks(10), 7);
    assert_accounted(&s);
    assert_eq!(s.faults.len(), 1);
    let f = &s.faults[0];
    assert_eq!(
        (f.kind.as_str(), f.start_s, f.end_s),
        ("restart", 40.0, 50.0)
    );
    // Every backend broke; the queries running on them failed at once.
    assert!(f.connections_broken >= 10, "{f:?}");
    assert!(s.requests.failed > 0);
    assert!(s.database.connects_refused_down > 0);
    assert!(s.pool.connections_closed.broken >= 10);
    // Back to serving within one health-check interval after the server
    // returned.
    let recovery = f.recovery_s.expect("the pool recovered");
    assert!(recovery <= 15.0, "recovery took {recovery} s");
    // The time series shows the dip: while the server is down almost
    // nothing completes, before and after about 200 per second do.
    let completed = |from: f64, to: f64| -> f64 {
        let w: Vec<&Sample> = ts.iter().filter(|x| x.t_s > from && x.t_s <= to).collect();
        w.iter().map(|x| x.completed as f64).sum::<f64>() / w.len() as f64
    };
    let before = completed(10.0, 40.0);
    let down = completed(41.0, 50.0);
    let after = completed(50.0 + recovery.ceil() + 1.0, 120.0);
    assert!(before > 150.0 && after > 150.0, "{before} {after}");
    assert!(
        down < 0.05 * before,
        "completed per second while down: {down}"
    );
    assert!(ts
        .iter()
        .filter(|x| x.t_s > 40.0 && x.t_s <= 50.0)
        .all(|x| x.faults_active == 1));
    assert!(ts
        .iter()
        .filter(|x| x.t_s > 60.0)
        .all(|x| x.faults_active == 0));
    assert!(ts.iter().map(|x| x.db_refused).sum::<u64>() > 0);
    assert!(ts.iter().map(|x| x.failed).sum::<u64>() == s.requests.failed);
    assert!(s.health.score < 100.0);
}

fn max_closed_per_second(ts: &[Sample], from: f64) -> u64 {
    ts.iter()
        .filter(|x| x.t_s > from)
        .map(|x| x.closed)
        .max()
        .unwrap_or(0)
}

#[test]
fn a_lifetime_without_jitter_reconnects_in_a_stampede_that_jitter_spreads() {
    let w = BASE.replace("120s", "200s");
    let p = |jitter: f64| {
        format!(
            r#"
name = "fixed-20-lifetime"
[size]
min = 20
max = 20
[resize]
kind = "fixed"
[connections]
max_lifetime = "60s"
lifetime_jitter = {jitter}
"#
        )
    };
    let (stampede, ts0) = run(&w, &p(0.0), 3);
    let (spread, ts1) = run(&w, &p(0.5), 3);
    for s in [&stampede, &spread] {
        assert_accounted(s);
        assert!(s.pool.connections_closed.lifetime >= 40, "{:?}", s.pool);
    }
    // All 20 connections were opened together, so without jitter they all
    // retire within one second (closed and reopened: a spike in both).
    let peak0 = max_closed_per_second(&ts0, 1.0);
    let peak1 = max_closed_per_second(&ts1, 1.0);
    assert!(peak0 >= 18, "no stampede without jitter: {peak0}");
    assert!(
        peak1 * 3 <= peak0,
        "jitter did not spread it: {peak1} vs {peak0}"
    );
    let opened0 = ts0
        .iter()
        .filter(|x| x.t_s > 1.0)
        .map(|x| x.opened)
        .max()
        .unwrap();
    assert!(opened0 >= 18);
}

const EIGHT: &str = r#"
duration = "600s"
[arrivals]
kind = "poisson"
rate_per_s = 2000.0
[service]
kind = "exponential"
mean = "60ms"
[database]
connect = "loopback_tcp"
max_connections = 100
[app]
instances = 8
"#;

#[test]
fn eight_instances_of_the_seed_exhaust_max_connections_and_a_sized_policy_does_not() {
    let seed_policy = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/seed-80-30.toml"),
    )
    .unwrap();
    let (s, _) = run(EIGHT, &seed_policy, 11);
    assert_accounted(&s);
    assert_eq!(s.instances, 8);
    assert_eq!(s.per_instance.len(), 8);
    // 8 x up to 25 against 100: the seed grows past its share and is refused.
    assert!(s.database.connects_refused > 0, "{:?}", s.database);
    assert!(s.database.backends_max <= 100);
    assert_eq!(
        s.per_instance
            .iter()
            .map(|r| r.connects_refused)
            .sum::<u64>(),
        s.database.connects_refused
    );
    // Round robin: every instance got an eighth of the requests.
    for r in &s.per_instance {
        let share = r.requests.arrived as f64 / s.requests.arrived as f64;
        assert!((share - 0.125).abs() < 0.001, "{share}");
    }
    let sized = r#"
name = "fixed-12"
[size]
min = 12
max = 12
[resize]
kind = "fixed"
"#;
    let (f, _) = run(EIGHT, sized, 11);
    assert_accounted(&f);
    assert_eq!(f.database.connects_refused, 0);
    assert_eq!(f.database.backends_max, 96);
    assert_eq!(f.pool.size_max, 96);
}

/// A fixed pool of 10 with a drop of every backend at 20 s, plus `extra`
/// faults; returns the summary.
fn with_faults(extra: &str, seed: u64) -> RunSummary {
    let w = format!(
        "{}\n[[faults]]\nkind = \"drop_connections\"\nat = \"20s\"\nfraction = 1.0\n{extra}",
        BASE.replace("120s", "60s")
    );
    let (s, _) = run(&w, &fixed_with_seed_checks(10), seed);
    assert_accounted(&s);
    s
}

#[test]
fn each_fault_kind_changes_what_it_should() {
    let plain = with_faults("", 5);
    // drop_connections: every backend breaks once.
    assert_eq!(plain.faults.len(), 1);
    assert_eq!(plain.faults[0].connections_broken, 10);
    assert_eq!(plain.database.backends_broken, 10);
    assert!(plain.faults[0].recovery_s.is_some());

    // slow_connects: the reconnects after the drop take 20 x longer.
    let slow = with_faults(
        "[[faults]]\nkind = \"slow_connects\"\nat = \"19s\"\nfactor = 20.0\nduration = \"10s\"\n",
        5,
    );
    assert!(
        slow.pool.connect_time_s > 5.0 * plain.pool.connect_time_s,
        "{} vs {}",
        slow.pool.connect_time_s,
        plain.pool.connect_time_s
    );
    assert!(slow.pool.connect_time_per_request_ms > plain.pool.connect_time_per_request_ms);

    // connect_failures: the reconnects fail and are retried.
    let failing = with_faults(
        "[[faults]]\nkind = \"connect_failures\"\nat = \"19s\"\nprobability = 1.0\nduration = \"2s\"\n",
        5,
    );
    assert!(failing.database.connect_errors > 0);
    assert!(failing.pool.connect_failed > 0);
    assert!(failing.pool.connect_retries > 0, "{:?}", failing.pool);

    // latency_spike: queries take 5 x longer for a third of the run.
    let spike = with_faults(
        "[[faults]]\nkind = \"latency_spike\"\nat = \"30s\"\nfactor = 5.0\nduration = \"20s\"\n",
        5,
    );
    let ratio = spike.query_ms.mean / plain.query_ms.mean;
    assert!(ratio > 1.8 && ratio < 3.0, "query time ratio {ratio}");
    assert_eq!(spike.faults[1].kind, "latency_spike");
    assert_eq!(
        (spike.faults[1].start_s, spike.faults[1].end_s),
        (30.0, 50.0)
    );

    // restart: connects refused while down.
    let restart = with_faults(
        "[[faults]]\nkind = \"restart\"\nat = \"40s\"\ndowntime = \"3s\"\n",
        5,
    );
    assert!(restart.database.connects_refused_down > 0);
    assert!(restart.requests.failed > plain.requests.failed);
}

#[test]
fn faults_drawn_at_a_rate_are_reproducible_and_follow_the_rate() {
    let w = format!(
        "{}\n[[faults]]\nkind = \"drop_connections\"\nrate_per_hour = 360.0\ncount = 2\n",
        BASE.replace("120s", "600s")
    );
    let p = fixed_with_seed_checks(10);
    let (a, _) = run(&w, &p, 21);
    let (b, _) = run(&w, &p, 21);
    assert_eq!(a, b, "same seed, same run");
    // 360 per hour over 10 minutes: 60 expected (Poisson, sd ~7.7).
    let n = a.faults.len();
    assert!((30..=90).contains(&n), "{n} faults");
    assert!(a.faults.windows(2).all(|w| w[0].start_s <= w[1].start_s));
    assert!(a.faults.iter().all(|f| f.connections_broken <= 2));
    assert_accounted(&a);
}

#[test]
fn one_instance_without_faults_runs_exactly_as_before() {
    // The world with its defaults is the plain single-pool simulation.
    use pooltune::core::metrics::NullSink;
    use pooltune::rng::SeedTree;
    use pooltune::scenario::open_source;
    use pooltune::sim::simulate;
    use pooltune::time::SimDuration;
    let w = workload(&BASE.replace("query_overhead = \"0.2ms\"", ""));
    let p = policy(&fixed_with_seed_checks(10));
    let mut sink: Vec<Sample> = Vec::new();
    let world = run_one(&w, &p, 9, &mut sink).unwrap();
    let seeds = SeedTree::new(9);
    let source = open_source(&w.spec, &seeds).unwrap();
    let plain = simulate::<_, SimDuration>(
        &p.spec.pool,
        p.spec.build(),
        &w.spec.database,
        source,
        &seeds,
        &w.spec.run,
        &mut NullSink,
    )
    .unwrap();
    let m = &plain.pool.classes()[1];
    assert_eq!(world.by_priority.normal.requests.completed, m.completed);
    assert_eq!(world.events, plain.events);
    assert!(world.per_instance.is_empty() && world.faults.is_empty());
}

#[test]
fn world_config_errors_name_the_fault_entry_and_its_line() {
    let load = |extra: &str| {
        WorkloadSpec::load(&Document::new("w.toml", format!("{BASE}{extra}")), "w", &[])
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let two = "\n[[faults]]\nkind = \"restart\"\nat = \"1s\"\ndowntime = \"1s\"\n\n[[faults]]\nkind = \"latency_spike\"\nat = \"5s\"\nfactor = 0.0\nduration = \"1s\"\n";
    // The second entry's `factor` line, 1-based.
    let line = format!("{BASE}{two}")
        .lines()
        .position(|l| l == "factor = 0.0")
        .unwrap()
        + 1;
    let e = load(two);
    assert!(e.contains(&format!("w.toml:{line}:1")), "{e}");
    assert!(
        e.contains("faults[1].factor") && e.contains("positive factor"),
        "{e}"
    );
    let e = load("\n[[faults]]\nkind = \"restart\"\ndowntime = \"1s\"\n");
    assert!(e.contains("exactly one of `at`"), "{e}");
    let e = load("\n[[faults]]\nkind = \"drop_connections\"\nat = \"1s\"\nfactor = 2.0\n");
    assert!(
        e.contains("does not apply to kind = \"drop_connections\""),
        "{e}"
    );
    let e = load("connect_latency = { kind = \"constant\", value = \"1ms\" }\n");
    assert!(e.contains("not both"), "{e}");
    let e = load("[app]\ninstances = 0\n");
    assert!(e.contains("app.instances"), "{e}");
}
