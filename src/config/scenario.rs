//! The scenario file (TOML): a topology (services, an optional PgBouncer
//! layer, a primary and replicas, routing), its workloads, fleet events,
//! server faults and end-of-run assertions. Raw serde structs with
//! `deny_unknown_fields`, then the validated [`ScenarioSpec`].
//!
//! ```toml
//! name = "rolling-restart"        # default: the file name
//! description = "..."
//! [workload]                      # the shared workload, split by the services' `share`
//! trace = "workloads/web.toml"    # shipped name, or a path relative to this file
//! set = ["arrivals.rate_per_s=400"]   # overrides of its keys; default none
//! [run]                           # every key defaults to the shared workload's [run]
//! duration = "2m"                 # the run's horizon; arrivals stop at it
//! [[services]]
//! name = "api"
//! instances = 8                   # default 1
//! policy = "fixed-25"             # shipped name or path
//! set = ["connections.create_interval=40ms"]   # policy overrides; default none
//! share = 1.0                     # or: trace = "..." (+ trace_set = [...]), exactly one
//! balance = "round_robin"         # or "random"; default "round_robin"
//! start_at = "0s"                 # default "0s"
//! start_stagger = "1s"            # default "0s" (all at once)
//! [bouncer]                       # optional PgBouncer layer
//! mode = "transaction"            # or "session"; default "transaction"
//! policy = "pgbouncer-txn"        # its server pools' policy; default "pgbouncer-txn"
//! default_pool_size = 20          # PgBouncer-named shortcuts for policy keys
//! [[servers]]                     # the first is the primary
//! name = "primary"
//! role = "primary"                # or "replica"
//! connect = "tls_in_region"       # every [database] key of a workload file
//! max_connects_per_s = 100        # default: no limit
//! lag = "0s"                      # replicas only; default "0s"
//! [routing]
//! reads = "replicas"              # default "replicas" when there is a replica, else "primary"
//! [[events]]
//! kind = "rolling_restart"
//! service = "api"
//! at = "60s"
//! pause = "5s"
//! [[faults]]                      # a workload file's fault, plus `server` (default the primary)
//! [[assert]]
//! kind = "max_connects_per_s"
//! server = "primary"              # default every server
//! max = 100
//! ```
//!
//! `docs/scenarios.md` is the reference: every key, its default and unit.

mod locate;

use std::path::Path;

use serde::{Deserialize, Serialize};

use self::locate::{apply_override, show_key, Loc, Seg};
use super::duration::{Dur, DurOrNone};
use super::policy;
use super::workload::{
    self, database_connect, database_limits, fault_from_raw, ConnectPreset, DatabaseRaw, DistRaw,
    FaultKindRaw, FaultRaw,
};
use super::{content_hash, missing_field, readable, Document, Locator, Override};
use crate::check::assertions::{Assertion, Scope};
use crate::core::request::Priority;
use crate::error::ConfigError;
use crate::scenario::{LoadedPolicy, LoadedWorkload};
use crate::sim::fault::FaultTiming;
use crate::sim::topology::{
    Bouncer, FleetEvent, PoolMode, ReplicaSelection, Routing, Server, ServerFault, Service,
    ServiceWorkload, Topology,
};
use crate::sim::{Balance, DatabaseModel, RunOptions};
use crate::time::SimDuration;

/// Top-level keys of a scenario file; a `--set` key starting with one of
/// these applies to the scenario.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "description",
    "workload",
    "run",
    "services",
    "bouncer",
    "servers",
    "routing",
    "events",
    "faults",
    "assert",
];

/// Top-level keys holding arrays of tables (`--set` picks an entry by name
/// or index).
const ARRAY_KEYS: &[&str] = &["services", "servers", "events", "faults", "assert"];

/// The policy a `[bouncer]` runs when it names none.
pub const DEFAULT_BOUNCER_POLICY: &str = "pgbouncer-txn";

/// A validated scenario.
#[derive(Clone, Debug)]
pub struct ScenarioSpec {
    pub name: String,
    pub description: String,
    pub topology: Topology,
    /// The workload split between the services that take a `share` (None
    /// when every service has its own).
    pub shared: Option<LoadedWorkload>,
    /// Services' own workloads (`ServiceWorkload::Own(i)` indexes this).
    pub own: Vec<LoadedWorkload>,
    /// Bounds, sampling, horizon (the run's duration), drain.
    pub run: RunOptions,
    pub assertions: Vec<Assertion>,
    /// The scenario as resolved (defaults filled in), for summary.json.
    pub effective: serde_json::Value,
    /// Content hash of `effective` (and the workloads' hashes).
    pub hash: String,
}

impl ScenarioSpec {
    /// Reads and validates a scenario file; `overrides` are `--set`
    /// assignments applied to it.
    pub fn load(path: &Path, overrides: &[Override]) -> Result<ScenarioSpec, ConfigError> {
        let doc = Document::read(path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::load_doc(&doc, &base, overrides)
    }

    /// Validates a scenario document; the workload and policy paths in it
    /// are relative to `base_dir`. Its default name is the document name's
    /// file stem.
    pub fn load_doc(
        doc: &Document,
        base_dir: &Path,
        overrides: &[Override],
    ) -> Result<ScenarioSpec, ConfigError> {
        let (raw, loc) = deserialize(doc, overrides)?;
        let stem = Path::new(&doc.name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".to_string());
        let ctx = Ctx {
            loc: &loc,
            base_dir,
        };
        validate(raw, &stem, &ctx)
    }
}

// ---------------------------------------------------------------------------
// The raw layer.

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    /// Shown in reports. Default: the file name without `.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    description: String,
    /// The shared workload; required iff a service has a `share`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workload: Option<WorkloadRef>,
    #[serde(default)]
    run: RunRaw,
    services: Vec<ServiceRaw>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bouncer: Option<BouncerRaw>,
    servers: Vec<ServerRaw>,
    #[serde(default)]
    routing: RoutingRaw,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    events: Vec<EventRaw>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    faults: Vec<ServerFaultRaw>,
    #[serde(default, rename = "assert", skip_serializing_if = "Vec::is_empty")]
    asserts: Vec<AssertRaw>,
}

/// `[workload]`: a workload file, as `sim run --trace` takes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct WorkloadRef {
    trace: String,
    /// Overrides of the workload's keys (`--set` syntax). Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    set: Vec<String>,
}

