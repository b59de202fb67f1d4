//! `Broker`: how the hub reaches other nodes, and the local in-process default.

use std::fmt;

use bytes::Bytes;
use ws_protocol::{ChannelName, Publication};

/// The hub's link to other nodes.
///
/// The hub tells the broker when a channel gains its first local subscriber
/// and loses its last one, so a broker subscribes upstream only to channels this
/// node serves, and hands it every local publication. The broker feeds
/// publications from other nodes back through `Hub::deliver_remote`.
///
/// Every method is called from the publish or subscribe path, sometimes while a
/// channel's lock is held: implementations must not block. A networked broker
/// queues the work for its own task.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// The channel gained its first local subscriber.
    fn channel_active(&self, _channel: &ChannelName) {}
    /// The channel lost its last local subscriber.
    fn channel_inactive(&self, _channel: &ChannelName) {}
    /// A publication was made on this node; `frame` is its encoded `message` frame.
    fn publish(&self, _publication: &Publication, _frame: &Bytes) {}
}

/// The single-node broker: nothing leaves the process.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBroker;

impl Broker for LocalBroker {}
