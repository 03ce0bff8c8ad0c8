//! Service-time distributions for generated workloads: the validated
//! [`DurationDist`] family plus Pareto (heavy tail) and empirical ones (a
//! recorded trace's service times, a list of values, or a quantile table).

use std::sync::Arc;

use crate::dist::{DurationDist, Sampler};
use crate::time::SimDuration;
use rand::Rng;

/// A service-time distribution. Parameters are validated when the workload
/// is loaded, so sampling cannot fail.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceDist {
    Basic(DurationDist),
    /// Pareto type I: P(X > x) = (min / x)^alpha for x >= min, optionally
    /// capped at `max_ns` (values above it are set to it).
    Pareto {
        min_ns: f64,
        alpha: f64,
        max_ns: Option<u64>,
    },
    /// Inverse-CDF sampling from a quantile table: `points` are
    /// (cumulative probability, nanoseconds), probabilities increasing from
    /// 0 to 1, values non-decreasing; linear between points.
    Empirical {
        points: Arc<Vec<(f64, f64)>>,
        /// Where the table came from (a file, "values", "quantiles").
        origin: String,
    },
}

impl ServiceDist {
    pub fn pareto(min_ns: f64, alpha: f64, max_ns: Option<u64>) -> ServiceDist {
        ServiceDist::Pareto {
            min_ns,
            alpha,
            max_ns,
        }
    }

    /// An empirical distribution from a sample (sorted here): each value is
    /// one quantile step, `i / (n - 1)`.
    pub fn from_sample(mut values: Vec<u64>, origin: impl Into<String>) -> ServiceDist {
        values.sort_unstable();
        let n = values.len();
        let points = if n == 1 {
            vec![(0.0, values[0] as f64), (1.0, values[0] as f64)]
        } else {
            values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64 / (n - 1) as f64, v as f64))
                .collect()
        };
        ServiceDist::Empirical {
            points: Arc::new(points),
            origin: origin.into(),
        }
    }

    /// An empirical distribution from a validated quantile table.
    pub fn from_quantiles(points: Vec<(f64, f64)>, origin: impl Into<String>) -> ServiceDist {
        ServiceDist::Empirical {
            points: Arc::new(points),
            origin: origin.into(),
        }
    }

    /// Mean in nanoseconds (infinite for a Pareto with alpha <= 1 and no cap).
    pub fn mean_ns(&self) -> f64 {
        match self {
            ServiceDist::Basic(d) => d.mean_ns(),
            ServiceDist::Pareto {
                min_ns,
                alpha,
                max_ns,
                ..
            } => match max_ns {
                None if *alpha <= 1.0 => f64::INFINITY,
                None => alpha * min_ns / (alpha - 1.0),
                Some(cap) => {
                    // E[min(X, c)] = xm + integral_xm^c (xm/x)^a dx.
                    let c = *cap as f64;
                    if c <= *min_ns {
                        return c;
                    }
                    let tail = if (*alpha - 1.0).abs() < 1e-12 {
                        min_ns * (c / min_ns).ln()
                    } else {
                        min_ns / (alpha - 1.0) * (1.0 - (min_ns / c).powf(alpha - 1.0))
                    };
                    min_ns + tail
                }
            },
            ServiceDist::Empirical { points, .. } => {
                // Piecewise-linear inverse CDF: each segment's mean is the
                // midpoint of its values, weighted by its probability.
                points
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
                    .sum()
            }
        }
    }

    /// The quantile function (inverse CDF) at `u` in [0, 1).
    pub fn quantile_ns(&self, u: f64) -> f64 {
        match self {
            ServiceDist::Basic(_) => f64::NAN,
            ServiceDist::Pareto {
                min_ns,
                alpha,
                max_ns,
                ..
            } => {
                let x = min_ns / (1.0 - u).powf(1.0 / alpha);
                match max_ns {
                    Some(c) => x.min(*c as f64),
                    None => x,
                }
            }
            ServiceDist::Empirical { points, .. } => {
                let i = points.partition_point(|p| p.0 <= u);
                if i == 0 {
                    return points[0].1;
                }
                if i >= points.len() {
                    return points[points.len() - 1].1;
                }
                let (p0, v0) = points[i - 1];
                let (p1, v1) = points[i];
                if p1 <= p0 {
                    v1
                } else {
                    v0 + (v1 - v0) * (u - p0) / (p1 - p0)
                }
            }
        }
    }

    pub fn sampler(&self) -> ServiceSampler {
        match self {
            ServiceDist::Basic(d) => ServiceSampler::Basic(d.sampler()),
            other => ServiceSampler::Inverse(other.clone()),
        }
    }
}

/// A ready-to-sample [`ServiceDist`].
#[derive(Clone, Debug)]
pub enum ServiceSampler {
    Basic(Sampler),
    Inverse(ServiceDist),
}

impl ServiceSampler {
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> SimDuration {
        match self {
            ServiceSampler::Basic(s) => s.sample(rng),
            ServiceSampler::Inverse(d) => {
                let u: f64 = rng.random();
                SimDuration::from_nanos_f64(d.quantile_ns(u))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedTree;

    fn draw(d: &ServiceDist, n: usize) -> Vec<u64> {
        let s = d.sampler();
        let mut rng = SeedTree::new(11).stream("t");
        let mut v: Vec<u64> = (0..n).map(|_| s.sample(&mut rng).0).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn pareto_tail_and_mean() {
        let d = ServiceDist::pareto(1e6, 2.5, None);
        let v = draw(&d, 200_000);
        // P(X > 4 ms) = (1/4)^2.5 = 1/32.
        let above = v.iter().filter(|&&x| x > 4_000_000).count() as f64 / v.len() as f64;
        assert!((above - 1.0 / 32.0).abs() < 0.002, "{above}");
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        assert!(
            (mean / d.mean_ns() - 1.0).abs() < 0.03,
            "{mean} vs {}",
            d.mean_ns()
        );
        assert!(v[0] >= 1_000_000);
        let capped = ServiceDist::pareto(1e6, 1.0, Some(10_000_000));
        let v = draw(&capped, 200_000);
        assert!(*v.last().unwrap() <= 10_000_000);
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        assert!(
            (mean / capped.mean_ns() - 1.0).abs() < 0.02,
            "{mean} vs {}",
            capped.mean_ns()
        );
    }

    #[test]
    fn empirical_reproduces_its_sample() {
        let sample: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let d = ServiceDist::from_sample(sample, "test");
        let v = draw(&d, 100_000);
        let med = v[v.len() / 2] as f64;
        assert!((med / 500_500.0 - 1.0).abs() < 0.02, "{med}");
        assert!(v[0] >= 1000 && *v.last().unwrap() <= 1_000_000);
        assert!((d.mean_ns() / 500_500.0 - 1.0).abs() < 1e-9);
        let q = ServiceDist::from_quantiles(vec![(0.0, 0.0), (0.5, 1e6), (1.0, 3e6)], "q");
        assert_eq!(q.quantile_ns(0.25), 5e5);
        assert_eq!(q.quantile_ns(0.75), 2e6);
        assert!((q.mean_ns() - 1.25e6).abs() < 1e-6);
    }
}
