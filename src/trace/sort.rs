//! Sorting imported requests by arrival in bounded memory.
//!
//! Logs record statement *end* times, so arrivals (end - duration) come out
//! of order; several input files interleave too. Records are kept compactly
//! (fixed fields plus one string arena) up to a memory budget; beyond it,
//! sorted runs are spilled to temporary files and merged. Ties in arrival
//! keep input order (file, then line), so the output does not depend on
//! the budget.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;

use super::error::TraceError;
use super::record::TraceRecord;
use crate::core::request::{Kind, Priority};

/// One request waiting to be sorted. Arrival is absolute (ns since the Unix
/// epoch, or any common origin).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending<'a> {
    pub arrival: i64,
    pub service_ns: u64,
    pub priority: u8,
    pub kind: u8,
    pub file: u32,
    pub line: u64,
    pub conn: &'a [u8],
    pub query_id: &'a [u8],
    pub class: &'a [u8],
    pub sql: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    arrival: i64,
    service_ns: u64,
    line: u64,
    file: u32,
    priority: u8,
    kind: u8,
    offset: u32,
    lens: [u32; 4],
}

impl Slot {
    fn key(&self) -> (i64, u32, u64) {
        (self.arrival, self.file, self.line)
    }
}

/// Which string fields were ever non-empty (so the writer can leave out
/// columns no record uses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub conn: bool,
    pub query_id: bool,
    pub class: bool,
    pub sql: bool,
}

/// The external sorter.
pub struct Sorter {
    slots: Vec<Slot>,
    arena: Vec<u8>,
    budget: usize,
    runs: Vec<PathBuf>,
    count: u64,
    min_arrival: Option<i64>,
    pub seen: Seen,
    tmp_dir: PathBuf,
}

/// Default memory for sorting: 32 MiB (smaller sorted runs stay in cache;
/// measured faster than 128 MiB at 1 M and 10 M lines).
pub const DEFAULT_BUDGET: usize = 32 << 20;

impl Sorter {
    pub fn new(budget: usize) -> Self {
        Sorter {
            slots: Vec::new(),
            arena: Vec::new(),
            budget: budget.max(1 << 16),
            runs: Vec::new(),
            count: 0,
            min_arrival: None,
            seen: Seen::default(),
            tmp_dir: std::env::temp_dir(),
        }
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The earliest arrival pushed so far.
    pub fn min_arrival(&self) -> Option<i64> {
        self.min_arrival
    }

    /// Adds a record (strings longer than 4 GiB are cut).
    pub fn push(&mut self, p: &Pending) -> Result<(), TraceError> {
        let offset = self.arena.len();
        let mut lens = [0u32; 4];
        for (i, s) in [p.conn, p.query_id, p.class, p.sql].iter().enumerate() {
            let s = &s[..s.len().min(u32::MAX as usize)];
            lens[i] = s.len() as u32;
            self.arena.extend_from_slice(s);
        }
        self.seen.conn |= !p.conn.is_empty();
        self.seen.query_id |= !p.query_id.is_empty();
        self.seen.class |= !p.class.is_empty();
        self.seen.sql |= !p.sql.is_empty();
        self.slots.push(Slot {
            arrival: p.arrival,
            service_ns: p.service_ns,
            line: p.line,
            file: p.file,
            priority: p.priority,
            kind: p.kind,
            offset: offset as u32,
            lens,
        });
        self.count += 1;
        self.min_arrival = Some(self.min_arrival.map_or(p.arrival, |m| m.min(p.arrival)));
        if self.arena.len() >= u32::MAX as usize / 2
            || self.slots.len() * std::mem::size_of::<Slot>() + self.arena.len() >= self.budget
        {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), TraceError> {
        if self.slots.is_empty() {
            return Ok(());
        }
        self.slots.sort_unstable_by_key(Slot::key);
        static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self
            .tmp_dir
            .join(format!("pooltune-sort-{}-{n}.run", std::process::id()));
        let werr = |e| TraceError::Write {
            path: path.clone(),
            source: e,
        };
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(werr)?);
        let mut buf = Vec::with_capacity(1 << 16);
        let mut prev = 0i64;
        for s in &self.slots {
            encode(&mut buf, s, &self.arena, prev);
            prev = s.arrival;
            if buf.len() >= 1 << 15 {
                w.write_all(&buf).map_err(werr)?;
                buf.clear();
            }
        }
        w.write_all(&buf).map_err(werr)?;
        w.flush().map_err(werr)?;
        self.runs.push(path);
        self.slots.clear();
        self.arena.clear();
        Ok(())
    }

    /// Emits every record in arrival order, relative to `origin` (usually
    /// [`Sorter::min_arrival`]), to `out`.
    pub fn finish(
        mut self,
        origin: i64,
        out: &mut dyn FnMut(&TraceRecord) -> Result<(), TraceError>,
    ) -> Result<(), TraceError> {
        let mut rec = TraceRecord::default();
        if self.runs.is_empty() {
            self.slots.sort_unstable_by_key(Slot::key);
            for s in &self.slots {
                fill(&mut rec, s, origin, |i| slice(&self.arena, s, i));
                out(&rec)?;
            }
            return Ok(());
        }
        self.spill()?;
        let mut readers = Vec::new();
        for p in &self.runs {
            let f = File::open(p).map_err(|e| TraceError::read(p, e))?;
            readers.push(RunReader {
                f,
                path: p.clone(),
                buf: vec![0; RUN_BUF],
                pos: 0,
                end: 0,
                prev: 0,
                slot: None,
                strings: 0..0,
            });
        }
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if r.advance()? {
                heap.push(std::cmp::Reverse((r.slot.expect("advanced").key(), i)));
            }
        }
        while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
            let r = &mut readers[i];
            let s = r.slot.expect("in the heap");
            let strings = &r.buf[r.strings.clone()];
            let mut at = 0usize;
            let mut parts: [&[u8]; 4] = [&[]; 4];
            for (k, part) in parts.iter_mut().enumerate() {
                let len = s.lens[k] as usize;
                *part = &strings[at..at + len];
                at += len;
            }
            fill(&mut rec, &s, origin, |k| parts[k]);
            out(&rec)?;
            if r.advance()? {
                heap.push(std::cmp::Reverse((r.slot.expect("advanced").key(), i)));
            }
        }
        Ok(())
    }
}

