//! Envoy's adaptive-concurrency gradient controller (pool-policies.md
//! section 5 [EV], section 9 item 13).
//!
//! Every `interval` (concurrency_update_interval, 100 ms) a tick takes the
//! `percentile` (p50) of the query times completed since the previous tick
//! as sampleRTT, and sets
//! g = clamp(minRTT x (1 + buffer) / sampleRTT, 0.5, 2) (buffer 25 %),
//! L <- floor(g x L + sqrt(L)) (the square-root headroom as the anchor
//! describes it), at least `min_concurrency`, within the pool's [min, max].
//! A tick without samples holds.
//!
//! minRTT is measured at start and then every `min_rtt_interval` (60 s)
//! plus a delay uniform in [0, jitter x interval) (jitter 15 %): the target
//! is pinned to `min_concurrency` (3) until `request_count` (50) queries
//! have completed, minRTT is their percentile, and the limit returns to its
//! value before the measurement. A measurement also starts after 5
//! consecutive ticks that left the limit at its minimum. The jitter comes
//! from the seeded stream `SeedTree::new(seed).stream("policy.envoy.jitter")`;
//! time is only the `now` the pool passes in.

use rand::Rng;

use super::limit::resize_to;
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::rng::{SeedTree, Stream};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnvoyParams {
    /// Starting limit (the pool's `size.initial`).
    pub initial: u32,
    /// concurrency_update_interval [EV]: 100 ms.
    pub interval: SimDuration,
    /// Percentile of the window's query times, in (0, 1] [EV]: 0.5.
    pub percentile: f64,
    /// [EV]: 60 s.
    pub min_rtt_interval: SimDuration,
    /// Fraction of `min_rtt_interval` added at random, in [0, 1) [EV]: 0.15.
    pub jitter: f64,
    /// Samples of a minRTT measurement [EV]: 50.
    pub request_count: u32,
    /// [EV]: 3.
    pub min_concurrency: u32,
    /// [EV]: 0.25.
    pub buffer: f64,
    /// Seed of the jitter stream.
    pub seed: u64,
}

/// Consecutive ticks at the minimum that trigger a minRTT measurement [EV].
const AT_MIN_TICKS: u32 = 5;

#[derive(Clone, Debug)]
pub struct Envoy {
    pub params: EnvoyParams,
    limit: u32,
    min_rtt: Option<SimDuration>,
    /// Some(samples) while measuring minRTT.
    measuring: Option<Vec<SimDuration>>,
    window: Vec<SimDuration>,
    next_measurement: SimTime,
    at_min: u32,
    rng: Stream,
}

fn percentile(samples: &mut [SimDuration], p: f64) -> Option<SimDuration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    // Nearest rank: the ceil(p x n)-th smallest.
    let rank = (p * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

impl Envoy {
    pub fn new(params: EnvoyParams) -> Self {
        Envoy {
            limit: params.initial,
            params,
            min_rtt: None,
            measuring: Some(Vec::new()),
            window: Vec::new(),
            next_measurement: SimTime::NEVER,
            at_min: 0,
            rng: SeedTree::new(params.seed).stream("policy.envoy.jitter"),
        }
    }

    /// The current limit (the one restored after a measurement while measuring).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn min_rtt(&self) -> Option<SimDuration> {
        self.min_rtt
    }

    pub fn measuring(&self) -> bool {
        self.measuring.is_some()
    }

    /// When the next minRTT measurement starts (NEVER while one runs).
    pub fn next_measurement(&self) -> SimTime {
        self.next_measurement
    }

    fn floor(&self, view: &PoolView) -> u32 {
        self.params
            .min_concurrency
            .max(view.min)
            .min(view.max.max(view.min))
    }

    fn start_measuring(&mut self, view: &PoolView) -> Decision {
        self.measuring = Some(Vec::new());
        self.window.clear();
        self.at_min = 0;
        self.next_measurement = SimTime::NEVER;
        resize_to(view, self.params.min_concurrency)
    }
}

