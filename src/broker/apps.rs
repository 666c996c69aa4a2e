//! The compiled application registry: an immutable snapshot shared by every worker.
//!
//! Responsibility: turn a validated [`Config`] into [`App`]s whose keys, algorithm lists
//! and source filters are compiled once, plus the small amount of cross-worker state an app
//! needs at connect time (connection counters, the per-subject count, topic interest).
//! It must not do I/O. Errors name the app and the field ([`ConfigError`]).
//!
//! Invariants:
//! - An app's `index` is a *slot* that never changes while the process lives, across
//!   configuration reloads ([`Registry::compile_next`]): workers address per-app tables and
//!   mesh messages by it. A removed app's slot is never reused; an added app gets a new one.
//! - The cross-worker state of an app (connection counters, per-subject and per-address
//!   counts, topic interest, per-worker counters) is shared by every compiled generation of
//!   the same app id, so a reload that keeps an app keeps its live state.
//! - A connection is released exactly as it was admitted ([`Admission`]): a per-subject or
//!   per-address limit set by a reload counts connections made after it, and one lifted by
//!   a reload still releases the connections it counted (no count is left behind).

use super::anonymous::AnonymousEndpoint;
use super::interest::InterestMap;
use crate::auth::{AddressKey, ClientAddress, JwksCache, SourceFilter, TokenCache};
use crate::auth::{Verifier, VerifierConfig};
use crate::config::{Config, ConfigError, KeyConfig, LimitsConfig};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counters of one app on one worker: written by that worker only (relaxed adds), summed
/// at scrape (`/metrics`, `/stats`).
#[derive(Default)]
#[repr(align(128))]
pub struct AppCounters {
    pub connections: AtomicU64,
    pub messages_in: AtomicU64,
    /// Messages published through the HTTP API.
    pub http_publications: AtomicU64,
    pub deliveries: AtomicU64,
    /// `POST /token/anonymous/{appId}`: tokens issued, requests refused with 429.
    pub anonymous_issued: AtomicU64,
    pub anonymous_limited: AtomicU64,
}

impl AppCounters {
    #[inline]
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }
}

/// One tenant, compiled.
pub struct App {
    /// The app's slot (see the module invariants).
    pub index: usize,
    pub id: Box<str>,
    /// The configured `name` (shown on the dashboard), if any.
    pub name: Option<Box<str>>,
    pub client_verifier: Verifier,
    /// `None` when the app has no `adminKey`: its HTTP API answers 401.
    pub admin_verifier: Option<Verifier>,
    pub client_sources: SourceFilter,
    pub admin_sources: SourceFilter,
    pub inbound_enabled: bool,
    pub ack_enabled: bool,
    /// Test-only echo mode (`echoForConformanceTests`).
    pub echo: bool,
    pub limits: LimitsConfig,
    /// Open connections of this app, all workers (checked against `maxConnections`).
    pub connections: Arc<AtomicU64>,
    /// Open connections per subject (checked against `maxConnectionsPerSubject`); only
    /// maintained when that limit is set. Touched at connect/close only.
    pub subjects: Arc<Mutex<HashMap<Box<str>, u64>>>,
    /// Open connections per client address key (checked against
    /// `maxConnectionsPerAddress`); only maintained while that limit is set. Touched at
    /// connect/close only.
    pub addresses: Arc<Mutex<HashMap<AddressKey, u64>>>,
    /// Which workers hold subscribers of each topic.
    pub interest: Arc<InterestMap>,
    /// Per-worker counters (index = worker).
    pub counters: Arc<[AppCounters]>,
    /// `POST /token/anonymous/{appId}`; `None` when absent or disabled (404).
    pub anonymous: Option<AnonymousEndpoint>,
}

