//! `POST /token/anonymous/{appId}` (no token; README "Anonymous tokens") issues a client
//! token: 404 unknown app or anonymous tokens off, 403 address outside
//! `clientSourceAddress`, 400 bad body or unavailable `alg`, 429 + `Retry-After` over the
//! per-address rate.
//!
//! Responsibility: the head checks ([`admit_anonymous`]) and, with the body, the issuing
//! through the app's `broker::anonymous` endpoint (rate limiter + issuer), counted per app.
//! Must not: touch sockets; it reads the clock only for the token's times.

use super::{ApiRequest, ApiResponse};
use crate::auth::AnonymousError;
use crate::broker::anonymous::RateDecision;
use crate::broker::apps::AppCounters;
use crate::broker::worker::Worker;
use crate::protocol::nesting::{nesting_exceeds, MAX_JSON_NESTING};
use serde::Deserialize;

/// The head checks of `POST /token/anonymous/{appId}` (the app is in the path): method,
/// app, anonymous tokens on, source address. [`anonymous_token`] repeats them (they are
/// lookups) along with what needs the body.
pub(super) fn admit_anonymous(
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
pub(super) fn anonymous_token(
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
