//! Decoding client frames: [`FrameReader`], the per-connection state machine that turns
//! the bytes a client sent into complete messages.
//!
//! Responsibility: parse and check each frame header (mask, RSV bits, opcodes, control
//! frame rules, the size limit before the payload arrives), unmask payloads in place,
//! assemble fragmented messages and validate text as UTF-8 (failing fast, mid-frame).
//!
//! Must not: do I/O, allocate while idle, consume input when answering
//! [`Progress::NeedMore`], or panic on any input (fuzz target `frame_decoder`).

use super::wire::{apply_mask, is_valid_close_code, FrameError, OpCode, MAX_CONTROL_PAYLOAD_BYTES};

/// One complete message from the client. Slices borrow either the caller's input
/// (unfragmented messages, unmasked in place) or the reader's assembly buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A text message; the bytes are valid UTF-8 (checked on the whole message).
    Text(&'a [u8]),
    /// A binary message; the bytes are not inspected.
    Binary(&'a [u8]),
    /// A ping; the caller should answer with a pong carrying the same bytes.
    Ping(&'a [u8]),
    /// A pong; it only proves liveness.
    Pong,
    /// The client closes. `code` is `None` when the close frame had no payload; the caller
    /// should answer with a close frame (echoing `code`, or none) and end the connection.
    Close { code: Option<u16>, reason: &'a str },
    /// A permessage-deflate compressed message (sync tail stripped, as on the wire); the
    /// caller inflates it (bounded) and, for text, checks UTF-8 on the result.
    Compressed { text: bool, data: &'a [u8] },
}

/// What one call to [`FrameReader::read`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// The input does not yet hold a whole frame; nothing was consumed. Read more bytes,
    /// append them after the current input and call again.
    NeedMore,
    /// A non-final fragment of a data message was stored; drop `consumed` bytes from the
    /// front of the input and call again.
    Fragment { consumed: usize },
    /// A complete message; drop `consumed` bytes from the front of the input once done
    /// with `message` (it may borrow the input), then call again.
    Message {
        message: Incoming<'a>,
        consumed: usize,
    },
}

/// The kind of data message being assembled from fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// What the assembly buffer currently holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assembly {
    /// Nothing; the buffer has no capacity.
    Idle,
    /// The fragments of an unfinished message of this kind.
    InProgress(MessageKind),
    /// A complete message returned by the previous `read`; freed by the next one.
    Delivered,
}

/// Per-connection decoding state: only the assembly buffer for fragmented messages.
/// `size_of::<FrameReader>()` is 32 bytes on 64-bit targets and it owns no heap memory
/// while idle, because it lives in every (mostly idle) connection.
#[derive(Debug)]
pub struct FrameReader {
    /// The unmasked payloads of the fragments received so far. Owned by the connection;
    /// allocated by the first fragment, freed (not just cleared) when the message is done.
    fragments: Vec<u8>,
    /// Whether `fragments` holds a message in progress, a delivered one, or nothing.
    assembly: Assembly,
    /// permessage-deflate was negotiated: RSV1 may mark a compressed message.
    deflate: bool,
    /// The message in progress is compressed.
    compressed: bool,
    /// Payload bytes of the frame at the front of the input already checked as UTF-8
    /// while it was still arriving (text only); 0 once the frame is complete.
    validated: u32,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader::new()
    }
}

/// A parsed frame header.
struct Header {
    /// RSV1: the message is compressed (permessage-deflate, first frame only).
    compressed: bool,
    is_final: bool,
    opcode: OpCode,
    mask: [u8; 4],
    header_bytes: usize,
    payload_bytes: u64,
}

/// Parses and checks the framing rules a header alone can violate. `Ok(None)`: the input
/// does not yet hold the whole header.
fn parse_header(input: &[u8], allow_rsv1: bool) -> Result<Option<Header>, FrameError> {
    let (first, second) = match input {
        [first, second, ..] => (*first, *second),
        _ => return Ok(None),
    };
    let compressed = first & 0x40 != 0;
    if first & 0x30 != 0 || (compressed && !allow_rsv1) {
        return Err(FrameError::ReservedBits);
    }
    let opcode_bits = first & 0x0F;
    let opcode = OpCode::from_bits(opcode_bits).ok_or(FrameError::ReservedOpcode(opcode_bits))?;
    let is_final = first & 0x80 != 0;
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (length_bytes, payload_bytes) = match second & 0x7F {
        126 => match input.get(2..4) {
            Some(&[high, low]) => (2, u64::from(u16::from_be_bytes([high, low]))),
            _ => return Ok(None),
        },
        127 => match input
            .get(2..10)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        {
            Some(bytes) => (8, u64::from_be_bytes(bytes)),
            None => return Ok(None),
        },
        short => (0, u64::from(short)),
    };
    if payload_bytes >> 63 != 0 {
        return Err(FrameError::InvalidLength);
    }
    if opcode.is_control() {
        if !is_final {
            return Err(FrameError::FragmentedControl);
        }
        if payload_bytes > MAX_CONTROL_PAYLOAD_BYTES as u64 {
            return Err(FrameError::ControlTooLong);
        }
    }
    let mask_start = 2 + length_bytes;
    let mask = match input
        .get(mask_start..mask_start + 4)
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
    {
        Some(mask) => mask,
        None => return Ok(None),
    };
    Ok(Some(Header {
        compressed,
        is_final,
        opcode,
        mask,
        header_bytes: mask_start + 4,
        payload_bytes,
    }))
}

/// Decodes a close payload (already unmasked and at most 125 bytes).
fn parse_close(payload: &[u8]) -> Result<Incoming<'_>, FrameError> {
    match payload {
        [] => Ok(Incoming::Close {
            code: None,
            reason: "",
        }),
        [_] => Err(FrameError::CloseTooShort),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::InvalidCloseReason)?;
            Ok(Incoming::Close {
                code: Some(code),
                reason,
            })
        }
    }
}

