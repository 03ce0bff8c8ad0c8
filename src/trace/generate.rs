//! Synthetic generators beyond the stationary Poisson stream
//! ([`crate::trace::synthetic`]): a non-homogeneous Poisson process by
//! thinning (piecewise-linear or step rate profiles, a diurnal sinusoid,
//! flash-crowd spikes on a base rate), an on/off Markov-modulated Poisson
//! process, and closed-loop clients with think time. Service times come
//! from a [`ServiceDist`] (Pareto and empirical included); priorities and
//! kinds from mixes.
//!
//! Thinning (Lewis and Shedler) uses a piecewise-constant majorant: on each
//! segment of the profile a bound of the rate; a candidate drawn at the
//! bound's rate is kept with probability rate(t) / bound, and a candidate
//! past the segment's end restarts at the end (memorylessness), so steps
//! are exact and spikes cost no more than their own segments.
//!
//! Each random choice has its own stream of the seed tree (`arrivals`,
//! `arrivals-thin`, `arrivals-state`, `think`, `service`, `priority`,
//! `kind`): the same seed gives the same trace, byte for byte.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::Rng;
use rand_distr::{Distribution, Exp1};

use super::service::{ServiceDist, ServiceSampler};
use super::RequestSource;
use crate::core::request::Request;
use crate::rng::{SeedTree, Stream};
use crate::time::{SimDuration, SimTime, NANOS_PER_S};

/// One spike of a flash crowd: the rate climbs linearly from the base to
/// `peak_per_s` over `rise`, holds for `hold`, and falls back over `decay`.
#[derive(Clone, Debug, PartialEq)]
pub struct Spike {
    pub at_ns: u64,
    pub peak_per_s: f64,
    pub rise_ns: u64,
    pub hold_ns: u64,
    pub decay_ns: u64,
}

/// A time-varying arrival rate (requests per second).
#[derive(Clone, Debug, PartialEq)]
pub enum RateProfile {
    /// Linear between (time, rate) points; constant before the first and
    /// after the last; repeats every `period` if given.
    Piecewise {
        points: Vec<(u64, f64)>,
        period_ns: Option<u64>,
    },
    /// Constant from each (time, rate) step to the next; repeats every
    /// `period` if given. The rate before the first step is the first's.
    Steps {
        steps: Vec<(u64, f64)>,
        period_ns: Option<u64>,
    },
    /// mean * (1 + amplitude * cos(2 pi (t - peak) / period)).
    Diurnal {
        mean_per_s: f64,
        amplitude: f64,
        period_ns: u64,
        peak_ns: u64,
    },
    /// A base rate with spikes (they add up where they overlap).
    FlashCrowd { base_per_s: f64, spikes: Vec<Spike> },
}

impl RateProfile {
    /// The rate at `t` ns.
    pub fn rate(&self, t: u64) -> f64 {
        match self {
            RateProfile::Piecewise { points, period_ns } => {
                let t = period_ns.map_or(t, |p| t % p);
                let i = points.partition_point(|p| p.0 <= t);
                if i == 0 {
                    return points[0].1;
                }
                if i == points.len() {
                    return points[i - 1].1;
                }
                let (t0, r0) = points[i - 1];
                let (t1, r1) = points[i];
                r0 + (r1 - r0) * (t - t0) as f64 / (t1 - t0) as f64
            }
            RateProfile::Steps { steps, period_ns } => {
                let t = period_ns.map_or(t, |p| t % p);
                let i = steps.partition_point(|p| p.0 <= t);
                steps[i.saturating_sub(1)].1
            }
            RateProfile::Diurnal {
                mean_per_s,
                amplitude,
                period_ns,
                peak_ns,
            } => {
                let phase = (t as f64 - *peak_ns as f64) / *period_ns as f64;
                (mean_per_s * (1.0 + amplitude * (2.0 * std::f64::consts::PI * phase).cos()))
                    .max(0.0)
            }
            RateProfile::FlashCrowd { base_per_s, spikes } => {
                let mut r = *base_per_s;
                for s in spikes {
                    let extra = s.peak_per_s - base_per_s;
                    let rise_end = s.at_ns + s.rise_ns;
                    let hold_end = rise_end + s.hold_ns;
                    let end = hold_end + s.decay_ns;
                    if t < s.at_ns || t >= end {
                        continue;
                    }
                    let f = if t < rise_end {
                        (t - s.at_ns) as f64 / s.rise_ns.max(1) as f64
                    } else if t < hold_end {
                        1.0
                    } else {
                        1.0 - (t - hold_end) as f64 / s.decay_ns.max(1) as f64
                    };
                    r += extra * f;
                }
                r.max(0.0)
            }
        }
    }

