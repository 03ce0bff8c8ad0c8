//! Axes of a sweep grid (`--grid`) or a tuning space (`--free`).
//!
//! ```text
//! KEY=A..B:STEP    inclusive range: 0.6..0.95:0.05 (decimals), 5..25:5 or 5..25
//!                  (whole numbers; step 1 by default), 1s..5s:500ms (durations)
//! KEY=V1,V2,...    a list; each value as in --set: 0.7, true, none, 2.5s, "x"
//! K1,K2=SPEC       several keys set together to each value: size.min,size.max=5..25:5
//! ```
//!
//! Keys are policy or workload keys exactly as `--set` takes them (prefix
//! `policy.` or `trace.` to be explicit). Decimal ranges are rounded to the
//! decimals written, so `0.6..0.95:0.05` gives 0.95, not 0.9500000000000001.
//! The grid is the product of its axes, the last axis varying fastest.

use serde_json::Value;

use super::ExperimentError;
use crate::config::{policy, workload, Override};
use crate::time::{parse_duration, SimDuration};

/// Largest number of values one axis may have (a typo guard).
pub const MAX_AXIS_VALUES: usize = 100_000;
/// Largest number of grid points a sweep may have.
pub const MAX_GRID_POINTS: usize = 1_000_000;

/// Which document a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Policy,
    Trace,
}

/// One key of an axis, routed to its document.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisKey {
    pub target: Target,
    /// The key path inside its document (without a `policy.`/`trace.` prefix).
    pub path: Vec<String>,
    /// The key as typed.
    pub typed: String,
}

/// One axis: one or more keys, set together to each of `values`.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// The whole argument as typed, with its flag, for messages:
    /// `--grid resize.scale_up=0.6..0.95:0.05`.
    pub flag: String,
    /// The key part as typed (`resize.scale_up`, `size.min,size.max`): the
    /// axis's name in outputs.
    pub label: String,
    pub keys: Vec<AxisKey>,
    pub values: Vec<toml::Value>,
}

impl Axis {
    /// Parses `KEY=SPEC` given with `flag_name` (`--grid`, `--free`).
    pub fn parse(flag_name: &str, text: &str) -> Result<Axis, ExperimentError> {
        let flag = format!("{flag_name} {text}");
        let bad = |m: String| ExperimentError::spec(flag.clone(), m);
        let (label, spec) = text.split_once('=').ok_or_else(|| {
            bad(
                "expected KEY=A..B:STEP or KEY=V1,V2,... (e.g. resize.scale_up=0.6..0.95:0.05)"
                    .into(),
            )
        })?;
        let label = label.trim();
        let spec = spec.trim();
        if label.is_empty() {
            return Err(bad("the key before `=` is empty".into()));
        }
        let mut keys = Vec::new();
        for typed in label.split(',').map(str::trim) {
            let key = route(&flag, typed)?;
            if keys.iter().any(|k: &AxisKey| k.typed == typed) {
                return Err(bad(format!("key `{typed}` is named twice")));
            }
            keys.push(key);
        }
        if spec.is_empty() {
            return Err(bad(format!(
                "no values after `{label}=`: give a range A..B:STEP or a list V1,V2"
            )));
        }
        let values = if spec.contains("..") {
            parse_range(spec).map_err(bad)?
        } else {
            parse_list(spec).map_err(bad)?
        };
        if values.is_empty() {
            return Err(bad("no values".into()));
        }
        if values.len() > MAX_AXIS_VALUES {
            return Err(bad(format!(
                "{} values; at most {MAX_AXIS_VALUES} per axis (is the step right?)",
                values.len()
            )));
        }
        Ok(Axis {
            flag,
            label: label.to_string(),
            keys,
            values,
        })
    }

    /// The `--set`-style overrides for value `i`, split by document.
    pub fn overrides(&self, i: usize) -> (Vec<Override>, Vec<Override>) {
        let mut p = Vec::new();
        let mut t = Vec::new();
        for k in &self.keys {
            let o = Override {
                path: k.path.clone(),
                value: self.values[i].clone(),
                assignment: format!("{}={}", k.typed, plain(&self.values[i])),
            };
            match k.target {
                Target::Policy => p.push(o),
                Target::Trace => t.push(o),
            }
        }
        (p, t)
    }

