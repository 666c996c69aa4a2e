//! One accepted TCP connection: HTTP request(s), the WebSocket upgrade, then the reader.
//!
//! Responsibility: read bytes, hand them to the sans-IO parsers and the broker, and write
//! handshake responses. Refusals happen before the upgrade as plain HTTP with a JSON body
//! (404 app, 403 address, 401 token, 429 limit, 400 malformed). After the upgrade this task
//! runs the connection's reader (`reader`, the same loop for plain and TLS). Writes happen
//! in `writer`; this task never waits on a write except for handshake responses. It sits
//! at the top of the connection modules: `reader` → `writer` → `stream` (the transport) →
//! `tls`/`sys`; none of them imports it.
//!
//! HTTP-phase bounds: a connection counts against `maxHttpConnectionsPerWorker` from its
//! accept until it upgrades or ends ([`HttpPhase`], taken by the accept loop); each request, head and body, must
//! arrive within `handshakeTimeoutSeconds` (from the accept for the first, from its first
//! byte for a later keep-alive one); and an HTTP API request's head is judged
//! (`http_api::admit`) before any of its body is read.

use super::http_phase::{next_request, read_body, write_api_response, HttpPhase};
use super::stream::Stream;
use super::{sys, WorkerRuntime};
use crate::auth::{forwarded, ClientAddress};
use crate::broker::apps::LimitRefusal;
use crate::broker::session::{parse_connection_id, Session};
use crate::error::CloseKind;
use crate::http_api::{self, ApiReply, ApiRequest, ApiResponse};
use crate::metrics::{Refusal, WorkerMetrics};
use crate::protocol::deflate;
use crate::protocol::http::{self as http1, RequestHead};
use monoio::net::TcpStream;
use monoio::time::Instant;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The parts of a request head the runtime needs after the read buffer moves on.
struct Head {
    method: String,
    path: String,
    token: Option<String>,
    authorization: Option<String>,
    /// Every `X-Forwarded-For` line, joined in order.
    forwarded_for: Option<String>,
    content_length: Result<Option<usize>, ()>,
    chunked: bool,
    keep_alive: bool,
    /// `Some` when the request asks for a WebSocket upgrade: the accept key or why not.
    upgrade: Option<Result<String, String>>,
    /// The permessage-deflate offer we accept, if the client made one.
    deflate: Option<deflate::Negotiated>,
    head_len: usize,
}

impl Head {
    fn from_request(head: &RequestHead<'_>) -> Head {
        let authorization = head.header("authorization").map(str::to_string);
        let token = head
            .query
            .and_then(|query| http1::query_param(query, "access_token"))
            .map(|token| token.into_owned())
            .or_else(|| {
                authorization
                    .as_deref()
                    .and_then(http1::bearer_token)
                    .map(str::to_string)
            });
        Head {
            method: head.method.to_string(),
            path: head.path.to_string(),
            token,
            authorization,
            forwarded_for: head.joined_header("x-forwarded-for"),
            content_length: head.content_length().map_err(|_| ()),
            chunked: head
                .header("transfer-encoding")
                .is_some_and(|value| value.to_ascii_lowercase().contains("chunked")),
            keep_alive: head.keep_alive(),
            deflate: head
                .header("sec-websocket-extensions")
                .and_then(deflate::negotiate),
            upgrade: http1::is_websocket_upgrade(head)
                .then(|| http1::websocket_accept(head).map_err(|e| e.to_string())),
            head_len: head.head_len,
        }
    }
}

/// Serves one accepted connection until it ends; `tls` on a TLS listener. `http_phase` is
/// its place among the worker's connections in the HTTP phase, given back at the upgrade.
pub async fn serve(
    runtime: Rc<WorkerRuntime>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    http_phase: HttpPhase,
) {
    if sys::prepare(&tcp).is_err() {
        return;
    }
    let send_buffer = runtime.broker.registry().settings.socket_send_buffer_bytes;
    if send_buffer > 0 {
        sys::set_send_buffer(&tcp, send_buffer);
    }
    let stream = match tls {
        None => Stream::plain(tcp),
        Some(config) => {
            let Some(state) = super::tls::accept(&config) else {
                return;
            };
            Stream::with_tls(tcp, state)
        }
    };
    let stream = Rc::new(stream);
    let slot = runtime.register(stream.clone());
    // The HTTP phase's state (request buffer, timers, head) is ~1.5 KB: boxed, it is freed
    // at the upgrade instead of living inside every idle connection's task.
    let upgraded = Box::pin(serve_http(&runtime, &stream, peer, slot)).await;
    // Upgraded or ending: either way no longer in the HTTP phase.
    drop(http_phase);
    if let Some((session, leftover)) = upgraded {
        websocket(&runtime, &stream, &session, leftover).await;
    }
    runtime.unregister(slot);
}

