//! Closed loops run live (issue 3): each client sends its next request a
//! think time after its previous one ends on the live clock, like pgbench
//! without `-R`. A small closed-loop source written here (N clients,
//! constant or seeded exponential think, `pg_sleep` service) checks what
//! the driver reports to it; the ephemeral PostgreSQL of `pg_harness`
//! serves the queries.

use std::pin::Pin;
use std::time::Duration;

use rand::Rng;

use pooltune::core::metrics::Sample;
use pooltune::core::request::{Kind, Priority, Request};
use pooltune::live::{self, LiveOptions, LiveOutcome, Target};
use pooltune::rng::{SeedTree, Stream};
use pooltune::scenario;
use pooltune::sim::RunOptions;
use pooltune::summary::{run_summary, PolicyInfo, RunSummary};
use pooltune::time::{SimDuration, SimTime};
use pooltune::trace::RequestSource;

use crate::live_run::{assert_conserved, assert_no_backends_left, our_backends, write};
use crate::pg_harness::PgCluster;

enum Think {
    Constant(SimDuration),
    /// Exponential with this mean, from a seeded stream.
    Exp(SimDuration, Box<Stream>),
}

/// N closed-loop clients; each stops after `per_client` requests or once
/// a request ends at or after `until` (source time). It records what the
/// driver tells it and every breach of the closed-loop contract.
struct Clients {
    n: u32,
    service: SimDuration,
    think: Think,
    per_client: Option<u64>,
    until: SimTime,
    asked_close: bool,
    started: u32,
    /// Per client: the arrival of its request in flight.
    in_flight: Vec<Option<SimTime>>,
    issued: Vec<u64>,
    ended: Vec<u64>,
    stopped: Vec<bool>,
    /// (client, arrival, end) of every ended request.
    ends: Vec<(u32, SimTime, SimTime)>,
    /// Think times drawn.
    thinks: Vec<SimDuration>,
    violations: Vec<String>,
}

impl Clients {
    fn new(n: u32, service: SimDuration, think: Think) -> Self {
        Clients {
            n,
            service,
            think,
            per_client: None,
            until: SimTime::NEVER,
            asked_close: false,
            started: 0,
            in_flight: vec![None; n as usize],
            issued: vec![0; n as usize],
            ended: vec![0; n as usize],
            stopped: vec![false; n as usize],
            ends: Vec::new(),
            thinks: Vec::new(),
            violations: Vec::new(),
        }
    }

    fn send(&mut self, client: u32, arrival: SimTime) -> Request {
        self.in_flight[client as usize] = Some(arrival);
        self.issued[client as usize] += 1;
        Request {
            arrival,
            service: self.service,
            priority: Priority::Normal,
            kind: Kind::Read,
            client,
        }
    }

    fn total_issued(&self) -> u64 {
        self.issued.iter().sum()
    }
}

impl RequestSource for Clients {
    fn close_loop(&mut self) -> bool {
        self.asked_close = true;
        true
    }

    fn next_request(&mut self) -> Option<Request> {
        if !self.asked_close {
            self.violations
                .push("next_request before close_loop".to_string());
        }
        if self.started == self.n {
            return None;
        }
        // Clients start 1 ms apart, as pgbench's threads do not start at
        // the same instant either.
        let c = self.started;
        self.started += 1;
        Some(self.send(c, SimTime(u64::from(c) * 1_000_000)))
    }

    fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
        let Some(arrival) = self
            .in_flight
            .get_mut(client as usize)
            .and_then(|a| a.take())
        else {
            self.violations
                .push(format!("finished({client}) with no request in flight"));
            return None;
        };
        if at < arrival {
            self.violations.push(format!(
                "client {client}: ended at {at:?} before its arrival {arrival:?}"
            ));
        }
        self.ended[client as usize] += 1;
        self.ends.push((client, arrival, at));
        let done = self
            .per_client
            .is_some_and(|k| self.issued[client as usize] >= k);
        if done || at >= self.until {
            self.stopped[client as usize] = true;
            return None;
        }
        let z = match &mut self.think {
            Think::Constant(z) => *z,
            Think::Exp(mean, rng) => {
                let u: f64 = rng.random();
                SimDuration((-(1.0 - u).ln() * mean.0 as f64).round() as u64)
            }
        };
        self.thinks.push(z);
        Some(self.send(client, at + z))
    }
}

