//! Client → server commands (PROTOCOL.md §4): `{"type": "...", "data": {...}}`.
//!
//! Responsibility: parse one client message into a [`Command`] in a single `serde_json`
//! pass that borrows from the input, keeping `payload` and `id` as the exact bytes the
//! client sent (they are copied verbatim into outgoing frames, never re-encoded), and
//! apply the protocol's defaults and topic rules.
//!
//! Must not: check permissions, touch subscriptions, or allocate for the common case
//! (unescaped strings are borrowed; only a topic or message type containing JSON escapes
//! is decoded into an owned string).
//!
//! Invariants: every malformed input is an `Err` with a close code and a short reason —
//! nothing from it is ever delivered; no input panics. Unknown fields are ignored (the
//! SDKs may add some); a field given twice is an error, since which one wins would be a
//! guess. Anything nested deeper than [`MAX_JSON_NESTING`] is refused before parsing
//! (subscribers' parsers would choke on it), and raw and ignored values are scanned
//! iteratively by `serde_json`, so no input can overflow the stack.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use super::nesting::{nesting_exceeds, MAX_JSON_NESTING};
use crate::error::CloseKind;

/// Topics are 1–256 bytes (PROTOCOL.md §4.1); the bound keeps topic tables and interest
/// maps small and matches the upstream service.
pub const MAX_TOPIC_BYTES: usize = 256;

/// The message type used when a publish or message has none (§4.3).
pub const DEFAULT_MESSAGE_TYPE: &str = "broadcast";

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// §4.1: subscribe to a (validated) topic.
    Subscribe { topic: Cow<'a, str> },
    /// §4.2: unsubscribe from a (validated) topic.
    Unsubscribe { topic: Cow<'a, str> },
    /// §4.3: publish; `topic` is always `Some` and validated.
    Publish(Publication<'a>),
    /// §4.4: inbound message; `topic` is always `None` (a sent one is ignored).
    Message(Publication<'a>),
}

/// The body of a publish or message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication<'a> {
    /// The validated topic for `publish`; `None` for `message`.
    pub topic: Option<Cow<'a, str>>,
    /// `"broadcast"` when missing, `null` or `""`.
    pub message_type: Cow<'a, str>,
    /// Send as a binary frame; false when missing or `null`.
    pub compress: bool,
    /// The raw JSON bytes of `payload`, verbatim; `null` when absent.
    pub payload: &'a [u8],
    /// The raw JSON bytes of `id`, verbatim; `None` when absent or `null` (the server
    /// then generates one).
    pub id: Option<&'a [u8]>,
}

/// A malformed command. The caller closes the connection with
/// [`CommandError::close_code`] and [`CommandError::reason`] and delivers nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CommandError {
    /// The message is not UTF-8 (possible in a binary frame). Close 1007.
    #[error("message is not valid UTF-8")]
    NotUtf8,
    /// Not a single valid JSON value (syntax error, truncation, trailing bytes). Close 1007.
    #[error("message is not valid JSON")]
    InvalidJson,
    /// Arrays/objects nested deeper than [`MAX_JSON_NESTING`]. Close 1008.
    #[error("message nesting deeper than {MAX_JSON_NESTING}")]
    NestingTooDeep,
    /// Valid JSON but not an object. Close 1008.
    #[error("message is not a JSON object")]
    NotAnObject,
    /// `type` missing, not a string, or not one of the four types. Close 1008.
    #[error("unknown message type")]
    UnknownType,
    /// A field appears twice in the command or its `data`. Close 1008.
    #[error("duplicate field")]
    DuplicateField,
    /// `data` missing or `null`. Close 1008.
    #[error("missing data")]
    MissingData,
    /// `data` is not an object. Close 1008.
    #[error("data is not an object")]
    DataNotObject,
    /// `topic` missing or `null` where required. Close 1008.
    #[error("missing topic")]
    MissingTopic,
    /// `topic` is not a string. Close 1008.
    #[error("topic is not a string")]
    TopicNotString,
    /// `topic` is the empty string. Close 1008.
    #[error("topic is empty")]
    TopicEmpty,
    /// `topic` is longer than [`MAX_TOPIC_BYTES`]. Close 1008.
    #[error("topic longer than {MAX_TOPIC_BYTES} bytes")]
    TopicTooLong,
    /// `topic` contains a control character. Close 1008.
    #[error("topic contains a control character")]
    TopicControlCharacter,
    /// `messageType` is neither a string nor `null`. Close 1008.
    #[error("messageType is not a string")]
    InvalidMessageType,
    /// `compress` is neither a boolean nor `null`. Close 1008.
    #[error("compress is not a boolean")]
    InvalidCompress,
}

impl CommandError {
    /// The close code (PROTOCOL.md §7): 1007 when the bytes are not UTF-8 JSON, 1008
    /// when the JSON does not have the command's structure — the code of its
    /// [`CloseKind`].
    pub fn close_code(&self) -> u16 {
        CloseKind::from(self).code()
    }

    /// The close reason: short, fixed text (well under the 123-byte limit).
    pub fn reason(&self) -> &'static str {
        match self {
            CommandError::NotUtf8 => "Invalid UTF-8",
            CommandError::InvalidJson => "Invalid JSON",
            CommandError::NestingTooDeep => "Message nesting too deep",
            CommandError::NotAnObject => "Invalid message format",
            CommandError::UnknownType => "Unknown message type",
            CommandError::DuplicateField => "Duplicate field",
            CommandError::MissingData => "Missing data",
            CommandError::DataNotObject => "Invalid data",
            CommandError::MissingTopic => "Missing topic",
            CommandError::TopicNotString
            | CommandError::TopicEmpty
            | CommandError::TopicTooLong
            | CommandError::TopicControlCharacter => "Invalid topic",
            CommandError::InvalidMessageType => "Invalid messageType",
            CommandError::InvalidCompress => "Invalid compress",
        }
    }
}

