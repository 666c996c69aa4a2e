//! Black-box test harness: one `start_server` on port 0 (2 workers) and small clients.
//!
//! The io driver comes from `RINGCAST_TEST_IO_DRIVER` (`legacy` forces epoll), so the
//! whole suite runs under both drivers.
#![allow(dead_code)]

pub mod cluster;
pub mod jwks_server;
pub mod process;
mod raw_client;
mod skip;
mod wait;
#[allow(unused_imports)] // each test binary uses its own subset
pub use raw_client::{connect_raw, connect_raw_with, RawClient};
#[allow(unused_imports)] // not every test binary skips
pub use skip::{current_test, skip};
#[allow(unused_imports)] // each test binary uses its own subset
pub use wait::{metric_over_workers, wait_for, wait_until, PATIENCE};

use ringcast::auth::{mint, Algorithm};
use ringcast::config::{Config, IoDriverChoice};
use ringcast::runtime::{self, ServerHandle};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

pub const SECRET: &str = "cX1$wJT71Mölsd98.r97dC4DX";
pub const ADMIN_SECRET: &str = "admin-secret-for-tests";
pub const APP: &str = "b5cvf368e1fc006e95521000764a5706";
pub const QUIET_APP: &str = "quiet-app";
pub const LIMITED_APP: &str = "limited-app";
pub const FENCED_APP: &str = "fenced-app";
pub const PUBLISH_ALL: &str = "realtime:publisher:write:topic:*";
pub const READ_ALL: &str = "realtime:subscriber:read:topic:*";

pub fn base_config() -> Value {
    let key = json!({"source": "raw", "key": SECRET, "algorithms": ["HS256", "HS512"]});
    let admin = json!({"source": "raw", "key": ADMIN_SECRET, "algorithms": ["HS256"]});
    json!({
        "server": {"listen": "127.0.0.1:0", "workers": 2, "pinWorkers": false, "pingIntervalSeconds": 30},
        "apps": [
            {"appId": APP, "name": "main test app", "authKey": key, "adminKey": admin,
             "enableWebSocketInboundTopic": true},
            {"appId": QUIET_APP, "authKey": key, "adminKey": admin,
             "enableWebSocketInboundAck": false},
            {"appId": LIMITED_APP, "authKey": key, "adminKey": admin,
             "maxConnections": 3, "maxConnectionsPerSubject": 2, "maxSubscriptionsPerConnection": 5,
             "maxMessageBytes": 1024, "maxMessagesPerSecond": 200, "maxPendingBytes": 262144},
            {"appId": FENCED_APP, "authKey": key, "adminKey": admin,
             "clientSourceAddress": ["10.0.0.0/8", "!10.1.1.1"], "adminSourceAddress": ["192.0.2.0/24"]}
        ]
    })
}

pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub address: SocketAddr,
}

impl TestServer {
    pub fn url(&self, app: &str, token: &str) -> String {
        format!("ws://{}/apps/{app}?access_token={token}", self.address)
    }

    pub fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn start_server() -> TestServer {
    start_with(base_config())
}

pub fn start_with(config: Value) -> TestServer {
    let mut config = Config::from_json(&config.to_string()).expect("test config is valid");
    if std::env::var("RINGCAST_TEST_IO_DRIVER").as_deref() == Ok("legacy") {
        config.server.io_driver = IoDriverChoice::Legacy;
    }
    let handle = runtime::start(&config).expect("server starts");
    let address = handle.local_address;
    TestServer {
        handle: Some(handle),
        address,
    }
}

/// A configuration file in the temp directory, removed on drop (reload tests rewrite it).
pub struct ConfigFile {
    pub path: std::path::PathBuf,
}

impl ConfigFile {
    pub fn new(config: &Value) -> ConfigFile {
        let path = std::env::temp_dir().join(format!(
            "ringcast-test-{}-{}.json",
            std::process::id(),
            rand_id()
        ));
        let file = ConfigFile { path };
        file.write(config);
        file
    }

