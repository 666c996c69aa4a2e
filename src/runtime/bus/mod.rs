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
//!
//! Layout: this file is the thread, the NATS connection and the loop that serves both
//! sides; `inbound` reads and validates what NATS delivers, `interest` announces and
//! learns interest, `admin` carries admin calls between nodes.

mod admin;
mod inbound;
mod interest;
pub mod security;

use crate::broker::apps::Registry;
use crate::broker::bus_link::BusCommand;
use crate::broker::interest::LOCAL_WORKERS;
use crate::broker::mesh::{Mailbox, MeshSender};
use crate::cluster::remote::{Announced, Remote};
use crate::cluster::wire::{encode_publication, Admin, Presence, Subjects};
use crate::cluster::{BUS_DRAIN_BATCH, BUS_SUBSCRIPTION_CAPACITY, HEARTBEAT_INTERVAL_MS};
use crate::config::{ClusterConfig, ConfigError};
use crate::metrics::{BusMetrics, WorkerMetrics};
use crate::protocol::deflate::Inflater;
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
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
            BusCommand::Terminate { app, id, reply } => self.forward_terminate(app, id, reply),
            BusCommand::TerminateApp { app } => {
                let admin = Admin::TerminateApp {
                    origin: self.subjects.node.clone(),
                    app: self.app_id(app),
                };
                self.broadcast_admin(admin).await;
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
                self.broadcast_admin(admin).await;
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

fn private_topic(id: u64) -> String {
    format!("priv/{}", crate::broker::session::format_connection_id(id))
}

fn json<T: serde::Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
