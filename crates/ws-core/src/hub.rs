//! `Hub`: the registry of connections and channels, and every operation on them.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use ws_protocol::{
    encode_message, ChannelName, ChannelNameError, ClientInfo, CommandId, ErrorCode, Json, Publication, ServerMessage,
    StreamPosition,
};

use crate::broker::{Broker, LocalBroker};
use crate::channel::{Channel, ChannelState, Subscriber};
use crate::clock::Clock;
use crate::conn::{Conn, ConnId, SendError};
use crate::handler::Handler;
use crate::hooks::{DisconnectReason, Hooks, NoHooks};
use crate::namespace::{NamespaceConfig, Namespaces, SlowConsumerPolicy};
use crate::policy::{Action, ChannelAuthorizer, Identity, NamespaceAuthorizer};
use crate::shards::Shards;
use crate::stats::{DropReason, Stats, StatsSnapshot};

/// The hub's settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// Channel policy by namespace. Default: one permissive default namespace.
    pub namespaces: Namespaces,
    /// The most channels one connection may subscribe to. Default 1,024.
    pub max_channels_per_conn: usize,
    /// This node's id, put in the top 16 bits of every connection id so ids are unique across nodes. Default 0.
    pub node_id: u16,
    /// The most messages one recovery replays; a longer gap answers `recovered: false`. Keep it below the
    /// transport's send queue, which must hold the whole replay at once. Default 512.
    pub max_recovery_messages: usize,
    /// The most bytes one recovery replays; a larger gap answers `recovered: false`. Default 2 MiB.
    pub max_recovery_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            namespaces: Namespaces::default(),
            max_channels_per_conn: 1024,
            node_id: 0,
            max_recovery_messages: 512,
            max_recovery_bytes: 2 * 1024 * 1024,
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
    /// Sets [`Self::node_id`].
    #[must_use]
    pub fn node_id(mut self, id: u16) -> Self {
        self.node_id = id;
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
        Hub {
            inner: Arc::new(Inner {
                conn_ids: AtomicU64::new(u64::from(self.config.node_id) << 48),
                config: self.config,
                clock: self.clock,
                authorizer: self.authorizer,
                broker: self.broker,
                hooks: self.hooks,
                handlers: RwLock::new(HashMap::new()),
                conns: Shards::new(),
                users: Shards::new(),
                channels: Shards::new(),
                stats: Stats::default(),
                epoch_seed,
                epochs: AtomicU64::new(0),
            }),
        }
    }
}

/// The hub: connections, channels, fan-out and policy, with no IO and no async runtime.
///
/// `Hub` is `Send + Sync` and cheap to clone (an `Arc`); every method takes
/// `&self`, and connection tasks call it directly from many threads at once.
/// There is no central task: channels live in a sharded registry, and each
/// channel has its own lock, so publishes on different channels do not contend.
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.inner.stats.snapshot()).finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: HubConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) authorizer: Arc<dyn ChannelAuthorizer>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) handlers: RwLock<HashMap<Box<str>, Arc<dyn Handler>>>,
    pub(crate) conns: Shards<ConnId, Arc<ConnEntry>>,
    pub(crate) users: Shards<Arc<str>, Vec<ConnId>>,
    pub(crate) channels: Shards<ChannelName, Arc<Channel>>,
    pub(crate) stats: Stats,
    conn_ids: AtomicU64,
    epoch_seed: u64,
    epochs: AtomicU64,
}

/// A registered connection.
pub(crate) struct ConnEntry {
    pub(crate) conn: Arc<dyn Conn>,
    pub(crate) identity: Identity,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) connected_at_ms: u64,
    pub(crate) channels: Mutex<HashSet<ChannelName>>,
    pub(crate) gone: AtomicBool,
}

impl ConnEntry {
    pub(crate) fn id(&self) -> ConnId {
        self.conn.id()
    }

