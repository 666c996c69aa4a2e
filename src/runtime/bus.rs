//! The bus thread (cluster mode): one async-nats client on a current-thread tokio runtime,
//! bridged to the workers through the same bounded channels as the mesh.
//!
//! Responsibility: send publications other nodes are interested in to NATS (once each),
//! deliver publications from other nodes into the workers' mailboxes (once per worker that
//! has subscribers, like another worker would), announce this node's interest, keep every
//! other node's interest (deltas, snapshots, heartbeats, expiry), and carry
//! connection-addressed admin calls to the node holding the connection.
//!
//! Must not: block a worker (workers only `try_send` to it) or stop local delivery when
//! NATS is away: while disconnected, publications for other nodes are dropped and counted,
//! and async-nats reconnects forever (backoff capped at 1 s); on reconnect the node says
//! hello, every node answers with its snapshot, and cross-node delivery resumes.
//!
//! The only place besides `loadtest/` that names tokio.

use crate::broker::apps::{App, Registry};
use crate::broker::interest::{worker_bit, workers_in, LOCAL_WORKERS};
use crate::broker::mesh::{Frame, Mailbox, MeshMessage, MeshSender};
use crate::broker::session::parse_connection_id;
use crate::cluster::remote::{Announced, Key, Outcome, Remote};
use crate::cluster::validate::{
    check_admin, check_delta, check_presence, check_publication, check_snapshot_part,
    check_terminate, max_bus_frame_bytes, parse_control, BusInputError,
};
use crate::cluster::wire::{
    decode_publication, encode_publication, Admin, Delta, Entry, Presence, SnapshotPart, Subjects,
    TerminateRequest,
};
use crate::cluster::{
    BusCommand, ADMIN_REPLY_TIMEOUT_MS, BUS_DRAIN_BATCH, BUS_SUBSCRIPTION_CAPACITY,
    HEARTBEAT_INTERVAL_MS, SNAPSHOT_CHUNK_ENTRIES,
};
use crate::config::{ClusterConfig, ConfigError};
use crate::metrics::{BusMetrics, WorkerMetrics};
use crate::protocol::deflate::Inflater;
use crate::topic::pattern::Pattern;
use async_nats::{Client, ConnectOptions, Event, Message, ServerAddr};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Publications taken from NATS per turn before the touched workers are woken.
const RECEIVE_BATCH: usize = 1024;
/// A NATS publish that cannot be queued in the client for this long is given up (a dead
/// connection not yet noticed): the bus keeps serving instead of stalling.
const PUBLISH_STALL: Duration = Duration::from_millis(250);
/// Connection events queued between async-nats's callback and the bus loop (rare events).
const EVENT_QUEUE: usize = 64;
/// Most patterns honoured in an unsubscribe from another node (PROTOCOL.md §6's limit).
const MAX_PATTERNS: usize = 50;

/// What the bus thread is given at start-up.
pub struct BusParts {
    pub config: ClusterConfig,
    pub registry: Arc<Registry>,
    pub workers: Vec<MeshSender>,
    pub inbox: Mailbox<BusCommand>,
    pub metrics: Arc<BusMetrics>,
    pub resync: Arc<AtomicBool>,
}

/// Checks the NATS URLs (start-up refuses a bad one rather than retrying it forever).
pub fn server_addresses(config: &ClusterConfig) -> Result<Vec<ServerAddr>, ConfigError> {
    config
        .nats
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|error| {
                ConfigError::new(
                    None,
                    "server.cluster.nats",
                    format!("`{url}` is not a NATS URL: {error}"),
                )
            })
        })
        .collect()
}

/// Starts the bus thread.
pub fn spawn(parts: BusParts, addresses: Vec<ServerAddr>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringcast-bus".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "bus thread could not start; running as a single node");
                    return;
                }
            };
            runtime.block_on(run(parts, addresses));
        })
}

