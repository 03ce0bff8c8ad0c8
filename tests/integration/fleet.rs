//! The topology engine (`sim::fleet`) on hand-built topologies: PgBouncer
//! against the M/M/c oracle, replica failure and routing, rolling restarts
//! under a connect rate limit, conservation and determinism; closed-loop
//! clients (issue 3) against the machine-repairman queue M/M/c//N.

use pooltune::config::policy::PolicySpec;
use pooltune::config::Override;
use pooltune::core::metrics::NullSink;
use pooltune::core::request::{Kind, Priority, Request};
use pooltune::dist::DurationDist;
use pooltune::rng::SeedTree;
use pooltune::rng::Stream;
use pooltune::scenario::load_policy;
use pooltune::sim::db::{DatabaseModel, Wire};
use pooltune::sim::fault::{FaultKind, FaultSpec, FaultTiming};
use pooltune::sim::fleet::simulate_fleet;
use pooltune::sim::topology::{
    Bouncer, FleetEvent, FleetOutcome, PoolMode, ReplicaSelection, Routing, Server, ServerFault,
    Service, ServiceWorkload, Topology,
};
use pooltune::sim::{Balance, RunOptions};
use pooltune::time::{SimDuration, SimTime};
use pooltune::trace::synthetic::{Synthetic, SyntheticSpec};
use pooltune::trace::RequestSource;
use rand::Rng;

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

// ---- closed-loop clients (issue 3) ------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Think {
    Constant(SimDuration),
    Exponential(SimDuration),
}

/// One request a test client sent, and when the engine reported its end.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    client: u32,
    arrival: SimTime,
    work: SimDuration,
    end: Option<SimTime>,
}

/// A tiny closed-loop source, independent of the trace generator: `n`
/// clients, each sending its first request one think time after 0 and its
/// next one a think time after the previous one ended, while that is at
/// most `until`. Work is exponential; a fraction of requests are writes.
/// It logs every request and its end, and panics on an end it did not
/// expect (the engine reported a client with nothing in flight).
struct Clients {
    think: Think,
    work_mean: SimDuration,
    write_fraction: f64,
    until: SimTime,
    rng: Stream,
    /// First requests, latest first (popped from the back).
    firsts: Vec<Request>,
    log: Vec<Sent>,
    /// Per client, its request in flight (index into `log`).
    open: Vec<Option<usize>>,
    stopped: u32,
    closed: bool,
}

impl Clients {
    fn new(n: u32, think: Think, work_mean: SimDuration, until: SimDuration, seed: u64) -> Self {
        let mut c = Clients {
            think,
            work_mean,
            write_fraction: 0.0,
            until: SimTime::ZERO + until,
            rng: SeedTree::new(seed).stream("test/clients"),
            firsts: Vec::new(),
            log: Vec::new(),
            open: vec![None; n as usize],
            stopped: 0,
            closed: false,
        };
        let mut firsts: Vec<Request> = (0..n)
            .map(|k| {
                let at = SimTime::ZERO + c.draw_think();
                c.request(k, at)
            })
            .collect();
        firsts.sort_by_key(|r| std::cmp::Reverse((r.arrival, r.client)));
        c.firsts = firsts;
        c
    }

    fn writes(mut self, fraction: f64) -> Self {
        self.write_fraction = fraction;
        self
    }

    fn exp(&mut self, mean: SimDuration) -> SimDuration {
        let u: f64 = self.rng.random();
        SimDuration::from_nanos((-(mean.as_nanos() as f64) * (1.0 - u).ln()) as u64)
    }

    fn draw_think(&mut self) -> SimDuration {
        match self.think {
            Think::Constant(d) => d,
            Think::Exponential(m) => self.exp(m),
        }
    }

    fn request(&mut self, client: u32, arrival: SimTime) -> Request {
        let work = self.exp(self.work_mean);
        let write = self.rng.random::<f64>() < self.write_fraction;
        Request {
            arrival,
            service: work,
            priority: Priority::Normal,
            kind: if write { Kind::Write } else { Kind::Read },
            client,
        }
    }

    fn send(&mut self, r: Request) -> Request {
        assert!(
            self.open[r.client as usize].is_none(),
            "one request at a time"
        );
        self.open[r.client as usize] = Some(self.log.len());
        self.log.push(Sent {
            client: r.client,
            arrival: r.arrival,
            work: r.service,
            end: None,
        });
        r
    }

    fn in_flight(&self) -> usize {
        self.open.iter().filter(|o| o.is_some()).count()
    }
}

