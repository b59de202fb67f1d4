//! `ShardedMap`: a hash map split over independently locked shards, the one map type for every registry
//! that many threads touch at once (the hub's connections, users and channels; the transport's sessions and
//! relay rooms).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use parking_lot::RwLock;

/// How many shards a map has by default. A power of two; enough that work on different keys from a few
/// dozen threads rarely meets on one lock.
const DEFAULT_SHARDS: usize = 64;

/// A map whose keys are spread over `RwLock`ed shards, so work on different keys rarely contends.
///
/// It hands out the shard's lock rather than wrapping every operation: a caller that must check and insert
/// (or remove only when something still holds) does both under one write lock.
///
/// Keys are hashed with SipHash by default; a map whose keys no client chooses (the node's own connection
/// ids) may use [`IdHash`], one multiply.
pub struct ShardedMap<K, V, S = RandomState> {
    hasher: S,
    mask: usize,
    shards: Box<[RwLock<HashMap<K, V, S>>]>,
}

/// Hashes keys this node hands out itself, such as connection ids: nobody else chooses them, so nobody can aim
/// them at one bucket, and one multiply (mixing the low bits that pick the bucket and the shard) is enough.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHash;

impl BuildHasher for IdHash {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// The hasher of [`IdHash`].
#[derive(Debug, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // An odd constant: multiplying by it is a bijection, and it carries every input bit upwards.
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // The high bits are the best mixed; fold them into the low ones, which pick the shard.
        self.0 ^ (self.0 >> 29)
    }
}

impl<K, V, S> fmt::Debug for ShardedMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedMap").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Clone + Default> Default for ShardedMap<K, V, S> {
    fn default() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    /// An empty map with the default number of shards.
    #[must_use]
    pub fn new() -> Self {
        Self::with_shards(DEFAULT_SHARDS)
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Clone + Default> ShardedMap<K, V, S> {
    /// An empty map with `shards` shards, rounded up to a power of two.
    #[must_use]
    pub fn with_shards(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        let hasher = S::default();
        let shards = (0..n).map(|_| RwLock::new(HashMap::with_hasher(hasher.clone()))).collect();
        Self { hasher, mask: n - 1, shards }
    }

    /// The shard that holds `key`.
    pub fn shard<Q>(&self, key: &Q) -> &RwLock<HashMap<K, V, S>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // The low bits of SipHash are well mixed; the shard count is a power of two.
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h & self.mask]
    }

    /// Every shard, for walks over the whole map (each shard is locked on its own, so a walk is not a snapshot).
    pub fn shards(&self) -> impl Iterator<Item = &RwLock<HashMap<K, V, S>>> {
        self.shards.iter()
    }

    /// A clone of the value under `key`.
    pub fn get_cloned<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        self.shard(key).read().get(key).cloned()
    }

    /// Inserts a value, returning the one it replaced.
    pub fn insert(&self, key: K, value: V) -> Option<V> {
        self.shard(&key).write().insert(key, value)
    }

    /// Removes and returns the value under `key`.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).write().remove(key)
    }

    /// How many entries the map holds, summed over the shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.read().is_empty())
    }

    /// A clone of every value, shard by shard.
    pub fn values_cloned(&self) -> Vec<V>
    where
        V: Clone,
    {
        self.shards.iter().flat_map(|s| s.read().values().cloned().collect::<Vec<_>>()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_in_one_shard_and_counts_add_up() {
        let map: ShardedMap<u64, u64> = ShardedMap::with_shards(5);
        assert_eq!(map.shards().count(), 8, "rounded up to a power of two");
        for i in 0..1000 {
            assert_eq!(map.insert(i, i * 2), None);
        }
        assert_eq!(map.insert(7, 0), Some(14));
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get_cloned(&7), Some(0));
        assert!(map.shard(&7).read().contains_key(&7));
        assert_eq!(map.remove(&7), Some(0));
        assert_eq!(map.get_cloned(&7), None);
        assert_eq!(map.values_cloned().len(), 999);
        assert!(!map.is_empty());
    }

    #[test]
    fn sequential_ids_spread_over_every_shard_with_the_id_hasher() {
        let map: ShardedMap<crate::ConnId, u64, IdHash> = ShardedMap::default();
        for i in 0..64 * 16 {
            map.insert(crate::ConnId::new(i), i);
        }
        let sizes: Vec<usize> = map.shards().map(|s| s.read().len()).collect();
        assert!(sizes.iter().all(|&n| n > 4), "{sizes:?}");
        assert_eq!(map.get_cloned(&crate::ConnId::new(77)), Some(77));
    }
}
