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
//! (each worker only flips its own bit). Entries vanish when the mask reaches zero, so size
//! is bounded by live topics.
//!
//! Buckets (cluster mode): every topic falls in one of [`BUCKETS`] buckets
//! ([`bucket_of`], a stable hash: every node computes the same bucket). The map counts, per
//! bucket, the topics this node holds subscribers of, under the same shard lock as the
//! topics (a shard owns whole buckets), so a bucket's 0↔1 transitions are exact. The bus
//! holds one NATS subscription per bucket in use; that keeps its cost bounded by
//! [`BUCKETS`] per app whatever the number of topics (docs/decisions/bus-interest.md).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The bits of this node's workers (bit 63 names none: [`worker_bit`]).
pub const LOCAL_WORKERS: u64 = !(1 << 63);

/// The mask bit of worker `index`, or 0 when `index` names no possible worker (≥ 63).
/// Every `1 << worker` goes through here: a worker index taken from outside (a connection
/// id in `priv/<id>`, a bus message) can be anything, and a bare shift would panic in a
/// debug build and wrap onto another worker's bit in release. A 0 bit names no worker, so
/// whatever was addressed is simply not delivered.
pub fn worker_bit(index: usize) -> u64 {
    if index < crate::config::MAX_WORKERS {
        1 << index
    } else {
        0
    }
}

/// Buckets of ordinary topics per app.
pub const TOPIC_BUCKETS: u16 = 1024;
/// Buckets of `priv/…` topics per app: usually one per user, so a node holding a few
/// hundred users holds them all whatever their number; a separate, small set keeps them
/// from filling the ordinary topics' buckets and costs little (64 × 5 KB).
pub const PRIVATE_BUCKETS: u16 = 64;
/// All buckets of an app: ordinary topics in `0..TOPIC_BUCKETS`, `priv/…` above.
pub const BUCKETS: u16 = TOPIC_BUCKETS + PRIVATE_BUCKETS;

/// FNV-1a (64 bit) of `bytes`: stable across processes, versions and platforms — part of
/// the bus's wire contract through [`bucket_of`].
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The bucket of `topic` (the same on every node).
pub fn bucket_of(topic: &str) -> u16 {
    let hash = stable_hash(topic.as_bytes());
    if topic.starts_with("priv/") {
        TOPIC_BUCKETS + (hash % u64::from(PRIVATE_BUCKETS)) as u16
    } else {
        (hash % u64::from(TOPIC_BUCKETS)) as u16
    }
}

/// Shards per app: enough that 64 workers subscribing at once rarely share a lock. Shard
/// `s` owns buckets `s`, `s + SHARDS`, …
const SHARDS: usize = 32;
const BUCKETS_PER_SHARD: usize = (BUCKETS as usize).div_ceil(SHARDS);

struct ShardState {
    /// Topic → bitmask of workers (the name shared with the workers' topic tables).
    topics: HashMap<Arc<str>, u64>,
    /// Topics held per bucket of this shard (index `bucket / SHARDS`).
    buckets: [u32; BUCKETS_PER_SHARD],
}

impl Default for ShardState {
    fn default() -> Self {
        ShardState {
            topics: HashMap::new(),
            buckets: [0; BUCKETS_PER_SHARD],
        }
    }
}

type Shard = RwLock<ShardState>;

/// Topic → worker bitmask for one app.
pub struct InterestMap {
    shards: Box<[Shard]>,
}

impl Default for InterestMap {
    fn default() -> Self {
        InterestMap {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }
}

impl InterestMap {
    fn shard(&self, bucket: u16) -> &Shard {
        &self.shards[bucket as usize % SHARDS]
    }

    /// Workers (bitmask) holding subscribers of `topic`.
    pub fn workers(&self, topic: &str) -> u64 {
        // A poisoned lock means a worker panicked mid-update; the map itself is still a
        // valid HashMap, so keep serving from it.
        let shard = self
            .shard(bucket_of(topic))
            .read()
            .unwrap_or_else(|e| e.into_inner());
        shard.topics.get(topic).copied().unwrap_or(0)
    }

    /// Marks `worker` as holding subscribers of `topic` (kept by its shared name, the one
    /// the worker's topic table holds). Returns the topic's bucket when this made it go
    /// from no topic of this node to one (the bus subscribes to it).
    pub fn add(&self, topic: &Arc<str>, worker: usize) -> Option<u16> {
        self.update(topic, Some(topic), worker_bit(worker))
    }

    /// Marks `worker` as holding no subscribers of `topic`. Returns the topic's bucket when
    /// this node now holds no topic of it (the bus unsubscribes).
    pub fn remove(&self, topic: &str, worker: usize) -> Option<u16> {
        self.update(topic, None, worker_bit(worker))
    }

