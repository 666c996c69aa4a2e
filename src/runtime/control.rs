//! The control thread: configuration reloads off the workers.
//!
//! Responsibility: the [`Controller`] owns the current [`Registry`] generation, the JWKS
//! fetcher thread of that generation and the control ends of the worker mailboxes. A
//! reload (SIGHUP, or `POST /admin/reload` relayed by a worker as a [`ControlRequest`])
//! re-reads `Config::source`, computes the next generation (`control::next_generation`,
//! sans-IO) and sends it to the bus first, then to every worker, which swaps it in between
//! two batches of work. An invalid file is rejected with a logged error and the old
//! generation stays in force.
//!
//! Must not: run on a worker — file reads, key parsing and the wait for every worker's
//! confirmation would stall connections. What a reload applies and what needs a restart
//! is documented in `control`.

use super::jwks::{self, JwksFetcher};
use crate::broker::apps::Registry;
use crate::broker::bus_link::BusCommand;
use crate::broker::mesh::{MeshMessage, MeshSender};
use crate::config::Config;
use crate::control::{client_keys_changed, next_generation, ControlRequest, ReloadOutcome};
use std::sync::Arc;
use std::time::Duration;

/// How long a reload waits for every worker to confirm the new generation.
pub const WORKER_APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the control thread; it ends on its own once every request sender (workers,
/// server handle) is gone.
pub fn spawn(
    controller: Controller,
    requests: crossbeam_channel::Receiver<ControlRequest>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringcast-control".into())
        .spawn(move || controller.serve(requests))
        .map(drop)
}

/// The control thread's state.
pub struct Controller {
    current: Arc<Registry>,
    /// Keeps the current generation's JWKS caches fresh (`None` without JWKS keys);
    /// dropping it stops its thread.
    jwks: Option<JwksFetcher>,
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
        jwks: Option<JwksFetcher>,
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
                        let _ = reply.send(outcome);
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
        let config = Config::load(&path).map_err(|error| error.to_string())?;
        let next = next_generation(&self.current, &self.running, config)?;
        let registry = Arc::new(next.registry);
        // Key sets of URLs the previous generation had are reused with their keys; a new
        // fetcher covers the new set (waiting a bounded time for new URLs' first fetch)
        // before any worker can verify against them. The old fetcher stops when replaced.
        if !registry.jwks.is_empty() || self.jwks.is_some() {
            self.jwks = jwks::start(&registry.jwks, &registry.token_cache)
                .map_err(|error| format!("cannot start the JWKS fetcher thread: {error}"))?;
        }
        // The bus first: it must know an added app's slot before any worker can announce
        // interest in it (one FIFO queue, so this is ordered before their commands).
        if let Some(bus) = &self.bus {
            bus.send_blocking(BusCommand::Reload(registry.clone()));
        }
        let (applied, confirmations) = crossbeam_channel::bounded(self.senders.len());
        for sender in &self.senders {
            sender.send_blocking(MeshMessage::Reload {
                next: registry.clone(),
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
        // After the workers switched: tokens verified with keys this reload changed could
        // no longer be found; free their entries.
        if client_keys_changed(&registry, &self.current) {
            registry.token_cache.clear();
        }
        self.current = registry;
        self.running = next.config;
        Ok(next.summary)
    }
}
