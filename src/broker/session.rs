//! One WebSocket connection's broker-side state.
//!
//! Responsibility: what the broker knows about a connection — identity, compiled
//! permissions, subscriptions, the bounded outbound queue, and the inbound framing state.
//! It must not own the socket: the runtime keeps that and drains [`Session::outbound`]
//! (an [`OutboundQueue`], which owns the queue's byte accounting).
//!
//! Memory: an idle session holds no read buffer (`partial` and the frame reader's assembly
//! buffer are empty unless a frame is split across reads) and an empty outbound queue.
//! Lives as long as the runtime's connection task holds its `Rc`; topic tables hold clones
//! until the session is closed, which removes every subscription.

use super::apps::{Admission, App};
use super::outbound::OutboundQueue;
pub use super::outbound::QueuedFrame;
use crate::auth::PermissionSet;
use crate::error::CloseKind;
use crate::protocol::frame::FrameReader;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// A token's permissions, compiled once and shared by every session holding the same list.
pub struct Grants {
    pub permissions: PermissionSet,
    /// The permission strings as a JSON array (for the client descriptor of §5.2).
    pub permissions_json: Box<[u8]>,
}

/// Broker-side state of one open WebSocket connection.
pub struct Session {
    /// Numeric connection id: 40 random bits, then the worker index in the low byte.
    pub id: u64,
    /// The app's current compiled generation (swapped by a configuration reload; read
    /// through [`Session::app`]).
    pub app: RefCell<Arc<App>>,
    /// `sub` claim, or the connection id when the token had none.
    pub subject: Box<str>,
    /// What the app's connection limits counted for it (released exactly so at close).
    pub admission: Admission,
    /// Compiled permissions and their JSON, shared by every session with the same token
    /// permission list (see `Worker::grants_for`).
    pub grants: Rc<Grants>,
    /// permessage-deflate was negotiated: compressed frames are sent in their deflated form.
    pub deflate: bool,
    /// Topics subscribed, except `priv/<own id>`, which is routed by id (no table entry).
    pub subscriptions: RefCell<Vec<Arc<str>>>,
    /// The session unsubscribed from its own `priv/<id>` topic.
    pub own_topic_muted: Cell<bool>,
    /// Frames waiting to be written, with their unwritten byte count (bounded by
    /// `maxPendingBytes`) and the partly written front: the queue keeps them consistent.
    /// Its buffer is released by the worker's tick once the queue is found empty.
    pub outbound: RefCell<OutboundQueue>,
    /// Listed in the worker's dirty list (to be flushed at the end of the batch).
    pub dirty: Cell<bool>,
    /// Set once the session is closing; further frames are not queued.
    pub closing: Cell<Option<CloseKind>>,
    /// The status code of the client's close frame (0: none), echoed in our close frame.
    pub peer_close_code: Cell<u16>,
    /// Worker tick at which closing began (the runtime drops the socket after a grace).
    pub closing_since_tick: Cell<u64>,
    /// A writer task is waiting for the socket to become writable.
    pub writer_parked: Cell<bool>,
    /// Inbound frame decoder state.
    pub frames: RefCell<FrameReader>,
    /// Unconsumed bytes of a frame split across reads (empty when idle).
    pub partial: RefCell<Vec<u8>>,
    /// Worker tick of the last bytes received.
    pub last_seen_tick: Cell<u64>,
    /// `maxMessagesPerSecond` token bucket: thousandths of a message available, and the
    /// worker clock (ms) at the last refill.
    pub rate_millitokens: Cell<u64>,
    pub rate_refilled_ms: Cell<u64>,
    /// The runtime's key for this connection's socket.
    pub slot: Cell<usize>,
}

impl Session {
    /// The app this session belongs to, as currently configured.
    #[inline]
    pub fn app(&self) -> std::cell::Ref<'_, Arc<App>> {
        self.app.borrow()
    }

    /// The connection id as 12 lowercase hex characters (formatted on demand: an idle
    /// session does not keep the text).
    pub fn id_text(&self) -> ConnectionIdText {
        ConnectionIdText::new(self.id)
    }

    /// Whether `topic` is one of this connection's own private topics.
    pub fn owns_private_topic(&self, topic: &str) -> bool {
        match topic.strip_prefix("priv/") {
            Some(rest) => rest == self.id_text().as_str() || rest == &*self.subject,
            None => false,
        }
    }

    /// Whether `topic` is `priv/<this connection's id>`.
    pub fn is_own_topic(&self, topic: &str) -> bool {
        topic.strip_prefix("priv/") == Some(self.id_text().as_str())
    }

    pub fn permissions(&self) -> &PermissionSet {
        &self.grants.permissions
    }

    pub fn is_subscribed(&self, topic: &str) -> bool {
        if self.is_own_topic(topic) {
            return !self.own_topic_muted.get();
        }
        self.subscriptions.borrow().iter().any(|t| &**t == topic)
    }

    /// Subscriptions held, implicit ones included.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.borrow().len() + usize::from(!self.own_topic_muted.get())
    }
}