/// The typed reason a session closed by this command error ends with: the one mapping
/// from command errors to close kinds (close code, reason sent, metric label).
impl From<&CommandError> for CloseKind {
    fn from(error: &CommandError) -> CloseKind {
        match error {
            CommandError::NotUtf8 | CommandError::InvalidJson => CloseKind::InvalidJson,
            CommandError::TopicNotString
            | CommandError::TopicEmpty
            | CommandError::TopicTooLong
            | CommandError::TopicControlCharacter => CloseKind::InvalidTopic,
            CommandError::NestingTooDeep => CloseKind::NestingTooDeep,
            CommandError::NotAnObject
            | CommandError::UnknownType
            | CommandError::DuplicateField
            | CommandError::MissingData
            | CommandError::DataNotObject
            | CommandError::MissingTopic
            | CommandError::InvalidMessageType
            | CommandError::InvalidCompress => CloseKind::MalformedCommand,
        }
    }
}

/// Checks the topic rules: 1–[`MAX_TOPIC_BYTES`] bytes, no control characters (C0, DEL,
/// C1).
pub fn validate_topic(topic: &str) -> Result<(), CommandError> {
    if topic.is_empty() {
        return Err(CommandError::TopicEmpty);
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(CommandError::TopicTooLong);
    }
    if topic.chars().any(char::is_control) {
        return Err(CommandError::TopicControlCharacter);
    }
    Ok(())
}

/// Parses one client message (the complete text or binary frame payload).
pub fn parse_command(input: &[u8]) -> Result<Command<'_>, CommandError> {
    let text = std::str::from_utf8(input).map_err(|_| CommandError::NotUtf8)?;
    if nesting_exceeds(input, MAX_JSON_NESTING) {
        return Err(CommandError::NestingTooDeep);
    }
    let top = match serde_json::from_str::<Shape<TopLevel<'_>>>(text) {
        Ok(Shape::Object(top)) => top,
        Ok(Shape::Null | Shape::Other) => return Err(CommandError::NotAnObject),
        Err(_) => return Err(CommandError::InvalidJson),
    };
    if top.duplicate_field {
        return Err(CommandError::DuplicateField);
    }
    let kind = top
        .kind
        .and_then(raw_as_str)
        .ok_or(CommandError::UnknownType)?;
    let kind = match kind.as_ref() {
        "subscribe" => Kind::Subscribe,
        "unsubscribe" => Kind::Unsubscribe,
        "publish" => Kind::Publish,
        "message" => Kind::Message,
        _ => return Err(CommandError::UnknownType),
    };
    let data = match top.data {
        None | Some(Shape::Null) => return Err(CommandError::MissingData),
        Some(Shape::Other) => return Err(CommandError::DataNotObject),
        Some(Shape::Object(data)) => data,
    };
    if data.duplicate_field {
        return Err(CommandError::DuplicateField);
    }
    match kind {
        Kind::Subscribe => Ok(Command::Subscribe {
            topic: required_topic(data.topic)?,
        }),
        Kind::Unsubscribe => Ok(Command::Unsubscribe {
            topic: required_topic(data.topic)?,
        }),
        Kind::Publish => {
            let topic = required_topic(data.topic)?;
            Ok(Command::Publish(publication(Some(topic), &data)?))
        }
        Kind::Message => Ok(Command::Message(publication(None, &data)?)),
    }
}

/// The four command types.
enum Kind {
    Subscribe,
    Unsubscribe,
    Publish,
    Message,
}

/// Applies defaults and checks to the fields of a publish or message.
fn publication<'a>(
    topic: Option<Cow<'a, str>>,
    data: &DataFields<'a>,
) -> Result<Publication<'a>, CommandError> {
    let message_type = match data.message_type.filter(|raw| !is_null(raw)) {
        None => Cow::Borrowed(DEFAULT_MESSAGE_TYPE),
        Some(raw) => match raw_as_str(raw) {
            Some(text) if text.is_empty() => Cow::Borrowed(DEFAULT_MESSAGE_TYPE),
            Some(text) => text,
            None => return Err(CommandError::InvalidMessageType),
        },
    };
    let compress = match data.compress.map(RawValue::get) {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(CommandError::InvalidCompress),
    };
    Ok(Publication {
        topic,
        message_type,
        compress,
        payload: data.payload.map_or(b"null", |raw| raw.get().as_bytes()),
        id: data
            .id
            .filter(|raw| !is_null(raw))
            .map(|raw| raw.get().as_bytes()),
    })
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// A present, non-null, valid topic.
fn required_topic(raw: Option<&RawValue>) -> Result<Cow<'_, str>, CommandError> {
    let raw = raw
        .filter(|raw| !is_null(raw))
        .ok_or(CommandError::MissingTopic)?;
    let topic = raw_as_str(raw).ok_or(CommandError::TopicNotString)?;
    validate_topic(&topic)?;
    Ok(topic)
}

