//! Subscriptions: the `secure/` and `priv/` rules, the per-connection limit, the local
//! topic tables and the interest map other workers and nodes route by.
//!
//! Invariant: a session's `subscriptions` list and the topic tables agree (a topic is in
//! the list exactly when the session is in the topic's table), except `priv/<own id>`,
//! which is routed by id and only muted or unmuted; interest is added with a topic's first
//! local subscriber and removed with its last.

use super::Worker;
use crate::broker::apps::App;
use crate::broker::bus_link::BusCommand;
use crate::broker::session::Session;
use crate::error::CloseKind;
use std::rc::Rc;
use std::sync::Arc;

impl Worker {
    /// Subscribes with the `secure/` and `priv/` rules and the subscription limit.
    pub fn subscribe(&self, session: &Rc<Session>, topic: &str) {
        if session.is_subscribed(topic) {
            return;
        }
        if topic.starts_with("secure/") && !session.permissions().can_subscribe(topic) {
            self.close(session, CloseKind::SecureSubscribeForbidden);
            return;
        }
        if topic.starts_with("priv/")
            && !session.owns_private_topic(topic)
            && !session.permissions().can_subscribe(topic)
        {
            self.close(session, CloseKind::PrivateSubscribeForbidden);
            return;
        }
        let max = session.app().limits.max_subscriptions_per_connection;
        if max != 0 && session.subscription_count() as u64 >= max {
            self.close(session, CloseKind::TooManySubscriptions);
            return;
        }
        self.add_subscription(session, topic);
    }

    pub(super) fn add_subscription(&self, session: &Rc<Session>, topic: &str) {
        if session.is_own_topic(topic) {
            session.own_topic_muted.set(false);
            return;
        }
        if session.is_subscribed(topic) {
            return;
        }
        // One allocation of the name for the table, this list and the interest map.
        let (name, first) = self.tables.borrow_mut()[session.app().index].subscribe_shared(
            topic,
            session.id,
            session.clone(),
        );
        session.subscriptions.borrow_mut().push(name.clone());
        if first {
            self.interest_add(&session.app(), &name);
        }
    }

    /// Removes one subscription; a no-op when not subscribed.
    pub fn remove_subscription(&self, session: &Session, topic: &str) {
        if session.is_own_topic(topic) {
            session.own_topic_muted.set(true);
            return;
        }
        let mut subscriptions = session.subscriptions.borrow_mut();
        let Some(position) = subscriptions.iter().position(|t| &**t == topic) else {
            return;
        };
        subscriptions.swap_remove(position);
        drop(subscriptions);
        let last = self.tables.borrow_mut()[session.app().index].unsubscribe(topic, session.id);
        if last {
            self.interest_remove(&session.app(), topic);
        }
    }

    /// Records that this worker has subscribers of `topic` (its table's shared name);
    /// tells the bus when the node as a whole started holding a topic of its bucket.
    fn interest_add(&self, app: &App, topic: &Arc<str>) {
        if let Some(bucket) = app.interest.add(topic, self.index) {
            self.bucket_changed(app, bucket);
        }
    }

    /// Records that this worker has no subscribers of `topic` left; tells the bus when
    /// the node as a whole holds no topic of its bucket any more.
    pub(super) fn interest_remove(&self, app: &App, topic: &str) {
        if let Some(bucket) = app.interest.remove(topic, self.index) {
            self.bucket_changed(app, bucket);
        }
    }

    fn bucket_changed(&self, app: &App, bucket: u16) {
        if let Some(bus) = self.outbox.bus() {
            bus.send(BusCommand::BucketChanged {
                app: app.index,
                bucket,
            });
        }
    }
}
