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
//! # Layout
//! - this file: the request and response types, routing ([`admit`], [`handle`]) and the
//!   admin-token check the `/api/…` routes share.
//! - `publish`: `POST /api/topics/{appId}/publish` and `…/unsubscribe`.
//! - `connections`: `DELETE /api/connections/{appId}[/{connectionId}]`.
//! - `reload`: `POST /admin/reload`, relayed to the control thread.
//! - `token`: `POST /token/anonymous[/{appId}]`.
//! - `monitoring`: `/health`, `/metrics`, `/stats`, `/dashboard`.

mod connections;
mod monitoring;
mod publish;
mod reload;
mod token;

pub use connections::connection_reply;
pub use publish::MAX_UNSUBSCRIBE_PATTERNS;
pub use reload::reload_reply;

use crate::auth::{ClientAddress, PermissionSet};
use crate::broker::apps::App;
use crate::broker::worker::Worker;
use crate::control::{ControlRequest, ReloadOutcome};
use crate::protocol::http::bearer_token;
use std::sync::Arc;

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

/// What [`handle`] serves a request with, built by the runtime for each request (three
/// references: no allocation).
pub struct Api<'a> {
    /// The worker the request arrived on.
    pub broker: &'a Worker,
    /// The io driver the workers run (`/metrics`, `/stats`).
    pub io_driver: &'a str,
    /// The control thread's request channel (`POST /admin/reload`); `None` without a
    /// control thread (the reload answers 503).
    pub control: Option<&'a crossbeam_channel::Sender<ControlRequest>>,
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
    WaitForWorker(flume::Receiver<bool>),
    /// `POST /admin/reload`: the control thread answers with the outcome.
    WaitForControl(flume::Receiver<ReloadOutcome>),
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

/// Judges a request head before any of its body is read: route, method, app, source
/// address and token, in the order (and with the statuses) of a whole request. `Err` is
/// the answer, which the runtime sends without reading the body (closing the connection
/// unless the body had already arrived whole).
pub fn admit<'a>(worker: &Worker, request: &ApiRequest<'a>) -> Result<Admitted<'a>, ApiResponse> {
    if request.path.trim_matches('/') == "admin/reload" {
        return reload::admit_reload(worker, request).map(|()| Admitted {
            action: Action::Reload,
        });
    }
    let segments: Vec<&'a str> = request.path.trim_matches('/').split('/').collect();
    let action = match segments.as_slice() {
        ["health"] => only_get(request, || Action::Health)?,
        ["metrics"] => monitoring::admit(worker, request, Action::Metrics)?,
        ["stats"] => monitoring::admit(worker, request, Action::Stats)?,
        ["dashboard"] => monitoring::admit(worker, request, Action::Dashboard)?,
        ["token", "anonymous", app] => {
            token::admit_anonymous(worker, request, app)?;
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
    api: &Api<'_>,
    request: &ApiRequest<'_>,
    admitted: Admitted<'_>,
    body: &[u8],
) -> ApiReply {
    let worker = api.broker;
    let response = match admitted.action {
        Action::Reload => return reload::admin_reload(api.control),
        Action::Health => monitoring::health(),
        Action::Metrics => monitoring::metrics(worker, api.io_driver),
        Action::Stats => monitoring::stats(worker, api.io_driver),
        Action::Dashboard => monitoring::dashboard(),
        Action::AnonymousToken(path_app) => token::anonymous_token(worker, request, body, path_app),
        Action::Publish(app, permissions) => publish::publish(worker, &app, &permissions, body),
        Action::Unsubscribe(app, permissions) => {
            publish::unsubscribe(worker, &app, &permissions, body)
        }
        Action::TerminateApp(app, permissions) => {
            connections::terminate_app(worker, &app, &permissions)
        }
        Action::TerminateConnection(app, permissions, connection) => {
            return connections::terminate_connection(worker, &app, &permissions, connection)
        }
    };
    ApiReply::Ready(response)
}

/// The current time for token checks, in seconds since the Unix epoch (0 if the clock is
/// before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `admitted()` for `GET` and `HEAD`; 405 for any other method.
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
