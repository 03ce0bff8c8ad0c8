//! A topology: application services (each a fleet of instances with a
//! pool per database server), an optional PgBouncer layer, a primary and
//! read replicas, how requests are routed between them, and the fleet's
//! events (cold starts, rolling restarts) and server faults.
//!
//! These are validated domain values (the scenario file's TOML layer is
//! `config::scenario`); the engine that runs them is [`super::fleet`], and
//! what it hands back is a [`FleetOutcome`].

use crate::config::policy::PolicySpec;
use crate::core::metrics::ClassMetrics;
use crate::core::pool::Pool;
use crate::core::request::Kind;
use crate::sim::db::{DatabaseModel, Wire};
use crate::sim::fault::{FaultRecord, FaultSpec};
use crate::sim::Balance;
use crate::time::{SimDuration, SimTime};

/// The whole deployment a scenario simulates.
#[derive(Clone, Debug)]
pub struct Topology {
    pub services: Vec<Service>,
    pub bouncer: Option<Bouncer>,
    /// `servers[0]` is the primary; the others are read replicas.
    pub servers: Vec<Server>,
    pub routing: Routing,
    /// Instance lifecycle events (rolling restarts), in any order.
    pub events: Vec<FleetEvent>,
    /// Server faults (restart = a server failing and returning, mass
    /// connection drop, latency spikes...), each on one server.
    pub faults: Vec<ServerFault>,
}

/// One application service: `instances` copies of the same program, each
/// with one pool per database server it talks to (the primary, and every
/// replica when reads are routed to replicas), all with `policy`.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub instances: u16,
    pub policy: PolicySpec,
    /// Where its requests come from.
    pub workload: ServiceWorkload,
    /// How the service's requests are spread over its running instances.
    pub balance: Balance,
    /// Instance i starts at `start_at + i x start_stagger` (a cold start of
    /// the whole service: stagger 0 = all at once). Until an instance is up
    /// it gets no requests; a request for a service with no instance up is
    /// `unrouted` (the load balancer answers 503).
    pub start_at: SimDuration,
    pub start_stagger: SimDuration,
}

/// Which requests a service receives.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceWorkload {
    /// This fraction of the scenario's shared workload (the shares of all
    /// services using it sum to 1; each request is assigned by a seeded
    /// draw, stream `route/service`).
    Share(f64),
    /// Its own workload: index into the scenario's list of service
    /// workloads (the config layer loads them; the engine merges them).
    Own(usize),
}

/// PgBouncer between the applications and the servers: the applications'
/// pools connect to it (cheaply, up to `max_client_conn`), and it keeps its
/// own pool of server connections per database server, run by the same
/// core pool with `policy` (for example `pgbouncer-txn` with its size).
#[derive(Clone, Debug)]
pub struct Bouncer {
    pub mode: PoolMode,
    /// Its server pools' policy: size = default_pool_size, reserve pool,
    /// query_wait_timeout as the acquire timeout, server_lifetime,
    /// server_idle_timeout...
    pub policy: PolicySpec,
    /// Client connections accepted at once (PgBouncer default 100); more
    /// are refused.
    pub max_client_conn: u32,
    /// What a client connect to PgBouncer costs (no backend is started).
    pub client_connect_latency: SimDuration,
    /// Added to every query's hold time by the extra hop.
    pub hop_overhead: SimDuration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection is held only for one transaction (one request).
    Transaction,
    /// A server connection is held for the client connection's lifetime.
    Session,
}

/// One database server.
#[derive(Clone, Debug)]
pub struct Server {
    pub name: String,
    pub model: DatabaseModel,
    pub wire: Wire,
    /// Connects accepted per second (a token bucket holding one second's
    /// worth); more are refused after one round trip (a managed service's
    /// "rate exceeded"). None = no limit.
    pub max_connects_per_s: Option<f64>,
    /// Replication lag: reads by an instance within `lag` of its last write
    /// go to the primary when `Routing::read_your_writes` is on. Zero for
    /// the primary.
    pub lag: SimDuration,
}

/// How requests pick a server.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    /// Reads go to the replicas (writes always go to the primary). False, or
    /// no replica: everything goes to the primary.
    pub reads_to_replicas: bool,
    pub replica_selection: ReplicaSelection,
    /// Reads by an instance within the replica's lag of that instance's
    /// last write go to the primary.
    pub read_your_writes: bool,
    /// A replica on which a connect or a query fails is banned (gets no
    /// reads) for this long; when every replica is banned, all bans are
    /// lifted (pgcat: "better to try than not").
    pub ban_time: SimDuration,
    /// A read that fails on a replica (its connect failed, its backend
    /// broke) is sent again, at most this many times, to another server.
    /// Writes are never retried.
    pub read_retries: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaSelection {
    RoundRobin,
    /// Uniform (seeded stream `route/replica`).
    Random,
    /// The replica with the fewest requests in flight from this instance
    /// (pgcat `loc`); ties to the lowest index.
    LeastOutstanding,
    /// The replica with the lowest moving average of response time seen by
    /// this instance (EWMA, weight 0.1), unknown ones first.
    LatencyAware,
}

