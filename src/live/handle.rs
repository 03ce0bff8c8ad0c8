//! An application-facing async pool over the sans-IO core: the same
//! [`Pool`] and [`Policy`] the simulator and the live driver run, behind a
//! mutex, for code that wants connections (`get(priority).await`).
//!
//! ```text
//!  get(p) ──lock──► Pool::acquire ──Start (idle)──► Guard (derefs to Client)
//!                        │ queued: a oneshot per waiter, keyed by request id
//!                        ▼
//!  Guard dropped ──lock──► Pool::release ──Start for the oldest waiter──► its oneshot
//!  timer task (one per pool): ArmTimer / Wake deadlines ──► Pool::expire / Pool::wake
//!  connect, check and "connection ended" tasks ──lock──► Pool::connected / checked / lost
//! ```
//!
//! Every IO completion locks the pool, answers it and carries out the
//! effects it pushed; nothing awaits while holding the lock. Connections go
//! from one request to the next in the pool's order (FIFO within a priority,
//! strict priority between them): a task that releases and gets again queues
//! behind earlier waiters, so nobody starves (bb8's `get` takes an idle
//! connection before it queues).
//!
//! Cancellation: a `get()` future dropped while it waits leaves its waiter in
//! the pool's queue (the pool has no cancel) but unregisters its reply; when
//! the waiter's turn comes the connection is handed straight back (the
//! request counts as failed, [`HandleStats::cancelled`]) and goes to the next
//! waiter, so nothing leaks and the queue never wedges. A guard already sent
//! to a dropped future is dropped with it and releases its connection.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use super::clock::LiveClock;
use super::conninfo::Target;
use super::driver::{check, error_text};
use super::LiveError;
use crate::core::metrics::{ClassMetrics, PoolCounters};
use crate::core::policy::Policy;
use crate::core::pool::{ConnId, Effect, Pool, PoolConfig};
use crate::core::request::Priority;
use crate::rng::SeedTree;
use crate::scenario::LoadedPolicy;
use crate::time::{SimDuration, SimTime};

/// Knobs of a [`PoolHandle`] that are not pool policy.
#[derive(Clone, Debug)]
pub struct HandleOptions {
    /// Statements prepared on each connection when it opens, available as
    /// [`Guard::statement`] (by index) without a round trip per use.
    pub prepare: Vec<String>,
    /// Seeds the pool's random draws (lifetime jitter).
    pub seed: u64,
    /// [`PoolHandle::connect`] fails if the initial connections are not all
    /// open after this long.
    pub ready_timeout: Duration,
}

impl Default for HandleOptions {
    fn default() -> Self {
        HandleOptions {
            prepare: Vec::new(),
            seed: 0,
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// Why `get` returned no connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GetError {
    /// The request's acquire timeout (its priority's) passed.
    #[error("timed out after {waited:?} waiting for a connection")]
    TimedOut { waited: Duration },
    /// The wait queue was full (`max_waiters`).
    #[error("the wait queue is full")]
    Rejected,
    /// The pool could not give it a working connection (its connect failed,
    /// or it was handed a broken one).
    #[error("no working connection: {0}")]
    Failed(String),
    /// [`PoolHandle::close`] was called.
    #[error("the pool is closed")]
    Closed,
}

/// Counters of a [`PoolHandle`]: the pool's accounting, summed over the
/// priorities, and what only the handle sees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandleStats {
    pub arrived: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Waiting for a connection or holding one.
    pub in_flight: u64,
    /// Opening + idle + active connections.
    pub size: u32,
    pub target: u32,
    /// Open connections (idle or handed out).
    pub open: u32,
    /// `get()` futures dropped while they waited (counted in `failed` when
    /// their turn came, or in `timed_out`).
    pub cancelled: u64,
    pub opened: u64,
    pub connect_errors: u64,
    pub closed_broken: u64,
    /// Idle connections the server closed (their connection task ended).
    pub lost: u64,
    /// Checks run on idle connections, and how many failed.
    pub checks: u64,
    pub checks_failed: u64,
}

type Reply = oneshot::Sender<Result<Guard, GetError>>;

/// The driver's side of a connection slot.
#[derive(Default)]
struct Slot {
    /// `None` while opening, handed out, checked, or closed.
    client: Option<Client>,
    statements: Arc<[Statement]>,
    /// Which connection the slot holds (an end of an older one is stale).
    generation: u64,
    /// The tokio-postgres connection future's task.
    task: Option<JoinHandle<()>>,
}

struct State {
    pool: Pool<u64>,
    fx: Vec<Effect<u64>>,
    slots: Vec<Slot>,
    /// Replies of the requests waiting in the pool's queue, by request id.
    waiting: BTreeMap<u64, Reply>,
    next_id: u64,
    next_generation: u64,
    timers: [Option<SimTime>; 3],
    wake_at: Option<SimTime>,
    /// The deadline the timer task sleeps to (None: none); an earlier one
    /// must notify it.
    sleeping_until: Option<SimTime>,
    closed: bool,
    /// Answers to waiters, sent once the lock is released (a send wakes a
    /// task: no syscall under the lock).
    outbox: Vec<(Reply, Result<Guard, GetError>)>,
    /// Connection tasks of closed connections, awaited by `close`.
    ending: Vec<JoinHandle<()>>,
    open: u32,
    cancelled: u64,
    connect_errors: u64,
    lost: u64,
    checks: u64,
    checks_failed: u64,
    last_error: Option<String>,
}

struct Inner {
    state: Mutex<State>,
    clock: LiveClock,
    target: Target,
    prepare: Arc<[String]>,
    notify: Arc<Notify>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The timer task holds only a weak reference: let it see we are gone.
        self.notify.notify_one();
    }
}

