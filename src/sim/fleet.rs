//! The topology engine: services' fleets of instances, each with a pool per
//! server, an optional PgBouncer layer, a primary and replicas with routing,
//! instance lifecycle events and server faults, in one deterministic event
//! loop. Same pool and policy code as everywhere else.
//!
//! Who talks to whom. Without PgBouncer, every application pool is a client
//! of its server's database model. With PgBouncer, application pools are
//! clients of PgBouncer (a client connect costs `client_connect_latency`,
//! at most `max_client_conn` at once), and PgBouncer keeps one core pool per
//! server, run by its own policy, whose requests are the applications'
//! transactions (transaction mode) or client connections (session mode).
//!
//! A request's journey: a service (by share or its own workload), one of
//! its running instances (its balance), a server (writes and unrouted
//! reads to the primary; reads to a replica chosen by the routing rule
//! among those not banned), that instance's pool for the server. A read
//! that fails on a replica is sent again (`read_retries`) to another server;
//! its service counts it once, with its final outcome and its times from
//! first arrival.
//!
//! Simplifications, documented: bans are global per server (a shared
//! router's view); checks of an application's connection to PgBouncer
//! answer after one hop and pass while PgBouncer runs; a fault's recovery is
//! the first prompt checkout on that server after the fault ends.

use std::collections::BTreeMap;

use rand::Rng;

use crate::core::metrics::{Sample, SampleSink};
use crate::core::pool::{ConnId, Effect, Pool};
use crate::core::request::{Kind, Priority, Request};
use crate::error::SimError;
use crate::rng::{SeedTree, Stream};
use crate::sim::db::{self, Database};
use crate::sim::event::{Arrivals, EventQueue, Phase, Phased};
use crate::sim::fault::{FaultKind, FaultRecord, FaultTiming};
use crate::sim::topology::{
    AppPool, BouncerOutcome, FleetEvent, FleetOutcome, Job, PoolMode, ReplicaSelection,
    ServerOutcome, ServerSeries, ServiceOutcome, ServiceRequests, ServiceSeries, ServiceWorkload,
    Topology,
};
use crate::sim::{next_occurrence, Balance, Bounds, RunOptions};
use crate::time::{SimDuration, SimTime};
use crate::trace::RequestSource;

/// A pool the engine drives: an application pool, or PgBouncer's pool for
/// a server. Encoded in one `u32` (top bit = PgBouncer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    App(u32),
    Bouncer(u32),
}

const BOUNCER_BIT: u32 = 1 << 31;

impl Target {
    #[inline]
    fn code(self) -> u32 {
        match self {
            Target::App(i) => i,
            Target::Bouncer(i) => i | BOUNCER_BIT,
        }
    }
    #[inline]
    fn decode(c: u32) -> Target {
        if c & BOUNCER_BIT != 0 {
            Target::Bouncer(c & !BOUNCER_BIT)
        } else {
            Target::App(c)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// Database events of `server` for its client `client`.
    QueryDone {
        server: u8,
        client: u16,
        conn: ConnId,
    },
    QueryFailed {
        server: u8,
        client: u16,
        conn: ConnId,
    },
    CheckDone {
        server: u8,
        client: u16,
        conn: ConnId,
        ok: bool,
    },
    DbWake {
        server: u8,
        generation: u32,
    },
    /// A connect of a pool answers (`ok` false: refused or failed; `ban`:
    /// the server is down or failing, not merely full or rate limited).
    Connect {
        target: u32,
        conn: ConnId,
        ok: bool,
        ban: bool,
    },
    /// An application's check of its PgBouncer connection answers.
    HopCheck {
        app: u32,
        conn: ConnId,
    },
    Timeout {
        target: u32,
        priority: Priority,
    },
    Wake(u32),
    FaultStart(u32),
    FaultEnd(u32),
    /// Instance `instance` of `service` starts (cold start).
    InstanceStart {
        service: u16,
        instance: u16,
    },
    /// Step `step` of the rolling restart `event`.
    Restart {
        event: u16,
        step: u16,
    },
    /// The end of a whole second: the per-second series.
    Second,
    Sample,
}

impl Phased for Ev {
    #[inline]
    fn phase(self) -> Phase {
        match self {
            Ev::QueryDone { .. }
            | Ev::QueryFailed { .. }
            | Ev::CheckDone { .. }
            | Ev::DbWake { .. }
            | Ev::HopCheck { .. } => Phase::Release,
            Ev::Connect { .. } => Phase::Connect,
            Ev::FaultStart(_) | Ev::FaultEnd(_) | Ev::InstanceStart { .. } | Ev::Restart { .. } => {
                Phase::Fault
            }
            Ev::Timeout { .. } => Phase::Timeout,
            Ev::Wake(_) => Phase::Policy,
            Ev::Second | Ev::Sample => Phase::Sample,
        }
    }
}

/// How a request that did not complete ends, at the service level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    TimedOut,
    Rejected,
    Failed,
}

/// One application pool and what the engine knows about it.
struct App {
    meta: AppMeta,
    pool: Pool<Job>,
    /// Its client index at its server (direct), unused behind PgBouncer.
    client: u16,
    /// The request running on each connection, since when, its priority.
    running: Vec<(Job, SimTime, Priority)>,
    /// Session mode: the PgBouncer server connection bound to each
    /// application connection.
    session: Vec<Option<ConnId>>,
    finished: bool,
    /// Sampled once after it finished, then left out of the time series.
    sampled_out: bool,
}

struct AppMeta {
    service: u16,
    instance: u16,
    generation: u16,
    server: u8,
    started: SimTime,
    stopped: Option<SimTime>,
    converged: Option<SimTime>,
    deviated: Option<SimTime>,
}

/// The current generation of one instance slot of a service.
struct Instance {
    up: bool,
    generation: u16,
    /// App pool index per server (`u32::MAX`: the instance does not use it).
    pools: Vec<u32>,
    last_write: Option<SimTime>,
    /// Moving average of response time per server, in ns (NaN = unknown).
    ewma: Vec<f64>,
}

struct ServiceState {
    instances: Vec<Instance>,
    /// Instances taking requests.
    up: usize,
    rr: usize,
    replica_rr: usize,
    requests: ServiceRequests,
    series: ServiceSeries,
    starts: Vec<SimTime>,
    in_flight: u64,
    /// Servers its instances keep pools to.
    servers: Vec<u8>,
}

struct ServerState {
    db: Database,
    /// What each client index of the database is.
    clients: Vec<Target>,
    tokens: f64,
    last_refill: SimTime,
    refused_rate: u64,
    queries: u64,
    bans: u64,
    banned_until: SimTime,
    series: ServerSeries,
    /// Faults in progress on it.
    active: Vec<(usize, FaultKind)>,
    /// A fault ended: waiting for the first prompt checkout.
    recovering: Vec<(usize, SimTime)>,
}

struct BouncerPool {
    pool: Pool<Job>,
    client: u16,
    /// The transaction (or session) on each server connection.
    jobs: Vec<Job>,
}

struct Fleet<'t> {
    topo: &'t Topology,
    now: SimTime,
    queue: EventQueue<Ev>,
    apps: Vec<App>,
    afx: Vec<Effect<Job>>,
    bouncers: Vec<BouncerPool>,
    bfx: Vec<Effect<Job>>,
    clients_open: u32,
    clients_max: u32,
    clients_refused: u64,
    services: Vec<ServiceState>,
    servers: Vec<ServerState>,
    faults: Vec<Stream>,
    records: Vec<FaultRecord>,
    window_faults: u32,
    seeds: &'t SeedTree,
    replica_rng: Stream,
    instance_rng: Stream,
    recovery_wait: SimDuration,
    check_invariants: bool,
    seed: u64,
    /// Counters at the previous time-series row (database refusals).
    refused_mark: u64,
    /// The run is over: the closes that follow are not the servers' load.
    ending: bool,
    /// Per request source: whether it is a closed loop (its requests' ends
    /// are reported to it).
    closed: Vec<bool>,
    /// Per request source: its requests arrived and not ended yet.
    source_in_flight: Vec<u64>,
    /// Closed-loop requests that ended since the loop last looked, in the
    /// order they ended: (source, client, when).
    ends: Vec<(u16, u32, SimTime)>,
}

/// [`Job::source`] of what is no request (a PgBouncer session).
const NO_SOURCE: u16 = u16::MAX;