    /// Value `i` as JSON (for outputs).
    pub fn json(&self, i: usize) -> Value {
        toml_to_json(&self.values[i])
    }

    /// All values as JSON.
    pub fn json_values(&self) -> Vec<Value> {
        (0..self.values.len()).map(|i| self.json(i)).collect()
    }

    /// `label=value` for value `i`, as shown to users.
    pub fn assignment(&self, i: usize) -> String {
        format!("{}={}", self.label, plain(&self.values[i]))
    }
}

/// Routes a typed key to its document, as `--set` does.
fn route(flag: &str, typed: &str) -> Result<AxisKey, ExperimentError> {
    let bad = |m: String| ExperimentError::spec(flag, m);
    let path: Vec<String> = typed.split('.').map(|s| s.trim().to_string()).collect();
    if typed.is_empty() || path.iter().any(|s| s.is_empty()) {
        return Err(bad(format!(
            "key `{typed}` has an empty segment (two dots, or a leading or trailing dot)"
        )));
    }
    let first = path[0].as_str();
    let (target, path) = match first {
        "policy" | "trace" | "workload" => {
            if path.len() < 2 {
                return Err(bad(format!("`{first}.` must be followed by a key")));
            }
            let t = if first == "policy" {
                Target::Policy
            } else {
                Target::Trace
            };
            (t, path[1..].to_vec())
        }
        k if policy::TOP_LEVEL_KEYS.contains(&k) => (Target::Policy, path),
        k if workload::TOP_LEVEL_KEYS.contains(&k) => (Target::Trace, path),
        _ => {
            return Err(bad(format!(
                "unknown key `{typed}`: policy keys start with {}; workload keys with {} (or prefix with `policy.` / `trace.`)",
                policy::TOP_LEVEL_KEYS.join(", "),
                workload::TOP_LEVEL_KEYS.join(", ")
            )))
        }
    };
    Ok(AxisKey {
        target,
        path,
        typed: typed.to_string(),
    })
}

fn parse_list(spec: &str) -> Result<Vec<toml::Value>, String> {
    let mut out = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "empty value in the list `{spec}` (two commas, or a trailing comma)"
            ));
        }
        let o = Override::parse(&format!("v={item}")).map_err(|e| e.to_string())?;
        if out.contains(&o.value) {
            return Err(format!("value `{item}` is listed twice"));
        }
        out.push(o.value);
    }
    Ok(out)
}

/// Digits after the decimal point as written, `None` for exponent notation.
fn decimals(s: &str) -> Option<u32> {
    if s.contains(['e', 'E']) {
        return None;
    }
    Some(s.split_once('.').map(|(_, f)| f.len() as u32).unwrap_or(0))
}