fn fixed_pool(size: u32, timeout: &str, extra: &str) -> String {
    format!(
        r#"
name = "fixed-{size}"
[size]
min = {size}
max = {size}
[resize]
kind = "fixed"
[acquire_timeout]
high = "{timeout}"
normal = "{timeout}"
low = "{timeout}"
{extra}
"#
    )
}

/// One live run of `src` with `policy`; the summary from the same code as
/// `live run`'s.
fn run_live(
    pg: &PgCluster,
    policy: &str,
    src: &mut Clients,
    stop: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> (RunSummary, live::LiveReport) {
    let dir = tempfile::TempDir::new().unwrap();
    let p = scenario::load_policy(&write(dir.path(), "p.toml", policy), &[]).unwrap();
    let target = Target::from_env(Some(&pg.url())).unwrap();
    let rt = live::runtime().unwrap();
    let mut samples: Vec<Sample> = Vec::new();
    let opts = RunOptions {
        check_invariants: true,
        ..RunOptions::default()
    };
    let LiveOutcome { outcome, report } = rt
        .block_on(live::run(
            &target,
            &p.spec.pool,
            p.spec.build(),
            &mut *src,
            &opts,
            &LiveOptions::default(),
            &mut samples,
            stop,
        ))
        .unwrap();
    let info = PolicyInfo {
        name: p.spec.name.clone(),
        hash: p.spec.hash.clone(),
        source: p.source.clone(),
        description: p.spec.description.clone(),
        config: p.spec.effective.clone(),
    };
    let r = run_summary(&outcome, info, "closed", "");
    assert_conserved(&r);
    assert!(
        src.violations.is_empty(),
        "closed-loop contract broken: {:?}",
        src.violations
    );
    (r, report)
}

fn never() -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(std::future::pending())
}

fn ms(d: f64) -> f64 {
    d * 1e3
}

/// Requests ended per second within [from, to) (source time, seconds):
/// the steady state, away from the start and the stop.
fn rate_between(ends: &[(u32, SimTime, SimTime)], from: f64, to: f64) -> f64 {
    let n = ends
        .iter()
        .filter(|(_, _, e)| (from..to).contains(&e.as_secs_f64()))
        .count();
    n as f64 / (to - from)
}

