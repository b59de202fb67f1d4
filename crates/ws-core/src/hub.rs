//! `Hub`: the registry of connections and channels, and every operation on them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use ws_protocol::{ChannelName, ErrorCode, ServerMessage};

use crate::broker::{Broker, Control, LocalBroker};
use crate::channel::ChannelState;
use crate::clock::Clock;
use crate::conn::{Conn, ConnId, SendError};
use crate::connections::{ConnEntry, Connections};
use crate::handler::Handler;
use crate::hooks::{DisconnectReason, Hooks, NoHooks};
use crate::namespace::{Namespaces, SlowConsumerPolicy};
use crate::policy::{ChannelAuthorizer, Identity, NamespaceAuthorizer};
use crate::registry::ChannelRegistry;
use crate::stats::{DropReason, Stats, StatsSnapshot};

/// The hub's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Channel policy by namespace. Default: one permissive default namespace.
    pub namespaces: Namespaces,
    /// The most channels one connection may subscribe to. Default 1,024.
    pub max_channels_per_conn: usize,
    /// This node's prefix, put in the top 24 bits of every connection id so ids are unique across the
    /// nodes of a cluster (only its low 24 bits count). A clustered server derives it from its node id. Default 0.
    pub node_prefix: u32,
    /// The most messages one recovery replays; a longer gap answers `recovered: false`. Keep it below the
    /// transport's send queue, which must hold the whole replay at once. Default 512.
    pub max_recovery_messages: usize,
    /// The most bytes one recovery replays; a larger gap answers `recovered: false`. Default 2 MiB.
    pub max_recovery_bytes: usize,
    /// How long a publish's `idempotency_key` is remembered per channel: a repeat within it publishes
    /// nothing and answers the first offset. Default 5 minutes.
    pub idempotency_window_ms: u64,
    /// The most bytes of in-memory history this node keeps over every channel together (frames and payloads
    /// counted); past it, whole histories are evicted, the least recently written first, and their channels
    /// get a new epoch. With a clustered broker history lives there instead. Default 128 MiB.
    pub max_history_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            namespaces: Namespaces::default(),
            max_channels_per_conn: 1024,
            node_prefix: 0,
            max_recovery_messages: 512,
            max_recovery_bytes: 2 * 1024 * 1024,
            idempotency_window_ms: 300_000,
            max_history_bytes: 128 * 1024 * 1024,
        }
    }
}

impl HubConfig {
    /// Sets [`Self::namespaces`].
    #[must_use]
    pub fn namespaces(mut self, namespaces: Namespaces) -> Self {
        self.namespaces = namespaces;
        self
    }
    /// Sets [`Self::max_channels_per_conn`].
    #[must_use]
    pub fn max_channels_per_conn(mut self, n: usize) -> Self {
        self.max_channels_per_conn = n;
        self
    }
    /// Sets [`Self::node_prefix`].
    #[must_use]
    pub fn node_prefix(mut self, prefix: u32) -> Self {
        self.node_prefix = prefix;
        self
    }
    /// Sets [`Self::idempotency_window_ms`].
    #[must_use]
    pub fn idempotency_window_ms(mut self, ms: u64) -> Self {
        self.idempotency_window_ms = ms;
        self
    }
    /// Sets [`Self::max_history_bytes`].
    #[must_use]
    pub fn max_history_bytes(mut self, bytes: usize) -> Self {
        self.max_history_bytes = bytes;
        self
    }

    /// Sets [`Self::max_recovery_messages`] and [`Self::max_recovery_bytes`].
    #[must_use]
    pub fn max_recovery(mut self, messages: usize, bytes: usize) -> Self {
        self.max_recovery_messages = messages;
        self.max_recovery_bytes = bytes;
        self
    }
}

/// Builds a [`Hub`].
#[derive(Debug)]
#[must_use]
pub struct HubBuilder {
    config: HubConfig,
    clock: Arc<dyn Clock>,
    authorizer: Arc<dyn ChannelAuthorizer>,
    broker: Arc<dyn Broker>,
    hooks: Arc<dyn Hooks>,
}

