//! Test doubles for the hub: a recording connection, a manual clock and a small simulator (feature `test-util`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ws_protocol::ServerMessage;

use crate::clock::Clock;
use crate::conn::{Conn, ConnId, SendError};
use crate::hooks::DisconnectReason;
use crate::hub::{Hub, HubConfig};
use crate::policy::Identity;

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `start_ms`.
    #[must_use]
    pub fn new(start_ms: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(start_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(SeqCst)
    }
}

/// A connection that records every frame it is sent, with an optional queue
/// capacity so tests can make it a slow consumer.
#[derive(Debug)]
pub struct RecordingConn {
    id: ConnId,
    capacity: usize,
    queue: Mutex<VecDeque<Bytes>>,
    closed: Mutex<Option<(u16, String)>>,
}

impl RecordingConn {
    /// An unbounded recording connection.
    #[must_use]
    pub fn new(id: ConnId) -> Arc<Self> {
        Self::with_capacity(id, usize::MAX)
    }

    /// A recording connection whose queue holds at most `capacity` frames until drained.
    #[must_use]
    pub fn with_capacity(id: ConnId, capacity: usize) -> Arc<Self> {
        Arc::new(Self { id, capacity, queue: Mutex::new(VecDeque::new()), closed: Mutex::new(None) })
    }

    /// The connection's id.
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Takes every queued frame: the client read them, and the queue has room again.
    pub fn drain(&self) -> Vec<Bytes> {
        self.queue.lock().drain(..).collect()
    }

    /// Takes every queued frame, decoded.
    ///
    /// # Panics
    /// When a frame is not a valid server message: that is a hub bug the test should see.
    pub fn messages(&self) -> Vec<ServerMessage> {
        self.drain()
            .iter()
            .map(|f| {
                ServerMessage::decode(f)
                    .unwrap_or_else(|e| panic!("hub sent an invalid frame {:?}: {e}", String::from_utf8_lossy(f)))
            })
            .collect()
    }

    /// The close code and reason, once closed.
    pub fn closed(&self) -> Option<(u16, String)> {
        self.closed.lock().clone()
    }
}

impl Conn for RecordingConn {
    fn id(&self) -> ConnId {
        self.id
    }

    fn try_send(&self, frame: &Bytes) -> Result<(), SendError> {
        if self.closed.lock().is_some() {
            return Err(SendError::Closed);
        }
        let mut q = self.queue.lock();
        if q.len() >= self.capacity {
            return Err(SendError::Full);
        }
        q.push_back(frame.clone());
        Ok(())
    }

    fn try_send_all(&self, frames: &[Bytes]) -> Result<(), SendError> {
        if self.closed.lock().is_some() {
            return Err(SendError::Closed);
        }
        let mut q = self.queue.lock();
        if frames.len() > self.capacity.saturating_sub(q.len()) {
            return Err(SendError::Full);
        }
        q.extend(frames.iter().cloned());
        Ok(())
    }

    fn close(&self, code: u16, reason: &str) {
        let mut closed = self.closed.lock();
        if closed.is_none() {
            *closed = Some((code, reason.to_owned()));
        }
    }

    /// Records the notice as the last frame (whatever the capacity: a transport makes room for it), then the close.
    fn disconnect(&self, code: u16, reason: &str, notice: Bytes) {
        let mut closed = self.closed.lock();
        if closed.is_none() {
            self.queue.lock().push_back(notice);
            *closed = Some((code, reason.to_owned()));
        }
    }
}

/// A deterministic simulator: a hub on a manual clock, and recording connections.
#[derive(Debug)]
pub struct Sim {
    /// The hub under test.
    pub hub: Hub,
    /// Its clock.
    pub clock: Arc<ManualClock>,
}

impl Sim {
    /// A hub with the default configuration.
    #[must_use]
    pub fn new() -> Self {
        Self::with_config(HubConfig::default())
    }

    /// A hub with this configuration.
    #[must_use]
    pub fn with_config(config: HubConfig) -> Self {
        let clock = ManualClock::new(1_000_000);
        let hub = Hub::builder(clock.clone()).config(config).build();
        Self { hub, clock }
    }

    /// Connects an anonymous client.
    #[must_use]
    pub fn connect(&self) -> Arc<RecordingConn> {
        self.connect_as(Identity::anonymous(), usize::MAX)
    }

    /// Connects a client of a user.
    #[must_use]
    pub fn connect_user(&self, user: &str) -> Arc<RecordingConn> {
        self.connect_as(Identity::user(user), usize::MAX)
    }

    /// Connects a client with an identity and a queue capacity.
    ///
    /// # Panics
    /// When the hub refuses the registration (a hub bug).
    #[must_use]
    pub fn connect_as(&self, identity: Identity, capacity: usize) -> Arc<RecordingConn> {
        let conn = RecordingConn::with_capacity(self.hub.next_conn_id(), capacity);
        self.hub.register(conn.clone(), identity, None).expect("fresh id registers");
        conn
    }

    /// Sends a text frame from a client.
    pub fn send(&self, conn: &RecordingConn, text: &str) {
        self.hub.handle_text(conn.id(), text.as_bytes());
    }

    /// Sends a text frame and returns what the client received.
    pub fn request(&self, conn: &RecordingConn, text: &str) -> Vec<ServerMessage> {
        self.send(conn, text);
        conn.messages()
    }

    /// Disconnects a client as a transport would when its socket ends.
    pub fn disconnect(&self, conn: &RecordingConn) {
        self.hub.unregister(conn.id(), &DisconnectReason::new(1000, "test"));
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}