/// An async connection pool run by the sans-IO core and a pooltune policy.
/// Cheap to clone (one shared pool).
#[derive(Clone)]
pub struct PoolHandle {
    inner: Arc<Inner>,
}

/// A connection handed out by [`PoolHandle::get`]; derefs to the
/// [`Client`] and returns the connection to the pool when dropped (a
/// connection the server closed meanwhile is replaced, and the request
/// counts as failed).
pub struct Guard {
    inner: Arc<Inner>,
    conn: ConnId,
    client: Option<Client>,
    statements: Arc<[Statement]>,
}

impl Deref for Guard {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a guard holds its client until dropped")
    }
}

impl Guard {
    /// The `i`-th statement of [`HandleOptions::prepare`], prepared on this
    /// connection.
    pub fn statement(&self, i: usize) -> &Statement {
        &self.statements[i]
    }

    /// Takes the connection out without releasing it (the caller does).
    fn defuse(mut self) -> (ConnId, Client) {
        let client = self
            .client
            .take()
            .expect("an undropped guard holds its client");
        (self.conn, client)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let inner = &self.inner;
        let mut g = inner.lock();
        let now = inner.clock.now();
        let st = &mut *g;
        if client.is_closed() {
            drop(client);
            st.open -= 1;
            st.pool.fail(now, self.conn, false, 0, &mut st.fx);
        } else {
            st.slots[self.conn as usize].client = Some(client);
            st.pool.release(now, self.conn, &mut st.fx);
        }
        if st.closed {
            st.pool.finish(now, &mut st.fx);
        }
        inner.apply(st, now, None);
        inner.unlock(g);
    }
}

