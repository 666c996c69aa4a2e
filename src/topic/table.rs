//! A worker-local topic table: `topic → subscribers on this worker`.
//!
//! Responsibility: map topic names to the subscribers this worker holds, and report the
//! 0→1 and 1→0 transitions so the caller can maintain cross-worker interest. It must not
//! know what a subscriber is beyond a `u64` key and a cloneable handle, and it is `!Sync`
//! by design: one table per worker per app, touched by that worker only.
//!
//! Invariants: a key appears at most once per topic; a topic with no subscribers is
//! removed (so the table's size is bounded by live subscriptions, which are bounded by
//! `maxSubscriptionsPerConnection` × connections).

use std::collections::HashMap;

/// Topic → subscribers. `T` is the subscriber handle (an `Rc<Session>` in the broker).
pub struct TopicTable<T> {
    topics: HashMap<Box<str>, Vec<(u64, T)>>,
}

impl<T> Default for TopicTable<T> {
    fn default() -> Self {
        TopicTable {
            topics: HashMap::new(),
        }
    }
}

impl<T> TopicTable<T> {
    /// Adds `key` to `topic`. Returns `true` when the topic went from no subscribers to one
    /// on this table. Adding a key twice is a no-op returning `false`.
    pub fn subscribe(&mut self, topic: &str, key: u64, subscriber: T) -> bool {
        match self.topics.get_mut(topic) {
            Some(list) => {
                if !list.iter().any(|(k, _)| *k == key) {
                    list.push((key, subscriber));
                }
                false
            }
            None => {
                self.topics.insert(topic.into(), vec![(key, subscriber)]);
                true
            }
        }
    }

    /// Removes `key` from `topic`. Returns `true` when the topic's last subscriber left.
    pub fn unsubscribe(&mut self, topic: &str, key: u64) -> bool {
        let Some(list) = self.topics.get_mut(topic) else {
            return false;
        };
        let Some(position) = list.iter().position(|(k, _)| *k == key) else {
            return false;
        };
        list.swap_remove(position);
        if list.is_empty() {
            self.topics.remove(topic);
            return true;
        }
        false
    }

    /// The subscribers of `topic` on this table (empty when none).
    pub fn subscribers(&self, topic: &str) -> &[(u64, T)] {
        self.topics.get(topic).map(Vec::as_slice).unwrap_or(&[])
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
}
