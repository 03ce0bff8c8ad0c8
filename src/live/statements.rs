//! Statement workload files for `live run --statements FILE`: what each
//! request runs instead of `SELECT pg_sleep($1)`.
//!
//! ```toml
//! description = "pgbench select-only"   # optional, free text
//! scale = 1                              # optional, default 1: multiplies `per_scale` ranges
//!
//! [[statement]]
//! name = "select_balance"                # optional, default "statement N" (N from 1)
//! kind = "read"                          # required: read or write
//! weight = 1.0                           # optional, default 1: relative frequency (> 0)
//! sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"   # required, $1.. placeholders
//! params = [{ uniform = [1, 100000], per_scale = true }]         # one generator per placeholder
//! ```
//!
//! Parameter generators (an inline table with exactly one of):
//! - `{ uniform = [LO, HI] }`: a whole number drawn uniformly from LO..=HI;
//!   with `per_scale = true`, HI is multiplied by the file's `scale`.
//! - `{ constant = V }`: always V (a whole number, a number or a string).
//! - `{ service = "seconds" }`: the request's service time in seconds (a
//!   number), e.g. for `pg_sleep($1)`.
//!
//! Parameters are always bound (`$1`...), never interpolated into the SQL.
//! A request picks its statement when it arrives, weighted, from a stream
//! of the run's seed (so a rerun with the same seed issues the same
//! statements with the same parameters): among the statements of its own
//! kind when the file has both kinds, else among all.

use std::ops::Range;
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{ToSql, Type};
use toml::Spanned;

use crate::config::{line_col, Document};
use crate::core::request::Kind;
use crate::error::{ConfigError, Origin};
use crate::rng::Stream;
use crate::time::SimDuration;

/// A value bound to a placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Text(String),
}

/// How a placeholder's value is made, per request.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// Uniform whole number in `lo..=hi` (scale already applied).
    Uniform {
        lo: i64,
        hi: i64,
    },
    Constant(Value),
    /// The request's service time in seconds.
    ServiceSeconds,
}

/// One statement of a workload file.
#[derive(Clone, Debug, PartialEq)]
pub struct StatementSpec {
    pub name: String,
    pub kind: Kind,
    pub weight: f64,
    pub sql: String,
    pub params: Vec<Param>,
}