/// The connection id of a `priv/<12 hex>` topic, if it is one.
pub fn private_connection_id(topic: &str) -> Option<u64> {
    topic.strip_prefix("priv/").and_then(parse_connection_id)
}

/// Formats a numeric connection id as 12 lowercase hex characters.
pub fn format_connection_id(id: u64) -> String {
    ConnectionIdText::new(id).as_str().to_string()
}

/// A connection id as 12 lowercase hex characters, on the stack.
#[derive(Clone, Copy)]
pub struct ConnectionIdText([u8; 12]);

impl ConnectionIdText {
    pub fn new(id: u64) -> ConnectionIdText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 12];
        for (index, byte) in text.iter_mut().enumerate() {
            let shift = 4 * (11 - index);
            *byte = HEX[((id >> shift) & 0xf) as usize];
        }
        ConnectionIdText(text)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for ConnectionIdText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses 12 lowercase hex characters back into a numeric id.
pub fn parse_connection_id(text: &str) -> Option<u64> {
    if text.len() != 12
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The worker that owns connection `id`.
pub fn worker_of(id: u64) -> usize {
    (id & 0xff) as usize
}

/// Bits of a connection id that carry the node number (cluster mode): the top 12 of the
/// 48, so ids stay 12 hex characters. Layout: `node (12) | random (28) | worker (8)`.
pub const NODE_NUMBER_BITS: u32 = 12;
use crate::config::MAX_NODE_NUMBER;
const _: () = assert!(MAX_NODE_NUMBER as u64 == (1 << NODE_NUMBER_BITS) - 1);
const NODE_SHIFT: u32 = 48 - NODE_NUMBER_BITS;
const RANDOM_MASK: u64 = (1 << (NODE_SHIFT - 8)) - 1;

/// The node number carried by connection `id` (meaningful in cluster mode, where every
/// node writes its own number there; a single node fills those bits at random).
pub fn node_of(id: u64) -> u16 {
    ((id >> NODE_SHIFT) & u64::from(MAX_NODE_NUMBER)) as u16
}

/// A connection id of `node`'s `worker` (`random`'s low 28 bits are used).
pub fn compose_connection_id(node: u16, random: u64, worker: usize) -> u64 {
    (u64::from(node & MAX_NODE_NUMBER) << NODE_SHIFT)
        | ((random & RANDOM_MASK) << 8)
        | (worker as u64 & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle session must not grow: 280 bytes before the outbound queue became its own
    /// type (frames, pending bytes and the written part of the front in one `RefCell`).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_session_stays_small() {
        assert!(
            std::mem::size_of::<Session>() <= 280,
            "{}",
            std::mem::size_of::<Session>()
        );
    }

    #[test]
    fn ids_round_trip_and_carry_the_worker() {
        let id = (0xabcdef1234u64 << 8) | 3;
        let text = format_connection_id(id);
        assert_eq!(text.len(), 12);
        assert!(!text.contains('.'));
        assert_eq!(parse_connection_id(&text), Some(id));
        assert_eq!(worker_of(id), 3);
        let clustered = compose_connection_id(4095, u64::MAX, 62);
        assert_eq!((node_of(clustered), worker_of(clustered)), (4095, 62));
        assert_eq!(clustered, 0xffff_ffff_ff3e, "48 bits: 12 hex characters");
        let id = compose_connection_id(7, 0x123_4567, 2);
        assert_eq!(format_connection_id(id), "007123456702");
        assert_eq!((node_of(id), worker_of(id)), (7, 2));
        assert_eq!(parse_connection_id("ABCDEF123456"), None);
        assert_eq!(parse_connection_id("abc"), None);
        for id in [0, 1, 0xff, 0xffff_ffff_ffff, u64::MAX, id] {
            assert_eq!(
                ConnectionIdText::new(id).as_str(),
                format!("{:012x}", id & 0xffff_ffff_ffff)
            );
        }
    }
}
