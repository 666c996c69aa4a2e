//! Server → client frames (PROTOCOL.md §5), each built once per message as one complete
//! WebSocket frame (header + JSON envelope) in an immutable `Bytes` that every
//! subscriber's queue shares.
//!
//! Responsibility: the exact JSON shapes of §5 (welcome, publication, HTTP publication,
//! presence, ack) and the close/ping/pong control frames; message ids.
//!
//! Must not: re-encode payloads or ids (they are raw JSON spans, copied verbatim),
//! decide who receives what, or allocate per subscriber.
//!
//! Invariants:
//! - Strings are escaped by `serde_json`; raw JSON inputs are trusted to be valid JSON
//!   (they come from `command`, which parsed them); an empty raw input is written as
//!   `null` so that the envelope stays valid JSON.
//! - One buffer per frame: its exact size is computed first (10 bytes of header room +
//!   the JSON), the JSON is written after the header room, the header is written
//!   right-aligned just before the JSON, and the returned `Bytes` starts at the header —
//!   no second copy. (`Bytes` adds its small shared refcount block on first clone.)

use bytes::{Buf, Bytes};
use rand::Rng;

use crate::protocol::frame::{frame_header_len, write_header, OpCode, MAX_SERVER_HEADER_BYTES};

/// The topic acks are sent on (§5.5).
pub const ACK_TOPIC: &str = "priv/acks";
/// The topic inbound messages and presence events are delivered on (§4.4, §5.4).
pub const INBOUND_TOPIC: &str = "secure/inbound";
/// Close reasons are at most 123 bytes: a close payload is at most 125 bytes, 2 of which
/// are the code (RFC 6455 §5.5).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;
/// Length of generated message ids: 36^10 ≈ 3.7·10^15 values, so a collision among the
/// in-flight ids of one publisher is negligible.
pub const MESSAGE_ID_CHARS: usize = 10;

/// The length `serde_json` gives `text` as a JSON string, quotes included.
fn json_string_len(text: &str) -> usize {
    2 + text
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\x08' | b'\x0C' | b'\n' | b'\r' | b'\t' => 2,
            0x00..=0x1F => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Appends `text` as a JSON string literal (quoted and escaped by `serde_json`).
pub fn push_json_string(text: &str, out: &mut Vec<u8>) {
    // Cannot fail: a `str` always serializes, and `Vec<u8>`'s `io::Write` never errors.
    // Were it ever to, the partial output is still bounded; nothing here can panic.
    let _infallible = serde_json::to_writer(&mut *out, text);
}

/// One piece of an envelope.
enum Part<'a> {
    /// Bytes copied as they are (JSON punctuation, raw JSON values, binary payloads).
    Raw(&'a [u8]),
    /// A string written as a JSON string literal.
    Text(&'a str),
}

impl Part<'_> {
    fn len(&self) -> usize {
        match self {
            Part::Raw(bytes) => bytes.len(),
            Part::Text(text) => json_string_len(text),
        }
    }
}

/// A raw JSON value, or `null` when empty.
fn raw_json(value: &[u8]) -> Part<'_> {
    Part::Raw(if value.is_empty() { b"null" } else { value })
}