/// A JSON string decoded from its raw text; `None` if the value is not a string.
/// Borrows when the string has no escapes (the common case, no second parse).
fn raw_as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        // Valid JSON (serde_json produced this span), so an escape-free string's content
        // is exactly the text between the quotes.
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<BorrowedText<'_>>(text)
        .ok()
        .map(|decoded| decoded.0)
}

/// A JSON string that borrows from the input when it has no escapes.
#[derive(Deserialize)]
struct BorrowedText<'a>(#[serde(borrow)] Cow<'a, str>);

// ---------------------------------------------------------------------------------------
// One-pass deserialization. serde's derived structs would also accept JSON arrays
// (positional fields) and would stop at the first non-object `data` with an error we
// could not tell apart from a syntax error; these visitors record the shape instead.

/// What a JSON value turned out to be.
enum Shape<T> {
    Object(T),
    Null,
    Other,
}

/// The top-level fields, unparsed.
#[derive(Default)]
struct TopLevel<'a> {
    kind: Option<&'a RawValue>,
    data: Option<Shape<DataFields<'a>>>,
    duplicate_field: bool,
}

/// The fields of `data`, unparsed.
#[derive(Default)]
struct DataFields<'a> {
    topic: Option<&'a RawValue>,
    message_type: Option<&'a RawValue>,
    compress: Option<&'a RawValue>,
    payload: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    duplicate_field: bool,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum TopField {
    Type,
    Data,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum DataField {
    Topic,
    MessageType,
    Compress,
    Payload,
    Id,
    #[serde(other)]
    Other,
}

/// An object whose fields are collected from a map by [`ObjectFields::visit_fields`].
trait ObjectFields<'de>: Default {
    fn visit_fields<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// Stores the next value as a raw span into `slot`, or flags a duplicate.
fn store_raw<'de, A: MapAccess<'de>>(
    map: &mut A,
    slot: &mut Option<&'de RawValue>,
    duplicate_field: &mut bool,
) -> Result<(), A::Error> {
    if slot.is_some() {
        *duplicate_field = true;
        map.next_value::<IgnoredAny>()?;
    } else {
        *slot = Some(map.next_value()?);
    }
    Ok(())
}

impl<'de> ObjectFields<'de> for TopLevel<'de> {
    fn visit_fields<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut top = TopLevel::default();
        while let Some(field) = map.next_key::<TopField>()? {
            match field {
                TopField::Type => store_raw(&mut map, &mut top.kind, &mut top.duplicate_field)?,
                TopField::Data if top.data.is_some() => {
                    top.duplicate_field = true;
                    map.next_value::<IgnoredAny>()?;
                }
                TopField::Data => top.data = Some(map.next_value_seed(ShapeSeed::default())?),
                TopField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

impl<'de> ObjectFields<'de> for DataFields<'de> {
    fn visit_fields<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut data = DataFields::default();
        while let Some(field) = map.next_key::<DataField>()? {
            let slot = match field {
                DataField::Topic => &mut data.topic,
                DataField::MessageType => &mut data.message_type,
                DataField::Compress => &mut data.compress,
                DataField::Payload => &mut data.payload,
                DataField::Id => &mut data.id,
                DataField::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            store_raw(&mut map, slot, &mut data.duplicate_field)?;
        }
        Ok(data)
    }
}

/// Deserializes any JSON value into a [`Shape`], skipping non-objects.
struct ShapeSeed<T>(std::marker::PhantomData<T>);

impl<T> Default for ShapeSeed<T> {
    fn default() -> Self {
        ShapeSeed(std::marker::PhantomData)
    }
}

impl<'de, T: ObjectFields<'de>> DeserializeSeed<'de> for ShapeSeed<T> {
    type Value = Shape<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Shape<T>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: ObjectFields<'de>> Deserialize<'de> for Shape<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeSeed::<T>::default())
    }
}

impl<'de, T: ObjectFields<'de>> Visitor<'de> for ShapeSeed<T> {
    type Value = Shape<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape<T>, A::Error> {
        T::visit_fields(map).map(Shape::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape<T>, E> {
        Ok(Shape::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape<T>, E> {
        Ok(Shape::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape<T>, E> {
        Ok(Shape::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape<T>, E> {
        Ok(Shape::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape<T>, E> {
        Ok(Shape::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape<T>, E> {
        Ok(Shape::Other)
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
