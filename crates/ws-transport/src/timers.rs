//! `Timers`: one coarse timer wheel for every session of a server, so that a connection's timer is an entry in
//! a list (16 bytes) rather than a tokio `Sleep` of its own (112 bytes, boxed), and the transport's clock.
//!
//! Every session has at most one deadline at a time (its next ping, pong timeout, token expiry, write timeout
//! or close deadline; see `Session::next_deadline`), so it has at most one entry here. The wheel has
//! [`SLOTS`] slots of [`TICK_MS`] each; an entry sits in the slot of its tick and is looked at every lap until
//! its tick has come, then its session is woken and the entry dropped. The session reads the clock itself when
//! it runs and decides what is due: a wake-up is only a hint, so a deadline is met at most one tick late.
//!
//! One task drives the wheel (`Timers::drive`); it sleeps while the wheel is empty.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::outbound::Outbound;

/// The wheel's resolution: deadlines are met within this much after they pass.
pub(crate) const TICK_MS: u64 = 10;
/// Slots in the wheel: a lap is 40.96 s, longer than the default heartbeat, so most entries fire on their
/// first lap.
const SLOTS: usize = 4096;

/// One session's deadline.
#[derive(Debug)]
struct Entry {
    tick: u64,
    conn: Arc<Outbound>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The last tick this slot was looked at for: an entry for this tick or an earlier one would wait a lap.
    looked: u64,
    entries: Vec<Entry>,
}

/// The wheel, and the clock sessions read: milliseconds since the wheel was made, on tokio's clock (which
/// tests can pause).
#[derive(Debug)]
pub(crate) struct Timers {
    origin: Instant,
    slots: Box<[Mutex<Slot>]>,
    /// The next tick the driver looks at.
    next: AtomicU64,
    /// Entries in the wheel.
    len: AtomicUsize,
    /// Wakes the driver when the wheel stops being empty.
    filled: Notify,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            slots: (0..SLOTS).map(|_| Mutex::default()).collect(),
            next: AtomicU64::new(1),
            len: AtomicUsize::new(0),
            filled: Notify::new(),
        }
    }
}

impl Timers {
    /// Now, in milliseconds on the transport's clock.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The first tick at or after `at_ms`.
    fn tick_of(at_ms: u64) -> u64 {
        at_ms.div_ceil(TICK_MS)
    }

    fn slot(&self, tick: u64) -> &Mutex<Slot> {
        // The modulo is below `SLOTS`, a `usize`.
        &self.slots[(tick % SLOTS as u64) as usize]
    }

    /// Wakes `conn`'s task at `at_ms` (within a tick after it), in place of the deadline `old_ms` it had (if any).
    pub(crate) fn set(&self, conn: &Arc<Outbound>, old_ms: Option<u64>, at_ms: u64) {
        if let Some(old) = old_ms {
            if Self::tick_of(old) == Self::tick_of(at_ms) {
                // Looked at in the same tick: the entry may stay (if it already fired, the session saw it).
                return;
            }
            self.remove(conn, old);
        }
        let mut tick = Self::tick_of(at_ms);
        loop {
            let mut slot = self.slot(tick).lock();
            if slot.looked < tick {
                slot.entries.push(Entry { tick, conn: Arc::clone(conn) });
                break;
            }
            // The driver has looked at this slot for `tick` already: the deadline is (about) due, so it goes in
            // the first tick the driver has yet to look at.
            tick = self.next.load(Ordering::Acquire).max(tick + 1);
        }
        if self.len.fetch_add(1, Ordering::AcqRel) == 0 {
            self.filled.notify_one();
        }
    }