/// A validated statement workload file.
#[derive(Clone, Debug, PartialEq)]
pub struct StatementFile {
    /// The path as given (for messages and `live.json`).
    pub source: String,
    pub description: String,
    pub scale: u32,
    pub statements: Vec<StatementSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    scale: Option<Spanned<i64>>,
    #[serde(default)]
    statement: Option<Spanned<Vec<Spanned<StatementRaw>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatementRaw {
    #[serde(default)]
    name: Option<Spanned<String>>,
    kind: Spanned<String>,
    #[serde(default)]
    weight: Option<Spanned<f64>>,
    sql: Spanned<String>,
    #[serde(default)]
    params: Vec<Spanned<ParamRaw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamRaw {
    #[serde(default)]
    uniform: Option<Spanned<Vec<i64>>>,
    #[serde(default)]
    per_scale: Option<bool>,
    #[serde(default)]
    constant: Option<Spanned<toml::Value>>,
    #[serde(default)]
    service: Option<Spanned<String>>,
}

/// Reads and validates a statement file.
pub fn load(path: &Path) -> Result<StatementFile, ConfigError> {
    parse(&Document::read(path)?)
}

/// Parses and validates a statement file's text. Every error names the
/// file, line and column, and the key (`statement[N].key`, N from 1).
pub fn parse(doc: &Document) -> Result<StatementFile, ConfigError> {
    let at = |span: Range<usize>| {
        let (line, column) = line_col(&doc.text, span.start);
        Origin::File {
            file: doc.name.clone(),
            line,
            column,
        }
    };
    let invalid = |span: Range<usize>, key: String, message: String| ConfigError::Invalid {
        origin: at(span),
        key,
        message,
    };
    let de = toml::Deserializer::parse(&doc.text).map_err(|e| ConfigError::Syntax {
        origin: e.span().map(&at).unwrap_or(Origin::WholeFile {
            file: doc.name.clone(),
        }),
        message: e.message().trim().to_string(),
    })?;
    let raw: FileRaw = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = key_of(e.path());
        let inner = e.into_inner();
        let origin = inner.span().map(&at).unwrap_or(Origin::WholeFile {
            file: doc.name.clone(),
        });
        let message = inner.message().trim().to_string();
        let (key, message) = match message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            Some(field) if key.is_empty() => (field.to_string(), "required key is missing".into()),
            Some(field) => (format!("{key}.{field}"), "required key is missing".into()),
            None => (
                if key.is_empty() {
                    "(top level)".into()
                } else {
                    key
                },
                message,
            ),
        };
        ConfigError::Invalid {
            origin,
            key,
            message,
        }
    })?;
    let scale = match &raw.scale {
        None => 1,
        Some(s) => u32::try_from(*s.get_ref())
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                invalid(
                    s.span(),
                    "scale".into(),
                    format!(
                        "expected a whole number from 1 to {}, got {}",
                        u32::MAX,
                        s.get_ref()
                    ),
                )
            })?,
    };
    let Some(list) = raw.statement else {
        return Err(ConfigError::Invalid {
            origin: Origin::WholeFile {
                file: doc.name.clone(),
            },
            key: "statement".into(),
            message: "required: at least one [[statement]] table".into(),
        });
    };
    if list.get_ref().is_empty() {
        return Err(invalid(
            list.span(),
            "statement".into(),
            "expected at least one statement".into(),
        ));
    }
    let mut statements: Vec<StatementSpec> = Vec::new();
    for (i, st) in list.into_inner().into_iter().enumerate() {
        let key = |k: &str| format!("statement[{}].{k}", i + 1);
        let table_span = st.span();
        let st = st.into_inner();
        let name = match &st.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return Err(invalid(
                    n.span(),
                    key("name"),
                    "expected a non-empty name".into(),
                ))
            }
            Some(n) => n.get_ref().trim().to_string(),
            None => format!("statement {}", i + 1),
        };
        if statements.iter().any(|s| s.name == name) {
            let span = st.name.as_ref().map_or(table_span.clone(), |n| n.span());
            return Err(invalid(
                span,
                key("name"),
                format!("`{name}` names an earlier statement too; names must be unique"),
            ));
        }
        let kind = match st.kind.get_ref().trim() {
            "read" => Kind::Read,
            "write" => Kind::Write,
            other => {
                return Err(invalid(
                    st.kind.span(),
                    key("kind"),
                    format!("expected \"read\" or \"write\", got {other:?}"),
                ))
            }
        };
        let weight = match &st.weight {
            None => 1.0,
            Some(w) if w.get_ref().is_finite() && *w.get_ref() > 0.0 => *w.get_ref(),
            Some(w) => {
                return Err(invalid(
                    w.span(),
                    key("weight"),
                    format!("expected a number > 0, got {}", w.get_ref()),
                ))
            }
        };
        let sql = st.sql.get_ref().trim().to_string();
        if sql.is_empty() {
            return Err(invalid(
                st.sql.span(),
                key("sql"),
                "expected a statement, got an empty string".into(),
            ));
        }
        let used = max_placeholder(&sql);
        let mut params = Vec::with_capacity(st.params.len());
        for (j, p) in st.params.iter().enumerate() {
            let pkey = |k: &str| {
                if k.is_empty() {
                    format!("statement[{}].params[{}]", i + 1, j + 1)
                } else {
                    format!("statement[{}].params[{}].{k}", i + 1, j + 1)
                }
            };
            let span = p.span();
            let p = p.get_ref();
            let given = [
                p.uniform.is_some(),
                p.constant.is_some(),
                p.service.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if given != 1 {
                return Err(invalid(
                    span,
                    pkey(""),
                    format!(
                        "expected exactly one of `uniform = [LO, HI]`, `constant = V`, `service = \"seconds\"`; got {given}"
                    ),
                ));
            }
            if p.per_scale.is_some() && p.uniform.is_none() {
                return Err(invalid(
                    span,
                    pkey("per_scale"),
                    "applies only to `uniform`".into(),
                ));
            }
            let param = if let Some(u) = &p.uniform {
                let [lo, hi] = u.get_ref()[..] else {
                    return Err(invalid(
                        u.span(),
                        pkey("uniform"),
                        format!(
                            "expected two whole numbers [LO, HI], got {} values",
                            u.get_ref().len()
                        ),
                    ));
                };
                let hi = if p.per_scale == Some(true) {
                    hi.checked_mul(i64::from(scale)).ok_or_else(|| {
                        invalid(
                            u.span(),
                            pkey("uniform"),
                            format!("HI {hi} times scale {scale} overflows"),
                        )
                    })?
                } else {
                    hi
                };
                if lo > hi {
                    return Err(invalid(
                        u.span(),
                        pkey("uniform"),
                        format!("expected LO <= HI, got [{lo}, {hi}]"),
                    ));
                }
                Param::Uniform { lo, hi }
            } else if let Some(c) = &p.constant {
                Param::Constant(match c.get_ref() {
                    toml::Value::Integer(v) => Value::Int(*v),
                    toml::Value::Float(v) if v.is_finite() => Value::Float(*v),
                    toml::Value::String(s) => Value::Text(s.clone()),
                    other => {
                        return Err(invalid(
                            c.span(),
                            pkey("constant"),
                            format!(
                                "expected a whole number, a finite number or a string, got {}",
                                other.type_str()
                            ),
                        ))
                    }
                })
            } else {
                let s = p.service.as_ref().expect("one generator is given");
                if s.get_ref() != "seconds" {
                    return Err(invalid(
                        s.span(),
                        pkey("service"),
                        format!("expected \"seconds\", got {:?}", s.get_ref()),
                    ));
                }
                Param::ServiceSeconds
            };
            params.push(param);
        }
        if used != params.len() {
            return Err(invalid(
                st.sql.span(),
                key("params"),
                format!(
                    "the SQL uses placeholders up to ${used} but {} parameter generator(s) are given; give one per placeholder, in order",
                    params.len()
                ),
            ));
        }
        statements.push(StatementSpec {
            name,
            kind,
            weight,
            sql,
            params,
        });
    }
    Ok(StatementFile {
        source: doc.name.clone(),
        description: raw.description.unwrap_or_default(),
        scale,
        statements,
    })
}

