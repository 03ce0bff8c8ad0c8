//! A recorded trace prepared for `sim run`: a canonical file is read once to
//! check it (every error names file, line and field before any simulation
//! starts) and to learn its size, span and mixes; a log in any importable
//! format is first imported to a temporary canonical file. Preparations are
//! cached per process (a sweep loads the same trace many times).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::canonical::{CanonicalReader, CanonicalWriter, Encoding, OptionalColumns};
use super::error::TraceError;
use super::import::{self, Format, ImportOptions};
use super::record::TraceRecord;
use super::transform::{Merged, Shifted, TransformSpec, Transformed};
use super::RecordStream;
use crate::core::request::Priority;
use crate::rng::SeedTree;

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

/// One input of a merged trace ([`prepare_merged`]): a file, how to read
/// it, and what happens to it before the merge.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeInput {
    pub path: PathBuf,
    pub options: PrepareOptions,
    /// Where this input's time 0 lands on the merged time axis.
    pub start_at_ns: u64,
    /// Load scaling of this input alone: thin (< 1) or duplicate (> 1) as
    /// [`TransformSpec::load`], from a fixed seed stream per input, so every
    /// run and policy replays the same merged trace.
    pub load: f64,
    /// Every request of this input gets this priority (after any rules).
    pub priority: Option<Priority>,
}

/// What one input of a merged trace held, for the summary and the hash.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MergeInputInfo {
    pub path: String,
    pub format: String,
    /// 16 hex digits of SHA-256 over the file's bytes (as stored, compressed
    /// or not): any change to the file changes it.
    pub file_sha256: String,
    /// The input's own requests and their hash, before load scaling.
    pub requests: u64,
    pub requests_hash: String,
    pub skipped_lines: u64,
    /// The input has arrival times only.
    pub no_service: bool,
    pub start_at_ns: u64,
    pub load: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<&'static str>,
}

/// A merged trace: the replayable file and each input's part.
#[derive(Clone, Debug)]
pub struct MergedTrace {
    pub trace: PreparedTrace,
    pub inputs: Vec<MergeInputInfo>,
}

/// An error preparing a merged trace, with the input it is about (`None`:
/// the merged file as a whole).
#[derive(Debug)]
pub struct MergeError {
    pub input: Option<usize>,
    pub error: TraceError,
}

struct MergeCacheEntry {
    key: Vec<(CacheKey, u64, u64, Option<Priority>)>,
    temp: Weak<TempFile>,
    merged: MergedTrace,
}

static MERGE_CACHE: Mutex<Vec<MergeCacheEntry>> = Mutex::new(Vec::new());

/// The master seed of the inputs' load-scaling streams (fixed: see
/// [`MergeInput::load`]).
const MERGE_SEED: u64 = 0x6d65_7267_6500;

