//! Scenario assertions: properties of a topology run checked at its end
//! (like the temporal-dsql pool simulator's), reported in `summary.json`
//! and usable as a gate by `pooltune check`.
//!
//! Every per-second quantity is counted over whole seconds of simulated
//! time (second k = [k s, k+1 s)).

use serde::Serialize;

use crate::core::metrics::ClassMetrics;
use crate::core::request::Priority;
use crate::sim::topology::{AppPool, FleetOutcome, ServerOutcome, ServiceOutcome, Topology};
use crate::time::{SimDuration, SimTime};

/// Which servers or services an assertion looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every server (or service), each on its own.
    All,
    /// One, by index into the topology's list (the name is kept for
    /// messages).
    One { index: usize, name: String },
}

/// One `[[assert]]` entry, validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Assertion {
    /// Connect attempts reaching a server (accepted or refused) in any one
    /// second are at most `max`.
    MaxConnectsPerS { server: Scope, max: u32 },
    /// Backends closed on a server in any one second are at most `max`
    /// (a thundering herd of retirements or a mass reconnect).
    MaxClosesPerS { server: Scope, max: u32 },
    /// Connects refused by a server (every reason) over the run are at
    /// most `max`.
    MaxRefusals { server: Scope, max: u64 },
    /// Every pool of the service reaches its target within `within` of
    /// its instance starting (cold start or replacement).
    ConvergeWithin { service: Scope, within: SimDuration },
    /// Once converged, every pool of the service keeps its size at its
    /// target for at least `for_` (or until it stops or the run ends).
    StableFor { service: Scope, for_: SimDuration },
    /// The service's requests of `priority` (all if None) that timed out,
    /// as a fraction of those that arrived, are at most `max`.
    MaxTimeoutRate {
        service: Scope,
        priority: Option<Priority>,
        max: f64,
    },
    /// The service's p99 acquire wait (end to end, from first arrival) for
    /// `priority` (all if None) is at most `max`.
    MaxP99Wait {
        service: Scope,
        priority: Option<Priority>,
        max: SimDuration,
    },
    /// Requests the service lost (failed + unrouted) are at most `max`.
    MaxLost { service: Scope, max: u64 },
}

/// An assertion's verdict, as `summary.json` reports it.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct AssertionResult {
    /// `kind` as written in the scenario file (`max_connects_per_s`...).
    pub kind: String,
    /// What it looked at: a server or service name (one row per server or
    /// service when the scope is all of them).
    pub subject: String,
    /// The bound, in the unit the kind implies (count, per second,
    /// fraction, milliseconds, seconds).
    pub limit: f64,
    /// What the run showed, same unit (`null` when it never happened, for
    /// example a pool that never converged).
    pub observed: Option<f64>,
    pub passed: bool,
    /// One line a human reads: what failed, when.
    pub detail: String,
}

// ---------------------------------------------------------------------------
// Evaluation.

impl Assertion {
    /// The kind as written in the scenario file.
    pub fn kind(&self) -> &'static str {
        match self {
            Assertion::MaxConnectsPerS { .. } => "max_connects_per_s",
            Assertion::MaxClosesPerS { .. } => "max_closes_per_s",
            Assertion::MaxRefusals { .. } => "max_refusals",
            Assertion::ConvergeWithin { .. } => "converge_within",
            Assertion::StableFor { .. } => "stable_for",
            Assertion::MaxTimeoutRate { .. } => "max_timeout_rate",
            Assertion::MaxP99Wait { .. } => "max_p99_wait",
            Assertion::MaxLost { .. } => "max_lost",
        }
    }
}

/// Connects a server refused over the run, every reason: at
/// max_connections, while down, and by its connects-per-second limit (the
/// same count as the time series' `db_refused`; a connect that fails, the
/// connect_failures fault, is an error, not a refusal).
pub fn server_refusals(s: &ServerOutcome) -> u64 {
    s.stats.refused + s.stats.refused_down + s.refused_rate
}

/// The whole seconds of a per-second series that lie within the run
/// (second k counts when k+1 s <= the end). The last, partial second is
/// left out: it holds the closes of every connection still open when the
/// run ends (and at most a second's drain), not the fleet's behaviour.
pub fn within_run(series: &[u32], end: SimTime) -> &[u32] {
    let seconds = (end.as_nanos() / crate::time::NANOS_PER_S) as usize;
    &series[..series.len().min(seconds)]
}