    /// Whether this node holds subscribers of some topic of `bucket`.
    pub fn bucket_in_use(&self, bucket: u16) -> bool {
        let shard = self.shard(bucket).read().unwrap_or_else(|e| e.into_inner());
        shard
            .buckets
            .get(bucket as usize / SHARDS)
            .is_some_and(|count| *count > 0)
    }

    /// Sets `bit` for `topic` when `adding` (the name to store if the topic is new), else
    /// clears it; returns the bucket when its 0↔1 state flipped.
    fn update(&self, topic: &str, adding: Option<&Arc<str>>, bit: u64) -> Option<u16> {
        if bit == 0 {
            return None;
        }
        let bucket = bucket_of(topic);
        let mut shard = self
            .shard(bucket)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let shard = &mut *shard;
        let count = &mut shard.buckets[bucket as usize / SHARDS];
        match (shard.topics.get_mut(topic), adding) {
            (Some(mask), Some(_)) => {
                *mask |= bit;
                None
            }
            (Some(mask), None) => {
                *mask &= !bit;
                if *mask != 0 {
                    return None;
                }
                shard.topics.remove(topic);
                *count = count.saturating_sub(1);
                (*count == 0).then_some(bucket)
            }
            (None, Some(name)) => {
                shard.topics.insert(name.clone(), bit);
                *count += 1;
                (*count == 1).then_some(bucket)
            }
            (None, None) => None,
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

    fn name(topic: &str) -> Arc<str> {
        topic.into()
    }

    #[test]
    fn bits_follow_add_and_remove() {
        let map = InterestMap::default();
        map.add(&name("chat"), 0);
        map.add(&name("chat"), 3);
        assert_eq!(map.workers("chat"), 0b1001);
        map.remove("chat", 0);
        assert_eq!(workers_in(map.workers("chat")).collect::<Vec<_>>(), vec![3]);
        map.remove("chat", 3);
        assert_eq!(map.workers("chat"), 0);
        assert_eq!(map.workers("other"), 0);
    }

    #[test]
    fn a_bucket_is_in_use_while_any_of_its_topics_is() {
        let map = InterestMap::default();
        // Two topics of one bucket.
        let first = "t0".to_string();
        let bucket = bucket_of(&first);
        let second = (1..)
            .map(|n| format!("t{n}"))
            .find(|t| bucket_of(t) == bucket)
            .unwrap();
        assert_eq!(
            map.add(&name(&first), 1),
            Some(bucket),
            "first topic: bucket gained"
        );
        assert_eq!(
            map.add(&name(&first), 2),
            None,
            "same topic, another worker"
        );
        assert_eq!(map.add(&name(&second), 0), None, "bucket already in use");
        assert!(map.bucket_in_use(bucket));
        assert_eq!(map.remove(&first, 1), None);
        assert_eq!(
            map.remove(&first, 2),
            None,
            "the second topic still holds it"
        );
        assert_eq!(
            map.remove(&second, 0),
            Some(bucket),
            "last topic: bucket lost"
        );
        assert!(!map.bucket_in_use(bucket));
        assert_eq!(
            map.remove(&second, 0),
            None,
            "removing twice changes nothing"
        );
        assert_eq!(map.workers(&first), 0);
    }

    #[test]
    fn buckets_are_stable_and_keep_private_topics_apart() {
        // Part of the wire contract: these values must never change within wire v1.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(bucket_of("chat"), (stable_hash(b"chat") % 1024) as u16);
        for n in 0..2000 {
            let ordinary = bucket_of(&format!("room/{n}"));
            assert!(ordinary < TOPIC_BUCKETS);
            let private = bucket_of(&format!("priv/user-{n}"));
            assert!((TOPIC_BUCKETS..BUCKETS).contains(&private));
        }
        assert!(
            !InterestMap::default().bucket_in_use(BUCKETS + 7),
            "out of range: unused"
        );
    }

    #[test]
    fn worker_bits_never_overflow_onto_other_bits() {
        assert_eq!(worker_bit(0), 1);
        assert_eq!(worker_bit(62), 1 << 62);
        for index in [63, 64, 255, usize::MAX] {
            assert_eq!(worker_bit(index), 0, "index {index} names no worker");
        }
        let map = InterestMap::default();
        assert_eq!(map.add(&name("t"), 64), None, "no bit, no transition");
        assert_eq!(map.add(&name("t"), 63), None);
        assert_eq!(map.workers("t"), 0);
        assert_eq!(map.remove("t", 255), None);
    }
}