/// SHA-256 over a file's bytes, 16 hex digits.
fn file_sha256(path: &Path) -> Result<String, TraceError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| TraceError::read(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| TraceError::read(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

/// Prepares several traces for replay as one: each input is prepared as
/// [`prepare`] does (imported when it is a log), put on its own time axis
/// from its own start, shifted by its `start_at`, load-scaled and
/// re-prioritised, and the inputs are merged by arrival into one temporary
/// canonical file (ties at equal arrival go to the earlier input). Streams:
/// memory stays flat in the inputs' length. Cached per process like
/// [`prepare`].
pub fn prepare_merged(inputs: &[MergeInput]) -> Result<MergedTrace, MergeError> {
    let at = |i: usize| {
        move |error: TraceError| MergeError {
            input: Some(i),
            error,
        }
    };
    if inputs.is_empty() {
        return Err(MergeError {
            input: None,
            error: TraceError::Invalid("a merge needs at least one input".into()),
        });
    }
    let mut key = Vec::with_capacity(inputs.len());
    for (i, m) in inputs.iter().enumerate() {
        let meta = std::fs::metadata(&m.path).map_err(|e| at(i)(TraceError::read(&m.path, e)))?;
        key.push((
            CacheKey {
                path: std::fs::canonicalize(&m.path).unwrap_or_else(|_| m.path.clone()),
                len: meta.len(),
                modified: meta.modified().ok(),
                options: m.options.clone(),
            },
            m.start_at_ns,
            m.load.to_bits(),
            m.priority,
        ));
    }
    {
        let mut cache = MERGE_CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|e| e.temp.strong_count() > 0);
        if let Some(e) = cache.iter().find(|e| e.key == key) {
            if let Some(t) = e.temp.upgrade() {
                let mut m = e.merged.clone();
                m.trace.temp = Some(t);
                return Ok(m);
            }
        }
    }
    let mut traces = Vec::with_capacity(inputs.len());
    let mut infos = Vec::with_capacity(inputs.len());
    for (i, m) in inputs.iter().enumerate() {
        let t = prepare(&m.path, &m.options).map_err(at(i))?;
        if !(m.load.is_finite() && m.load > 0.0 && m.load <= 1000.0) {
            return Err(at(i)(TraceError::Invalid(format!(
                "load must be in (0, 1000], got {}",
                m.load
            ))));
        }
        infos.push(MergeInputInfo {
            path: m.path.display().to_string(),
            format: t.info.format.clone(),
            file_sha256: file_sha256(&m.path).map_err(at(i))?,
            requests: t.info.requests,
            requests_hash: t.info.requests_hash.clone(),
            skipped_lines: t.info.skipped_lines,
            no_service: t.info.no_service,
            start_at_ns: m.start_at_ns,
            load: m.load,
            priority: m.priority.map(priority_name),
        });
        traces.push(t);
    }
    let seeds = SeedTree::new(MERGE_SEED);
    let mut streams: Vec<Box<dyn RecordStream + Send>> = Vec::with_capacity(inputs.len());
    for (i, (m, t)) in inputs.iter().zip(&traces).enumerate() {
        let spec = TransformSpec {
            load: m.load,
            priority_mix: m.priority.map(|p| {
                let mut mix = [0.0; 3];
                mix[p.index()] = 1.0;
                mix
            }),
            ..TransformSpec::default()
        };
        let reader = t.open_full().map_err(at(i))?;
        let staged = Transformed::new(reader, spec, &seeds.child("trace-input", i as u64));
        streams.push(Box::new(Shifted::new(staged, m.start_at_ns)));
    }
    let mut merged = Merged::new(streams);
    let mut meta = merged.meta().clone();
    meta.no_service = traces.iter().all(|t| t.info.no_service);
    meta.start_unix_ns = None;
    meta.requests = None;
    let n = TEMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = std::env::temp_dir().join(format!("pooltune-{}-{n}.merged.csv", std::process::id()));
    let guard = Arc::new(TempFile(tmp.clone()));
    let cols = OptionalColumns::all();
    let whole = |error: TraceError| MergeError { input: None, error };
    let mut w = CanonicalWriter::create(&tmp, Encoding::Csv, &meta, cols).map_err(whole)?;
    let mut rec = TraceRecord::default();
    // An input's error names its own file and line (the readers say the
    // name the user gave).
    let mut input_of_error = |e: TraceError| {
        let input = match &e {
            TraceError::Bad { file, .. } | TraceError::File { file, .. } => {
                infos.iter().position(|i| &i.path == file)
            }
            TraceError::Read { path, .. } => inputs.iter().position(|m| &m.path == path),
            _ => None,
        };
        MergeError { input, error: e }
    };
    while merged.next_record(&mut rec).map_err(&mut input_of_error)? {
        w.write(&rec).map_err(whole)?;
    }
    w.finish().map_err(whole)?;
    let shown = format!(
        "merge({})",
        inputs
            .iter()
            .map(|m| m.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut info = inspect(&tmp, false).map_err(|e| {
        whole(match e {
            TraceError::File { message, .. } => TraceError::file(shown.clone(), message),
            other => other,
        })
    })?;
    info.format = format!("merge of {}", inputs.len());
    info.no_service = meta.no_service;
    let out = MergedTrace {
        trace: PreparedTrace {
            path: PathBuf::from(shown),
            canonical: tmp,
            temp: Some(guard),
            skip_bad: false,
            info,
            import: None,
        },
        inputs: infos,
    };
    let mut cache = MERGE_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache.push(MergeCacheEntry {
        key,
        temp: Arc::downgrade(out.trace.temp.as_ref().expect("set above")),
        merged: MergedTrace {
            trace: PreparedTrace {
                temp: None,
                ..out.trace.clone()
            },
            inputs: out.inputs.clone(),
        },
    });
    Ok(out)
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

    fn input(path: &Path, start_at_ns: u64, load: f64, priority: Option<Priority>) -> MergeInput {
        MergeInput {
            path: path.to_path_buf(),
            options: PrepareOptions::default(),
            start_at_ns,
            load,
            priority,
        }
    }

    fn arrivals_and_priorities(t: &PreparedTrace) -> Vec<(u64, u64, Priority)> {
        let mut r = t.open().unwrap();
        let mut rec = TraceRecord::default();
        let mut out = Vec::new();
        while r.next_record(&mut rec).unwrap() {
            out.push((rec.arrival_ns, rec.service_ns, rec.priority));
        }
        out
    }

    #[test]
    fn prepare_merged_shifts_reprioritises_and_hashes_each_input() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        std::fs::write(&a, "arrival_ns,service_ns,priority\n0,1,high\n10,2,high\n").unwrap();
        std::fs::write(&b, "arrival_ns,service_ns\n0,3\n4,4\n").unwrap();
        let inputs = [
            input(&a, 0, 1.0, None),
            input(&b, 5, 1.0, Some(Priority::Low)),
        ];
        let m = prepare_merged(&inputs).unwrap();
        assert_eq!(
            arrivals_and_priorities(&m.trace),
            vec![
                (0, 1, Priority::High),
                (5, 3, Priority::Low),
                (9, 4, Priority::Low),
                (10, 2, Priority::High)
            ]
        );
        assert_eq!(m.trace.info.requests, 4);
        assert_eq!(m.trace.info.priority_counts, [2, 0, 2]);
        assert_eq!(m.inputs[1].requests, 2);
        assert_eq!(m.inputs[1].priority, Some("low"));
        // Cached: the same result again; a changed file is prepared anew
        // and its byte hash changes.
        let again = prepare_merged(&inputs).unwrap();
        assert_eq!(again.trace.canonical, m.trace.canonical);
        let before = m.inputs[1].file_sha256.clone();
        std::fs::write(&b, "arrival_ns,service_ns\n0,3\n4,4\n\n").unwrap();
        let changed = prepare_merged(&inputs).unwrap();
        assert_ne!(changed.inputs[1].file_sha256, before);
        assert_eq!(changed.trace.info.requests_hash, m.trace.info.requests_hash);
    }

    #[test]
    fn prepare_merged_names_the_input_of_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        std::fs::write(&a, "arrival_ns,service_ns\n0,1\n").unwrap();
        std::fs::write(&b, "arrival_ns,service_ns\n0,3\n4,x\n").unwrap();
        let e = prepare_merged(&[input(&a, 0, 1.0, None), input(&b, 0, 1.0, None)]).unwrap_err();
        assert_eq!(e.input, Some(1));
        assert!(
            e.error.to_string().contains(":3:2: field `service_ns`"),
            "{}",
            e.error
        );
        let missing = dir.path().join("c.csv");
        let e =
            prepare_merged(&[input(&a, 0, 1.0, None), input(&missing, 0, 1.0, None)]).unwrap_err();
        assert_eq!(e.input, Some(1));
        assert!(matches!(e.error, TraceError::Read { .. }));
        let e = prepare_merged(&[input(&a, 0, 0.0, None)]).unwrap_err();
        assert_eq!(e.input, Some(0));
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
