//! Priority, kind and class assignment rules for imported requests.
//!
//! A rules file is TOML with an ordered list of `[[rule]]` tables. Each rule
//! has matchers (all must match) and actions; for each of priority, kind and
//! class, the first matching rule that sets it wins. Unmatched requests get
//! priority `normal`, the kind inferred from the statement (see
//! [`infer_kind`]) and no class.
//!
//! ```toml
//! [[rule]]
//! application = "^billing"   # regex on application_name (OTel: service.name)
//! priority = "high"
//!
//! [[rule]]
//! query = "(?i)^\\s*select .* for update"   # regex on the SQL text
//! kind = "write"
//!
//! [[rule]]
//! query_id = ["-4732513739109105055", "7660508830961861980"]  # exact
//! class = "updates"
//!
//! [[rule]]
//! user = "^report"           # regex on the user name
//! database = "^analytics$"   # regex on the database name
//! priority = "low"
//! ```
//!
//! Matchers: `application`, `user`, `database`, `query`, `command` (the
//! command tag, e.g. `SELECT`), `conn` (regexes); `query_id` (a string or a
//! list, exact); `script` (pgbench script number, exact). Actions:
//! `priority` (high, normal, low), `kind` (read, write), `class` (a label).

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use super::error::TraceError;
use super::record::{parse_kind, parse_priority};
use crate::config::{line_col, Document};
use crate::core::request::{Kind, Priority};

/// What a request looks like to the rules. Empty means unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attrs<'a> {
    pub application: &'a [u8],
    pub user: &'a [u8],
    pub database: &'a [u8],
    pub query: &'a [u8],
    pub command: &'a [u8],
    pub conn: &'a [u8],
    pub query_id: &'a [u8],
    pub script: &'a [u8],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<RuleRaw>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRaw {
    application: Option<String>,
    user: Option<String>,
    database: Option<String>,
    query: Option<String>,
    command: Option<String>,
    conn: Option<String>,
    query_id: Option<OneOrMany>,
    script: Option<OneOrMany>,
    priority: Option<String>,
    kind: Option<String>,
    class: Option<String>,
}

#[derive(Clone, Debug)]
struct Rule {
    regexes: Vec<(Field, Regex)>,
    query_ids: Vec<String>,
    scripts: Vec<String>,
    priority: Option<Priority>,
    kind: Option<Kind>,
    class: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Application,
    User,
    Database,
    Query,
    Command,
    Conn,
}

/// A validated, ordered rule list.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Where the rules came from (for reports).
    pub origin: String,
    /// A hash of the rules' text (two rule sets are equal when their
    /// origin and text are).
    fingerprint: u64,
}

impl PartialEq for Rules {
    fn eq(&self, other: &Self) -> bool {
        self.origin == other.origin && self.fingerprint == other.fingerprint
    }
}

