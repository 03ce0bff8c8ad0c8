//! The live driver's clock: the one module of the library that reads the
//! wall clock (`Instant`). Everything else sees [`SimTime`], nanoseconds
//! since the start of the run, exactly as in the simulator.

use std::time::{Duration, Instant};

use crate::time::{SimDuration, SimTime};

/// A monotonic clock whose zero is the start of the run.
#[derive(Clone, Copy, Debug)]
pub struct LiveClock {
    origin: Instant,
}

impl LiveClock {
    /// Starts the clock now.
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        LiveClock {
            origin: Instant::now(),
        }
    }

    /// Time since the start of the run.
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> SimTime {
        let d = Instant::now().saturating_duration_since(self.origin);
        SimTime(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The tokio instant at which the run reaches `t` (for timers).
    pub fn deadline(&self, t: SimTime) -> tokio::time::Instant {
        let origin = tokio::time::Instant::from_std(self.origin);
        origin
            .checked_add(Duration::from_nanos(t.0))
            // Far beyond any run: a year from the origin is "never".
            .unwrap_or_else(|| origin + Duration::from_secs(365 * 24 * 3600))
    }
}

/// A stopwatch for spans measured inside IO tasks (connect, round trip).
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    #[allow(clippy::disallowed_methods)]
    pub fn start() -> Self {
        Stopwatch(Instant::now())
    }

    #[allow(clippy::disallowed_methods)]
    pub fn elapsed(&self) -> SimDuration {
        SimDuration(u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_monotonic_and_starts_near_zero() {
        let c = LiveClock::start();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a < SimTime(1_000_000_000), "{a:?}");
        let far = c.deadline(SimTime::NEVER);
        assert!(far > c.deadline(SimTime(1)));
    }
}
