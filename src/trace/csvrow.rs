//! A fast RFC-4180 record reader for the trace hot paths (csvlog at more than
//! a million lines per second, canonical CSV replay): a record is one or
//! more physical lines (a quoted field may hold newlines), split into
//! unescaped fields held in one reusable buffer.

use super::error::{excerpt, TraceError};
use super::input::{strip_eol, LineReader};

/// One parsed CSV record. The record's bytes live in the row; a field is a
/// span of them, or (when it holds `""` escapes) of an unescaped copy.
#[derive(Default, Debug)]
pub struct CsvRow {
    raw: Vec<u8>,
    buf: Vec<u8>,
    /// (start, end, in `buf`) per field.
    spans: Vec<(usize, usize, bool)>,
}

/// Why a record could not be split: the 1-based field number and the problem.
#[derive(Debug, PartialEq, Eq)]
pub struct RowError {
    pub field: usize,
    pub message: String,
}

impl CsvRow {
    pub fn new() -> Self {
        CsvRow::default()
    }

    /// Number of fields.
    #[inline]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Field `i` (0-based), or an empty slice past the end.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        match self.spans.get(i) {
            Some(&(s, e, false)) => &self.raw[s..e],
            Some(&(s, e, true)) => &self.buf[s..e],
            None => &[],
        }
    }

    /// The buffer to read the next record into (then call [`CsvRow::parse_raw`]).
    pub fn raw_mut(&mut self) -> &mut Vec<u8> {
        &mut self.raw
    }

    /// The record's bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Splits `rec` (one whole record, without its final line ending).
    pub fn parse(&mut self, rec: &[u8]) -> Result<(), RowError> {
        self.raw.clear();
        self.raw.extend_from_slice(rec);
        self.parse_raw()
    }

    /// Splits the record held in [`CsvRow::raw_mut`].
    pub fn parse_raw(&mut self) -> Result<(), RowError> {
        self.buf.clear();
        self.spans.clear();
        let rec = &self.raw;
        let mut i = 0;
        let n = rec.len();
        loop {
            let field = self.spans.len() + 1;
            if i < n && rec[i] == b'"' {
                // Quoted: runs to the closing quote; `""` is one quote.
                i += 1;
                let start = i;
                let mut escaped = false;
                let mut copied_from = 0;
                loop {
                    match memchr::memchr(b'"', &rec[i..]) {
                        None => {
                            return Err(RowError {
                                field,
                                message: "a quoted field is not closed (truncated line?)"
                                    .to_string(),
                            })
                        }
                        Some(j) => {
                            let q = i + j;
                            if q + 1 < n && rec[q + 1] == b'"' {
                                if !escaped {
                                    escaped = true;
                                    copied_from = self.buf.len();
                                    self.buf.extend_from_slice(&rec[start..q + 1]);
                                } else {
                                    self.buf.extend_from_slice(&rec[i..q + 1]);
                                }
                                i = q + 2;
                            } else {
                                if escaped {
                                    self.buf.extend_from_slice(&rec[i..q]);
                                    self.spans.push((copied_from, self.buf.len(), true));
                                } else {
                                    self.spans.push((start, q, false));
                                }
                                i = q + 1;
                                break;
                            }
                        }
                    }
                }
                if i == n {
                    return Ok(());
                }
                if rec[i] != b',' {
                    return Err(RowError {
                        field,
                        message: format!(
                            "unexpected `{}` after the closing quote (expected `,`)",
                            excerpt(&rec[i..i + 1])
                        ),
                    });
                }
                i += 1;
            } else {
                match memchr::memchr(b',', &rec[i..]) {
                    Some(j) => {
                        self.spans.push((i, i + j, false));
                        i += j + 1;
                    }
                    None => {
                        self.spans.push((i, n, false));
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Reads one whole CSV record (joining physical lines while a quoted field
/// is open) into `raw`, without its final line ending. Returns the 1-based
/// line the record starts on, or `None` at the end of the input.
///
/// `max_lines` bounds a record (an unclosed quote must not swallow the
/// rest of a huge file): past it, the record is returned as it is and the
/// caller's parse reports the unclosed quote.
pub fn read_record(
    lines: &mut LineReader,
    raw: &mut Vec<u8>,
    max_lines: usize,
) -> Result<Option<u64>, TraceError> {
    raw.clear();
    if !lines.append_line(raw)? {
        return Ok(None);
    }
    let start = lines.line;
    let mut quotes = memchr::memchr_iter(b'"', raw).count();
    let mut joined = 1;
    while quotes % 2 == 1 && joined < max_lines {
        let before = raw.len();
        if !lines.append_line(raw)? {
            break;
        }
        quotes += memchr::memchr_iter(b'"', &raw[before..]).count();
        joined += 1;
    }
    strip_eol(raw);
    Ok(Some(start))
}

/// Appends `field` to `out`, quoted when it holds a comma, quote, line
/// break or leading `#`.
pub fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    let needs = field.first() == Some(&b'#')
        || field
            .iter()
            .any(|&c| c == b',' || c == b'"' || c == b'\n' || c == b'\r');
    if !needs {
        out.extend_from_slice(field);
        return;
    }
    out.push(b'"');
    for &c in field {
        if c == b'"' {
            out.push(b'"');
        }
        out.push(c);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields(line: &str) -> Vec<String> {
        let mut r = CsvRow::new();
        r.parse(line.as_bytes()).unwrap();
        (0..r.len())
            .map(|i| String::from_utf8(r.get(i).to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn splits_quoted_and_plain_fields() {
        assert_eq!(fields("a,b,,c"), vec!["a", "b", "", "c"]);
        assert_eq!(
            fields("\"x,y\",\"say \"\"hi\"\"\","),
            vec!["x,y", "say \"hi\"", ""]
        );
        assert_eq!(fields(""), vec![""]);
        assert_eq!(fields("\"a\nb\",c"), vec!["a\nb", "c"]);
    }

    #[test]
    fn malformed_quotes_name_the_field() {
        let mut r = CsvRow::new();
        let e = r.parse(b"a,\"open").unwrap_err();
        assert_eq!(e.field, 2);
        let e = r.parse(b"a,\"x\"y,b").unwrap_err();
        assert_eq!(e.field, 2);
        assert!(
            e.message.contains("after the closing quote"),
            "{}",
            e.message
        );
    }

    #[test]
    fn push_field_round_trips() {
        for f in ["plain", "a,b", "q\"q", "line\nbreak", "#hash", ""] {
            let mut out = Vec::new();
            push_field(&mut out, f.as_bytes());
            out.extend_from_slice(b",z");
            assert_eq!(fields(std::str::from_utf8(&out).unwrap()), vec![f, "z"]);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut r = CsvRow::new();
            let _ = r.parse(&bytes);
            for i in 0..r.len() + 2 {
                let _ = r.get(i);
            }
        }

        #[test]
        fn written_fields_read_back(fs in proptest::collection::vec(".*", 1..6)) {
            let mut out = Vec::new();
            for (i, f) in fs.iter().enumerate() {
                if i > 0 { out.push(b','); }
                push_field(&mut out, f.as_bytes());
            }
            let mut r = CsvRow::new();
            r.parse(&out).unwrap();
            prop_assert_eq!(r.len(), fs.len());
            for (i, f) in fs.iter().enumerate() {
                prop_assert_eq!(r.get(i), f.as_bytes());
            }
        }
    }
}
