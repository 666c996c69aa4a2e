//! The monitoring endpoints: `/health`, `/metrics` (Prometheus text), `/stats` (the
//! dashboard's JSON) and `/dashboard` (a static page polling `/stats`).
//!
//! Responsibility: admit `/metrics`, `/stats` and `/dashboard` for peers inside
//! `server.monitoringSourceAddress` (GET/HEAD only), and fill in the plain
//! [`AppsSnapshot`] that `metrics` and `stats` render from the broker's registry — this is
//! where the broker's numbers meet those leaf modules, which do not import the broker.
//! Must not: write a counter (relaxed loads only) or touch sockets.

use super::{only_get, Action, ApiRequest, ApiResponse};
use crate::broker::apps::{App, AppCounters, Registry};
use crate::broker::worker::Worker;
use crate::metrics::{
    self, AnonymousSnapshot, AppSnapshot, AppsSnapshot, JwksSnapshot, TokenCacheSnapshot,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// The live dashboard page (static, no build step; polls `/stats` every second).
const DASHBOARD_HTML: &str = include_str!("../dashboard.html");

/// Admits a monitoring endpoint for peers inside `server.monitoringSourceAddress`.
pub(super) fn admit<'a>(
    worker: &Worker,
    request: &ApiRequest<'_>,
    action: Action<'a>,
) -> Result<Action<'a>, ApiResponse> {
    let registry = worker.registry();
    if !registry.monitoring_sources.allows_source(request.peer) {
        return Err(ApiResponse::error(403, "source address not allowed"));
    }
    only_get(request, || action)
}

/// `GET /health`.
pub(super) fn health() -> ApiResponse {
    ApiResponse::json(200, r#"{"status":"ok"}"#)
}

/// `GET /metrics`: every worker's counters, the registry's, and the bus's in cluster mode.
pub(super) fn metrics(worker: &Worker, io_driver: &str) -> ApiResponse {
    let snapshot = apps_snapshot(&worker.registry());
    ApiResponse {
        status: 200,
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body: metrics::render(
            &worker.metrics,
            io_driver,
            &snapshot,
            worker.outbox.bus_metrics(),
        )
        .into_bytes(),
        headers: Vec::new(),
    }
}

/// `GET /stats`: the dashboard's document.
pub(super) fn stats(worker: &Worker, io_driver: &str) -> ApiResponse {
    let snapshot = apps_snapshot(&worker.registry());
    ApiResponse {
        status: 200,
        content_type: "application/json",
        body: crate::stats::stats_json(&worker.metrics, io_driver, &snapshot).into_bytes(),
        headers: Vec::new(),
    }
}

/// `GET /dashboard`.
pub(super) fn dashboard() -> ApiResponse {
    ApiResponse {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: DASHBOARD_HTML.as_bytes().to_vec(),
        headers: Vec::new(),
    }
}

/// `pick` of `app`'s counters, summed over the workers.
fn app_sum(app: &App, pick: impl Fn(&AppCounters) -> &AtomicU64) -> u64 {
    app.counters
        .iter()
        .map(|c| pick(c).load(Ordering::Relaxed))
        .sum()
}

/// The numbers of `registry` (the configuration in force) as `metrics` and `stats` take
/// them.
fn apps_snapshot(registry: &Registry) -> AppsSnapshot {
    let apps = registry
        .apps
        .iter()
        .map(|app| AppSnapshot {
            id: app.id.to_string(),
            name: app.name.as_deref().map(str::to_string),
            connections: app_sum(app, |c| &c.connections),
            messages_in: app_sum(app, |c| &c.messages_in),
            http_publications: app_sum(app, |c| &c.http_publications),
            deliveries: app_sum(app, |c| &c.deliveries),
            anonymous: app.anonymous.as_ref().map(|_| AnonymousSnapshot {
                issued: app_sum(app, |c| &c.anonymous_issued),
                rate_limited: app_sum(app, |c| &c.anonymous_limited),
            }),
        })
        .collect();
    let jwks = registry
        .jwks
        .iter()
        .map(|cache| JwksSnapshot {
            shown_url: cache.url_for_logs().to_string(),
            fetches_ok: cache.fetches_ok.load(Ordering::Relaxed),
            fetches_failed: cache.fetches_failed.load(Ordering::Relaxed),
            keys: cache.snapshot().len() as u64,
        })
        .collect();
    AppsSnapshot {
        generation: registry.generation,
        apps,
        jwks,
        token_cache: TokenCacheSnapshot {
            hits: registry.token_cache.hits(),
            misses: registry.token_cache.misses(),
            entries: registry.token_cache.len() as u64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CloseKind;
    use crate::metrics::{BusMetrics, WorkerMetrics};

    /// What the old registry-reading `render` test checked, now through the snapshot the
    /// endpoint fills in from a compiled registry.
    #[test]
    fn metrics_sum_a_compiled_registry_through_the_snapshot() {
        let workers = [WorkerMetrics::default(), WorkerMetrics::default()];
        WorkerMetrics::add(&workers[0].deliveries, 3);
        WorkerMetrics::add(&workers[1].deliveries, 4);
        workers[1].closed(CloseKind::SlowConsumer);
        let config = crate::config::Config::from_json(
            r#"{"apps":[{"appId":"a1","name":"Chat","authKey":{"source":"raw","key":"s","algorithms":["HS256"]}}]}"#,
        )
        .unwrap();
        let registry = Registry::compile_next(&config, 2, None).unwrap();
        AppCounters::add(&registry.apps[0].counters[1].deliveries, 5);
        AppCounters::add(&registry.apps[0].counters[0].deliveries, 6);
        let snapshot = apps_snapshot(&registry);
        assert_eq!(snapshot.generation, registry.generation);
        assert_eq!(snapshot.apps[0].name.as_deref(), Some("Chat"));
        assert_eq!(snapshot.apps[0].anonymous, None);
        let text = metrics::render(&workers, "io_uring", &snapshot, None);
        assert!(
            text.contains("ringcast_app_deliveries_total{app=\"a1\"} 11"),
            "{text}"
        );
        let bus = BusMetrics::default();
        WorkerMetrics::add(&bus.publications_sent, 2);
        let clustered = metrics::render(&workers, "io_uring", &snapshot, Some(&bus));
        assert!(
            clustered.contains("ringcast_bus_publications_sent_total 2"),
            "{clustered}"
        );
        assert!(text.contains("ringcast_deliveries_total 7"), "{text}");
        assert!(text.contains("reason=\"slow_consumer\"} 1"), "{text}");
        assert!(text.contains("driver=\"io_uring\"} 1"), "{text}");
    }
}
