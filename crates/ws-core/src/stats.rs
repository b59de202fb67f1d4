//! Hub statistics: striped counters written on the message path, and the snapshot the API and metrics read.
//!
//! A counter that every publishing thread bumps would bounce one cache line between cores on every
//! message. Each [`StripedCounter`] is split into stripes on their own cache lines instead; a thread always writes
//! the stripe it was given when it first counted, and a read sums the stripes.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// How many stripes a counter has: more than the cores a server usually runs on, a power of two.
const STRIPES: usize = 16;

/// One stripe, alone on its cache line (128 bytes covers the adjacent-line prefetch of current x86 cores).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A counter split over 16 cache lines, for counts that many threads bump on the message path: each thread
/// writes its own stripe, and a read sums them. Gauges go down with [`StripedCounter::sub`]; the arithmetic
/// wraps, so a stripe may hold a "negative" value while the sum stays right.
///
/// The one counter type of the workspace for such counts (the transport's byte counts use it too).
#[derive(Debug, Default)]
pub struct StripedCounter {
    stripes: [Stripe; STRIPES],
}

/// The stripe this thread writes.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    MINE.with(|mine| {
        if mine.get() == usize::MAX {
            mine.set(NEXT.fetch_add(1, Relaxed) % STRIPES);
        }
        mine.get()
    })
}

impl StripedCounter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.stripes[stripe()].0.fetch_add(n, Relaxed);
        }
    }

    /// Adds `n`; returns whether this thread's stripe passed a multiple of `quantum` on the way up, so a
    /// caller can check the (costlier) sum only once per `quantum` of growth per stripe.
    pub(crate) fn add_crossing(&self, n: u64, quantum: u64) -> bool {
        let old = self.stripes[stripe()].0.fetch_add(n, Relaxed);
        old / quantum.max(1) != old.wrapping_add(n) / quantum.max(1)
    }

    /// Subtracts `n`.
    pub fn sub(&self, n: u64) {
        self.stripes[stripe()].0.fetch_sub(n, Relaxed);
    }

    /// The sum of the stripes.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.stripes.iter().fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Relaxed)))
    }

    /// The sum read as a gauge: a transiently negative sum (a decrement seen before its increment) reads 0.
    #[must_use]
    pub fn gauge(&self) -> u64 {
        u64::try_from(self.get() as i64).unwrap_or(0)
    }
}

/// Why a frame meant for a connection was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The queue was full and the namespace's policy closed the connection with 4000.
    SlowConsumer,
    /// The queue was full and the namespace's policy dropped the message.
    QueueFull,
    /// The connection was already closed.
    Closed,
}

impl DropReason {
    /// Every reason, for metrics.
    pub const ALL: [DropReason; 3] = [Self::SlowConsumer, Self::QueueFull, Self::Closed];

    /// A short label, for metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::QueueFull => "queue_full",
            Self::Closed => "closed",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::SlowConsumer => 0,
            Self::QueueFull => 1,
            Self::Closed => 2,
        }
    }
}

/// The hub's counters. The connection and channel gauges live with the registries that own what they count.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) subscriptions: StripedCounter,
    pub(crate) messages_in: StripedCounter,
    pub(crate) messages_out: StripedCounter,
    pub(crate) publications: StripedCounter,
    pub(crate) gaps_filled: StripedCounter,
    pub(crate) gaps_flagged: StripedCounter,
    drops: [StripedCounter; 3],
}

impl Stats {
    pub(crate) fn drop(&self, reason: DropReason, n: u64) {
        self.drops[reason.index()].add(n);
    }

    pub(crate) fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()].get()
    }
}

