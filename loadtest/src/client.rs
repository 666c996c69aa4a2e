//! Client tasks: subscribers, WebSocket and HTTP publishers, idle holders and handshake
//! storms, for both wire flavours (the Realtime Pub/Sub protocol and NATS over WebSocket),
//! and the pool of single-threaded tokio runtimes they run on.
//!
//! Responsibility: drive the server and count into [`Stats`]; never decide pass/fail.
//! Must not: allocate per delivery on the subscriber path (frames are parsed in place).
//!
//! Invariants: each connection lives on one client thread for life; a subscriber counts
//! itself ready once, on its first warm-up message; a publisher adds to `expected` the
//! subscriber count of the topic it just published to, before the write.

use crate::stats::{Stats, ThreadStats};
use crate::wire::{self, Connection};
use anyhow::{bail, Context};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Which wire protocol the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// PROTOCOL.md: ringcast and the tokio baseline.
    Realtime,
    /// nats-server's WebSocket listener (NATS text protocol inside WebSocket frames).
    Nats,
}

/// Where and as whom the clients connect.
pub struct Target {
    pub address: SocketAddr,
    pub flavor: Flavor,
    pub app_id: String,
    /// WebSocket client tokens, used round-robin (pre-minted: signing is client CPU).
    pub tokens: Vec<String>,
    /// HTTP API bearer token.
    pub admin_token: String,
    /// Source addresses used round-robin; empty = let the kernel choose.
    pub sources: Vec<IpAddr>,
    /// Cluster runs: subscribers (connection indexes below `subscriber_count`) connect to
    /// these nodes round-robin; publishers and warm-up use `address`. Empty = `address`.
    pub subscriber_addresses: Vec<SocketAddr>,
    pub subscriber_count: usize,
}

impl Target {
    fn path(&self, index: usize) -> String {
        match self.flavor {
            Flavor::Realtime => format!(
                "/apps/{}?access_token={}",
                self.app_id,
                self.tokens[index % self.tokens.len()]
            ),
            Flavor::Nats => "/".to_string(),
        }
    }

