//! The bus's interest traffic: this node's deltas and snapshots out, other nodes' in.
//!
//! Responsibility: announce which `(app, topic)` pairs this node's workers subscribe to
//! (deltas on `<prefix>.interest.<node>`, snapshots for late joiners), and apply what other
//! nodes announce to the interest maps' `BUS_BIT` through the sans-IO bookkeeping
//! (`cluster::remote`). Must not: trust a message it did not validate (`cluster::validate`).

use super::{json, Bus, PUBLISH_STALL};
use crate::cluster::remote::{Key, Outcome};
use crate::cluster::validate::{check_delta, check_snapshot_part};
use crate::cluster::wire::{Delta, Entry, SnapshotPart};
use crate::cluster::SNAPSHOT_CHUNK_ENTRIES;
use crate::metrics::WorkerMetrics;
use async_nats::Message;
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::Ordering;

impl Bus {
    /// Wire entries → local keys (apps this node does not serve are skipped).
    pub(super) fn keys(&self, entries: Vec<Entry>) -> Vec<Key> {
        entries
            .into_iter()
            .filter_map(|(app, topic)| Some((self.registry.get(&app)?.index, topic.into())))
            .collect()
    }

    pub(super) fn entries<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) -> Vec<Entry> {
        keys.into_iter()
            .map(|(app, topic)| (self.app_id(*app), topic.to_string()))
            .collect()
    }

    /// Sends the pending interest delta (in chunks of `SNAPSHOT_CHUNK_ENTRIES`).
    pub(super) async fn send_deltas(&mut self) {
        if self.resync.swap(false, Ordering::AcqRel) {
            let mut current = HashSet::new();
            for app in &self.registry.apps {
                current.extend(
                    app.interest
                        .local_topics()
                        .into_iter()
                        .map(|topic| (app.index, topic)),
                );
            }
            self.announced.resync(current);
        }
        while let Some((seq, add, remove)) = self.announced.take_delta(SNAPSHOT_CHUNK_ENTRIES) {
            let delta = Delta {
                node: self.subjects.node.clone(),
                instance: self.instance,
                seq,
                add: self.entries(&add),
                remove: self.entries(&remove),
            };
            // A lost delta is noticed by the others through the heartbeat's `seq`.
            if self.connected() {
                let subject = self.subjects.interest(&self.subjects.node);
                self.publish(subject, json(&delta)).await;
                WorkerMetrics::add(&self.metrics.interest_deltas_sent, 1);
            }
        }
    }

    /// Sends this node's whole interest to `to`, as of the current delta `seq`.
    pub(super) async fn send_snapshot(&mut self, to: String) {
        self.send_deltas().await;
        let entries: Vec<&Key> = self.announced.entries().collect();
        let chunks: Vec<&[&Key]> = if entries.is_empty() {
            vec![&[]]
        } else {
            entries.chunks(SNAPSHOT_CHUNK_ENTRIES).collect()
        };
        let count = chunks.len();
        let mut parts = Vec::with_capacity(count);
        for (index, chunk) in chunks.into_iter().enumerate() {
            parts.push(json(&SnapshotPart {
                node: self.subjects.node.clone(),
                instance: self.instance,
                seq: self.announced.seq,
                last: index + 1 == count,
                entries: self.entries(chunk.iter().copied()),
            }));
        }
        for part in parts {
            self.publish(to.clone(), part).await;
        }
    }

    pub(super) async fn ask_snapshot(&self, node: &str) {
        WorkerMetrics::add(&self.metrics.snapshot_requests, 1);
        let request = self.client.publish_with_reply(
            self.subjects.node(node, "snapshot"),
            self.subjects.own_inbox(),
            Bytes::new(),
        );
        let _ = tokio::time::timeout(PUBLISH_STALL, request).await;
    }

    /// Says hello to every node: each answers with its interest snapshot (and asks for
    /// ours).
    pub(super) async fn request_snapshots(&self) {
        let hello = self.client.publish_with_reply(
            self.subjects.all("hello"),
            self.subjects.own_inbox(),
            self.presence(),
        );
        let _ = tokio::time::timeout(PUBLISH_STALL, hello).await;
    }

    /// Applies an interest outcome: flips `BUS_BIT`s, asks for a snapshot if needed.
    pub(super) async fn apply(&mut self, outcome: Outcome) {
        for ((app, topic), interested) in &outcome.changes {
            if let Some(app) = self.registry.at_slot(*app) {
                app.interest.set_remote(topic, *interested);
            }
        }
        self.metrics
            .remote_nodes
            .store(self.remote.node_count() as u64, Ordering::Relaxed);
        self.metrics
            .remote_topics
            .store(self.remote.key_count() as u64, Ordering::Relaxed);
        if let Some(node) = outcome.ask_snapshot {
            self.ask_snapshot(&node).await;
        }
    }

    pub(super) async fn on_delta(&mut self, message: &Message) {
        let Some(delta) = self.parse::<Delta>(message, check_delta) else {
            return;
        };
        if delta.node == self.subjects.node {
            return;
        }
        let (add, remove) = (self.keys(delta.add), self.keys(delta.remove));
        let now = self.now_ms();
        let outcome =
            self.remote
                .on_delta(&delta.node, delta.instance, delta.seq, add, remove, now);
        self.apply(outcome).await;
    }

    /// One part of another node's snapshot (an answer to this node's hello or request).
    pub(super) async fn on_snapshot_part(&mut self, message: &Message) {
        let Some(part) = self.parse::<SnapshotPart>(message, check_snapshot_part) else {
            return;
        };
        if part.node == self.subjects.node {
            return;
        }
        let entries = self.keys(part.entries);
        let now = self.now_ms();
        let outcome = self.remote.on_snapshot_part(
            &part.node,
            part.instance,
            part.seq,
            part.last,
            entries,
            now,
        );
        self.apply(outcome).await;
    }
}
