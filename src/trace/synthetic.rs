//! Synthetic workloads: Poisson arrivals, a service-time distribution, and
//! priority and kind mixes.
//!
//! Arrivals, service times, priorities and kinds each draw from their own
//! named stream of the seed tree, so every policy compared under one seed
//! sees exactly the same requests (common random numbers).

use rand::Rng;
use rand_distr::{Distribution, Exp1};
use serde::Serialize;

use super::RequestSource;
use crate::core::request::{Kind, Priority, Request};
use crate::dist::{DurationDist, Sampler};
use crate::rng::{SeedTree, Stream};
use crate::time::{SimDuration, SimTime, NANOS_PER_S};

/// Validated synthetic workload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyntheticSpec {
    /// Poisson arrival rate (requests per second, > 0).
    pub rate_per_s: f64,
    pub service: DurationDist,
    /// Probabilities of high, normal, low priority (sum 1).
    pub priority_mix: [f64; 3],
    /// Probability that a request is a write.
    pub write_fraction: f64,
    /// Arrivals stop after this time (if set).
    pub duration: Option<SimDuration>,
    /// Arrivals stop after this many requests (if set).
    pub max_requests: Option<u64>,
}

/// The generator: a cursor over an infinite Poisson stream, cut by
/// `duration` and/or `max_requests`.
pub struct Synthetic {
    mean_gap_ns: f64,
    t_ns: f64,
    horizon: SimTime,
    remaining: u64,
    service: Sampler,
    cum_mix: [f64; 2],
    write_fraction: f64,
    arrivals: Stream,
    service_rng: Stream,
    priority_rng: Stream,
    kind_rng: Stream,
}

impl Synthetic {
    pub fn new(spec: &SyntheticSpec, seeds: &SeedTree) -> Self {
        Synthetic {
            mean_gap_ns: NANOS_PER_S as f64 / spec.rate_per_s,
            t_ns: 0.0,
            horizon: spec
                .duration
                .map(|d| SimTime(d.0))
                .unwrap_or(SimTime::NEVER),
            remaining: spec.max_requests.unwrap_or(u64::MAX),
            service: spec.service.sampler(),
            cum_mix: [
                spec.priority_mix[0],
                spec.priority_mix[0] + spec.priority_mix[1],
            ],
            write_fraction: spec.write_fraction,
            arrivals: seeds.stream("arrivals"),
            service_rng: seeds.stream("service"),
            priority_rng: seeds.stream("priority"),
            kind_rng: seeds.stream("kind"),
        }
    }
}

impl RequestSource for Synthetic {
    #[inline]
    fn next_request(&mut self) -> Option<Request> {
        if self.remaining == 0 {
            return None;
        }
        let gap: f64 = Exp1.sample(&mut self.arrivals);
        // Accumulate in float nanoseconds and round each arrival, so rounding
        // does not bias the rate.
        self.t_ns += gap * self.mean_gap_ns;
        let arrival = SimTime(SimDuration::from_nanos_f64(self.t_ns).0);
        if arrival > self.horizon {
            self.remaining = 0;
            return None;
        }
        self.remaining -= 1;
        let service = self.service.sample(&mut self.service_rng);
        let (priority, kind) = draw_class(
            self.cum_mix,
            self.write_fraction,
            &mut self.priority_rng,
            &mut self.kind_rng,
        );
        Some(Request {
            arrival,
            service,
            priority,
            kind,
            client: 0,
        })
    }
}

/// Draws a request's priority (from the cumulative mix high, high+normal)
/// and kind, each from its own stream, in that order. Shared by every
/// generator so their mixes draw identically.
#[inline]
pub(crate) fn draw_class(
    cum_mix: [f64; 2],
    write_fraction: f64,
    priority_rng: &mut Stream,
    kind_rng: &mut Stream,
) -> (Priority, Kind) {
    let u: f64 = priority_rng.random();
    let priority = if u < cum_mix[0] {
        Priority::High
    } else if u < cum_mix[1] {
        Priority::Normal
    } else {
        Priority::Low
    };
    let kind = if write_fraction > 0.0 && kind_rng.random::<f64>() < write_fraction {
        Kind::Write
    } else {
        Kind::Read
    };
    (priority, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SyntheticSpec {
        SyntheticSpec {
            rate_per_s: 1000.0,
            service: DurationDist::Exponential { mean_ns: 5e6 },
            priority_mix: [0.1, 0.7, 0.2],
            write_fraction: 0.25,
            duration: Some(SimDuration::from_secs(100)),
            max_requests: None,
        }
    }

    #[test]
    fn poisson_rate_mix_and_order() {
        let mut g = Synthetic::new(&spec(), &SeedTree::new(1));
        let mut n = 0u64;
        let mut last = SimTime::ZERO;
        let mut prio = [0u64; 3];
        let mut writes = 0u64;
        while let Some(r) = g.next_request() {
            assert!(r.arrival >= last, "arrivals are sorted");
            assert!(r.arrival <= SimTime(100 * NANOS_PER_S));
            last = r.arrival;
            prio[r.priority.index()] += 1;
            writes += (r.kind == Kind::Write) as u64;
            n += 1;
        }
        // 100k expected; Poisson sd = 316.
        assert!((n as f64 - 100_000.0).abs() < 1500.0, "n = {n}");
        let f = |k: u64| k as f64 / n as f64;
        assert!((f(prio[0]) - 0.1).abs() < 0.01 && (f(prio[2]) - 0.2).abs() < 0.01);
        assert!((f(writes) - 0.25).abs() < 0.01);
    }

    #[test]
    fn max_requests_cuts_the_stream() {
        let mut s = spec();
        s.duration = None;
        s.max_requests = Some(1234);
        let mut g = Synthetic::new(&s, &SeedTree::new(1));
        let mut n = 0;
        while g.next_request().is_some() {
            n += 1;
        }
        assert_eq!(n, 1234);
    }

    #[test]
    fn same_seed_same_requests_other_seed_other_requests() {
        let take = |seed| {
            let mut g = Synthetic::new(&spec(), &SeedTree::new(seed));
            (0..100)
                .map(|_| g.next_request().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(take(5), take(5));
        assert_ne!(take(5), take(6));
    }
}
