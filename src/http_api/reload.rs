//! `POST /admin/reload`: a token of `server.adminKey` asks the control thread to re-read
//! the configuration file (as SIGHUP does).
//!
//! Responsibility: check the head (method, token), relay the request to the control
//! thread over its bounded channel, and turn its outcome into the answer
//! ([`reload_reply`], called by the runtime once the outcome arrived). Must not: read the
//! file or wait (the runtime waits on the reply channel).

use super::{unix_now, ApiReply, ApiRequest, ApiResponse};
use crate::broker::worker::Worker;
use crate::control::{ControlRequest, ReloadOutcome};
use crate::protocol::http::bearer_token;

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

/// The head checks of `POST /admin/reload`: a token of `server.adminKey`.
pub(super) fn admit_reload(worker: &Worker, request: &ApiRequest<'_>) -> Result<(), ApiResponse> {
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
/// configuration file; 503 without a control thread or with its queue full.
pub(super) fn admin_reload(
    control: Option<&crossbeam_channel::Sender<ControlRequest>>,
) -> ApiReply {
    let Some(control) = control else {
        return ApiReply::Ready(ApiResponse::error(503, "no control thread"));
    };
    let (reply, outcome) = flume::bounded(1);
    match control.try_send(ControlRequest::Reload { reply: Some(reply) }) {
        Ok(()) => ApiReply::WaitForControl(outcome),
        Err(_) => ApiReply::Ready(ApiResponse::error(
            503,
            "too many reloads pending; retry shortly",
        )),
    }
}