/// `[run]`: every key defaults to the shared workload's `[run]` (or the
/// built-in defaults when there is no shared workload).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RunRaw {
    /// The run's horizon; every workload's arrivals stop at it. Default: the
    /// longest workload's duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_events: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_sim_time: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sample_interval: Option<DurOrNone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    recovery_wait: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ServiceRaw {
    name: String,
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instances: Option<u32>,
    policy: String,
    /// Policy overrides. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    set: Vec<String>,
    /// Its fraction of the shared workload, in (0, 1] (or `trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    share: Option<f64>,
    /// Its own workload (or `share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<String>,
    /// Overrides of its own workload's keys. Default none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    trace_set: Vec<String>,
    /// Default "round_robin".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    balance: Option<Balance>,
    /// Default "0s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_at: Option<Dur>,
    /// Default "0s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_stagger: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum PoolModeRaw {
    Transaction,
    Session,
}

/// `[bouncer]`: PgBouncer. Its PgBouncer-named keys are shortcuts for keys
/// of its policy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct BouncerRaw {
    /// Default "transaction".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<PoolModeRaw>,
    /// Default "pgbouncer-txn".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    set: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_pool_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min_pool_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reserve_pool_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reserve_pool_timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query_wait_timeout: Option<DurOrNone>,
    /// A duration (PgBouncer has no "never"; its 0 means one use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_lifetime: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_idle_timeout: Option<DurOrNone>,
    /// Default 100 (PgBouncer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_client_conn: Option<u32>,
    /// Default "0.1ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_connect_latency: Option<Dur>,
    /// Default "0.05ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hop_overhead: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Role {
    Primary,
    Replica,
}

/// `[[servers]]`: a workload file's `[database]` keys, plus a name, a role,
/// a connect rate limit and (replicas) a lag.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ServerRaw {
    name: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect: Option<ConnectPreset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect_latency: Option<DistRaw>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query_overhead: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refusal_latency: Option<Dur>,
    /// Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_connections: Option<u32>,
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usl_sigma: Option<f64>,
    /// Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usl_kappa: Option<f64>,
    /// Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_connects_per_s: Option<f64>,
    /// Replicas only. Default "0s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lag: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ReadsRaw {
    Primary,
    Replicas,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ReplicaSelectionRaw {
    RoundRobin,
    Random,
    LeastOutstanding,
    LatencyAware,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RoutingRaw {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reads: Option<ReadsRaw>,
    /// Default "round_robin".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replica_selection: Option<ReplicaSelectionRaw>,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_your_writes: Option<bool>,
    /// Default "60s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ban_time: Option<Dur>,
    /// Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_retries: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum EventKind {
    RollingRestart,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EventRaw {
    kind: EventKind,
    service: String,
    at: Dur,
    pause: Dur,
}

/// `[[faults]]`: a workload file's fault keys plus `server`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ServerFaultRaw {
    /// Default: the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    kind: FaultKindRaw,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_per_hour: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    downtime: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fraction: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum AssertKind {
    MaxConnectsPerS,
    MaxClosesPerS,
    MaxRefusals,
    ConvergeWithin,
    StableFor,
    MaxTimeoutRate,
    MaxP99Wait,
    MaxLost,
}

impl AssertKind {
    fn name(self) -> &'static str {
        match self {
            AssertKind::MaxConnectsPerS => "max_connects_per_s",
            AssertKind::MaxClosesPerS => "max_closes_per_s",
            AssertKind::MaxRefusals => "max_refusals",
            AssertKind::ConvergeWithin => "converge_within",
            AssertKind::StableFor => "stable_for",
            AssertKind::MaxTimeoutRate => "max_timeout_rate",
            AssertKind::MaxP99Wait => "max_p99_wait",
            AssertKind::MaxLost => "max_lost",
        }
    }

    /// The keys each kind takes besides `kind`.
    fn keys(self) -> &'static [&'static str] {
        match self {
            AssertKind::MaxConnectsPerS | AssertKind::MaxClosesPerS | AssertKind::MaxRefusals => {
                &["server", "max"]
            }
            AssertKind::ConvergeWithin => &["service", "within"],
            AssertKind::StableFor => &["service", "for"],
            AssertKind::MaxTimeoutRate | AssertKind::MaxP99Wait => &["service", "max", "priority"],
            AssertKind::MaxLost => &["service", "max"],
        }
    }
}

/// `[[assert]]`: which keys apply depends on `kind`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AssertRaw {
    kind: AssertKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    /// A count, a fraction or a duration, by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    within: Option<Dur>,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    priority: Option<Priority>,
}

impl AssertRaw {
    fn present(&self) -> [(&'static str, bool); 6] {
        [
            ("server", self.server.is_some()),
            ("service", self.service.is_some()),
            ("max", self.max.is_some()),
            ("within", self.within.is_some()),
            ("for", self.for_.is_some()),
            ("priority", self.priority.is_some()),
        ]
    }
}

// ---------------------------------------------------------------------------
// Parsing.

/// Parses the document, applies the overrides (array entries by name or
/// index) and deserializes the raw scenario.
fn deserialize<'a>(
    doc: &'a Document,
    overrides: &[Override],
) -> Result<(ScenarioFile, Loc<'a>), ConfigError> {
    let mut table: toml::Table =
        toml::from_str(&doc.text).map_err(|e| super::syntax_error(doc, &e))?;
    let mut applied = Vec::new();
    for o in overrides {
        if !TOP_LEVEL_KEYS.contains(&o.path[0].as_str()) {
            return Err(ConfigError::BadOverride {
                assignment: o.assignment.clone(),
                message: format!(
                    "unknown key `{}`: scenario keys start with {}",
                    o.path[0],
                    TOP_LEVEL_KEYS.join(", ")
                ),
            });
        }
        let path = apply_override(&mut table, o, ARRAY_KEYS)?;
        applied.push((path, o.assignment.clone()));
    }
    let loc = Loc::new(doc, applied);
    let raw: ScenarioFile =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let mut segs: Vec<Seg> = e
                .path()
                .iter()
                .map(|s| match s {
                    serde_path_to_error::Segment::Seq { index } => Seg::Idx(*index),
                    other => Seg::Key(other.to_string()),
                })
                .collect();
            let message = e.inner().message().trim().to_string();
            let message = match missing_field(&message) {
                Some(field) => {
                    segs.push(Seg::Key(field.to_string()));
                    "required key is missing".to_string()
                }
                None => readable(&message),
            };
            loc.invalid(&show_key(&segs), message)
        })?;
    Ok((raw, loc))
}