/// Runs a topology. `shared` feeds the services with a `share`; `own[i]`
/// the service whose workload is `Own(i)`. The sink gets one time-series
/// row per interval for all application pools together (sums), and
/// progress.
pub fn simulate_fleet(
    topology: &Topology,
    shared: Option<&mut dyn RequestSource>,
    own: Vec<&mut dyn RequestSource>,
    seeds: &SeedTree,
    opts: &RunOptions,
    sink: &mut dyn SampleSink,
) -> Result<FleetOutcome, SimError> {
    let topo = topology;
    assert!(!topo.servers.is_empty(), "a primary");
    assert!(topo.servers.len() <= 255, "at most 255 servers");
    let replicas: Vec<u8> = (1..topo.servers.len() as u8).collect();
    let reads_to_replicas = topo.routing.reads_to_replicas && !replicas.is_empty();
    let mut f = Fleet {
        topo,
        now: SimTime::ZERO,
        queue: EventQueue::new(),
        apps: Vec::new(),
        afx: Vec::with_capacity(64),
        bouncers: Vec::new(),
        bfx: Vec::with_capacity(64),
        clients_open: 0,
        clients_max: 0,
        clients_refused: 0,
        services: topo
            .services
            .iter()
            .map(|_| ServiceState {
                instances: Vec::new(),
                up: 0,
                rr: 0,
                replica_rr: 0,
                requests: ServiceRequests::default(),
                series: ServiceSeries::default(),
                starts: Vec::new(),
                in_flight: 0,
                servers: if reads_to_replicas {
                    (0..topo.servers.len() as u8).collect()
                } else {
                    vec![0]
                },
            })
            .collect(),
        servers: topo
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| ServerState {
                db: Database::new(&s.model, s.wire, 0, &seeds.child("server", i as u64)),
                clients: Vec::new(),
                tokens: s.max_connects_per_s.unwrap_or(0.0),
                last_refill: SimTime::ZERO,
                refused_rate: 0,
                queries: 0,
                bans: 0,
                banned_until: SimTime::ZERO,
                series: ServerSeries::default(),
                active: Vec::new(),
                recovering: Vec::new(),
            })
            .collect(),
        faults: (0..topo.faults.len())
            .map(|i| seeds.indexed("fault", i as u64))
            .collect(),
        records: Vec::new(),
        window_faults: 0,
        seeds,
        replica_rng: seeds.stream("route/replica"),
        instance_rng: seeds.stream("route/instance"),
        recovery_wait: opts.recovery_wait,
        check_invariants: opts.check_invariants,
        seed: seeds.master(),
        refused_mark: 0,
        ending: false,
        closed: Vec::new(),
        source_in_flight: Vec::new(),
        ends: Vec::new(),
    };
    if let Some(b) = &topo.bouncer {
        for s in 0..topo.servers.len() {
            let client = f.servers[s].db.add_client();
            f.servers[s]
                .clients
                .push(Target::Bouncer(f.bouncers.len() as u32));
            f.bouncers.push(BouncerPool {
                pool: Pool::new(
                    b.policy.pool.clone(),
                    b.policy.build(),
                    seeds.indexed("bouncer", s as u64),
                ),
                client,
                jobs: Vec::new(),
            });
        }
        for i in 0..f.bouncers.len() {
            f.bouncers[i].pool.start(SimTime::ZERO, &mut f.bfx);
            f.bouncer_effects(i as u32);
        }
    }
    for (s, svc) in topo.services.iter().enumerate() {
        for k in 0..svc.instances {
            let at = svc.start_at + SimDuration(svc.start_stagger.0.saturating_mul(k as u64));
            f.queue.push(
                SimTime(at.0),
                Ev::InstanceStart {
                    service: s as u16,
                    instance: k,
                },
            );
        }
    }
    for (e, ev) in topo.events.iter().enumerate() {
        match ev {
            FleetEvent::RollingRestart { at, .. } => f.queue.push(
                SimTime(at.0),
                Ev::Restart {
                    event: e as u16,
                    step: 0,
                },
            ),
        }
    }
    for i in 0..topo.faults.len() {
        let at = match topo.faults[i].spec.timing {
            FaultTiming::At(t) => Some(SimTime(t.0)),
            FaultTiming::Rate { per_hour } => {
                next_occurrence(SimTime::ZERO, per_hour, &mut f.faults[i])
            }
        };
        if let Some(at) = at {
            f.queue.push(at, Ev::FaultStart(i as u32));
        }
    }
    let sample_interval = opts.sample_interval.filter(|d| d.0 > 0);
    if let Some(si) = sample_interval {
        f.queue.push(SimTime::ZERO + si, Ev::Sample);
    }
    f.queue
        .push(SimTime::ZERO + SimDuration::from_secs(1), Ev::Second);

    // Sources: the shared one first, then each service's own.
    let mut sources: Vec<&mut dyn RequestSource> = Vec::with_capacity(1 + own.len());
    let mut source_service: Vec<Option<u16>> = Vec::new();
    if let Some(s) = shared {
        sources.push(s);
        source_service.push(None);
    }
    for (i, s) in own.into_iter().enumerate() {
        let svc = topo
            .services
            .iter()
            .position(|x| x.workload == ServiceWorkload::Own(i))
            .expect("every own workload belongs to a service");
        sources.push(s);
        source_service.push(Some(svc as u16));
    }
    assert!(
        sources.len() < NO_SOURCE as usize,
        "fewer than 65,535 sources"
    );
    // Asked once, before the first request: a closed loop's cursor then
    // yields each client's first request only, and the next ones come back
    // from `finished` as its requests end.
    f.closed = sources.iter_mut().map(|s| s.close_loop()).collect();
    f.source_in_flight = vec![0; sources.len()];
    let names: Vec<String> = source_service
        .iter()
        .map(|s| match s {
            None => "the shared workload".to_string(),
            Some(s) => format!(
                "service `{}`'s own workload",
                topo.services[*s as usize].name
            ),
        })
        .collect();
    let mut loops = ClosedLoops::new(&f.closed, names);
    let mut heads: Vec<Option<Request>> = sources.iter_mut().map(|s| s.next_request()).collect();
    // Cumulative shares of the services that split the shared workload.
    let share_cdf: Vec<(f64, u16)> = {
        let mut acc = 0.0;
        topo.services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.workload {
                ServiceWorkload::Share(x) => {
                    acc += x;
                    Some((acc, i as u16))
                }
                ServiceWorkload::Own(_) => None,
            })
            .collect()
    };
    let mut service_rng = seeds.stream("route/service");

    let seed = f.seed;
    let bounds = Bounds::new(opts, seed);
    let horizon = opts.horizon.map(|h| SimTime(h.0));
    let mut last_arrival = SimTime::ZERO;
    let mut last_sample = SimTime::ZERO;
    let mut events: u64 = 0;
    loop {
        // The earliest head among the sources (ties: the first source).
        let mut pick: Option<(usize, SimTime)> = None;
        for (i, h) in heads.iter().enumerate() {
            if let Some(r) = h {
                if pick.is_none_or(|(_, t)| r.arrival < t) {
                    pick = Some((i, r.arrival));
                }
            }
        }
        // A closed-loop client's next request, unless a cursor's is not
        // later (the cursors first at equal times).
        let follow = loops.peek();
        let from_follow = match (pick, follow) {
            (Some((_, a)), Some(t)) => t < a,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let arrival = if from_follow {
            follow
        } else {
            pick.map(|(_, a)| a)
        };
        let take_arrival = match (arrival, f.queue.peek()) {
            (Some(a), Some(e)) => (a, Phase::Arrival) < (e.time, e.phase()),
            (Some(_), None) => true,
            (None, Some(e)) => {
                let end = horizon.unwrap_or(last_arrival).max(last_arrival);
                // A closed loop without a horizon makes new arrivals while
                // one of its requests is in flight: it may only stop once
                // none is.
                let may_cut = !opts.drain && (horizon.is_some() || f.closed_in_flight() == 0);
                if e.time > end && (may_cut || f.in_flight() == 0) {
                    break;
                }
                false
            }
            (None, None) => break,
        };
        bounds.event(&mut events, f.now, sink)?;
        if take_arrival {
            let (i, r) = if from_follow {
                loops.pop()
            } else {
                let (i, _) = pick.expect("arrival");
                let r = heads[i].take().expect("picked");
                heads[i] = sources[i].next_request();
                (i, r)
            };
            bounds.time(r.arrival, events)?;
            f.now = r.arrival;
            last_arrival = r.arrival;
            let service = match source_service[i] {
                Some(s) => s,
                None if share_cdf.len() == 1 => share_cdf[0].1,
                None => {
                    let total = share_cdf.last().expect("shares").0;
                    let u: f64 = service_rng.random::<f64>() * total;
                    share_cdf
                        .iter()
                        .find(|(c, _)| u < *c)
                        .unwrap_or(share_cdf.last().expect("shares"))
                        .1
                }
            };
            if f.closed[i] {
                loops
                    .arrived(i, r.client, !from_follow)
                    .map_err(|what| f.invariant(what))?;
            }
            f.source_in_flight[i] += 1;
            let job = Job {
                work: r.service,
                arrival: r.arrival,
                kind: r.kind,
                attempt: 0,
                source: i as u16,
                client: r.client,
                tag: 0,
            };
            f.arrive(service as usize, r.priority, job);
        } else {
            let e = f.queue.pop().expect("peeked");
            bounds.time(e.time, events)?;
            f.now = e.time;
            match e.event {
                Ev::Sample => {
                    let s = f.sample();
                    sink.record(&s);
                    last_sample = f.now;
                    if let Some(si) = sample_interval {
                        f.queue.push(f.now + si, Ev::Sample);
                    }
                }
                Ev::Second => {
                    f.second();
                    f.queue.push(f.now + SimDuration::from_secs(1), Ev::Second);
                }
                other => f.handle(other),
            }
        }
        if !f.ends.is_empty() {
            loops
                .report(&mut f.ends, &mut sources)
                .map_err(|what| f.invariant(what))?;
        }
        if f.check_invariants {
            f.invariants()?;
        }
    }

    let end = match horizon {
        Some(h) if !opts.drain => h.max(last_arrival),
        Some(h) => h.max(f.now),
        None => f.now,
    };
    if sample_interval.is_some() && end > last_sample {
        f.now = end;
        let s = f.sample();
        sink.record(&s);
    }
    f.now = end;
    if end.0 % 1_000_000_000 != 0 {
        f.second();
    }
    f.ending = true;
    for a in 0..f.apps.len() {
        if !f.apps[a].finished {
            f.apps[a].pool.finish(end, &mut f.afx);
            f.app_effects(a as u32);
        }
    }
    for b in 0..f.bouncers.len() {
        f.bouncers[b].pool.finish(end, &mut f.bfx);
        f.bouncer_effects(b as u32);
    }
    f.invariants()?;
    f.conservation()?;
    loops
        .conservation(&f.source_in_flight, &f.ends)
        .map_err(|what| f.invariant(what))?;
    Ok(f.outcome(end, events))
}

#[inline]
fn bump<T: Default + Clone + std::ops::AddAssign + From<u8>>(v: &mut Vec<T>, sec: usize) {
    if v.len() <= sec {
        v.resize(sec + 1, T::default());
    }
    v[sec] += T::from(1u8);
}

