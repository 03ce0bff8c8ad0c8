//! The policy library: every shipped policy loads, records its documented
//! defaults and round-trips through its effective config; every invalid
//! combination of lifecycle and rule keys is rejected with the file, line,
//! column and key; no TOML-ish input makes the loader panic; and each
//! shipped policy runs end to end with every request accounted for.

use assert_cmd::Command;
use proptest::prelude::*;
use serde_json::{json, Value};
use tempfile::TempDir;

use pooltune::config::policy::{PolicySpec, Sizing, SHIPPED, TOP_LEVEL_KEYS};
use pooltune::config::{Document, Override};
use pooltune::core::lifecycle::{
    Backoff, Creator, Discipline, HealthCheck, IdleOrder, Lifecycle, Lifetime, OnBroken, QueueDrop,
    Validation,
};
use pooltune::core::policy::{
    AimdParams, EnvoyParams, FlexyParams, Gradient2Params, GradientParams, ReserveParams,
    UtilizationSignal, VegasParams,
};
use pooltune::summary::Summary;
use pooltune::time::SimDuration;

use crate::config_errors::{check, lines, load_policy as load, policy};

fn secs(s: u64) -> SimDuration {
    SimDuration::from_secs(s)
}

fn ms(m: u64) -> SimDuration {
    SimDuration::from_millis(m)
}

fn shipped(name: &str) -> PolicySpec {
    let text = SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("{name} is not shipped"))
        .1;
    PolicySpec::load(&Document::new(format!("{name}.toml"), text), name, &[])
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A policy of `kind` (lines 1-5: size 2..10) followed by `extra` (line 6 on).
fn kind(kind: &str, extra: &[&str]) -> String {
    let k = format!("kind = \"{kind}\"");
    let mut all = vec!["[size]", "min = 2", "max = 10", "[resize]", k.as_str()];
    all.extend_from_slice(extra);
    lines(&all)
}

/// The effective config as a TOML document (nulls are absent keys).
fn to_toml(effective: &Value) -> String {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), strip(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    toml::to_string(&strip(effective)).expect("effective configs are TOML")
}

#[test]
fn every_shipped_policy_loads_and_its_effective_config_loads_back_to_itself() {
    assert!(SHIPPED.len() >= 21, "{} shipped policies", SHIPPED.len());
    for (name, text) in SHIPPED {
        assert!(
            text.trim_start().starts_with('#'),
            "{name}: no header comment saying where its defaults come from"
        );
        let spec = shipped(name);
        assert_eq!(spec.name, *name, "the name key matches the file name");
        assert!(!spec.description.is_empty(), "{name}: no description");
        let again = PolicySpec::load(
            &Document::new("again.toml", to_toml(&spec.effective)),
            "x",
            &[],
        )
        .unwrap_or_else(|e| panic!("{name}: effective config does not load: {e}"));
        assert_eq!(again.effective, spec.effective, "{name}");
        assert_eq!(again.hash, spec.hash, "{name}");
        assert_eq!(again.pool, spec.pool, "{name}");
        assert_eq!(again.sizing, spec.sizing, "{name}");
    }
    let mut names: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), SHIPPED.len(), "duplicate shipped names");
}

#[test]
fn hikari_policies_pin_hikaricp_defaults() {
    let h = shipped("hikari-fixed");
    assert_eq!(h.sizing, Sizing::Fixed);
    assert_eq!((h.pool.min, h.pool.max, h.pool.initial), (10, 10, 10));
    assert_eq!(h.pool.acquire_timeout, [secs(30); 3]);
    let l = h.pool.lifecycle;
    assert_eq!(
        l.lifetime,
        Some(Lifetime {
            max: secs(30 * 60),
            jitter: 0.025,
            stagger: false
        })
    );
    assert_eq!(
        l.validation,
        Some(Validation {
            bypass: ms(500),
            timeout: secs(5)
        })
    );
    assert_eq!(l.keepalive, None);
    assert_eq!(l.housekeeping, secs(30));
    assert_eq!(l.max_concurrent_creates, Some(1));
    assert_eq!(l.create_backoff, Backoff::default());
    assert_eq!(l.creator, Creator::Background);
    assert_eq!(h.effective["connections"]["lifetime_jitter"], json!(0.025));
    assert_eq!(h.effective["connections"]["max_lifetime"], json!("30m"));
    assert_eq!(h.effective["acquire_timeout"]["normal"], json!("30s"));

    let e = shipped("hikari-elastic");
    assert_eq!(e.sizing, Sizing::Demand);
    assert_eq!((e.pool.min, e.pool.max), (2, 25));
    assert_eq!(e.pool.lifecycle.min_idle, 2);
    assert_eq!(e.pool.lifecycle.idle_timeout, Some(secs(600)));
    assert_eq!(e.pool.lifecycle.lifetime, l.lifetime);
}