#[test]
fn closed_loop_throughput_is_clients_over_think_plus_service() {
    let Some(pg) = PgCluster::start("closed_loop_throughput") else {
        return;
    };
    let (n, z, s) = (8u32, 0.040, 0.020);
    let mut src = Clients::new(
        n,
        SimDuration::from_millis(20),
        Think::Constant(SimDuration::from_millis(40)),
    );
    src.until = SimTime(4_000_000_000);
    // A pool as large as the client count: nobody waits for a connection.
    let (r, rep) = run_live(&pg, &fixed_pool(n, "2s", ""), &mut src, never());

    let cl = rep
        .closed_loop
        .as_ref()
        .expect("live.json says closed loop");
    assert_eq!(cl.clients, n);
    assert_eq!(
        (cl.stopped, cl.thinking_at_end, cl.in_flight_at_end),
        (n, 0, 0),
        "{cl:?}"
    );
    assert_eq!(r.requests.arrived, src.total_issued());
    assert_eq!(r.requests.completed, r.requests.arrived, "{:?}", r.requests);
    assert_eq!(
        src.ended, src.issued,
        "every request ended and was reported"
    );
    assert!(src.stopped.iter().all(|&s| s));
    // Each cycle is think + service + what the live run adds: the query's
    // hold overhead (round trip, pg_sleep's overshoot), the wait for a
    // connection, and the think timer's lateness, all measured.
    let wait = r.acquire_wait_served_mean_ms / 1e3;
    let hold = rep.hold_overhead_ms.mean / 1e3;
    let think_late = (cl.think_ms.mean / 1e3 - z).max(0.0);
    let overhead = wait + hold + think_late;
    let ideal = f64::from(n) / (z + s);
    let predicted = f64::from(n) / (z + s + overhead);
    let measured = rate_between(&src.ends, 1.0, 3.5);
    eprintln!(
        "closed loop N={n} Z={}ms S={}ms: ideal {ideal:.1}/s, predicted with overhead {:.2}ms {predicted:.1}/s, measured {measured:.1}/s; think {:?}, hold overhead {:?}",
        ms(z),
        ms(s),
        ms(overhead),
        cl.think_ms,
        rep.hold_overhead_ms
    );
    // The overhead is a few ms at most on this machine; the prediction
    // holds within 5% (the window's edges cut at most one cycle a client:
    // 8 requests of ~300).
    assert!(overhead < 0.010, "overhead {overhead}");
    assert!(
        (measured - predicted).abs() / predicted < 0.05,
        "measured {measured:.1}/s vs predicted {predicted:.1}/s"
    );
    // A closed loop never beats its ideal: the next request waits for the
    // previous one's end.
    assert!(measured <= ideal * 1.01, "{measured} > {ideal}");
    // The think time is measured on the live clock from the end: at least Z.
    assert_eq!(cl.think_ms.count, r.requests.arrived - u64::from(n));
    assert!(cl.think_ms.p50 >= ms(z) - 0.5, "{:?}", cl.think_ms);
    // Clients get fair shares: every client ran about as many requests.
    let (lo, hi) = (
        *src.issued.iter().min().unwrap(),
        *src.issued.iter().max().unwrap(),
    );
    assert!(lo * 10 >= hi * 9, "per client {:?}", src.issued);
    assert_no_backends_left(&pg);
}

#[test]
fn a_pool_of_one_throttles_a_closed_loop_without_timeouts() {
    let Some(pg) = PgCluster::start("closed_loop_pool_of_one") else {
        return;
    };
    let (n, z, s) = (6u32, 0.010, 0.030);
    let mut src = Clients::new(
        n,
        SimDuration::from_millis(30),
        Think::Constant(SimDuration::from_millis(10)),
    );
    src.until = SimTime(4_000_000_000);
    // One connection; the acquire timeout (1 s) exceeds N*S (180 ms): the
    // closed loop throttles itself, so nothing times out. (Open, these
    // clients would offer N/(Z+S) = 150/s to a pool serving ~33/s.)
    let (r, rep) = run_live(&pg, &fixed_pool(1, "1s", ""), &mut src, never());
    assert_eq!(r.requests.timed_out, 0, "{:?}", r.requests);
    assert_eq!(r.requests.rejected, 0);
    assert_eq!(r.requests.completed, r.requests.arrived);
    assert_eq!(r.requests.arrived, src.total_issued());
    assert_eq!(r.pool.connections_opened, 1);
    let cl = rep.closed_loop.as_ref().unwrap();
    assert_eq!((cl.clients, cl.stopped), (n, n));

    // One query at a time: the ends (sorted) are at least a service apart.
    let mut ends: Vec<SimTime> = src.ends.iter().map(|e| e.2).collect();
    ends.sort();
    let min_gap = ends.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    assert!(
        min_gap >= SimDuration::from_millis(29),
        "two queries overlapped: ends {min_gap:?} apart"
    );
    // The connection is the bottleneck: throughput is 1/(S + hold overhead).
    let hold = rep.hold_overhead_ms.mean / 1e3;
    let predicted = 1.0 / (s + hold);
    let measured = rate_between(&src.ends, 1.0, 3.5);
    // Little's law for the loop: N = X (R + Z), so a request's response
    // time is about N/X - Z (queueing behind the other clients).
    let response = r.response_ms.mean / 1e3;
    let little = f64::from(n) / measured - z;
    eprintln!(
        "pool of 1, N={n} Z={}ms S={}ms: predicted {predicted:.1}/s (hold overhead {:.2}ms), measured {measured:.1}/s; response {:.1}ms vs N/X-Z {:.1}ms; min gap {min_gap:?}",
        ms(z),
        ms(s),
        ms(hold),
        ms(response),
        ms(little)
    );
    assert!(
        (measured - predicted).abs() / predicted < 0.05,
        "measured {measured:.1}/s vs predicted {predicted:.1}/s"
    );
    assert!(measured <= 1.0 / s * 1.01);
    assert!(
        (response - little).abs() / little < 0.10,
        "response {response} vs Little {little}"
    );
    assert_no_backends_left(&pg);
}

