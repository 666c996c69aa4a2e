//! The HTTP endpoints: the admin/backend API (PROTOCOL.md §6) and `/health`, `/metrics`.
//!
//! Responsibility: given a complete request (head fields + body) and the worker's broker,
//! authorize it and perform it through the same broker functions the WebSocket path uses
//! (one `publish`, so checks cannot drift apart), returning status + JSON body. It must not
//! touch sockets: the runtime reads the request and writes the response.
//!
//! Refusals: 401 missing/invalid admin token or address outside `adminSourceAddress`;
//! 403 token lacks the permission; 404 unknown app/path; 400 malformed body; 405 wrong
//! method; 413 is decided by the runtime before the body is read.

use crate::auth::PermissionSet;
use crate::broker::apps::{canonical_ip, App};
use crate::broker::session::parse_connection_id;
use crate::broker::worker::{Found, Worker};
use crate::metrics;
use crate::protocol::command::validate_topic;
use crate::protocol::http::bearer_token;
use crate::topic::pattern::Pattern;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::net::IpAddr;
use std::sync::Arc;

/// Most topic patterns one unsubscribe call may carry (PROTOCOL.md §6).
pub const MAX_UNSUBSCRIBE_PATTERNS: usize = 50;

/// A request as the runtime read it.
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    /// The client address (the TCP peer, or `X-Forwarded-For` from a trusted proxy).
    pub peer: IpAddr,
    pub body: &'a [u8],
}

/// The answer now, or once another worker has answered (`DELETE` of one connection that
/// lives elsewhere): the runtime waits on the channel, then calls [`connection_reply`].
pub enum ApiReply {
    Ready(ApiResponse),
    WaitForWorker(crossbeam_channel::Receiver<bool>),
}

/// The response to a single-connection `DELETE` once the owning worker answered
/// (`None`: it did not answer in time).
pub fn connection_reply(found: Option<bool>) -> ApiResponse {
    match found {
        Some(true) => ApiResponse::ok(),
        Some(false) => ApiResponse::error(404, "unknown connection"),
        None => ApiResponse::error(504, "the worker holding the connection did not answer"),
    }
}

/// What to answer.
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl ApiResponse {
    fn json(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            content_type: "application/json",
            body: body.as_bytes().to_vec(),
        }
    }

    fn error(status: u16, message: &str) -> ApiResponse {
        ApiResponse::json(status, &serde_json::json!({ "error": message }).to_string())
    }

    fn ok() -> ApiResponse {
        ApiResponse::json(200, r#"{"ok":true}"#)
    }
}

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

/// Serves one request.
pub fn handle(worker: &Worker, io_driver: &str, request: &ApiRequest<'_>) -> ApiReply {
    let mut pending = None;
    let response = respond(worker, io_driver, request, &mut pending);
    match pending {
        Some(answer) => ApiReply::WaitForWorker(answer),
        None => ApiReply::Ready(response),
    }
}

fn respond(
    worker: &Worker,
    io_driver: &str,
    request: &ApiRequest<'_>,
    pending: &mut Option<crossbeam_channel::Receiver<bool>>,
) -> ApiResponse {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["health"] => only_get(request, || ApiResponse::json(200, r#"{"status":"ok"}"#)),
        ["metrics"] => only_get(request, || ApiResponse {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: metrics::render(&worker.metrics, io_driver, worker.outbox.bus_metrics())
                .into_bytes(),
        }),
        ["api", "topics", app, "publish"] => {
            with_admin(worker, request, app, "POST", |app, permissions| {
                publish(worker, app, permissions, request.body)
            })
        }
        ["api", "topics", app, "unsubscribe"] => {
            with_admin(worker, request, app, "POST", |app, permissions| {
                unsubscribe(worker, app, permissions, request.body)
            })
        }
        ["api", "connections", app] => {
            with_admin(worker, request, app, "DELETE", |app, permissions| {
                if !permissions.can_manage_connections() {
                    return ApiResponse::error(
                        403,
                        "missing permission realtime:admin:manage:connections",
                    );
                }
                worker.terminate_app(app.index);
                ApiResponse::ok()
            })
        }
        ["api", "connections", app, connection] => {
            with_admin(worker, request, app, "DELETE", |app, permissions| {
                if !permissions.can_manage_connections() {
                    return ApiResponse::error(
                        403,
                        "missing permission realtime:admin:manage:connections",
                    );
                }
                let Some(id) = parse_connection_id(connection) else {
                    return ApiResponse::error(404, "unknown connection");
                };
                match worker.terminate_connection(app.index, id) {
                    Found::Yes => ApiResponse::ok(),
                    Found::No => ApiResponse::error(404, "unknown connection"),
                    Found::Later(answer) => {
                        *pending = Some(answer);
                        ApiResponse::ok()
                    }
                }
            })
        }
        _ => ApiResponse::error(404, "not found"),
    }
}

fn only_get(request: &ApiRequest<'_>, respond: impl FnOnce() -> ApiResponse) -> ApiResponse {
    if request.method == "GET" || request.method == "HEAD" {
        respond()
    } else {
        ApiResponse::error(405, "method not allowed")
    }
}

/// Checks method, app, source address and admin token, then runs `action`.
fn with_admin(
    worker: &Worker,
    request: &ApiRequest<'_>,
    app_id: &str,
    method: &str,
    action: impl FnOnce(&Arc<App>, &PermissionSet) -> ApiResponse,
) -> ApiResponse {
    if request.method != method {
        return ApiResponse::error(405, "method not allowed");
    }
    let Some(app) = worker.registry.get(app_id) else {
        return ApiResponse::error(404, "unknown app");
    };
    if !app.admin_sources.allows(canonical_ip(request.peer)) {
        return ApiResponse::error(401, "source address not allowed");
    }
    let Some(verifier) = &app.admin_verifier else {
        return ApiResponse::error(401, "this app has no adminKey: the HTTP API is disabled");
    };
    let Some(token) = request.authorization.and_then(bearer_token) else {
        return ApiResponse::error(401, "missing bearer token");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match verifier.verify(token, now) {
        Ok(claims) => action(app, &PermissionSet::compile(&claims.permissions)),
        Err(error) => ApiResponse::error(401, &format!("invalid token: {error}")),
    }
}

fn publish(worker: &Worker, app: &App, permissions: &PermissionSet, body: &[u8]) -> ApiResponse {
    let parsed: PublishBody<'_> = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(error) => return ApiResponse::error(400, &format!("invalid body: {error}")),
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
    ApiResponse::ok()
}

fn unsubscribe(
    worker: &Worker,
    app: &App,
    permissions: &PermissionSet,
    body: &[u8],
) -> ApiResponse {
    if !permissions.can_manage_subscribers() {
        return ApiResponse::error(403, "missing permission realtime:admin:manage:subscribers");
    }
    let parsed: UnsubscribeBody = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(error) => return ApiResponse::error(400, &format!("invalid body: {error}")),
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