/// The largest per-second count and the first second it happened in.
fn peak(series: &[u32]) -> (u32, usize) {
    let mut best = (0, 0);
    for (k, &n) in series.iter().enumerate() {
        if n > best.0 {
            best = (n, k);
        }
    }
    best
}

/// Indices of the subjects a scope covers, with their names.
fn subjects<'a>(scope: &'a Scope, names: &'a [&'a str]) -> Vec<(Option<usize>, String)> {
    match scope {
        Scope::All => names
            .iter()
            .enumerate()
            .map(|(i, n)| (Some(i), n.to_string()))
            .collect(),
        Scope::One { index, name } => {
            vec![((*index < names.len()).then_some(*index), name.clone())]
        }
    }
}

fn result(
    kind: &str,
    subject: String,
    limit: f64,
    observed: Option<f64>,
    passed: bool,
    detail: String,
) -> AssertionResult {
    AssertionResult {
        kind: kind.to_string(),
        subject,
        limit,
        observed,
        passed,
        detail,
    }
}

/// A pool as a human names it.
fn pool_name(p: &AppPool, servers: &[ServerOutcome]) -> String {
    let server = servers
        .get(p.server)
        .map(|s| s.name.as_str())
        .unwrap_or("?");
    format!(
        "instance {} (generation {}) pool on {server}",
        p.instance, p.generation
    )
}

fn secs(t: SimTime) -> String {
    format!("{:.3} s", t.as_secs_f64())
}

/// The service's requests of one priority, or all together.
fn class(s: &ServiceOutcome, priority: Option<Priority>) -> ClassMetrics {
    match priority {
        Some(p) => s.requests.classes[p.index()].clone(),
        None => {
            let mut all = ClassMetrics::default();
            for m in &s.requests.classes {
                all.merge(m);
            }
            all
        }
    }
}

fn priority_label(p: Option<Priority>) -> &'static str {
    match p {
        None => "all priorities",
        Some(Priority::High) => "priority high",
        Some(Priority::Normal) => "priority normal",
        Some(Priority::Low) => "priority low",
    }
}