impl Fleet<'_> {
    #[inline]
    fn second_index(&self) -> usize {
        (self.now.0 / 1_000_000_000) as usize
    }

    fn in_flight(&self) -> u64 {
        self.services.iter().map(|s| s.in_flight).sum()
    }

    /// Requests of closed-loop sources in flight: each may bring its
    /// client's next request.
    fn closed_in_flight(&self) -> u64 {
        self.closed
            .iter()
            .zip(&self.source_in_flight)
            .filter(|(c, _)| **c)
            .map(|(_, n)| n)
            .sum()
    }

    fn invariant(&self, what: String) -> SimError {
        SimError::Invariant {
            what,
            at: self.now,
            seed: self.seed,
        }
    }

    /// A routed request of service `s` ends for good (completed, timed out,
    /// rejected, failed): it leaves the service's requests in flight and
    /// its source is told. The only way out, so no end goes unreported.
    #[inline]
    fn ended(&mut self, s: usize, job: &Job) {
        self.services[s].in_flight -= 1;
        self.source_ended(job);
    }

    /// A request ends: a closed loop's client is told after this event.
    #[inline]
    fn source_ended(&mut self, job: &Job) {
        let src = job.source as usize;
        self.source_in_flight[src] -= 1;
        if self.closed[src] {
            self.ends.push((job.source, job.client, self.now));
        }
    }

    // ---- instances ---------------------------------------------------------

    /// Starts instance `k` of service `s` (a new generation if it ran).
    fn start_instance(&mut self, s: usize, k: usize) {
        let now = self.now;
        let svc = &self.topo.services[s];
        let nservers = self.topo.servers.len();
        let generation = self.services[s]
            .instances
            .get(k)
            .map_or(0, |i| i.generation + 1);
        let mut pools = vec![u32::MAX; nservers];
        let servers = self.services[s].servers.clone();
        for &server in &servers {
            let a = self.apps.len() as u32;
            let client = if self.topo.bouncer.is_none() {
                let st = &mut self.servers[server as usize];
                st.clients.push(Target::App(a));
                st.db.add_client()
            } else {
                0
            };
            self.apps.push(App {
                meta: AppMeta {
                    service: s as u16,
                    instance: k as u16,
                    generation,
                    server,
                    started: now,
                    stopped: None,
                    converged: None,
                    deviated: None,
                },
                pool: Pool::new(
                    svc.policy.pool.clone(),
                    svc.policy.build(),
                    self.seeds.indexed("pool", a as u64),
                ),
                client,
                running: Vec::new(),
                session: Vec::new(),
                finished: false,
                sampled_out: false,
            });
            pools[server as usize] = a;
        }
        let inst = Instance {
            up: true,
            generation,
            pools: pools.clone(),
            last_write: None,
            ewma: vec![f64::NAN; nservers],
        };
        let st = &mut self.services[s];
        st.up += 1;
        if k < st.instances.len() {
            st.instances[k] = inst;
        } else {
            while st.instances.len() < k {
                st.instances.push(Instance {
                    up: false,
                    generation: 0,
                    pools: vec![u32::MAX; nservers],
                    last_write: None,
                    ewma: vec![f64::NAN; nservers],
                });
            }
            st.instances.push(inst);
        }
        st.starts.push(now);
        for &a in pools.iter().filter(|&&a| a != u32::MAX) {
            self.apps[a as usize].pool.start(now, &mut self.afx);
            self.app_effects(a);
        }
    }

    /// Instance `k` of service `s` stops taking requests; its pools finish
    /// what they have, then close.
    fn stop_instance(&mut self, s: usize, k: usize) {
        let Some(inst) = self.services[s].instances.get_mut(k) else {
            return;
        };
        if !inst.up {
            return;
        }
        inst.up = false;
        let pools: Vec<u32> = inst
            .pools
            .iter()
            .copied()
            .filter(|&a| a != u32::MAX)
            .collect();
        self.services[s].up -= 1;
        for a in pools {
            self.apps[a as usize].meta.stopped = Some(self.now);
            self.maybe_finish(a);
        }
    }

    /// A stopped pool with nothing in flight closes its connections.
    fn maybe_finish(&mut self, a: u32) {
        let app = &mut self.apps[a as usize];
        if app.meta.stopped.is_some() && app.pool.in_flight() == 0 {
            app.finished = true;
            app.pool.finish(self.now, &mut self.afx);
            self.app_effects(a);
        }
    }

    // ---- routing -----------------------------------------------------------

    fn arrive(&mut self, s: usize, priority: Priority, job: Job) {
        let st = &mut self.services[s];
        let c = &mut st.requests.classes[priority.index()];
        c.arrived += 1;
        match job.kind {
            Kind::Read => st.requests.reads += 1,
            Kind::Write => st.requests.writes += 1,
        }
        let n = st.instances.len();
        let up = st.up;
        if up == 0 {
            st.requests.unrouted += 1;
            st.requests.unrouted_by_priority[priority.index()] += 1;
            self.source_ended(&job);
            return;
        }
        let k = match self.topo.services[s].balance {
            Balance::RoundRobin => {
                let mut k = st.rr % n;
                while !st.instances[k].up {
                    k = (k + 1) % n;
                }
                st.rr = k + 1;
                k
            }
            Balance::Random => {
                let pick = self.instance_rng.random_range(0..up);
                st.instances
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.up)
                    .nth(pick)
                    .expect("pick < up")
                    .0
            }
        };
        st.in_flight += 1;
        if job.kind == Kind::Write {
            st.instances[k].last_write = Some(self.now);
        }
        self.dispatch(s, k, priority, job, None);
    }

    /// Sends a request of instance `k` of service `s` to a server's pool;
    /// `avoid` is the server it just failed on.
    fn dispatch(&mut self, s: usize, k: usize, priority: Priority, job: Job, avoid: Option<u8>) {
        let server = self.pick_server(s, k, job.kind, avoid);
        if job.kind == Kind::Read && server == 0 {
            self.services[s].requests.reads_on_primary += 1;
        }
        let a = self.services[s].instances[k].pools[server as usize];
        debug_assert!(a != u32::MAX);
        self.apps[a as usize]
            .pool
            .acquire(self.now, priority, job, &mut self.afx);
        self.app_effects(a);
    }

    fn pick_server(&mut self, s: usize, k: usize, kind: Kind, avoid: Option<u8>) -> u8 {
        let routing = &self.topo.routing;
        if kind == Kind::Write || self.services[s].servers.len() == 1 {
            return 0;
        }
        let now = self.now;
        let nrep = self.servers.len() - 1;
        // Every replica banned: lift the bans (better to try than not).
        if (1..=nrep).all(|r| self.servers[r].banned_until > now) {
            for r in 1..=nrep {
                self.servers[r].banned_until = SimTime::ZERO;
            }
        }
        let inst = &self.services[s].instances[k];
        let last_write = inst.last_write;
        let lags = &self.topo.servers;
        let servers = &self.servers;
        let ok = |r: u8| {
            Some(r) != avoid
                && servers[r as usize].banned_until <= now
                && !(routing.read_your_writes
                    && last_write.is_some_and(|w| now - w < lags[r as usize].lag))
        };
        // No allocation: candidates are scanned in place (at most 254).
        let count = (1..=nrep as u8).filter(|&r| ok(r)).count();
        if count == 0 {
            return 0;
        }
        let nth = |i: usize| {
            (1..=nrep as u8)
                .filter(|&r| ok(r))
                .nth(i)
                .expect("i < count")
        };
        match routing.replica_selection {
            ReplicaSelection::RoundRobin => {
                let i = self.services[s].replica_rr % count;
                let r = nth(i);
                let st = &mut self.services[s];
                st.replica_rr = st.replica_rr.wrapping_add(1);
                r
            }
            ReplicaSelection::Random => {
                let i = self.replica_rng.random_range(0..count);
                nth(i)
            }
            ReplicaSelection::LeastOutstanding => (1..=nrep as u8)
                .filter(|&r| ok(r))
                .min_by_key(|&r| {
                    let a = inst.pools[r as usize];
                    (self.apps[a as usize].pool.in_flight(), r)
                })
                .expect("count > 0"),
            ReplicaSelection::LatencyAware => {
                // Unknown first (to learn them), then the lowest average.
                let key = |r: u8| {
                    let e = inst.ewma[r as usize];
                    if e.is_nan() {
                        (0, 0u64, r)
                    } else {
                        (1, e as u64, r)
                    }
                };
                (1..=nrep as u8)
                    .filter(|&r| ok(r))
                    .min_by_key(|&r| key(r))
                    .expect("count > 0")
            }
        }
    }

    /// Bans replica `server` after a failure on it.
    fn ban(&mut self, server: u8) {
        if server == 0 || self.topo.routing.ban_time.0 == 0 {
            return;
        }
        let now = self.now;
        let sv = &mut self.servers[server as usize];
        if sv.banned_until <= now {
            sv.bans += 1;
        }
        sv.banned_until = now.saturating_add(self.topo.routing.ban_time);
    }

    // ---- request outcomes at the service level ------------------------------

    fn service_of(&self, a: u32) -> (usize, usize, u8) {
        let m = &self.apps[a as usize].meta;
        (m.service as usize, m.instance as usize, m.server)
    }

    /// Request `job` of app pool `a` gets its server connection now, after
    /// waiting `waited` in the last queue it was in.
    fn served(&mut self, a: u32, priority: Priority, job: Job, waited: SimDuration) {
        let (s, _, server) = self.service_of(a);
        let now = self.now;
        self.services[s].requests.classes[priority.index()]
            .wait
            .record(now - job.arrival);
        let sv = &mut self.servers[server as usize];
        if !sv.recovering.is_empty() && waited <= self.recovery_wait {
            for (rec, since) in std::mem::take(&mut sv.recovering) {
                self.records[rec].recovery_s = Some((now - since).as_secs_f64());
            }
        }
    }

    fn completed(&mut self, a: u32, conn: ConnId) {
        let (s, k, server) = self.service_of(a);
        let (job, started, p) = self.apps[a as usize].running[conn as usize];
        let now = self.now;
        let sec = self.second_index();
        let st = &mut self.services[s];
        let c = &mut st.requests.classes[p.index()];
        c.completed += 1;
        c.query.record(now - started);
        c.response.record(now - job.arrival);
        bump(&mut st.series.completed, sec);
        self.servers[server as usize].queries += 1;
        if let Some(inst) = st.instances.get_mut(k) {
            if inst.pools[server as usize] == a {
                let e = &mut inst.ewma[server as usize];
                let x = (now - job.arrival).as_nanos() as f64;
                *e = if e.is_nan() { x } else { 0.9 * *e + 0.1 * x };
            }
        }
        self.ended(s, &job);
    }

    fn timed_out(&mut self, a: u32, priority: Priority, job: Job) {
        let (s, _, _) = self.service_of(a);
        let now = self.now;
        let sec = self.second_index();
        let st = &mut self.services[s];
        let c = &mut st.requests.classes[priority.index()];
        c.timed_out += 1;
        c.wait.record(now - job.arrival);
        bump(&mut st.series.timed_out, sec);
        self.ended(s, &job);
    }

    fn rejected(&mut self, a: u32, priority: Priority, job: Job) {
        let (s, _, _) = self.service_of(a);
        self.services[s].requests.classes[priority.index()].rejected += 1;
        self.ended(s, &job);
    }

    /// The request failed on app pool `a`: a read goes to another server
    /// while it has retries left, anything else fails.
    fn failed(&mut self, a: u32, priority: Priority, mut job: Job) {
        let (s, k, server) = self.service_of(a);
        self.ban(server);
        let retry = job.kind == Kind::Read
            && (job.attempt as u32) < self.topo.routing.read_retries
            && self.services[s].servers.len() > 1
            && self.services[s].instances.get(k).is_some_and(|i| i.up);
        if retry {
            job.attempt += 1;
            job.tag = 0;
            self.services[s].requests.retried += 1;
            self.dispatch(s, k, priority, job, Some(server));
        } else {
            self.services[s].requests.classes[priority.index()].failed += 1;
            self.ended(s, &job);
        }
    }

    // ---- effects -----------------------------------------------------------

    /// Carries out the effects application pool `a` asked for.
    fn app_effects(&mut self, a: u32) {
        let now = self.now;
        // Taken out: handling an effect may drive another pool (a retry, a
        // PgBouncer hand-off), which pushes and handles its own effects.
        let mut fx = std::mem::take(&mut self.afx);
        for e in fx.drain(..) {
            let server = self.apps[a as usize].meta.server;
            match e {
                Effect::Start {
                    conn,
                    priority,
                    waited,
                    payload,
                } => {
                    let app = &mut self.apps[a as usize];
                    let c = conn as usize;
                    if app.running.len() <= c {
                        app.running.resize(c + 1, (payload, now, priority));
                    }
                    app.running[c] = (payload, now, priority);
                    // Behind PgBouncer in transaction mode the request
                    // still queues there: it is served when PgBouncer
                    // hands it a server connection.
                    if !self
                        .topo
                        .bouncer
                        .as_ref()
                        .is_some_and(|b| b.mode == PoolMode::Transaction)
                    {
                        self.served(a, priority, payload, waited);
                    }
                    self.start_query(a, conn, payload);
                }
                Effect::Open(conn) => match &self.topo.bouncer {
                    None => self.connect(Target::App(a), server, conn),
                    Some(b) => {
                        if self.clients_open >= b.max_client_conn {
                            self.clients_refused += 1;
                            self.queue.push(
                                now + b.client_connect_latency,
                                Ev::Connect {
                                    target: a,
                                    conn,
                                    ok: false,
                                    ban: false,
                                },
                            );
                        } else {
                            self.clients_open += 1;
                            self.clients_max = self.clients_max.max(self.clients_open);
                            match b.mode {
                                PoolMode::Transaction => self.queue.push(
                                    now + b.client_connect_latency,
                                    Ev::Connect {
                                        target: a,
                                        conn,
                                        ok: true,
                                        ban: false,
                                    },
                                ),
                                PoolMode::Session => {
                                    let job = Job {
                                        work: SimDuration::ZERO,
                                        arrival: now,
                                        kind: Kind::Read,
                                        attempt: 0,
                                        source: NO_SOURCE,
                                        client: 0,
                                        tag: ((a as u64) << 32) | conn as u64,
                                    };
                                    let bp = &mut self.bouncers[server as usize];
                                    bp.pool.acquire(now, Priority::Normal, job, &mut self.bfx);
                                    self.bouncer_effects(server as u32);
                                }
                            }
                        }
                    }
                },
                Effect::Close { conn, .. } => {
                    match &self.topo.bouncer {
                        None => {
                            let client = self.apps[a as usize].client;
                            let sec = self.second_index();
                            let sv = &mut self.servers[server as usize];
                            sv.db.disconnect(client, conn);
                            if !self.ending {
                                bump(&mut sv.series.closes, sec);
                            }
                        }
                        Some(b) => {
                            self.clients_open -= 1;
                            if b.mode == PoolMode::Session {
                                let bound = self.apps[a as usize]
                                    .session
                                    .get_mut(conn as usize)
                                    .and_then(|x| x.take());
                                if let Some(sconn) = bound {
                                    let bp = &mut self.bouncers[server as usize];
                                    bp.pool.release(now, sconn, &mut self.bfx);
                                    self.bouncer_effects(server as u32);
                                }
                            }
                        }
                    }
                    self.apps[a as usize].pool.closed(now, conn);
                    self.track(a);
                }
                Effect::ArmTimer { priority, at } => self.queue.push(
                    at,
                    Ev::Timeout {
                        target: a,
                        priority,
                    },
                ),
                Effect::Wake { at } => self.queue.push(at, Ev::Wake(a)),
                Effect::Check { conn, timeout } => match &self.topo.bouncer {
                    None => {
                        let client = self.apps[a as usize].client;
                        self.check(server, client, conn, timeout);
                    }
                    Some(b) => self
                        .queue
                        .push(now + b.hop_overhead, Ev::HopCheck { app: a, conn }),
                },
                Effect::TimedOut {
                    priority, payload, ..
                } => self.timed_out(a, priority, payload),
                Effect::Rejected { priority, payload } => self.rejected(a, priority, payload),
                Effect::Failed {
                    priority, payload, ..
                } => self.failed(a, priority, payload),
            }
        }
        if self.afx.is_empty() {
            self.afx = fx;
        }
    }

    /// A request starts on application connection `conn` of pool `a`.
    fn start_query(&mut self, a: u32, conn: ConnId, job: Job) {
        let now = self.now;
        let server = self.apps[a as usize].meta.server;
        match &self.topo.bouncer {
            None => {
                let client = self.apps[a as usize].client;
                let c = self.servers[server as usize]
                    .db
                    .start(now, client, conn, job.work);
                self.schedule(server, c);
            }
            Some(b) => {
                let work = job.work + b.hop_overhead;
                match b.mode {
                    PoolMode::Transaction => {
                        let mut j = job;
                        j.work = work;
                        j.tag = ((a as u64) << 32) | conn as u64;
                        // PgBouncer knows no priorities: one FIFO queue.
                        let bp = &mut self.bouncers[server as usize];
                        bp.pool.acquire(now, Priority::Normal, j, &mut self.bfx);
                        self.bouncer_effects(server as u32);
                    }
                    PoolMode::Session => {
                        let sconn = self.apps[a as usize].session[conn as usize]
                            .expect("a session connection is bound");
                        let client = self.bouncers[server as usize].client;
                        let c = self.servers[server as usize]
                            .db
                            .start(now, client, sconn, work);
                        self.schedule(server, c);
                    }
                }
            }
        }
    }

    /// Carries out the effects PgBouncer's pool for server `b` asked for.
    fn bouncer_effects(&mut self, b: u32) {
        let now = self.now;
        let server = b as u8;
        let mode = self.topo.bouncer.as_ref().expect("a bouncer").mode;
        let mut fx = std::mem::take(&mut self.bfx);
        for e in fx.drain(..) {
            match e {
                Effect::Start {
                    conn,
                    payload,
                    waited,
                    ..
                } => {
                    let bp = &mut self.bouncers[b as usize];
                    let c = conn as usize;
                    if bp.jobs.len() <= c {
                        bp.jobs.resize(c + 1, payload);
                    }
                    bp.jobs[c] = payload;
                    let (a, aconn) = untag(payload.tag);
                    match mode {
                        PoolMode::Transaction => {
                            let client = bp.client;
                            let c = self.servers[server as usize].db.start(
                                now,
                                client,
                                conn,
                                payload.work,
                            );
                            self.schedule(server, c);
                            let run = &mut self.apps[a as usize].running[aconn as usize];
                            run.1 = now;
                            let app_priority = run.2;
                            self.served(a, app_priority, payload, waited);
                        }
                        PoolMode::Session => {
                            let app = &mut self.apps[a as usize];
                            if app.session.len() <= aconn as usize {
                                app.session.resize(aconn as usize + 1, None);
                            }
                            app.session[aconn as usize] = Some(conn);
                            app.pool.connected(now, aconn, &mut self.afx);
                            self.app_effects(a);
                            self.track(a);
                        }
                    }
                }
                Effect::Open(conn) => self.connect(Target::Bouncer(b), server, conn),
                Effect::Close { conn, .. } => {
                    let client = self.bouncers[b as usize].client;
                    let sec = self.second_index();
                    let sv = &mut self.servers[server as usize];
                    sv.db.disconnect(client, conn);
                    if !self.ending {
                        bump(&mut sv.series.closes, sec);
                    }
                    self.bouncers[b as usize].pool.closed(now, conn);
                }
                Effect::ArmTimer { priority, at } => self.queue.push(
                    at,
                    Ev::Timeout {
                        target: Target::Bouncer(b).code(),
                        priority,
                    },
                ),
                Effect::Wake { at } => self.queue.push(at, Ev::Wake(Target::Bouncer(b).code())),
                Effect::Check { conn, timeout } => {
                    let client = self.bouncers[b as usize].client;
                    self.check(server, client, conn, timeout);
                }
                // PgBouncer gave up on a transaction or a session: the
                // client sees an error. query_wait_timeout disconnects it.
                Effect::TimedOut { payload, .. }
                | Effect::Rejected { payload, .. }
                | Effect::Failed { payload, .. } => {
                    let (a, aconn) = untag(payload.tag);
                    let (outcome, usable) = match e {
                        Effect::TimedOut { .. } => (Outcome::TimedOut, false),
                        Effect::Rejected { .. } => (Outcome::Rejected, false),
                        _ => (Outcome::Failed, true),
                    };
                    match mode {
                        PoolMode::Transaction => self.app_fail(a, aconn, usable, outcome),
                        PoolMode::Session => {
                            self.clients_open -= 1;
                            self.apps[a as usize]
                                .pool
                                .connect_error(now, aconn, &mut self.afx);
                            self.app_effects(a);
                        }
                    }
                    self.maybe_finish(a);
                }
            }
        }
        if self.bfx.is_empty() {
            self.bfx = fx;
        }
    }

    /// The request on application connection `conn` of pool `a` failed
    /// (its connection is broken unless `usable`): the pool is told, and
    /// unless it sent the request back to its queue (`on_broken = retry`
    /// with a broken connection), the service counts `outcome`.
    fn app_fail(&mut self, a: u32, conn: ConnId, usable: bool, outcome: Outcome) {
        use crate::core::lifecycle::OnBroken;
        let now = self.now;
        let (job, _, priority) = self.apps[a as usize].running[conn as usize];
        let pool = &mut self.apps[a as usize].pool;
        let requeued = !usable && pool.config().lifecycle.on_broken == OnBroken::Retry;
        pool.fail(now, conn, usable, job, &mut self.afx);
        self.app_effects(a);
        if !requeued {
            match outcome {
                Outcome::TimedOut => self.timed_out(a, priority, job),
                Outcome::Rejected => self.rejected(a, priority, job),
                Outcome::Failed => self.failed(a, priority, job),
            }
        }
        self.track(a);
    }

    /// A pool opens a connection to `server`: the rate limit, then the
    /// database model.
    fn connect(&mut self, target: Target, server: u8, conn: ConnId) {
        let now = self.now;
        let sec = self.second_index();
        let limit = self.topo.servers[server as usize].max_connects_per_s;
        let sv = &mut self.servers[server as usize];
        bump(&mut sv.series.connects, sec);
        if let Some(rate) = limit {
            let dt = (now - sv.last_refill).as_secs_f64();
            sv.tokens = (sv.tokens + dt * rate).min(rate.max(1.0));
            sv.last_refill = now;
            if sv.tokens < 1.0 {
                sv.refused_rate += 1;
                bump(&mut sv.series.refused, sec);
                let at = now + sv.db.wire().refusal_latency;
                self.queue.push(
                    at,
                    Ev::Connect {
                        target: target.code(),
                        conn,
                        ok: false,
                        ban: false,
                    },
                );
                return;
            }
            sv.tokens -= 1.0;
        }
        let client = match target {
            Target::App(a) => self.apps[a as usize].client,
            Target::Bouncer(b) => self.bouncers[b as usize].client,
        };
        let (latency, result) = sv.db.connect(client, conn);
        let ok = result == db::ConnectResult::Accepted;
        if ok {
            bump(&mut sv.series.accepted, sec);
        } else {
            bump(&mut sv.series.refused, sec);
        }
        let ban = matches!(result, db::ConnectResult::Down | db::ConnectResult::Error);
        self.queue.push(
            now + latency,
            Ev::Connect {
                target: target.code(),
                conn,
                ok,
                ban,
            },
        );
    }

    /// A check of client `client`'s connection `conn` on `server`.
    fn check(&mut self, server: u8, client: u16, conn: ConnId, timeout: SimDuration) {
        let (at, in_time) = self.servers[server as usize].db.check(self.now, timeout);
        self.queue.push(
            at,
            Ev::CheckDone {
                server,
                client,
                conn,
                ok: in_time,
            },
        );
    }

    #[inline]
    fn schedule(&mut self, server: u8, c: db::Completion) {
        match c {
            db::Completion::At(t, client, conn) => self.queue.push(
                t,
                Ev::QueryDone {
                    server,
                    client,
                    conn,
                },
            ),
            db::Completion::Wake(t, generation) => {
                self.queue.push(t, Ev::DbWake { server, generation })
            }
            db::Completion::FailAt(t, client, conn) => self.queue.push(
                t,
                Ev::QueryFailed {
                    server,
                    client,
                    conn,
                },
            ),
        }
    }

    /// Convergence and stability of application pool `a` after a change.
    #[inline]
    fn track(&mut self, a: u32) {
        let now = self.now;
        let app = &mut self.apps[a as usize];
        if app.meta.stopped.is_some() {
            return;
        }
        let open = app.pool.size() - app.pool.opening();
        let target = app.pool.target();
        match app.meta.converged {
            None if open >= target => app.meta.converged = Some(now),
            Some(_) if app.meta.deviated.is_none() && open != target => {
                app.meta.deviated = Some(now)
            }
            _ => {}
        }
    }

    // ---- events --------------------------------------------------------------

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::QueryDone {
                server,
                client,
                conn,
            } => {
                let sv = &mut self.servers[server as usize];
                if sv.db.done(now, client, conn) {
                    let t = sv.clients[client as usize];
                    self.query_ended(server, t, conn);
                }
            }
            Ev::DbWake { server, generation } => {
                let sv = &mut self.servers[server as usize];
                if let Some(((client, conn), next)) = sv.db.wake(now, generation) {
                    if let Some(c) = next {
                        self.schedule(server, c);
                    }
                    let t = self.servers[server as usize].clients[client as usize];
                    self.query_ended(server, t, conn);
                }
            }
            Ev::QueryFailed {
                server,
                client,
                conn,
            } => {
                let t = self.servers[server as usize].clients[client as usize];
                self.query_broke(t, conn);
            }
            Ev::CheckDone {
                server,
                client,
                conn,
                ok,
            } => {
                let sv = &mut self.servers[server as usize];
                let ok = sv.db.check_answer(client, conn, ok);
                match sv.clients[client as usize] {
                    Target::App(a) => {
                        self.apps[a as usize]
                            .pool
                            .checked(now, conn, ok, &mut self.afx);
                        self.app_effects(a);
                        self.track(a);
                        self.maybe_finish(a);
                    }
                    Target::Bouncer(b) => {
                        self.bouncers[b as usize]
                            .pool
                            .checked(now, conn, ok, &mut self.bfx);
                        self.bouncer_effects(b);
                    }
                }
            }
            Ev::HopCheck { app, conn } => {
                self.apps[app as usize]
                    .pool
                    .checked(now, conn, true, &mut self.afx);
                self.app_effects(app);
                self.maybe_finish(app);
            }
            Ev::Connect {
                target,
                conn,
                ok,
                ban,
            } => match Target::decode(target) {
                Target::App(a) => {
                    let server = self.apps[a as usize].meta.server;
                    // An accepted connect whose backend broke meanwhile fails.
                    let broke = ok
                        && self.topo.bouncer.is_none()
                        && !self.servers[server as usize]
                            .db
                            .connected(self.apps[a as usize].client, conn);
                    if ok && !broke {
                        self.apps[a as usize]
                            .pool
                            .connected(now, conn, &mut self.afx);
                    } else {
                        if ban || broke {
                            self.ban(server);
                        }
                        self.apps[a as usize]
                            .pool
                            .connect_error(now, conn, &mut self.afx);
                    }
                    self.app_effects(a);
                    self.track(a);
                    self.maybe_finish(a);
                }
                Target::Bouncer(b) => {
                    let client = self.bouncers[b as usize].client;
                    let ok = ok && self.servers[b as usize].db.connected(client, conn);
                    let bp = &mut self.bouncers[b as usize];
                    if ok {
                        bp.pool.connected(now, conn, &mut self.bfx);
                    } else {
                        bp.pool.connect_error(now, conn, &mut self.bfx);
                    }
                    self.bouncer_effects(b);
                }
            },
            Ev::Timeout { target, priority } => match Target::decode(target) {
                Target::App(a) => {
                    self.apps[a as usize]
                        .pool
                        .expire(now, priority, &mut self.afx);
                    self.app_effects(a);
                    self.maybe_finish(a);
                }
                Target::Bouncer(b) => {
                    self.bouncers[b as usize]
                        .pool
                        .expire(now, priority, &mut self.bfx);
                    self.bouncer_effects(b);
                }
            },
            Ev::Wake(target) => match Target::decode(target) {
                Target::App(a) => {
                    if self.apps[a as usize].finished {
                        return;
                    }
                    self.apps[a as usize].pool.wake(now, &mut self.afx);
                    self.app_effects(a);
                    self.track(a);
                    self.maybe_finish(a);
                }
                Target::Bouncer(b) => {
                    self.bouncers[b as usize].pool.wake(now, &mut self.bfx);
                    self.bouncer_effects(b);
                }
            },
            Ev::InstanceStart { service, instance } => {
                self.start_instance(service as usize, instance as usize)
            }
            Ev::Restart { event, step } => {
                let FleetEvent::RollingRestart { service, pause, .. } =
                    self.topo.events[event as usize];
                let n = self.topo.services[service].instances;
                if step < n {
                    self.stop_instance(service, step as usize);
                    self.start_instance(service, step as usize);
                    if step + 1 < n {
                        self.queue.push(
                            now.saturating_add(pause),
                            Ev::Restart {
                                event,
                                step: step + 1,
                            },
                        );
                    }
                }
            }
            Ev::FaultStart(i) => self.fault_start(i as usize),
            Ev::FaultEnd(r) => self.fault_end(r as usize),
            Ev::Second | Ev::Sample => unreachable!("handled by the loop"),
        }
    }

    /// A query ended on `server` for client `t`'s connection `conn`.
    fn query_ended(&mut self, _server: u8, t: Target, conn: ConnId) {
        let now = self.now;
        match t {
            Target::App(a) => {
                self.completed(a, conn);
                self.apps[a as usize].pool.release(now, conn, &mut self.afx);
                self.app_effects(a);
                self.maybe_finish(a);
            }
            Target::Bouncer(b) => {
                let mode = self.topo.bouncer.as_ref().expect("a bouncer").mode;
                let job = self.bouncers[b as usize].jobs[conn as usize];
                let (a, aconn) = match mode {
                    PoolMode::Transaction => {
                        let bp = &mut self.bouncers[b as usize];
                        bp.pool.release(now, conn, &mut self.bfx);
                        self.bouncer_effects(b);
                        untag(job.tag)
                    }
                    PoolMode::Session => untag(job.tag),
                };
                self.completed(a, aconn);
                self.apps[a as usize]
                    .pool
                    .release(now, aconn, &mut self.afx);
                self.app_effects(a);
                self.maybe_finish(a);
            }
        }
    }

    /// The backend under client `t`'s connection `conn` broke during its
    /// query (or the query started on a broken one).
    fn query_broke(&mut self, t: Target, conn: ConnId) {
        let now = self.now;
        match t {
            Target::App(a) => {
                self.app_fail(a, conn, false, Outcome::Failed);
                self.maybe_finish(a);
            }
            Target::Bouncer(b) => {
                let mode = self.topo.bouncer.as_ref().expect("a bouncer").mode;
                let job = self.bouncers[b as usize].jobs[conn as usize];
                let (a, aconn) = untag(job.tag);
                let bp = &mut self.bouncers[b as usize];
                let requeued = bp.pool.config().lifecycle.on_broken
                    == crate::core::lifecycle::OnBroken::Retry
                    && mode == PoolMode::Transaction;
                // PgBouncer closes the broken server connection.
                bp.pool.fail(now, conn, false, job, &mut self.bfx);
                self.bouncer_effects(b);
                match mode {
                    // Its client gets an error; its connection still works.
                    PoolMode::Transaction if !requeued => {
                        self.app_fail(a, aconn, true, Outcome::Failed)
                    }
                    PoolMode::Transaction => {}
                    // The session's server connection is gone, and with it
                    // the client's.
                    PoolMode::Session => {
                        self.apps[a as usize].session[aconn as usize] = None;
                        self.app_fail(a, aconn, false, Outcome::Failed);
                    }
                }
                self.maybe_finish(a);
            }
        }
    }

    // ---- faults --------------------------------------------------------------

    fn fault_start(&mut self, index: usize) {
        let now = self.now;
        let f = self.topo.faults[index];
        let server = f.server;
        let record = self.records.len();
        let duration = f.spec.kind.duration();
        self.records.push(FaultRecord {
            fault: index,
            kind: f.spec.kind.name().to_string(),
            start_s: now.as_secs_f64(),
            end_s: now.saturating_add(duration).as_secs_f64(),
            connections_broken: 0,
            queries_failed: 0,
            recovery_s: None,
        });
        self.window_faults += 1;
        let sv = &mut self.servers[server];
        if duration.0 > 0 {
            sv.active.push((record, f.spec.kind));
            sv.db.set_faults(sv.active.iter().map(|(_, k)| k));
        }
        let victims = sv.db.victims(&f.spec.kind, &mut self.faults[index]);
        if !victims.is_empty() {
            self.break_backends(server, record, &victims);
        }
        if duration.0 > 0 {
            self.queue
                .push(now.saturating_add(duration), Ev::FaultEnd(record as u32));
        } else {
            self.servers[server].recovering.push((record, now));
        }
        if let FaultTiming::Rate { per_hour } = f.spec.timing {
            if let Some(at) = next_occurrence(now, per_hour, &mut self.faults[index]) {
                self.queue.push(at, Ev::FaultStart(index as u32));
            }
        }
    }

    fn fault_end(&mut self, record: usize) {
        let server = self.topo.faults[self.records[record].fault].server;
        let sv = &mut self.servers[server];
        sv.active.retain(|(r, _)| *r != record);
        sv.db.set_faults(sv.active.iter().map(|(_, k)| k));
        sv.recovering.push((record, self.now));
    }

    fn break_backends(&mut self, server: usize, record: usize, victims: &[(u16, ConnId)]) {
        let now = self.now;
        let sv = &mut self.servers[server];
        let before = sv.db.stats.broken;
        let mut killed = Vec::new();
        for &(client, conn) in victims {
            if let Some(k) = sv.db.break_backend(client, conn) {
                killed.push(k);
            }
        }
        let resync = sv.db.resync(now);
        let broken = sv.db.stats.broken - before;
        if let Some(c) = resync {
            self.schedule(server as u8, c);
        }
        let r = &mut self.records[record];
        r.connections_broken += broken;
        r.queries_failed += killed.len() as u64;
        for k in killed {
            let t = self.servers[server].clients[k.instance as usize];
            self.query_broke(t, k.conn);
        }
    }

    // ---- observation -----------------------------------------------------------

    /// The end of a second: per-server backends, per-service pool state.
    fn second(&mut self) {
        let sec = (self.now.0.saturating_sub(1) / 1_000_000_000) as usize;
        for sv in &mut self.servers {
            let s = &mut sv.series;
            let len = sec + 1;
            for v in [
                &mut s.connects,
                &mut s.accepted,
                &mut s.refused,
                &mut s.closes,
            ] {
                if v.len() < len {
                    v.resize(len, 0);
                }
            }
            s.backends.resize(len, sv.db.backends);
            s.backends[sec] = sv.db.backends;
        }
        let nsvc = self.services.len();
        let mut size = vec![0u32; nsvc];
        let mut target = vec![0u32; nsvc];
        let mut active = vec![0u32; nsvc];
        let mut waiting = vec![0u32; nsvc];
        for app in self.apps.iter().filter(|a| !a.finished) {
            let s = app.meta.service as usize;
            size[s] += app.pool.size();
            target[s] += app.pool.target();
            active[s] += app.pool.active();
            waiting[s] += app.pool.waiting();
        }
        for (s, st) in self.services.iter_mut().enumerate() {
            let se = &mut st.series;
            let len = sec + 1;
            for v in [&mut se.completed, &mut se.timed_out] {
                if v.len() < len {
                    v.resize(len, 0);
                }
            }
            let up = st.instances.iter().filter(|i| i.up).count() as u16;
            for (v, x) in [
                (&mut se.size, size[s]),
                (&mut se.target, target[s]),
                (&mut se.active, active[s]),
                (&mut se.waiting, waiting[s]),
            ] {
                v.resize(len, x);
                v[sec] = x;
            }
            se.instances_up.resize(len, up);
            se.instances_up[sec] = up;
        }
    }

    /// One time-series row for every application pool together.
    fn sample(&mut self) -> Sample {
        let now = self.now;
        let mut out: Option<Sample> = None;
        let mut weighted_util = 0.0;
        for app in self.apps.iter_mut().filter(|a| !a.sampled_out) {
            if app.finished {
                app.sampled_out = true;
            }
            let t = app.pool.sample(now);
            weighted_util += t.utilization * t.size_mean;
            match &mut out {
                None => out = Some(t),
                Some(s) => s.add(&t),
            }
        }
        let mut s = out.unwrap_or(Sample {
            t_s: now.as_secs_f64(),
            window_s: 0.0,
            target: 0,
            size: 0,
            opening: 0,
            idle: 0,
            active: 0,
            waiting_high: 0,
            waiting_normal: 0,
            waiting_low: 0,
            size_mean: 0.0,
            active_mean: 0.0,
            waiting_mean: 0.0,
            utilization: 0.0,
            arrival_rate_per_s: 0.0,
            completed: 0,
            timed_out: 0,
            rejected: 0,
            failed: 0,
            opened: 0,
            closed: 0,
            checks_failed: 0,
            db_refused: 0,
            faults_active: 0,
        });
        s.t_s = now.as_secs_f64();
        s.utilization = if s.size_mean > 0.0 {
            weighted_util / s.size_mean
        } else {
            0.0
        };
        let refused: u64 = self
            .servers
            .iter()
            .map(|sv| sv.db.stats.refused + sv.db.stats.refused_down + sv.refused_rate)
            .sum();
        s.db_refused = refused - self.refused_mark;
        self.refused_mark = refused;
        s.faults_active = self.window_faults;
        self.window_faults = self.servers.iter().map(|sv| sv.active.len() as u32).sum();
        s
    }

    fn invariants(&self) -> Result<(), SimError> {
        let at = self.now;
        let seed = self.seed;
        for app in &self.apps {
            app.pool
                .check_invariants()
                .map_err(|what| SimError::Invariant {
                    what: format!(
                        "service `{}` instance {} generation {} server `{}`: {what}",
                        self.topo.services[app.meta.service as usize].name,
                        app.meta.instance,
                        app.meta.generation,
                        self.topo.servers[app.meta.server as usize].name
                    ),
                    at,
                    seed,
                })?;
        }
        for (i, bp) in self.bouncers.iter().enumerate() {
            bp.pool
                .check_invariants()
                .map_err(|what| SimError::Invariant {
                    what: format!("PgBouncer pool for `{}`: {what}", self.topo.servers[i].name),
                    at,
                    seed,
                })?;
        }
        Ok(())
    }

    /// Every request of a service is accounted for: arrived = completed +
    /// timed out + failed + rejected + unrouted + in flight, and what is in
    /// flight is in its pools.
    fn conservation(&self) -> Result<(), SimError> {
        // Every end went through `ended`: the sources' requests in flight
        // are the services'.
        let by_source: u64 = self.source_in_flight.iter().sum();
        if by_source != self.in_flight() {
            return Err(self.invariant(format!(
                "{by_source} requests in flight by source but {} by service",
                self.in_flight()
            )));
        }
        for (s, st) in self.services.iter().enumerate() {
            let r = &st.requests;
            let sum = |f: fn(&crate::core::metrics::ClassMetrics) -> u64| -> u64 {
                r.classes.iter().map(f).sum()
            };
            let arrived = sum(|c| c.arrived);
            let done = sum(|c| c.completed)
                + sum(|c| c.timed_out)
                + sum(|c| c.failed)
                + sum(|c| c.rejected)
                + r.unrouted;
            let in_pools: u64 = self
                .apps
                .iter()
                .filter(|a| a.meta.service as usize == s)
                .map(|a| a.pool.in_flight())
                .sum();
            if arrived != done + st.in_flight || st.in_flight != in_pools {
                return Err(SimError::Invariant {
                    what: format!(
                        "service `{}`: {arrived} arrived but {done} finished + {} in flight ({in_pools} in its pools)",
                        self.topo.services[s].name, st.in_flight
                    ),
                    at: self.now,
                    seed: self.seed,
                });
            }
        }
        Ok(())
    }

    fn outcome(self, end: SimTime, events: u64) -> FleetOutcome {
        let topo = self.topo;
        let mut services: Vec<ServiceOutcome> = topo
            .services
            .iter()
            .zip(self.services)
            .map(|(svc, st)| ServiceOutcome {
                name: svc.name.clone(),
                requests: st.requests,
                pools: Vec::new(),
                series: st.series,
                starts: st.starts,
            })
            .collect();
        for app in self.apps {
            let m = app.meta;
            services[m.service as usize].pools.push(AppPool {
                service: m.service as usize,
                instance: m.instance,
                generation: m.generation,
                server: m.server as usize,
                started: m.started,
                stopped: m.stopped,
                converged: m.converged,
                deviated: m.deviated,
                pool: app.pool,
            });
        }
        let servers = topo
            .servers
            .iter()
            .zip(self.servers)
            .enumerate()
            .map(|(i, (s, st))| ServerOutcome {
                name: s.name.clone(),
                replica: i > 0,
                stats: st.db.stats,
                refused_rate: st.refused_rate,
                queries: st.queries,
                bans: st.bans,
                series: st.series,
            })
            .collect();
        let bouncer = topo.bouncer.as_ref().map(|_| BouncerOutcome {
            pools: self.bouncers.into_iter().map(|b| b.pool).collect(),
            clients_refused: self.clients_refused,
            clients_max: self.clients_max,
        });
        FleetOutcome {
            end,
            events,
            seed: self.seed,
            services,
            servers,
            bouncer,
            faults: self.records,
        }
    }
}

