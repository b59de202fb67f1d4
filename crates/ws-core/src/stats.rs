//! Hub statistics: lock-free counters and the snapshot the API and metrics read.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

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

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicI64,
    pub(crate) channels: AtomicI64,
    pub(crate) subscriptions: AtomicI64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) publications: AtomicU64,
    drops: [AtomicU64; 3],
}

impl Stats {
    pub(crate) fn drop(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.drops[reason.index()].fetch_add(n, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let gauge = |g: &AtomicI64| u64::try_from(g.load(Relaxed)).unwrap_or(0);
        StatsSnapshot {
            connections: gauge(&self.connections),
            channels: gauge(&self.channels),
            subscriptions: gauge(&self.subscriptions),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            publications: self.publications.load(Relaxed),
            drops_slow_consumer: self.drops[0].load(Relaxed),
            drops_queue_full: self.drops[1].load(Relaxed),
            drops_closed: self.drops[2].load(Relaxed),
        }
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
