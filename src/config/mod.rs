//! Config loading in two layers: TOML text -> serde "raw" structs
//! (`deny_unknown_fields`) -> validated domain types.
//!
//! Every error names the file, the line and column, the key, and what was
//! expected. Values set with `--set key=value` are reported as such.

pub mod duration;
pub mod policy;
pub mod scenario;
pub mod workload;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, Origin};

/// A config document: its display name (a path, or `name (built-in)`) and text.
#[derive(Debug, Clone)]
pub struct Document {
    pub name: String,
    pub text: String,
}

impl Document {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Document {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Reads a file; the error names the path.
    pub fn read(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Document::new(path.display().to_string(), text))
    }
}

/// One `--set key=value` override: a dotted key path and a TOML value.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub path: Vec<String>,
    pub value: toml::Value,
    /// The assignment as typed, for messages.
    pub assignment: String,
}

impl Override {
    /// Parses `key.path=value`. The value is read as TOML (`0.7`, `true`,
    /// `"x"`); anything that is not valid TOML is taken as a string, so
    /// `timeout=2.5s` works without quotes.
    pub fn parse(assignment: &str) -> Result<Self, ConfigError> {
        let bad = |message: &str| ConfigError::BadOverride {
            assignment: assignment.to_string(),
            message: message.to_string(),
        };
        let (key, raw) = assignment
            .split_once('=')
            .ok_or_else(|| bad("expected key=value, e.g. resize.scale_up=0.7"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad("the key before `=` is empty"));
        }
        let path: Vec<String> = key.split('.').map(|s| s.trim().to_string()).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(bad(
                "the key has an empty segment (two dots, or a leading/trailing dot)",
            ));
        }
        let raw = raw.trim();
        let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
            Ok(mut t) => t
                .remove("v")
                .unwrap_or_else(|| toml::Value::String(raw.to_string())),
            Err(_) => toml::Value::String(raw.to_string()),
        };
        Ok(Override {
            path,
            value,
            assignment: assignment.to_string(),
        })
    }
}

/// Resolves error locations for one document and its overrides.
pub struct Locator<'a> {
    doc: &'a Document,
    overrides: &'a [Override],
}

impl<'a> Locator<'a> {
    pub fn new(doc: &'a Document, overrides: &'a [Override]) -> Self {
        Locator { doc, overrides }
    }

    pub fn file(&self) -> &str {
        &self.doc.name
    }

