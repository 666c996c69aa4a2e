//! The bus's side of a secured NATS: hand `server.cluster.auth` and `server.cluster.tls`
//! to async-nats, and tell a refused connection (credentials refused, TLS needed but not
//! configured) from NATS being away.
//!
//! Responsibility: [`secure`] turns the checked configuration into `ConnectOptions`
//! (credentials file, nkey seed, token, user and password — also a URL's
//! `user:password@`/`token@`, which async-nats 0.51 does not read itself —, the CA and
//! client certificate, TLS required, the reply inbox under the subject prefix);
//! [`describe_refusal`] and [`describe_connect_error`] classify what async-nats reports.
//! Must not: speak the NATS protocol itself, or put a secret in an error, a log line or a
//! metric (errors name the field and the path; seeds and passwords are handed to
//! async-nats only).
//!
//! What async-nats 0.51 reports, read in its `connector.rs` (and seen against
//! nats-server 2.15 in `tests/bus_security.rs`): while it retries (`retry_on_initial_connect`,
//! reconnects), every failed attempt emits `Event::ClientError(ClientError::Other(kind))`
//! where `kind` is only the `ConnectErrorKind`'s text — `"authorization violation"` for a
//! refused secret, `"failed signing nonce"` for a seed it cannot use, `"IO error"` for a TCP
//! or TLS handshake failure (an untrusted certificate too: tokio-rustls's io::Error becomes
//! `Io`), `"TLS error"` when its TLS configuration cannot be built. The detail (`kind:
//! source`, e.g. `IO error: invalid peer certificate: UnknownIssuer`) is only in the error
//! a non-retrying connect returns (`Client::server_pool()` keeps it too, but does not
//! answer while the client reconnects), so [`diagnose`] makes one such attempt and
//! [`describe_connect_error`] reads its error. A server that drops an established connection's credentials sends `-ERR`:
//! `Event::ServerError(ServerError::AuthorizationViolation)` or `ServerError::Other(text)`
//! (`"user authentication expired"`, …).

use crate::config::{url_credentials, ClusterAuth, ClusterConfig, ConfigError};
use crate::metrics::BusMetrics;
use async_nats::{ClientError, ConnectOptions, Event, ServerAddr, ServerError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why NATS would not take this node, as opposed to NATS being away: said once per attempt
/// series in the log, counted in `ringcast_bus_auth_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// NATS refused the credentials (`Authorization Violation`, expired or revoked user),
    /// or async-nats could not sign with the configured seed.
    Authentication,
    /// The server requires TLS or a client certificate this node does not have: no
    /// `server.cluster.tls` (or no `certFile`), so its certificate is not trusted or its
    /// handshake is refused.
    TlsNotConfigured,
}

impl Refusal {
    /// The one log line for this refusal (no secret: it names config fields only).
    pub fn explanation(self) -> &'static str {
        match self {
            Refusal::Authentication => {
                "NATS refused this node's credentials (server.cluster.auth or the URL's \
                 user:password@); running as a single node and retrying"
            }
            Refusal::TlsNotConfigured => {
                "NATS requires TLS (or a client certificate) that is not configured: set \
                 server.cluster.tls {caFile, certFile, keyFile}; running as a single node \
                 and retrying"
            }
        }
    }
}

/// Applies `config.auth`, the URL's credentials and `config.tls` to `options` (the inbox
/// prefix under the subject prefix is set with the subjects, `cluster::subjects`). Reads
/// the seed and credentials files (their problems are [`ConfigError`]s naming the field
/// and path; `check-config` has already parsed them).
pub async fn secure(
    options: ConnectOptions,
    config: &ClusterConfig,
) -> Result<ConnectOptions, ConfigError> {
    let mut options = match &config.auth {
        Some(ClusterAuth::CredentialsFile(path)) => {
            const FIELD: &str = "server.cluster.auth.credentialsFile";
            let text = read_secret(FIELD, path)?;
            if let Some(problem) = crate::config::cluster_security::credentials_problem(&text) {
                return Err(ConfigError::new(
                    None,
                    FIELD,
                    format!("{}: {problem}", path.display()),
                ));
            }
            // The io::Error of a parse failure describes the structure, but is replaced
            // anyway: nothing from the file's content reaches a message.
            options.credentials(&text).map_err(|_| {
                ConfigError::new(
                    None,
                    FIELD,
                    format!("{}: not a NATS credentials file", path.display()),
                )
            })?
        }
        Some(ClusterAuth::NkeySeedFile(path)) => {
            const FIELD: &str = "server.cluster.auth.nkeySeedFile";
            let seed = read_secret(FIELD, path)?.trim().to_string();
            if let Some(problem) = crate::config::cluster_security::seed_problem(&seed) {
                return Err(ConfigError::new(
                    None,
                    FIELD,
                    format!("{}: {problem}", path.display()),
                ));
            }
            options.nkey(seed)
        }
        Some(ClusterAuth::Token(token)) => options.token(token.clone()),
        Some(ClusterAuth::UserPassword { user, password }) => {
            options.user_and_password(user.clone(), password.clone())
        }
        // async-nats 0.51 parses a URL's userinfo but never sends it: hand it over here.
        None => match config.nats.iter().find_map(|url| url_credentials(url)) {
            Some((user, Some(password))) => options.user_and_password(user, password),
            Some((token, None)) => options.token(token),
            None => options,
        },
    };
    if let Some(tls) = &config.tls {
        options = options
            .add_root_certificates(tls.ca_file.clone())
            .require_tls(true);
        if let Some((cert, key)) = tls.client_certificate() {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    } else if config.nats.iter().any(|url| url.starts_with("tls://")) {
        options = options.require_tls(true);
    }
    Ok(options)
}

fn read_secret(field: &str, path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(
            None,
            field,
            format!("cannot read {}: {error}", path.display()),
        )
    })
}