fn parse_range(spec: &str) -> Result<Vec<toml::Value>, String> {
    const FORM: &str = "expected a range A..B:STEP, e.g. 0.6..0.95:0.05, 5..25:5 or 1s..5s:500ms";
    if spec.contains(',') {
        return Err(format!(
            "`{spec}` mixes a range and a list; give one or the other"
        ));
    }
    let (range, step) = match spec.split_once(':') {
        Some((r, s)) => (r.trim(), Some(s.trim())),
        None => (spec, None),
    };
    let (a, b) = range.split_once("..").ok_or_else(|| FORM.to_string())?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() || b.is_empty() || step == Some("") || b.contains("..") {
        return Err(FORM.to_string());
    }
    let empty = |lo: &str, hi: &str| {
        format!("empty range: the start {lo} is above the end {hi} (ranges count upwards)")
    };
    // Whole numbers.
    if let (Ok(lo), Ok(hi)) = (a.parse::<i64>(), b.parse::<i64>()) {
        let step = match step {
            None => 1,
            Some(s) => s.parse::<i64>().map_err(|_| {
                format!("the step `{s}` must be a whole number for a range of whole numbers (or write the ends as decimals)")
            })?,
        };
        if step <= 0 {
            return Err(format!("the step must be positive, got {step}"));
        }
        if lo > hi {
            return Err(empty(a, b));
        }
        let n = ((hi - lo) / step) as u64 + 1;
        if n > MAX_AXIS_VALUES as u64 {
            return Err(format!(
                "{n} values; at most {MAX_AXIS_VALUES} per axis (is the step right?)"
            ));
        }
        return Ok((0..n as i64)
            .map(|i| toml::Value::Integer(lo + i * step))
            .collect());
    }
    // Decimals.
    if let (Ok(lo), Ok(hi)) = (a.parse::<f64>(), b.parse::<f64>()) {
        let s = step.ok_or_else(|| {
            format!("a range of decimals needs a step: {a}..{b}:STEP (e.g. {a}..{b}:0.05)")
        })?;
        let st: f64 = s
            .parse()
            .map_err(|_| format!("the step `{s}` is not a number"))?;
        if !(lo.is_finite() && hi.is_finite() && st.is_finite()) {
            return Err("the range's ends and step must be finite numbers".into());
        }
        if st <= 0.0 {
            return Err(format!("the step must be positive, got {s}"));
        }
        if lo > hi {
            return Err(empty(a, b));
        }
        let count = ((hi - lo) / st + 1e-9).floor() + 1.0;
        if count > MAX_AXIS_VALUES as f64 {
            return Err(format!(
                "{count} values; at most {MAX_AXIS_VALUES} per axis (is the step right?)"
            ));
        }
        let digits = match (decimals(a), decimals(b), decimals(s)) {
            (Some(x), Some(y), Some(z)) => Some(x.max(y).max(z).min(15)),
            _ => None,
        };
        let round = |x: f64| match digits {
            Some(d) => {
                let p = 10f64.powi(d as i32);
                (x * p).round() / p
            }
            None => format!("{x:.11e}").parse().unwrap_or(x),
        };
        return Ok((0..count as u64)
            .map(|i| toml::Value::Float(round(lo + i as f64 * st)))
            .collect());
    }
    // Durations.
    if let (Ok(lo), Ok(hi)) = (parse_duration(a), parse_duration(b)) {
        let s = step.ok_or_else(|| {
            format!("a range of durations needs a step: {a}..{b}:STEP (e.g. {a}..{b}:1s)")
        })?;
        let st = parse_duration(s).map_err(|e| format!("the step: {e}"))?;
        if st == SimDuration::ZERO {
            return Err(format!("the step must be positive, got {s}"));
        }
        if lo > hi {
            return Err(empty(a, b));
        }
        let n = (hi.0 - lo.0) / st.0 + 1;
        if n > MAX_AXIS_VALUES as u64 {
            return Err(format!(
                "{n} values; at most {MAX_AXIS_VALUES} per axis (is the step right?)"
            ));
        }
        return Ok((0..n)
            .map(|i| toml::Value::String(SimDuration(lo.0 + i * st.0).to_string()))
            .collect());
    }
    Err(format!(
        "the ends `{a}` and `{b}` are neither both numbers nor both durations; {FORM}"
    ))
}

/// A TOML value as typed on a command line (strings unquoted).
pub fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A TOML scalar as JSON.
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Checks that `path` names a value (not a table) of a document whose
/// effective config (every default filled in) is `effective`. A `null` on
/// the way (an optional table not given, e.g. a fixed policy's thresholds)
/// accepts the rest: the document's own validation speaks then.
pub fn check_key(
    flag: &str,
    key: &AxisKey,
    doc_name: &str,
    effective: &Value,
) -> Result<(), ExperimentError> {
    let bad = |m: String| Err(ExperimentError::spec(flag, m));
    let mut v = effective;
    let mut walked: Vec<&str> = Vec::new();
    for seg in &key.path {
        match v {
            Value::Null => return Ok(()),
            Value::Object(m) => match m.get(seg) {
                Some(c) => {
                    walked.push(seg);
                    v = c;
                }
                None => {
                    let at = if walked.is_empty() {
                        format!("{doc_name} has no top-level key `{seg}`")
                    } else {
                        format!("`{}` has no key `{seg}`", walked.join("."))
                    };
                    let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
                    return bad(format!(
                        "unknown key `{}`: {at} (it has: {})",
                        key.typed,
                        keys.join(", ")
                    ));
                }
            },
            _ => {
                return bad(format!(
                    "unknown key `{}`: `{}` is a value, not a table",
                    key.typed,
                    walked.join(".")
                ))
            }
        }
    }
    if let Value::Object(m) = v {
        let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        return bad(format!(
            "`{}` is a table; name a key inside it ({})",
            key.typed,
            keys.join(", ")
        ));
    }
    Ok(())
}

