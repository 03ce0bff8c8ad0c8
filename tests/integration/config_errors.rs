//! Every config error the project promises, pinned to its exact message: the
//! file, line and column (or the `--set` that caused it), the key, and what
//! was expected. Plus properties: no input makes loading panic, and every
//! error names the document.

use pooltune::config::policy::PolicySpec;
use pooltune::config::workload::WorkloadSpec;
use pooltune::config::{Document, Override};
use pooltune::scenario;
use pooltune::time::SimDuration;
use proptest::prelude::*;

/// Lines joined with newlines: line N of the document is `lines[N - 1]`.
pub(crate) fn lines(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// A valid threshold policy (lines 1-6) followed by `extra` (line 7 on).
pub(crate) fn policy(extra: &[&str]) -> String {
    let mut all = vec![
        "name = \"p\"",
        "[size]",
        "min = 2",
        "max = 10",
        "[resize]",
        "kind = \"threshold\"",
    ];
    all.extend_from_slice(extra);
    lines(&all)
}

/// The head of a valid workload (lines 1-5, ending with `[service]`)
/// followed by `service` (line 6 on).
fn workload_service(service: &[&str]) -> String {
    let mut all = vec![
        "duration = \"1m\"",
        "[arrivals]",
        "kind = \"poisson\"",
        "rate_per_s = 10.0",
        "[service]",
    ];
    all.extend_from_slice(service);
    lines(&all)
}

/// A valid workload (lines 1-7) followed by `extra` (line 8 on).
fn workload(extra: &[&str]) -> String {
    let mut service = vec!["kind = \"constant\"", "value = \"5ms\""];
    service.extend_from_slice(extra);
    workload_service(&service)
}

/// Loads `text` as the policy file `p.toml`; the error as it is displayed.
pub(crate) fn load_policy(text: &str) -> Result<PolicySpec, String> {
    PolicySpec::load(&Document::new("p.toml", text), "p", &[]).map_err(|e| e.to_string())
}

fn load_workload(text: &str) -> Result<WorkloadSpec, String> {
    WorkloadSpec::load(&Document::new("w.toml", text), "w", &[]).map_err(|e| e.to_string())
}

/// Runs every case and reports all mismatches at once.
pub(crate) fn check<T>(cases: &[(&str, String, &str)], load: impl Fn(&str) -> Result<T, String>) {
    let mut failures = Vec::new();
    for (what, text, expected) in cases {
        match load(text) {
            Ok(_) => failures.push(format!("{what}: loaded without error\n{text}")),
            Err(got) if got != *expected => failures.push(format!(
                "{what}:\n  expected: {expected}\n  got:      {got}\n{text}"
            )),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_bases_are_valid() {
    load_policy(&policy(&[])).unwrap();
    load_workload(&workload(&[])).unwrap();
}

#[test]
fn syntax_errors() {
    let cases = [
        (
            "value missing",
            lines(&["name =", "[resize]", "kind = \"threshold\""]),
            "p.toml:1:7: invalid TOML: string values must be quoted, expected literal string",
        ),
        (
            "unclosed table header",
            lines(&["name = \"p\"", "[size", "min = 2"]),
            "p.toml:2:6: invalid TOML: unclosed table, expected `]`",
        ),
        (
            "key given twice",
            lines(&["[resize]", "kind = \"threshold\"", "kind = \"fixed\""]),
            "p.toml:3:1: invalid TOML: duplicate key `kind`",
        ),
        (
            "table given twice",
            lines(&["[resize]", "kind = \"threshold\"", "[resize]", "step = 1"]),
            "p.toml:3:2: invalid TOML: duplicate key `resize`",
        ),
        (
            "unquoted duration",
            policy(&["interval = 30s"]),
            "p.toml:7:12: invalid TOML: string values must be quoted, expected literal string",
        ),
    ];
    check(&cases, load_policy);
}

#[test]
fn policy_key_errors() {
    let cases = [
        (
            "unknown top-level key",
            lines(&["colour = 1", "[resize]", "kind = \"threshold\""]),
            "p.toml:1:1: key `colour`: unknown field `colour`, expected one of `name`, `description`, `size`, `resize`, `acquire_timeout`, `queue`, `connections`, `validation`, `health_check`, `create_backoff`",
        ),
        (
            "unknown nested key",
            policy(&["scale_upp = 0.9"]),
            "p.toml:7:1: key `resize.scale_upp`: unknown field `scale_upp`, expected one of `kind`, `interval`, `scale_up`, `scale_down`, `step`, `step_up`, `step_down`, `signal`, `waiters_above`, `oldest_wait_above`, `up_cooldown`, `down_cooldown`, `down_consecutive_checks`, `reserve_size`, `reserve_timeout`, `backoff_ratio`, `timeout`, `smoothing`, `probe_multiplier`, `tolerance`, `probe_interval`, `queue_size`, `long_window`, `window`, `window_min_samples`, `min_rtt`, `percentile`, `min_rtt_interval`, `jitter`, `request_count`, `min_concurrency`, `buffer`, `max_overflow`, `seed`",
        ),
        (
            "unknown nested table",
            policy(&["[resize.extra]", "a = 1"]),
            "p.toml:7:9: key `resize.extra`: unknown field `extra`, expected one of `kind`, `interval`, `scale_up`, `scale_down`, `step`, `step_up`, `step_down`, `signal`, `waiters_above`, `oldest_wait_above`, `up_cooldown`, `down_cooldown`, `down_consecutive_checks`, `reserve_size`, `reserve_timeout`, `backoff_ratio`, `timeout`, `smoothing`, `probe_multiplier`, `tolerance`, `probe_interval`, `queue_size`, `long_window`, `window`, `window_min_samples`, `min_rtt`, `percentile`, `min_rtt_interval`, `jitter`, `request_count`, `min_concurrency`, `buffer`, `max_overflow`, `seed`",
        ),
        (
            "unknown key in acquire_timeout",
            policy(&["[acquire_timeout]", "medium = \"5s\""]),
            "p.toml:8:1: key `acquire_timeout.medium`: unknown field `medium`, expected one of `high`, `normal`, `low`",
        ),
        (
            "string for a count",
            lines(&["[size]", "min = \"two\"", "[resize]", "kind = \"threshold\""]),
            "p.toml:2:1: key `size.min`: invalid type: string \"two\", expected a whole number from 0 to 4294967295",
        ),
        (
            "negative count",
            lines(&["[size]", "min = -1", "[resize]", "kind = \"threshold\""]),
            "p.toml:2:1: key `size.min`: invalid value: integer `-1`, expected a whole number from 0 to 4294967295",
        ),
        (
            "fractional count",
            lines(&["[size]", "min = 2.5", "[resize]", "kind = \"threshold\""]),
            "p.toml:2:1: key `size.min`: invalid type: floating point `2.5`, expected a whole number from 0 to 4294967295",
        ),
        (
            "count out of range",
            lines(&["[resize]", "kind = \"threshold\"", "[size]", "max = 5000000000"]),
            "p.toml:4:1: key `size.max`: invalid value: integer `5000000000`, expected a whole number from 0 to 4294967295",
        ),
        (
            "string for a fraction",
            policy(&["scale_up = \"0.9\""]),
            "p.toml:7:1: key `resize.scale_up`: invalid type: string \"0.9\", expected a number",
        ),
        (
            "number for a table",
            lines(&["resize = 5"]),
            "p.toml:1:1: key `resize`: invalid type: integer `5`, expected a table",
        ),
        (
            "unknown resize kind",
            lines(&["[resize]", "kind = \"elastic\""]),
            "p.toml:2:1: key `resize.kind`: unknown variant `elastic`, expected one of `threshold`, `fixed`, `demand`, `reserve`, `aimd`, `vegas`, `gradient`, `gradient2`, `envoy`, `flexy`",
        ),
        (
            "unknown signal",
            policy(&["signal = \"mean\""]),
            "p.toml:7:1: key `resize.signal`: unknown variant `mean`, expected one of `instant`, `window_mean`, `waiters`, `oldest_wait`",
        ),
        (
            "missing [resize]",
            lines(&["[size]", "min = 2"]),
            "p.toml: key `resize`: required key is missing",
        ),
        ("empty file", String::new(), "p.toml: key `resize`: required key is missing"),
        (
            "missing resize.kind points at [resize]",
            lines(&["name = \"p\"", "[resize]", "interval = \"30s\""]),
            "p.toml:2:2: key `resize.kind`: required key is missing",
        ),
        (
            "empty name",
            lines(&["name = \"\"", "[resize]", "kind = \"threshold\""]),
            "p.toml:1:1: key `name`: expected a non-empty name",
        ),
    ];
    check(&cases, load_policy);
}

#[test]
fn policy_value_errors() {
    let fixed = |extra: &[&str]| {
        let mut all = vec![
            "[size]",
            "min = 10",
            "max = 10",
            "[resize]",
            "kind = \"fixed\"",
        ];
        all.extend_from_slice(extra);
        lines(&all)
    };
    let cases = [
        (
            "size.min > size.max",
            lines(&["[size]", "min = 20", "max = 10", "[resize]", "kind = \"threshold\""]),
            "p.toml:2:1: key `size.min`: expected size.min <= size.max, got min 20 > max 10",
        ),
        (
            "size.max = 0",
            lines(&["[size]", "min = 0", "max = 0", "[resize]", "kind = \"threshold\""]),
            "p.toml:3:1: key `size.max`: expected at least 1 connection, got 0",
        ),
        (
            "size.initial above max",
            lines(&["[size]", "max = 10", "initial = 11", "[resize]", "kind = \"threshold\""]),
            "p.toml:3:1: key `size.initial`: expected a value in [size.min, size.max] = [2, 10], got 11",
        ),
        (
            "size.initial below min",
            lines(&["[size]", "min = 2", "initial = 1", "[resize]", "kind = \"threshold\""]),
            "p.toml:3:1: key `size.initial`: expected a value in [size.min, size.max] = [2, 25], got 1",
        ),
        (
            "scale_up above 1",
            policy(&["scale_up = 1.5"]),
            "p.toml:7:1: key `resize.scale_up`: expected a utilization fraction in [0, 1], got 1.5",
        ),
        (
            "scale_up NaN",
            policy(&["scale_up = nan"]),
            "p.toml:7:1: key `resize.scale_up`: expected a utilization fraction in [0, 1], got NaN",
        ),
        (
            "scale_down below 0",
            policy(&["scale_down = -0.1"]),
            "p.toml:7:1: key `resize.scale_down`: expected a utilization fraction in [0, 1], got -0.1",
        ),
        (
            "scale_down == scale_up",
            policy(&["scale_up = 0.5", "scale_down = 0.5"]),
            "p.toml:8:1: key `resize.scale_down`: expected scale_down < scale_up (a band in which the pool holds), got scale_down 0.5 >= scale_up 0.5",
        ),
        (
            "scale_down > default scale_up",
            policy(&["scale_down = 0.9"]),
            "p.toml:7:1: key `resize.scale_down`: expected scale_down < scale_up (a band in which the pool holds), got scale_down 0.9 >= scale_up 0.8",
        ),
        (
            "zero step",
            policy(&["step = 0"]),
            "p.toml:7:1: key `resize.step`: expected at least 1 connection per step, got 0",
        ),
        (
            "zero interval",
            policy(&["interval = \"0s\""]),
            "p.toml:7:1: key `resize.interval`: expected a positive duration, got 0s",
        ),
        (
            "negative interval",
            policy(&["interval = \"-1s\""]),
            "p.toml:7:1: key `resize.interval`: expected a duration such as \"2.5s\", \"250ms\", \"30s\", \"10m\" or \"1h\" (units ns, us, ms, s, m, h), got \"-1s\"",
        ),
        (
            "unknown unit",
            policy(&["interval = \"5 sec\""]),
            "p.toml:7:1: key `resize.interval`: expected a duration such as \"2.5s\", \"250ms\", \"30s\", \"10m\" or \"1h\" (units ns, us, ms, s, m, h), got \"5 sec\"",
        ),
        (
            "empty duration",
            policy(&["interval = \"\""]),
            "p.toml:7:1: key `resize.interval`: expected a duration such as \"2.5s\", \"250ms\", \"30s\", \"10m\" or \"1h\" (units ns, us, ms, s, m, h), got \"\"",
        ),
        (
            "bare number for a duration",
            policy(&["interval = 5"]),
            "p.toml:7:1: key `resize.interval`: invalid type: integer `5`, expected a duration as a string with a unit, such as \"2.5s\" or \"250ms\"",
        ),
        (
            "zero acquire timeout",
            policy(&["[acquire_timeout]", "low = \"0s\""]),
            "p.toml:8:1: key `acquire_timeout.low`: expected a positive duration or \"none\", got 0s",
        ),
        (
            "malformed acquire timeout mentions none",
            policy(&["[acquire_timeout]", "low = \"never\""]),
            "p.toml:8:1: key `acquire_timeout.low`: expected a duration such as \"2.5s\", \"250ms\", \"30s\", \"10m\" or \"1h\" (units ns, us, ms, s, m, h) or \"none\", got \"never\"",
        ),
        (
            "bare number for an acquire timeout",
            policy(&["[acquire_timeout]", "high = 5"]),
            "p.toml:8:1: key `acquire_timeout.high`: invalid type: integer `5`, expected a duration as a string with a unit, such as \"2.5s\" or \"250ms\"",
        ),
        (
            "zero max_waiters",
            policy(&["[queue]", "max_waiters = 0"]),
            "p.toml:8:1: key `queue.max_waiters`: expected at least 1, got 0",
        ),
        (
            "fixed with min != max",
            lines(&["[size]", "min = 5", "max = 10", "[resize]", "kind = \"fixed\""]),
            "p.toml:2:1: key `size.min`: resize.kind = \"fixed\" needs size.min == size.max (the pool's one size), got min 5 and max 10",
        ),
        (
            "fixed with default sizes",
            lines(&["[resize]", "kind = \"fixed\""]),
            "p.toml: key `size.min`: resize.kind = \"fixed\" needs size.min == size.max (the pool's one size), got min 2 and max 25",
        ),
        (
            "fixed with scale_up",
            fixed(&["scale_up = 0.9"]),
            "p.toml:6:1: key `resize.scale_up`: only applies to resize.kind = \"threshold\"; a fixed pool never resizes",
        ),
        (
            "fixed with interval",
            fixed(&["interval = \"30s\""]),
            "p.toml:6:1: key `resize.interval`: only applies to resize.kind = \"threshold\", \"reserve\" or \"envoy\"; a fixed pool never resizes",
        ),
        (
            "fixed with signal",
            fixed(&["signal = \"instant\""]),
            "p.toml:6:1: key `resize.signal`: only applies to resize.kind = \"threshold\"; a fixed pool never resizes",
        ),
        (
            "fixed with initial below the size",
            lines(&["[size]", "min = 10", "max = 10", "initial = 5", "[resize]", "kind = \"fixed\""]),
            "p.toml:4:1: key `size.initial`: expected a value in [size.min, size.max] = [10, 10], got 5",
        ),
        (
            "inline table points at the key inside it",
            lines(&["resize = { kind = \"threshold\", scale_up = 2.0 }"]),
            "p.toml:1:32: key `resize.scale_up`: expected a utilization fraction in [0, 1], got 2",
        ),
        (
            "dotted key points at its last segment",
            lines(&["resize.kind = \"threshold\"", "resize.step = 0"]),
            "p.toml:2:8: key `resize.step`: expected at least 1 connection per step, got 0",
        ),
    ];
    check(&cases, load_policy);
}

#[test]
fn accepted_policy_values() {
    let p = load_policy(&policy(&[
        "[acquire_timeout]",
        "high = \"none\"",
        "low = \"2.5s\"",
    ]))
    .unwrap();
    assert_eq!(
        p.pool.acquire_timeout,
        [
            SimDuration::INFINITE,
            SimDuration::from_secs(30),
            SimDuration(2_500_000_000)
        ]
    );
    assert_eq!(p.effective["acquire_timeout"]["high"], "none");
    let fixed = load_policy(&lines(&[
        "[size]",
        "min = 7",
        "max = 7",
        "[resize]",
        "kind = \"fixed\"",
    ]))
    .unwrap();
    assert_eq!(
        (fixed.pool.min, fixed.pool.initial, fixed.pool.max),
        (7, 7, 7)
    );
    assert_eq!(
        fixed.name, "p",
        "the default name is the one passed in (the file stem)"
    );
}

#[test]
fn workload_errors() {
    let cases = [
        (
            "zero rate",
            workload(&[]).replace("10.0", "0.0"),
            "w.toml:4:1: key `arrivals.rate_per_s`: expected a positive rate in requests per second, got 0",
        ),
        (
            "negative rate",
            workload(&[]).replace("10.0", "-5.0"),
            "w.toml:4:1: key `arrivals.rate_per_s`: expected a positive rate in requests per second, got -5",
        ),
        (
            "infinite rate",
            workload(&[]).replace("10.0", "inf"),
            "w.toml:4:1: key `arrivals.rate_per_s`: expected a positive rate in requests per second, got inf",
        ),
        (
            "unknown arrival kind",
            workload(&[]).replace("poisson", "bursty"),
            "w.toml:3:1: key `arrivals.kind`: unknown variant `bursty`, expected one of `poisson`, `piecewise`, `steps`, `diurnal`, `mmpp`, `flash_crowd`, `closed_loop`, `trace`",
        ),
        (
            "missing rate",
            workload(&[]).replace("rate_per_s = 10.0", "rate = 10.0"),
            "w.toml:4:1: key `arrivals.rate`: unknown field `rate`, expected one of `kind`, `rate_per_s`, `points`, `steps`, `period`, `amplitude`, `peak_at`, `rate_on`, `rate_off`, `mean_on`, `mean_off`, `spikes`, `clients`, `think`, `path`, `format`, `prefix`, `skip_bad`, `rules`, `start`, `end`, `speed`, `load`, `time_field`, `time_unit`, `year`, `pgbench_arrival`, `inputs`",
        ),
        (
            "neither duration nor requests",
            workload(&[]).replace("duration = \"1m\"\n", ""),
            "w.toml: key `duration`: expected `duration` (e.g. \"10m\") or `requests` (a count), or both: the trace must end",
        ),
        (
            "zero requests",
            workload(&[]).replace("duration = \"1m\"", "requests = 0"),
            "w.toml:1:1: key `requests`: expected at least 1 request, got 0",
        ),
        (
            "zero duration",
            workload(&[]).replace("\"1m\"", "\"0s\""),
            "w.toml:1:1: key `duration`: expected a positive duration, got 0s",
        ),
        (
            "bare number for duration",
            workload(&[]).replace("\"1m\"", "60"),
            "w.toml:1:1: key `duration`: invalid type: integer `60`, expected a duration as a string with a unit, such as \"2.5s\" or \"250ms\"",
        ),
        (
            "priority_mix does not sum to 1",
            workload(&["[priority_mix]", "high = 0.5", "normal = 0.6"]),
            "w.toml:8:2: key `priority_mix`: expected high + normal + low = 1, got 0.5 + 0.6 + 0 = 1.1",
        ),
        (
            "priority fraction above 1",
            workload(&["[priority_mix]", "high = 1.5", "normal = -0.5"]),
            "w.toml:9:1: key `priority_mix.high`: expected a fraction in [0, 1], got 1.5",
        ),
        (
            "priority fraction below 0",
            workload(&["[priority_mix]", "normal = 1.5", "low = -0.5"]),
            "w.toml:9:1: key `priority_mix.normal`: expected a fraction in [0, 1], got 1.5",
        ),
        (
            "unknown priority",
            workload(&["[priority_mix]", "high = 0.2", "normal = 0.8", "urgent = 0.0"]),
            "w.toml:11:1: key `priority_mix.urgent`: unknown field `urgent`, expected one of `high`, `normal`, `low`",
        ),
        (
            "write_fraction above 1",
            workload(&[]).replace("duration = \"1m\"", "duration = \"1m\"\nwrite_fraction = 2.0"),
            "w.toml:2:1: key `write_fraction`: expected a fraction in [0, 1], got 2",
        ),
        (
            "zero max_connections",
            workload(&["[database]", "max_connections = 0"]),
            "w.toml:9:1: key `database.max_connections`: expected at least 1, got 0",
        ),
        (
            "negative usl_sigma",
            workload(&["[database]", "usl_sigma = -0.1"]),
            "w.toml:9:1: key `database.usl_sigma`: expected a finite coefficient >= 0, got -0.1",
        ),
        (
            "negative usl_kappa",
            workload(&["[database]", "usl_sigma = 0.1", "usl_kappa = -0.1"]),
            "w.toml:10:1: key `database.usl_kappa`: expected a finite coefficient >= 0, got -0.1",
        ),
        (
            "zero max_events",
            workload(&["[run]", "max_events = 0"]),
            "w.toml:9:1: key `run.max_events`: expected at least 1, got 0",
        ),
        (
            "negative max_events",
            workload(&["[run]", "max_events = -1"]),
            "w.toml:9:1: key `run.max_events`: invalid value: integer `-1`, expected a whole number >= 0",
        ),
        (
            "zero sample_interval",
            workload(&["[run]", "sample_interval = \"0s\""]),
            "w.toml:9:1: key `run.sample_interval`: expected a positive duration or \"none\", got 0s",
        ),
        (
            "zero max_sim_time",
            workload(&["[run]", "max_sim_time = \"0s\""]),
            "w.toml:9:1: key `run.max_sim_time`: expected a positive duration, got 0s",
        ),
        (
            "days are not a unit",
            workload(&["[run]", "max_sim_time = \"30d\""]),
            "w.toml:9:1: key `run.max_sim_time`: expected a duration such as \"2.5s\", \"250ms\", \"30s\", \"10m\" or \"1h\" (units ns, us, ms, s, m, h), got \"30d\"",
        ),
        (
            "string for a boolean",
            workload(&["[run]", "drain = \"yes\""]),
            "w.toml:9:1: key `run.drain`: invalid type: string \"yes\", expected a boolean",
        ),
        ("empty file", String::new(), "w.toml: key `arrivals`: required key is missing"),
    ];
    check(&cases, load_workload);
}

#[test]
fn distribution_errors() {
    let cases = [
        (
            "lognormal p99 equal to the median",
            workload_service(&["kind = \"lognormal\"", "median = \"8ms\"", "p99 = \"8ms\""]),
            "w.toml:8:1: key `service.p99`: expected p99 above the median (8ms), got 8ms",
        ),
        (
            "lognormal p99 below the median",
            workload_service(&["kind = \"lognormal\"", "median = \"8ms\"", "p99 = \"2ms\""]),
            "w.toml:8:1: key `service.p99`: expected p99 above the median (8ms), got 2ms",
        ),
        (
            "lognormal with both p99 and sigma",
            workload_service(&["kind = \"lognormal\"", "median = \"8ms\"", "p99 = \"40ms\"", "sigma = 0.5"]),
            "w.toml:9:1: key `service.sigma`: give either p99 or sigma, not both",
        ),
        (
            "lognormal with neither p99 nor sigma points at the table",
            workload_service(&["kind = \"lognormal\"", "median = \"8ms\""]),
            "w.toml:5:2: key `service.p99`: kind = \"lognormal\" needs `p99` (a duration) or `sigma` (of ln x) besides `median`",
        ),
        (
            "lognormal without median",
            workload_service(&["kind = \"lognormal\"", "p99 = \"8ms\""]),
            "w.toml:5:2: key `service.median`: kind = \"lognormal\" needs `median` (a duration such as \"10ms\")",
        ),
        (
            "lognormal zero median",
            workload_service(&["kind = \"lognormal\"", "median = \"0s\"", "sigma = 0.5"]),
            "w.toml:7:1: key `service.median`: expected a positive duration, got 0s",
        ),
        (
            "lognormal zero sigma",
            workload_service(&["kind = \"lognormal\"", "median = \"8ms\"", "sigma = 0.0"]),
            "w.toml:8:1: key `service.sigma`: expected a standard deviation of ln(x) in (0, 10], got 0",
        ),
        (
            "exponential mean 0",
            workload_service(&["kind = \"exponential\"", "mean = \"0s\""]),
            "w.toml:7:1: key `service.mean`: expected a positive duration, got 0s",
        ),
        (
            "exponential without mean",
            workload_service(&["kind = \"exponential\""]),
            "w.toml:5:2: key `service.mean`: kind = \"exponential\" needs `mean` (a duration such as \"10ms\")",
        ),
        (
            "uniform min > max",
            workload_service(&["kind = \"uniform\"", "min = \"10ms\"", "max = \"5ms\""]),
            "w.toml:7:1: key `service.min`: expected min <= max, got min 10ms > max 5ms",
        ),
        (
            "uniform without max",
            workload_service(&["kind = \"uniform\"", "min = \"10ms\""]),
            "w.toml:5:2: key `service.max`: kind = \"uniform\" needs `max` (a duration such as \"10ms\")",
        ),
        (
            "constant without value",
            workload_service(&["kind = \"constant\""]),
            "w.toml:5:2: key `service.value`: kind = \"constant\" needs `value` (a duration such as \"10ms\")",
        ),
        (
            "a key of another kind",
            workload_service(&["kind = \"constant\"", "value = \"5ms\"", "mean = \"5ms\""]),
            "w.toml:8:1: key `service.mean`: does not apply to kind = \"constant\" (it takes: value)",
        ),
        (
            "sigma for exponential",
            workload_service(&["kind = \"exponential\"", "mean = \"5ms\"", "sigma = 0.5"]),
            "w.toml:8:1: key `service.sigma`: does not apply to kind = \"exponential\" (it takes: mean)",
        ),
        (
            "unknown kind",
            workload_service(&["kind = \"weibull\"", "value = \"5ms\""]),
            "w.toml:6:1: key `service.kind`: unknown variant `weibull`, expected one of `constant`, `exponential`, `lognormal`, `uniform`, `pareto`, `empirical`",
        ),
        (
            "missing kind points at the table",
            workload_service(&["value = \"5ms\""]),
            "w.toml:5:2: key `service.kind`: required key is missing",
        ),
        (
            "malformed duration in a distribution",
            workload_service(&["kind = \"constant\"", "value = \"5 sec\""]),
            "w.toml:7:1: key `service.value`: expected a duration such as \"2.5s\", \"250ms\", \"30s\", \"10m\" or \"1h\" (units ns, us, ms, s, m, h), got \"5 sec\"",
        ),
    ];
    check(&cases, load_workload);
}

#[test]
fn errors_inside_inline_tables_point_at_the_key_in_the_line() {
    // Line 9 is `connect_latency = { ... }`: each error names line 9 and the
    // column of the offending key inside the braces.
    let latency = |table: &str| workload(&["[database]", &format!("connect_latency = {table}")]);
    let cases = [
        (
            "zero median",
            latency("{ kind = \"lognormal\", median = \"0ms\", p99 = \"5ms\" }"),
            "w.toml:9:41: key `database.connect_latency.median`: expected a positive duration, got 0s",
        ),
        (
            "p99 not above the median",
            latency("{ kind = \"lognormal\", median = \"5ms\", p99 = \"5ms\" }"),
            "w.toml:9:57: key `database.connect_latency.p99`: expected p99 above the median (5ms), got 5ms",
        ),
        (
            "unknown key",
            latency("{ kind = \"lognormal\", median = \"5ms\", p99 = \"9ms\", extra = 1 }"),
            "w.toml:9:70: key `database.connect_latency.extra`: unknown field `extra`, expected one of `kind`, `value`, `mean`, `median`, `p99`, `sigma`, `min`, `max`",
        ),
        (
            "a key of another kind",
            latency("{ kind = \"constant\", mean = \"5ms\" }"),
            "w.toml:9:40: key `database.connect_latency.mean`: does not apply to kind = \"constant\" (it takes: value)",
        ),
        (
            "missing parameter points at connect_latency",
            latency("{ kind = \"lognormal\", median = \"5ms\" }"),
            "w.toml:9:1: key `database.connect_latency.p99`: kind = \"lognormal\" needs `p99` (a duration) or `sigma` (of ln x) besides `median`",
        ),
        (
            "missing kind points at connect_latency",
            latency("{ value = \"5ms\" }"),
            "w.toml:9:1: key `database.connect_latency.kind`: required key is missing",
        ),
        (
            "malformed duration",
            latency("{ kind = \"constant\", value = -1 }"),
            "w.toml:9:40: key `database.connect_latency.value`: invalid type: integer `-1`, expected a duration as a string with a unit, such as \"2.5s\" or \"250ms\"",
        ),
    ];
    check(&cases, load_workload);
}

#[test]
fn accepted_workload_values() {
    let w = load_workload(&workload(&["[run]", "sample_interval = \"none\""])).unwrap();
    assert_eq!(w.run.sample_interval, None);
    // An integer rate is a number too; requests alone end the trace.
    let w = load_workload(
        &workload(&[])
            .replace("10.0", "10")
            .replace("duration = \"1m\"", "requests = 5"),
    )
    .unwrap();
    assert_eq!(w.synthetic.rate_per_s, 10.0);
    assert_eq!(w.synthetic.max_requests, Some(5));
}

/// A merged-trace workload (lines 1-9: two inputs, the committed csvlog
/// and pgbench samples) followed by `extra` (line 10 on, inside the second
/// input unless it opens a table).
fn merged(extra: &[&str]) -> String {
    let mut all = vec![
        "[arrivals]",
        "kind = \"trace\"",
        "[[arrivals.inputs]]",
        "path = \"tests/data/rate50.csv.gz\"",
        "format = \"csvlog\"",
        "priority = \"high\"",
        "[[arrivals.inputs]]",
        "path = \"tests/data/pgbench.closed.20746\"",
        "priority = \"low\"",
    ];
    all.extend_from_slice(extra);
    lines(&all)
}

#[test]
fn merged_trace_errors() {
    let cases = [
        (
            "path and inputs",
            merged(&[]).replace("kind = \"trace\"", "kind = \"trace\"\npath = \"tests/data/rate50.csv.gz\""),
            "w.toml:4:12: key `arrivals.inputs`: give either `path` (one trace) or `inputs` (several traces, merged), not both",
        ),
        (
            "neither path nor inputs",
            lines(&["[arrivals]", "kind = \"trace\""]),
            "w.toml:1:2: key `arrivals.path`: kind = \"trace\" needs `path` (a trace file: canonical, or any log `pooltune trace import` reads), or `inputs` (several, merged: [[arrivals.inputs]] tables with a `path` each)",
        ),
        (
            "empty inputs",
            lines(&["[arrivals]", "kind = \"trace\"", "inputs = []"]),
            "w.toml:3:1: key `arrivals.inputs`: expected at least one [[arrivals.inputs]] entry with a `path`",
        ),
        (
            "an input without path",
            merged(&[]).replace("path = \"tests/data/pgbench.closed.20746\"\n", ""),
            "w.toml:8:1: key `arrivals.inputs[1].path`: each input needs `path` (a trace file: canonical, or any log `pooltune trace import` reads)",
        ),
        (
            "an input that does not exist",
            merged(&[]).replace("pgbench.closed.20746", "no-such-log"),
            "w.toml:8:1: key `arrivals.inputs[1].path`: trace tests/data/no-such-log: cannot read: No such file or directory (os error 2)",
        ),
        (
            "an input that does not parse names its file and line",
            merged(&["format = \"csvlog\""]),
            "w.toml:8:1: key `arrivals.inputs[1].path`: trace tests/data/pgbench.closed.20746:1:1: field `log_time`: expected 23 (PostgreSQL 12 and older), 24 (13) or 26 (14-17) csvlog columns, got 1 (truncated line?) (is this a csvlog file? give --format)",
        ),
        (
            "an input with an unknown format",
            merged(&["format = \"mysql\""]),
            "w.toml:10:1: key `arrivals.inputs[1].format`: unknown trace format `mysql` (known: auto, canonical, csvlog, jsonlog, cnpg, cloudsql, stderr, syslog, pgbench, otlp, arrivals)",
        ),
        (
            "an input with a bad time unit",
            merged(&["time_unit = \"days\""]),
            "w.toml:10:1: key `arrivals.inputs[1].time_unit`: expected s, ms, us or ns, got \"days\"",
        ),
        (
            "an input with a bad pgbench_arrival",
            merged(&["pgbench_arrival = \"late\""]),
            "w.toml:10:1: key `arrivals.inputs[1].pgbench_arrival`: expected \"scheduled\" or \"sent\", got \"late\"",
        ),
        (
            "an input whose rules file does not exist",
            merged(&["rules = \"tests/data/no-rules.toml\""]),
            "w.toml:10:1: key `arrivals.inputs[1].rules`: trace tests/data/no-rules.toml: cannot read: No such file or directory (os error 2)",
        ),
        (
            "unknown priority",
            merged(&[]).replace("\"low\"", "\"urgent\""),
            "w.toml:9:1: key `arrivals.inputs[1].priority`: expected \"high\", \"normal\" or \"low\", got \"urgent\"",
        ),
        (
            "zero load",
            merged(&["load = 0.0"]),
            "w.toml:10:1: key `arrivals.inputs[1].load`: expected a factor in (0, 1000], got 0",
        ),
        (
            "start_at without a unit",
            merged(&["start_at = 30"]),
            "w.toml:10:1: key `arrivals.inputs[1].start_at`: invalid type: integer `30`, expected a duration as a string with a unit, such as \"2.5s\" or \"250ms\"",
        ),
        (
            "unknown key in an input",
            merged(&["offset = \"30s\""]),
            "w.toml:10:1: key `arrivals.inputs[1].offset`: unknown field `offset`, expected one of `path`, `format`, `prefix`, `rules`, `time_field`, `time_unit`, `year`, `pgbench_arrival`, `start_at`, `load`, `priority`",
        ),
        (
            "a per-input key at the top",
            merged(&[]).replace("kind = \"trace\"", "kind = \"trace\"\nrules = \"r.toml\""),
            "w.toml:3:1: key `arrivals.rules`: applies to a single `path`: with `inputs`, give `rules` in each [[arrivals.inputs]] entry it concerns",
        ),
        (
            "inputs under another kind",
            workload(&[]).replace("rate_per_s = 10.0", "rate_per_s = 10.0\ninputs = []"),
            "w.toml:5:1: key `arrivals.inputs`: does not apply to kind = \"poisson\" (it takes: rate_per_s)",
        ),
    ];
    check(&cases, load_workload);
}

/// Loads the shipped seed policy and default workload with `--set` arguments,
/// as the CLI does.
fn with_sets(sets: &[&str]) -> Result<(), String> {
    let overrides = sets
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let split = scenario::split_overrides(&overrides).map_err(|e| e.to_string())?;
    scenario::load_workload("default", &split.workload).map_err(|e| e.to_string())?;
    scenario::load_policy("seed-80-30", &split.policy).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn set_errors() {
    let p = "policies/seed-80-30.toml (built-in)";
    let w = "traces/default.toml (built-in)";
    let unknown = "unknown key `colour`: policy keys start with name, description, size, resize, acquire_timeout, queue, connections, validation, health_check, create_backoff; workload keys with duration, requests, arrivals, service, priority_mix, write_fraction, database, app, faults, run (or prefix with `policy.` / `trace.`)";
    let cases: Vec<(&str, String, String)> = vec![
        ("no =", "novalue".into(), "--set novalue: expected key=value, e.g. resize.scale_up=0.7".into()),
        ("empty key", "=1".into(), "--set =1: the key before `=` is empty".into()),
        (
            "empty segment",
            "a..b=1".into(),
            "--set a..b=1: the key has an empty segment (two dots, or a leading/trailing dot)".into(),
        ),
        ("bare prefix", "policy=1".into(), "--set policy=1: `policy.` must be followed by a key".into()),
        ("unknown top-level key", "colour=red".into(), format!("--set colour=red: {unknown}")),
        (
            "key below a value",
            "name.x=1".into(),
            "--set name.x=1: `name` is a value, not a table, so it has no key below it".into(),
        ),
        (
            "unknown nested key",
            "resize.scale_upp=0.9".into(),
            format!("{p} (overridden by --set resize.scale_upp=0.9): key `resize.scale_upp`: unknown field `scale_upp`, expected one of `kind`, `interval`, `scale_up`, `scale_down`, `step`, `step_up`, `step_down`, `signal`, `waiters_above`, `oldest_wait_above`, `up_cooldown`, `down_cooldown`, `down_consecutive_checks`, `reserve_size`, `reserve_timeout`, `backoff_ratio`, `timeout`, `smoothing`, `probe_multiplier`, `tolerance`, `probe_interval`, `queue_size`, `long_window`, `window`, `window_min_samples`, `min_rtt`, `percentile`, `min_rtt_interval`, `jitter`, `request_count`, `min_concurrency`, `buffer`, `max_overflow`, `seed`"),
        ),
        (
            "out of range",
            "resize.scale_up=2".into(),
            format!("{p} (overridden by --set resize.scale_up=2): key `resize.scale_up`: expected a utilization fraction in [0, 1], got 2"),
        ),
        (
            "zero size",
            "size.max=0".into(),
            format!("{p} (overridden by --set size.max=0): key `size.max`: expected at least 1 connection, got 0"),
        ),
        (
            "override breaks a constraint with a key in the file",
            "size.max=1".into(),
            format!("{p} (overridden by --set size.max=1): key `size.min`: expected size.min <= size.max, got min 2 > max 1"),
        ),
        (
            "scale_up below the file's scale_down",
            "resize.scale_up=0.2".into(),
            format!("{p} (overridden by --set resize.scale_up=0.2): key `resize.scale_down`: expected scale_down < scale_up (a band in which the pool holds), got scale_down 0.3 >= scale_up 0.2"),
        ),
        (
            "kind switched under threshold-only keys",
            "resize.kind=fixed".into(),
            format!("{p} (overridden by --set resize.kind=fixed): key `resize.interval`: only applies to resize.kind = \"threshold\", \"reserve\" or \"envoy\"; a fixed pool never resizes"),
        ),
        (
            "bare number for a duration",
            "resize.interval=30".into(),
            format!("{p} (overridden by --set resize.interval=30): key `resize.interval`: invalid type: integer `30`, expected a duration as a string with a unit, such as \"2.5s\" or \"250ms\""),
        ),
        (
            "explicit trace prefix",
            "trace.requests=0".into(),
            format!("{w} (overridden by --set trace.requests=0): key `requests`: expected at least 1 request, got 0"),
        ),
        (
            "run limit",
            "run.max_events=0".into(),
            format!("{w} (overridden by --set run.max_events=0): key `run.max_events`: expected at least 1, got 0"),
        ),
        (
            "sample interval",
            "run.sample_interval=0s".into(),
            format!("{w} (overridden by --set run.sample_interval=0s): key `run.sample_interval`: expected a positive duration or \"none\", got 0s"),
        ),
        (
            "negative rate",
            "arrivals.rate_per_s=-1".into(),
            format!("{w} (overridden by --set arrivals.rate_per_s=-1): key `arrivals.rate_per_s`: expected a positive rate in requests per second, got -1"),
        ),
        (
            "priority mix no longer sums to 1",
            "priority_mix.high=0.5".into(),
            format!("{w} (overridden by --set priority_mix.high=0.5): key `priority_mix`: expected high + normal + low = 1, got 0.5 + 0.7 + 0.2 = 1.4"),
        ),
        (
            "distribution kind switched under the file's parameters",
            "service.kind=exponential".into(),
            format!("{w} (overridden by --set service.kind=exponential): key `service.median`: does not apply to kind = \"exponential\" (it takes: mean)"),
        ),
        (
            "unknown workload key",
            "database.max_conn=5".into(),
            format!("{w} (overridden by --set database.max_conn=5): key `database.max_conn`: unknown field `max_conn`, expected one of `connect`, `connect_latency`, `query_overhead`, `refusal_latency`, `max_connections`, `usl_sigma`, `usl_kappa`"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, set, expected) in &cases {
        match with_sets(&[set]) {
            Ok(()) => failures.push(format!("{what}: --set {set} was accepted")),
            Err(got) if got != *expected => failures.push(format!(
                "{what}:\n  expected: {expected}\n  got:      {got}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn accepted_sets() {
    // A value that is not TOML is a string, so units need no quotes; later
    // overrides of the same key win; `policy.`/`trace.` prefixes route explicitly.
    with_sets(&[
        "acquire_timeout.low=none",
        "resize.interval=10s",
        "trace.duration=20s",
        "policy.resize.scale_up=0.9",
        "resize.scale_up=0.95",
    ])
    .unwrap();
    let o = Override::parse("resize.scale_up = 0.95").unwrap();
    let split = scenario::split_overrides(&[o]).unwrap();
    let p = scenario::load_policy("seed-80-30", &split.policy).unwrap();
    assert_eq!(p.spec.effective["resize"]["scale_up"], 0.95);
    let o = Override::parse("acquire_timeout.low=none").unwrap();
    let split = scenario::split_overrides(&[o]).unwrap();
    let p = scenario::load_policy("seed-80-30", &split.policy).unwrap();
    assert_eq!(p.spec.pool.acquire_timeout[2], SimDuration::INFINITE);
}

#[test]
fn files_are_named_by_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(&path, policy(&["step = 0"])).unwrap();
    let arg = path.to_str().unwrap();
    let e = scenario::load_policy(arg, &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{arg}:7:1: key `resize.step`: expected at least 1 connection per step, got 0")
    );
    // Without a `name`, a policy is named after its file.
    std::fs::write(&path, policy(&[]).replace("name = \"p\"\n", "")).unwrap();
    assert_eq!(scenario::load_policy(arg, &[]).unwrap().spec.name, "mine");

    let wpath = dir.path().join("w.toml");
    std::fs::write(&wpath, workload(&["[run]", "max_events = 0"])).unwrap();
    let warg = wpath.to_str().unwrap();
    let e = scenario::load_workload(warg, &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{warg}:9:1: key `run.max_events`: expected at least 1, got 0")
    );

    let missing = dir.path().join("missing.toml");
    let e = scenario::load_policy(missing.to_str().unwrap(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: cannot read: ", missing.display())),
        "{e}"
    );
    let e = scenario::load_policy("no-such-policy", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "policy `no-such-policy`: no such file, and not a shipped name (shipped: seed-80-30, seed-80-30-low10s, seed-repaired, fixed-10, fixed-25, hikari-fixed, hikari-elastic, pgbouncer-txn, pgbouncer-reserve, bb8-default, sqlx-default, deadpool-default, no-pool, aimd, vegas, gradient, gradient2, envoy-gradient, codel-queue, flexy-overflow, priority-partitions)"
    );
    let e = scenario::load_workload("no-such-trace", &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "trace `no-such-trace`: no such file, and not a shipped name (shipped: default, mmc-c25-a20, mmc-c10-rho09-timeout, mmc-c10-priorities, steady, diurnal-day, flash-crowd, slow-query-storm, closed-loop)"
    );
}

/// Lines that look like policy or workload TOML, to reach validation with
/// random combinations rather than stopping at the parser.
fn toml_line() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "name",
        "kind",
        "min",
        "max",
        "initial",
        "interval",
        "scale_up",
        "scale_down",
        "step",
        "signal",
        "high",
        "normal",
        "low",
        "max_waiters",
        "duration",
        "requests",
        "rate_per_s",
        "value",
        "mean",
        "median",
        "p99",
        "sigma",
        "write_fraction",
        "max_connections",
        "usl_sigma",
        "usl_kappa",
        "max_events",
        "max_sim_time",
        "sample_interval",
        "drain",
        "connect_latency",
    ]);
    let tables = prop::sample::select(vec![
        "[size]",
        "[resize]",
        "[acquire_timeout]",
        "[queue]",
        "[arrivals]",
        "[service]",
        "[priority_mix]",
        "[database]",
        "[run]",
        "[resize.x]",
    ]);
    let values = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        (0u32..30).prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        (-1.0f64..2.0).prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec![
            "\"threshold\"",
            "\"fixed\"",
            "\"poisson\"",
            "\"lognormal\"",
            "\"exponential\"",
            "\"uniform\"",
            "\"constant\"",
            "\"none\"",
            "\"0s\"",
            "\"5ms\"",
            "\"30s\"",
            "\"-1s\"",
            "\"18446744073709551615ns\"",
            "\"1.0000000001s\"",
            "true",
            "\"\"",
            "\"é\"",
            "nan",
            "inf",
            "{ kind = \"lognormal\", median = \"5ms\" }",
            "[1, 2]",
            "{}",
        ])
        .prop_map(str::to_string),
    ];
    prop_oneof![
        3 => (keys, values).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => tables.prop_map(str::to_string),
        1 => "[ -~é\n]{0,20}",
    ]
}

fn assert_names_document(
    result: Result<(), pooltune::error::ConfigError>,
    name: &str,
) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        let text = e.to_string();
        prop_assert!(
            text.contains(name),
            "error does not name {}: {}",
            name,
            text
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_and_errors_name_the_document(text in any::<String>()) {
        assert_names_document(PolicySpec::load(&Document::new("p.toml", text.as_str()), "p", &[]).map(|_| ()), "p.toml")?;
        assert_names_document(WorkloadSpec::load(&Document::new("w.toml", text.as_str()), "w", &[]).map(|_| ()), "w.toml")?;
    }

    #[test]
    fn toml_like_text_never_panics_and_errors_name_the_document(
        lines in prop::collection::vec(toml_line(), 0..14),
    ) {
        let text = lines.join("\n");
        assert_names_document(PolicySpec::load(&Document::new("p.toml", text.as_str()), "p", &[]).map(|_| ()), "p.toml")?;
        assert_names_document(WorkloadSpec::load(&Document::new("w.toml", text.as_str()), "w", &[]).map(|_| ()), "w.toml")?;
    }

    #[test]
    fn arbitrary_overrides_never_panic(
        assignment in prop_oneof![
            any::<String>(),
            (toml_line(), prop::sample::select(vec!["", "resize.", "size.", "run.", "service.", "policy.", "trace.", "database.connect_latency."]))
                .prop_map(|(line, prefix)| format!("{prefix}{}", line.replacen(" = ", "=", 1))),
        ],
    ) {
        // Parsing never panics; a parsed override applied to a valid file
        // either loads or fails with a message naming the file or the --set.
        if let Ok(o) = Override::parse(&assignment) {
            if let Ok(split) = scenario::split_overrides(std::slice::from_ref(&o)) {
                let p = PolicySpec::load(&Document::new("p.toml", policy(&[])), "p", &split.policy);
                let w = WorkloadSpec::load(&Document::new("w.toml", workload(&[])), "w", &split.workload);
                for e in [p.err(), w.err()].into_iter().flatten() {
                    let text = e.to_string();
                    prop_assert!(
                        text.contains("p.toml") || text.contains("w.toml") || text.starts_with("--set "),
                        "{}", text
                    );
                }
            }
        }
    }
}
