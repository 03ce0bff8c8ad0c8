//! Transforms of a record stream, applied on the fly (constant memory):
//! a time window, load scaling (compressing time by `speed`, or thinning and
//! duplicating requests by `load`), synthetic service times or priority and
//! kind mixes over real arrivals, caps; and merging several traces.
//!
//! Order of operations: window (on the input's time axis; the window start
//! becomes time 0), speed (arrival / speed), load (thin or duplicate),
//! service and mix replacement, then the caps (`horizon_ns`, `max_requests`)
//! on the output's time axis. Random choices draw from their own named
//! streams (`trace-load`, `service`, `priority`, `kind`), so the same seed
//! gives the same output.

use std::collections::{BinaryHeap, VecDeque};

use rand::Rng;

use super::error::TraceError;
use super::record::{TraceMeta, TraceRecord};
use super::service::{ServiceDist, ServiceSampler};
use super::RecordStream;
use crate::core::request::{Kind, Priority};
use crate::rng::{SeedTree, Stream};

/// What to do to a stream. The default changes nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformSpec {
    /// Keep arrivals at or after this input time (it becomes time 0).
    pub start_ns: Option<u64>,
    /// Keep arrivals before this input time.
    pub end_ns: Option<u64>,
    /// Time compression: an arrival at t comes at t / speed (2 = twice the
    /// rate, same requests). > 0.
    pub speed: f64,
    /// Load scaling by requests: < 1 keeps each request with probability
    /// `load`; > 1 adds copies (floor(load) - 1, plus one more with
    /// probability frac(load)), placed uniformly between the request and the
    /// next one so the rate profile keeps its shape. > 0.
    pub load: f64,
    /// Replace every service time by a draw from this distribution.
    pub service: Option<ServiceDist>,
    /// Replace priorities by draws with these probabilities (high, normal, low).
    pub priority_mix: Option<[f64; 3]>,
    /// Replace kinds: write with this probability.
    pub write_fraction: Option<f64>,
    /// Stop after this many output requests.
    pub max_requests: Option<u64>,
    /// Stop at the first output arrival later than this.
    pub horizon_ns: Option<u64>,
}

impl Default for TransformSpec {
    fn default() -> Self {
        TransformSpec {
            start_ns: None,
            end_ns: None,
            speed: 1.0,
            load: 1.0,
            service: None,
            priority_mix: None,
            write_fraction: None,
            max_requests: None,
            horizon_ns: None,
        }
    }
}

impl TransformSpec {
    pub fn is_identity(&self) -> bool {
        *self == TransformSpec::default()
    }

    /// Checks the parameters; the message says what is wrong.
    pub fn validate(&self) -> Result<(), TraceError> {
        let bad = |m: String| Err(TraceError::Invalid(m));
        if let (Some(s), Some(e)) = (self.start_ns, self.end_ns) {
            if e <= s {
                return bad(format!(
                    "the window end ({e} ns) must be after its start ({s} ns)"
                ));
            }
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return bad(format!(
                "speed must be a positive number, got {}",
                self.speed
            ));
        }
        if !(self.load.is_finite() && self.load > 0.0 && self.load <= 1000.0) {
            return bad(format!("load must be in (0, 1000], got {}", self.load));
        }
        Ok(())
    }

    /// The output metadata for an input's.
    pub fn meta(&self, input: &TraceMeta) -> TraceMeta {
        let mut m = input.clone();
        m.requests = None;
        if let (Some(start), Some(s)) = (m.start_unix_ns, self.start_ns) {
            m.start_unix_ns = Some(start.saturating_add(s as i64));
        }
        if self.speed != 1.0 {
            // Absolute times no longer mean anything after compression.
            m.start_unix_ns = None;
            m.time_resolution_ns =
                ((m.time_resolution_ns as f64 / self.speed).round() as u64).max(1);
        }
        let mut notes = Vec::new();
        if self.start_ns.is_some() || self.end_ns.is_some() {
            notes.push(format!(
                "window {}..{}",
                self.start_ns.map(|s| format!("{s}ns")).unwrap_or_default(),
                self.end_ns.map(|s| format!("{s}ns")).unwrap_or_default()
            ));
        }
        if self.speed != 1.0 {
            notes.push(format!("speed {}", self.speed));
        }
        if self.load != 1.0 {
            notes.push(format!("load {}", self.load));
        }
        if self.service.is_some() {
            notes.push("synthetic service".into());
        }
        if self.priority_mix.is_some() {
            notes.push("priority mix".into());
        }
        if self.write_fraction.is_some() {
            notes.push("write fraction".into());
        }
        if !notes.is_empty() {
            m.source = format!("{} | {}", m.source, notes.join(", "));
        }
        m
    }
}

