//! One WebSocket connection's broker-side state.
//!
//! Responsibility: what the broker knows about a connection — identity, compiled
//! permissions, subscriptions, the bounded outbound queue, and the inbound framing state.
//! It must not own the socket: the runtime keeps that and drains [`Session::outbound`].
//!
//! Memory: an idle session holds no read buffer (`partial` and the frame reader's assembly
//! buffer are empty unless a frame is split across reads) and an empty outbound queue.
//! Lives as long as the runtime's connection task holds its `Rc`; topic tables hold clones
//! until the session is closed, which removes every subscription.

use super::apps::{Admission, App};
use super::frame_file::FileSpan;
use crate::auth::PermissionSet;
use crate::error::CloseKind;
use crate::protocol::frame::FrameReader;
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

/// A token's permissions, compiled once and shared by every session holding the same list.
pub struct Grants {
    pub permissions: PermissionSet,
    /// The permission strings as a JSON array (for the client descriptor of §5.2).
    pub permissions_json: Box<[u8]>,
}

/// One encoded frame in a session's outbound queue. Every local subscriber of a fan-out
/// holds the same one through a non-atomic count: a publication costs one atomic `Bytes`
/// reference per worker, not one per subscriber (measured: `Bytes` clone and drop were
/// 7.6 % of a saturated fan-out core), and a queue slot is one pointer, not four. A frame
/// of a large fan-out is also in the worker's [`FrameFile`], so the writer can send runs of
/// them without copying.
#[derive(Clone)]
pub struct QueuedFrame(Rc<Queued>);

struct Queued {
    bytes: Bytes,
    span: Option<FileSpan>,
}

impl QueuedFrame {
    /// A frame, and where it also is in the worker's frame file (if it is).
    pub fn new(bytes: Bytes, span: Option<FileSpan>) -> Self {
        QueuedFrame(Rc::new(Queued { bytes, span }))
    }

    /// Where the frame is in the worker's frame file, if it is.
    #[inline]
    pub fn span(&self) -> Option<&FileSpan> {
        self.0.span.as_ref()
    }
}

impl From<Bytes> for QueuedFrame {
    fn from(bytes: Bytes) -> Self {
        QueuedFrame::new(bytes, None)
    }
}

impl std::ops::Deref for QueuedFrame {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.0.bytes
    }
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
    pub subscriptions: RefCell<Vec<Box<str>>>,
    /// The session unsubscribed from its own `priv/<id>` topic.
    pub own_topic_muted: Cell<bool>,
    /// Frames waiting to be written, shared with every other subscriber (no copy). Its
    /// buffer outlives a drain (a busy subscriber does not regrow it per batch) and is
    /// released by the worker's tick once the queue is found empty.
    pub outbound: RefCell<VecDeque<QueuedFrame>>,
    /// Bytes of the front frame already written.
    pub written_of_front: Cell<usize>,
    /// Bytes in `outbound` not yet written; bounded by `maxPendingBytes`.
    pub pending_bytes: Cell<usize>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_carry_the_worker() {
        let id = (0xabcdef1234u64 << 8) | 3;
        let text = format_connection_id(id);
        assert_eq!(text.len(), 12);
        assert!(!text.contains('.'));
        assert_eq!(parse_connection_id(&text), Some(id));
        assert_eq!(worker_of(id), 3);
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
