//! The HTTP endpoints: the admin/backend API (PROTOCOL.md §6), `/health`, the monitoring
//! endpoints (`/metrics`, `/stats`, `/dashboard`) and `POST /admin/reload`.
//!
//! Responsibility: given a complete request (head fields + body) and the worker's broker,
//! authorize it and perform it through the same broker functions the WebSocket path uses
//! (one `publish`, so checks cannot drift apart), returning status + JSON body. It must not
//! touch sockets: the runtime reads the request and writes the response.
//!
//! Refusals: 401 missing/invalid admin token or address outside `adminSourceAddress`;
//! 403 token lacks the permission; 404 unknown app/path; 400 malformed body; 405 wrong
//! method; 413 is decided by the runtime before the body is read.
//!
//! `POST /token/anonymous/{appId}` (no token; README "Anonymous tokens") issues a client
//! token: 404 unknown app or anonymous tokens off, 403 address outside
//! `clientSourceAddress`, 400 bad body or unavailable `alg`, 429 + `Retry-After` over the
//! per-address rate.

use crate::auth::{AnonymousError, PermissionSet};
use crate::broker::anonymous::RateDecision;
use crate::broker::apps::{canonical_ip, App, AppCounters, Registry};
use crate::broker::session::parse_connection_id;
use crate::broker::worker::{Found, Worker};
use crate::control::{ControlRequest, ReloadOutcome};
use crate::metrics::{self, WorkerMetrics};
use crate::protocol::command::validate_topic;
use crate::protocol::http::bearer_token;
use crate::protocol::nesting::{nesting_exceeds, MAX_JSON_NESTING};
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
    /// `POST /admin/reload`: the control thread answers with the outcome.
    WaitForControl(crossbeam_channel::Receiver<ReloadOutcome>),
}

/// The response to `POST /admin/reload` once the control thread answered (`None`: it did
/// not answer in time).
pub fn reload_reply(outcome: Option<ReloadOutcome>) -> ApiResponse {
    match outcome {
        Some(Ok(summary)) => ApiResponse::json(
            200,
            &serde_json::json!({ "ok": true, "reload": summary }).to_string(),
        ),
        Some(Err(error)) => ApiResponse::error(
            422,
            &format!("configuration rejected, the previous one stays in force: {error}"),
        ),
        None => ApiResponse::error(504, "the reload did not finish in time; see the server log"),
    }
}

/// The live dashboard page (static, no build step; polls `/stats` every second).
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

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
    /// Extra header fields (`Retry-After`, `Cache-Control`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiResponse {
    fn json(status: u16, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            content_type: "application/json",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
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
    if request.path.trim_matches('/') == "admin/reload" {
        return admin_reload(worker, request);
    }
    let mut pending = None;
    let response = respond(worker, io_driver, request, &mut pending);
    match pending {
        Some(answer) => ApiReply::WaitForWorker(answer),
        None => ApiReply::Ready(response),
    }
}