    /// A bound of the rate on [t, end) and that end (`u64::MAX`: forever).
    pub fn majorant(&self, t: u64) -> (f64, u64) {
        match self {
            RateProfile::Piecewise { points, period_ns } => {
                let (base, tt) = match period_ns {
                    Some(p) => (t - t % p, t % p),
                    None => (0, t),
                };
                let i = points.partition_point(|p| p.0 <= tt);
                let (rate, end) = if i == 0 {
                    (points[0].1, points[0].0)
                } else if i == points.len() {
                    (points[i - 1].1, period_ns.unwrap_or(u64::MAX - base))
                } else {
                    (points[i - 1].1.max(points[i].1), points[i].0)
                };
                (rate, base.saturating_add(end))
            }
            RateProfile::Steps { steps, period_ns } => {
                let (base, tt) = match period_ns {
                    Some(p) => (t - t % p, t % p),
                    None => (0, t),
                };
                let i = steps.partition_point(|p| p.0 <= tt);
                let rate = steps[i.saturating_sub(1)].1;
                let end = if i < steps.len() {
                    steps[i].0
                } else {
                    period_ns.unwrap_or(u64::MAX - base)
                };
                (rate, base.saturating_add(end))
            }
            RateProfile::Diurnal {
                mean_per_s,
                amplitude,
                ..
            } => (mean_per_s * (1.0 + amplitude), u64::MAX),
            RateProfile::FlashCrowd { base_per_s, spikes } => {
                // Segment boundaries: every spike's start and end.
                let mut end = u64::MAX;
                let mut bound = *base_per_s;
                for s in spikes {
                    let stop = s.at_ns + s.rise_ns + s.hold_ns + s.decay_ns;
                    if t < s.at_ns {
                        end = end.min(s.at_ns);
                    } else if t < stop {
                        end = end.min(stop);
                        bound += (s.peak_per_s - base_per_s).max(0.0);
                    }
                }
                (bound, end)
            }
        }
    }

    /// Mean rate over [0, horizon) (numerically, for estimates and the
    /// Poisson-equivalent summary).
    pub fn mean_rate(&self, horizon_ns: u64) -> f64 {
        let n = 10_000u64;
        let step = (horizon_ns / n).max(1);
        (0..n).map(|i| self.rate(i * step + step / 2)).sum::<f64>() / n as f64
    }
}

/// How arrivals are generated.
#[derive(Clone, Debug, PartialEq)]
pub enum ArrivalProcess {
    Poisson {
        rate_per_s: f64,
    },
    Profile(RateProfile),
    /// On/off Markov-modulated Poisson: exponential sojourns with means
    /// `mean_on`/`mean_off`, Poisson at `rate_on`/`rate_off` within them.
    /// Starts on.
    Mmpp {
        rate_on: f64,
        rate_off: f64,
        mean_on_ns: f64,
        mean_off_ns: f64,
    },
    /// `clients` clients, each sending its next request one think time
    /// after its previous one would finish on an uncontended pool
    /// (arrival + service + think): the closed loop of pgbench without
    /// `-R`, as seen by a pool that never makes anyone wait.
    ClosedLoop {
        clients: u32,
        think: ServiceDist,
    },
}

impl ArrivalProcess {
    /// Long-run mean rate (per second), over `horizon` for profiles.
    pub fn mean_rate(&self, horizon_ns: u64, service_mean_ns: f64) -> f64 {
        match self {
            ArrivalProcess::Poisson { rate_per_s } => *rate_per_s,
            ArrivalProcess::Profile(p) => p.mean_rate(horizon_ns),
            ArrivalProcess::Mmpp {
                rate_on,
                rate_off,
                mean_on_ns,
                mean_off_ns,
            } => (rate_on * mean_on_ns + rate_off * mean_off_ns) / (mean_on_ns + mean_off_ns),
            ArrivalProcess::ClosedLoop { clients, think } => {
                *clients as f64 * NANOS_PER_S as f64 / (think.mean_ns() + service_mean_ns).max(1.0)
            }
        }
    }
}

