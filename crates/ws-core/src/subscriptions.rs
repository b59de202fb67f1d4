//! Subscriptions: the channel registry's lookups, subscribe and unsubscribe (with recovery), and the sweep.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use ws_protocol::{ChannelName, CommandId, ErrorCode, ServerMessage, StreamPosition};

use crate::channel::{Channel, Subscriber};
use crate::conn::{Conn, ConnId, SendError};
use crate::connections::ConnEntry;
use crate::hub::{CommandError, Hub};
use crate::namespace::NamespaceConfig;
use crate::stats::DropReason;

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

impl Hub {
    pub(crate) fn policy(&self, channel: &ChannelName) -> &Arc<NamespaceConfig> {
        self.inner.config.namespaces.get(channel.namespace())
    }

    pub(crate) fn lookup(&self, channel: &ChannelName) -> Option<Arc<Channel>> {
        self.inner.channels.lookup(channel)
    }

    pub(crate) fn get_or_create(&self, channel: &ChannelName) -> Arc<Channel> {
        self.inner.channels.get_or_create(channel, self.policy(channel))
    }

    /// Removes channels that have no subscribers and whose history has expired.
    /// Call it now and then (the transport does, every few seconds); returns how many went.
    pub fn sweep(&self) -> usize {
        self.inner.channels.sweep(self.now_ms())
    }

    /// Every channel with its number of local subscribers, sorted by name.
    #[must_use]
    pub fn channels(&self) -> Vec<(ChannelName, usize)> {
        let mut out: Vec<(ChannelName, usize)> = Vec::new();
        for ch in self.inner.channels.all() {
            let n = ch.state.lock().subscribers.len();
            if n > 0 {
                out.push((ch.name.clone(), n));
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
    ///
    /// In a cluster the subscription may wait for the broker: `Ok(None)` then, and it completes on its own.
    pub fn subscribe(&self, id: ConnId, channel: &ChannelName) -> Result<Option<Subscribed>, CommandError> {
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
    ) -> Result<Option<Subscribed>, CommandError> {
        {
            let mut mine = entry.channels.lock();
            if !mine.contains(channel) {
                if mine.len() >= self.inner.config.max_channels_per_conn {
                    return Err(CommandError::new(
                        ErrorCode::LimitExceeded,
                        format!("at most {} channels per connection", self.inner.config.max_channels_per_conn),
                    ));
                }
                // The registry's copy of the name when the channel exists, so the set shares its allocation.
                let name = self.lookup(channel).map_or_else(|| channel.clone(), |ch| ch.name.clone());
                mine.insert(name);
            }
        }
        if self.inner.clustered {
            return self.cluster_join(entry, channel, recover, reply);
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
                    user_id: entry.identity().user_id.clone(),
                });
            if added {
                self.inner.stats.subscriptions.add(1);
            }
            let policy = &ch.policy;
            if policy.history_ttl_ms > 0 {
                self.inner.channels.history_resized(state.history.expire(self.now_ms(), policy.history_ttl_ms));
            }
            let limits = (self.inner.config.max_recovery_messages, self.inner.config.max_recovery_bytes);
            let (recovered, replay) = match recover {
                None => (None, Vec::new()),
                // Already subscribed: everything since was delivered live, so there is nothing to replay.
                Some(_) if !added => (Some(true), Vec::new()),
                Some(pos) if policy.history_size > 0 && *pos.epoch == *state.epoch => {
                    match state.history.frames_after(pos.offset, state.offset) {
                        // A replay over the configured limits is refused whole: the client reloads its state
                        // instead of losing part of it. What the queue has room for is checked when it is sent.
                        Some(frames) if pos.offset <= state.offset && fits(&frames, limits) => (Some(true), frames),
                        _ => (Some(false), Vec::new()),
                    }
                }
                Some(_) => (Some(false), Vec::new()),
            };
            let mut result = Subscribed {
                epoch: state.epoch.to_string(),
                offset: state.offset,
                recovered,
                missed: recovered.map(|_| replay.len() as u64),
            };
            self.send_subscribed(&entry.conn, channel, reply, &mut result, replay);
            if added && policy.join_leave {
                let frame = ServerMessage::Join { channel: channel.clone(), client: entry.client_info() }.encode();
                self.fan_out(&state, &frame, policy.slow_consumer);
            }
            return Ok(Some(result));
        }
    }

    /// Takes the connection out of the channel's subscribers (its own channel set is already updated).
    pub(crate) fn leave_channel(&self, entry: &ConnEntry, channel: &ChannelName) {
        if self.inner.clustered {
            return self.cluster_leave(entry, channel);
        }
        let Some(ch) = self.lookup(channel) else { return };
        let now_empty = {
            let mut state = ch.state.lock();
            let id = entry.id();
            if state.removed || !state.subscribers.remove(id) {
                return;
            }
            self.inner.stats.subscriptions.sub(1);
            if ch.policy.join_leave {
                let frame = ServerMessage::Leave { channel: channel.clone(), client: entry.client_info() }.encode();
                self.fan_out(&state, &frame, ch.policy.slow_consumer);
            }
            state.subscribers.is_empty()
        };
        if now_empty {
            self.inner.channels.remove_if_idle(&ch);
        }
    }
}

impl Hub {
    /// Sends the `subscribed` reply (when the command wants one) and the replay it promises as one unit: the
    /// connection's queue takes every frame at this moment, or the replay is given up and the reply says
    /// `recovered: false` (`result` is updated to match). So a recovery is never promised and then cut short
    /// by a full queue, whatever the namespace's slow-consumer policy.
    ///
    /// The reply itself is never dropped: a client would wait for it forever. When even it does not fit,
    /// the connection is a slow consumer and is closed with 4000, under the `drop` policy too.
    pub(crate) fn send_subscribed(
        &self,
        conn: &Arc<dyn Conn>,
        channel: &ChannelName,
        reply: Option<Option<CommandId>>,
        result: &mut Subscribed,
        replay: Vec<Bytes>,
    ) {
        let Some(id) = reply else { return };
        let encode = |result: &Subscribed| {
            ServerMessage::Subscribed {
                id: id.clone(),
                channel: channel.clone(),
                epoch: result.epoch.clone(),
                offset: result.offset,
                recovered: result.recovered,
                missed: result.missed,
            }
            .encode()
        };
        let stats = &self.inner.stats;
        if !replay.is_empty() {
            let mut frames = Vec::with_capacity(replay.len() + 1);
            frames.push(encode(result));
            frames.extend(replay);
            match conn.try_send_all(&frames) {
                Ok(()) => return stats.messages_out.add(frames.len() as u64),
                Err(SendError::Closed) => return stats.drop(DropReason::Closed, frames.len() as u64),
                Err(SendError::Full) => {
                    result.recovered = Some(false);
                    result.missed = Some(0);
                }
            }
        }
        match conn.try_send(&encode(result)) {
            Ok(()) => stats.messages_out.add(1),
            Err(SendError::Closed) => stats.drop(DropReason::Closed, 1),
            Err(SendError::Full) => {
                stats.drop(DropReason::SlowConsumer, 1);
                conn.close(ws_protocol::close::SLOW_CONSUMER, "slow consumer");
            }
        }
    }
}

/// Whether a replay stays within `(messages, bytes)`.
pub(crate) fn fits(frames: &[Bytes], (messages, bytes): (usize, usize)) -> bool {
    frames.len() <= messages && frames.iter().map(Bytes::len).sum::<usize>() <= bytes
}
