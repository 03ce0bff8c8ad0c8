//! A recorded trace prepared for `sim run`: a canonical file is read once to
//! check it (every error names file, line and field before any simulation
//! starts) and to learn its size, span and mixes; a log in any importable
//! format is first imported to a temporary canonical file. Preparations are
//! cached per process (a sweep loads the same trace many times).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::canonical::{CanonicalReader, Encoding};
use super::error::TraceError;
use super::import::{self, Format, ImportOptions};
use super::record::TraceRecord;
use super::RecordStream;

/// What reading a canonical trace once found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceFileInfo {
    /// The format of the file given (`canonical`, `csvlog`, `pgbench`, ...).
    pub format: String,
    /// 16 hex digits of SHA-256 over every request's arrival, service,
    /// priority and kind: the same requests give the same hash, whatever
    /// the encoding or compression.
    pub requests_hash: String,
    pub requests: u64,
    /// Malformed lines skipped (by the import and by this read) with `skip_bad`.
    pub skipped_lines: u64,
    pub first_arrival_ns: u64,
    pub last_arrival_ns: u64,
    pub service_mean_ns: f64,
    /// Requests per priority: high, normal, low.
    pub priority_counts: [u64; 3],
    pub writes: u64,
    pub time_resolution_ns: u64,
    pub start_unix_ns: Option<i64>,
    /// What produced the trace (from its header).
    pub source: String,
    /// The trace has arrivals only (its service times are 0).
    pub no_service: bool,
}

impl TraceFileInfo {
    /// Arrival rate over the trace's span (requests per second).
    pub fn rate_per_s(&self) -> f64 {
        let span = (self.last_arrival_ns - self.first_arrival_ns) as f64 / 1e9;
        if span > 0.0 {
            self.requests as f64 / span
        } else {
            self.requests as f64
        }
    }
}

/// Reads a canonical trace once: checks every record and sums it up.
pub fn inspect(path: &Path, skip_bad: bool) -> Result<TraceFileInfo, TraceError> {
    let mut r = CanonicalReader::open(path, skip_bad)?;
    r.want_strings = false;
    let mut rec = TraceRecord::default();
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut first = None;
    let mut last = 0;
    let mut service_sum = 0u128;
    let mut prio = [0u64; 3];
    let mut writes = 0u64;
    let mut buf = Vec::with_capacity(18 * 4096);
    while r.next_into(&mut rec)? {
        first.get_or_insert(rec.arrival_ns);
        last = rec.arrival_ns;
        n += 1;
        service_sum += rec.service_ns as u128;
        prio[rec.priority.index()] += 1;
        writes += u64::from(rec.kind == crate::core::request::Kind::Write);
        buf.extend_from_slice(&rec.arrival_ns.to_le_bytes());
        buf.extend_from_slice(&rec.service_ns.to_le_bytes());
        buf.push(rec.priority.index() as u8);
        buf.push(u8::from(rec.kind == crate::core::request::Kind::Write));
        if buf.len() >= 18 * 4096 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
    if n == 0 {
        return Err(TraceError::file(
            r.name(),
            if r.skipped() > 0 {
                format!(
                    "no valid request (all {} records were malformed and skipped)",
                    r.skipped()
                )
            } else {
                "no request: the trace has a header but no records".to_string()
            },
        ));
    }
    let meta = r.meta();
    let digest = h.finalize();
    Ok(TraceFileInfo {
        format: match r.encoding() {
            Encoding::Csv => "canonical csv".into(),
            Encoding::Jsonl => "canonical jsonl".into(),
        },
        requests_hash: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
        requests: n,
        skipped_lines: r.skipped() + meta.skipped_lines,
        first_arrival_ns: first.unwrap_or(0),
        last_arrival_ns: last,
        service_mean_ns: service_sum as f64 / n as f64,
        priority_counts: prio,
        writes,
        time_resolution_ns: meta.time_resolution_ns,
        start_unix_ns: meta.start_unix_ns,
        source: meta.source.clone(),
        no_service: meta.no_service,
    })
}

/// A temporary file removed when the last reference goes.
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A trace ready to replay.
#[derive(Clone, Debug)]
pub struct PreparedTrace {
    /// The file the user named.
    pub path: PathBuf,
    /// The canonical file replayed (the same file, or a temporary import).
    pub canonical: PathBuf,
    /// Keeps a temporary import alive.
    pub temp: Option<Arc<TempFile>>,
    /// Whether malformed records of the canonical file are skipped.
    pub skip_bad: bool,
    pub info: TraceFileInfo,
    /// What the import did, when the file was a log.
    pub import: Option<import::ImportReport>,
}

impl PreparedTrace {
    /// Opens a reader for one replay (string fields left empty).
    pub fn open(&self) -> Result<CanonicalReader, TraceError> {
        let mut r = self.open_full()?;
        r.want_strings = false;
        Ok(r)
    }

    /// Opens a reader with every field.
    pub fn open_full(&self) -> Result<CanonicalReader, TraceError> {
        let mut r = CanonicalReader::open(&self.canonical, self.skip_bad)?;
        if self.temp.is_some() {
            // A temporary import has no name the user knows: say the source's.
            r.rename(&self.path.display().to_string());
        }
        Ok(r)
    }
}

/// How to prepare a trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrepareOptions {
    /// The input format; `None` detects it.
    pub format: Option<Format>,
    pub import: ImportOptions,
}

