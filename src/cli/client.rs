//! `ringcast subscribe` and `ringcast publish`: a small debug client, as `nats sub` and
//! `nats pub` are for NATS — no websocat or curl needed to try a broker.
//!
//! - `subscribe` opens a WebSocket (`/apps/{appId}?access_token=…`), subscribes to the given
//!   topics, confirms with a ping round trip that the broker took the subscriptions (then
//!   says "subscribed" on stderr), and prints every frame as it arrives, one JSON document
//!   per line on stdout, until interrupted, closed by the broker, or `--count` publications.
//! - `publish` sends one publication over a WebSocket (`type: publish`; the ack, when the
//!   app sends acks, is awaited) or, with `--http`, through `POST
//!   /api/topics/{appId}/publish` (an adminKey token).
//!
//! The broker is named by `--url`: `ws://HOST:PORT`, `http://HOST:PORT` or `HOST:PORT`; a
//! full client URL (`ws://HOST:PORT/apps/APP?access_token=TOKEN`, as websocat takes) also
//! gives the app and the token. The token comes from `--token`, else the URL, else
//! `$RINGCAST_TOKEN` (which keeps a real token out of the process list). Plain `ws://` only:
//! for a TLS-only broker use `server.tls.plainListen` or websocat; `--http` also speaks
//! `https://`. Blocking sockets with timeouts: this is tooling, never on the broker's path.
//! A refusal (401, 404, …) or a close from the broker is an error naming the status or the
//! close code and reason; the token is never printed.

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::{json, Value};
use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use tungstenite::{Message, WebSocket};

/// Connecting, the upgrade, the welcome, a publication's ack and an HTTP publication must
/// each finish within this; a broker that takes longer is reported as not answering.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The environment variable read for a token when neither `--token` nor the URL has one.
const TOKEN_VARIABLE: &str = "RINGCAST_TOKEN";

#[derive(Args)]
pub struct Connection {
    /// The broker: ws://HOST:PORT, http://HOST:PORT or HOST:PORT (also a full client URL
    /// ws://HOST:PORT/apps/APP?access_token=TOKEN).
    #[arg(long, default_value = ringcast::config::DEFAULT_LISTEN)]
    url: String,
    /// The app id (default: from --url).
    #[arg(long)]
    app: Option<String>,
    /// A token (`ringcast token` mints one; default: from --url, else $RINGCAST_TOKEN).
    /// WebSocket: the app's authKey; --http: its adminKey.
    #[arg(long)]
    token: Option<String>,
}

#[derive(Args)]
pub struct SubscribeArgs {
    #[command(flatten)]
    connection: Connection,
    /// Exit after this many publications (0: run until interrupted or closed).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Topics to subscribe to (the connection also receives `main` and its `priv/…` topics).
    #[arg(required = true)]
    topics: Vec<String>,
}

#[derive(Args)]
pub struct PublishArgs {
    #[command(flatten)]
    connection: Connection,
    /// Publish through the HTTP API (adminKey token) instead of a WebSocket (authKey token).
    #[arg(long)]
    http: bool,
    /// The messageType (default: the broker's, `broadcast`).
    #[arg(long = "type", value_name = "MESSAGE_TYPE")]
    message_type: Option<String>,
    /// MESSAGE is JSON, sent as it is (default: it is sent as a JSON string).
    #[arg(long)]
    json: bool,
    /// Publish with `compress: true` (subscribers get a binary frame).
    #[arg(long)]
    compress: bool,
    /// The topic.
    topic: String,
    /// The message.
    message: String,
}

/// Where to connect, from `--url`.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `wss://` or `https://`.
    tls: bool,
    /// `HOST:PORT`.
    authority: String,
    /// From a `/apps/{appId}` path.
    app: Option<String>,
    /// From an `access_token` query parameter.
    token: Option<String>,
}