impl PoolHandle {
    /// Starts a pool on `target` with `config` and `policy`, and returns
    /// once its initial connections are open (an error if one fails, or if
    /// they are not open within [`HandleOptions::ready_timeout`]).
    pub async fn connect(
        target: Target,
        config: PoolConfig,
        policy: Box<dyn Policy>,
        options: HandleOptions,
    ) -> Result<PoolHandle, LiveError> {
        let initial = config.initial;
        let notify = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                pool: Pool::new(config, policy, SeedTree::new(options.seed).stream("pool")),
                fx: Vec::with_capacity(16),
                slots: Vec::new(),
                waiting: BTreeMap::new(),
                next_id: 1,
                next_generation: 1,
                timers: [None; 3],
                wake_at: None,
                sleeping_until: None,
                closed: false,
                outbox: Vec::new(),
                ending: Vec::new(),
                open: 0,
                cancelled: 0,
                connect_errors: 0,
                lost: 0,
                checks: 0,
                checks_failed: 0,
                last_error: None,
            }),
            clock: LiveClock::start(),
            target,
            prepare: options.prepare.into(),
            notify: notify.clone(),
        });
        {
            let mut g = inner.lock();
            let now = inner.clock.now();
            let st = &mut *g;
            st.pool.start(now, &mut st.fx);
            inner.apply(st, now, None);
            inner.unlock(g);
        }
        tokio::spawn(timer_task(Arc::downgrade(&inner), notify));
        let handle = PoolHandle { inner };
        let deadline = tokio::time::Instant::now() + options.ready_timeout;
        loop {
            {
                let st = handle.inner.lock();
                if st.open >= initial {
                    break;
                }
                if st.connect_errors > 0 {
                    return Err(LiveError::Connect {
                        target: handle.inner.target.describe().to_string(),
                        message: st.last_error.clone().unwrap_or_default(),
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LiveError::Connect {
                    target: handle.inner.target.describe().to_string(),
                    message: format!(
                        "the pool's {initial} initial connections did not open within {:?}",
                        options.ready_timeout
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(handle)
    }

    /// [`PoolHandle::connect`] with a policy file's pool and policy.
    pub async fn from_policy(
        target: Target,
        policy: &LoadedPolicy,
        options: HandleOptions,
    ) -> Result<PoolHandle, LiveError> {
        Self::connect(
            target,
            policy.spec.pool.clone(),
            policy.spec.build(),
            options,
        )
        .await
    }

    /// A connection for a request of `priority`: at once if one is idle,
    /// else after waiting in the pool's queue (within the priority's acquire
    /// timeout). Cancellation-safe (see the module documentation).
    pub async fn get(&self, priority: Priority) -> Result<Guard, GetError> {
        let inner = &self.inner;
        // The lock's scope ends before the await (the future stays Send).
        let waiting = {
            let mut g = inner.lock();
            if g.closed {
                return Err(GetError::Closed);
            }
            let now = inner.clock.now();
            let st = &mut *g;
            let id = st.next_id;
            st.next_id += 1;
            st.pool.acquire(now, priority, id, &mut st.fx);
            match inner.apply(st, now, Some(id)) {
                Some(Ok(conn)) => {
                    let slot = &mut st.slots[conn as usize];
                    let guard = Guard {
                        inner: inner.clone(),
                        conn,
                        client: slot.client.take(),
                        statements: slot.statements.clone(),
                    };
                    inner.unlock(g);
                    return Ok(guard);
                }
                Some(Err(e)) => {
                    inner.unlock(g);
                    return Err(e);
                }
                None => {
                    let (tx, rx) = oneshot::channel();
                    st.waiting.insert(id, tx);
                    inner.unlock(g);
                    Waiting {
                        inner: inner.clone(),
                        id,
                        rx,
                        done: false,
                    }
                }
            }
        };
        waiting.await
    }

    /// The pool's accounting and the handle's counters, now.
    pub fn stats(&self) -> HandleStats {
        let st = self.inner.lock();
        let sum = |f: fn(&ClassMetrics) -> u64| st.pool.classes().iter().map(f).sum::<u64>();
        let c: &PoolCounters = st.pool.counters();
        HandleStats {
            arrived: sum(|m| m.arrived),
            completed: sum(|m| m.completed),
            timed_out: sum(|m| m.timed_out),
            failed: sum(|m| m.failed),
            rejected: sum(|m| m.rejected),
            in_flight: st.pool.in_flight(),
            size: st.pool.size(),
            target: st.pool.target(),
            open: st.open,
            cancelled: st.cancelled,
            opened: c.opened,
            connect_errors: st.connect_errors,
            closed_broken: c.closed_broken,
            lost: st.lost,
            checks: st.checks,
            checks_failed: st.checks_failed,
        }
    }

    /// The pool's invariants (accounting, states, sizes); what is violated.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.inner.lock().pool.check_invariants()
    }

    /// Stops handing out connections (`get` fails with
    /// [`GetError::Closed`]), closes the idle connections and waits (at
    /// most `grace`) for them to end. Connections in use close when their
    /// guards drop (after serving the requests already waiting).
    pub async fn close(&self, grace: Duration) {
        let tasks = {
            let mut g = self.inner.lock();
            let now = self.inner.clock.now();
            let st = &mut *g;
            st.closed = true;
            st.pool.finish(now, &mut st.fx);
            self.inner.apply(st, now, None);
            let tasks = std::mem::take(&mut st.ending);
            self.inner.unlock(g);
            tasks
        };
        let deadline = tokio::time::Instant::now() + grace;
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// The wait of a queued `get`: unregisters its reply if dropped first.
struct Waiting {
    inner: Arc<Inner>,
    id: u64,
    rx: oneshot::Receiver<Result<Guard, GetError>>,
    done: bool,
}

impl Future for Waiting {
    type Output = Result<Guard, GetError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(r) => {
                self.done = true;
                // The sender is only dropped unanswered when the pool is gone.
                Poll::Ready(r.unwrap_or(Err(GetError::Closed)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.inner.lock();
        if st.waiting.remove(&self.id).is_some() {
            st.cancelled += 1;
        }
        // The lock is released here; a guard already in `rx` is dropped
        // after it (with the field) and releases its connection.
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the pool as it was between
        // two calls (each call is complete or not started): carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases the lock, then answers the waiters the pool served or
    /// dropped meanwhile. A guard whose `get()` was dropped in between comes
    /// back: its connection returns to the pool (the request counts as
    /// failed and cancelled), which may serve further waiters.
    fn unlock(self: &Arc<Self>, mut st: MutexGuard<'_, State>) {
        let mut out = std::mem::take(&mut st.outbox);
        drop(st);
        while !out.is_empty() {
            let mut back = Vec::new();
            for (reply, answer) in out.drain(..) {
                if let Err(Ok(guard)) = reply.send(answer) {
                    back.push(guard.defuse());
                }
            }
            if back.is_empty() {
                return;
            }
            let mut st = self.lock();
            let now = self.clock.now();
            let s = &mut *st;
            for (conn, client) in back {
                s.slots[conn as usize].client = Some(client);
                s.cancelled += 1;
                s.pool.fail(now, conn, true, 0, &mut s.fx);
            }
            self.apply(s, now, None);
            out = std::mem::take(&mut s.outbox);
        }
    }

    /// Carries out the effects the pool pushed, until it pushes no more.
    /// `mine`: the id of the request the caller just issued; what the pool
    /// decided for it is returned instead of sent.
    fn apply(
        self: &Arc<Self>,
        st: &mut State,
        now: SimTime,
        mine: Option<u64>,
    ) -> Option<Result<ConnId, GetError>> {
        let mut outcome = None;
        while !st.fx.is_empty() {
            let mut fx = std::mem::take(&mut st.fx);
            for e in fx.drain(..) {
                match e {
                    Effect::Start { conn, payload, .. } => {
                        if Some(payload) == mine {
                            outcome = Some(Ok(conn));
                            continue;
                        }
                        match st.waiting.remove(&payload) {
                            Some(reply) => {
                                let slot = &mut st.slots[conn as usize];
                                let guard = Guard {
                                    inner: self.clone(),
                                    conn,
                                    client: slot.client.take(),
                                    statements: slot.statements.clone(),
                                };
                                st.outbox.push((reply, Ok(guard)));
                            }
                            // Its get() was dropped (and counted cancelled
                            // then): straight back to the pool, to the next
                            // waiter.
                            None => st.pool.fail(now, conn, true, payload, &mut st.fx),
                        }
                    }
                    Effect::TimedOut {
                        payload, waited, ..
                    } => {
                        let e = GetError::TimedOut {
                            waited: Duration::from_nanos(waited.0),
                        };
                        self.answer(st, payload, mine, e, &mut outcome);
                    }
                    Effect::Rejected { payload, .. } => {
                        self.answer(st, payload, mine, GetError::Rejected, &mut outcome);
                    }
                    Effect::Failed { payload, .. } => {
                        let why = st
                            .last_error
                            .clone()
                            .unwrap_or_else(|| "the connection broke".into());
                        self.answer(st, payload, mine, GetError::Failed(why), &mut outcome);
                    }
                    Effect::Open(conn) => {
                        let i = conn as usize;
                        if st.slots.len() <= i {
                            st.slots.resize_with(i + 1, Slot::default);
                        }
                        let generation = st.next_generation;
                        st.next_generation += 1;
                        st.slots[i].generation = generation;
                        tokio::spawn(open_task(Arc::downgrade(self), conn, generation));
                    }
                    Effect::Close { conn, .. } => {
                        let slot = &mut st.slots[conn as usize];
                        slot.generation = 0;
                        slot.statements = Arc::from(Vec::new());
                        // Dropping the client sends Terminate; its task ends.
                        if slot.client.take().is_some() {
                            st.open -= 1;
                        }
                        if let Some(t) = slot.task.take() {
                            st.ending.retain(|t| !t.is_finished());
                            st.ending.push(t);
                        }
                        st.pool.closed(now, conn);
                    }
                    Effect::Check { conn, timeout } => {
                        let client = st.slots[conn as usize]
                            .client
                            .take()
                            .expect("a checked connection is open");
                        tokio::spawn(check_task(Arc::downgrade(self), conn, client, timeout));
                    }
                    Effect::ArmTimer { priority, at } => {
                        st.timers[priority.index()] = Some(at);
                        self.timer_at(st, at);
                    }
                    Effect::Wake { at } => {
                        st.wake_at = Some(st.wake_at.map_or(at, |w| w.min(at)));
                        self.timer_at(st, at);
                    }
                }
            }
            if st.fx.is_empty() {
                // Keep the buffer's allocation.
                st.fx = fx;
            }
        }
        outcome
    }

    /// The request `id` gets no connection: tell its caller.
    fn answer(
        &self,
        st: &mut State,
        id: u64,
        mine: Option<u64>,
        e: GetError,
        outcome: &mut Option<Result<ConnId, GetError>>,
    ) {
        if Some(id) == mine {
            *outcome = Some(Err(e));
        } else if let Some(reply) = st.waiting.remove(&id) {
            st.outbox.push((reply, Err(e)));
        }
    }

    /// A deadline at `at`: wake the timer task if it sleeps past it.
    fn timer_at(&self, st: &mut State, at: SimTime) {
        if st.sleeping_until.is_none_or(|t| at < t) {
            st.sleeping_until = Some(at);
            self.notify.notify_one();
        }
    }
}

/// Fires the pool's deadlines: acquire timeouts and the pool's own wake-ups
/// (connect retries, health checks, policy ticks...). Ends when the pool is
/// dropped.
async fn timer_task(weak: Weak<Inner>, notify: Arc<Notify>) {
    loop {
        let (next, clock) = {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let mut g = inner.lock();
            let now = inner.clock.now();
            let st = &mut *g;
            for p in Priority::ALL {
                if st.timers[p.index()].is_some_and(|at| at <= now) {
                    st.timers[p.index()] = None;
                    st.pool.expire(now, p, &mut st.fx);
                    inner.apply(st, now, None);
                }
            }
            if st.wake_at.is_some_and(|at| at <= now) {
                st.wake_at = None;
                st.pool.wake(now, &mut st.fx);
                inner.apply(st, now, None);
            }
            let next = st.timers.into_iter().chain([st.wake_at]).flatten().min();
            st.sleeping_until = next;
            let clock = inner.clock;
            inner.unlock(g);
            (next, clock)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(clock.deadline(at)) => {}
                    _ = notify.notified() => {}
                }
            }
            None => notify.notified().await,
        }
    }
}

/// Opens the connection of slot `conn` and prepares the statements.
async fn open_task(weak: Weak<Inner>, conn: ConnId, generation: u64) {
    let Some((target, prepare)) = weak
        .upgrade()
        .map(|i| (i.target.clone(), i.prepare.clone()))
    else {
        return;
    };
    let ended = weak.clone();
    let result = async {
        let (client, connection) = target.config().connect(target.tls()).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
            connection_ended(ended, conn, generation);
        });
        let mut statements = Vec::with_capacity(prepare.len());
        for sql in prepare.iter() {
            match client.prepare(sql).await {
                Ok(s) => statements.push(s),
                Err(e) => {
                    drop(client);
                    let _ = task.await;
                    return Err(e);
                }
            }
        }
        Ok((client, statements, task))
    }
    .await;
    // Pool gone: the client drops here and its connection closes.
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let mut g = inner.lock();
    let now = inner.clock.now();
    let st = &mut *g;
    match result {
        Ok((client, statements, task)) => {
            let slot = &mut st.slots[conn as usize];
            slot.client = Some(client);
            slot.statements = statements.into();
            slot.task = Some(task);
            st.open += 1;
            st.pool.connected(now, conn, &mut st.fx);
            if st.closed {
                st.pool.finish(now, &mut st.fx);
            }
        }
        Err(e) => {
            st.connect_errors += 1;
            st.last_error = Some(target.redact(&error_text(&e)));
            // The pool retries after its create backoff (a Wake).
            st.pool.connect_error(now, conn, &mut st.fx);
        }
    }
    inner.apply(st, now, None);
    inner.unlock(g);
}

/// A connection's task ended (the server closed it, or we did).
fn connection_ended(weak: Weak<Inner>, conn: ConnId, generation: u64) {
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let mut g = inner.lock();
    let now = inner.clock.now();
    let st = &mut *g;
    let slot = &mut st.slots[conn as usize];
    // Held by a guard or a check: they find out. Closed by us: stale.
    if slot.generation != generation || slot.client.is_none() {
        return;
    }
    if st.pool.lost(now, conn, &mut st.fx) {
        st.lost += 1;
        // `lost` closed it (effect Close): the slot's client goes there.
    }
    inner.apply(st, now, None);
    inner.unlock(g);
}

/// Runs a check on an idle connection and answers the pool.
async fn check_task(weak: Weak<Inner>, conn: ConnId, client: Client, timeout: SimDuration) {
    let ok = check(&client, timeout).await && !client.is_closed();
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let mut g = inner.lock();
    let now = inner.clock.now();
    let st = &mut *g;
    st.slots[conn as usize].client = Some(client);
    st.checks += 1;
    if !ok {
        st.checks_failed += 1;
    }
    st.pool.checked(now, conn, ok, &mut st.fx);
    if st.closed {
        st.pool.finish(now, &mut st.fx);
    }
    inner.apply(st, now, None);
    inner.unlock(g);
}