    /// Where `key` (dotted) was given: an override, a line in the file, or the
    /// file as a whole when the key is absent (a missing key, a default).
    pub fn origin(&self, key: &str) -> Origin {
        let segs: Vec<&str> = key.split('.').collect();
        // The most specific override that covers the key wins.
        if let Some(o) =
            self.overrides.iter().rev().find(|o| {
                o.path.len() <= segs.len() && o.path.iter().zip(&segs).all(|(a, b)| a == b)
            })
        {
            return Origin::Override {
                file: self.doc.name.clone(),
                assignment: o.assignment.clone(),
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

    /// An `Invalid` error for `key` with `message` (what was expected, what was found).
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(key),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// An `Invalid` error for `key` that breaks a constraint with the
    /// `related` keys (e.g. `size.min` against `size.max`): when `key` or one
    /// of them was set with `--set`, the error names that override, since it
    /// made the combination invalid. Otherwise as [`Locator::invalid`].
    pub fn invalid_related(
        &self,
        key: &str,
        related: &[&str],
        message: impl Into<String>,
    ) -> ConfigError {
        invalid_related(|k| self.origin(k), key, related, message)
    }
}

/// An `Invalid` error for `key`, located by `origin`: when `key` or one of
/// the `related` keys was set by an override, the error names that
/// override (it made the combination invalid).
pub(crate) fn invalid_related(
    origin: impl Fn(&str) -> Origin,
    key: &str,
    related: &[&str],
    message: impl Into<String>,
) -> ConfigError {
    let at = std::iter::once(key)
        .chain(related.iter().copied())
        .map(&origin)
        .find(|o| matches!(o, Origin::Override { .. }))
        .unwrap_or_else(|| origin(key));
    ConfigError::Invalid {
        origin: at,
        key: key.to_string(),
        message: message.into(),
    }
}

/// A TOML syntax error in `doc`, at its line and column.
pub(crate) fn syntax_error(doc: &Document, e: &toml::de::Error) -> ConfigError {
    let origin = match e.span() {
        Some(span) => {
            let (line, column) = line_col(&doc.text, span.start);
            Origin::File {
                file: doc.name.clone(),
                line,
                column,
            }
        }
        None => Origin::WholeFile {
            file: doc.name.clone(),
        },
    };
    let mut message = e.message().trim().to_string();
    // toml does not say which key is repeated; its span does.
    if message == "duplicate key" {
        let key = e.span().and_then(|span| doc.text.get(span));
        if let Some(key) = key.filter(|k| !k.trim().is_empty() && !k.contains('\n')) {
            message = format!("duplicate key `{}`", key.trim());
        }
    }
    ConfigError::Syntax { origin, message }
}

/// Byte offset of the deepest key of `segs` that exists in `text`: the key
/// itself or, when it is absent, the table it belongs in (`None` when not
/// even the top-level key is there).
fn locate(text: &str, segs: &[&str]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut found = None;
    for seg in segs {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *seg) else {
            break;
        };
        found = Some(k.span().start);
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

/// Parses `doc`, applies `overrides` whose first segment is accepted by
/// `owns`, and deserializes a raw struct. Returns the raw value and the
/// effective table (file + overrides), used for hashing and reports.
pub fn deserialize<R: DeserializeOwned>(
    doc: &Document,
    overrides: &[Override],
) -> Result<(R, toml::Table), ConfigError> {
    let mut table: toml::Table = toml::from_str(&doc.text).map_err(|e| syntax_error(doc, &e))?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    let locator = Locator::new(doc, overrides);
    let value = toml::Value::Table(table.clone());
    let raw: R = serde_path_to_error::deserialize(value).map_err(|e| {
        let mut key: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
        let message = e.inner().message().trim().to_string();
        // An unknown key is already the path's last segment. A missing key is
        // named only in the message: append it, so the error names the whole
        // key and points at the table it belongs in.
        let message = match missing_field(&message) {
            Some(field) => {
                key.push(field.to_string());
                "required key is missing".to_string()
            }
            None => readable(&message),
        };
        locator.invalid(&key.join("."), message)
    })?;
    Ok((raw, table))
}

pub(crate) fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// serde's messages name Rust types ("expected u32", "expected struct
/// SizeRaw"); say what to write in the file instead.
pub(crate) fn readable(message: &str) -> String {
    let mut m = message
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected u64", "expected a whole number >= 0")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected an array");
    if let Some(i) = m.find("expected struct ") {
        m.replace_range(i.., "expected a table");
    }
    m
}

fn apply_override(table: &mut toml::Table, o: &Override) -> Result<(), ConfigError> {
    let mut t = table;
    let (last, parents) = o.path.split_last().expect("override paths are non-empty");
    for seg in parents {
        let entry = t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::BadOverride {
                    assignment: o.assignment.clone(),
                    message: format!("`{seg}` is a value, not a table, so it has no key below it"),
                })
            }
        };
    }
    t.insert(last.clone(), o.value.clone());
    Ok(())
}

/// A short stable hash (16 hex digits of SHA-256) of a config's effective
/// content, as canonical JSON. Two configs with the same hash behave the same.
pub fn content_hash<T: serde::Serialize>(value: &T) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(value).expect("config values serialize to JSON");
    let digest = Sha256::digest(&json);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
    }

    #[test]
    fn locate_finds_nested_keys() {
        let t = "name = \"x\"\n[resize]\nkind = \"threshold\"\nscale_up = 0.8\n";
        let d = Document::new("p.toml", t);
        let l = Locator::new(&d, &[]);
        assert_eq!(l.origin("resize.scale_up").to_string(), "p.toml:4:1");
        assert_eq!(l.origin("resize").to_string(), "p.toml:2:2");
        assert_eq!(l.origin("size.max").to_string(), "p.toml");
    }

    #[test]
    fn override_values_are_toml_or_strings() {
        let o = Override::parse("resize.scale_up=0.7").unwrap();
        assert_eq!(o.path, vec!["resize", "scale_up"]);
        assert_eq!(o.value, toml::Value::Float(0.7));
        let o = Override::parse("acquire_timeout.low = 2.5s").unwrap();
        assert_eq!(o.value, toml::Value::String("2.5s".into()));
        assert!(Override::parse("novalue").is_err());
        assert!(Override::parse("a..b=1").is_err());
        assert!(Override::parse("=1").is_err());
    }
}