/// Server-wide settings the workers need at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Zero disables pings and liveness.
    pub ping_interval: Duration,
    /// Time to receive a whole HTTP request, head and body (`handshakeTimeoutSeconds`).
    pub handshake_timeout: Duration,
    /// Per worker, connections in the HTTP phase (`maxHttpConnectionsPerWorker`, ≥ 1).
    pub max_http_connections_per_worker: usize,
    pub max_http_body_bytes: usize,
    pub trusted_proxies: Vec<IpNet>,
    /// Server-wide upgrade rate (0 = unlimited); each worker enforces its share.
    pub max_handshakes_per_second: u64,
    /// `SO_SNDBUF` for client sockets (0 = kernel autotuning).
    pub socket_send_buffer_bytes: usize,
    pub shutdown_deadline: Duration,
    /// `flushIntervalMicros` (restart-only: read when a worker starts).
    pub flush_interval: Duration,
}

/// Every app, by slot and by id, plus the server-wide settings: one immutable generation of
/// the configuration. A reload compiles the next generation and hands it to every worker.
pub struct Registry {
    /// In configuration order.
    pub apps: Vec<Arc<App>>,
    by_id: HashMap<Box<str>, usize>,
    /// Slot → position in `apps` (`None`: an app removed by a reload).
    slots: Vec<Option<usize>>,
    /// Workers the per-worker counters are sized for.
    pub workers: usize,
    pub settings: Settings,
    /// `server.adminKey`: verifies tokens for `POST /admin/reload` (`None`: disabled).
    pub server_admin_verifier: Option<Verifier>,
    /// `server.monitoringSourceAddress`: who may read `/metrics`, `/stats`, `/dashboard`.
    pub monitoring_sources: SourceFilter,
    /// Which generation this is (1 at start, +1 per successful reload).
    pub generation: u64,
    /// One cache per distinct JWKS URL (shared by every key that names it); the runtime's
    /// fetcher fills them. Empty when no key has `source: "jwks"`. A reload reuses the
    /// caches of URLs the previous generation had (their keys stay loaded).
    pub jwks: Vec<Arc<JwksCache>>,
    /// The node's verified client tokens (`server.tokenCacheEntries`), shared by every
    /// worker and passed on by a reload (the control thread clears it when keys change).
    pub token_cache: Arc<TokenCache>,
}

/// What a reload changed, by app id.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadSummary {
    pub generation: u64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
    /// Server settings that changed in the file but only take effect at a restart.
    pub restart_required: Vec<String>,
}

/// Why a connection was refused at the connection-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitRefusal {
    AppFull,
    SubjectFull,
    AddressFull,
}

/// What [`App::admit`] counted for one connection, kept with it so that
/// [`App::release`] undoes exactly that, whatever a reload changed in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Admission {
    /// Counted in the per-subject table.
    subject: bool,
    /// Counted in the per-address table, under this key.
    address: Option<AddressKey>,
}

/// The verifier settings of a configured key (`authKey`, `adminKey`).
pub fn verifier_config(key: &KeyConfig) -> VerifierConfig {
    VerifierConfig {
        key: key.key.clone(),
        algorithms: key.algorithms.clone(),
        issuer: key.issuer.clone(),
        audience: key
            .audience
            .as_ref()
            .map(|a| a.to_vec())
            .unwrap_or_default(),
    }
}

fn compile_key(
    app: &str,
    field: &str,
    key: &KeyConfig,
    jwks: &mut Vec<Arc<JwksCache>>,
    reusable: &[Arc<JwksCache>],
) -> Result<Verifier, ConfigError> {
    let config = verifier_config(key);
    let key_error =
        |error: crate::auth::KeyError| ConfigError::new(Some(app), field, error.to_string());
    match key.source.as_str() {
        "raw" => Verifier::new(&config).map_err(key_error),
        "jwks" => {
            let url = key.key.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 9 {
                return Err(key_error(crate::auth::KeyError::BadJwksUrl));
            }
            // Not fetched here (no I/O at compile, so `check-config` works offline): the
            // runtime's fetcher fills the cache at start-up.
            let cache = match jwks.iter().find(|cache| cache.url() == url) {
                Some(cache) => cache.clone(),
                None => {
                    let cache = reusable
                        .iter()
                        .find(|cache| cache.url() == url)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(JwksCache::new(url)));
                    jwks.push(cache.clone());
                    cache
                }
            };
            Verifier::with_jwks(&config, cache).map_err(key_error)
        }
        other => Err(ConfigError::new(
            Some(app),
            &format!("{field}.source"),
            format!("`{other}` is not a key source (use \"raw\" or \"jwks\")"),
        )),
    }
}

