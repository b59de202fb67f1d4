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
use crate::sharded::ShardedMap;
use crate::stats::StripedCounter;

/// How many low bits of a connection id count connections; the bits above hold the node's prefix.
pub(crate) const SEQUENCE_BITS: u32 = 40;

/// A registered connection.
pub(crate) struct ConnEntry {
    pub(crate) conn: Arc<dyn Conn>,
    pub(crate) identity: Identity,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) connected_at_ms: u64,
    /// The channels it asked for (subscribed, or waiting for the broker to confirm).
    pub(crate) channels: Mutex<HashSet<ChannelName>>,
    /// Set once it is unregistered; a subscribe racing with the unregister checks it under the channel lock.
    pub(crate) gone: AtomicBool,
}

impl ConnEntry {
    pub(crate) fn id(&self) -> ConnId {
        self.conn.id()
    }

    pub(crate) fn info(&self) -> crate::ConnInfo {
        let mut channels: Vec<ChannelName> = self.channels.lock().iter().cloned().collect();
        channels.sort();
        crate::ConnInfo {
            id: self.id(),
            user_id: self.identity.user_id.clone(),
            remote: self.remote,
            connected_at_ms: self.connected_at_ms,
            channels,
        }
    }

    pub(crate) fn client_info(&self) -> ws_protocol::ClientInfo {
        ws_protocol::ClientInfo {
            conn_id: self.id().to_string(),
            user_id: self.identity.user_id.as_deref().map(str::to_owned),
        }
    }
}

pub(crate) struct Connections {
    conns: ShardedMap<ConnId, Arc<ConnEntry>>,
    users: ShardedMap<Arc<str>, Vec<ConnId>>,
    count: StripedCounter,
    next: AtomicU64,
}

impl Connections {
    /// Connections whose ids start with `prefix` (its low 24 bits).
    pub(crate) fn new(prefix: u32) -> Self {
        Self {
            conns: ShardedMap::new(),
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
        if let Some(user) = &entry.identity.user_id {
            self.users.shard(&**user).write().entry(Arc::clone(user)).or_default().push(id);
        }
        self.count.add(1);
        true
    }

    /// Removes an entry and marks it gone.
    pub(crate) fn remove(&self, id: ConnId) -> Option<Arc<ConnEntry>> {
        let entry = self.conns.remove(&id)?;
        entry.gone.store(true, Relaxed);
        if let Some(user) = &entry.identity.user_id {
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
