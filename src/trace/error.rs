//! Trace errors: every one names the file and, for malformed input, the
//! line and the field, and says what was expected.

use std::path::PathBuf;

use crate::config::{Document, Locator, Override};
use crate::error::{ConfigError, Origin};

/// An error reading, importing, transforming or writing a trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read (or decompressed).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed line: the file, the 1-based line, the field (a column
    /// name, a JSON key, or a part of a log line) and what was expected.
    #[error("{file}:{line}{}: field `{field}`: {message}", column.map(|c| format!(":{c}")).unwrap_or_default())]
    Bad {
        file: String,
        line: u64,
        /// 1-based column (the CSV field number, or the character column)
        /// when it is known.
        column: Option<usize>,
        field: String,
        message: String,
    },
    /// The file as a whole is unusable (empty, unknown format, no request).
    #[error("{file}: {message}")]
    File { file: String, message: String },
    /// Options that do not fit together (a bad rule, window or scale).
    #[error("{0}")]
    Invalid(String),
}

impl TraceError {
    pub fn bad(
        file: &str,
        line: u64,
        column: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TraceError::Bad {
            file: file.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        TraceError::File {
            file: file.into(),
            message: message.into(),
        }
    }

    pub fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TraceError::Read {
            path: path.into(),
            source,
        }
    }

    /// True for errors about the data (exit code 3), false for I/O (4).
    pub fn is_io(&self) -> bool {
        matches!(self, TraceError::Read { .. } | TraceError::Write { .. })
    }

    /// This error as a workload error: a trace named by a workload file's
    /// `key` (`arrivals.path`) is reported at that key, with the trace's own
    /// file, line and field in the message. An I/O error stays an I/O error.
    pub fn into_config(self, doc: &Document, overrides: &[Override], key: &str) -> ConfigError {
        match self {
            TraceError::Read { path, source } => ConfigError::Read { path, source },
            other => Locator::new(doc, overrides).invalid(key, format!("trace {other}")),
        }
    }

    /// This error as a config error located in the trace itself (when the
    /// trace was given directly, e.g. `sim run --trace rate200.csv`).
    pub fn into_config_direct(self) -> ConfigError {
        match self {
            TraceError::Read { path, source } => ConfigError::Read { path, source },
            TraceError::Bad {
                file,
                line,
                column,
                field,
                message,
            } => ConfigError::Invalid {
                origin: match column {
                    Some(column) => Origin::File {
                        file,
                        line: line as usize,
                        column,
                    },
                    None => Origin::WholeFile {
                        file: format!("{file}:{line}"),
                    },
                },
                key: field,
                message,
            },
            TraceError::File { file, message } => ConfigError::Invalid {
                origin: Origin::WholeFile { file },
                key: "trace".to_string(),
                message,
            },
            TraceError::Write { path, source } => ConfigError::Read { path, source },
            TraceError::Invalid(message) => ConfigError::Invalid {
                origin: Origin::WholeFile {
                    file: "(trace options)".to_string(),
                },
                key: "trace".to_string(),
                message,
            },
        }
    }
}

/// A shortened, printable excerpt of raw input for messages: at most 40
/// characters, invalid UTF-8 replaced, control characters escaped.
pub fn excerpt(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 40 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_file_line_column_and_field() {
        let e = TraceError::bad("t.csv", 12, Some(2), "service_ns", "expected a number");
        assert_eq!(
            e.to_string(),
            "t.csv:12:2: field `service_ns`: expected a number"
        );
        let e = TraceError::bad("t.log", 3, None, "duration", "x");
        assert_eq!(e.to_string(), "t.log:3: field `duration`: x");
    }

    #[test]
    fn excerpt_is_short_and_printable() {
        assert_eq!(excerpt(b"a\tb"), "a\\tb");
        assert_eq!(excerpt(&[0xff, b'x']), "\u{fffd}x");
        assert_eq!(excerpt(&[b'y'; 50]).chars().count(), 41);
    }
}