fn parse_target(url: &str) -> anyhow::Result<Target> {
    let (tls, rest) = [
        ("ws://", false),
        ("http://", false),
        ("wss://", true),
        ("https://", true),
    ]
    .iter()
    .find_map(|(scheme, tls)| url.strip_prefix(scheme).map(|rest| (*tls, rest)))
    .unwrap_or((false, url));
    if rest.contains("://") {
        bail!("--url `{}`: use ws://, http:// or HOST:PORT", redact(url));
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, remainder) = rest.split_at(split);
    if authority.is_empty() {
        bail!("--url `{}` names no HOST:PORT", redact(url));
    }
    let (path, query) = remainder.split_once('?').unwrap_or((remainder, ""));
    let app = path
        .strip_prefix("/apps/")
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    let token = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .filter(|token| !token.is_empty())
        .map(str::to_string);
    Ok(Target {
        tls,
        authority: authority.to_string(),
        app,
        token,
    })
}

/// A URL as it may be shown: without its query (which may hold a token).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// App ids are 1–128 characters of `[A-Za-z0-9_-]` (the configuration's rule).
fn valid_app_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The target, app and token of a command, or an error saying what is missing.
fn resolve(connection: &Connection, token_key: &str) -> anyhow::Result<(Target, String, String)> {
    let target = parse_target(&connection.url)?;
    let Some(app) = connection.app.clone().or_else(|| target.app.clone()) else {
        bail!("no app: pass --app ID (or a --url ending in /apps/ID)");
    };
    if !valid_app_id(&app) {
        bail!("--app `{app}` is not an app id (1-128 characters of A-Z, a-z, 0-9, _ and -)");
    }
    let token = connection
        .token
        .clone()
        .or_else(|| target.token.clone())
        .or_else(|| std::env::var(TOKEN_VARIABLE).ok().filter(|t| !t.is_empty()));
    let Some(token) = token else {
        bail!(
            "no token: pass --token TOKEN or set {TOKEN_VARIABLE} (`{} token --config FILE \
             --app {app}{token_key}` mints one)",
            super::hint::command()
        );
    };
    Ok((target, app, token))
}

/// Connects, upgrades and reads the welcome; returns the socket and the welcome frame.
fn open(target: &Target, app: &str, token: &str) -> anyhow::Result<(WebSocket<TcpStream>, Value)> {
    if target.tls {
        bail!(
            "wss:// is not supported by this debug client: connect to a plain listener \
             (server.tls.plainListen) or use websocat"
        );
    }
    let authority = &target.authority;
    let addresses: Vec<_> = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority} (expected HOST:PORT)"))?
        .collect();
    let mut last_error = None;
    let stream = addresses.iter().find_map(|address| {
        TcpStream::connect_timeout(address, CLIENT_TIMEOUT)
            .map_err(|error| last_error = Some(error))
            .ok()
    });
    let Some(stream) = stream else {
        let reason = last_error.map(|e| e.to_string()).unwrap_or_default();
        bail!("cannot connect to {authority}: {reason}");
    };
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{authority}/apps/{app}?access_token={token}");
    let (mut socket, _) = match tungstenite::client::client(url, stream) {
        Ok(connected) => connected,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            bail!(
                "the broker refused the connection: HTTP {} {body}",
                response.status()
            )
        }
        Err(error) => bail!("WebSocket upgrade with {authority} failed: {error}"),
    };
    let welcome = loop {
        match read_data(&mut socket)? {
            Some(frame) => break frame,
            None => continue,
        }
    };
    if welcome["messageType"] != "welcome" {
        bail!("the broker did not send a welcome first: {welcome}");
    }
    Ok((socket, welcome))
}

/// The next data frame, parsed (`None` for a pong); an error for a close or a failure.
fn read_data(socket: &mut WebSocket<TcpStream>) -> anyhow::Result<Option<Value>> {
    match next_frame(socket)? {
        Frame::Data(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?,
        )),
        Frame::Pong(_) => Ok(None),
    }
}

