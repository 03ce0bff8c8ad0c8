//! The pool state machine (sans-IO).
//!
//! The pool owns connections and wait queues and records metrics. It never
//! performs IO: each call takes `now` and pushes [`Effect`]s that the driver
//! carries out (open a connection, start a query, arm a timer...) and answers
//! with further calls (`connected`, `release`, `expire`...).
//!
//! ```text
//!   acquire ──► idle connection? ──yes──► (validate?) ──► Start{conn} ──► driver runs the query ──► release
//!                    │no
//!                    ▼
//!   wait queue [high | normal | low], FIFO within a priority, each waiter with its deadline
//!        │ a connection is released or opened: the discipline picks the waiter
//!        │ its deadline passes (timer per priority queue): TimedOut
//! ```
//!
//! Connection states: Opening -> Idle <-> Active, Idle -> Checking -> Idle
//! (health checks, keepalives, validation on checkout), then Closing ->
//! (slot free). The pool's *size* counts opening + idle + active + checking
//! connections and never exceeds `max`; the policy sets a *target* in
//! [min, max].
//!
//! # Lifecycle knobs ([`Lifecycle`]), and how they compose with the target
//!
//! - `min_idle`: whenever the pool hands out an idle connection (and at every
//!   housekeeping run) it raises its target to
//!   `clamp(max(target, active + min_idle), min, max)`, so at least `min_idle`
//!   connections stay idle while the size is below `max` (HikariCP
//!   minimumIdle). The raised target is the target: the policy sees it, and
//!   the surplus goes when the policy resizes down or the idle timeout reaps
//!   it (a connection is never closed just because demand fell).
//! - `idle_timeout`: every `housekeeping`, idle connections unused for that
//!   long are closed (reason `Idle`), never below `size.min` nor below
//!   `min_idle` idle connections; the target shrinks with each (else the
//!   pool would reopen them).
//! - `lifetime`: each connection gets a deadline `max x (1 - u x jitter)`,
//!   u uniform in [0, 1) from the pool's seeded stream. With `stagger`,
//!   retirements are at least `max / target` apart (PgBouncer). An idle
//!   connection is closed at its deadline (reason `Lifetime`) and replaced;
//!   a busy one (active, being checked) is marked and closed when it frees.
//! - `max_uses`: a connection freed after its n-th query is closed (reason
//!   `MaxUses`). A background creator replaces it at once; with the caller
//!   creator the slot is left to the next request that finds no idle
//!   connection (it opens its own: the no-pool baseline with `max_uses = 1`).
//! - `validation`: a connection handed out from the idle list that has been
//!   idle for at least `bypass` (since its last query or check) is checked
//!   first ([`Effect::Check`]); the request waits (its wait includes the
//!   check). A failed check closes the connection (`Broken`), replaces it,
//!   and the request takes another idle connection or returns to the head
//!   of its queue (timed out if its deadline has passed).
//! - `keepalive`: an idle connection is checked once it has been idle that
//!   long (one pool timer, armed for the longest-idle connection). A failed
//!   keepalive breaks the connection at once. Checks time out after the
//!   validation timeout, else the health check's, else 5 s.
//! - `health`: every `interval`, every idle connection leaves the idle list
//!   and is checked; a failure is retried at once, and `retries` consecutive
//!   failures close it (`Broken`) and replace it. A connection that passes
//!   any check rejoins the pool as if just released (it may go straight to
//!   a waiter).
//! - `create_interval`: connects start at least that far apart (held back
//!   by the same gate as the backoff, released by a `ConnectRetry` timer);
//! - `max_concurrent_creates`: at most that many connects are in flight;
//!   the others start as connects end. Connections not yet started are not
//!   counted anywhere: the policy view's `opening` is the connects in
//!   flight, and `target - size` is what is still to be opened.
//! - `create_backoff`: after a failed connect, no connect starts until
//!   `backoff.delay(consecutive failures)` has passed; a pool timer then
//!   reopens what is missing (`connect_retries` counts the connects started
//!   while failures are unresolved). A successful connect resets the count.
//! - `creator`: `Background` opens to the target and hands an opened
//!   connection to whichever request waits longest. `Caller`: a request that
//!   finds no idle connection while the pool is below target opens one and
//!   is bound to it: it gets exactly that connection when it opens, or fails
//!   ([`Effect::Failed`]) when the connect fails. Warm-up, policy growth,
//!   `min_idle` and replacements of broken or retired connections still
//!   happen in the background; `max_uses` closures and failed caller
//!   connects are left to the callers.
//! - `idle_order`: `Lifo` hands out the most recently used idle connection,
//!   `Fifo` the least recently used; shrinking always closes the longest idle.
//! - `on_broken`: `Retry` sends a request whose connection broke under it
//!   ([`Pool::fail`] with `usable = false`) back to the head of its queue
//!   within its original deadline (`broken_retries`); `Fail` counts it failed.
//!
//! With every knob off the hot paths (acquire from idle, release to a waiter
//! or to idle) take the same branches as a pool without lifecycle.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::Rng;

use crate::core::lifecycle::{Creator, IdleOrder, Lifecycle, OnBroken};
use crate::core::metrics::{
    ClassMetrics, CloseReason, Integrals, Mark, PoolCounters, Sample, WindowCounts,
};
use crate::core::policy::{Decision, Policy, PolicyWindow, PoolView, Signal, Wants};
use crate::core::queue::WaitQueue;
pub use crate::core::queue::Waiter;
use crate::core::request::Priority;
use crate::rng::Stream;
use crate::time::{SimDuration, SimTime};

/// Index of a connection slot; stable while the connection lives.
pub type ConnId = u32;

/// Timeout of keepalive checks when neither validation nor health checks
/// give one (HikariCP validationTimeout).
const DEFAULT_CHECK_TIMEOUT: SimDuration = SimDuration(5_000_000_000);

/// Validated pool limits and acquire behaviour.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolConfig {
    pub min: u32,
    pub max: u32,
    /// Connections opened at start (in [min, max]).
    pub initial: u32,
    /// Acquire timeout per priority (high, normal, low); `INFINITE` = none.
    pub acquire_timeout: [SimDuration; 3],
    /// Waiters beyond this are rejected at once.
    pub max_waiters: u32,
    /// Warm-up, reaping, lifetime, checks, creation, idle order, discipline.
    pub lifecycle: Lifecycle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Slot not in use.
    Free,
    Opening,
    Idle,
    Active,
    /// Out of the idle list while a check runs on it (health check,
    /// keepalive, validation on checkout); counted in the size.
    Checking,
    /// Being closed; no longer counted in the size.
    Closing,
}

/// Why a connection is being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CheckKind {
    /// Validation on checkout: a request is bound to the connection.
    Validation,
    Keepalive,
    /// A periodic health check, after `failed` consecutive failed attempts.
    Health {
        failed: u32,
    },
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    state: ConnState,
    /// When the current state began (used for connect time).
    since: SimTime,
    acquired_at: SimTime,
    req_arrival: SimTime,
    req_priority: Priority,
    /// Queries running when the current one started (itself included).
    inflight: u32,
}

/// Lifecycle state of a connection, kept apart from [`Conn`] so that the
/// hot path touches only what it needs.
#[derive(Clone, Copy, Debug)]
struct Life {
    /// Incremented each time the slot gets a new connection, so that timers
    /// set for a previous occupant are recognised as stale.
    generation: u32,
    /// When it joined the idle list (after a query, its open, or a passed
    /// check): the idle list's order, the validation bypass and keepalive.
    idle_since: SimTime,
    /// When its last query ended (or it opened): idle reaping.
    used_at: SimTime,
    /// Queries handed to it.
    uses: u32,
    /// Its lifetime passed while it was busy: close it when it frees.
    retire: bool,
    check: CheckKind,
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Effect<T> {
    /// Open a connection in slot `conn`; answer with `connected` or
    /// `connect_error`.
    Open(ConnId),
    /// Run the request on `conn`; answer with `release` when its query ends.
    Start {
        conn: ConnId,
        priority: Priority,
        waited: SimDuration,
        payload: T,
    },
    /// The request's acquire deadline passed.
    TimedOut {
        priority: Priority,
        waited: SimDuration,
        payload: T,
    },
    /// The request was refused at once: the wait queue is full.
    Rejected { priority: Priority, payload: T },
    /// Close `conn`; answer with `closed`.
    Close { conn: ConnId, reason: CloseReason },
    /// Call `expire(priority)` at `at` (one timer per priority queue).
    ArmTimer { priority: Priority, at: SimTime },
    /// Call `wake` at `at` (the pool's own timers: policy ticks,
    /// housekeeping, health checks, retirements, connect retries). A wake
    /// that finds nothing due is ignored, so stale ones are harmless.
    Wake { at: SimTime },
    /// Check that `conn` (idle, taken out of the idle list) still works:
    /// run a trivial query with `timeout`; answer with `checked`.
    Check { conn: ConnId, timeout: SimDuration },
    /// The request failed without running its query (its connect failed,
    /// or it was handed a broken connection and may not retry).
    Failed {
        priority: Priority,
        waited: SimDuration,
        payload: T,
    },
}

/// The pool's own timers, ordered by (time, sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    PolicyTick,
    /// The early-drop rule's interval ended.
    QueueInterval,
    /// Idle reaping and the `min_idle` refill.
    Housekeeping,
    /// Check every idle connection.
    Health,
    /// The longest-idle connection may be due for a keepalive.
    Keepalive,
    /// The connect backoff ended: open what is missing.
    ConnectRetry,
    /// The lifetime of the connection in `conn` (its `generation`) ends.
    Retire {
        conn: ConnId,
        generation: u32,
    },
}

/// The pool. `T` is the driver's payload carried by each request (the
/// simulator's service work, the live driver's reply channel).
pub struct Pool<T> {
    cfg: PoolConfig,
    policy: Box<dyn Policy>,
    wants: Wants,
    policy_interval: Option<SimDuration>,
    /// Jitter and other draws of the lifecycle (seeded by the driver).
    rng: Stream,
    timers: BinaryHeap<Reverse<(SimTime, u64, Timer)>>,
    timer_seq: u64,
    /// The wake-up last asked of the driver (None: none pending).
    wake_armed: Option<SimTime>,
    conns: Vec<Conn>,
    life: Vec<Life>,
    /// The request bound to each slot: a caller waiting for its connect, or
    /// a request waiting for the validation of its connection.
    bound: Vec<Option<(Priority, Waiter<T>)>>,
    free_slots: Vec<ConnId>,
    /// Idle connections in the order they went idle (the longest idle at
    /// the front): LIFO hands out the back, FIFO the front; shrinking closes
    /// from the front.
    idle: VecDeque<ConnId>,
    waiters: WaitQueue<T>,
    /// Running queries per priority.
    active_by: [u32; 3],
    target: u32,
    size: u32,
    opening: u32,
    active: u32,
    checking: u32,
    closing: u32,
    /// Requests bound to a connection (see `bound`).
    bound_n: u32,
    /// Slots below the target left to callers to open (caller creator).
    lazy: u32,
    /// Acquire needs nothing but the idle list's back (no validation, LIFO,
    /// no min_idle): the fast path.
    plain_checkout: bool,
    /// A freed connection needs no retirement test (no max_uses, lifetime
    /// or idle timeout): the fast path.
    plain_release: bool,
    /// Count uses (max_uses) / note when connections go idle (validation,
    /// keepalive).
    track_uses: bool,
    track_idle: bool,
    create_limit: u32,
    /// Consecutive failed connects, and no connect starts before `hold_until`.
    connect_failures: u32,
    hold_until: SimTime,
    last_retirement: Option<SimTime>,
    keepalive_armed: bool,
    /// Waiters the queue dropped early, not yet signalled to the policy.
    drops_pending: [u32; 3],
    size_min_seen: u32,
    size_max_seen: u32,
    started: bool,
    last: SimTime,
    integrals: Integrals,
    classes: [ClassMetrics; 3],
    counters: PoolCounters,
    policy_mark: Mark,
    sample_mark: Mark,
}