async fn run(parts: BusParts, addresses: Vec<ServerAddr>) {
    let (events_sender, mut events) = tokio::sync::mpsc::channel(EVENT_QUEUE);
    let options = ConnectOptions::new()
        .name(format!("ringcast-{}", parts.config.name))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).clamp(100, 1000))
        })
        .subscription_capacity(BUS_SUBSCRIPTION_CAPACITY)
        .event_callback(move |event| {
            let sender = events_sender.clone();
            async move {
                let _ = sender.try_send(event);
            }
        });
    let client = match options.connect(addresses).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot create the NATS client; running as a single node");
            return;
        }
    };
    let subjects = Subjects {
        prefix: parts.config.subject_prefix.clone(),
        node: parts.config.name.clone(),
    };
    let subscribe = |subject: String| {
        let client = client.clone();
        async move { client.subscribe(subject).await }
    };
    let subscriptions = async {
        Ok::<_, async_nats::SubscribeError>((
            subscribe(subjects.publications()).await?,
            subscribe(format!("{}.interest.*", subjects.prefix)).await?,
            subscribe(format!("{}.all.*", subjects.prefix)).await?,
            subscribe(format!("{}.node.{}.*", subjects.prefix, subjects.node)).await?,
        ))
    };
    let (mut publications, mut deltas, mut all, mut mine) = match subscriptions.await {
        Ok(subscriptions) => subscriptions,
        Err(error) => {
            tracing::error!(%error, "cannot subscribe on NATS; running as a single node");
            return;
        }
    };
    let mut bus = Bus {
        client,
        subjects,
        instance: rand::random(),
        registry: parts.registry,
        app_ids: std::collections::HashMap::new(),
        workers: parts.workers,
        metrics: parts.metrics,
        resync: parts.resync,
        announced: Announced::default(),
        remote: Remote::default(),
        epoch: Instant::now(),
        touched: 0,
        disconnected_since: None,
        last_heartbeat_ms: 0,
        inflater: Inflater::default(),
    };
    bus.learn_app_ids();
    tracing::info!(node = %bus.subjects.node, prefix = %bus.subjects.prefix, "cluster bus started");
    let inbox = parts.inbox;
    let mut commands = Vec::with_capacity(BUS_DRAIN_BATCH);
    let mut ticker = tokio::time::interval(Duration::from_millis(HEARTBEAT_INTERVAL_MS / 4));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = inbox.wait() => {
                inbox.drain(BUS_DRAIN_BATCH, &mut commands);
                let mut running = true;
                for command in commands.drain(..) {
                    running &= bus.on_command(command).await;
                }
                bus.send_deltas().await;
                if !running {
                    break;
                }
            }
            Some(message) = publications.next() => {
                bus.on_publication(&message);
                for _ in 1..RECEIVE_BATCH {
                    match publications.next().now_or_never() {
                        Some(Some(message)) => bus.on_publication(&message),
                        _ => break,
                    }
                }
                bus.wake_workers();
            }
            Some(message) = deltas.next() => bus.on_delta(&message).await,
            Some(message) = all.next() => bus.on_all(&message).await,
            Some(message) = mine.next() => bus.on_mine(&message).await,
            Some(event) = events.recv() => bus.on_event(event).await,
            _ = ticker.tick() => bus.on_tick().await,
        }
    }
    tracing::info!(node = %bus.subjects.node, "cluster bus stopped");
}

struct Bus {
    client: Client,
    subjects: Subjects,
    /// This process's identity next to the node name (a restarted node is a new instance).
    instance: u64,
    registry: Arc<Registry>,
    /// Slot → app id for every app this process has served (see [`Bus::app_id`]).
    app_ids: std::collections::HashMap<usize, Box<str>>,
    workers: Vec<MeshSender>,
    metrics: Arc<BusMetrics>,
    resync: Arc<AtomicBool>,
    announced: Announced,
    remote: Remote,
    epoch: Instant,
    /// Workers given messages since the last wake (bitmask).
    touched: u64,
    disconnected_since: Option<Instant>,
    last_heartbeat_ms: u64,
    /// Checks the deflated twin of compressed publications from other nodes.
    inflater: Inflater,
}

impl Bus {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn publish(&self, subject: String, payload: Bytes) -> bool {
        matches!(
            tokio::time::timeout(PUBLISH_STALL, self.client.publish(subject, payload)).await,
            Ok(Ok(()))
        )
    }

    /// The id of the app in `slot`; also for an app a reload removed, whose closing
    /// connections still withdraw their interest.
    fn app_id(&self, app: usize) -> String {
        self.app_ids
            .get(&app)
            .map(|id| id.to_string())
            .unwrap_or_default()
    }

    /// Remembers every app's slot → id (slots are never reused, so this only grows by the
    /// apps that reloads add).
    fn learn_app_ids(&mut self) {
        for app in &self.registry.apps {
            self.app_ids
                .entry(app.index)
                .or_insert_with(|| app.id.clone());
        }
    }