/// Checks every assertion against a finished run; one result per subject
/// (every server or service for `Scope::All`), in assertion order.
pub fn evaluate(
    assertions: &[Assertion],
    topology: &Topology,
    outcome: &FleetOutcome,
) -> Vec<AssertionResult> {
    // Names come from the outcome (they match the topology's); the
    // topology is the fallback for a subject the outcome lacks.
    let server_names: Vec<&str> = if outcome.servers.is_empty() {
        topology.servers.iter().map(|s| s.name.as_str()).collect()
    } else {
        outcome.servers.iter().map(|s| s.name.as_str()).collect()
    };
    let service_names: Vec<&str> = if outcome.services.is_empty() {
        topology.services.iter().map(|s| s.name.as_str()).collect()
    } else {
        outcome.services.iter().map(|s| s.name.as_str()).collect()
    };
    let mut out = Vec::new();
    for a in assertions {
        let kind = a.kind();
        match a {
            Assertion::MaxConnectsPerS { server, max }
            | Assertion::MaxClosesPerS { server, max } => {
                let closes = matches!(a, Assertion::MaxClosesPerS { .. });
                let what = if closes { "closes" } else { "connects" };
                for (i, name) in subjects(server, &server_names) {
                    let Some(s) = i.and_then(|i| outcome.servers.get(i)) else {
                        out.push(missing(kind, name, *max as f64, "server"));
                        continue;
                    };
                    let series = within_run(
                        if closes {
                            &s.series.closes
                        } else {
                            &s.series.connects
                        },
                        outcome.end,
                    );
                    let (n, k) = peak(series);
                    let over = series.iter().filter(|&&c| c > *max).count();
                    let passed = over == 0;
                    let detail = if passed {
                        format!("peak {n} {what}/s (second {k}), limit {max}")
                    } else {
                        format!(
                            "{n} {what} in second {k} ({k} s to {} s), limit {max}; {over} second{} over the limit",
                            k + 1,
                            if over == 1 { "" } else { "s" }
                        )
                    };
                    out.push(result(
                        kind,
                        name,
                        *max as f64,
                        Some(n as f64),
                        passed,
                        detail,
                    ));
                }
            }
            Assertion::MaxRefusals { server, max } => {
                for (i, name) in subjects(server, &server_names) {
                    let Some(s) = i.and_then(|i| outcome.servers.get(i)) else {
                        out.push(missing(kind, name, *max as f64, "server"));
                        continue;
                    };
                    let n = server_refusals(s);
                    let passed = n <= *max;
                    let detail = format!(
                        "{n} connects refused ({} by the rate limit), limit {max}",
                        s.refused_rate
                    );
                    out.push(result(
                        kind,
                        name,
                        *max as f64,
                        Some(n as f64),
                        passed,
                        detail,
                    ));
                }
            }
            Assertion::ConvergeWithin { service, within } => {
                let limit = within.as_secs_f64();
                for (i, name) in subjects(service, &service_names) {
                    let Some(s) = i.and_then(|i| outcome.services.get(i)) else {
                        out.push(missing(kind, name, limit, "service"));
                        continue;
                    };
                    out.push(converge(kind, name, s, *within, &outcome.servers));
                }
            }
            Assertion::StableFor { service, for_ } => {
                let limit = for_.as_secs_f64();
                for (i, name) in subjects(service, &service_names) {
                    let Some(s) = i.and_then(|i| outcome.services.get(i)) else {
                        out.push(missing(kind, name, limit, "service"));
                        continue;
                    };
                    out.push(stable(kind, name, s, *for_, outcome.end, &outcome.servers));
                }
            }
            Assertion::MaxTimeoutRate {
                service,
                priority,
                max,
            } => {
                for (i, name) in subjects(service, &service_names) {
                    let subject = with_priority(&name, *priority);
                    let Some(s) = i.and_then(|i| outcome.services.get(i)) else {
                        out.push(missing(kind, subject, *max, "service"));
                        continue;
                    };
                    let m = class(s, *priority);
                    let rate = if m.arrived == 0 {
                        0.0
                    } else {
                        m.timed_out as f64 / m.arrived as f64
                    };
                    let passed = rate <= *max;
                    let detail = format!(
                        "{} of {} requests ({}) timed out ({:.4} %), limit {:.4} %",
                        m.timed_out,
                        m.arrived,
                        priority_label(*priority),
                        rate * 100.0,
                        max * 100.0
                    );
                    out.push(result(kind, subject, *max, Some(rate), passed, detail));
                }
            }
            Assertion::MaxP99Wait {
                service,
                priority,
                max,
            } => {
                let limit = max.as_millis_f64();
                for (i, name) in subjects(service, &service_names) {
                    let subject = with_priority(&name, *priority);
                    let Some(s) = i.and_then(|i| outcome.services.get(i)) else {
                        out.push(missing(kind, subject, limit, "service"));
                        continue;
                    };
                    let m = class(s, *priority);
                    if m.wait.count() == 0 {
                        out.push(result(
                            kind,
                            subject,
                            limit,
                            None,
                            true,
                            format!("no request ({}) left the queue", priority_label(*priority)),
                        ));
                        continue;
                    }
                    let p99 = m.wait.quantile_ns(0.99) as f64 / 1e6;
                    let passed = p99 <= limit;
                    let detail = format!(
                        "p99 acquire wait {p99:.3} ms over {} requests ({}), limit {limit:.3} ms",
                        m.wait.count(),
                        priority_label(*priority)
                    );
                    out.push(result(kind, subject, limit, Some(p99), passed, detail));
                }
            }
            Assertion::MaxLost { service, max } => {
                for (i, name) in subjects(service, &service_names) {
                    let Some(s) = i.and_then(|i| outcome.services.get(i)) else {
                        out.push(missing(kind, name, *max as f64, "service"));
                        continue;
                    };
                    let failed: u64 = s.requests.classes.iter().map(|m| m.failed).sum();
                    let lost = failed + s.requests.unrouted;
                    let passed = lost <= *max;
                    let detail = format!(
                        "{lost} requests lost ({failed} failed, {} unrouted), limit {max}",
                        s.requests.unrouted
                    );
                    out.push(result(
                        kind,
                        name,
                        *max as f64,
                        Some(lost as f64),
                        passed,
                        detail,
                    ));
                }
            }
        }
    }
    out
}

fn with_priority(name: &str, p: Option<Priority>) -> String {
    match p {
        None => name.to_string(),
        Some(_) => format!("{name} ({})", priority_label(p)),
    }
}

