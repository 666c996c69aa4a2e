//! Counters: one [`WorkerMetrics`] per worker, written only by its worker, summed at scrape.
//!
//! Responsibility: hold the numbers and render them in the Prometheus text format (with
//! the `prometheus-client` encoder). It must not be shared on the hot path: each worker
//! writes its own cache-line-separated block with relaxed atomic adds (no contention), and
//! only `/metrics` reads across workers.
//!
//! Must not: import the broker. The per-app and per-JWKS-URL numbers of the configuration
//! in force arrive as plain data ([`AppsSnapshot`]), which the caller fills in from the
//! broker's registry (`http_api`), so this stays a leaf anyone may import.
//!
//! # Layout
//! - this file: [`WorkerMetrics`] (per worker) and [`BusMetrics`] (the cluster bus).
//! - [`refusal`]: [`Refusal`], why a request was refused before the upgrade.
//! - [`snapshot`]: [`AppsSnapshot`], the per-app numbers `/metrics` and `/stats` show.
//! - [`render`](mod@render): the Prometheus text, one small function per metric family.

pub mod refusal;
pub mod render;
pub mod snapshot;

pub use refusal::Refusal;
pub use render::render;
pub use snapshot::{
    AnonymousSnapshot, AppSnapshot, AppsSnapshot, JwksSnapshot, TokenCacheSnapshot,
};

use crate::error::CloseKind;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Of `writes`: those submitted as io_uring operations (`server.ioUringSends`,
    /// experimental).
    pub uring_sends: AtomicU64,
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
    /// Dropped: larger than the NATS server's `max_payload` (its INFO; 1 MiB by default).
    pub dropped_too_large: AtomicU64,
    /// Publications received on a bucket subscription with no local subscriber of their
    /// topic (the cost of sharing a bucket: an extra message, never a misdelivery).
    pub publications_unwanted: AtomicU64,
    /// NATS subscriptions this node holds for interest (buckets in use + its own
    /// connections' subject).
    pub subscriptions: AtomicU64,
    /// Another process announced this node's `nodeNumber` (each one logged as an error).
    pub node_number_conflicts: AtomicU64,
    /// Connection attempts NATS refused for this node's credentials or missing TLS
    /// (`runtime::bus::security::Refusal`), as opposed to NATS being away.
    pub auth_refusals: AtomicU64,
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
