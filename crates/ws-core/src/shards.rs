//! `Shards`: a hash map split over independently locked shards.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use parking_lot::RwLock;

/// How many shards each map has. A power of two; enough that publishes on
/// different channels from a few dozen threads rarely meet on one lock.
const SHARDS: usize = 64;

/// A map whose keys are spread over [`SHARDS`] `RwLock`ed shards, so work on
/// different keys rarely contends.
#[derive(Debug)]
pub(crate) struct Shards<K, V> {
    hasher: RandomState,
    shards: Box<[RwLock<HashMap<K, V>>]>,
}

impl<K: Hash + Eq, V> Shards<K, V> {
    pub(crate) fn new() -> Self {
        Self { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect() }
    }

    pub(crate) fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<K, V>> {
        // The low bits of SipHash are well mixed; SHARDS is a power of two.
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h & (SHARDS - 1)]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &RwLock<HashMap<K, V>>> {
        self.shards.iter()
    }
}