#[derive(Clone, PartialEq)]
struct CacheKey {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    options: PrepareOptions,
}

struct CacheEntry {
    key: CacheKey,
    temp: Option<Weak<TempFile>>,
    trace: PreparedTrace,
}

static CACHE: Mutex<Vec<CacheEntry>> = Mutex::new(Vec::new());
static TEMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Prepares `path` for replay: checks a canonical trace, or imports a log
/// (format detected unless given) to a temporary canonical file first.
pub fn prepare(path: &Path, options: &PrepareOptions) -> Result<PreparedTrace, TraceError> {
    let meta = std::fs::metadata(path).map_err(|e| TraceError::read(path, e))?;
    let key = CacheKey {
        path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        len: meta.len(),
        modified: meta.modified().ok(),
        options: options.clone(),
    };
    {
        let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|e| e.temp.as_ref().is_none_or(|w| w.strong_count() > 0));
        if let Some(e) = cache.iter().find(|e| e.key == key) {
            let mut t = e.trace.clone();
            t.temp = e.temp.as_ref().and_then(|w| w.upgrade());
            if e.temp.is_none() || t.temp.is_some() {
                t.path = path.to_path_buf();
                return Ok(t);
            }
        }
    }
    let format = match options.format {
        Some(f) => f,
        None => import::detect(&[path.to_path_buf()])?,
    };
    let trace = if format == Format::Canonical {
        let info = inspect(path, options.import.skip_bad)?;
        PreparedTrace {
            path: path.to_path_buf(),
            canonical: path.to_path_buf(),
            temp: None,
            skip_bad: options.import.skip_bad,
            info,
            import: None,
        }
    } else {
        let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp =
            std::env::temp_dir().join(format!("pooltune-{}-{n}.trace.csv", std::process::id()));
        let guard = Arc::new(TempFile(tmp.clone()));
        let mut opts = options.import.clone();
        opts.format = Some(format);
        let report = import::import_files(&[path.to_path_buf()], &opts, &tmp)?;
        let mut info = inspect(&tmp, false).map_err(|e| match e {
            // The import wrote it; a problem reading it back is about the source.
            TraceError::File { message, .. } => {
                TraceError::file(path.display().to_string(), message)
            }
            other => other,
        })?;
        info.format = format.name().to_string();
        PreparedTrace {
            path: path.to_path_buf(),
            canonical: tmp,
            temp: Some(guard),
            skip_bad: false,
            info,
            import: Some(report),
        }
    };
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache.push(CacheEntry {
        key,
        temp: trace.temp.as_ref().map(Arc::downgrade),
        trace: PreparedTrace {
            temp: None,
            ..trace.clone()
        },
    });
    Ok(trace)
}

/// Reads every service time of a trace (for an empirical distribution),
/// keeping at most `max` by a deterministic reservoir sample.
pub fn service_sample(trace: &PreparedTrace, max: usize) -> Result<Vec<u64>, TraceError> {
    use rand::Rng;
    let mut r = trace.open()?;
    let mut rng = crate::rng::SeedTree::new(0).stream("empirical-reservoir");
    let mut rec = TraceRecord::default();
    let mut out = Vec::new();
    let mut seen = 0u64;
    while r.next_record(&mut rec)? {
        seen += 1;
        if out.len() < max {
            out.push(rec.service_ns);
        } else {
            let j = rng.random_range(0..seen);
            if (j as usize) < max {
                out[j as usize] = rec.service_ns;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_sums_up_and_hashes_requests_not_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.jsonl");
        std::fs::write(
            &a,
            "# source: test\narrival_ns,service_ns,priority,kind\n0,10,high,read\n5,30,low,write\n",
        )
        .unwrap();
        std::fs::write(&b, "{\"arrival_ns\":0,\"service_ns\":10,\"priority\":\"high\"}\n{\"arrival_ns\":5,\"service_ns\":30,\"priority\":\"low\",\"kind\":\"write\"}\n").unwrap();
        let ia = inspect(&a, false).unwrap();
        let ib = inspect(&b, false).unwrap();
        assert_eq!(ia.requests, 2);
        assert_eq!(ia.priority_counts, [1, 0, 1]);
        assert_eq!(ia.writes, 1);
        assert_eq!(ia.service_mean_ns, 20.0);
        assert_eq!(ia.last_arrival_ns, 5);
        assert_eq!(ia.source, "test");
        assert_eq!(ia.requests_hash, ib.requests_hash);
        std::fs::write(&b, "{\"arrival_ns\":0,\"service_ns\":11}\n").unwrap();
        assert_ne!(inspect(&b, false).unwrap().requests_hash, ia.requests_hash);
    }

    #[test]
    fn a_trace_without_records_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "arrival_ns,service_ns\n").unwrap();
        let e = inspect(&a, false).unwrap_err().to_string();
        assert!(
            e.ends_with("no request: the trace has a header but no records"),
            "{e}"
        );
        std::fs::write(&a, "arrival_ns,service_ns\nx,1\n").unwrap();
        let e = inspect(&a, true).unwrap_err().to_string();
        assert!(e.contains("all 1 records were malformed"), "{e}");
    }
}
