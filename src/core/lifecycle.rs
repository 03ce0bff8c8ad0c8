//! Connection lifecycle knobs shared by every sizing rule: warm-up, idle
//! reaping, lifetime, validation, keepalive, health checks, creation limits
//! and backoff, who pays the connect latency, idle order, what happens to a
//! request handed a broken connection, and the waiters' discipline.
//!
//! These are validated domain values (the TOML layer is `config::policy`).
//! `Lifecycle::default()` is a pool with every optional mechanism off: what
//! the M/M/c validation cases need (a pool that only queues).

use crate::time::SimDuration;

/// Who opens a connection and who waits for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Creator {
    /// A background creator opens connections (HikariCP, bb8, PgBouncer);
    /// an opened connection goes to whichever request waits longest, so a
    /// request never waits on a connect when another connection frees first.
    #[default]
    Background,
    /// The request that found no idle connection opens one and waits for
    /// exactly that connection (deadpool): it pays the whole connect latency.
    Caller,
}

/// Which idle connection is handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IdleOrder {
    /// Most recently used first: a few connections carry the load, the rest
    /// stay idle long enough to be reaped (PgBouncer, bb8 Lifo).
    #[default]
    Lifo,
    /// Least recently used first: load spreads, every connection stays warm
    /// (deadpool, bb8 default).
    Fifo,
}

/// What happens to a request handed a connection that turns out broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnBroken {
    /// The request fails (counted in `failed`).
    #[default]
    Fail,
    /// The request goes back to the head of its queue and waits for another
    /// connection (within its original deadline).
    Retry,
}

/// Order in which waiters are served when a connection frees.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Discipline {
    /// Oldest waiter of the highest non-empty priority (FIFO within one).
    #[default]
    Strict,
    /// A waiter gains one priority level per `step` waited: the head of each
    /// queue competes with rank `index - waited / step`; ties go to the
    /// higher priority. Stops starvation of low priority under load.
    Aging { step: SimDuration },
    /// Reserved shares of the pool per priority (high, normal, low), summing
    /// to 1. A class's limit is `max(1, ceil(size x share))`; a class at or
    /// over its limit is passed over while another class under its limit
    /// waits, otherwise strict order applies (idle share is borrowed).
    Shares { shares: [f64; 3] },
}

/// Exponential backoff after a failed connect (HikariCP: 10 ms doubling to 5 s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub initial: SimDuration,
    pub max: SimDuration,
    /// Factor applied after each consecutive failure (>= 1).
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: SimDuration::from_millis(10),
            max: SimDuration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// Delay before the next attempt after `failures` consecutive failures
    /// (>= 1): initial x multiplier^(failures - 1), capped at max.
    pub fn delay(&self, failures: u32) -> SimDuration {
        let f = self
            .multiplier
            .powi(failures.saturating_sub(1).min(64) as i32);
        let ns = (self.initial.as_nanos() as f64 * f).min(self.max.as_nanos() as f64);
        SimDuration(ns.round() as u64)
    }
}

/// Validation of an idle connection when it is checked out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    /// A connection idle for less than this is handed out unchecked
    /// (HikariCP's alive-bypass window, 500 ms; PgBouncer server_check_delay).
    pub bypass: SimDuration,
    /// A check that takes longer fails (HikariCP validationTimeout, 5 s).
    pub timeout: SimDuration,
}

/// Periodic health checks of idle connections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthCheck {
    /// Every `interval`, each idle connection is checked (seed: 15 s).
    pub interval: SimDuration,
    /// A check that takes longer fails (seed: 5 s).
    pub timeout: SimDuration,
    /// Consecutive failed checks after which the connection is declared
    /// broken, closed and replaced (seed: 3). Failed attempts are retried at
    /// once.
    pub retries: u32,
}

/// CoDel-style early drop of waiters (Elixir DBConnection queue_target /
/// queue_interval): if every checkout in an interval waited longer than
/// `target`, the queue is overloaded for the next interval and waiters older
/// than 2 x target are failed fast (counted as timed out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QueueDrop {
    pub target: SimDuration,
    pub interval: SimDuration,
}

/// Retirement of connections by age.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lifetime {
    /// A connection older than this is closed when idle (an active one when
    /// it is released) and replaced (HikariCP maxLifetime 30 min).
    pub max: SimDuration,
    /// Each connection's lifetime is `max x (1 - u)`, u uniform in
    /// [0, jitter) (HikariCP: 2.5 %). 0 = no jitter.
    pub jitter: f64,
    /// PgBouncer's rule: retirements are spaced at least `max / size` apart,
    /// so connections opened together do not all reconnect together.
    pub stagger: bool,
}

/// All lifecycle knobs. Every optional mechanism is off by default.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lifecycle {
    /// Keep at least this many idle connections (bounded by max), opening
    /// more as they are used (HikariCP minimumIdle, bb8 min_idle). 0 = off.
    pub min_idle: u32,
    /// Close connections idle longer than this, never below `size.min`;
    /// the pool's target shrinks with them. Checked every `housekeeping`.
    pub idle_timeout: Option<SimDuration>,
    /// Period of the housekeeper that reaps idle connections and refills
    /// `min_idle` (HikariCP 30 s, PgBouncer 1/3 s).
    pub housekeeping: SimDuration,
    pub lifetime: Option<Lifetime>,
    /// Close a connection after this many uses (1 = a new connection per
    /// request: the no-pool baseline; PgBouncer server_lifetime = 0).
    pub max_uses: Option<u32>,
    pub validation: Option<Validation>,
    /// Check each idle connection after it has been idle this long
    /// (HikariCP keepaliveTime). None = off.
    pub keepalive: Option<SimDuration>,
    pub health: Option<HealthCheck>,
    /// Connects in flight at once (HikariCP and PgBouncer: 1). None = unbounded.
    pub max_concurrent_creates: Option<u32>,
    /// Connects start at least this far apart (a warm-up stagger: a pool
    /// of 25 with 100 ms opens over 2.5 s instead of in one burst, so a
    /// fleet restarting together stays under a server's connect rate
    /// limit). None = as fast as the other limits allow.
    pub create_interval: Option<SimDuration>,
    pub create_backoff: Backoff,
    pub creator: Creator,
    pub idle_order: IdleOrder,
    pub on_broken: OnBroken,
    pub discipline: Discipline,
    pub queue_drop: Option<QueueDrop>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            min_idle: 0,
            idle_timeout: None,
            housekeeping: SimDuration::from_secs(30),
            lifetime: None,
            max_uses: None,
            validation: None,
            keepalive: None,
            health: None,
            max_concurrent_creates: None,
            create_interval: None,
            create_backoff: Backoff::default(),
            creator: Creator::Background,
            idle_order: IdleOrder::Lifo,
            on_broken: OnBroken::Fail,
            discipline: Discipline::Strict,
            queue_drop: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let b = Backoff::default();
        let ms = |n| b.delay(n).as_nanos() / 1_000_000;
        assert_eq!(
            (1..=11).map(ms).collect::<Vec<_>>(),
            vec![10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5000, 5000]
        );
    }
}
