//! Opening trace inputs: plain, gzip or bzip2 (detected by their magic bytes,
//! not the file name), read through a buffered stream; and a line reader
//! that counts lines for error messages.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::error::TraceError;

/// Compression of an input, detected from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }
}

const BUF: usize = 1 << 20;

/// A buffered, decompressed input stream.
pub type Input = Box<dyn BufRead + Send>;

/// Opens `path` (`-` is standard input) and decompresses gzip (including
/// concatenated members, as `gzip` writes for appended logs) and bzip2
/// (including multi-stream files, as `pbzip2` writes) transparently.
pub fn open(path: &Path) -> Result<Input, TraceError> {
    let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        let f = File::open(path).map_err(|e| TraceError::read(path, e))?;
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(TraceError::read(
                path,
                std::io::Error::other("is a directory, not a trace file"),
            ));
        }
        Box::new(f)
    };
    wrap(raw).map_err(|e| TraceError::read(path, e))
}

/// Wraps a raw stream, detecting compression from its first bytes.
pub fn wrap(raw: Box<dyn Read + Send>) -> std::io::Result<Input> {
    let mut br = BufReader::with_capacity(BUF, raw);
    let head = br.fill_buf()?;
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(br),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUF,
            flate2::bufread::MultiGzDecoder::new(br),
        )),
        Compression::Bzip2 => Box::new(BufReader::with_capacity(
            BUF,
            bzip2::bufread::MultiBzDecoder::new(br),
        )),
    })
}

/// Reads the first `n` bytes of a (decompressed) file, for format detection.
pub fn head(path: &Path, n: usize) -> Result<Vec<u8>, TraceError> {
    let input = open(path)?;
    let mut out = Vec::with_capacity(n);
    input
        .take(n as u64)
        .read_to_end(&mut out)
        .map_err(|e| TraceError::read(path, e))?;
    Ok(out)
}

/// Lines of an input, with their 1-based numbers; `\n` and `\r\n` endings
/// are stripped. Invalid UTF-8 is left to the parsers (they work on bytes).
pub struct LineReader {
    input: Input,
    /// Display name of the file, for messages.
    pub name: String,
    path: std::path::PathBuf,
    buf: Vec<u8>,
    /// Number of the line last returned (0 before the first).
    pub line: u64,
}

impl LineReader {
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        Ok(LineReader::new(open(path)?, path))
    }

    pub fn new(input: Input, path: &Path) -> Self {
        LineReader {
            input,
            name: path.display().to_string(),
            path: path.to_path_buf(),
            buf: Vec::with_capacity(4096),
            line: 0,
        }
    }

    /// The next line (without its ending), or `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, TraceError> {
        self.buf.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| TraceError::read(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        strip_eol(&mut self.buf);
        Ok(Some(&self.buf))
    }

    /// The next line with its 1-based number.
    pub fn next_numbered(&mut self) -> Result<Option<(u64, &[u8])>, TraceError> {
        self.buf.clear();
        let n = self
            .input
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| TraceError::read(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        strip_eol(&mut self.buf);
        Ok(Some((self.line, &self.buf)))
    }

    /// Appends the next physical line (with its `\n`) to `out`, for records
    /// that span lines (quoted CSV fields). Returns false at the end.
    pub fn append_line(&mut self, out: &mut Vec<u8>) -> Result<bool, TraceError> {
        let n = self
            .input
            .read_until(b'\n', out)
            .map_err(|e| TraceError::read(&self.path, e))?;
        if n > 0 {
            self.line += 1;
        }
        Ok(n > 0)
    }

    /// The underlying stream (for parsers that read the rest themselves).
    pub fn into_input(self) -> Input {
        self.input
    }
}

/// Strips a trailing `\n` or `\r\n`.
pub fn strip_eol(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reader(bytes: Vec<u8>) -> LineReader {
        LineReader::new(
            wrap(Box::new(std::io::Cursor::new(bytes))).unwrap(),
            Path::new("mem"),
        )
    }

    fn lines(mut r: LineReader) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(String::from_utf8(l.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn plain_gzip_and_bzip2_read_the_same_lines() {
        let text = b"a,b\r\n1,2\n3,4".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&text).unwrap();
        let bz = bz.finish().unwrap();
        let want = vec!["a,b", "1,2", "3,4"];
        assert_eq!(lines(reader(text)), want);
        assert_eq!(lines(reader(gz)), want);
        assert_eq!(lines(reader(bz)), want);
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut all = Vec::new();
        for part in [b"x\n".as_slice(), b"y\n"] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            all.extend(gz.finish().unwrap());
        }
        assert_eq!(lines(reader(all)), vec!["x", "y"]);
    }

    #[test]
    fn a_truncated_gzip_is_an_error_not_a_panic() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[b'z'; 10_000]).unwrap();
        let mut gz = gz.finish().unwrap();
        gz.truncate(gz.len() / 2);
        let mut r = reader(gz);
        let mut err = false;
        for _ in 0..10 {
            match r.next_line() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert!(e.to_string().starts_with("mem: cannot read"), "{e}");
                    err = true;
                    break;
                }
            }
        }
        assert!(err, "a truncated gzip stream must be reported");
    }
}