impl<T> Pool<T> {
    /// A pool run by `policy`; `rng` feeds the lifecycle's random draws
    /// (lifetime jitter), so a seeded driver gets a reproducible pool.
    pub fn new(cfg: PoolConfig, policy: Box<dyn Policy>, rng: Stream) -> Self {
        assert!(cfg.min <= cfg.initial && cfg.initial <= cfg.max && cfg.max >= 1);
        let lc = cfg.lifecycle;
        Pool {
            target: cfg.initial,
            wants: policy.wants(),
            policy_interval: policy.interval().filter(|d| d.0 > 0),
            policy,
            rng,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            wake_armed: None,
            waiters: WaitQueue::new(lc.discipline, lc.queue_drop),
            active_by: [0; 3],
            conns: Vec::new(),
            life: Vec::new(),
            bound: Vec::new(),
            free_slots: Vec::new(),
            idle: VecDeque::new(),
            size: 0,
            opening: 0,
            active: 0,
            checking: 0,
            closing: 0,
            bound_n: 0,
            lazy: 0,
            plain_checkout: lc.validation.is_none()
                && lc.idle_order == IdleOrder::Lifo
                && lc.min_idle == 0,
            plain_release: lc.max_uses.is_none()
                && lc.lifetime.is_none()
                && lc.idle_timeout.is_none(),
            track_uses: lc.max_uses.is_some(),
            track_idle: lc.validation.is_some() || lc.keepalive.is_some(),
            create_limit: lc.max_concurrent_creates.unwrap_or(u32::MAX).max(1),
            connect_failures: 0,
            hold_until: SimTime::ZERO,
            last_retirement: None,
            keepalive_armed: false,
            drops_pending: [0; 3],
            cfg,
            size_min_seen: u32::MAX,
            size_max_seen: 0,
            started: false,
            last: SimTime::ZERO,
            integrals: Integrals::default(),
            classes: Default::default(),
            counters: PoolCounters::default(),
            policy_mark: Mark::default(),
            sample_mark: Mark::default(),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Opens the initial connections and starts the pool's timers.
    pub fn start(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        self.advance(now);
        self.started = true;
        self.policy_mark = self.mark(now);
        self.sample_mark = self.policy_mark;
        self.top_up_min_idle();
        self.reconcile(now, fx);
        self.note_size();
        if let Some(iv) = self.policy_interval {
            self.schedule(now + iv, Timer::PolicyTick, fx);
        }
        if let Some(iv) = self.waiters.interval() {
            self.schedule(now + iv, Timer::QueueInterval, fx);
        }
        let lc = self.cfg.lifecycle;
        if (lc.idle_timeout.is_some() || lc.min_idle > 0) && lc.housekeeping.0 > 0 {
            self.schedule(now + lc.housekeeping, Timer::Housekeeping, fx);
        }
        if let Some(h) = lc.health.filter(|h| h.interval.0 > 0) {
            self.schedule(now + h.interval, Timer::Health, fx);
        }
    }

    /// A wake-up asked with [`Effect::Wake`]: runs the pool's timers that
    /// are due. A stale wake-up (before the one last asked) does nothing.
    pub fn wake(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        if self.wake_armed.is_none_or(|w| w > now) {
            return;
        }
        self.wake_armed = None;
        self.advance(now);
        while let Some(&Reverse((at, _, timer))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.on_timer(now, timer, fx);
        }
        self.flush_drops(now, fx);
        // Timers set above asked for their own wake-ups; an older one may
        // be earlier.
        if let Some(&Reverse((at, _, _))) = self.timers.peek() {
            if self.wake_armed.is_none_or(|w| at < w) {
                self.wake_armed = Some(at);
                fx.push(Effect::Wake { at });
            }
        }
    }

    fn on_timer(&mut self, now: SimTime, timer: Timer, fx: &mut Vec<Effect<T>>) {
        match timer {
            Timer::PolicyTick => {
                let view = self.policy_view(now);
                let decision = self.policy.decide(now, &view, Signal::Tick);
                self.apply(now, decision, fx);
                if let Some(iv) = self.policy_interval {
                    self.schedule(now + iv, Timer::PolicyTick, fx);
                }
            }
            Timer::QueueInterval => {
                let classes = &mut self.classes;
                let drops = &mut self.drops_pending;
                let mut dropped =
                    |p: Priority, w: Waiter<T>| drop_waiter(classes, drops, fx, now, p, w);
                self.waiters.on_interval(now, &mut dropped);
                if let Some(iv) = self.waiters.interval() {
                    self.schedule(now + iv, Timer::QueueInterval, fx);
                }
            }
            Timer::Housekeeping => {
                self.reap_idle(now, fx);
                self.top_up_min_idle();
                self.reconcile(now, fx);
                let every = self.cfg.lifecycle.housekeeping;
                self.schedule(now + every, Timer::Housekeeping, fx);
            }
            Timer::Health => {
                while let Some(conn) = self.idle.pop_front() {
                    self.start_check(conn, CheckKind::Health { failed: 0 }, fx);
                }
                if let Some(h) = self.cfg.lifecycle.health {
                    self.schedule(now + h.interval, Timer::Health, fx);
                }
            }
            Timer::Keepalive => {
                self.keepalive_armed = false;
                let Some(ka) = self.cfg.lifecycle.keepalive else {
                    return;
                };
                while let Some(&conn) = self.idle.front() {
                    if now < self.life[conn as usize].idle_since + ka {
                        break;
                    }
                    self.idle.pop_front();
                    self.start_check(conn, CheckKind::Keepalive, fx);
                }
                if let Some(&conn) = self.idle.front() {
                    let at = self.life[conn as usize].idle_since + ka;
                    self.keepalive_armed = true;
                    self.schedule(at, Timer::Keepalive, fx);
                }
            }
            Timer::ConnectRetry => self.reconcile(now, fx),
            Timer::Retire { conn, generation } => self.retire(now, conn, generation, fx),
        }
    }

    /// Sets a pool timer, asking the driver for an earlier wake-up if needed.
    fn schedule(&mut self, at: SimTime, timer: Timer, fx: &mut Vec<Effect<T>>) {
        self.timers.push(Reverse((at, self.timer_seq, timer)));
        self.timer_seq += 1;
        if self.wake_armed.is_none_or(|w| at < w) {
            self.wake_armed = Some(at);
            fx.push(Effect::Wake { at });
        }
    }

    /// Asks the policy about an event signal and applies its decision.
    fn consult(&mut self, now: SimTime, signal: Signal, fx: &mut Vec<Effect<T>>) {
        let view = self.view(now, self.policy_window_stub());
        let decision = self.policy.decide(now, &view, signal);
        self.apply(now, decision, fx);
    }

    /// Event signals see no window (only ticks have one).
    fn policy_window_stub(&self) -> PolicyWindow {
        PolicyWindow::default()
    }

    /// Signals waiters dropped early by the queue (`drop_waiter`) to the
    /// policy, once the pool is consistent again.
    fn flush_drops(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        while self.drops_pending != [0; 3] {
            let drops = std::mem::take(&mut self.drops_pending);
            if !self.wants.dropped {
                return;
            }
            for p in Priority::ALL {
                for _ in 0..drops[p.index()] {
                    self.consult(now, Signal::Dropped { priority: p }, fx);
                }
            }
        }
    }

    /// A request arrives and asks for a connection.
    #[inline]
    pub fn acquire(
        &mut self,
        now: SimTime,
        priority: Priority,
        payload: T,
        fx: &mut Vec<Effect<T>>,
    ) {
        self.advance(now);
        let p = priority.index();
        self.classes[p].arrived += 1;
        if self.plain_checkout {
            if let Some(conn) = self.idle.pop_back() {
                self.hand_out(now, conn, priority, now, payload, fx);
                return;
            }
        }
        self.acquire_slow(now, priority, payload, fx);
    }

    /// `acquire` past the fast path: checkout with lifecycle rules, a
    /// caller-opened connection, or the wait queue.
    #[inline(never)]
    fn acquire_slow(
        &mut self,
        now: SimTime,
        priority: Priority,
        payload: T,
        fx: &mut Vec<Effect<T>>,
    ) {
        let p = priority.index();
        let deadline = now.saturating_add(self.cfg.acquire_timeout[p]);
        let mut w = Waiter {
            arrival: now,
            deadline,
            payload,
        };
        if !self.plain_checkout {
            match self.checkout(now, priority, w, fx) {
                None => return,
                Some(back) => w = back,
            }
        }
        self.classes[p].found_busy += 1;
        if self.cfg.lifecycle.creator == Creator::Caller
            && self.size < self.target
            && self.can_open(now)
        {
            // deadpool: the caller opens its own connection and waits for it.
            self.lazy = self.lazy.saturating_sub(1);
            self.open_one(now, Some((priority, w)), fx);
            self.note_size();
            return;
        }
        if self.waiters.len() >= self.cfg.max_waiters {
            self.classes[p].rejected += 1;
            fx.push(Effect::Rejected {
                priority,
                payload: w.payload,
            });
            return;
        }
        if let Some(at) = self.waiters.push(priority, w) {
            fx.push(Effect::ArmTimer { priority, at });
        }
        if self.wants.queued {
            self.consult(now, Signal::Queued { priority }, fx);
        }
    }

    /// Hands an idle connection to `w` (validating it first when due);
    /// gives `w` back when no connection is idle.
    fn checkout(
        &mut self,
        now: SimTime,
        priority: Priority,
        w: Waiter<T>,
        fx: &mut Vec<Effect<T>>,
    ) -> Option<Waiter<T>> {
        let conn = match self.cfg.lifecycle.idle_order {
            IdleOrder::Lifo => self.idle.pop_back(),
            IdleOrder::Fifo => self.idle.pop_front(),
        };
        let Some(conn) = conn else {
            return Some(w);
        };
        let idle_since = self.life[conn as usize].idle_since;
        if self
            .cfg
            .lifecycle
            .validation
            .is_some_and(|v| now - idle_since >= v.bypass)
        {
            self.bound[conn as usize] = Some((priority, w));
            self.bound_n += 1;
            self.start_check(conn, CheckKind::Validation, fx);
        } else {
            self.hand_out(now, conn, priority, w.arrival, w.payload, fx);
        }
        if self.cfg.lifecycle.min_idle > 0 && self.top_up_min_idle() {
            self.reconcile(now, fx);
        }
        None
    }

    /// Sends a request back for a connection (its connection broke, or its
    /// validation failed): another idle connection, else the head of its
    /// queue; timed out if its deadline has passed.
    fn requeue(&mut self, now: SimTime, priority: Priority, w: Waiter<T>, fx: &mut Vec<Effect<T>>) {
        if w.deadline <= now {
            let waited = now - w.arrival;
            let m = &mut self.classes[priority.index()];
            m.timed_out += 1;
            m.wait.record(waited);
            fx.push(Effect::TimedOut {
                priority,
                waited,
                payload: w.payload,
            });
            self.drops_pending[priority.index()] += 1;
            return;
        }
        if let Some(w) = self.checkout(now, priority, w, fx) {
            if let Some(at) = self.waiters.push_front(priority, w) {
                fx.push(Effect::ArmTimer { priority, at });
            }
        }
    }

    /// The query on `conn` finished; the connection returns to the pool.
    #[inline]
    pub fn release(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) {
        self.advance(now);
        let c = self.conns[conn as usize];
        debug_assert_eq!(
            c.state,
            ConnState::Active,
            "release of a connection not active"
        );
        let p = c.req_priority.index();
        let m = &mut self.classes[p];
        m.completed += 1;
        m.query.record(now - c.acquired_at);
        m.response.record(now - c.req_arrival);
        self.active -= 1;
        self.active_by[p] -= 1;
        if self.plain_release {
            self.reuse(now, conn, fx);
        } else {
            self.recycle(now, conn, true, fx);
        }
        if self.drops_pending != [0; 3] {
            self.flush_drops(now, fx);
        }
        if self.wants.completed {
            let signal = Signal::Completed {
                query: now - c.acquired_at,
                waited: c.acquired_at - c.req_arrival,
                inflight: c.inflight,
            };
            self.consult(now, signal, fx);
        }
    }

    /// The query on `conn` failed (live driver). A connection that still
    /// works (`usable`) returns to the pool like a release and the request
    /// counts as failed (not in the query or response distributions). A
    /// broken one is closed (reason `Broken`) and replaced at once; its
    /// request counts as failed, or with `on_broken = Retry` goes back to
    /// the head of its queue within its original deadline (counted in
    /// `broken_retries`; handed out again later, or timed out).
    ///
    /// `payload` is the request's, handed back by the driver.
    pub fn fail(
        &mut self,
        now: SimTime,
        conn: ConnId,
        usable: bool,
        payload: T,
        fx: &mut Vec<Effect<T>>,
    ) {
        self.advance(now);
        let c = self.conns[conn as usize];
        debug_assert_eq!(
            c.state,
            ConnState::Active,
            "failure on a connection not active"
        );
        let priority = c.req_priority;
        self.active -= 1;
        self.active_by[priority.index()] -= 1;
        if usable {
            self.classes[priority.index()].failed += 1;
            self.recycle(now, conn, true, fx);
        } else {
            self.close(conn, CloseReason::Broken, fx);
            if self.cfg.lifecycle.on_broken == OnBroken::Retry {
                self.counters.broken_retries += 1;
                let timeout = self.cfg.acquire_timeout[priority.index()];
                let w = Waiter {
                    arrival: c.req_arrival,
                    deadline: c.req_arrival.saturating_add(timeout),
                    payload,
                };
                self.requeue(now, priority, w, fx);
            } else {
                self.classes[priority.index()].failed += 1;
            }
            self.reconcile(now, fx);
        }
        self.flush_drops(now, fx);
    }

    /// The driver learnt that the connection in slot `conn` is gone (the
    /// server closed it: a terminated backend, a restart). An idle one is
    /// closed (reason `Broken`) and replaced at once, and `true` returned;
    /// for a connection in any other state nothing happens (`false`): an
    /// active one reports through its query ([`Pool::fail`]), one being
    /// checked through its check ([`Pool::checked`]).
    pub fn lost(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) -> bool {
        if self.conns.get(conn as usize).map(|c| c.state) != Some(ConnState::Idle) {
            return false;
        }
        self.advance(now);
        self.remove_idle(conn);
        self.close(conn, CloseReason::Broken, fx);
        self.reconcile(now, fx);
        self.flush_drops(now, fx);
        true
    }

    /// The check asked with [`Effect::Check`] on `conn` ended: `ok` when the
    /// connection answered within the timeout. A connection not being
    /// checked (a stale answer) is ignored.
    ///
    /// Passed: a validated connection goes to its request; a health-checked
    /// or kept-alive one rejoins the pool (to a waiter, or idle). Failed: a
    /// validation closes the connection (`Broken`), replaces it and sends
    /// the request back for another; a keepalive closes and replaces it; a
    /// health check is retried at once until `retries` consecutive failures.
    pub fn checked(&mut self, now: SimTime, conn: ConnId, ok: bool, fx: &mut Vec<Effect<T>>) {
        if self.conns.get(conn as usize).map(|c| c.state) != Some(ConnState::Checking) {
            return;
        }
        self.advance(now);
        self.checking -= 1;
        let kind = self.life[conn as usize].check;
        if !ok {
            if kind == CheckKind::Validation {
                self.counters.validations_failed += 1;
            } else {
                self.counters.checks_failed += 1;
            }
        }
        match kind {
            CheckKind::Validation => {
                let (priority, w) = self.bound[conn as usize]
                    .take()
                    .expect("a validated connection has its request");
                self.bound_n -= 1;
                if ok {
                    self.hand_out(now, conn, priority, w.arrival, w.payload, fx);
                } else {
                    self.close(conn, CloseReason::Broken, fx);
                    self.requeue(now, priority, w, fx);
                    self.reconcile(now, fx);
                }
            }
            CheckKind::Health { failed } if !ok => {
                let retries = self.cfg.lifecycle.health.map_or(1, |h| h.retries.max(1));
                if failed + 1 >= retries {
                    self.close(conn, CloseReason::Broken, fx);
                    self.reconcile(now, fx);
                } else {
                    self.start_check(conn, CheckKind::Health { failed: failed + 1 }, fx);
                }
            }
            CheckKind::Keepalive if !ok => {
                self.close(conn, CloseReason::Broken, fx);
                self.reconcile(now, fx);
            }
            CheckKind::Health { .. } | CheckKind::Keepalive => self.recycle(now, conn, false, fx),
        }
        self.flush_drops(now, fx);
    }

    /// The connection in slot `conn` finished opening.
    pub fn connected(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) {
        self.advance(now);
        let c = &mut self.conns[conn as usize];
        debug_assert_eq!(c.state, ConnState::Opening);
        self.counters.connect_time_ns += (now - c.since).as_nanos() as u128;
        self.counters.opened += 1;
        self.life[conn as usize].used_at = now;
        let generation = self.life[conn as usize].generation;
        self.opening -= 1;
        self.connect_failures = 0;
        if let Some(life) = self.cfg.lifecycle.lifetime {
            let u: f64 = self.rng.random();
            let factor = 1.0 - u * life.jitter.clamp(0.0, 1.0);
            let span = SimDuration((life.max.as_nanos() as f64 * factor) as u64);
            self.schedule(now + span, Timer::Retire { conn, generation }, fx);
        }
        match self.bound[conn as usize].take() {
            Some((priority, w)) => {
                self.bound_n -= 1;
                self.hand_out(now, conn, priority, w.arrival, w.payload, fx);
            }
            None => self.reuse(now, conn, fx),
        }
        if self.cfg.lifecycle.max_concurrent_creates.is_some() && self.size < self.target {
            // Creates held back by the concurrency limit.
            self.reconcile(now, fx);
        }
        self.flush_drops(now, fx);
    }

    /// Opening the connection in slot `conn` failed; the slot is freed. No
    /// connect starts before the backoff delay (`create_backoff` after this
    /// many consecutive failures); a pool timer then reopens what is
    /// missing. A caller bound to this connect fails ([`Effect::Failed`],
    /// counted in `failed`) and its slot is left to the next caller.
    pub fn connect_error(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) {
        self.advance(now);
        let c = &mut self.conns[conn as usize];
        debug_assert_eq!(c.state, ConnState::Opening);
        self.counters.connect_time_ns += (now - c.since).as_nanos() as u128;
        self.counters.connect_failed += 1;
        c.state = ConnState::Free;
        self.free_slots.push(conn);
        self.opening -= 1;
        self.size -= 1;
        self.note_size();
        self.connect_failures = self.connect_failures.saturating_add(1);
        let at = now
            + self
                .cfg
                .lifecycle
                .create_backoff
                .delay(self.connect_failures);
        self.hold_until = self.hold_until.max(at);
        self.schedule(at, Timer::ConnectRetry, fx);
        if let Some((priority, w)) = self.bound[conn as usize].take() {
            self.bound_n -= 1;
            self.lazy += 1;
            self.classes[priority.index()].failed += 1;
            fx.push(Effect::Failed {
                priority,
                waited: now - w.arrival,
                payload: w.payload,
            });
        }
        self.flush_drops(now, fx);
    }

    /// The driver finished closing `conn`.
    pub fn closed(&mut self, _now: SimTime, conn: ConnId) {
        let c = &mut self.conns[conn as usize];
        debug_assert_eq!(c.state, ConnState::Closing);
        c.state = ConnState::Free;
        self.closing -= 1;
        self.free_slots.push(conn);
    }

    /// The timer of `priority`'s queue fired: expire waiters whose deadline
    /// has passed, and re-arm for the new head.
    pub fn expire(&mut self, now: SimTime, priority: Priority, fx: &mut Vec<Effect<T>>) {
        self.advance(now);
        let p = priority.index();
        let m = &mut self.classes[p];
        let mut dropped = 0;
        let rearm = self.waiters.expire(now, priority, |w| {
            let waited = now - w.arrival;
            m.timed_out += 1;
            m.wait.record(waited);
            dropped += 1;
            fx.push(Effect::TimedOut {
                priority,
                waited,
                payload: w.payload,
            });
        });
        if let Some(at) = rearm {
            fx.push(Effect::ArmTimer { priority, at });
        }
        if self.wants.dropped {
            for _ in 0..dropped {
                self.consult(now, Signal::Dropped { priority }, fx);
            }
        }
        self.flush_drops(now, fx);
    }

    /// Applies a policy decision. Returns whether the target changed.
    pub fn apply(&mut self, now: SimTime, decision: Decision, fx: &mut Vec<Effect<T>>) -> bool {
        self.advance(now);
        let changed = match decision {
            Decision::Hold => false,
            Decision::Resize { target } => {
                let target = target.clamp(self.cfg.min, self.cfg.max);
                if target != self.target {
                    self.counters.resize_events += 1;
                    if target > self.target {
                        self.counters.grow_events += 1;
                    } else {
                        self.counters.shrink_events += 1;
                    }
                    self.target = target;
                    true
                } else {
                    false
                }
            }
        };
        // Also re-opens connections lost to failed connects.
        self.reconcile(now, fx);
        changed
    }

    /// The view a policy sees; starts a new policy window.
    pub fn policy_view(&mut self, now: SimTime) -> PoolView {
        self.advance(now);
        let window = self.take_window(now);
        self.view(now, window)
    }

    /// The activity since the last policy window; starts a new one.
    fn take_window(&mut self, now: SimTime) -> PolicyWindow {
        let mark = self.mark(now);
        let d = mark.integrals.minus(&self.policy_mark.integrals);
        let c = mark.counts.minus(&self.policy_mark.counts);
        let window = PolicyWindow {
            span: now - self.policy_mark.at,
            utilization_mean: d.utilization(),
            waiting_mean: Integrals::mean(d.waiting, d.span_ns),
            arrived: c.arrived,
            completed: c.completed,
            timed_out: c.timed_out,
            rejected: c.rejected,
        };
        self.policy_mark = mark;
        window
    }

    /// What the policy sees now, with `window`. `opening` counts the
    /// connects in flight (creates held back by `max_concurrent_creates` or
    /// the backoff are `target - size`); connections being checked count in
    /// `size` but neither in `idle` nor in `active`.
    fn view(&self, now: SimTime, window: PolicyWindow) -> PoolView {
        let mut oldest_wait = [SimDuration::ZERO; 3];
        let mut waiting = [0; 3];
        for p in Priority::ALL {
            waiting[p.index()] = self.waiters.len_of(p);
            oldest_wait[p.index()] = self.waiters.oldest_wait(p, now);
        }
        PoolView {
            now,
            min: self.cfg.min,
            max: self.cfg.max,
            target: self.target,
            size: self.size,
            opening: self.opening,
            idle: self.idle.len() as u32,
            active: self.active,
            waiting,
            oldest_wait,
            window,
        }
    }

    /// A time-series row for the window since the previous sample.
    pub fn sample(&mut self, now: SimTime) -> Sample {
        self.advance(now);
        let mark = self.mark(now);
        let d = mark.integrals.minus(&self.sample_mark.integrals);
        let c = mark.counts.minus(&self.sample_mark.counts);
        let window_s = (now - self.sample_mark.at).as_secs_f64();
        self.sample_mark = mark;
        Sample {
            t_s: now.as_secs_f64(),
            window_s,
            target: self.target,
            size: self.size,
            opening: self.opening,
            idle: self.idle.len() as u32,
            active: self.active,
            waiting_high: self.waiters.len_of(Priority::High),
            waiting_normal: self.waiters.len_of(Priority::Normal),
            waiting_low: self.waiters.len_of(Priority::Low),
            size_mean: Integrals::mean(d.size, d.span_ns),
            active_mean: Integrals::mean(d.active, d.span_ns),
            waiting_mean: Integrals::mean(d.waiting, d.span_ns),
            utilization: d.utilization(),
            arrival_rate_per_s: if window_s > 0.0 {
                c.arrived as f64 / window_s
            } else {
                0.0
            },
            completed: c.completed,
            timed_out: c.timed_out,
            rejected: c.rejected,
            failed: c.failed,
            opened: c.opened,
            closed: c.closed,
            checks_failed: c.checks_failed,
            db_refused: 0,
            faults_active: 0,
        }
    }

    /// Ends the run at `now`: closes idle connections (reason end of run).
    /// Requests still waiting, running or bound to a connect or a
    /// validation stay counted as in flight.
    pub fn finish(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        self.advance(now);
        while let Some(conn) = self.idle.pop_front() {
            self.close(conn, CloseReason::EndOfRun, fx);
        }
    }

    // ---- read access -------------------------------------------------------

    pub fn classes(&self) -> &[ClassMetrics; 3] {
        &self.classes
    }
    pub fn counters(&self) -> &PoolCounters {
        &self.counters
    }
    pub fn integrals(&self) -> &Integrals {
        &self.integrals
    }
    pub fn target(&self) -> u32 {
        self.target
    }
    pub fn size(&self) -> u32 {
        self.size
    }
    pub fn active(&self) -> u32 {
        self.active
    }
    /// Connects in flight.
    pub fn opening(&self) -> u32 {
        self.opening
    }
    pub fn idle(&self) -> u32 {
        self.idle.len() as u32
    }
    /// Connections out of the idle list for a check.
    pub fn checking(&self) -> u32 {
        self.checking
    }
    pub fn waiting(&self) -> u32 {
        self.waiters.len()
    }
    /// State of the connection in slot `conn` (`Free` for an unknown slot).
    pub fn conn_state(&self, conn: ConnId) -> ConnState {
        self.conns
            .get(conn as usize)
            .map_or(ConnState::Free, |c| c.state)
    }
    /// Smallest and largest size seen since start.
    pub fn size_range_seen(&self) -> (u32, u32) {
        (
            self.size_min_seen.min(self.size_max_seen),
            self.size_max_seen,
        )
    }
    /// Requests holding a connection, waiting for one, or bound to a
    /// connect or a validation.
    pub fn in_flight(&self) -> u64 {
        self.active as u64 + self.waiters.len() as u64 + self.bound_n as u64
    }

    /// Checks the pool's invariants; returns what is violated.
    pub fn check_invariants(&self) -> Result<(), String> {
        let idle = self.idle.len() as u32;
        let count = |s: ConnState| self.conns.iter().filter(|c| c.state == s).count() as u32;
        if self.size != self.opening + idle + self.active + self.checking {
            return Err(format!(
                "size {} != opening {} + idle {} + active {} + checking {}",
                self.size, self.opening, idle, self.active, self.checking
            ));
        }
        if count(ConnState::Opening) != self.opening
            || count(ConnState::Idle) != idle
            || count(ConnState::Active) != self.active
            || count(ConnState::Checking) != self.checking
            || count(ConnState::Closing) != self.closing
        {
            return Err("connection states disagree with the counters".into());
        }
        if self
            .idle
            .iter()
            .any(|&c| self.conns[c as usize].state != ConnState::Idle)
        {
            return Err("a connection in the idle list is not idle".into());
        }
        if self.track_idle
            && self
                .idle
                .iter()
                .zip(self.idle.iter().skip(1))
                .any(|(&a, &b)| self.life[a as usize].idle_since > self.life[b as usize].idle_since)
        {
            return Err("the idle list is not in idle-since order".into());
        }
        let mut bound = 0;
        for (i, b) in self.bound.iter().enumerate() {
            if b.is_some() {
                bound += 1;
                let c = &self.conns[i];
                let ok = c.state == ConnState::Opening
                    || (c.state == ConnState::Checking
                        && self.life[i].check == CheckKind::Validation);
                if !ok {
                    return Err(format!(
                        "a request is bound to connection {i} in state {:?}",
                        c.state
                    ));
                }
            } else if self.conns[i].state == ConnState::Checking
                && self.life[i].check == CheckKind::Validation
            {
                return Err(format!("connection {i} is validated for no request"));
            }
        }
        if bound != self.bound_n {
            return Err("bound requests disagree with their count".into());
        }
        if self.opening > self.create_limit {
            return Err(format!(
                "{} connects in flight above the limit {}",
                self.opening, self.create_limit
            ));
        }
        if self.size > self.cfg.max {
            return Err(format!("size {} above max {}", self.size, self.cfg.max));
        }
        if self.target < self.cfg.min || self.target > self.cfg.max {
            return Err(format!(
                "target {} outside [{}, {}]",
                self.target, self.cfg.min, self.cfg.max
            ));
        }
        self.waiters.check()?;
        if self.active_by.iter().sum::<u32>() != self.active {
            return Err("active per priority disagrees with active".into());
        }
        if idle > 0 && !self.waiters.is_empty() {
            return Err("a request waits while a connection is idle".into());
        }
        let mut arrived = 0;
        let mut left = 0;
        for m in &self.classes {
            arrived += m.arrived;
            left += m.completed + m.timed_out + m.failed + m.rejected;
        }
        if arrived != left + self.in_flight() {
            return Err(format!(
                "conservation: arrived {arrived} != completed+timed_out+failed+rejected {left} + in flight {}",
                self.in_flight()
            ));
        }
        Ok(())
    }

    // ---- internals ---------------------------------------------------------

    /// Accumulates time integrals up to `now`.
    #[inline]
    fn advance(&mut self, now: SimTime) {
        debug_assert!(now >= self.last, "time went backwards");
        let dt = (now - self.last).as_nanos() as u128;
        if dt > 0 {
            let open = (self.idle.len() as u32 + self.active + self.checking) as u128;
            self.integrals.size += dt * self.size as u128;
            self.integrals.open += dt * open;
            self.integrals.active += dt * self.active as u128;
            self.integrals.waiting += dt * self.waiters.len() as u128;
            self.integrals.span_ns += dt;
            self.last = now;
        }
    }

    fn mark(&self, now: SimTime) -> Mark {
        let mut counts = WindowCounts::default();
        for m in &self.classes {
            counts.arrived += m.arrived;
            counts.completed += m.completed;
            counts.timed_out += m.timed_out;
            counts.rejected += m.rejected;
            counts.failed += m.failed;
        }
        counts.opened = self.counters.opened;
        counts.closed = self.counters.closed();
        counts.checks_failed = self.counters.checks_failed + self.counters.validations_failed;
        Mark {
            at: now,
            integrals: self.integrals,
            counts,
        }
    }

    /// A connection became free (opened, or its query ended): serve the
    /// waiter the discipline picks, else close it if the pool is above
    /// target, else park it idle.
    #[inline]
    fn reuse(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) {
        if let Some((p, w)) = self.pop_waiter(now, fx) {
            self.hand_out(now, conn, p, w.arrival, w.payload, fx);
            return;
        }
        if self.size > self.target {
            self.close(conn, CloseReason::Shrink, fx);
        } else {
            self.conns[conn as usize].state = ConnState::Idle;
            self.idle.push_back(conn);
            if self.track_idle {
                self.went_idle(now, conn, fx);
            }
        }
    }

    /// Notes when `conn` went idle (validation bypass, keepalive) and arms
    /// the keepalive timer if none is.
    #[inline(never)]
    fn went_idle(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) {
        self.life[conn as usize].idle_since = now;
        if !self.keepalive_armed {
            if let Some(ka) = self.cfg.lifecycle.keepalive {
                self.keepalive_armed = true;
                self.schedule(now + ka, Timer::Keepalive, fx);
            }
        }
    }

    /// The next waiter by the discipline; waiters the queue drops early on
    /// the way are counted as timed out and signalled later (`flush_drops`).
    #[inline]
    fn pop_waiter(
        &mut self,
        now: SimTime,
        fx: &mut Vec<Effect<T>>,
    ) -> Option<(Priority, Waiter<T>)> {
        let classes = &mut self.classes;
        let drops = &mut self.drops_pending;
        let mut dropped = |p: Priority, w: Waiter<T>| drop_waiter(classes, drops, fx, now, p, w);
        self.waiters
            .pop_next(now, self.size, self.active_by, &mut dropped)
    }

    /// A connection freed with retirement rules on: closes it if its
    /// lifetime passed or (after a query, `used`) it reached `max_uses`,
    /// else reuses it.
    fn recycle(&mut self, now: SimTime, conn: ConnId, used: bool, fx: &mut Vec<Effect<T>>) {
        let c = &mut self.life[conn as usize];
        if used {
            c.used_at = now;
        }
        let (retire, uses) = (c.retire, c.uses);
        if retire {
            self.close(conn, CloseReason::Lifetime, fx);
            self.reconcile(now, fx);
        } else if used && self.cfg.lifecycle.max_uses.is_some_and(|m| uses >= m) {
            self.close(conn, CloseReason::MaxUses, fx);
            if self.cfg.lifecycle.creator == Creator::Caller {
                // Not replaced: the next request that needs it opens it.
                self.lazy += 1;
            }
            self.reconcile(now, fx);
        } else {
            self.reuse(now, conn, fx);
        }
    }

    #[inline]
    fn hand_out(
        &mut self,
        now: SimTime,
        conn: ConnId,
        priority: Priority,
        arrival: SimTime,
        payload: T,
        fx: &mut Vec<Effect<T>>,
    ) {
        let c = &mut self.conns[conn as usize];
        c.state = ConnState::Active;
        c.acquired_at = now;
        c.req_arrival = arrival;
        c.req_priority = priority;
        self.active += 1;
        self.active_by[priority.index()] += 1;
        c.inflight = self.active;
        let waited = now - arrival;
        let p = priority.index();
        let m = &mut self.classes[p];
        m.wait.record(waited);
        m.wait_served_sum_ns += waited.as_nanos() as u128;
        let timeout = self.cfg.acquire_timeout[p];
        if !timeout.is_infinite() && timeout.as_nanos() > 0 {
            m.wait_pressure_sum += (waited.as_nanos() as f64 / timeout.as_nanos() as f64).min(1.0);
        }
        if self.track_uses {
            self.life[conn as usize].uses += 1;
        }
        fx.push(Effect::Start {
            conn,
            priority,
            waited,
            payload,
        });
    }

    /// Takes `conn` out of the idle list and checks it.
    fn start_check(&mut self, conn: ConnId, kind: CheckKind, fx: &mut Vec<Effect<T>>) {
        let lc = &self.cfg.lifecycle;
        let timeout = match kind {
            CheckKind::Validation => lc.validation.map(|v| v.timeout),
            CheckKind::Health { .. } => lc.health.map(|h| h.timeout),
            CheckKind::Keepalive => None,
        }
        .or(lc.validation.map(|v| v.timeout))
        .or(lc.health.map(|h| h.timeout))
        .unwrap_or(DEFAULT_CHECK_TIMEOUT);
        if kind == CheckKind::Validation {
            self.counters.validations += 1;
        } else {
            self.counters.checks += 1;
        }
        self.conns[conn as usize].state = ConnState::Checking;
        self.life[conn as usize].check = kind;
        self.checking += 1;
        fx.push(Effect::Check { conn, timeout });
    }

    /// Removes an idle connection from the idle list (not the fast path).
    fn remove_idle(&mut self, conn: ConnId) {
        let at = self
            .idle
            .iter()
            .position(|&c| c == conn)
            .expect("an idle connection is in the idle list");
        self.idle.remove(at);
    }

    /// The lifetime timer of `conn` fired.
    fn retire(&mut self, now: SimTime, conn: ConnId, generation: u32, fx: &mut Vec<Effect<T>>) {
        let state = self.conns[conn as usize].state;
        let c = self.life[conn as usize];
        let live = matches!(
            state,
            ConnState::Idle | ConnState::Active | ConnState::Checking
        );
        if c.generation != generation || !live || c.retire {
            return;
        }
        let Some(life) = self.cfg.lifecycle.lifetime else {
            return;
        };
        if life.stagger {
            let spacing = SimDuration(life.max.as_nanos() / self.target.max(1) as u64);
            if let Some(last) = self.last_retirement {
                if now < last + spacing {
                    self.schedule(last + spacing, Timer::Retire { conn, generation }, fx);
                    return;
                }
            }
        }
        self.last_retirement = Some(now);
        if state == ConnState::Idle {
            self.remove_idle(conn);
            self.close(conn, CloseReason::Lifetime, fx);
            self.reconcile(now, fx);
        } else {
            self.life[conn as usize].retire = true;
        }
    }

    /// Closes idle connections unused for `idle_timeout`, longest idle
    /// first, never below `size.min` nor below `min_idle` idle; the target
    /// shrinks with them.
    fn reap_idle(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        let Some(timeout) = self.cfg.lifecycle.idle_timeout else {
            return;
        };
        let min_idle = self.cfg.lifecycle.min_idle as usize;
        let mut i = 0;
        while i < self.idle.len() && self.size > self.cfg.min && self.idle.len() > min_idle {
            let conn = self.idle[i];
            if now - self.life[conn as usize].used_at < timeout {
                i += 1;
                continue;
            }
            self.idle.remove(i);
            self.close(conn, CloseReason::Idle, fx);
            if self.size < self.target {
                self.target = (self.target - 1).max(self.cfg.min);
            }
        }
    }

    /// Raises the target so that `min_idle` connections can stay idle
    /// (bounded by max). Returns whether the pool must open more.
    fn top_up_min_idle(&mut self) -> bool {
        let min_idle = self.cfg.lifecycle.min_idle;
        if min_idle == 0 {
            return false;
        }
        let want = (self.active + self.bound_n + min_idle).clamp(self.cfg.min, self.cfg.max);
        if want > self.target {
            self.target = want;
        }
        self.size < self.target
    }

    /// Whether a connect may start now (concurrency limit, backoff).
    #[inline]
    fn can_open(&self, now: SimTime) -> bool {
        self.opening < self.create_limit && now >= self.hold_until
    }

    fn open_one(
        &mut self,
        now: SimTime,
        bound: Option<(Priority, Waiter<T>)>,
        fx: &mut Vec<Effect<T>>,
    ) {
        let conn = Conn {
            state: ConnState::Opening,
            since: now,
            acquired_at: now,
            req_arrival: now,
            req_priority: Priority::Normal,
            inflight: 0,
        };
        let mut life = Life {
            generation: 0,
            idle_since: now,
            used_at: now,
            uses: 0,
            retire: false,
            check: CheckKind::Keepalive,
        };
        if bound.is_some() {
            self.bound_n += 1;
        }
        let id = match self.free_slots.pop() {
            Some(id) => {
                life.generation = self.life[id as usize].generation.wrapping_add(1);
                self.conns[id as usize] = conn;
                self.life[id as usize] = life;
                self.bound[id as usize] = bound;
                id
            }
            None => {
                self.conns.push(conn);
                self.life.push(life);
                self.bound.push(bound);
                (self.conns.len() - 1) as ConnId
            }
        };
        if self.connect_failures > 0 {
            self.counters.connect_retries += 1;
        }
        self.opening += 1;
        self.size += 1;
        fx.push(Effect::Open(id));
        if let Some(iv) = self.cfg.lifecycle.create_interval {
            let at = now + iv;
            if at > self.hold_until {
                self.hold_until = at;
                self.schedule(at, Timer::ConnectRetry, fx);
            }
        }
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason, fx: &mut Vec<Effect<T>>) {
        self.conns[conn as usize].state = ConnState::Closing;
        self.closing += 1;
        self.size -= 1;
        match reason {
            CloseReason::Shrink => self.counters.closed_shrink += 1,
            // Closing at the end is not a size the pool ran at.
            CloseReason::EndOfRun => self.counters.closed_end_of_run += 1,
            CloseReason::Broken => self.counters.closed_broken += 1,
            CloseReason::Idle => self.counters.closed_idle += 1,
            CloseReason::Lifetime => self.counters.closed_lifetime += 1,
            CloseReason::MaxUses => self.counters.closed_max_uses += 1,
        }
        if reason != CloseReason::EndOfRun {
            self.note_size();
        }
        fx.push(Effect::Close { conn, reason });
    }

    /// Steers the size to the target: opens below it (within the create
    /// limit and the backoff; with the caller creator, slots left to callers
    /// go to waiting requests), closes idle connections above it.
    fn reconcile(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        self.lazy = self.lazy.min(self.target.saturating_sub(self.size));
        if self.lazy > 0 {
            while self.lazy > 0 && self.can_open(now) {
                match self.pop_waiter(now, fx) {
                    Some(bound) => {
                        self.lazy -= 1;
                        self.open_one(now, Some(bound), fx);
                    }
                    None => break,
                }
            }
        }
        while self.size + self.lazy < self.target && self.can_open(now) {
            self.open_one(now, None, fx);
        }
        while self.size > self.target {
            match self.idle.pop_front() {
                Some(conn) => self.close(conn, CloseReason::Shrink, fx),
                None => break,
            }
        }
        self.note_size();
    }

    fn note_size(&mut self) {
        if self.started {
            self.size_min_seen = self.size_min_seen.min(self.size);
            self.size_max_seen = self.size_max_seen.max(self.size);
        }
    }
}

/// A waiter dropped early by the queue's discipline: counted as timed out,
/// and noted for the policy's `Dropped` signal.
fn drop_waiter<T>(
    classes: &mut [ClassMetrics; 3],
    drops: &mut [u32; 3],
    fx: &mut Vec<Effect<T>>,
    now: SimTime,
    priority: Priority,
    w: Waiter<T>,
) {
    let waited = now - w.arrival;
    let m = &mut classes[priority.index()];
    m.timed_out += 1;
    m.wait.record(waited);
    drops[priority.index()] += 1;
    fx.push(Effect::TimedOut {
        priority,
        waited,
        payload: w.payload,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fx = Vec<Effect<&'static str>>;

    fn pool(size: u32, timeouts_ms: [u64; 3]) -> (Pool<&'static str>, Fx) {
        let mut p = Pool::new(
            PoolConfig {
                min: size,
                max: size,
                initial: size,
                acquire_timeout: timeouts_ms.map(SimDuration::from_millis),
                max_waiters: 3,
                lifecycle: Lifecycle::default(),
            },
            Box::new(crate::core::policy::Fixed),
            crate::rng::SeedTree::new(1).stream("pool"),
        );
        let mut fx = Vec::new();
        p.start(SimTime::ZERO, &mut fx);
        let opened: Vec<ConnId> = fx
            .drain(..)
            .map(|e| match e {
                Effect::Open(c) => c,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        for c in opened {
            p.connected(SimTime::ZERO, c, &mut fx);
        }
        assert!(fx.is_empty());
        (p, fx)
    }

    fn started(fx: &mut Fx) -> Vec<&'static str> {
        fx.drain(..)
            .filter_map(|e| match e {
                Effect::Start { payload, .. } => Some(payload),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn strict_priority_then_fifo_within_a_priority() {
        let (mut p, mut fx) = pool(1, [1000; 3]);
        let t = |ms: u64| SimTime(ms * 1_000_000);
        p.acquire(t(0), Priority::Normal, "running", &mut fx);
        assert_eq!(started(&mut fx), vec!["running"]);
        p.acquire(t(1), Priority::Low, "low", &mut fx);
        p.acquire(t(2), Priority::Normal, "normal", &mut fx);
        p.acquire(t(3), Priority::High, "high-1", &mut fx);
        fx.clear();
        // The queue is full (max_waiters = 3): rejected at once.
        p.acquire(t(3), Priority::High, "high-2", &mut fx);
        assert!(matches!(
            fx[..],
            [Effect::Rejected {
                payload: "high-2",
                ..
            }]
        ));
        fx.clear();
        let mut order = Vec::new();
        for ms in 10..13 {
            p.release(t(ms), 0, &mut fx);
            order.extend(started(&mut fx));
        }
        assert_eq!(order, vec!["high-1", "normal", "low"]);
        p.check_invariants().unwrap();
    }

    #[test]
    fn waiters_time_out_at_their_deadline_and_are_counted() {
        let (mut p, mut fx) = pool(1, [1000, 500, 250]);
        let t = |ms: u64| SimTime(ms * 1_000_000);
        p.acquire(t(0), Priority::Normal, "running", &mut fx);
        fx.clear();
        p.acquire(t(10), Priority::Low, "low", &mut fx);
        assert_eq!(
            fx,
            vec![Effect::ArmTimer {
                priority: Priority::Low,
                at: t(260)
            }]
        );
        fx.clear();
        // Too early: nothing expires, the timer is re-armed for the head.
        p.expire(t(100), Priority::Low, &mut fx);
        assert_eq!(
            fx,
            vec![Effect::ArmTimer {
                priority: Priority::Low,
                at: t(260)
            }]
        );
        fx.clear();
        p.expire(t(260), Priority::Low, &mut fx);
        assert!(
            matches!(fx[..], [Effect::TimedOut { payload: "low", waited, .. }] if waited == SimDuration::from_millis(250))
        );
        assert_eq!(p.classes()[2].timed_out, 1);
        assert_eq!(p.classes()[2].wait.max_ns(), 250_000_000);
        p.check_invariants().unwrap();
    }

    #[test]
    fn a_failed_query_counts_and_a_broken_connection_is_replaced() {
        let (mut p, mut fx) = pool(2, [1000; 3]);
        let t = |ms: u64| SimTime(ms * 1_000_000);
        p.acquire(t(0), Priority::High, "a", &mut fx);
        p.acquire(t(0), Priority::Low, "b", &mut fx);
        p.acquire(t(1), Priority::Normal, "c", &mut fx);
        let conns: Vec<ConnId> = fx
            .drain(..)
            .filter_map(|e| match e {
                Effect::Start { conn, .. } => Some(conn),
                _ => None,
            })
            .collect();
        assert_eq!(conns.len(), 2);
        // Still usable: the waiter gets the connection.
        p.fail(t(5), conns[0], true, "a", &mut fx);
        assert_eq!(started(&mut fx), vec!["c"]);
        // Broken: closed, and a replacement opens at once.
        p.fail(t(6), conns[1], false, "b", &mut fx);
        assert!(matches!(
            fx[..],
            [
                Effect::Close {
                    reason: CloseReason::Broken,
                    ..
                },
                Effect::Open(_)
            ]
        ));
        assert_eq!(p.classes()[0].failed, 1);
        assert_eq!(p.classes()[2].failed, 1);
        assert_eq!(p.classes()[0].query.count(), 0);
        assert_eq!(p.counters().closed_broken, 1);
        assert_eq!(p.size(), 2);
        p.check_invariants().unwrap();
    }

    #[test]
    fn a_lost_idle_connection_is_replaced_and_others_are_left_alone() {
        let (mut p, mut fx) = pool(2, [1000; 3]);
        p.acquire(SimTime(1), Priority::Normal, "a", &mut fx);
        let busy = match fx.drain(..).next() {
            Some(Effect::Start { conn, .. }) => conn,
            other => panic!("{other:?}"),
        };
        // Active: the query will tell.
        assert!(!p.lost(SimTime(2), busy, &mut fx));
        assert!(fx.is_empty());
        let idle = 1 - busy;
        assert!(p.lost(SimTime(3), idle, &mut fx));
        assert!(matches!(
            fx[..],
            [
                Effect::Close {
                    reason: CloseReason::Broken,
                    ..
                },
                Effect::Open(_)
            ]
        ));
        assert_eq!(p.counters().closed_broken, 1);
        assert_eq!(p.size(), 2);
        p.check_invariants().unwrap();
    }

    #[test]
    fn shrinking_closes_idle_connections_and_growing_opens() {
        let mut p: Pool<&str> = Pool::new(
            PoolConfig {
                min: 1,
                max: 4,
                initial: 2,
                acquire_timeout: [SimDuration::INFINITE; 3],
                max_waiters: 10,
                lifecycle: Lifecycle::default(),
            },
            Box::new(crate::core::policy::Fixed),
            crate::rng::SeedTree::new(1).stream("pool"),
        );
        let mut fx = Vec::new();
        p.start(SimTime::ZERO, &mut fx);
        assert_eq!(fx.len(), 2);
        fx.clear();
        p.connected(SimTime(1), 0, &mut fx);
        p.connected(SimTime(1), 1, &mut fx);
        assert!(p.apply(SimTime(2), Decision::Resize { target: 9 }, &mut fx));
        // Clamped to max = 4: two more opens.
        assert_eq!(
            fx.iter().filter(|e| matches!(e, Effect::Open(_))).count(),
            2
        );
        assert_eq!((p.target(), p.size()), (4, 4));
        fx.clear();
        assert!(p.apply(SimTime(3), Decision::Resize { target: 1 }, &mut fx));
        // Two idle connections close now; the two opening ones close when they open.
        assert_eq!(
            fx.iter()
                .filter(|e| matches!(e, Effect::Close { .. }))
                .count(),
            2
        );
        for e in std::mem::take(&mut fx) {
            if let Effect::Close { conn, .. } = e {
                p.closed(SimTime(3), conn);
            }
        }
        p.connected(SimTime(4), 2, &mut fx);
        assert!(matches!(
            fx[..],
            [Effect::Close {
                conn: 2,
                reason: CloseReason::Shrink
            }]
        ));
        p.closed(SimTime(4), 2);
        fx.clear();
        // At target now: the last one to open stays, idle.
        p.connected(SimTime(5), 3, &mut fx);
        assert!(fx.is_empty());
        assert_eq!((p.size(), p.target()), (1, 1));
        p.check_invariants().unwrap();
        assert_eq!(p.counters().shrink_events, 1);
        assert_eq!(p.counters().grow_events, 1);
    }

    // ---- lifecycle knobs ---------------------------------------------------

    use crate::core::lifecycle::{Backoff, HealthCheck, Lifetime as LifetimeKnob, Validation};

    type LPool = Pool<&'static str>;

    fn ms(ms: u64) -> SimTime {
        SimTime(ms * 1_000_000)
    }
    fn secs(s: u64) -> SimTime {
        SimTime(s * 1_000_000_000)
    }

    /// A pool with `lc`, started at 0; initial connects are left pending.
    fn lpool(min: u32, max: u32, initial: u32, lc: Lifecycle, seed: u64) -> (LPool, Fx) {
        let mut p = Pool::new(
            PoolConfig {
                min,
                max,
                initial,
                acquire_timeout: [SimDuration::from_secs(10); 3],
                max_waiters: 100,
                lifecycle: lc,
            },
            Box::new(crate::core::policy::Fixed),
            crate::rng::SeedTree::new(seed).stream("pool"),
        );
        let mut fx = Vec::new();
        p.start(SimTime::ZERO, &mut fx);
        (p, fx)
    }

    fn opens(fx: &Fx) -> Vec<ConnId> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Open(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    fn closes(fx: &Fx) -> Vec<(ConnId, CloseReason)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Close { conn, reason } => Some((*conn, *reason)),
                _ => None,
            })
            .collect()
    }

    fn checks(fx: &Fx) -> Vec<ConnId> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Check { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect()
    }

    fn starts(fx: &Fx) -> Vec<(ConnId, &'static str, SimDuration)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Start {
                    conn,
                    payload,
                    waited,
                    ..
                } => Some((*conn, *payload, *waited)),
                _ => None,
            })
            .collect()
    }

    fn wakes(fx: &Fx) -> Vec<SimTime> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Wake { at } => Some(*at),
                _ => None,
            })
            .collect()
    }