/// Whether `event` says NATS refused this node (see the module docs for what async-nats
/// emits); `None` for everything else, NATS being away included. A TLS refusal shows only
/// as `"IO error"` here: [`diagnose`] tells it apart.
pub fn describe_refusal(event: &Event) -> Option<Refusal> {
    match event {
        Event::ServerError(ServerError::AuthorizationViolation) => Some(Refusal::Authentication),
        Event::ServerError(ServerError::Other(text)) => authentication_text(text),
        Event::ClientError(ClientError::Other(text)) => authentication_text(text),
        _ => None,
    }
}

/// Refusals by their text: the `ConnectErrorKind` of a failed attempt, or a server `-ERR`.
fn authentication_text(text: &str) -> Option<Refusal> {
    let text = text.to_ascii_lowercase();
    let refused = text.starts_with("authorization violation")
        || text.starts_with("failed signing nonce")
        || text.contains("authentication expired")
        || text.contains("authentication revoked")
        || text.contains("account authentication expired");
    refused.then_some(Refusal::Authentication)
}

/// Classifies a failed attempt's full error (`"<kind>: <source>"`, from [`diagnose`]). `tls_configured`: whether
/// `server.cluster.tls` is set (with a client certificate when `client_certificate`).
pub fn describe_connect_error(
    last_error: &str,
    tls_configured: bool,
    client_certificate: bool,
) -> Option<Refusal> {
    if let Some(refusal) = authentication_text(last_error) {
        return Some(refusal);
    }
    let text = last_error.to_ascii_lowercase();
    // rustls's texts: the server's certificate chains to no configured root, or the server
    // asked for a client certificate and ended the handshake without one.
    let untrusted = text.contains("invalid peer certificate");
    let certificate_required =
        text.contains("certificaterequired") || text.contains("certificate required");
    if (untrusted && !tls_configured) || (certificate_required && !client_certificate) {
        return Some(Refusal::TlsNotConfigured);
    }
    None
}

/// How long the diagnosing attempt of [`RefusalWatch`] may take per server.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Says once per attempt series why NATS refuses this node, and counts refused attempts
/// in `ringcast_bus_auth_refusals_total` (`BusMetrics::auth_refusals`). The bus loop
/// gives it every connection [`Event`].
///
/// An attempt series runs from the first failed attempt to the next `Connected`. An
/// authentication refusal is recognised from the event itself. A TLS refusal is not (it
/// arrives as `"IO error"`, like NATS being down): on the series' first `"IO error"` or
/// `"TLS error"`, when TLS or a client certificate is not configured, one extra attempt
/// without retries is made on a spawned task (async-nats's own connect, which returns the
/// full error), and [`describe_connect_error`] reads its error; from then on each failed
/// attempt of the series counts as refused.
pub struct RefusalWatch {
    config: ClusterConfig,
    metrics: Arc<BusMetrics>,
    /// The refusal already logged in this series.
    said: Option<Refusal>,
    /// Set by the diagnosing task when the series fails for missing TLS.
    tls_refused: Arc<AtomicBool>,
    /// Whether this series has been diagnosed (or is being).
    diagnosed: bool,
}

impl RefusalWatch {
    pub fn new(config: ClusterConfig, metrics: Arc<BusMetrics>) -> RefusalWatch {
        RefusalWatch {
            config,
            metrics,
            said: None,
            tls_refused: Arc::new(AtomicBool::new(false)),
            diagnosed: false,
        }
    }

