//! The JWKS fetcher: one plain thread that keeps every `"source": "jwks"` key set fresh.
//!
//! Responsibility: fetch each JWKS URL over HTTP(S) with a blocking client (`ureq`, rustls)
//! off the workers, install the parsed set into its [`JwksCache`], and decide when to fetch
//! again: when the document's `Cache-Control: max-age` expires (clamped to
//! [`MIN_REFRESH_INTERVAL`]..[`MAX_REFRESH_INTERVAL`], [`DEFAULT_REFRESH_INTERVAL`] without
//! one), after a failure (backoff from 1 s doubling to [`MAX_FAILURE_BACKOFF`]), and when a
//! handshake rings the doorbell with an unknown `kid` — at most once per
//! [`UNKNOWN_KID_REFETCH_INTERVAL`] per URL (PROTOCOL §1); a ring inside that interval is
//! dropped (the client's retry after it rings again).
//!
//! Must not: run on a worker, or hold a lock while fetching (a worker reads the old set
//! meanwhile). Never logs a token; shows a URL only as `auth::jwks::redact_url` does (no
//! userinfo, query or fragment), and scrubs the HTTP client's errors the same way.
//!
//! Invariants: rings are handled in arrival order (one FIFO doorbell), so a ring is decided
//! before any ring that came after it; a failed or oversized fetch keeps the previous set.

use crate::auth::jwks::{parse_key_set, redact_url_in, JwksCache, MAX_JWKS_DOCUMENT_BYTES};
use crate::auth::TokenCache;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Least time between two refetches caused by unknown `kid`s, per URL (PROTOCOL §1).
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Refresh interval when the response has no usable `Cache-Control: max-age`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Floor for `max-age` (also for `max-age=0`, `no-cache`, `no-store`): one fetch per
/// second per URL is negligible load for an identity provider.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Ceiling for `max-age`: keys removed upstream are dropped here within a day at most.
pub const MAX_REFRESH_INTERVAL: Duration = Duration::from_secs(86_400);
/// Longest wait between retries of a failing URL.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(60);
/// Whole-request timeout of one fetch (connect, TLS, headers, body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `runtime::start` waits for the first round of fetches before the listeners
/// open, so that the first clients find the keys; a URL still failing then does not stop
/// the start (its app answers 401 until a fetch succeeds).
pub const STARTUP_WAIT: Duration = Duration::from_secs(5);
/// Pending doorbell rings; one per cache at most is pending (the cache merges rings), so
/// this bounds only configurations with more distinct JWKS URLs (extra rings are dropped).
pub const DOORBELL_CAPACITY: usize = 256;
/// The ring that stops the thread.
const STOP: usize = usize::MAX;