/// What the rules decided for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'r> {
    pub priority: Priority,
    pub kind: Kind,
    pub class: Option<&'r str>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn sets_class(&self) -> bool {
        self.rules.iter().any(|r| r.class.is_some())
    }

    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<Rules, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|e| TraceError::read(path, e))?;
        Rules::parse(&Document::new(path.display().to_string(), text))
    }

    /// Parses rules from a document; errors name the file, line and key.
    pub fn parse(doc: &Document) -> Result<Rules, TraceError> {
        let at = |span: Option<std::ops::Range<usize>>| -> (u64, Option<usize>) {
            match span {
                Some(s) => {
                    let (l, c) = line_col(&doc.text, s.start);
                    (l as u64, Some(c))
                }
                None => (0, None),
            }
        };
        let raw: RulesFile = toml::from_str(&doc.text).map_err(|e| {
            let (line, col) = at(e.span());
            TraceError::bad(
                &doc.name,
                line.max(1),
                col,
                "rule",
                e.message().trim().to_string(),
            )
        })?;
        // Rule i starts at the i-th `[[rule]]` header.
        let starts: Vec<usize> = doc
            .text
            .match_indices("[[rule]]")
            .map(|(i, _)| line_col(&doc.text, i).0)
            .collect();
        let mut rules = Vec::new();
        for (i, r) in raw.rule.into_iter().enumerate() {
            let line = starts.get(i).copied().unwrap_or(1) as u64;
            let bad = |key: &str, msg: String| {
                TraceError::bad(&doc.name, line, None, format!("rule[{}].{key}", i + 1), msg)
            };
            let mut regexes = Vec::new();
            for (field, key, v) in [
                (Field::Application, "application", &r.application),
                (Field::User, "user", &r.user),
                (Field::Database, "database", &r.database),
                (Field::Query, "query", &r.query),
                (Field::Command, "command", &r.command),
                (Field::Conn, "conn", &r.conn),
            ] {
                if let Some(p) = v {
                    let re =
                        Regex::new(p).map_err(|e| bad(key, format!("not a valid regex: {e}")))?;
                    regexes.push((field, re));
                }
            }
            let list = |v: Option<OneOrMany>| match v {
                None => Vec::new(),
                Some(OneOrMany::One(s)) => vec![s],
                Some(OneOrMany::Many(v)) => v,
            };
            let priority = match &r.priority {
                Some(p) => Some(parse_priority(p.as_bytes()).ok_or_else(|| {
                    bad(
                        "priority",
                        format!("unknown priority `{p}` (expected high, normal or low)"),
                    )
                })?),
                None => None,
            };
            let kind = match &r.kind {
                Some(k) => Some(parse_kind(k.as_bytes()).ok_or_else(|| {
                    bad(
                        "kind",
                        format!("unknown kind `{k}` (expected read or write)"),
                    )
                })?),
                None => None,
            };
            if priority.is_none() && kind.is_none() && r.class.is_none() {
                return Err(bad(
                    "priority",
                    "the rule sets nothing: give priority, kind or class".into(),
                ));
            }
            rules.push(Rule {
                regexes,
                query_ids: list(r.query_id),
                scripts: list(r.script),
                priority,
                kind,
                class: r.class,
            });
        }
        // FNV-1a: stable, no random keys.
        let fingerprint = doc.text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        });
        Ok(Rules {
            rules,
            origin: doc.name.clone(),
            fingerprint,
        })
    }

    /// Applies the rules to one request.
    pub fn decide(&self, a: &Attrs) -> Decision<'_> {
        let mut d = Decision {
            priority: Priority::Normal,
            kind: Kind::Read,
            class: None,
        };
        let (mut p_set, mut k_set) = (false, false);
        for r in &self.rules {
            if (p_set || r.priority.is_none())
                && (k_set || r.kind.is_none())
                && (d.class.is_some() || r.class.is_none())
            {
                continue;
            }
            if !r.matches(a) {
                continue;
            }
            if let (false, Some(p)) = (p_set, r.priority) {
                d.priority = p;
                p_set = true;
            }
            if let (false, Some(k)) = (k_set, r.kind) {
                d.kind = k;
                k_set = true;
            }
            if d.class.is_none() {
                d.class = r.class.as_deref();
            }
        }
        if !k_set {
            d.kind = infer_kind(a.command, a.query);
        }
        d
    }
}

impl Rule {
    fn matches(&self, a: &Attrs) -> bool {
        for (f, re) in &self.regexes {
            let v = match f {
                Field::Application => a.application,
                Field::User => a.user,
                Field::Database => a.database,
                Field::Query => a.query,
                Field::Command => a.command,
                Field::Conn => a.conn,
            };
            let s = String::from_utf8_lossy(v);
            if !re.is_match(&s) {
                return false;
            }
        }
        if !self.query_ids.is_empty() && !self.query_ids.iter().any(|q| q.as_bytes() == a.query_id)
        {
            return false;
        }
        if !self.scripts.is_empty() && !self.scripts.iter().any(|q| q.as_bytes() == a.script) {
            return false;
        }
        true
    }
}

/// Statements that change data or schema.
const WRITE_WORDS: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "COPY",
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "VACUUM",
    "ANALYZE",
    "CLUSTER",
    "REINDEX",
    "REFRESH",
    "LOCK",
    "CALL",
    "COMMENT",
    "SECURITY",
    "IMPORT",
    "LISTEN",
    "NOTIFY",
    "PREPARE TRANSACTION",
];

