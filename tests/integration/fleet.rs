//! The topology engine (`sim::fleet`) on hand-built topologies: PgBouncer
//! against the M/M/c oracle, replica failure and routing, rolling restarts
//! under a connect rate limit, conservation and determinism.

use pooltune::config::policy::PolicySpec;
use pooltune::config::Override;
use pooltune::core::metrics::NullSink;
use pooltune::dist::DurationDist;
use pooltune::rng::SeedTree;
use pooltune::scenario::load_policy;
use pooltune::sim::db::{DatabaseModel, Wire};
use pooltune::sim::fault::{FaultKind, FaultSpec, FaultTiming};
use pooltune::sim::fleet::simulate_fleet;
use pooltune::sim::topology::{
    Bouncer, FleetEvent, FleetOutcome, PoolMode, ReplicaSelection, Routing, Server, ServerFault,
    Service, ServiceWorkload, Topology,
};
use pooltune::sim::{Balance, RunOptions};
use pooltune::time::SimDuration;
use pooltune::trace::synthetic::{Synthetic, SyntheticSpec};

fn policy(name: &str, set: &[&str]) -> PolicySpec {
    let o: Vec<Override> = set.iter().map(|s| Override::parse(s).unwrap()).collect();
    load_policy(name, &o).unwrap().spec
}

fn ms(x: u64) -> SimDuration {
    SimDuration::from_millis(x)
}

fn server(name: &str, max_connections: u32, connect_ms: u64) -> Server {
    Server {
        name: name.into(),
        model: DatabaseModel {
            connect_latency: DurationDist::Constant {
                value_ns: connect_ms * 1_000_000,
            },
            max_connections,
            usl_sigma: 0.0,
            usl_kappa: 0.0,
        },
        wire: Wire::default(),
        max_connects_per_s: None,
        lag: SimDuration::ZERO,
    }
}

fn service(name: &str, instances: u16, p: PolicySpec) -> Service {
    Service {
        name: name.into(),
        instances,
        policy: p,
        workload: ServiceWorkload::Share(1.0),
        balance: Balance::RoundRobin,
        start_at: SimDuration::ZERO,
        start_stagger: SimDuration::ZERO,
    }
}

fn routing() -> Routing {
    Routing {
        reads_to_replicas: false,
        replica_selection: ReplicaSelection::RoundRobin,
        read_your_writes: false,
        ban_time: SimDuration::from_secs(60),
        read_retries: 1,
    }
}

fn run(topo: &Topology, load: &SyntheticSpec, seed: u64, opts: &RunOptions) -> FleetOutcome {
    let seeds = SeedTree::new(seed);
    let mut src = Synthetic::new(load, &seeds);
    simulate_fleet(
        topo,
        Some(&mut src),
        Vec::new(),
        &seeds,
        opts,
        &mut NullSink,
    )
    .unwrap()
}

fn totals(out: &FleetOutcome) -> (u64, u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0, 0);
    for s in &out.services {
        for c in &s.requests.classes {
            t.0 += c.arrived;
            t.1 += c.completed;
            t.2 += c.timed_out;
            t.3 += c.failed;
            t.4 += c.rejected;
        }
    }
    t
}

fn erlang_c(c: u32, a: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..c {
        term *= a / k as f64;
        sum += term;
    }
    let last = term * a / c as f64 * (c as f64 / (c as f64 - a));
    last / (sum + last)
}

