//! What the TAS adds to a call's setup: the time from leg 2's INVITE arriving to leg 3's
//! leaving, plus from leg 3's 2xx arriving to leg 2's 2xx leaving. Kept as a histogram of
//! atomics so the hot path takes no lock; read by `GET /calls` and the loop-path benchmark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Bucket upper bounds in microseconds: 1-2-5 steps from 10 µs to 10 s.
const BOUNDS_US: [u64; 19] = [
    10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    2_000_000, 5_000_000, 10_000_000,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    count: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

/// A histogram's summary; percentiles are bucket upper bounds (an upper estimate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Mean, µs.
    pub mean_us: u64,
    /// Median, µs (bucket bound).
    pub p50_us: u64,
    /// 99th percentile, µs (bucket bound).
    pub p99_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&self, value: Duration) {
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        let index = BOUNDS_US.iter().position(|bound| us <= *bound).unwrap_or(BOUNDS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The summary so far.
    pub fn summary(&self) -> Summary {
        let counts: Vec<u64> = self.buckets.iter().map(|bucket| bucket.load(Ordering::Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let max_us = self.max_us.load(Ordering::Relaxed);
        let percentile = |q: f64| {
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, bucket) in counts.iter().enumerate() {
                seen += bucket;
                if seen >= rank {
                    return BOUNDS_US.get(index).copied().unwrap_or(max_us).min(max_us);
                }
            }
            max_us
        };
        Summary {
            count,
            mean_us: self.total_us.load(Ordering::Relaxed).checked_div(count).unwrap_or(0),
            p50_us: if count == 0 { 0 } else { percentile(0.50) },
            p99_us: if count == 0 { 0 } else { percentile(0.99) },
            max_us,
        }
    }
}

/// The TAS's call statistics.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Leg 2 INVITE in → leg 3 INVITE out.
    pub request_hop: Histogram,
    /// Leg 3 2xx in → leg 2 2xx out.
    pub answer_hop: Histogram,
}

/// `GET /calls`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsView {
    /// Leg 2 INVITE in → leg 3 INVITE out.
    pub request_hop: Summary,
    /// Leg 3 2xx in → leg 2 2xx out.
    pub answer_hop: Summary,
}

impl CallStats {
    /// Leg 2 INVITE in → leg 3 INVITE out took `took`; also `ringer_tas_hop_seconds{hop="request"}`.
    pub fn record_request_hop(&self, took: Duration) {
        self.request_hop.record(took);
        metrics::histogram!("ringer_tas_hop_seconds", "hop" => "request").record(took.as_secs_f64());
    }

    /// Leg 3 2xx in → leg 2 2xx out took `took`; also `ringer_tas_hop_seconds{hop="answer"}`.
    pub fn record_answer_hop(&self, took: Duration) {
        self.answer_hop.record(took);
        metrics::histogram!("ringer_tas_hop_seconds", "hop" => "answer").record(took.as_secs_f64());
    }

    /// The summaries.
    pub fn view(&self) -> StatsView {
        StatsView { request_hop: self.request_hop.summary(), answer_hop: self.answer_hop.summary() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds_capped_by_the_maximum() {
        let histogram = Histogram::default();
        assert_eq!(histogram.summary().p99_us, 0);
        for _ in 0..98 {
            histogram.record(Duration::from_micros(150));
        }
        histogram.record(Duration::from_micros(900));
        histogram.record(Duration::from_micros(1_500));
        let summary = histogram.summary();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_us, 200);
        assert_eq!(summary.p99_us, 1_000);
        assert_eq!(summary.max_us, 1_500);
        histogram.record(Duration::from_secs(60));
        assert_eq!(histogram.summary().max_us, 60_000_000);
    }
}
