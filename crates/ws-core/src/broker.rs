//! `Broker`: how the hub reaches other nodes, and the local in-process default.
//!
//! Without a broker (the default [`LocalBroker`]) the hub is one node: it numbers, stores and delivers every
//! publication itself, synchronously, under the channel's lock.
//!
//! A clustered broker ([`Broker::clustered`] true) is the single sequencer of every channel: the hub never
//! numbers a publication itself. The seam is asynchronous but the core stays IO-free: the hub hands the
//! broker a request and a completion callback ([`Done`]); the broker does the IO on its own tasks and calls
//! the callback, or one of the hub's `broker_*` entry points, when the answer is in. The hub then sends the
//! reply through the connection's [`crate::Conn`].
//!
//! Rules both sides keep:
//! - The hub may call the broker while it holds a channel's lock, so every broker method returns at once
//!   (queue the work); a broker never calls back into the hub from inside one of its own methods, and never
//!   while it holds a lock the hub could wait on.
//! - [`Broker::interest_changed`] is level-triggered: it says "look again", and the broker reconciles its
//!   upstream subscriptions with [`crate::Hub::broker_wants`], so a burst of changes costs one look.
//! - Once a channel is wanted, the broker subscribes upstream, then reads the channel's [`Position`] and
//!   reports it with [`crate::Hub::broker_subscribed`]; it does so again after every reconnect. Live
//!   publications go to [`crate::Hub::broker_publication`] in the order the broker received them. The hub
//!   checks each against the next expected offset and fills gaps through [`Broker::history`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use ws_protocol::{ChannelName, ClientInfo, Json, Publication, StreamPosition};

use crate::conn::ConnId;

/// A completion callback: called exactly once, from any thread, never while a hub lock is held.
pub type Done<T> = Box<dyn FnOnce(Result<T, BrokerError>) + Send>;

/// Why a broker request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot be reached; the request was not carried out.
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// The broker did not answer in time; the request may or may not have been carried out.
    #[error("the broker did not answer in time")]
    Timeout,
}

/// Where a channel's stream stands in the broker: its epoch and its latest offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The epoch: it changes exactly when the channel's history was lost.
    pub epoch: Arc<str>,
    /// The latest offset given out.
    pub offset: u64,
}

/// A publication for the broker to number, store and publish.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PublishRequest {
    /// The channel.
    pub channel: ChannelName,
    /// The application event name, if any.
    pub event: Option<String>,
    /// The data, as the publisher sent it.
    pub data: Json,
    /// How many publications the channel's history keeps (0: none).
    pub history_size: usize,
    /// How long the channel's history lives, in milliseconds (0: no limit).
    pub history_ttl_ms: u64,
    /// With a key, a repeat on the same channel within `idempotency_window_ms` publishes nothing and
    /// answers the first offset; the check and the publish are one atomic step.
    pub idempotency_key: Option<Box<str>>,
    /// How long a key is remembered, in milliseconds.
    pub idempotency_window_ms: u64,
}

/// A read of a channel's history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryRequest {
    /// The channel.
    pub channel: ChannelName,
    /// Only publications after this position; ignored (all kept ones) when its epoch is not the channel's.
    pub since: Option<StreamPosition>,
    /// The most publications to return: the oldest ones after `since`, or the newest ones without it.
    pub limit: usize,
}

/// A history read's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryReply {
    /// The channel's position when it was read.
    pub position: Position,
    /// The publications, oldest first.
    pub publications: Vec<Publication>,
}

/// A command every node of the cluster applies to its own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Disconnect every connection of a user.
    DisconnectUser {
        /// The user.
        user_id: String,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Disconnect one connection.
    DisconnectConn {
        /// The connection.
        conn_id: ConnId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Queue an encoded frame on every connection of a user.
    SendToUser {
        /// The user.
        user_id: String,
        /// The frame.
        frame: Bytes,
    },
    /// Queue an encoded frame on every connection.
    Broadcast {
        /// The frame.
        frame: Bytes,
    },
}

/// The hub's link to other nodes. Every method has a single-node default, so [`LocalBroker`] is empty.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Whether this broker sequences channels for a cluster. When false (the default) the hub numbers,
    /// stores and delivers publications itself and calls no other method but [`Broker::attach`].
    fn clustered(&self) -> bool {
        false
    }

    /// Called once when the hub is built, with a handle the broker uses to call back.
    fn attach(&self, _hub: crate::WeakHub) {}

    /// Whether the broker can take requests now; while false, the hub answers `unavailable` itself.
    fn available(&self) -> bool {
        true
    }

    /// Whether requests for `channel` can be taken now. A broker that spreads channels over several
    /// servers answers for the one that holds `channel`; the default is [`Broker::available`].
    fn available_for(&self, _channel: &ChannelName) -> bool {
        self.available()
    }

    /// A channel may have gained its first or lost its last local interest: look again.
    fn interest_changed(&self, _channel: &ChannelName) {}

    /// Number, store and publish a publication; `done` gets its offset.
    fn publish(&self, _request: PublishRequest, done: Done<u64>) {
        done(Err(BrokerError::Unavailable("no broker".into())));
    }

    /// Read a channel's position and history.
    fn history(&self, _request: HistoryRequest, done: Done<HistoryReply>) {
        done(Err(BrokerError::Unavailable("no broker".into())));
    }

    /// Read who is subscribed to a channel across the cluster.
    fn presence(&self, _channel: &ChannelName, done: Done<Vec<ClientInfo>>) {
        done(Err(BrokerError::Unavailable("no broker".into())));
    }

    /// A local subscriber joined a channel: record its presence (when `presence`) and tell the other nodes
    /// (when `join_leave`; this node has told its own subscribers already).
    fn joined(&self, _channel: &ChannelName, _client: &ClientInfo, _presence: bool, _join_leave: bool) {}

    /// A local subscriber left a channel: the reverse of [`Broker::joined`].
    fn left(&self, _channel: &ChannelName, _client: &ClientInfo, _presence: bool, _join_leave: bool) {}

    /// Have every other node apply a control command (this node has applied it already).
    fn control(&self, _command: Control) {}
}

/// The single-node broker: nothing leaves the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBroker;

impl Broker for LocalBroker {}
