//! The `/metrics` text: every worker's counters summed (and per worker for connections),
//! the per-app numbers of an [`AppsSnapshot`], the io driver in use and, in cluster mode,
//! the bus's numbers, in the Prometheus text format (`prometheus-client`'s encoder).
//!
//! Responsibility: one small function per metric family, called by [`render`] in a fixed
//! order — the order and the text are what scrapers (and `tests/operations.rs`) read, so a
//! family is added at the end of its group, never renamed. Must not write a counter: it
//! only reads them (relaxed loads).

use super::{AppsSnapshot, BusMetrics, Refusal, WorkerMetrics, BUS_INVALID_REASONS};
use crate::error::CloseKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// A metric's labels, `(name, value)` pairs.
type Labels = Vec<(String, String)>;

/// Which counter of a [`WorkerMetrics`] a family sums.
type WorkerCounter = fn(&WorkerMetrics) -> &AtomicU64;

/// Renders every worker's counters, summed (and per worker for connections), the per-app
/// numbers of `apps`, and the io driver in use, as Prometheus text. With `bus` (cluster
/// mode) the bus's numbers are added.
pub fn render(
    workers: &[WorkerMetrics],
    io_driver: &str,
    apps: &AppsSnapshot,
    bus: Option<&BusMetrics>,
) -> String {
    let mut registry = Registry::with_prefix("ringcast");
    render_worker_connections(&mut registry, workers);
    render_apps(&mut registry, apps);
    render_anonymous_tokens(&mut registry, apps);
    render_jwks(&mut registry, apps);
    render_token_cache(&mut registry, apps);
    render_handshakes(&mut registry, workers);
    render_traffic(&mut registry, workers);
    render_closes(&mut registry, workers);
    render_high_water(&mut registry, workers, apps.generation);
    render_io_driver(&mut registry, io_driver);
    if let Some(bus) = bus {
        render_bus(&mut registry, bus);
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// Registers one unlabelled counter.
fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter: Counter = Counter::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

/// Registers one unlabelled gauge.
fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let gauge: Gauge = Gauge::default();
    gauge.set(value as i64);
    registry.register(name, help, gauge);
}

/// One `(name, value)` label.
fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

/// `pick` summed over the workers.
fn sum(workers: &[WorkerMetrics], pick: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
    workers
        .iter()
        .map(|w| pick(w).load(Ordering::Relaxed))
        .sum()
}

/// The largest `pick` of any worker (0 without workers).
fn max(workers: &[WorkerMetrics], pick: WorkerCounter) -> u64 {
    workers
        .iter()
        .map(|w| pick(w).load(Ordering::Relaxed))
        .max()
        .unwrap_or(0)
}

/// `connections` and `http_connections`: gauges per worker.
fn render_worker_connections(registry: &mut Registry, workers: &[WorkerMetrics]) {
    let per_worker = |pick: WorkerCounter| {
        let family: Family<Labels, Gauge> = Family::default();
        for (index, worker) in workers.iter().enumerate() {
            family
                .get_or_create(&label("worker", &index.to_string()))
                .set(pick(worker).load(Ordering::Relaxed) as i64);
        }
        family
    };
    registry.register(
        "connections",
        "Open WebSocket connections, per worker",
        per_worker(|w| &w.connections_open),
    );
    registry.register(
        "http_connections",
        "Connections in the HTTP phase (not upgraded to WebSocket), per worker",
        per_worker(|w| &w.http_connections),
    );
}

/// `app_connections`, `app_messages_in`, `app_deliveries`, `app_http_publications`.
fn render_apps(registry: &mut Registry, apps: &AppsSnapshot) {
    let connections: Family<Labels, Gauge> = Family::default();
    let messages: Family<Labels, Counter> = Family::default();
    let deliveries: Family<Labels, Counter> = Family::default();
    let http_publications: Family<Labels, Counter> = Family::default();
    for app in &apps.apps {
        let labels = label("app", &app.id);
        connections
            .get_or_create(&labels)
            .set(app.connections as i64);
        messages.get_or_create(&labels).inc_by(app.messages_in);
        deliveries.get_or_create(&labels).inc_by(app.deliveries);
        http_publications
            .get_or_create(&labels)
            .inc_by(app.http_publications);
    }
    registry.register(
        "app_connections",
        "Open WebSocket connections, per app",
        connections,
    );
    registry.register(
        "app_messages_in",
        "WebSocket client commands received, per app",
        messages,
    );
    registry.register(
        "app_deliveries",
        "Frames queued to subscribers, per app",
        deliveries,
    );
    registry.register(
        "app_http_publications",
        "Messages published through the HTTP API, per app",
        http_publications,
    );
}

/// `anonymous_tokens`, per app with anonymous tokens on, by result.
fn render_anonymous_tokens(registry: &mut Registry, apps: &AppsSnapshot) {
    let anonymous: Family<Labels, Counter> = Family::default();
    for app in &apps.apps {
        let Some(tokens) = app.anonymous else {
            continue;
        };
        for (result, value) in [
            ("issued", tokens.issued),
            ("rate_limited", tokens.rate_limited),
        ] {
            anonymous
                .get_or_create(&vec![
                    ("app".to_string(), app.id.clone()),
                    ("result".to_string(), result.to_string()),
                ])
                .inc_by(value);
        }
    }
    registry.register(
        "anonymous_tokens",
        "POST /token/anonymous answers, per app: issued or rate_limited (429)",
        anonymous,
    );
}

/// `token_cache_hits`, `token_cache_misses`, `token_cache_entries`.
fn render_token_cache(registry: &mut Registry, apps: &AppsSnapshot) {
    let cache = apps.token_cache;
    counter(
        registry,
        "token_cache_hits",
        "Handshakes whose token this node had verified before with the same keys (no signature check)",
        cache.hits,
    );
    counter(
        registry,
        "token_cache_misses",
        "Handshakes whose token was verified (not cached, expired, or the cache is off)",
        cache.misses,
    );
    gauge(
        registry,
        "token_cache_entries",
        "Verified tokens the node holds (at most server.tokenCacheEntries)",
        cache.entries,
    );
}

/// `jwks_fetches` (by URL and result) and `jwks_keys` (by URL).
fn render_jwks(registry: &mut Registry, apps: &AppsSnapshot) {
    let fetches: Family<Labels, Counter> = Family::default();
    let keys: Family<Labels, Gauge> = Family::default();
    for jwks in &apps.jwks {
        for (result, value) in [("ok", jwks.fetches_ok), ("failed", jwks.fetches_failed)] {
            fetches
                .get_or_create(&vec![
                    ("url".to_string(), jwks.shown_url.clone()),
                    ("result".to_string(), result.to_string()),
                ])
                .inc_by(value);
        }
        keys.get_or_create(&label("url", &jwks.shown_url))
            .set(jwks.keys as i64);
    }
    registry.register(
        "jwks_fetches",
        "JWKS documents fetched, per URL (without credentials or query): ok or failed (previous keys kept)",
        fetches,
    );
    registry.register("jwks_keys", "Usable keys loaded, per JWKS URL", keys);
}

/// `handshakes_accepted` and `handshakes_refused` by [`Refusal`].
fn render_handshakes(registry: &mut Registry, workers: &[WorkerMetrics]) {
    counter(
        registry,
        "handshakes_accepted",
        "WebSocket upgrades accepted",
        sum(workers, |w| &w.handshakes_accepted),
    );
    let refused: Family<Labels, Counter> = Family::default();
    for reason in Refusal::ALL {
        refused
            .get_or_create(&label("reason", reason.label()))
            .inc_by(sum(workers, |w| &w.handshakes_refused[reason.index()]));
    }
    registry.register(
        "handshakes_refused",
        "Requests refused before the upgrade, by reason",
        refused,
    );
}

/// The summed traffic counters, in their output order: name, help, counter.
const TRAFFIC_COUNTERS: [(&str, &str, WorkerCounter); 13] = [
    ("messages_in", "WebSocket client commands received", |w| &w.messages_in),
    (
        "http_publications",
        "Messages published through the HTTP API (not in messages_in)",
        |w| &w.http_publications,
    ),
    ("deliveries", "Frames queued to subscribers", |w| &w.deliveries),
    ("bytes_in", "Bytes read from clients", |w| &w.bytes_in),
    ("bytes_out", "Bytes written to clients", |w| &w.bytes_out),
    (
        "writes",
        "Send calls that wrote queued frames to clients (deliveries per write = coalescing)",
        |w| &w.writes,
    ),
    (
        "uring_sends",
        "Writes submitted as io_uring operations (ioUringSends, experimental), part of writes",
        |w| &w.uring_sends,
    ),
    (
        "zero_copy_bytes_out",
        "Bytes written to clients from the frame file without copying (sendfile), part of bytes_out",
        |w| &w.zero_copy_bytes_out,
    ),
    (
        "frame_file_full",
        "Fan-out frames queued from memory because every chunk of the frame file was in use",
        |w| &w.frame_file_full,
    ),
    (
        "http_accept_pauses",
        "Times a worker stopped accepting because maxHttpConnectionsPerWorker connections were in the HTTP phase",
        |w| &w.http_accept_pauses,
    ),
    ("http_requests", "HTTP requests served", |w| &w.http_requests),
    (
        "mesh_messages_in",
        "Messages received from other workers",
        |w| &w.mesh_messages_in,
    ),
    (
        "frames_dropped",
        "Frames not delivered because their session was closing or too slow",
        |w| &w.frames_dropped,
    ),
];

/// Every counter of [`TRAFFIC_COUNTERS`], summed over the workers.
fn render_traffic(registry: &mut Registry, workers: &[WorkerMetrics]) {
    for (name, help, pick) in TRAFFIC_COUNTERS {
        counter(registry, name, help, sum(workers, pick));
    }
}

/// `slow_consumers` and `closes` by [`CloseKind`].
fn render_closes(registry: &mut Registry, workers: &[WorkerMetrics]) {
    counter(
        registry,
        "slow_consumers",
        "Connections closed with 4008 (outbound queue above maxPendingBytes)",
        sum(workers, |w| &w.closes[CloseKind::SlowConsumer.index()]),
    );
    let closes: Family<Labels, Counter> = Family::default();
    for kind in CloseKind::ALL {
        closes
            .get_or_create(&label("reason", kind.label()))
            .inc_by(sum(workers, |w| &w.closes[kind.index()]));
    }
    registry.register("closes", "Connections closed, by typed reason", closes);
}

/// The high-water marks (largest on any worker), the frame-file gauge and the
/// configuration generation.
fn render_high_water(registry: &mut Registry, workers: &[WorkerMetrics], generation: u64) {
    gauge(
        registry,
        "pending_bytes_high_water",
        "Largest outbound queue of one connection seen, bytes",
        max(workers, |w| &w.pending_bytes_high_water),
    );
    gauge(
        registry,
        "outbox_high_water",
        "Most cross-worker messages seen waiting in one worker's outbox",
        max(workers, |w| &w.outbox_high_water),
    );
    gauge(
        registry,
        "http_connections_high_water",
        "Most connections seen in the HTTP phase at once on one worker",
        max(workers, |w| &w.http_connections_high_water),
    );
    gauge(
        registry,
        "frame_file_bytes",
        "Bytes of fan-out frames held in the workers' frame files (memfd pages, not in RSS)",
        sum(workers, |w| &w.frame_file_bytes),
    );
    gauge(
        registry,
        "config_generation",
        "Configuration generation in force (1 at start, +1 per reload)",
        generation,
    );
}

/// `io_driver{driver=…} 1`.
fn render_io_driver(registry: &mut Registry, io_driver: &str) {
    let driver: Family<Labels, Gauge> = Family::default();
    driver.get_or_create(&label("driver", io_driver)).set(1);
    registry.register("io_driver", "The io driver the workers run", driver);
}

/// The cluster bus's numbers (cluster mode only).
fn render_bus(registry: &mut Registry, bus: &BusMetrics) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    gauge(
        registry,
        "bus_connected",
        "1 while the NATS connection is up",
        load(&bus.connected),
    );
    for (name, help, value) in [
        (
            "bus_disconnects",
            "NATS connection losses",
            &bus.disconnects,
        ),
        (
            "bus_auth_refusals",
            "NATS connection attempts refused for this node's credentials or missing TLS",
            &bus.auth_refusals,
        ),
        (
            "bus_reconnects",
            "NATS reconnections after a loss",
            &bus.reconnects,
        ),
        (
            "bus_outage_milliseconds",
            "Time spent disconnected from NATS (finished outages)",
            &bus.outage_ms,
        ),
        (
            "bus_publications_sent",
            "Publications sent to the bus (once each)",
            &bus.publications_sent,
        ),
        (
            "bus_publications_received",
            "Publications received from other nodes",
            &bus.publications_received,
        ),
    ] {
        counter(registry, name, help, load(value));
    }
    let dropped: Family<Labels, Counter> = Family::default();
    for (reason, value) in [
        ("queue_full", &bus.dropped_queue_full),
        ("disconnected", &bus.dropped_disconnected),
        ("mailbox_full", &bus.dropped_mailbox_full),
        ("too_large", &bus.dropped_too_large),
    ] {
        dropped
            .get_or_create(&label("reason", reason))
            .inc_by(load(value));
    }
    registry.register(
        "bus_publications_dropped",
        "Bus publications dropped, by reason",
        dropped,
    );
    render_bus_interest(registry, bus);
}

/// The bus's interest subscriptions, node number conflicts and the messages its
/// validation dropped.
fn render_bus_interest(registry: &mut Registry, bus: &BusMetrics) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    counter(
        registry,
        "bus_publications_unwanted",
        "Publications received for a bucket with no local subscriber of their topic",
        load(&bus.publications_unwanted),
    );
    gauge(
        registry,
        "bus_subscriptions",
        "NATS subscriptions held for interest (buckets in use + this node's connections)",
        load(&bus.subscriptions),
    );
    counter(
        registry,
        "bus_node_number_conflicts",
        "Other processes seen announcing this node's nodeNumber",
        load(&bus.node_number_conflicts),
    );
    let invalid: Family<Labels, Counter> = Family::default();
    for (reason, value) in BUS_INVALID_REASONS.iter().zip(&bus.invalid_received) {
        invalid
            .get_or_create(&label("reason", reason))
            .inc_by(load(value));
    }
    registry.register(
        "bus_invalid_messages",
        "Messages from the bus dropped by validation (not what a ringcast node sends), by reason",
        invalid,
    );
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
