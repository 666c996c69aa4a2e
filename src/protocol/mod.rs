//! The wire protocol, sans-IO: everything the broker reads from or writes to a socket,
//! as pure functions and small state machines over byte slices.
//!
//! # Layout
//! - [`http`]: HTTP/1.1 request heads, the WebSocket upgrade, query parameters, and the
//!   few responses the broker writes (`httparse`, `http`).
//! - [`frame`]: RFC 6455 frames: the per-connection [`frame::FrameReader`] for client
//!   frames (`frame/reader`), unmasked server frames and the one masked client encoder
//!   every harness uses (`frame/encode`), opcodes, errors and masking (`frame/wire`).
//! - [`command`]: client → server JSON commands (PROTOCOL.md §4), parsed once with the
//!   payload kept as raw bytes.
//! - [`envelope`]: server → client frames (PROTOCOL.md §5), each built once per message
//!   into one shared `Bytes`.
//! - [`nesting`]: the one JSON nesting-depth bound for every JSON text read from outside.
//! - [`deflate`]: permessage-deflate (RFC 7692) negotiation, bounded inflate, and the
//!   compressed twin of a server frame; no per-connection state.
//!
//! A connection's bytes flow `http` (upgrade) → `frame` (messages) → `command`; what the
//! broker sends is built by `envelope` (which uses `frame` for headers) and `http`.
//!
//! This module must not do I/O, async, clocks or threads: the caller owns the sockets
//! and the time. Every parser here is a fuzz target, so none panics on any input. Each
//! boundary has one error enum whose variants say what the caller does and which close
//! code or HTTP status they map to.

pub mod command;
pub mod deflate;
pub mod envelope;
pub mod frame;
pub mod http;
pub mod nesting;