/// The running fetcher; dropping it stops the thread (after a fetch in progress).
pub struct JwksFetcher {
    doorbell: crossbeam_channel::Sender<usize>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for JwksFetcher {
    fn drop(&mut self) {
        // A blocking send: the STOP must not be lost to a full doorbell.
        let _ = self.doorbell.send(STOP);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Per-URL schedule, owned by the fetcher thread.
struct Entry {
    cache: Arc<JwksCache>,
    /// The node's verified tokens: cleared when this URL's keys change.
    token_cache: Arc<TokenCache>,
    /// When the next scheduled fetch is due.
    due: Instant,
    /// When the last unknown-`kid` refetch happened.
    last_unknown_kid_fetch: Option<Instant>,
    /// Consecutive failures (backoff exponent).
    failures: u32,
}

/// Starts the fetcher for `caches` (`None` when there are none) and waits up to
/// [`STARTUP_WAIT`] for its first round. A fetch that changes a URL's keys clears
/// `token_cache` (tokens verified with the old keys could no longer be found anyway).
pub fn start(
    caches: &[Arc<JwksCache>],
    token_cache: &Arc<TokenCache>,
) -> std::io::Result<Option<JwksFetcher>> {
    if caches.is_empty() {
        return Ok(None);
    }
    let (doorbell, rings) = crossbeam_channel::bounded(DOORBELL_CAPACITY);
    for (index, cache) in caches.iter().enumerate() {
        cache.attach(doorbell.clone(), index);
    }
    let now = Instant::now();
    let entries: Vec<Entry> = caches
        .iter()
        .map(|cache| Entry {
            cache: cache.clone(),
            token_cache: token_cache.clone(),
            // A cache kept by a configuration reload keeps its schedule (no refetch).
            due: cache.remembered_refresh().unwrap_or(now),
            last_unknown_kid_fetch: None,
            failures: 0,
        })
        .collect();
    let (first_round, first_round_done) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("ringcast-jwks".into())
        .spawn(move || run(entries, rings, first_round))?;
    let _ = first_round_done.recv_timeout(STARTUP_WAIT);
    Ok(Some(JwksFetcher {
        doorbell,
        thread: Some(thread),
    }))
}

/// The thread: scheduled fetches, then doorbell rings until the next one is due.
fn run(mut entries: Vec<Entry>, rings: Receiver<usize>, first_round: std::sync::mpsc::Sender<()>) {
    let agent = agent();
    let mut first_round = Some(first_round);
    loop {
        let now = Instant::now();
        for entry in entries.iter_mut().filter(|entry| entry.due <= now) {
            fetch(&agent, entry);
        }
        if let Some(done) = first_round.take() {
            let _ = done.send(());
        }
        let next_due = entries
            .iter()
            .map(|entry| entry.due)
            .min()
            .unwrap_or_else(|| Instant::now() + MAX_REFRESH_INTERVAL);
        let ring = rings.recv_timeout(next_due.saturating_duration_since(Instant::now()));
        match ring {
            Ok(STOP) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(index) => {
                let Some(entry) = entries.get_mut(index) else {
                    continue;
                };
                entry.cache.take_refresh_request();
                let now = Instant::now();
                let allowed = entry.last_unknown_kid_fetch.is_none_or(|last| {
                    now.saturating_duration_since(last) >= UNKNOWN_KID_REFETCH_INTERVAL
                });
                if allowed {
                    entry.last_unknown_kid_fetch = Some(now);
                    tracing::debug!(
                        url = entry.cache.url_for_logs(),
                        "JWKS refetch: unknown kid"
                    );
                    fetch(&agent, entry);
                } else {
                    tracing::debug!(
                        url = entry.cache.url_for_logs(),
                        "unknown kid within the refetch interval; not refetched"
                    );
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// The HTTP client: rustls with the webpki roots, whole-request timeout, no redirects to
/// another scheme (ureq follows same-scheme redirects).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(true)
        .user_agent(concat!("ringcast/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Fetches one URL, installs the set on success, and schedules the next fetch.
fn fetch(agent: &ureq::Agent, entry: &mut Entry) {
    let url = entry.cache.url_for_logs().to_string();
    match download(agent, entry.cache.url()) {
        Ok((document, max_age)) => match parse_key_set(&document) {
            Ok(parsed) => {
                tracing::info!(
                    url,
                    keys = parsed.set.len(),
                    skipped = parsed.skipped,
                    ignored = parsed.ignored,
                    refresh_s = max_age.as_secs(),
                    "JWKS fetched"
                );
                if entry.cache.install(parsed.set) {
                    entry.token_cache.clear();
                }
                entry
                    .cache
                    .fetches_ok
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                entry.failures = 0;
                entry.due = Instant::now() + max_age;
                entry.cache.remember_refresh(entry.due);
            }
            Err(error) => failed(entry, &url, &error.to_string()),
        },
        Err(error) => failed(entry, &url, &error),
    }
}

/// Keeps the old set and backs off.
fn failed(entry: &mut Entry, url: &str, reason: &str) {
    entry
        .cache
        .fetches_failed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let backoff = Duration::from_secs(1 << entry.failures.min(6)).min(MAX_FAILURE_BACKOFF);
    entry.failures = entry.failures.saturating_add(1);
    entry.due = Instant::now() + backoff;
    tracing::warn!(
        url,
        reason,
        retry_in_s = backoff.as_secs(),
        keys_kept = entry.cache.snapshot().len(),
        "JWKS fetch failed; keeping the previous keys"
    );
}

/// GETs `url`: the body (at most [`MAX_JWKS_DOCUMENT_BYTES`]) and the refresh interval.
/// An error's text may quote the URL (`ureq`'s "bad uri: …"): it comes back redacted.
fn download(agent: &ureq::Agent, url: &str) -> Result<(Vec<u8>, Duration), String> {
    let shown = |error: ureq::Error| redact_url_in(&error.to_string(), url);
    let mut response = agent
        .get(url)
        .header("Accept", "application/json")
        .call()
        .map_err(shown)?;
    let max_age = response
        .headers()
        .get("cache-control")
        .and_then(|value| value.to_str().ok())
        .map(refresh_interval)
        .unwrap_or(DEFAULT_REFRESH_INTERVAL);
    let document = response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_DOCUMENT_BYTES as u64)
        .read_to_vec()
        .map_err(shown)?;
    Ok((document, max_age))
}

/// The refresh interval a `Cache-Control` value asks for, clamped.
fn refresh_interval(cache_control: &str) -> Duration {
    let mut interval = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return MIN_REFRESH_INTERVAL;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                interval = Some(Duration::from_secs(seconds));
            }
        }
    }
    interval
        .unwrap_or(DEFAULT_REFRESH_INTERVAL)
        .clamp(MIN_REFRESH_INTERVAL, MAX_REFRESH_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_the_refresh_interval() {
        assert_eq!(
            refresh_interval("public, max-age=120"),
            Duration::from_secs(120)
        );
        assert_eq!(refresh_interval("max-age=0"), MIN_REFRESH_INTERVAL);
        assert_eq!(refresh_interval("no-store"), MIN_REFRESH_INTERVAL);
        assert_eq!(refresh_interval("max-age=99999999"), MAX_REFRESH_INTERVAL);
        assert_eq!(refresh_interval("public"), DEFAULT_REFRESH_INTERVAL);
        assert_eq!(refresh_interval("max-age=abc"), DEFAULT_REFRESH_INTERVAL);
    }

    /// Whatever the client makes of a URL with credentials (refused connection, malformed
    /// authority), the error text it leaves for the log keeps them hidden. (Only URLs that
    /// need no name lookup: the tests stay on loopback.)
    #[test]
    fn fetch_errors_never_show_the_credentials() {
        let agent = agent();
        for url in [
            "http://jwks-user:pa55word-SECRET@127.0.0.1:9/keys",
            "http://jwks-user:pa55word-SECRET@/keys",
            "http://127.0.0.1:9/keys?access_token=pa55word-SECRET",
        ] {
            let error = download(&agent, url).unwrap_err();
            assert!(!error.contains("SECRET"), "{url}: {error}");
        }
    }
}
