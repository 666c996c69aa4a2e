//! Counters: one [`WorkerMetrics`] per worker, written only by its worker, summed at scrape.
//!
//! Responsibility: hold the numbers and render them in the Prometheus text format (with
//! the `prometheus-client` encoder). It must not be shared on the hot path: each worker
//! writes its own cache-line-separated block with relaxed atomic adds (no contention), and
//! only `/metrics` reads across workers.

use crate::broker::apps::{App, AppCounters, Registry};
use crate::error::CloseKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as Registry_;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused before the WebSocket upgrade (or a plain HTTP request at the
/// framing stage), with the HTTP status it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unparseable request head or Content-Length (400), or an unsupported transfer
    /// encoding (501).
    MalformedRequest,
    /// Request head above the limit (431).
    HeadTooLarge,
    /// Not an acceptable upgrade: wrong method, version, key or headers (400).
    BadUpgrade,
    /// Chunked body (411).
    LengthRequired,
    /// Body above `maxHttpBodyBytes` (413).
    BodyTooLarge,
    /// `maxHandshakesPerSecond` reached (503).
    HandshakeRateLimited,
    /// No such app (404).
    UnknownApp,
    /// Outside `clientSourceAddress` (403).
    SourceAddress,
    /// No `access_token` (401).
    MissingToken,
    /// Token invalid, expired or signed with another key or algorithm (401).
    InvalidToken,
    /// `maxConnections` of the app reached (429).
    AppFull,
    /// `maxConnectionsPerSubject` reached (429).
    SubjectFull,
    /// `maxConnectionsPerAddress` reached (429).
    AddressFull,
    /// The request (head and body) was not complete within `handshakeTimeoutSeconds`:
    /// the socket is dropped without an answer.
    RequestTimeout,
    /// The TLS handshake failed: garbage, plain HTTP on the TLS port, a client that
    /// rejected the certificate (answered with a TLS alert).
    Tls,
}

impl Refusal {
    pub const ALL: [Refusal; 15] = [
        Refusal::MalformedRequest,
        Refusal::HeadTooLarge,
        Refusal::BadUpgrade,
        Refusal::LengthRequired,
        Refusal::BodyTooLarge,
        Refusal::HandshakeRateLimited,
        Refusal::UnknownApp,
        Refusal::SourceAddress,
        Refusal::MissingToken,
        Refusal::InvalidToken,
        Refusal::AppFull,
        Refusal::SubjectFull,
        Refusal::AddressFull,
        Refusal::RequestTimeout,
        Refusal::Tls,
    ];

