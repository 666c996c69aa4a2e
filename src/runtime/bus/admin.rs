//! Admin calls across nodes: terminating a connection or an app, removing subscriptions.
//!
//! Responsibility: carry a worker's connection-addressed call (`DELETE
//! /api/connections/…`) to the node holding the connection and its answer back; publish
//! app-wide calls to every node; hand calls from other nodes to the local workers. Must
//! not: wait on a worker or another node past `ADMIN_REPLY_TIMEOUT_MS` (an unanswered call
//! becomes the HTTP caller's 504), or wait by polling: a worker's answer wakes the task.

use super::{json, Bus};
use crate::broker::apps::App;
use crate::broker::interest::worker_bit;
use crate::broker::mesh::MeshMessage;
use crate::broker::session::{node_of, parse_connection_id, worker_of};
use crate::cluster::validate::check_terminate;
use crate::cluster::wire::{Admin, TerminateRequest};
use crate::cluster::ADMIN_REPLY_TIMEOUT_MS;
use crate::topic::pattern::Pattern;
use async_nats::Message;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Most patterns honoured in an unsubscribe from another node (PROTOCOL.md §6's limit).
const MAX_PATTERNS: usize = 50;

impl Bus {
    /// Asks the node holding connection `id` (the node its id names) to close it; `reply`
    /// learns whether it existed (dropped unanswered when that node does not answer in
    /// time; "no responders", a node that is not running, answers `false`).
    pub(super) fn forward_terminate(&self, app: usize, id: u64, reply: flume::Sender<bool>) {
        let request = json(&TerminateRequest {
            app: self.app_id(app),
            connection: crate::broker::session::format_connection_id(id),
        });
        let subject = self.subjects.terminate(node_of(id));
        let client = self.client.clone();
        tokio::spawn(async move {
            let answer = tokio::time::timeout(
                Duration::from_millis(ADMIN_REPLY_TIMEOUT_MS),
                client.request(subject, request),
            )
            .await;
            match answer {
                Ok(Ok(message)) => {
                    let _ = reply.send(&message.payload[..] == b"true");
                }
                Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                    let _ = reply.send(false);
                }
                // No answer in time: `reply` is dropped and the caller gets 504.
                _ => {}
            }
        });
    }

    /// Publishes an app-wide admin call (terminate the app, unsubscribe a subject) to
    /// every other node.
    pub(super) async fn broadcast_admin(&self, admin: Admin) {
        self.publish(self.subjects.admin(), json(&admin)).await;
    }

    /// Sends `message` to every worker (admin calls from other nodes).
    pub(super) fn send_to_every_worker(&mut self, make: impl Fn() -> MeshMessage) {
        for worker in 0..self.workers.len() {
            if self.workers[worker].try_send(make()).is_ok() {
                self.touched |= worker_bit(worker);
            } else {
                tracing::warn!(
                    worker,
                    "mailbox full: a cluster admin call was not delivered"
                );
            }
        }
        self.wake_workers();
    }

    pub(super) fn on_admin(&mut self, admin: Admin) {
        match admin {
            Admin::TerminateApp { origin, app } => {
                let Some(app) = self.app(&origin, &app) else {
                    return;
                };
                self.send_to_every_worker(|| MeshMessage::Terminate {
                    app,
                    connection: None,
                    reply: None,
                });
            }
            Admin::Unsubscribe {
                origin,
                app,
                subject,
                patterns,
            } => {
                let Some(app) = self.app(&origin, &app) else {
                    return;
                };
                let subject: Arc<str> = subject.into();
                let patterns: Arc<[Pattern]> = patterns
                    .iter()
                    .take(MAX_PATTERNS)
                    .map(|p| Pattern::compile(p))
                    .collect();
                self.send_to_every_worker(|| MeshMessage::Unsubscribe {
                    app,
                    subject: subject.clone(),
                    patterns: patterns.clone(),
                });
            }
        }
    }

    /// The index of `app` for an admin call from another node.
    pub(super) fn app(&self, origin: &str, app: &str) -> Option<usize> {
        if origin == self.name {
            return None;
        }
        self.registry.get(app).map(|app| app.index)
    }

    /// A connection-addressed call from another node: answered `true` once the worker
    /// holding the connection closed it, `false` when this node does not hold it.
    pub(super) fn on_terminate_request(&mut self, message: &Message) {
        let (Some(request), Some(reply)) = (
            self.parse::<TerminateRequest>(message, check_terminate),
            message.reply.clone(),
        ) else {
            return;
        };
        let found = self.terminate_here(&request);
        let client = self.client.clone();
        tokio::spawn(async move {
            let found = match found {
                Some(answer) => wait_for_worker(answer).await,
                None => false,
            };
            let answer = if found { "true" } else { "false" };
            let _ = client
                .publish(reply, Bytes::from_static(answer.as_bytes()))
                .await;
        });
    }

    /// Hands a terminate call to the worker holding the connection, if this node has it.
    pub(super) fn terminate_here(
        &mut self,
        request: &TerminateRequest,
    ) -> Option<flume::Receiver<bool>> {
        let app: &Arc<App> = self.registry.get(&request.app)?;
        let id = parse_connection_id(&request.connection)?;
        if node_of(id) != self.subjects.node {
            return None;
        }
        // The worker answers whether it holds the connection.
        let worker = worker_of(id);
        let (reply, answer) = flume::bounded(1);
        let message = MeshMessage::Terminate {
            app: app.index,
            connection: Some(id),
            reply: Some(reply),
        };
        self.workers.get(worker)?.try_send(message).ok()?;
        self.touched |= worker_bit(worker);
        self.wake_workers();
        Some(answer)
    }
}

/// Waits for a worker's answer (woken by it, not polled), up to the admin timeout; a
/// worker that dropped the call unanswered counts as "not found".
async fn wait_for_worker(answer: flume::Receiver<bool>) -> bool {
    let timeout = Duration::from_millis(ADMIN_REPLY_TIMEOUT_MS);
    matches!(
        tokio::time::timeout(timeout, answer.recv_async()).await,
        Ok(Ok(true))
    )
}
