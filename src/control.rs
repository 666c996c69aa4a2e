//! Configuration reload: re-read the file, compile the next generation, hand it to workers.
//!
//! Responsibility: the [`Controller`] owns the current [`Registry`] generation and the
//! control ends of the worker mailboxes. A reload (SIGHUP, or `POST /admin/reload` relayed
//! by a worker as a [`ControlRequest`]) re-reads `Config::source`, compiles it against the
//! current generation ([`Registry::compile_next`]: kept apps keep their slots and live
//! state) and sends the result to every worker, which swaps it in between two batches of
//! work. An invalid file is rejected with a logged error and the old generation stays in
//! force. It runs on the control thread (started by the runtime), never on a worker: file
//! reads and key parsing must not stall connections.
//!
//! What a reload applies: apps added (they accept connections as soon as every worker has
//! the new generation), removed (their connections are closed with 4000), keys rotated,
//! source filters, flags and limits changed — for existing connections too; the server
//! admin key and monitoring filter. What needs a restart: the other `server` settings
//! (listener, workers, io driver, timers, proxies, socket buffers, TLS); a reload keeps the
//! running values and lists the changed ones in its answer and log.

use crate::broker::apps::{Registry, ReloadSummary};
use crate::broker::mesh::{MeshMessage, MeshSender};
use crate::cluster::BusCommand;
use crate::config::{Config, ServerConfig};
use std::sync::Arc;

/// Pending control requests before `POST /admin/reload` answers 503 (a reload in
/// progress covers every request queued behind it, so a few suffice).
pub const CONTROL_QUEUE_CAPACITY: usize = 8;

/// How long a reload waits for every worker to confirm the new generation.
pub const WORKER_APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The result of one reload, as `POST /admin/reload` reports it.
pub type ReloadOutcome = Result<ReloadSummary, String>;

/// What workers and signal handlers ask the control thread.
pub enum ControlRequest {
    /// Re-read the configuration; `reply` (HTTP callers) learns the outcome.
    Reload {
        reply: Option<flume::Sender<ReloadOutcome>>,
    },
}

/// The control thread's state.
pub struct Controller {
    current: Arc<Registry>,
    /// Keeps the current generation's JWKS caches fresh (`None` without JWKS keys);
    /// dropping it stops its thread.
    jwks: Option<crate::runtime::jwks::JwksFetcher>,
    /// The cluster bus's queue (cluster mode): told about a new generation first.
    bus: Option<MeshSender<BusCommand>>,
    /// The configuration in force (after command-line overrides).
    running: Config,
    senders: Vec<MeshSender>,
}

impl Controller {
    pub fn new(
        current: Arc<Registry>,
        running: Config,
        senders: Vec<MeshSender>,
        jwks: Option<crate::runtime::jwks::JwksFetcher>,
        bus: Option<MeshSender<BusCommand>>,
    ) -> Controller {
        Controller {
            current,
            jwks,
            bus,
            running,
            senders,
        }
    }

    /// Serves requests until every sender is gone (server stopped).
    pub fn serve(mut self, requests: crossbeam_channel::Receiver<ControlRequest>) {
        while let Ok(request) = requests.recv() {
            match request {
                ControlRequest::Reload { reply } => {
                    let outcome = self.reload();
                    if let Some(reply) = reply {
                        let _ = reply.try_send(outcome);
                    }
                }
            }
        }
    }

    /// Re-reads the configuration file and, when it is valid, makes it the generation in
    /// force on every worker.
    pub fn reload(&mut self) -> ReloadOutcome {
        let outcome = self.try_reload();
        match &outcome {
            Ok(summary) => tracing::info!(
                generation = summary.generation,
                added = ?summary.added,
                removed = ?summary.removed,
                kept = summary.kept.len(),
                restart_required = ?summary.restart_required,
                "configuration reloaded"
            ),
            Err(error) => tracing::error!(
                %error,
                "configuration reload rejected; the previous configuration stays in force"
            ),
        }
        outcome
    }

    fn try_reload(&mut self) -> ReloadOutcome {
        let Some(path) = self.running.source.clone() else {
            return Err(
                "the server was started without a configuration file; there is nothing to re-read"
                    .into(),
            );
        };
        let mut config = Config::load(&path).map_err(|error| error.to_string())?;
        // Settings that need a restart keep their running values.
        let restart_required = keep_restart_only_settings(&self.running.server, &mut config.server);
        // The settings it compiles equal the running ones: they come only from the
        // restart-only fields kept above.
        let next = Registry::compile_next(&config, self.current.workers, Some(&self.current))
            .map_err(|error| error.to_string())?;
        let mut summary = next.summary_since(&self.current);
        summary.restart_required = restart_required;
        let next = Arc::new(next);
        // Key sets of URLs the previous generation had are reused with their keys; a new
        // fetcher covers the new set (waiting a bounded time for new URLs' first fetch)
        // before any worker can verify against them. The old fetcher stops when replaced.
        if !next.jwks.is_empty() || self.jwks.is_some() {
            self.jwks = crate::runtime::jwks::start(&next.jwks)
                .map_err(|error| format!("cannot start the JWKS fetcher thread: {error}"))?;
        }
        // The bus first: it must know an added app's slot before any worker can announce
        // interest in it (one FIFO queue, so this is ordered before their commands).
        if let Some(bus) = &self.bus {
            bus.send_blocking(BusCommand::Reload(next.clone()));
        }
        let (applied, confirmations) = crossbeam_channel::bounded(self.senders.len());
        for sender in &self.senders {
            sender.send_blocking(MeshMessage::Reload {
                next: next.clone(),
                applied: applied.clone(),
            });
        }
        // Answer once every worker runs the new generation, so a caller that got 200 can
        // rely on it (a connection to an added app is accepted by any worker).
        let deadline = std::time::Instant::now() + WORKER_APPLY_TIMEOUT;
        for _ in 0..self.senders.len() {
            if confirmations.recv_deadline(deadline).is_err() {
                tracing::warn!(
                    "a worker did not confirm the reload in time; it applies it when it catches up"
                );
                break;
            }
        }
        self.current = next;
        self.running = config;
        Ok(summary)
    }
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
        zero_copy_fanout_bytes => "zeroCopyFanoutBytes",
        flush_interval_micros => "flushIntervalMicros",
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
}
