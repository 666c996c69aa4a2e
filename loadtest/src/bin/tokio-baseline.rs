//! `tokio-baseline`: the conventional tokio server the load test compares ringcast with.
//!
//! # How it is built (what a competent team writes with the mainstream stack)
//! - **Runtime**: one multi-thread tokio runtime (`server.workers` worker threads, 0 = one
//!   per core), one `TcpListener`, one task per accepted connection.
//! - **Tuning**: `TCP_NODELAY`; tungstenite's read buffer cut from 128 KiB to
//!   [`READ_BUFFER_BYTES`] (see its comment); everything else at library defaults.
//! - **Handshake**: the request head is read by hand (so HTTP API calls and upgrades share
//!   the port, as in ringcast); an upgrade is answered `101` with the
//!   `tungstenite::handshake::derive_accept_key` accept key and the socket handed to
//!   `tokio_tungstenite::WebSocketStream::from_partially_read` (no bytes lost).
//! - **Auth**: `?access_token=` (or `Authorization: Bearer`) verified with `jsonwebtoken`
//!   against the app's `authKey` (HS256/384/512 secret or ES256/384 PEM), 30 s leeway;
//!   publish permission checked against the token's `realtime:publisher:write:topic:`
//!   globs, compiled once per connection.
//! - **Index**: `RwLock<HashMap<topic, HashMap<connection id, Subscriber>>>`, shared by all
//!   threads; subscribe/unsubscribe take the write lock, a publish the read lock.
//! - **Per connection**: a reader task (the accepting task) and a writer task; between them a
//!   bounded `tokio::sync::mpsc` channel of [`QUEUE_MESSAGES`] messages. A full channel
//!   closes the subscriber with 4008 (slow consumer), as ringcast does.
//! - **Fan-out**: each publication's envelope (PROTOCOL.md §5.2 / §5.3) is serialized once
//!   into a `Utf8Bytes`; every subscriber gets a clone (a reference-count bump) by
//!   `try_send`. The writer `feed`s every queued message, then `flush`es once per batch.
//! - **Acks** (§5.5) go to the publisher after the fan-out hand-off. Pings are answered by
//!   tungstenite. Not implemented (the scenarios do not use them): presence, `message`,
//!   `secure/` and `priv/` subscribe checks, rate limits, admin calls other than publish.
//!
//! Configuration: the same JSON file as ringcast (`--config`); only `server.listen`,
//! `server.workers` and `apps[].appId/authKey/adminKey` are read.

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Messages queued per connection before it is closed as a slow consumer: at 100-byte
/// publications about the same bytes as ringcast's default 4 MiB pending limit.
const QUEUE_MESSAGES: usize = 32 * 1024;
/// tungstenite's read buffer per connection. Its default (128 KiB) is allocated per
/// connection up front: 145 KB RSS per idle connection measured at 2,000 connections; the
/// inbound messages here are ~200 bytes, so 4 KiB is what a team that measured would pick.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Longest request head accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest HTTP API body accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const PUBLISH_PERMISSION: &str = "realtime:publisher:write:topic:";

struct App {
    client_key: DecodingKey,
    client_algorithm: Algorithm,
    admin_key: Option<(DecodingKey, Algorithm)>,
}

struct Subscriber {
    sender: mpsc::Sender<Message>,
    slow: Arc<Notify>,
}

struct Server {
    apps: HashMap<String, App>,
    topics: RwLock<HashMap<String, HashMap<u64, Subscriber>>>,
    next_connection: AtomicU64,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.iter().any(|argument| argument == "--version") {
        println!("tokio-baseline {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let config_path = arguments
        .iter()
        .position(|argument| argument == "--config")
        .and_then(|index| arguments.get(index + 1))
        .context("usage: tokio-baseline --config FILE")?;
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(config_path)?)?;
    let listen: SocketAddr = config["server"]["listen"]
        .as_str()
        .unwrap_or("127.0.0.1:8080")
        .parse()?;
    let workers = config["server"]["workers"].as_u64().unwrap_or(0) as usize;
    let mut apps = HashMap::new();
    for app in config["apps"].as_array().into_iter().flatten() {
        let app_id = app["appId"].as_str().context("appId")?.to_string();
        let (client_key, client_algorithm) = decoding_key(&app["authKey"])?;
        let admin_key = if app["adminKey"].is_object() {
            Some(decoding_key(&app["adminKey"])?)
        } else {
            None
        };
        apps.insert(
            app_id,
            App {
                client_key,
                client_algorithm,
                admin_key,
            },
        );
    }
    let server = Arc::new(Server {
        apps,
        topics: RwLock::new(HashMap::new()),
        next_connection: AtomicU64::new(1),
    });
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()?.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        eprintln!("tokio-baseline listening on {listen}");
        loop {
            let (stream, peer) = listener.accept().await?;
            stream.set_nodelay(true).ok();
            let server = server.clone();
            tokio::spawn(async move {
                if let Err(error) = serve(server, stream, peer).await {
                    tracing_free_log(&error);
                }
            });
        }
    })
}