/// A stream with a [`TransformSpec`] applied.
pub struct Transformed<S> {
    inner: S,
    spec: TransformSpec,
    meta: TraceMeta,
    load_rng: Stream,
    service: Option<(ServiceSampler, Stream)>,
    priority_rng: Stream,
    kind_rng: Stream,
    /// The last original request, whose copies wait for the next arrival.
    held: Option<TraceRecord>,
    out: VecDeque<TraceRecord>,
    emitted: u64,
    done: bool,
    scratch: TraceRecord,
}

impl<S: RecordStream> Transformed<S> {
    pub fn new(inner: S, spec: TransformSpec, seeds: &SeedTree) -> Self {
        let meta = spec.meta(inner.meta());
        Transformed {
            service: spec
                .service
                .as_ref()
                .map(|d| (d.sampler(), seeds.stream("service"))),
            inner,
            meta,
            load_rng: seeds.stream("trace-load"),
            priority_rng: seeds.stream("priority"),
            kind_rng: seeds.stream("kind"),
            spec,
            held: None,
            out: VecDeque::new(),
            emitted: 0,
            done: false,
            scratch: TraceRecord::default(),
        }
    }

    /// The next original record after window, speed and thinning.
    fn pull(&mut self) -> Result<Option<TraceRecord>, TraceError> {
        loop {
            if !self.inner.next_record(&mut self.scratch)? {
                return Ok(None);
            }
            let a = self.scratch.arrival_ns;
            if let Some(s) = self.spec.start_ns {
                if a < s {
                    continue;
                }
            }
            if let Some(e) = self.spec.end_ns {
                if a >= e {
                    return Ok(None);
                }
            }
            if self.spec.load < 1.0 && self.load_rng.random::<f64>() >= self.spec.load {
                continue;
            }
            let mut r = self.scratch.clone();
            let t = a - self.spec.start_ns.unwrap_or(0);
            r.arrival_ns = if self.spec.speed == 1.0 {
                t
            } else {
                (t as f64 / self.spec.speed).round() as u64
            };
            return Ok(Some(r));
        }
    }

    fn finish_record(&mut self, r: &mut TraceRecord) {
        if let Some((s, rng)) = &mut self.service {
            r.service_ns = s.sample(rng).0;
        }
        if let Some(mix) = self.spec.priority_mix {
            let u: f64 = self.priority_rng.random();
            r.priority = if u < mix[0] {
                Priority::High
            } else if u < mix[0] + mix[1] {
                Priority::Normal
            } else {
                Priority::Low
            };
        }
        if let Some(w) = self.spec.write_fraction {
            r.kind = if self.kind_rng.random::<f64>() < w {
                Kind::Write
            } else {
                Kind::Read
            };
        }
    }

    /// Moves the held record and its copies (placed before `next_arrival`)
    /// to the output queue.
    fn release_held(&mut self, next_arrival: Option<u64>) {
        let Some(mut h) = self.held.take() else {
            return;
        };
        let a = h.arrival_ns;
        let copies = if self.spec.load > 1.0 {
            let extra = self.spec.load - 1.0;
            let whole = extra.floor() as u64;
            whole + u64::from(self.load_rng.random::<f64>() < extra - whole as f64)
        } else {
            0
        };
        let gap = next_arrival.map(|n| n.saturating_sub(a)).unwrap_or(0);
        let mut times: Vec<u64> = (0..copies)
            .map(|_| a + (self.load_rng.random::<f64>() * gap as f64) as u64)
            .collect();
        times.sort_unstable();
        self.finish_record(&mut h);
        let original = h.clone();
        self.out.push_back(h);
        for t in times {
            let mut c = original.clone();
            c.arrival_ns = t.min(next_arrival.unwrap_or(t));
            if self.service.is_some()
                || self.spec.priority_mix.is_some()
                || self.spec.write_fraction.is_some()
            {
                self.finish_record(&mut c);
            }
            self.out.push_back(c);
        }
    }
}

