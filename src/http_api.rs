//! The HTTP endpoints: the admin/backend API (PROTOCOL.md §6), `/health`, the monitoring
//! endpoints (`/metrics`, `/stats`, `/dashboard`) and `POST /admin/reload`.
//!
//! Responsibility: in two steps, judge a request head ([`admit`]: route, method, app,
//! source address, token — everything but the body), then, once the runtime has read the
//! body the admission allows, perform it ([`handle`]) through the same broker functions the
//! WebSocket path uses (one `publish`, so checks cannot drift apart), returning status +
//! JSON body. It must not touch sockets: the runtime reads the request and writes the
//! response.
//!
//! Invariant: no body is read for a request [`admit`] refuses, so a caller without a valid
//! token never makes the worker buffer more than a request head. The unauthenticated
//! routes (`/token/anonymous`, `/health`, the monitoring endpoints) take bodies of at most
//! [`MAX_UNAUTHENTICATED_BODY_BYTES`].
//!
//! Refusals: 401 missing/invalid admin token or address outside `adminSourceAddress`;
//! 403 token lacks the permission; 404 unknown app/path; 400 malformed body; 405 wrong
//! method; 413 is decided by the runtime before the body is read.
//!
//! `POST /token/anonymous/{appId}` (no token; README "Anonymous tokens") issues a client
//! token: 404 unknown app or anonymous tokens off, 403 address outside
//! `clientSourceAddress`, 400 bad body or unavailable `alg`, 429 + `Retry-After` over the
//! per-address rate.

use crate::auth::{AnonymousError, ClientAddress, PermissionSet};
use crate::broker::anonymous::RateDecision;
use crate::broker::apps::{App, AppCounters, Registry};
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
use std::sync::Arc;

/// Most topic patterns one unsubscribe call may carry (PROTOCOL.md §6).
pub const MAX_UNSUBSCRIBE_PATTERNS: usize = 50;

/// Largest body of a request on a route without credentials (`/token/anonymous`,
/// `/health`, the monitoring endpoints); beyond: 413, before it is read. The largest
/// meaningful one is `{"appId": "<128 characters>", "alg": "ES512"}`: 1 KiB leaves room for
/// whitespace while an unauthenticated caller cannot make the worker buffer more.
pub const MAX_UNAUTHENTICATED_BODY_BYTES: usize = 1024;

/// A request head as the runtime read it (the body is read only once [`admit`] agrees).
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    /// The client address (the TCP peer, or `X-Forwarded-For` through trusted proxies).
    pub peer: ClientAddress,
}

/// What an admitted request will do once its body is read; made by [`admit`] only.
pub struct Admitted<'a> {
    action: Action<'a>,
}

/// The routes, with what [`admit`] established for them.
enum Action<'a> {
    Reload,
    Health,
    Metrics,
    Stats,
    Dashboard,
    /// `POST /token/anonymous[/{appId}]`: unauthenticated; checked in full with the body.
    AnonymousToken(Option<&'a str>),
    /// The admin routes: the app and the verified caller's permissions.
    Publish(Arc<App>, PermissionSet),
    Unsubscribe(Arc<App>, PermissionSet),
    TerminateApp(Arc<App>, PermissionSet),
    TerminateConnection(Arc<App>, PermissionSet, &'a str),
}

impl Admitted<'_> {
    /// The largest body this request may have, given `maxHttpBodyBytes`.
    pub fn max_body_bytes(&self, configured: usize) -> usize {
        match self.action {
            Action::AnonymousToken(_)
            | Action::Health
            | Action::Metrics
            | Action::Stats
            | Action::Dashboard => configured.min(MAX_UNAUTHENTICATED_BODY_BYTES),
            Action::Reload
            | Action::Publish(..)
            | Action::Unsubscribe(..)
            | Action::TerminateApp(..)
            | Action::TerminateConnection(..) => configured,
        }
    }
}