/// How reading one request head ended.
enum HeadRead {
    Complete(Head),
    /// Unparseable: answer with this status and message, then close.
    Malformed(u16, String),
    /// The peer ended or the read failed.
    Ended,
    /// Not complete by the request's deadline.
    TimedOut,
}

/// Reads until `buffer` holds a complete request head, by `deadline`.
async fn read_head(
    runtime: &WorkerRuntime,
    stream: &Stream,
    buffer: &mut Vec<u8>,
    deadline: Instant,
) -> HeadRead {
    let read = monoio::time::timeout_at(deadline, async {
        loop {
            match http1::parse_request(buffer) {
                Ok(Some(head)) => return HeadRead::Complete(Head::from_request(&head)),
                Ok(None) => {}
                Err(error) => return HeadRead::Malformed(error.status(), error.to_string()),
            }
            match stream.read_more(runtime.broker.metrics(), buffer).await {
                Ok(0) | Err(_) => return HeadRead::Ended,
                Ok(_) => {}
            }
        }
    })
    .await;
    read.unwrap_or(HeadRead::TimedOut)
}

/// HTTP phase. Returns the session and the bytes after the request head when upgraded.
async fn serve_http(
    runtime: &Rc<WorkerRuntime>,
    stream: &Stream,
    peer: SocketAddr,
    slot: usize,
) -> Option<(Rc<Session>, Vec<u8>)> {
    let settings = runtime.broker.registry().settings.clone();
    let mut buffer: Vec<u8> = Vec::new();
    // The first request (TLS handshake included) must be complete within the handshake
    // timeout of the accept; a later one within the same time of its first byte.
    let mut deadline = Instant::now() + settings.handshake_timeout;
    loop {
        let head = match read_head(runtime, stream, &mut buffer, deadline).await {
            HeadRead::Complete(head) => head,
            HeadRead::Malformed(status, message) => {
                let reason = Refusal::for_head_status(status);
                respond_error(runtime, stream, status, reason, &message, false).await;
                return None;
            }
            HeadRead::Ended => return None,
            HeadRead::TimedOut => {
                runtime.broker.metrics().refused(Refusal::RequestTimeout);
                return None;
            }
        };
        WorkerMetrics::add(&runtime.broker.metrics().bytes_in, head.head_len as u64);
        let registry = runtime.broker.registry();
        let client = forwarded::resolve(peer.ip(), head.forwarded_for.as_deref(), |ip| {
            registry.is_trusted_proxy(ip)
        });
        drop(registry);
        if head.path.starts_with("/apps/") {
            return upgrade(runtime, stream, &head, client, slot, buffer).await;
        }
        // Plain HTTP: check the framing, judge the head, only then read the body.
        let length = match (head.content_length, head.chunked) {
            (_, true) => {
                respond_error(
                    runtime,
                    stream,
                    411,
                    Refusal::LengthRequired,
                    "send the body with Content-Length",
                    false,
                )
                .await;
                return None;
            }
            (Err(()), _) => {
                respond_error(
                    runtime,
                    stream,
                    400,
                    Refusal::MalformedRequest,
                    "invalid Content-Length",
                    false,
                )
                .await;
                return None;
            }
            (Ok(length), _) => length.unwrap_or(0),
        };
        // The body bound (`maxHttpBodyBytes`, less on routes without credentials) is
        // applied once the head is admitted: a refused head never has its body read.
        let body_end = head.head_len + length;
        let request = ApiRequest {
            method: &head.method,
            path: &head.path,
            authorization: head.authorization.as_deref(),
            peer: client,
        };
        WorkerMetrics::add(&runtime.broker.metrics().http_requests, 1);
        let admitted = match http_api::admit(&runtime.broker, &request) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                // Refused on its head: the body is not read. The connection stays only
                // when the body (if any) has already arrived whole.
                let keep_alive = head.keep_alive && buffer.len() >= body_end;
                if !write_api_response(stream, &head.method, &refusal, keep_alive).await {
                    return None;
                }
                buffer.drain(..body_end);
                deadline = next_request(runtime, stream, &mut buffer, &settings).await?;
                continue;
            }
        };
        if length > admitted.max_body_bytes(settings.max_http_body_bytes) {
            respond_error(
                runtime,
                stream,
                413,
                Refusal::BodyTooLarge,
                "request body too large",
                false,
            )
            .await;
            return None;
        }
        match read_body(runtime, stream, &mut buffer, body_end, deadline).await {
            Ok(()) => {}
            Err(timed_out) => {
                if timed_out {
                    runtime.broker.metrics().refused(Refusal::RequestTimeout);
                }
                return None;
            }
        }
        let body = &buffer[head.head_len..body_end];
        let api = http_api::Api {
            broker: &runtime.broker,
            io_driver: runtime.driver,
            control: Some(&runtime.control),
        };
        let reply = http_api::handle(&api, &request, admitted, body);
        let response = match reply {
            ApiReply::Ready(response) => {
                runtime.request_flush();
                response
            }
            ApiReply::WaitForWorker(answer) => {
                runtime.request_flush();
                Box::pin(wait_for_worker(answer)).await
            }
            ApiReply::WaitForControl(outcome) => Box::pin(wait_for_control(outcome)).await,
        };
        if !write_api_response(stream, &head.method, &response, head.keep_alive).await {
            return None;
        }
        buffer.drain(..body_end);
        deadline = next_request(runtime, stream, &mut buffer, &settings).await?;
    }
}

