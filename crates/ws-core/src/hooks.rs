//! `Hooks`: the embedding application's callbacks on connect, disconnect and refused upgrades.

use std::fmt;
use std::net::SocketAddr;

use crate::hub::{ConnInfo, Hub};

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

/// Why the transport refused a WebSocket upgrade, in [`UpgradeRefusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The authenticator refused the credentials, or there were none and anonymous clients are not
    /// allowed (401). Many in a row from one address may be someone guessing tokens.
    Unauthorized,
    /// The authenticator could not decide (its backend is down) or did not in time (503).
    Unavailable,
    /// The `Origin` is not allowed: a page of another site tried to connect (403).
    Origin,
    /// A connection cap was reached, the server's or the client address's (503).
    Capacity,
    /// The server is shutting down (503).
    ShuttingDown,
    /// The request is not a valid upgrade: a missing key or a wrong version, a relay room name that is not
    /// allowed (400).
    BadRequest,
    /// The hub refused to register the connection (500); a server fault.
    Internal,
}

impl RefusalReason {
    /// A short label: `unauthorized`, `unavailable`, `origin`, `capacity`, `shutting_down`, `bad_request`,
    /// `internal`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Unavailable => "unavailable",
            Self::Origin => "origin",
            Self::Capacity => "capacity",
            Self::ShuttingDown => "shutting_down",
            Self::BadRequest => "bad_request",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WebSocket upgrade the transport refused before the 101, for [`Hooks::on_upgrade_refused`].
///
/// It never holds credentials: no token, no headers, and the path without its query string (where browsers
/// send `?token=`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeRefusal {
    /// Why it was refused.
    pub reason: RefusalReason,
    /// The client's address, as the socket reports it (a proxy's, behind one).
    pub peer: SocketAddr,
    /// The request's path, without the query string: `/ws`, `/relay/room`.
    pub path: String,
}

impl UpgradeRefusal {
    /// A refusal of the upgrade `peer` asked for on `path`; anything from a `?` on is cut off, so a token in
    /// the query never gets here.
    ///
    /// ```
    /// use ws_core::{RefusalReason, UpgradeRefusal};
    ///
    /// let peer = "192.0.2.7:50123".parse().unwrap();
    /// let refusal = UpgradeRefusal::new(RefusalReason::Unauthorized, peer, "/ws?token=secret");
    /// assert_eq!((refusal.path.as_str(), refusal.reason.as_str()), ("/ws", "unauthorized"));
    /// ```
    #[must_use]
    pub fn new(reason: RefusalReason, peer: SocketAddr, path: &str) -> Self {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        Self { reason, peer, path: path.to_owned() }
    }
}

/// Callbacks from the hub. They run on the thread that registered or
/// unregistered the connection (or refused it) and must not block: hand slow work, such as alerting or
/// updating a firewall, to a task of your own.
pub trait Hooks: Send + Sync + fmt::Debug + 'static {
    /// A connection was registered.
    fn on_connect(&self, _info: &ConnInfo) {}
    /// A connection was unregistered; its subscriptions are already gone.
    fn on_disconnect(&self, _info: &ConnInfo, _reason: &DisconnectReason) {}
    /// The transport refused a WebSocket upgrade (on any endpoint), just before it sends the refusal: log it,
    /// alert on it, or block the address. The default does nothing.
    fn on_upgrade_refused(&self, _refusal: &UpgradeRefusal) {}
}

/// Hooks that do nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}

impl Hub {
    /// For transports: reports an upgrade refused before the 101 to the hooks
    /// ([`Hooks::on_upgrade_refused`]).
    pub fn upgrade_refused(&self, refusal: &UpgradeRefusal) {
        self.inner.hooks.on_upgrade_refused(refusal);
    }
}