/// The answer now, or once another worker has answered (`DELETE` of one connection that
/// lives elsewhere): the runtime waits on the channel, then calls [`connection_reply`].
pub enum ApiReply {
    Ready(ApiResponse),
    WaitForWorker(crate::broker::answer::Answer<bool>),
    /// `POST /admin/reload`: the control thread answers with the outcome.
    WaitForControl(crate::broker::answer::Answer<ReloadOutcome>),
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

/// Judges a request head before any of its body is read: route, method, app, source
/// address and token, in the order (and with the statuses) of a whole request. `Err` is
/// the answer, which the runtime sends without reading the body (closing the connection
/// unless the body had already arrived whole).
pub fn admit<'a>(worker: &Worker, request: &ApiRequest<'a>) -> Result<Admitted<'a>, ApiResponse> {
    if request.path.trim_matches('/') == "admin/reload" {
        return admit_reload(worker, request).map(|()| Admitted {
            action: Action::Reload,
        });
    }
    let segments: Vec<&'a str> = request.path.trim_matches('/').split('/').collect();
    let action = match segments.as_slice() {
        ["health"] => only_get(request, || Action::Health)?,
        ["metrics"] => monitoring(worker, request, Action::Metrics)?,
        ["stats"] => monitoring(worker, request, Action::Stats)?,
        ["dashboard"] => monitoring(worker, request, Action::Dashboard)?,
        ["token", "anonymous", app] => {
            admit_anonymous(worker, request, app)?;
            Action::AnonymousToken(Some(app))
        }
        ["token", "anonymous"] => {
            if request.method != "POST" {
                return Err(ApiResponse::error(405, "method not allowed"));
            }
            Action::AnonymousToken(None)
        }
        ["api", "topics", app, "publish"] => {
            let (app, permissions) = with_admin(worker, request, app, "POST")?;
            Action::Publish(app, permissions)
        }
        ["api", "topics", app, "unsubscribe"] => {
            let (app, permissions) = with_admin(worker, request, app, "POST")?;
            Action::Unsubscribe(app, permissions)
        }
        ["api", "connections", app] => {
            let (app, permissions) = with_admin(worker, request, app, "DELETE")?;
            Action::TerminateApp(app, permissions)
        }
        ["api", "connections", app, connection] => {
            let (app, permissions) = with_admin(worker, request, app, "DELETE")?;
            Action::TerminateConnection(app, permissions, connection)
        }
        _ => return Err(ApiResponse::error(404, "not found")),
    };
    Ok(Admitted { action })
}