/// How long an admin call waits for the worker holding a connection to answer.
const WORKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits for another worker's answer to an admin call: its send wakes this task (flume's
/// `recv_async`, across threads); no answer by the timeout, or the sender gone, is `None`.
async fn wait_for_worker(answer: flume::Receiver<bool>) -> ApiResponse {
    let found = monoio::time::timeout(WORKER_ANSWER_TIMEOUT, answer.recv_async()).await;
    http_api::connection_reply(found.ok().and_then(Result::ok))
}

/// How long `POST /admin/reload` waits for the control thread.
const RELOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits for the control thread's reload outcome: its send wakes this task; none by the
/// timeout, or the control thread gone, is `None`.
async fn wait_for_control(outcome: flume::Receiver<crate::control::ReloadOutcome>) -> ApiResponse {
    let outcome = monoio::time::timeout(RELOAD_ANSWER_TIMEOUT, outcome.recv_async()).await;
    http_api::reload_reply(outcome.ok().and_then(Result::ok))
}

async fn respond_error(
    runtime: &WorkerRuntime,
    stream: &Stream,
    status: u16,
    reason: Refusal,
    message: &str,
    keep_alive: bool,
) {
    runtime.broker.metrics().refused(reason);
    let mut out = Vec::new();
    http1::write_json_error(status, message, keep_alive, &mut out);
    let _ = stream.write_all(&out).await;
    stream.shutdown_write();
}

