//! Latency histograms (hdrhistogram) and their percentile summaries.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Values are nanoseconds, kept to 3 significant figures: sub-microsecond
/// precision below a millisecond. There are only a few histograms per run
/// (one per measured quantity, shared by all clients), about 240 KB each.
const LOWEST_NS: u64 = 1;
/// Ten minutes: longer than any run; longer samples are clamped to it.
const HIGHEST_NS: u64 = 600_000_000_000;
/// Three significant figures: 0.1% relative error at every magnitude.
const SIGFIGS: u8 = 3;

/// A latency histogram in nanoseconds.
#[derive(Clone, Debug)]
pub(crate) struct Latency {
    hist: Histogram<u64>,
}

impl Latency {
    pub(crate) fn new() -> Self {
        // The bounds are constants that satisfy hdrhistogram's rules
        // (lowest >= 1, highest >= 2 * lowest, sigfigs <= 5).
        let hist = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGFIGS)
            .expect("constant bounds are valid");
        Self { hist }
    }

    pub(crate) fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(LOWEST_NS));
    }

    #[cfg(test)]
    fn record(&mut self, d: Duration) {
        self.record_ns(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub(crate) fn summary(&self) -> Summary {
        let ms = |ns: u64| ns as f64 / 1e6;
        let q = |quantile: f64| {
            if self.hist.is_empty() {
                0.0
            } else {
                ms(self.hist.value_at_quantile(quantile))
            }
        };
        Summary {
            count: self.hist.len(),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            max_ms: if self.hist.is_empty() {
                0.0
            } else {
                ms(self.hist.max())
            },
            mean_ms: if self.hist.is_empty() {
                0.0
            } else {
                self.hist.mean() / 1e6
            },
        }
    }
}

/// Percentiles of a [`Latency`], in milliseconds (microsecond precision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
}

/// A [`Latency`] shared by many client tasks. Tasks collect samples in a
/// [`Batch`] and flush it once per socket read, so the lock is taken once per
/// read rather than once per line.
#[derive(Debug)]
pub(crate) struct SharedLatency(Mutex<Latency>);

impl Default for SharedLatency {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedLatency {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(Latency::new()))
    }

    pub(crate) fn flush(&self, batch: &mut Batch) {
        if batch.0.is_empty() {
            return;
        }
        // A poisoned lock only means another task panicked mid-record; the
        // histogram itself is still consistent, so keep using it.
        let mut hist = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for &ns in &batch.0 {
            hist.record_ns(ns);
        }
        batch.0.clear();
    }

    pub(crate) fn snapshot(&self) -> Latency {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Samples waiting for [`SharedLatency::flush`].
#[derive(Debug, Default)]
pub(crate) struct Batch(Vec<u64>);

impl Batch {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 0.002 + 1e-9
    }

    #[test]
    fn percentiles_of_known_data() {
        let mut l = Latency::new();
        // 1 ms, 2 ms, ..., 1000 ms: percentile q is q * 1000 ms.
        for i in 1..=1000u64 {
            l.record(Duration::from_millis(i));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        for (got, want) in [
            (s.p50_ms, 500.0),
            (s.p90_ms, 900.0),
            (s.p95_ms, 950.0),
            (s.p99_ms, 990.0),
            (s.max_ms, 1000.0),
            (s.mean_ms, 500.5),
        ] {
            assert!(close(got, want), "got {got}, want {want}");
        }
    }

    #[test]
    fn microsecond_precision_below_a_millisecond() {
        let mut l = Latency::new();
        for _ in 0..99 {
            l.record(Duration::from_micros(123));
        }
        l.record(Duration::from_micros(457));
        let s = l.summary();
        assert!(close(s.p50_ms, 0.123), "{s:?}");
        assert!(close(s.p99_ms, 0.123), "{s:?}");
        assert!(close(s.max_ms, 0.457), "{s:?}");
    }

    #[test]
    fn empty_is_zero_and_outliers_saturate() {
        assert_eq!(Latency::new().summary(), Summary::default());
        let mut l = Latency::new();
        l.record(Duration::from_secs(100_000));
        l.record_ns(0);
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!(close(s.max_ms, HIGHEST_NS as f64 / 1e6), "{s:?}");
    }

    #[test]
    fn shared_batches_merge() {
        let shared = SharedLatency::new();
        let mut b = Batch::default();
        for i in 1..=10 {
            b.push(Duration::from_millis(i));
        }
        shared.flush(&mut b);
        shared.flush(&mut b); // already empty: records nothing more
        let mut all = shared.snapshot();
        all.record(Duration::from_millis(20));
        let s = all.summary();
        assert_eq!(s.count, 11);
        assert!(close(s.max_ms, 20.0), "{s:?}");
        assert!(close(s.p50_ms, 6.0), "{s:?}");
    }
}
