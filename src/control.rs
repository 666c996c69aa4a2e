//! Configuration reload, the sans-IO part: the requests the control thread serves and the
//! next registry generation computed from a parsed configuration.
//!
//! Responsibility: [`ControlRequest`] (what workers and signal handlers ask the control
//! thread), [`next_generation`] (a parsed file compiled against the generation in force,
//! with the settings that need a restart kept at their running values) and the outcome a
//! reload reports. Must not: read files, start threads or talk to workers — the control
//! thread that does (`runtime::control`) calls in here.
//!
//! What a reload applies: apps added (they accept connections as soon as every worker has
//! the new generation), removed (their connections are closed with 4000), keys rotated,
//! source filters, flags and limits changed — for existing connections too; the server
//! admin key and monitoring filter. What needs a restart: the other `server` settings
//! (listener, workers, io driver, timers, proxies, socket buffers, TLS); a reload keeps the
//! running values and lists the changed ones in its answer and log.

use crate::broker::apps::{Registry, ReloadSummary};
use crate::config::{Config, ServerConfig};

/// Pending control requests before `POST /admin/reload` answers 503 (a reload in
/// progress covers every request queued behind it, so a few suffice).
pub const CONTROL_QUEUE_CAPACITY: usize = 8;

/// The result of one reload, as `POST /admin/reload` reports it.
pub type ReloadOutcome = Result<ReloadSummary, String>;

/// What workers and signal handlers ask the control thread.
pub enum ControlRequest {
    /// Re-read the configuration; `reply` (HTTP callers) learns the outcome.
    Reload {
        reply: Option<flume::Sender<ReloadOutcome>>,
    },
}

/// A reload's next generation, not yet handed to anyone.
pub struct NextGeneration {
    pub registry: Registry,
    /// What changed since the generation in force (`restart_required` filled in).
    pub summary: ReloadSummary,
    /// The configuration that becomes the running one once the generation is in force
    /// (restart-only settings kept at their running values).
    pub config: Config,
}

/// Compiles `config` (just parsed from the file) against `current`, the generation in
/// force, which `running` produced: kept apps keep their slots and live state
/// ([`Registry::compile_next`]). An invalid configuration is an `Err` with the message a
/// reload reports; nothing changes then.
pub fn next_generation(
    current: &Registry,
    running: &Config,
    mut config: Config,
) -> Result<NextGeneration, String> {
    // Settings that need a restart keep their running values.
    let restart_required = keep_restart_only_settings(&running.server, &mut config.server);
    // The settings it compiles equal the running ones: they come only from the
    // restart-only fields kept above.
    let registry = Registry::compile_next(&config, current.workers, Some(current))
        .map_err(|error| error.to_string())?;
    let mut summary = registry.summary_since(current);
    summary.restart_required = restart_required;
    Ok(NextGeneration {
        registry,
        summary,
        config,
    })
}

/// Whether an app of `previous` verifies client tokens with other keys in `next`, or is
/// gone: tokens cached under its old keys can no longer be found, so the caller clears the
/// token cache to free them.
pub fn client_keys_changed(next: &Registry, previous: &Registry) -> bool {
    previous
        .apps
        .iter()
        .any(|earlier| match next.get(&earlier.id) {
            Some(app) => {
                app.client_verifier.key_generation() != earlier.client_verifier.key_generation()
            }
            None => true,
        })
}

