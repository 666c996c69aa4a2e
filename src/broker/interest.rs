//! Cross-worker interest: which workers hold subscribers of `(app, topic)`.
//!
//! Responsibility: a shared, read-mostly map `topic → bitmask of workers` per app, written
//! on a worker's local 0→1 / 1→0 subscriber transitions and read on every publish, so a
//! publication is sent to each other worker that needs it exactly once and to no other.
//!
//! Why shared (not per-worker copies updated by messages): a subscription is visible to
//! every publisher the moment its worker processed it, so "subscribe, see any later frame,
//! then publish from anywhere" never misses — no propagation race. Cost measured in design:
//! one sharded `RwLock` read (uncontended atomic) + one hash per publish.
//!
//! Invariant: bit `w` is set iff worker `w`'s local table has ≥ 1 subscriber of the topic
//! (each worker only flips its own bit). Sharding bounds writer contention; entries vanish
//! when the mask reaches zero, so size is bounded by live topics.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::RwLock;

/// Shards per app: enough that 64 workers subscribing at once rarely share a lock.
const SHARDS: usize = 32;

/// One shard: topic → bitmask of workers.
type Shard = RwLock<HashMap<Box<str>, u64>>;

/// Topic → worker bitmask for one app.
pub struct InterestMap {
    shards: Box<[Shard]>,
}

impl Default for InterestMap {
    fn default() -> Self {
        InterestMap {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }
}

impl InterestMap {
    fn shard(&self, topic: &str) -> &Shard {
        let mut hasher = DefaultHasher::new();
        topic.hash(&mut hasher);
        &self.shards[hasher.finish() as usize % SHARDS]
    }

    /// Workers (bitmask) holding subscribers of `topic`.
    pub fn workers(&self, topic: &str) -> u64 {
        // A poisoned lock means a worker panicked mid-update; the map itself is still a
        // valid HashMap, so keep serving from it.
        let shard = self.shard(topic).read().unwrap_or_else(|e| e.into_inner());
        shard.get(topic).copied().unwrap_or(0)
    }

    /// Marks `worker` as holding subscribers of `topic`.
    pub fn add(&self, topic: &str, worker: usize) {
        let mut shard = self.shard(topic).write().unwrap_or_else(|e| e.into_inner());
        match shard.get_mut(topic) {
            Some(mask) => *mask |= 1 << worker,
            None => {
                shard.insert(topic.into(), 1 << worker);
            }
        }
    }

    /// Marks `worker` as holding no subscribers of `topic`.
    pub fn remove(&self, topic: &str, worker: usize) {
        let mut shard = self.shard(topic).write().unwrap_or_else(|e| e.into_inner());
        if let Some(mask) = shard.get_mut(topic) {
            *mask &= !(1 << worker);
            if *mask == 0 {
                shard.remove(topic);
            }
        }
    }
}

/// Iterates the set bits of a mask as worker indexes.
pub fn workers_in(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let index = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(index)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_add_and_remove() {
        let map = InterestMap::default();
        map.add("chat", 0);
        map.add("chat", 3);
        assert_eq!(map.workers("chat"), 0b1001);
        map.remove("chat", 0);
        assert_eq!(workers_in(map.workers("chat")).collect::<Vec<_>>(), vec![3]);
        map.remove("chat", 3);
        assert_eq!(map.workers("chat"), 0);
        assert_eq!(map.workers("other"), 0);
    }
}