/// Where a closed-loop client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// Its next request waits for its arrival (the think time).
    Thinking,
    /// Its request is in the fleet.
    InFlight,
    /// Its source ended it (`finished` returned `None`).
    Stopped,
}

/// One closed-loop source's clients.
#[derive(Default)]
struct LoopClients {
    clients: BTreeMap<u32, Client>,
    thinking: u64,
    in_flight: u64,
    stopped: u64,
}

/// The closed loops: every closed source's clients and their next
/// requests. Empty (and never touched) when every source is open.
struct ClosedLoops {
    /// Per source; `None` for open ones.
    sources: Vec<Option<LoopClients>>,
    names: Vec<String>,
    /// Next requests: (source, request).
    next: Arrivals<(u16, Request)>,
}

impl ClosedLoops {
    fn new(closed: &[bool], names: Vec<String>) -> Self {
        ClosedLoops {
            sources: closed
                .iter()
                .map(|&c| c.then(LoopClients::default))
                .collect(),
            names,
            next: Arrivals::default(),
        }
    }

    /// The earliest next request's arrival.
    #[inline]
    fn peek(&self) -> Option<SimTime> {
        self.next.peek()
    }

    fn pop(&mut self) -> (usize, Request) {
        let (source, request) = self.next.pop().expect("peeked");
        (source as usize, request)
    }

