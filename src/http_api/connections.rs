//! `DELETE /api/connections/{appId}` (every connection of the app) and
//! `DELETE /api/connections/{appId}/{connectionId}` (one), admitted with the app's admin
//! token and needing `realtime:admin:manage:connections`.
//!
//! Responsibility: ask the broker to close the connections; a connection on another
//! worker is answered once that worker has (the runtime waits, then calls
//! [`connection_reply`]). Must not: touch sockets or wait itself.

use super::{ApiReply, ApiResponse};
use crate::auth::PermissionSet;
use crate::broker::apps::App;
use crate::broker::session::parse_connection_id;
use crate::broker::worker::{Found, Worker};

/// The refusal without `realtime:admin:manage:connections`.
const MISSING_PERMISSION: &str = "missing permission realtime:admin:manage:connections";

/// The response to a single-connection `DELETE` once the owning worker answered
/// (`None`: it did not answer in time).
pub fn connection_reply(found: Option<bool>) -> ApiResponse {
    match found {
        Some(true) => ApiResponse::ok(),
        Some(false) => ApiResponse::error(404, "unknown connection"),
        None => ApiResponse::error(504, "the worker holding the connection did not answer"),
    }
}

/// `DELETE /api/connections/{appId}`: closes every connection of the app, on every worker.
pub(super) fn terminate_app(
    worker: &Worker,
    app: &App,
    permissions: &PermissionSet,
) -> ApiResponse {
    if !permissions.can_manage_connections() {
        return ApiResponse::error(403, MISSING_PERMISSION);
    }
    worker.terminate_app(app.index);
    ApiResponse::ok()
}

/// `DELETE /api/connections/{appId}/{connectionId}`: answered at once when the connection
/// is (or is not) on this worker, later when it lives on another one.
pub(super) fn terminate_connection(
    worker: &Worker,
    app: &App,
    permissions: &PermissionSet,
    connection: &str,
) -> ApiReply {
    if !permissions.can_manage_connections() {
        return ApiReply::Ready(ApiResponse::error(403, MISSING_PERMISSION));
    }
    let Some(id) = parse_connection_id(connection) else {
        return ApiReply::Ready(ApiResponse::error(404, "unknown connection"));
    };
    match worker.terminate_connection(app.index, id) {
        Found::Yes => ApiReply::Ready(ApiResponse::ok()),
        Found::No => ApiReply::Ready(ApiResponse::error(404, "unknown connection")),
        Found::Later(answer) => ApiReply::WaitForWorker(answer),
    }
}