/// Keeps the running values of the `server` settings that only apply at a restart, and
/// names those the new file changed (one list, so the two cannot drift apart).
#[allow(clippy::clone_on_copy)] // one macro for `Copy` and owned fields alike
fn keep_restart_only_settings(running: &ServerConfig, next: &mut ServerConfig) -> Vec<String> {
    let mut changed = Vec::new();
    macro_rules! restart_only {
        ($($field:ident => $name:literal),* $(,)?) => {
            $(
                if running.$field != next.$field {
                    changed.push(format!("server.{}", $name));
                    next.$field = running.$field.clone();
                }
            )*
        };
    }
    restart_only!(
        listen => "listen",
        workers => "workers",
        pin_workers => "pinWorkers",
        io_driver => "ioDriver",
        ping_interval_seconds => "pingIntervalSeconds",
        handshake_timeout_seconds => "handshakeTimeoutSeconds",
        max_handshakes_per_second => "maxHandshakesPerSecond",
        socket_send_buffer_bytes => "socketSendBufferBytes",
        token_cache_entries => "tokenCacheEntries",
        zero_copy_fanout_bytes => "zeroCopyFanoutBytes",
        flush_interval_micros => "flushIntervalMicros",
        io_uring_sends => "ioUringSends",
        shutdown_deadline_seconds => "shutdownDeadlineSeconds",
        trusted_proxies => "trustedProxies",
        max_http_body_bytes => "maxHttpBodyBytes",
        log_format => "logFormat",
        tls => "tls",
        cluster => "cluster",
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_listed_and_kept() {
        let running = ServerConfig::default();
        let mut next = ServerConfig {
            listen: "127.0.0.1:1".into(),
            ping_interval_seconds: 99,
            max_connections: 7,
            ..ServerConfig::default()
        };
        let changed = keep_restart_only_settings(&running, &mut next);
        assert_eq!(
            changed,
            vec!["server.listen", "server.pingIntervalSeconds"],
            "limits are reloadable, listener and timers are not"
        );
        assert_eq!(next.listen, running.listen);
        assert_eq!(next.ping_interval_seconds, running.ping_interval_seconds);
        assert_eq!(next.max_connections, 7);
    }

    fn config(apps: &[&str], listen: &str) -> Config {
        let apps: Vec<String> = apps
            .iter()
            .map(|id| {
                format!(r#"{{"appId":"{id}","authKey":{{"source":"raw","key":"s","algorithms":["HS256"]}}}}"#)
            })
            .collect();
        let text = format!(
            r#"{{"server":{{"listen":"{listen}"}},"apps":[{}]}}"#,
            apps.join(",")
        );
        Config::from_json(&text).unwrap()
    }

    #[test]
    fn the_next_generation_keeps_slots_and_restart_only_settings() {
        let running = config(&["a", "b"], "127.0.0.1:1");
        let current = Registry::compile_next(&running, 2, None).unwrap();
        let next = next_generation(&current, &running, config(&["b", "c"], "127.0.0.1:2"))
            .expect("a valid file compiles");
        assert_eq!(next.summary.added, vec!["c".to_string()]);
        assert_eq!(next.summary.removed, vec!["a".to_string()]);
        assert_eq!(next.summary.restart_required, vec!["server.listen"]);
        assert_eq!(
            next.config.server.listen, "127.0.0.1:1",
            "the running value stays"
        );
        assert_eq!(
            next.registry.get("b").unwrap().index,
            current.get("b").unwrap().index,
            "a kept app keeps its slot"
        );
        assert_eq!(next.registry.workers, current.workers);
    }

    #[test]
    fn an_invalid_file_leaves_no_next_generation() {
        let running = config(&["a"], "127.0.0.1:1");
        let current = Registry::compile_next(&running, 1, None).unwrap();
        // Parses, but does not compile: an RS256 key must be a PEM public key.
        let broken = Config::from_json(
            r#"{"apps":[{"appId":"a","authKey":{"source":"raw","key":"s","algorithms":["RS256"]}}]}"#,
        )
        .unwrap();
        assert!(next_generation(&current, &running, broken).is_err());
    }

    #[test]
    fn only_a_changed_client_key_gets_a_new_key_generation() {
        let running = config(&["a", "b"], "127.0.0.1:1");
        let current = Registry::compile_next(&running, 1, None).unwrap();
        let generation = |registry: &Registry, app: &str| {
            registry.get(app).unwrap().client_verifier.key_generation()
        };
        let same = next_generation(&current, &running, running.clone()).unwrap();
        assert_eq!(generation(&same.registry, "a"), generation(&current, "a"));
        assert!(!client_keys_changed(&same.registry, &current));
        assert!(std::sync::Arc::ptr_eq(
            &same.registry.token_cache,
            &current.token_cache
        ));

        let mut rotated = running.clone();
        rotated.apps[1].auth_key.key = "another secret".into();
        let next = next_generation(&current, &running, rotated).unwrap();
        assert_eq!(generation(&next.registry, "a"), generation(&current, "a"));
        assert_ne!(generation(&next.registry, "b"), generation(&current, "b"));
        assert!(client_keys_changed(&next.registry, &current));

        // A removed app counts as a change (its entries are freed).
        let fewer = next_generation(&current, &running, config(&["a"], "127.0.0.1:1")).unwrap();
        assert!(client_keys_changed(&fewer.registry, &current));
    }
}
