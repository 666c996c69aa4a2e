//! What the bus reads from NATS: publications from other nodes, presence, admin calls.
//!
//! Responsibility: validate every message from another node like input from a client
//! (`cluster::validate`; what fails is counted by reason and dropped), hand publications
//! to the local workers that have subscribers (once per worker, woken once per batch), and
//! route presence, snapshot and admin messages to their handlers. Must not: block on a
//! full worker mailbox (a publication that does not fit is dropped and counted).

use super::Bus;
use crate::broker::interest::{worker_bit, workers_in, LOCAL_WORKERS};
use crate::broker::mesh::{Frame, MeshMessage};
use crate::cluster::validate::{
    check_admin, check_presence, check_publication, max_bus_frame_bytes, parse_control,
    BusInputError,
};
use crate::cluster::wire::{decode_publication, Admin, Presence};
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

    pub(super) fn on_publication(&mut self, message: &Message) {
        let Some(publication) = decode_publication(&message.payload) else {
            self.invalid(&message.subject, BusInputError::Malformed);
            return;
        };
        if publication.origin == self.subjects.node {
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
        let mask = app.interest.workers(&publication.topic) & LOCAL_WORKERS;
        if mask == 0 {
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

    pub(super) async fn on_all(&mut self, message: &Message) {
        let kind = message.subject.rsplit('.').next().unwrap_or("");
        match kind {
            "heartbeat" | "hello" | "bye" => {
                let Some(presence) = self.parse::<Presence>(message, check_presence) else {
                    return;
                };
                if presence.node == self.subjects.node {
                    if presence.instance != self.instance {
                        tracing::warn!(node = %presence.node, "another process uses this node name");
                    }
                    return;
                }
                if kind == "bye" {
                    tracing::info!(node = %presence.node, "node left the cluster");
                    let outcome = self.remote.on_bye(&presence.node, presence.instance);
                    self.apply(outcome).await;
                    return;
                }
                if kind == "hello" {
                    tracing::info!(node = %presence.node, "node (re)joined the cluster");
                    if let Some(reply) = &message.reply {
                        self.send_snapshot(reply.to_string()).await;
                    }
                }
                let now = self.now_ms();
                let outcome =
                    self.remote
                        .on_presence(&presence.node, presence.instance, presence.seq, now);
                self.apply(outcome).await;
            }
            "admin" => {
                let Some(admin) = self.parse::<Admin>(message, check_admin) else {
                    return;
                };
                self.on_admin(admin);
            }
            _ => {}
        }
    }

    pub(super) async fn on_mine(&mut self, message: &Message) {
        match message.subject.rsplit('.').next().unwrap_or("") {
            "snapshot" => {
                if let Some(reply) = &message.reply {
                    self.send_snapshot(reply.to_string()).await;
                }
            }
            // A NATS status message (e.g. "no responders" to this node's hello when it is
            // alone) is not input from another node.
            "inbox" if message.status.is_none() => self.on_snapshot_part(message).await,
            "terminate" => self.on_terminate_request(message),
            _ => {}
        }
    }
}
