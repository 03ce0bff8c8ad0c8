//! Gradient concurrency limit, version 1 (Netflix concurrency-limits
//! `GradientLimit`, pool-policies.md section 5 [CL], section 9 item 11).
//! With the queue allowance q = max(4, floor(sqrt(L))), rtt_noload the
//! smallest query time since the last probe and
//! g = clamp(tolerance x rtt_noload / rtt, 0.5, 1):
//! drop: L' = backoff_ratio x L; inflight < L / 2: hold; otherwise
//! L' = g x L + q. A decrease is smoothed, L' = (1 - s) L + s L' (s = 0.2),
//! and floored at `size.min`; then L' is at least q, and the pool's
//! [min, max] clamps it (the anchor's [q, 1000] does not fit a pool).
//!
//! Every `probe_interval` + uniform[0, probe_interval) samples the limit
//! resets to max(min, q) and rtt_noload is forgotten, so a baseline
//! measured under load does not drift upward. The draws come from the
//! seeded stream `SeedTree::new(seed).stream("policy.gradient.probe")`.

use rand::Rng;

use super::limit::{below_half, clamp_limit, follow_limit, latency_sample, LATENCY_SIGNALS};
use super::{Decision, Policy, PoolView, Signal, Wants};
use crate::rng::{SeedTree, Stream};
use crate::time::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradientParams {
    /// Starting limit (the pool's `size.initial`).
    pub initial: f64,
    /// Weight of a decrease [CL]: 0.2.
    pub smoothing: f64,
    /// rtt may be this many times rtt_noload before the limit decreases [CL]: 2.0.
    pub tolerance: f64,
    /// Multiplicative decrease on a drop [CL]: 0.9.
    pub backoff_ratio: f64,
    /// Samples between probes (plus up to as many again) [CL]: 1000;
    /// `None` never probes.
    pub probe_interval: Option<u32>,
    /// Seed of the probe-countdown stream.
    pub seed: u64,
}

#[derive(Clone, Debug)]
pub struct Gradient {
    pub params: GradientParams,
    limit: f64,
    rtt_noload: Option<SimDuration>,
    countdown: i64,
    rng: Stream,
}

fn queue_allowance(limit: f64) -> f64 {
    (limit.max(0.0).floor().sqrt().floor()).max(4.0)
}

impl Gradient {
    pub fn new(params: GradientParams) -> Self {
        let mut rng = SeedTree::new(params.seed).stream("policy.gradient.probe");
        let countdown = Self::next_countdown(&params, &mut rng);
        Gradient {
            limit: params.initial,
            params,
            rtt_noload: None,
            countdown,
            rng,
        }
    }

    fn next_countdown(p: &GradientParams, rng: &mut Stream) -> i64 {
        match p.probe_interval {
            Some(n) if n > 0 => n as i64 + rng.random_range(0..n as i64),
            _ => i64::MAX,
        }
    }

    /// The current limit L.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The no-load latency estimate since the last probe.
    pub fn rtt_noload(&self) -> Option<SimDuration> {
        self.rtt_noload
    }

    fn sample(&mut self, view: &PoolView, rtt: Option<SimDuration>, inflight: u32) {
        let p = self.params;
        let l = self.limit;
        let q = queue_allowance(l);
        let probing = self.countdown <= 0;
        self.countdown = self.countdown.saturating_sub(1);
        if probing {
            self.countdown = Self::next_countdown(&p, &mut self.rng);
            self.limit = clamp_limit((view.min as f64).max(q), view);
            self.rtt_noload = None;
            return;
        }
        let mut new = match rtt {
            None => l * p.backoff_ratio,
            Some(rtt) => {
                let noload = self.rtt_noload.map_or(rtt, |m| m.min(rtt));
                self.rtt_noload = Some(noload);
                if below_half(inflight, l) {
                    return;
                }
                let g = (p.tolerance * noload.as_nanos() as f64 / rtt.as_nanos().max(1) as f64)
                    .clamp(0.5, 1.0);
                g * l + q
            }
        };
        if new < l {
            new = (view.min as f64).max(l * (1.0 - p.smoothing) + p.smoothing * new);
        }
        self.limit = clamp_limit(new.max(q), view);
    }
}

