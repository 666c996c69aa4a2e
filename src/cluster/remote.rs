//! Interest bookkeeping for the bus: what this node has announced ([`Announced`]) and what
//! every other node has ([`Remote`]). Sans-IO and clock-free: time is a parameter (ms).
//!
//! Entries are `(app index, topic)`; the bus thread maps app ids on the wire to this node's
//! indexes (and ignores apps it does not serve).
//!
//! Consistency: a node's deltas carry consecutive sequence numbers; a gap (NATS core may
//! lose messages around a reconnect), an unknown node or a new process instance makes the
//! receiver ask that node for a snapshot, which replaces what it knew. Heartbeats carry the
//! last sequence number, so even a lost final delta is noticed within one heartbeat.
//! Bounded: one entry per live `(node, app, topic)`; a node silent for `NODE_EXPIRY_MS` is
//! dropped with its entries.

use super::{NODE_EXPIRY_MS, SNAPSHOT_RETRY_MS};
use std::collections::{HashMap, HashSet};

/// One interest entry: app index and topic.
pub type Key = (usize, Box<str>);

/// The interest this node has told the others about, and the delta being assembled.
#[derive(Default)]
pub struct Announced {
    /// Sequence number of the last delta sent.
    pub seq: u64,
    announced: HashSet<Key>,
    add: HashSet<Key>,
    remove: HashSet<Key>,
}

impl Announced {
    /// Records that `key` is (`present`) or is not locally subscribed now.
    pub fn observe(&mut self, key: Key, present: bool) {
        if present == self.announced.contains(&key) {
            return;
        }
        if present {
            self.announced.insert(key.clone());
            if !self.remove.remove(&key) {
                self.add.insert(key);
            }
        } else {
            self.announced.remove(&key);
            if !self.add.remove(&key) {
                self.remove.insert(key);
            }
        }
    }

    /// Replaces the announced state with `current` (a full rescan), queuing the difference.
    pub fn resync(&mut self, current: HashSet<Key>) {
        let gone: Vec<Key> = self.announced.difference(&current).cloned().collect();
        for key in gone {
            self.observe(key, false);
        }
        for key in current {
            self.observe(key, true);
        }
    }

    /// The pending delta `(seq, add, remove)` with at most `limit` entries, if any;
    /// advances `seq`. Call again until `None` to send a large change in parts.
    pub fn take_delta(&mut self, limit: usize) -> Option<(u64, Vec<Key>, Vec<Key>)> {
        if self.add.is_empty() && self.remove.is_empty() {
            return None;
        }
        self.seq += 1;
        let add: Vec<Key> = self.add.iter().take(limit).cloned().collect();
        for key in &add {
            self.add.remove(key);
        }
        let room = limit.saturating_sub(add.len());
        let remove: Vec<Key> = self.remove.iter().take(room).cloned().collect();
        for key in &remove {
            self.remove.remove(key);
        }
        Some((self.seq, add, remove))
    }

    /// Everything announced (a snapshot as of [`Announced::seq`] once the pending delta
    /// has been taken).
    pub fn entries(&self) -> impl Iterator<Item = &Key> {
        self.announced.iter()
    }
}

/// What the bus must do after an event: flip `BUS_BIT`s and perhaps ask for a snapshot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `(key, some other node is interested)` for every key whose remote interest changed.
    pub changes: Vec<(Key, bool)>,
    /// Ask this node for its snapshot.
    pub ask_snapshot: Option<String>,
}

struct Node {
    instance: u64,
    seq: u64,
    last_seen_ms: u64,
    entries: HashSet<Key>,
    /// When a snapshot was last asked for (rate limit), until one arrives.
    snapshot_asked_ms: Option<u64>,
    /// A snapshot being received: (instance, seq, entries so far).
    partial: Option<(u64, u64, HashSet<Key>)>,
}

/// The interest of every other node.
#[derive(Default)]
pub struct Remote {
    nodes: HashMap<String, Node>,
    /// Nodes interested per key (keys with none are absent).
    counts: HashMap<Key, u32>,
}

impl Remote {
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Keys some other node is interested in.
    pub fn key_count(&self) -> usize {
        self.counts.len()
    }

