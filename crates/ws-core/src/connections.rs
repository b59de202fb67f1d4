//! `Connections`: every registered connection by id, and every user's connections.
//!
//! Invariants it owns: an id is registered at most once; a user's list holds exactly the ids of its
//! registered connections and disappears with the last one; ids come from one sequence under this node's
//! prefix, so they are unique across the cluster (see [`crate::HubConfig::node_prefix`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use ws_protocol::ChannelName;

use crate::conn::{Conn, ConnId};
use crate::policy::Identity;
use crate::sharded::{IdHash, ShardedMap};
use crate::stats::StripedCounter;

/// How many low bits of a connection id count connections; the bits above hold the node's prefix.
pub(crate) const SEQUENCE_BITS: u32 = 40;

/// A registered connection.
pub(crate) struct ConnEntry {
    pub(crate) conn: Arc<dyn Conn>,
    /// Boxed, and `None` for an anonymous identity with no claims (every public connection): see
    /// [`ConnEntry::identity`].
    identity: Option<Box<Identity>>,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) connected_at_ms: u64,
    /// The channels it asked for (subscribed, or waiting for the broker to confirm).
    pub(crate) channels: Mutex<ChannelSet>,
    /// Set once it is unregistered; a subscribe racing with the unregister checks it under the channel lock.
    pub(crate) gone: AtomicBool,
}

/// The identity of a connection that registered with [`Identity::anonymous`].
static ANONYMOUS: Identity =
    Identity { user_id: None, claims: serde_json::Value::Null, channels: Vec::new(), expires_at_ms: None };

impl ConnEntry {
    pub(crate) fn new(
        conn: Arc<dyn Conn>,
        identity: Identity,
        remote: Option<SocketAddr>,
        connected_at_ms: u64,
    ) -> Self {
        let identity = (identity != ANONYMOUS).then(|| Box::new(identity));
        Self { conn, identity, remote, connected_at_ms, channels: Mutex::default(), gone: AtomicBool::new(false) }
    }

    pub(crate) fn identity(&self) -> &Identity {
        self.identity.as_deref().unwrap_or(&ANONYMOUS)
    }

    pub(crate) fn id(&self) -> ConnId {
        self.conn.id()
    }

    pub(crate) fn info(&self) -> crate::ConnInfo {
        let channels = self.channels.lock().sorted();
        crate::ConnInfo {
            id: self.id(),
            user_id: self.identity().user_id.clone(),
            remote: self.remote,
            connected_at_ms: self.connected_at_ms,
            channels,
        }
    }

    pub(crate) fn client_info(&self) -> ws_protocol::ClientInfo {
        ws_protocol::ClientInfo {
            conn_id: self.id().to_string(),
            user_id: self.identity().user_id.as_deref().map(str::to_owned),
        }
    }
}

/// Below this many channels a connection's set is a list: most connections have a handful, and a list of
/// exactly their size costs a few pointers where a hash set costs a table.
const SET_THRESHOLD: usize = 16;

/// The channels of one connection: a list of exactly its length while short, a hash set past
/// [`SET_THRESHOLD`]. Empty, it holds no allocation.
#[derive(Debug)]
pub(crate) enum ChannelSet {
    List(Vec<ChannelName>),
    #[allow(clippy::box_collection, reason = "keeps the list case, every connection's, at four pointers")]
    Set(Box<HashSet<ChannelName>>),
}

impl Default for ChannelSet {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

impl ChannelSet {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::List(list) => list.len(),
            Self::Set(set) => set.len(),
        }
    }

    pub(crate) fn contains(&self, channel: &ChannelName) -> bool {
        match self {
            Self::List(list) => list.contains(channel),
            Self::Set(set) => set.contains(channel),
        }
    }

    /// Adds a channel; returns false when it was there already.
    pub(crate) fn insert(&mut self, channel: ChannelName) -> bool {
        match self {
            Self::List(list) if list.contains(&channel) => false,
            Self::List(list) if list.len() < SET_THRESHOLD => {
                list.reserve_exact(1);
                list.push(channel);
                true
            }
            Self::List(list) => {
                let mut set: HashSet<ChannelName> = list.drain(..).collect();
                set.insert(channel);
                *self = Self::Set(Box::new(set));
                true
            }
            Self::Set(set) => set.insert(channel),
        }
    }

    /// Removes a channel; returns false when it was not there.
    pub(crate) fn remove(&mut self, channel: &ChannelName) -> bool {
        match self {
            Self::List(list) => {
                let Some(i) = list.iter().position(|c| c == channel) else { return false };
                list.swap_remove(i);
                if list.is_empty() {
                    *list = Vec::new();
                }
                true
            }
            Self::Set(set) => {
                let removed = set.remove(channel);
                if set.len() < SET_THRESHOLD / 2 {
                    *self = Self::List(set.drain().collect());
                }
                removed
            }
        }
    }

    /// The channels, sorted.
    pub(crate) fn sorted(&self) -> Vec<ChannelName> {
        let mut channels: Vec<ChannelName> = match self {
            Self::List(list) => list.clone(),
            Self::Set(set) => set.iter().cloned().collect(),
        };
        channels.sort();
        channels
    }

    /// Empties the set, returning what it held.
    pub(crate) fn take_all(&mut self) -> Vec<ChannelName> {
        match std::mem::take(self) {
            Self::List(list) => list,
            Self::Set(set) => set.into_iter().collect(),
        }
    }
}

