//! Unit tests of `topic::subscribers`: duplicates, swap-remove fix-ups of the index, the
//! threshold crossed both ways, and the footprint of a set.

use super::*;
use std::rc::Rc;

impl<T> Subscribers<T> {
    pub(crate) fn is_indexed(&self) -> bool {
        matches!(self, Subscribers::Indexed(_))
    }

    /// Panics unless the invariants hold: keys distinct and, when indexed, one slot per
    /// entry, found by the entry's key, holding the entry's position.
    pub(crate) fn assert_consistent(&self) {
        let entries = self.as_slice();
        let mut keys: Vec<u64> = entries.iter().map(|(key, _)| *key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), entries.len(), "a key appears twice");
        if let Subscribers::Indexed(indexed) = self {
            assert_eq!(indexed.positions.len(), entries.len());
            for (position, (key, _)) in entries.iter().enumerate() {
                let slot = indexed
                    .positions
                    .find(indexed.hasher.hash_one(key), |&p| {
                        entries[p as usize].0 == *key
                    })
                    .expect("every key has a slot");
                assert_eq!(*slot as usize, position);
            }
        }
    }
}

/// A set holding `keys` in order, each with the value `key * 10`.
fn set_of(keys: impl IntoIterator<Item = u64>) -> Subscribers<u64> {
    let mut keys = keys.into_iter();
    let first = keys.next().expect("at least one key");
    let mut set = Subscribers::one(first, first * 10);
    for key in keys {
        assert!(set.insert(key, key * 10));
    }
    set
}

/// Every key still carries its own value (a wrong fix-up would pair them differently).
fn assert_pairs_intact(set: &Subscribers<u64>) {
    for (key, value) in set.as_slice() {
        assert_eq!(*value, key * 10);
    }
}

#[test]
fn a_duplicate_is_refused_in_every_shape() {
    let mut one = set_of([7]);
    assert!(!one.insert(7, 0));
    assert_eq!(one.as_slice(), &[(7, 70)]);

    let mut few = set_of(0..10);
    assert!(!few.insert(3, 0));
    assert_eq!(few.len(), 10);
    assert_pairs_intact(&few);

    let mut indexed = set_of(0..INDEX_FROM_SUBSCRIBERS as u64 + 10);
    assert!(indexed.is_indexed());
    for key in [0, 40, INDEX_FROM_SUBSCRIBERS as u64 + 9] {
        assert!(!indexed.insert(key, 0));
    }
    assert_eq!(indexed.len(), INDEX_FROM_SUBSCRIBERS + 10);
    assert_pairs_intact(&indexed);
    indexed.assert_consistent();
}

#[test]
fn removing_a_missing_key_changes_nothing() {
    let mut one = set_of([1]);
    assert!(!one.remove(2));
    assert_eq!(one.len(), 1);
    let mut indexed = set_of(0..100);
    assert!(!indexed.remove(1_000));
    assert_eq!(indexed.len(), 100);
    indexed.assert_consistent();
}

#[test]
fn the_last_removal_leaves_an_empty_set() {
    let mut one = set_of([1]);
    assert!(one.remove(1));
    assert!(one.is_empty());
    let mut few = set_of([1, 2]);
    assert!(few.remove(2));
    assert!(few.remove(1));
    assert!(few.is_empty());
    assert!(few.insert(3, 30), "an emptied set takes subscribers again");
    assert_eq!(few.as_slice(), &[(3, 30)]);
}

#[test]
fn the_index_is_built_at_the_threshold() {
    let below = INDEX_FROM_SUBSCRIBERS as u64 - 1;
    let mut set = set_of(0..below);
    assert!(!set.is_indexed());
    assert!(set.insert(below, below * 10));
    assert!(set.is_indexed());
    assert_eq!(set.len(), INDEX_FROM_SUBSCRIBERS);
    set.assert_consistent();
    assert_pairs_intact(&set);
}

#[test]
fn removals_repoint_the_moved_last_entry() {
    let count = 200u64;
    let mut set = set_of(0..count);
    // Remove from the front, the middle and the end: each non-last removal moves the last
    // entry into the gap, whose slot must follow.
    for key in [0, 100, count - 1, 1, 50] {
        assert!(set.remove(key));
        set.assert_consistent();
        assert_pairs_intact(&set);
        assert!(!set.remove(key), "removed once only");
    }
    assert_eq!(set.len(), count as usize - 5);
    for key in [2, 99, 101, count - 2] {
        assert!(!set.insert(key, 0), "{key} is still found after the moves");
    }
}

#[test]
fn the_index_is_dropped_below_half_the_threshold_and_rebuilt_above() {
    let top = INDEX_FROM_SUBSCRIBERS as u64 + 8;
    let mut set = set_of(0..top);
    // Down, removing from the front (each removal moves the last entry): indexed until
    // fewer than UNINDEX_BELOW_SUBSCRIBERS remain.
    let mut key = 0;
    while set.len() > UNINDEX_BELOW_SUBSCRIBERS {
        assert!(set.remove(key));
        key += 1;
        assert!(set.is_indexed(), "still indexed at {}", set.len());
        set.assert_consistent();
        assert_pairs_intact(&set);
    }
    let remaining: Vec<u64> = set.as_slice().iter().map(|(k, _)| *k).collect();
    assert!(set.remove(remaining[3]));
    assert!(!set.is_indexed());
    assert_eq!(set.len(), UNINDEX_BELOW_SUBSCRIBERS - 1);
    assert_pairs_intact(&set);
    // Scanning again: duplicates still refused.
    assert!(!set.insert(remaining[0], 0));
    // Up: the index is rebuilt at the threshold, from whatever order the entries are in.
    let mut next = 10_000u64;
    while set.len() < INDEX_FROM_SUBSCRIBERS {
        assert!(!set.is_indexed());
        assert!(set.insert(next, next * 10));
        next += 1;
    }
    assert!(set.is_indexed());
    set.assert_consistent();
    assert!(!set.insert(remaining[0], 0));
    assert!(!set.insert(10_000, 0));
    assert_pairs_intact(&set);
}

#[test]
fn a_set_is_three_words_and_an_entry_is_unchanged() {
    // The topic table's value: as large as before the index existed (`One | Many(Vec)`).
    assert_eq!(
        std::mem::size_of::<Subscribers<Rc<()>>>(),
        3 * std::mem::size_of::<usize>()
    );
    // One subscriber entry as the broker stores it: key plus `Rc<Session>`.
    assert_eq!(std::mem::size_of::<(u64, Rc<()>)>(), 16);
}