#[test]
fn closed_loop_clients_alternate_through_timeouts_and_rejections() {
    let Some(pg) = PgCluster::start("closed_loop_alternate") else {
        return;
    };
    let n = 6u32;
    let k = 25u64;
    let mut src = Clients::new(
        n,
        SimDuration::from_millis(15),
        Think::Exp(
            SimDuration::from_millis(10),
            Box::new(SeedTree::new(11).stream("think")),
        ),
    );
    src.per_client = Some(k);
    // One connection, room for two waiters, a 25 ms acquire timeout: many
    // requests are refused or time out, and their clients go on.
    let policy = fixed_pool(1, "25ms", "[queue]\nmax_waiters = 2\n");
    let (r, rep) = run_live(&pg, &policy, &mut src, never());
    let q = r.requests;
    eprintln!(
        "alternate: {q:?}; per client {:?}; think drawn mean {:.2}ms, measured {:?}",
        src.issued,
        src.thinks.iter().map(|t| t.as_secs_f64()).sum::<f64>() * 1e3 / src.thinks.len() as f64,
        rep.closed_loop.as_ref().unwrap().think_ms
    );
    // Every client ran exactly k requests, one at a time (the source saw
    // each end exactly once, for the request in flight), and all of them
    // are in the summary.
    assert!(src.issued.iter().all(|&i| i == k), "{:?}", src.issued);
    assert_eq!(src.ended, src.issued);
    assert_eq!(q.arrived, u64::from(n) * k);
    assert_eq!(q.completed + q.timed_out + q.rejected + q.failed, q.arrived);
    assert_eq!(q.in_flight_at_end, 0);
    assert!(
        q.completed > 0 && q.timed_out > 0 && q.rejected > 0,
        "{q:?}"
    );
    let cl = rep.closed_loop.as_ref().unwrap();
    assert_eq!((cl.clients, cl.stopped), (n, n));
    // Per client, the requests alternate: each arrives after the previous
    // one ended (by at least the think drawn, here only checked >= 0 on the
    // source's side; the live clock's side is `think_ms`).
    for c in 0..n {
        let mine: Vec<_> = src.ends.iter().filter(|e| e.0 == c).collect();
        for w in mine.windows(2) {
            assert!(
                w[1].1 >= w[0].2,
                "client {c}: {:?} overlaps {:?}",
                w[1],
                w[0]
            );
        }
    }
    // The think measured on the live clock is the think drawn plus the
    // timer's lateness (~1 ms).
    let drawn = src.thinks.iter().map(|t| t.as_secs_f64()).sum::<f64>() / src.thinks.len() as f64;
    assert_eq!(cl.think_ms.count, src.thinks.len() as u64);
    let lag = cl.think_ms.mean / 1e3 - drawn;
    assert!((0.0..0.003).contains(&lag), "think lag {lag}");
    assert_no_backends_left(&pg);
}