/// The default kind of a statement: `write` for INSERT, UPDATE, DELETE,
/// MERGE, COPY, DDL, VACUUM and the like, for `SELECT ... FOR UPDATE/SHARE`
/// and for a `WITH` that contains a data-changing statement; `read` for
/// everything else (SELECT, SHOW, BEGIN, COMMIT, SET, ...). The command tag
/// decides when it is known (csvlog, jsonlog, `%i`), else the SQL text.
pub fn infer_kind(command: &[u8], sql: &[u8]) -> Kind {
    let tag = trim_start(command);
    if !tag.is_empty() && !matches!(tag, b"PARSE" | b"BIND" | b"idle") {
        if starts_with_ci(tag, b"SELECT") {
            return if has_locking_clause(sql) {
                Kind::Write
            } else {
                Kind::Read
            };
        }
        if WRITE_WORDS
            .iter()
            .any(|w| starts_with_ci(tag, w.as_bytes()))
        {
            return Kind::Write;
        }
        if !starts_with_ci(tag, b"WITH") {
            return Kind::Read;
        }
    }
    let s = trim_start(sql);
    let end = s
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(s.len());
    let first = &s[..end];
    let is = |w: &[u8]| first.eq_ignore_ascii_case(w);
    if is(b"SELECT") || is(b"WITH") || is(b"VALUES") || is(b"TABLE") {
        if is(b"WITH") && contains_word_ci(s, &["INSERT", "UPDATE", "DELETE", "MERGE"]) {
            return Kind::Write;
        }
        return if has_locking_clause(s) {
            Kind::Write
        } else {
            Kind::Read
        };
    }
    if WRITE_WORDS.iter().any(|w| is(w.as_bytes())) {
        return Kind::Write;
    }
    Kind::Read
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn trim_start(b: &[u8]) -> &[u8] {
    let i = b
        .iter()
        .position(|c| !c.is_ascii_whitespace() && *c != b'(')
        .unwrap_or(b.len());
    &b[i..]
}

fn has_locking_clause(sql: &[u8]) -> bool {
    // Cheap test first: no " FOR " (any case), no locking clause.
    if !sql
        .windows(5)
        .any(|w| w.eq_ignore_ascii_case(b" for ") || w.eq_ignore_ascii_case(b"\nfor "))
    {
        return false;
    }
    let upper = String::from_utf8_lossy(sql).to_ascii_uppercase();
    upper.contains("FOR UPDATE")
        || upper.contains("FOR SHARE")
        || upper.contains("FOR NO KEY UPDATE")
        || upper.contains("FOR KEY SHARE")
}

fn contains_word_ci(sql: &[u8], words: &[&str]) -> bool {
    let upper = String::from_utf8_lossy(sql).to_ascii_uppercase();
    upper
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| words.contains(&w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Rules, String> {
        Rules::parse(&Document::new("r.toml", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn first_matching_rule_wins_per_action() {
        let r = rules(
            "[[rule]]\napplication = \"^billing\"\npriority = \"high\"\n\
             [[rule]]\nquery_id = [\"42\"]\nclass = \"q42\"\npriority = \"low\"\n\
             [[rule]]\nuser = \"report\"\nkind = \"write\"\n",
        )
        .unwrap();
        let a = Attrs {
            application: b"billing-api",
            query_id: b"42",
            query: b"select 1",
            ..Default::default()
        };
        let d = r.decide(&a);
        assert_eq!(d.priority, Priority::High);
        assert_eq!(d.class, Some("q42"));
        assert_eq!(d.kind, Kind::Read);
        let d = r.decide(&Attrs {
            user: b"reporting",
            query: b"select 1",
            ..Default::default()
        });
        assert_eq!(
            (d.priority, d.kind, d.class),
            (Priority::Normal, Kind::Write, None)
        );
    }

    #[test]
    fn bad_rules_name_file_line_and_key() {
        assert_eq!(
            rules("[[rule]]\npriority = \"high\"\n[[rule]]\nquery = \"(\"\npriority = \"low\"\n").unwrap_err(),
            "r.toml:3: field `rule[2].query`: not a valid regex: regex parse error:\n    (\n    ^\nerror: unclosed group"
        );
        assert_eq!(
            rules("[[rule]]\npriority = \"urgent\"\n").unwrap_err(),
            "r.toml:1: field `rule[1].priority`: unknown priority `urgent` (expected high, normal or low)"
        );
        assert!(rules("[[rule]]\ncolour = \"x\"\n")
            .unwrap_err()
            .starts_with("r.toml:2:1: field `rule`: unknown field `colour`"));
        assert!(rules("[[rule]]\nuser = \"x\"\n")
            .unwrap_err()
            .contains("sets nothing"));
    }

    #[test]
    fn kinds_from_tags_and_sql() {
        assert_eq!(infer_kind(b"UPDATE", b""), Kind::Write);
        assert_eq!(infer_kind(b"SELECT", b"select 1"), Kind::Read);
        assert_eq!(
            infer_kind(b"SELECT", b"select * from t for update"),
            Kind::Write
        );
        assert_eq!(infer_kind(b"BEGIN", b"BEGIN"), Kind::Read);
        assert_eq!(infer_kind(b"", b"  insert into t values (1)"), Kind::Write);
        assert_eq!(
            infer_kind(
                b"",
                b"with x as (delete from t returning *) select * from x"
            ),
            Kind::Write
        );
        assert_eq!(
            infer_kind(b"", b"WITH x AS (SELECT 1) SELECT * FROM x"),
            Kind::Read
        );
        assert_eq!(infer_kind(b"PARSE", b"UPDATE t SET a = 1"), Kind::Write);
        assert_eq!(infer_kind(b"", b"END;"), Kind::Read);
        assert_eq!(infer_kind(b"", b"vacuum pgbench_branches"), Kind::Write);
    }
}
