//! `POST /api/topics/{appId}/publish` and `POST /api/topics/{appId}/unsubscribe`
//! (PROTOCOL.md §6), admitted with the app's admin token.
//!
//! Responsibility: parse and check the body (nesting bound first, then serde), check the
//! caller's permission, and hand over to the broker's one `publish` path (the WebSocket
//! path's checks and fan-out) or its unsubscribe call. Must not: touch sockets.

use super::ApiResponse;
use crate::auth::PermissionSet;
use crate::broker::apps::{App, AppCounters};
use crate::broker::worker::Worker;
use crate::metrics::WorkerMetrics;
use crate::protocol::command::validate_topic;
use crate::protocol::nesting::{nesting_exceeds, MAX_JSON_NESTING};
use crate::topic::pattern::Pattern;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

/// Most topic patterns one unsubscribe call may carry (PROTOCOL.md §6).
pub const MAX_UNSUBSCRIBE_PATTERNS: usize = 50;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishBody<'a> {
    #[serde(borrow)]
    topic: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    message: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    message_type: Option<String>,
    #[serde(default)]
    compress: Option<bool>,
}

/// A field that is present, `null` included (serde maps `null` to `None` otherwise).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnsubscribeBody {
    topic_patterns: Vec<String>,
    subject: String,
}

/// Parses a JSON request body; 400 for JSON nested deeper than [`MAX_JSON_NESTING`]
/// (checked first, whatever the parser) or for a body that does not parse.
fn parse_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiResponse> {
    if nesting_exceeds(body, MAX_JSON_NESTING) {
        return Err(ApiResponse::error(
            400,
            &format!("message nesting too deep (more than {MAX_JSON_NESTING} levels)"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiResponse::error(400, &format!("invalid body: {error}")))
}

/// `POST /api/topics/{appId}/publish`: `{"topic", "message" (or "payload"), "messageType",
/// "compress"}`.
pub(super) fn publish(
    worker: &Worker,
    app: &App,
    permissions: &PermissionSet,
    body: &[u8],
) -> ApiResponse {
    let parsed: PublishBody<'_> = match parse_body(body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(topic) = parsed.topic else {
        return ApiResponse::error(400, "missing topic");
    };
    if validate_topic(&topic).is_err() {
        return ApiResponse::error(400, "invalid topic");
    }
    let Some(message) = parsed.message.or(parsed.payload) else {
        return ApiResponse::error(400, "missing message");
    };
    if !permissions.can_publish(&topic) {
        return ApiResponse::error(403, "publishing to topic is forbidden");
    }
    let message_type = match parsed.message_type.as_deref() {
        None | Some("") => "broadcast",
        Some(other) => other,
    };
    worker.publish_http(
        app,
        &topic,
        message_type,
        message.get().as_bytes(),
        parsed.compress.unwrap_or(false),
    );
    WorkerMetrics::add(&worker.metrics().http_publications, 1);
    if let Some(counters) = app.counters.get(worker.index) {
        AppCounters::add(&counters.http_publications, 1);
    }
    ApiResponse::ok()
}

/// `POST /api/topics/{appId}/unsubscribe`: `{"topicPatterns": [...], "subject"}` removes
/// the subject's connections' subscriptions that match a pattern.
pub(super) fn unsubscribe(
    worker: &Worker,
    app: &App,
    permissions: &PermissionSet,
    body: &[u8],
) -> ApiResponse {
    if !permissions.can_manage_subscribers() {
        return ApiResponse::error(403, "missing permission realtime:admin:manage:subscribers");
    }
    let parsed: UnsubscribeBody = match parse_body(body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    if parsed.topic_patterns.is_empty() || parsed.topic_patterns.len() > MAX_UNSUBSCRIBE_PATTERNS {
        return ApiResponse::error(400, "topicPatterns must hold 1 to 50 patterns");
    }
    let patterns: Arc<[Pattern]> = parsed
        .topic_patterns
        .iter()
        .map(|p| Pattern::compile(p))
        .collect();
    worker.unsubscribe_subject(app.index, &parsed.subject, patterns);
    ApiResponse::ok()
}
