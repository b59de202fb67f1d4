//! ws-hub's client: one connection to a hub that survives outages without losing messages.
//!
//! A [`Client`] owns a background task that connects, reconnects and keeps every subscription in step.
//! The contract is PROTOCOL.md; in short:
//!
//! - **State** ([`Client::state`]): `Connecting` → `Connected` → (connection lost) `Disconnected` →
//!   `Connecting` … until [`Client::close`] or a terminal close makes it `Closed`.
//! - **Events** ([`Client::events`]): `Connected` (with the `conn_id`), `Disconnected` (code, reason),
//!   `Reconnecting` (attempt, delay), `Subscribed` (with `recovered`), `Lagged`, `Error`, `Closed`.
//! - **Reconnect**: exponential backoff with full jitter (default 1 s, ×2, capped at 30 s, unlimited
//!   attempts), reset after a connection that stayed up. A `disconnect` frame's `reconnect_after_ms` is a
//!   floor, plus a random extra. Close codes 1002, 1007, 1009 and 4004 are terminal; HTTP 401 is terminal,
//!   except that with a token provider the client first asks it for a fresh token once; after 1008 it asks
//!   the provider again.
//! - **Liveness**: when nothing arrives for the `heartbeat_ms` of `welcome` plus a margin, the connection
//!   is dropped and made again, so a half-open TCP connection cannot hang the client.
//! - **Recovery**: the client remembers each channel's epoch and last delivered offset, resubscribes with
//!   `recover` after a reconnect, drops duplicates by offset, treats an offset skip as missed messages
//!   (it resubscribes with `recover`), reports `recovered: false` rather than pretending, and obeys an
//!   `unsubscribed` notice with `resubscribe: true` after a small random delay.
//! - **Bounded memory**: each subscription buffers at most `buffer` messages; an application that reads
//!   too slowly gets a `Lagged` event and the channel is recovered from its last delivered offset.
//! - **Publishing** while disconnected fails at once with [`Error::NotConnected`], unless an outbox is
//!   configured ([`ClientBuilder::outbox`]): then publications made while disconnected wait in it, in order,
//!   and so do those whose connection dropped before their reply; all are sent after the reconnect with
//!   their idempotency keys (one is made up for a publish without one), so none is lost or made twice.
//!
//! ```no_run
//! # async fn run() -> Result<(), ws_client::Error> {
//! let client = ws_client::Client::builder("ws://127.0.0.1:8080/ws").token("secret").connect();
//! let mut news = client.subscribe("news").await?;
//! let offset = client.publish("news", &serde_json::json!({"text": "hello"})).await?;
//! while let Some(message) = news.recv().await {
//!     println!("{} {} {}", message.channel, message.offset, message.data);
//! }
//! # let _ = offset;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod driver;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use backoff::Backoff;

/// An async source of tokens, asked before every connect.
pub type TokenProvider = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// The connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected; a reconnect is scheduled.
    Disconnected,
    /// Connecting (or waiting for `welcome`).
    Connecting,
    /// Connected and welcomed.
    Connected,
    /// Closed for good: by [`Client::close`] or a terminal close code.
    Closed,
}

/// What happened to the connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Connected; the server's id for this connection.
    Connected {
        /// The connection id.
        conn_id: String,
    },
    /// The connection ended.
    Disconnected {
        /// The close code (1006 when the connection dropped without one).
        code: u16,
        /// The close reason.
        reason: String,
        /// The server's `reconnect_after_ms` hint from its `disconnect` frame, if it sent one: the client
        /// waits at least this long.
        reconnect_after: Option<Duration>,
    },
    /// A reconnect is scheduled.
    Reconnecting {
        /// The attempt number, from 1.
        attempt: u32,
        /// How long the client waits first.
        delay: Duration,
    },
    /// A channel was (re)subscribed; `recovered` is `Some(false)` when messages may have been missed.
    Subscribed {
        /// The channel.
        channel: String,
        /// Whether the recovery replayed every missed message (`None` without a recovery).
        recovered: Option<bool>,
    },
    /// A subscription's buffer filled up; the channel is being recovered.
    Lagged {
        /// The channel.
        channel: String,
    },
    /// Something went wrong that no caller was waiting on.
    Error {
        /// What.
        message: String,
    },
    /// The client stopped for good.
    Closed {
        /// Why.
        reason: String,
    },
}