// ---------------------------------------------------------------------------
// Validation.

struct Ctx<'a> {
    loc: &'a Loc<'a>,
    base_dir: &'a Path,
}

impl Ctx<'_> {
    /// A referenced file: a bare word is a shipped name (when it is one),
    /// anything else a path relative to the scenario's directory.
    fn reference(&self, arg: &str, shipped: &[(&str, &str)]) -> String {
        let looks_like_path = arg.ends_with(".toml") || arg.contains('/') || arg.contains('\\');
        if !looks_like_path && shipped.iter().any(|(n, _)| *n == arg) {
            return arg.to_string();
        }
        let p = Path::new(arg);
        if p.is_absolute() || self.base_dir.as_os_str().is_empty() {
            return arg.to_string();
        }
        let joined = self.base_dir.join(p);
        // A bare word that is neither a shipped name nor a file here stays
        // as written, so the error lists the shipped names.
        if looks_like_path || joined.is_file() {
            joined.display().to_string()
        } else {
            arg.to_string()
        }
    }

    /// Where `key` is, as "file:line:col" (for messages about another file).
    fn at(&self, key: &str) -> String {
        self.loc.origin(key).to_string()
    }

    /// Parses the `set` list at `key` into overrides.
    fn sets(&self, key: &str, sets: &[String]) -> Result<Vec<Override>, ConfigError> {
        sets.iter()
            .enumerate()
            .map(|(j, s)| {
                let item = format!("{key}[{j}]");
                let mut o = Override::parse(s).map_err(|e| match e {
                    ConfigError::BadOverride { message, .. } => self.loc.invalid(&item, message),
                    other => other,
                })?;
                // Messages from the referenced file name this entry.
                o.assignment = format!("{s}, from {item} at {}", self.at(&item));
                Ok(o)
            })
            .collect()
    }

    /// A referenced file that is missing or unknown is this key's error.
    fn reference_error(&self, key: &str, e: ConfigError) -> ConfigError {
        match e {
            ConfigError::UnknownName {
                what,
                name,
                shipped,
            } => self.loc.invalid(
                key,
                format!(
                    "{what} `{name}`: no such file, and not a shipped name (shipped: {shipped})"
                ),
            ),
            ConfigError::Read { path, source } => self
                .loc
                .invalid(key, format!("cannot read {}: {source}", path.display())),
            other => other,
        }
    }
}

/// Workload keys a scenario's workloads may not set: the scenario says them.
const WORKLOAD_TOPOLOGY_KEYS: &[(&str, &str)] = &[
    (
        "database",
        "the database is described by the scenario's [[servers]] (the same keys, per server)",
    ),
    (
        "app",
        "application instances are the scenario's [[services]] (instances, balance)",
    ),
    (
        "faults",
        "faults are the scenario's [[faults]] (the same keys, plus `server = \"name\"`)",
    ),
];

/// Loads the workload at `key` (a shipped name or a path) with the
/// overrides listed at `set_key`. `cap`: arrivals stop at this time
/// (the scenario's `run.duration`).
fn load_workload(
    ctx: &Ctx,
    key: &str,
    arg: &str,
    set_key: &str,
    sets: &[String],
    cap: Option<SimDuration>,
) -> Result<LoadedWorkload, ConfigError> {
    let overrides = ctx.sets(set_key, sets)?;
    for (j, o) in overrides.iter().enumerate() {
        if let Some((k, why)) = WORKLOAD_TOPOLOGY_KEYS.iter().find(|(k, _)| o.path[0] == *k) {
            return Err(ctx.loc.invalid(
                &format!("{set_key}[{j}]"),
                format!("a scenario's workload describes its requests only, not `{k}`: {why}"),
            ));
        }
    }
    let resolved = ctx.reference(arg, workload::SHIPPED);
    let is_toml = resolved.to_ascii_lowercase().ends_with(".toml")
        || workload::SHIPPED.iter().any(|(n, _)| *n == resolved);
    let load = |overrides: &[Override]| -> Result<LoadedWorkload, ConfigError> {
        if !is_toml {
            // A recorded trace given directly: no tables to check.
            return crate::scenario::load_workload(&resolved, overrides)
                .map_err(|e| ctx.reference_error(key, e));
        }
        let (doc, stem) = crate::scenario::resolve("trace", &resolved, "traces", workload::SHIPPED)
            .map_err(|e| ctx.reference_error(key, e))?;
        if let Ok(table) = toml::from_str::<toml::Table>(&doc.text) {
            for (k, why) in WORKLOAD_TOPOLOGY_KEYS {
                if table.contains_key(*k) {
                    return Err(Locator::new(&doc, &[]).invalid(
                        k,
                        format!(
                            "a scenario's workload describes its requests only ({key} at {}): {why}; remove it, or use a workload file without it",
                            ctx.at(key)
                        ),
                    ));
                }
            }
        }
        let spec = workload::WorkloadSpec::load(&doc, &stem, overrides)?;
        Ok(LoadedWorkload {
            spec,
            source: doc.name,
        })
    };
    let w = load(&overrides)?;
    match cap {
        Some(d) if w.spec.run.horizon.is_none_or(|h| h > d) => {
            let mut capped = overrides.clone();
            capped.push(Override {
                path: vec!["duration".to_string()],
                value: toml::Value::String(d.to_string()),
                assignment: format!("duration={d}, the scenario's run.duration"),
            });
            load(&capped)
        }
        _ => Ok(w),
    }
}

/// Loads the policy at `key` (a shipped name or a path) with `overrides`.
fn load_policy(
    ctx: &Ctx,
    key: &str,
    arg: &str,
    overrides: &[Override],
) -> Result<LoadedPolicy, ConfigError> {
    let resolved = ctx.reference(arg, policy::SHIPPED);
    crate::scenario::load_policy(&resolved, overrides).map_err(|e| ctx.reference_error(key, e))
}

/// Names must be usable in `--set services.NAME.key=...` and in messages.
fn check_name(ctx: &Ctx, key: &str, name: &str, seen: &[&str]) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ctx.loc.invalid(
            key,
            format!("expected a name of letters, digits, `-` and `_` (it is used in --set keys), got \"{name}\""),
        ));
    }
    if name == "*" || seen.contains(&name) {
        return Err(ctx
            .loc
            .invalid(key, format!("the name \"{name}\" is used twice")));
    }
    Ok(())
}

