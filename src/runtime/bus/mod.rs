//! The bus thread (cluster mode): one async-nats client on a current-thread tokio runtime,
//! bridged to the workers through the same bounded channels as the mesh.
//!
//! Responsibility: send every publication to NATS (once, on its subject: `cluster::subjects`),
//! subscribe on NATS to the buckets this node holds topics of and to its own connections,
//! deliver what NATS hands it into the workers' mailboxes (once per worker that has
//! subscribers, like another worker would), and carry admin calls between nodes. NATS's own
//! interest propagation decides which nodes receive a publication: nothing here keeps
//! state about other nodes.
//!
//! Must not: block a worker (workers only `try_send` to it) or stop local delivery when
//! NATS is away: while disconnected, publications are dropped and counted, and async-nats
//! reconnects forever (backoff capped at 1 s), subscriptions included.
//!
//! The only place besides `loadtest/` that names tokio.
//!
//! Layout: this file is the thread, the NATS connection and the loop that serves both
//! sides; `inbound` reads and validates what NATS delivers, `interest` keeps the bucket
//! subscriptions in step with the interest maps, `admin` carries admin calls between nodes.

mod admin;
mod inbound;
mod interest;
mod security;

use crate::broker::apps::Registry;
use crate::broker::bus_link::BusCommand;
use crate::broker::mesh::{Mailbox, MeshSender};
use crate::cluster::subjects::Subjects;
use crate::cluster::wire::{encode_publication, Admin, Hello};
use crate::cluster::{BUS_DRAIN_BATCH, BUS_SUBSCRIPTION_CAPACITY};
use crate::config::{ClusterConfig, ConfigError};
use crate::metrics::{BusMetrics, WorkerMetrics};
use crate::protocol::deflate::Inflater;
use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use bytes::Bytes;
use futures_util::stream::SelectAll;
use futures_util::{FutureExt, StreamExt};
use interest::BucketSubscription;
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
/// A publication above the server's `max_payload` is logged at most this often (each one
/// is counted).
const TOO_LARGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

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
                    format!(
                        "`{}` is not a NATS URL: {error}",
                        crate::config::redacted_url(url)
                    ),
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
    let subjects = Subjects {
        prefix: parts.config.subject_prefix.clone(),
        node: parts.config.node_number,
    };
    let options = ConnectOptions::new()
        .name(format!("ringcast-{}", parts.config.name))
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).clamp(100, 1000))
        })
        .subscription_capacity(BUS_SUBSCRIPTION_CAPACITY)
        .custom_inbox_prefix(subjects.inbox_prefix())
        .event_callback(move |event| {
            let sender = events_sender.clone();
            async move {
                let _ = sender.try_send(event);
            }
        });
    let options = match security::secure(options, &parts.config).await {
        Ok(options) => options,
        Err(error) => {
            tracing::error!(%error, "cannot use the NATS credentials; running as a single node");
            return;
        }
    };
    let client = match options.connect(addresses).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot create the NATS client; running as a single node");
            return;
        }
    };
    let subscribe = |subject: String| {
        let client = client.clone();
        async move { client.subscribe(subject).await }
    };
    let subscriptions = async {
        Ok::<_, async_nats::SubscribeError>((
            subscribe(subjects.own_connections()).await?,
            subscribe(subjects.admin()).await?,
            subscribe(subjects.hello()).await?,
            subscribe(subjects.terminate(subjects.node)).await?,
        ))
    };
    let (mut own, mut admin, mut hello, mut terminate) = match subscriptions.await {
        Ok(subscriptions) => subscriptions,
        Err(error) => {
            tracing::error!(%error, "cannot subscribe on NATS; running as a single node");
            return;
        }
    };
    let mut bus = Bus {
        client,
        subjects,
        name: parts.config.name.clone(),
        instance: rand::random(),
        registry: parts.registry,
        app_ids: std::collections::HashMap::new(),
        workers: parts.workers,
        metrics: parts.metrics.clone(),
        resync: parts.resync,
        buckets: SelectAll::new(),
        held: HashSet::new(),
        touched: 0,
        disconnected_since: None,
        too_large_logged: None,
        inflater: Inflater::default(),
        refusals: security::RefusalWatch::new(parts.config.clone(), parts.metrics.clone()),
    };
    bus.learn_app_ids();
    bus.reconcile_all().await;
    tracing::info!(
        node = %bus.name,
        number = bus.subjects.node,
        prefix = %bus.subjects.prefix,
        "cluster bus started"
    );
    let inbox = parts.inbox;
    let mut commands = Vec::with_capacity(BUS_DRAIN_BATCH);
    let mut collect = tokio::time::interval(Duration::from_secs(1));
    collect.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = inbox.wait() => {
                inbox.drain(BUS_DRAIN_BATCH, &mut commands);
                let mut running = true;
                for command in commands.drain(..) {
                    running &= bus.on_command(command).await;
                }
                if bus.resync.swap(false, Ordering::AcqRel) {
                    bus.reconcile_all().await;
                }
                if !running {
                    break;
                }
            }
            Some(message) = own.next() => {
                bus.on_publication(&message, false);
                for _ in 1..RECEIVE_BATCH {
                    match own.next().now_or_never() {
                        Some(Some(message)) => bus.on_publication(&message, false),
                        _ => break,
                    }
                }
                bus.wake_workers();
            }
            Some(message) = bus.buckets.next() => {
                bus.on_publication(&message, true);
                for _ in 1..RECEIVE_BATCH {
                    match bus.buckets.next().now_or_never() {
                        Some(Some(message)) => bus.on_publication(&message, true),
                        _ => break,
                    }
                }
                bus.wake_workers();
            }
            Some(message) = admin.next() => bus.on_admin_message(&message),
            Some(message) = hello.next() => bus.on_hello(&message).await,
            Some(message) = terminate.next() => bus.on_terminate_request(&message),
            Some(event) = events.recv() => bus.on_event(event).await,
            // Like the workers: hand back what this thread freed (NATS messages of a
            // burst), which mimalloc would otherwise keep until the thread allocates again.
            _ = collect.tick() => crate::runtime::sys::release_freed_memory(),
        }
    }
    tracing::info!(node = %bus.name, "cluster bus stopped");
}

