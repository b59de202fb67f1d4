//! The `Conn` trait: the transport's outbound handle to one connection, and `ConnId`.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// A connection's id, unique within a hub. On the wire it is 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Wraps a raw id.
    #[must_use]
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw id.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

impl FromStr for ConnId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(Self)
    }
}

/// Why [`Conn::try_send`] did not queue a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection's bounded queue is full; the hub applies the namespace's
    /// slow-consumer policy (close with 4000, or drop the message).
    #[error("send queue is full")]
    Full,
    /// The connection is closed or closing; the frame is discarded.
    #[error("connection is closed")]
    Closed,
}

/// The outbound half of one connection, as a transport implements it.
///
/// The contract a transport must meet:
/// - [`Conn::try_send`] never blocks and never awaits: it queues one
///   already-encoded text frame on the connection's bounded queue, or reports
///   [`SendError::Full`] or [`SendError::Closed`] at once. The hub calls it while
///   holding a channel's lock, from any thread.
/// - [`Conn::close`] and [`Conn::disconnect`] are idempotent and safe to call
///   concurrently with `try_send` and with each other: the first call wins, later
///   calls do nothing. Neither waits for the close to happen; `close` aborts a
///   write in flight, `disconnect` lets it finish and sends its notice and close
///   frame after it, within a deadline.
/// - [`Conn::try_send_all`] queues several frames as one unit: all of them, in order, or none.
///   The hub uses it for a `subscribed` reply and the replay it promises, so a recovery is
///   either delivered whole or not promised at all (`recovered: false`).
/// - After `close`, `try_send` and `try_send_all` report `Closed`.
/// - Once the connection has ended, the transport calls `Hub::unregister`.
pub trait Conn: Send + Sync + 'static {
    /// The id the hub gave this connection.
    fn id(&self) -> ConnId;

    /// Queues one encoded text frame; never blocks.
    ///
    /// The frame is lent, not given: a fan-out hands the same bytes to every subscriber, and a transport
    /// that copies short frames into its own buffer (as ws-transport does) then never touches the shared
    /// count; one that keeps the frame clones it.
    ///
    /// # Errors
    /// [`SendError::Full`] when the bounded queue is full, [`SendError::Closed`]
    /// when the connection is closed.
    fn try_send(&self, frame: &Bytes) -> Result<(), SendError>;

    /// Queues every frame of `frames`, in order, or none of them; never blocks.
    ///
    /// The frames go in only when the queue's free space takes all of them at this moment (by its message
    /// and byte bounds), and nothing else can be queued between them.
    ///
    /// # Errors
    /// [`SendError::Full`] when they do not all fit (nothing was queued), [`SendError::Closed`] when the
    /// connection is closed.
    fn try_send_all(&self, frames: &[Bytes]) -> Result<(), SendError>;

    /// Closes the connection with a WebSocket close code and reason; idempotent.
    ///
    /// This is the close for a peer that is not keeping up: a write in flight may be aborted, and what is
    /// queued is not sent.
    fn close(&self, code: u16, reason: &str);

    /// Closes the connection on purpose (a kick): what is queued goes out, then `notice` (an encoded
    /// `disconnect` message) and the close frame, even when the socket is busy; a peer that does not take
    /// them within the transport's close deadline is dropped. Idempotent with [`Conn::close`]: the first
    /// close wins. Never blocks.
    fn disconnect(&self, code: u16, reason: &str, notice: Bytes);
}
