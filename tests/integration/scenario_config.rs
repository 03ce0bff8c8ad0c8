//! The scenario file format (`config::scenario`): every shipped scenario
//! loads, hashes the same twice and differs when a key does; invalid inputs
//! are pinned to their exact message (file, line, column, key, what was
//! expected); `--set` addresses array entries by name; no text panics.

use std::path::{Path, PathBuf};

use pooltune::check::assertions::{Assertion, Scope};
use pooltune::config::scenario::{ScenarioSpec, SHIPPED_FILES};
use pooltune::config::{Document, Override};
use pooltune::sim::topology::{FleetEvent, PoolMode, ReplicaSelection, ServiceWorkload};
use pooltune::time::SimDuration;
use proptest::prelude::*;

use crate::config_errors::{check, lines};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped scenarios' directory: relative workload paths start there.
fn scenarios_dir() -> PathBuf {
    root().join("scenarios")
}

fn sets(assignments: &[&str]) -> Vec<Override> {
    assignments
        .iter()
        .map(|a| Override::parse(a).unwrap())
        .collect()
}

/// Loads `text` as `s.toml` in the scenarios directory; the error as
/// displayed, with the crate's path shown as `<root>`.
fn load_with(text: &str, overrides: &[Override]) -> Result<ScenarioSpec, String> {
    ScenarioSpec::load_doc(&Document::new("s.toml", text), &scenarios_dir(), overrides).map_err(
        |e| {
            e.to_string()
                .replace(&root().display().to_string(), "<root>")
        },
    )
}

fn load(text: &str) -> Result<ScenarioSpec, String> {
    load_with(text, &[])
}

/// A valid scenario (lines 1-10) followed by `extra` (line 11 on).
fn scenario(extra: &[&str]) -> String {
    let mut all = vec![
        "name = \"t\"",
        "[workload]",
        "trace = \"workloads/web.toml\"",
        "[[services]]",
        "name = \"api\"",
        "policy = \"fixed-10\"",
        "share = 1.0",
        "[[servers]]",
        "name = \"primary\"",
        "role = \"primary\"",
    ];
    all.extend_from_slice(extra);
    lines(&all)
}

/// One primary and one replica (lines 1-13) followed by `extra` (line 14 on).
fn with_replica(extra: &[&str]) -> String {
    let mut all = vec!["[[servers]]", "name = \"replica-1\"", "role = \"replica\""];
    all.extend_from_slice(extra);
    scenario(&all)
}

fn shipped(path: &str, overrides: &[Override]) -> Result<ScenarioSpec, String> {
    ScenarioSpec::load(&root().join(path), overrides).map_err(|e| e.to_string())
}

#[test]
fn the_base_is_valid() {
    let s = load(&scenario(&[])).unwrap();
    assert_eq!(s.name, "t");
    assert_eq!(s.topology.services.len(), 1);
    assert_eq!(s.topology.services[0].instances, 1);
    assert_eq!(s.topology.services[0].workload, ServiceWorkload::Share(1.0));
    assert!(s.topology.bouncer.is_none());
    assert!(!s.topology.routing.reads_to_replicas);
    // The run's horizon is the shared workload's duration (2m).
    assert_eq!(s.run.horizon, Some(SimDuration::from_secs(120)));
    load(&with_replica(&[])).unwrap();
}