impl RequestSource for Clients {
    fn next_request(&mut self) -> Option<Request> {
        assert!(self.closed, "close_loop is asked before the first request");
        loop {
            let r = self.firsts.pop()?;
            if r.arrival <= self.until {
                return Some(self.send(r));
            }
            self.stopped += 1;
        }
    }

    fn close_loop(&mut self) -> bool {
        self.closed = true;
        true
    }

    fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
        let i = self.open[client as usize]
            .take()
            .unwrap_or_else(|| panic!("client {client} ended at {at} with nothing in flight"));
        self.log[i].end = Some(at);
        let next = at + self.draw_think();
        if next > self.until {
            self.stopped += 1;
            return None;
        }
        let r = self.request(client, next);
        Some(self.send(r))
    }
}

fn run_clients(
    topo: &Topology,
    clients: &mut Clients,
    seed: u64,
    opts: &RunOptions,
) -> FleetOutcome {
    let seeds = SeedTree::new(seed);
    let src: &mut dyn RequestSource = clients;
    simulate_fleet(topo, Some(src), Vec::new(), &seeds, opts, &mut NullSink).unwrap()
}

fn no_timeouts(size: u32) -> PolicySpec {
    let min = format!("size.min={size}");
    let max = format!("size.max={size}");
    policy(
        "fixed-10",
        &[
            &min,
            &max,
            "acquire_timeout.high=none",
            "acquire_timeout.normal=none",
            "acquire_timeout.low=none",
        ],
    )
}

/// Closed-loop clients through a cold start (requests unrouted), a small
/// pool with a short acquire timeout (timeouts), a replica that crashes
/// (reads retried, queries failed) and a rolling restart: every client's
/// requests alternate with its think times, each one ends exactly once and
/// its next one is sent exactly one think time later; the clients keep
/// going to the end of the run whatever happened to their requests.
#[test]
fn closed_loop_clients_alternate_requests_and_think_times_through_every_ending() {
    let (n, think, until) = (60u32, ms(100), SimDuration::from_secs(60));
    let mut topo = replicas_topology(ReplicaSelection::RoundRobin);
    topo.services[0].policy = policy(
        "fixed-10",
        &["size.min=3", "size.max=3", "acquire_timeout.normal=20ms"],
    );
    topo.services[0].start_at = SimDuration::from_secs(2);
    topo.events = vec![FleetEvent::RollingRestart {
        service: 0,
        at: SimDuration::from_secs(40),
        pause: ms(500),
    }];
    let opts = RunOptions {
        check_invariants: true,
        ..RunOptions::default()
    };
    let mut clients = Clients::new(n, Think::Constant(think), ms(8), until, 21).writes(0.3);
    let out = run_clients(&topo, &mut clients, 21, &opts);
    let s = &out.services[0].requests;
    let (arrived, completed, timed_out, failed, rejected) = totals(&out);
    eprintln!(
        "closed loop: {arrived} requests: {completed} completed, {timed_out} timed out, {failed} failed, {rejected} rejected, {} unrouted, {} retried",
        s.unrouted, s.retried
    );
    // Every way out happened.
    assert!(s.unrouted > 0 && timed_out > 0 && s.retried > 0 && completed > 0);
    assert_eq!(
        arrived,
        clients.log.len() as u64,
        "the engine saw every request"
    );
    assert_eq!(
        arrived,
        completed + timed_out + failed + rejected + s.unrouted
    );
    // Drained: every client stopped, nothing in flight.
    assert_eq!(clients.stopped, n);
    assert_eq!(clients.in_flight(), 0);
    let horizon = SimTime::ZERO + until;
    for k in 0..n {
        let mine: Vec<&Sent> = clients.log.iter().filter(|x| x.client == k).collect();
        assert!(!mine.is_empty(), "client {k} sent something");
        assert!(mine[0].arrival == SimTime::ZERO + think);
        for w in mine.windows(2) {
            let end = w[0].end.expect("ended");
            assert!(end >= w[0].arrival);
            // Request, think, request: exactly one think time between.
            assert_eq!(w[1].arrival, end + think, "client {k}");
        }
        // It stopped because its next request would start after `until`,
        // so its run length is what its requests and thinks add up to.
        let last = mine.last().expect("some");
        assert!(last.arrival <= horizon);
        assert!(last.end.expect("ended") + think > horizon, "client {k}");
        let busy: u64 = mine
            .iter()
            .map(|x| (x.end.expect("ended") - x.arrival).as_nanos())
            .sum();
        // think, request, think, ..., request, and the think after which
        // it would have sent again.
        let span = busy + (mine.len() as u64 + 1) * think.as_nanos();
        assert_eq!(span, (last.end.unwrap() + think - SimTime::ZERO).as_nanos());
    }
}

