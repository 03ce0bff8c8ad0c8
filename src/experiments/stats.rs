//! Means and 95 % confidence intervals across replications.
//!
//! Replications are independent runs (different seeds), so a metric's
//! replication values are i.i.d.; the interval is the Student-t interval
//! `mean ± t(0.975, n-1) · s / sqrt(n)` (statrs), exact for normal data and
//! a good approximation for means of long runs.
//!
//! Under common random numbers every variant sees the same requests in
//! replication r, so variant A's and variant B's values in replication r are
//! positively correlated. The paired difference `d_r = a_r - b_r` then has
//! variance `var(a) + var(b) - 2 cov(a, b)`, far below either alone: the
//! interval of the difference is what tells whether A beats B.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A mean with its 95 % half-width. `ci95` is `None` (JSON `null`) with
/// fewer than two values, where no interval exists.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: Option<f64>,
    pub n: usize,
}

impl Estimate {
    /// Lower end of the 95 % interval (the mean when there is none).
    pub fn lower(&self) -> f64 {
        self.mean - self.ci95.unwrap_or(0.0)
    }

    /// Upper end of the 95 % interval (the mean when there is none).
    pub fn upper(&self) -> f64 {
        self.mean + self.ci95.unwrap_or(0.0)
    }
}

/// The 0.975 quantile of Student's t with `dof` degrees of freedom.
pub fn t975(dof: usize) -> f64 {
    assert!(dof >= 1, "Student t needs at least one degree of freedom");
    StudentsT::new(0.0, 1.0, dof as f64)
        .expect("valid Student t parameters")
        .inverse_cdf(0.975)
}

/// Mean and 95 % Student-t half-width of `xs`, summed in the order given
/// (so the same values give the same bits).
pub fn estimate(xs: &[f64]) -> Estimate {
    let n = xs.len();
    if n == 0 {
        return Estimate {
            mean: f64::NAN,
            ci95: None,
            n,
        };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Estimate {
            mean,
            ci95: None,
            n,
        };
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    let half = t975(n - 1) * (var / n as f64).sqrt();
    Estimate {
        mean,
        ci95: Some(half),
        n,
    }
}

/// The paired difference `a - b`, replication by replication.
pub fn paired(a: &[f64], b: &[f64]) -> Estimate {
    assert_eq!(a.len(), b.len(), "paired samples have equal length");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    estimate(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        assert!((t975(1) - 12.7062).abs() < 1e-3);
        assert!((t975(4) - 2.7764).abs() < 1e-3);
        assert!((t975(9) - 2.2622).abs() < 1e-3);
        assert!((t975(1000) - 1.9623).abs() < 1e-3);
    }

    #[test]
    fn estimate_of_known_sample() {
        let e = estimate(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(e.mean, 3.0);
        assert_eq!(e.n, 5);
        // s = sqrt(2.5), half = 2.7764 * s / sqrt(5)
        let want = 2.776_445 * (2.5f64 / 5.0).sqrt();
        assert!((e.ci95.unwrap() - want).abs() < 1e-5);
        assert_eq!(estimate(&[7.0]).ci95, None);
        assert!(estimate(&[]).mean.is_nan());
        assert_eq!(estimate(&[2.0, 2.0, 2.0]).ci95, Some(0.0));
    }

    #[test]
    fn pairing_removes_shared_noise() {
        // b = a + 1 + small noise: each alone is noisy, the difference is not.
        let a = [10.0, 20.0, 30.0, 40.0, 50.0];
        let b = [11.1, 20.9, 31.0, 41.05, 50.95];
        let d = paired(&b, &a);
        assert!((d.mean - 1.0).abs() < 0.01);
        assert!(d.ci95.unwrap() < 0.2);
        assert!(estimate(&a).ci95.unwrap() > 10.0);
    }
}
