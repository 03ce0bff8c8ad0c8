//! The pool's lifecycle knobs under random operations: a tiny driver with a
//! fake database (connects and checks that fail, queries that end, fail or
//! break their connection) runs the sans-IO pool directly, and after every
//! call the pool's invariants hold and every request is accounted for
//! exactly once, by the pool's counters and by the driver's own books.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use pooltune::core::lifecycle::{
    Backoff, Creator, HealthCheck, IdleOrder, Lifecycle, Lifetime, OnBroken, Validation,
};
use pooltune::core::metrics::CloseReason;
use pooltune::core::policy::{Decision, Fixed};
use pooltune::core::pool::{ConnId, Effect, Pool, PoolConfig};
use pooltune::core::request::Priority;
use pooltune::rng::SeedTree;
use pooltune::time::{SimDuration, SimTime};

fn ms(v: u64) -> SimDuration {
    SimDuration::from_millis(v)
}

#[derive(Clone, Debug)]
struct Knobs {
    min: u32,
    max: u32,
    initial: u32,
    timeout_ms: u64,
    max_waiters: u32,
    lc: Lifecycle,
}

/// The fake database's odds, in percent.
#[derive(Clone, Debug)]
struct World {
    connect_ok: u32,
    check_ok: u32,
    query_fails: u32,
    query_breaks: u32,
    seed: u64,
}

#[derive(Clone, Debug)]
enum Op {
    Arrive {
        gap_ms: u64,
        priority: Priority,
        service_ms: u64,
    },
    Idle {
        ms: u64,
    },
    Lose {
        slot: u32,
    },
    Resize {
        target: u32,
    },
}

fn knobs() -> impl Strategy<Value = Knobs> {
    let sizes = (1u32..6)
        .prop_flat_map(|max| (0..=max, Just(max)))
        .prop_flat_map(|(min, max)| (Just(min), Just(max), min..=max));
    let lifecycle = (
        (
            0u32..3,
            prop::option::of(100u64..3_000),
            50u64..2_000,
            prop::option::of((200u64..5_000, 0.0f64..0.5, any::<bool>())),
            prop::option::of(1u32..4),
            prop::option::of((0u64..500, 1u64..50)),
        ),
        (
            prop::option::of(50u64..2_000),
            prop::option::of((100u64..3_000, 1u64..50, 0u32..4)),
            prop::option::of(1u32..3),
            (1u64..40, 1u64..500),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (min_idle, idle_timeout, housekeeping, lifetime, max_uses, validation),
                (keepalive, health, creates, (b0, bmax), caller, fifo, retry),
            )| Lifecycle {
                min_idle,
                idle_timeout: idle_timeout.map(ms),
                housekeeping: ms(housekeeping),
                lifetime: lifetime.map(|(max, jitter, stagger)| Lifetime {
                    max: ms(max),
                    jitter,
                    stagger,
                }),
                max_uses,
                validation: validation.map(|(bypass, timeout)| Validation {
                    bypass: ms(bypass),
                    timeout: ms(timeout),
                }),
                keepalive: keepalive.map(ms),
                health: health.map(|(interval, timeout, retries)| HealthCheck {
                    interval: ms(interval),
                    timeout: ms(timeout),
                    retries,
                }),
                max_concurrent_creates: creates,
                create_backoff: Backoff {
                    initial: ms(b0),
                    max: ms(b0.max(bmax)),
                    multiplier: 2.0,
                },
                creator: if caller {
                    Creator::Caller
                } else {
                    Creator::Background
                },
                idle_order: if fifo {
                    IdleOrder::Fifo
                } else {
                    IdleOrder::Lifo
                },
                on_broken: if retry {
                    OnBroken::Retry
                } else {
                    OnBroken::Fail
                },
                ..Lifecycle::default()
            },
        );
    (sizes, 1u64..400, 0u32..6, lifecycle).prop_map(
        |((min, max, initial), timeout_ms, max_waiters, lc)| Knobs {
            min,
            max,
            initial,
            timeout_ms,
            max_waiters,
            lc,
        },
    )
}