/// The finite-source queue M/M/c//N (the machine repairman): N clients
/// with exponential think time Z, c connections, exponential service of
/// mean 1/mu. A birth-death chain on the number n of requests in the
/// system: birth (N - n)/Z, death min(n, c) mu. Returns the stationary
/// distribution.
fn repairman(n: u32, c: u32, z: f64, mu: f64) -> Vec<f64> {
    let mut w = vec![1.0f64];
    for k in 0..n {
        let birth = (n - k) as f64 / z;
        let death = (k + 1).min(c) as f64 * mu;
        w.push(w[k as usize] * birth / death);
    }
    let total: f64 = w.iter().sum();
    w.iter().map(|x| x / total).collect()
}

/// Mean and half-width of a 99 % Student-t interval over replications.
fn t99(xs: &[f64]) -> (f64, f64) {
    // t(0.995, k - 1) for k = 2..=10 replications.
    const T: [f64; 9] = [
        63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250,
    ];
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (mean, T[xs.len() - 2] * sd / n.sqrt())
}

/// One service, one instance, a fixed pool of c = 4 connections straight
/// to a plain primary (no PgBouncer, no connect or round-trip cost),
/// exponential service of mean 0.25 s, N = 20 clients with exponential
/// think time of mean 1 s: the machine-repairman queue. Throughput X =
/// sum p_n min(n, c) mu, mean wait Wq = Lq / X with Lq = sum p_n (n - c)+,
/// and by the arrival theorem an arriving request waits with probability
/// P(n >= c) of the same queue with N - 1 clients. Measured over 10
/// replications of 20,000 s (warm-up 200 s dropped, about 280,000 requests
/// each), within a 99 % Student-t interval over the replications' means.
#[test]
fn closed_loop_clients_queue_like_the_machine_repairman_model() {
    let (n, c, z, mu) = (20u32, 4u32, 1.0f64, 4.0f64);
    let p = repairman(n, c, z, mu);
    let x_exact: f64 = p
        .iter()
        .enumerate()
        .map(|(k, q)| q * (k as u32).min(c) as f64 * mu)
        .sum();
    let lq: f64 = p
        .iter()
        .enumerate()
        .map(|(k, q)| q * (k as u32).saturating_sub(c) as f64)
        .sum();
    let wq_exact = lq / x_exact;
    let pw_exact: f64 = repairman(n - 1, c, z, mu)[c as usize..].iter().sum();

    let topo = Topology {
        services: vec![service("api", 1, no_timeouts(c))],
        bouncer: None,
        servers: vec![server("primary", 100, 0)],
        routing: routing(),
        events: Vec::new(),
        faults: Vec::new(),
    };
    let opts = RunOptions {
        sample_interval: None,
        ..RunOptions::default()
    };
    let (warm, until) = (200.0f64, 20_000.0f64);
    let (mut xs, mut wqs, mut pws) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 1..=10u64 {
        let mut clients = Clients::new(
            n,
            Think::Exponential(SimDuration::from_secs(1)),
            SimDuration::from_millis(250),
            SimDuration::from_secs(until as u64),
            seed,
        );
        let out = run_clients(&topo, &mut clients, seed, &opts);
        let (arrived, completed, ..) = totals(&out);
        assert_eq!(arrived, completed, "no timeouts: every request served");
        assert_eq!(arrived, clients.log.len() as u64);
        // The engine's wait is the source's end - arrival - work.
        let waits: Vec<f64> = clients
            .log
            .iter()
            .map(|x| {
                ((x.end.unwrap() - x.arrival).as_nanos() as f64 - x.work.as_nanos() as f64) / 1e9
            })
            .collect();
        let engine_wq = out.services[0].requests.classes[1].wait.mean_ns() / 1e9;
        let source_wq = waits.iter().sum::<f64>() / waits.len() as f64;
        assert!(
            (engine_wq - source_wq).abs() < 1e-9,
            "{engine_wq} vs {source_wq}"
        );
        let in_window = |t: SimTime| (warm..=until).contains(&t.as_secs_f64());
        let ends = clients
            .log
            .iter()
            .filter(|x| in_window(x.end.unwrap()))
            .count();
        xs.push(ends as f64 / (until - warm));
        let arrivals: Vec<f64> = clients
            .log
            .iter()
            .zip(&waits)
            .filter(|(x, _)| in_window(x.arrival))
            .map(|(_, w)| *w)
            .collect();
        wqs.push(arrivals.iter().sum::<f64>() / arrivals.len() as f64);
        pws.push(arrivals.iter().filter(|w| **w > 0.0).count() as f64 / arrivals.len() as f64);
    }
    for (what, xs, exact) in [
        ("throughput /s", &xs, x_exact),
        ("mean wait s", &wqs, wq_exact),
        ("P(wait)", &pws, pw_exact),
    ] {
        let (mean, half) = t99(xs);
        eprintln!("M/M/{c}//{n}: {what} {mean:.5} ± {half:.5} (99 %), exact {exact:.5}");
        assert!(
            (mean - exact).abs() <= half,
            "{what}: {mean} ± {half} vs exact {exact}"
        );
        // The interval is tight enough to mean something.
        assert!(half < 0.02 * exact, "{what}: ± {half} is too wide");
    }
}