impl<S: RecordStream> RecordStream for Transformed<S> {
    fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
        loop {
            if let Some(r) = self.out.pop_front() {
                if self.spec.max_requests.is_some_and(|m| self.emitted >= m)
                    || self.spec.horizon_ns.is_some_and(|h| r.arrival_ns > h)
                {
                    self.done = true;
                    self.out.clear();
                    return Ok(false);
                }
                self.emitted += 1;
                *rec = r;
                return Ok(true);
            }
            if self.done {
                return Ok(false);
            }
            match self.pull()? {
                Some(r) => {
                    let next = r.arrival_ns;
                    self.release_held(Some(next));
                    self.held = Some(r);
                }
                None => {
                    self.release_held(None);
                    self.done = true;
                }
            }
        }
    }

    fn meta(&self) -> &TraceMeta {
        &self.meta
    }
}

/// A stream whose arrivals all come `offset_ns` later (an input's
/// `start_at` in a merge).
pub struct Shifted<S> {
    inner: S,
    offset_ns: u64,
}

impl<S: RecordStream> Shifted<S> {
    pub fn new(inner: S, offset_ns: u64) -> Self {
        Shifted { inner, offset_ns }
    }
}

impl<S: RecordStream> RecordStream for Shifted<S> {
    fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
        if !self.inner.next_record(rec)? {
            return Ok(false);
        }
        rec.arrival_ns = rec.arrival_ns.saturating_add(self.offset_ns);
        Ok(true)
    }

    fn meta(&self) -> &TraceMeta {
        self.inner.meta()
    }
}

/// Several streams merged by arrival (each on its own time axis, so all
/// start together at 0; ties go to the earlier input). Each record's
/// `source_file` is shifted past the files of the inputs before it.
pub struct Merged {
    inputs: Vec<Box<dyn RecordStream + Send>>,
    heads: Vec<Option<TraceRecord>>,
    heap: BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    file_offsets: Vec<u32>,
    meta: TraceMeta,
    started: bool,
}

impl Merged {
    pub fn new(inputs: Vec<Box<dyn RecordStream + Send>>) -> Self {
        let mut meta = TraceMeta::new("", 1);
        let mut file_offsets = Vec::new();
        let mut sources = Vec::new();
        for s in &inputs {
            let m = s.meta();
            file_offsets.push(meta.source_files.len() as u32);
            meta.source_files.extend(m.source_files.iter().cloned());
            meta.time_resolution_ns = meta.time_resolution_ns.max(m.time_resolution_ns);
            meta.skipped_lines += m.skipped_lines;
            sources.push(m.source.clone());
        }
        meta.source = format!("merge({})", sources.join("; "));
        meta.start_unix_ns = inputs.first().and_then(|s| s.meta().start_unix_ns);
        Merged {
            heads: vec![None; inputs.len()],
            inputs,
            heap: BinaryHeap::new(),
            file_offsets,
            meta,
            started: false,
        }
    }

    fn advance(&mut self, i: usize) -> Result<(), TraceError> {
        let mut r = TraceRecord::default();
        if self.inputs[i].next_record(&mut r)? {
            if let Some(f) = r.source_file.as_mut() {
                *f += self.file_offsets[i];
            }
            self.heap.push(std::cmp::Reverse((r.arrival_ns, i)));
            self.heads[i] = Some(r);
        }
        Ok(())
    }
}