#[test]
fn seed_policies_pin_the_seed_and_its_repair() {
    let s = shipped("seed-80-30");
    let Sizing::Threshold(p, t) = s.sizing else {
        panic!("{:?}", s.sizing)
    };
    assert_eq!(
        (p.scale_up, p.scale_down, p.step, p.interval),
        (0.8, 0.3, 1, secs(30))
    );
    assert_eq!(p.signal, UtilizationSignal::Instant);
    assert_eq!((t.step_down, t.down_consecutive_checks), (Some(1), 1));
    assert_eq!(
        (t.up_cooldown, t.down_cooldown),
        (SimDuration::ZERO, SimDuration::ZERO)
    );
    assert_eq!(s.pool.acquire_timeout, [secs(10), secs(5), ms(2_500)]);
    assert_eq!(
        s.pool.lifecycle.health,
        Some(HealthCheck {
            interval: secs(15),
            timeout: secs(5),
            retries: 3
        })
    );
    // Only health checks differ from the all-off lifecycle.
    assert_eq!(
        Lifecycle {
            health: None,
            ..s.pool.lifecycle
        },
        Lifecycle::default()
    );
    assert_eq!(s.effective["resize"]["step_up"], json!(1));
    assert_eq!(s.effective["resize"]["step"], Value::Null);

    let r = shipped("seed-repaired");
    let Sizing::Threshold(p, t) = r.sizing else {
        panic!("{:?}", r.sizing)
    };
    assert_eq!(p.signal, UtilizationSignal::Waiters);
    assert_eq!(t.down_consecutive_checks, 3);
    assert_eq!(t.down_cooldown, secs(300));
    assert_eq!(t.waiters_above, 0);
    assert_eq!(r.pool.lifecycle.idle_timeout, Some(secs(600)));
    assert_eq!(r.pool.lifecycle.max_concurrent_creates, Some(1));
    assert_eq!(r.pool.lifecycle.lifetime.map(|l| l.jitter), Some(0.025));
    // A queue signal has no scale_up.
    assert_eq!(r.effective["resize"]["scale_up"], Value::Null);
}

#[test]
fn pgbouncer_and_rust_pools_pin_their_defaults() {
    let p = shipped("pgbouncer-txn");
    assert_eq!(
        p.sizing,
        Sizing::Reserve(ReserveParams {
            pool_size: 20,
            reserve_size: 0,
            reserve_timeout: secs(5),
            interval: ms(333),
        })
    );
    assert_eq!((p.pool.min, p.pool.initial), (0, 0));
    assert_eq!(p.pool.acquire_timeout, [secs(120); 3]);
    assert_eq!(p.pool.max_waiters, 100);
    let l = p.pool.lifecycle;
    assert_eq!(
        l.lifetime,
        Some(Lifetime {
            max: secs(3600),
            jitter: 0.0,
            stagger: true
        })
    );
    assert_eq!(l.idle_timeout, Some(secs(600)));
    assert_eq!(l.validation.map(|v| v.bypass), Some(secs(30)));
    assert_eq!(l.create_backoff.delay(3), secs(15));
    assert_eq!(l.idle_order, IdleOrder::Lifo);
    let r = shipped("pgbouncer-reserve");
    assert!(matches!(
        r.sizing,
        Sizing::Reserve(ReserveParams {
            pool_size: 20,
            reserve_size: 5,
            ..
        })
    ));

    let b = shipped("bb8-default");
    assert_eq!((b.pool.min, b.pool.max), (0, 10));
    assert_eq!(b.pool.lifecycle.idle_order, IdleOrder::Fifo);
    assert_eq!(
        b.pool.lifecycle.validation.map(|v| v.bypass),
        Some(SimDuration::ZERO)
    );
    let s = shipped("sqlx-default");
    assert_eq!(s.pool.lifecycle.creator, Creator::Caller);
    assert_eq!(s.pool.lifecycle.housekeeping, secs(600));
    let d = shipped("deadpool-default");
    assert_eq!(d.pool.acquire_timeout, [SimDuration::INFINITE; 3]);
    assert_eq!(d.pool.lifecycle.creator, Creator::Caller);
    assert_eq!(d.pool.lifecycle.idle_order, IdleOrder::Fifo);
    assert_eq!(d.effective["acquire_timeout"]["high"], json!("none"));
    let n = shipped("no-pool");
    assert_eq!(n.sizing, Sizing::Demand);
    assert_eq!(n.pool.lifecycle.max_uses, Some(1));
    assert_eq!(n.pool.lifecycle.creator, Creator::Caller);
    assert_eq!((n.pool.min, n.pool.initial), (0, 0));
}