    /// Client `client` of closed source `i` sends a request: its first
    /// (from the cursor) or the one `finished` returned.
    fn arrived(&mut self, i: usize, client: u32, first: bool) -> Result<(), String> {
        let lc = self.sources[i].as_mut().expect("a closed source");
        let state = lc.clients.get(&client).copied();
        match (first, state) {
            (true, None) => {}
            (false, Some(Client::Thinking)) => lc.thinking -= 1,
            _ => {
                return Err(format!(
                    "{}: client {client} sent a{} request while {}",
                    self.names[i],
                    if first { " first" } else { " next" },
                    match state {
                        None => "unknown".to_string(),
                        Some(s) => format!("{s:?}"),
                    }
                ))
            }
        }
        lc.clients.insert(client, Client::InFlight);
        lc.in_flight += 1;
        Ok(())
    }

    /// Tells the closed sources which of their requests ended, in order,
    /// and schedules the next requests they return.
    fn report(
        &mut self,
        ends: &mut Vec<(u16, u32, SimTime)>,
        sources: &mut [&mut dyn RequestSource],
    ) -> Result<(), String> {
        for (src, client, at) in ends.drain(..) {
            let i = src as usize;
            let lc = self.sources[i].as_mut().expect("a closed source");
            let state = lc.clients.get_mut(&client);
            let Some(state @ Client::InFlight) = state else {
                return Err(format!(
                    "{}: a request of client {client} ended while it is {:?}",
                    self.names[i], state
                ));
            };
            lc.in_flight -= 1;
            match sources[i].finished(client, at) {
                Some(r) => {
                    if r.client != client || r.arrival < at {
                        return Err(format!(
                            "{}: client {client}'s request ended at {at}, and its next one is client {}'s at {}",
                            self.names[i], r.client, r.arrival
                        ));
                    }
                    *state = Client::Thinking;
                    lc.thinking += 1;
                    self.next.push(r.arrival, (src, r));
                }
                None => {
                    *state = Client::Stopped;
                    lc.stopped += 1;
                }
            }
        }
        Ok(())
    }