/// A subject the outcome does not have (a scope index out of range: the
/// scenario and the run disagree).
fn missing(kind: &str, subject: String, limit: f64, what: &str) -> AssertionResult {
    let detail = format!("no {what} `{subject}` in the run");
    result(kind, subject, limit, None, false, detail)
}

fn converge(
    kind: &str,
    name: String,
    s: &ServiceOutcome,
    within: SimDuration,
    servers: &[ServerOutcome],
) -> AssertionResult {
    let limit = within.as_secs_f64();
    if s.pools.is_empty() {
        return result(
            kind,
            name,
            limit,
            None,
            false,
            "no pool of the service ever started".to_string(),
        );
    }
    // The slowest pool decides; a pool that never converged fails it.
    let mut worst: Option<(f64, &AppPool)> = None;
    let mut never: Vec<&AppPool> = Vec::new();
    let mut late = 0usize;
    for p in &s.pools {
        match p.converged {
            None => never.push(p),
            Some(c) => {
                let took = c.since(p.started);
                if took > within {
                    late += 1;
                }
                let took = took.as_secs_f64();
                if worst.is_none_or(|(w, _)| took > w) {
                    worst = Some((took, p));
                }
            }
        }
    }
    if let Some(p) = never.first() {
        let detail = format!(
            "{} of {} pools never reached their target; first: {} (started at {})",
            never.len(),
            s.pools.len(),
            pool_name(p, servers),
            secs(p.started)
        );
        return result(kind, name, limit, None, false, detail);
    }
    let (took, p) = worst.expect("at least one pool converged");
    let passed = late == 0;
    let detail = if passed {
        format!(
            "every pool ({}) reached its target within {took:.3} s of starting, limit {limit:.3} s",
            s.pools.len()
        )
    } else {
        format!(
            "{late} of {} pools took longer than {limit:.3} s; slowest: {} took {took:.3} s (started at {})",
            s.pools.len(),
            pool_name(p, servers),
            secs(p.started)
        )
    };
    result(kind, name, limit, Some(took), passed, detail)
}