    /// Observes one event (must run on the bus's tokio runtime: it may spawn the
    /// diagnosis). Returns whether the event was a refusal, logged or counted here, so the
    /// caller need not log it again.
    pub fn observe(&mut self, event: &Event) -> bool {
        if matches!(event, Event::Connected) {
            self.said = None;
            self.diagnosed = false;
            self.tls_refused.store(false, Ordering::Relaxed);
            return false;
        }
        if let Some(refusal) = describe_refusal(event) {
            self.metrics.auth_refusals.fetch_add(1, Ordering::Relaxed);
            if self.said != Some(refusal) {
                self.said = Some(refusal);
                tracing::error!(nats_error = %event, "{}", refusal.explanation());
            }
            return true;
        }
        let Event::ClientError(ClientError::Other(kind)) = event else {
            return false;
        };
        if kind != "IO error" && kind != "TLS error" {
            return false;
        }
        if self.tls_refused.load(Ordering::Relaxed) {
            self.metrics.auth_refusals.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let client_certificate = self
            .config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_certificate().is_some());
        if !self.diagnosed && !client_certificate {
            self.diagnosed = true;
            let (config, metrics) = (self.config.clone(), self.metrics.clone());
            let tls_refused = self.tls_refused.clone();
            tokio::spawn(async move {
                if let Some(refusal) = diagnose(&config).await {
                    metrics.auth_refusals.fetch_add(1, Ordering::Relaxed);
                    tls_refused.store(refusal == Refusal::TlsNotConfigured, Ordering::Relaxed);
                    tracing::error!("{}", refusal.explanation());
                }
            });
        }
        false
    }
}

/// One connection attempt to each configured server, no retries, with the same
/// credentials and TLS; the refusal its error shows, if any. A successful attempt's
/// client is dropped at once.
pub async fn diagnose(config: &ClusterConfig) -> Option<Refusal> {
    let addresses: Vec<ServerAddr> = config
        .nats
        .iter()
        .filter_map(|url| url.parse().ok())
        .collect();
    let options = ConnectOptions::new()
        .name(format!("ringcast-{}-diagnosis", config.name))
        .connection_timeout(DIAGNOSIS_TIMEOUT);
    let options = secure(options, config).await.ok()?;
    let error = options.connect(addresses).await.err()?;
    let tls = config.tls.as_ref();
    describe_connect_error(
        &error.to_string(),
        tls.is_some(),
        tls.is_some_and(|tls| tls.client_certificate().is_some()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_credentials_are_told_from_nats_being_away() {
        let client = |text: &str| Event::ClientError(ClientError::Other(text.to_string()));
        for event in [
            client("authorization violation"),
            client("failed signing nonce"),
            Event::ServerError(ServerError::AuthorizationViolation),
            Event::ServerError(ServerError::Other("user authentication expired".into())),
        ] {
            assert_eq!(
                describe_refusal(&event),
                Some(Refusal::Authentication),
                "{event}"
            );
        }
        for event in [
            client("IO error"),
            client("timed out"),
            client("TLS error"),
            Event::Disconnected,
            Event::Connected,
            Event::ServerError(ServerError::Other("maximum connections exceeded".into())),
        ] {
            assert_eq!(describe_refusal(&event), None, "{event}");
        }
    }

    #[test]
    fn tls_refusals_are_read_from_the_full_error() {
        let untrusted = "IO error: invalid peer certificate: UnknownIssuer";
        assert_eq!(
            describe_connect_error(untrusted, false, false),
            Some(Refusal::TlsNotConfigured)
        );
        // With a CA configured, an untrusted certificate is a wrong CA, not missing TLS.
        assert_eq!(describe_connect_error(untrusted, true, false), None);
        let no_certificate = "IO error: received fatal alert: CertificateRequired";
        assert_eq!(
            describe_connect_error(no_certificate, true, false),
            Some(Refusal::TlsNotConfigured)
        );
        assert_eq!(describe_connect_error(no_certificate, true, true), None);
        assert_eq!(
            describe_connect_error(
                "authorization violation: authorization violation",
                true,
                true
            ),
            Some(Refusal::Authentication)
        );
        assert_eq!(
            describe_connect_error("IO error: Connection refused (os error 111)", false, false),
            None
        );
    }

    #[test]
    fn explanations_name_fields_only() {
        for refusal in [Refusal::Authentication, Refusal::TlsNotConfigured] {
            assert!(refusal.explanation().contains("server.cluster"));
        }
    }
}
