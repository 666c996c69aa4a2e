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
//!
//! Cluster mode: [`BUS_BIT`] (bit 63) is set iff another node has announced interest in the
//! topic; only the bus thread flips it. A publish reads local and remote interest in the
//! same single lookup. In cluster mode each open connection also has a `priv/<id>` entry
//! (its worker's bit), so the node holding a connection id is found the same way.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::RwLock;

/// The bit standing for "some other node has subscribers" (cluster mode).
pub const BUS_BIT: u64 = 1 << 63;
/// The bits of this node's workers.
pub const LOCAL_WORKERS: u64 = !BUS_BIT;

/// The mask bit of worker `index`, or 0 when `index` names no possible worker (≥ 63, the
/// [`BUS_BIT`] and beyond). Every `1 << worker` goes through here: a worker index taken
/// from outside (a connection id in `priv/<id>`, a bus message) can be anything, and a bare
/// shift would panic in a debug build and wrap onto another worker's bit (or the bus bit)
/// in release. A 0 bit names no worker, so whatever was addressed is simply not delivered.
pub fn worker_bit(index: usize) -> u64 {
    if index < crate::config::MAX_WORKERS {
        1 << index
    } else {
        0
    }
}

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

    /// Marks `worker` as holding subscribers of `topic`; whether this node had none before
    /// (the node-level 0→1 transition the bus announces).
    pub fn add(&self, topic: &str, worker: usize) -> bool {
        let bit = worker_bit(worker);
        bit != 0 && self.set_bits(topic, bit, true) & LOCAL_WORKERS == 0
    }

    /// Marks `worker` as holding no subscribers of `topic`; whether this node now has none
    /// (the node-level 1→0 transition the bus announces).
    pub fn remove(&self, topic: &str, worker: usize) -> bool {
        let bit = worker_bit(worker);
        if bit == 0 {
            return false;
        }
        let before = self.set_bits(topic, bit, false);
        before & LOCAL_WORKERS == bit
    }

    /// Sets or clears [`BUS_BIT`] (the bus thread only).
    pub fn set_remote(&self, topic: &str, interested: bool) {
        self.set_bits(topic, BUS_BIT, interested);
    }

    /// Sets or clears `bits`; returns the mask before.
    fn set_bits(&self, topic: &str, bits: u64, on: bool) -> u64 {
        let mut shard = self.shard(topic).write().unwrap_or_else(|e| e.into_inner());
        match shard.get_mut(topic) {
            Some(mask) => {
                let before = *mask;
                if on {
                    *mask |= bits;
                } else {
                    *mask &= !bits;
                    if *mask == 0 {
                        shard.remove(topic);
                    }
                }
                before
            }
            None => {
                if on {
                    shard.insert(topic.into(), bits);
                }
                0
            }
        }
    }

    /// Every topic some worker of this node has subscribers of (the bus's resync and
    /// snapshot; O(topics), never on the publish path).
    pub fn local_topics(&self) -> Vec<Box<str>> {
        let mut topics = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            topics.extend(
                shard
                    .iter()
                    .filter(|(_, mask)| **mask & LOCAL_WORKERS != 0)
                    .map(|(topic, _)| topic.clone()),
            );
        }
        topics
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

    #[test]
    fn node_level_transitions_and_the_bus_bit() {
        let map = InterestMap::default();
        assert!(map.add("t", 1), "first worker: node gains interest");
        assert!(!map.add("t", 2));
        map.set_remote("t", true);
        assert_eq!(map.workers("t"), BUS_BIT | 0b110);
        assert!(!map.remove("t", 1));
        assert!(map.remove("t", 2), "last worker: node loses interest");
        assert_eq!(map.workers("t"), BUS_BIT, "remote interest stays");
        assert!(map.local_topics().is_empty());
        assert!(map.add("t", 0), "remote interest does not count as local");
        assert_eq!(map.local_topics(), vec![Box::from("t")]);
        map.remove("t", 0);
        map.set_remote("t", false);
        assert_eq!(map.workers("t"), 0);
    }

    #[test]
    fn worker_bits_never_overflow_onto_other_bits() {
        assert_eq!(worker_bit(0), 1);
        assert_eq!(worker_bit(62), 1 << 62);
        for index in [63, 64, 255, usize::MAX] {
            assert_eq!(worker_bit(index), 0, "index {index} names no worker");
        }
        let map = InterestMap::default();
        assert!(!map.add("t", 64), "no bit, no transition");
        assert!(!map.add("t", 63), "never the bus bit");
        assert_eq!(map.workers("t"), 0);
        assert!(!map.remove("t", 255));
    }
}