impl Drop for Sorter {
    fn drop(&mut self) {
        for p in &self.runs {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn slice<'a>(arena: &'a [u8], s: &Slot, i: usize) -> &'a [u8] {
    let start = s.offset as usize + s.lens[..i].iter().map(|&l| l as usize).sum::<usize>();
    &arena[start..start + s.lens[i] as usize]
}

fn fill<'a>(rec: &mut TraceRecord, s: &Slot, origin: i64, part: impl Fn(usize) -> &'a [u8]) {
    rec.arrival_ns = s.arrival.saturating_sub(origin).max(0) as u64;
    rec.service_ns = s.service_ns;
    rec.priority = match s.priority {
        0 => Priority::High,
        2 => Priority::Low,
        _ => Priority::Normal,
    };
    rec.kind = if s.kind == 1 { Kind::Write } else { Kind::Read };
    rec.source_file = Some(s.file);
    rec.source_line = Some(s.line);
    for (i, out) in [
        &mut rec.conn,
        &mut rec.query_id,
        &mut rec.class,
        &mut rec.sql,
    ]
    .into_iter()
    .enumerate()
    {
        out.clear();
        let b = part(i);
        match std::str::from_utf8(b) {
            Ok(s) => out.push_str(s),
            Err(_) => out.push_str(&String::from_utf8_lossy(b)),
        }
    }
}

/// Spilled records are sorted by arrival, so a run stores each arrival as
/// the difference from the previous one, and every number as a LEB128
/// varint: about 16 bytes of fixed fields instead of 46 (at 10 M requests
/// the spill's writes cost more than its sorting).
fn encode(buf: &mut Vec<u8>, s: &Slot, arena: &[u8], prev: i64) {
    push_varint(buf, s.arrival.wrapping_sub(prev) as u64);
    push_varint(buf, s.service_ns);
    push_varint(buf, s.line);
    push_varint(buf, u64::from(s.file));
    buf.push(s.priority);
    buf.push(s.kind);
    for l in s.lens {
        push_varint(buf, u64::from(l));
    }
    let total: usize = s.lens.iter().map(|&l| l as usize).sum();
    buf.extend_from_slice(&arena[s.offset as usize..s.offset as usize + total]);
}

#[inline]
fn push_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a varint at `*at` of `b`; `None` if `b` ends first or it is
/// longer than a u64.
#[inline]
fn read_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        if shift > 63 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Bytes of a run read at once (grown for a record with longer strings).
const RUN_BUF: usize = 1 << 18;
/// The most bytes of a record's numbers: 4 varints of 10, 2 bytes, 4 of 5.
const MAX_FIXED: usize = 4 * 10 + 2 + 4 * 5;

/// One spilled run being merged: its own buffer, so decoding works on
/// slices (no per-field reads).
struct RunReader {
    f: File,
    path: PathBuf,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The previous record's arrival (arrivals are stored as differences).
    prev: i64,
    slot: Option<Slot>,
    /// The current record's strings, in `buf`.
    strings: std::ops::Range<usize>,
}

