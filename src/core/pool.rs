//! The pool state machine (sans-IO).
//!
//! The pool owns connections and wait queues and records metrics. It never
//! performs IO: each call takes `now` and pushes [`Effect`]s that the driver
//! carries out (open a connection, start a query, arm a timer...) and answers
//! with further calls (`connected`, `release`, `expire`...).
//!
//! ```text
//!   acquire ──► idle connection? ──yes──► Start{conn}            ──► driver runs the query ──► release
//!                    │no
//!                    ▼
//!   wait queue [high | normal | low], FIFO within a priority, each waiter with its deadline
//!        │ a connection is released or opened: oldest waiter of the highest non-empty priority
//!        │ its deadline passes (timer per priority queue): TimedOut
//! ```
//!
//! Connection states: Opening -> Idle <-> Active, then Closing -> (slot free).
//! The pool's *size* counts opening + idle + active connections and never
//! exceeds `max`; the policy sets a *target* in [min, max].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::core::lifecycle::Lifecycle;
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
    /// Being closed; no longer counted in the size.
    Closing,
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

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Effect<T> {
    /// Open a connection in slot `conn`; answer with `connected` or `connect_failed`.
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
}

/// The pool. `T` is the driver's payload carried by each request (the
/// simulator's service work, the live driver's reply channel).
pub struct Pool<T> {
    cfg: PoolConfig,
    policy: Box<dyn Policy>,
    wants: Wants,
    policy_interval: Option<SimDuration>,
    /// Jitter and other draws of the lifecycle (seeded by the driver).
    #[allow(dead_code)]
    rng: Stream,
    timers: BinaryHeap<Reverse<(SimTime, u64, Timer)>>,
    timer_seq: u64,
    /// The wake-up last asked of the driver (None: none pending).
    wake_armed: Option<SimTime>,
    conns: Vec<Conn>,
    free_slots: Vec<ConnId>,
    /// Idle connections, most recently used at the back (handed out LIFO,
    /// shrunk from the front: the longest idle goes first).
    idle: VecDeque<ConnId>,
    waiters: WaitQueue<T>,
    /// Running queries per priority.
    active_by: [u32; 3],
    target: u32,
    size: u32,
    opening: u32,
    active: u32,
    closing: u32,
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
            cfg,
            conns: Vec::new(),
            free_slots: Vec::new(),
            idle: VecDeque::new(),
            size: 0,
            opening: 0,
            active: 0,
            closing: 0,
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
        self.reconcile(now, fx);
        self.note_size();
        if let Some(iv) = self.policy_interval {
            self.schedule(now + iv, Timer::PolicyTick, fx);
        }
        if let Some(iv) = self.waiters.interval() {
            self.schedule(now + iv, Timer::QueueInterval, fx);
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
        if let Some(&Reverse((at, _, _))) = self.timers.peek() {
            self.wake_armed = Some(at);
            fx.push(Effect::Wake { at });
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
                let mut dropped = |p: Priority, w: Waiter<T>| drop_waiter(classes, fx, now, p, w);
                self.waiters.on_interval(now, &mut dropped);
                if let Some(iv) = self.waiters.interval() {
                    self.schedule(now + iv, Timer::QueueInterval, fx);
                }
            }
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
        if let Some(conn) = self.idle.pop_back() {
            self.hand_out(now, conn, priority, now, payload, fx);
            return;
        }
        self.classes[p].found_busy += 1;
        if self.waiters.len() >= self.cfg.max_waiters {
            self.classes[p].rejected += 1;
            fx.push(Effect::Rejected { priority, payload });
            return;
        }
        let deadline = now.saturating_add(self.cfg.acquire_timeout[p]);
        let arm = self.waiters.push(
            priority,
            Waiter {
                arrival: now,
                deadline,
                payload,
            },
        );
        if let Some(at) = arm {
            fx.push(Effect::ArmTimer { priority, at });
        }
        if self.wants.queued {
            self.consult(now, Signal::Queued { priority }, fx);
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
        self.reuse(now, conn, fx);
        if self.wants.completed {
            let signal = Signal::Completed {
                query: now - c.acquired_at,
                waited: c.acquired_at - c.req_arrival,
                inflight: c.inflight,
            };
            self.consult(now, signal, fx);
        }
    }

    /// The query on `conn` failed (live driver): the request counts as
    /// failed (not in the query or response distributions). A connection
    /// that still works (`usable`) returns to the pool like a release; a
    /// broken one is closed (reason `Broken`) and the pool opens a
    /// replacement at once to stay at its target.
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
        let _ = payload;
        let c = self.conns[conn as usize];
        debug_assert_eq!(
            c.state,
            ConnState::Active,
            "failure on a connection not active"
        );
        self.classes[c.req_priority.index()].failed += 1;
        self.active -= 1;
        self.active_by[c.req_priority.index()] -= 1;
        if usable {
            self.reuse(now, conn, fx);
        } else {
            self.close(conn, CloseReason::Broken, fx);
            self.reconcile(now, fx);
        }
    }

