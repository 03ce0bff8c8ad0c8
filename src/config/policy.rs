//! Policy files (`policies/*.toml`): raw serde structs, then a validated
//! [`PolicySpec`].
//!
//! ```toml
//! name = "seed-80-30"
//! [size]
//! min = 2                 # default 2
//! max = 25                # default 25
//! initial = 2             # default: min
//! [resize]
//! kind = "threshold"      # "threshold" or "fixed"
//! interval = "30s"        # default "30s"
//! scale_up = 0.8          # default 0.8: grow when utilization > scale_up
//! scale_down = 0.3        # default 0.3: shrink when utilization < scale_down
//! step = 1                # default 1
//! signal = "instant"      # default "instant"; or "window_mean"
//! [acquire_timeout]
//! high = "10s"            # each default "30s" (HikariCP's connectionTimeout); "none" = wait forever
//! normal = "5s"
//! low = "2.5s"
//! [queue]
//! max_waiters = 100000    # default 100000; arrivals beyond it are rejected
//! ```

use serde::{Deserialize, Serialize};

use super::duration::{Dur, DurOrNone};
use super::{content_hash, deserialize, Document, Locator, Override};
use crate::core::policy::{Fixed, Policy, Threshold, ThresholdParams, UtilizationSignal};
use crate::core::pool::PoolConfig;
use crate::error::ConfigError;
use crate::time::SimDuration;

/// Top-level tables of a policy file; a `--set` key starting with one of
/// these applies to the policy.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "size",
    "resize",
    "acquire_timeout",
    "queue",
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Shown in tables and summaries. Default: the file name without `.toml`.
    pub name: Option<String>,
    /// What the policy is and where its numbers come from. Default: empty.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub size: SizeRaw,
    pub resize: ResizeRaw,
    #[serde(default)]
    pub acquire_timeout: AcquireTimeoutRaw,
    #[serde(default)]
    pub queue: QueueRaw,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SizeRaw {
    /// Fewest connections the policy may keep. Default 2.
    #[serde(default = "default_min")]
    pub min: u32,
    /// Most connections the pool may hold. Default 25.
    #[serde(default = "default_max")]
    pub max: u32,
    /// Connections opened at start. Default: `min` (for `fixed`: `max`).
    pub initial: Option<u32>,
}

fn default_min() -> u32 {
    2
}
fn default_max() -> u32 {
    25
}