impl RecordStream for Merged {
    fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
        if !self.started {
            self.started = true;
            for i in 0..self.inputs.len() {
                self.advance(i)?;
            }
        }
        let Some(std::cmp::Reverse((_, i))) = self.heap.pop() else {
            return Ok(false);
        };
        *rec = self.heads[i].take().expect("a heap entry has its head");
        self.advance(i)?;
        Ok(true)
    }

    fn meta(&self) -> &TraceMeta {
        &self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::DurationDist;

    /// An in-memory stream.
    pub struct VecStream {
        recs: std::vec::IntoIter<TraceRecord>,
        meta: TraceMeta,
    }

    impl VecStream {
        pub fn new(arrivals: &[u64]) -> Self {
            VecStream {
                recs: arrivals
                    .iter()
                    .map(|&a| TraceRecord {
                        arrival_ns: a,
                        service_ns: 7,
                        ..Default::default()
                    })
                    .collect::<Vec<_>>()
                    .into_iter(),
                meta: TraceMeta::new("vec", 1),
            }
        }
    }

    impl RecordStream for VecStream {
        fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
            match self.recs.next() {
                Some(r) => {
                    *rec = r;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
        fn meta(&self) -> &TraceMeta {
            &self.meta
        }
    }

    fn collect(mut s: impl RecordStream) -> Vec<TraceRecord> {
        let mut out = Vec::new();
        let mut r = TraceRecord::default();
        while s.next_record(&mut r).unwrap() {
            out.push(r.clone());
        }
        out
    }

    fn arrivals(v: &[TraceRecord]) -> Vec<u64> {
        v.iter().map(|r| r.arrival_ns).collect()
    }

    #[test]
    fn window_and_speed() {
        let spec = TransformSpec {
            start_ns: Some(10),
            end_ns: Some(40),
            speed: 2.0,
            ..Default::default()
        };
        let out = collect(Transformed::new(
            VecStream::new(&[0, 10, 20, 30, 40, 50]),
            spec,
            &SeedTree::new(1),
        ));
        assert_eq!(arrivals(&out), vec![0, 5, 10]);
    }

    #[test]
    fn load_thins_and_duplicates_in_order() {
        let input: Vec<u64> = (0..100_000).map(|i| i * 1000).collect();
        for load in [0.3, 1.0, 2.5] {
            let spec = TransformSpec {
                load,
                ..Default::default()
            };
            let out = collect(Transformed::new(
                VecStream::new(&input),
                spec,
                &SeedTree::new(3),
            ));
            let a = arrivals(&out);
            assert!(a.windows(2).all(|w| w[0] <= w[1]), "sorted at load {load}");
            let ratio = a.len() as f64 / input.len() as f64;
            assert!((ratio - load).abs() < 0.01, "load {load}: ratio {ratio}");
        }
    }

    #[test]
    fn caps_and_service_replacement() {
        let spec = TransformSpec {
            max_requests: Some(3),
            service: Some(ServiceDist::Basic(DurationDist::Constant { value_ns: 99 })),
            priority_mix: Some([1.0, 0.0, 0.0]),
            write_fraction: Some(1.0),
            ..Default::default()
        };
        let out = collect(Transformed::new(
            VecStream::new(&[1, 2, 3, 4, 5]),
            spec,
            &SeedTree::new(1),
        ));
        assert_eq!(arrivals(&out), vec![1, 2, 3]);
        assert!(out
            .iter()
            .all(|r| r.service_ns == 99 && r.priority == Priority::High && r.kind == Kind::Write));
        let spec = TransformSpec {
            horizon_ns: Some(3),
            ..Default::default()
        };
        let out = collect(Transformed::new(
            VecStream::new(&[1, 2, 3, 4, 5]),
            spec,
            &SeedTree::new(1),
        ));
        assert_eq!(arrivals(&out), vec![1, 2, 3]);
    }

    #[test]
    fn merge_interleaves_by_arrival() {
        let m = Merged::new(vec![
            Box::new(VecStream::new(&[0, 5, 10])),
            Box::new(VecStream::new(&[1, 5, 6])),
        ]);
        assert_eq!(arrivals(&collect(m)), vec![0, 1, 5, 5, 6, 10]);
    }

    #[test]
    fn merge_ties_go_to_the_earlier_input_and_shifted_moves_one() {
        // Service times tell the inputs apart.
        let tagged = |arrivals: &[u64], service: u64| {
            let mut s = VecStream::new(arrivals);
            let v: Vec<TraceRecord> = s
                .recs
                .by_ref()
                .map(|mut r| {
                    r.service_ns = service;
                    r
                })
                .collect();
            s.recs = v.into_iter();
            s
        };
        let pairs = |v: Vec<TraceRecord>| {
            v.iter()
                .map(|r| (r.arrival_ns, r.service_ns))
                .collect::<Vec<_>>()
        };
        let m = Merged::new(vec![
            Box::new(tagged(&[3, 3, 8], 1)),
            Box::new(tagged(&[3, 5], 2)),
        ]);
        assert_eq!(
            pairs(collect(m)),
            vec![(3, 1), (3, 1), (3, 2), (5, 2), (8, 1)]
        );
        let m = Merged::new(vec![
            Box::new(tagged(&[3, 5], 2)),
            Box::new(tagged(&[3, 3, 8], 1)),
        ]);
        assert_eq!(
            pairs(collect(m)),
            vec![(3, 2), (3, 1), (3, 1), (5, 2), (8, 1)]
        );
        let m = Merged::new(vec![
            Box::new(tagged(&[3, 3, 8], 1)),
            Box::new(Shifted::new(tagged(&[3, 5], 2), 5)),
        ]);
        assert_eq!(
            pairs(collect(m)),
            vec![(3, 1), (3, 1), (8, 1), (8, 2), (10, 2)]
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let spec = TransformSpec {
            speed: 0.0,
            ..Default::default()
        };
        assert!(spec.validate().unwrap_err().to_string().contains("speed"));
        let spec = TransformSpec {
            start_ns: Some(5),
            end_ns: Some(5),
            ..Default::default()
        };
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .contains("window end"));
    }
}