/// A validated generated workload.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorSpec {
    pub arrivals: ArrivalProcess,
    pub service: ServiceDist,
    /// Probabilities of high, normal, low (sum 1).
    pub priority_mix: [f64; 3],
    pub write_fraction: f64,
    pub duration: Option<SimDuration>,
    pub max_requests: Option<u64>,
}

/// The generator: a cursor over the process, cut by duration and count.
pub struct Generator {
    arrivals: ArrivalProcess,
    t_ns: f64,
    horizon: SimTime,
    remaining: u64,
    service: ServiceSampler,
    think: Option<ServiceSampler>,
    cum_mix: [f64; 2],
    write_fraction: f64,
    arrivals_rng: Stream,
    thin_rng: Stream,
    state_rng: Stream,
    think_rng: Stream,
    service_rng: Stream,
    priority_rng: Stream,
    kind_rng: Stream,
    /// MMPP: whether on, and when the state ends.
    on: bool,
    state_end_ns: f64,
    /// Closed loop: (next arrival, client), and each client's drawn service.
    clients: BinaryHeap<Reverse<(u64, u32)>>,
    /// Closed loop: the service drawn with the last arrival.
    last_service: u64,
    /// Closed loop: the client of the last arrival.
    last_client: u32,
    /// Closed loop driven by the simulator (see [`RequestSource::close_loop`]):
    /// the heap holds only the clients' first requests.
    closed: bool,
}

impl Generator {
    pub fn new(spec: &GeneratorSpec, seeds: &SeedTree) -> Self {
        let mut g = Generator {
            arrivals: spec.arrivals.clone(),
            t_ns: 0.0,
            horizon: spec
                .duration
                .map(|d| SimTime(d.0))
                .unwrap_or(SimTime::NEVER),
            remaining: spec.max_requests.unwrap_or(u64::MAX),
            service: spec.service.sampler(),
            think: None,
            cum_mix: [
                spec.priority_mix[0],
                spec.priority_mix[0] + spec.priority_mix[1],
            ],
            write_fraction: spec.write_fraction,
            arrivals_rng: seeds.stream("arrivals"),
            thin_rng: seeds.stream("arrivals-thin"),
            state_rng: seeds.stream("arrivals-state"),
            think_rng: seeds.stream("think"),
            service_rng: seeds.stream("service"),
            priority_rng: seeds.stream("priority"),
            kind_rng: seeds.stream("kind"),
            on: true,
            state_end_ns: 0.0,
            clients: BinaryHeap::new(),
            last_service: 0,
            last_client: 0,
            closed: false,
        };
        match &spec.arrivals {
            ArrivalProcess::Mmpp { mean_on_ns, .. } => {
                let e: f64 = Exp1.sample(&mut g.state_rng);
                g.state_end_ns = e * mean_on_ns;
            }
            ArrivalProcess::ClosedLoop { clients, think } => {
                let think = think.sampler();
                for c in 0..*clients {
                    let first = think.sample(&mut g.think_rng).0;
                    g.clients.push(Reverse((first, c)));
                }
                g.think = Some(think);
            }
            _ => {}
        }
        g
    }