    /// Opens every pending connect at `now` and answers closes.
    fn settle(p: &mut LPool, fx: &mut Fx, now: SimTime) {
        loop {
            let pending: Vec<Effect<&'static str>> = std::mem::take(fx);
            let mut more = false;
            for e in pending {
                match e {
                    Effect::Open(c) => {
                        p.connected(now, c, fx);
                        more = true;
                    }
                    Effect::Close { conn, .. } => p.closed(now, conn),
                    other => fx.push(other),
                }
            }
            if !more {
                return;
            }
        }
    }

    /// A tiny driver: runs the pool's wake-ups until `end`; connects take
    /// `connect`, checks pass at once, closes complete at once. Returns
    /// every close with its time.
    fn drive(
        p: &mut LPool,
        fx: &mut Fx,
        end: SimTime,
        connect: SimDuration,
    ) -> Vec<(SimTime, ConnId, CloseReason)> {
        use std::collections::BTreeSet;
        // (time, 0 = connect done / 1 = wake, conn)
        let mut events: BTreeSet<(SimTime, u8, ConnId)> = BTreeSet::new();
        let mut log = Vec::new();
        let mut now = SimTime::ZERO;
        loop {
            for e in std::mem::take(fx) {
                match e {
                    Effect::Open(c) => {
                        events.insert((now + connect, 0, c));
                    }
                    Effect::Wake { at } => {
                        events.insert((at, 1, 0));
                    }
                    Effect::Close { conn, reason } => {
                        log.push((now, conn, reason));
                        p.closed(now, conn);
                    }
                    Effect::Check { conn, .. } => p.checked(now, conn, true, fx),
                    _ => {}
                }
            }
            if !fx.is_empty() {
                continue;
            }
            let Some(&(t, kind, c)) = events.iter().next() else {
                return log;
            };
            if t > end {
                return log;
            }
            events.remove(&(t, kind, c));
            now = t;
            if kind == 0 {
                p.connected(now, c, fx);
            } else {
                p.wake(now, fx);
            }
            p.check_invariants().unwrap();
        }
    }

