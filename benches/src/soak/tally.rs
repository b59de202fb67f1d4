//! `Tally`: what the soak's workloads did and what went wrong, shared by every task on the driver's one thread;
//! and the ledger of publications per sender and channel that the final delivery checks compare with.

use std::cell::{Cell, RefCell};

/// How many violations are kept verbatim; the rest are only counted.
const KEPT_VIOLATIONS: usize = 20;

/// Counters of the run, and its violations.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    counts: RefCell<Counts>,
    violations: RefCell<Vec<String>>,
    violation_count: Cell<u64>,
}

/// The run's counters, by what they count.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    /// WebSocket connections upgraded, of every kind.
    pub(crate) connections: u64,
    /// Churn connections closed with a close handshake.
    pub(crate) churn_clean: u64,
    /// Churn connections whose TCP socket was dropped (FIN) without a close frame.
    pub(crate) churn_dropped: u64,
    /// Churn connections reset (RST) without a close frame.
    pub(crate) churn_reset: u64,
    /// Connections abandoned half-way through the HTTP upgrade.
    pub(crate) churn_abandoned: u64,
    /// Churn subscribes with `recover` that were recovered (the missed messages replayed).
    pub(crate) recovered: u64,
    /// Churn subscribes with `recover` answered `recovered: false` (the position too old or not reached yet).
    pub(crate) recovery_refused: u64,
    /// Deliveries that went through the checks (offsets, and the sender's order where the payload has one).
    pub(crate) deliveries: u64,
    /// Publications made over WebSocket.
    pub(crate) published_ws: u64,
    /// Publications made over the HTTP API.
    pub(crate) published_http: u64,
    /// Connections kicked through `POST /api/disconnect` that got `disconnect` and close 4004.
    pub(crate) kicks: u64,
    /// Slow consumers the server unregistered and whose connection it ended.
    pub(crate) slow_closed: u64,
    /// HTTP API requests answered.
    pub(crate) api_requests: u64,
}

impl Tally {
    /// Applies `change` to the counters.
    pub(crate) fn count(&self, change: impl FnOnce(&mut Counts)) {
        change(&mut self.counts.borrow_mut());
    }

    /// The counters now.
    pub(crate) fn counts(&self) -> Counts {
        *self.counts.borrow()
    }

    /// Records a violation: something the server promises did not happen.
    pub(crate) fn violation(&self, what: impl Into<String>) {
        self.violation_count.set(self.violation_count.get() + 1);
        let mut kept = self.violations.borrow_mut();
        if kept.len() < KEPT_VIOLATIONS {
            let what = what.into();
            eprintln!("soak: violation: {what}");
            kept.push(what);
        }
    }

    /// How many violations there were.
    pub(crate) fn violation_count(&self) -> u64 {
        self.violation_count.get()
    }

    /// The first violations, verbatim.
    pub(crate) fn violations(&self) -> Vec<String> {
        self.violations.borrow().clone()
    }
}

/// How many publications each publisher made on each steady channel: what every steady subscriber must have
/// received from it, in order.
#[derive(Debug)]
pub(crate) struct Ledger {
    /// `[sender][channel]`.
    made: RefCell<Vec<Vec<u32>>>,
}

impl Ledger {
    /// A ledger for `senders` publishers over `channels` channels.
    pub(crate) fn new(senders: usize, channels: usize) -> Self {
        Self { made: RefCell::new(vec![vec![0; channels]; senders]) }
    }

    /// The sequence number the next publication of `sender` on `channel` carries; counts it as made.
    pub(crate) fn next(&self, sender: usize, channel: usize) -> u32 {
        let mut made = self.made.borrow_mut();
        let seq = made[sender][channel];
        made[sender][channel] = seq + 1;
        seq
    }

    /// How many publications `sender` made on `channel`.
    pub(crate) fn made(&self, sender: usize, channel: usize) -> u32 {
        self.made.borrow()[sender][channel]
    }

    /// How many publications were made on `channel`, by every sender.
    pub(crate) fn total(&self, channel: usize) -> u64 {
        self.made.borrow().iter().map(|per_channel| u64::from(per_channel[channel])).sum()
    }

    /// How many senders there are.
    pub(crate) fn senders(&self) -> usize {
        self.made.borrow().len()
    }
}
