//! Counters: one [`WorkerMetrics`] per worker, written only by its worker, summed at scrape.
//!
//! Responsibility: hold the numbers and render them in the Prometheus text format (with
//! the `prometheus-client` encoder). It must not be shared on the hot path: each worker
//! writes its own cache-line-separated block with relaxed atomic adds (no contention), and
//! only `/metrics` reads across workers.

use crate::error::CloseKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// Refusals (before the upgrade, and HTTP errors), by HTTP status.
pub const REFUSAL_STATUSES: [u16; 9] = [400, 401, 403, 404, 411, 413, 429, 431, 503];

/// Counters of one worker. Written by that worker only (relaxed adds), read at scrape.
#[derive(Default)]
#[repr(align(128))]
pub struct WorkerMetrics {
    pub connections_open: AtomicU64,
    pub handshakes_accepted: AtomicU64,
    pub handshakes_refused: [AtomicU64; REFUSAL_STATUSES.len()],
    pub messages_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub http_requests: AtomicU64,
    pub mesh_messages_in: AtomicU64,
    pub closes: [AtomicU64; CloseKind::ALL.len()],
    /// Largest outbound queue (bytes) seen on this worker.
    pub pending_bytes_high_water: AtomicU64,
}

impl WorkerMetrics {
    #[inline]
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn refused(&self, status: u16) {
        if let Some(index) = REFUSAL_STATUSES.iter().position(|s| *s == status) {
            Self::add(&self.handshakes_refused[index], 1);
        }
    }

    pub fn closed(&self, kind: CloseKind) {
        Self::add(&self.closes[kind.index()], 1);
    }

    pub fn observe_pending(&self, bytes: u64) {
        if bytes > self.pending_bytes_high_water.load(Ordering::Relaxed) {
            self.pending_bytes_high_water
                .store(bytes, Ordering::Relaxed);
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
}

fn render_bus(registry: &mut Registry, bus: &BusMetrics) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let g: Gauge = Gauge::default();
        g.set(value as i64);
        registry.register(name, help, g);
    };
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
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
}

fn sum(workers: &[WorkerMetrics], pick: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
    workers
        .iter()
        .map(|w| pick(w).load(Ordering::Relaxed))
        .sum()
}

type Labels = Vec<(String, String)>;

/// Renders every worker's counters, summed (and per worker for connections), plus the
/// io driver in use, as Prometheus text.
/// With `bus` (cluster mode) the bus's numbers are added.
pub fn render(workers: &[WorkerMetrics], io_driver: &str, bus: Option<&BusMetrics>) -> String {
    let mut registry = Registry::with_prefix("ringcast");
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
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
    registry.register("connections", "Open WebSocket connections", connections);
    counter(
        &mut registry,
        "handshakes_accepted",
        "WebSocket upgrades accepted",
        sum(workers, |w| &w.handshakes_accepted),
    );
    let refused: Family<Labels, Counter> = Family::default();
    for (index, status) in REFUSAL_STATUSES.iter().enumerate() {
        refused
            .get_or_create(&vec![("status".into(), status.to_string())])
            .inc_by(sum(workers, |w| &w.handshakes_refused[index]));
    }
    registry.register(
        "handshakes_refused",
        "Upgrades refused before the upgrade, by HTTP status",
        refused,
    );
    counter(
        &mut registry,
        "messages_in",
        "Client commands received",
        sum(workers, |w| &w.messages_in),
    );
    counter(
        &mut registry,
        "deliveries",
        "Frames queued to subscribers",
        sum(workers, |w| &w.deliveries),
    );
    counter(
        &mut registry,
        "bytes_in",
        "Bytes read from clients",
        sum(workers, |w| &w.bytes_in),
    );
    counter(
        &mut registry,
        "bytes_out",
        "Bytes written to clients",
        sum(workers, |w| &w.bytes_out),
    );
    counter(
        &mut registry,
        "http_requests",
        "HTTP requests served",
        sum(workers, |w| &w.http_requests),
    );
    counter(
        &mut registry,
        "mesh_messages_in",
        "Messages received from other workers",
        sum(workers, |w| &w.mesh_messages_in),
    );
    let closes: Family<Labels, Counter> = Family::default();
    for kind in CloseKind::ALL {
        closes
            .get_or_create(&vec![("reason".into(), kind.label().into())])
            .inc_by(sum(workers, |w| &w.closes[kind.index()]));
    }
    registry.register("closes", "Connections closed, by typed reason", closes);
    let high_water: Gauge = Gauge::default();
    high_water.set(
        workers
            .iter()
            .map(|w| w.pending_bytes_high_water.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0) as i64,
    );
    registry.register(
        "pending_bytes_high_water",
        "Largest outbound queue seen, bytes",
        high_water,
    );
    let driver: Family<Labels, Gauge> = Family::default();
    driver
        .get_or_create(&vec![("driver".into(), io_driver.into())])
        .set(1);
    registry.register("io_driver", "The io driver the workers run", driver);
    if let Some(bus) = bus {
        render_bus(&mut registry, bus);
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
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
        let text = render(&workers, "io_uring", None);
        assert!(!text.contains("bus_"), "{text}");
        let bus = BusMetrics::default();
        WorkerMetrics::add(&bus.publications_sent, 2);
        let clustered = render(&workers, "io_uring", Some(&bus));
        assert!(
            clustered.contains("ringcast_bus_publications_sent_total 2"),
            "{clustered}"
        );
        assert!(text.contains("ringcast_deliveries_total 7"), "{text}");
        assert!(text.contains("reason=\"slow_consumer\"} 1"), "{text}");
        assert!(text.contains("driver=\"io_uring\"} 1"), "{text}");
    }
}
