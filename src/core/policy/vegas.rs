//! Vegas concurrency limit (Netflix concurrency-limits `VegasLimit`,
//! pool-policies.md section 5 [CL], section 9 item 10). With
//! f(L) = max(1, floor(log10 L)) and the estimated queue
//! q = ceil(L x (1 - rtt_noload / rtt)):
//! drop: L - f(L); inflight < L / 2: hold; q <= f(L): L + 6 f(L);
//! q < 3 f(L): L + f(L); q > 6 f(L): L - f(L); otherwise hold. The new value
//! is clamped to the pool's [min, max] and blended with `smoothing` (1.0).
//!
//! rtt_noload is the smallest query time seen; it is re-probed (set to the
//! current sample) after `jitter x probe_multiplier x L` samples, jitter
//! drawn uniformly from [0.5, 1) after each probe. The draws come from the
//! seeded stream `SeedTree::new(seed).stream("policy.vegas.probe")`, so a
//! run is reproducible (`resize.seed` in the policy file).

use rand::Rng;

use super::limit::{below_half, clamp_limit, follow_limit, latency_sample, LATENCY_SIGNALS};
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::rng::{SeedTree, Stream};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VegasParams {
    /// Starting limit (the pool's `size.initial`).
    pub initial: f64,
    /// Weight of the new value, in (0, 1] [CL]: 1.0.
    pub smoothing: f64,
    /// Samples between probes, per unit of limit [CL]: 30.
    pub probe_multiplier: u32,
    /// Seed of the probe-jitter stream.
    pub seed: u64,
}

#[derive(Clone, Debug)]
pub struct Vegas {
    pub params: VegasParams,
    limit: f64,
    rtt_noload: SimDuration,
    probe_count: u64,
    probe_jitter: f64,
    rng: Stream,
}

fn log10_floor(limit: f64) -> f64 {
    let l = limit.floor().max(1.0);
    l.log10().floor().max(1.0)
}

impl Vegas {
    pub fn new(params: VegasParams) -> Self {
        let mut rng = SeedTree::new(params.seed).stream("policy.vegas.probe");
        let probe_jitter = rng.random_range(0.5..1.0);
        Vegas {
            limit: params.initial,
            params,
            rtt_noload: SimDuration::ZERO,
            probe_count: 0,
            probe_jitter,
            rng,
        }
    }

    /// The current limit L.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The no-load latency estimate (zero before the first sample).
    pub fn rtt_noload(&self) -> SimDuration {
        self.rtt_noload
    }

    fn update(&mut self, view: &PoolView, rtt: Option<SimDuration>, inflight: u32) {
        let l = self.limit;
        let f = log10_floor(l);
        let new = match rtt {
            None => l - f,
            Some(_) if below_half(inflight, l) => return,
            Some(rtt) => {
                let ratio = self.rtt_noload.as_nanos() as f64 / rtt.as_nanos() as f64;
                let queue = (l * (1.0 - ratio)).ceil();
                if queue <= f {
                    l + 6.0 * f
                } else if queue < 3.0 * f {
                    l + f
                } else if queue > 6.0 * f {
                    l - f
                } else {
                    return;
                }
            }
        };
        let new = clamp_limit(new, view);
        let s = self.params.smoothing;
        self.limit = clamp_limit((1.0 - s) * l + s * new, view);
    }
}

impl Policy for Vegas {
    fn interval(&self) -> Option<SimDuration> {
        None
    }

    fn wants(&self) -> Wants {
        LATENCY_SIGNALS
    }

