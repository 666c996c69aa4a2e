//! WebSocket frames (RFC 6455): decoding the frames clients send, encoding the frames
//! the server sends, and the masked client frames tests, benches and the load test send.
//!
//! Responsibility: turn the bytes a client sent into complete messages (text, binary,
//! ping, pong, close), enforcing every framing rule and the per-message size limit
//! ([`reader`]), and write the frames either side sends ([`encode`]); [`wire`] holds
//! what both directions share: opcodes, the error enum and its close kinds, masking.
//! This file only names the parts and re-exports them.
//!
//! Must not: do I/O, allocate while idle, look inside message payloads beyond UTF-8
//! validation, or panic on any input (the reader is a fuzz target).
//!
//! Invariants:
//! - [`FrameReader::read`] never consumes input when it answers [`Progress::NeedMore`],
//!   and it unmasks a frame's payload in place only once the whole frame is present, so
//!   the same bytes are never unmasked twice.
//! - The size limit is enforced from the frame *header*, before the payload arrives, and
//!   for fragmented messages on the running total.
//! - A [`FrameReader`] holds no heap capacity unless a fragmented message is being
//!   assembled or an assembled message was just returned; the next call to `read`
//!   frees the latter, so a caller that reads until `NeedMore` (as it must) leaves an
//!   idle reader empty.
//! - Every frame error maps to one [`CloseKind`](crate::error::CloseKind) (`From<&FrameError>`); the close code is
//!   that kind's code, never a number mapped back.
//!
//! Why our own header parser: tungstenite's `FrameHeader::parse` reports through
//! `tungstenite::Error` (whose I/O variants cannot happen on a slice but must still be
//! mapped), accepts 64-bit lengths with the top bit set, and leaves the policy checks
//! (mask, RSV bits, control-frame rules) to its `WebSocketContext`, which we do not use
//! (132 KB resident per connection: docs/decisions/tungstenite-handshake-only.md). The
//! header is at most 14 bytes; parsing it here keeps every failure in [`FrameError`]. Masking is done with safe 8-byte chunked XOR because
//! tungstenite's masking helper is not exported.
//!
//! `crate::protocol::frame::X` names every public item whichever file defines it.

pub mod encode;
pub mod reader;
pub mod wire;

pub use encode::{
    encode_client_frame, encode_client_frame_raw, encode_frame, frame_header_len, write_header,
    MAX_CLIENT_HEADER_BYTES, MAX_SERVER_HEADER_BYTES,
};
pub use reader::{FrameReader, Incoming, Progress};
pub use wire::{is_valid_close_code, FrameError, OpCode, MAX_CONTROL_PAYLOAD_BYTES};
