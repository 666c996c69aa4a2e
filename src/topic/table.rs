//! A worker-local topic table: `topic → subscribers on this worker`.
//!
//! Responsibility: map topic names to the subscribers this worker holds, and report the
//! 0→1 and 1→0 transitions so the caller can maintain cross-worker interest. It must not
//! know what a subscriber is beyond a `u64` key and a cloneable handle, and it is `!Sync`
//! by design: one table per worker per app, touched by that worker only.
//!
//! Invariants: a key appears at most once per topic (kept by [`Subscribers`], which also
//! makes subscribe and unsubscribe O(1) on a large topic); a topic with no subscribers is
//! removed (so the table's size is bounded by live subscriptions, which are bounded by
//! `maxSubscriptionsPerConnection` × connections).

use super::subscribers::Subscribers;
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use std::hash::RandomState;
use std::sync::Arc;

/// Topic → subscribers. `T` is the subscriber handle (an `Rc<Session>` in the broker).
pub struct TopicTable<T> {
    /// Keyed by the topic's shared name: the subscribing sessions' lists and the node's
    /// interest map hold the same allocation.
    /// (hashbrown for `entry_ref`: one lookup per subscribe that also yields the stored
    /// name; std's seeded SipHash, as before.)
    topics: HashMap<Arc<str>, Subscribers<T>, RandomState>,
}

impl<T> Default for TopicTable<T> {
    fn default() -> Self {
        TopicTable {
            topics: HashMap::with_hasher(RandomState::new()),
        }
    }
}

impl<T> TopicTable<T> {
    /// Adds `key` to `topic`. Returns `true` when the topic went from no subscribers to one
    /// on this table. Adding a key twice is a no-op returning `false`. O(1): see
    /// [`Subscribers`].
    pub fn subscribe(&mut self, topic: &str, key: u64, subscriber: T) -> bool {
        self.subscribe_shared(topic, key, subscriber).1
    }

    /// [`TopicTable::subscribe`], also returning the table's shared copy of the topic's
    /// name (one allocation per topic for whoever else keeps the name).
    pub fn subscribe_shared(&mut self, topic: &str, key: u64, subscriber: T) -> (Arc<str>, bool) {
        match self.topics.entry_ref(topic) {
            EntryRef::Occupied(mut entry) => {
                entry.get_mut().insert(key, subscriber);
                (entry.key().clone(), false)
            }
            EntryRef::Vacant(entry) => {
                let entry = entry.insert_entry(Subscribers::one(key, subscriber));
                (entry.key().clone(), true)
            }
        }
    }

    /// Removes `key` from `topic`. Returns `true` when the topic's last subscriber left.
    /// O(1): see [`Subscribers`].
    pub fn unsubscribe(&mut self, topic: &str, key: u64) -> bool {
        let EntryRef::Occupied(mut entry) = self.topics.entry_ref(topic) else {
            return false;
        };
        if !entry.get_mut().remove(key) || !entry.get().is_empty() {
            return false;
        }
        entry.remove();
        true
    }

    /// The subscribers of `topic` on this table (empty when none), contiguous.
    pub fn subscribers(&self, topic: &str) -> &[(u64, T)] {
        self.topics
            .get(topic)
            .map(Subscribers::as_slice)
            .unwrap_or(&[])
    }