/// A point-in-time copy of the hub's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections registered now.
    pub connections: u64,
    /// Channels that exist now (with subscribers or kept history).
    pub channels: u64,
    /// Subscriptions now, summed over channels.
    pub subscriptions: u64,
    /// Frames received from clients.
    pub messages_in: u64,
    /// Frames queued to clients.
    pub messages_out: u64,
    /// Publications made on this node.
    pub publications: u64,
    /// Frames not queued because the policy closed a slow consumer.
    pub drops_slow_consumer: u64,
    /// Frames dropped because a queue was full.
    pub drops_queue_full: u64,
    /// Frames not queued because the connection was closed.
    pub drops_closed: u64,
    /// In a cluster: offset gaps on a live channel filled from the broker's history.
    pub gaps_filled: u64,
    /// In a cluster: gaps that could not be filled, answered with `unsubscribed` / `insufficient_state`.
    pub gaps_flagged: u64,
    /// Bytes of in-memory history held now (single node), against `HubConfig::max_history_bytes`.
    pub history_bytes: u64,
    /// Channel histories evicted to stay under `HubConfig::max_history_bytes`.
    pub history_evictions: u64,
}

impl StatsSnapshot {
    /// The drop count for one reason.
    #[must_use]
    pub fn drops(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::SlowConsumer => self.drops_slow_consumer,
            DropReason::QueueFull => self.drops_queue_full,
            DropReason::Closed => self.drops_closed,
        }
    }
}

/// Upper bounds of the [`DelayHistogram`] buckets, in seconds: 50 µs to about 3.3 s, doubling.
const DELAY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6, 0.051_2, 0.102_4,
    0.204_8, 0.409_6, 0.819_2, 1.638_4, 3.276_8,
];

/// One thread's share of a [`DelayHistogram`], alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct HistogramStripe {
    counts: [AtomicU64; DELAY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// A fixed-bucket histogram of durations, updated lock-free and striped like [`StripedCounter`] (each thread
/// writes its own stripe, a read sums them): the transport's queue delay, the broker's publish latency.
#[derive(Debug, Default)]
pub struct DelayHistogram {
    stripes: [HistogramStripe; STRIPES],
}

impl DelayHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = DELAY_BUCKETS.iter().position(|b| secs <= *b).unwrap_or(DELAY_BUCKETS.len());
        let stripe = &self.stripes[stripe()];
        stripe.counts[bucket].fetch_add(1, Relaxed);
        stripe.sum_ns.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Sum in seconds, count, and each bucket's own `(upper bound, count)`, the last bound `f64::MAX` for `+Inf`: what
    /// `prometheus_client`'s histogram encoder takes (it writes the cumulative counts itself).
    #[must_use]
    pub fn prometheus(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = (0..=DELAY_BUCKETS.len())
            .map(|i| {
                let count = self.stripes.iter().map(|s| s.counts[i].load(Relaxed)).sum();
                (DELAY_BUCKETS.get(i).copied().unwrap_or(f64::MAX), count)
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum_ns: u64 = self.stripes.iter().map(|s| s.sum_ns.load(Relaxed)).sum();
        (sum_ns as f64 / 1e9, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_count_their_own_range() {
        let h = DelayHistogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(150));
        h.observe(Duration::from_secs(10));
        let (sum, count, buckets) = h.prometheus();
        assert_eq!(count, 3);
        assert!((sum - 10.000_16).abs() < 1e-9);
        assert_eq!(buckets[0], (0.000_05, 1));
        assert_eq!(buckets[1], (0.000_1, 0));
        assert_eq!(buckets[2], (0.000_2, 1));
        assert_eq!(*buckets.last().unwrap(), (f64::MAX, 1));
    }

    #[test]
    fn stripes_from_many_threads_sum_up() {
        let c = StripedCounter::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.add(2);
                        c.sub(1);
                    }
                });
            }
        });
        assert_eq!(c.get(), 8000);
        let g = StripedCounter::default();
        g.sub(1);
        assert_eq!(g.gauge(), 0, "a transiently negative gauge reads 0");
        g.add(3);
        assert_eq!(g.gauge(), 2);
    }
}
