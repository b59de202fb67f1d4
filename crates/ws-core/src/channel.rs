//! `Channel`: one channel's subscribers, offsets, epoch and history, behind its own lock.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use ws_protocol::{ChannelName, ClientInfo};

use crate::cluster::ClusterState;
use crate::conn::{Conn, ConnId};
use crate::history::History;
use crate::namespace::NamespaceConfig;

/// One subscriber as fan-out sees it: the handle to send to, and who it is for presence.
pub(crate) struct Subscriber {
    pub(crate) id: ConnId,
    pub(crate) conn: Arc<dyn Conn>,
    pub(crate) user_id: Option<Arc<str>>,
}

impl Subscriber {
    pub(crate) fn client_info(&self) -> ClientInfo {
        ClientInfo { conn_id: self.id.to_string(), user_id: self.user_id.as_deref().map(str::to_owned) }
    }
}

/// Below this many subscribers a linear scan finds one faster than a hash
/// map, and a channel with one subscriber carries no map at all.
const INDEX_THRESHOLD: usize = 16;

/// A channel's subscribers: a dense list for fan-out, plus an id index once the
/// list is long, so add and remove stay O(1). While short, the list grows one
/// entry at a time, so a channel with one subscriber holds exactly one.
#[derive(Default)]
pub(crate) struct Subscribers {
    list: Vec<Subscriber>,
    /// Boxed: most channels are too short to have one, and a map's header is six pointers.
    #[allow(clippy::box_collection, reason = "one pointer in every channel instead of a 48-byte map header")]
    index: Option<Box<HashMap<ConnId, usize>>>,
}

impl Subscribers {
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Subscriber> {
        self.list.iter()
    }

    fn position(&self, id: ConnId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&id).copied(),
            None => self.list.iter().position(|s| s.id == id),
        }
    }

    pub(crate) fn contains(&self, id: ConnId) -> bool {
        self.position(id).is_some()
    }

    /// Adds a subscriber; returns false when it was already there.
    pub(crate) fn insert(&mut self, sub: Subscriber) -> bool {
        if self.contains(sub.id) {
            return false;
        }
        if let Some(index) = &mut self.index {
            index.insert(sub.id, self.list.len());
        } else if self.list.len() >= INDEX_THRESHOLD {
            let mut index: HashMap<ConnId, usize> = self.list.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
            index.insert(sub.id, self.list.len());
            self.index = Some(Box::new(index));
        }
        if self.list.len() < INDEX_THRESHOLD {
            self.list.reserve_exact(1);
        }
        self.list.push(sub);
        true
    }

    /// Removes a subscriber; returns false when it was not there.
    pub(crate) fn remove(&mut self, id: ConnId) -> bool {
        let Some(pos) = self.position(id) else { return false };
        self.list.swap_remove(pos);
        if self.list.is_empty() {
            self.list = Vec::new();
        }
        if let Some(index) = &mut self.index {
            index.remove(&id);
            if let Some(moved) = self.list.get(pos) {
                index.insert(moved.id, pos);
            }
            if self.list.len() < INDEX_THRESHOLD / 2 {
                self.index = None;
            }
        }
        true
    }
}

/// The mutable state of a channel, all under one lock so that offsets are
/// assigned and delivered in the same order to everyone.
pub(crate) struct ChannelState {
    pub(crate) subscribers: Subscribers,
    pub(crate) offset: u64,
    pub(crate) epoch: Arc<str>,
    pub(crate) history: History,
    /// Set when the channel is taken out of the registry; a caller that still
    /// holds the `Arc` must look the channel up again.
    pub(crate) removed: bool,
    /// With a clustered broker: how far this node's copy of the channel is in step with the broker. Boxed,
    /// so a single-node channel pays one pointer for it.
    pub(crate) cluster: Option<Box<ClusterState>>,
    /// Single node: the idempotency keys of recent publishes, with their offsets and times, oldest first.
    /// Made on the first keyed publish.
    pub(crate) recent_keys: Option<Box<RecentKeys>>,
}

/// Recent idempotency keys of one channel.
#[derive(Default)]
pub(crate) struct RecentKeys {
    by_key: HashMap<Box<str>, u64>,
    order: std::collections::VecDeque<(u64, Box<str>)>,
}

impl RecentKeys {
    /// Forgets keys older than `window_ms`, then returns the offset a key was published at, if remembered.
    pub(crate) fn get(&mut self, key: &str, now_ms: u64, window_ms: u64) -> Option<u64> {
        while self.order.front().is_some_and(|(at, _)| now_ms.saturating_sub(*at) >= window_ms) {
            if let Some((_, k)) = self.order.pop_front() {
                self.by_key.remove(&k);
            }
        }
        self.by_key.get(key).copied()
    }

    pub(crate) fn insert(&mut self, key: &str, offset: u64, now_ms: u64) {
        self.by_key.insert(key.into(), offset);
        self.order.push_back((now_ms, key.into()));
    }
}

impl ChannelState {
    /// Whether nothing keeps the channel: no subscribers and no history.
    pub(crate) fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.history.is_empty() && self.cluster.as_ref().is_none_or(|c| !c.pending())
    }
}

pub(crate) struct Channel {
    pub(crate) name: ChannelName,
    pub(crate) policy: Arc<NamespaceConfig>,
    pub(crate) state: Mutex<ChannelState>,
}

impl Channel {
    pub(crate) fn new(name: ChannelName, policy: Arc<NamespaceConfig>, epoch: Arc<str>, clustered: bool) -> Self {
        Self {
            name,
            policy,
            state: Mutex::new(ChannelState {
                subscribers: Subscribers::default(),
                offset: 0,
                epoch,
                history: History::default(),
                removed: false,
                cluster: clustered.then(Box::default),
                recent_keys: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::RecordingConn;

    fn sub(id: u64) -> Subscriber {
        let conn = RecordingConn::new(ConnId::new(id));
        Subscriber { id: ConnId::new(id), conn, user_id: None }
    }

    #[test]
    fn insert_remove_keep_list_and_index_in_step() {
        let mut subs = Subscribers::default();
        for i in 0..100 {
            assert!(subs.insert(sub(i)));
        }
        assert!(!subs.insert(sub(5)), "second insert of the same id");
        assert!(subs.index.is_some());
        for i in (0..100).step_by(3) {
            assert!(subs.remove(ConnId::new(i)));
            assert!(!subs.remove(ConnId::new(i)));
        }
        for i in 0..100 {
            assert_eq!(subs.contains(ConnId::new(i)), i % 3 != 0, "{i}");
        }
        let index = subs.index.as_ref().unwrap();
        for (pos, s) in subs.list.iter().enumerate() {
            assert_eq!(index[&s.id], pos);
        }
        for i in 0..100 {
            subs.remove(ConnId::new(i));
        }
        assert!(subs.is_empty());
        assert!(subs.index.is_none(), "the index is dropped when the list shrinks");
    }
}