#[test]
fn adaptive_and_queue_policies_pin_their_defaults() {
    assert_eq!(
        shipped("aimd").sizing,
        Sizing::Aimd(AimdParams {
            initial: 10,
            backoff_ratio: 0.9,
            timeout: secs(5)
        })
    );
    assert_eq!(
        shipped("vegas").sizing,
        Sizing::Vegas(VegasParams {
            initial: 20.0,
            smoothing: 1.0,
            probe_multiplier: 30,
            seed: 0
        })
    );
    assert_eq!(
        shipped("gradient").sizing,
        Sizing::Gradient(GradientParams {
            initial: 25.0,
            smoothing: 0.2,
            tolerance: 2.0,
            backoff_ratio: 0.9,
            probe_interval: Some(1000),
            seed: 0
        })
    );
    assert_eq!(
        shipped("gradient2").sizing,
        Sizing::Gradient2(Gradient2Params {
            initial: 20.0,
            smoothing: 0.2,
            tolerance: 1.5,
            queue_size: 4,
            long_window: 600,
            window: secs(1),
            window_min_samples: 10,
            min_rtt: SimDuration::from_nanos(100_000),
        })
    );
    assert_eq!(
        shipped("envoy-gradient").sizing,
        Sizing::Envoy(EnvoyParams {
            initial: 3,
            interval: ms(100),
            percentile: 0.5,
            min_rtt_interval: secs(60),
            jitter: 0.15,
            request_count: 50,
            min_concurrency: 3,
            buffer: 0.25,
            seed: 0
        })
    );
    assert_eq!(
        shipped("flexy-overflow").sizing,
        Sizing::Flexy(FlexyParams {
            base: 10,
            max_overflow: 5
        })
    );
    for name in ["aimd", "vegas", "gradient", "gradient2", "envoy-gradient"] {
        let p = shipped(name);
        assert_eq!(
            (p.pool.min, p.pool.max),
            (2, 25),
            "{name}: the seed envelope"
        );
    }
    assert_eq!(
        shipped("codel-queue").pool.lifecycle.queue_drop,
        Some(QueueDrop {
            target: ms(50),
            interval: secs(1)
        })
    );
    assert_eq!(
        shipped("priority-partitions").pool.lifecycle.discipline,
        Discipline::Shares {
            shares: [0.6, 0.3, 0.1]
        }
    );
}

