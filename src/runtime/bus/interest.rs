//! The bus's NATS subscriptions for interest: one per `(app, bucket)` this node holds
//! topics of.
//!
//! Responsibility: keep the bucket subscriptions equal to what the interest maps say
//! (`InterestMap::bucket_in_use`), on each hint from a worker, after a lost hint (a full
//! queue sets `resync`), at start and on reload. Reading the map rather than counting
//! hints makes every step idempotent: hints may arrive in any order or twice.
//!
//! Why buckets, not one subscription per topic: an async-nats subscription costs ~5 KB of
//! the node's memory (its own channel), and every connection has a `priv/<subject>`
//! topic, usually unique; per topic that alone is 2.5× the 2 KiB per connection budget.
//! A bucket's subscription costs the same whatever number of topics it holds
//! (docs/decisions/bus-interest.md).

use super::Bus;
use crate::broker::interest::BUCKETS;
use async_nats::{Message, Subscriber};
use futures_util::Stream;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

/// One bucket's NATS subscription as a stream of its messages.
pub(super) struct BucketSubscription {
    key: (usize, u16),
    /// `false` once unsubscribed (its last messages may still be drained).
    live: bool,
    subscriber: Subscriber,
}

impl Stream for BucketSubscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        Pin::new(&mut self.subscriber).poll_next(cx)
    }
}

impl Bus {
    /// Subscribes to or unsubscribes from one bucket of the app in `slot` to match its
    /// interest map (an app a reload removed has none).
    pub(super) async fn reconcile(&mut self, slot: usize, bucket: u16) {
        let key = (slot, bucket);
        let wanted = self
            .registry
            .at_slot(slot)
            .is_some_and(|app| app.interest.bucket_in_use(bucket));
        let held = self.held.contains(&key);
        if wanted && !held {
            let subject = self.subjects.bucket(&self.app_id(slot), bucket);
            match self.client.subscribe(subject).await {
                Ok(subscriber) => {
                    self.buckets.push(BucketSubscription {
                        key,
                        live: true,
                        subscriber,
                    });
                    self.held.insert(key);
                }
                Err(error) => {
                    // Only when the client is gone (the process is ending); try again on
                    // the next wake.
                    tracing::warn!(%error, "cannot subscribe on NATS");
                    self.resync.store(true, Ordering::Release);
                }
            }
        } else if !wanted && held {
            self.held.remove(&key);
            for subscription in self.buckets.iter_mut() {
                if subscription.live && subscription.key == key {
                    subscription.live = false;
                    // The stream ends once NATS confirmed; its last messages are dropped
                    // as unwanted.
                    let _ = subscription.subscriber.unsubscribe().await;
                }
            }
        }
        // The buckets and this node's own connections' subscription.
        self.metrics
            .subscriptions
            .store(self.held.len() as u64 + 1, Ordering::Relaxed);
    }

    /// Reconciles every bucket of every app this node serves or held subscriptions for
    /// (O(apps × buckets) map reads: at start, after a lost hint, on reload).
    pub(super) async fn reconcile_all(&mut self) {
        let mut slots: Vec<usize> = self.registry.apps.iter().map(|app| app.index).collect();
        slots.extend(self.held.iter().map(|(slot, _)| *slot));
        slots.sort_unstable();
        slots.dedup();
        for slot in slots {
            for bucket in 0..BUCKETS {
                self.reconcile(slot, bucket).await;
            }
        }
    }
}