    /// The driver learnt that the connection in slot `conn` is gone (the
    /// server closed it: a terminated backend, a restart). An idle one is
    /// closed (reason `Broken`) and replaced at once, and `true` returned;
    /// for a connection in any other state nothing happens (`false`): an
    /// active one reports through its query ([`Pool::fail`]).
    pub fn lost(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) -> bool {
        if self.conns.get(conn as usize).map(|c| c.state) != Some(ConnState::Idle) {
            return false;
        }
        self.advance(now);
        let at = self
            .idle
            .iter()
            .position(|&c| c == conn)
            .expect("an idle connection is in the idle list");
        self.idle.remove(at);
        self.close(conn, CloseReason::Broken, fx);
        self.reconcile(now, fx);
        true
    }

    /// The check asked with [`Effect::Check`] on `conn` ended: `ok` when the
    /// connection answered within the timeout.
    pub fn checked(&mut self, now: SimTime, conn: ConnId, ok: bool, fx: &mut Vec<Effect<T>>) {
        // Filled in with health checks and validation (lifecycle).
        let _ = (now, conn, ok, fx);
    }

    /// The connection in slot `conn` finished opening.
    pub fn connected(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) {
        self.advance(now);
        let c = &mut self.conns[conn as usize];
        debug_assert_eq!(c.state, ConnState::Opening);
        self.counters.connect_time_ns += (now - c.since).as_nanos() as u128;
        self.counters.opened += 1;
        self.opening -= 1;
        self.reuse(now, conn, fx);
    }

    /// Opening the connection in slot `conn` failed; the slot is freed. The
    /// pool tries again at the next policy decision.
    pub fn connect_failed(&mut self, now: SimTime, conn: ConnId) {
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

    /// What the policy sees now, with `window`.
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
            failed: 0,
            opened: 0,
            closed: 0,
            checks_failed: 0,
            db_refused: 0,
            faults_active: 0,
        }
    }

    /// Ends the run at `now`: closes idle connections (reason end of run).
    /// Requests still waiting or running stay counted as in flight.
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
    pub fn waiting(&self) -> u32 {
        self.waiters.len()
    }
    /// Smallest and largest size seen since start.
    pub fn size_range_seen(&self) -> (u32, u32) {
        (
            self.size_min_seen.min(self.size_max_seen),
            self.size_max_seen,
        )
    }
    /// Requests holding a connection or waiting for one.
    pub fn in_flight(&self) -> u64 {
        self.active as u64 + self.waiters.len() as u64
    }

    /// Checks the pool's invariants; returns what is violated.
    pub fn check_invariants(&self) -> Result<(), String> {
        let idle = self.idle.len() as u32;
        let count = |s: ConnState| self.conns.iter().filter(|c| c.state == s).count() as u32;
        if self.size != self.opening + idle + self.active {
            return Err(format!(
                "size {} != opening {} + idle {} + active {}",
                self.size, self.opening, idle, self.active
            ));
        }
        if count(ConnState::Opening) != self.opening
            || count(ConnState::Idle) != idle
            || count(ConnState::Active) != self.active
            || count(ConnState::Closing) != self.closing
        {
            return Err("connection states disagree with the counters".into());
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
            let open = (self.idle.len() as u32 + self.active) as u128;
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
        }
        Mark {
            at: now,
            integrals: self.integrals,
            counts,
        }
    }

    /// A connection became free (opened, or its query ended): serve the
    /// oldest waiter of the highest non-empty priority, else close it if the
    /// pool is above target, else park it idle.
    #[inline]
    fn reuse(&mut self, now: SimTime, conn: ConnId, fx: &mut Vec<Effect<T>>) {
        let classes = &mut self.classes;
        let mut dropped = |p: Priority, w: Waiter<T>| drop_waiter(classes, fx, now, p, w);
        if let Some((p, w)) = self
            .waiters
            .pop_next(now, self.size, self.active_by, &mut dropped)
        {
            self.hand_out(now, conn, p, w.arrival, w.payload, fx);
            return;
        }
        if self.size > self.target {
            self.close(conn, CloseReason::Shrink, fx);
        } else {
            self.conns[conn as usize].state = ConnState::Idle;
            self.idle.push_back(conn);
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
        fx.push(Effect::Start {
            conn,
            priority,
            waited,
            payload,
        });
    }

    fn open_one(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        let conn = Conn {
            state: ConnState::Opening,
            since: now,
            acquired_at: now,
            req_arrival: now,
            req_priority: Priority::Normal,
            inflight: 0,
        };
        let id = match self.free_slots.pop() {
            Some(id) => {
                self.conns[id as usize] = conn;
                id
            }
            None => {
                self.conns.push(conn);
                (self.conns.len() - 1) as ConnId
            }
        };
        self.opening += 1;
        self.size += 1;
        fx.push(Effect::Open(id));
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

    /// Steers the size to the target: opens below it, closes idle above it.
    fn reconcile(&mut self, now: SimTime, fx: &mut Vec<Effect<T>>) {
        while self.size < self.target {
            self.open_one(now, fx);
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

/// A waiter dropped early by the queue's discipline: counted as timed out.
fn drop_waiter<T>(
    classes: &mut [ClassMetrics; 3],
    fx: &mut Vec<Effect<T>>,
    now: SimTime,
    priority: Priority,
    w: Waiter<T>,
) {
    let waited = now - w.arrival;
    let m = &mut classes[priority.index()];
    m.timed_out += 1;
    m.wait.record(waited);
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
}
