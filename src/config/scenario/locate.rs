//! Where a scenario key is: like [`crate::config::Locator`], but keys may go
//! through arrays of tables (`services[1].policy`), and `--set` overrides
//! address array entries by name (`services.api.instances=4`) or by index
//! (`events.0.at=90s`).

use toml::de::{DeArray, DeTable, DeValue};

use crate::config::{line_col, Document, Override};
use crate::error::{ConfigError, Origin};

/// One step of a key: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Idx(usize),
}

/// Parses a key as errors show it: `services[1].connect_latency.median`.
pub(super) fn parse_key(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        if name_end > 0 {
            out.push(Seg::Key(rest[..name_end].to_string()));
        }
        rest = &rest[name_end..];
        // `[i]` suffixes; anything else (a quoted key with brackets) is kept
        // as a key.
        while !rest.is_empty() {
            match (rest.starts_with('['), rest.find(']')) {
                (true, Some(close)) => {
                    match rest[1..close].parse::<usize>() {
                        Ok(i) => out.push(Seg::Idx(i)),
                        Err(_) => out.push(Seg::Key(rest[..=close].to_string())),
                    }
                    rest = &rest[close + 1..];
                }
                _ => {
                    out.push(Seg::Key(rest.to_string()));
                    break;
                }
            }
        }
    }
    out
}

/// The key as errors show it.
pub(super) fn show_key(segs: &[Seg]) -> String {
    let mut s = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Locates keys of one scenario document and the overrides applied to it.
pub(super) struct Loc<'a> {
    doc: &'a Document,
    /// Each applied override: the key it set (array entries by index) and
    /// the assignment as typed.
    overrides: Vec<(Vec<Seg>, String)>,
}

impl<'a> Loc<'a> {
    pub(super) fn new(doc: &'a Document, overrides: Vec<(Vec<Seg>, String)>) -> Self {
        Loc { doc, overrides }
    }

    pub(super) fn file(&self) -> &str {
        &self.doc.name
    }

    /// Where `key` was given: an override that covers it, its line in the
    /// file (a missing key: the table or array entry it belongs in), or the
    /// file as a whole.
    pub(super) fn origin(&self, key: &str) -> Origin {
        let segs = parse_key(key);
        if let Some((_, assignment)) = self.overrides.iter().rev().find(|(path, _)| {
            path.len() <= segs.len() && path.iter().zip(&segs).all(|(a, b)| a == b)
        }) {
            return Origin::Override {
                file: self.doc.name.clone(),
                assignment: assignment.clone(),
            };
        }
        match locate(&self.doc.text, &segs) {
            Some(offset) => {
                let (line, column) = line_col(&self.doc.text, offset);
                Origin::File {
                    file: self.doc.name.clone(),
                    line,
                    column,
                }
            }
            None => Origin::WholeFile {
                file: self.doc.name.clone(),
            },
        }
    }

    pub(super) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(key),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// As [`Loc::invalid`], but when `key` or one of `related` was set by an
    /// override, the error names that override (it made the combination
    /// invalid).
    pub(super) fn invalid_related(
        &self,
        key: &str,
        related: &[&str],
        message: impl Into<String>,
    ) -> ConfigError {
        super::super::invalid_related(|k| self.origin(k), key, related, message)
    }
}

/// Byte offset of the deepest part of `segs` present in `text`: the key
/// itself, else the table or array entry (its first key) it belongs in.
fn locate(text: &str, segs: &[Seg]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table: Option<&DeTable> = Some(root.get_ref());
    let mut array: Option<&DeArray> = None;
    let mut found = None;
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                let Some(t) = table else { break };
                let Some((key, v)) = t.iter().find(|(key, _)| key.get_ref().as_ref() == k) else {
                    break;
                };
                found = Some(key.span().start);
                table = None;
                array = None;
                match v.get_ref() {
                    DeValue::Table(inner) => table = Some(inner),
                    DeValue::Array(items) => array = Some(items),
                    _ => break,
                }
            }
            Seg::Idx(i) => {
                let Some(items) = array else { break };
                let Some(item) = items.get(*i) else { break };
                array = None;
                match item.get_ref() {
                    DeValue::Table(inner) => {
                        found = inner
                            .iter()
                            .map(|(k, _)| k.span().start)
                            .min()
                            .or(Some(item.span().start));
                        table = Some(inner);
                    }
                    _ => {
                        found = Some(item.span().start);
                        break;
                    }
                }
            }
        }
    }
    found
}

