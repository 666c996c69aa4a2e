//! One complete client message, as the runtime's reader hands it over.
//!
//! Responsibility: data messages (inflated when compressed) become commands — subscribe,
//! unsubscribe, publish, inbound message — under the connection's rate limit; pings are
//! answered, a close frame starts the close handshake, an unusable message closes with its
//! typed reason. It must not publish by another path than [`Worker::publish`].

use super::{Verdict, Worker, INBOUND_TOPIC};
use crate::broker::apps::AppCounters;
use crate::broker::session::Session;
use crate::error::CloseKind;
use crate::metrics::WorkerMetrics;
use crate::protocol::command::{parse_command, Command, Publication};
use crate::protocol::envelope;
use crate::protocol::frame::{encode_frame, Incoming, OpCode};
use bytes::Bytes;
use std::rc::Rc;

impl Worker {
    /// Handles one complete inbound WebSocket message.
    pub fn on_message(&self, session: &Rc<Session>, message: Incoming<'_>) -> Verdict {
        if session.closing.get().is_some() {
            return Verdict::Closing;
        }
        match message {
            Incoming::Text(bytes) => self.on_data(session, true, bytes),
            Incoming::Binary(bytes) => self.on_data(session, false, bytes),
            Incoming::Compressed { text, data } => {
                let max = session.app().limits.max_message_bytes as usize;
                let mut inflater = self.inflater.borrow_mut();
                match inflater.inflate(data, max) {
                    Err(error) => self.close(session, CloseKind::from(&error)),
                    Ok(bytes) if text && std::str::from_utf8(bytes).is_err() => {
                        self.close(session, CloseKind::InvalidUtf8)
                    }
                    // Nothing below touches the inflater, whose buffer `bytes` borrows.
                    Ok(bytes) => self.on_data(session, text, bytes),
                }
            }
            Incoming::Ping(payload) => self.enqueue(session, envelope::pong_frame(payload).into()),
            Incoming::Pong => {}
            Incoming::Close { code, .. } => {
                session.peer_close_code.set(code.unwrap_or(0));
                self.close(session, CloseKind::ClientClosed);
            }
        }
        self.run_pending_closes();
        if session.closing.get().is_some() {
            Verdict::Closing
        } else {
            Verdict::Continue
        }
    }

    /// One complete data message (inflated if it was compressed): a command — or, in the
    /// test-only echo mode, a message sent straight back.
    fn on_data(&self, session: &Rc<Session>, text: bool, bytes: &[u8]) {
        if session.app().echo {
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            let mut frame = Vec::with_capacity(bytes.len() + 10);
            encode_frame(opcode, bytes, &mut frame);
            self.enqueue(session, Bytes::from(frame).into());
            return;
        }
        WorkerMetrics::add(&self.metrics().messages_in, 1);
        let slot = session.app().index;
        self.app_counters(slot, |c| AppCounters::add(&c.messages_in, 1));
        if !self.within_rate(session) {
            self.close(session, CloseKind::RateLimited);
            return;
        }
        match parse_command(bytes) {
            Ok(command) => self.on_command(session, command),
            Err(error) => self.close(session, CloseKind::from(&error)),
        }
    }

    fn within_rate(&self, session: &Session) -> bool {
        let max = session.app().limits.max_messages_per_second;
        if max == 0 {
            return true;
        }
        // Token bucket: capacity and refill are both `max` per second (one burst of `max`,
        // then `max` per second sustained), counted in thousandths of a message.
        let capacity = max.saturating_mul(1000);
        let now = self.now_ms.get();
        let elapsed = now.saturating_sub(session.rate_refilled_ms.get());
        session.rate_refilled_ms.set(now);
        let tokens = session
            .rate_millitokens
            .get()
            .saturating_add(elapsed.saturating_mul(max))
            .min(capacity);
        if tokens < 1000 {
            session.rate_millitokens.set(tokens);
            return false;
        }
        session.rate_millitokens.set(tokens - 1000);
        true
    }

    fn on_command(&self, session: &Rc<Session>, command: Command<'_>) {
        match command {
            Command::Subscribe { topic } => self.subscribe(session, &topic),
            Command::Unsubscribe { topic } => self.remove_subscription(session, &topic),
            Command::Publish(publication) => {
                let Some(topic) = publication.topic.as_deref() else {
                    self.close(session, CloseKind::InvalidTopic);
                    return;
                };
                if !session.permissions().can_publish(topic) {
                    self.close(session, CloseKind::PublishForbidden);
                    return;
                }
                self.publish_from_client(session, topic, &publication);
            }
            Command::Message(publication) => {
                if session.app().inbound_enabled {
                    self.publish_from_client(session, INBOUND_TOPIC, &publication);
                }
            }
        }
    }

    fn publish_from_client(
        &self,
        session: &Rc<Session>,
        topic: &str,
        publication: &Publication<'_>,
    ) {
        let generated;
        let id: &[u8] = match publication.id {
            Some(id) => id,
            None => {
                generated = format!("\"{}\"", envelope::generate_message_id());
                generated.as_bytes()
            }
        };
        let plain = self.client_frame(session, |client| {
            envelope::publication_frame(
                topic,
                &publication.message_type,
                client,
                publication.payload,
                id,
                publication.compress,
            )
        });
        let frame = self.publication(plain, publication.compress);
        self.publish(&session.app(), topic, frame);
        if session.app().ack_enabled {
            self.enqueue(session, envelope::ack_frame(id).into());
        }
    }
}
