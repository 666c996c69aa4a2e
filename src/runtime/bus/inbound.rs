//! What the bus reads from NATS: publications from other nodes, hellos, admin calls.
//!
//! Responsibility: validate every message from another node like input from a client
//! (`cluster::validate`; what fails is counted by reason and dropped), hand publications
//! to the local workers that have subscribers (once per worker, woken once per batch), and
//! route hellos and admin calls to their handlers. Must not: block on a full worker
//! mailbox (a publication that does not fit is dropped and counted).

use super::Bus;
use crate::broker::interest::{worker_bit, workers_in, LOCAL_WORKERS};
use crate::broker::mesh::{Frame, MeshMessage};
use crate::broker::session::{node_of, private_connection_id, worker_of};
use crate::cluster::validate::{
    check_admin, check_hello, check_publication, max_bus_frame_bytes, parse_control, BusInputError,
};
use crate::cluster::wire::{decode_publication, Admin, Hello};
use crate::metrics::WorkerMetrics;
use async_nats::Message;
use std::sync::Arc;

impl Bus {
    /// Counts and logs (debug) a message from the bus that failed validation.
    pub(super) fn invalid(&self, subject: &str, error: BusInputError) {
        WorkerMetrics::add(&self.metrics.invalid_received[error.index()], 1);
        tracing::debug!(subject = %crate::log_value::Escaped(subject), reason = error.label(), "invalid bus message dropped");
    }

    /// Parses and checks a JSON control message; counts and drops what fails.
    pub(super) fn parse<T: serde::de::DeserializeOwned>(
        &self,
        message: &Message,
        check: impl Fn(&T) -> Result<(), BusInputError>,
    ) -> Option<T> {
        match parse_control::<T>(&message.payload).and_then(|value| check(&value).map(|()| value)) {
            Ok(value) => Some(value),
            Err(error) => {
                self.invalid(&message.subject, error);
                None
            }
        }
    }

    /// A publication from NATS; `via_bucket` when a bucket subscription delivered it.
    pub(super) fn on_publication(&mut self, message: &Message, via_bucket: bool) {
        // One addressed to this node's connections also matches a bucket this node holds
        // (when it has subscribers of that `priv/<id>` too): the own-connections
        // subscription delivers it, this copy is skipped.
        if via_bucket && self.subjects.addresses_this_node(&message.subject) {
            return;
        }
        let Some(publication) = decode_publication(&message.payload) else {
            self.invalid(&message.subject, BusInputError::Malformed);
            return;
        };
        if publication.origin == self.name {
            return;
        }
        let Some(app) = self.registry.get(&publication.app) else {
            self.invalid(&message.subject, BusInputError::BadField);
            return;
        };
        let max_frame_bytes = max_bus_frame_bytes(
            app.limits.max_message_bytes as usize,
            self.registry.settings.max_http_body_bytes,
        );
        if let Err(error) = check_publication(&publication, max_frame_bytes, &mut self.inflater) {
            self.invalid(&message.subject, error);
            return;
        }
        WorkerMetrics::add(&self.metrics.publications_received, 1);
        let mut mask = app.interest.workers(&publication.topic) & LOCAL_WORKERS;
        if let Some(id) = private_connection_id(&publication.topic) {
            if node_of(id) == self.subjects.node && worker_of(id) < self.workers.len() {
                mask |= worker_bit(worker_of(id));
            }
        }
        if mask == 0 {
            WorkerMetrics::add(&self.metrics.publications_unwanted, 1);
            return;
        }
        let topic: Arc<str> = publication.topic.into();
        let frame = Frame {
            plain: publication.plain,
            deflated: publication.deflated,
        };
        for worker in workers_in(mask) {
            let Some(sender) = self.workers.get(worker) else {
                continue;
            };
            let message = MeshMessage::Publish {
                app: app.index,
                topic: topic.clone(),
                frame: frame.clone(),
            };
            match sender.try_send(message) {
                Ok(()) => self.touched |= worker_bit(worker),
                Err(_) => WorkerMetrics::add(&self.metrics.dropped_mailbox_full, 1),
            }
        }
    }

    pub(super) fn wake_workers(&mut self) {
        for worker in workers_in(std::mem::take(&mut self.touched)) {
            self.workers[worker].notify();
        }
    }

    /// Admin calls every node acts on.
    pub(super) fn on_admin_message(&mut self, message: &Message) {
        if let Some(admin) = self.parse::<Admin>(message, check_admin) {
            self.on_admin(admin);
        }
    }

    /// Another node's hello (or an answer to this node's): a process announcing this
    /// node's number is a misconfiguration that misroutes `priv/<id>` and admin calls, so
    /// it is logged as an error on both sides and counted.
    pub(super) async fn on_hello(&mut self, message: &Message) {
        let Some(hello) = self.parse::<Hello>(message, check_hello) else {
            return;
        };
        if hello.number != self.subjects.node {
            if !hello.answer {
                tracing::info!(node = %hello.node, number = hello.number, "node joined the cluster");
            }
            return;
        }
        if hello.instance == self.instance {
            return;
        }
        WorkerMetrics::add(&self.metrics.node_number_conflicts, 1);
        tracing::error!(
            node = %self.name,
            other = %hello.node,
            number = hello.number,
            "another node uses this nodeNumber: connection ids, priv/<id> delivery and admin calls are ambiguous between them; give every node its own server.cluster.nodeNumber"
        );
        if !hello.answer {
            self.publish(self.subjects.hello(), self.hello(true)).await;
        }
    }
}