fn stable(
    kind: &str,
    name: String,
    s: &ServiceOutcome,
    for_: SimDuration,
    end: SimTime,
    servers: &[ServerOutcome],
) -> AssertionResult {
    let limit = for_.as_secs_f64();
    if s.pools.is_empty() {
        return result(
            kind,
            name,
            limit,
            None,
            false,
            "no pool of the service ever started".to_string(),
        );
    }
    // Observed: the shortest time a pool held its target after
    // converging (until it deviated, stopped, or the run ended).
    let mut shortest: Option<(f64, &AppPool)> = None;
    let mut never: Vec<&AppPool> = Vec::new();
    let mut unstable: Vec<(&AppPool, SimTime, SimTime)> = Vec::new();
    for p in &s.pools {
        let Some(c) = p.converged else {
            never.push(p);
            continue;
        };
        let until = p.deviated.or(p.stopped).unwrap_or(end).max(c);
        if let Some(d) = p.deviated {
            if d.since(c) < for_ {
                unstable.push((p, c, d));
            }
        }
        let held = until.since(c).as_secs_f64();
        if shortest.is_none_or(|(h, _)| held < h) {
            shortest = Some((held, p));
        }
    }
    if let Some(p) = never.first() {
        let detail = format!(
            "{} of {} pools never reached their target, so were never stable; first: {} (started at {})",
            never.len(),
            s.pools.len(),
            pool_name(p, servers),
            secs(p.started)
        );
        return result(kind, name, limit, None, false, detail);
    }
    let (held, _) = shortest.expect("every pool converged");
    if let Some((p, c, d)) = unstable.first() {
        let detail = format!(
            "{} of {} pools left their target early; first: {} converged at {} and left it at {} ({:.3} s later), limit {limit:.3} s",
            unstable.len(),
            s.pools.len(),
            pool_name(p, servers),
            secs(*c),
            secs(*d),
            d.since(*c).as_secs_f64()
        );
        return result(kind, name, limit, Some(held), false, detail);
    }
    let detail = format!(
        "every pool ({}) held its target for {limit:.3} s or until it stopped or the run ended (shortest {held:.3} s)",
        s.pools.len()
    );
    result(kind, name, limit, Some(held), true, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::Lifecycle;
    use crate::core::policy::Fixed;
    use crate::core::pool::{Pool, PoolConfig};
    use crate::rng::SeedTree;
    use crate::sim::db::DbStats;
    use crate::sim::topology::{
        ReplicaSelection, Routing, ServerSeries, ServiceRequests, ServiceSeries,
    };

    fn topology() -> Topology {
        Topology {
            services: Vec::new(),
            bouncer: None,
            servers: Vec::new(),
            routing: Routing {
                reads_to_replicas: false,
                replica_selection: ReplicaSelection::RoundRobin,
                read_your_writes: false,
                ban_time: SimDuration::from_secs(1),
                read_retries: 0,
            },
            events: Vec::new(),
            faults: Vec::new(),
        }
    }

    fn s(x: f64) -> SimTime {
        SimTime(SimDuration::from_secs_f64(x).as_nanos())
    }

    fn pool(started: f64, converged: Option<f64>, deviated: Option<f64>) -> AppPool {
        let cfg = PoolConfig {
            min: 0,
            max: 4,
            initial: 4,
            acquire_timeout: [SimDuration::from_secs(1); 3],
            max_waiters: 100,
            lifecycle: Lifecycle::default(),
        };
        AppPool {
            service: 0,
            instance: 2,
            generation: 1,
            server: 0,
            started: s(started),
            stopped: None,
            converged: converged.map(s),
            deviated: deviated.map(s),
            pool: Pool::new(cfg, Box::new(Fixed), SeedTree::new(1).stream("pool")),
        }
    }

    fn server(
        name: &str,
        connects: Vec<u32>,
        closes: Vec<u32>,
        refused: Vec<u32>,
    ) -> ServerOutcome {
        // Refusals: the first second's at max_connections, the rest by
        // the rate limit.
        let first = refused.first().copied().unwrap_or(0) as u64;
        let all: u64 = refused.iter().map(|&n| n as u64).sum();
        ServerOutcome {
            name: name.to_string(),
            replica: name != "primary",
            stats: DbStats {
                refused: first,
                ..DbStats::default()
            },
            refused_rate: all - first,
            queries: 0,
            bans: 0,
            series: ServerSeries {
                accepted: connects.clone(),
                connects,
                refused,
                closes,
                backends: Vec::new(),
            },
        }
    }

    fn service(name: &str, pools: Vec<AppPool>, requests: ServiceRequests) -> ServiceOutcome {
        ServiceOutcome {
            name: name.to_string(),
            requests,
            pools,
            series: ServiceSeries::default(),
            starts: Vec::new(),
        }
    }

    fn outcome(services: Vec<ServiceOutcome>, servers: Vec<ServerOutcome>) -> FleetOutcome {
        FleetOutcome {
            end: s(60.0),
            events: 0,
            seed: 1,
            services,
            servers,
            bouncer: None,
            faults: Vec::new(),
        }
    }

    fn one(index: usize, name: &str) -> Scope {
        Scope::One {
            index,
            name: name.to_string(),
        }
    }

    fn eval(a: Assertion, o: &FleetOutcome) -> Vec<AssertionResult> {
        evaluate(&[a], &topology(), o)
    }

    #[test]
    fn connects_per_second_one_result_per_server_for_all() {
        let o = outcome(
            Vec::new(),
            vec![
                server("primary", vec![3, 120, 7], vec![], vec![]),
                server("replica-1", vec![100, 100], vec![], vec![]),
            ],
        );
        let r = eval(
            Assertion::MaxConnectsPerS {
                server: Scope::All,
                max: 100,
            },
            &o,
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].subject, "primary");
        assert_eq!(r[0].kind, "max_connects_per_s");
        assert_eq!(r[0].observed, Some(120.0));
        assert!(!r[0].passed);
        assert!(r[0].detail.contains("second 1"), "{}", r[0].detail);
        // Exactly at the limit passes.
        assert_eq!(r[1].subject, "replica-1");
        assert_eq!(r[1].observed, Some(100.0));
        assert!(r[1].passed);
        // One scope: only that server.
        let r = eval(
            Assertion::MaxConnectsPerS {
                server: one(1, "replica-1"),
                max: 99,
            },
            &o,
        );
        assert_eq!(r.len(), 1);
        assert!(!r[0].passed);
        assert_eq!(r[0].limit, 99.0);
    }

    #[test]
    fn closes_per_second_and_refusals() {
        let o = outcome(
            Vec::new(),
            vec![server("primary", vec![], vec![0, 5, 40, 2], vec![1, 0, 2])],
        );
        let closes = |max| {
            eval(
                Assertion::MaxClosesPerS {
                    server: Scope::All,
                    max,
                },
                &o,
            )
            .remove(0)
        };
        assert!(closes(40).passed);
        let r = closes(39);
        assert!(!r.passed);
        assert_eq!(r.observed, Some(40.0));
        let refusals = |max| {
            eval(
                Assertion::MaxRefusals {
                    server: one(0, "primary"),
                    max,
                },
                &o,
            )
            .remove(0)
        };
        assert!(refusals(3).passed);
        let r = refusals(2);
        assert!(!r.passed);
        assert_eq!(r.observed, Some(3.0));
        // An empty series (no traffic) passes with 0.
        let quiet = outcome(Vec::new(), vec![server("primary", vec![], vec![], vec![])]);
        let r = eval(
            Assertion::MaxConnectsPerS {
                server: Scope::All,
                max: 0,
            },
            &quiet,
        );
        assert!(r[0].passed);
        assert_eq!(r[0].observed, Some(0.0));
    }

    #[test]
    fn converge_within_takes_the_slowest_pool_and_fails_a_pool_that_never_converged() {
        let conv = |pools, within: f64| {
            let o = outcome(
                vec![service("api", pools, ServiceRequests::default())],
                vec![server("primary", vec![], vec![], vec![])],
            );
            eval(
                Assertion::ConvergeWithin {
                    service: Scope::All,
                    within: SimDuration::from_secs_f64(within),
                },
                &o,
            )
            .remove(0)
        };
        let pools = || vec![pool(0.0, Some(1.0), None), pool(10.0, Some(12.5), None)];
        let r = conv(pools(), 2.5);
        assert!(r.passed, "{}", r.detail);
        assert_eq!(r.observed, Some(2.5));
        assert_eq!(r.limit, 2.5);
        let r = conv(pools(), 2.0);
        assert!(!r.passed);
        assert!(
            r.detail
                .contains("instance 2 (generation 1) pool on primary"),
            "{}",
            r.detail
        );
        let r = conv(
            vec![pool(0.0, Some(1.0), None), pool(5.0, None, None)],
            100.0,
        );
        assert!(!r.passed);
        assert_eq!(r.observed, None);
        assert!(r.detail.contains("never reached"), "{}", r.detail);
        let r = conv(Vec::new(), 1.0);
        assert!(!r.passed);
        assert_eq!(r.observed, None);
    }

    #[test]
    fn stable_for_fails_only_an_early_deviation() {
        let stab = |pools, for_: f64| {
            let o = outcome(
                vec![service("api", pools, ServiceRequests::default())],
                vec![server("primary", vec![], vec![], vec![])],
            );
            eval(
                Assertion::StableFor {
                    service: one(0, "api"),
                    for_: SimDuration::from_secs_f64(for_),
                },
                &o,
            )
            .remove(0)
        };
        // Never deviated: held until the end of the run (60 s).
        let r = stab(vec![pool(0.0, Some(2.0), None)], 30.0);
        assert!(r.passed, "{}", r.detail);
        assert_eq!(r.observed, Some(58.0));
        // Deviated 10 s after converging.
        let r = stab(
            vec![pool(0.0, Some(2.0), None), pool(0.0, Some(2.0), Some(12.0))],
            10.0,
        );
        assert!(r.passed, "{}", r.detail);
        assert_eq!(r.observed, Some(10.0));
        let r = stab(
            vec![pool(0.0, Some(2.0), None), pool(0.0, Some(2.0), Some(12.0))],
            10.5,
        );
        assert!(!r.passed);
        assert_eq!(r.observed, Some(10.0));
        assert!(r.detail.contains("left it at 12.000 s"), "{}", r.detail);
        // Stopped (restarted) soon after converging without deviating: fine.
        let mut p = pool(0.0, Some(2.0), None);
        p.stopped = Some(s(3.0));
        let r = stab(vec![p], 30.0);
        assert!(r.passed, "{}", r.detail);
        assert_eq!(r.observed, Some(1.0));
        // Never converged: never stable.
        let r = stab(vec![pool(0.0, None, None)], 1.0);
        assert!(!r.passed);
        assert_eq!(r.observed, None);
    }

    fn requests() -> ServiceRequests {
        let mut r = ServiceRequests::default();
        // High: 100 arrived, 2 timed out, waits of 1 ms (x98) and 50 ms (x2).
        let h = &mut r.classes[Priority::High.index()];
        h.arrived = 100;
        h.completed = 97;
        h.timed_out = 2;
        h.failed = 1;
        for _ in 0..98 {
            h.wait.record(SimDuration::from_millis(1));
        }
        for _ in 0..2 {
            h.wait.record(SimDuration::from_millis(50));
        }
        // Low: 100 arrived, 20 timed out.
        let l = &mut r.classes[Priority::Low.index()];
        l.arrived = 100;
        l.completed = 80;
        l.timed_out = 20;
        r.unrouted = 4;
        r
    }

    #[test]
    fn timeout_rate_by_priority_and_overall() {
        let o = outcome(vec![service("api", Vec::new(), requests())], Vec::new());
        let rate = |priority, max| {
            eval(
                Assertion::MaxTimeoutRate {
                    service: Scope::All,
                    priority,
                    max,
                },
                &o,
            )
            .remove(0)
        };
        let r = rate(Some(Priority::High), 0.02);
        assert!(r.passed, "{}", r.detail);
        assert_eq!(r.observed, Some(0.02));
        assert_eq!(r.subject, "api (priority high)");
        assert!(!rate(Some(Priority::Low), 0.1).passed);
        // All: 22 of 200.
        let r = rate(None, 0.1);
        assert!(!r.passed);
        assert_eq!(r.observed, Some(0.11));
        assert_eq!(r.subject, "api");
        // Nothing arrived at normal priority: rate 0.
        let r = rate(Some(Priority::Normal), 0.0);
        assert!(r.passed);
        assert_eq!(r.observed, Some(0.0));
    }

    #[test]
    fn p99_wait_in_milliseconds_and_null_without_requests() {
        let o = outcome(vec![service("api", Vec::new(), requests())], Vec::new());
        let p99 = |priority, ms| {
            eval(
                Assertion::MaxP99Wait {
                    service: Scope::All,
                    priority,
                    max: SimDuration::from_millis(ms),
                },
                &o,
            )
            .remove(0)
        };
        // 2 % of high waits are 50 ms: the p99 is one of them.
        let r = p99(Some(Priority::High), 60);
        assert!(r.passed, "{}", r.detail);
        let observed = r.observed.unwrap();
        assert!((observed - 50.0).abs() < 0.1, "{observed}");
        assert_eq!(r.limit, 60.0);
        assert!(!p99(Some(Priority::High), 10).passed);
        let r = p99(Some(Priority::Normal), 1);
        assert!(r.passed);
        assert_eq!(r.observed, None);
    }

    #[test]
    fn lost_counts_failed_and_unrouted() {
        let o = outcome(vec![service("api", Vec::new(), requests())], Vec::new());
        let lost = |max| {
            eval(
                Assertion::MaxLost {
                    service: Scope::All,
                    max,
                },
                &o,
            )
            .remove(0)
        };
        let r = lost(5);
        assert!(r.passed, "{}", r.detail);
        assert_eq!(r.observed, Some(5.0));
        assert!(!lost(4).passed);
    }

    #[test]
    fn a_scope_outside_the_run_fails_and_says_so() {
        let o = outcome(Vec::new(), Vec::new());
        let r = eval(
            Assertion::MaxLost {
                service: one(3, "ghost"),
                max: 0,
            },
            &o,
        );
        assert!(!r[0].passed);
        assert_eq!(r[0].detail, "no service `ghost` in the run");
        // Results keep the assertions' order.
        let r = evaluate(
            &[
                Assertion::MaxLost {
                    service: Scope::All,
                    max: 0,
                },
                Assertion::MaxRefusals {
                    server: Scope::All,
                    max: 0,
                },
            ],
            &topology(),
            &outcome(
                vec![service("a", Vec::new(), ServiceRequests::default())],
                vec![server("p", vec![], vec![], vec![])],
            ),
        );
        let kinds: Vec<&str> = r.iter().map(|x| x.kind.as_str()).collect();
        assert_eq!(kinds, ["max_lost", "max_refusals"]);
    }
}