    /// Wire entries → local keys (apps this node does not serve are skipped).
    fn keys(&self, entries: Vec<Entry>) -> Vec<Key> {
        entries
            .into_iter()
            .filter_map(|(app, topic)| Some((self.registry.get(&app)?.index, topic.into())))
            .collect()
    }

    fn entries<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) -> Vec<Entry> {
        keys.into_iter()
            .map(|(app, topic)| (self.app_id(*app), topic.to_string()))
            .collect()
    }

    fn presence(&self) -> Bytes {
        json(&Presence {
            node: self.subjects.node.clone(),
            instance: self.instance,
            seq: self.announced.seq,
        })
    }

    async fn on_command(&mut self, command: BusCommand) -> bool {
        match command {
            BusCommand::Publish { app, topic, frame } => {
                if !self.connected() {
                    WorkerMetrics::add(&self.metrics.dropped_disconnected, 1);
                    return true;
                }
                let Some(app) = self.registry.at_slot(app) else {
                    return true;
                };
                let payload = encode_publication(
                    &self.subjects.node,
                    &app.id,
                    &topic,
                    &frame.plain,
                    frame.deflated.as_deref(),
                );
                if self.publish(self.subjects.publications(), payload).await {
                    WorkerMetrics::add(&self.metrics.publications_sent, 1);
                } else {
                    WorkerMetrics::add(&self.metrics.dropped_disconnected, 1);
                }
            }
            BusCommand::InterestChanged { app, topic } => {
                let present = self
                    .registry
                    .at_slot(app)
                    .is_some_and(|a| a.interest.workers(&topic) & LOCAL_WORKERS != 0);
                self.announced.observe((app, topic), present);
            }
            BusCommand::Terminate { app, id, reply } => {
                let key = (app, private_topic(id).into());
                let nodes = self.remote.holders_of(&key);
                if nodes.is_empty() {
                    let _ = reply.try_send(false);
                    return true;
                }
                let request = json(&TerminateRequest {
                    app: self.app_id(app),
                    connection: crate::broker::session::format_connection_id(id),
                });
                let subjects: Vec<String> = nodes
                    .iter()
                    .map(|node| self.subjects.node(node, "terminate"))
                    .collect();
                let client = self.client.clone();
                tokio::spawn(async move {
                    // Usually one node; more when someone elsewhere subscribed to the
                    // connection's private topic. The holder answers true.
                    let mut answered = false;
                    for subject in subjects {
                        let answer = tokio::time::timeout(
                            Duration::from_millis(ADMIN_REPLY_TIMEOUT_MS),
                            client.request(subject, request.clone()),
                        )
                        .await;
                        if let Ok(Ok(message)) = answer {
                            answered = true;
                            if &message.payload[..] == b"true" {
                                let _ = reply.try_send(true);
                                return;
                            }
                        }
                    }
                    // No answer at all in time: `reply` is dropped and the caller gets 504.
                    if answered {
                        let _ = reply.try_send(false);
                    }
                });
            }
            BusCommand::TerminateApp { app } => {
                let admin = Admin::TerminateApp {
                    origin: self.subjects.node.clone(),
                    app: self.app_id(app),
                };
                self.publish(self.subjects.all("admin"), json(&admin)).await;
            }
            BusCommand::Unsubscribe {
                app,
                subject,
                patterns,
            } => {
                let admin = Admin::Unsubscribe {
                    origin: self.subjects.node.clone(),
                    app: self.app_id(app),
                    subject: subject.to_string(),
                    patterns: patterns.iter().map(|p| p.as_str().to_string()).collect(),
                };
                self.publish(self.subjects.all("admin"), json(&admin)).await;
            }
            BusCommand::Reload(next) => {
                self.registry = next;
                self.learn_app_ids();
                // Remote interest in apps this node just added was skipped while they were
                // unknown here: ask every node for its full interest again.
                self.request_snapshots().await;
            }
            BusCommand::Shutdown => {
                self.send_deltas().await;
                self.publish(self.subjects.all("bye"), self.presence())
                    .await;
                let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
                return false;
            }
        }
        true
    }

    /// Sends the pending interest delta (in chunks of `SNAPSHOT_CHUNK_ENTRIES`).
    async fn send_deltas(&mut self) {
        if self.resync.swap(false, Ordering::AcqRel) {
            let mut current = HashSet::new();
            for app in &self.registry.apps {
                current.extend(
                    app.interest
                        .local_topics()
                        .into_iter()
                        .map(|topic| (app.index, topic)),
                );
            }
            self.announced.resync(current);
        }
        while let Some((seq, add, remove)) = self.announced.take_delta(SNAPSHOT_CHUNK_ENTRIES) {
            let delta = Delta {
                node: self.subjects.node.clone(),
                instance: self.instance,
                seq,
                add: self.entries(&add),
                remove: self.entries(&remove),
            };
            // A lost delta is noticed by the others through the heartbeat's `seq`.
            if self.connected() {
                let subject = self.subjects.interest(&self.subjects.node);
                self.publish(subject, json(&delta)).await;
                WorkerMetrics::add(&self.metrics.interest_deltas_sent, 1);
            }
        }
    }

    /// Sends this node's whole interest to `to`, as of the current delta `seq`.
    async fn send_snapshot(&mut self, to: String) {
        self.send_deltas().await;
        let entries: Vec<&Key> = self.announced.entries().collect();
        let chunks: Vec<&[&Key]> = if entries.is_empty() {
            vec![&[]]
        } else {
            entries.chunks(SNAPSHOT_CHUNK_ENTRIES).collect()
        };
        let count = chunks.len();
        let mut parts = Vec::with_capacity(count);
        for (index, chunk) in chunks.into_iter().enumerate() {
            parts.push(json(&SnapshotPart {
                node: self.subjects.node.clone(),
                instance: self.instance,
                seq: self.announced.seq,
                last: index + 1 == count,
                entries: self.entries(chunk.iter().copied()),
            }));
        }
        for part in parts {
            self.publish(to.clone(), part).await;
        }
    }

    async fn ask_snapshot(&self, node: &str) {
        WorkerMetrics::add(&self.metrics.snapshot_requests, 1);
        let request = self.client.publish_with_reply(
            self.subjects.node(node, "snapshot"),
            self.subjects.own_inbox(),
            Bytes::new(),
        );
        let _ = tokio::time::timeout(PUBLISH_STALL, request).await;
    }

    /// Says hello to every node: each answers with its interest snapshot (and asks for
    /// ours).
    async fn request_snapshots(&self) {
        let hello = self.client.publish_with_reply(
            self.subjects.all("hello"),
            self.subjects.own_inbox(),
            self.presence(),
        );
        let _ = tokio::time::timeout(PUBLISH_STALL, hello).await;
    }

    /// Applies an interest outcome: flips `BUS_BIT`s, asks for a snapshot if needed.
    async fn apply(&mut self, outcome: Outcome) {
        for ((app, topic), interested) in &outcome.changes {
            if let Some(app) = self.registry.at_slot(*app) {
                app.interest.set_remote(topic, *interested);
            }
        }
        self.metrics
            .remote_nodes
            .store(self.remote.node_count() as u64, Ordering::Relaxed);
        self.metrics
            .remote_topics
            .store(self.remote.key_count() as u64, Ordering::Relaxed);
        if let Some(node) = outcome.ask_snapshot {
            self.ask_snapshot(&node).await;
        }
    }

    /// Counts and logs (debug) a message from the bus that failed validation.
    fn invalid(&self, subject: &str, error: BusInputError) {
        WorkerMetrics::add(&self.metrics.invalid_received[error.index()], 1);
        tracing::debug!(subject = %crate::log_value::Escaped(subject), reason = error.label(), "invalid bus message dropped");
    }

    /// Parses and checks a JSON control message; counts and drops what fails.
    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        message: &Message,
        check: impl Fn(&T) -> Result<(), BusInputError>,
    ) -> Option<T> {
        match parse_control::<T>(&message.payload).and_then(|value| check(&value).map(|()| value)) {
            Ok(value) => Some(value),
            Err(error) => {
                self.invalid(&message.subject, error);
                None
            }
        }
    }

    fn on_publication(&mut self, message: &Message) {
        let Some(publication) = decode_publication(&message.payload) else {
            self.invalid(&message.subject, BusInputError::Malformed);
            return;
        };
        if publication.origin == self.subjects.node {
            return;
        }
        let Some(app) = self.registry.get(&publication.app) else {
            self.invalid(&message.subject, BusInputError::BadField);
            return;
        };
        let max_frame_bytes = max_bus_frame_bytes(
            app.limits.max_message_bytes as usize,
            self.registry.settings.max_http_body_bytes,
        );
        if let Err(error) = check_publication(&publication, max_frame_bytes, &mut self.inflater) {
            self.invalid(&message.subject, error);
            return;
        }
        WorkerMetrics::add(&self.metrics.publications_received, 1);
        let mask = app.interest.workers(&publication.topic) & LOCAL_WORKERS;
        if mask == 0 {
            return;
        }
        let topic: Arc<str> = publication.topic.into();
        let frame = Frame {
            plain: publication.plain,
            deflated: publication.deflated,
        };
        for worker in workers_in(mask) {
            let Some(sender) = self.workers.get(worker) else {
                continue;
            };
            let message = MeshMessage::Publish {
                app: app.index,
                topic: topic.clone(),
                frame: frame.clone(),
            };
            match sender.try_send(message) {
                Ok(()) => self.touched |= worker_bit(worker),
                Err(_) => WorkerMetrics::add(&self.metrics.dropped_mailbox_full, 1),
            }
        }
    }

    fn wake_workers(&mut self) {
        for worker in workers_in(std::mem::take(&mut self.touched)) {
            self.workers[worker].notify();
        }
    }

    /// Sends `message` to every worker (admin calls from other nodes).
    fn send_to_every_worker(&mut self, make: impl Fn() -> MeshMessage) {
        for worker in 0..self.workers.len() {
            if self.workers[worker].try_send(make()).is_ok() {
                self.touched |= worker_bit(worker);
            } else {
                tracing::warn!(
                    worker,
                    "mailbox full: a cluster admin call was not delivered"
                );
            }
        }
        self.wake_workers();
    }

    async fn on_delta(&mut self, message: &Message) {
        let Some(delta) = self.parse::<Delta>(message, check_delta) else {
            return;
        };
        if delta.node == self.subjects.node {
            return;
        }
        let (add, remove) = (self.keys(delta.add), self.keys(delta.remove));
        let now = self.now_ms();
        let outcome =
            self.remote
                .on_delta(&delta.node, delta.instance, delta.seq, add, remove, now);
        self.apply(outcome).await;
    }

    async fn on_all(&mut self, message: &Message) {
        let kind = message.subject.rsplit('.').next().unwrap_or("");
        match kind {
            "heartbeat" | "hello" | "bye" => {
                let Some(presence) = self.parse::<Presence>(message, check_presence) else {
                    return;
                };
                if presence.node == self.subjects.node {
                    if presence.instance != self.instance {
                        tracing::warn!(node = %presence.node, "another process uses this node name");
                    }
                    return;
                }
                if kind == "bye" {
                    tracing::info!(node = %presence.node, "node left the cluster");
                    let outcome = self.remote.on_bye(&presence.node, presence.instance);
                    self.apply(outcome).await;
                    return;
                }
                if kind == "hello" {
                    tracing::info!(node = %presence.node, "node (re)joined the cluster");
                    if let Some(reply) = &message.reply {
                        self.send_snapshot(reply.to_string()).await;
                    }
                }
                let now = self.now_ms();
                let outcome =
                    self.remote
                        .on_presence(&presence.node, presence.instance, presence.seq, now);
                self.apply(outcome).await;
            }
            "admin" => {
                let Some(admin) = self.parse::<Admin>(message, check_admin) else {
                    return;
                };
                self.on_admin(admin);
            }
            _ => {}
        }
    }

    fn on_admin(&mut self, admin: Admin) {
        match admin {
            Admin::TerminateApp { origin, app } => {
                let Some(app) = self.app(&origin, &app) else {
                    return;
                };
                self.send_to_every_worker(|| MeshMessage::Terminate {
                    app,
                    connection: None,
                    reply: None,
                });
            }
            Admin::Unsubscribe {
                origin,
                app,
                subject,
                patterns,
            } => {
                let Some(app) = self.app(&origin, &app) else {
                    return;
                };
                let subject: Arc<str> = subject.into();
                let patterns: Arc<[Pattern]> = patterns
                    .iter()
                    .take(MAX_PATTERNS)
                    .map(|p| Pattern::compile(p))
                    .collect();
                self.send_to_every_worker(|| MeshMessage::Unsubscribe {
                    app,
                    subject: subject.clone(),
                    patterns: patterns.clone(),
                });
            }
        }
    }

    /// The index of `app` for an admin call from another node.
    fn app(&self, origin: &str, app: &str) -> Option<usize> {
        if origin == self.subjects.node {
            return None;
        }
        self.registry.get(app).map(|app| app.index)
    }

    async fn on_mine(&mut self, message: &Message) {
        match message.subject.rsplit('.').next().unwrap_or("") {
            "snapshot" => {
                if let Some(reply) = &message.reply {
                    self.send_snapshot(reply.to_string()).await;
                }
            }
            "inbox" => {
                // A NATS status message (e.g. "no responders" to this node's hello when it
                // is alone) is not input from another node.
                if message.status.is_some() {
                    return;
                }
                let Some(part) = self.parse::<SnapshotPart>(message, check_snapshot_part) else {
                    return;
                };
                if part.node == self.subjects.node {
                    return;
                }
                let entries = self.keys(part.entries);
                let now = self.now_ms();
                let outcome = self.remote.on_snapshot_part(
                    &part.node,
                    part.instance,
                    part.seq,
                    part.last,
                    entries,
                    now,
                );
                self.apply(outcome).await;
            }
            "terminate" => {
                let (Some(request), Some(reply)) = (
                    self.parse::<TerminateRequest>(message, check_terminate),
                    message.reply.clone(),
                ) else {
                    return;
                };
                let found = self.terminate_here(&request);
                let client = self.client.clone();
                tokio::spawn(async move {
                    let found = match found {
                        Some(answer) => wait_for_worker(answer).await,
                        None => false,
                    };
                    let answer = if found { "true" } else { "false" };
                    let _ = client
                        .publish(reply, Bytes::from_static(answer.as_bytes()))
                        .await;
                });
            }
            _ => {}
        }
    }

    /// Hands a terminate call to the worker holding the connection, if this node has it.
    fn terminate_here(&mut self, request: &TerminateRequest) -> Option<flume::Receiver<bool>> {
        let app: &Arc<App> = self.registry.get(&request.app)?;
        let id = parse_connection_id(&request.connection)?;
        let owner = crate::broker::session::worker_of(id);
        let holders = app.interest.workers(&private_topic(id)) & LOCAL_WORKERS;
        if holders & worker_bit(owner) == 0 {
            return None;
        }
        let worker = owner;
        let (reply, answer) = flume::bounded(1);
        let message = MeshMessage::Terminate {
            app: app.index,
            connection: Some(id),
            reply: Some(reply),
        };
        self.workers.get(worker)?.try_send(message).ok()?;
        self.touched |= worker_bit(worker);
        self.wake_workers();
        Some(answer)
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.metrics.connected.store(1, Ordering::Relaxed);
                if let Some(since) = self.disconnected_since.take() {
                    let outage = since.elapsed().as_millis() as u64;
                    WorkerMetrics::add(&self.metrics.reconnects, 1);
                    WorkerMetrics::add(&self.metrics.outage_ms, outage);
                    tracing::warn!(
                        outage_ms = outage,
                        "NATS connection restored; resuming cross-node delivery"
                    );
                } else {
                    tracing::info!("connected to NATS");
                }
                // Everyone answers with a snapshot and asks for ours: state lost during
                // the outage is rebuilt.
                self.request_snapshots().await;
            }
            Event::Disconnected => {
                self.metrics.connected.store(0, Ordering::Relaxed);
                WorkerMetrics::add(&self.metrics.disconnects, 1);
                self.disconnected_since = Some(Instant::now());
                tracing::warn!(
                    "NATS connection lost; local delivery continues, cross-node delivery paused until it is back"
                );
            }
            other => tracing::warn!(event = %other, "NATS event"),
        }
    }

    async fn on_tick(&mut self) {
        self.send_deltas().await;
        let now = self.now_ms();
        if now.saturating_sub(self.last_heartbeat_ms) >= HEARTBEAT_INTERVAL_MS {
            self.last_heartbeat_ms = now;
            if self.connected() {
                self.publish(self.subjects.all("heartbeat"), self.presence())
                    .await;
            }
        }
        let (outcome, dead) = self.remote.expire(now);
        for node in &dead {
            WorkerMetrics::add(&self.metrics.nodes_expired, 1);
            tracing::warn!(node = %node, "node silent too long; its interest is dropped");
        }
        if !dead.is_empty() || !outcome.changes.is_empty() {
            self.apply(outcome).await;
        }
    }
}

/// Waits for a worker's answer (its send wakes this task), up to the admin timeout.
async fn wait_for_worker(answer: flume::Receiver<bool>) -> bool {
    let timeout = Duration::from_millis(ADMIN_REPLY_TIMEOUT_MS);
    matches!(
        tokio::time::timeout(timeout, answer.recv_async()).await,
        Ok(Ok(true))
    )
}

fn private_topic(id: u64) -> String {
    format!("priv/{}", crate::broker::session::format_connection_id(id))
}

fn json<T: serde::Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