struct Bus {
    client: Client,
    subjects: Subjects,
    /// `server.cluster.name` (logs, the publication's origin, admin calls).
    name: String,
    /// This process's identity next to the node number (a restarted node is a new
    /// instance; another instance with this number is a misconfiguration).
    instance: u64,
    registry: Arc<Registry>,
    /// Slot → app id for every app this process has served (see [`Bus::app_id`]).
    app_ids: std::collections::HashMap<usize, Box<str>>,
    workers: Vec<MeshSender>,
    metrics: Arc<BusMetrics>,
    resync: Arc<AtomicBool>,
    /// One NATS subscription per `(app slot, bucket)` this node holds topics of.
    buckets: SelectAll<BucketSubscription>,
    /// The keys of the live subscriptions in `buckets`.
    held: HashSet<(usize, u16)>,
    /// Workers given messages since the last wake (bitmask).
    touched: u64,
    disconnected_since: Option<Instant>,
    too_large_logged: Option<Instant>,
    /// Checks the deflated twin of compressed publications from other nodes.
    inflater: Inflater,
    /// Says why NATS refuses this node, once per attempt series, and counts refusals.
    refusals: security::RefusalWatch,
}

impl Bus {
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

    fn hello(&self, answer: bool) -> Bytes {
        json(&Hello {
            node: self.name.clone(),
            number: self.subjects.node,
            instance: self.instance,
            answer,
        })
    }

    async fn send_publication(
        &mut self,
        app: usize,
        topic: &str,
        frame: &crate::broker::mesh::Frame,
    ) {
        if !self.connected() {
            WorkerMetrics::add(&self.metrics.dropped_disconnected, 1);
            return;
        }
        let Some(app) = self.registry.at_slot(app) else {
            return;
        };
        let payload = encode_publication(
            &self.name,
            &app.id,
            topic,
            &frame.plain,
            frame.deflated.as_deref(),
        );
        let max_payload = self.client.max_payload();
        if payload.len() > max_payload {
            WorkerMetrics::add(&self.metrics.dropped_too_large, 1);
            if self
                .too_large_logged
                .is_none_or(|at| at.elapsed() >= TOO_LARGE_LOG_INTERVAL)
            {
                self.too_large_logged = Some(Instant::now());
                tracing::warn!(
                    bytes = payload.len(),
                    max_payload,
                    "publication larger than the NATS server's max_payload: delivered on this node only (counted in ringcast_bus_publications_dropped_total{{reason=\"too_large\"}})"
                );
            }
            return;
        }
        let subject = self.subjects.publication(&app.id, topic);
        if self.publish(subject, payload).await {
            WorkerMetrics::add(&self.metrics.publications_sent, 1);
        } else {
            WorkerMetrics::add(&self.metrics.dropped_disconnected, 1);
        }
    }

    async fn on_command(&mut self, command: BusCommand) -> bool {
        match command {
            BusCommand::Publish { app, topic, frame } => {
                self.send_publication(app, &topic, &frame).await;
            }
            BusCommand::BucketChanged { app, bucket } => self.reconcile(app, bucket).await,
            BusCommand::Terminate { app, id, reply } => self.forward_terminate(app, id, reply),
            BusCommand::TerminateApp { app } => {
                let admin = Admin::TerminateApp {
                    origin: self.name.clone(),
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
                    origin: self.name.clone(),
                    app: self.app_id(app),
                    subject: subject.to_string(),
                    patterns: patterns.iter().map(|p| p.as_str().to_string()).collect(),
                };
                self.broadcast_admin(admin).await;
            }
            BusCommand::Reload(next) => {
                self.registry = next;
                self.learn_app_ids();
                // Added apps' buckets are subscribed as their topics come; a removed
                // app's are dropped.
                self.reconcile_all().await;
            }
            BusCommand::Shutdown => {
                let _ = tokio::time::timeout(Duration::from_secs(1), self.client.flush()).await;
                return false;
            }
        }
        true
    }

    async fn on_event(&mut self, event: Event) {
        if self.refusals.observe(&event) {
            return;
        }
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
                // async-nats renews every subscription itself; the hello only finds a
                // node configured with this node's number.
                self.publish(self.subjects.hello(), self.hello(false)).await;
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
}

fn json<T: serde::Serialize>(value: &T) -> Bytes {
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}
