//! Bus input validation: everything read from NATS is checked like client input.
//!
//! Responsibility: decide whether a message from the bus may be acted on. Anyone able to
//! publish on the cluster's subjects — not only ringcast nodes — can send anything, and a
//! publication's frame goes byte for byte into subscribers' streams: an injected close
//! frame, a broken length or a masked frame would corrupt every subscriber's connection.
//! So a publication must be exactly one complete, unmasked, final text or binary frame of
//! valid JSON no larger than the largest frame a node builds ([`max_bus_frame_bytes`]),
//! nested at most [`MAX_JSON_NESTING`] deep, for a valid topic; its deflated twin must be
//! one compressed frame of the same kind that inflates to exactly the plain payload.
//! Control messages must be bounded ([`MAX_CONTROL_MESSAGE_BYTES`], entry counts), name
//! valid topics, node names and connection ids. The bus thread counts and drops the rest
//! (`ringcast_bus_invalid_messages_total`); whether an app is known is checked there.
//!
//! Must not: do I/O, log, or panic on any input (this is a fuzz target's core).

use super::wire::{Admin, BusPublication, Hello, TerminateRequest};
use crate::broker::session::parse_connection_id;
use crate::config::{is_subject_token, MAX_NODE_NUMBER};
use crate::protocol::command::validate_topic;
use crate::protocol::deflate::Inflater;
use crate::protocol::nesting::{nesting_exceeds, MAX_JSON_NESTING};

/// The most a publication envelope adds to the client's message: the topic (≤ 256 bytes,
/// ≤ 1,538 escaped), the sender descriptor (subject and permissions come from a token of at
/// most 16 KiB), the generated id, the field names and the frame header — 32 KiB bounds it
/// with room to spare.
pub const MAX_ENVELOPE_OVERHEAD_BYTES: usize = 32 * 1024;
/// A control message (hello, admin call, terminate request) above this is dropped: the
/// largest a node sends is an unsubscribe call (≤ 50 patterns of 1 KiB and a 16 KiB
/// subject, ~70 KiB escaped); 1 MiB is NATS's default `max_payload`.
pub const MAX_CONTROL_MESSAGE_BYTES: usize = 1024 * 1024;
/// App ids on the bus, like in the configuration (the wire format's length byte).
pub const MAX_APP_ID_BYTES: usize = 255;
/// Patterns one cluster-wide unsubscribe may carry (the HTTP API's own bound).
pub const MAX_UNSUBSCRIBE_PATTERNS: usize = 50;
/// A pattern in an unsubscribe call: a topic glob (topics are ≤ 256 bytes; patterns get
/// room for escapes and wildcards).
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Subjects in an unsubscribe call come from tokens (≤ 16 KiB).
pub const MAX_SUBJECT_BYTES: usize = 16 * 1024;

/// Why a bus message was dropped (a metric label each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusInputError {
    /// Not the binary publication layout, or not JSON of the expected shape.
    Malformed,
    /// Above [`max_bus_frame_bytes`] or [`MAX_CONTROL_MESSAGE_BYTES`], or too many patterns.
    TooLarge,
    /// Not one complete unmasked final text/binary frame (or a deflated twin that is not
    /// one compressed frame of the same kind inflating to the plain payload).
    BadFrame,
    /// JSON nested deeper than [`MAX_JSON_NESTING`], or a text frame that is not UTF-8 JSON.
    BadPayload,
    /// A topic, pattern, node name, app id, subject or connection id that no node sends.
    BadField,
}

impl BusInputError {
    pub const ALL: [BusInputError; 5] = [
        BusInputError::Malformed,
        BusInputError::TooLarge,
        BusInputError::BadFrame,
        BusInputError::BadPayload,
        BusInputError::BadField,
    ];