pub(crate) struct Connections {
    /// Looked up on every message: keyed by the ids this node hands out, so hashed with one multiply.
    conns: ShardedMap<ConnId, Arc<ConnEntry>, IdHash>,
    users: ShardedMap<Arc<str>, Vec<ConnId>>,
    count: StripedCounter,
    next: AtomicU64,
}

impl Connections {
    /// Connections whose ids start with `prefix` (its low 24 bits).
    pub(crate) fn new(prefix: u32) -> Self {
        Self {
            conns: ShardedMap::default(),
            users: ShardedMap::new(),
            count: StripedCounter::default(),
            next: AtomicU64::new(u64::from(prefix & 0xff_ffff) << SEQUENCE_BITS),
        }
    }

    pub(crate) fn next_id(&self) -> ConnId {
        ConnId::new(self.next.fetch_add(1, Relaxed) + 1)
    }

    /// Adds an entry; returns false when its id is taken.
    pub(crate) fn insert(&self, entry: &Arc<ConnEntry>) -> bool {
        let id = entry.id();
        {
            let mut shard = self.conns.shard(&id).write();
            if shard.contains_key(&id) {
                return false;
            }
            shard.insert(id, Arc::clone(entry));
        }
        if let Some(user) = &entry.identity().user_id {
            self.users.shard(&**user).write().entry(Arc::clone(user)).or_default().push(id);
        }
        self.count.add(1);
        true
    }

    /// Removes an entry and marks it gone.
    pub(crate) fn remove(&self, id: ConnId) -> Option<Arc<ConnEntry>> {
        let entry = self.conns.remove(&id)?;
        entry.gone.store(true, Relaxed);
        if let Some(user) = &entry.identity().user_id {
            let mut shard = self.users.shard(&**user).write();
            if let Some(ids) = shard.get_mut(&**user) {
                ids.retain(|c| *c != id);
                if ids.is_empty() {
                    shard.remove(&**user);
                }
            }
        }
        self.count.sub(1);
        Some(entry)
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<Arc<ConnEntry>> {
        self.conns.get_cloned(&id)
    }

    pub(crate) fn of_user(&self, user_id: &str) -> Vec<ConnId> {
        self.users.get_cloned(user_id).unwrap_or_default()
    }

    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.conns.shards().flat_map(|s| s.read().keys().copied().collect::<Vec<_>>()).collect()
    }

    pub(crate) fn all(&self) -> Vec<Arc<ConnEntry>> {
        self.conns.values_cloned()
    }

    pub(crate) fn len(&self) -> u64 {
        self.count.gauge()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: usize) -> ChannelName {
        ChannelName::new(&format!("c:{i}")).unwrap()
    }

    #[test]
    fn channel_sets_hold_exactly_their_channels_as_a_list_or_a_set() {
        let mut set = ChannelSet::default();
        for i in 0..40 {
            assert!(set.insert(name(i)));
            assert!(!set.insert(name(i)), "second insert of {i}");
            assert_eq!(set.len(), i + 1);
            let is_list = matches!(set, ChannelSet::List(_));
            assert_eq!(is_list, i < SET_THRESHOLD, "{i}");
        }
        assert!(set.contains(&name(39)) && !set.contains(&name(40)));
        for i in (0..40).step_by(2) {
            assert!(set.remove(&name(i)));
            assert!(!set.remove(&name(i)));
        }
        let mut odd: Vec<ChannelName> = (1..40).step_by(2).map(name).collect();
        odd.sort();
        assert_eq!(set.sorted(), odd);
        assert_eq!(set.take_all().len(), 20);
        assert_eq!(set.len(), 0);
        assert!(matches!(set, ChannelSet::List(ref l) if l.capacity() == 0), "empty, it holds nothing");
    }
}