impl HubBuilder {
    /// Sets the configuration (default [`HubConfig::default`]).
    pub fn config(mut self, config: HubConfig) -> Self {
        self.config = config;
        self
    }
    /// Sets the channel authorizer (default [`NamespaceAuthorizer`]).
    pub fn authorizer(mut self, authorizer: Arc<dyn ChannelAuthorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }
    /// Sets the broker (default [`LocalBroker`]).
    pub fn broker(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = broker;
        self
    }
    /// Sets the hooks (default [`NoHooks`]).
    pub fn hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = hooks;
        self
    }
    /// Builds the hub.
    #[must_use]
    pub fn build(self) -> Hub {
        let epoch_seed = self.clock.now_ms();
        let clustered = self.broker.clustered();
        let hub = Hub {
            inner: Arc::new(Inner {
                clustered,
                conns: Connections::new(self.config.node_prefix),
                channels: ChannelRegistry::new(epoch_seed, clustered, self.config.max_history_bytes),
                config: self.config,
                clock: self.clock,
                authorizer: self.authorizer,
                broker: self.broker,
                hooks: self.hooks,
                handlers: RwLock::new(HashMap::new()),
                stats: Stats::default(),
            }),
        };
        hub.inner.broker.attach(WeakHub(Arc::downgrade(&hub.inner)));
        hub
    }
}

/// The hub: connections, channels, fan-out and policy, with no IO and no async runtime.
///
/// `Hub` is `Send + Sync` and cheap to clone (an `Arc`); every method takes
/// `&self`, and connection tasks call it directly from many threads at once.
/// There is no central task: channels live in a sharded registry, and each
/// channel has its own lock, so publishes on different channels do not contend.
///
/// `Hub` is the facade that wires the parts, each with its own state and invariants: the connection
/// registry (`Connections`), the channel registry (`ChannelRegistry`), subscriptions with recovery
/// (`subscriptions.rs`), publishing and sequencing (`publish.rs`), presence and history queries
/// (`presence.rs`) and command dispatch (`commands.rs`).
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// A hub handle that does not keep the hub alive: what a broker holds to call back.
#[derive(Clone)]
pub struct WeakHub(std::sync::Weak<Inner>);

impl WeakHub {
    /// The hub, while it lives.
    #[must_use]
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

impl std::fmt::Debug for WeakHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakHub")
    }
}

pub(crate) struct Inner {
    /// Whether a clustered broker sequences channels (see [`Broker::clustered`]).
    pub(crate) clustered: bool,
    pub(crate) config: HubConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) authorizer: Arc<dyn ChannelAuthorizer>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) handlers: RwLock<HashMap<Box<str>, Arc<dyn Handler>>>,
    pub(crate) conns: Connections,
    pub(crate) channels: ChannelRegistry,
    pub(crate) stats: Stats,
}

/// A snapshot of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The connection id.
    pub id: ConnId,
    /// The user id, `None` when anonymous.
    pub user_id: Option<Arc<str>>,
    /// The peer address, when the transport knows it.
    pub remote: Option<SocketAddr>,
    /// When it was registered, on the hub's clock.
    pub connected_at_ms: u64,
    /// Its channels, sorted.
    pub channels: Vec<ChannelName>,
}

/// Why [`Hub::register`] refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A connection with this id is already registered; use [`Hub::next_conn_id`] for ids.
    #[error("connection id {0} is already registered")]
    DuplicateId(ConnId),
}

/// A rejected client command: the `error` reply's code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    /// The error code.
    pub code: ErrorCode,
    /// The message.
    pub message: String,
}

impl CommandError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl Hub {
    /// Starts building a hub that reads time from `clock`.
    pub fn builder(clock: Arc<dyn Clock>) -> HubBuilder {
        HubBuilder {
            config: HubConfig::default(),
            clock,
            authorizer: Arc::new(NamespaceAuthorizer),
            broker: Arc::new(LocalBroker),
            hooks: Arc::new(NoHooks),
        }
    }

    /// The hub's configuration.
    #[must_use]
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The current time on the hub's clock, in milliseconds.
    #[must_use]
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// A fresh connection id for a transport to give its next connection.
    #[must_use]
    pub fn next_conn_id(&self) -> ConnId {
        self.inner.conns.next_id()
    }