/// A key path as the file names it, arrays numbered from 1.
fn key_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{}]", index + 1)),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                // serde_spanned's internal fields are not keys of the file.
                if key.starts_with("$__") {
                    continue;
                }
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    s
}

/// The highest `$N` placeholder in `sql` outside quoted strings,
/// identifiers and comments (0 when there is none).
pub fn max_placeholder(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut max) = (0, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j > start {
                    // An absurd index saturates (the server refuses it).
                    let n = sql[start..j].parse::<usize>().unwrap_or(usize::MAX);
                    max = max.max(n);
                }
                i = j.max(i + 1);
            }
            _ => i += 1,
        }
    }
    max
}

/// Picks each request's statement and draws its parameters.
pub struct Picker {
    /// Candidate statements and cumulative weights, per request kind
    /// (index 0 read, 1 write); both the same list when the file has one
    /// kind only.
    groups: [(Vec<usize>, Vec<f64>); 2],
    params: Vec<Vec<Param>>,
    rng: Stream,
}

impl Picker {
    pub fn new(file: &StatementFile, rng: Stream) -> Self {
        let both = file.statements.iter().any(|s| s.kind == Kind::Read)
            && file.statements.iter().any(|s| s.kind == Kind::Write);
        let group = |kind: Option<Kind>| {
            let idx: Vec<usize> = (0..file.statements.len())
                .filter(|i| kind.is_none_or(|k| file.statements[*i].kind == k))
                .collect();
            let mut acc = 0.0;
            let cum = idx
                .iter()
                .map(|i| {
                    acc += file.statements[*i].weight;
                    acc
                })
                .collect();
            (idx, cum)
        };
        let groups = if both {
            [group(Some(Kind::Read)), group(Some(Kind::Write))]
        } else {
            [group(None), group(None)]
        };
        Picker {
            groups,
            params: file.statements.iter().map(|s| s.params.clone()).collect(),
            rng,
        }
    }

    /// The statement (index into the file) and parameter values for a
    /// request of `kind` with `service` time.
    pub fn pick(&mut self, kind: Kind, service: SimDuration) -> (usize, Vec<Value>) {
        let (idx, cum) = &self.groups[match kind {
            Kind::Read => 0,
            Kind::Write => 1,
        }];
        let total = *cum.last().expect("validated files have statements");
        let x = self.rng.random::<f64>() * total;
        let k = cum.iter().position(|c| x < *c).unwrap_or(idx.len() - 1);
        let s = idx[k];
        let values = self.params[s]
            .iter()
            .map(|p| match p {
                Param::Uniform { lo, hi } => Value::Int(self.rng.random_range(*lo..=*hi)),
                Param::Constant(v) => v.clone(),
                Param::ServiceSeconds => Value::Float(service.as_secs_f64()),
            })
            .collect();
        (s, values)
    }
}