impl FrameReader {
    /// An idle reader: no heap memory.
    pub fn new() -> FrameReader {
        FrameReader {
            fragments: Vec::new(),
            assembly: Assembly::Idle,
            deflate: false,
            compressed: false,
            validated: 0,
        }
    }

    /// Accepts compressed messages (RSV1) from now on: permessage-deflate was negotiated.
    pub fn enable_deflate(&mut self) {
        self.deflate = true;
    }

    /// True when no fragmented message is in progress and no assembled message is held,
    /// i.e. the reader owns no heap memory.
    pub fn is_idle(&self) -> bool {
        self.assembly == Assembly::Idle
    }

    /// Decodes one frame at the start of `input`, unmasking its payload in place.
    ///
    /// `max_message_bytes` bounds a whole message (one frame or the sum of its fragments);
    /// pass `usize::MAX` for no limit. `NeedMore` consumes nothing; otherwise the caller
    /// drops `consumed` bytes and calls again until `NeedMore`.
    pub fn read<'a>(
        &'a mut self,
        input: &'a mut [u8],
        max_message_bytes: usize,
    ) -> Result<Progress<'a>, FrameError> {
        if self.assembly == Assembly::Delivered {
            self.fragments = Vec::new();
            self.assembly = Assembly::Idle;
        }
        let header = match parse_header(input, self.deflate)? {
            Some(header) => header,
            None => return Ok(Progress::NeedMore),
        };
        let in_progress = match self.assembly {
            Assembly::InProgress(kind) => Some(kind),
            _ => None,
        };
        if header.compressed && !matches!(header.opcode, OpCode::Text | OpCode::Binary) {
            // RSV1 belongs on the first frame of a data message only (RFC 7692 §6.1).
            return Err(FrameError::ReservedBits);
        }
        let data_kind = match header.opcode {
            OpCode::Text | OpCode::Binary if in_progress.is_some() => {
                return Err(FrameError::ExpectedContinuation)
            }
            OpCode::Text => Some(MessageKind::Text),
            OpCode::Binary => Some(MessageKind::Binary),
            OpCode::Continuation => Some(in_progress.ok_or(FrameError::UnexpectedContinuation)?),
            OpCode::Close | OpCode::Ping | OpCode::Pong => None,
        };
        if data_kind.is_some() {
            let message_bytes = (self.fragments.len() as u64).saturating_add(header.payload_bytes);
            if message_bytes > max_message_bytes as u64 {
                return Err(FrameError::TooBig {
                    message_bytes,
                    max_message_bytes,
                });
            }
        }
        // Now the payload is at most max_message_bytes (data) or 125 (control), so it fits
        // in usize; the fallback only makes the bounds check below answer NeedMore.
        let payload_bytes = usize::try_from(header.payload_bytes).unwrap_or(usize::MAX);
        let consumed = match header.header_bytes.checked_add(payload_bytes) {
            Some(frame_bytes) if frame_bytes <= input.len() => frame_bytes,
            _ => {
                let continuation = header.opcode == OpCode::Continuation;
                let compressed = if continuation {
                    self.compressed
                } else {
                    header.compressed
                };
                if data_kind == Some(MessageKind::Text) && !compressed {
                    // Fail fast on text that can no longer be UTF-8, even mid-frame.
                    let available = &input[header.header_bytes..];
                    self.check_arriving_text(continuation, available, header.mask)?;
                }
                return Ok(Progress::NeedMore);
            }
        };
        self.validated = 0;
        // From here on the frame is consumed: state may change.
        let payload = &mut input[header.header_bytes..consumed];
        apply_mask(payload, header.mask);
        let payload: &'a [u8] = payload;

        let Some(kind) = data_kind else {
            let message = match header.opcode {
                OpCode::Ping => Incoming::Ping(payload),
                OpCode::Pong => Incoming::Pong,
                _ => parse_close(payload)?,
            };
            return Ok(Progress::Message { message, consumed });
        };
        if header.opcode != OpCode::Continuation {
            self.compressed = header.compressed;
        }
        if !header.is_final {
            let checked = self.fragments.len();
            self.fragments.extend_from_slice(payload);
            self.assembly = Assembly::InProgress(kind);
            if kind == MessageKind::Text && !self.compressed {
                check_utf8_prefix(&self.fragments, checked)?;
            }
            return Ok(Progress::Fragment { consumed });
        }
        let bytes: &'a [u8] = if header.opcode == OpCode::Continuation {
            self.fragments.extend_from_slice(payload);
            self.assembly = Assembly::Delivered;
            &self.fragments
        } else {
            payload
        };
        let message = if self.compressed {
            Incoming::Compressed {
                text: kind == MessageKind::Text,
                data: bytes,
            }
        } else {
            finish_data(kind, bytes)?
        };
        Ok(Progress::Message { message, consumed })
    }
}