    /// Stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MalformedRequest => "malformed_request",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::BadUpgrade => "bad_upgrade",
            Refusal::LengthRequired => "length_required",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::HandshakeRateLimited => "handshake_rate_limited",
            Refusal::UnknownApp => "unknown_app",
            Refusal::SourceAddress => "source_address",
            Refusal::MissingToken => "missing_token",
            Refusal::InvalidToken => "invalid_token",
            Refusal::AppFull => "app_full",
            Refusal::SubjectFull => "subject_full",
            Refusal::AddressFull => "address_full",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::Tls => "tls",
        }
    }

    /// The refusal for a request-head parse error answered with `status`.
    pub fn for_head_status(status: u16) -> Refusal {
        match status {
            431 => Refusal::HeadTooLarge,
            _ => Refusal::MalformedRequest,
        }
    }

    fn index(self) -> usize {
        Refusal::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Counters of one worker. Written by that worker only (relaxed adds), read at scrape.
#[derive(Default)]
#[repr(align(128))]
pub struct WorkerMetrics {
    pub connections_open: AtomicU64,
    /// Connections in the HTTP phase (accepted, not upgraded): a gauge.
    pub http_connections: AtomicU64,
    /// Most connections seen in the HTTP phase at once on this worker (sizing
    /// `maxHttpConnectionsPerWorker`).
    pub http_connections_high_water: AtomicU64,
    /// Times the accept loop paused because `maxHttpConnectionsPerWorker` connections were
    /// in the HTTP phase.
    pub http_accept_pauses: AtomicU64,
    pub handshakes_accepted: AtomicU64,
    pub handshakes_refused: [AtomicU64; Refusal::ALL.len()],
    pub messages_in: AtomicU64,
    /// Messages published through the HTTP API (`POST /api/topics/{appId}/publish`).
    pub http_publications: AtomicU64,
    pub deliveries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Send calls (`sendmsg`/`sendfile`) that wrote queued frames to clients:
    /// `deliveries / writes` is how many frames one write carries.
    pub writes: AtomicU64,
    pub http_requests: AtomicU64,
    pub mesh_messages_in: AtomicU64,
    pub closes: [AtomicU64; CloseKind::ALL.len()],
    /// Frames not queued to a session because it was closing or over `maxPendingBytes`,
    /// plus the queued frames a slow consumer's close discarded.
    pub frames_dropped: AtomicU64,
    /// Largest outbound queue (bytes) seen on this worker.
    pub pending_bytes_high_water: AtomicU64,
    /// Most messages seen waiting in this worker's outbox for other workers' mailboxes.
    pub outbox_high_water: AtomicU64,
    /// Bytes sent from the frame file with `sendfile` (part of `bytes_out`).
    pub zero_copy_bytes_out: AtomicU64,
    /// Fan-out frames copied because every chunk of the frame file was still in use.
    pub frame_file_full: AtomicU64,
    /// Bytes of frames the frame file holds (a gauge, refreshed each tick).
    pub frame_file_bytes: AtomicU64,
}

impl WorkerMetrics {
    #[inline]
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    /// Refusals counted so far for `reason` (this worker).
    pub fn refusals(&self, reason: Refusal) -> u64 {
        self.handshakes_refused[reason.index()].load(Ordering::Relaxed)
    }

    pub fn refused(&self, reason: Refusal) {
        Self::add(&self.handshakes_refused[reason.index()], 1);
    }

    pub fn tls_refused(&self) {
        self.refused(Refusal::Tls);
    }

    pub fn closed(&self, kind: CloseKind) {
        Self::add(&self.closes[kind.index()], 1);
    }

    pub fn observe_pending(&self, bytes: u64) {
        Self::high_water(&self.pending_bytes_high_water, bytes);
    }

    pub fn observe_outbox(&self, queued: u64) {
        Self::high_water(&self.outbox_high_water, queued);
    }

    /// Sets the HTTP-phase gauge and its high-water mark.
    pub fn observe_http_connections(&self, count: u64) {
        self.http_connections.store(count, Ordering::Relaxed);
        Self::high_water(&self.http_connections_high_water, count);
    }

    #[inline]
    fn high_water(mark: &AtomicU64, value: u64) {
        if value > mark.load(Ordering::Relaxed) {
            mark.store(value, Ordering::Relaxed);
        }
    }
}

/// The cluster bus's numbers (cluster mode only). Written by the bus thread, except the
/// worker-side drops (`publications_dropped_queue_full`), read at scrape.
#[derive(Default)]
pub struct BusMetrics {
    /// 1 while the NATS connection is up.
    pub connected: AtomicU64,
    /// NATS connection losses (each one logged with a warning).
    pub disconnects: AtomicU64,
    /// Successful reconnections after a loss (each logged with the outage's length).
    pub reconnects: AtomicU64,
    /// Milliseconds spent disconnected, summed over finished outages.
    pub outage_ms: AtomicU64,
    /// Publications handed to NATS (one per publication, whatever the subscriber count).
    pub publications_sent: AtomicU64,
    /// Publications received from other nodes.
    pub publications_received: AtomicU64,
    /// Dropped: the workers → bus queue was full (`BUS_QUEUE_CAPACITY`).
    pub dropped_queue_full: AtomicU64,
    /// Dropped: NATS was disconnected when the publication reached the bus thread.
    pub dropped_disconnected: AtomicU64,
    /// Dropped: a worker's mailbox was full when a bus publication arrived for it.
    pub dropped_mailbox_full: AtomicU64,
    /// Interest delta messages sent.
    pub interest_deltas_sent: AtomicU64,
    /// Snapshot requests sent (joins, reconnects, detected gaps).
    pub snapshot_requests: AtomicU64,
    /// Other nodes currently heard from.
    pub remote_nodes: AtomicU64,
    /// (app, topic) pairs some other node has announced interest in.
    pub remote_topics: AtomicU64,
    /// Nodes dropped because their heartbeats stopped.
    pub nodes_expired: AtomicU64,
    /// Messages from the bus dropped by validation, by [`BUS_INVALID_REASONS`] index
    /// (`cluster::validate::BusInputError`).
    pub invalid_received: [AtomicU64; BUS_INVALID_REASONS.len()],
}

/// Labels of `ringcast_bus_invalid_messages_total`, in `BusInputError` order.
pub const BUS_INVALID_REASONS: [&str; 5] = [
    "malformed",
    "too_large",
    "bad_frame",
    "bad_payload",
    "bad_field",
];

fn render_bus(registry: &mut Registry_, bus: &BusMetrics) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let gauge = |registry: &mut Registry_, name: &str, help: &str, value: u64| {
        let g: Gauge = Gauge::default();
        g.set(value as i64);
        registry.register(name, help, g);
    };
    let counter = |registry: &mut Registry_, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    gauge(
        registry,
        "bus_connected",
        "1 while the NATS connection is up",
        load(&bus.connected),
    );
    counter(
        registry,
        "bus_disconnects",
        "NATS connection losses",
        load(&bus.disconnects),
    );
    counter(
        registry,
        "bus_reconnects",
        "NATS reconnections after a loss",
        load(&bus.reconnects),
    );
    counter(
        registry,
        "bus_outage_milliseconds",
        "Time spent disconnected from NATS (finished outages)",
        load(&bus.outage_ms),
    );
    counter(
        registry,
        "bus_publications_sent",
        "Publications sent to the bus (once each)",
        load(&bus.publications_sent),
    );
    counter(
        registry,
        "bus_publications_received",
        "Publications received from other nodes",
        load(&bus.publications_received),
    );
    let dropped: Family<Labels, Counter> = Family::default();
    for (reason, value) in [
        ("queue_full", &bus.dropped_queue_full),
        ("disconnected", &bus.dropped_disconnected),
        ("mailbox_full", &bus.dropped_mailbox_full),
    ] {
        dropped
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc_by(load(value));
    }
    registry.register(
        "bus_publications_dropped",
        "Bus publications dropped, by reason",
        dropped,
    );
    counter(
        registry,
        "bus_interest_deltas_sent",
        "Interest delta messages sent",
        load(&bus.interest_deltas_sent),
    );
    counter(
        registry,
        "bus_snapshot_requests",
        "Interest snapshot requests sent",
        load(&bus.snapshot_requests),
    );
    gauge(
        registry,
        "bus_remote_nodes",
        "Other nodes heard from",
        load(&bus.remote_nodes),
    );
    gauge(
        registry,
        "bus_remote_topics",
        "(app, topic) pairs other nodes are interested in",
        load(&bus.remote_topics),
    );
    counter(
        registry,
        "bus_nodes_expired",
        "Nodes dropped after their heartbeats stopped",
        load(&bus.nodes_expired),
    );
    let invalid: Family<Labels, Counter> = Family::default();
    for (reason, value) in BUS_INVALID_REASONS.iter().zip(&bus.invalid_received) {
        invalid
            .get_or_create(&vec![("reason".into(), (*reason).into())])
            .inc_by(load(value));
    }
    registry.register(
        "bus_invalid_messages",
        "Messages from the bus dropped by validation (not what a ringcast node sends), by reason",
        invalid,
    );
}