    /// A copy of the counters.
    #[must_use]
    pub fn stats(&self) -> StatsSnapshot {
        let stats = &self.inner.stats;
        let (history_bytes, history_evictions) = self.inner.channels.history_stats();
        StatsSnapshot {
            connections: self.inner.conns.len(),
            channels: self.inner.channels.len(),
            subscriptions: stats.subscriptions.gauge(),
            messages_in: stats.messages_in.get(),
            messages_out: stats.messages_out.get(),
            publications: stats.publications.get(),
            drops_slow_consumer: stats.drops(DropReason::SlowConsumer),
            drops_queue_full: stats.drops(DropReason::QueueFull),
            drops_closed: stats.drops(DropReason::Closed),
            gaps_filled: stats.gaps_filled.get(),
            gaps_flagged: stats.gaps_flagged.get(),
            history_bytes,
            history_evictions,
        }
    }

    /// Registers a custom command handler for `kind`, replacing any earlier one.
    pub fn register_handler(&self, kind: impl Into<Box<str>>, handler: Arc<dyn Handler>) {
        self.inner.handlers.write().insert(kind.into(), handler);
    }

    // ----- connections -----

    /// Registers a connection the transport has accepted.
    ///
    /// # Errors
    /// [`RegisterError::DuplicateId`] when the id is in use.
    pub fn register(
        &self,
        conn: Arc<dyn Conn>,
        identity: Identity,
        remote: Option<SocketAddr>,
    ) -> Result<(), RegisterError> {
        let id = conn.id();
        let entry = Arc::new(ConnEntry::new(conn, identity, remote, self.now_ms()));
        if !self.inner.conns.insert(&entry) {
            return Err(RegisterError::DuplicateId(id));
        }
        self.inner.hooks.on_connect(&entry.info());
        Ok(())
    }

    /// Unregisters a connection that has ended, removing every subscription it
    /// had. Returns its last snapshot, or `None` when it was not registered.
    pub fn unregister(&self, id: ConnId, reason: &DisconnectReason) -> Option<ConnInfo> {
        let entry = self.inner.conns.remove(id)?;
        let info = entry.info();
        let channels: Vec<ChannelName> = entry.channels.lock().take_all();
        for channel in &channels {
            self.leave_channel(&entry, channel);
        }
        self.inner.hooks.on_disconnect(&info, reason);
        Some(info)
    }

    pub(crate) fn entry(&self, id: ConnId) -> Option<Arc<ConnEntry>> {
        self.inner.conns.get(id)
    }

    /// A snapshot of one connection.
    #[must_use]
    pub fn connection(&self, id: ConnId) -> Option<ConnInfo> {
        self.entry(id).map(|e| e.info())
    }

    /// The identity a connection registered with.
    #[must_use]
    pub fn identity(&self, id: ConnId) -> Option<Identity> {
        self.entry(id).map(|e| e.identity().clone())
    }

    /// The ids of every connection of a user.
    #[must_use]
    pub fn user_connections(&self, user_id: &str) -> Vec<ConnId> {
        self.inner.conns.of_user(user_id)
    }

    /// The ids of every registered connection.
    #[must_use]
    pub fn connection_ids(&self) -> Vec<ConnId> {
        self.inner.conns.ids()
    }

    // ----- direct sends -----

    /// Queues an encoded frame on one connection.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the connection is not registered; otherwise what
    /// its `try_send` said. A full queue applies the default namespace's slow-consumer policy.
    pub fn send(&self, id: ConnId, frame: &Bytes) -> Result<(), SendError> {
        let entry = self.entry(id).ok_or(SendError::Closed)?;
        self.deliver_one(&entry.conn, frame, self.inner.config.namespaces.default_policy().slow_consumer)
    }

    /// Queues an encoded frame on every connection of a user, on every node of a cluster; returns how many
    /// of this node's connections took it.
    pub fn send_to_user(&self, user_id: &str, frame: &Bytes) -> usize {
        self.control(Control::SendToUser { user_id: user_id.to_owned(), frame: frame.clone() });
        self.send_to_user_local(user_id, frame)
    }

    pub(crate) fn send_to_user_local(&self, user_id: &str, frame: &Bytes) -> usize {
        self.user_connections(user_id).into_iter().filter(|id| self.send(*id, frame).is_ok()).count()
    }

    /// Queues an encoded frame on every connection, on every node of a cluster; returns how many of this
    /// node's connections took it.
    pub fn broadcast(&self, frame: &Bytes) -> usize {
        self.control(Control::Broadcast { frame: frame.clone() });
        self.broadcast_local(frame)
    }