enum Frame {
    Data(String),
    Pong(Vec<u8>),
}

/// The next data frame (text, or binary holding UTF-8 JSON) or pong; pings are answered
/// by tungstenite. A close from the broker is an error with its code and reason.
fn next_frame(socket: &mut WebSocket<TcpStream>) -> anyhow::Result<Frame> {
    loop {
        let message = match socket.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("the broker did not answer within {CLIENT_TIMEOUT:?}")
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                bail!("the connection was closed")
            }
            Err(error) => bail!("the connection failed: {error}"),
        };
        return Ok(match message {
            Message::Text(text) => Frame::Data(text.as_str().to_string()),
            Message::Binary(bytes) => Frame::Data(String::from_utf8_lossy(&bytes).into_owned()),
            Message::Pong(payload) => Frame::Pong(payload.to_vec()),
            Message::Close(Some(frame)) => bail!(
                "the broker closed the connection: {} {}",
                u16::from(frame.code),
                frame.reason
            ),
            Message::Close(None) => bail!("the broker closed the connection"),
            Message::Ping(_) | Message::Frame(_) => continue,
        });
    }
}

/// Sends a ping and returns every data frame that arrives before its pong: the broker
/// handles a connection's frames in order, so whatever was sent before has been processed.
fn round_trip(socket: &mut WebSocket<TcpStream>, marker: &[u8]) -> anyhow::Result<Vec<String>> {
    socket.send(Message::Ping(marker.to_vec().into()))?;
    let mut before = Vec::new();
    loop {
        match next_frame(socket)? {
            Frame::Pong(payload) if payload == marker => return Ok(before),
            Frame::Pong(_) => {}
            Frame::Data(text) => before.push(text),
        }
    }
}

/// Closes with 1000 and waits (bounded) for the broker's close frame.
fn close(mut socket: WebSocket<TcpStream>) {
    let _ = socket.close(None);
    while socket.read().is_ok() {}
}

fn print_line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

pub fn subscribe(args: &SubscribeArgs) -> anyhow::Result<()> {
    let (target, app, token) = resolve(&args.connection, "")?;
    let (mut socket, welcome) = open(&target, &app, &token)?;
    let connection = &welcome["data"]["connection"];
    eprintln!(
        "connected to app {app} as connection {}",
        connection["id"].as_str().unwrap_or("?")
    );
    for topic in &args.topics {
        let command = json!({"type": "subscribe", "data": {"topic": topic}});
        socket.send(Message::text(command.to_string()))?;
    }
    let mut received = 0;
    let early = round_trip(&mut socket, b"ringcast-subscribe")?;
    eprintln!("subscribed to {}", args.topics.join(", "));
    // Publications may arrive while waiting (on `main`, say): printed like the others.
    let mut frames = early.into_iter();
    // No timeout from here on: a quiet topic is not an error.
    socket.get_mut().set_read_timeout(None)?;
    while args.count == 0 || received < args.count {
        let text = match frames.next() {
            Some(text) => text,
            None => match next_frame(&mut socket)? {
                Frame::Data(text) => text,
                Frame::Pong(_) => continue,
            },
        };
        print_line(&text)?;
        received += 1;
    }
    close(socket);
    Ok(())
}

/// The message as JSON text: as given with `--json` (checked), else as a JSON string.
fn message_json(args: &PublishArgs) -> anyhow::Result<String> {
    if args.json {
        serde_json::from_str::<serde::de::IgnoredAny>(&args.message)
            .context("--json: MESSAGE is not JSON")?;
        Ok(args.message.clone())
    } else {
        Ok(Value::from(args.message.as_str()).to_string())
    }
}

