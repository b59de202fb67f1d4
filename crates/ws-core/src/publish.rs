//! Publishing and sequencing: offsets assigned under the channel lock, encode once and fan out, remote
//! deliveries.

use ws_protocol::{ChannelName, Json, Publication};

use crate::broker::{BrokerError, Done, PublishRequest};
use crate::hub::Hub;

impl Hub {
    /// Publishes `data` on a channel and returns its offset.
    ///
    /// On a single node the `message` frame is encoded once and shared by every local subscriber. The
    /// offset is 0 when the channel has no local subscribers and keeps no history: nothing here stored it.
    ///
    /// In a cluster the broker numbers the publication and every node, this one too, delivers it when the
    /// broker publishes it: this returns 0 at once and cannot report a failure. Use [`Hub::publish_with`]
    /// to learn the offset or the error.
    pub fn publish(&self, channel: &ChannelName, data: Json) -> u64 {
        self.publish_event(channel, None, data)
    }

    /// Publishes `data` with an application event name (`process_output`, say); see [`Hub::publish`].
    pub fn publish_event(&self, channel: &ChannelName, event: Option<&str>, data: Json) -> u64 {
        if self.inner.clustered {
            self.publish_with(channel, event, data, Box::new(|_| {}));
            return 0;
        }
        self.publish_local(channel, event, data)
    }

    /// Publishes and calls `done` with the offset, or with why the broker could not take it. On a single
    /// node `done` runs before this returns; in a cluster, when the broker has stored and numbered it.
    pub fn publish_with(&self, channel: &ChannelName, event: Option<&str>, data: Json, done: Done<u64>) {
        self.publish_keyed(channel, event, data, None, done);
    }

    /// [`Hub::publish_with`] with an idempotency key: a repeat of the key on the channel within
    /// [`crate::HubConfig::idempotency_window_ms`] publishes nothing and answers the first offset. On a
    /// single node the keys live with the channel (and go when it goes idle); in a cluster, in the broker.
    pub fn publish_keyed(
        &self,
        channel: &ChannelName,
        event: Option<&str>,
        data: Json,
        idempotency_key: Option<&str>,
        done: Done<u64>,
    ) {
        if !self.inner.clustered {
            return done(Ok(match idempotency_key {
                None => self.publish_local(channel, event, data),
                Some(key) => self.publish_local_keyed(channel, event, data, key),
            }));
        }
        self.inner.stats.publications.add(1);
        if !self.inner.broker.available_for(channel) {
            return done(Err(BrokerError::Unavailable("the broker cannot be reached".into())));
        }
        let policy = self.policy(channel);
        let request = PublishRequest {
            channel: channel.clone(),
            event: event.map(str::to_owned),
            data,
            history_size: policy.history_size,
            history_ttl_ms: policy.history_ttl_ms,
            idempotency_key: idempotency_key.map(Into::into),
            idempotency_window_ms: self.inner.config.idempotency_window_ms,
        };
        self.inner.broker.publish(request, done);
    }

    /// A keyed publish on one node: the channel is kept (so its keys are), and the key is checked and
    /// recorded under the channel's lock, with the publish.
    pub(crate) fn publish_local_keyed(&self, channel: &ChannelName, event: Option<&str>, data: Json, key: &str) -> u64 {
        // Subscribers' tasks are woken once the channel's lock is released (see `wake.rs`).
        crate::wake::deferring(|| self.publish_local_keyed_now(channel, event, data, key))
    }

    fn publish_local_keyed_now(&self, channel: &ChannelName, event: Option<&str>, data: Json, key: &str) -> u64 {
        let now = self.now_ms();
        let window = self.inner.config.idempotency_window_ms;
        loop {
            let ch = self.get_or_create(channel);
            let mut state = ch.state.lock();
            if state.removed {
                continue;
            }
            if let Some(first) = state.recent_keys.get_or_insert_with(Box::default).get(key, now, window) {
                return first;
            }
            self.inner.stats.publications.add(1);
            state.offset += 1;
            let offset = state.offset;
            let publication = Publication { channel: channel.clone(), offset, event: event.map(str::to_owned), data };
            let frame = publication.encode();
            self.fan_out(&state, &frame, ch.policy.slow_consumer);
            let mut over = false;
            if ch.policy.history_size > 0 {
                let resize =
                    state.history.push(publication, frame, now, ch.policy.history_size, ch.policy.history_ttl_ms);
                over = self.inner.channels.history_resized(resize);
            }
            if let Some(keys) = state.recent_keys.as_mut() {
                keys.insert(key, offset, now);
            }
            drop(state);
            if over {
                self.inner.channels.evict_histories();
            }
            return offset;
        }
    }

    fn publish_local(&self, channel: &ChannelName, event: Option<&str>, data: Json) -> u64 {
        // Subscribers' tasks are woken once the channel's lock is released (see `wake.rs`).
        crate::wake::deferring(|| self.publish_local_now(channel, event, data))
    }

    fn publish_local_now(&self, channel: &ChannelName, event: Option<&str>, data: Json) -> u64 {
        self.inner.stats.publications.add(1);
        let keep = self.policy(channel).history_size > 0;
        loop {
            let ch = if keep { Some(self.get_or_create(channel)) } else { self.lookup(channel) };
            let mut state = ch.as_ref().map(|ch| ch.state.lock());
            if state.as_ref().is_some_and(|s| s.removed) {
                continue;
            }
            // Without a local channel nothing here numbers or stores the message: offset 0.
            let offset = state.as_mut().map_or(0, |s| {
                s.offset += 1;
                s.offset
            });
            let publication = Publication { channel: channel.clone(), offset, event: event.map(str::to_owned), data };
            let frame = publication.encode();
            if let (Some(ch), Some(state)) = (&ch, &mut state) {
                self.fan_out(state, &frame, ch.policy.slow_consumer);
            }
            let mut over = false;
            if let (true, Some(ch), Some(state)) = (keep, &ch, &mut state) {
                let now = self.now_ms();
                let resize =
                    state.history.push(publication, frame, now, ch.policy.history_size, ch.policy.history_ttl_ms);
                over = self.inner.channels.history_resized(resize);
            }
            drop(state);
            if over {
                self.inner.channels.evict_histories();
            }
            return offset;
        }
    }
}
