//! `Hooks`: the embedding application's callbacks on connect and disconnect.

use std::fmt;

use crate::hub::ConnInfo;

/// Why a connection ended, as the transport reports it to [`crate::Hub::unregister`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectReason {
    /// The WebSocket close code (sent or received), 1006 when the socket just dropped.
    pub code: u16,
    /// A short explanation.
    pub reason: String,
}

impl DisconnectReason {
    /// Builds a reason from a code and text.
    #[must_use]
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

/// Callbacks from the hub. They run on the thread that registered or
/// unregistered the connection and must not block.
pub trait Hooks: Send + Sync + fmt::Debug + 'static {
    /// A connection was registered.
    fn on_connect(&self, _info: &ConnInfo) {}
    /// A connection was unregistered; its subscriptions are already gone.
    fn on_disconnect(&self, _info: &ConnInfo, _reason: &DisconnectReason) {}
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}