impl Policy for Gradient {
    fn interval(&self) -> Option<SimDuration> {
        None
    }

    fn wants(&self) -> Wants {
        LATENCY_SIGNALS
    }

    fn decide(&mut self, _now: SimTime, view: &PoolView, signal: Signal) -> Decision {
        let Some((query, inflight)) = latency_sample(signal) else {
            return Decision::Hold;
        };
        self.sample(view, query, inflight);
        follow_limit(view, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::policy::limit::testing::{done, view};
    use crate::core::request::Priority;

    fn params(probe_interval: Option<u32>) -> GradientParams {
        GradientParams {
            initial: 10.0,
            smoothing: 0.2,
            tolerance: 2.0,
            backoff_ratio: 0.9,
            probe_interval,
            seed: 3,
        }
    }

    #[test]
    fn update_rule_by_hand() {
        let mut g = Gradient::new(params(None));
        let mut v = view();
        let mut step = |g: &mut Gradient, s| {
            if let Decision::Resize { target } = g.decide(SimTime::ZERO, &v, s) {
                v.target = target;
            }
            (g.limit(), v.target)
        };
        // q(10) = max(4, floor(sqrt 10) = 3) = 4; noload 10 ms;
        // g = clamp(2 x 10/10, 0.5, 1) = 1; 5 >= 10/2: 1 x 10 + 4 = 14.
        assert_eq!(step(&mut g, done(10, 5)), (14.0, 14));
        // q(14) = 4; g = clamp(2 x 10/40) = 0.5; L' = 0.5 x 14 + 4 = 11 < 14:
        // smoothed 0.8 x 14 + 0.2 x 11 = 13.4 -> target ceil 14.
        let (l, t) = step(&mut g, done(40, 10));
        assert!((l - 13.4).abs() < 1e-9 && t == 14, "{l} {t}");
        // Drop: 0.9 x 13.4 = 12.06 < 13.4: 0.8 x 13.4 + 0.2 x 12.06 = 13.132.
        let (l, _) = step(
            &mut g,
            Signal::Dropped {
                priority: Priority::High,
            },
        );
        assert!((l - 13.132).abs() < 1e-9, "{l}");
        // inflight 2 < 13.132 / 2: hold.
        let (l, _) = step(&mut g, done(10, 2));
        assert!((l - 13.132).abs() < 1e-9, "{l}");
        // New minimum 5 ms: g = clamp(2 x 5/5) = 1; 13.132 + q(13) = 4 -> 17.132 -> 18.
        let (l, t) = step(&mut g, done(5, 10));
        assert!((l - 17.132).abs() < 1e-9 && t == 18, "{l} {t}");
        assert_eq!(g.rtt_noload(), Some(SimDuration::from_millis(5)));
    }

    #[test]
    fn probe_resets_the_limit_and_forgets_the_minimum() {
        // Probe every 10 + [0, 10) samples: reset within 20 samples.
        let mut g = Gradient::new(params(Some(10)));
        let v = view();
        let mut reset_at = None;
        for i in 1..=25u32 {
            // Busy and fast: the limit climbs by q = 4 per sample (up to 25).
            g.decide(SimTime::ZERO, &v, done(10, 25));
            if g.rtt_noload().is_none() {
                reset_at = Some(i);
                // Reset to max(min 2, q(L)) with L = 25 before: q = 5.
                assert_eq!(g.limit(), 5.0);
                break;
            }
        }
        let at = reset_at.expect("no probe within 25 samples");
        assert!((11..=20).contains(&at), "probe at sample {at}");
    }
}
