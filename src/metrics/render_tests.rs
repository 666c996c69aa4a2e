//! Unit tests of `metrics::render`: the text for a filled-in [`AppsSnapshot`] and worker and
//! bus counters, without a broker.

use super::*;
use crate::metrics::{AnonymousSnapshot, AppSnapshot, JwksSnapshot, TokenCacheSnapshot};

/// Two apps (one with anonymous tokens), one JWKS URL, counters on two workers.
fn state() -> ([WorkerMetrics; 2], AppsSnapshot) {
    let workers = [WorkerMetrics::default(), WorkerMetrics::default()];
    WorkerMetrics::add(&workers[0].deliveries, 3);
    WorkerMetrics::add(&workers[1].deliveries, 4);
    WorkerMetrics::add(&workers[1].connections_open, 2);
    workers[1].closed(CloseKind::SlowConsumer);
    workers[0].refused(Refusal::InvalidToken);
    workers[1].observe_pending(10);
    workers[0].observe_pending(30);
    let apps = AppsSnapshot {
        generation: 4,
        apps: vec![
            AppSnapshot {
                id: "a1".into(),
                name: Some("Chat".into()),
                connections: 2,
                messages_in: 5,
                http_publications: 1,
                deliveries: 11,
                anonymous: None,
            },
            AppSnapshot {
                id: "a2".into(),
                anonymous: Some(AnonymousSnapshot {
                    issued: 6,
                    rate_limited: 1,
                }),
                ..AppSnapshot::default()
            },
        ],
        jwks: vec![JwksSnapshot {
            shown_url: "https://***@idp.example/jwks".into(),
            fetches_ok: 2,
            fetches_failed: 1,
            keys: 3,
        }],
        token_cache: TokenCacheSnapshot {
            hits: 8,
            misses: 9,
            entries: 4,
        },
    };
    (workers, apps)
}

#[test]
fn renders_a_filled_in_snapshot() {
    let (workers, apps) = state();
    let text = render(&workers, "io_uring", &apps, None);
    for line in [
        "ringcast_connections{worker=\"0\"} 0",
        "ringcast_connections{worker=\"1\"} 2",
        "ringcast_app_connections{app=\"a1\"} 2",
        "ringcast_app_messages_in_total{app=\"a1\"} 5",
        "ringcast_app_http_publications_total{app=\"a1\"} 1",
        "ringcast_app_deliveries_total{app=\"a1\"} 11",
        "ringcast_app_deliveries_total{app=\"a2\"} 0",
        "ringcast_anonymous_tokens_total{app=\"a2\",result=\"issued\"} 6",
        "ringcast_anonymous_tokens_total{app=\"a2\",result=\"rate_limited\"} 1",
        "ringcast_jwks_fetches_total{url=\"https://***@idp.example/jwks\",result=\"ok\"} 2",
        "ringcast_jwks_fetches_total{url=\"https://***@idp.example/jwks\",result=\"failed\"} 1",
        "ringcast_jwks_keys{url=\"https://***@idp.example/jwks\"} 3",
        "ringcast_token_cache_hits_total 8",
        "ringcast_token_cache_misses_total 9",
        "ringcast_token_cache_entries 4",
        "ringcast_handshakes_refused_total{reason=\"invalid_token\"} 1",
        "ringcast_deliveries_total 7",
        "ringcast_slow_consumers_total 1",
        "ringcast_closes_total{reason=\"slow_consumer\"} 1",
        "ringcast_pending_bytes_high_water 30",
        "ringcast_config_generation 4",
        "ringcast_io_driver{driver=\"io_uring\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // An app without anonymous tokens has no anonymous series; without a bus, no bus ones.
    assert!(!text.contains("app=\"a1\",result="), "{text}");
    assert!(!text.contains("ringcast_bus_"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn families_keep_their_order_and_the_bus_comes_last() {
    let (workers, apps) = state();
    let bus = BusMetrics::default();
    WorkerMetrics::add(&bus.publications_sent, 2);
    WorkerMetrics::add(&bus.invalid_received[1], 5);
    let text = render(&workers, "legacy", &apps, Some(&bus));
    assert!(
        text.contains("ringcast_bus_publications_sent_total 2\n"),
        "{text}"
    );
    assert!(
        text.contains("ringcast_bus_invalid_messages_total{reason=\"too_large\"} 5\n"),
        "{text}"
    );
    let types: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ringcast_"))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let position = |name: &str| types.iter().position(|t| *t == name).unwrap();
    let order = [
        "connections",
        "http_connections",
        "app_connections",
        "anonymous_tokens",
        "jwks_fetches",
        "token_cache_hits",
        "handshakes_accepted",
        "messages_in",
        "frames_dropped",
        "slow_consumers",
        "closes",
        "pending_bytes_high_water",
        "config_generation",
        "io_driver",
        "bus_connected",
        "bus_invalid_messages",
    ];
    for pair in order.windows(2) {
        assert!(position(pair[0]) < position(pair[1]), "{pair:?}: {types:?}");
    }
}