/// The index of the entry named `name` among `names`, else an error at `key`.
fn resolve_name(
    ctx: &Ctx,
    key: &str,
    what: &str,
    name: &str,
    names: &[String],
) -> Result<usize, ConfigError> {
    names.iter().position(|n| n == name).ok_or_else(|| {
        ctx.loc.invalid(
            key,
            format!(
                "no {what} named \"{name}\" (the {what}s are: {})",
                names.join(", ")
            ),
        )
    })
}

fn validate(
    mut raw: ScenarioFile,
    default_name: &str,
    ctx: &Ctx,
) -> Result<ScenarioSpec, ConfigError> {
    let loc = ctx.loc;
    let name = raw.name.clone().unwrap_or_else(|| default_name.to_string());
    if name.trim().is_empty() {
        return Err(loc.invalid("name", "expected a non-empty name"));
    }
    raw.name = Some(name.clone());

    // Names first: everything else refers to them.
    if raw.services.is_empty() {
        return Err(loc.invalid("services", "expected at least one [[services]] entry"));
    }
    let mut service_names: Vec<String> = Vec::new();
    for (i, s) in raw.services.iter().enumerate() {
        let seen: Vec<&str> = service_names.iter().map(String::as_str).collect();
        check_name(ctx, &format!("services[{i}].name"), &s.name, &seen)?;
        service_names.push(s.name.clone());
    }
    if raw.servers.is_empty() {
        return Err(loc.invalid(
            "servers",
            "expected at least one [[servers]] entry (the first is the primary)",
        ));
    }
    let mut server_names: Vec<String> = Vec::new();
    for (i, s) in raw.servers.iter().enumerate() {
        let seen: Vec<&str> = server_names.iter().map(String::as_str).collect();
        check_name(ctx, &format!("servers[{i}].name"), &s.name, &seen)?;
        server_names.push(s.name.clone());
    }

    // Servers.
    let mut servers = Vec::new();
    for (i, s) in raw.servers.iter_mut().enumerate() {
        servers.push(server(ctx, i, s)?);
    }
    let replicas = servers.len() - 1;

    // Workloads: the shared one, then each service's own.
    let shares: Vec<(usize, f64)> = raw
        .services
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.share.map(|x| (i, x)))
        .collect();
    let cap = raw.run.duration.map(|d| d.0);
    let shared = match (&raw.workload, shares.first()) {
        (Some(w), Some(_)) => Some(load_workload(
            ctx,
            "workload.trace",
            &w.trace,
            "workload.set",
            &w.set,
            cap,
        )?),
        (Some(_), None) => {
            return Err(loc.invalid(
                "workload",
                "no service takes a `share` of the shared workload: give services a share, or remove [workload]",
            ))
        }
        (None, Some(&(i, _))) => {
            return Err(loc.invalid(
                &format!("services[{i}].share"),
                "a share needs the scenario's [workload] (the workload it is a share of)",
            ))
        }
        (None, None) => None,
    };
    let mut own = Vec::new();
    let mut workloads = Vec::new();
    for (i, s) in raw.services.iter().enumerate() {
        let key = |k: &str| format!("services[{i}].{k}");
        workloads.push(match (s.share, &s.trace) {
            (Some(x), None) => {
                if !(x.is_finite() && x > 0.0 && x <= 1.0) {
                    return Err(loc.invalid(&key("share"), format!("expected a fraction in (0, 1], got {x}")));
                }
                if !s.trace_set.is_empty() {
                    return Err(loc.invalid_related(
                        &key("trace_set"),
                        &[&key("share")],
                        "applies to a service's own workload (`trace`), not to a `share`",
                    ));
                }
                ServiceWorkload::Share(x)
            }
            (None, Some(t)) => {
                own.push(load_workload(ctx, &key("trace"), t, &key("trace_set"), &s.trace_set, cap)?);
                ServiceWorkload::Own(own.len() - 1)
            }
            (Some(_), Some(_)) => {
                return Err(loc.invalid_related(
                    &key("trace"),
                    &[&key("share")],
                    "expected either `share` (a fraction of the shared [workload]) or `trace` (its own workload), not both",
                ))
            }
            (None, None) => {
                return Err(loc.invalid(
                    &key("share"),
                    "expected `share` (a fraction of the shared [workload]) or `trace` (its own workload)",
                ))
            }
        });
    }
    if !shares.is_empty() {
        let sum: f64 = shares.iter().map(|(_, x)| x).sum();
        if (sum - 1.0).abs() > 1e-9 {
            let keys: Vec<String> = shares
                .iter()
                .map(|(i, _)| format!("services[{i}].share"))
                .collect();
            let related: Vec<&str> = keys.iter().map(String::as_str).collect();
            let terms: Vec<String> = shares.iter().map(|(_, x)| x.to_string()).collect();
            return Err(loc.invalid_related(
                &keys[0],
                &related,
                format!(
                    "expected the services' shares to sum to 1, got {} = {sum}",
                    terms.join(" + ")
                ),
            ));
        }
    }

    // The run: defaults from the shared workload's [run].
    let base = shared
        .as_ref()
        .map_or_else(RunOptions::default, |w| w.spec.run.clone());
    let longest = shared
        .iter()
        .chain(&own)
        .filter_map(|w| w.spec.run.horizon)
        .max();
    let r = &mut raw.run;
    let run = RunOptions {
        max_events: r.max_events.unwrap_or(base.max_events),
        max_sim_time: r.max_sim_time.map_or(base.max_sim_time, |d| d.0),
        sample_interval: r.sample_interval.map_or(base.sample_interval, |d| d.0),
        horizon: cap.or(longest),
        drain: r.drain.unwrap_or(base.drain),
        check_invariants: false,
        recovery_wait: r.recovery_wait.map_or(base.recovery_wait, |d| d.0),
    };
    if run.max_events == 0 {
        return Err(loc.invalid("run.max_events", "expected at least 1, got 0"));
    }
    if run.max_sim_time.0 == 0 {
        return Err(loc.invalid("run.max_sim_time", "expected a positive duration, got 0s"));
    }
    if run.sample_interval == Some(SimDuration::ZERO) {
        return Err(loc.invalid(
            "run.sample_interval",
            "expected a positive duration or \"none\", got 0s",
        ));
    }
    if cap == Some(SimDuration::ZERO) {
        return Err(loc.invalid("run.duration", "expected a positive duration, got 0s"));
    }
    if let Some(h) = run.horizon {
        if h > run.max_sim_time {
            return Err(loc.invalid_related(
                "run.duration",
                &["run.max_sim_time"],
                format!(
                    "the run lasts {h}, longer than run.max_sim_time ({}): raise max_sim_time",
                    run.max_sim_time
                ),
            ));
        }
    }
    *r = RunRaw {
        duration: run.horizon.map(Dur),
        max_events: Some(run.max_events),
        max_sim_time: Some(Dur(run.max_sim_time)),
        sample_interval: Some(DurOrNone(run.sample_interval)),
        drain: Some(run.drain),
        recovery_wait: Some(Dur(run.recovery_wait)),
    };
    // A time that must fall within the run (when it has a horizon).
    let within_run = |key: &str, what: &str, t: SimDuration| -> Result<(), ConfigError> {
        match run.horizon {
            Some(h) if t >= h => Err(loc.invalid_related(
                key,
                &["run.duration"],
                format!("{what} at {t}, not before the run ends ({h})"),
            )),
            _ => Ok(()),
        }
    };

    // Services.
    let mut services = Vec::new();
    let mut policy_hashes = Vec::new();
    for (i, (s, workload)) in raw.services.iter_mut().zip(workloads).enumerate() {
        let key = |k: &str| format!("services[{i}].{k}");
        let instances = s.instances.unwrap_or(1);
        if instances == 0 || instances > u16::MAX as u32 {
            return Err(loc.invalid(
                &key("instances"),
                format!("expected 1 to {} instances, got {instances}", u16::MAX),
            ));
        }
        let overrides = ctx.sets(&key("set"), &s.set)?;
        let p = load_policy(ctx, &key("policy"), &s.policy, &overrides)?;
        let start_at = s.start_at.map_or(SimDuration::ZERO, |d| d.0);
        let start_stagger = s.start_stagger.map_or(SimDuration::ZERO, |d| d.0);
        let last = SimDuration(
            start_stagger
                .0
                .saturating_mul(instances as u64 - 1)
                .saturating_add(start_at.0),
        );
        within_run(
            &key("start_at"),
            &format!("service \"{}\"'s last instance starts", s.name),
            last,
        )?;
        s.instances = Some(instances);
        s.balance = Some(s.balance.unwrap_or_default());
        s.start_at = Some(Dur(start_at));
        s.start_stagger = Some(Dur(start_stagger));
        policy_hashes.push((p.spec.hash.clone(), p.source.clone()));
        services.push(Service {
            name: s.name.clone(),
            instances: instances as u16,
            policy: p.spec,
            workload,
            balance: s.balance.unwrap_or_default(),
            start_at,
            start_stagger,
        });
    }

    // PgBouncer.
    let bouncer = match &mut raw.bouncer {
        Some(b) => Some(bouncer(ctx, b)?),
        None => None,
    };

    // Routing.
    let rt = &mut raw.routing;
    let reads =
        match rt.reads {
            Some(ReadsRaw::Replicas) if replicas == 0 => return Err(loc.invalid(
                "routing.reads",
                "reads = \"replicas\" needs at least one [[servers]] entry with role = \"replica\"",
            )),
            Some(r) => r,
            None if replicas > 0 => ReadsRaw::Replicas,
            None => ReadsRaw::Primary,
        };
    let read_retries = rt.read_retries.unwrap_or(1);
    if read_retries > 100 {
        return Err(loc.invalid(
            "routing.read_retries",
            format!("expected 0 to 100 retries, got {read_retries}"),
        ));
    }
    let selection = rt
        .replica_selection
        .unwrap_or(ReplicaSelectionRaw::RoundRobin);
    let routing = Routing {
        reads_to_replicas: reads == ReadsRaw::Replicas,
        replica_selection: match selection {
            ReplicaSelectionRaw::RoundRobin => ReplicaSelection::RoundRobin,
            ReplicaSelectionRaw::Random => ReplicaSelection::Random,
            ReplicaSelectionRaw::LeastOutstanding => ReplicaSelection::LeastOutstanding,
            ReplicaSelectionRaw::LatencyAware => ReplicaSelection::LatencyAware,
        },
        read_your_writes: rt.read_your_writes.unwrap_or(false),
        ban_time: rt.ban_time.map_or(SimDuration::from_secs(60), |d| d.0),
        read_retries,
    };
    *rt = RoutingRaw {
        reads: Some(reads),
        replica_selection: Some(selection),
        read_your_writes: Some(routing.read_your_writes),
        ban_time: Some(Dur(routing.ban_time)),
        read_retries: Some(read_retries),
    };

    // Events.
    let mut events = Vec::new();
    for (i, e) in raw.events.iter().enumerate() {
        let key = |k: &str| format!("events[{i}].{k}");
        let service = resolve_name(ctx, &key("service"), "service", &e.service, &service_names)?;
        let at = e.at.0;
        within_run(&key("at"), "the rolling restart begins", at)?;
        let s = &services[service];
        let last_start =
            SimDuration(s.start_stagger.0.saturating_mul(s.instances as u64 - 1) + s.start_at.0);
        if at < last_start {
            return Err(loc.invalid_related(
                &key("at"),
                &[&format!("services[{service}].start_at")],
                format!(
                    "the rolling restart at {at} begins before service \"{}\"'s last instance has started ({last_start})",
                    s.name
                ),
            ));
        }
        events.push(match e.kind {
            EventKind::RollingRestart => FleetEvent::RollingRestart {
                service,
                at,
                pause: e.pause.0,
            },
        });
    }

    // Faults.
    let mut faults = Vec::new();
    for (i, f) in raw.faults.iter_mut().enumerate() {
        let key = |k: &str| format!("faults[{i}].{k}");
        let server = match &f.server {
            Some(n) => resolve_name(ctx, &key("server"), "server", n, &server_names)?,
            None => 0,
        };
        f.server = Some(server_names[server].clone());
        let fr = FaultRaw {
            kind: f.kind,
            at: f.at,
            rate_per_hour: f.rate_per_hour,
            downtime: f.downtime,
            count: f.count,
            fraction: f.fraction,
            factor: f.factor,
            probability: f.probability,
            duration: f.duration,
        };
        let err = |k: &str, message: String| loc.invalid(&key(k), message);
        let spec = fault_from_raw(&fr, &err)?;
        if let FaultTiming::At(at) = spec.timing {
            within_run(&key("at"), "the fault happens", at)?;
        }
        faults.push(ServerFault { server, spec });
    }

    // Assertions.
    let mut assertions = Vec::new();
    for (i, a) in raw.asserts.iter().enumerate() {
        assertions.push(assertion(ctx, i, a, &service_names, &server_names)?);
    }

    let topology = Topology {
        services,
        bouncer: bouncer.as_ref().map(|(b, _)| b.clone()),
        servers,
        routing,
        events,
        faults,
    };

    // The effective scenario: the raw one with defaults filled in, and the
    // hashes of what it references.
    let mut effective = serde_json::to_value(&raw).expect("scenario serializes");
    if let Some(obj) = effective.as_object_mut() {
        if let (Some(w), Some(v)) = (&shared, obj.get_mut("workload")) {
            v["hash"] = w.spec.hash.clone().into();
            v["name"] = w.spec.name.clone().into();
        }
        if let (Some((_, h)), Some(v)) = (&bouncer, obj.get_mut("bouncer")) {
            v["policy_hash"] = h.clone().into();
        }
        if let Some(serde_json::Value::Array(items)) = obj.get_mut("services") {
            for ((item, (hash, _)), s) in
                items.iter_mut().zip(&policy_hashes).zip(&topology.services)
            {
                item["policy_hash"] = hash.clone().into();
                if let ServiceWorkload::Own(j) = s.workload {
                    item["trace_hash"] = own[j].spec.hash.clone().into();
                }
            }
        }
    }
    let hash = content_hash(&effective);
    Ok(ScenarioSpec {
        name,
        description: raw.description.clone(),
        topology,
        shared,
        own,
        run,
        assertions,
        effective,
        hash,
    })
}

