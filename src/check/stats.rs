//! The regression verdict, in criterion's two stages, with seeds.
//!
//! Single seed (a deterministic simulation): the current value is compared
//! with the baseline exactly, or within the metric's stated tolerance.
//!
//! Several seeds: baseline and current runs of the same seed see the same
//! requests (common random numbers), so they are compared as **pairs**:
//! `d_i = current_i - baseline_i`.
//!
//! 1. *Is there a change at all?* A paired Student t-test on the `d_i`:
//!    `t = mean(d) / (sd(d) / sqrt(n))`, two-sided p from Student's t with
//!    n - 1 degrees of freedom. The change is significant when
//!    `p < significance` (default 0.05). All `d_i = 0`: no change (p = 1);
//!    all equal and non-zero: a constant shift (p = 0).
//! 2. *Is it larger than the noise band?* A percentile bootstrap interval
//!    (default 95 %, 10,000 resamples of the seeds, drawn from a seeded
//!    ChaCha stream, so the verdict is the same on every run) for `mean(d)`.
//!    The band is `max(noise * |mean(baseline)|, abs_noise)`. Both bounds
//!    above `+band`: the metric went up; both below `-band`: it went down;
//!    otherwise it is within noise.
//!
//! A metric regressed only when both stages say so in its bad direction;
//! improved likewise in its good direction.
//!
//! ```text
//!            -band        0        +band
//!   ───────────┼──────────┼──────────┼──────────►  change in mean(d)
//!   [──CI──]   │          │          │              down (if p < alpha)
//!            [─┼───CI─────┼─]        │              within noise
//!              │          │          │  [──CI──]    up (if p < alpha)
//! ```

use rand::Rng;
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::rng::SeedTree;

/// Settings of the multi-seed test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestSettings {
    /// Stage 1 threshold on the two-sided p-value.
    pub significance: f64,
    /// Stage 2 interval level, e.g. 0.95.
    pub confidence: f64,
    pub resamples: usize,
    /// Seed of the bootstrap's random stream.
    pub bootstrap_seed: u64,
}

impl Default for TestSettings {
    fn default() -> Self {
        TestSettings {
            significance: 0.05,
            confidence: 0.95,
            resamples: 10_000,
            bootstrap_seed: 0,
        }
    }
}

/// Which way a change went, once it is judged real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shift {
    Up,
    Down,
    /// No change, or one within the tolerance / noise band / significance.
    None,
}

/// What the paired comparison found.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    pub n: usize,
    pub mean_baseline: f64,
    pub mean_current: f64,
    /// mean(d).
    pub change: f64,
    /// Bootstrap interval of mean(d).
    pub ci: (f64, f64),
    /// Two-sided p-value of the paired t-test.
    pub p: f64,
    /// Half-width of the noise band, in the metric's units.
    pub band: f64,
    pub shift: Shift,
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Two-sided p-value of the paired t-test on `d` (n >= 2).
pub fn paired_t_p(d: &[f64]) -> f64 {
    let n = d.len();
    assert!(n >= 2, "a paired t-test needs at least two pairs");
    let m = mean(d);
    let var = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    if var == 0.0 {
        return if m == 0.0 { 1.0 } else { 0.0 };
    }
    let t = m / (var / n as f64).sqrt();
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("n - 1 >= 1 degrees of freedom");
    (2.0 * (1.0 - dist.cdf(t.abs()))).clamp(0.0, 1.0)
}

/// Percentile bootstrap interval of mean(d) at `confidence`, resampling
/// with a stream derived from `(seed, label)`.
pub fn bootstrap_mean_ci(
    d: &[f64],
    confidence: f64,
    resamples: usize,
    seed: u64,
    label: &str,
) -> (f64, f64) {
    let n = d.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SeedTree::new(seed).stream(&format!("check-bootstrap/{label}"));
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let mut s = 0.0;
            for _ in 0..n {
                s += d[rng.random_range(0..n)];
            }
            s / n as f64
        })
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let alpha = (1.0 - confidence).clamp(0.0, 1.0);
    let at = |q: f64| {
        let i = ((q * means.len() as f64).floor() as usize).min(means.len() - 1);
        means[i]
    };
    (at(alpha / 2.0), at(1.0 - alpha / 2.0))
}