/// One message of a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The channel.
    pub channel: String,
    /// Its offset in the channel.
    pub offset: u64,
    /// The application event name, if any.
    pub event: Option<String>,
    /// The data.
    pub data: Value,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered `error`.
    #[error("{code}: {message}")]
    Server {
        /// The protocol's error code (`forbidden`, `unavailable`, ...).
        code: String,
        /// The server's message.
        message: String,
    },
    /// No reply within the request timeout.
    #[error("no reply within the request timeout")]
    Timeout,
    /// The client is not connected now (or the connection dropped before the reply).
    #[error("not connected")]
    NotConnected,
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
    /// Disconnected, and the outbox holds as many publications as it may.
    #[error("not connected, and the outbox is full")]
    OutboxFull,
}

/// Builds a [`Client`].
#[must_use]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) token_provider: Option<TokenProvider>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) backoff: Backoff,
    pub(crate) request_timeout: Duration,
    pub(crate) buffer: usize,
    pub(crate) stable_after: Duration,
    pub(crate) outbox: usize,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Sends this token (as `Authorization: Bearer`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Asks `provider` for a token before every connect.
    pub fn token_provider<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.token_provider = Some(Arc::new(move || Box::pin(provider())));
        self
    }
    /// Adds a header to the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// The reconnect backoff (default 1 s, ×2, 30 s cap, unlimited attempts).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
    /// How long a request waits for its reply (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
    /// Keeps up to `capacity` publications while disconnected and sends them after the reconnect, in
    /// order, each with its idempotency key (made up when the call gave none); publications whose
    /// connection dropped before their reply are sent again the same way. Default 0: no outbox, and
    /// publishing while disconnected fails at once with [`Error::NotConnected`].
    pub fn outbox(mut self, capacity: usize) -> Self {
        self.outbox = capacity;
        self
    }
    /// How many messages one subscription buffers before it is `Lagged` (default 1,024).
    pub fn buffer(mut self, messages: usize) -> Self {
        self.buffer = messages.max(1);
        self
    }
    /// How long a connection must stay up for the backoff to start over (default 5 s).
    pub fn stable_after(mut self, duration: Duration) -> Self {
        self.stable_after = duration;
        self
    }
    /// Starts the client: it connects in the background, and keeps reconnecting. Needs a tokio runtime.
    pub fn connect(self) -> Client {
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(State::Connecting);
        let (events, _) = broadcast::channel(1024);
        let buffer = self.buffer;
        let outbox = self.outbox > 0;
        let driver = driver::Driver::new(self, ops.clone(), ops_rx, state_tx, events.clone());
        tokio::spawn(driver.run());
        Client { ops, state, events, buffer, outbox }
    }
}

/// A request from the handle to the driver.
pub(crate) enum Op {
    Subscribe {
        channel: String,
        deliver: mpsc::Sender<Message>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Unsubscribe {
        channel: String,
    },
    Request {
        command: Value,
        reply: oneshot::Sender<Result<Value, Error>>,
        /// A keyed publish the outbox may hold and send again.
        retry: bool,
    },
    /// Resubscribe a channel with `recover` (after a notice, a skip or a lag).
    Resync {
        channel: String,
    },
    Close,
}

/// A reconnecting client. Cheap to clone; the connection closes when [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    ops: mpsc::UnboundedSender<Op>,
    state: watch::Receiver<State>,
    events: broadcast::Sender<Event>,
    buffer: usize,
    /// Whether publications wait in an outbox while disconnected.
    outbox: bool,
}

/// A fresh idempotency key: 16 random hex digits.
fn made_up_key() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("state", &self.state()).finish_non_exhaustive()
    }
}

