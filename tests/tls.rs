//! `server.tls`: wss:// and https:// served by ringcast itself (rustls), with a self-signed
//! certificate generated here; a plain listener beside it (`plainListen`); bad TLS input
//! closed cleanly and counted as `handshakes_refused{reason="tls"}`; config errors.

mod common;
use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A self-signed certificate for `localhost`/127.0.0.1 and its key, as PEM files in a
/// fresh temp directory (removed on drop).
struct Certificate {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Certificate {
    fn generate() -> Certificate {
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let dir =
            std::env::temp_dir().join(format!("ringcast-tls-{}-{}", std::process::id(), rand_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        Certificate {
            dir,
            cert,
            key,
            der: generated.cert.der().clone(),
        }
    }

    fn section(&self) -> Value {
        json!({"cert": self.cert, "key": self.key})
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_tls(certificate: &Certificate, edit: impl FnOnce(&mut Value)) -> TestServer {
    let mut config = base_config();
    config["server"]["tls"] = certificate.section();
    edit(&mut config);
    start_with(config)
}

/// A client configuration trusting only `certificate`, on the ring provider.
fn client_config(certificate: &Certificate) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A TLS stream to `address` for `name`, handshake completed.
fn tls_connect(address: SocketAddr, certificate: &Certificate, name: &str) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let connection = ClientConnection::new(client_config(certificate), name).unwrap();
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

struct TlsClient {
    socket: WebSocket<Tls>,
    welcome: Value,
}

impl TlsClient {
    fn send(&mut self, value: Value) {
        self.socket.send(Message::text(value.to_string())).unwrap();
    }

    fn next_json(&mut self) -> Value {
        loop {
            match self.socket.read().unwrap() {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Binary(bytes) => return serde_json::from_slice(&bytes).unwrap(),
                _ => continue,
            }
        }
    }

    fn next_non_ack(&mut self) -> Value {
        loop {
            let frame = self.next_json();
            if frame["messageType"] != "ack" {
                return frame;
            }
        }
    }

    /// Subscribes, then proves the server processed it: a ping is answered after
    /// everything sent before it (frames of one connection are handled in order).
    fn subscribe_confirmed(&mut self, topic: &str) {
        self.send(json!({"type": "subscribe", "data": {"topic": topic}}));
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
}

fn wss_connect(server: &TestServer, certificate: &Certificate, token: &str) -> TlsClient {
    let stream = tls_connect(server.address, certificate, "localhost").unwrap();
    let url = format!(
        "wss://localhost:{}/apps/{APP}?access_token={token}",
        server.address.port()
    );
    let (socket, _) = tungstenite::client::client(url, stream).expect("wss upgrade");
    let mut client = TlsClient {
        socket,
        welcome: Value::Null,
    };
    client.welcome = client.next_json();
    client
}

/// One HTTP/1.1 request over TLS; returns (status, body).
fn https(
    server: &TestServer,
    certificate: &Certificate,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = tls_connect(server.address, certificate, "localhost").unwrap();
    let token = admin_token(&[PUBLISH_ALL]);
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, body) = exchange(&mut stream, request.as_bytes());
    (status, body)
}

fn tls_refusals(server: &TestServer) -> u64 {
    let handle = server.handle.as_ref().unwrap();
    handle
        .metrics
        .iter()
        .map(|worker| worker.refusals(ringcast::metrics::Refusal::Tls))
        .sum()
}

/// Waits (bounded) until the server has counted `count` TLS refusals: the client may see
/// its side fail before the server has read the alert.
fn wait_for_refusals(server: &TestServer, count: u64) {
    wait_until(
        &format!("{count} TLS refusals are counted"),
        PATIENCE,
        || tls_refusals(server) >= count,
    );
    assert_eq!(tls_refusals(server), count);
}

/// Sends `bytes` on a plain TCP connection to the TLS port; returns what came back until
/// the server closed.
fn plain_bytes_to_tls_port(server: &TestServer, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset,
            "the server closes; it does not leave the socket hanging"
        ),
    }
    response
}

#[test]
fn wss_welcome_and_publish_subscribe_round_trip() {
    let certificate = Certificate::generate();
    let server = start_tls(&certificate, |_| {});
    let mut subscriber = wss_connect(&server, &certificate, &token("s", &[READ_ALL]));
    assert_eq!(subscriber.welcome["messageType"], "welcome");
    assert_eq!(subscriber.welcome["topic"], "main");
    let mut publisher = wss_connect(&server, &certificate, &token("p", &[PUBLISH_ALL]));
    subscriber.subscribe_confirmed("news");
    publisher.send(json!({"type": "publish", "data": {"topic": "news", "messageType": "m", "payload": {"n": 1}, "id": "a1"}}));
    let ack = publisher.next_json();
    assert_eq!(ack["messageType"], "ack");
    let frame = subscriber.next_non_ack();
    assert_eq!(frame["topic"], "news");
    assert_eq!(frame["data"]["payload"], json!({"n": 1}));
    publisher.socket.close(None).unwrap();
}

#[test]
fn https_publish_and_metrics_on_the_same_port() {
    let certificate = Certificate::generate();
    let server = start_tls(&certificate, |_| {});
    let mut subscriber = wss_connect(&server, &certificate, &token("s", &[READ_ALL]));
    subscriber.subscribe_confirmed("http-news");
    let body = json!({"topic": "http-news", "messageType": "m", "payload": "over https"});
    let (status, text) = https(
        &server,
        &certificate,
        "POST",
        &format!("/api/topics/{APP}/publish"),
        &body.to_string(),
    );
    assert_eq!(status, 200, "{text}");
    let frame = subscriber.next_non_ack();
    assert_eq!(
        frame["data"], "over https",
        "HTTP publications carry the message as data"
    );
    let (status, text) = https(&server, &certificate, "GET", "/health", "");
    assert_eq!(status, 200, "{text}");
}

#[test]
fn permessage_deflate_works_over_tls() {
    let certificate = Certificate::generate();
    let server = start_tls(&certificate, |_| {});
    let mut stream = tls_connect(server.address, &certificate, "localhost").unwrap();
    let request = format!(
        "GET /apps/{APP}?access_token={} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        token("d", &[READ_ALL])
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("permessage-deflate"), "{head}");
    let mut deflating = RawClient::over(stream);
    let (opcode, welcome) = deflating.read_frame().expect("the welcome frame");
    assert_eq!(opcode, 0x1);
    assert!(String::from_utf8_lossy(&welcome).contains("welcome"));
    deflating.send_text(r#"{"type":"subscribe","data":{"topic":"zip"}}"#);
    let mut publisher = wss_connect(&server, &certificate, &token("p", &[PUBLISH_ALL]));
    publisher.subscribe_confirmed("zip");
    let payload = json!({"text": "x".repeat(4000)});
    // The deflating client's subscribe was sent before the publisher connected, but on
    // another connection: publish until it has surely been processed (bounded).
    let mut received = None;
    for attempt in 0..50 {
        publisher.send(json!({"type": "publish", "data": {"topic": "zip", "compress": true, "payload": payload, "id": format!("z{attempt}")}}));
        deflating
            .stream
            .sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Some(frame) = deflating.read_frame_with_flags() {
            received = Some(frame);
            break;
        }
    }
    let (first_byte, body) = received.expect("a compressed publication");
    assert_eq!(first_byte & 0x40, 0x40, "RSV1 set: the frame is deflated");
    assert!(
        body.len() < 1000,
        "4 KB of repetition compresses: {}",
        body.len()
    );
    let mut input = body;
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut inflated = Vec::with_capacity(1 << 16);
    flate2::Decompress::new(false)
        .decompress_vec(&input, &mut inflated, flate2::FlushDecompress::Sync)
        .unwrap();
    let frame: Value = serde_json::from_slice(&inflated).unwrap();
    assert_eq!(frame["data"]["payload"], payload);
}

#[test]
fn large_messages_cross_tls_both_ways() {
    let certificate = Certificate::generate();
    let server = start_tls(&certificate, |config| {
        config["server"]["maxMessageBytes"] = json!(1 << 20);
    });
    let mut subscriber = wss_connect(&server, &certificate, &token("s", &[READ_ALL]));
    let mut publisher = wss_connect(&server, &certificate, &token("p", &[PUBLISH_ALL]));
    subscriber.subscribe_confirmed("big");
    // 300 KB: many TLS records in, several rustls buffer fills (64 KiB) out.
    let text: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    publisher.send(json!({"type": "publish", "data": {"topic": "big", "messageType": "m", "payload": text, "id": "big1"}}));
    let frame = subscriber.next_non_ack();
    assert_eq!(frame["data"]["payload"].as_str().unwrap().len(), 300_000);
    assert_eq!(frame["data"]["payload"], json!(text));
    // Back the other way: the subscriber publishes the same size to the publisher.
    let mut echo = wss_connect(&server, &certificate, &token("e", &[PUBLISH_ALL]));
    publisher.subscribe_confirmed("back");
    echo.send(json!({"type": "publish", "data": {"topic": "back", "messageType": "m", "payload": text, "id": "big2"}}));
    let frame = publisher.next_non_ack();
    assert_eq!(frame["data"]["payload"], json!(text));
}

#[test]
fn bad_tls_input_is_closed_counted_and_harms_no_one() {
    let certificate = Certificate::generate();
    let server = start_tls(&certificate, |_| {});
    let mut bystander = wss_connect(&server, &certificate, &token("b", &[READ_ALL]));
    bystander.subscribe_confirmed("still-here");
    // Garbage bytes.
    let answer = plain_bytes_to_tls_port(&server, &[0x55; 300]);
    assert!(!answer.starts_with(b"HTTP/"), "no HTTP answer to garbage");
    wait_for_refusals(&server, 1);
    // Plain HTTP to the TLS port.
    let answer = plain_bytes_to_tls_port(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no plaintext HTTP on the TLS port"
    );
    wait_for_refusals(&server, 2);
    // A client asking for another name rejects our certificate and says so in an alert.
    let error = tls_connect(server.address, &certificate, "wrong.example").unwrap_err();
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    wait_for_refusals(&server, 3);
    // Everyone else is served as before.
    let mut publisher = wss_connect(&server, &certificate, &token("p", &[PUBLISH_ALL]));
    publisher.send(json!({"type": "publish", "data": {"topic": "still-here", "messageType": "m", "payload": "yes", "id": "s1"}}));
    assert_eq!(bystander.next_non_ack()["data"]["payload"], "yes");
    let (status, _) = https(&server, &certificate, "GET", "/health", "");
    assert_eq!(status, 200);
    let (status, metrics) = https(&server, &certificate, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("ringcast_handshakes_refused_total{reason=\"tls\"} 3"),
        "{metrics}"
    );
}

#[test]
fn a_silent_tls_connection_is_dropped_at_the_handshake_timeout() {
    let certificate = Certificate::generate();
    let server = start_tls(&certificate, |config| {
        config["server"]["handshakeTimeoutSeconds"] = json!(1);
    });
    let mut silent = TcpStream::connect(server.address).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let read = silent.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "closed by the server, not by our read timeout: {read:?}"
    );
    assert!(rest.is_empty());
    let mut client = wss_connect(&server, &certificate, &token("c", &[READ_ALL]));
    client.subscribe_confirmed("alive");
}

#[test]
fn plain_listener_beside_tls_shares_topics() {
    let certificate = Certificate::generate();
    let server = start_tls(&certificate, |config| {
        config["server"]["tls"]["plainListen"] = json!("127.0.0.1:0");
    });
    let plain_address = server.handle.as_ref().unwrap().plain_address.unwrap();
    assert_ne!(plain_address, server.address);
    let plain_server = TestServer {
        handle: None,
        address: plain_address,
    };
    let mut plain = connect(&plain_server, APP, &token("plain", &[READ_ALL]));
    plain.subscribe("both");
    plain.sync_without_publish();
    let mut secure = wss_connect(&server, &certificate, &token("tls", &[PUBLISH_ALL]));
    secure.send(json!({"type": "publish", "data": {"topic": "both", "messageType": "m", "payload": "from tls", "id": "b1"}}));
    assert_eq!(plain.next_non_ack()["data"]["payload"], "from tls");
    let (status, _) = http(&plain_server, "GET", "/health", None, "");
    assert_eq!(status, 200);
}

#[test]
fn tls_config_errors_are_clear() {
    let certificate = Certificate::generate();
    let other = Certificate::generate();
    let check = |cert: &PathBuf, key: &PathBuf| {
        let tls: ringcast::config::TlsConfig =
            serde_json::from_value(json!({"cert": cert, "key": key})).unwrap();
        ringcast::tls::server_config(&tls)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let missing = certificate.dir.join("missing.pem");
    let error = check(&missing, &certificate.key);
    assert!(
        error.contains("server.tls.cert") && error.contains("cannot read"),
        "{error}"
    );
    let error = check(&certificate.cert, &missing);
    assert!(
        error.contains("server.tls.key") && error.contains("cannot read"),
        "{error}"
    );
    // A key that is not the certificate's.
    let error = check(&certificate.cert, &other.key);
    assert!(error.contains("does not belong"), "{error}");
    // The key where the certificate should be, and the certificate where the key should be.
    let error = check(&certificate.key, &certificate.key);
    assert!(error.contains("no `BEGIN CERTIFICATE`"), "{error}");
    let error = check(&certificate.cert, &certificate.cert);
    assert!(error.contains("no private key"), "{error}");
    // Broken PEM.
    let broken = certificate.dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let error = check(&broken, &certificate.key);
    assert!(error.contains("not valid PEM"), "{error}");
    // The key itself never appears in an error.
    let key_text = std::fs::read_to_string(&other.key).unwrap();
    let body_line = key_text.lines().nth(1).unwrap();
    assert!(!check(&certificate.cert, &other.key).contains(body_line));
}

#[test]
fn check_config_and_start_report_tls_errors() {
    let certificate = Certificate::generate();
    let other = Certificate::generate();
    let mut config = base_config();
    config["server"]["tls"] = json!({"cert": certificate.cert, "key": other.key});
    let path = certificate.dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["check-config", path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.tls") && stderr.contains("does not belong"),
        "{stderr}"
    );
    // The same configuration does not start.
    let parsed = ringcast::config::Config::from_json(&config.to_string()).unwrap();
    let error = ringcast::runtime::start(&parsed).err().expect("refused");
    assert!(error.to_string().contains("does not belong"), "{error}");
    // And a good one checks out.
    config["server"]["tls"] = certificate.section();
    std::fs::write(&path, config.to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