    /// The nodes interested in `key`. For `priv/<connectionId>`: the node holding the
    /// connection, and any node where someone subscribed to that topic explicitly.
    pub fn holders_of(&self, key: &Key) -> Vec<String> {
        if !self.counts.contains_key(key) {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|(_, node)| node.entries.contains(key))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Marks `name` heard from; a new node or a new instance starts empty.
    fn heard(&mut self, name: &str, instance: u64, now_ms: u64, out: &mut Outcome) -> &mut Node {
        let stale = self
            .nodes
            .get(name)
            .is_some_and(|node| node.instance != instance);
        if stale {
            self.drop_node(name, out);
        }
        let node = self.nodes.entry(name.to_string()).or_insert(Node {
            instance,
            seq: 0,
            last_seen_ms: now_ms,
            entries: HashSet::new(),
            snapshot_asked_ms: None,
            partial: None,
        });
        node.last_seen_ms = now_ms;
        node
    }

    fn ask(node: &mut Node, name: &str, now_ms: u64, out: &mut Outcome) {
        let recent = node
            .snapshot_asked_ms
            .is_some_and(|asked| now_ms.saturating_sub(asked) < SNAPSHOT_RETRY_MS);
        if !recent {
            node.snapshot_asked_ms = Some(now_ms);
            out.ask_snapshot = Some(name.to_string());
        }
    }

    fn set(counts: &mut HashMap<Key, u32>, node: &mut Node, key: Key, on: bool, out: &mut Outcome) {
        if on {
            if node.entries.insert(key.clone()) {
                let count = counts.entry(key.clone()).or_insert(0);
                *count += 1;
                if *count == 1 {
                    out.changes.push((key, true));
                }
            }
        } else if node.entries.remove(&key) {
            if let Some(count) = counts.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&key);
                    out.changes.push((key, false));
                }
            }
        }
    }

    fn drop_node(&mut self, name: &str, out: &mut Outcome) {
        if let Some(mut node) = self.nodes.remove(name) {
            for key in std::mem::take(&mut node.entries) {
                node.entries.insert(key.clone());
                Self::set(&mut self.counts, &mut node, key, false, out);
            }
        }
    }

    /// A heartbeat or hello: asks for a snapshot when deltas were missed.
    pub fn on_presence(&mut self, name: &str, instance: u64, seq: u64, now_ms: u64) -> Outcome {
        let mut out = Outcome::default();
        let node = self.heard(name, instance, now_ms, &mut out);
        if seq > node.seq {
            Self::ask(node, name, now_ms, &mut out);
        }
        out
    }

    /// A delta: applied (best effort on a gap, which also asks for a snapshot).
    pub fn on_delta(
        &mut self,
        name: &str,
        instance: u64,
        seq: u64,
        add: Vec<Key>,
        remove: Vec<Key>,
        now_ms: u64,
    ) -> Outcome {
        let mut out = Outcome::default();
        let node = self.heard(name, instance, now_ms, &mut out);
        if seq <= node.seq {
            return out;
        }
        if seq != node.seq + 1 {
            Self::ask(node, name, now_ms, &mut out);
        }
        node.seq = seq;
        let node = self.nodes.get_mut(name).expect("inserted by heard");
        for key in add {
            Self::set(&mut self.counts, node, key, true, &mut out);
        }
        for key in remove {
            Self::set(&mut self.counts, node, key, false, &mut out);
        }
        out
    }

    /// One part of a snapshot; the last one replaces what was known of the node.
    pub fn on_snapshot_part(
        &mut self,
        name: &str,
        instance: u64,
        seq: u64,
        last: bool,
        entries: Vec<Key>,
        now_ms: u64,
    ) -> Outcome {
        let mut out = Outcome::default();
        let node = self.heard(name, instance, now_ms, &mut out);
        let fresh = !matches!(&node.partial, Some((i, s, _)) if *i == instance && *s == seq);
        if fresh {
            node.partial = Some((instance, seq, HashSet::new()));
        }
        if let Some((_, _, partial)) = node.partial.as_mut() {
            partial.extend(entries);
        }
        if !last {
            return out;
        }
        let (_, _, complete) = node.partial.take().unwrap_or_default();
        if seq < node.seq {
            // Older than deltas already applied: ask again rather than go back in time.
            node.snapshot_asked_ms = None;
            Self::ask(node, name, now_ms, &mut out);
            return out;
        }
        node.seq = seq;
        node.snapshot_asked_ms = None;
        let node = self.nodes.get_mut(name).expect("inserted by heard");
        let gone: Vec<Key> = node.entries.difference(&complete).cloned().collect();
        for key in gone {
            Self::set(&mut self.counts, node, key, false, &mut out);
        }
        for key in complete {
            Self::set(&mut self.counts, node, key, true, &mut out);
        }
        out
    }

    /// A node said goodbye: its interest goes at once.
    pub fn on_bye(&mut self, name: &str, instance: u64) -> Outcome {
        let mut out = Outcome::default();
        if self.nodes.get(name).is_some_and(|n| n.instance == instance) {
            self.drop_node(name, &mut out);
        }
        out
    }

    /// Drops nodes silent for longer than `NODE_EXPIRY_MS`; returns their names too.
    pub fn expire(&mut self, now_ms: u64) -> (Outcome, Vec<String>) {
        let mut out = Outcome::default();
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, node)| now_ms.saturating_sub(node.last_seen_ms) > NODE_EXPIRY_MS)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &dead {
            self.drop_node(name, &mut out);
        }
        (out, dead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str) -> Key {
        (0, topic.into())
    }

    #[test]
    fn announced_deltas_cancel_within_a_batch() {
        let mut announced = Announced::default();
        announced.observe(key("a"), true);
        announced.observe(key("b"), true);
        announced.observe(key("b"), false);
        let (seq, add, remove) = announced.take_delta(10).unwrap();
        assert_eq!((seq, add, remove), (1, vec![key("a")], vec![]));
        announced.observe(key("a"), false);
        announced.observe(key("a"), true);
        assert_eq!(
            announced.take_delta(10),
            None,
            "remove then add is no change"
        );
        announced.resync([key("c")].into_iter().collect());
        let (seq, mut add, remove) = announced.take_delta(10).unwrap();
        add.sort();
        assert_eq!((seq, add, remove), (2, vec![key("c")], vec![key("a")]));
        assert_eq!(announced.entries().count(), 1);
        announced.resync(HashSet::new());
        announced.observe(key("d"), true);
        let (_, add, remove) = announced.take_delta(1).unwrap();
        assert_eq!(add.len() + remove.len(), 1);
        let (seq, add, remove) = announced.take_delta(1).unwrap();
        assert_eq!(
            (seq, add.len() + remove.len()),
            (4, 1),
            "split over two deltas"
        );
        assert_eq!(announced.take_delta(1), None);
    }

    #[test]
    fn remote_interest_counts_nodes_and_reports_transitions() {
        let mut remote = Remote::default();
        let out = remote.on_delta("b", 1, 1, vec![key("t")], vec![], 0);
        assert_eq!(out.changes, vec![(key("t"), true)]);
        assert_eq!(out.ask_snapshot, None);
        let out = remote.on_delta("c", 1, 1, vec![key("t")], vec![], 0);
        assert!(out.changes.is_empty(), "already interested through b");
        assert_eq!(remote.holders_of(&key("t")).len(), 2);
        let out = remote.on_delta("b", 1, 2, vec![], vec![key("t")], 0);
        assert!(out.changes.is_empty(), "c still interested");
        let out = remote.on_bye("c", 1);
        assert_eq!(out.changes, vec![(key("t"), false)]);
        assert!(remote.holders_of(&key("t")).is_empty());
    }

    #[test]
    fn gaps_and_heartbeats_ask_for_snapshots_rate_limited() {
        let mut remote = Remote::default();
        remote.on_delta("b", 1, 1, vec![key("x")], vec![], 0);
        let out = remote.on_delta("b", 1, 3, vec![key("y")], vec![], 10);
        assert_eq!(out.ask_snapshot.as_deref(), Some("b"), "seq 2 was lost");
        let out = remote.on_presence("b", 1, 5, 20);
        assert_eq!(out.ask_snapshot, None, "asked less than a retry period ago");
        let out = remote.on_presence("b", 1, 5, 20 + SNAPSHOT_RETRY_MS);
        assert_eq!(out.ask_snapshot.as_deref(), Some("b"));
        remote.on_snapshot_part("b", 1, 5, false, vec![key("y")], 1100);
        let out = remote.on_snapshot_part("b", 1, 5, true, vec![key("z")], 1100);
        let mut changes = out.changes;
        changes.sort();
        assert_eq!(changes, vec![(key("x"), false), (key("z"), true)]);
        assert_eq!(remote.key_count(), 2, "y and z");
        assert_eq!(remote.on_presence("b", 1, 5, 1200), Outcome::default());
    }

    #[test]
    fn silent_nodes_expire_and_new_instances_start_over() {
        let mut remote = Remote::default();
        remote.on_delta("b", 1, 1, vec![key("x")], vec![], 0);
        remote.on_delta("c", 1, 1, vec![key("y")], vec![], 0);
        remote.on_presence("c", 1, 1, NODE_EXPIRY_MS);
        let (out, dead) = remote.expire(NODE_EXPIRY_MS + 1);
        assert_eq!(dead, vec!["b".to_string()]);
        assert_eq!(out.changes, vec![(key("x"), false)]);
        let out = remote.on_presence("c", 2, 0, NODE_EXPIRY_MS + 2);
        assert_eq!(out.changes, vec![(key("y"), false)], "restarted process");
        assert_eq!(remote.node_count(), 1);
    }
}