impl Default for SizeRaw {
    fn default() -> Self {
        SizeRaw {
            min: default_min(),
            max: default_max(),
            initial: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResizeKind {
    /// The seed rule: utilization thresholds on a timer.
    Threshold,
    /// Never resize: `size.min == size.max` connections.
    Fixed,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeRaw {
    pub kind: ResizeKind,
    /// threshold: how often utilization is checked. Default "30s".
    pub interval: Option<Dur>,
    /// threshold: grow when utilization > scale_up. Default 0.8.
    pub scale_up: Option<f64>,
    /// threshold: shrink when utilization < scale_down. Default 0.3.
    pub scale_down: Option<f64>,
    /// threshold: connections added or removed per decision. Default 1.
    pub step: Option<u32>,
    /// threshold: "instant" (active/open at the tick, the seed as written)
    /// or "window_mean" (time-weighted over the interval). Default "instant".
    pub signal: Option<UtilizationSignal>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AcquireTimeoutRaw {
    /// Default "30s" (HikariCP's connectionTimeout); "none" waits forever.
    #[serde(default = "default_timeout")]
    pub high: DurOrNone,
    #[serde(default = "default_timeout")]
    pub normal: DurOrNone,
    #[serde(default = "default_timeout")]
    pub low: DurOrNone,
}

fn default_timeout() -> DurOrNone {
    DurOrNone(Some(SimDuration::from_secs(30)))
}

impl Default for AcquireTimeoutRaw {
    fn default() -> Self {
        AcquireTimeoutRaw {
            high: default_timeout(),
            normal: default_timeout(),
            low: default_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueRaw {
    /// Waiters (all priorities) beyond which arrivals are rejected. Default 100000.
    #[serde(default = "default_max_waiters")]
    pub max_waiters: u32,
}

fn default_max_waiters() -> u32 {
    100_000
}

impl Default for QueueRaw {
    fn default() -> Self {
        QueueRaw {
            max_waiters: default_max_waiters(),
        }
    }
}

/// The sizing rule of a validated policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Fixed,
    Threshold(ThresholdParams),
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    pub name: String,
    pub description: String,
    pub pool: PoolConfig,
    pub rule: Rule,
    /// The effective config with every default filled in (for summaries).
    pub effective: serde_json::Value,
    /// Hash of `effective`.
    pub hash: String,
}

impl PolicySpec {
    /// A fresh policy instance (policies keep per-run state).
    pub fn build(&self) -> Box<dyn Policy> {
        match &self.rule {
            Rule::Fixed => Box::new(Fixed),
            Rule::Threshold(p) => Box::new(Threshold::new(*p)),
        }
    }

    /// Loads and validates a policy document with overrides.
    pub fn load(
        doc: &Document,
        default_name: &str,
        overrides: &[Override],
    ) -> Result<Self, ConfigError> {
        let (raw, _table): (PolicyFile, _) = deserialize(doc, overrides)?;
        let loc = Locator::new(doc, overrides);
        validate(raw, default_name, &loc)
    }
}

fn validate(
    mut raw: PolicyFile,
    default_name: &str,
    loc: &Locator,
) -> Result<PolicySpec, ConfigError> {
    let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
    if name.trim().is_empty() {
        return Err(loc.invalid("name", "expected a non-empty name"));
    }
    let s = &raw.size;
    if s.max == 0 {
        return Err(loc.invalid("size.max", "expected at least 1 connection, got 0"));
    }
    if s.min > s.max {
        return Err(loc.invalid_related(
            "size.min",
            &["size.max"],
            format!(
                "expected size.min <= size.max, got min {} > max {}",
                s.min, s.max
            ),
        ));
    }
    let kind = raw.resize.kind;
    let initial = s.initial.unwrap_or(if kind == ResizeKind::Fixed {
        s.max
    } else {
        s.min
    });
    if initial < s.min || initial > s.max {
        return Err(loc.invalid_related(
            "size.initial",
            &["size.min", "size.max"],
            format!(
                "expected a value in [size.min, size.max] = [{}, {}], got {initial}",
                s.min, s.max
            ),
        ));
    }
    let r = &raw.resize;
    let rule = match kind {
        ResizeKind::Fixed => {
            for (key, set) in [
                ("interval", r.interval.is_some()),
                ("scale_up", r.scale_up.is_some()),
                ("scale_down", r.scale_down.is_some()),
                ("step", r.step.is_some()),
                ("signal", r.signal.is_some()),
            ] {
                if set {
                    return Err(loc.invalid_related(
                        &format!("resize.{key}"),
                        &["resize.kind"],
                        "only applies to resize.kind = \"threshold\"; a fixed pool never resizes",
                    ));
                }
            }
            if s.min != s.max {
                return Err(loc.invalid_related(
                    "size.min",
                    &["size.max", "resize.kind"],
                    format!(
                        "resize.kind = \"fixed\" needs size.min == size.max (the pool's one size), got min {} and max {}",
                        s.min, s.max
                    ),
                ));
            }
            Rule::Fixed
        }
        ResizeKind::Threshold => {
            let interval = r
                .interval
                .map(|d| d.0)
                .unwrap_or(SimDuration::from_secs(30));
            if interval.0 == 0 {
                return Err(loc.invalid("resize.interval", "expected a positive duration, got 0s"));
            }
            let scale_up = r.scale_up.unwrap_or(0.8);
            let scale_down = r.scale_down.unwrap_or(0.3);
            if !(0.0..=1.0).contains(&scale_up) {
                return Err(loc.invalid(
                    "resize.scale_up",
                    format!("expected a utilization fraction in [0, 1], got {scale_up}"),
                ));
            }
            if !(0.0..=1.0).contains(&scale_down) {
                return Err(loc.invalid(
                    "resize.scale_down",
                    format!("expected a utilization fraction in [0, 1], got {scale_down}"),
                ));
            }
            if scale_down >= scale_up {
                return Err(loc.invalid_related(
                    "resize.scale_down",
                    &["resize.scale_up"],
                    format!(
                        "expected scale_down < scale_up (a band in which the pool holds), got scale_down {scale_down} >= scale_up {scale_up}"
                    ),
                ));
            }
            let step = r.step.unwrap_or(1);
            if step == 0 {
                return Err(loc.invalid(
                    "resize.step",
                    "expected at least 1 connection per step, got 0",
                ));
            }
            Rule::Threshold(ThresholdParams {
                interval,
                scale_up,
                scale_down,
                step,
                signal: r.signal.unwrap_or(UtilizationSignal::Instant),
            })
        }
    };
    let t = &raw.acquire_timeout;
    let mut acquire_timeout = [SimDuration::INFINITE; 3];
    for (i, (key, v)) in [("high", t.high), ("normal", t.normal), ("low", t.low)]
        .into_iter()
        .enumerate()
    {
        if let Some(d) = v.0 {
            if d.0 == 0 {
                return Err(loc.invalid(
                    &format!("acquire_timeout.{key}"),
                    "expected a positive duration or \"none\", got 0s",
                ));
            }
            acquire_timeout[i] = d;
        }
    }
    if raw.queue.max_waiters == 0 {
        return Err(loc.invalid("queue.max_waiters", "expected at least 1, got 0"));
    }
    // Fill defaults so the summary records what actually ran.
    raw.name = Some(name.clone());
    raw.size.initial = Some(initial);
    if let Rule::Threshold(p) = &rule {
        raw.resize.interval = Some(Dur(p.interval));
        raw.resize.scale_up = Some(p.scale_up);
        raw.resize.scale_down = Some(p.scale_down);
        raw.resize.step = Some(p.step);
        raw.resize.signal = Some(p.signal);
    }
    let effective = serde_json::to_value(&raw).expect("policy serializes");
    let hash = content_hash(&effective);
    Ok(PolicySpec {
        name,
        description: raw.description.clone(),
        pool: PoolConfig {
            min: raw.size.min,
            max: raw.size.max,
            initial,
            acquire_timeout,
            max_waiters: raw.queue.max_waiters,
            lifecycle: Default::default(),
        },
        rule,
        effective,
        hash,
    })
}

/// Policies shipped in `policies/`, compiled into the binary so shipped
/// names work from any directory.
pub const SHIPPED: &[(&str, &str)] = &[
    ("seed-80-30", include_str!("../../policies/seed-80-30.toml")),
    (
        "seed-80-30-low10s",
        include_str!("../../policies/seed-80-30-low10s.toml"),
    ),
    ("fixed-10", include_str!("../../policies/fixed-10.toml")),
    ("fixed-25", include_str!("../../policies/fixed-25.toml")),
];
