//! Validated duration distributions (service times, connect latencies).

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};
use serde::Serialize;

use crate::time::SimDuration;

/// z such that P(N(0,1) <= z) = 0.99; converts a (median, p99) pair into a
/// lognormal sigma.
pub const Z_99: f64 = 2.326_347_874_040_840_8;

/// A distribution of durations. Parameters are checked at construction
/// (see `config::workload`), so sampling cannot fail.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DurationDist {
    Constant {
        value_ns: u64,
    },
    Exponential {
        mean_ns: f64,
    },
    /// ln(X / 1 ns) ~ N(mu, sigma^2).
    Lognormal {
        mu: f64,
        sigma: f64,
    },
    Uniform {
        min_ns: u64,
        max_ns: u64,
    },
}

/// A ready-to-sample form of [`DurationDist`].
#[derive(Clone, Debug)]
pub enum Sampler {
    Constant(u64),
    Exponential(Exp<f64>),
    Lognormal(LogNormal<f64>),
    Uniform(u64, u64),
}

impl DurationDist {
    pub fn lognormal_from_median_p99(median_ns: f64, p99_ns: f64) -> DurationDist {
        DurationDist::Lognormal {
            mu: median_ns.ln(),
            sigma: (p99_ns / median_ns).ln() / Z_99,
        }
    }

    /// Mean in nanoseconds.
    pub fn mean_ns(&self) -> f64 {
        match *self {
            DurationDist::Constant { value_ns } => value_ns as f64,
            DurationDist::Exponential { mean_ns } => mean_ns,
            DurationDist::Lognormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            DurationDist::Uniform { min_ns, max_ns } => (min_ns as f64 + max_ns as f64) / 2.0,
        }
    }

    pub fn sampler(&self) -> Sampler {
        match *self {
            DurationDist::Constant { value_ns } => Sampler::Constant(value_ns),
            DurationDist::Exponential { mean_ns } => {
                Sampler::Exponential(Exp::new(1.0 / mean_ns).expect("validated rate"))
            }
            DurationDist::Lognormal { mu, sigma } => {
                Sampler::Lognormal(LogNormal::new(mu, sigma).expect("validated sigma"))
            }
            DurationDist::Uniform { min_ns, max_ns } => Sampler::Uniform(min_ns, max_ns),
        }
    }
}

impl Sampler {
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> SimDuration {
        match self {
            Sampler::Constant(v) => SimDuration(*v),
            Sampler::Exponential(e) => SimDuration::from_nanos_f64(e.sample(rng)),
            Sampler::Lognormal(l) => SimDuration::from_nanos_f64(l.sample(rng)),
            Sampler::Uniform(lo, hi) => SimDuration(rng.random_range(*lo..=*hi)),
        }
    }
}

impl SimDuration {
    /// Rounds a non-negative float nanosecond count; saturates.
    #[inline]
    pub fn from_nanos_f64(ns: f64) -> SimDuration {
        if ns.is_nan() || ns <= 0.0 {
            SimDuration(0)
        } else if ns >= u64::MAX as f64 {
            SimDuration(u64::MAX)
        } else {
            SimDuration(ns.round() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedTree;

    #[test]
    fn sample_means_match_the_distribution_means() {
        let dists = [
            DurationDist::Constant {
                value_ns: 5_000_000,
            },
            DurationDist::Exponential { mean_ns: 10e6 },
            DurationDist::lognormal_from_median_p99(8e6, 40e6),
            DurationDist::Uniform {
                min_ns: 1_000,
                max_ns: 3_000,
            },
        ];
        for d in dists {
            let s = d.sampler();
            let mut rng = SeedTree::new(7).stream("t");
            let n = 200_000;
            let mean = (0..n)
                .map(|_| s.sample(&mut rng).as_nanos() as f64)
                .sum::<f64>()
                / n as f64;
            let rel = (mean - d.mean_ns()).abs() / d.mean_ns();
            assert!(rel < 0.02, "{d:?}: sample mean {mean} vs {}", d.mean_ns());
        }
    }

    #[test]
    fn lognormal_median_and_p99_are_honoured() {
        let d = DurationDist::lognormal_from_median_p99(8e6, 40e6);
        let s = d.sampler();
        let mut rng = SeedTree::new(3).stream("t");
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| s.sample(&mut rng).as_nanos())
            .collect();
        v.sort_unstable();
        let median = v[v.len() / 2] as f64;
        let p99 = v[v.len() * 99 / 100] as f64;
        assert!((median / 8e6 - 1.0).abs() < 0.03, "median {median}");
        assert!((p99 / 40e6 - 1.0).abs() < 0.06, "p99 {p99}");
    }
}