    /// Stable metric label.
    pub fn label(self) -> &'static str {
        match self {
            BusInputError::Malformed => "malformed",
            BusInputError::TooLarge => "too_large",
            BusInputError::BadFrame => "bad_frame",
            BusInputError::BadPayload => "bad_payload",
            BusInputError::BadField => "bad_field",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The largest frame a node builds for an app: its message bound (`maxMessageBytes` for
/// WebSocket publications, `maxHttpBodyBytes` for the HTTP API, whichever is larger) plus
/// [`MAX_ENVELOPE_OVERHEAD_BYTES`]. Every node of a cluster should share these settings;
/// a publication above the receiver's bound is dropped and counted.
pub fn max_bus_frame_bytes(max_message_bytes: usize, max_http_body_bytes: usize) -> usize {
    max_message_bytes
        .max(max_http_body_bytes)
        .saturating_add(MAX_ENVELOPE_OVERHEAD_BYTES)
}

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;

/// A checked server frame: its opcode and where its payload starts.
struct FrameShape {
    opcode: u8,
    payload_start: usize,
}

/// Checks that `frame` is exactly one complete, final, unmasked text or binary frame with
/// RSV1 set iff `compressed` (RSV2/RSV3 never), at most `max_bytes` long.
fn check_frame(
    frame: &[u8],
    compressed: bool,
    max_bytes: usize,
) -> Result<FrameShape, BusInputError> {
    if frame.len() > max_bytes {
        return Err(BusInputError::TooLarge);
    }
    let (&first, rest) = frame.split_first().ok_or(BusInputError::BadFrame)?;
    let (&second, rest) = rest.split_first().ok_or(BusInputError::BadFrame)?;
    let fin = first & 0x80 != 0;
    let rsv1 = first & 0x40 != 0;
    let rsv23 = first & 0x30 != 0;
    let opcode = first & 0x0f;
    let masked = second & 0x80 != 0;
    if !fin || rsv23 || rsv1 != compressed || masked {
        return Err(BusInputError::BadFrame);
    }
    if opcode != OPCODE_TEXT && opcode != OPCODE_BINARY {
        return Err(BusInputError::BadFrame);
    }
    let (length, extended) = match second & 0x7f {
        126 => {
            let bytes: [u8; 2] = rest
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or(BusInputError::BadFrame)?;
            (u16::from_be_bytes(bytes) as u64, 2)
        }
        127 => {
            let bytes: [u8; 8] = rest
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or(BusInputError::BadFrame)?;
            (u64::from_be_bytes(bytes), 8)
        }
        short => (u64::from(short), 0),
    };
    let payload_start = 2 + extended;
    if (frame.len() - payload_start) as u64 != length {
        return Err(BusInputError::BadFrame);
    }
    Ok(FrameShape {
        opcode,
        payload_start,
    })
}

/// Checks a decoded publication (see the module doc). `inflater` is the bus thread's own,
/// used only for publications that carry a deflated twin.
pub fn check_publication(
    publication: &BusPublication,
    max_frame_bytes: usize,
    inflater: &mut Inflater,
) -> Result<(), BusInputError> {
    if validate_topic(&publication.topic).is_err() || !valid_app_id(&publication.app) {
        return Err(BusInputError::BadField);
    }
    if !valid_node_name(&publication.origin) {
        return Err(BusInputError::BadField);
    }
    let plain = check_frame(&publication.plain, false, max_frame_bytes)?;
    let payload = &publication.plain[plain.payload_start..];
    check_json(payload)?;
    if let Some(deflated) = &publication.deflated {
        let twin = check_frame(deflated, true, max_frame_bytes)?;
        if twin.opcode != plain.opcode {
            return Err(BusInputError::BadFrame);
        }
        let inflated = inflater
            .inflate(&deflated[twin.payload_start..], payload.len())
            .map_err(|_| BusInputError::BadFrame)?;
        if inflated != payload {
            return Err(BusInputError::BadFrame);
        }
    }
    Ok(())
}

/// Valid UTF-8 JSON nested at most [`MAX_JSON_NESTING`] deep. UTF-8 is checked on its
/// own: `serde_json` does not look inside the strings of a value it ignores, and a text
/// frame that is not UTF-8 makes every subscriber's client close its connection (1007).
/// (Found by the `bus_input` fuzz target.)
fn check_json(payload: &[u8]) -> Result<(), BusInputError> {
    if nesting_exceeds(payload, MAX_JSON_NESTING) {
        return Err(BusInputError::BadPayload);
    }
    let text = std::str::from_utf8(payload).map_err(|_| BusInputError::BadPayload)?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|_| BusInputError::BadPayload)
}

/// Parses a JSON control message after checking its size and nesting.
pub fn parse_control<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, BusInputError> {
    if payload.len() > MAX_CONTROL_MESSAGE_BYTES {
        return Err(BusInputError::TooLarge);
    }
    if nesting_exceeds(payload, MAX_JSON_NESTING) {
        return Err(BusInputError::BadPayload);
    }
    serde_json::from_slice(payload).map_err(|_| BusInputError::Malformed)
}

/// Node names are what `server.cluster.name` allows (NATS subject tokens).
fn valid_node_name(name: &str) -> bool {
    is_subject_token(name)
}

fn valid_app_id(app: &str) -> bool {
    !app.is_empty() && app.len() <= MAX_APP_ID_BYTES
}

pub fn check_hello(hello: &Hello) -> Result<(), BusInputError> {
    if valid_node_name(&hello.node) && hello.number <= MAX_NODE_NUMBER {
        Ok(())
    } else {
        Err(BusInputError::BadField)
    }
}

pub fn check_admin(admin: &Admin) -> Result<(), BusInputError> {
    match admin {
        Admin::TerminateApp { origin, app } => {
            if valid_node_name(origin) && valid_app_id(app) {
                Ok(())
            } else {
                Err(BusInputError::BadField)
            }
        }
        Admin::Unsubscribe {
            origin,
            app,
            subject,
            patterns,
        } => {
            if patterns.is_empty() || patterns.len() > MAX_UNSUBSCRIBE_PATTERNS {
                return Err(BusInputError::TooLarge);
            }
            let fields_ok = valid_node_name(origin)
                && valid_app_id(app)
                && !subject.is_empty()
                && subject.len() <= MAX_SUBJECT_BYTES
                && patterns
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= MAX_PATTERN_BYTES);
            if fields_ok {
                Ok(())
            } else {
                Err(BusInputError::BadField)
            }
        }
    }
}

pub fn check_terminate(request: &TerminateRequest) -> Result<(), BusInputError> {
    if valid_app_id(&request.app) && parse_connection_id(&request.connection).is_some() {
        Ok(())
    } else {
        Err(BusInputError::BadField)
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
