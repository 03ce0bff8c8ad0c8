//! `pooltune trace stats`: what a trace holds, in one streaming pass
//! (constant memory: histograms and running sums, plus one counter per
//! time bin).
//!
//! Reported: request count and span; arrival rate over time (per bin, as a
//! sparkline and optionally a CSV), its peak and peak-to-mean ratio;
//! inter-arrival and service-time percentiles; burstiness (coefficient of
//! variation of inter-arrivals: 1 for Poisson, above 1 bursty; and of the
//! per-bin counts); priority and kind mix; the concurrency Little's law
//! implies (rate x mean service) and the most requests that overlap when
//! nobody waits; skipped malformed lines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::error::TraceError;
use super::record::{format_unix_ns, TraceRecord};
use super::RecordStream;
use crate::core::request::Kind;

/// Percentiles of a distribution, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// Coefficient of variation (standard deviation / mean).
    pub cv: f64,
}

/// Arrivals per time bin.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct RateSeries {
    pub bin_s: f64,
    pub counts: Vec<u64>,
    pub peak_per_s: f64,
    pub mean_per_s: f64,
    pub peak_to_mean: f64,
    /// Coefficient of variation of the per-bin counts.
    pub cv: f64,
}

/// Everything `trace stats` reports.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TraceStats {
    pub source: String,
    pub requests: u64,
    /// Malformed lines skipped (when the trace was made and when read).
    pub skipped_lines: u64,
    pub start: Option<String>,
    pub time_resolution_ns: u64,
    pub span_s: f64,
    pub rate_per_s: f64,
    pub rate: RateSeries,
    pub interarrival_ms: Percentiles,
    pub service_ms: Percentiles,
    /// Requests per priority: high, normal, low.
    pub priority: [u64; 3],
    pub writes: u64,
    /// Little's law: mean arrival rate x mean service (connections busy on
    /// average if nobody ever waits).
    pub littles_law_concurrency: f64,
    /// The most requests in service at once if nobody ever waits.
    pub peak_concurrency: u64,
    /// The trace has arrivals only.
    pub no_service: bool,
}

struct Running {
    hist: Histogram<u64>,
    n: u64,
    mean: f64,
    m2: f64,
    max: u64,
}

impl Running {
    fn new() -> Self {
        Running {
            hist: Histogram::new_with_max(3600 * 1_000_000_000, 3).expect("constant bounds"),
            n: 0,
            mean: 0.0,
            m2: 0.0,
            max: 0,
        }
    }

    fn add(&mut self, v: u64) {
        self.hist.saturating_record(v);
        self.n += 1;
        let x = v as f64;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
        self.max = self.max.max(v);
    }

    fn percentiles(&self) -> Percentiles {
        if self.n == 0 {
            return Percentiles::default();
        }
        let ms = |ns: f64| ns / 1e6;
        let sd = if self.n > 1 {
            (self.m2 / (self.n - 1) as f64).sqrt()
        } else {
            0.0
        };
        // HDR buckets report their highest equivalent value: never above the max.
        let q = |p: f64| ms(self.hist.value_at_quantile(p).min(self.max) as f64);
        Percentiles {
            mean: ms(self.mean),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: ms(self.max as f64),
            cv: if self.mean > 0.0 { sd / self.mean } else { 0.0 },
        }
    }
}