impl FrameReader {
    /// Checks the arriving part of a text frame (still masked in `masked`) as UTF-8, from
    /// where the previous call stopped, stepping back up to 3 bytes — into the message's
    /// earlier fragments for a continuation frame — so that a character split across
    /// reads is seen whole. Linear over the frame however it is split; nothing consumed.
    fn check_arriving_text(
        &mut self,
        continuation: bool,
        masked: &[u8],
        mask: [u8; 4],
    ) -> Result<(), FrameError> {
        let from = self.validated as usize;
        if masked.len() <= from {
            return Ok(());
        }
        let earlier: &[u8] = if continuation { &self.fragments } else { &[] };
        let byte_at = |index: usize| -> u8 {
            if index < earlier.len() {
                earlier[index]
            } else {
                let offset = index - earlier.len();
                masked[offset] ^ mask[offset & 3]
            }
        };
        let end = earlier.len() + masked.len();
        let checked = earlier.len() + from;
        // Restart at the last character that began before `checked` (it may be incomplete
        // there): within 3 bytes back, the nearest byte that is not a continuation byte.
        // The result must not depend on where reads split the frame (found by fuzzing).
        let mut position = checked;
        for back in 1..=checked.min(3) {
            if byte_at(checked - back) & 0xC0 != 0x80 {
                position = checked - back;
                break;
            }
        }
        let mut chunk = [0u8; 256];
        let mut carried = 0;
        while position < end {
            let mut filled = carried;
            while filled < chunk.len() && position < end {
                chunk[filled] = byte_at(position);
                filled += 1;
                position += 1;
            }
            match std::str::from_utf8(&chunk[..filled]) {
                Ok(_) => carried = 0,
                Err(error) if error.error_len().is_none() => {
                    // An incomplete character at the end: carry it into the next chunk.
                    let valid = error.valid_up_to();
                    chunk.copy_within(valid..filled, 0);
                    carried = filled - valid;
                }
                Err(_) => return Err(FrameError::InvalidUtf8),
            }
        }
        // Frames are bounded by `max_message_bytes` (≤ 16 MiB), so this fits.
        self.validated = u32::try_from(masked.len()).unwrap_or(u32::MAX);
        Ok(())
    }
}

/// Fails fast on text that can no longer become valid UTF-8: checks `text` from the last
/// character start at or before `checked` (bytes before it were checked already); an
/// incomplete character at the end is fine, more may follow in the next fragment.
fn check_utf8_prefix(text: &[u8], checked: usize) -> Result<(), FrameError> {
    if checked >= text.len() {
        // An empty fragment added nothing to check (found by the frame_decoder fuzz target).
        return Ok(());
    }
    // Restart at the last character that began before `checked` (see
    // `check_arriving_text`): within 3 bytes back, the nearest non-continuation byte.
    let mut start = checked;
    for back in 1..=checked.min(3) {
        if text[checked - back] & 0xC0 != 0x80 {
            start = checked - back;
            break;
        }
    }
    match std::str::from_utf8(&text[start..]) {
        Ok(_) => Ok(()),
        Err(error) if error.error_len().is_none() => Ok(()),
        Err(_) => Err(FrameError::InvalidUtf8),
    }
}

/// Wraps a complete data message, validating UTF-8 for text.
fn finish_data(kind: MessageKind, bytes: &[u8]) -> Result<Incoming<'_>, FrameError> {
    match kind {
        MessageKind::Binary => Ok(Incoming::Binary(bytes)),
        MessageKind::Text => match std::str::from_utf8(bytes) {
            Ok(_) => Ok(Incoming::Text(bytes)),
            Err(_) => Err(FrameError::InvalidUtf8),
        },
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