/// Validates one `[[servers]]` entry (and fills in its defaults).
fn server(ctx: &Ctx, i: usize, s: &mut ServerRaw) -> Result<Server, ConfigError> {
    let loc = ctx.loc;
    let key = |k: &str| format!("servers[{i}].{k}");
    match (i, s.role) {
        (0, Role::Replica) => {
            return Err(loc.invalid(
                &key("role"),
                "the first [[servers]] entry is the primary: expected role = \"primary\"",
            ))
        }
        (1.., Role::Primary) => {
            return Err(loc.invalid(
                &key("role"),
                "only the first [[servers]] entry is the primary: expected role = \"replica\"",
            ))
        }
        _ => {}
    }
    let db = DatabaseRaw {
        connect: s.connect,
        connect_latency: s.connect_latency.clone(),
        query_overhead: s.query_overhead,
        refusal_latency: s.refusal_latency,
        max_connections: s.max_connections.unwrap_or(100),
        usl_sigma: s.usl_sigma.unwrap_or(0.0),
        usl_kappa: s.usl_kappa.unwrap_or(0.0),
    };
    // The workload helpers name keys `PREFIX.key` and locate them with the
    // generic locator, which does not descend into arrays: re-key and
    // re-locate their errors.
    let doc = Document::new(loc.file(), "");
    let generic = Locator::new(&doc, &[]);
    let rekey = |e: ConfigError| match e {
        ConfigError::Invalid {
            key: k, message, ..
        } => {
            let rest = k.strip_prefix("server.").unwrap_or(&k);
            loc.invalid(&key(rest), message)
        }
        other => other,
    };
    let (connect_latency, wire) = database_connect(&generic, "server", &db).map_err(rekey)?;
    database_limits(&generic, "server", &db).map_err(rekey)?;
    let max_connects_per_s = match s.max_connects_per_s {
        Some(x) if !(x.is_finite() && x > 0.0) => {
            return Err(loc.invalid(
                &key("max_connects_per_s"),
                format!("expected a positive rate in connects per second, got {x}"),
            ))
        }
        other => other,
    };
    let lag = match (s.role, s.lag) {
        (Role::Primary, Some(_)) => {
            return Err(loc.invalid(
                &key("lag"),
                "applies only to replicas (role = \"replica\"): the primary has no lag",
            ))
        }
        (_, l) => l.map_or(SimDuration::ZERO, |d| d.0),
    };
    s.max_connections = Some(db.max_connections);
    s.usl_sigma = Some(db.usl_sigma);
    s.usl_kappa = Some(db.usl_kappa);
    s.query_overhead = Some(Dur(wire.query_overhead));
    s.refusal_latency = Some(Dur(wire.refusal_latency));
    if s.role == Role::Replica {
        s.lag = Some(Dur(lag));
    }
    Ok(Server {
        name: s.name.clone(),
        model: DatabaseModel {
            connect_latency,
            max_connections: db.max_connections,
            usl_sigma: db.usl_sigma,
            usl_kappa: db.usl_kappa,
        },
        wire,
        max_connects_per_s,
        lag,
    })
}

