//! `ChannelRegistry`: every channel this node holds state for, by name.
//!
//! Invariants it owns: a name maps to at most one live [`Channel`]; a channel leaves the map only when it
//! has no subscribers and no history (and nothing waiting on the broker), under both the shard's and the
//! channel's lock, and is then marked `removed` so a caller still holding the `Arc` looks it up again; the
//! channel count is exactly the number of entries.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ws_protocol::ChannelName;

use crate::budget::HistoryBudget;
use crate::channel::Channel;
use crate::history::Resize;
use crate::namespace::NamespaceConfig;
use crate::sharded::ShardedMap;
use crate::stats::StripedCounter;

pub(crate) struct ChannelRegistry {
    map: ShardedMap<ChannelName, Arc<Channel>>,
    count: StripedCounter,
    /// Epochs are `<seed>-<n>`: the seed (the clock when the hub was built) tells two runs of the node apart.
    epoch_seed: u64,
    epochs: AtomicU64,
    /// Whether channels are sequenced by a clustered broker (and start out waiting for it).
    clustered: bool,
    /// The cap on the bytes of every channel's in-memory history together.
    budget: HistoryBudget,
}

impl ChannelRegistry {
    pub(crate) fn new(epoch_seed: u64, clustered: bool, max_history_bytes: usize) -> Self {
        Self {
            map: ShardedMap::new(),
            count: StripedCounter::default(),
            epoch_seed,
            epochs: AtomicU64::new(0),
            clustered,
            budget: HistoryBudget::new(max_history_bytes),
        }
    }

    fn new_epoch(&self) -> Arc<str> {
        let n = self.epochs.fetch_add(1, Relaxed);
        Arc::from(format!("{:x}-{n:x}", self.epoch_seed))
    }

    pub(crate) fn lookup(&self, channel: &ChannelName) -> Option<Arc<Channel>> {
        self.map.get_cloned(channel)
    }

    /// The channel, created with a fresh epoch when it does not exist.
    pub(crate) fn get_or_create(&self, channel: &ChannelName, policy: &Arc<NamespaceConfig>) -> Arc<Channel> {
        if let Some(ch) = self.lookup(channel) {
            return ch;
        }
        let mut shard = self.map.shard(channel).write();
        Arc::clone(shard.entry(channel.clone()).or_insert_with(|| {
            self.count.add(1);
            // A clustered channel's epoch comes from the broker; until then it has none.
            let epoch = if self.clustered { Arc::from("") } else { self.new_epoch() };
            Arc::new(Channel::new(channel.clone(), Arc::clone(policy), epoch, self.clustered))
        }))
    }

    /// Takes a channel out of the registry when nothing keeps it; returns whether it went.
    pub(crate) fn remove_if_idle(&self, channel: &Arc<Channel>) -> bool {
        let mut shard = self.map.shard(&channel.name).write();
        let mut state = channel.state.lock();
        if state.removed || !state.is_idle() {
            return false;
        }
        state.removed = true;
        if shard.get(&channel.name).is_some_and(|c| Arc::ptr_eq(c, channel)) {
            shard.remove(&channel.name);
            self.count.sub(1);
        }
        true
    }

    /// Expires old history everywhere and removes the channels left idle; returns how many went.
    pub(crate) fn sweep(&self, now_ms: u64) -> usize {
        let mut idle = Vec::new();
        for shard in self.map.shards() {
            for ch in shard.read().values() {
                let mut state = ch.state.lock();
                self.history_resized(state.history.expire(now_ms, ch.policy.history_ttl_ms));
                if state.is_idle() {
                    idle.push(Arc::clone(ch));
                }
            }
        }
        idle.iter().filter(|ch| self.remove_if_idle(ch)).count()
    }

    /// Records a change of one channel's history; returns whether the node is now over its history cap, and
    /// the caller should call [`Self::evict_histories`] once it holds no channel lock.
    pub(crate) fn history_resized(&self, resize: Resize) -> bool {
        self.budget.record(resize)
    }

    /// Evicts whole histories, the least recently written first, until the node is back under nine tenths of
    /// its history cap. Each evicted channel gets a new epoch, so a client recovering from it hears
    /// `recovered: false` rather than missing messages silently. Call it with no channel lock held; when
    /// another thread is already evicting, it returns at once.
    pub(crate) fn evict_histories(&self) {
        let Some(_evicting) = self.budget.start_evicting() else { return };
        if !self.budget.over() {
            return;
        }
        let mut candidates: Vec<(u64, Arc<Channel>)> = Vec::new();
        for shard in self.map.shards() {
            for ch in shard.read().values() {
                if let Some(at) = ch.state.lock().history.newest_at() {
                    candidates.push((at, Arc::clone(ch)));
                }
            }
        }
        candidates.sort_unstable_by_key(|(at, _)| *at);
        for (_, ch) in candidates {
            if self.budget.low_enough() {
                break;
            }
            let mut state = ch.state.lock();
            if state.removed || state.history.is_empty() {
                continue;
            }
            self.history_resized(state.history.clear());
            state.epoch = self.new_epoch();
            self.budget.evicted();
        }
    }

    /// The bytes of in-memory history on this node, and how many histories were evicted to stay under the cap.
    pub(crate) fn history_stats(&self) -> (u64, u64) {
        (self.budget.bytes(), self.budget.evictions())
    }

    /// Every channel, in no order.
    pub(crate) fn all(&self) -> Vec<Arc<Channel>> {
        self.map.values_cloned()
    }

    /// How many channels exist.
    pub(crate) fn len(&self) -> u64 {
        self.count.gauge()
    }
}