fn compile_sources(
    app: &str,
    field: &str,
    entries: &Option<Vec<String>>,
) -> Result<SourceFilter, ConfigError> {
    match entries {
        None => Ok(SourceFilter::allow_all()),
        Some(list) => SourceFilter::parse(list)
            .map_err(|error| ConfigError::new(Some(app), field, error.to_string())),
    }
}

impl Registry {
    /// Compiles every app of `config` (first generation, per-worker counters for one
    /// worker: for validation). The first error stops compilation.
    pub fn compile(config: &Config) -> Result<Registry, ConfigError> {
        Registry::compile_next(config, 1, None)
    }

    /// Compiles `config` as the generation after `previous` (or the first one): apps whose
    /// id `previous` holds keep their slot and live state; new apps get fresh slots.
    pub fn compile_next(
        config: &Config,
        workers: usize,
        previous: Option<&Registry>,
    ) -> Result<Registry, ConfigError> {
        let workers = previous.map(|p| p.workers).unwrap_or(workers).max(1);
        let defaults = config.server.limits();
        let mut apps = Vec::with_capacity(config.apps.len());
        let mut by_id = HashMap::new();
        let mut jwks = Vec::new();
        let reusable: &[Arc<JwksCache>] = previous.map(|p| &p.jwks[..]).unwrap_or(&[]);
        let mut next_slot = previous.map(|p| p.slots.len()).unwrap_or(0);
        for app in config.apps.iter() {
            let id = app.app_id.as_str();
            let earlier = previous.and_then(|p| p.get(id));
            let index = match earlier {
                Some(earlier) => earlier.index,
                None => {
                    next_slot += 1;
                    next_slot - 1
                }
            };
            let mut client_verifier =
                compile_key(id, "authKey", &app.auth_key, &mut jwks, reusable)?;
            // An unchanged key configuration keeps its key generation (and cached tokens).
            if let Some(e) =
                earlier.filter(|e| e.client_verifier.same_configuration(&client_verifier))
            {
                client_verifier = e.client_verifier.clone();
            }
            let anonymous = super::anonymous::compile(
                id,
                app.anonymous.as_ref(),
                &app.auth_key,
                &client_verifier,
            )?;
            let compiled = App {
                index,
                id: id.into(),
                name: app.name.as_deref().map(Into::into),
                client_verifier,
                admin_verifier: match &app.admin_key {
                    Some(key) => Some(compile_key(id, "adminKey", key, &mut jwks, reusable)?),
                    None => None,
                },
                client_sources: compile_sources(
                    id,
                    "clientSourceAddress",
                    &app.client_source_address,
                )?,
                admin_sources: compile_sources(
                    id,
                    "adminSourceAddress",
                    &app.admin_source_address,
                )?,
                inbound_enabled: app.enable_web_socket_inbound_topic,
                ack_enabled: app.enable_web_socket_inbound_ack,
                echo: app.echo_for_conformance_tests,
                limits: app.limits(&defaults),
                connections: earlier.map(|e| e.connections.clone()).unwrap_or_default(),
                subjects: earlier.map(|e| e.subjects.clone()).unwrap_or_default(),
                addresses: earlier.map(|e| e.addresses.clone()).unwrap_or_default(),
                interest: earlier.map(|e| e.interest.clone()).unwrap_or_default(),
                counters: earlier
                    .map(|e| e.counters.clone())
                    .unwrap_or_else(|| (0..workers).map(|_| AppCounters::default()).collect()),
                anonymous,
            };
            by_id.insert(id.into(), apps.len());
            apps.push(Arc::new(compiled));
        }
        let mut slots = vec![None; next_slot];
        for (position, app) in apps.iter().enumerate() {
            slots[app.index] = Some(position);
        }
        let mut trusted_proxies = Vec::new();
        for entry in &config.server.trusted_proxies {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ConfigError::new(
                        None,
                        "server.trustedProxies",
                        format!("`{entry}` is not an IP address or CIDR"),
                    )
                })?;
            trusted_proxies.push(net);
        }
        let server = &config.server;
        let server_admin_verifier = match &server.admin_key {
            Some(key) => Some(compile_key(
                "(server)",
                "server.adminKey",
                key,
                &mut jwks,
                reusable,
            )?),
            None => None,
        };
        let monitoring_sources = compile_sources(
            "(server)",
            "server.monitoringSourceAddress",
            &server.monitoring_source_address,
        )?;
        Ok(Registry {
            apps,
            by_id,
            slots,
            workers,
            settings: Settings {
                ping_interval: Duration::from_secs(server.ping_interval_seconds),
                handshake_timeout: Duration::from_secs(server.handshake_timeout_seconds.max(1)),
                max_http_connections_per_worker: usize::try_from(
                    server.max_http_connections_per_worker.max(1),
                )
                .unwrap_or(usize::MAX),
                max_http_body_bytes: server.max_http_body_bytes as usize,
                trusted_proxies,
                max_handshakes_per_second: server.max_handshakes_per_second,
                socket_send_buffer_bytes: server.socket_send_buffer_bytes as usize,
                shutdown_deadline: Duration::from_secs(server.shutdown_deadline_seconds),
                flush_interval: Duration::from_micros(server.flush_interval_micros),
            },
            server_admin_verifier,
            monitoring_sources,
            generation: previous.map(|p| p.generation + 1).unwrap_or(1),
            jwks,
            token_cache: previous
                .map(|p| p.token_cache.clone())
                .unwrap_or_else(|| Arc::new(TokenCache::new(server.token_cache_entries))),
        })
    }

    /// What changed from `previous` to this generation.
    pub fn summary_since(&self, previous: &Registry) -> ReloadSummary {
        let mut summary = ReloadSummary {
            generation: self.generation,
            ..ReloadSummary::default()
        };
        for app in &self.apps {
            if previous.get(&app.id).is_some() {
                summary.kept.push(app.id.to_string());
            } else {
                summary.added.push(app.id.to_string());
            }
        }
        for app in &previous.apps {
            if self.get(&app.id).is_none() {
                summary.removed.push(app.id.to_string());
            }
        }
        summary
    }

    /// The app in `slot`, if this generation has it.
    pub fn at_slot(&self, slot: usize) -> Option<&Arc<App>> {
        let position = (*self.slots.get(slot)?)?;
        Some(&self.apps[position])
    }

    /// Slots allocated so far (removed apps included): per-slot tables need this many.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn get(&self, app_id: &str) -> Option<&Arc<App>> {
        self.by_id.get(app_id).map(|index| &self.apps[*index])
    }

    /// Whether `peer` is a proxy whose `X-Forwarded-For` is believed.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