    /// Takes `conn`'s entry for the deadline `at_ms` out of the wheel, if it is still there.
    pub(crate) fn remove(&self, conn: &Arc<Outbound>, at_ms: u64) {
        let removed = {
            let mut slot = self.slot(Self::tick_of(at_ms)).lock();
            match slot.entries.iter().position(|e| Arc::ptr_eq(&e.conn, conn)) {
                Some(i) => {
                    slot.entries.swap_remove(i);
                    if slot.entries.is_empty() {
                        slot.entries = Vec::new();
                    }
                    true
                }
                None => false,
            }
        };
        if removed {
            self.len.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Drives the wheel until the task is dropped: each tick, wakes the sessions whose deadline came.
    pub(crate) async fn drive(self: Arc<Self>) {
        loop {
            if self.len.load(Ordering::Acquire) == 0 {
                let filled = self.filled.notified();
                if self.len.load(Ordering::Acquire) == 0 {
                    filled.await;
                }
            }
            let next = self.next.load(Ordering::Acquire);
            tokio::time::sleep_until(self.origin + Duration::from_millis(next * TICK_MS)).await;
            // Every tick whose time has come, however late the driver is.
            let now = (self.now() / TICK_MS).max(next);
            self.turn(next, now);
        }
    }

    /// Looks at the slots of ticks `from..=to`, waking every session whose tick is `to` or earlier. Afterwards
    /// every tick up to `to` has had its slot looked at for it (or later), which `set` relies on.
    fn turn(&self, from: u64, to: u64) {
        // More than a lap behind, every slot is looked at once.
        let first = from.max(to.saturating_sub(SLOTS as u64 - 1));
        let mut due = Vec::new();
        for tick in first..=to {
            let mut slot = self.slot(tick).lock();
            slot.looked = to;
            let mut i = 0;
            while i < slot.entries.len() {
                if slot.entries[i].tick <= to {
                    due.push(slot.entries.swap_remove(i).conn);
                } else {
                    i += 1;
                }
            }
            if slot.entries.is_empty() && slot.entries.capacity() > 0 {
                slot.entries = Vec::new();
            }
        }
        self.next.store(to + 1, Ordering::Release);
        if !due.is_empty() {
            self.len.fetch_sub(due.len(), Ordering::AcqRel);
            // Woken with no slot lock held: a session may run on another thread at once and set its next timer.
            for conn in due {
                conn.wake();
            }
        }
    }

    /// How many entries the wheel holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use ws_core::ConnId;

    use super::*;
    use crate::outbound::tests::CountingWaker;

    /// A queue whose task is the counter.
    fn conn(counter: &Arc<CountingWaker>) -> Arc<Outbound> {
        let conn = Arc::new(Outbound::new(ConnId::new(1), 8, 100));
        let waker = Waker::from(Arc::clone(counter));
        let _ = conn.take(&mut Vec::new(), 100, true, &mut Context::from_waker(&waker));
        conn
    }

    #[test]
    fn an_entry_wakes_its_session_once_its_tick_has_come_and_then_leaves() {
        let timers = Timers::default();
        let counter = Arc::new(CountingWaker::default());
        let conn = conn(&counter);
        timers.set(&conn, None, 95);
        timers.turn(1, 9);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "not before its tick");
        timers.turn(10, 10);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn moving_a_deadline_keeps_one_entry_and_entries_wait_for_their_lap() {
        let timers = Timers::default();
        let counter = Arc::new(CountingWaker::default());
        let conn = conn(&counter);
        let far = (SLOTS as u64 + 5) * TICK_MS;
        timers.set(&conn, None, far);
        timers.set(&conn, Some(far), far + TICK_MS);
        assert_eq!(timers.len(), 1, "the old entry went");
        timers.turn(1, 6);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "slot 6 holds it for the next lap");
        timers.turn(7, SLOTS as u64 + 6);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        timers.set(&conn, None, far * 3);
        timers.remove(&conn, far * 3);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn a_deadline_in_a_tick_already_looked_at_goes_in_the_next_one() {
        let timers = Timers::default();
        let counter = Arc::new(CountingWaker::default());
        let conn = conn(&counter);
        timers.turn(1, 20);
        timers.set(&conn, None, 150);
        timers.turn(21, 21);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "not a lap later");
    }

    #[test]
    fn a_driver_a_lap_behind_still_wakes_everyone_due() {
        let timers = Timers::default();
        let counters: Vec<_> = (0..3).map(|_| Arc::new(CountingWaker::default())).collect();
        let conns: Vec<_> = counters.iter().map(conn).collect();
        for (i, conn) in conns.iter().enumerate() {
            timers.set(conn, None, (i as u64 + 1) * 1000);
        }
        timers.turn(1, 3 * SLOTS as u64);
        assert!(counters.iter().all(|c| c.0.load(Ordering::SeqCst) == 1));
    }
}