fn world() -> impl Strategy<Value = World> {
    (50u32..=100, 50u32..=100, 0u32..10, 0u32..10, any::<u64>()).prop_map(
        |(connect_ok, check_ok, query_fails, query_breaks, seed)| World {
            connect_ok,
            check_ok,
            query_fails,
            query_breaks,
            seed,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let priority = prop_oneof![
        Just(Priority::High),
        Just(Priority::Normal),
        Just(Priority::Low)
    ];
    prop_oneof![
        6 => (0u64..30, priority, 1u64..80).prop_map(|(gap_ms, priority, service_ms)| Op::Arrive {
            gap_ms,
            priority,
            service_ms
        }),
        1 => (1u64..2_000).prop_map(|ms| Op::Idle { ms }),
        1 => (0u32..8).prop_map(|slot| Op::Lose { slot }),
        1 => (0u32..8).prop_map(|target| Op::Resize { target }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Connect {
        conn: ConnId,
        ok: bool,
    },
    Check {
        conn: ConnId,
        ok: bool,
    },
    /// outcome: 0 completes, 1 fails (usable), 2 breaks the connection.
    Query {
        conn: ConnId,
        id: u64,
        outcome: u8,
    },
    Closed(ConnId),
    Expire(Priority),
    Wake,
}

/// What became of each request, as the driver saw it.
#[derive(Default, Debug, PartialEq)]
struct Books {
    arrived: u64,
    completed: u64,
    failed: u64,
    timed_out: u64,
    rejected: u64,
    /// Requests with a final outcome, and those running now.
    done: BTreeSet<u64>,
    running: BTreeSet<u64>,
}

struct Driver {
    pool: Pool<u64>,
    world: World,
    rng: ChaCha8Rng,
    now: SimTime,
    seq: u64,
    events: BTreeMap<(SimTime, u64), Ev>,
    service: BTreeMap<u64, u64>,
    books: Books,
    fx: Vec<Effect<u64>>,
    /// Every effect, for the determinism check.
    trace: Vec<String>,
}

impl Driver {
    fn new(k: &Knobs, world: &World) -> Driver {
        let pool = Pool::new(
            PoolConfig {
                min: k.min,
                max: k.max,
                initial: k.initial,
                acquire_timeout: [ms(k.timeout_ms); 3],
                max_waiters: k.max_waiters,
                lifecycle: k.lc,
            },
            Box::new(Fixed),
            SeedTree::new(world.seed).stream("pool"),
        );
        let mut d = Driver {
            pool,
            world: world.clone(),
            rng: ChaCha8Rng::seed_from_u64(world.seed),
            now: SimTime::ZERO,
            seq: 0,
            events: BTreeMap::new(),
            service: BTreeMap::new(),
            books: Books::default(),
            fx: Vec::new(),
            trace: Vec::new(),
        };
        d.pool.start(SimTime::ZERO, &mut d.fx);
        d.after_call();
        d
    }

    fn at(&mut self, t: SimTime, ev: Ev) {
        self.events.insert((t, self.seq), ev);
        self.seq += 1;
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    /// Carries out the effects of the last call and checks the pool.
    fn after_call(&mut self) {
        if let Err(e) = self.pool.check_invariants() {
            panic!("at {:?}: {e}", self.now);
        }
        let now = self.now;
        for e in std::mem::take(&mut self.fx) {
            self.trace.push(format!("{:?} {e:?}", now));
            match e {
                Effect::Open(conn) => {
                    let ok = self.chance(self.world.connect_ok);
                    let t = now + ms(self.rng.random_range(1..20));
                    self.at(t, Ev::Connect { conn, ok });
                }
                Effect::Start { conn, payload, .. } => {
                    assert!(
                        !self.books.done.contains(&payload),
                        "request {payload} started after its end"
                    );
                    assert!(
                        self.books.running.insert(payload),
                        "request {payload} started twice"
                    );
                    let roll = self.rng.random_range(0..100);
                    let outcome = if roll < self.world.query_breaks {
                        2
                    } else if roll < self.world.query_breaks + self.world.query_fails {
                        1
                    } else {
                        0
                    };
                    let t = now + ms(self.service[&payload]);
                    self.at(
                        t,
                        Ev::Query {
                            conn,
                            id: payload,
                            outcome,
                        },
                    );
                }
                Effect::TimedOut { payload, .. } => {
                    self.books.timed_out += 1;
                    self.end(payload);
                }
                Effect::Rejected { payload, .. } => {
                    self.books.rejected += 1;
                    self.end(payload);
                }
                Effect::Failed { payload, .. } => {
                    self.books.failed += 1;
                    self.end(payload);
                }
                Effect::Close { conn, reason } => {
                    assert_ne!(reason, CloseReason::EndOfRun);
                    self.at(now + ms(1), Ev::Closed(conn));
                }
                Effect::ArmTimer { priority, at } => self.at(at, Ev::Expire(priority)),
                Effect::Wake { at } => self.at(at, Ev::Wake),
                Effect::Check { conn, timeout } => {
                    let ok = self.chance(self.world.check_ok);
                    let took = ms(self.rng.random_range(0..5)).min(timeout);
                    self.at(now + took, Ev::Check { conn, ok });
                }
            }
        }
    }

    fn end(&mut self, id: u64) {
        assert!(
            !self.books.running.contains(&id),
            "request {id} ended while running"
        );
        assert!(self.books.done.insert(id), "request {id} ended twice");
    }

    /// Runs the events due up to `until`.
    fn run_until(&mut self, until: SimTime) {
        while let Some((&(t, s), &ev)) = self.events.iter().next() {
            if t > until {
                break;
            }
            self.events.remove(&(t, s));
            self.now = t;
            let now = t;
            match ev {
                Ev::Connect { conn, ok: true } => self.pool.connected(now, conn, &mut self.fx),
                Ev::Connect { conn, ok: false } => self.pool.connect_error(now, conn, &mut self.fx),
                Ev::Check { conn, ok } => self.pool.checked(now, conn, ok, &mut self.fx),
                Ev::Query { conn, id, outcome } => {
                    self.books.running.remove(&id);
                    match outcome {
                        0 => {
                            self.books.completed += 1;
                            self.books.done.insert(id);
                            self.pool.release(now, conn, &mut self.fx);
                        }
                        1 => {
                            self.books.failed += 1;
                            self.books.done.insert(id);
                            self.pool.fail(now, conn, true, id, &mut self.fx);
                        }
                        _ => {
                            if self.pool.config().lifecycle.on_broken == OnBroken::Fail {
                                self.books.failed += 1;
                                self.books.done.insert(id);
                            }
                            self.pool.fail(now, conn, false, id, &mut self.fx);
                        }
                    }
                }
                Ev::Closed(conn) => self.pool.closed(now, conn),
                Ev::Expire(p) => self.pool.expire(now, p, &mut self.fx),
                Ev::Wake => self.pool.wake(now, &mut self.fx),
            }
            self.after_call();
        }
        self.now = self.now.max(until);
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Arrive {
                gap_ms,
                priority,
                service_ms,
            } => {
                let t = self.now + ms(gap_ms);
                self.run_until(t);
                let id = self.books.arrived;
                self.books.arrived += 1;
                self.service.insert(id, service_ms);
                self.pool.acquire(t, priority, id, &mut self.fx);
            }
            Op::Idle { ms: d } => {
                let t = self.now + ms(d);
                self.run_until(t);
                return;
            }
            Op::Lose { slot } => {
                self.pool.lost(self.now, slot, &mut self.fx);
            }
            Op::Resize { target } => {
                self.pool
                    .apply(self.now, Decision::Resize { target }, &mut self.fx);
            }
        }
        self.after_call();
    }

    /// The pool's counters agree with the driver's books, and every request
    /// is either finished once or still in flight.
    fn check_books(&self) -> Result<(), TestCaseError> {
        let c = self.pool.classes();
        let sum =
            |f: fn(&pooltune::core::metrics::ClassMetrics) -> u64| c.iter().map(f).sum::<u64>();
        let b = &self.books;
        prop_assert_eq!(sum(|m| m.arrived), b.arrived);
        prop_assert_eq!(sum(|m| m.completed), b.completed);
        prop_assert_eq!(sum(|m| m.failed), b.failed);
        prop_assert_eq!(sum(|m| m.timed_out), b.timed_out);
        prop_assert_eq!(sum(|m| m.rejected), b.rejected);
        prop_assert_eq!(
            b.arrived,
            b.completed + b.failed + b.timed_out + b.rejected + self.pool.in_flight()
        );
        prop_assert_eq!(b.done.len() as u64 + self.pool.in_flight(), b.arrived);
        prop_assert!(b.running.len() as u64 <= self.pool.in_flight());
        Ok(())
    }
}

fn run(k: &Knobs, w: &World, ops: &[Op]) -> Result<Driver, TestCaseError> {
    let mut d = Driver::new(k, w);
    for op in ops {
        d.apply(op);
        d.check_books()?;
    }
    // Let everything settle: queries end, waiters are served or time out.
    let end = d.now + SimDuration::from_secs(30);
    d.run_until(end);
    d.check_books()?;
    Ok(d)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_knobs_and_operations_keep_the_pool_consistent(
        k in knobs(),
        w in world(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let d = run(&k, &w, &ops)?;
        // Nothing is left waiting forever with finite timeouts once settled:
        // no request waits in the queue 30 s after the last operation.
        prop_assert_eq!(d.pool.waiting(), 0);
        // Every close was answered.
        let cs = d.pool.counters();
        prop_assert!(cs.opened >= cs.closed());
        // Deterministic: the same inputs give the same effects.
        let again = run(&k, &w, &ops)?;
        prop_assert_eq!(&d.trace, &again.trace);
    }
}

/// Without faults, a fixed pool with every knob on serves everything.
#[test]
fn every_request_completes_when_nothing_breaks() {
    let k = Knobs {
        min: 2,
        max: 4,
        initial: 2,
        timeout_ms: 60_000,
        max_waiters: 1_000,
        lc: Lifecycle {
            min_idle: 1,
            idle_timeout: Some(ms(500)),
            housekeeping: ms(100),
            lifetime: Some(Lifetime {
                max: ms(1_000),
                jitter: 0.1,
                stagger: true,
            }),
            max_uses: Some(3),
            validation: Some(Validation {
                bypass: ms(50),
                timeout: ms(10),
            }),
            keepalive: Some(ms(200)),
            health: Some(HealthCheck {
                interval: ms(300),
                timeout: ms(10),
                retries: 2,
            }),
            max_concurrent_creates: Some(1),
            ..Lifecycle::default()
        },
    };
    let w = World {
        connect_ok: 100,
        check_ok: 100,
        query_fails: 0,
        query_breaks: 0,
        seed: 3,
    };
    let ops: Vec<Op> = (0..400)
        .map(|i| Op::Arrive {
            gap_ms: 7 + i % 5,
            priority: Priority::ALL[(i % 3) as usize],
            service_ms: 5 + (i * 7) % 20,
        })
        .collect();
    let d = run(&k, &w, &ops).unwrap();
    let c = d.pool.counters();
    assert_eq!(d.books.completed, 400);
    assert_eq!(d.pool.in_flight(), 0);
    // Every mechanism ran.
    assert!(c.closed_max_uses > 0, "{c:?}");
    assert!(c.validations > 0 && c.validations_failed == 0, "{c:?}");
    assert!(c.checks > 0 && c.checks_failed == 0, "{c:?}");
    assert!(c.closed_lifetime + c.closed_idle > 0, "{c:?}");
}
