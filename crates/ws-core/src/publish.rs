//! Publishing and sequencing: offsets assigned under the channel lock, encode once and fan out, remote
//! deliveries, the process helpers.

use bytes::Bytes;
use ws_protocol::{ChannelName, ChannelNameError, Json, Publication};

use crate::hub::Hub;

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
}

fn json_string(s: &str) -> Json {
    // Encoding a string cannot fail.
    Json::encode(s).unwrap_or_else(|_| Json::null())
}