/// A parameter ready to bind: converted to the type the server inferred
/// for its placeholder (prepared statements), or sent with its own type
/// (`bigint`, `double precision`, `text`) when `ty` is `None`.
pub fn bind(v: &Value, ty: Option<&Type>) -> Result<(Box<dyn ToSql + Sync + Send>, Type), String> {
    let ty = match ty {
        Some(t) => t.clone(),
        None => match v {
            Value::Int(_) => Type::INT8,
            Value::Float(_) => Type::FLOAT8,
            Value::Text(_) => Type::TEXT,
        },
    };
    let range = |what: &str| format!("{what} does not fit the placeholder's type {ty}");
    let b: Box<dyn ToSql + Sync + Send> = match (v, &ty) {
        (Value::Int(i), t) if *t == Type::INT2 => {
            Box::new(i16::try_from(*i).map_err(|_| range(&i.to_string()))?)
        }
        (Value::Int(i), t) if *t == Type::INT4 => {
            Box::new(i32::try_from(*i).map_err(|_| range(&i.to_string()))?)
        }
        (Value::Int(i), t) if *t == Type::INT8 => Box::new(*i),
        (Value::Int(i), t) if *t == Type::FLOAT8 => Box::new(*i as f64),
        (Value::Int(i), t) if *t == Type::FLOAT4 => Box::new(*i as f32),
        (Value::Float(f), t) if *t == Type::FLOAT8 => Box::new(*f),
        (Value::Float(f), t) if *t == Type::FLOAT4 => Box::new(*f as f32),
        (Value::Text(s), t)
            if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UNKNOWN].contains(t) =>
        {
            Box::new(s.clone())
        }
        (v, t) => {
            return Err(format!(
                "cannot bind {} to a placeholder of type {t} (integers bind to smallint, integer, bigint, real and double precision; numbers to real and double precision; strings to text types)",
                match v {
                    Value::Int(i) => format!("the whole number {i}"),
                    Value::Float(f) => format!("the number {f}"),
                    Value::Text(_) => "a string".to_string(),
                }
            ))
        }
    };
    Ok((b, ty))
}

/// Per-statement counts of a live run, in `live.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementCount {
    pub name: String,
    /// `read` or `write` (statement files); empty for the trace's own SQL
    /// and the `pg_sleep` statement.
    #[serde(default)]
    pub kind: String,
    /// The statement text (`(recorded)` for the trace's own SQL).
    pub sql: String,
    /// Requests that picked it when they arrived (deterministic for a
    /// seed: timeouts do not change it).
    pub picked: u64,
    /// Ran and succeeded.
    pub completed: u64,
    /// Ran and failed (an error from the server, or a broken connection).
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedTree;

    fn doc(text: &str) -> Document {
        Document::new("s.toml", text)
    }

    const GOOD: &str = r#"
description = "two kinds"
scale = 2

[[statement]]
name = "get"
kind = "read"
weight = 3
sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
params = [{ uniform = [1, 100000], per_scale = true }]

