//! Authentication and authorization: `Identity`, the `Authenticator` and `ChannelAuthorizer` traits and their defaults.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use ws_protocol::{ChannelName, ErrorCode};

use crate::namespace::NamespaceConfig;

/// Who a connection is.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Identity {
    /// The user id; `None` for anonymous connections.
    pub user_id: Option<Arc<str>>,
    /// The claims the authenticator found (a JWT's payload, say); `Null` when none.
    pub claims: serde_json::Value,
    /// Channels this identity may subscribe to whatever the namespace says (a JWT `channels` claim).
    pub channels: Vec<ChannelName>,
    /// When the credentials expire, in the hub clock's milliseconds; the transport closes the connection with 1008 then.
    pub expires_at_ms: Option<u64>,
}

impl Identity {
    /// An anonymous identity.
    #[must_use]
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// An authenticated user.
    #[must_use]
    pub fn user(user_id: impl Into<Arc<str>>) -> Self {
        Self { user_id: Some(user_id.into()), ..Self::default() }
    }

    /// Sets [`Self::claims`].
    #[must_use]
    pub fn with_claims(mut self, claims: serde_json::Value) -> Self {
        self.claims = claims;
        self
    }

    /// Sets [`Self::channels`].
    #[must_use]
    pub fn with_channels(mut self, channels: Vec<ChannelName>) -> Self {
        self.channels = channels;
        self
    }

    /// Sets [`Self::expires_at_ms`].
    #[must_use]
    pub fn with_expiry(mut self, at_ms: u64) -> Self {
        self.expires_at_ms = Some(at_ms);
        self
    }

    /// Whether the connection is anonymous.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.user_id.is_none()
    }
}

/// What the transport knows about an upgrade request, for an [`Authenticator`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct AuthRequest {
    /// The token from `Authorization: Bearer` or `?token=`; never logged.
    pub token: Option<String>,
    /// The request's headers, names lower case.
    pub headers: Vec<(String, String)>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
}

impl AuthRequest {
    /// A request with only a token.
    #[must_use]
    pub fn with_token(token: Option<String>) -> Self {
        Self { token, ..Self::default() }
    }

    /// Sets [`Self::headers`].
    #[must_use]
    pub fn headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers = headers;
        self
    }

    /// Sets [`Self::peer`].
    #[must_use]
    pub fn peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// The first header with this (lower case) name.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token and the credentials headers are secrets: never print them.
        let headers: Vec<_> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let secret = n == "authorization" || n == "cookie";
                (n.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("AuthRequest")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("headers", &headers)
            .field("peer", &self.peer)
            .finish()
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The credentials are missing, malformed, expired or wrong: HTTP 401. The
    /// message goes to the client, so it must not echo the secret.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The authenticator could not decide (its backend is down): HTTP 503; the client retries later.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// Turns an upgrade request into an [`Identity`]; may do IO (ask a backend), so it is async.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + fmt::Debug + 'static {
    /// Authenticates one upgrade request.
    ///
    /// # Errors
    /// [`AuthError`] refuses the upgrade.
    async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, AuthError>;
}

/// The default authenticator: every connection is anonymous, and tokens are ignored.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAnonymous;

#[async_trait::async_trait]
impl Authenticator for AllowAnonymous {
    async fn authenticate(&self, _request: &AuthRequest) -> Result<Identity, AuthError> {
        Ok(Identity::anonymous())
    }
}

/// A channel action a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// `subscribe`.
    Subscribe,
    /// `publish`.
    Publish,
    /// `presence`.
    Presence,
    /// `history`.
    History,
}

/// Why an action was refused; it maps to the reply's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// [`ErrorCode::Unauthorized`] or [`ErrorCode::Forbidden`].
    pub code: ErrorCode,
    /// Why, for the client.
    pub message: String,
}

impl Denial {
    /// Denied because the connection is anonymous.
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::Unauthorized, message: message.into() }
    }

    /// Denied by policy.
    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self { code: ErrorCode::Forbidden, message: message.into() }
    }
}

/// Decides whether an identity may perform an action on a channel. Called on
/// the command path, so it must not block.
pub trait ChannelAuthorizer: Send + Sync + fmt::Debug + 'static {
    /// Allows or denies the action.
    ///
    /// # Errors
    /// A [`Denial`] refuses it with its code and message.
    fn authorize(
        &self,
        identity: &Identity,
        channel: &ChannelName,
        namespace: &NamespaceConfig,
        action: Action,
    ) -> Result<(), Denial>;
}

/// The default rules:
/// - channels granted in [`Identity::channels`] may be subscribed, whatever the rules below say;
/// - a channel ending in `#<user>` is readable (subscribe, presence, history) only by that user;
/// - anonymous connections may subscribe only where the namespace allows anonymous;
/// - publish needs the namespace's `allow_publish`, presence its `presence`, history a non-zero `history_size`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NamespaceAuthorizer;

impl ChannelAuthorizer for NamespaceAuthorizer {
    fn authorize(
        &self,
        identity: &Identity,
        channel: &ChannelName,
        ns: &NamespaceConfig,
        action: Action,
    ) -> Result<(), Denial> {
        let feature = match action {
            Action::Publish => ns.allow_publish.then_some(()).ok_or("publishing is not allowed on this channel"),
            Action::Presence => ns.presence.then_some(()).ok_or("presence is not enabled on this channel"),
            Action::History => (ns.history_size > 0).then_some(()).ok_or("history is not enabled on this channel"),
            Action::Subscribe => Ok(()),
        };
        feature.map_err(Denial::forbidden)?;
        if action == Action::Publish {
            return Ok(());
        }
        // A grant is the backend's explicit word, so it outranks the channel rules.
        if action == Action::Subscribe && identity.channels.iter().any(|c| c == channel) {
            return Ok(());
        }
        if let Some(owner) = channel.user_suffix() {
            return match identity.user_id.as_deref() {
                Some(user) if user == owner => Ok(()),
                None => Err(Denial::unauthorized("this channel belongs to a user; authenticate first")),
                Some(_) => Err(Denial::forbidden("this channel belongs to another user")),
            };
        }
        if identity.is_anonymous() && !ns.allow_anonymous {
            return Err(Denial::unauthorized("anonymous connections may not use this channel"));
        }
        Ok(())
    }
}