    /// Every closed-loop client is accounted for: it thinks (its next
    /// request is scheduled), has exactly one request in flight, or has
    /// stopped; none vanished with a request that ended unreported.
    fn conservation(
        &self,
        source_in_flight: &[u64],
        ends: &[(u16, u32, SimTime)],
    ) -> Result<(), String> {
        for (i, lc) in self.sources.iter().enumerate() {
            let Some(lc) = lc else { continue };
            let mut count = [0u64; 3];
            for s in lc.clients.values() {
                count[*s as usize] += 1;
            }
            let scheduled = self.next.iter().filter(|(s, _)| *s as usize == i).count() as u64;
            let unreported = ends.iter().filter(|e| e.0 as usize == i).count();
            let seen = lc.clients.len() as u64;
            if count != [lc.thinking, lc.in_flight, lc.stopped]
                || seen != lc.thinking + lc.in_flight + lc.stopped
                || scheduled != lc.thinking
                || source_in_flight[i] != lc.in_flight
                || unreported != 0
            {
                return Err(format!(
                    "{}: {seen} closed-loop clients, {} thinking ({scheduled} next requests scheduled), {} with a request in flight ({} requests in flight), {} stopped, {unreported} ends unreported",
                    self.names[i], lc.thinking, lc.in_flight, source_in_flight[i], lc.stopped
                ));
            }
        }
        Ok(())
    }
}