    fn source(&self, index: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()])
    }

    /// Connects, upgrades and completes the protocol greeting (welcome frame, or NATS
    /// `CONNECT` + `PING`/`PONG`).
    pub async fn open(&self, index: usize) -> anyhow::Result<Connection> {
        let address = if index < self.subscriber_count && !self.subscriber_addresses.is_empty() {
            self.subscriber_addresses[index % self.subscriber_addresses.len()]
        } else {
            self.address
        };
        let mut connection = wire::connect(address, &self.path(index), self.source(index)).await?;
        match self.flavor {
            Flavor::Realtime => {
                let frame = next_data_frame(&mut connection).await?;
                if wire::find(&frame, b"\"welcome\"").is_none() {
                    bail!("no_welcome");
                }
            }
            Flavor::Nats => {
                send_text(
                    &mut connection.stream,
                    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":true}\r\nPING\r\n",
                )
                .await?;
                loop {
                    let frame = next_data_frame(&mut connection).await?;
                    if wire::find(&frame, b"PONG").is_some() {
                        break;
                    }
                    if wire::find(&frame, b"-ERR").is_some() {
                        bail!("nats_err");
                    }
                }
            }
        }
        Ok(connection)
    }

    /// One subscribe command as a complete client frame.
    pub fn subscribe_frame(&self, topic: &str, sid: usize, out: &mut Vec<u8>) {
        match self.flavor {
            Flavor::Realtime => {
                let command = format!(r#"{{"type":"subscribe","data":{{"topic":"{topic}"}}}}"#);
                wire::encode_frame(wire::OPCODE_TEXT, command.as_bytes(), out);
            }
            Flavor::Nats => {
                let command = format!("SUB {topic} {sid}\r\n");
                wire::encode_frame(wire::OPCODE_TEXT, command.as_bytes(), out);
            }
        }
    }

    /// One publication as a complete client frame.
    pub fn publish_frame(&self, topic: &str, payload: &[u8], id: u64, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(payload.len() + 96);
        match self.flavor {
            Flavor::Realtime => {
                body.extend_from_slice(br#"{"type":"publish","data":{"topic":""#);
                body.extend_from_slice(topic.as_bytes());
                body.extend_from_slice(br#"","messageType":"load","payload":"#);
                body.extend_from_slice(payload);
                body.extend_from_slice(format!(r#","id":"{id}"}}}}"#).as_bytes());
            }
            Flavor::Nats => {
                body.extend_from_slice(format!("PUB {topic} {}\r\n", payload.len()).as_bytes());
                body.extend_from_slice(payload);
                body.extend_from_slice(b"\r\n");
            }
        }
        wire::encode_frame(wire::OPCODE_TEXT, &body, out);
    }
}

async fn send_text(stream: &mut TcpStream, text: &[u8]) -> anyhow::Result<()> {
    let mut frame = Vec::with_capacity(text.len() + 8);
    wire::encode_frame(wire::OPCODE_TEXT, text, &mut frame);
    stream.write_all(&frame).await.context("write")
}

/// Reads until the next text/binary frame and returns a copy of it (greeting only).
async fn next_data_frame(connection: &mut Connection) -> anyhow::Result<Vec<u8>> {
    loop {
        while let Some((opcode, range)) = connection.reader.next_frame() {
            match opcode {
                wire::OPCODE_TEXT | wire::OPCODE_BINARY | wire::OPCODE_CONTINUATION => {
                    return Ok(connection.reader.payload(range).to_vec())
                }
                wire::OPCODE_CLOSE => {
                    bail!("closed_{}", close_code(connection.reader.payload(range)))
                }
                _ => {}
            }
        }
        if connection.reader.fill(&mut connection.stream).await? == 0 {
            bail!("eof");
        }
    }
}

fn close_code(payload: &[u8]) -> u16 {
    if payload.len() >= 2 {
        u16::from_be_bytes([payload[0], payload[1]])
    } else {
        1005
    }
}

/// What a subscriber does with one application message.
fn account(frame: &[u8], thread: &ThreadStats, stats: &Stats, ready: &mut bool) {
    if let Some(sent) = wire::payload_timestamp(frame) {
        thread.record_delivery(sent, wire::monotonic_nanos());
    } else if !*ready && wire::find(frame, wire::WARMUP_MARKER).is_some() {
        *ready = true;
        stats.ready.fetch_add(1, Ordering::Relaxed);
    }
}

/// Splits the NATS byte stream carried in WebSocket frames into messages.
#[derive(Default)]
struct NatsStream {
    pending: Vec<u8>,
}

impl NatsStream {
    /// Appends `bytes`, accounts every complete `MSG`, and returns whether a `PING` arrived.
    fn feed(
        &mut self,
        bytes: &[u8],
        thread: &ThreadStats,
        stats: &Stats,
        ready: &mut bool,
    ) -> bool {
        self.pending.extend_from_slice(bytes);
        let mut ping = false;
        let mut start = 0;
        while let Some(line_end) = wire::find(&self.pending[start..], b"\r\n") {
            let line = &self.pending[start..start + line_end];
            if line.starts_with(b"MSG ") {
                let size: usize = std::str::from_utf8(line)
                    .ok()
                    .and_then(|text| text.rsplit(' ').next())
                    .and_then(|size| size.parse().ok())
                    .unwrap_or(0);
                let body_start = start + line_end + 2;
                if self.pending.len() < body_start + size + 2 {
                    break;
                }
                account(
                    &self.pending[body_start..body_start + size],
                    thread,
                    stats,
                    ready,
                );
                start = body_start + size + 2;
            } else {
                ping |= line == b"PING";
                start += line_end + 2;
            }
        }
        self.pending.drain(..start);
        ping
    }
}

/// Subscribes to `topics` and counts every delivery until the connection or the run ends.
pub async fn subscriber(
    target: Arc<Target>,
    index: usize,
    topics: Vec<String>,
    thread: Arc<ThreadStats>,
    stats: Arc<Stats>,
) {
    if let Err(error) = run_subscriber(&target, index, &topics, &thread, &stats).await {
        stats.error(&error.to_string());
    }
    stats.open_connections.fetch_sub(1, Ordering::Relaxed);
}

async fn run_subscriber(
    target: &Target,
    index: usize,
    topics: &[String],
    thread: &ThreadStats,
    stats: &Stats,
) -> anyhow::Result<()> {
    stats.open_connections.fetch_add(1, Ordering::Relaxed);
    let Connection {
        mut stream,
        mut reader,
    } = target.open(index).await?;
    stats.handshakes.fetch_add(1, Ordering::Relaxed);
    let mut commands = Vec::new();
    for (sid, topic) in topics.iter().enumerate() {
        target.subscribe_frame(topic, sid + 1, &mut commands);
    }
    stream.write_all(&commands).await.context("write")?;
    let mut ready = false;
    let mut nats = NatsStream::default();
    let mut replies = Vec::new();
    loop {
        while let Some((opcode, range)) = reader.next_frame() {
            let payload = reader.payload(range);
            match opcode {
                wire::OPCODE_PING => wire::encode_frame(wire::OPCODE_PONG, payload, &mut replies),
                wire::OPCODE_CLOSE => bail!("closed_{}", close_code(payload)),
                wire::OPCODE_PONG => {}
                _ if target.flavor == Flavor::Nats => {
                    if nats.feed(payload, thread, stats, &mut ready) {
                        wire::encode_frame(wire::OPCODE_TEXT, b"PONG\r\n", &mut replies);
                    }
                }
                _ => account(payload, thread, stats, &mut ready),
            }
        }
        if !replies.is_empty() {
            stream.write_all(&replies).await.context("write")?;
            replies.clear();
        }
        if reader.fill(&mut stream).await? == 0 {
            if stats.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            bail!("eof");
        }
    }
}

/// How a publisher paces itself.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// This many publications per second from this publisher.
    Rate(f64),
    /// As fast as possible while `expected - delivered` (all publishers together) stays
    /// under this many deliveries: an end-to-end bound on what is in flight.
    Window(u64),
}

/// What a publisher publishes to: topics and their subscriber counts.
pub struct PublishPlan {
    pub topics: Vec<(String, u64)>,
    pub payload_bytes: usize,
    pub pace: Pace,
}

/// Publishes over WebSocket until `stats.stop`; a second task counts the acks.
pub async fn publisher(
    target: Arc<Target>,
    index: usize,
    plan: Arc<PublishPlan>,
    stats: Arc<Stats>,
) {
    if let Err(error) = run_publisher(&target, index, &plan, &stats).await {
        stats.error(&error.to_string());
    }
}

async fn run_publisher(
    target: &Arc<Target>,
    index: usize,
    plan: &PublishPlan,
    stats: &Arc<Stats>,
) -> anyhow::Result<()> {
    let Connection { stream, mut reader } = target.open(index).await?;
    stats.handshakes.fetch_add(1, Ordering::Relaxed);
    let (mut read_half, mut write_half) = stream.into_split();
    let ack_stats = stats.clone();
    tokio::spawn(async move {
        loop {
            while let Some((opcode, range)) = reader.next_frame() {
                let payload = reader.payload(range);
                if opcode == wire::OPCODE_CLOSE {
                    let code = close_code(payload);
                    // A publisher that stopped half-closes its socket; nats-server answers
                    // with a normal close (1000), which is the end of the run, not an error.
                    if !(code == 1000 && ack_stats.stop.load(Ordering::Relaxed)) {
                        ack_stats.error(&format!("closed_{code}"));
                    }
                    return;
                }
                if wire::find(payload, b"\"ack\"").is_some() {
                    ack_stats.acks.fetch_add(1, Ordering::Relaxed);
                }
            }
            match reader.fill(&mut read_half).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let started = Instant::now();
    let mut sent = 0u64;
    let mut frame = Vec::with_capacity(plan.payload_bytes + 128);
    while !stats.stop.load(Ordering::Relaxed) {
        let mut scheduled = None;
        match plan.pace {
            Pace::Rate(rate) => {
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                let now = Instant::now();
                if due > now + Duration::from_micros(500) {
                    tokio::time::sleep_until(due.into()).await;
                }
                scheduled = Some(due);
            }
            Pace::Window(window) => {
                while stats
                    .expected
                    .load(Ordering::Relaxed)
                    .saturating_sub(stats.delivered())
                    > window
                {
                    if stats.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }
        // The run may have stopped while this publisher slept: a publication sent now could
        // land after the drain decided everything expected had arrived (false loss).
        if stats.stop.load(Ordering::Relaxed) {
            break;
        }
        let (topic, subscribers) = &plan.topics[(index + sent as usize) % plan.topics.len()];
        frame.clear();
        let payload = wire::stamped_payload(plan.payload_bytes, wire::TIMESTAMP_MARKER);
        target.publish_frame(topic, &payload, sent, &mut frame);
        stats.expected.fetch_add(*subscribers, Ordering::Relaxed);
        write_half.write_all(&frame).await.context("write")?;
        if let Some(due) = scheduled {
            // After the write: a server that stops reading holds the publisher back here,
            // and an open loop that cannot keep its schedule must show it.
            stats.record_schedule_lag(Instant::now().saturating_duration_since(due));
        }
        stats.published.fetch_add(1, Ordering::Relaxed);
        sent += 1;
    }
    Ok(())
}

/// Publishes over the HTTP API (`POST /api/topics/{app}/publish`, keep-alive, one request
/// in flight per connection) until `stats.stop`.
pub async fn http_publisher(
    target: Arc<Target>,
    index: usize,
    plan: Arc<PublishPlan>,
    stats: Arc<Stats>,
) {
    if let Err(error) = run_http_publisher(&target, index, &plan, &stats).await {
        stats.error(&error.to_string());
    }
}

async fn run_http_publisher(
    target: &Target,
    index: usize,
    plan: &PublishPlan,
    stats: &Stats,
) -> anyhow::Result<()> {
    let mut stream = wire::open_tcp(target.address, target.source(index)).await?;
    let mut response = Vec::new();
    let started = Instant::now();
    let mut sent = 0u64;
    while !stats.stop.load(Ordering::Relaxed) {
        let mut scheduled = None;
        if let Pace::Rate(rate) = plan.pace {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            if due > Instant::now() + Duration::from_micros(500) {
                tokio::time::sleep_until(due.into()).await;
            }
            scheduled = Some(due);
        }
        let (topic, subscribers) = &plan.topics[(index + sent as usize) % plan.topics.len()];
        let payload = wire::stamped_payload(plan.payload_bytes, wire::TIMESTAMP_MARKER);
        let mut body =
            format!(r#"{{"topic":"{topic}","messageType":"load","message":"#).into_bytes();
        body.extend_from_slice(&payload);
        body.push(b'}');
        let mut request = format!(
            "POST /api/topics/{}/publish HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            target.app_id,
            target.address,
            target.admin_token,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        stats.expected.fetch_add(*subscribers, Ordering::Relaxed);
        stream.write_all(&request).await.context("write")?;
        if let Some(due) = scheduled {
            stats.record_schedule_lag(Instant::now().saturating_duration_since(due));
        }
        let status = read_http_response(&mut stream, &mut response).await?;
        if status != 200 {
            stats.expected.fetch_sub(*subscribers, Ordering::Relaxed);
            bail!("http_{status}");
        }
        stats.published.fetch_add(1, Ordering::Relaxed);
        sent += 1;
    }
    Ok(())
}

/// Reads one HTTP response (head + `Content-Length` body); returns its status.
async fn read_http_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<u16> {
    loop {
        if let Some(head_end) = wire::find(buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
            let status: u16 = head
                .get(9..12)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if buffer.len() >= head_end + 4 + length {
                buffer.drain(..head_end + 4 + length);
                return Ok(status);
            }
        }
        let mut chunk = [0u8; 4096];
        let count = stream.read(&mut chunk).await.context("read")?;
        if count == 0 {
            bail!("eof");
        }
        buffer.extend_from_slice(&chunk[..count]);
    }
}

/// Opens a connection and holds it, answering pings, until the run ends.
pub async fn idle(target: Arc<Target>, index: usize, stats: Arc<Stats>) {
    let result: anyhow::Result<()> = async {
        let Connection {
            mut stream,
            mut reader,
        } = target.open(index).await?;
        stats.handshakes.fetch_add(1, Ordering::Relaxed);
        stats.open_connections.fetch_add(1, Ordering::Relaxed);
        let mut replies = Vec::new();
        let mut nats = NatsStream::default();
        let thread = ThreadStats::new();
        let mut ready = false;
        loop {
            while let Some((opcode, range)) = reader.next_frame() {
                let payload = reader.payload(range);
                match opcode {
                    wire::OPCODE_PING => {
                        wire::encode_frame(wire::OPCODE_PONG, payload, &mut replies)
                    }
                    wire::OPCODE_CLOSE => bail!("closed_{}", close_code(payload)),
                    _ if target.flavor == Flavor::Nats
                        && nats.feed(payload, &thread, &stats, &mut ready) =>
                    {
                        wire::encode_frame(wire::OPCODE_TEXT, b"PONG\r\n", &mut replies);
                    }
                    _ => {}
                }
            }
            if !replies.is_empty() {
                stream.write_all(&replies).await.context("write")?;
                replies.clear();
            }
            if reader.fill(&mut stream).await? == 0 {
                bail!("eof");
            }
        }
    }
    .await;
    if let Err(error) = result {
        if !stats.stop.load(Ordering::Relaxed) {
            stats.error(&error.to_string());
        }
        stats.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Connects, completes the greeting, closes; again until `stats.stop`. Handshake latency
/// goes into the thread's histogram.
pub async fn handshake_storm(
    target: Arc<Target>,
    index: usize,
    step: usize,
    thread: Arc<ThreadStats>,
    stats: Arc<Stats>,
) {
    let mut attempt = index;
    while !stats.stop.load(Ordering::Relaxed) {
        let started = wire::monotonic_nanos();
        match target.open(attempt).await {
            Ok(connection) => {
                thread.record_delivery(started, wire::monotonic_nanos());
                stats.handshakes.fetch_add(1, Ordering::Relaxed);
                drop(connection);
            }
            Err(error) => {
                stats.error(&error.to_string());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        attempt += step;
    }
}

/// Sends a warm-up message to every topic every 300 ms until all `subscribers` are ready.
pub async fn warm_up(
    target: Arc<Target>,
    topics: Vec<String>,
    subscribers: u64,
    stats: Arc<Stats>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let Connection { stream, mut reader } = target
        .open(usize::MAX / 2)
        .await
        .context("warm-up connection")?;
    let (mut read_half, mut write_half) = stream.into_split();
    let drain = tokio::spawn(async move {
        while matches!(reader.fill(&mut read_half).await, Ok(count) if count > 0) {}
    });
    let deadline = Instant::now() + timeout;
    let mut frame = Vec::new();
    while stats.ready.load(Ordering::Relaxed) < subscribers {
        if Instant::now() > deadline {
            drain.abort();
            bail!(
                "warm-up timed out: {} of {subscribers} subscribers ready",
                stats.ready.load(Ordering::Relaxed)
            );
        }
        frame.clear();
        for topic in &topics {
            let payload = wire::stamped_payload(32, wire::WARMUP_MARKER);
            target.publish_frame(topic, &payload, 0, &mut frame);
        }
        write_half
            .write_all(&frame)
            .await
            .context("warm-up write")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drain.abort();
    Ok(())
}

/// A boxed task for the pool.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Client threads, each running a current-thread tokio runtime; tasks are placed by index.
pub struct ClientPool {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<Task>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl ClientPool {
    pub fn new(threads: usize) -> anyhow::Result<ClientPool> {
        let mut pool = ClientPool {
            senders: Vec::new(),
            threads: Vec::new(),
        };
        for index in 0..threads.max(1) {
            let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Task>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            pool.senders.push(sender);
            pool.threads.push(
                std::thread::Builder::new()
                    .name(format!("client-{index}"))
                    .spawn(move || {
                        runtime.block_on(async move {
                            while let Some(task) = receiver.recv().await {
                                tokio::spawn(task);
                            }
                        })
                    })?,
            );
        }
        Ok(pool)
    }

    pub fn threads(&self) -> usize {
        self.senders.len()
    }

    /// Runs `task` on thread `index % threads`.
    pub fn spawn(&self, index: usize, task: impl Future<Output = ()> + Send + 'static) {
        let sender = &self.senders[index % self.senders.len()];
        sender.send(Box::pin(task)).ok();
    }
}

impl Drop for ClientPool {
    /// Closes the task channels; each runtime then stops, dropping (closing) its sockets.
    fn drop(&mut self) {
        self.senders.clear();
        for thread in self.threads.drain(..) {
            thread.join().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats_target() -> Target {
        Target {
            address: "127.0.0.1:4222".parse().unwrap(),
            flavor: Flavor::Nats,
            app_id: String::new(),
            tokens: vec![String::new()],
            admin_token: String::new(),
            sources: Vec::new(),
            subscriber_addresses: Vec::new(),
            subscriber_count: 0,
        }
    }

    /// The payload of one masked client frame.
    fn unmask(frame: &[u8]) -> Vec<u8> {
        let (length, start) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            length => (length as usize, 2),
        };
        let mask = &frame[start..start + 4];
        frame[start + 4..start + 4 + length]
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4])
            .collect()
    }

    #[test]
    fn nats_topics_subscribe_and_publish_to_subjects_with_their_own_sids() {
        let target = nats_target();
        let mut frame = Vec::new();
        target.subscribe_frame("topic-17", 3, &mut frame);
        assert_eq!(unmask(&frame), b"SUB topic-17 3\r\n");
        frame.clear();
        let payload = wire::stamped_payload(100, wire::TIMESTAMP_MARKER);
        target.publish_frame("topic-17", &payload, 9, &mut frame);
        let mut expected = b"PUB topic-17 100\r\n".to_vec();
        expected.extend_from_slice(&payload);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(unmask(&frame), expected);
    }

    #[test]
    fn nats_stream_counts_messages_of_every_subject_across_frame_boundaries() {
        let stats = Stats::new(1);
        let thread = ThreadStats::new();
        let mut ready = false;
        let mut stream = NatsStream::default();
        let stamped = wire::stamped_payload(64, wire::TIMESTAMP_MARKER);
        let warm = wire::stamped_payload(32, wire::WARMUP_MARKER);
        let mut bytes = Vec::new();
        // Warm-up on one subject, then measured messages on two subjects (sids 1 and 2),
        // one with a reply subject, and a server PING.
        bytes.extend_from_slice(format!("MSG topic-1 1 {}\r\n", warm.len()).as_bytes());
        bytes.extend_from_slice(&warm);
        bytes.extend_from_slice(b"\r\n");
        for header in ["MSG topic-1 1", "MSG topic-40 2", "MSG topic-40 2 _INBOX.x"] {
            bytes.extend_from_slice(format!("{header} {}\r\n", stamped.len()).as_bytes());
            bytes.extend_from_slice(&stamped);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"PING\r\n");
        // Split inside the last measured message: it counts once, when complete.
        let split = bytes.len() - stamped.len() - 20;
        assert!(!stream.feed(&bytes[..split], &thread, &stats, &mut ready));
        assert!(ready);
        assert_eq!(stats.ready.load(Ordering::Relaxed), 1);
        assert_eq!(thread.delivered.load(Ordering::Relaxed), 2);
        assert!(stream.feed(&bytes[split..], &thread, &stats, &mut ready));
        assert_eq!(thread.delivered.load(Ordering::Relaxed), 3);
        assert_eq!(stats.ready.load(Ordering::Relaxed), 1, "ready counts once");
        assert!(stream.pending.is_empty());
    }
}