#[test]
fn a_bare_rule_gets_the_documented_defaults() {
    let resize = |k: &str| load(&kind(k, &[])).unwrap().effective["resize"].clone();
    let r = resize("threshold");
    assert_eq!(
        (
            &r["interval"],
            &r["scale_up"],
            &r["scale_down"],
            &r["signal"]
        ),
        (&json!("30s"), &json!(0.8), &json!(0.3), &json!("instant"))
    );
    assert_eq!(
        (
            &r["step_up"],
            &r["step_down"],
            &r["down_consecutive_checks"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    assert_eq!(
        (&r["up_cooldown"], &r["down_cooldown"]),
        (&json!("0s"), &json!("0s"))
    );
    let r = resize("reserve");
    assert_eq!(
        (&r["interval"], &r["reserve_size"], &r["reserve_timeout"]),
        (&json!("333ms"), &json!(0), &json!("5s"))
    );
    let r = resize("aimd");
    assert_eq!(
        (&r["backoff_ratio"], &r["timeout"]),
        (&json!(0.9), &json!("5s"))
    );
    let r = resize("vegas");
    assert_eq!(
        (&r["smoothing"], &r["probe_multiplier"], &r["seed"]),
        (&json!(1.0), &json!(30), &json!(0))
    );
    let r = resize("gradient");
    assert_eq!(
        (&r["smoothing"], &r["tolerance"], &r["probe_interval"]),
        (&json!(0.2), &json!(2.0), &json!(1000))
    );
    let r = resize("gradient2");
    assert_eq!(
        (
            &r["tolerance"],
            &r["queue_size"],
            &r["long_window"],
            &r["window"],
            &r["min_rtt"]
        ),
        (
            &json!(1.5),
            &json!(4),
            &json!(600),
            &json!("1s"),
            &json!("100us")
        )
    );
    let r = resize("envoy");
    assert_eq!(
        (
            &r["interval"],
            &r["percentile"],
            &r["min_rtt_interval"],
            &r["jitter"]
        ),
        // 60 s is written back in its largest exact unit.
        (&json!("100ms"), &json!(0.5), &json!("1m"), &json!(0.15))
    );
    assert_eq!(
        (&r["request_count"], &r["min_concurrency"], &r["buffer"]),
        (&json!(50), &json!(3), &json!(0.25))
    );
    assert_eq!(resize("flexy")["max_overflow"], json!(5));
    // Keys of other kinds stay absent from the effective config.
    assert_eq!(resize("demand")["interval"], Value::Null);

    // Every lifecycle mechanism is off by default, and the effective config says so.
    let p = load(&kind("demand", &[])).unwrap();
    assert_eq!(p.pool.lifecycle, Lifecycle::default());
    let e = &p.effective;
    assert_eq!(e["connections"]["idle_timeout"], json!("none"));
    assert_eq!(e["connections"]["max_uses"], json!("none"));
    assert_eq!(e["connections"]["housekeeping"], json!("30s"));
    assert_eq!(e["connections"]["creator"], json!("background"));
    assert_eq!(e["validation"]["on_checkout"], json!(false));
    assert_eq!(e["health_check"]["interval"], json!("none"));
    assert_eq!(e["create_backoff"]["initial"], json!("10ms"));
    assert_eq!(e["queue"]["discipline"], json!("strict"));
    assert_eq!(e["queue"]["drop_target"], json!("none"));
    assert_eq!(p.pool.lifecycle.on_broken, OnBroken::Fail);

    // Switching a mechanism on fills its defaults.
    let p = load(&policy(&[
        "[health_check]",
        "interval = \"15s\"",
        "[validation]",
        "on_checkout = true",
        "[connections]",
        "max_lifetime = \"1h\"",
        "[queue]",
        "discipline = \"aging\"",
        "drop_target = \"50ms\"",
    ]))
    .unwrap();
    let l = p.pool.lifecycle;
    assert_eq!(l.health.map(|h| (h.timeout, h.retries)), Some((secs(5), 3)));
    assert_eq!(
        l.validation,
        Some(Validation {
            bypass: ms(500),
            timeout: secs(5)
        })
    );
    assert_eq!(
        l.lifetime.map(|l| (l.jitter, l.stagger)),
        Some((0.0, false))
    );
    assert_eq!(l.discipline, Discipline::Aging { step: secs(1) });
    assert_eq!(l.queue_drop.map(|d| d.interval), Some(secs(1)));
    assert_eq!(p.effective["health_check"]["retries"], json!(3));
    assert_eq!(p.effective["queue"]["aging_step"], json!("1s"));
}

#[test]
fn set_overrides_reach_the_new_tables() {
    let o = |s: &str| Override::parse(s).unwrap();
    let p = PolicySpec::load(
        &Document::new("p.toml", policy(&[])),
        "p",
        &[
            o("connections.max_uses=3"),
            o("health_check.interval=10s"),
            o("resize.signal=waiters"),
        ],
    )
    .unwrap();
    assert_eq!(p.pool.lifecycle.max_uses, Some(3));
    assert_eq!(p.pool.lifecycle.health.map(|h| h.interval), Some(secs(10)));
    assert!(matches!(p.sizing, Sizing::Threshold(t, _) if t.signal == UtilizationSignal::Waiters));
    for key in [
        "connections",
        "validation",
        "health_check",
        "create_backoff",
        "queue",
    ] {
        assert!(
            pooltune::config::policy::TOP_LEVEL_KEYS.contains(&key),
            "{key}"
        );
    }
    let e = PolicySpec::load(
        &Document::new("p.toml", policy(&[])),
        "p",
        &[o("connections.max_uses=0")],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "p.toml (overridden by --set connections.max_uses=0): key `connections.max_uses`: expected at least 1 use or \"none\", got 0"
    );
}

#[test]
fn invalid_combinations_name_the_file_line_and_key() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "shares not summing to 1",
            policy(&["[queue]", "discipline = \"shares\"", "share_high = 0.5", "share_normal = 0.25", "share_low = 0.125"]),
            "p.toml:9:1: key `queue.share_high`: expected share_high + share_normal + share_low = 1, got 0.5 + 0.25 + 0.125 = 0.875",
        ),
        (
            "default shares with one changed",
            policy(&["[queue]", "discipline = \"shares\"", "share_low = 0.5"]),
            "p.toml:7:2: key `queue.share_high`: expected share_high + share_normal + share_low = 1, got 0.6 + 0.3 + 0.5 = 1.4",
        ),
        (
            "a share above 1",
            policy(&["[queue]", "discipline = \"shares\"", "share_high = 1.5"]),
            "p.toml:9:1: key `queue.share_high`: expected a share of the pool in [0, 1], got 1.5",
        ),
        (
            "shares on a strict queue",
            policy(&["[queue]", "share_high = 0.5"]),
            "p.toml:8:1: key `queue.share_high`: only applies with queue.discipline = \"shares\"",
        ),
        (
            "aging step on a shares queue",
            policy(&["[queue]", "discipline = \"shares\"", "aging_step = \"1s\""]),
            "p.toml:9:1: key `queue.aging_step`: only applies with queue.discipline = \"aging\"",
        ),
        (
            "zero aging step",
            policy(&["[queue]", "discipline = \"aging\"", "aging_step = \"0s\""]),
            "p.toml:9:1: key `queue.aging_step`: expected a positive duration, got 0s",
        ),
        (
            "drop interval without a target",
            policy(&["[queue]", "drop_interval = \"1s\""]),
            "p.toml:8:1: key `queue.drop_interval`: only applies with queue.drop_target set (early drop is off)",
        ),
        (
            "jitter of 1",
            policy(&["[connections]", "max_lifetime = \"30m\"", "lifetime_jitter = 1.0"]),
            "p.toml:9:1: key `connections.lifetime_jitter`: expected a fraction of max_lifetime in [0, 1), got 1",
        ),
        (
            "negative jitter",
            policy(&["[connections]", "max_lifetime = \"30m\"", "lifetime_jitter = -0.1"]),
            "p.toml:9:1: key `connections.lifetime_jitter`: expected a fraction of max_lifetime in [0, 1), got -0.1",
        ),
        (
            "jitter without a lifetime",
            policy(&["[connections]", "lifetime_jitter = 0.1"]),
            "p.toml:8:1: key `connections.lifetime_jitter`: only applies with connections.max_lifetime set (it is \"none\")",
        ),
        (
            "stagger without a lifetime",
            policy(&["[connections]", "max_lifetime = \"none\"", "lifetime_stagger = true"]),
            "p.toml:9:1: key `connections.lifetime_stagger`: only applies with connections.max_lifetime set (it is \"none\")",
        ),
        (
            "validation timeout not below an acquire timeout",
            policy(&["[acquire_timeout]", "low = \"2.5s\"", "[validation]", "on_checkout = true", "timeout = \"5s\""]),
            "p.toml:11:1: key `validation.timeout`: expected a validation timeout below every acquire timeout (HikariCP: validationTimeout < connectionTimeout), got 5s >= acquire_timeout.low = 2.5s",
        ),
        (
            "default validation timeout against a short acquire timeout",
            policy(&["[acquire_timeout]", "high = \"5s\"", "[validation]", "on_checkout = true"]),
            "p.toml:9:2: key `validation.timeout`: expected a validation timeout below every acquire timeout (HikariCP: validationTimeout < connectionTimeout), got 5s >= acquire_timeout.high = 5s",
        ),
        (
            "validation keys while validation is off",
            policy(&["[validation]", "bypass = \"1s\""]),
            "p.toml:8:1: key `validation.bypass`: only applies with validation.on_checkout = true",
        ),
        (
            "keepalive equal to the lifetime",
            policy(&["[connections]", "max_lifetime = \"30m\"", "keepalive = \"30m\""]),
            "p.toml:9:1: key `connections.keepalive`: expected keepalive < max_lifetime = 30m (a connection retires before it would be checked), got 30m",
        ),
        (
            "keepalive above the lifetime",
            policy(&["[connections]", "keepalive = \"2h\"", "max_lifetime = \"1h\""]),
            "p.toml:8:1: key `connections.keepalive`: expected keepalive < max_lifetime = 1h (a connection retires before it would be checked), got 2h",
        ),
        (
            "min_idle above max",
            policy(&["[connections]", "min_idle = 11"]),
            "p.toml:8:1: key `connections.min_idle`: expected min_idle <= size.max = 10, got 11",
        ),
        (
            "max_uses 0",
            policy(&["[connections]", "max_uses = 0"]),
            "p.toml:8:1: key `connections.max_uses`: expected at least 1 use or \"none\", got 0",
        ),
        (
            "max_uses negative",
            policy(&["[connections]", "max_uses = -1"]),
            "p.toml:8:1: key `connections.max_uses`: invalid value: integer `-1`, expected a whole number from 0 to 4294967295 or \"none\"",
        ),
        (
            "max_uses a word",
            policy(&["[connections]", "max_uses = \"lots\""]),
            "p.toml:8:1: key `connections.max_uses`: invalid value: string \"lots\", expected a whole number from 0 to 4294967295 or \"none\"",
        ),
        (
            "zero concurrent creates",
            policy(&["[connections]", "max_concurrent_creates = 0"]),
            "p.toml:8:1: key `connections.max_concurrent_creates`: expected at least 1 connect at a time or \"none\", got 0",
        ),
        (
            "zero create interval",
            policy(&["[connections]", "create_interval = \"0s\""]),
            "p.toml:8:1: key `connections.create_interval`: expected a positive duration, got 0s",
        ),
        (
            "zero idle timeout",
            policy(&["[connections]", "idle_timeout = \"0s\""]),
            "p.toml:8:1: key `connections.idle_timeout`: expected a positive duration, got 0s",
        ),
        (
            "unknown creator",
            policy(&["[connections]", "creator = \"thread\""]),
            "p.toml:8:1: key `connections.creator`: unknown variant `thread`, expected `background` or `caller`",
        ),
        (
            "unknown connections key",
            policy(&["[connections]", "max_idle = 3"]),
            "p.toml:8:1: key `connections.max_idle`: unknown field `max_idle`, expected one of `min_idle`, `idle_timeout`, `housekeeping`, `max_lifetime`, `lifetime_jitter`, `lifetime_stagger`, `max_uses`, `keepalive`, `max_concurrent_creates`, `create_interval`, `creator`, `idle_order`, `on_broken`",
        ),
        (
            "health check retries 0",
            policy(&["[health_check]", "interval = \"15s\"", "retries = 0"]),
            "p.toml:9:1: key `health_check.retries`: expected at least 1 failed check, got 0",
        ),
        (
            "health check timeout without an interval",
            policy(&["[health_check]", "timeout = \"5s\""]),
            "p.toml:8:1: key `health_check.timeout`: only applies with health_check.interval set (health checks are off)",
        ),
        (
            "backoff max below initial",
            policy(&["[create_backoff]", "initial = \"1s\"", "max = \"500ms\""]),
            "p.toml:9:1: key `create_backoff.max`: expected max >= initial = 1s, got 500ms",
        ),
        (
            "backoff multiplier below 1",
            policy(&["[create_backoff]", "multiplier = 0.5"]),
            "p.toml:8:1: key `create_backoff.multiplier`: expected a growth factor >= 1, got 0.5",
        ),
        (
            "zero backoff",
            policy(&["[create_backoff]", "initial = \"0s\""]),
            "p.toml:8:1: key `create_backoff.initial`: expected a positive duration, got 0s",
        ),
        (
            "reserve key on a threshold rule",
            policy(&["reserve_size = 2"]),
            "p.toml:7:1: key `resize.reserve_size`: only applies to resize.kind = \"reserve\"; this policy's kind is \"threshold\"",
        ),
        (
            "a NaN is still a key of the wrong kind",
            policy(&["backoff_ratio = nan"]),
            "p.toml:7:1: key `resize.backoff_ratio`: only applies to resize.kind = \"aimd\" or \"gradient\"; this policy's kind is \"threshold\"",
        ),
        (
            "threshold key on an aimd rule",
            kind("aimd", &["scale_up = 0.9"]),
            "p.toml:6:1: key `resize.scale_up`: only applies to resize.kind = \"threshold\"; this policy's kind is \"aimd\"",
        ),
        (
            "seed on a gradient2 rule",
            kind("gradient2", &["seed = 3"]),
            "p.toml:6:1: key `resize.seed`: only applies to resize.kind = \"vegas\", \"gradient\" or \"envoy\"; this policy's kind is \"gradient2\"",
        ),
        (
            "interval on a fixed pool",
            lines(&["[size]", "min = 10", "max = 10", "[resize]", "kind = \"fixed\"", "interval = \"30s\""]),
            "p.toml:6:1: key `resize.interval`: only applies to resize.kind = \"threshold\", \"reserve\" or \"envoy\"; a fixed pool never resizes",
        ),
        (
            "step with step_up",
            policy(&["step = 2", "step_up = 1"]),
            "p.toml:7:1: key `resize.step`: expected either step (both directions) or step_up / step_down, not both",
        ),
        (
            "zero step_down",
            policy(&["step_down = 0"]),
            "p.toml:7:1: key `resize.step_down`: expected at least 1 connection per step, got 0",
        ),
        (
            "zero consecutive checks",
            policy(&["down_consecutive_checks = 0"]),
            "p.toml:7:1: key `resize.down_consecutive_checks`: expected at least 1 check, got 0",
        ),
        (
            "scale_up with a queue signal",
            policy(&["signal = \"waiters\"", "scale_up = 0.9"]),
            "p.toml:8:1: key `resize.scale_up`: only applies with resize.signal = \"instant\" or \"window_mean\"; a queue signal grows on the queue",
        ),
        (
            "waiters_above with a utilization signal",
            policy(&["waiters_above = 2"]),
            "p.toml:7:1: key `resize.waiters_above`: only applies with resize.signal = \"waiters\"",
        ),
        (
            "oldest_wait_above with the waiters signal",
            policy(&["signal = \"waiters\"", "oldest_wait_above = \"1s\""]),
            "p.toml:8:1: key `resize.oldest_wait_above`: only applies with resize.signal = \"oldest_wait\"",
        ),
        (
            "unknown signal",
            policy(&["signal = \"queue\""]),
            "p.toml:7:1: key `resize.signal`: unknown variant `queue`, expected one of `instant`, `window_mean`, `waiters`, `oldest_wait`",
        ),
        (
            "reserve as large as the pool",
            kind("reserve", &["reserve_size = 9"]),
            "p.toml:6:1: key `resize.reserve_size`: expected reserve_size <= size.max - max(size.min, 1) = 8 (the pool size is size.max - reserve_size), got 9",
        ),
        (
            "aimd backoff ratio of 1",
            kind("aimd", &["backoff_ratio = 1.0"]),
            "p.toml:6:1: key `resize.backoff_ratio`: expected a decrease factor in [0.5, 1), got 1",
        ),
        (
            "vegas smoothing 0",
            kind("vegas", &["smoothing = 0.0"]),
            "p.toml:6:1: key `resize.smoothing`: expected a smoothing weight in (0, 1], got 0",
        ),
        (
            "gradient tolerance below 1",
            kind("gradient", &["tolerance = 0.5"]),
            "p.toml:6:1: key `resize.tolerance`: expected a latency tolerance >= 1, got 0.5",
        ),
        (
            "gradient probe interval 0",
            kind("gradient", &["probe_interval = 0"]),
            "p.toml:6:1: key `resize.probe_interval`: expected at least 1 sample or \"none\", got 0",
        ),
        (
            "envoy percentile 0",
            kind("envoy", &["percentile = 0.0"]),
            "p.toml:6:1: key `resize.percentile`: expected a percentile in (0, 1], got 0",
        ),
        (
            "envoy jitter 1",
            kind("envoy", &["jitter = 1.0"]),
            "p.toml:6:1: key `resize.jitter`: expected a fraction of min_rtt_interval in [0, 1), got 1",
        ),
        (
            "flexy overflow beyond max",
            kind("flexy", &["max_overflow = 9"]),
            "p.toml:6:1: key `resize.max_overflow`: expected size.initial + max_overflow <= size.max, got 2 + 9 > 10",
        ),
        (
            "unknown kind",
            kind("elastic", &[]),
            "p.toml:5:1: key `resize.kind`: unknown variant `elastic`, expected one of `threshold`, `fixed`, `demand`, `reserve`, `aimd`, `vegas`, `gradient`, `gradient2`, `envoy`, `flexy`",
        ),
    ];
    check(&cases, load);
}

