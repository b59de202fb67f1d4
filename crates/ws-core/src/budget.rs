//! `HistoryBudget`: the node's cap on the bytes of in-memory history, over every channel.
//!
//! Without it, clients publishing to many channels that keep history grow the node until each history's
//! time to live runs out. The count is a striped [`StripedCounter`]: a publish adds to its thread's stripe, and the
//! sum is read only when a stripe passes another multiple of a quantum (an eighth of a sixteenth of the
//! cap), so the cap may be overshot by at most about an eighth of it and no publish writes a shared atomic.
//! Past the cap, the registry evicts whole histories, the least recently written first, until the total is
//! back under nine tenths of it (`ChannelRegistry::evict_histories`); each evicted channel gets a new epoch.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::history::Resize;
use crate::stats::StripedCounter;

/// The stripes of the count, as [`StripedCounter`] has them.
const STRIPES: u64 = 16;

pub(crate) struct HistoryBudget {
    cap: u64,
    quantum: u64,
    bytes: StripedCounter,
    evictions: StripedCounter,
    /// Set while one thread evicts; others need not wait for it.
    evicting: AtomicBool,
}

/// While held, this thread is the one evicting.
pub(crate) struct Evicting<'a>(&'a AtomicBool);

impl Drop for Evicting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl HistoryBudget {
    /// A budget of `cap` bytes (`usize::MAX`: no cap).
    pub(crate) fn new(cap: usize) -> Self {
        let cap = u64::try_from(cap).unwrap_or(u64::MAX);
        Self {
            cap,
            quantum: (cap / STRIPES / 8).max(1),
            bytes: StripedCounter::default(),
            evictions: StripedCounter::default(),
            evicting: AtomicBool::new(false),
        }
    }

    /// Records a change; returns whether the node is over its cap and should evict now.
    pub(crate) fn record(&self, resize: Resize) -> bool {
        self.bytes.sub(resize.freed as u64);
        resize.added > 0 && self.bytes.add_crossing(resize.added as u64, self.quantum) && self.over()
    }

    /// Whether the total is over the cap.
    pub(crate) fn over(&self) -> bool {
        self.bytes.gauge() > self.cap
    }

    /// Whether the total is down to where eviction stops: nine tenths of the cap.
    pub(crate) fn low_enough(&self) -> bool {
        self.bytes.gauge() <= self.cap / 10 * 9
    }

    /// The bytes held now.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.gauge()
    }

    /// How many histories were evicted.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.get()
    }

    pub(crate) fn evicted(&self) {
        self.evictions.add(1);
    }

    /// Becomes the evicting thread, unless another one is.
    pub(crate) fn start_evicting(&self) -> Option<Evicting<'_>> {
        (!self.evicting.swap(true, Ordering::Acquire)).then_some(Evicting(&self.evicting))
    }
}