/// Applies an override to the document's table. Array entries are chosen by
/// their `name` or, failing that, by a 0-based index; `array_keys` are the
/// top-level keys that hold arrays of tables (never created by an override). Returns the key it set
/// (entries by index), for locating errors.
pub(super) fn apply_override(
    table: &mut toml::Table,
    o: &Override,
    array_keys: &[&str],
) -> Result<Vec<Seg>, ConfigError> {
    let bad = |message: String| ConfigError::BadOverride {
        assignment: o.assignment.clone(),
        message,
    };
    let mut resolved = Vec::new();
    let mut cur: &mut toml::Value = {
        let first = &o.path[0];
        resolved.push(Seg::Key(first.clone()));
        if o.path.len() == 1 {
            table.insert(first.clone(), o.value.clone());
            return Ok(resolved);
        }
        if array_keys.contains(&first.as_str()) && !table.contains_key(first) {
            return Err(bad(format!(
                "`{first}` has no entry to set a key of (the file has no [[{first}]])"
            )));
        }
        table
            .entry(first.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
    };
    let mut i = 1;
    while i < o.path.len() {
        let seg = &o.path[i];
        let last = i + 1 == o.path.len();
        let shown = show_key(&resolved);
        match cur {
            toml::Value::Table(t) => {
                resolved.push(Seg::Key(seg.clone()));
                if last {
                    t.insert(seg.clone(), o.value.clone());
                    return Ok(resolved);
                }
                cur = t
                    .entry(seg.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            }
            toml::Value::Array(items) => {
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string))
                    .collect();
                let by_name = items
                    .iter()
                    .position(|v| v.get("name").and_then(|n| n.as_str()) == Some(seg.as_str()));
                let index =
                    by_name.or_else(|| seg.parse::<usize>().ok().filter(|&j| j < items.len()));
                let Some(index) = index else {
                    let named = if names.is_empty() {
                        String::new()
                    } else {
                        format!("names: {}; ", names.join(", "))
                    };
                    return Err(bad(format!(
                        "`{shown}` has no entry named `{seg}` ({named}or an index from 0 to {})",
                        items.len() as i64 - 1
                    )));
                };
                resolved.push(Seg::Idx(index));
                if last {
                    items[index] = o.value.clone();
                    return Ok(resolved);
                }
                cur = &mut items[index];
            }
            _ => {
                return Err(bad(format!(
                    "`{shown}` is a value, not a table, so it has no key below it"
                )))
            }
        }
        i += 1;
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_show_with_indices() {
        let k = "services[1].connect_latency.median";
        let segs = parse_key(k);
        assert_eq!(
            segs,
            vec![
                Seg::Key("services".into()),
                Seg::Idx(1),
                Seg::Key("connect_latency".into()),
                Seg::Key("median".into())
            ]
        );
        assert_eq!(show_key(&segs), k);
        assert_eq!(show_key(&parse_key("workload.set[2]")), "workload.set[2]");
        // Quoted keys with brackets never panic.
        for k in ["x[]]", "]", "[", "a[b]c", "[]", "a]]["] {
            let _ = show_key(&parse_key(k));
        }
    }

    #[test]
    fn locate_descends_into_arrays_of_tables() {
        let t =
            "name = \"x\"\n[[servers]]\nname = \"a\"\n[[servers]]\nname = \"b\"\nlag = \"1s\"\n";
        let d = Document::new("s.toml", t);
        let l = Loc::new(&d, vec![]);
        assert_eq!(l.origin("servers[1].lag").to_string(), "s.toml:6:1");
        // A missing key: the entry's first key.
        assert_eq!(l.origin("servers[0].lag").to_string(), "s.toml:3:1");
        assert_eq!(l.origin("routing.reads").to_string(), "s.toml");
    }

    #[test]
    fn overrides_pick_entries_by_name_or_index() {
        let mut t: toml::Table =
            toml::from_str("[[services]]\nname = \"api\"\n[[services]]\nname = \"web\"\n").unwrap();
        let o = Override::parse("services.web.instances=4").unwrap();
        let path = apply_override(&mut t, &o, &["services"]).unwrap();
        assert_eq!(show_key(&path), "services[1].instances");
        assert_eq!(t["services"][1]["instances"].as_integer(), Some(4));
        let o = Override::parse("services.0.instances=2").unwrap();
        apply_override(&mut t, &o, &["services"]).unwrap();
        assert_eq!(t["services"][0]["instances"].as_integer(), Some(2));
        let o = Override::parse("services.nope.instances=2").unwrap();
        let e = apply_override(&mut t, &o, &["services"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--set services.nope.instances=2: `services` has no entry named `nope` (names: api, web; or an index from 0 to 1)"
        );
    }
}
