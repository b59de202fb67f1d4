//! Presence and history queries: who is subscribed, and what a channel kept.

use ws_protocol::{ChannelName, ClientInfo, Publication, StreamPosition};

use crate::broker::{BrokerError, Done, HistoryRequest};
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
    /// Who is subscribed to a channel on this node (in a cluster, [`Hub::presence_with`] asks every node).
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
        self.inner.channels.history_resized(state.history.expire(self.now_ms(), ch.policy.history_ttl_ms));
        let after = since.filter(|pos| *pos.epoch == *state.epoch).map(|pos| pos.offset);
        HistoryPage {
            epoch: state.epoch.to_string(),
            offset: state.offset,
            publications: state.history.publications(after, limit),
        }
    }
}

impl Hub {
    /// Who is subscribed to a channel: on this node (at once) or, in a cluster, across it (when the broker
    /// answers).
    pub fn presence_with(&self, channel: &ChannelName, done: Done<Vec<ClientInfo>>) {
        if !self.inner.clustered {
            return done(Ok(self.presence(channel)));
        }
        if !self.inner.broker.available_for(channel) {
            return done(Err(BrokerError::Unavailable("the broker cannot be reached".into())));
        }
        self.inner.broker.presence(channel, done);
    }

    /// A page of a channel's history, as [`Hub::history`] gives it, from this node's memory or, in a
    /// cluster, from the broker's stream.
    pub fn history_with(
        &self,
        channel: &ChannelName,
        limit: usize,
        since: Option<&StreamPosition>,
        done: Done<HistoryPage>,
    ) {
        if !self.inner.clustered {
            return done(Ok(self.history(channel, limit, since)));
        }
        if !self.inner.broker.available_for(channel) {
            return done(Err(BrokerError::Unavailable("the broker cannot be reached".into())));
        }
        let request = HistoryRequest { channel: channel.clone(), since: since.cloned(), limit };
        self.inner.broker.history(
            request,
            Box::new(move |result| {
                done(result.map(|r| HistoryPage {
                    epoch: r.position.epoch.to_string(),
                    offset: r.position.offset,
                    publications: r.publications,
                }));
            }),
        );
    }
}
