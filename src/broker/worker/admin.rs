//! Admin calls and messages from other workers: terminate connections, unsubscribe a
//! subject, switch configuration generations.
//!
//! Responsibility: an admin call acts on this worker's sessions and is relayed once to
//! every other worker (and to the bus in cluster mode); [`Worker::on_mesh`] applies what
//! other workers relay. Sessions of an app removed by a reload close with 4000.

use super::{Found, Worker};
use crate::broker::apps::Registry;
use crate::broker::bus_link::BusCommand;
use crate::broker::mesh::MeshMessage;
use crate::broker::session::{node_of, worker_of, Session};
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use crate::topic::pattern::Pattern;
use crate::topic::table::TopicTable;
use std::rc::Rc;
use std::sync::Arc;

impl Worker {
    /// Switches to the configuration generation `next` (sent by the control thread to every
    /// worker): sessions of kept apps continue under the new settings (keys, limits, flags);
    /// sessions of removed apps are closed with 4000.
    pub fn reload(&self, next: Arc<Registry>) {
        {
            let mut tables = self.tables.borrow_mut();
            while tables.len() < next.slot_count() {
                tables.push(TopicTable::default());
            }
        }
        let mut removed = Vec::new();
        for session in self.sessions() {
            let current = session.app().id.clone();
            match next.get(&current) {
                Some(app) => *session.app.borrow_mut() = app.clone(),
                None => removed.push(session),
            }
        }
        *self.registry.borrow_mut() = next;
        for session in &removed {
            self.close(session, CloseKind::AppRemoved);
        }
        self.run_pending_closes();
    }

    /// Handles a message from another worker.
    pub fn on_mesh(&self, message: MeshMessage) -> bool {
        WorkerMetrics::add(&self.metrics().mesh_messages_in, 1);
        match message {
            MeshMessage::Publish { app, topic, frame } => self.deliver_local(app, &topic, &frame),
            MeshMessage::Terminate {
                app,
                connection,
                reply,
            } => {
                let found = self.terminate_local(app, connection);
                if let Some(reply) = reply {
                    // The asker may have given up waiting; nothing to do then.
                    let _ = reply.try_send(found);
                }
            }
            MeshMessage::Unsubscribe {
                app,
                subject,
                patterns,
            } => self.unsubscribe_subject_local(app, &subject, &patterns),
            MeshMessage::Reload { next, applied } => {
                self.reload(next);
                let _ = applied.try_send(());
            }
            // The runtime closes sessions in batches (see `close_batch`).
            MeshMessage::Shutdown => return false,
        }
        self.run_pending_closes();
        true
    }

    /// Admin: close every connection of an app, on every worker, with 4000.
    pub fn terminate_app(&self, app: usize) {
        self.terminate_local(app, None);
        self.broadcast(|| MeshMessage::Terminate {
            app,
            connection: None,
            reply: None,
        });
        if let Some(bus) = self.outbox.bus() {
            bus.send(BusCommand::TerminateApp { app });
        }
    }

    /// Admin: close one connection, wherever it lives (any node), with 4000.
    pub fn terminate_connection(&self, app: usize, id: u64) -> Found {
        let owner = worker_of(id);
        if let Some(bus) = self.outbox.bus() {
            // The id names the node holding the connection.
            if node_of(id) != bus.node() {
                let (reply, answer) = flume::bounded(1);
                bus.send(BusCommand::Terminate { app, id, reply });
                return Found::Later(answer);
            }
        }
        if owner == self.index {
            return if self.terminate_local(app, Some(id)) {
                Found::Yes
            } else {
                Found::No
            };
        }
        if owner >= self.outbox.workers() {
            return Found::No;
        }
        let (reply, answer) = flume::bounded(1);
        self.outbox.push(
            owner,
            MeshMessage::Terminate {
                app,
                connection: Some(id),
                reply: Some(reply),
            },
        );
        Found::Later(answer)
    }

    /// Closes the matching sessions of this worker; whether any was found.
    fn terminate_local(&self, app: usize, connection: Option<u64>) -> bool {
        let targets: Vec<Rc<Session>> = match connection {
            Some(id) => self
                .sessions
                .borrow()
                .get(&id)
                .cloned()
                .into_iter()
                .collect(),
            None => self.sessions(),
        };
        let mut found = false;
        for session in targets.iter().filter(|s| s.app().index == app) {
            found = true;
            self.close(session, CloseKind::AdminTerminated);
        }
        self.run_pending_closes();
        found
    }

    /// Admin: remove the subscriptions matching `patterns` of every connection of `subject`.
    pub fn unsubscribe_subject(&self, app: usize, subject: &str, patterns: Arc<[Pattern]>) {
        self.unsubscribe_subject_local(app, subject, &patterns);
        let subject: Arc<str> = subject.into();
        self.broadcast(|| MeshMessage::Unsubscribe {
            app,
            subject: subject.clone(),
            patterns: patterns.clone(),
        });
        if let Some(bus) = self.outbox.bus() {
            bus.send(BusCommand::Unsubscribe {
                app,
                subject,
                patterns,
            });
        }
    }

    fn unsubscribe_subject_local(&self, app: usize, subject: &str, patterns: &[Pattern]) {
        for session in self.sessions() {
            if session.app().index != app || &*session.subject != subject {
                continue;
            }
            let own = format!("priv/{}", session.id_text());
            let mut topics: Vec<std::sync::Arc<str>> = session
                .subscriptions
                .borrow()
                .iter()
                .filter(|topic| patterns.iter().any(|p| p.matches(topic)))
                .cloned()
                .collect();
            if patterns.iter().any(|p| p.matches(&own)) {
                topics.push(own.into());
            }
            for topic in topics {
                self.remove_subscription(&session, &topic);
            }
        }
    }

    fn broadcast(&self, make: impl Fn() -> MeshMessage) {
        for to in 0..self.outbox.workers() {
            if to != self.index {
                self.outbox.push(to, make());
            }
        }
    }
}