impl Client {
    /// Starts building a client for `url` (`ws://` or `wss://`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            token: None,
            token_provider: None,
            headers: Vec::new(),
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(10),
            buffer: 1024,
            stable_after: Duration::from_secs(5),
            outbox: 0,
        }
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// Waits until the state is `want` (or the client closed).
    pub async fn wait_for(&self, want: State) -> State {
        let mut rx = self.state.clone();
        let result = rx.wait_for(|s| *s == want || *s == State::Closed).await;
        result.map_or(State::Closed, |s| *s)
    }

    /// Events from now on.
    #[must_use]
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Subscribes to a channel; the subscription lives across reconnects until unsubscribed.
    ///
    /// # Errors
    /// The server's refusal (`forbidden`, ...), [`Error::Timeout`], or [`Error::Closed`]. While
    /// disconnected it waits for the next connection (within the request timeout).
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, Error> {
        let (deliver, rx) = mpsc::channel(self.buffer);
        let (reply, reply_rx) = oneshot::channel();
        self.ops.send(Op::Subscribe { channel: channel.to_owned(), deliver, reply }).map_err(|_| Error::Closed)?;
        reply_rx.await.map_err(|_| Error::Closed)??;
        Ok(Subscription { channel: channel.to_owned(), rx, ops: self.ops.clone() })
    }

    /// Publishes `data` and returns its offset.
    ///
    /// # Errors
    /// [`Error::NotConnected`] at once while disconnected (with an outbox, [`Error::OutboxFull`] when it is
    /// full); the server's error; [`Error::Timeout`].
    pub async fn publish(&self, channel: &str, data: &impl serde::Serialize) -> Result<u64, Error> {
        self.publish_once(channel, data, None).await
    }

    /// Publishes with an idempotency key: a repeat with the same key on the channel within the server's
    /// window publishes nothing and answers the first offset, so after [`Error::Timeout`] or
    /// [`Error::NotConnected`] (the outcome unknown) the same call can be retried safely.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn publish_once(
        &self,
        channel: &str,
        data: &impl serde::Serialize,
        idempotency_key: Option<&str>,
    ) -> Result<u64, Error> {
        let data = serde_json::to_value(data)
            .map_err(|e| Error::Server { code: "bad_request".into(), message: e.to_string() })?;
        let mut command = serde_json::json!({"type": "publish", "channel": channel, "data": data});
        let retry = self.outbox;
        match idempotency_key {
            Some(key) => command["idempotency_key"] = key.into(),
            // Sent again after a reconnect, a publication needs a key so it is not made twice.
            None if retry => command["idempotency_key"] = made_up_key().into(),
            None => {}
        }
        let (reply, rx) = oneshot::channel();
        self.ops.send(Op::Request { command, reply, retry }).map_err(|_| Error::Closed)?;
        let reply = rx.await.map_err(|_| Error::Closed)??;
        Ok(reply["offset"].as_u64().unwrap_or(0))
    }

    /// Who is subscribed to a channel: `(conn_id, user_id)` pairs.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn presence(&self, channel: &str) -> Result<Vec<(String, Option<String>)>, Error> {
        let reply = self.request(serde_json::json!({"type": "presence", "channel": channel})).await?;
        Ok(reply["clients"]
            .as_array()
            .map(|clients| {
                clients
                    .iter()
                    .map(|c| (c["conn_id"].as_str().unwrap_or("").to_owned(), c["user_id"].as_str().map(str::to_owned)))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Up to `limit` of a channel's newest kept messages.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn history(&self, channel: &str, limit: u32) -> Result<Vec<Message>, Error> {
        let reply = self.request(serde_json::json!({"type": "history", "channel": channel, "limit": limit})).await?;
        Ok(reply["messages"].as_array().map(|m| m.iter().filter_map(driver::message).collect()).unwrap_or_default())
    }

    /// Sends a command (a JSON object without `id`) and returns the reply.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub async fn request(&self, command: Value) -> Result<Value, Error> {
        let (reply, rx) = oneshot::channel();
        self.ops.send(Op::Request { command, reply, retry: false }).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Closes the connection with 1000 and stops reconnecting.
    pub async fn close(&self) {
        let _ = self.ops.send(Op::Close);
        self.wait_for(State::Closed).await;
    }
}

/// The messages of one channel, in offset order, without duplicates.
#[derive(Debug)]
pub struct Subscription {
    channel: String,
    rx: mpsc::Receiver<Message>,
    ops: mpsc::UnboundedSender<Op>,
}

impl Subscription {
    /// The channel.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The next message; `None` once unsubscribed or closed.
    pub async fn recv(&mut self) -> Option<Message> {
        self.rx.recv().await
    }

    /// Unsubscribes.
    pub fn unsubscribe(self) {
        let _ = self.ops.send(Op::Unsubscribe { channel: self.channel.clone() });
    }
}

impl futures_util::Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.rx.poll_recv(cx)
    }
}