impl App {
    /// Reserves one connection slot for `subject` from `source`, or says which limit
    /// refuses it. The returned [`Admission`] goes to [`App::release`] when it ends.
    pub fn admit(&self, subject: &str, source: ClientAddress) -> Result<Admission, LimitRefusal> {
        let max = self.limits.max_connections;
        let previous = self.connections.fetch_add(1, Ordering::AcqRel);
        if max != 0 && previous >= max {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(LimitRefusal::AppFull);
        }
        let mut admission = Admission::default();
        let per_subject = self.limits.max_connections_per_subject;
        if per_subject != 0 {
            if !count_in(&self.subjects, Box::from(subject), per_subject) {
                self.connections.fetch_sub(1, Ordering::AcqRel);
                return Err(LimitRefusal::SubjectFull);
            }
            admission.subject = true;
        }
        let per_address = self.limits.max_connections_per_address;
        if per_address != 0 {
            let key = source.key();
            if !count_in(&self.addresses, key, per_address) {
                self.release(subject, admission);
                return Err(LimitRefusal::AddressFull);
            }
            admission.address = Some(key);
        }
        Ok(admission)
    }

    /// Releases what [`App::admit`] reserved (`admission` is what it returned).
    pub fn release(&self, subject: &str, admission: Admission) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
        if admission.subject {
            uncount_in(&self.subjects, subject);
        }
        if let Some(key) = admission.address {
            uncount_in(&self.addresses, &key);
        }
    }
}