    fn with_lifetime(max_s: u64, jitter: f64, stagger: bool) -> Lifecycle {
        Lifecycle {
            lifetime: Some(LifetimeKnob {
                max: SimDuration::from_secs(max_s),
                jitter,
                stagger,
            }),
            ..Lifecycle::default()
        }
    }

    fn lifetime_closes(seed: u64, jitter: f64) -> Vec<SimTime> {
        let (mut p, mut fx) = lpool(20, 20, 20, with_lifetime(100, jitter, false), seed);
        let log = drive(&mut p, &mut fx, secs(150), SimDuration::ZERO);
        assert_eq!(p.size(), 20);
        log.iter()
            .filter(|e| e.2 == CloseReason::Lifetime)
            .map(|e| e.0)
            .collect()
    }

    #[test]
    fn lifetime_jitter_stays_within_its_bounds_and_is_seeded() {
        // Opened at 0, max 100 s, jitter 10 %: each retires in (90, 100] s,
        // exactly once before 150 s (its replacement lives at least 90 s).
        let a = lifetime_closes(7, 0.1);
        assert_eq!(a.len(), 20);
        assert!(a.iter().all(|&t| t > secs(90) && t <= secs(100)), "{a:?}");
        // Spread out: not all at once.
        assert!(a.iter().max().unwrap().0 - a.iter().min().unwrap().0 > 1_000_000_000);
        assert_eq!(a, lifetime_closes(7, 0.1), "same seed, same retirements");
        assert_ne!(
            a,
            lifetime_closes(8, 0.1),
            "another seed, other retirements"
        );
        // Without jitter every connection retires at exactly 100 s: the stampede.
        assert_eq!(lifetime_closes(7, 0.0), vec![secs(100); 20]);
    }