/// PgBouncer in transaction mode with a pool of 4 and 16 client
/// connections is, for the requests, an M/M/4 queue: the 4 server
/// connections are busy whenever 4 requests are in the system, so the mean
/// wait (application queue + PgBouncer queue) is Erlang C's.
#[test]
fn pgbouncer_pool_of_4_queues_like_an_mmc_queue_of_4() {
    let (c, lambda) = (4u32, 3.2f64);
    let exact = erlang_c(c, lambda) / (c as f64 - lambda); // seconds (mean service 1 s)
    let bouncer = Bouncer {
        mode: PoolMode::Transaction,
        policy: policy(
            "fixed-10",
            &[
                "size.min=4",
                "size.max=4",
                "acquire_timeout.high=none",
                "acquire_timeout.normal=none",
                "acquire_timeout.low=none",
            ],
        ),
        max_client_conn: 16,
        client_connect_latency: SimDuration::ZERO,
        hop_overhead: SimDuration::ZERO,
    };
    let app = policy(
        "fixed-10",
        &[
            "size.min=4",
            "size.max=4",
            "acquire_timeout.high=none",
            "acquire_timeout.normal=none",
            "acquire_timeout.low=none",
        ],
    );
    let topo = Topology {
        services: vec![service("api", 4, app)],
        bouncer: Some(bouncer),
        servers: vec![server("primary", 100, 0)],
        routing: routing(),
        events: Vec::new(),
        faults: Vec::new(),
    };
    let load = SyntheticSpec {
        rate_per_s: lambda,
        service: DurationDist::Exponential { mean_ns: 1e9 },
        priority_mix: [0.0, 1.0, 0.0],
        write_fraction: 0.0,
        duration: None,
        max_requests: Some(200_000),
    };
    let opts = RunOptions {
        sample_interval: None,
        ..RunOptions::default()
    };
    let seeds = [11u64, 12, 13, 14, 15];
    let means: Vec<f64> = seeds
        .iter()
        .map(|&s| {
            let out = run(&topo, &load, s, &opts);
            let b = out.bouncer.as_ref().unwrap();
            assert_eq!(b.clients_max, 16, "16 client connections");
            assert_eq!(b.clients_refused, 0);
            assert!(out.servers[0].stats.backends_max <= 4);
            let t = totals(&out);
            assert_eq!(t.0, 200_000);
            assert_eq!(t.1, 200_000, "all served");
            out.services[0].requests.classes[1].wait.mean_ns() / 1e9
        })
        .collect();
    let n = means.len() as f64;
    let mean = means.iter().sum::<f64>() / n;
    let sd = (means.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let half = 2.776 * sd / n.sqrt(); // t(0.975, 4)
    eprintln!("PgBouncer 4 / 16 clients: Wq {mean:.4} ± {half:.4} s, Erlang C {exact:.4} s");
    assert!(
        (mean - exact).abs() <= half,
        "Wq {mean} ± {half} vs Erlang C {exact}"
    );
}

fn replicas_topology(selection: ReplicaSelection) -> Topology {
    let p = policy("fixed-10", &["size.min=5", "size.max=5"]);
    let mut servers = vec![server("primary", 100, 2)];
    for r in 1..=2 {
        servers.push(server(&format!("replica-{r}"), 100, 2));
    }
    Topology {
        services: vec![service("api", 2, p)],
        bouncer: None,
        servers,
        routing: Routing {
            reads_to_replicas: true,
            replica_selection: selection,
            ..routing()
        },
        events: Vec::new(),
        faults: vec![ServerFault {
            server: 1,
            spec: FaultSpec {
                kind: FaultKind::Restart {
                    downtime: SimDuration::from_secs(20),
                },
                timing: FaultTiming::At(SimDuration::from_secs(30)),
            },
        }],
    }
}

fn mixed_load(rate: f64, secs: u64) -> SyntheticSpec {
    SyntheticSpec {
        rate_per_s: rate,
        service: DurationDist::Exponential { mean_ns: 5e6 },
        priority_mix: [0.2, 0.6, 0.2],
        write_fraction: 0.2,
        duration: Some(SimDuration::from_secs(secs)),
        max_requests: None,
    }
}

/// A replica fails for 20 s: its running reads are sent again elsewhere,
/// it is banned, reads shift to the survivor; no read is lost and the
/// writes (on the primary) are untouched.
#[test]
fn a_replica_failure_shifts_reads_to_the_survivor_and_loses_none() {
    for sel in [
        ReplicaSelection::RoundRobin,
        ReplicaSelection::Random,
        ReplicaSelection::LeastOutstanding,
        ReplicaSelection::LatencyAware,
    ] {
        let topo = replicas_topology(sel);
        let opts = RunOptions {
            check_invariants: true,
            ..RunOptions::default()
        };
        let out = run(&topo, &mixed_load(400.0, 90), 3, &opts);
        let s = &out.services[0];
        let (arrived, completed, timed_out, failed, rejected) = totals(&out);
        assert_eq!(failed, 0, "{sel:?}: no request lost");
        assert_eq!(timed_out + rejected, 0, "{sel:?}");
        assert_eq!(arrived, completed);
        assert!(
            s.requests.retried > 0,
            "{sel:?}: reads running at the crash were retried"
        );
        let r1 = &out.servers[1];
        let r2 = &out.servers[2];
        assert!(r1.bans >= 1, "{sel:?}: the failed replica was banned");
        assert!(r1.stats.broken >= 1);
        // Reads during the outage went to the survivor: replica-2 ran more.
        assert!(
            r2.queries > r1.queries,
            "{sel:?}: {} vs {}",
            r2.queries,
            r1.queries
        );
        // Writes only on the primary: it ran every write and no read
        // (replicas were never all banned at once).
        assert_eq!(
            out.servers[0].queries,
            s.requests.writes + s.requests.reads_on_primary
        );
        assert_eq!(
            r1.queries + r2.queries + out.servers[0].queries,
            completed,
            "{sel:?}"
        );
        // Per second, replica-1 served nothing while it was down (30-50 s).
        assert_eq!(out.faults.len(), 1);
        assert!(out.faults[0].connections_broken >= 1);
    }
}

/// Round robin spreads reads evenly over two healthy replicas; writes go to
/// the primary; read-your-writes keeps an instance's reads on the primary
/// during the replica's lag.
#[test]
fn reads_spread_over_replicas_and_read_your_writes_uses_the_primary() {
    let mut topo = replicas_topology(ReplicaSelection::RoundRobin);
    topo.faults.clear();
    let load = mixed_load(300.0, 30);
    let out = run(&topo, &load, 5, &RunOptions::default());
    let (r1, r2) = (out.servers[1].queries, out.servers[2].queries);
    assert!(r1.abs_diff(r2) <= 2, "round robin: {r1} vs {r2}");
    let s = &out.services[0].requests;
    assert_eq!(out.servers[0].queries, s.writes);
    assert_eq!(s.reads_on_primary, 0);

    // A lag of 1 s with read-your-writes: at 300 req/s with 20 % writes
    // over two instances, nearly every read follows a write within 1 s.
    for r in 1..=2 {
        topo.servers[r].lag = SimDuration::from_secs(1);
    }
    topo.routing.read_your_writes = true;
    let out = run(&topo, &load, 5, &RunOptions::default());
    let s = &out.services[0].requests;
    assert!(
        s.reads_on_primary as f64 > 0.9 * s.reads as f64,
        "{} of {} reads on the primary",
        s.reads_on_primary,
        s.reads
    );
    assert_eq!(out.servers[0].queries, s.writes + s.reads_on_primary);
}

fn fleet_with_limit(stagger: Option<&str>) -> Topology {
    let mut set = vec!["size.min=25", "size.max=25"];
    let s;
    if let Some(iv) = stagger {
        s = format!("connections.create_interval={iv}");
        set.push(&s);
    }
    let p = policy("fixed-25", &set);
    let mut primary = server("primary", 400, 5);
    primary.max_connects_per_s = Some(100.0);
    Topology {
        services: vec![Service {
            start_stagger: SimDuration::from_secs(3),
            ..service("api", 8, p)
        }],
        bouncer: None,
        servers: vec![primary],
        routing: routing(),
        events: vec![FleetEvent::RollingRestart {
            service: 0,
            at: SimDuration::from_secs(60),
            pause: ms(100),
        }],
        faults: Vec::new(),
    }
}

fn max_per_s(v: &[u32]) -> u32 {
    v.iter().copied().max().unwrap_or(0)
}

/// A rolling restart of 8 instances x 25 connections, 0.1 s apart, under a
/// 100 connects/s limit: without warm-up staggering the new pools' connects
/// burst past the limit (refusals, retries); with connects 100 ms apart
/// per pool they stay under it.
#[test]
fn a_rolling_restart_bursts_past_the_connect_limit_unless_staggered() {
    let load = mixed_load(400.0, 120);
    let opts = RunOptions {
        check_invariants: true,
        ..RunOptions::default()
    };
    let burst = run(&fleet_with_limit(None), &load, 7, &opts);
    let calm = run(&fleet_with_limit(Some("100ms")), &load, 7, &opts);
    let (b, c) = (&burst.servers[0], &calm.servers[0]);
    let restart = 60usize..66;
    let peak = |v: &[u32]| max_per_s(&v[restart.clone()]);
    eprintln!(
        "rolling restart: connects/s peak {} (refused {}) vs staggered {} (refused {})",
        peak(&b.series.connects),
        b.refused_rate,
        peak(&c.series.connects),
        c.refused_rate
    );
    assert!(peak(&b.series.connects) > 100, "unstaggered exceeds 100/s");
    assert!(b.refused_rate > 0);
    assert!(
        max_per_s(&c.series.connects) <= 100,
        "staggered stays under"
    );
    assert_eq!(c.refused_rate, 0);
    // Each restarted instance: a new generation of its pool that converged.
    let svc = &calm.services[0];
    assert_eq!(svc.pools.len(), 16, "8 instances x 2 generations");
    assert_eq!(svc.starts.len(), 16);
    for p in &svc.pools {
        let conv = p.converged.expect("every pool reached 25");
        let took = (conv - p.started).as_secs_f64();
        assert!(took < 3.0, "{took} s: 25 connects 100 ms apart");
        if p.generation == 0 {
            assert!(p.stopped.is_some());
        }
    }
    for out in [&burst, &calm] {
        let (arrived, completed, timed_out, failed, rejected) = totals(out);
        assert_eq!(arrived, completed + timed_out + failed + rejected);
        assert_eq!(
            out.services[0].requests.unrouted, 0,
            "an instance is always up"
        );
    }
}

/// Instances started 10 s apart: requests before the first is up are
/// unrouted; afterwards everything is served.
#[test]
fn a_cold_start_leaves_early_requests_unrouted() {
    let p = policy("fixed-10", &[]);
    let topo = Topology {
        services: vec![Service {
            start_at: SimDuration::from_secs(5),
            start_stagger: SimDuration::from_secs(10),
            ..service("api", 3, p)
        }],
        bouncer: None,
        servers: vec![server("primary", 100, 2)],
        routing: routing(),
        events: Vec::new(),
        faults: Vec::new(),
    };
    let load = mixed_load(100.0, 60);
    let out = run(&topo, &load, 1, &RunOptions::default());
    let s = &out.services[0];
    // About 5 s x 100 req/s before the first instance.
    assert!(
        (400..600).contains(&s.requests.unrouted),
        "{}",
        s.requests.unrouted
    );
    assert_eq!(s.series.instances_up[2], 0);
    assert_eq!(s.series.instances_up[10], 1);
    assert_eq!(s.series.instances_up[30], 3);
    let (arrived, completed, ..) = totals(&out);
    assert_eq!(arrived, completed + s.requests.unrouted);
}

/// Same topology and seed: identical outcome; session mode runs and keeps
/// one server connection per client connection.
#[test]
fn fleet_runs_are_deterministic_and_session_mode_binds_connections() {
    let bouncer = |mode| Bouncer {
        mode,
        policy: policy("pgbouncer-txn", &["size.max=20"]),
        max_client_conn: 100,
        client_connect_latency: ms(0),
        hop_overhead: SimDuration::from_nanos(50_000),
    };
    let mk = |mode| Topology {
        services: vec![service(
            "api",
            4,
            policy("fixed-10", &["size.min=5", "size.max=5"]),
        )],
        bouncer: Some(bouncer(mode)),
        servers: vec![server("primary", 100, 3)],
        routing: routing(),
        events: Vec::new(),
        faults: Vec::new(),
    };
    let load = mixed_load(500.0, 30);
    let a = run(&mk(PoolMode::Transaction), &load, 9, &RunOptions::default());
    let b = run(&mk(PoolMode::Transaction), &load, 9, &RunOptions::default());
    assert_eq!(totals(&a), totals(&b));
    assert_eq!(a.events, b.events);
    assert_eq!(a.servers[0].series, b.servers[0].series);
    // Transaction mode: few server connections serve 20 client ones.
    let tx_backends = a.servers[0].stats.backends_max;
    let s = run(&mk(PoolMode::Session), &load, 9, &RunOptions::default());
    let (arrived, completed, ..) = totals(&s);
    assert_eq!(arrived, completed);
    assert_eq!(
        s.servers[0].stats.backends_max, 20,
        "one per client connection"
    );
    assert!(
        tx_backends < 20,
        "transaction mode multiplexes: {tx_backends}"
    );
}
