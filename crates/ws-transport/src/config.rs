//! `TransportConfig`: paths, handshake policy, per-connection limits and shutdown settings, and `RateLimit`.

use std::sync::Arc;
use std::time::Duration;

use ws_core::{AllowAnonymous, Authenticator};

use crate::http::HttpHandler;
use crate::stats::TransportStats;

/// A per-connection message rate limit: a token bucket.
///
/// Every complete data message (text or binary) takes one token; the bucket
/// refills at [`Self::per_second`] tokens a second up to [`Self::burst`]. A
/// message that finds the bucket empty is dropped: on `/ws` it gets an `error`
/// reply with code `rate_limited`, on the relay it is silently not forwarded.
/// After [`Self::max_violations`] dropped messages in a row the connection is
/// closed with 4003.
///
/// The default lets a new connection send 2,048 messages at once, twice the hub's default
/// `max_channels_per_conn`, so a client that reconnects can resubscribe to every channel and still send its
/// backlog; after that, 100 a second for as long as it likes. Only a client that keeps sending faster is
/// refused, and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Tokens added per second. Default 100.
    pub per_second: u32,
    /// The bucket's size: how many messages may arrive at once. Default 2,048.
    pub burst: u32,
    /// Consecutive rate-limited messages after which the connection is closed with 4003. Default 10.
    pub max_violations: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: 100, burst: 2048, max_violations: 10 }
    }
}

impl RateLimit {
    /// A limit of `per_second` messages a second with bursts of `burst`, closing after the default 10 violations.
    #[must_use]
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst, ..Self::default() }
    }

    /// Sets [`Self::max_violations`].
    #[must_use]
    pub fn max_violations(mut self, n: u32) -> Self {
        self.max_violations = n;
        self
    }
}