    /// The next arrival time in ns, or `None` when the process stops.
    fn next_arrival(&mut self) -> Option<u64> {
        match &self.arrivals {
            ArrivalProcess::Poisson { rate_per_s } => {
                let gap: f64 = Exp1.sample(&mut self.arrivals_rng);
                self.t_ns += gap * NANOS_PER_S as f64 / rate_per_s;
                Some(SimDuration::from_nanos_f64(self.t_ns).0)
            }
            ArrivalProcess::Profile(p) => loop {
                let t = SimDuration::from_nanos_f64(self.t_ns).0;
                if SimTime(t) > self.horizon {
                    return None;
                }
                let (bound, end) = p.majorant(t);
                if bound.is_nan() || bound <= 0.0 {
                    if end == u64::MAX {
                        return None;
                    }
                    self.t_ns = end as f64;
                    continue;
                }
                let gap: f64 = Exp1.sample(&mut self.arrivals_rng);
                let cand = self.t_ns + gap * NANOS_PER_S as f64 / bound;
                if cand >= end as f64 {
                    if end == u64::MAX {
                        return None;
                    }
                    self.t_ns = end as f64;
                    continue;
                }
                self.t_ns = cand;
                let c = SimDuration::from_nanos_f64(cand).0;
                let u: f64 = self.thin_rng.random();
                if u * bound <= p.rate(c) {
                    return Some(c);
                }
            },
            ArrivalProcess::Mmpp {
                rate_on,
                rate_off,
                mean_on_ns,
                mean_off_ns,
            } => loop {
                let rate = if self.on { *rate_on } else { *rate_off };
                let cand = if rate > 0.0 {
                    let gap: f64 = Exp1.sample(&mut self.arrivals_rng);
                    self.t_ns + gap * NANOS_PER_S as f64 / rate
                } else {
                    f64::INFINITY
                };
                if cand < self.state_end_ns {
                    self.t_ns = cand;
                    return Some(SimDuration::from_nanos_f64(cand).0);
                }
                self.t_ns = self.state_end_ns;
                if SimTime(SimDuration::from_nanos_f64(self.t_ns).0) > self.horizon {
                    return None;
                }
                self.on = !self.on;
                let e: f64 = Exp1.sample(&mut self.state_rng);
                self.state_end_ns += e * if self.on { mean_on_ns } else { mean_off_ns };
            },
            ArrivalProcess::ClosedLoop { .. } => {
                let Reverse((t, c)) = self.clients.pop()?;
                self.last_client = c;
                if self.closed {
                    // The client's next request comes from `finished`.
                    self.last_service = self.service.sample(&mut self.service_rng).0;
                    return Some(t);
                }
                let s = self.service.sample(&mut self.service_rng).0;
                self.last_service = s;
                let think = self
                    .think
                    .as_ref()
                    .map_or(0, |th| th.sample(&mut self.think_rng).0);
                self.clients
                    .push(Reverse((t.saturating_add(s).saturating_add(think), c)));
                Some(t)
            }
        }
    }
}

impl Generator {
    /// Whether this is a closed loop (see [`RequestSource::close_loop`]).
    pub fn is_closed_loop(&self) -> bool {
        matches!(self.arrivals, ArrivalProcess::ClosedLoop { .. })
    }

    /// The request arriving at `arrival`: its service (drawn with the
    /// arrival for closed loops) and class.
    fn request_at(&mut self, arrival: SimTime) -> Request {
        let (service, client) = match &self.arrivals {
            // Drawn with the arrival (it decides the client's next one).
            ArrivalProcess::ClosedLoop { .. } => (SimDuration(self.last_service), self.last_client),
            _ => (self.service.sample(&mut self.service_rng), 0),
        };
        let (priority, kind) = crate::trace::synthetic::draw_class(
            self.cum_mix,
            self.write_fraction,
            &mut self.priority_rng,
            &mut self.kind_rng,
        );
        Request {
            arrival,
            service,
            priority,
            kind,
            client,
        }
    }
}

impl RequestSource for Generator {
    fn close_loop(&mut self) -> bool {
        self.closed = self.is_closed_loop();
        self.closed
    }

    /// The client thinks, then sends its next request; it stops once the
    /// duration or the request count is reached.
    fn finished(&mut self, client: u32, at: SimTime) -> Option<Request> {
        if !self.closed || self.remaining == 0 {
            return None;
        }
        let think = self
            .think
            .as_ref()
            .map_or(0, |th| th.sample(&mut self.think_rng).0);
        let arrival = at.saturating_add(SimDuration(think));
        if arrival > self.horizon {
            return None;
        }
        self.remaining -= 1;
        self.last_service = self.service.sample(&mut self.service_rng).0;
        self.last_client = client;
        Some(self.request_at(arrival))
    }

    fn next_request(&mut self) -> Option<Request> {
        if self.remaining == 0 {
            return None;
        }
        let Some(t) = self.next_arrival() else {
            // A closed loop's later requests come from `finished`.
            if !self.closed {
                self.remaining = 0;
            }
            return None;
        };
        let arrival = SimTime(t);
        if arrival > self.horizon {
            if !self.closed {
                self.remaining = 0;
            }
            return None;
        }
        self.remaining -= 1;
        Some(self.request_at(arrival))
    }
}
