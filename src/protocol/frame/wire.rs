//! What reading and writing frames share (RFC 6455 §5): opcodes, the one error enum of
//! the frame codec with its close kinds, close-code validity, and masking.
//!
//! Must not: depend on the reader or the encoder (both depend on it), do I/O, or panic.

use crate::error::CloseKind;
use thiserror::Error;

/// The largest payload a control frame (close, ping, pong) may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;

/// A frame's opcode (RFC 6455 §5.2). The reserved opcodes 3–7 and 11–15 are rejected
/// with [`FrameError::ReservedOpcode`] and never become an `OpCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn to_bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// The opcode for a 4-bit wire value, or `None` for a reserved one.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        match bits {
            0x0 => Some(OpCode::Continuation),
            0x1 => Some(OpCode::Text),
            0x2 => Some(OpCode::Binary),
            0x8 => Some(OpCode::Close),
            0x9 => Some(OpCode::Ping),
            0xA => Some(OpCode::Pong),
            _ => None,
        }
    }

    /// Close, ping and pong are control frames (opcodes with the high bit set).
    pub fn is_control(self) -> bool {
        self.to_bits() & 0x8 != 0
    }
}

/// A violation of RFC 6455 or of our size limit by the client. Every variant is fatal:
/// the caller should send a close frame with [`FrameError::close_code`], stop reading and
/// end the connection. None of them may be silently skipped, because the byte stream is
/// no longer in a known state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The client sent an unmasked frame (clients must mask, RFC 6455 §5.1). Close 1002.
    #[error("client frame is not masked")]
    Unmasked,
    /// RSV1–3 set while no extension is negotiated. Close 1002.
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 reserves (3–7, 11–15). Close 1002.
    #[error("reserved opcode {0}")]
    ReservedOpcode(u8),
    /// A close, ping or pong with more than 125 payload bytes. Close 1002.
    #[error("control frame payload over 125 bytes")]
    ControlTooLong,
    /// A close, ping or pong without the FIN bit. Close 1002.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame while no fragmented message is in progress. Close 1002.
    #[error("continuation frame without a message start")]
    UnexpectedContinuation,
    /// A new text/binary frame while a fragmented message is unfinished. Close 1002.
    #[error("new data frame during a fragmented message")]
    ExpectedContinuation,
    /// A 64-bit payload length with the most significant bit set. Close 1002.
    #[error("payload length has the top bit set")]
    InvalidLength,
    /// The message (one frame, or the sum of its fragments) exceeds the limit the caller
    /// passed; detected from the header, before the payload is read. Close 1009.
    #[error("message too big: {message_bytes} bytes, limit {max_message_bytes}")]
    TooBig {
        message_bytes: u64,
        max_message_bytes: usize,
    },
    /// A text message that is not valid UTF-8. Close 1007.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close reason that is not valid UTF-8. Close 1007.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A close frame with a 1-byte payload (a code needs 2). Close 1002.
    #[error("close payload of 1 byte")]
    CloseTooShort,
    /// A close code that may not be sent on the wire (RFC 6455 §7.4). Close 1002.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
}

impl FrameError {
    /// The close code to send (PROTOCOL.md §7): 1007 for bad UTF-8, 1009 for too big,
    /// 1002 for every other protocol violation — the code of its [`CloseKind`].
    pub fn close_code(&self) -> u16 {
        CloseKind::from(self).code()
    }
}

/// The typed reason a session closed by this framing error ends with: the one mapping
/// from frame errors to close kinds (and so to close codes, reasons and metric labels).
impl From<&FrameError> for CloseKind {
    fn from(error: &FrameError) -> CloseKind {
        match error {
            FrameError::InvalidUtf8 | FrameError::InvalidCloseReason => CloseKind::InvalidUtf8,
            FrameError::TooBig { .. } => CloseKind::MessageTooBig,
            FrameError::Unmasked
            | FrameError::ReservedBits
            | FrameError::ReservedOpcode(_)
            | FrameError::ControlTooLong
            | FrameError::FragmentedControl
            | FrameError::UnexpectedContinuation
            | FrameError::ExpectedContinuation
            | FrameError::InvalidLength
            | FrameError::CloseTooShort
            | FrameError::InvalidCloseCode(_) => CloseKind::ProtocolError,
        }
    }
}

/// Whether a close code received from a peer is one RFC 6455 §7.4 allows on the wire:
/// 1000–1003, 1007–1014 (1012–1014 registered with IANA since the RFC) and 3000–4999.
/// 1004–1006 and 1015 are reserved for local use and never sent.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `payload` with the 4-byte masking key, 8 bytes at a time: it masks (client
/// encoder) and unmasks (reader) alike, XOR being its own inverse. `payload` must start
/// at the frame's first payload byte (mask index 0).
pub(super) fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let mask_word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ mask_word).to_ne_bytes());
    }
    // Every chunk is 8 bytes, a multiple of 4, so the remainder starts at mask index 0.
    for (index, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[index & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, so that a new one cannot skip the mapping tests.
    const ALL_ERRORS: [FrameError; 13] = [
        FrameError::Unmasked,
        FrameError::ReservedBits,
        FrameError::ReservedOpcode(3),
        FrameError::ControlTooLong,
        FrameError::FragmentedControl,
        FrameError::UnexpectedContinuation,
        FrameError::ExpectedContinuation,
        FrameError::InvalidLength,
        FrameError::TooBig {
            message_bytes: 2,
            max_message_bytes: 1,
        },
        FrameError::InvalidUtf8,
        FrameError::InvalidCloseReason,
        FrameError::CloseTooShort,
        FrameError::InvalidCloseCode(1005),
    ];

    #[test]
    fn frame_errors_map_to_close_kinds() {
        assert_eq!(
            CloseKind::from(&FrameError::InvalidUtf8),
            CloseKind::InvalidUtf8
        );
        assert_eq!(
            CloseKind::from(&FrameError::InvalidCloseReason),
            CloseKind::InvalidUtf8
        );
        assert_eq!(CloseKind::from(&ALL_ERRORS[8]), CloseKind::MessageTooBig);
        for error in ALL_ERRORS {
            let kind = CloseKind::from(&error);
            // The old u16 round trip, kept here as the check that nothing changed.
            let expected = match error.close_code() {
                1007 => CloseKind::InvalidUtf8,
                1009 => CloseKind::MessageTooBig,
                _ => CloseKind::ProtocolError,
            };
            assert_eq!(kind, expected, "{error:?}");
            assert_eq!(kind.code(), error.close_code(), "{error:?}");
            assert!(kind.sends_close_frame());
        }
    }

    #[test]
    fn masking_twice_restores_the_payload_at_every_length() {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        for length in 0..40 {
            let original: Vec<u8> = (0..length as u8).collect();
            let mut payload = original.clone();
            apply_mask(&mut payload, mask);
            let expected: Vec<u8> = original
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4])
                .collect();
            assert_eq!(payload, expected);
            apply_mask(&mut payload, mask);
            assert_eq!(payload, original);
        }
    }
}