/// A number read from a policy's effective config.
fn effective_u64(p: &LoadedPolicy, table: &str, key: &str) -> Option<u64> {
    p.spec.effective.get(table)?.get(key)?.as_u64()
}

/// Validates `[bouncer]`: loads its policy, then again with the
/// PgBouncer-named shortcuts as overrides. Returns the bouncer and its
/// policy's hash.
fn bouncer(ctx: &Ctx, b: &mut BouncerRaw) -> Result<(Bouncer, String), ConfigError> {
    let loc = ctx.loc;
    let policy_arg = b
        .policy
        .clone()
        .unwrap_or_else(|| DEFAULT_BOUNCER_POLICY.to_string());
    let user = ctx.sets("bouncer.set", &b.set)?;
    let base = load_policy(ctx, "bouncer.policy", &policy_arg, &user)?;
    let kind = base
        .spec
        .effective
        .get("resize")
        .and_then(|r| r.get("kind"))
        .and_then(|k| k.as_str())
        .unwrap_or("?")
        .to_string();
    let reserve = kind == "reserve";
    let mut shortcuts: Vec<Override> = Vec::new();
    let mut shortcut = |bkey: &str, path: &str, value: toml::Value| {
        let shown = match &value {
            toml::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        shortcuts.push(Override {
            path: path.split('.').map(str::to_string).collect(),
            value,
            assignment: format!(
                "{path}={shown}, from bouncer.{bkey} at {}",
                ctx.at(&format!("bouncer.{bkey}"))
            ),
        });
    };
    if !reserve {
        for (k, given) in [
            ("reserve_pool_size", b.reserve_pool_size.is_some()),
            ("reserve_pool_timeout", b.reserve_pool_timeout.is_some()),
        ] {
            if given {
                return Err(loc.invalid_related(
                    &format!("bouncer.{k}"),
                    &["bouncer.policy"],
                    format!(
                        "applies only to a policy whose resize kind is \"reserve\" (policy `{}` has kind = \"{kind}\"; try policy = \"pgbouncer-reserve\")",
                        base.spec.name
                    ),
                ));
            }
        }
    }
    let size_max = effective_u64(&base, "size", "max").unwrap_or(0);
    let size_min = effective_u64(&base, "size", "min").unwrap_or(0);
    let old_reserve = if reserve {
        effective_u64(&base, "resize", "reserve_size").unwrap_or(0)
    } else {
        0
    };
    let pool = b
        .default_pool_size
        .map_or(size_max.saturating_sub(old_reserve), u64::from);
    let min = b.min_pool_size.map_or(size_min, u64::from);
    if pool == 0 {
        return Err(loc.invalid("bouncer.default_pool_size", "expected at least 1, got 0"));
    }
    if min > pool {
        return Err(loc.invalid_related(
            "bouncer.min_pool_size",
            &["bouncer.default_pool_size"],
            format!("expected min_pool_size <= default_pool_size ({pool}), got {min}"),
        ));
    }
    let new_reserve = b.reserve_pool_size.map_or(old_reserve, u64::from);
    if b.default_pool_size.is_some() || b.reserve_pool_size.is_some() {
        let which = if b.default_pool_size.is_some() {
            "default_pool_size"
        } else {
            "reserve_pool_size"
        };
        shortcut(
            which,
            "size.max",
            toml::Value::Integer((pool + new_reserve) as i64),
        );
    }
    if let Some(m) = b.min_pool_size {
        shortcut("min_pool_size", "size.min", toml::Value::Integer(m as i64));
    }
    if let Some(r) = b.reserve_pool_size {
        shortcut(
            "reserve_pool_size",
            "resize.reserve_size",
            toml::Value::Integer(r as i64),
        );
    }
    if let Some(t) = b.reserve_pool_timeout {
        shortcut(
            "reserve_pool_timeout",
            "resize.reserve_timeout",
            t.0.to_string().into(),
        );
    }
    if let Some(t) = b.query_wait_timeout {
        let v = t.0.map_or("none".to_string(), |d| d.to_string());
        for p in ["high", "normal", "low"] {
            shortcut(
                "query_wait_timeout",
                &format!("acquire_timeout.{p}"),
                v.clone().into(),
            );
        }
    }
    if let Some(t) = b.server_lifetime {
        shortcut(
            "server_lifetime",
            "connections.max_lifetime",
            t.0.to_string().into(),
        );
    }
    if let Some(t) = b.server_idle_timeout {
        let v = t.0.map_or("none".to_string(), |d| d.to_string());
        shortcut("server_idle_timeout", "connections.idle_timeout", v.into());
    }
    let p = if shortcuts.is_empty() {
        base
    } else {
        let mut all = user.clone();
        all.extend(shortcuts);
        load_policy(ctx, "bouncer.policy", &policy_arg, &all)?
    };
    let max_client_conn = b.max_client_conn.unwrap_or(100);
    if max_client_conn == 0 {
        return Err(loc.invalid("bouncer.max_client_conn", "expected at least 1, got 0"));
    }
    let mode = b.mode.unwrap_or(PoolModeRaw::Transaction);
    let client_connect_latency = b
        .client_connect_latency
        .map_or(SimDuration::from_nanos(100_000), |d| d.0);
    let hop_overhead = b
        .hop_overhead
        .map_or(SimDuration::from_nanos(50_000), |d| d.0);
    b.mode = Some(mode);
    b.policy = Some(policy_arg);
    b.max_client_conn = Some(max_client_conn);
    b.client_connect_latency = Some(Dur(client_connect_latency));
    b.hop_overhead = Some(Dur(hop_overhead));
    let hash = p.spec.hash.clone();
    Ok((
        Bouncer {
            mode: match mode {
                PoolModeRaw::Transaction => PoolMode::Transaction,
                PoolModeRaw::Session => PoolMode::Session,
            },
            policy: p.spec,
            max_client_conn,
            client_connect_latency,
            hop_overhead,
        },
        hash,
    ))
}

/// Validates one `[[assert]]` entry.
fn assertion(
    ctx: &Ctx,
    i: usize,
    a: &AssertRaw,
    services: &[String],
    servers: &[String],
) -> Result<Assertion, ConfigError> {
    let loc = ctx.loc;
    let key = |k: &str| format!("assert[{i}].{k}");
    let kind = a.kind.name();
    let allowed = a.kind.keys();
    for (k, set) in a.present() {
        if set && !allowed.contains(&k) {
            return Err(loc.invalid_related(
                &key(k),
                &[&key("kind")],
                format!(
                    "does not apply to kind = \"{kind}\" (it takes: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    let scope =
        |what: &str, name: &Option<String>, names: &[String]| -> Result<Scope, ConfigError> {
            match name.as_deref() {
                None | Some("*") => Ok(Scope::All),
                Some(n) => {
                    let index = resolve_name(ctx, &key(what), what, n, names)?;
                    Ok(Scope::One {
                        index,
                        name: n.to_string(),
                    })
                }
            }
        };
    let need = |k: &str, what: &str| {
        loc.invalid(&key(k), format!("kind = \"{kind}\" needs `{k}` ({what})"))
    };
    let count = |limit: u64| -> Result<u64, ConfigError> {
        let v = a
            .max
            .as_ref()
            .ok_or_else(|| need("max", "a whole number"))?;
        match v.as_integer() {
            Some(n) if n >= 0 && n as u64 <= limit => Ok(n as u64),
            _ => Err(loc.invalid(
                &key("max"),
                format!("expected a whole number from 0 to {limit}, got {v}"),
            )),
        }
    };
    let duration = |k: &str, v: Option<Dur>| -> Result<SimDuration, ConfigError> {
        match v {
            Some(d) if d.0 .0 > 0 => Ok(d.0),
            Some(_) => Err(loc.invalid(&key(k), "expected a positive duration, got 0s")),
            None => Err(need(k, "a duration such as \"30s\"")),
        }
    };
    Ok(match a.kind {
        AssertKind::MaxConnectsPerS => Assertion::MaxConnectsPerS {
            server: scope("server", &a.server, servers)?,
            max: count(u32::MAX as u64)? as u32,
        },
        AssertKind::MaxClosesPerS => Assertion::MaxClosesPerS {
            server: scope("server", &a.server, servers)?,
            max: count(u32::MAX as u64)? as u32,
        },
        AssertKind::MaxRefusals => Assertion::MaxRefusals {
            server: scope("server", &a.server, servers)?,
            max: count(i64::MAX as u64)?,
        },
        AssertKind::MaxLost => Assertion::MaxLost {
            service: scope("service", &a.service, services)?,
            max: count(i64::MAX as u64)?,
        },
        AssertKind::ConvergeWithin => Assertion::ConvergeWithin {
            service: scope("service", &a.service, services)?,
            within: duration("within", a.within)?,
        },
        AssertKind::StableFor => Assertion::StableFor {
            service: scope("service", &a.service, services)?,
            for_: duration("for", a.for_)?,
        },
        AssertKind::MaxTimeoutRate => {
            let v = a
                .max
                .as_ref()
                .ok_or_else(|| need("max", "a fraction such as 0.01"))?;
            let x = match v {
                toml::Value::Float(x) => Some(*x),
                toml::Value::Integer(n) => Some(*n as f64),
                _ => None,
            };
            let max = match x {
                Some(x) if x.is_finite() && (0.0..=1.0).contains(&x) => x,
                _ => {
                    return Err(loc.invalid(
                        &key("max"),
                        format!("expected a fraction in [0, 1], got {v}"),
                    ))
                }
            };
            Assertion::MaxTimeoutRate {
                service: scope("service", &a.service, services)?,
                priority: a.priority,
                max,
            }
        }
        AssertKind::MaxP99Wait => {
            let v = a
                .max
                .as_ref()
                .ok_or_else(|| need("max", "a duration such as \"50ms\""))?;
            let max = match v.as_str().map(crate::time::parse_duration) {
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(loc.invalid(&key("max"), e.to_string())),
                None => {
                    return Err(loc.invalid(
                        &key("max"),
                        format!(
                        "expected a duration as a string with a unit, such as \"50ms\", got {v}"
                    ),
                    ))
                }
            };
            Assertion::MaxP99Wait {
                service: scope("service", &a.service, services)?,
                priority: a.priority,
                max,
            }
        }
    })
}

/// The scenario files shipped in `scenarios/` (their paths relative to
/// the crate root), for tests and listings.
pub const SHIPPED_FILES: &[&str] = &[
    "scenarios/single-service.toml",
    "scenarios/fleet-pgbouncer.toml",
    "scenarios/primary-replicas.toml",
    "scenarios/cold-start.toml",
    "scenarios/rolling-restart.toml",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn with_doc<T>(base: &Path, f: impl FnOnce(&Ctx) -> T) -> T {
        let doc = Document::new("s.toml", "[[services]]\nname = \"api\"\n");
        let loc = Loc::new(&doc, vec![]);
        let ctx = Ctx {
            loc: &loc,
            base_dir: base,
        };
        f(&ctx)
    }

    #[test]
    fn references_are_shipped_names_or_paths_next_to_the_scenario() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        with_doc(&dir, |ctx| {
            // A shipped name stays a name.
            assert_eq!(ctx.reference("fixed-25", policy::SHIPPED), "fixed-25");
            // A path is relative to the scenario's directory.
            assert_eq!(
                ctx.reference("workloads/web.toml", workload::SHIPPED),
                dir.join("workloads/web.toml").display().to_string()
            );
            // A bare word that is no file there stays as written (so the
            // error lists the shipped names).
            assert_eq!(ctx.reference("fixed-11", policy::SHIPPED), "fixed-11");
        });
        with_doc(Path::new(""), |ctx| {
            assert_eq!(ctx.reference("a/b.toml", policy::SHIPPED), "a/b.toml");
        });
    }

    #[test]
    fn set_lists_become_overrides_that_name_their_entry() {
        with_doc(Path::new(""), |ctx| {
            let o = ctx
                .sets("services[0].set", &["size.max=5".to_string()])
                .unwrap();
            assert_eq!(o[0].path, vec!["size", "max"]);
            assert_eq!(o[0].value, toml::Value::Integer(5));
            assert_eq!(
                o[0].assignment,
                "size.max=5, from services[0].set[0] at s.toml:2:1"
            );
            let e = ctx
                .sets("services[0].set", &["=5".to_string()])
                .unwrap_err();
            assert_eq!(
                e.to_string(),
                "s.toml:2:1: key `services[0].set[0]`: the key before `=` is empty"
            );
        });
    }

    #[test]
    fn names_are_checked() {
        with_doc(Path::new(""), |ctx| {
            assert!(check_name(ctx, "k", "api-1_b", &[]).is_ok());
            assert!(check_name(ctx, "k", "", &[]).is_err());
            assert!(check_name(ctx, "k", "a.b", &[]).is_err());
            assert!(check_name(ctx, "k", "*", &[]).is_err());
            let e = check_name(ctx, "k", "api", &["api"]).unwrap_err();
            assert!(
                e.to_string().ends_with("the name \"api\" is used twice"),
                "{e}"
            );
        });
    }

    #[test]
    fn every_assertion_key_is_known_to_some_kind() {
        let kinds = [
            AssertKind::MaxConnectsPerS,
            AssertKind::MaxClosesPerS,
            AssertKind::MaxRefusals,
            AssertKind::ConvergeWithin,
            AssertKind::StableFor,
            AssertKind::MaxTimeoutRate,
            AssertKind::MaxP99Wait,
            AssertKind::MaxLost,
        ];
        let raw = AssertRaw {
            kind: AssertKind::MaxLost,
            server: None,
            service: None,
            max: None,
            within: None,
            for_: None,
            priority: None,
        };
        for (key, _) in raw.present() {
            assert!(
                kinds.iter().any(|k| k.keys().contains(&key)),
                "{key} applies to no kind"
            );
        }
        // The names are the serde names.
        for k in kinds {
            assert_eq!(serde_json::to_value(k).unwrap(), k.name());
        }
    }
}