#[test]
fn stopping_a_closed_loop_starts_nothing_more_and_closes_every_connection() {
    let Some(pg) = PgCluster::start("closed_loop_stop") else {
        return;
    };
    let n = 4u32;
    let mut src = Clients::new(
        n,
        SimDuration::from_millis(300),
        Think::Constant(SimDuration::from_millis(20)),
    );
    // Endless clients: only the stop ends the run.
    let stop = Box::pin(async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
    });
    let (r, rep) = run_live(&pg, &fixed_pool(n, "2s", ""), &mut src, stop);
    assert!(rep.interrupted);
    let cl = rep.closed_loop.as_ref().unwrap();
    eprintln!(
        "stopped: {:?}; {cl:?}; cancelled {}",
        r.requests, rep.queries_cancelled
    );
    // Nobody stopped by itself; every client is either thinking or has its
    // request in flight, and nothing was sent after the stop.
    assert_eq!(cl.clients, n);
    assert_eq!(cl.stopped, 0);
    assert_eq!(cl.thinking_at_end + cl.in_flight_at_end, n);
    assert_eq!(u64::from(cl.in_flight_at_end), r.requests.in_flight_at_end);
    // A thinking client's next request was made but never sent.
    assert_eq!(
        r.requests.arrived + u64::from(cl.thinking_at_end),
        src.total_issued()
    );
    assert!(r.requests.in_flight_at_end > 0, "{:?}", r.requests);
    // The source heard of no end after the stop (~1 s).
    assert!(
        src.ends.iter().all(|e| e.2 <= SimTime(1_200_000_000)),
        "{:?}",
        src.ends.last()
    );
    // The requests in flight: each client's last one, never reported.
    let unreported: u64 = src.issued.iter().zip(&src.ended).map(|(i, e)| i - e).sum();
    assert_eq!(
        unreported,
        u64::from(cl.in_flight_at_end) + u64::from(cl.thinking_at_end)
    );
    assert_eq!(rep.queries_cancelled, u64::from(cl.in_flight_at_end));
    assert_no_backends_left(&pg);
    assert_eq!(our_backends(&pg), 0);
}

const CLOSED_WORKLOAD: &str = r#"
name = "closed-live"
duration = "3s"
[arrivals]
kind = "closed_loop"
clients = 6
think = { kind = "constant", value = "30ms" }
[service]
kind = "constant"
value = "20ms"
"#;

#[test]
fn live_run_of_a_closed_loop_workload_reports_its_clients() {
    let Some(pg) = PgCluster::start("live_run_closed_loop_workload") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let trace = write(dir.path(), "w.toml", CLOSED_WORKLOAD);
    let policy = write(dir.path(), "p.toml", &fixed_pool(6, "1s", ""));
    let out = dir.path().join("out");
    let run = crate::pg_harness::pooltune()
        .current_dir(dir.path())
        .args(["live", "run", "--format", "json", "--seed", "5"])
        .args(["--trace", &trace, "--policy", &policy])
        .arg("--database-url")
        .arg(pg.url())
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let summary: pooltune::summary::Summary =
        serde_json::from_slice(&run.get_output().stdout).unwrap();
    let text = std::fs::read_to_string(out.join("live.json")).unwrap();
    let report: live::LiveReport = serde_json::from_str(&text).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &summary.runs[0];
    assert_conserved(r);
    let cl = report.closed_loop.as_ref().expect("a closed loop");
    assert_eq!(json["closed_loop"]["clients"], 6, "{text}");
    // Drained: every client stopped by itself (its next request would have
    // been past the duration).
    assert_eq!((cl.clients, cl.stopped), (6, 6), "{cl:?}");
    assert_eq!(r.requests.completed, r.requests.arrived);
    // 6 clients cycling through 30 ms of think and 20 ms of service (plus
    // the measured hold overhead and timer lag) for 3 s.
    let cycle =
        0.030 + 0.020 + report.hold_overhead_ms.mean / 1e3 + (cl.think_ms.mean / 1e3 - 0.030);
    let expected = 6.0 * 3.0 / cycle;
    let arrived = r.requests.arrived as f64;
    eprintln!(
        "closed-loop workload: {} requests, expected ~{expected:.0} (cycle {:.2} ms)",
        r.requests.arrived,
        cycle * 1e3
    );
    // Each client's last cycle may be cut by the duration: +- 1 a client.
    assert!(
        (arrived - expected).abs() <= 6.0 + expected * 0.03,
        "{arrived} vs {expected}"
    );
    assert_no_backends_left(&pg);
}