/// A bin width for a span: about `target` bins, at least 1 s, rounded to
/// 1-2-5 steps.
pub fn bin_width_ns(span_ns: u64, target: u64) -> u64 {
    let raw = (span_ns / target.max(1)).max(1_000_000_000);
    let mut step = 1_000_000_000u64;
    loop {
        for m in [1, 2, 5] {
            if step * m >= raw {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// Reads a stream to its end and sums it up. `span_hint_ns` (the last
/// arrival, when known) fixes the bin width; `max_bins` bounds memory.
pub fn compute(
    stream: &mut dyn RecordStream,
    span_hint_ns: Option<u64>,
    max_bins: u64,
) -> Result<TraceStats, TraceError> {
    let meta = stream.meta().clone();
    let mut bin = bin_width_ns(span_hint_ns.unwrap_or(0), max_bins.min(2000));
    let mut counts: Vec<u64> = Vec::new();
    let mut inter = Running::new();
    let mut service = Running::new();
    let mut prio = [0u64; 3];
    let mut writes = 0u64;
    let mut last: Option<u64> = None;
    let mut first = 0;
    let mut busy: BinaryHeap<Reverse<u64>> = BinaryHeap::new();
    let mut peak = 0u64;
    let mut rec = TraceRecord::default();
    while stream.next_record(&mut rec)? {
        let a = rec.arrival_ns;
        match last {
            Some(l) => inter.add(a.saturating_sub(l)),
            None => first = a,
        }
        last = Some(a);
        service.add(rec.service_ns);
        prio[rec.priority.index()] += 1;
        writes += u64::from(rec.kind == Kind::Write);
        let mut idx = ((a - first) / bin) as usize;
        while idx as u64 >= max_bins {
            // Too many bins: double the width (merging pairs).
            bin *= 2;
            counts = counts.chunks(2).map(|c| c.iter().sum()).collect();
            idx = ((a - first) / bin) as usize;
        }
        if counts.len() <= idx {
            counts.resize(idx + 1, 0);
        }
        counts[idx] += 1;
        while busy.peek().is_some_and(|Reverse(end)| *end <= a) {
            busy.pop();
        }
        busy.push(Reverse(a.saturating_add(rec.service_ns)));
        peak = peak.max(busy.len() as u64);
    }
    let n = service.n;
    let span_ns = last.map_or(0, |l| l - first);
    let span_s = span_ns as f64 / 1e9;
    let rate = if span_s > 0.0 { n as f64 / span_s } else { 0.0 };
    let bin_s = bin as f64 / 1e9;
    // The last bin is partial: rate statistics use full bins when there are several.
    let full: &[u64] = if counts.len() > 2 {
        &counts[..counts.len() - 1]
    } else {
        &counts
    };
    let mean_count = full.iter().sum::<u64>() as f64 / full.len().max(1) as f64;
    let var = if full.len() > 1 {
        full.iter()
            .map(|&c| (c as f64 - mean_count).powi(2))
            .sum::<f64>()
            / (full.len() - 1) as f64
    } else {
        0.0
    };
    let peak_count = full.iter().copied().max().unwrap_or(0);
    let service_p = service.percentiles();
    Ok(TraceStats {
        source: meta.source.clone(),
        requests: n,
        skipped_lines: meta.skipped_lines,
        start: meta.start_unix_ns.map(format_unix_ns),
        time_resolution_ns: meta.time_resolution_ns,
        span_s,
        rate_per_s: rate,
        rate: RateSeries {
            bin_s,
            peak_per_s: peak_count as f64 / bin_s,
            mean_per_s: mean_count / bin_s,
            peak_to_mean: if mean_count > 0.0 {
                peak_count as f64 / mean_count
            } else {
                0.0
            },
            cv: if mean_count > 0.0 {
                var.sqrt() / mean_count
            } else {
                0.0
            },
            counts,
        },
        interarrival_ms: inter.percentiles(),
        littles_law_concurrency: rate * service_p.mean / 1e3,
        service_ms: service_p,
        priority: prio,
        writes,
        peak_concurrency: peak,
        no_service: meta.no_service,
    })
}

/// A sparkline of `counts` in `width` columns.
pub fn sparkline(counts: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if counts.is_empty() {
        return String::new();
    }
    let per = counts.len().div_ceil(width.max(1));
    let cols: Vec<f64> = counts
        .chunks(per)
        .map(|c| c.iter().sum::<u64>() as f64 / c.len() as f64)
        .collect();
    let max = cols.iter().cloned().fold(0.0, f64::max);
    cols.iter()
        .map(|&v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                BARS[((v / max) * 7.0).round() as usize]
            }
        })
        .collect()
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The human-readable report.
pub fn render(name: &str, s: &TraceStats) -> String {
    let mut o = String::new();
    let pct = |k: u64| {
        if s.requests == 0 {
            0.0
        } else {
            100.0 * k as f64 / s.requests as f64
        }
    };
    o.push_str(&format!("trace {name}  ({})\n", s.source));
    o.push_str(&format!(
        "requests          {}   skipped malformed lines {}\n",
        thousands(s.requests),
        thousands(s.skipped_lines)
    ));
    o.push_str(&format!(
        "span              {:.3} s{}   time resolution {}\n",
        s.span_s,
        s.start
            .as_ref()
            .map(|st| format!(" from {st}"))
            .unwrap_or_default(),
        crate::time::SimDuration(s.time_resolution_ns)
    ));
    o.push_str(&format!(
        "arrival rate      mean {:.2}/s   peak {:.2}/s per {} s bin   peak/mean {:.2}   cv of bins {:.2}\n",
        s.rate_per_s, s.rate.peak_per_s, s.rate.bin_s, s.rate.peak_to_mean, s.rate.cv
    ));
    o.push_str(&format!(
        "rate over time    {}\n",
        sparkline(&s.rate.counts, 60)
    ));
    let p = &s.interarrival_ms;
    o.push_str(&format!(
        "inter-arrival ms  mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}   cv {:.2} (1 = Poisson)\n",
        ms(p.mean), ms(p.p50), ms(p.p90), ms(p.p99), ms(p.p999), ms(p.max), p.cv
    ));
    if s.no_service {
        o.push_str("service ms        none: the trace has arrival times only\n");
    } else {
        let p = &s.service_ms;
        o.push_str(&format!(
            "service ms        mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}   cv {:.2}\n",
            ms(p.mean),
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.p999),
            ms(p.max),
            p.cv
        ));
    }
    o.push_str(&format!(
        "priority          high {:.1} %  normal {:.1} %  low {:.1} %   writes {:.1} %\n",
        pct(s.priority[0]),
        pct(s.priority[1]),
        pct(s.priority[2]),
        pct(s.writes)
    ));
    if !s.no_service {
        o.push_str(&format!(
            "concurrency       Little's law {:.2} busy connections on average; at most {} at once if nobody waits\n",
            s.littles_law_concurrency, s.peak_concurrency
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::record::TraceMeta;

    struct V(std::vec::IntoIter<TraceRecord>, TraceMeta);
    impl RecordStream for V {
        fn next_record(&mut self, rec: &mut TraceRecord) -> Result<bool, TraceError> {
            match self.0.next() {
                Some(r) => {
                    *rec = r;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
        fn meta(&self) -> &TraceMeta {
            &self.1
        }
    }

    #[test]
    fn regular_arrivals() {
        // One request every 10 ms for 100 s, each 5 ms long.
        let recs: Vec<TraceRecord> = (0..10_000)
            .map(|i| TraceRecord {
                arrival_ns: i * 10_000_000,
                service_ns: 5_000_000,
                ..Default::default()
            })
            .collect();
        let mut v = V(recs.into_iter(), TraceMeta::new("t", 1));
        let s = compute(&mut v, Some(100_000_000_000), 100_000).unwrap();
        assert_eq!(s.requests, 10_000);
        assert!((s.rate_per_s - 100.0).abs() < 0.1, "{}", s.rate_per_s);
        assert!((s.interarrival_ms.p50 - 10.0).abs() < 0.02);
        assert!(s.interarrival_ms.cv < 1e-9);
        assert!((s.littles_law_concurrency - 0.5).abs() < 0.01);
        assert_eq!(s.peak_concurrency, 1);
        assert!((s.rate.peak_to_mean - 1.0).abs() < 1e-9);
        assert_eq!(sparkline(&[0, 1, 2, 3, 4, 5, 6, 7], 8), "▁▂▃▄▅▆▇█");
        assert!(render("t", &s).contains("requests          10,000"));
    }

    #[test]
    fn bins_merge_when_the_span_was_unknown() {
        let recs: Vec<TraceRecord> = (0..1000)
            .map(|i| TraceRecord {
                arrival_ns: i * 1_000_000_000,
                ..Default::default()
            })
            .collect();
        let mut v = V(recs.into_iter(), TraceMeta::new("t", 1));
        let s = compute(&mut v, None, 100).unwrap();
        assert!(s.rate.counts.len() <= 100);
        assert_eq!(s.rate.counts.iter().sum::<u64>(), 1000);
    }
}