pub fn publish(args: &PublishArgs) -> anyhow::Result<()> {
    let key = if args.http { " --admin" } else { "" };
    let (target, app, token) = resolve(&args.connection, key)?;
    let message = message_json(args)?;
    let mut fields = serde_json::Map::new();
    fields.insert("topic".into(), args.topic.clone().into());
    if let Some(message_type) = &args.message_type {
        fields.insert("messageType".into(), message_type.clone().into());
    }
    if args.compress {
        fields.insert("compress".into(), true.into());
    }
    if args.http {
        publish_http(&target, &app, &token, fields, &message)
    } else {
        publish_websocket(&target, &app, &token, fields, &message)
    }
}

/// `fields` as a JSON object with `"name": <message>` appended, the message verbatim.
fn with_message(fields: serde_json::Map<String, Value>, name: &str, message: &str) -> String {
    let object = Value::Object(fields).to_string();
    let open = object.strip_suffix('}').unwrap_or(&object);
    let separator = if open.len() > 1 { "," } else { "" };
    format!("{open}{separator}\"{name}\":{message}}}")
}

fn publish_websocket(
    target: &Target,
    app: &str,
    token: &str,
    mut fields: serde_json::Map<String, Value>,
    message: &str,
) -> anyhow::Result<()> {
    let (mut socket, _) = open(target, app, token)?;
    let id = format!("cli-{:016x}", rand::random::<u64>());
    fields.insert("id".into(), id.clone().into());
    let data = with_message(fields, "payload", message);
    socket.send(Message::text(format!(
        r#"{{"type":"publish","data":{data}}}"#
    )))?;
    let acked = round_trip(&mut socket, b"ringcast-publish")?
        .iter()
        .any(|text| {
            serde_json::from_str::<Value>(text).is_ok_and(|frame| {
                frame["messageType"] == "ack" && frame["data"]["data"] == json!(id)
            })
        });
    close(socket);
    let topic = fields_topic(&data);
    if acked {
        println!("published to {topic} (acknowledged)");
    } else {
        println!("published to {topic} (this app sends no acks)");
    }
    Ok(())
}

/// The topic of a publication's `data` object, for the confirmation line.
fn fields_topic(data: &str) -> String {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|value| value["topic"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn publish_http(
    target: &Target,
    app: &str,
    token: &str,
    fields: serde_json::Map<String, Value>,
    message: &str,
) -> anyhow::Result<()> {
    let scheme = if target.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}/api/topics/{app}/publish", target.authority);
    let body = with_message(fields, "message", message);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(CLIENT_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("ringcast/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .content_type("application/json")
        .send(body.as_bytes())
        .with_context(|| format!("POST {url} failed"))?;
    let status = response.status().as_u16();
    let answer = response.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        bail!("the broker refused the publication: HTTP {status} {answer}");
    }
    println!("published to {} (HTTP {status})", fields_topic(&body));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_the_address_and_may_give_app_and_token() {
        let target = parse_target("127.0.0.1:8080").unwrap();
        assert_eq!(target.authority, "127.0.0.1:8080");
        assert!(!target.tls && target.app.is_none() && target.token.is_none());
        let full = parse_target("ws://localhost:9/apps/my-app?x=1&access_token=a.b.c").unwrap();
        assert_eq!(full.authority, "localhost:9");
        assert_eq!(full.app.as_deref(), Some("my-app"));
        assert_eq!(full.token.as_deref(), Some("a.b.c"));
        assert!(parse_target("https://broker.example:443").unwrap().tls);
        assert!(parse_target("http:///apps/x").is_err());
        let error = parse_target("ftp://host/?access_token=secret").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn the_message_goes_in_verbatim() {
        let mut fields = serde_json::Map::new();
        fields.insert("topic".into(), "chat".into());
        assert_eq!(
            with_message(fields, "message", r#"{"b": 1,  "a":2}"#),
            r#"{"topic":"chat","message":{"b": 1,  "a":2}}"#
        );
        assert_eq!(
            with_message(serde_json::Map::new(), "payload", "1"),
            r#"{"payload":1}"#
        );
    }
}