fn sum(workers: &[WorkerMetrics], pick: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
    workers
        .iter()
        .map(|w| pick(w).load(Ordering::Relaxed))
        .sum()
}

type Labels = Vec<(String, String)>;

fn app_sum(app: &App, pick: impl Fn(&AppCounters) -> &AtomicU64) -> u64 {
    app.counters
        .iter()
        .map(|c| pick(c).load(Ordering::Relaxed))
        .sum()
}

/// Renders every worker's counters, summed (and per worker for connections), the per-app
/// counters of `registry`, and the io driver in use, as Prometheus text. With `bus`
/// (cluster mode) the bus's numbers are added.
pub fn render(
    workers: &[WorkerMetrics],
    io_driver: &str,
    registry: &Registry,
    bus: Option<&BusMetrics>,
) -> String {
    let mut registry_out = Registry_::with_prefix("ringcast");
    let registry_ref = &mut registry_out;
    let counter = |registry: &mut Registry_, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    let connections: Family<Labels, Gauge> = Family::default();
    for (index, worker) in workers.iter().enumerate() {
        connections
            .get_or_create(&vec![("worker".into(), index.to_string())])
            .set(worker.connections_open.load(Ordering::Relaxed) as i64);
    }
    registry_ref.register(
        "connections",
        "Open WebSocket connections, per worker",
        connections,
    );
    let http_connections: Family<Labels, Gauge> = Family::default();
    for (index, worker) in workers.iter().enumerate() {
        http_connections
            .get_or_create(&vec![("worker".into(), index.to_string())])
            .set(worker.http_connections.load(Ordering::Relaxed) as i64);
    }
    registry_ref.register(
        "http_connections",
        "Connections in the HTTP phase (not upgraded to WebSocket), per worker",
        http_connections,
    );
    let app_connections: Family<Labels, Gauge> = Family::default();
    let app_messages: Family<Labels, Counter> = Family::default();
    let app_deliveries: Family<Labels, Counter> = Family::default();
    let app_http_publications: Family<Labels, Counter> = Family::default();
    for app in &registry.apps {
        let label = vec![("app".to_string(), app.id.to_string())];
        app_connections
            .get_or_create(&label)
            .set(app_sum(app, |c| &c.connections) as i64);
        app_messages
            .get_or_create(&label)
            .inc_by(app_sum(app, |c| &c.messages_in));
        app_deliveries
            .get_or_create(&label)
            .inc_by(app_sum(app, |c| &c.deliveries));
        app_http_publications
            .get_or_create(&label)
            .inc_by(app_sum(app, |c| &c.http_publications));
    }
    registry_ref.register(
        "app_connections",
        "Open WebSocket connections, per app",
        app_connections,
    );
    registry_ref.register(
        "app_messages_in",
        "WebSocket client commands received, per app",
        app_messages,
    );
    registry_ref.register(
        "app_deliveries",
        "Frames queued to subscribers, per app",
        app_deliveries,
    );
    registry_ref.register(
        "app_http_publications",
        "Messages published through the HTTP API, per app",
        app_http_publications,
    );
    let anonymous: Family<Labels, Counter> = Family::default();
    for app in registry.apps.iter().filter(|app| app.anonymous.is_some()) {
        for (result, value) in [
            ("issued", app_sum(app, |c| &c.anonymous_issued)),
            ("rate_limited", app_sum(app, |c| &c.anonymous_limited)),
        ] {
            anonymous
                .get_or_create(&vec![
                    ("app".to_string(), app.id.to_string()),
                    ("result".to_string(), result.to_string()),
                ])
                .inc_by(value);
        }
    }
    registry_ref.register(
        "anonymous_tokens",
        "POST /token/anonymous answers, per app: issued or rate_limited (429)",
        anonymous,
    );
    let jwks_fetches: Family<Labels, Counter> = Family::default();
    let jwks_keys: Family<Labels, Gauge> = Family::default();
    for cache in &registry.jwks {
        let url = cache.url_for_logs().to_string();
        for (result, value) in [
            ("ok", cache.fetches_ok.load(Ordering::Relaxed)),
            ("failed", cache.fetches_failed.load(Ordering::Relaxed)),
        ] {
            jwks_fetches
                .get_or_create(&vec![
                    ("url".to_string(), url.clone()),
                    ("result".to_string(), result.to_string()),
                ])
                .inc_by(value);
        }
        jwks_keys
            .get_or_create(&vec![("url".to_string(), url)])
            .set(cache.snapshot().len() as i64);
    }
    registry_ref.register(
        "jwks_fetches",
        "JWKS documents fetched, per URL (without credentials or query): ok or failed (previous keys kept)",
        jwks_fetches,
    );
    registry_ref.register("jwks_keys", "Usable keys loaded, per JWKS URL", jwks_keys);
    counter(
        registry_ref,
        "handshakes_accepted",
        "WebSocket upgrades accepted",
        sum(workers, |w| &w.handshakes_accepted),
    );
    let refused: Family<Labels, Counter> = Family::default();
    for reason in Refusal::ALL {
        refused
            .get_or_create(&vec![("reason".into(), reason.label().into())])
            .inc_by(sum(workers, |w| &w.handshakes_refused[reason.index()]));
    }
    registry_ref.register(
        "handshakes_refused",
        "Requests refused before the upgrade, by reason",
        refused,
    );
    counter(
        registry_ref,
        "messages_in",
        "WebSocket client commands received",
        sum(workers, |w| &w.messages_in),
    );
    counter(
        registry_ref,
        "http_publications",
        "Messages published through the HTTP API (not in messages_in)",
        sum(workers, |w| &w.http_publications),
    );
    counter(
        registry_ref,
        "deliveries",
        "Frames queued to subscribers",
        sum(workers, |w| &w.deliveries),
    );
    counter(
        registry_ref,
        "bytes_in",
        "Bytes read from clients",
        sum(workers, |w| &w.bytes_in),
    );
    counter(
        registry_ref,
        "bytes_out",
        "Bytes written to clients",
        sum(workers, |w| &w.bytes_out),
    );
    counter(
        registry_ref,
        "writes",
        "Send calls that wrote queued frames to clients (deliveries per write = coalescing)",
        sum(workers, |w| &w.writes),
    );
    counter(
        registry_ref,
        "zero_copy_bytes_out",
        "Bytes written to clients from the frame file without copying (sendfile), part of bytes_out",
        sum(workers, |w| &w.zero_copy_bytes_out),
    );
    counter(
        registry_ref,
        "frame_file_full",
        "Fan-out frames queued from memory because every chunk of the frame file was in use",
        sum(workers, |w| &w.frame_file_full),
    );
    counter(
        registry_ref,
        "http_accept_pauses",
        "Times a worker stopped accepting because maxHttpConnectionsPerWorker connections were in the HTTP phase",
        sum(workers, |w| &w.http_accept_pauses),
    );
    counter(
        registry_ref,
        "http_requests",
        "HTTP requests served",
        sum(workers, |w| &w.http_requests),
    );
    counter(
        registry_ref,
        "mesh_messages_in",
        "Messages received from other workers",
        sum(workers, |w| &w.mesh_messages_in),
    );
    counter(
        registry_ref,
        "frames_dropped",
        "Frames not delivered because their session was closing or too slow",
        sum(workers, |w| &w.frames_dropped),
    );
    counter(
        registry_ref,
        "slow_consumers",
        "Connections closed with 4008 (outbound queue above maxPendingBytes)",
        sum(workers, |w| &w.closes[CloseKind::SlowConsumer.index()]),
    );
    let closes: Family<Labels, Counter> = Family::default();
    for kind in CloseKind::ALL {
        closes
            .get_or_create(&vec![("reason".into(), kind.label().into())])
            .inc_by(sum(workers, |w| &w.closes[kind.index()]));
    }
    registry_ref.register("closes", "Connections closed, by typed reason", closes);
    let high_water = |registry: &mut Registry_, name: &str, help: &str, value: u64| {
        let g: Gauge = Gauge::default();
        g.set(value as i64);
        registry.register(name, help, g);
    };
    high_water(
        registry_ref,
        "pending_bytes_high_water",
        "Largest outbound queue of one connection seen, bytes",
        workers
            .iter()
            .map(|w| w.pending_bytes_high_water.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
    );
    high_water(
        registry_ref,
        "outbox_high_water",
        "Most cross-worker messages seen waiting in one worker's outbox",
        workers
            .iter()
            .map(|w| w.outbox_high_water.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
    );
    high_water(
        registry_ref,
        "http_connections_high_water",
        "Most connections seen in the HTTP phase at once on one worker",
        workers
            .iter()
            .map(|w| w.http_connections_high_water.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0),
    );
    high_water(
        registry_ref,
        "frame_file_bytes",
        "Bytes of fan-out frames held in the workers' frame files (memfd pages, not in RSS)",
        sum(workers, |w| &w.frame_file_bytes),
    );
    high_water(
        registry_ref,
        "config_generation",
        "Configuration generation in force (1 at start, +1 per reload)",
        registry.generation,
    );
    let driver: Family<Labels, Gauge> = Family::default();
    driver
        .get_or_create(&vec![("driver".into(), io_driver.into())])
        .set(1);
    registry_ref.register("io_driver", "The io driver the workers run", driver);
    if let Some(bus) = bus {
        render_bus(registry_ref, bus);
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry_out);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_summed_counters() {
        let workers = [WorkerMetrics::default(), WorkerMetrics::default()];
        WorkerMetrics::add(&workers[0].deliveries, 3);
        WorkerMetrics::add(&workers[1].deliveries, 4);
        workers[1].closed(CloseKind::SlowConsumer);
        let config = crate::config::Config::from_json(
            r#"{"apps":[{"appId":"a1","authKey":{"source":"raw","key":"s","algorithms":["HS256"]}}]}"#,
        )
        .unwrap();
        let registry = Registry::compile_next(&config, 2, None).unwrap();
        AppCounters::add(&registry.apps[0].counters[1].deliveries, 5);
        AppCounters::add(&registry.apps[0].counters[0].deliveries, 6);
        let text = render(&workers, "io_uring", &registry, None);
        assert!(
            text.contains("ringcast_app_deliveries_total{app=\"a1\"} 11"),
            "{text}"
        );
        let bus = BusMetrics::default();
        WorkerMetrics::add(&bus.publications_sent, 2);
        let clustered = render(&workers, "io_uring", &registry, Some(&bus));
        assert!(
            clustered.contains("ringcast_bus_publications_sent_total 2"),
            "{clustered}"
        );
        assert!(text.contains("ringcast_deliveries_total 7"), "{text}");
        assert!(text.contains("reason=\"slow_consumer\"} 1"), "{text}");
        assert!(text.contains("driver=\"io_uring\"} 1"), "{text}");
    }
}