    #[test]
    fn stagger_spaces_retirements_by_lifetime_over_size() {
        let (mut p, mut fx) = lpool(4, 4, 4, with_lifetime(100, 0.0, true), 1);
        let log = drive(&mut p, &mut fx, secs(180), SimDuration::ZERO);
        let times: Vec<SimTime> = log
            .iter()
            .filter(|e| e.2 == CloseReason::Lifetime)
            .map(|e| e.0)
            .collect();
        // All four due at 100 s; spaced max / size = 25 s apart.
        assert_eq!(times, vec![secs(100), secs(125), secs(150), secs(175)]);
        assert_eq!(p.counters().closed_lifetime, 4);
        assert_eq!(p.counters().opened, 8);
    }

    #[test]
    fn an_active_connection_retires_when_released() {
        let (mut p, mut fx) = lpool(1, 1, 1, with_lifetime(100, 0.0, false), 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        fx.clear();
        p.acquire(secs(99), Priority::Normal, "long", &mut fx);
        assert_eq!(starts(&fx).len(), 1);
        fx.clear();
        p.wake(secs(100), &mut fx);
        assert!(closes(&fx).is_empty(), "busy: not closed at its deadline");
        p.release(secs(101), 0, &mut fx);
        assert_eq!(closes(&fx), vec![(0, CloseReason::Lifetime)]);
        assert_eq!(opens(&fx).len(), 1, "replaced");
        p.check_invariants().unwrap();
    }

    #[test]
    fn idle_reaping_respects_min_and_shrinks_the_target() {
        let lc = Lifecycle {
            idle_timeout: Some(SimDuration::from_secs(60)),
            housekeeping: SimDuration::from_secs(30),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(2, 5, 5, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        p.acquire(secs(10), Priority::Normal, "a", &mut fx);
        let (used, _, _) = starts(&fx)[0];
        p.release(secs(11), used, &mut fx);
        fx.clear();
        p.wake(secs(30), &mut fx);
        assert!(closes(&fx).is_empty(), "idle 30 s < 60 s");
        fx.clear();
        p.wake(secs(60), &mut fx);
        // Four unused since 0; the pool may only go down to min = 2.
        let reaped = closes(&fx);
        assert_eq!(reaped.len(), 3);
        assert!(reaped
            .iter()
            .all(|&(c, r)| c != used && r == CloseReason::Idle));
        assert!(opens(&fx).is_empty(), "the target shrank with them");
        assert_eq!((p.size(), p.target()), (2, 2));
        settle(&mut p, &mut fx, secs(60));
        fx.clear();
        p.wake(secs(90), &mut fx);
        assert!(closes(&fx).is_empty(), "at min");
        assert_eq!(p.counters().closed_idle, 3);
        p.check_invariants().unwrap();
    }

    #[test]
    fn failed_connects_retry_after_10_20_40_ms() {
        let (mut p, mut fx) = lpool(1, 1, 1, Lifecycle::default(), 1);
        assert_eq!(opens(&fx), vec![0]);
        fx.clear();
        let mut retries = Vec::new();
        let mut now = SimTime::ZERO;
        for _ in 0..3 {
            p.connect_error(now, 0, &mut fx);
            let at = wakes(&fx);
            assert_eq!(at.len(), 1);
            fx.clear();
            // Nothing opens before the backoff ends.
            p.wake(now, &mut fx);
            assert!(opens(&fx).is_empty());
            now = at[0];
            retries.push(now);
            p.wake(now, &mut fx);
            assert_eq!(opens(&fx), vec![0]);
            fx.clear();
        }
        assert_eq!(retries, vec![ms(10), ms(30), ms(70)]);
        p.connected(ms(75), 0, &mut fx);
        assert_eq!(p.counters().connect_retries, 3);
        assert_eq!(p.counters().connect_failed, 3);
        // Success resets the backoff: the next failure waits 10 ms again.
        p.acquire(ms(80), Priority::Normal, "a", &mut fx);
        p.fail(ms(81), 0, false, "a", &mut fx);
        p.closed(ms(81), 0);
        let o = opens(&fx);
        fx.clear();
        p.connect_error(ms(90), o[0], &mut fx);
        assert_eq!(wakes(&fx), vec![ms(100)]);
        p.check_invariants().unwrap();
    }

    #[test]
    fn a_caller_pays_the_connect_latency_and_max_uses_closes() {
        let lc = Lifecycle {
            creator: Creator::Caller,
            max_uses: Some(1),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(2, 2, 2, lc, 1);
        settle(&mut p, &mut fx, ms(5));
        p.acquire(ms(10), Priority::Normal, "a", &mut fx);
        let (ca, _, wa) = starts(&fx)[0];
        assert_eq!(wa, SimDuration::ZERO);
        fx.clear();
        p.release(ms(20), ca, &mut fx);
        // Used once: closed, and not replaced (the next caller opens).
        assert_eq!(closes(&fx), vec![(ca, CloseReason::MaxUses)]);
        assert!(opens(&fx).is_empty());
        p.closed(ms(20), ca);
        fx.clear();
        p.acquire(ms(30), Priority::Normal, "b", &mut fx);
        assert_eq!(starts(&fx).len(), 1, "the other idle connection");
        fx.clear();
        p.acquire(ms(31), Priority::High, "c", &mut fx);
        let o = opens(&fx);
        assert_eq!(o.len(), 1, "c opens its own");
        assert_eq!(p.waiting(), 0, "c is bound, not queued");
        fx.clear();
        p.check_invariants().unwrap();
        p.connected(ms(36), o[0], &mut fx);
        assert_eq!(starts(&fx), vec![(o[0], "c", SimDuration::from_millis(5))]);
        assert_eq!(p.counters().closed_max_uses, 1);
        p.check_invariants().unwrap();
    }

    #[test]
    fn a_caller_whose_connect_fails_fails_and_the_next_caller_retries() {
        let lc = Lifecycle {
            creator: Creator::Caller,
            max_uses: Some(1),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(1, 1, 1, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        p.acquire(ms(1), Priority::Normal, "a", &mut fx);
        p.release(ms(2), 0, &mut fx);
        settle(&mut p, &mut fx, ms(2));
        assert_eq!(p.size(), 0, "used once, left to the next caller");
        fx.clear();
        p.acquire(ms(20), Priority::Low, "x", &mut fx);
        let o = opens(&fx);
        assert_eq!(o.len(), 1);
        fx.clear();
        p.connect_error(ms(25), o[0], &mut fx);
        assert!(fx.contains(&Effect::Failed {
            priority: Priority::Low,
            waited: SimDuration::from_millis(5),
            payload: "x"
        }));
        assert_eq!(wakes(&fx), vec![ms(35)]);
        assert_eq!(p.classes()[2].failed, 1);
        fx.clear();
        // During the backoff the next request waits; when it ends, the
        // request opens its own connection.
        p.acquire(ms(30), Priority::High, "y", &mut fx);
        assert!(opens(&fx).is_empty());
        assert_eq!(p.waiting(), 1);
        fx.clear();
        p.wake(ms(35), &mut fx);
        let o = opens(&fx);
        assert_eq!((o.len(), p.waiting()), (1, 0));
        fx.clear();
        p.check_invariants().unwrap();
        p.connected(ms(40), o[0], &mut fx);
        assert_eq!(starts(&fx), vec![(o[0], "y", SimDuration::from_millis(10))]);
        assert_eq!(p.counters().connect_retries, 1);
        p.check_invariants().unwrap();
    }

    #[test]
    fn background_max_uses_replaces_at_once() {
        let lc = Lifecycle {
            max_uses: Some(2),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(1, 1, 1, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        for i in 0..2 {
            fx.clear();
            p.acquire(ms(10 * i + 1), Priority::Normal, "q", &mut fx);
            p.release(ms(10 * i + 2), 0, &mut fx);
        }
        assert_eq!(closes(&fx), vec![(0, CloseReason::MaxUses)]);
        assert_eq!(opens(&fx).len(), 1, "replaced in the background");
        p.check_invariants().unwrap();
    }

    fn validating() -> Lifecycle {
        Lifecycle {
            validation: Some(Validation {
                bypass: SimDuration::from_millis(500),
                timeout: SimDuration::from_secs(5),
            }),
            ..Lifecycle::default()
        }
    }

    #[test]
    fn validation_checks_only_after_the_bypass_window() {
        let (mut p, mut fx) = lpool(1, 1, 1, validating(), 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        p.acquire(ms(100), Priority::Normal, "fresh", &mut fx);
        assert_eq!(starts(&fx).len(), 1, "idle 100 ms < 500 ms: unchecked");
        fx.clear();
        p.release(ms(200), 0, &mut fx);
        p.acquire(ms(700), Priority::Normal, "stale", &mut fx);
        assert_eq!(
            fx,
            vec![Effect::Check {
                conn: 0,
                timeout: SimDuration::from_secs(5)
            }]
        );
        fx.clear();
        assert_eq!((p.size(), p.checking(), p.in_flight()), (1, 1, 1));
        p.check_invariants().unwrap();
        p.checked(ms(702), 0, true, &mut fx);
        assert_eq!(starts(&fx), vec![(0, "stale", SimDuration::from_millis(2))]);
        fx.clear();
        p.release(ms(800), 0, &mut fx);
        // A failed validation: closed, replaced, and the request waits for
        // the replacement at the head of its queue.
        p.acquire(ms(2000), Priority::Normal, "unlucky", &mut fx);
        p.acquire(ms(2000), Priority::Normal, "second", &mut fx);
        fx.clear();
        p.checked(ms(2001), 0, false, &mut fx);
        assert_eq!(closes(&fx), vec![(0, CloseReason::Broken)]);
        let o = opens(&fx);
        assert_eq!(o.len(), 1);
        settle(&mut p, &mut fx, ms(2010));
        assert_eq!(
            starts(&fx),
            vec![(o[0], "unlucky", SimDuration::from_millis(10))]
        );
        assert_eq!(p.counters().validations, 2);
        assert_eq!(p.counters().validations_failed, 1);
        assert_eq!(p.waiting(), 1);
        p.check_invariants().unwrap();
    }

    #[test]
    fn a_failed_validation_tries_another_idle_connection() {
        let (mut p, mut fx) = lpool(2, 2, 2, validating(), 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        p.acquire(secs(1), Priority::Normal, "r", &mut fx);
        let first = checks(&fx);
        fx.clear();
        p.checked(
            secs(1) + SimDuration::from_millis(3),
            first[0],
            false,
            &mut fx,
        );
        // The other idle connection is validated next, for the same request.
        let second = checks(&fx);
        assert_eq!(second.len(), 1);
        assert_ne!(second, first);
        assert_eq!(p.waiting(), 0);
        p.check_invariants().unwrap();
    }

    #[test]
    fn health_checks_retry_then_replace_a_broken_connection() {
        let lc = Lifecycle {
            health: Some(HealthCheck {
                interval: SimDuration::from_secs(15),
                timeout: SimDuration::from_secs(5),
                retries: 3,
            }),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(2, 2, 2, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        fx.clear();
        p.wake(secs(15), &mut fx);
        assert_eq!(checks(&fx), vec![0, 1]);
        assert_eq!(wakes(&fx), vec![secs(30)]);
        fx.clear();
        assert_eq!(p.checking(), 2);
        // Both are out of the idle list: a request waits.
        p.acquire(secs(15), Priority::Normal, "r", &mut fx);
        assert_eq!(p.waiting(), 1);
        fx.clear();
        p.checked(secs(16), 0, true, &mut fx);
        assert_eq!(starts(&fx), vec![(0, "r", SimDuration::from_secs(1))]);
        fx.clear();
        // Connection 1 fails: retried at once, broken after 3 failures.
        for attempt in 1..=3 {
            fx.clear();
            p.checked(
                secs(16) + SimDuration::from_millis(attempt),
                1,
                false,
                &mut fx,
            );
            if attempt < 3 {
                assert_eq!(checks(&fx), vec![1]);
                assert!(closes(&fx).is_empty());
            }
            p.check_invariants().unwrap();
        }
        assert_eq!(closes(&fx), vec![(1, CloseReason::Broken)]);
        assert_eq!(opens(&fx).len(), 1);
        assert_eq!(p.counters().checks, 4);
        assert_eq!(p.counters().checks_failed, 3);
        // A stale answer is ignored.
        fx.clear();
        p.checked(secs(17), 1, true, &mut fx);
        assert!(fx.is_empty());
        p.check_invariants().unwrap();
        let s = p.sample(secs(20));
        assert_eq!((s.checks_failed, s.closed, s.opened), (3, 1, 2));
    }

    #[test]
    fn keepalive_checks_connections_idle_that_long() {
        let lc = Lifecycle {
            keepalive: Some(SimDuration::from_secs(30)),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(2, 2, 2, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        assert_eq!(wakes(&fx), vec![secs(30)]);
        fx.clear();
        p.acquire(secs(10), Priority::Normal, "a", &mut fx);
        let (c, _, _) = starts(&fx)[0];
        p.release(secs(20), c, &mut fx);
        fx.clear();
        // At 30 s only the connection idle since 0 is due.
        p.wake(secs(30), &mut fx);
        assert_eq!(checks(&fx), vec![1 - c]);
        assert_eq!(wakes(&fx), vec![secs(50)]);
        fx.clear();
        p.checked(secs(31), 1 - c, true, &mut fx);
        p.wake(secs(50), &mut fx);
        assert_eq!(checks(&fx), vec![c]);
        fx.clear();
        p.checked(secs(51), c, false, &mut fx);
        assert_eq!(closes(&fx), vec![(c, CloseReason::Broken)]);
        assert_eq!(opens(&fx).len(), 1);
        p.check_invariants().unwrap();
    }

    /// Which of the three connections released in turn the next request gets.
    fn idle_pick(order: IdleOrder) -> usize {
        let lc = Lifecycle {
            idle_order: order,
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(3, 3, 3, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            p.acquire(ms(i as u64), Priority::Normal, name, &mut fx);
        }
        let held: Vec<ConnId> = starts(&fx).iter().map(|s| s.0).collect();
        // Released a, b, c in that order: a is the least recently used.
        for (i, &c) in held.iter().enumerate() {
            p.release(ms(10 + i as u64), c, &mut fx);
        }
        fx.clear();
        p.acquire(ms(20), Priority::Normal, "next", &mut fx);
        let got = starts(&fx)[0].0;
        p.check_invariants().unwrap();
        held.iter().position(|&c| c == got).unwrap()
    }

    #[test]
    fn fifo_hands_out_the_least_recently_used_lifo_the_most() {
        assert_eq!(idle_pick(IdleOrder::Lifo), 2, "the last released");
        assert_eq!(idle_pick(IdleOrder::Fifo), 0, "the first released");
    }

    fn broken_under(on_broken: OnBroken) -> (LPool, Fx) {
        let lc = Lifecycle {
            on_broken,
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(1, 1, 1, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        p.acquire(ms(10), Priority::Normal, "victim", &mut fx);
        p.acquire(ms(12), Priority::Normal, "next", &mut fx);
        fx.clear();
        p.fail(ms(20), 0, false, "victim", &mut fx);
        assert_eq!(closes(&fx), vec![(0, CloseReason::Broken)]);
        let o = opens(&fx);
        assert_eq!(o.len(), 1);
        fx.clear();
        p.connected(ms(25), o[0], &mut fx);
        (p, fx)
    }

    #[test]
    fn on_broken_retry_requeues_at_the_head_and_fail_counts() {
        let (p, fx) = broken_under(OnBroken::Retry);
        // Back at the head: it gets the replacement before "next".
        assert_eq!(
            starts(&fx),
            vec![(1, "victim", SimDuration::from_millis(15))]
        );
        assert_eq!(p.counters().broken_retries, 1);
        assert_eq!(p.classes()[1].failed, 0);
        p.check_invariants().unwrap();

        let (p, fx) = broken_under(OnBroken::Fail);
        assert_eq!(starts(&fx), vec![(1, "next", SimDuration::from_millis(13))]);
        assert_eq!(p.counters().broken_retries, 0);
        assert_eq!(p.classes()[1].failed, 1);
        p.check_invariants().unwrap();
    }

    #[test]
    fn a_query_error_on_a_usable_connection_always_fails() {
        let lc = Lifecycle {
            on_broken: OnBroken::Retry,
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(1, 1, 1, lc, 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        p.acquire(ms(1), Priority::High, "q", &mut fx);
        fx.clear();
        p.fail(ms(2), 0, true, "q", &mut fx);
        assert!(fx.is_empty());
        assert_eq!(p.classes()[0].failed, 1);
        assert_eq!(p.counters().broken_retries, 0);
        p.check_invariants().unwrap();
    }

    #[test]
    fn min_idle_keeps_idle_connections_ready_up_to_max() {
        let lc = Lifecycle {
            min_idle: 2,
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(1, 4, 1, lc, 1);
        // Warm-up: target raised to active 0 + min_idle 2.
        assert_eq!(opens(&fx).len(), 2);
        settle(&mut p, &mut fx, SimTime::ZERO);
        fx.clear();
        let mut opened = Vec::new();
        for i in 0..4 {
            p.acquire(ms(i + 1), Priority::Normal, "q", &mut fx);
            opened.push(opens(&fx).len());
            settle(&mut p, &mut fx, ms(i + 1));
            fx.clear();
            p.check_invariants().unwrap();
        }
        // active 1 -> 3 wanted, 2 -> 4, then capped at max 4.
        assert_eq!(opened, vec![1, 1, 0, 0]);
        assert_eq!((p.size(), p.target()), (4, 4));
    }

    #[test]
    fn creates_beyond_the_limit_wait_their_turn() {
        let lc = Lifecycle {
            max_concurrent_creates: Some(1),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(3, 3, 3, lc, 1);
        let mut order = Vec::new();
        for t in 1..=3 {
            let o = opens(&fx);
            assert_eq!(o.len(), 1, "one connect in flight");
            assert_eq!(p.policy_view(ms(t)).opening, 1);
            order.push(o[0]);
            fx.clear();
            p.connected(ms(t), o[0], &mut fx);
            p.check_invariants().unwrap();
        }
        assert!(opens(&fx).is_empty());
        assert_eq!((p.size(), p.idle()), (3, 3));
        order.sort();
        assert_eq!(order, vec![0, 1, 2]);
    }

    #[test]
    fn create_interval_spaces_connect_starts() {
        use std::collections::BTreeSet;
        let lc = Lifecycle {
            create_interval: Some(SimDuration::from_millis(100)),
            ..Lifecycle::default()
        };
        let (mut p, mut fx) = lpool(5, 5, 5, lc, 1);
        // Connects take 1 ms; record when each starts.
        let mut events: BTreeSet<(SimTime, u8, ConnId)> = BTreeSet::new();
        let mut starts = Vec::new();
        let mut now = SimTime::ZERO;
        loop {
            for e in std::mem::take(&mut fx) {
                match e {
                    Effect::Open(c) => {
                        starts.push(now);
                        events.insert((now + SimDuration::from_millis(1), 0, c));
                    }
                    Effect::Wake { at } => {
                        events.insert((at, 1, 0));
                    }
                    _ => {}
                }
            }
            let Some(&(t, kind, c)) = events.iter().next() else {
                break;
            };
            events.remove(&(t, kind, c));
            now = t;
            if kind == 0 {
                p.connected(now, c, &mut fx);
            } else {
                p.wake(now, &mut fx);
            }
            p.check_invariants().unwrap();
        }
        assert_eq!(starts, (0..5).map(|i| ms(100 * i)).collect::<Vec<_>>());
        assert_eq!((p.size(), p.idle()), (5, 5));
    }

    /// Counts the Dropped signals it receives.
    struct DropCounter(std::sync::Arc<std::sync::atomic::AtomicU32>);
    impl Policy for DropCounter {
        fn interval(&self) -> Option<SimDuration> {
            None
        }
        fn wants(&self) -> Wants {
            Wants {
                dropped: true,
                ..Wants::NONE
            }
        }
        fn decide(&mut self, _: SimTime, _: &PoolView, s: Signal) -> Decision {
            if matches!(s, Signal::Dropped { .. }) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Decision::Hold
        }
    }

    #[test]
    fn a_request_past_its_deadline_after_a_failed_validation_is_dropped() {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut p: LPool = Pool::new(
            PoolConfig {
                min: 1,
                max: 1,
                initial: 1,
                acquire_timeout: [SimDuration::from_millis(100); 3],
                max_waiters: 10,
                lifecycle: validating(),
            },
            Box::new(DropCounter(seen.clone())),
            crate::rng::SeedTree::new(1).stream("pool"),
        );
        let mut fx = Vec::new();
        p.start(SimTime::ZERO, &mut fx);
        settle(&mut p, &mut fx, SimTime::ZERO);
        p.acquire(secs(1), Priority::Normal, "slow", &mut fx);
        fx.clear();
        // The check took 200 ms (> the 100 ms acquire timeout) and failed.
        p.checked(secs(1) + SimDuration::from_millis(200), 0, false, &mut fx);
        assert!(fx.contains(&Effect::TimedOut {
            priority: Priority::Normal,
            waited: SimDuration::from_millis(200),
            payload: "slow"
        }));
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(p.classes()[1].timed_out, 1);
        p.check_invariants().unwrap();
    }

    #[test]
    fn samples_count_failures_opens_closes_per_window() {
        let (mut p, mut fx) = lpool(1, 1, 1, Lifecycle::default(), 1);
        settle(&mut p, &mut fx, SimTime::ZERO);
        let s = p.sample(secs(1));
        assert_eq!((s.opened, s.closed, s.failed), (1, 0, 0));
        p.acquire(secs(1), Priority::Normal, "a", &mut fx);
        p.fail(secs(2), 0, false, "a", &mut fx);
        let s = p.sample(secs(3));
        assert_eq!((s.opened, s.closed, s.failed), (0, 1, 1));
        let s = p.sample(secs(4));
        assert_eq!((s.opened, s.closed, s.failed), (0, 0, 0));
        let _ = Backoff::default();
    }
}