    pub fn write(&self, config: &Value) {
        self.write_text(&config.to_string());
    }

    pub fn write_text(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts a server from a configuration file (so that it can be reloaded).
pub fn start_from_file(file: &ConfigFile) -> TestServer {
    let mut config = Config::load(&file.path).expect("test config is valid");
    if std::env::var("RINGCAST_TEST_IO_DRIVER").as_deref() == Ok("legacy") {
        config.server.io_driver = IoDriverChoice::Legacy;
    }
    let handle = runtime::start(&config).expect("server starts");
    let address = handle.local_address;
    TestServer {
        handle: Some(handle),
        address,
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 client token signed with the apps' shared test secret.
pub fn token(subject: &str, permissions: &[&str]) -> String {
    token_with(json!({"sub": subject, "permissions": permissions, "exp": now() + 600}))
}

pub fn token_with(claims: Value) -> String {
    mint::sign(Algorithm::HS256, SECRET, &claims).unwrap()
}

pub fn admin_token(permissions: &[&str]) -> String {
    let claims = json!({"sub": "backend", "permissions": permissions, "exp": now() + 600});
    mint::sign(Algorithm::HS256, ADMIN_SECRET, &claims).unwrap()
}

pub struct Client {
    pub socket: WebSocket<TcpStream>,
    pub welcome: Value,
    /// Whether the app sends acks (all test apps but `QUIET_APP`).
    pub acks: bool,
}

impl Client {
    pub fn id(&self) -> String {
        self.welcome["data"]["connection"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The worker owning this connection (low byte of the id).
    pub fn worker(&self) -> u64 {
        u64::from_str_radix(&self.id(), 16).unwrap() & 0xff
    }

    pub fn send(&mut self, value: Value) {
        self.socket.send(Message::text(value.to_string())).unwrap();
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text.to_string())).unwrap();
    }

    pub fn subscribe(&mut self, topic: &str) {
        self.send(json!({"type": "subscribe", "data": {"topic": topic}}));
    }

    pub fn publish(&mut self, topic: &str, message_type: &str, payload: Value, id: &str) {
        self.send(json!({"type": "publish", "data": {"topic": topic, "messageType": message_type, "payload": payload, "id": id}}));
    }

    /// Subscribes, then proves the server processed it with a round trip on the
    /// connection's own private topic (frames of one connection are handled in order).
    pub fn subscribe_confirmed(&mut self, topic: &str) {
        self.subscribe(topic);
        self.sync();
    }

    /// Round trip for a client without publish rights: a ping answered after everything
    /// sent before it was processed.
    pub fn sync_without_publish(&mut self) {
        self.socket
            .send(Message::Ping(b"sync".to_vec().into()))
            .unwrap();
        loop {
            match self.socket.read().unwrap() {
                Message::Pong(payload) if &payload[..] == b"sync" => return,
                _ => continue,
            }
        }
    }

    /// Round trip: publish a marker to `priv/<own id>` and wait for it (and its ack).
    pub fn sync(&mut self) {
        let own = format!("priv/{}", self.id());
        let marker = format!("sync-{}", rand_id());
        self.publish(&own, "sync", json!(marker), &marker);
        // The publication comes first, then its ack (acks follow the hand-off).
        let (mut seen, mut acked) = (false, !self.acks);
        while !(seen && acked) {
            let frame = self.next_json();
            if frame["messageType"] == "sync" && frame["data"]["payload"] == json!(marker) {
                seen = true;
            }
            if frame["messageType"] == "ack" && frame["data"]["data"] == json!(marker) {
                acked = true;
            }
        }
    }

    /// Next data frame (text or binary), parsed; panics on close or timeout.
    pub fn next_message(&mut self) -> Message {
        loop {
            match self.socket.read() {
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Ok(message) => return message,
                Err(error) => panic!("expected a frame, got {error}"),
            }
        }
    }

    pub fn next_json(&mut self) -> Value {
        match self.next_message() {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            Message::Binary(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("expected a data frame, got {other:?}"),
        }
    }

    /// Next frame that is not an ack.
    pub fn next_non_ack(&mut self) -> Value {
        loop {
            let frame = self.next_json();
            if frame["messageType"] != "ack" {
                return frame;
            }
        }
    }

    /// Reads until the server's close frame; returns (code, reason). Data frames before it
    /// are skipped.
    pub fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.socket.read() {
                Ok(Message::Close(Some(frame))) => {
                    let code: u16 = frame.code.into();
                    return (code, frame.reason.to_string());
                }
                Ok(Message::Close(None)) => return (1005, String::new()),
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => panic!("closed without a close frame"),
                Err(error) => panic!("expected a close frame, got {error}"),
            }
        }
    }

    /// Asserts nothing but pings arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            self.socket.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.socket.read() {
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
                Err(tungstenite::Error::Io(error))
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                other => panic!("expected silence, got {other:?}"),
            }
        }
        self.socket
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }

    pub fn close(mut self) {
        let _ = self.socket.close(Some(tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = self.socket.flush();
    }
}

pub fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{:x}{}", now(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Connects and reads the welcome frame.
pub fn connect(server: &TestServer, app: &str, token: &str) -> Client {
    try_connect(server, app, token).unwrap_or_else(|status| panic!("connect refused with {status}"))
}

/// Connects; `Err(status)` when refused before the upgrade.
pub fn try_connect(server: &TestServer, app: &str, token: &str) -> Result<Client, u16> {
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    match tungstenite::client::client(server.url(app, token), stream) {
        Ok((socket, _)) => {
            let mut client = Client {
                socket,
                welcome: Value::Null,
                acks: app != QUIET_APP,
            };
            client.welcome = client.next_json();
            Ok(client)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("handshake failed: {error}"),
    }
}

/// Connects clients until one lands on each worker; returns (worker 0 client, worker 1 client).
pub fn clients_on_both_workers(
    server: &TestServer,
    make_token: impl Fn() -> String,
) -> (Client, Client) {
    let mut zero = None;
    let mut one = None;
    for _ in 0..200 {
        let client = connect(server, APP, &make_token());
        match client.worker() {
            0 if zero.is_none() => zero = Some(client),
            1 if one.is_none() => one = Some(client),
            _ => client.close(),
        }
        if zero.is_some() && one.is_some() {
            break;
        }
    }
    (
        zero.expect("a client on worker 0"),
        one.expect("a client on worker 1"),
    )
}

/// A plain HTTP/1.1 request; returns (status, body).
pub fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = authorization {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    raw_http(server, request.as_bytes())
}

/// Sends raw bytes, reads the whole response until EOF; returns (status, body).
pub fn raw_http(server: &TestServer, request: &[u8]) -> (u16, String) {
    let stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (status, _, body) = exchange(stream, request);
    (status, body)
}

/// Writes `request` to `stream` and reads the whole response until EOF (plain TCP or TLS);
/// returns (status, head, body).
pub fn exchange(mut stream: impl Read + Write, request: &[u8]) -> (u16, String, String) {
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_string(), body.to_string())
}

pub fn publish_http(server: &TestServer, app: &str, body: Value) -> (u16, String) {
    let token = admin_token(&[PUBLISH_ALL]);
    http(
        server,
        "POST",
        &format!("/api/topics/{app}/publish"),
        Some(&token),
        &body.to_string(),
    )
}

/// The value of the `/metrics` line whose name (with labels) is exactly `name`.
pub fn metric(server: &TestServer, name: &str) -> u64 {
    let (status, body) = http(server, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .map(|value| value as u64)
        .unwrap_or_else(|| panic!("no metric {name}"))
}
