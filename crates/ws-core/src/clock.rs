//! `Clock`: the hub's only source of time, passed in so the core never reads a clock.

use std::fmt;

/// Milliseconds on a monotonic or wall clock chosen by the embedder.
///
/// The hub reads time only through this trait: the transport passes a system
/// clock, tests pass a manual one and move it by hand.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time in milliseconds since some fixed point.
    ///
    /// The hub seeds channel epochs from the first reading, so a clock that
    /// restarts from zero with the process gives every run the same epochs;
    /// prefer milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}