fn tracing_free_log(error: &anyhow::Error) {
    if std::env::var_os("BASELINE_DEBUG").is_some() {
        eprintln!("connection: {error:#}");
    }
}

fn decoding_key(key: &serde_json::Value) -> anyhow::Result<(DecodingKey, Algorithm)> {
    let algorithm = Algorithm::from_str(key["algorithms"][0].as_str().context("algorithms")?)?;
    let text = key["key"].as_str().context("key")?;
    let decoding = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            DecodingKey::from_secret(text.as_bytes())?
        }
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(text.as_bytes())?,
        other => bail!("algorithm {other:?} not supported by the baseline"),
    };
    Ok((decoding, algorithm))
}

fn verify(token: &str, key: &DecodingKey, algorithm: Algorithm) -> Option<Claims> {
    let mut validation = Validation::new(algorithm);
    validation.leeway = 30;
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<Claims>(token, key, &validation)
        .ok()
        .map(|data| data.claims)
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

fn parse_head(bytes: &[u8]) -> anyhow::Result<Head> {
    let text = std::str::from_utf8(bytes)?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().context("request line")?.split(' ');
    let method = request_line.next().context("method")?.to_string();
    let path = request_line.next().context("path")?.to_string();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok(Head {
        method,
        path,
        headers,
    })
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> anyhow::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(())
}

/// One TCP connection: HTTP requests (keep-alive) until an upgrade or the end.
async fn serve(server: Arc<Server>, mut stream: TcpStream, peer: SocketAddr) -> anyhow::Result<()> {
    let mut buffer: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let head_end = loop {
            if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break position;
            }
            if buffer.len() > MAX_HEAD_BYTES {
                return respond(
                    &mut stream,
                    "431 Request Header Fields Too Large",
                    r#"{"error":"head too large"}"#,
                )
                .await;
            }
            let mut chunk = [0u8; 4096];
            let count = stream.read(&mut chunk).await?;
            if count == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..count]);
        };
        let head = parse_head(&buffer[..head_end])?;
        buffer.drain(..head_end + 4);
        let (route, query) = head
            .path
            .split_once('?')
            .unwrap_or((head.path.as_str(), ""));
        if head.method == "GET" && route == "/health" {
            respond(&mut stream, "200 OK", r#"{"status":"ok"}"#).await?;
        } else if let (Some(app_id), "GET") = (route.strip_prefix("/apps/"), head.method.as_str()) {
            let token = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("access_token="))
                .or_else(|| {
                    head.header("authorization")
                        .and_then(|value| value.get(7..))
                });
            let Some(app) = server.apps.get(app_id) else {
                return respond(&mut stream, "404 Not Found", r#"{"error":"unknown app"}"#).await;
            };
            let Some(claims) =
                token.and_then(|token| verify(token, &app.client_key, app.client_algorithm))
            else {
                return respond(
                    &mut stream,
                    "401 Unauthorized",
                    r#"{"error":"invalid token"}"#,
                )
                .await;
            };
            let Some(key) = head.header("sec-websocket-key") else {
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    r#"{"error":"not an upgrade"}"#,
                )
                .await;
            };
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let response = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
            stream.write_all(response.as_bytes()).await?;
            let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
            let socket =
                WebSocketStream::from_partially_read(stream, buffer, Role::Server, Some(config))
                    .await;
            return session(server, socket, app_id.to_string(), claims, peer).await;
        } else if let (Some(app_id), "POST") = (
            route
                .strip_prefix("/api/topics/")
                .and_then(|rest| rest.strip_suffix("/publish")),
            head.method.as_str(),
        ) {
            let length: usize = head
                .header("content-length")
                .and_then(|value| value.parse().ok())
                .unwrap_or(0);
            if length > MAX_BODY_BYTES {
                return respond(
                    &mut stream,
                    "413 Payload Too Large",
                    r#"{"error":"body too large"}"#,
                )
                .await;
            }
            while buffer.len() < length {
                let mut chunk = [0u8; 4096];
                let count = stream.read(&mut chunk).await?;
                if count == 0 {
                    return Ok(());
                }
                buffer.extend_from_slice(&chunk[..count]);
            }
            let body: Vec<u8> = buffer.drain(..length).collect();
            let (status, reply) =
                http_publish(&server, app_id, head.header("authorization"), &body);
            respond(&mut stream, status, reply).await?;
        } else {
            return respond(&mut stream, "404 Not Found", r#"{"error":"not found"}"#).await;
        }
    }
}