/// One line of a policy file: a table header or a key of any table with a
/// plausible, implausible or ill-typed value.
fn policy_line() -> impl Strategy<Value = String> {
    // Every table a policy file has (the keys but `name` and `description`),
    // and a sub-table no policy has.
    let mut tables: Vec<&str> = TOP_LEVEL_KEYS
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "name" | "description"))
        .collect();
    tables.push("resize.x");
    let tables = prop::sample::select(tables);
    let keys = prop::sample::select(vec![
        "kind",
        "min",
        "max",
        "initial",
        "interval",
        "signal",
        "scale_up",
        "scale_down",
        "step",
        "step_up",
        "step_down",
        "waiters_above",
        "oldest_wait_above",
        "up_cooldown",
        "down_cooldown",
        "down_consecutive_checks",
        "reserve_size",
        "reserve_timeout",
        "backoff_ratio",
        "timeout",
        "smoothing",
        "probe_multiplier",
        "tolerance",
        "probe_interval",
        "queue_size",
        "long_window",
        "window",
        "window_min_samples",
        "min_rtt",
        "percentile",
        "min_rtt_interval",
        "jitter",
        "request_count",
        "min_concurrency",
        "buffer",
        "max_overflow",
        "seed",
        "high",
        "normal",
        "low",
        "max_waiters",
        "discipline",
        "aging_step",
        "share_high",
        "share_normal",
        "share_low",
        "drop_target",
        "drop_interval",
        "min_idle",
        "idle_timeout",
        "housekeeping",
        "max_lifetime",
        "lifetime_jitter",
        "lifetime_stagger",
        "max_uses",
        "keepalive",
        "max_concurrent_creates",
        "creator",
        "idle_order",
        "on_broken",
        "on_checkout",
        "bypass",
        "retries",
        "multiplier",
    ]);
    let values = prop::sample::select(vec![
        "\"threshold\"",
        "\"fixed\"",
        "\"demand\"",
        "\"reserve\"",
        "\"aimd\"",
        "\"vegas\"",
        "\"gradient\"",
        "\"gradient2\"",
        "\"envoy\"",
        "\"flexy\"",
        "\"waiters\"",
        "\"oldest_wait\"",
        "\"shares\"",
        "\"aging\"",
        "\"caller\"",
        "\"fifo\"",
        "\"retry\"",
        "\"none\"",
        "\"0s\"",
        "\"1ms\"",
        "\"5s\"",
        "\"30m\"",
        "\"1h\"",
        "\"-1s\"",
        "0",
        "1",
        "3",
        "10",
        "-1",
        "4294967296",
        "18446744073709551616",
        "0.0",
        "0.025",
        "0.5",
        "0.9",
        "1.0",
        "1.5",
        "nan",
        "inf",
        "-inf",
        "true",
        "false",
        "[1, 2]",
        "{ a = 1 }",
    ]);
    prop_oneof![
        tables.prop_map(|t| format!("[{t}]")),
        (keys, values).prop_map(|(k, v)| format!("{k} = {v}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn toml_like_policies_never_panic_and_errors_name_the_document(
        body in prop::collection::vec(policy_line(), 0..24),
    ) {
        let text = body.join("\n");
        match PolicySpec::load(&Document::new("p.toml", text.as_str()), "p", &[]) {
            Ok(spec) => {
                // A loaded policy builds its rule and reloads from its effective config.
                let _ = spec.build();
                let again = PolicySpec::load(&Document::new("e.toml", to_toml(&spec.effective)), "p", &[]);
                prop_assert!(again.is_ok(), "{:?}\n{}", again.err(), text);
                prop_assert_eq!(again.unwrap().effective, spec.effective);
            }
            Err(e) => prop_assert!(e.to_string().starts_with("p.toml"), "{}", e),
        }
    }
}

#[test]
fn every_shipped_policy_runs_and_accounts_for_every_request() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out");
    Command::cargo_bin("pooltune")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "sim",
            "run",
            "--policy",
            "all",
            "--no-report",
            "--format",
            "json",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let json = std::fs::read_to_string(out.join("summary.json")).unwrap();
    let summary: Summary = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = summary
        .runs
        .iter()
        .map(|r| r.policy.name.as_str())
        .collect();
    let shipped: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, shipped);
    for r in &summary.runs {
        let c = r.requests;
        assert!(c.arrived > 0, "{}: no arrivals", r.policy.name);
        assert_eq!(
            c.arrived,
            c.completed + c.timed_out + c.failed + c.rejected + c.in_flight_at_end,
            "{}: requests not conserved: {c:?}",
            r.policy.name
        );
    }
}