/// Writes `parts` after `header_room_bytes` zero bytes into one exactly-sized buffer.
fn assemble(parts: &[Part<'_>], header_room_bytes: usize) -> Vec<u8> {
    let payload_bytes: usize = parts.iter().map(Part::len).sum();
    let mut buffer = Vec::with_capacity(header_room_bytes + payload_bytes);
    buffer.resize(header_room_bytes, 0);
    for part in parts {
        match part {
            Part::Raw(bytes) => buffer.extend_from_slice(bytes),
            Part::Text(text) => push_json_string(text, &mut buffer),
        }
    }
    buffer
}

/// Builds one complete, unmasked frame whose payload is the concatenation of `parts`.
fn build_frame(opcode: OpCode, parts: &[Part<'_>]) -> Bytes {
    let mut buffer = assemble(parts, MAX_SERVER_HEADER_BYTES);
    let payload_bytes = buffer.len() - MAX_SERVER_HEADER_BYTES;
    let header_start = MAX_SERVER_HEADER_BYTES - frame_header_len(payload_bytes);
    // `buffer` is at least MAX_SERVER_HEADER_BYTES long and frame_header_len ≤ 10, so
    // this range exists and is exactly frame_header_len bytes: write_header fills it.
    if let Some(header) = buffer.get_mut(header_start..MAX_SERVER_HEADER_BYTES) {
        write_header(opcode, payload_bytes, header);
    }
    let mut frame = Bytes::from(buffer);
    frame.advance(header_start);
    frame
}

fn data_opcode(binary: bool) -> OpCode {
    if binary {
        OpCode::Binary
    } else {
        OpCode::Text
    }
}

/// `{"connectionId":"..","subject":"..","permissions":[..]}` — the sender description
/// embedded in publications and presence events.
pub fn client_descriptor(connection_id: &str, subject: &str, permissions: &[String]) -> Box<[u8]> {
    let mut out = Vec::new();
    write_client_descriptor(
        connection_id,
        subject,
        &permissions_json(permissions),
        &mut out,
    );
    out.into_boxed_slice()
}

/// The JSON array of a token's permission strings (shared by every connection holding the
/// same list).
pub fn permissions_json(permissions: &[String]) -> Box<[u8]> {
    let mut parts = Vec::with_capacity(2 + 2 * permissions.len());
    parts.push(Part::Raw(b"["));
    for (index, permission) in permissions.iter().enumerate() {
        if index > 0 {
            parts.push(Part::Raw(b","));
        }
        parts.push(Part::Text(permission));
    }
    parts.push(Part::Raw(b"]"));
    assemble(&parts, 0).into_boxed_slice()
}

/// Writes a [`client_descriptor`] into `out` (cleared first) from a connection's parts, so
/// an idle connection need not hold its descriptor; `permissions_json` is a
/// [`permissions_json`] array.
pub fn write_client_descriptor(
    connection_id: &str,
    subject: &str,
    permissions_json: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(b"{\"connectionId\":");
    push_json_string(connection_id, out);
    out.extend_from_slice(b",\"subject\":");
    push_json_string(subject, out);
    out.extend_from_slice(b",\"permissions\":");
    out.extend_from_slice(permissions_json);
    out.push(b'}');
}

/// §5.2: `{"topic":T,"messageType":M,"data":{"client":<client>,"subProtocol":1,
/// "payload":<raw>,"id":<raw>}}`. `client` is a [`client_descriptor`]; `payload` and `id`
/// are raw JSON, copied verbatim. Binary frame when `binary` (published with `compress`).
pub fn publication_frame(
    topic: &str,
    message_type: &str,
    client: &[u8],
    payload: &[u8],
    id: &[u8],
    binary: bool,
) -> Bytes {
    build_frame(
        data_opcode(binary),
        &[
            Part::Raw(b"{\"topic\":"),
            Part::Text(topic),
            Part::Raw(b",\"messageType\":"),
            Part::Text(message_type),
            Part::Raw(b",\"data\":{\"client\":"),
            raw_json(client),
            Part::Raw(b",\"subProtocol\":1,\"payload\":"),
            raw_json(payload),
            Part::Raw(b",\"id\":"),
            raw_json(id),
            Part::Raw(b"}}"),
        ],
    )
}

/// §5.3: `{"topic":T,"messageType":M,"data":<raw message>}` — the posted value itself.
pub fn http_publication_frame(
    topic: &str,
    message_type: &str,
    message: &[u8],
    binary: bool,
) -> Bytes {
    build_frame(
        data_opcode(binary),
        &[
            Part::Raw(b"{\"topic\":"),
            Part::Text(topic),
            Part::Raw(b",\"messageType\":"),
            Part::Text(message_type),
            Part::Raw(b",\"data\":"),
            raw_json(message),
            Part::Raw(b"}"),
        ],
    )
}

/// §5.1: the first frame of every connection.
pub fn welcome_frame(connection_id: &str, app_id: &str, remote_address: &str) -> Bytes {
    build_frame(
        OpCode::Text,
        &[
            Part::Raw(b"{\"topic\":\"main\",\"messageType\":\"welcome\",\"data\":{\"connection\":{\"id\":"),
            Part::Text(connection_id),
            Part::Raw(b",\"appId\":"),
            Part::Text(app_id),
            Part::Raw(b",\"remoteAddress\":"),
            Part::Text(remote_address),
            Part::Raw(b"}}}"),
        ],
    )
}

/// §5.4: presence on `secure/inbound`; `client` is a [`client_descriptor`].
pub fn presence_frame(client: &[u8], connected: bool) -> Bytes {
    let payload: &[u8] = if connected {
        b"{\"code\":0,\"status\":\"connected\"}"
    } else {
        b"{\"code\":-1,\"status\":\"disconnected\"}"
    };
    build_frame(
        OpCode::Text,
        &[
            Part::Raw(
                b"{\"topic\":\"secure/inbound\",\"messageType\":\"presence\",\"data\":{\"client\":",
            ),
            raw_json(client),
            Part::Raw(b",\"subProtocol\":1,\"payload\":"),
            Part::Raw(payload),
            Part::Raw(b"}}"),
        ],
    )
}

/// §5.5: `{"topic":"priv/acks","messageType":"ack","data":{"data":<raw id>}}`.
pub fn ack_frame(id: &[u8]) -> Bytes {
    build_frame(
        OpCode::Text,
        &[
            Part::Raw(b"{\"topic\":\"priv/acks\",\"messageType\":\"ack\",\"data\":{\"data\":"),
            raw_json(id),
            Part::Raw(b"}}"),
        ],
    )
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
fn truncate_on_char_boundary(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1; // stops at 0 at the latest, which is always a boundary
    }
    text.get(..end).unwrap_or("")
}

/// A close frame with `code` and `reason`, the reason truncated to
/// [`MAX_CLOSE_REASON_BYTES`] on a char boundary.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = truncate_on_char_boundary(reason, MAX_CLOSE_REASON_BYTES);
    build_frame(
        OpCode::Close,
        &[Part::Raw(&code.to_be_bytes()), Part::Raw(reason.as_bytes())],
    )
}

/// An empty ping (the server's liveness probe).
pub fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x80 | 0x9, 0])
}

/// A pong echoing a ping's payload (truncated to the 125 bytes a control frame allows;
/// a valid ping never carries more).
pub fn pong_frame(payload: &[u8]) -> Bytes {
    let payload = payload
        .get(..crate::protocol::frame::MAX_CONTROL_PAYLOAD_BYTES)
        .unwrap_or(payload);
    build_frame(OpCode::Pong, &[Part::Raw(payload)])
}

/// A random message id of [`MESSAGE_ID_CHARS`] lowercase letters and digits (never a
/// `.`). Needs no JSON escaping: its raw JSON form is `format!("\"{id}\"")`.
pub fn generate_message_id() -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = rand::thread_rng();
    (0..MESSAGE_ID_CHARS)
        .map(|_| char::from(ALPHABET[random.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
