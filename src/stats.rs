//! The `/stats` document: what the dashboard (`src/dashboard.html`) polls every second.
//!
//! Responsibility: sum every worker's counters (and each app's) into one JSON object —
//! totals, per app with its configured name, closes and refused handshakes by reason. The
//! dashboard computes rates and keeps its history itself; this is a snapshot. Must not
//! write counters: it only reads them (relaxed loads), like `/metrics`; nor import the
//! broker: the per-app numbers arrive as a [`AppsSnapshot`] the caller fills in.
//!
//! `messagesIn` counts every message that entered the broker: WebSocket client commands
//! (`ringcast_messages_in_total`) and HTTP API publications
//! (`ringcast_http_publications_total`); `httpPublications` is the HTTP part of it.

use crate::error::CloseKind;
use crate::metrics::{AppsSnapshot, Refusal, WorkerMetrics};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

fn sum(workers: &[WorkerMetrics], pick: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
    workers
        .iter()
        .map(|w| pick(w).load(Ordering::Relaxed))
        .sum()
}

/// The `/stats` document (see the module docs).
pub fn stats_json(workers: &[WorkerMetrics], io_driver: &str, snapshot: &AppsSnapshot) -> String {
    let apps: Vec<Value> = snapshot
        .apps
        .iter()
        .map(|app| {
            json!({
                "id": app.id,
                "name": app.name,
                "connections": app.connections,
                "messagesIn": app.messages_in + app.http_publications,
                "httpPublications": app.http_publications,
                "deliveries": app.deliveries,
            })
        })
        .collect();
    let closes: Map<String, Value> = CloseKind::ALL
        .iter()
        .map(|kind| {
            (
                kind.label().to_string(),
                sum(workers, |w| &w.closes[kind.index()]).into(),
            )
        })
        .collect();
    let refused: Map<String, Value> = Refusal::ALL
        .iter()
        .map(|reason| {
            (
                reason.label().to_string(),
                workers
                    .iter()
                    .map(|w| w.refusals(*reason))
                    .sum::<u64>()
                    .into(),
            )
        })
        .collect();
    let http = sum(workers, |w| &w.http_publications);
    json!({
        "ioDriver": io_driver,
        "workers": workers.len(),
        "configGeneration": snapshot.generation,
        "connections": sum(workers, |w| &w.connections_open),
        "messagesIn": sum(workers, |w| &w.messages_in) + http,
        "httpPublications": http,
        "deliveries": sum(workers, |w| &w.deliveries),
        "bytesIn": sum(workers, |w| &w.bytes_in),
        "bytesOut": sum(workers, |w| &w.bytes_out),
        "handshakesAccepted": sum(workers, |w| &w.handshakes_accepted),
        "apps": apps,
        "closes": closes,
        "refused": refused,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_publications_count_as_messages_in_and_apps_carry_their_names() {
        let workers = [WorkerMetrics::default(), WorkerMetrics::default()];
        WorkerMetrics::add(&workers[0].messages_in, 2);
        WorkerMetrics::add(&workers[1].http_publications, 3);
        workers[1].refused(Refusal::InvalidToken);
        let apps = AppsSnapshot {
            generation: 1,
            apps: vec![
                crate::metrics::AppSnapshot {
                    id: "a1".into(),
                    name: Some("Chat".into()),
                    messages_in: 2,
                    http_publications: 3,
                    ..Default::default()
                },
                crate::metrics::AppSnapshot {
                    id: "a2".into(),
                    ..Default::default()
                },
            ],
            jwks: Vec::new(),
            token_cache: Default::default(),
        };
        let stats: Value = serde_json::from_str(&stats_json(&workers, "legacy", &apps)).unwrap();
        assert_eq!(stats["messagesIn"], 5);
        assert_eq!(stats["httpPublications"], 3);
        assert_eq!(stats["refused"]["invalid_token"], 1);
        assert_eq!(stats["configGeneration"], 1);
        assert_eq!(stats["apps"][0]["name"], "Chat");
        assert_eq!(stats["apps"][0]["messagesIn"], 5);
        assert_eq!(stats["apps"][1]["name"], Value::Null);
    }
}