/// Serves an admitted request with its body.
pub fn handle(
    worker: &Worker,
    io_driver: &str,
    request: &ApiRequest<'_>,
    admitted: Admitted<'_>,
    body: &[u8],
) -> ApiReply {
    let mut pending = None;
    let response = match admitted.action {
        Action::Reload => return admin_reload(worker),
        Action::Health => ApiResponse::json(200, r#"{"status":"ok"}"#),
        Action::Metrics => {
            let registry = worker.registry();
            ApiResponse {
                status: 200,
                content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body: metrics::render(
                    &worker.metrics,
                    io_driver,
                    &registry,
                    worker.outbox.bus_metrics(),
                )
                .into_bytes(),
                headers: Vec::new(),
            }
        }
        Action::Stats => ApiResponse {
            status: 200,
            content_type: "application/json",
            body: crate::stats::stats_json(&worker.metrics, io_driver, &worker.registry())
                .into_bytes(),
            headers: Vec::new(),
        },
        Action::Dashboard => ApiResponse {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: DASHBOARD_HTML.as_bytes().to_vec(),
            headers: Vec::new(),
        },
        Action::AnonymousToken(path_app) => anonymous_token(worker, request, body, path_app),
        Action::Publish(app, permissions) => publish(worker, &app, &permissions, body),
        Action::Unsubscribe(app, permissions) => unsubscribe(worker, &app, &permissions, body),
        Action::TerminateApp(app, permissions) => {
            if !permissions.can_manage_connections() {
                return ApiReply::Ready(ApiResponse::error(
                    403,
                    "missing permission realtime:admin:manage:connections",
                ));
            }
            worker.terminate_app(app.index);
            ApiResponse::ok()
        }
        Action::TerminateConnection(app, permissions, connection) => {
            terminate_connection(worker, &app, &permissions, connection, &mut pending)
        }
    };
    match pending {
        Some(answer) => ApiReply::WaitForWorker(answer),
        None => ApiReply::Ready(response),
    }
}

/// `DELETE /api/connections/{appId}/{connectionId}`; `pending` is set when the connection
/// lives on another worker, whose answer the runtime waits for.
fn terminate_connection(
    worker: &Worker,
    app: &App,
    permissions: &PermissionSet,
    connection: &str,
    pending: &mut Option<crate::broker::answer::Answer<bool>>,
) -> ApiResponse {
    if !permissions.can_manage_connections() {
        return ApiResponse::error(403, "missing permission realtime:admin:manage:connections");
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
}

/// The head checks of `POST /admin/reload`: a token of `server.adminKey`.
fn admit_reload(worker: &Worker, request: &ApiRequest<'_>) -> Result<(), ApiResponse> {
    if request.method != "POST" {
        return Err(ApiResponse::error(405, "method not allowed"));
    }
    let registry = worker.registry();
    let Some(verifier) = &registry.server_admin_verifier else {
        return Err(ApiResponse::error(
            403,
            "no server.adminKey is configured: reload with SIGHUP",
        ));
    };
    let Some(token) = request.authorization.and_then(bearer_token) else {
        return Err(ApiResponse::error(401, "missing bearer token"));
    };
    if let Err(error) = verifier.verify(token, unix_now()) {
        return Err(ApiResponse::error(401, &format!("invalid token: {error}")));
    }
    Ok(())
}

/// `POST /admin/reload` (admitted): relayed to the control thread, which re-reads the
/// configuration file.
fn admin_reload(worker: &Worker) -> ApiReply {
    let Some(control) = worker.control() else {
        return ApiReply::Ready(ApiResponse::error(503, "no control thread"));
    };
    let (reply, outcome) = crate::broker::answer::answer();
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

/// Admits a monitoring endpoint for peers inside `server.monitoringSourceAddress`.
fn monitoring<'a>(
    worker: &Worker,
    request: &ApiRequest<'_>,
    action: Action<'a>,
) -> Result<Action<'a>, ApiResponse> {
    let registry: Arc<Registry> = worker.registry();
    if !registry.monitoring_sources.allows_source(request.peer) {
        return Err(ApiResponse::error(403, "source address not allowed"));
    }
    only_get(request, || action)
}

/// The head checks of `POST /token/anonymous/{appId}` (the app is in the path): method,
/// app, anonymous tokens on, source address. [`anonymous_token`] repeats them (they are
/// lookups) along with what needs the body.
fn admit_anonymous(
    worker: &Worker,
    request: &ApiRequest<'_>,
    app_id: &str,
) -> Result<(), ApiResponse> {
    if request.method != "POST" {
        return Err(ApiResponse::error(405, "method not allowed"));
    }
    let registry = worker.registry();
    let Some(app) = registry.get(app_id) else {
        return Err(ApiResponse::error(404, "unknown app"));
    };
    if app.anonymous.is_none() {
        return Err(ApiResponse::error(
            404,
            "anonymous tokens are not enabled for this app",
        ));
    }
    if !app.client_sources.allows_source(request.peer) {
        return Err(ApiResponse::error(403, "source address not allowed"));
    }
    Ok(())
}

/// `POST /token/anonymous/{appId}` with an optional body `{"alg": "ES512"}`, or
/// `POST /token/anonymous` with the app in the body: `{"appId": "...", "alg": "ES512"}`.
fn anonymous_token(
    worker: &Worker,
    request: &ApiRequest<'_>,
    body: &[u8],
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
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Body {
            alg: None,
            app_id: None,
        }
    } else if nesting_exceeds(body, MAX_JSON_NESTING) {
        return ApiResponse::error(400, "message nesting too deep");
    } else {
        match serde_json::from_slice::<Body>(body) {
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
    if !app.client_sources.allows_source(request.peer) {
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

fn only_get<T>(request: &ApiRequest<'_>, admitted: impl FnOnce() -> T) -> Result<T, ApiResponse> {
    if request.method == "GET" || request.method == "HEAD" {
        Ok(admitted())
    } else {
        Err(ApiResponse::error(405, "method not allowed"))
    }
}

/// Checks method, app, source address and admin token: the app and the caller's
/// permissions, or the refusal.
fn with_admin(
    worker: &Worker,
    request: &ApiRequest<'_>,
    app_id: &str,
    method: &str,
) -> Result<(Arc<App>, PermissionSet), ApiResponse> {
    if request.method != method {
        return Err(ApiResponse::error(405, "method not allowed"));
    }
    let registry = worker.registry();
    let Some(app) = registry.get(app_id) else {
        return Err(ApiResponse::error(404, "unknown app"));
    };
    if !app.admin_sources.allows_source(request.peer) {
        return Err(ApiResponse::error(401, "source address not allowed"));
    }
    let Some(verifier) = &app.admin_verifier else {
        return Err(ApiResponse::error(
            401,
            "this app has no adminKey: the HTTP API is disabled",
        ));
    };
    let Some(token) = request.authorization.and_then(bearer_token) else {
        return Err(ApiResponse::error(401, "missing bearer token"));
    };
    match verifier.verify(token, unix_now()) {
        Ok(claims) => Ok((app.clone(), PermissionSet::compile(&claims.permissions))),
        Err(error) => Err(ApiResponse::error(401, &format!("invalid token: {error}"))),
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
