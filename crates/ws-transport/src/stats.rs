//! `TransportStats`: the transport's counters (connections, close codes, bytes, refusals, queue delay), read by
//! whoever exports metrics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use ws_core::{DelayHistogram, StripedCounter};

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

    /// The counter a refusal goes to: shutting down counts as capacity; a malformed request or a server fault
    /// is no rejection of a client's credentials or origin and is not counted here.
    pub(crate) fn of(reason: ws_core::RefusalReason) -> Option<Self> {
        use ws_core::RefusalReason as R;
        match reason {
            R::Unauthorized => Some(Self::Unauthorized),
            R::Unavailable => Some(Self::Unavailable),
            R::Origin => Some(Self::Origin),
            R::Capacity | R::ShuttingDown => Some(Self::Capacity),
            _ => None,
        }
    }

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

/// The transport's live counters. Share one with [`crate::TransportConfig::stats`] to read them.
#[derive(Debug, Default)]
pub struct TransportStats {
    connections_opened: AtomicU64,
    // Written on every read and write of every connection: striped, so worker threads do not share a line.
    bytes_in: StripedCounter,
    bytes_out: StripedCounter,
    rejections: [AtomicU64; 4],
    disconnections: Mutex<Vec<(u16, u64)>>,
    /// Time from queueing a frame on an empty queue to taking it for writing. A connection's replies to its own
    /// messages, queued while its task runs and taken before it sleeps, are not timed.
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
        self.bytes_in.add(n as u64);
    }

    pub(crate) fn wrote(&self, n: usize) {
        self.bytes_out.add(n as u64);
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
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
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
    fn close_codes_are_counted_sorted() {
        let s = TransportStats::default();
        for code in [4000, 1000, 4000, 1006] {
            s.closed(code);
        }
        assert_eq!(s.snapshot().disconnections, vec![(1000, 1), (1006, 1), (4000, 2)]);
    }
}