/// The two-stage comparison of paired samples (same seeds, same order).
pub fn compare_paired(
    baseline: &[f64],
    current: &[f64],
    noise: f64,
    abs_noise: f64,
    settings: &TestSettings,
    label: &str,
) -> Paired {
    assert_eq!(baseline.len(), current.len(), "samples are paired by seed");
    let d: Vec<f64> = current.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let n = d.len();
    let mean_baseline = mean(baseline);
    let change = mean(&d);
    let p = paired_t_p(&d);
    let ci = bootstrap_mean_ci(
        &d,
        settings.confidence,
        settings.resamples,
        settings.bootstrap_seed,
        label,
    );
    let band = (noise * mean_baseline.abs()).max(abs_noise);
    let shift = if p >= settings.significance {
        Shift::None
    } else if ci.0 > band {
        Shift::Up
    } else if ci.1 < -band {
        Shift::Down
    } else {
        Shift::None
    };
    Paired {
        n,
        mean_baseline,
        mean_current: mean(current),
        change,
        ci,
        p,
        band,
        shift,
    }
}

/// A single-seed comparison: exact, or within `max(tolerance * |baseline|,
/// abs_tolerance)`.
pub fn compare_exact(baseline: f64, current: f64, tolerance: f64, abs_tolerance: f64) -> Shift {
    let allowed = (tolerance * baseline.abs()).max(abs_tolerance);
    let d = current - baseline;
    if d == 0.0 || d.abs() <= allowed {
        Shift::None
    } else if d > 0.0 {
        Shift::Up
    } else {
        Shift::Down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_t_matches_a_hand_computed_value() {
        // d = 1, 2, 3, 4: mean 2.5, sd 1.2910, t = 3.873 with 3 df: p = 0.0305.
        let p = paired_t_p(&[1.0, 2.0, 3.0, 4.0]);
        assert!((p - 0.0305).abs() < 5e-4, "{p}");
        assert_eq!(paired_t_p(&[0.0, 0.0, 0.0]), 1.0);
        assert_eq!(paired_t_p(&[2.0, 2.0, 2.0]), 0.0);
        // Symmetric noise around 0: far from significant.
        assert!(paired_t_p(&[1.0, -1.0, 2.0, -2.0]) > 0.9);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let d: Vec<f64> = (0..30)
            .map(|i| 0.5 + ((i * 37) % 101) as f64 / 101.0)
            .collect();
        let a = bootstrap_mean_ci(&d, 0.95, 2000, 7, "x");
        let b = bootstrap_mean_ci(&d, 0.95, 2000, 7, "x");
        assert_eq!(a, b, "same seed and label, same interval");
        let c = bootstrap_mean_ci(&d, 0.95, 2000, 8, "x");
        assert_ne!(a, c);
        let m = d.iter().sum::<f64>() / d.len() as f64;
        assert!(a.0 < m && m < a.1, "{a:?} around {m}");
        assert!(a.0 >= 0.5 && a.1 <= 1.5);
        assert_ne!(
            a,
            bootstrap_mean_ci(&d, 0.95, 2000, 7, "y"),
            "labels pick streams"
        );
    }

    #[test]
    fn two_stages() {
        let s = TestSettings::default();
        let base = [100.0, 110.0, 90.0, 105.0, 95.0, 100.0, 102.0, 98.0];
        // +20 on every seed, band 5 % of 100: up.
        let up: Vec<f64> = base.iter().map(|b| b + 20.0).collect();
        assert_eq!(
            compare_paired(&base, &up, 0.05, 0.0, &s, "a").shift,
            Shift::Up
        );
        // +2 on every seed: significant (p = 0) but inside the 5 % band.
        let small: Vec<f64> = base.iter().map(|b| b + 2.0).collect();
        let r = compare_paired(&base, &small, 0.05, 0.0, &s, "a");
        assert_eq!(r.p, 0.0);
        assert_eq!(r.shift, Shift::None);
        // Large but inconsistent changes: not significant.
        let noisy: Vec<f64> = base
            .iter()
            .enumerate()
            .map(|(i, b)| if i % 2 == 0 { b + 40.0 } else { b - 38.0 })
            .collect();
        let r = compare_paired(&base, &noisy, 0.0, 0.0, &s, "a");
        assert!(r.p > 0.5, "{r:?}");
        assert_eq!(r.shift, Shift::None);
        // Down, outside an absolute band.
        let down: Vec<f64> = base.iter().map(|b| b - 10.0).collect();
        assert_eq!(
            compare_paired(&base, &down, 0.0, 5.0, &s, "a").shift,
            Shift::Down
        );
    }

    #[test]
    fn exact_and_tolerance() {
        assert_eq!(compare_exact(10.0, 10.0, 0.0, 0.0), Shift::None);
        assert_eq!(compare_exact(10.0, 10.5, 0.0, 0.0), Shift::Up);
        assert_eq!(compare_exact(10.0, 10.5, 0.05, 0.0), Shift::None);
        assert_eq!(compare_exact(0.0, 0.4, 0.5, 0.5), Shift::None);
        assert_eq!(compare_exact(10.0, 9.0, 0.05, 0.0), Shift::Down);
    }
}