    fn decide(&mut self, _now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        match latency_sample(signal) {
            // A drop carries no latency sample: only the decrease applies.
            Some((None, _)) => self.update(view, None, 0),
            Some((Some(query), inflight)) if query.as_nanos() > 0 => {
                self.probe_count += 1;
                let due = self.probe_jitter * self.params.probe_multiplier as f64 * self.limit;
                if due <= self.probe_count as f64 {
                    self.probe_jitter = self.rng.random_range(0.5..1.0);
                    self.probe_count = 0;
                    self.rtt_noload = query;
                } else if self.rtt_noload.as_nanos() == 0 || query < self.rtt_noload {
                    self.rtt_noload = query;
                } else {
                    self.update(view, Some(query), inflight);
                }
            }
            _ => return Decision::Hold,
        }
        follow_limit(view, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::limit::testing::{completed, view};
    use crate::core::request::Priority;

    fn done(us: u64, inflight: u32) -> Signal {
        completed(SimDuration::from_nanos(us * 1_000), inflight)
    }

    fn vegas() -> Vegas {
        Vegas::new(VegasParams {
            initial: 10.0,
            smoothing: 1.0,
            probe_multiplier: 30,
            seed: 7,
        })
    }

    #[test]
    fn update_rule_by_hand() {
        let mut g = vegas();
        let v = view();
        // f(L) = 1 for 10 <= L < 100, so alpha 3, beta 6, threshold 1.
        let seq = [
            done(10_000, 5),  // first sample: rtt_noload = 10 ms, hold 10
            done(10_000, 5),  // q = ceil(10 (1 - 10/10)) = 0 <= 1: 10 + 6 = 16
            done(20_000, 8),  // 8 x 2 = 16, not < 16; q = ceil(16 x 0.5) = 8 > 6: 15
            done(12_500, 10), // q = ceil(15 x (1 - 0.8)) = 3: in [3, 6]: hold 15
            done(11_000, 10), // q = ceil(15 x (1 - 10/11) = 1.36) = 2 < 3: 16
            done(30_000, 3),  // 3 x 2 = 6 < 16: hold 16
            Signal::Dropped {
                priority: Priority::Low,
            }, // drop: 16 - 1 = 15
        ];
        let limits: Vec<f64> = seq
            .into_iter()
            .map(|s| {
                g.decide(SimTime::ZERO, &v, s);
                g.limit()
            })
            .collect();
        assert_eq!(limits, vec![10.0, 16.0, 15.0, 15.0, 16.0, 16.0, 15.0]);
        assert_eq!(g.rtt_noload(), SimDuration::from_millis(10));
        assert_eq!(
            g.decide(SimTime::ZERO, &v, done(10_000, 1)),
            Decision::Resize { target: 15 }
        );
    }

    #[test]
    fn smoothing_blends_and_the_envelope_clamps() {
        let mut g = Vegas::new(VegasParams {
            smoothing: 0.5,
            ..vegas().params
        });
        let v = view();
        g.decide(SimTime::ZERO, &v, done(10_000, 5)); // rtt_noload 10 ms
                                                      // q = 0: raw 10 + 6 = 16; blended 0.5 x 10 + 0.5 x 16 = 13.
        g.decide(SimTime::ZERO, &v, done(10_000, 5));
        assert_eq!(g.limit(), 13.0);
        // Drops: 13 -> raw 12, blended 12.5 -> raw 11.5, blended 12 ...; never below min 2.
        for _ in 0..100 {
            g.decide(
                SimTime::ZERO,
                &v,
                Signal::Dropped {
                    priority: Priority::Low,
                },
            );
        }
        assert!((g.limit() - 2.0).abs() < 1e-9, "{}", g.limit());
    }

    #[test]
    fn rtt_noload_is_reprobed_after_half_to_all_of_30_l_samples() {
        // L = 10, held (inflight 1 < L/2): the probe comes after
        // jitter x 30 x 10 samples, jitter in [0.5, 1): in [150, 300].
        let mut g = vegas();
        let v = view();
        g.decide(SimTime::ZERO, &v, done(5_000, 1));
        let mut probed_at = None;
        for i in 2..=400u64 {
            g.decide(SimTime::ZERO, &v, done(9_000, 1));
            if g.rtt_noload() == SimDuration::from_millis(9) {
                probed_at = Some(i);
                break;
            }
        }
        let at = probed_at.expect("no probe in 400 samples");
        assert!((150..=300).contains(&at), "probe after {at} samples");
        // Same seed, same probe point: deterministic.
        let mut h = vegas();
        h.decide(SimTime::ZERO, &v, done(5_000, 1));
        let mut again = None;
        for i in 2..=400u64 {
            h.decide(SimTime::ZERO, &v, done(9_000, 1));
            if h.rtt_noload() == SimDuration::from_millis(9) {
                again = Some(i);
                break;
            }
        }
        assert_eq!(again, probed_at);
    }
}