    /// Number of topics with at least one subscriber.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported_once() {
        let mut table = TopicTable::default();
        assert!(table.subscribe("chat", 1, 'a'));
        assert!(!table.subscribe("chat", 2, 'b'));
        assert!(!table.subscribe("chat", 2, 'b'));
        assert_eq!(table.subscribers("chat").len(), 2);
        assert!(!table.unsubscribe("chat", 1));
        assert!(!table.unsubscribe("chat", 1));
        assert!(table.unsubscribe("chat", 2));
        assert_eq!(table.topic_count(), 0);
        assert!(table.subscribers("chat").is_empty());
        assert!(!table.unsubscribe("nothing", 3));
    }

    #[test]
    fn one_grows_to_many_and_back_to_empty() {
        let mut table = TopicTable::default();
        assert!(table.subscribe("t", 1, 'a'));
        assert!(!table.unsubscribe("t", 9));
        assert!(!table.subscribe("t", 2, 'b'));
        assert!(!table.subscribe("t", 3, 'c'));
        let mut keys: Vec<u64> = table.subscribers("t").iter().map(|(k, _)| *k).collect();
        keys.sort();
        assert_eq!(keys, vec![1, 2, 3]);
        assert!(!table.unsubscribe("t", 2));
        assert!(!table.unsubscribe("t", 1));
        assert!(table.unsubscribe("t", 3));
        assert!(table.subscribers("t").is_empty());
    }

    /// Random subscribe/unsubscribe sequences against a model (a set of keys per topic):
    /// the returned transitions, the subscribers and their handles always agree with it,
    /// and the topics cross the index threshold both ways many times.
    #[test]
    fn random_operations_match_a_model() {
        use crate::topic::subscribers::{INDEX_FROM_SUBSCRIBERS, UNINDEX_BELOW_SUBSCRIBERS};
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        use std::collections::{BTreeMap, BTreeSet};

        const TOPICS: [&str; 3] = ["main", "chat", "priv/0000000a0b01"];
        let mut crossings_up = 0;
        let mut crossings_down = 0;
        for seed in 0..6 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut table: TopicTable<u64> = TopicTable::default();
            let mut model: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
            let mut large: BTreeSet<&str> = BTreeSet::new();
            for step in 0..6_000 {
                // Phases of 500 steps lean to subscribing, then to unsubscribing, so that
                // topics grow past the index threshold and shrink back below it.
                let growing = (step / 500) % 2 == 0;
                let topic = TOPICS[rng.gen_range(0..TOPICS.len())];
                let keys = model.entry(topic).or_default();
                // Mostly an absent key when subscribing and a present one when
                // unsubscribing; sometimes the other, to exercise the refusals.
                let pick_present = rng.gen_bool(if growing { 0.1 } else { 0.9 });
                let present = (pick_present && !keys.is_empty())
                    .then(|| *keys.iter().nth(rng.gen_range(0..keys.len())).unwrap());
                let key = present.unwrap_or_else(|| rng.gen_range(0..1u64 << 40) << 8 | 1);
                if rng.gen_bool(if growing { 0.85 } else { 0.15 }) {
                    let first = keys.is_empty();
                    let added = keys.insert(key);
                    // A duplicate carries another handle, which must not replace the first.
                    let handle = if added { key.wrapping_mul(10) } else { 1 };
                    assert_eq!(table.subscribe(topic, key, handle), first);
                } else {
                    let removed = keys.remove(&key);
                    assert_eq!(table.unsubscribe(topic, key), removed && keys.is_empty());
                }
                let mut actual: Vec<u64> = Vec::new();
                for (key, handle) in table.subscribers(topic) {
                    assert_eq!(*handle, key.wrapping_mul(10));
                    actual.push(*key);
                }
                actual.sort_unstable();
                assert_eq!(actual, keys.iter().copied().collect::<Vec<u64>>());
                if let Some(subscribers) = table.topics.get(topic) {
                    subscribers.assert_consistent();
                    assert!(!subscribers.is_indexed() || keys.len() >= UNINDEX_BELOW_SUBSCRIBERS);
                }
                if keys.len() >= INDEX_FROM_SUBSCRIBERS && large.insert(topic) {
                    crossings_up += 1;
                }
                if keys.len() < UNINDEX_BELOW_SUBSCRIBERS && large.remove(topic) {
                    crossings_down += 1;
                }
                let live = model.values().filter(|keys| !keys.is_empty()).count();
                assert_eq!(table.topic_count(), live);
            }
        }
        assert!(crossings_up >= 10, "crossed up {crossings_up} times");
        assert!(crossings_down >= 10, "crossed down {crossings_down} times");
    }
}