/// Adds one to `key`'s count in `table` unless it is at `max` already; whether it did.
fn count_in<K: std::hash::Hash + Eq>(table: &Mutex<HashMap<K, u64>>, key: K, max: u64) -> bool {
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    let count = table.entry(key).or_insert(0);
    if *count >= max {
        return false;
    }
    *count += 1;
    true
}

/// Takes one from `key`'s count in `table`, removing the entry at zero.
fn uncount_in<K, Q>(table: &Mutex<HashMap<K, u64>>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ?Sized + std::hash::Hash + Eq,
{
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(count) = table.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            table.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(per_address: u64, previous: Option<&Registry>) -> Registry {
        let text = format!(
            r#"{{"apps":[{{"appId":"a","authKey":{{"source":"raw","key":"s","algorithms":["HS256"]}},"maxConnectionsPerAddress":{per_address},"maxConnectionsPerSubject":{per_address}}}]}}"#
        );
        let config = Config::from_json(&text).unwrap();
        Registry::compile_next(&config, 1, previous).unwrap()
    }

    fn source(text: &str) -> ClientAddress {
        ClientAddress::from(text.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn per_address_limit_counts_ipv6_per_64_and_unknown_sources_together() {
        let registry = registry(2, None);
        let app = registry.get("a").unwrap();
        let one = app.admit("s1", source("2001:db8::1")).unwrap();
        let _two = app.admit("s2", source("2001:db8::2")).unwrap();
        assert_eq!(
            app.admit("s3", source("2001:db8::3")),
            Err(LimitRefusal::AddressFull)
        );
        assert_eq!(
            app.connections.load(Ordering::Acquire),
            2,
            "refusal releases"
        );
        assert!(app.admit("s4", source("2001:db8:0:1::1")).is_ok());
        assert!(app.admit("s5", ClientAddress::Unknown).is_ok());
        assert!(app.admit("s6", ClientAddress::Unknown).is_ok());
        assert_eq!(
            app.admit("s7", ClientAddress::Unknown),
            Err(LimitRefusal::AddressFull)
        );
        app.release("s1", one);
        assert!(app.admit("s8", source("2001:db8::9")).is_ok());
    }

    #[test]
    fn a_refused_address_releases_the_subject_it_counted() {
        let registry = registry(1, None);
        let app = registry.get("a").unwrap();
        let _first = app.admit("alice", source("192.0.2.1")).unwrap();
        assert_eq!(
            app.admit("bob", source("192.0.2.1")),
            Err(LimitRefusal::AddressFull)
        );
        assert!(
            app.admit("bob", source("192.0.2.2")).is_ok(),
            "bob's subject count was given back"
        );
    }

    #[test]
    fn reloads_release_exactly_what_was_admitted() {
        let first = registry(1, None);
        let admitted = first
            .get("a")
            .unwrap()
            .admit("alice", source("192.0.2.1"))
            .unwrap();
        // The limits are lifted: the session now belongs to the new generation, and
        // releasing it still empties the tables it was counted in.
        let lifted = registry(0, Some(&first));
        let app = lifted.get("a").unwrap();
        app.release("alice", admitted);
        assert!(app.subjects.lock().unwrap().is_empty());
        assert!(app.addresses.lock().unwrap().is_empty());
        // Admitted while lifted: not counted, so setting the limit again starts afresh.
        let uncounted = app.admit("alice", source("192.0.2.1")).unwrap();
        let again = registry(1, Some(&lifted));
        let app = again.get("a").unwrap();
        let counted = app.admit("alice", source("192.0.2.1")).unwrap();
        assert_eq!(
            app.admit("carol", source("192.0.2.1")),
            Err(LimitRefusal::AddressFull)
        );
        app.release("alice", uncounted);
        assert_eq!(
            app.admit("carol", source("192.0.2.1")),
            Err(LimitRefusal::AddressFull),
            "releasing an uncounted connection frees nothing"
        );
        app.release("alice", counted);
        assert!(app.admit("carol", source("192.0.2.1")).is_ok());
    }
}