#[inline]
fn untag(tag: u64) -> (u32, ConnId) {
    ((tag >> 32) as u32, tag as u32 as ConnId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::PolicySpec;
    use crate::config::Override;
    use crate::core::metrics::NullSink;
    use crate::dist::DurationDist;
    use crate::sim::db::{DatabaseModel, Wire};
    use crate::sim::topology::{Bouncer, Routing, Server, Service};
    use crate::trace::synthetic::{Synthetic, SyntheticSpec};

    /// How a test source breaks the closed-loop contract.
    #[derive(Clone, Copy, PartialEq)]
    enum Bad {
        None,
        /// The next request arrives before the previous one ended.
        Early,
        /// The next request is another client's.
        OtherClient,
    }

    /// `n` clients with a constant think time and constant work; each
    /// sends while its next arrival is at most `until`. Panics on an end
    /// for a client with nothing in flight.
    struct Loop {
        think: SimDuration,
        work: SimDuration,
        until: SimTime,
        firsts: Vec<Request>,
        busy: Vec<bool>,
        sent: u64,
        stopped: u32,
        bad: Bad,
    }

    impl Loop {
        fn new(n: u32, think_ms: u64, work_ms: u64, until_s: u64) -> Self {
            let think = SimDuration::from_millis(think_ms);
            // Staggered first requests, latest first.
            let firsts = (0..n)
                .rev()
                .map(|c| Request {
                    arrival: SimTime::ZERO + think + SimDuration::from_nanos(c as u64 * 1_000),
                    service: SimDuration::from_millis(work_ms),
                    priority: Priority::Normal,
                    kind: Kind::Read,
                    client: c,
                })
                .collect();
            Loop {
                think,
                work: SimDuration::from_millis(work_ms),
                until: SimTime::ZERO + SimDuration::from_secs(until_s),
                firsts,
                busy: vec![false; n as usize],
                sent: 0,
                stopped: 0,
                bad: Bad::None,
            }
        }

        fn in_flight(&self) -> u64 {
            self.busy.iter().filter(|b| **b).count() as u64
        }
    }

    impl RequestSource for Loop {
        fn next_request(&mut self) -> Option<Request> {
            let r = self.firsts.pop()?;
            self.busy[r.client as usize] = true;
            self.sent += 1;
            Some(r)
        }

        fn close_loop(&mut self) -> bool {
            true
        }

        fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
            assert!(
                std::mem::take(&mut self.busy[client as usize]),
                "client {client} ended at {at} with nothing in flight"
            );
            let mut next = at + self.think;
            if next > self.until {
                self.stopped += 1;
                return None;
            }
            let mut c = client;
            match self.bad {
                Bad::None => {}
                Bad::Early => next = SimTime(at.0 - 1),
                Bad::OtherClient => c = client + 1,
            }
            self.busy[client as usize] = true;
            self.sent += 1;
            Some(Request {
                arrival: next,
                service: self.work,
                priority: Priority::Normal,
                kind: Kind::Read,
                client: c,
            })
        }
    }

    fn policy(name: &str, set: &[&str]) -> PolicySpec {
        let o: Vec<Override> = set.iter().map(|s| Override::parse(s).unwrap()).collect();
        crate::scenario::load_policy(name, &o).unwrap().spec
    }

    fn topology(services: Vec<(&str, ServiceWorkload, u16)>, p: PolicySpec) -> Topology {
        Topology {
            services: services
                .into_iter()
                .map(|(name, workload, instances)| Service {
                    name: name.into(),
                    instances,
                    policy: p.clone(),
                    workload,
                    balance: Balance::RoundRobin,
                    start_at: SimDuration::ZERO,
                    start_stagger: SimDuration::ZERO,
                })
                .collect(),
            bouncer: None,
            servers: vec![Server {
                name: "primary".into(),
                model: DatabaseModel {
                    connect_latency: DurationDist::Constant {
                        value_ns: 1_000_000,
                    },
                    max_connections: 100,
                    usl_sigma: 0.0,
                    usl_kappa: 0.0,
                },
                wire: Wire::default(),
                max_connects_per_s: None,
                lag: SimDuration::ZERO,
            }],
            routing: Routing {
                reads_to_replicas: false,
                replica_selection: ReplicaSelection::RoundRobin,
                read_your_writes: false,
                ban_time: SimDuration::from_secs(60),
                read_retries: 1,
            },
            events: Vec::new(),
            faults: Vec::new(),
        }
    }

    fn arrived(out: &FleetOutcome, s: usize) -> u64 {
        out.services[s]
            .requests
            .classes
            .iter()
            .map(|c| c.arrived)
            .sum()
    }

    fn ended(out: &FleetOutcome, s: usize) -> u64 {
        let r = &out.services[s].requests;
        r.classes
            .iter()
            .map(|c| c.completed + c.timed_out + c.failed + c.rejected)
            .sum::<u64>()
            + r.unrouted
    }

    /// Two services with their own closed loops whose client numbers
    /// overlap, and a third on an open shared workload: each end goes back
    /// to the loop that sent the request (a wrong one would panic in the
    /// test source or stop a client early), and the open workload is
    /// untouched.
    #[test]
    fn ends_go_back_to_the_closed_loop_that_sent_them() {
        let topo = topology(
            vec![
                ("web", ServiceWorkload::Share(1.0), 1),
                ("a", ServiceWorkload::Own(0), 2),
                ("b", ServiceWorkload::Own(1), 1),
            ],
            policy("fixed-10", &["size.min=4", "size.max=4"]),
        );
        let seeds = SeedTree::new(3);
        let load = SyntheticSpec {
            rate_per_s: 200.0,
            service: DurationDist::Exponential { mean_ns: 2e6 },
            priority_mix: [0.0, 1.0, 0.0],
            write_fraction: 0.0,
            duration: Some(SimDuration::from_secs(20)),
            max_requests: None,
        };
        let mut web = Synthetic::new(&load, &seeds);
        let (mut a, mut b) = (Loop::new(8, 10, 2, 20), Loop::new(8, 50, 5, 20));
        let opts = RunOptions {
            check_invariants: true,
            ..RunOptions::default()
        };
        let out = simulate_fleet(
            &topo,
            Some(&mut web),
            vec![&mut a, &mut b],
            &seeds,
            &opts,
            &mut NullSink,
        )
        .unwrap();
        assert_eq!(arrived(&out, 1), a.sent);
        assert_eq!(arrived(&out, 2), b.sent);
        assert_eq!(
            (a.stopped, b.stopped),
            (8, 8),
            "every client ran to the end"
        );
        assert_eq!(a.in_flight() + b.in_flight(), 0);
        // A client sends once per think + response (response >= work): at
        // most until / (think + work) + 1 requests; `a` never waits (8
        // clients on 2 x 4 connections), `b` a little (8 on 4).
        assert!(
            (8 * 1600..=8 * (20_000 / 12 + 1)).contains(&a.sent),
            "{}",
            a.sent
        );
        assert!(
            (8 * 330..=8 * (20_000 / 55 + 1)).contains(&b.sent),
            "{}",
            b.sent
        );
        for s in 0..3 {
            assert_eq!(arrived(&out, s), ended(&out, s));
        }
        assert!(arrived(&out, 0) > 3000, "the open workload ran");
    }

    /// Requests that no instance takes (a cold start), that PgBouncer's
    /// max_client_conn leaves without a connection until they time out,
    /// and those served: all are ends, and every client keeps going.
    #[test]
    fn unrouted_and_refused_requests_end_and_their_clients_go_on() {
        let mut topo = topology(
            vec![("api", ServiceWorkload::Share(1.0), 2)],
            policy(
                "fixed-10",
                &["size.min=3", "size.max=3", "acquire_timeout.normal=30ms"],
            ),
        );
        topo.services[0].start_at = SimDuration::from_secs(1);
        topo.bouncer = Some(Bouncer {
            mode: PoolMode::Transaction,
            policy: policy("pgbouncer-txn", &["size.max=2"]),
            max_client_conn: 2,
            client_connect_latency: SimDuration::ZERO,
            hop_overhead: SimDuration::ZERO,
        });
        let mut clients = Loop::new(12, 20, 4, 10);
        let opts = RunOptions {
            check_invariants: true,
            ..RunOptions::default()
        };
        let seeds = SeedTree::new(1);
        let out = simulate_fleet(
            &topo,
            Some(&mut clients),
            Vec::new(),
            &seeds,
            &opts,
            &mut NullSink,
        )
        .unwrap();
        let r = &out.services[0].requests;
        let timed_out: u64 = r.classes.iter().map(|c| c.timed_out).sum();
        assert!(r.unrouted > 0, "before the first instance");
        assert!(out.bouncer.as_ref().unwrap().clients_refused > 0);
        assert!(timed_out > 0);
        assert_eq!(arrived(&out, 0), clients.sent);
        assert_eq!(arrived(&out, 0), ended(&out, 0));
        assert_eq!(clients.stopped, 12);
        assert_eq!(clients.in_flight(), 0);
    }

    /// Without drain and without a horizon, a closed loop runs until its
    /// clients stop (an empty schedule between two ends is not the end of
    /// the workload); with a horizon and no drain it stops there with
    /// requests in flight, each one's client accounted for.
    #[test]
    fn a_closed_loop_stops_when_its_clients_do_or_at_the_horizon() {
        let topo = topology(
            vec![("api", ServiceWorkload::Share(1.0), 1)],
            policy("fixed-10", &["size.min=2", "size.max=2"]),
        );
        // 4 clients, work 50 ms on 2 connections, no think: there is never
        // a scheduled arrival while their requests run.
        let go = |horizon: Option<u64>| {
            let mut clients = Loop::new(4, 0, 50, 5);
            let opts = RunOptions {
                drain: false,
                horizon: horizon.map(SimDuration::from_secs),
                ..RunOptions::default()
            };
            let seeds = SeedTree::new(2);
            let out = simulate_fleet(
                &topo,
                Some(&mut clients),
                Vec::new(),
                &seeds,
                &opts,
                &mut NullSink,
            )
            .unwrap();
            (out, clients)
        };
        let (out, clients) = go(None);
        assert_eq!(clients.stopped, 4);
        // 2 connections busy from 1 ms on: 2 per 50 ms for 5 s.
        assert!((196..=202).contains(&clients.sent), "{}", clients.sent);
        assert_eq!(arrived(&out, 0), ended(&out, 0));
        let (out, clients) = go(Some(2));
        assert!(clients.in_flight() > 0);
        assert_eq!(
            arrived(&out, 0),
            ended(&out, 0) + clients.in_flight(),
            "in flight at the horizon"
        );
    }

    /// A closed loop whose next request arrives before the previous one
    /// ended, or belongs to another client, is reported, not followed.
    #[test]
    fn a_closed_loop_that_breaks_the_contract_is_an_invariant_error() {
        let topo = topology(
            vec![("api", ServiceWorkload::Share(1.0), 1)],
            policy("fixed-10", &["size.min=2", "size.max=2"]),
        );
        for (bad, says) in [
            (Bad::Early, "its next one"),
            (Bad::OtherClient, "client 1's"),
        ] {
            let mut clients = Loop::new(2, 10, 5, 5);
            clients.bad = bad;
            let seeds = SeedTree::new(2);
            let err = simulate_fleet(
                &topo,
                Some(&mut clients),
                Vec::new(),
                &seeds,
                &RunOptions::default(),
                &mut NullSink,
            )
            .err()
            .expect("an error");
            let SimError::Invariant { what, .. } = err else {
                panic!("{err}");
            };
            assert!(
                what.contains(says) && what.contains("shared workload"),
                "{what}"
            );
        }
    }
}
