//! The subscriber set of one topic on one worker: O(1) insert, remove and duplicate check,
//! iterated as one contiguous slice.
//!
//! Responsibility: hold `(key, subscriber)` pairs with each key at most once, in a `Vec` the
//! fan-out walks front to back. It must stay small for the common topic (one or a few
//! subscribers: `priv/<subject>`, per-user topics) and must not scan for a key in a large one
//! (every connection joins `main`: filling it by scanning was O(n²), 3.17 s for 80,000
//! subscribers).
//!
//! Invariants: a key appears at most once; once a set is [`Subscribers::Indexed`], its
//! index holds exactly one slot per entry and that slot is the entry's position (kept
//! true through `swap_remove` by re-pointing the moved last entry's slot). The shape the
//! nats-server `sublist` and `indexmap` use: entries in a vector, positions in a hash table.

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};

/// A set reaching this many subscribers gets a key → position index. Below it a linear
/// scan of at most 63 16-byte entries (~1 KB, contiguous) costs less than hashing, and the
/// set pays nothing for an index: every small topic keeps today's footprint. Measured with `cargo bench --bench topic_table`.
pub const INDEX_FROM_SUBSCRIBERS: usize = 64;

/// An indexed set falling below this many subscribers drops its index. Half of
/// [`INDEX_FROM_SUBSCRIBERS`], so a topic hovering around the threshold does not build and
/// drop its index on every subscribe and unsubscribe.
pub const UNINDEX_BELOW_SUBSCRIBERS: usize = INDEX_FROM_SUBSCRIBERS / 2;

/// The subscribers of one topic. Three machine words whatever the variant (asserted by a
/// test): a topic table's entry is as small as before the index existed.
pub enum Subscribers<T> {
    /// Exactly one subscriber, inline: most topics have one subscriber per worker, and
    /// keeping it inline saves a 64-byte list allocation per such topic (measured: ~3% of
    /// an idle connection's footprint).
    One((u64, T)),
    /// Fewer than [`INDEX_FROM_SUBSCRIBERS`] (or, after removals, at least
    /// [`UNINDEX_BELOW_SUBSCRIBERS`]): keys are found by scanning. Empty only after the
    /// last subscriber left, when the owner removes the set.
    Few(Vec<(u64, T)>),
    /// Large: keys are found through the index. Boxed, so the enum stays three words.
    Indexed(Box<Indexed<T>>),
}

/// A large set: the entries plus the position of each, hashed by key.
pub struct Indexed<T> {
    /// The entries, in no particular order (a removal moves the last entry into the gap).
    entries: Vec<(u64, T)>,
    /// One slot per entry holding its position in `entries`. `u32` keeps a slot at 4 bytes
    /// (plus hashbrown's 1 control byte): a set has at most one entry per connection of
    /// one worker, far below 2³² (every connection holds a file descriptor).
    positions: HashTable<u32>,
    /// Seeded per set, like std's `HashMap`: keys are connection ids, not chosen by
    /// clients, but the table must not depend on that.
    hasher: RandomState,
}

impl<T> Subscribers<T> {
    /// A set holding one subscriber.
    pub fn one(key: u64, subscriber: T) -> Self {
        Subscribers::One((key, subscriber))
    }

    /// The entries, contiguous, for the fan-out to iterate.
    pub fn as_slice(&self) -> &[(u64, T)] {
        match self {
            Subscribers::One(one) => std::slice::from_ref(one),
            Subscribers::Few(few) => few,
            Subscribers::Indexed(indexed) => &indexed.entries,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Adds `key`. Returns `false`, changing nothing, when `key` is already in the set.
    pub fn insert(&mut self, key: u64, subscriber: T) -> bool {
        match self {
            Subscribers::One((first, _)) => {
                if *first == key {
                    return false;
                }
                let Subscribers::One(first) =
                    std::mem::replace(self, Subscribers::Few(Vec::with_capacity(4)))
                else {
                    unreachable!("matched One above")
                };
                if let Subscribers::Few(few) = self {
                    few.push(first);
                    few.push((key, subscriber));
                }
                true
            }
            Subscribers::Few(few) => {
                if few.iter().any(|(k, _)| *k == key) {
                    return false;
                }
                few.push((key, subscriber));
                if few.len() >= INDEX_FROM_SUBSCRIBERS {
                    let entries = std::mem::take(few);
                    *self = Subscribers::Indexed(Box::new(Indexed::new(entries)));
                }
                true
            }
            Subscribers::Indexed(indexed) => indexed.insert(key, subscriber),
        }
    }

    /// Removes `key`. Returns `false` when it was not in the set. The set may be empty
    /// afterwards (see [`Subscribers::is_empty`]).
    pub fn remove(&mut self, key: u64) -> bool {
        match self {
            Subscribers::One((only, _)) => {
                if *only != key {
                    return false;
                }
                // `Vec::new` does not allocate.
                *self = Subscribers::Few(Vec::new());
                true
            }
            Subscribers::Few(few) => {
                let Some(position) = few.iter().position(|(k, _)| *k == key) else {
                    return false;
                };
                few.swap_remove(position);
                true
            }
            Subscribers::Indexed(indexed) => {
                if !indexed.remove(key) {
                    return false;
                }
                if indexed.entries.len() < UNINDEX_BELOW_SUBSCRIBERS {
                    let entries = std::mem::take(&mut indexed.entries);
                    *self = Subscribers::Few(entries);
                }
                true
            }
        }
    }
}

impl<T> Indexed<T> {
    /// Indexes `entries`, whose keys are distinct.
    fn new(entries: Vec<(u64, T)>) -> Self {
        let hasher = RandomState::new();
        let mut positions = HashTable::with_capacity(entries.len());
        for (position, (key, _)) in entries.iter().enumerate() {
            positions.insert_unique(hasher.hash_one(key), slot(position), |&p: &u32| {
                hasher.hash_one(entries[p as usize].0)
            });
        }
        Indexed {
            entries,
            positions,
            hasher,
        }
    }

    fn insert(&mut self, key: u64, subscriber: T) -> bool {
        let Indexed {
            entries,
            positions,
            hasher,
        } = self;
        let entry = positions.entry(
            hasher.hash_one(key),
            |&p| entries[p as usize].0 == key,
            |&p| hasher.hash_one(entries[p as usize].0),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                vacant.insert(slot(entries.len()));
                entries.push((key, subscriber));
                true
            }
        }
    }

    fn remove(&mut self, key: u64) -> bool {
        let Indexed {
            entries,
            positions,
            hasher,
        } = self;
        let Ok(found) =
            positions.find_entry(hasher.hash_one(key), |&p| entries[p as usize].0 == key)
        else {
            return false;
        };
        let (position, _) = found.remove();
        let position = position as usize;
        let last = entries.len() - 1;
        if position != last {
            // `swap_remove` moves the last entry into `position`: re-point its slot.
            let moved_key = entries[last].0;
            let moved = positions
                .find_mut(hasher.hash_one(moved_key), |&p| p as usize == last)
                .expect("invariant: every entry's position has a slot in the index");
            *moved = slot(position);
        }
        entries.swap_remove(position);
        true
    }
}

/// A position as an index slot.
fn slot(position: usize) -> u32 {
    // A set holds at most one entry per connection of one worker; connections hold file
    // descriptors, so a position never reaches 2³² (see `Indexed::positions`).
    u32::try_from(position).expect("fewer than 2^32 subscribers per topic per worker")
}

#[cfg(test)]
#[path = "subscribers_tests.rs"]
mod tests;