[[statement]]
name = "put"
kind = "write"
sql = "UPDATE t SET v = $1 WHERE k = $2 AND s = $3"
params = [{ constant = 'x' }, { constant = 7 }, { service = "seconds" }]
"#;

    #[test]
    fn a_good_file_loads_with_its_defaults_and_scale() {
        let f = parse(&doc(GOOD)).unwrap();
        assert_eq!(f.scale, 2);
        assert_eq!(f.statements.len(), 2);
        assert_eq!(
            f.statements[0].params,
            vec![Param::Uniform { lo: 1, hi: 200000 }]
        );
        assert_eq!(f.statements[1].weight, 1.0);
        assert_eq!(f.statements[1].kind, Kind::Write);
        assert_eq!(
            f.statements[1].params,
            vec![
                Param::Constant(Value::Text("x".into())),
                Param::Constant(Value::Int(7)),
                Param::ServiceSeconds
            ]
        );
    }

    fn err(text: &str) -> String {
        parse(&doc(text)).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let bad_weight = GOOD.replace("weight = 3", "weight = -1");
        let e = err(&bad_weight);
        assert!(e.starts_with("s.toml:8:"), "{e}");
        assert!(e.contains("statement[1].weight"), "{e}");
        let unknown = GOOD.replace("weight = 3", "wieght = 3");
        let e = err(&unknown);
        assert!(e.contains("s.toml:"), "{e}");
        assert!(e.contains("wieght"), "{e}");
        let e = err(&GOOD.replace("kind = \"write\"", "kind = \"upsert\""));
        assert!(
            e.starts_with("s.toml:14:") && e.contains("statement[2].kind"),
            "{e}"
        );
        let e = err(&GOOD.replace("{ constant = 7 }, ", ""));
        assert!(
            e.starts_with("s.toml:15:") && e.contains("statement[2].params"),
            "{e}"
        );
        let e = err(&GOOD.replace("[1, 100000]", "[5, 1]"));
        assert!(
            e.contains("s.toml:10:") && e.contains("statement[1].params[1].uniform"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "{ constant = 7 }",
            "{ constant = 7, service = \"seconds\" }",
        ));
        assert!(e.contains("statement[2].params[2]"), "{e}");
        let e = err(&GOOD.replace("sql = \"UPDATE", "sqll = \"UPDATE"));
        assert!(e.contains("s.toml:"), "{e}");
        let e = err("description = \"none\"\n");
        assert!(e.contains("key `statement`"), "{e}");
        let e = err(&GOOD.replace("name = \"put\"", "name = \"get\""));
        assert!(e.contains("s.toml:13:") && e.contains("unique"), "{e}");
        let e = err("[[statement]]\nkind = \"read\"\n");
        assert!(
            e.contains("statement[1].sql") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn placeholders_in_strings_and_comments_do_not_count() {
        assert_eq!(max_placeholder("SELECT $1, $12 -- $40\n"), 12);
        assert_eq!(max_placeholder("SELECT '$5', \"$6\" /* $7 */, $2"), 2);
        assert_eq!(max_placeholder("SELECT 1"), 0);
    }

    #[test]
    fn picks_follow_kind_and_weight_and_repeat_with_the_seed() {
        let f = parse(&doc(GOOD)).unwrap();
        let draw = |seed| {
            let mut p = Picker::new(&f, SeedTree::new(seed).stream("s"));
            (0..200)
                .map(|i| {
                    let kind = if i % 4 == 0 { Kind::Write } else { Kind::Read };
                    p.pick(kind, SimDuration::from_millis(5))
                })
                .collect::<Vec<_>>()
        };
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_ne!(a, draw(2));
        for (i, (s, v)) in a.iter().enumerate() {
            // Both kinds are in the file: a request runs one of its kind.
            assert_eq!(*s, usize::from(i % 4 == 0));
            if *s == 0 {
                assert!(matches!(v[0], Value::Int(x) if (1..=200000).contains(&x)));
            } else {
                assert_eq!(v[2], Value::Float(0.005));
            }
        }
        // One kind only: weights decide, whatever the request's kind.
        let one = parse(&doc(
            "[[statement]]\nkind = \"read\"\nweight = 9\nsql = \"SELECT 1\"\n\
             [[statement]]\nkind = \"read\"\nsql = \"SELECT 2\"\n",
        ))
        .unwrap();
        let mut p = Picker::new(&one, SeedTree::new(3).stream("s"));
        let n = 4000;
        let firsts = (0..n)
            .filter(|_| p.pick(Kind::Write, SimDuration::ZERO).0 == 0)
            .count();
        let frac = firsts as f64 / n as f64;
        assert!((frac - 0.9).abs() < 0.03, "{frac}");
    }

    #[test]
    fn values_bind_to_the_inferred_type_or_say_why_not() {
        assert!(bind(&Value::Int(7), Some(&Type::INT4)).is_ok());
        assert!(bind(&Value::Int(1 << 40), Some(&Type::INT4))
            .unwrap_err()
            .contains("does not fit"));
        assert!(bind(&Value::Text("a".into()), Some(&Type::INT4))
            .unwrap_err()
            .contains("type int4"));
        assert_eq!(bind(&Value::Float(0.5), None).unwrap().1, Type::FLOAT8);
    }
}