    pub(crate) fn broadcast_local(&self, frame: &Bytes) -> usize {
        let policy = self.inner.config.namespaces.default_policy().slow_consumer;
        self.inner.conns.all().iter().filter(|e| self.deliver_one(&e.conn, frame, policy).is_ok()).count()
    }

    /// Sends `disconnect` and closes one connection, wherever it is in a cluster; returns whether it was on
    /// this node.
    pub fn disconnect(&self, id: ConnId, code: u16, reason: &str, reconnect_after_ms: u64) -> bool {
        let here = self.disconnect_local(id, code, reason, reconnect_after_ms);
        if !here {
            self.control(Control::DisconnectConn { conn_id: id, code, reason: reason.to_owned() });
        }
        here
    }

    pub(crate) fn disconnect_local(&self, id: ConnId, code: u16, reason: &str, reconnect_after_ms: u64) -> bool {
        let Some(entry) = self.entry(id) else { return false };
        let frame = ServerMessage::Disconnect { code, reason: reason.to_owned(), reconnect_after_ms }.encode();
        entry.conn.disconnect(code, reason, frame);
        true
    }

    /// Disconnects every connection of a user, on every node of a cluster; returns how many were on this node.
    pub fn disconnect_user(&self, user_id: &str, code: u16, reason: &str, reconnect_after_ms: u64) -> usize {
        self.control(Control::DisconnectUser { user_id: user_id.to_owned(), code, reason: reason.to_owned() });
        self.disconnect_user_local(user_id, code, reason, reconnect_after_ms)
    }

    pub(crate) fn disconnect_user_local(
        &self,
        user_id: &str,
        code: u16,
        reason: &str,
        reconnect_after_ms: u64,
    ) -> usize {
        self.user_connections(user_id)
            .into_iter()
            .filter(|id| self.disconnect_local(*id, code, reason, reconnect_after_ms))
            .count()
    }

    /// A handle that does not keep the hub alive.
    pub(crate) fn weak(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// Whether a clustered broker sequences this hub's channels.
    #[must_use]
    pub fn is_clustered(&self) -> bool {
        self.inner.clustered
    }

    /// Whether the broker can take requests now (always true on a single node).
    #[must_use]
    pub fn broker_available(&self) -> bool {
        !self.inner.clustered || self.inner.broker.available()
    }

    /// Queues a frame on one subscriber and applies `policy` when its queue is full.
    pub(crate) fn deliver_one(
        &self,
        conn: &Arc<dyn Conn>,
        frame: &Bytes,
        policy: SlowConsumerPolicy,
    ) -> Result<(), SendError> {
        let result = conn.try_send(frame);
        match result {
            Ok(()) => {
                self.inner.stats.messages_out.add(1);
            }
            Err(SendError::Full) => self.overflow(conn.as_ref(), policy),
            Err(SendError::Closed) => self.inner.stats.drop(DropReason::Closed, 1),
        }
        result
    }

    pub(crate) fn overflow(&self, conn: &dyn Conn, policy: SlowConsumerPolicy) {
        match policy {
            SlowConsumerPolicy::Disconnect => {
                self.inner.stats.drop(DropReason::SlowConsumer, 1);
                conn.close(ws_protocol::close::SLOW_CONSUMER, "slow consumer");
            }
            SlowConsumerPolicy::DropMessage => self.inner.stats.drop(DropReason::QueueFull, 1),
        }
    }

    /// Hands one shared frame to every subscriber. Counters are added once per
    /// fan-out, not per delivery, so many publishing threads do not fight over
    /// one cache line.
    pub(crate) fn fan_out(&self, state: &ChannelState, frame: &Bytes, policy: SlowConsumerPolicy) -> usize {
        let mut sent = 0u64;
        let mut closed = 0u64;
        for sub in state.subscribers.iter() {
            match sub.conn.try_send(frame) {
                Ok(()) => sent += 1,
                Err(SendError::Full) => self.overflow(sub.conn.as_ref(), policy),
                Err(SendError::Closed) => closed += 1,
            }
        }
        self.inner.stats.messages_out.add(sent);
        self.inner.stats.drop(DropReason::Closed, closed);
        usize::try_from(sent).unwrap_or(usize::MAX)
    }
}