/// An instance lifecycle event.
#[derive(Clone, Debug, PartialEq)]
pub enum FleetEvent {
    /// At `at`, instances of `service` are replaced one after the other,
    /// `pause` apart: the old instance stops taking requests, finishes the
    /// ones it has, closes its pools; its replacement starts at once with
    /// fresh pools.
    RollingRestart {
        service: usize,
        at: SimDuration,
        pause: SimDuration,
    },
}

/// A fault (see [`crate::sim::fault`]) on one server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerFault {
    pub server: usize,
    pub spec: FaultSpec,
}

/// What a request carries through the app pools: its work, when it first
/// arrived, what it is, how many times it has been sent, and who sent it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Job {
    pub work: SimDuration,
    pub arrival: SimTime,
    pub kind: Kind,
    pub attempt: u8,
    /// The request source it came from: 0 = the shared workload when there
    /// is one, then the services' own workloads in order (the engine's
    /// source list). `u16::MAX` for what is no request (a PgBouncer session).
    /// Its end goes back to this source when it is a closed loop.
    pub source: u16,
    /// Its closed-loop client ([`crate::core::request::Request::client`]).
    pub client: u32,
    /// Driver bookkeeping: in a PgBouncer pool, the application pool and
    /// connection this transaction (or session) belongs to.
    pub tag: u64,
}

/// One pool of one instance (generation) of a service, at the end.
pub struct AppPool {
    pub service: usize,
    /// Instance slot (0..instances) and its generation (0 at the first
    /// start, +1 per restart).
    pub instance: u16,
    pub generation: u16,
    pub server: usize,
    pub started: SimTime,
    /// When it stopped taking requests (restart), None if it ran to the end.
    pub stopped: Option<SimTime>,
    /// First time its open connections reached its target.
    pub converged: Option<SimTime>,
    /// First time after `converged` that its size left its target (a
    /// connection closed or opened) before it stopped; None = stable.
    pub deviated: Option<SimTime>,
    pub pool: Pool<Job>,
}

/// Per-second counters of one server (index = second of the run).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerSeries {
    /// Connect attempts that reached the server (accepted or refused).
    pub connects: Vec<u32>,
    pub accepted: Vec<u32>,
    /// Refused (max_connections, rate limit, down) or failed (a
    /// connect_failures fault).
    pub refused: Vec<u32>,
    /// Backends closed by their clients (stopped instances included; the
    /// closes when the run ends are not counted).
    pub closes: Vec<u32>,
    /// Backends at the end of each second.
    pub backends: Vec<u32>,
}

/// One server at the end.
pub struct ServerOutcome {
    pub name: String,
    pub replica: bool,
    pub stats: crate::sim::db::DbStats,
    /// Connects refused by the rate limit.
    pub refused_rate: u64,
    /// Queries it ran to completion.
    pub queries: u64,
    /// Times it was banned by the routers.
    pub bans: u64,
    pub series: ServerSeries,
}

/// One service's requests, end to end (a read retried on another server
/// counts once, with its final outcome and its total times from arrival).
#[derive(Clone, Debug, Default)]
pub struct ServiceRequests {
    pub classes: [ClassMetrics; 3],
    /// No instance was up when it arrived.
    pub unrouted: u64,
    /// The same, per priority (high, normal, low).
    pub unrouted_by_priority: [u64; 3],
    /// Reads sent again after a failure on a replica.
    pub retried: u64,
    pub reads: u64,
    pub writes: u64,
    /// Reads served by the primary (no replica, read-your-writes, or
    /// every replica banned and none left).
    pub reads_on_primary: u64,
}

/// Per-second samples of one service (index = second of the run): all its
/// pools together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceSeries {
    pub size: Vec<u32>,
    pub target: Vec<u32>,
    pub active: Vec<u32>,
    pub waiting: Vec<u32>,
    pub instances_up: Vec<u16>,
    pub completed: Vec<u32>,
    pub timed_out: Vec<u32>,
}

pub struct ServiceOutcome {
    pub name: String,
    pub requests: ServiceRequests,
    /// Every pool it had (instance generations x servers), in creation order.
    pub pools: Vec<AppPool>,
    pub series: ServiceSeries,
    /// Times at which its instances started (cold start) or were replaced.
    pub starts: Vec<SimTime>,
}

/// The PgBouncer layer at the end: one pool per server.
pub struct BouncerOutcome {
    pub pools: Vec<Pool<Job>>,
    /// Client connects refused at max_client_conn.
    pub clients_refused: u64,
    pub clients_max: u32,
}

/// What a finished topology run hands to the summary and the assertions.
pub struct FleetOutcome {
    pub end: SimTime,
    pub events: u64,
    pub seed: u64,
    pub services: Vec<ServiceOutcome>,
    pub servers: Vec<ServerOutcome>,
    pub bouncer: Option<BouncerOutcome>,
    /// Every server fault occurrence (`fault` indexes `Topology::faults`).
    pub faults: Vec<FaultRecord>,
}