/// `GET /apps/{appId}`: authorize, admit, switch protocols, open the session.
async fn upgrade(
    runtime: &Rc<WorkerRuntime>,
    stream: &Stream,
    head: &Head,
    client: ClientAddress,
    slot: usize,
    mut buffer: Vec<u8>,
) -> Option<(Rc<Session>, Vec<u8>)> {
    let app_id = &head.path["/apps/".len()..];
    let accept = match &head.upgrade {
        Some(Ok(accept)) if head.method == "GET" => accept.clone(),
        Some(Err(message)) => {
            respond_error(runtime, stream, 400, Refusal::BadUpgrade, message, false).await;
            return None;
        }
        _ => {
            respond_error(
                runtime,
                stream,
                400,
                Refusal::BadUpgrade,
                "WebSocket upgrade required",
                false,
            )
            .await;
            return None;
        }
    };
    // Before any lookup or signature check, so a reconnect storm costs little.
    if !runtime.admit_handshake() {
        respond_error(
            runtime,
            stream,
            503,
            Refusal::HandshakeRateLimited,
            "handshake rate limit reached; retry shortly",
            false,
        )
        .await;
        return None;
    }
    let registry = runtime.broker.registry();
    let Some(app) = registry.get(app_id).cloned() else {
        tracing::debug!(app = %crate::log_value::Escaped(app_id), "request refused: unknown app");
        respond_error(
            runtime,
            stream,
            404,
            Refusal::UnknownApp,
            "unknown app",
            false,
        )
        .await;
        return None;
    };
    if !app.client_sources.allows_source(client) {
        respond_error(
            runtime,
            stream,
            403,
            Refusal::SourceAddress,
            "source address not allowed",
            false,
        )
        .await;
        return None;
    }
    let Some(token) = head.token.as_deref() else {
        respond_error(
            runtime,
            stream,
            401,
            Refusal::MissingToken,
            "missing access_token",
            false,
        )
        .await;
        return None;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // A token this node verified before with the same keys skips the signature check;
    // everything above (rate limit, source address) and below (limits) runs every time.
    let claims = match app
        .client_verifier
        .verify_cached(&registry.token_cache, &app.id, token, now)
    {
        Ok(claims) => claims,
        Err(error) => {
            tracing::debug!(app = %app.id, reason = %error, "token refused");
            respond_error(
                runtime,
                stream,
                401,
                Refusal::InvalidToken,
                &format!("invalid token: {error}"),
                false,
            )
            .await;
            return None;
        }
    };
    // `priv/<subject>` and `priv/<connectionId>` share one namespace: a `sub` shaped like a
    // connection id would be implicitly subscribed to that connection's private topic.
    if claims
        .subject
        .as_deref()
        .is_some_and(|subject| parse_connection_id(subject).is_some())
    {
        tracing::debug!(app = %app.id, "token refused: sub shaped like a connection id");
        respond_error(
            runtime,
            stream,
            401,
            Refusal::InvalidToken,
            "invalid token: sub must not have the shape of a connection id (12 lowercase hex characters), which priv/ topics reserve",
            false,
        )
        .await;
        return None;
    }
    let subject = claims.subject.clone().unwrap_or_default();
    let admission = match app.admit(&subject, client) {
        Ok(admission) => admission,
        Err(refusal) => {
            let (reason, message) = match refusal {
                LimitRefusal::AppFull => {
                    (Refusal::AppFull, "connection limit reached for this app")
                }
                LimitRefusal::SubjectFull => (
                    Refusal::SubjectFull,
                    "connection limit reached for this subject",
                ),
                LimitRefusal::AddressFull => (
                    Refusal::AddressFull,
                    "connection limit reached for this source address",
                ),
            };
            respond_error(runtime, stream, 429, reason, message, false).await;
            return None;
        }
    };
    let mut response = Vec::with_capacity(160);
    let extensions = head.deflate.map(|negotiated| negotiated.response());
    http1::write_upgrade_response(&accept, extensions.as_deref(), &mut response);
    if stream.write_all(&response).await.is_err() {
        app.release(&subject, admission);
        return None;
    }
    let session =
        runtime
            .broker
            .open_session(&app, claims, &client.to_string(), head.deflate, admission);
    session.slot.set(slot);
    runtime.attach(slot, session.clone());
    runtime.request_flush();
    buffer.drain(..head.head_len);
    Some((session, buffer))
}

/// The WebSocket phase: runs the reader until the peer goes away or the close completes.
async fn websocket(
    runtime: &Rc<WorkerRuntime>,
    stream: &Stream,
    session: &Rc<Session>,
    mut leftover: Vec<u8>,
) {
    let mut closing = false;
    if !leftover.is_empty() {
        closing = super::reader::ingest(runtime, session, &mut leftover);
        runtime.request_flush();
    }
    drop(leftover);
    super::reader::read_websocket(runtime, stream, session, closing).await;
    // The peer is gone (or finished the close handshake): release everything.
    runtime.broker.close(session, CloseKind::ConnectionLost);
    session.outbound.borrow_mut().clear();
    runtime.request_flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Poll;

    /// Runs `test` on a monoio runtime of each driver (the broker runs under both).
    fn on_each_driver(test: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>) {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("legacy runtime")
            .block_on(test());
        if let Ok(mut runtime) = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
        {
            runtime.block_on(test());
        }
    }

    #[test]
    fn an_answer_sent_from_another_thread_wakes_the_waiting_admin_call() {
        on_each_driver(|| {
            Box::pin(async {
                let (reply, answer) = flume::bounded(1);
                let mut wait = std::pin::pin!(wait_for_worker(answer));
                // Polled once before the answer exists: only the sender's wake can finish it.
                let pending =
                    std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx).is_pending()))
                        .await;
                assert!(pending);
                let sender = std::thread::spawn(move || reply.send(false));
                assert_eq!(wait.await.status, 404, "the answer (not found) arrives");
                sender.join().unwrap().unwrap();
            })
        });
    }

    #[test]
    fn a_reload_whose_control_thread_is_gone_is_answered_at_once() {
        on_each_driver(|| {
            Box::pin(async {
                let (reply, outcome) = flume::bounded::<crate::control::ReloadOutcome>(1);
                drop(reply);
                let response = wait_for_control(outcome).await;
                assert_eq!(response.status, http_api::reload_reply(None).status);
            })
        });
    }
}