fn bouncer_topology(server_pool: u32) -> Topology {
    let bouncer = Bouncer {
        mode: PoolMode::Transaction,
        policy: policy(
            "pgbouncer-txn",
            &[
                &format!("size.min={server_pool}"),
                &format!("size.max={server_pool}"),
                "acquire_timeout.normal=none",
            ],
        ),
        max_client_conn: 100,
        client_connect_latency: SimDuration::ZERO,
        hop_overhead: SimDuration::ZERO,
    };
    Topology {
        services: vec![service("api", 2, no_timeouts(10))],
        bouncer: Some(bouncer),
        servers: vec![server("primary", 100, 1)],
        routing: routing(),
        events: Vec::new(),
        faults: Vec::new(),
    }
}

/// 40 closed-loop clients (think 100 ms, exponential queries of 20 ms)
/// through two application pools of 10 and PgBouncer in transaction mode:
/// with 8 server connections they run near their think-limited rate
/// (40 / 0.12 s = 333/s); with 2 the server pool saturates at 2 / 20 ms =
/// 100/s and the clients slow down to it instead of piling up (no timeout:
/// a closed loop throttles itself). The application pools never hold a
/// request while a server connection is free (10 each > 8), so each case
/// is the machine-repairman queue M/M/c//40 on the server pool; and
/// Little's law holds either way: N = X (Z + R).
#[test]
fn closed_loop_throughput_drops_with_a_smaller_pgbouncer_server_pool() {
    let (n, until) = (40u32, 300u64);
    let opts = RunOptions {
        sample_interval: None,
        check_invariants: true,
        ..RunOptions::default()
    };
    let mut rate = Vec::new();
    for pool in [8u32, 2] {
        let p = repairman(n, pool, 0.1, 50.0);
        let exact: f64 = p
            .iter()
            .enumerate()
            .map(|(k, q)| q * (k as u32).min(pool) as f64 * 50.0)
            .sum();
        let mut clients = Clients::new(
            n,
            Think::Constant(ms(100)),
            ms(20),
            SimDuration::from_secs(until),
            4,
        );
        let out = run_clients(&bouncer_topology(pool), &mut clients, 4, &opts);
        let (arrived, completed, ..) = totals(&out);
        assert_eq!(arrived, completed, "pool {pool}: all served");
        assert!(out.servers[0].stats.backends_max <= pool);
        let x = completed as f64 / until as f64;
        let r = out.services[0].requests.classes[1].response.mean_ns() / 1e9;
        let little = x * (0.1 + r);
        eprintln!("PgBouncer pool {pool}: {x:.1} requests/s (M/M/{pool}//{n}: {exact:.1}), response {r:.4} s, X (Z + R) = {little:.2} clients");
        assert!(
            (x - exact).abs() < 0.03 * exact,
            "pool {pool}: {x} vs {exact}"
        );
        assert!(
            (little - n as f64).abs() < 0.02 * n as f64,
            "Little: {little}"
        );
        rate.push(x);
    }
    let (big, small) = (rate[0], rate[1]);
    assert!(big < 40.0 / 0.12, "at most think-limited: {big}");
    assert!(small <= 100.0 * 1.01, "at most server-limited: {small}");
    assert!(small < 0.4 * big, "{small} vs {big}");
}

/// Same topology, clients and seed: the same requests at the same times
/// with the same ends, the same outcome; another seed differs.
#[test]
fn closed_loop_fleet_runs_are_deterministic() {
    let topo = bouncer_topology(3);
    let go = |seed: u64| {
        let mut clients = Clients::new(
            30,
            Think::Exponential(ms(50)),
            ms(10),
            SimDuration::from_secs(30),
            seed,
        )
        .writes(0.2);
        let out = run_clients(&topo, &mut clients, seed, &RunOptions::default());
        (
            clients.log,
            totals(&out),
            out.events,
            out.servers[0].series.clone(),
        )
    };
    let (a, b, c) = (go(5), go(5), go(6));
    assert!(a.0.len() > 1000);
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
}