/// How the transport serves: paths, handshake policy, limits, heartbeats and shutdown.
///
/// Every limit has a safe default; build on [`TransportConfig::default`] with the chainable setters:
///
/// ```
/// use std::time::Duration;
/// use ws_transport::{RateLimit, TransportConfig};
///
/// let config = TransportConfig::default()
///     .allowed_origins(vec!["https://app.example.com".into()])
///     .heartbeat_interval(Duration::from_secs(30))
///     .rate_limit(Some(RateLimit::new(50, 100)));
/// assert_eq!(config.ws_path, "/ws");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// The hub endpoint's path. Default `/ws`.
    pub ws_path: String,
    /// The relay endpoint's path prefix; the rest of the path names the room, and an empty prefix turns the
    /// relay off. Default `/relay/`.
    pub relay_path_prefix: String,
    /// An endpoint that echoes every message back, on the exact read path and limits of the others; for
    /// conformance testing (`cargo xtask autobahn`). Default `None` (off).
    pub echo_path: Option<String>,
    /// Origins allowed to open WebSockets, compared exactly with the `Origin` header (`"*"` allows any). When
    /// empty, the default policy applies: requests without `Origin` and requests whose `Origin` names the same
    /// host as the `Host` header are allowed. Default empty.
    pub allowed_origins: Vec<String>,
    /// Turns the token of an upgrade request into an identity. Default [`AllowAnonymous`].
    pub authenticator: Arc<dyn Authenticator>,
    /// Serves every request that is not a WebSocket endpoint or `/healthz`. Default `None`: such requests get
    /// a 404 with a JSON body.
    pub http_handler: Option<Arc<dyn HttpHandler>>,
    /// How often the server pings each connection; also sent to hub clients as `heartbeat_ms`. Default 25 s.
    pub heartbeat_interval: Duration,
    /// A connection from which nothing at all (not even a pong) arrives for this long is closed with 4001.
    /// Default 60 s.
    pub pong_timeout: Duration,
    /// How long a client has to send its request head, and then again to finish the rest of the handshake
    /// (authentication and the 101 response); slower handshakes are dropped. Default 10 s.
    pub handshake_timeout: Duration,
    /// The largest request head (request line and headers) accepted, in bytes; larger ones get 431.
    /// Default 16 KiB.
    pub max_header_bytes: usize,
    /// The largest message accepted, in bytes, counted across all its fragments; a larger one closes the
    /// connection with 1009 before more than this is buffered. Default 64 KiB.
    pub max_message_size: usize,
    /// The most frames one message may be split into; more close the connection with 1009. Default 128.
    pub max_fragments: u32,
    /// The most messages a connection's send queue holds; a full queue is a slow consumer (4000). Default 1,024.
    pub queue_messages: usize,
    /// The most bytes a connection's send queue holds (a single message is always accepted into an empty
    /// queue). Default 4 MiB.
    pub queue_bytes: usize,
    /// A write that makes no progress for this long drops the connection. Default 10 s.
    pub write_timeout: Duration,
    /// How long to wait for the peer's reply to a close frame before dropping the connection. Default 5 s.
    pub close_timeout: Duration,
    /// The most WebSocket connections (all endpoints together); more are refused with 503. Default 10,000.
    pub max_connections: usize,
    /// The most WebSocket connections from one IP address; more are refused with 503. Default 1,000.
    pub max_connections_per_ip: usize,
    /// The `Retry-After` a 503 carries. Default 5 s.
    pub retry_after: Duration,
    /// The per-connection message rate limit; `None` turns it off. Default `Some(RateLimit::default())`:
    /// 100 messages a second, bursts of 2,048, closed with 4003 after 10 violations in a row.
    pub rate_limit: Option<RateLimit>,
    /// Whether the relay sends a message back to its sender too. Default `false`.
    pub relay_echo: bool,
    /// On shutdown, how long to wait for connections to flush and close before dropping them. Default 10 s.
    pub drain_timeout: Duration,
    /// The `reconnect_after_ms` of the `disconnect` frame sent on shutdown, before any spread. Default 1 s.
    pub shutdown_reconnect_after: Duration,
    /// On shutdown, connections are told to reconnect after [`Self::shutdown_reconnect_after`] plus a share of
    /// this window that grows with their position, so clients do not all come back at once. Default zero.
    pub shutdown_reconnect_spread: Duration,
    /// How often the hub's idle channels are swept ([`ws_core::Hub::sweep`]). Default 5 s.
    pub sweep_interval: Duration,
    /// The counters the transport keeps; share the `Arc` to read them. Default: fresh counters.
    pub stats: Arc<TransportStats>,
    /// Serve TLS with this rustls configuration (feature `tls`). Default `None`: plain TCP.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            ws_path: "/ws".to_owned(),
            relay_path_prefix: "/relay/".to_owned(),
            echo_path: None,
            allowed_origins: Vec::new(),
            authenticator: Arc::new(AllowAnonymous),
            http_handler: None,
            heartbeat_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_message_size: 64 * 1024,
            max_fragments: 128,
            queue_messages: 1024,
            queue_bytes: 4 * 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            retry_after: Duration::from_secs(5),
            rate_limit: Some(RateLimit::default()),
            relay_echo: false,
            drain_timeout: Duration::from_secs(10),
            shutdown_reconnect_after: Duration::from_secs(1),
            shutdown_reconnect_spread: Duration::ZERO,
            sweep_interval: Duration::from_secs(5),
            stats: Arc::default(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Generates one chainable setter per field.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl TransportConfig {
    setters! {
        /// Sets [`Self::ws_path`].
        ws_path: String;
        /// Sets [`Self::relay_path_prefix`].
        relay_path_prefix: String;
        /// Sets [`Self::echo_path`].
        echo_path: Option<String>;
        /// Sets [`Self::allowed_origins`].
        allowed_origins: Vec<String>;
        /// Sets [`Self::authenticator`].
        authenticator: Arc<dyn Authenticator>;
        /// Sets [`Self::http_handler`].
        http_handler: Option<Arc<dyn HttpHandler>>;
        /// Sets [`Self::heartbeat_interval`].
        heartbeat_interval: Duration;
        /// Sets [`Self::pong_timeout`].
        pong_timeout: Duration;
        /// Sets [`Self::handshake_timeout`].
        handshake_timeout: Duration;
        /// Sets [`Self::max_header_bytes`].
        max_header_bytes: usize;
        /// Sets [`Self::max_message_size`].
        max_message_size: usize;
        /// Sets [`Self::max_fragments`].
        max_fragments: u32;
        /// Sets [`Self::queue_messages`].
        queue_messages: usize;
        /// Sets [`Self::queue_bytes`].
        queue_bytes: usize;
        /// Sets [`Self::write_timeout`].
        write_timeout: Duration;
        /// Sets [`Self::close_timeout`].
        close_timeout: Duration;
        /// Sets [`Self::max_connections`].
        max_connections: usize;
        /// Sets [`Self::max_connections_per_ip`].
        max_connections_per_ip: usize;
        /// Sets [`Self::retry_after`].
        retry_after: Duration;
        /// Sets [`Self::rate_limit`].
        rate_limit: Option<RateLimit>;
        /// Sets [`Self::relay_echo`].
        relay_echo: bool;
        /// Sets [`Self::drain_timeout`].
        drain_timeout: Duration;
        /// Sets [`Self::shutdown_reconnect_after`].
        shutdown_reconnect_after: Duration;
        /// Sets [`Self::shutdown_reconnect_spread`].
        shutdown_reconnect_spread: Duration;
        /// Sets [`Self::sweep_interval`].
        sweep_interval: Duration;
        /// Sets [`Self::stats`].
        stats: Arc<TransportStats>;
    }

    /// Sets [`Self::tls`].
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls(mut self, config: Option<Arc<tokio_rustls::rustls::ServerConfig>>) -> Self {
        self.tls = config;
        self
    }

    /// The `reconnect_after_ms` for the connection at `position` of `total` being shut down:
    /// [`Self::shutdown_reconnect_after`] plus `position / total` of [`Self::shutdown_reconnect_spread`].
    #[must_use]
    pub fn shutdown_reconnect_after_ms(&self, position: usize, total: usize) -> u64 {
        let base = duration_ms(self.shutdown_reconnect_after);
        let spread = u128::from(duration_ms(self.shutdown_reconnect_spread));
        let total = total.max(1) as u128;
        let share = spread * (position.min(total as usize) as u128) / total;
        base.saturating_add(u64::try_from(share).unwrap_or(u64::MAX))
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_after_spreads_over_the_window() {
        let config = TransportConfig::default()
            .shutdown_reconnect_after(Duration::from_millis(1000))
            .shutdown_reconnect_spread(Duration::from_millis(4000));
        let got: Vec<u64> = (0..4).map(|i| config.shutdown_reconnect_after_ms(i, 4)).collect();
        assert_eq!(got, [1000, 2000, 3000, 4000]);
        assert_eq!(TransportConfig::default().shutdown_reconnect_after_ms(7, 10), 1000);
        assert_eq!(config.shutdown_reconnect_after_ms(0, 0), 1000);
    }
}
