//! `TransportStats`: the transport's counters (connections, close codes, bytes, refusals, queue delay), read by
//! whoever exports metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

/// Why an upgrade was refused before the 101, for [`TransportStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The authenticator refused the credentials (401).
    Unauthorized,
    /// The authenticator could not decide (503).
    Unavailable,
    /// The `Origin` is not allowed (403).
    Origin,
    /// A connection cap was reached, or the server is shutting down (503).
    Capacity,
}

impl Rejection {
    const ALL: [Rejection; 4] = [Self::Unauthorized, Self::Unavailable, Self::Origin, Self::Capacity];

    /// A short label, for metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::Origin => "origin",
            Self::Capacity => "capacity",
        }
    }
}

/// Upper bounds of the queue-delay buckets, in seconds: 50 µs to about 3.3 s, doubling.
const DELAY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6, 0.051_2, 0.102_4,
    0.204_8, 0.409_6, 0.819_2, 1.638_4, 3.276_8,
];

/// A fixed-bucket histogram of durations, updated lock-free.
#[derive(Debug, Default)]
pub struct DelayHistogram {
    counts: [AtomicU64; DELAY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl DelayHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = DELAY_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(DELAY_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Sum in seconds, count, and cumulative `(upper bound, count)` buckets ending with `+Inf`, as Prometheus
    /// histograms are written.
    #[must_use]
    pub fn prometheus(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Relaxed);
            buckets.push((DELAY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        (self.sum_ns.load(Relaxed) as f64 / 1e9, cumulative, buckets)
    }
}

/// The transport's live counters. Share one with [`crate::TransportConfig::stats`] to read them.
#[derive(Debug, Default)]
pub struct TransportStats {
    connections_opened: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    rejections: [AtomicU64; 4],
    disconnections: Mutex<Vec<(u16, u64)>>,
    /// Time from queueing a frame on an empty queue to taking it for writing.
    pub queue_delay: DelayHistogram,
}

/// A copy of the counters of [`TransportStats`] (the histogram is read in place).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TransportSnapshot {
    /// WebSocket connections upgraded, on every endpoint.
    pub connections_opened: u64,
    /// Connections ended, by close code (1006 when the socket dropped without a close), sorted by code.
    pub disconnections: Vec<(u16, u64)>,
    /// Bytes read from WebSocket connections (frames, headers included).
    pub bytes_in: u64,
    /// Bytes written to WebSocket connections.
    pub bytes_out: u64,
    /// Upgrades refused, by reason.
    pub rejections: Vec<(&'static str, u64)>,
}

impl TransportStats {
    pub(crate) fn opened(&self) {
        self.connections_opened.fetch_add(1, Relaxed);
    }

    pub(crate) fn closed(&self, code: u16) {
        let mut codes = self.disconnections.lock();
        match codes.binary_search_by_key(&code, |(c, _)| *c) {
            Ok(i) => codes[i].1 += 1,
            Err(i) => codes.insert(i, (code, 1)),
        }
    }

    pub(crate) fn read(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn wrote(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn rejected(&self, why: Rejection) {
        let i = Rejection::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.rejections[i].fetch_add(1, Relaxed);
    }

    /// A copy of the counters.
    #[must_use]
    pub fn snapshot(&self) -> TransportSnapshot {
        TransportSnapshot {
            connections_opened: self.connections_opened.load(Relaxed),
            disconnections: self.disconnections.lock().clone(),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            rejections: Rejection::ALL
                .iter()
                .zip(&self.rejections)
                .map(|(r, n)| (r.as_str(), n.load(Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = DelayHistogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(150));
        h.observe(Duration::from_secs(10));
        let (sum, count, buckets) = h.prometheus();
        assert_eq!(count, 3);
        assert!((sum - 10.000_16).abs() < 1e-9);
        assert_eq!(buckets[0], (0.000_05, 1));
        assert_eq!(buckets[2], (0.000_2, 2));
        assert_eq!(*buckets.last().unwrap(), (f64::INFINITY, 3));
    }

    #[test]
    fn close_codes_are_counted_sorted() {
        let s = TransportStats::default();
        for code in [4000, 1000, 4000, 1006] {
            s.closed(code);
        }
        assert_eq!(s.snapshot().disconnections, vec![(1000, 1), (1006, 1), (4000, 2)]);
    }
}