impl RunReader {
    /// Makes at least `n` unread bytes available unless the file ends first;
    /// returns how many are.
    fn fill(&mut self, n: usize) -> Result<usize, TraceError> {
        if self.end - self.pos >= n {
            return Ok(self.end - self.pos);
        }
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < n {
            self.buf.resize(n.max(RUN_BUF), 0);
        }
        while self.end < n {
            let k = self
                .f
                .read(&mut self.buf[self.end..])
                .map_err(|e| TraceError::read(&self.path, e))?;
            if k == 0 {
                break;
            }
            self.end += k;
        }
        Ok(self.end)
    }

    fn advance(&mut self) -> Result<bool, TraceError> {
        let avail = self.fill(MAX_FIXED)?;
        if avail == 0 {
            // Runs cover successive stretches of the input, so they end one
            // after another: dropping each at its end frees its page cache
            // while the output is still being written.
            if self.slot.take().is_some() {
                let _ = std::fs::remove_file(&self.path);
            }
            return Ok(false);
        }
        let corrupt = |path: &PathBuf| {
            TraceError::read(
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt sort run"),
            )
        };
        let b = &self.buf[self.pos..self.end];
        let mut at = 0;
        let mut num = || read_varint(b, &mut at);
        let (Some(delta), Some(service_ns), Some(line), Some(file)) = (num(), num(), num(), num())
        else {
            return Err(corrupt(&self.path));
        };
        let (Some(&priority), Some(&kind)) = (b.get(at), b.get(at + 1)) else {
            return Err(corrupt(&self.path));
        };
        at += 2;
        let mut lens = [0u32; 4];
        for l in &mut lens {
            *l = read_varint(b, &mut at).ok_or_else(|| corrupt(&self.path))? as u32;
        }
        let arrival = self.prev.wrapping_add(delta as i64);
        self.prev = arrival;
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        self.pos += at;
        if self.fill(total)? < total {
            return Err(corrupt(&self.path));
        }
        self.strings = self.pos..self.pos + total;
        self.pos += total;
        self.slot = Some(Slot {
            arrival,
            service_ns,
            line,
            file: file as u32,
            priority,
            kind,
            offset: 0,
            lens,
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn run(budget: usize, n: usize) -> Vec<(u64, u64, String)> {
        let mut s = Sorter::new(budget);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for i in 0..n {
            let conn = format!("c{}", i % 7);
            s.push(&Pending {
                arrival: 1_000 + rng.random_range(0..500i64),
                service_ns: i as u64,
                line: i as u64 + 1,
                conn: conn.as_bytes(),
                sql: if i % 3 == 0 { b"select 1" } else { b"" },
                ..Default::default()
            })
            .unwrap();
        }
        let origin = s.min_arrival().unwrap();
        let mut out = Vec::new();
        s.finish(origin, &mut |r| {
            out.push((
                r.arrival_ns,
                r.source_line.unwrap(),
                format!("{}|{}", r.conn, r.sql),
            ));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn spilled_and_in_memory_sorts_agree() {
        let small = run(1 << 16, 20_000);
        let big = run(1 << 30, 20_000);
        assert_eq!(small.len(), 20_000);
        assert_eq!(small, big);
        assert!(small
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
        assert_eq!(small[0].0, 0);
    }

    /// Every field survives a spill: negative and extreme arrivals, huge
    /// line numbers, strings longer than a run's read buffer.
    #[test]
    fn spilled_runs_keep_every_field() {
        let long = vec![b'x'; RUN_BUF * 2 + 7];
        let arrivals = [i64::MIN + 1, -5, 0, 3, i64::MAX - 1, 3, -5];
        let sorted = |budget: usize| {
            let mut s = Sorter::new(budget);
            for round in 0..40u64 {
                for (i, &a) in arrivals.iter().enumerate() {
                    let i = i as u64;
                    s.push(&Pending {
                        arrival: a,
                        service_ns: u64::MAX - i,
                        priority: (i % 3) as u8,
                        kind: (i % 2) as u8,
                        file: (round % 3) as u32,
                        line: u64::MAX / 2 + round * 10 + i,
                        conn: b"c",
                        query_id: if i == 4 { &long } else { b"-12" },
                        class: b"",
                        sql: "é".as_bytes(),
                    })
                    .unwrap();
                }
            }
            let mut out = Vec::new();
            s.finish(i64::MIN, &mut |r| {
                out.push(r.clone());
                Ok(())
            })
            .unwrap();
            out
        };
        let spilled = sorted(1 << 16);
        assert_eq!(spilled, sorted(1 << 30));
        assert_eq!(spilled.len(), 280);
        assert_eq!(spilled[0].arrival_ns, 1);
        let last = spilled.last().unwrap();
        assert_eq!(last.arrival_ns, i64::MAX as u64, "saturated");
        assert_eq!(last.query_id.len(), long.len());
        assert_eq!(
            (last.service_ns, last.priority, last.kind),
            (u64::MAX - 4, Priority::Normal, Kind::Read)
        );
        assert!(spilled.iter().all(|r| r.sql == "é" && r.conn == "c"));
    }
}