impl Policy for Envoy {
    fn interval(&self) -> Option<SimDuration> {
        Some(self.params.interval)
    }

    fn wants(&self) -> Wants {
        Wants {
            completed: true,
            ..Wants::NONE
        }
    }

    fn decide(&mut self, now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        let p = self.params;
        match signal {
            Signal::Completed { query, .. } => {
                let Some(samples) = self.measuring.as_mut() else {
                    self.window.push(query);
                    return Decision::Hold;
                };
                samples.push(query);
                if samples.len() < p.request_count as usize {
                    return Decision::Hold;
                }
                let mut samples = self.measuring.take().unwrap_or_default();
                self.min_rtt = percentile(&mut samples, p.percentile);
                let span = p.min_rtt_interval.as_nanos() as f64;
                let extra = if p.jitter > 0.0 {
                    self.rng.random_range(0.0..p.jitter) * span
                } else {
                    0.0
                };
                self.next_measurement =
                    now.saturating_add(p.min_rtt_interval + SimDuration(extra as u64));
                resize_to(view, self.limit)
            }
            Signal::Tick => {
                if self.measuring.is_some() {
                    // Keep the target pinned while the measurement runs.
                    return resize_to(view, p.min_concurrency);
                }
                if now >= self.next_measurement {
                    return self.start_measuring(view);
                }
                let (Some(min_rtt), Some(sample)) =
                    (self.min_rtt, percentile(&mut self.window, p.percentile))
                else {
                    return Decision::Hold;
                };
                self.window.clear();
                let g = (min_rtt.as_nanos() as f64 * (1.0 + p.buffer)
                    / sample.as_nanos().max(1) as f64)
                    .clamp(0.5, 2.0);
                let l = self.limit as f64;
                let new = (g * l + l.sqrt()).floor().min(u32::MAX as f64) as u32;
                let floor = self.floor(view);
                self.limit = new.clamp(floor, view.max.max(floor));
                if self.limit == floor {
                    self.at_min += 1;
                    if self.at_min >= AT_MIN_TICKS {
                        return self.start_measuring(view);
                    }
                } else {
                    self.at_min = 0;
                }
                resize_to(view, self.limit)
            }
            _ => Decision::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(ms: u64) -> Signal {
        Signal::Completed {
            query: SimDuration::from_millis(ms),
            waited: SimDuration::ZERO,
            inflight: 1,
        }
    }

    fn at_ms(ms: u64) -> SimTime {
        SimTime(ms * 1_000_000)
    }

    fn params(jitter: f64) -> EnvoyParams {
        EnvoyParams {
            initial: 10,
            interval: SimDuration::from_millis(100),
            percentile: 0.5,
            min_rtt_interval: SimDuration::from_secs(60),
            jitter,
            request_count: 3,
            min_concurrency: 3,
            buffer: 0.25,
            seed: 11,
        }
    }

    #[test]
    fn update_rule_by_hand() {
        let mut e = Envoy::new(params(0.0));
        let mut v = PoolView {
            min: 2,
            max: 25,
            target: 10,
            ..PoolView::default()
        };
        let mut step = |e: &mut Envoy, now, s| {
            let d = e.decide(now, &v, s);
            if let Decision::Resize { target } = d {
                v.target = target;
            }
            d
        };
        // Start: measuring minRTT, target pinned to min_concurrency 3.
        assert_eq!(
            step(&mut e, at_ms(0), Signal::Tick),
            Decision::Resize { target: 3 }
        );
        assert_eq!(step(&mut e, at_ms(50), done(10)), Decision::Hold);
        assert_eq!(step(&mut e, at_ms(60), done(12)), Decision::Hold);
        // Third sample: minRTT = p50 of {10, 11, 12} = 11 ms; limit 10 restored.
        assert_eq!(
            step(&mut e, at_ms(70), done(11)),
            Decision::Resize { target: 10 }
        );
        assert_eq!(e.min_rtt(), Some(SimDuration::from_millis(11)));
        assert_eq!(e.next_measurement(), at_ms(60_070));
        // Window {20, 22, 24}: sampleRTT 22 ms; g = 11 x 1.25 / 22 = 0.625;
        // L = floor(0.625 x 10 + sqrt 10 = 9.41) = 9.
        for ms in [20, 24, 22] {
            step(&mut e, at_ms(80), done(ms));
        }
        assert_eq!(
            step(&mut e, at_ms(100), Signal::Tick),
            Decision::Resize { target: 9 }
        );
        // No samples since: hold.
        assert_eq!(step(&mut e, at_ms(200), Signal::Tick), Decision::Hold);
        // Window {10}: g = 13.75 / 10 = 1.375; L = floor(12.375 + 3) = 15.
        step(&mut e, at_ms(250), done(10));
        assert_eq!(
            step(&mut e, at_ms(300), Signal::Tick),
            Decision::Resize { target: 15 }
        );
        // Window {100}: g = 0.1375 -> 0.5; L = floor(7.5 + sqrt 15 = 11.37) = 11.
        step(&mut e, at_ms(350), done(100));
        assert_eq!(
            step(&mut e, at_ms(400), Signal::Tick),
            Decision::Resize { target: 11 }
        );
        // At 60.07 s the next measurement pins the target to 3 again.
        step(&mut e, at_ms(60_050), done(10));
        assert_eq!(
            step(&mut e, at_ms(60_100), Signal::Tick),
            Decision::Resize { target: 3 }
        );
        assert!(e.measuring());
        assert_eq!(e.limit(), 11);
    }

    #[test]
    fn five_ticks_at_the_minimum_start_a_measurement() {
        let mut e = Envoy::new(params(0.0));
        let v = PoolView {
            min: 2,
            max: 25,
            target: 3,
            ..PoolView::default()
        };
        for ms in [10, 10, 10] {
            e.decide(at_ms(1), &v, done(ms));
        }
        // minRTT 10 ms; windows of one 1 s query: g = 12.5/1000 -> 0.5.
        // 10 -> floor(5 + 3.16) = 8 -> floor(4 + 2.83) = 6 -> floor(3 + 2.45) = 5
        // -> floor(2.5 + 2.24) = 4 -> floor(2 + 2) = 4: a fixed point above the
        // minimum 3, so no measurement starts.
        let mut limits = Vec::new();
        for i in 0..6u64 {
            e.decide(at_ms(100 + i * 100), &v, done(1_000));
            e.decide(at_ms(150 + i * 100), &v, Signal::Tick);
            limits.push(e.limit());
        }
        assert_eq!(limits, vec![8, 6, 5, 4, 4, 4]);
        assert!(!e.measuring());
        // From 3: floor(1.5 + 1.73) = 3, at the minimum every tick: the 5th starts one.
        let mut e = Envoy::new(EnvoyParams {
            initial: 3,
            ..params(0.0)
        });
        for ms in [10, 10, 10] {
            e.decide(at_ms(1), &v, done(ms));
        }
        for i in 0..5u64 {
            assert!(!e.measuring(), "measuring after {i} ticks at the minimum");
            e.decide(at_ms(100 + i * 100), &v, done(1_000));
            e.decide(at_ms(150 + i * 100), &v, Signal::Tick);
        }
        assert!(e.measuring());
    }

    #[test]
    fn jitter_delays_the_next_measurement_by_up_to_15_percent() {
        let v = PoolView {
            min: 2,
            max: 25,
            target: 3,
            ..PoolView::default()
        };
        let next = |seed| {
            let mut e = Envoy::new(EnvoyParams {
                seed,
                ..params(0.15)
            });
            for ms in [10, 10, 10] {
                e.decide(SimTime::ZERO, &v, done(ms));
            }
            e.next_measurement()
        };
        let seeds: Vec<SimTime> = (0..20).map(next).collect();
        for t in &seeds {
            assert!(*t >= at_ms(60_000) && *t < at_ms(69_000), "{t}");
        }
        assert_eq!(next(5), next(5));
        // The draws differ between seeds (not all equal).
        assert!(seeds.iter().any(|t| *t != seeds[0]));
    }
}
