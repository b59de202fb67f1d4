//! Publishing: encode once and fan out, remote deliveries, the process helpers, presence and history.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use ws_protocol::{ChannelName, ChannelNameError, ClientInfo, Json, Publication, StreamPosition};

use crate::channel::Subscriber;
use crate::hub::Hub;

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
            self.inner.broker.publish(&publication, &frame);
            if let (true, Some(ch), Some(state)) = (keep, &ch, &mut state) {
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
}

fn json_string(s: &str) -> Json {
    // Encoding a string cannot fail.
    Json::encode(s).unwrap_or_else(|_| Json::null())
}