    fn info(&self) -> ConnInfo {
        let mut channels: Vec<ChannelName> = self.channels.lock().iter().cloned().collect();
        channels.sort();
        ConnInfo {
            id: self.id(),
            user_id: self.identity.user_id.clone(),
            remote: self.remote,
            connected_at_ms: self.connected_at_ms,
            channels,
        }
    }
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

/// The result of a subscribe: what the `subscribed` reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subscribed {
    /// The channel's epoch.
    pub epoch: String,
    /// The channel's latest offset.
    pub offset: u64,
    /// With a recovery request: whether every missed message was replayed.
    pub recovered: Option<bool>,
    /// With a recovery request: how many messages were replayed.
    pub missed: Option<u64>,
}

/// A page of a channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The channel's epoch.
    pub epoch: String,
    /// The channel's latest offset.
    pub offset: u64,
    /// The publications, oldest first.
    pub publications: Vec<Publication>,
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
        ConnId::new(self.inner.conn_ids.fetch_add(1, Relaxed) + 1)
    }

    /// A copy of the counters.
    #[must_use]
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
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
        let user = identity.user_id.clone();
        let entry = Arc::new(ConnEntry {
            conn,
            identity,
            remote,
            connected_at_ms: self.now_ms(),
            channels: Mutex::new(HashSet::new()),
            gone: AtomicBool::new(false),
        });
        {
            let mut shard = self.inner.conns.shard(&id).write();
            if shard.contains_key(&id) {
                return Err(RegisterError::DuplicateId(id));
            }
            shard.insert(id, Arc::clone(&entry));
        }
        if let Some(user) = user {
            self.inner.users.shard(&*user).write().entry(user).or_default().push(id);
        }
        self.inner.stats.connections.fetch_add(1, Relaxed);
        self.inner.hooks.on_connect(&entry.info());
        Ok(())
    }

    /// Unregisters a connection that has ended, removing every subscription it
    /// had. Returns its last snapshot, or `None` when it was not registered.
    pub fn unregister(&self, id: ConnId, reason: &DisconnectReason) -> Option<ConnInfo> {
        let entry = self.inner.conns.shard(&id).write().remove(&id)?;
        entry.gone.store(true, Relaxed);
        if let Some(user) = &entry.identity.user_id {
            let mut shard = self.inner.users.shard(&**user).write();
            if let Some(ids) = shard.get_mut(&**user) {
                ids.retain(|c| *c != id);
                if ids.is_empty() {
                    shard.remove(&**user);
                }
            }
        }
        let info = entry.info();
        let channels: Vec<ChannelName> = entry.channels.lock().drain().collect();
        for channel in &channels {
            self.leave_channel(&entry, channel);
        }
        self.inner.stats.connections.fetch_sub(1, Relaxed);
        self.inner.hooks.on_disconnect(&info, reason);
        Some(info)
    }

    pub(crate) fn entry(&self, id: ConnId) -> Option<Arc<ConnEntry>> {
        self.inner.conns.shard(&id).read().get(&id).cloned()
    }

    /// A snapshot of one connection.
    #[must_use]
    pub fn connection(&self, id: ConnId) -> Option<ConnInfo> {
        self.entry(id).map(|e| e.info())
    }

    /// The identity a connection registered with.
    #[must_use]
    pub fn identity(&self, id: ConnId) -> Option<Identity> {
        self.entry(id).map(|e| e.identity.clone())
    }

    /// The ids of every connection of a user.
    #[must_use]
    pub fn user_connections(&self, user_id: &str) -> Vec<ConnId> {
        self.inner.users.shard(user_id).read().get(user_id).cloned().unwrap_or_default()
    }

    /// The ids of every registered connection.
    #[must_use]
    pub fn connection_ids(&self) -> Vec<ConnId> {
        self.inner.conns.iter().flat_map(|s| s.read().keys().copied().collect::<Vec<_>>()).collect()
    }

    // ----- direct sends -----

    /// Queues an encoded frame on one connection.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the connection is not registered; otherwise what
    /// its `try_send` said. A full queue applies the default namespace's slow-consumer policy.
    pub fn send(&self, id: ConnId, frame: Bytes) -> Result<(), SendError> {
        let entry = self.entry(id).ok_or(SendError::Closed)?;
        self.deliver_one(&entry.conn, frame, self.inner.config.namespaces.default_policy().slow_consumer)
    }

    /// Queues an encoded frame on every connection of a user; returns how many took it.
    pub fn send_to_user(&self, user_id: &str, frame: &Bytes) -> usize {
        self.user_connections(user_id).into_iter().filter(|id| self.send(*id, frame.clone()).is_ok()).count()
    }

    /// Queues an encoded frame on every connection; returns how many took it.
    pub fn broadcast(&self, frame: &Bytes) -> usize {
        let policy = self.inner.config.namespaces.default_policy().slow_consumer;
        let mut sent = 0;
        for shard in self.inner.conns.iter() {
            let conns: Vec<Arc<ConnEntry>> = shard.read().values().cloned().collect();
            sent += conns.iter().filter(|e| self.deliver_one(&e.conn, frame.clone(), policy).is_ok()).count();
        }
        sent
    }

    /// Sends `disconnect` and closes one connection; returns false when it is not registered.
    pub fn disconnect(&self, id: ConnId, code: u16, reason: &str, reconnect_after_ms: u64) -> bool {
        let Some(entry) = self.entry(id) else { return false };
        let frame = ServerMessage::Disconnect { code, reason: reason.to_owned(), reconnect_after_ms }.encode();
        // The close follows at once; a full queue just means the frame is lost.
        let _ = entry.conn.try_send(frame);
        entry.conn.close(code, reason);
        true
    }

    /// Disconnects every connection of a user; returns how many.
    pub fn disconnect_user(&self, user_id: &str, code: u16, reason: &str, reconnect_after_ms: u64) -> usize {
        self.user_connections(user_id)
            .into_iter()
            .filter(|id| self.disconnect(*id, code, reason, reconnect_after_ms))
            .count()
    }

    /// Queues a frame on one subscriber and applies `policy` when its queue is full.
    pub(crate) fn deliver_one(
        &self,
        conn: &Arc<dyn Conn>,
        frame: Bytes,
        policy: SlowConsumerPolicy,
    ) -> Result<(), SendError> {
        let result = conn.try_send(frame);
        match result {
            Ok(()) => {
                self.inner.stats.messages_out.fetch_add(1, Relaxed);
            }
            Err(SendError::Full) => self.overflow(conn.as_ref(), policy),
            Err(SendError::Closed) => self.inner.stats.drop(DropReason::Closed, 1),
        }
        result
    }

    fn overflow(&self, conn: &dyn Conn, policy: SlowConsumerPolicy) {
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
    fn fan_out(&self, state: &ChannelState, frame: &Bytes, policy: SlowConsumerPolicy) -> usize {
        let mut sent = 0u64;
        let mut closed = 0u64;
        for sub in state.subscribers.iter() {
            match sub.conn.try_send(frame.clone()) {
                Ok(()) => sent += 1,
                Err(SendError::Full) => self.overflow(sub.conn.as_ref(), policy),
                Err(SendError::Closed) => closed += 1,
            }
        }
        self.inner.stats.messages_out.fetch_add(sent, Relaxed);
        self.inner.stats.drop(DropReason::Closed, closed);
        usize::try_from(sent).unwrap_or(usize::MAX)
    }

    // ----- channels -----

    pub(crate) fn policy(&self, channel: &ChannelName) -> &Arc<NamespaceConfig> {
        self.inner.config.namespaces.get(channel.namespace())
    }

    fn new_epoch(&self) -> Arc<str> {
        let n = self.inner.epochs.fetch_add(1, Relaxed);
        Arc::from(format!("{:x}-{n:x}", self.inner.epoch_seed))
    }

    fn lookup(&self, channel: &ChannelName) -> Option<Arc<Channel>> {
        self.inner.channels.shard(channel).read().get(channel).cloned()
    }

    fn get_or_create(&self, channel: &ChannelName) -> Arc<Channel> {
        if let Some(ch) = self.lookup(channel) {
            return ch;
        }
        let mut shard = self.inner.channels.shard(channel).write();
        Arc::clone(shard.entry(channel.clone()).or_insert_with(|| {
            self.inner.stats.channels.fetch_add(1, Relaxed);
            Arc::new(Channel::new(channel.clone(), Arc::clone(self.policy(channel)), self.new_epoch()))
        }))
    }

    /// Takes a channel out of the registry when nothing keeps it: no subscribers and no history.
    fn remove_if_idle(&self, channel: &Arc<Channel>) {
        let mut shard = self.inner.channels.shard(&channel.name).write();
        let mut state = channel.state.lock();
        if state.removed || !state.subscribers.is_empty() || !state.history.is_empty() {
            return;
        }
        state.removed = true;
        if shard.get(&channel.name).is_some_and(|c| Arc::ptr_eq(c, channel)) {
            shard.remove(&channel.name);
            self.inner.stats.channels.fetch_sub(1, Relaxed);
        }
    }

    /// Removes channels that have no subscribers and whose history has expired.
    /// Call it now and then (the transport does, every few seconds); returns how many went.
    pub fn sweep(&self) -> usize {
        let now = self.now_ms();
        let mut idle = Vec::new();
        for shard in self.inner.channels.iter() {
            for ch in shard.read().values() {
                let mut state = ch.state.lock();
                state.history.expire(now, ch.policy.history_ttl_ms);
                if state.subscribers.is_empty() && state.history.is_empty() {
                    idle.push(Arc::clone(ch));
                }
            }
        }
        let before = self.inner.stats.channels.load(Relaxed);
        for ch in &idle {
            self.remove_if_idle(ch);
        }
        usize::try_from(before - self.inner.stats.channels.load(Relaxed)).unwrap_or(0)
    }

    /// Every channel with its number of local subscribers, sorted by name.
    #[must_use]
    pub fn channels(&self) -> Vec<(ChannelName, usize)> {
        let mut out: Vec<(ChannelName, usize)> = Vec::new();
        for shard in self.inner.channels.iter() {
            for ch in shard.read().values() {
                let n = ch.state.lock().subscribers.len();
                if n > 0 {
                    out.push((ch.name.clone(), n));
                }
            }
        }
        out.sort();
        out
    }

    /// How many local subscribers a channel has.
    #[must_use]
    pub fn subscriber_count(&self, channel: &ChannelName) -> usize {
        self.lookup(channel).map_or(0, |ch| ch.state.lock().subscribers.len())
    }

    /// Subscribes a connection to a channel, as the server (no authorization).
    ///
    /// # Errors
    /// [`ErrorCode::LimitExceeded`] when the connection is at its channel limit;
    /// [`ErrorCode::BadRequest`] when the connection is not registered.
    pub fn subscribe(&self, id: ConnId, channel: &ChannelName) -> Result<Subscribed, CommandError> {
        let entry = self.entry(id).ok_or_else(|| CommandError::new(ErrorCode::BadRequest, "no such connection"))?;
        self.join_channel(&entry, channel, None, None)
    }

    /// Unsubscribes a connection from a channel; returns false when it was not subscribed.
    pub fn unsubscribe(&self, id: ConnId, channel: &ChannelName) -> bool {
        let Some(entry) = self.entry(id) else { return false };
        if !entry.channels.lock().remove(channel) {
            return false;
        }
        self.leave_channel(&entry, channel);
        true
    }

    /// Adds the connection to the channel and sends the `subscribed` reply
    /// (when `reply` is set) and any recovered messages, all under the channel's
    /// lock so no live message can come between them.
    pub(crate) fn join_channel(
        &self,
        entry: &Arc<ConnEntry>,
        channel: &ChannelName,
        recover: Option<&StreamPosition>,
        reply: Option<Option<CommandId>>,
    ) -> Result<Subscribed, CommandError> {
        {
            let mut mine = entry.channels.lock();
            if !mine.contains(channel) {
                if mine.len() >= self.inner.config.max_channels_per_conn {
                    return Err(CommandError::new(
                        ErrorCode::LimitExceeded,
                        format!("at most {} channels per connection", self.inner.config.max_channels_per_conn),
                    ));
                }
                mine.insert(channel.clone());
            }
        }
        loop {
            let ch = self.get_or_create(channel);
            let mut state = ch.state.lock();
            if state.removed {
                continue;
            }
            let id = entry.id();
            // Re-checked under the channel lock: an unsubscribe or unregister that ran since the set was
            // updated above must win, or the channel would keep a subscriber its connection no longer lists.
            let wanted = !entry.gone.load(Relaxed) && entry.channels.lock().contains(channel);
            let added = wanted
                && !state.subscribers.contains(id)
                && state.subscribers.insert(Subscriber {
                    id,
                    conn: Arc::clone(&entry.conn),
                    user_id: entry.identity.user_id.clone(),
                });
            if added {
                self.inner.stats.subscriptions.fetch_add(1, Relaxed);
                if state.subscribers.len() == 1 {
                    self.inner.broker.channel_active(channel);
                }
            }
            let policy = &ch.policy;
            if policy.history_ttl_ms > 0 {
                state.history.expire(self.now_ms(), policy.history_ttl_ms);
            }
            let limits = (self.inner.config.max_recovery_messages, self.inner.config.max_recovery_bytes);
            let (recovered, replay) = match recover {
                None => (None, Vec::new()),
                // Already subscribed: everything since was delivered live, so there is nothing to replay.
                Some(_) if !added => (Some(true), Vec::new()),
                Some(pos) if policy.history_size > 0 && *pos.epoch == *state.epoch => {
                    match state.history.frames_after(pos.offset, state.offset) {
                        // A replay that would overflow the connection's queue is refused whole: the client
                        // reloads its state instead of losing part of it or being closed as a slow consumer.
                        Some(frames) if pos.offset <= state.offset && fits(&frames, limits) => (Some(true), frames),
                        _ => (Some(false), Vec::new()),
                    }
                }
                Some(_) => (Some(false), Vec::new()),
            };
            let result = Subscribed {
                epoch: state.epoch.to_string(),
                offset: state.offset,
                recovered,
                missed: recovered.map(|_| replay.len() as u64),
            };
            if let Some(reply_id) = reply {
                let msg = ServerMessage::Subscribed {
                    id: reply_id,
                    channel: channel.clone(),
                    epoch: result.epoch.clone(),
                    offset: result.offset,
                    recovered: result.recovered,
                    missed: result.missed,
                };
                let _ = self.deliver_one(&entry.conn, msg.encode(), policy.slow_consumer);
                for frame in replay {
                    let _ = self.deliver_one(&entry.conn, frame, policy.slow_consumer);
                }
            }
            if added && policy.join_leave {
                let client = ClientInfo {
                    conn_id: id.to_string(),
                    user_id: entry.identity.user_id.as_deref().map(str::to_owned),
                };
                let frame = ServerMessage::Join { channel: channel.clone(), client }.encode();
                self.fan_out(&state, &frame, policy.slow_consumer);
            }
            return Ok(result);
        }
    }

    /// Takes the connection out of the channel's subscribers (its own channel set is already updated).
    pub(crate) fn leave_channel(&self, entry: &ConnEntry, channel: &ChannelName) {
        let Some(ch) = self.lookup(channel) else { return };
        let now_empty = {
            let mut state = ch.state.lock();
            let id = entry.id();
            if state.removed || !state.subscribers.remove(id) {
                return;
            }
            self.inner.stats.subscriptions.fetch_sub(1, Relaxed);
            if ch.policy.join_leave {
                let client = ClientInfo {
                    conn_id: id.to_string(),
                    user_id: entry.identity.user_id.as_deref().map(str::to_owned),
                };
                let frame = ServerMessage::Leave { channel: channel.clone(), client }.encode();
                self.fan_out(&state, &frame, ch.policy.slow_consumer);
            }
            let empty = state.subscribers.is_empty();
            if empty {
                self.inner.broker.channel_inactive(channel);
            }
            empty
        };
        if now_empty {
            self.remove_if_idle(&ch);
        }
    }

    // ----- publishing -----

    /// Publishes `data` on a channel and returns its offset.
    ///
    /// The `message` frame is encoded once and shared by every local
    /// subscriber, then handed to the broker. The offset is 0 when the channel
    /// has no local subscribers and keeps no history: nothing here stored it.
    pub fn publish(&self, channel: &ChannelName, data: Json) -> u64 {
        self.publish_event(channel, None, data)
    }

    /// Publishes `data` with an application event name (`process_output`, say).
    pub fn publish_event(&self, channel: &ChannelName, event: Option<&str>, data: Json) -> u64 {
        self.inner.stats.publications.fetch_add(1, Relaxed);
        let keep = self.policy(channel).history_size > 0;
        loop {
            let ch = if keep { Some(self.get_or_create(channel)) } else { self.lookup(channel) };
            let Some(ch) = ch else {
                let publication =
                    Publication { channel: channel.clone(), offset: 0, event: event.map(str::to_owned), data };
                let frame = publication.encode();
                self.inner.broker.publish(&publication, &frame);
                return 0;
            };
            let mut state = ch.state.lock();
            if state.removed {
                continue;
            }
            state.offset += 1;
            let offset = state.offset;
            let frame = encode_message(channel, offset, event, &data);
            let publication = Publication { channel: channel.clone(), offset, event: event.map(str::to_owned), data };
            self.fan_out(&state, &frame, ch.policy.slow_consumer);
            self.inner.broker.publish(&publication, &frame);
            if keep {
                let now = self.now_ms();
                state.history.push(publication, frame, now, ch.policy.history_size, ch.policy.history_ttl_ms);
            }
            return offset;
        }
    }

    /// Delivers a publication that came from another node to the local
    /// subscribers, without handing it back to the broker. Returns how many took it.
    pub fn deliver_remote(&self, publication: &Publication, frame: &Bytes) -> usize {
        let Some(ch) = self.lookup(&publication.channel) else { return 0 };
        let state = ch.state.lock();
        self.fan_out(&state, frame, ch.policy.slow_consumer)
    }

    /// Publishes one line of a process's output on `process:{id}` with event `process_output`.
    ///
    /// # Errors
    /// When `process:{id}` is not a valid channel name.
    pub fn send_process_output(&self, id: &str, line: &str) -> Result<u64, ChannelNameError> {
        let channel = ChannelName::new(&format!("process:{id}"))?;
        Ok(self.publish_event(&channel, Some("process_output"), json_string(line)))
    }

    /// Publishes a process's status on `process:{id}` with event `process_status`.
    ///
    /// # Errors
    /// When `process:{id}` is not a valid channel name.
    pub fn send_process_status(&self, id: &str, status: &str) -> Result<u64, ChannelNameError> {
        let channel = ChannelName::new(&format!("process:{id}"))?;
        Ok(self.publish_event(&channel, Some("process_status"), json_string(status)))
    }

    // ----- presence and history -----

    /// Who is subscribed to a channel on this node.
    #[must_use]
    pub fn presence(&self, channel: &ChannelName) -> Vec<ClientInfo> {
        self.lookup(channel)
            .map(|ch| ch.state.lock().subscribers.iter().map(Subscriber::client_info).collect())
            .unwrap_or_default()
    }

    /// Up to `limit` of a channel's kept publications after `since` (newest last).
    /// A `since` from another epoch is ignored: the caller sees the epoch changed.
    #[must_use]
    pub fn history(&self, channel: &ChannelName, limit: usize, since: Option<&StreamPosition>) -> HistoryPage {
        let Some(ch) = self.lookup(channel) else {
            return HistoryPage { epoch: String::new(), offset: 0, publications: Vec::new() };
        };
        let mut state = ch.state.lock();
        state.history.expire(self.now_ms(), ch.policy.history_ttl_ms);
        let after = since.filter(|pos| *pos.epoch == *state.epoch).map(|pos| pos.offset);
        HistoryPage {
            epoch: state.epoch.to_string(),
            offset: state.offset,
            publications: state.history.publications(after, limit),
        }
    }

    pub(crate) fn authorize(
        &self,
        entry: &ConnEntry,
        channel: &ChannelName,
        action: Action,
    ) -> Result<&Arc<NamespaceConfig>, CommandError> {
        let policy = self.policy(channel);
        self.inner
            .authorizer
            .authorize(&entry.identity, channel, policy, action)
            .map_err(|d| CommandError::new(d.code, d.message))?;
        Ok(policy)
    }
}

/// Whether a replay stays within `(messages, bytes)`.
fn fits(frames: &[Bytes], (messages, bytes): (usize, usize)) -> bool {
    frames.len() <= messages && frames.iter().map(Bytes::len).sum::<usize>() <= bytes
}

fn json_string(s: &str) -> Json {
    // Encoding a string cannot fail.
    Json::encode(s).unwrap_or_else(|_| Json::null())
}