#[test]
fn every_shipped_scenario_loads_and_hashes_the_same_twice() {
    let on_disk: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension().is_some_and(|x| x == "toml"))
                .then(|| format!("scenarios/{}", p.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    for f in &on_disk {
        assert!(
            SHIPPED_FILES.contains(&f.as_str()),
            "{f} is not in SHIPPED_FILES"
        );
    }
    assert_eq!(SHIPPED_FILES.len(), 5);
    for f in SHIPPED_FILES {
        let a = shipped(f, &[]).unwrap_or_else(|e| panic!("{f}: {e}"));
        let b = shipped(f, &[]).unwrap();
        assert_eq!(a.hash, b.hash, "{f}");
        assert_eq!(a.effective, b.effective, "{f}");
        assert_eq!(a.hash.len(), 16, "{f}");
        // Named after its file, described, with a header comment.
        let stem = Path::new(f).file_stem().unwrap().to_string_lossy();
        assert_eq!(a.name, stem, "{f}");
        assert!(!a.description.is_empty(), "{f}");
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        assert!(text.starts_with("# "), "{f} has no header comment");
        // Short runs: at most 5 simulated minutes.
        let h = a.run.horizon.expect("a horizon");
        assert!(h <= SimDuration::from_secs(300), "{f}: {h}");
        // Routing matters: the workloads produce reads and writes.
        if let Some(w) = &a.shared {
            let wf = w.spec.synthetic.write_fraction;
            assert!(wf > 0.0 && wf < 1.0, "{f}: write fraction {wf}");
        }
        // A different value gives a different hash.
        let c = shipped(f, &sets(&["services.0.instances=3"])).unwrap();
        assert_ne!(a.hash, c.hash, "{f}");
    }
}

#[test]
fn shipped_scenarios_say_what_they_promise() {
    let s = shipped("scenarios/single-service.toml", &[]).unwrap();
    assert_eq!(s.topology.servers.len(), 1);
    assert_eq!(s.topology.services.len(), 1);

    let s = shipped("scenarios/fleet-pgbouncer.toml", &[]).unwrap();
    let b = s.topology.bouncer.as_ref().expect("a bouncer");
    assert_eq!(b.mode, PoolMode::Transaction);
    assert_eq!(b.policy.pool.max, 20);
    assert_eq!(b.max_client_conn, 100);
    assert_eq!(s.topology.services[0].instances, 8);

    let s = shipped("scenarios/primary-replicas.toml", &[]).unwrap();
    assert_eq!(s.topology.servers.len(), 3);
    assert!(s.topology.routing.reads_to_replicas);
    assert_eq!(
        s.topology.routing.replica_selection,
        ReplicaSelection::LeastOutstanding
    );
    assert_eq!(s.topology.faults.len(), 1);
    assert_eq!(s.topology.faults[0].server, 1);
    assert_eq!(s.own.len(), 1);
    assert_eq!(s.own[0].spec.synthetic.write_fraction, 0.0);
    assert_eq!(s.topology.services[1].workload, ServiceWorkload::Own(0));

    let s = shipped("scenarios/cold-start.toml", &[]).unwrap();
    assert_eq!(s.topology.servers[0].max_connects_per_s, Some(100.0));
    assert_eq!(s.topology.services[0].start_stagger, SimDuration::ZERO);
    // run.duration (1m) cuts the 2m workload's arrivals.
    assert_eq!(s.run.horizon, Some(SimDuration::from_secs(60)));
    assert_eq!(
        s.shared.as_ref().unwrap().spec.synthetic.duration,
        Some(SimDuration::from_secs(60))
    );

    let s = shipped("scenarios/rolling-restart.toml", &[]).unwrap();
    assert_eq!(s.topology.services[0].instances, 8);
    assert_eq!(s.topology.services[0].policy.pool.max, 25);
    assert_eq!(s.topology.servers[0].max_connects_per_s, Some(100.0));
    assert_eq!(
        s.topology.events,
        vec![FleetEvent::RollingRestart {
            service: 0,
            at: SimDuration::from_secs(60),
            pause: SimDuration::from_secs(5),
        }]
    );
    assert_eq!(
        s.assertions,
        vec![
            Assertion::MaxConnectsPerS {
                server: Scope::One {
                    index: 0,
                    name: "primary".into()
                },
                max: 100
            },
            Assertion::ConvergeWithin {
                service: Scope::One {
                    index: 0,
                    name: "api".into()
                },
                within: SimDuration::from_secs(10)
            },
            Assertion::MaxClosesPerS {
                server: Scope::One {
                    index: 0,
                    name: "primary".into()
                },
                max: 50
            },
        ]
    );
}

#[test]
fn overrides_address_entries_by_name_and_index() {
    let f = "scenarios/primary-replicas.toml";
    let s = shipped(
        f,
        &sets(&[
            "services.api.instances=6",
            "servers.replica-2.max_connects_per_s=50",
            "routing.replica_selection=random",
            "run.duration=90s",
            "faults.0.at=30s",
            "services.reports.set=[\"size.max=5\", \"size.min=5\"]",
        ]),
    )
    .unwrap();
    assert_eq!(s.topology.services[0].instances, 6);
    assert_eq!(s.topology.servers[2].max_connects_per_s, Some(50.0));
    assert_eq!(s.topology.servers[1].max_connects_per_s, None);
    assert_eq!(
        s.topology.routing.replica_selection,
        ReplicaSelection::Random
    );
    assert_eq!(s.run.horizon, Some(SimDuration::from_secs(90)));
    assert_eq!(s.topology.services[1].policy.pool.max, 5);
    let s = shipped(
        "scenarios/rolling-restart.toml",
        &sets(&["events.0.pause=0s"]),
    )
    .unwrap();
    assert_eq!(
        s.topology.events[0],
        FleetEvent::RollingRestart {
            service: 0,
            at: SimDuration::from_secs(60),
            pause: SimDuration::ZERO,
        }
    );
}

#[test]
fn override_errors() {
    let cases = [
        (
            "an unknown service name",
            vec!["services.web.instances=4"],
            "--set services.web.instances=4: `services` has no entry named `web` (names: api; or an index from 0 to 0)",
        ),
        (
            "an unknown server name",
            vec!["servers.replica-9.lag=1s"],
            "--set servers.replica-9.lag=1s: `servers` has no entry named `replica-9` (names: primary; or an index from 0 to 0)",
        ),
        (
            "an index past the end",
            vec!["events.0.at=10s"],
            "--set events.0.at=10s: `events` has no entry to set a key of (the file has no [[events]])",
        ),
        (
            "an unknown top-level key",
            vec!["colour=1"],
            "--set colour=1: unknown key `colour`: scenario keys start with name, description, workload, run, services, bouncer, servers, routing, events, faults, assert",
        ),
        (
            "below a value",
            vec!["name.x=1"],
            "--set name.x=1: `name` is a value, not a table, so it has no key below it",
        ),
        (
            "an invalid value names the override",
            vec!["services.api.instances=0"],
            "s.toml (overridden by --set services.api.instances=0): key `services[0].instances`: expected 1 to 65535 instances, got 0",
        ),
        (
            "an unknown key in an entry names the override",
            vec!["servers.primary.colour=1"],
            "s.toml (overridden by --set servers.primary.colour=1): key `servers[0].colour`: unknown field `colour`, expected one of `name`, `role`, `connect`, `connect_latency`, `query_overhead`, `refusal_latency`, `max_connections`, `usl_sigma`, `usl_kappa`, `max_connects_per_s`, `lag`",
        ),
        (
            "an override that makes routing invalid",
            vec!["routing.reads=replicas"],
            "s.toml (overridden by --set routing.reads=replicas): key `routing.reads`: reads = \"replicas\" needs at least one [[servers]] entry with role = \"replica\"",
        ),
    ];
    let mut failures = Vec::new();
    for (what, assignments, expected) in cases {
        match load_with(&scenario(&[]), &sets(&assignments)) {
            Ok(_) => failures.push(format!("{what}: loaded without error")),
            Err(got) if got != expected => failures.push(format!(
                "{what}:\n  expected: {expected}\n  got:      {got}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn structure_errors() {
    let cases = [
        (
            "invalid TOML",
            lines(&["name = \"t\"", "[[services]", "name = \"api\""]),
            "s.toml:2:12: invalid TOML: unclosed array table, expected `]`",
        ),
        (
            "an unknown top-level key",
            format!("colour = 1\n{}", scenario(&[])),
            "s.toml:1:1: key `colour`: unknown field `colour`, expected one of `name`, `description`, `workload`, `run`, `services`, `bouncer`, `servers`, `routing`, `events`, `faults`, `assert`",
        ),
        (
            "no services",
            lines(&["[[servers]]", "name = \"primary\"", "role = \"primary\""]),
            "s.toml: key `services`: required key is missing",
        ),
        (
            "a server without a role",
            lines(&[
                "[[services]]",
                "name = \"api\"",
                "policy = \"fixed-10\"",
                "trace = \"workloads/web.toml\"",
                "[[servers]]",
                "name = \"primary\"",
            ]),
            "s.toml:6:1: key `servers[0].role`: required key is missing",
        ),
        (
            "an unknown key in an array entry",
            scenario(&["colour = \"red\""]),
            "s.toml:11:1: key `servers[0].colour`: unknown field `colour`, expected one of `name`, `role`, `connect`, `connect_latency`, `query_overhead`, `refusal_latency`, `max_connections`, `usl_sigma`, `usl_kappa`, `max_connects_per_s`, `lag`",
        ),
        (
            "an unknown enum value",
            with_replica(&["[routing]", "replica_selection = \"fastest\""]),
            "s.toml:15:1: key `routing.replica_selection`: unknown variant `fastest`, expected one of `round_robin`, `random`, `least_outstanding`, `latency_aware`",
        ),
        (
            "a duration without a unit",
            scenario(&["[run]", "duration = 60"]),
            "s.toml:12:1: key `run.duration`: invalid type: integer `60`, expected a duration as a string with a unit, such as \"2.5s\" or \"250ms\"",
        ),
        (
            "a service name with a space",
            lines(&[
                "[[services]]",
                "name = \"my api\"",
                "policy = \"fixed-10\"",
                "trace = \"workloads/web.toml\"",
                "[[servers]]",
                "name = \"primary\"",
                "role = \"primary\"",
            ]),
            "s.toml:2:1: key `services[0].name`: expected a name of letters, digits, `-` and `_` (it is used in --set keys), got \"my api\"",
        ),
        (
            "a server name used twice",
            scenario(&["[[servers]]", "name = \"primary\"", "role = \"replica\""]),
            "s.toml:12:1: key `servers[1].name`: the name \"primary\" is used twice",
        ),
    ];
    check(&cases, load);
}

#[test]
fn service_and_workload_errors() {
    let cases = [
        (
            "a share above 1",
            scenario(&[
                "[[services]]",
                "name = \"web\"",
                "policy = \"fixed-10\"",
                "share = 1.5",
            ]),
            "s.toml:14:1: key `services[1].share`: expected a fraction in (0, 1], got 1.5",
        ),
        (
            "shares that do not sum to 1",
            lines(&[
                "[workload]",
                "trace = \"workloads/web.toml\"",
                "[[services]]",
                "name = \"api\"",
                "policy = \"fixed-10\"",
                "share = 0.5",
                "[[services]]",
                "name = \"web\"",
                "policy = \"fixed-10\"",
                "share = 0.3",
                "[[servers]]",
                "name = \"primary\"",
                "role = \"primary\"",
            ]),
            "s.toml:6:1: key `services[0].share`: expected the services' shares to sum to 1, got 0.5 + 0.3 = 0.8",
        ),
        (
            "both share and trace",
            scenario(&[
                "[[services]]",
                "name = \"web\"",
                "policy = \"fixed-10\"",
                "share = 0.5",
                "trace = \"workloads/reports.toml\"",
            ]),
            "s.toml:15:1: key `services[1].trace`: expected either `share` (a fraction of the shared [workload]) or `trace` (its own workload), not both",
        ),
        (
            "neither share nor trace",
            scenario(&["[[services]]", "name = \"web\"", "policy = \"fixed-10\""]),
            "s.toml:12:1: key `services[1].share`: expected `share` (a fraction of the shared [workload]) or `trace` (its own workload)",
        ),
        (
            "a shared workload nobody shares",
            lines(&[
                "[workload]",
                "trace = \"workloads/web.toml\"",
                "[[services]]",
                "name = \"api\"",
                "policy = \"fixed-10\"",
                "trace = \"workloads/reports.toml\"",
                "[[servers]]",
                "name = \"primary\"",
                "role = \"primary\"",
            ]),
            "s.toml:1:2: key `workload`: no service takes a `share` of the shared workload: give services a share, or remove [workload]",
        ),
        (
            "a share without a shared workload",
            lines(&[
                "[[services]]",
                "name = \"api\"",
                "policy = \"fixed-10\"",
                "share = 1.0",
                "[[servers]]",
                "name = \"primary\"",
                "role = \"primary\"",
            ]),
            "s.toml:4:1: key `services[0].share`: a share needs the scenario's [workload] (the workload it is a share of)",
        ),
        (
            "no instance",
            scenario(&["[[services]]", "name = \"web\"", "instances = 0", "policy = \"fixed-10\"", "trace = \"workloads/reports.toml\""]),
            "s.toml:13:1: key `services[1].instances`: expected 1 to 65535 instances, got 0",
        ),
        (
            "an unknown policy",
            scenario(&["[[services]]", "name = \"web\"", "policy = \"fixed-11\"", "trace = \"workloads/reports.toml\""]),
            "s.toml:13:1: key `services[1].policy`: policy `fixed-11`: no such file, and not a shipped name (shipped: seed-80-30, seed-80-30-low10s, seed-repaired, fixed-10, fixed-25, hikari-fixed, hikari-elastic, pgbouncer-txn, pgbouncer-reserve, bb8-default, sqlx-default, deadpool-default, no-pool, aimd, vegas, gradient, gradient2, envoy-gradient, codel-queue, flexy-overflow, priority-partitions)",
        ),
        (
            "a missing workload file",
            lines(&[
                "[[services]]",
                "name = \"api\"",
                "policy = \"fixed-10\"",
                "trace = \"workloads/nope.toml\"",
                "[[servers]]",
                "name = \"primary\"",
                "role = \"primary\"",
            ]),
            "s.toml:4:1: key `services[0].trace`: cannot read <root>/scenarios/workloads/nope.toml: No such file or directory (os error 2)",
        ),
        (
            "a malformed policy override",
            scenario(&["[[services]]", "name = \"web\"", "policy = \"fixed-10\"", "set = [\"size.max\"]", "trace = \"workloads/reports.toml\""]),
            "s.toml:14:8: key `services[1].set[0]`: expected key=value, e.g. resize.scale_up=0.7",
        ),
        (
            "a policy override the policy rejects names the policy and the entry",
            scenario(&["[[services]]", "name = \"web\"", "policy = \"fixed-10\"", "set = [\"size.min=20\"]", "trace = \"workloads/reports.toml\""]),
            "policies/fixed-10.toml (built-in) (overridden by --set size.min=20, from services[1].set[0] at s.toml:14:8): key `size.min`: expected size.min <= size.max, got min 20 > max 10",
        ),
        (
            "a shared workload with a [database] table",
            lines(&[
                "[workload]",
                "trace = \"../traces/steady.toml\"",
                "[[services]]",
                "name = \"api\"",
                "policy = \"fixed-10\"",
                "share = 1.0",
                "[[servers]]",
                "name = \"primary\"",
                "role = \"primary\"",
            ]),
            "<root>/scenarios/../traces/steady.toml:24:2: key `database`: a scenario's workload describes its requests only (workload.trace at s.toml:2:1): the database is described by the scenario's [[servers]] (the same keys, per server); remove it, or use a workload file without it",
        ),
        (
            "a workload override of its database",
            scenario(&["[[services]]", "name = \"web\"", "policy = \"fixed-10\"", "trace = \"workloads/reports.toml\"", "trace_set = [\"app.instances=3\"]"]),
            "s.toml:15:14: key `services[1].trace_set[0]`: a scenario's workload describes its requests only, not `app`: application instances are the scenario's [[services]] (instances, balance)",
        ),
        (
            "the last instance starts after the run (in the service)",
            lines(&[
                "[workload]",
                "trace = \"workloads/web.toml\"",
                "[[services]]",
                "name = \"api\"",
                "instances = 3",
                "policy = \"fixed-10\"",
                "share = 1.0",
                "start_stagger = \"1m\"",
                "[[servers]]",
                "name = \"primary\"",
                "role = \"primary\"",
            ]),
            "s.toml:4:1: key `services[0].start_at`: service \"api\"'s last instance starts at 2m, not before the run ends (2m)",
        ),
    ];
    check(&cases, load);
}

#[test]
fn server_and_routing_errors() {
    let cases = [
        (
            "the first server is a replica",
            lines(&[
                "[[services]]",
                "name = \"api\"",
                "policy = \"fixed-10\"",
                "trace = \"workloads/web.toml\"",
                "[[servers]]",
                "name = \"r\"",
                "role = \"replica\"",
            ]),
            "s.toml:7:1: key `servers[0].role`: the first [[servers]] entry is the primary: expected role = \"primary\"",
        ),
        (
            "two primaries",
            scenario(&["[[servers]]", "name = \"other\"", "role = \"primary\""]),
            "s.toml:13:1: key `servers[1].role`: only the first [[servers]] entry is the primary: expected role = \"replica\"",
        ),
        (
            "a lag on the primary",
            scenario(&["lag = \"1s\""]),
            "s.toml:11:1: key `servers[0].lag`: applies only to replicas (role = \"replica\"): the primary has no lag",
        ),
        (
            "a preset and a distribution",
            scenario(&["connect = \"loopback_tcp\"", "connect_latency = { kind = \"constant\", value = \"1ms\" }"]),
            "s.toml:12:1: key `servers[0].connect_latency`: expected either `connect` (a preset) or `connect_latency` (a distribution), not both",
        ),
        (
            "a bad connect distribution in a replica",
            with_replica(&["connect_latency = { kind = \"lognormal\", median = \"5ms\", p99 = \"1ms\" }"]),
            "s.toml:14:57: key `servers[1].connect_latency.p99`: expected p99 above the median (5ms), got 1ms",
        ),
        (
            "no connection allowed",
            scenario(&["max_connections = 0"]),
            "s.toml:11:1: key `servers[0].max_connections`: expected at least 1, got 0",
        ),
        (
            "a negative contention",
            with_replica(&["usl_kappa = -0.1"]),
            "s.toml:14:1: key `servers[1].usl_kappa`: expected a finite coefficient >= 0, got -0.1",
        ),
        (
            "a zero connect rate",
            scenario(&["max_connects_per_s = 0.0"]),
            "s.toml:11:1: key `servers[0].max_connects_per_s`: expected a positive rate in connects per second, got 0",
        ),
        (
            "reads to replicas without a replica",
            scenario(&["[routing]", "reads = \"replicas\""]),
            "s.toml:12:1: key `routing.reads`: reads = \"replicas\" needs at least one [[servers]] entry with role = \"replica\"",
        ),
        (
            "too many retries",
            with_replica(&["[routing]", "read_retries = 1000"]),
            "s.toml:15:1: key `routing.read_retries`: expected 0 to 100 retries, got 1000",
        ),
        (
            "a run longer than its bound",
            scenario(&["[run]", "duration = \"2h\"", "max_sim_time = \"1h\""]),
            "s.toml:12:1: key `run.duration`: the run lasts 2h, longer than run.max_sim_time (1h): raise max_sim_time",
        ),
        (
            "a zero sample interval",
            scenario(&["[run]", "sample_interval = \"0s\""]),
            "s.toml:12:1: key `run.sample_interval`: expected a positive duration or \"none\", got 0s",
        ),
    ];
    check(&cases, load);
}

#[test]
fn bouncer_errors() {
    let cases = [
        (
            "a reserve pool without a reserve policy",
            scenario(&["[bouncer]", "policy = \"fixed-10\"", "reserve_pool_size = 5"]),
            "s.toml:13:1: key `bouncer.reserve_pool_size`: applies only to a policy whose resize kind is \"reserve\" (policy `fixed-10` has kind = \"fixed\"; try policy = \"pgbouncer-reserve\")",
        ),
        (
            "a zero pool",
            scenario(&["[bouncer]", "default_pool_size = 0"]),
            "s.toml:12:1: key `bouncer.default_pool_size`: expected at least 1, got 0",
        ),
        (
            "a min above the pool",
            scenario(&["[bouncer]", "default_pool_size = 4", "min_pool_size = 5"]),
            "s.toml:13:1: key `bouncer.min_pool_size`: expected min_pool_size <= default_pool_size (4), got 5",
        ),
        (
            "an unknown mode",
            scenario(&["[bouncer]", "mode = \"statement\""]),
            "s.toml:12:1: key `bouncer.mode`: unknown variant `statement`, expected `transaction` or `session`",
        ),
        (
            "no client connection",
            scenario(&["[bouncer]", "max_client_conn = 0"]),
            "s.toml:12:1: key `bouncer.max_client_conn`: expected at least 1, got 0",
        ),
    ];
    check(&cases, load);
}

#[test]
fn event_fault_and_assertion_errors() {
    let cases = [
        (
            "an event for an unknown service",
            scenario(&["[[events]]", "kind = \"rolling_restart\"", "service = \"web\"", "at = \"60s\"", "pause = \"5s\""]),
            "s.toml:13:1: key `events[0].service`: no service named \"web\" (the services are: api)",
        ),
        (
            "an event without a pause",
            scenario(&["[[events]]", "kind = \"rolling_restart\"", "service = \"api\"", "at = \"60s\""]),
            "s.toml:12:1: key `events[0].pause`: required key is missing",
        ),
        (
            "an event after the run",
            scenario(&["[[events]]", "kind = \"rolling_restart\"", "service = \"api\"", "at = \"3m\"", "pause = \"5s\""]),
            "s.toml:14:1: key `events[0].at`: the rolling restart begins at 3m, not before the run ends (2m)",
        ),
        (
            "a fault on an unknown server",
            scenario(&["[[faults]]", "server = \"replica-1\"", "kind = \"restart\"", "at = \"60s\"", "downtime = \"5s\""]),
            "s.toml:12:1: key `faults[0].server`: no server named \"replica-1\" (the servers are: primary)",
        ),
        (
            "a restart without downtime",
            scenario(&["[[faults]]", "kind = \"restart\"", "at = \"60s\""]),
            "s.toml:12:1: key `faults[0].downtime`: kind = \"restart\" needs `downtime` (a duration such as \"30s\")",
        ),
        (
            "a fault key of another kind",
            scenario(&["[[faults]]", "kind = \"restart\"", "at = \"60s\"", "downtime = \"5s\"", "factor = 2.0"]),
            "s.toml:15:1: key `faults[0].factor`: does not apply to kind = \"restart\" (it takes: downtime)",
        ),
        (
            "an assertion missing its bound",
            scenario(&["[[assert]]", "kind = \"converge_within\""]),
            "s.toml:12:1: key `assert[0].within`: kind = \"converge_within\" needs `within` (a duration such as \"30s\")",
        ),
        (
            "an assertion key of another kind",
            scenario(&["[[assert]]", "kind = \"max_lost\"", "max = 0", "within = \"1s\""]),
            "s.toml:14:1: key `assert[0].within`: does not apply to kind = \"max_lost\" (it takes: service, max)",
        ),
        (
            "a timeout rate above 1",
            scenario(&["[[assert]]", "kind = \"max_timeout_rate\"", "max = 2"]),
            "s.toml:13:1: key `assert[0].max`: expected a fraction in [0, 1], got 2",
        ),
        (
            "a p99 bound without a unit",
            scenario(&["[[assert]]", "kind = \"max_p99_wait\"", "max = 50"]),
            "s.toml:13:1: key `assert[0].max`: expected a duration as a string with a unit, such as \"50ms\", got 50",
        ),
        (
            "a negative count",
            scenario(&["[[assert]]", "kind = \"max_connects_per_s\"", "max = -1"]),
            "s.toml:13:1: key `assert[0].max`: expected a whole number from 0 to 4294967295, got -1",
        ),
        (
            "an assertion on an unknown server",
            scenario(&["[[assert]]", "kind = \"max_refusals\"", "server = \"replica\"", "max = 0"]),
            "s.toml:13:1: key `assert[0].server`: no server named \"replica\" (the servers are: primary)",
        ),
        (
            "an unknown assertion kind",
            scenario(&["[[assert]]", "kind = \"max_cpu\""]),
            "s.toml:12:1: key `assert[0].kind`: unknown variant `max_cpu`, expected one of `max_connects_per_s`, `max_closes_per_s`, `max_refusals`, `converge_within`, `stable_for`, `max_timeout_rate`, `max_p99_wait`, `max_lost`",
        ),
    ];
    check(&cases, load);
}

#[test]
fn bouncer_shortcuts_map_onto_its_policy() {
    let s = load(&scenario(&[
        "[bouncer]",
        "default_pool_size = 8",
        "reserve_pool_size = 2",
        "reserve_pool_timeout = \"1s\"",
        "query_wait_timeout = \"30s\"",
        "server_lifetime = \"10m\"",
        "server_idle_timeout = \"30s\"",
    ]))
    .unwrap();
    let b = s.topology.bouncer.unwrap();
    // The pool is size.max - reserve_size: 8 + 2.
    assert_eq!(b.policy.pool.max, 10);
    let e = &b.policy.effective;
    assert_eq!(e["resize"]["kind"], "reserve");
    assert_eq!(e["resize"]["reserve_size"], 2);
    assert_eq!(e["resize"]["reserve_timeout"], "1s");
    assert_eq!(
        b.policy.pool.acquire_timeout,
        [SimDuration::from_secs(30); 3]
    );
    assert_eq!(e["connections"]["max_lifetime"], "10m");
    assert_eq!(e["connections"]["idle_timeout"], "30s");
    assert_eq!(b.mode, PoolMode::Transaction);
    assert_eq!(b.max_client_conn, 100);
    assert_eq!(b.client_connect_latency, SimDuration::from_nanos(100_000));
    assert_eq!(b.hop_overhead, SimDuration::from_nanos(50_000));
    // The policy's own reserve is kept when only the pool size changes.
    let s = load(&scenario(&[
        "[bouncer]",
        "mode = \"session\"",
        "policy = \"pgbouncer-reserve\"",
        "default_pool_size = 10",
    ]))
    .unwrap();
    let b = s.topology.bouncer.unwrap();
    assert_eq!(b.policy.pool.max, 15);
    assert_eq!(b.mode, PoolMode::Session);
    // Without shortcuts the policy is as shipped.
    let s = load(&scenario(&["[bouncer]"])).unwrap();
    assert_eq!(s.topology.bouncer.unwrap().policy.pool.max, 20);
}

#[test]
fn run_defaults_come_from_the_shared_workload() {
    let s = load(&scenario(&[])).unwrap();
    let w = s.shared.as_ref().unwrap();
    assert_eq!(s.run.sample_interval, w.spec.run.sample_interval);
    assert_eq!(s.run.drain, w.spec.run.drain);
    let s = load(&lines(&[
        "[workload]",
        "trace = \"workloads/web.toml\"",
        "set = [\"run.drain=false\", \"run.sample_interval=5s\"]",
        "[run]",
        "sample_interval = \"2s\"",
        "[[services]]",
        "name = \"api\"",
        "policy = \"fixed-10\"",
        "share = 1.0",
        "[[servers]]",
        "name = \"primary\"",
        "role = \"primary\"",
    ]))
    .unwrap();
    assert!(!s.run.drain, "drain comes from the workload's [run]");
    assert_eq!(s.run.sample_interval, Some(SimDuration::from_secs(2)));
    // No shared workload: the built-in defaults, and the horizon of the
    // longest own workload.
    let s = load(&lines(&[
        "[[services]]",
        "name = \"api\"",
        "policy = \"fixed-10\"",
        "trace = \"workloads/reports.toml\"",
        "trace_set = [\"duration=30s\"]",
        "[[services]]",
        "name = \"web\"",
        "policy = \"fixed-10\"",
        "trace = \"workloads/web.toml\"",
        "[[servers]]",
        "name = \"primary\"",
        "role = \"primary\"",
    ]))
    .unwrap();
    assert!(s.shared.is_none());
    assert_eq!(s.own.len(), 2);
    assert_eq!(s.run.horizon, Some(SimDuration::from_secs(120)));
    assert_eq!(
        s.run.max_events,
        pooltune::sim::RunOptions::default().max_events
    );
}

#[test]
fn routing_defaults_follow_the_servers() {
    let s = load(&with_replica(&[])).unwrap();
    assert!(s.topology.routing.reads_to_replicas);
    assert_eq!(
        s.topology.routing.replica_selection,
        ReplicaSelection::RoundRobin
    );
    assert!(!s.topology.routing.read_your_writes);
    assert_eq!(s.topology.routing.ban_time, SimDuration::from_secs(60));
    assert_eq!(s.topology.routing.read_retries, 1);
    let s = load(&with_replica(&["[routing]", "reads = \"primary\""])).unwrap();
    assert!(!s.topology.routing.reads_to_replicas);
    let s = load(&scenario(&[])).unwrap();
    assert!(!s.topology.routing.reads_to_replicas);
    assert_eq!(s.effective["routing"]["reads"], "primary");
}

#[test]
fn the_hash_covers_referenced_files() {
    let a = load(&scenario(&[])).unwrap();
    // A workload override changes the workload's hash, hence the scenario's.
    let b = load_with(
        &scenario(&[]),
        &sets(&["workload.set=[\"arrivals.rate_per_s=100\"]"]),
    )
    .unwrap();
    assert_ne!(a.hash, b.hash);
    assert_ne!(
        a.effective["workload"]["hash"],
        b.effective["workload"]["hash"]
    );
    // A policy override changes the policy's hash.
    let c = load_with(
        &scenario(&[]),
        &sets(&["services.api.set=[\"acquire_timeout.low=1s\"]"]),
    )
    .unwrap();
    assert_ne!(a.hash, c.hash);
    assert_ne!(
        a.effective["services"][0]["policy_hash"],
        c.effective["services"][0]["policy_hash"]
    );
    // Defaults are written out: the same scenario written in full hashes the same.
    let d = load(&scenario(&[
        "[routing]",
        "reads = \"primary\"",
        "[run]",
        "duration = \"2m\"",
    ]))
    .unwrap();
    assert_eq!(a.hash, d.hash);
}

/// Valid scenario lines to mutate: every section once.
fn rich() -> String {
    with_replica(&[
        "lag = \"10ms\"",
        "[bouncer]",
        "default_pool_size = 4",
        "[routing]",
        "replica_selection = \"random\"",
        "[[events]]",
        "kind = \"rolling_restart\"",
        "service = \"api\"",
        "at = \"60s\"",
        "pause = \"1s\"",
        "[[faults]]",
        "server = \"replica-1\"",
        "kind = \"restart\"",
        "at = \"30s\"",
        "downtime = \"5s\"",
        "[[assert]]",
        "kind = \"max_p99_wait\"",
        "priority = \"high\"",
        "max = \"50ms\"",
    ])
}

#[test]
fn the_rich_base_is_valid() {
    let s = load(&rich()).unwrap();
    assert!(s.topology.bouncer.is_some());
    assert_eq!(s.topology.servers[1].lag, SimDuration::from_millis(10));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Mutated scenario text (a line dropped, a line replaced by another
    /// line of the file or by junk, a character changed) never panics, and
    /// every error names a document.
    #[test]
    fn mutated_scenarios_never_panic(
        drop in 0usize..40,
        swap in (0usize..40, 0usize..40),
        junk in "[a-z_\\[\\]=\"0-9. -]{0,20}",
        at in 0usize..40,
        ch in prop::sample::select(vec!['"', '[', ']', '=', '0', '-', '.', ' ', 'x', '\n']),
        pos in 0usize..800,
    ) {
        let base = rich();
        let mut ls: Vec<String> = base.lines().map(str::to_string).collect();
        let n = ls.len();
        ls.remove(drop % n);
        let n = ls.len();
        let donor = ls[swap.1 % n].clone();
        ls[swap.0 % n] = donor;
        ls[at % n] = junk;
        let mut text = ls.join("\n");
        let mut chars: Vec<char> = text.chars().collect();
        let p = pos % chars.len().max(1);
        if !chars.is_empty() {
            chars[p] = ch;
        }
        text = chars.into_iter().collect();
        if let Err(e) = load(&text) {
            prop_assert!(e.contains("s.toml") || e.contains(".toml") || e.starts_with("--set"), "{e}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = load(&text);
    }

    #[test]
    fn arbitrary_overrides_never_panic(
        key in prop::sample::select(vec![
            "services.api.instances", "services.0.share", "servers.primary.lag",
            "servers.replica-1.max_connects_per_s", "routing.reads", "run.duration",
            "events.0.pause", "faults.0.server", "assert.0.max", "bouncer.default_pool_size",
            "services.nope.x", "servers", "name", "run",
        ]),
        value in prop::sample::select(vec!["0", "1", "-1", "1.5", "\"x\"", "5s", "none", "[1]", "{}", "true"]),
    ) {
        if let Ok(o) = Override::parse(&format!("{key}={value}")) {
            let _ = load_with(&rich(), &[o]);
        }
    }
}