/// The number of points of the product of `axes` (1 for no axes).
pub fn product_len(axes: &[Axis]) -> Result<usize, ExperimentError> {
    let mut n: usize = 1;
    for a in axes {
        n = n.saturating_mul(a.values.len());
    }
    if n > MAX_GRID_POINTS {
        let flags: Vec<&str> = axes.iter().map(|a| a.flag.as_str()).collect();
        return Err(ExperimentError::spec(
            flags.join(" "),
            format!("the grid has {n} points; at most {MAX_GRID_POINTS}"),
        ));
    }
    Ok(n)
}

/// Grid point `index` as one value index per axis (last axis fastest).
pub fn point(axes: &[Axis], mut index: usize) -> Vec<usize> {
    let mut out = vec![0; axes.len()];
    for (j, a) in axes.iter().enumerate().rev() {
        let m = a.values.len();
        out[j] = index % m;
        index /= m;
    }
    out
}

/// Checks that no key is varied twice, or both varied and fixed by `--set`.
pub fn check_disjoint(axes: &[Axis], sets: &[Override]) -> Result<(), ExperimentError> {
    let norm = |k: &AxisKey| (k.target, k.path.clone());
    for (i, a) in axes.iter().enumerate() {
        for k in &a.keys {
            for b in &axes[..i] {
                if b.keys.iter().any(|o| norm(o) == norm(k)) {
                    return Err(ExperimentError::spec(
                        a.flag.clone(),
                        format!("key `{}` is already varied by {}", k.typed, b.flag),
                    ));
                }
            }
            for s in sets {
                let typed = s.path.join(".");
                if let Ok(sk) = route("--set", &typed) {
                    if norm(&sk) == norm(k) {
                        return Err(ExperimentError::spec(
                            a.flag.clone(),
                            format!(
                                "key `{}` is also fixed by --set {}; vary it or fix it, not both",
                                k.typed, s.assignment
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Rewrites a config error's "(overridden by --set X)" into "(set by
/// FLAG X)" for the assignments that came from `flag_name`, so the message
/// names the flag the user actually typed.
pub fn rewrite_origin(message: &str, flag_name: &str, assignments: &[String]) -> String {
    let mut m = message.to_string();
    for a in assignments {
        m = m.replace(
            &format!("(overridden by --set {a})"),
            &format!("(set by {flag_name} {a})"),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(spec: &str) -> Vec<String> {
        Axis::parse("--grid", spec)
            .unwrap()
            .values
            .iter()
            .map(plain)
            .collect()
    }

    fn err(spec: &str) -> String {
        Axis::parse("--grid", spec).unwrap_err().to_string()
    }

    #[test]
    fn decimal_ranges_round_to_what_was_written() {
        assert_eq!(
            vals("resize.scale_up=0.6..0.95:0.05"),
            ["0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]
        );
        assert_eq!(vals("resize.scale_up=0.1..0.3:0.1"), ["0.1", "0.2", "0.3"]);
        // The end need not be hit.
        assert_eq!(vals("resize.scale_up=0.5..0.66:0.1"), ["0.5", "0.6"]);
        assert_eq!(
            vals("arrivals.rate_per_s=1e2..3e2:1e2"),
            ["100.0", "200.0", "300.0"]
        );
    }

    #[test]
    fn whole_number_and_duration_ranges() {
        assert_eq!(vals("size.max=5..25:5"), ["5", "10", "15", "20", "25"]);
        assert_eq!(vals("size.max=3..5"), ["3", "4", "5"]);
        assert_eq!(vals("size.max=7..7"), ["7"]);
        assert_eq!(
            vals("resize.interval=500ms..2s:500ms"),
            ["500ms", "1s", "1.5s", "2s"]
        );
    }

    #[test]
    fn lists_take_values_as_set_does() {
        assert_eq!(vals("size.max=10,15,20"), ["10", "15", "20"]);
        assert_eq!(
            vals("acquire_timeout.low=2.5s,10s,none"),
            ["2.5s", "10s", "none"]
        );
        assert_eq!(
            vals("resize.signal=instant,window_mean"),
            ["instant", "window_mean"]
        );
        let a = Axis::parse("--grid", "size.max=10").unwrap();
        assert_eq!(a.values, [toml::Value::Integer(10)]);
    }

    #[test]
    fn tied_keys_and_routing() {
        let a = Axis::parse("--grid", "size.min,size.max=5..6").unwrap();
        assert_eq!(a.label, "size.min,size.max");
        let (p, t) = a.overrides(1);
        assert!(t.is_empty());
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].path, ["size", "max"]);
        assert_eq!(p[1].value, toml::Value::Integer(6));
        let a = Axis::parse("--grid", "trace.arrivals.rate_per_s=100,200").unwrap();
        let (p, t) = a.overrides(0);
        assert!(p.is_empty());
        assert_eq!(t[0].path, ["arrivals", "rate_per_s"]);
        assert_eq!(a.assignment(1), "trace.arrivals.rate_per_s=200");
    }

    #[test]
    fn bad_specs_name_the_flag_and_say_why() {
        let e = err("resize.scale_up=0.9..0.6:0.05");
        assert!(
            e.starts_with("--grid resize.scale_up=0.9..0.6:0.05: empty range"),
            "{e}"
        );
        assert!(err("resize.scale_up=0.6..0.9").contains("needs a step"));
        assert!(err("size.max=5..25:0").contains("step must be positive"));
        assert!(err("size.max=5..25:-5").contains("step must be positive"));
        assert!(err("size.max=").contains("no values"));
        assert!(err("size.max").contains("expected KEY="));
        assert!(err("=1,2").contains("key before `=` is empty"));
        assert!(err("size.max=1,,2").contains("empty value"));
        assert!(err("size.max=1,1").contains("listed twice"));
        assert!(err("size.max=1..a").contains("neither both numbers nor both durations"));
        assert!(err("bogus.key=1,2").contains("unknown key `bogus.key`"));
        assert!(err("size.max=1..1000000000").contains("at most"));
        assert!(err("size..max=1").contains("empty segment"));
        assert!(err("size.max=1..5,7").contains("mixes a range and a list"));
    }

    #[test]
    fn keys_are_checked_against_the_document() {
        let eff = serde_json::json!({"resize": {"scale_up": 0.8, "kind": "threshold"}, "size": {"max": 25}, "x": null});
        let key = |t: &str| route("--grid", t).unwrap();
        check_key("--grid f", &key("resize.scale_up"), "p.toml", &eff).unwrap();
        let e = check_key("--grid f", &key("resize.scale_upp"), "p.toml", &eff)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `resize.scale_upp`: `resize` has no key `scale_upp` (it has: kind, scale_up)"), "{e}");
        let e = check_key("--grid f", &key("resize"), "p.toml", &eff)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a table"), "{e}");
        let e = check_key("--grid f", &key("size.max.x"), "p.toml", &eff)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a value, not a table"), "{e}");
    }

    #[test]
    fn product_order_is_last_axis_fastest() {
        let axes = vec![
            Axis::parse("--grid", "size.max=1,2").unwrap(),
            Axis::parse("--grid", "size.min=1,2,3").unwrap(),
        ];
        assert_eq!(product_len(&axes).unwrap(), 6);
        assert_eq!(point(&axes, 0), [0, 0]);
        assert_eq!(point(&axes, 1), [0, 1]);
        assert_eq!(point(&axes, 3), [1, 0]);
        assert_eq!(point(&[], 0), Vec::<usize>::new());
    }

    #[test]
    fn disjointness() {
        let a = Axis::parse("--grid", "size.max=1,2").unwrap();
        let b = Axis::parse("--grid", "policy.size.max=3").unwrap();
        let e = check_disjoint(&[a.clone(), b], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already varied by --grid size.max=1,2"), "{e}");
        let s = Override::parse("size.max=9").unwrap();
        let e = check_disjoint(&[a], &[s]).unwrap_err().to_string();
        assert!(e.contains("also fixed by --set size.max=9"), "{e}");
    }
}