/// `POST /admin/reload`: guarded by a token of `server.adminKey`; relayed to the control
/// thread, which re-reads the configuration file.
fn admin_reload(worker: &Worker, request: &ApiRequest<'_>) -> ApiReply {
    if request.method != "POST" {
        return ApiReply::Ready(ApiResponse::error(405, "method not allowed"));
    }
    let registry = worker.registry();
    let Some(verifier) = &registry.server_admin_verifier else {
        return ApiReply::Ready(ApiResponse::error(
            403,
            "no server.adminKey is configured: reload with SIGHUP",
        ));
    };
    let Some(token) = request.authorization.and_then(bearer_token) else {
        return ApiReply::Ready(ApiResponse::error(401, "missing bearer token"));
    };
    if let Err(error) = verifier.verify(token, unix_now()) {
        return ApiReply::Ready(ApiResponse::error(401, &format!("invalid token: {error}")));
    }
    let Some(control) = worker.control() else {
        return ApiReply::Ready(ApiResponse::error(503, "no control thread"));
    };
    let (reply, outcome) = crossbeam_channel::bounded(1);
    match control.try_send(ControlRequest::Reload { reply: Some(reply) }) {
        Ok(()) => ApiReply::WaitForControl(outcome),
        Err(_) => ApiReply::Ready(ApiResponse::error(
            503,
            "too many reloads pending; retry shortly",
        )),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Serves a monitoring endpoint to peers inside `server.monitoringSourceAddress`.
fn monitoring(
    worker: &Worker,
    request: &ApiRequest<'_>,
    respond: impl FnOnce(&Registry) -> ApiResponse,
) -> ApiResponse {
    let registry = worker.registry();
    if !registry
        .monitoring_sources
        .allows(canonical_ip(request.peer))
    {
        return ApiResponse::error(403, "source address not allowed");
    }
    only_get(request, || respond(&registry))
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
        ["metrics"] => monitoring(worker, request, |registry| ApiResponse {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: metrics::render(
                &worker.metrics,
                io_driver,
                registry,
                worker.outbox.bus_metrics(),
            )
            .into_bytes(),
            headers: Vec::new(),
        }),
        ["stats"] => monitoring(worker, request, |registry| ApiResponse {
            status: 200,
            content_type: "application/json",
            body: crate::stats::stats_json(&worker.metrics, io_driver, registry).into_bytes(),
            headers: Vec::new(),
        }),
        ["dashboard"] => monitoring(worker, request, |_| ApiResponse {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: DASHBOARD_HTML.as_bytes().to_vec(),
            headers: Vec::new(),
        }),
        ["token", "anonymous", app] => anonymous_token(worker, request, Some(app)),
        ["token", "anonymous"] => anonymous_token(worker, request, None),
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

/// `POST /token/anonymous/{appId}` with an optional body `{"alg": "ES512"}`, or
/// `POST /token/anonymous` with the app in the body: `{"appId": "...", "alg": "ES512"}`.
fn anonymous_token(
    worker: &Worker,
    request: &ApiRequest<'_>,
    path_app: Option<&str>,
) -> ApiResponse {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Body {
        #[serde(default)]
        alg: Option<String>,
        #[serde(default)]
        app_id: Option<String>,
    }
    if request.method != "POST" {
        return ApiResponse::error(405, "method not allowed");
    }
    let body = if request.body.iter().all(u8::is_ascii_whitespace) {
        Body {
            alg: None,
            app_id: None,
        }
    } else if nesting_exceeds(request.body, MAX_JSON_NESTING) {
        return ApiResponse::error(400, "message nesting too deep");
    } else {
        match serde_json::from_slice::<Body>(request.body) {
            Ok(body) => body,
            Err(error) => {
                return ApiResponse::error(
                    400,
                    &format!(
                        "invalid body (expected {{}}, {{\"alg\": \"ES512\"}} or {{\"appId\": \"...\"}}): {error}"
                    ),
                )
            }
        }
    };
    let app_id = match (path_app, body.app_id.as_deref()) {
        (Some(path), Some(named)) if path != named => {
            return ApiResponse::error(400, "appId in the body differs from the path");
        }
        (Some(path), _) => path,
        (None, Some(named)) => named,
        (None, None) => {
            return ApiResponse::error(
                400,
                "name the app: POST /token/anonymous/{appId} or a body with \"appId\"",
            )
        }
    };
    let registry = worker.registry();
    let Some(app) = registry.get(app_id) else {
        return ApiResponse::error(404, "unknown app");
    };
    let Some(endpoint) = &app.anonymous else {
        return ApiResponse::error(404, "anonymous tokens are not enabled for this app");
    };
    if !app.client_sources.allows(canonical_ip(request.peer)) {
        return ApiResponse::error(403, "source address not allowed");
    }
    let requested = body.alg;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let counters = app.counters.get(worker.index);
    if let RateDecision::Limited { retry_after_s } = endpoint.limiter.check(request.peer, now) {
        if let Some(counters) = counters {
            AppCounters::add(&counters.anonymous_limited, 1);
        }
        let mut response = ApiResponse::error(
            429,
            "too many anonymous tokens from this address; retry later",
        );
        response
            .headers
            .push(("Retry-After", retry_after_s.to_string()));
        return response;
    }
    match endpoint.issuer.issue(requested.as_deref(), now) {
        Ok(issued) => {
            if let Some(counters) = counters {
                AppCounters::add(&counters.anonymous_issued, 1);
            }
            let body = serde_json::json!({
                "access_token": issued.token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in_s,
                "sub": issued.subject,
                "alg": issued.algorithm.name(),
            });
            let mut response = ApiResponse::json(200, &body.to_string());
            // RFC 6749 §5.1: token responses are never cached.
            response.headers.push(("Cache-Control", "no-store".into()));
            response
        }
        Err(error @ AnonymousError::AlgorithmNotAvailable { .. }) => {
            ApiResponse::error(400, &error.to_string())
        }
        Err(error) => ApiResponse::error(500, &error.to_string()),
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
    let registry = worker.registry();
    let Some(app) = registry.get(app_id) else {
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
    match verifier.verify(token, unix_now()) {
        Ok(claims) => action(app, &PermissionSet::compile(&claims.permissions)),
        Err(error) => ApiResponse::error(401, &format!("invalid token: {error}")),
    }
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

fn publish(worker: &Worker, app: &App, permissions: &PermissionSet, body: &[u8]) -> ApiResponse {
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

fn unsubscribe(
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