#[derive(Deserialize)]
struct HttpPublish<'a> {
    topic: String,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(rename = "messageType", default)]
    message_type: Option<String>,
}

fn http_publish(
    server: &Server,
    app_id: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> (&'static str, &'static str) {
    let Some(app) = server.apps.get(app_id) else {
        return ("404 Not Found", r#"{"error":"unknown app"}"#);
    };
    let token = authorization.and_then(|value| value.get(7..)).unwrap_or("");
    let claims = app
        .admin_key
        .as_ref()
        .and_then(|(key, algorithm)| verify(token, key, *algorithm));
    let Some(claims) = claims else {
        return ("401 Unauthorized", r#"{"error":"invalid token"}"#);
    };
    let Ok(request) = serde_json::from_slice::<HttpPublish>(body) else {
        return ("400 Bad Request", r#"{"error":"malformed body"}"#);
    };
    if !Permissions::compile(&claims.permissions).can_publish(&request.topic) {
        return ("403 Forbidden", r#"{"error":"forbidden"}"#);
    }
    let data = request
        .message
        .or(request.payload)
        .map_or("null", RawValue::get);
    let message_type = request
        .message_type
        .filter(|kind| !kind.is_empty())
        .unwrap_or_else(|| "broadcast".into());
    let envelope = format!(
        r#"{{"topic":{},"messageType":{},"data":{data}}}"#,
        serde_json::to_string(&request.topic).unwrap_or_default(),
        serde_json::to_string(&message_type).unwrap_or_default()
    );
    fan_out(
        server,
        &request.topic,
        Message::Text(Utf8Bytes::from(envelope)),
    );
    ("200 OK", r#"{"ok":true}"#)
}

/// Publish permission globs of one connection, compiled once.
struct Permissions {
    patterns: Vec<String>,
}

impl Permissions {
    fn compile(permissions: &[String]) -> Permissions {
        Permissions {
            patterns: permissions
                .iter()
                .filter_map(|permission| permission.strip_prefix(PUBLISH_PERMISSION))
                .map(str::to_string)
                .collect(),
        }
    }

    fn can_publish(&self, topic: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| glob_matches(pattern.as_bytes(), topic.as_bytes()))
    }
}

/// `*` matches any run (including `/` and nothing); everything else is literal.
fn glob_matches(pattern: &[u8], topic: &[u8]) -> bool {
    match pattern.split_first() {
        None => topic.is_empty(),
        Some((b'*', rest)) => (0..=topic.len()).any(|skip| glob_matches(rest, &topic[skip..])),
        Some((byte, rest)) => topic.first() == Some(byte) && glob_matches(rest, &topic[1..]),
    }
}

/// Hands `message` to every subscriber of `topic`; a full queue marks that subscriber slow.
fn fan_out(server: &Server, topic: &str, message: Message) {
    let topics = server
        .topics
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(subscribers) = topics.get(topic) {
        for subscriber in subscribers.values() {
            if let Err(mpsc::error::TrySendError::Full(_)) =
                subscriber.sender.try_send(message.clone())
            {
                subscriber.slow.notify_one();
            }
        }
    }
}

#[derive(Deserialize)]
struct Command<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    data: CommandData<'a>,
}

#[derive(Deserialize)]
struct CommandData<'a> {
    #[serde(default)]
    topic: Option<String>,
    #[serde(rename = "messageType", default)]
    message_type: Option<String>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

async fn session(
    server: Arc<Server>,
    socket: WebSocketStream<TcpStream>,
    app_id: String,
    claims: Claims,
    peer: SocketAddr,
) -> anyhow::Result<()> {
    let connection = server.next_connection.fetch_add(1, Ordering::Relaxed);
    let connection_id = format!("{connection:012x}");
    let subject = claims.sub.clone().unwrap_or_else(|| connection_id.clone());
    let permissions = Permissions::compile(&claims.permissions);
    let client = format!(
        r#"{{"connectionId":"{connection_id}","subject":{},"permissions":{}}}"#,
        serde_json::to_string(&subject)?,
        serde_json::to_string(&claims.permissions)?
    );
    let (mut sink, mut stream) = socket.split();
    let (sender, mut receiver) = mpsc::channel::<Message>(QUEUE_MESSAGES);
    let slow = Arc::new(Notify::new());
    let writer_slow = slow.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = receiver.recv() => {
                    let Some(message) = message else { break };
                    if sink.feed(message).await.is_err() { break; }
                    while let Ok(message) = receiver.try_recv() {
                        if sink.feed(message).await.is_err() { return; }
                    }
                    if sink.flush().await.is_err() { break; }
                }
                _ = writer_slow.notified() => {
                    let close = CloseFrame { code: CloseCode::Library(4008), reason: "Slow consumer".into() };
                    sink.send(Message::Close(Some(close))).await.ok();
                    break;
                }
            }
        }
    });
    let welcome = format!(
        r#"{{"topic":"main","messageType":"welcome","data":{{"connection":{{"id":"{connection_id}","appId":{},"remoteAddress":"{}"}}}}}}"#,
        serde_json::to_string(&app_id)?,
        peer.ip()
    );
    sender
        .send(Message::Text(Utf8Bytes::from(welcome)))
        .await
        .ok();
    let mut subscriptions: Vec<String> = Vec::new();
    let subscribe = |topic: &str, subscriptions: &mut Vec<String>| {
        let mut topics = server
            .topics
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        topics.entry(topic.to_string()).or_default().insert(
            connection,
            Subscriber {
                sender: sender.clone(),
                slow: slow.clone(),
            },
        );
        if !subscriptions.iter().any(|known| known == topic) {
            subscriptions.push(topic.to_string());
        }
    };
    for topic in [
        "main".to_string(),
        format!("priv/{connection_id}"),
        format!("priv/{subject}"),
    ] {
        subscribe(&topic, &mut subscriptions);
    }
    while let Some(Ok(message)) = stream.next().await {
        let bytes = match &message {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes.as_ref(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(command) = serde_json::from_slice::<Command>(bytes) else {
            break;
        };
        let topic = command.data.topic.clone().unwrap_or_default();
        match command.kind.as_str() {
            "subscribe" if !topic.is_empty() => subscribe(&topic, &mut subscriptions),
            "unsubscribe" => {
                let mut topics = server
                    .topics
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(subscribers) = topics.get_mut(&topic) {
                    subscribers.remove(&connection);
                }
                subscriptions.retain(|known| known != &topic);
            }
            "publish" if !topic.is_empty() => {
                if !permissions.can_publish(&topic) {
                    break;
                }
                let message_type = command
                    .data
                    .message_type
                    .filter(|kind| !kind.is_empty())
                    .unwrap_or_else(|| "broadcast".into());
                let id = command
                    .data
                    .id
                    .map(|id| id.get().to_string())
                    .unwrap_or_else(|| {
                        format!(
                            "\"{connection_id}-{}\"",
                            server.next_connection.fetch_add(1, Ordering::Relaxed)
                        )
                    });
                let envelope = format!(
                    r#"{{"topic":{},"messageType":{},"data":{{"client":{client},"subProtocol":1,"payload":{},"id":{id}}}}}"#,
                    serde_json::to_string(&topic)?,
                    serde_json::to_string(&message_type)?,
                    command.data.payload.map_or("null", RawValue::get),
                );
                fan_out(&server, &topic, Message::Text(Utf8Bytes::from(envelope)));
                let ack = format!(
                    r#"{{"topic":"priv/acks","messageType":"ack","data":{{"data":{id}}}}}"#
                );
                if sender
                    .try_send(Message::Text(Utf8Bytes::from(ack)))
                    .is_err()
                {
                    slow.notify_one();
                }
            }
            _ => break,
        }
    }
    {
        let mut topics = server
            .topics
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for topic in &subscriptions {
            if let Some(subscribers) = topics.get_mut(topic) {
                subscribers.remove(&connection);
                if subscribers.is_empty() {
                    topics.remove(topic);
                }
            }
        }
    }
    drop(sender);
    writer.await.ok();
    Ok(())
}
