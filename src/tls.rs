//! TLS settings: `server.tls` certificate and key files → one shared rustls `ServerConfig`.
//!
//! Responsibility: read and check the PEM files once (at start-up and in `ringcast
//! check-config`), and build the rustls configuration every worker shares. It must not
//! touch sockets: `runtime::tls` drives each connection's TLS state.
//!
//! Invariants: exactly one crypto provider is used — *ring*, passed explicitly with
//! `builder_with_provider`, so the process-wide default (which another dependency could
//! set, or leave ambiguous by enabling a second provider) never matters. Errors name the
//! field and the file; the key's bytes never appear in an error or a log line.

use crate::config::{ConfigError, TlsConfig};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// ALPN protocols offered: WebSocket upgrades and the HTTP API are HTTP/1.1 only; a client
/// offering only `h2` is refused in the handshake rather than misunderstood later.
const ALPN_PROTOCOLS: [&[u8]; 1] = [b"http/1.1"];

/// Reads `tls.cert` and `tls.key` and builds the server configuration.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let chain = certificates(&tls.cert)?;
    let key = private_key(&tls.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError::new(None, "server.tls", error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| {
            let message = match error {
                rustls::Error::InconsistentKeys(_) => format!(
                    "the private key in {} does not belong to the certificate in {}",
                    tls.key, tls.cert
                ),
                other => format!("{} / {}: {other}", tls.cert, tls.key),
            };
            ConfigError::new(None, "server.tls", message)
        })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn read(field: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|error| ConfigError::new(None, field, format!("cannot read {path}: {error}")))
}

fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    const FIELD: &str = "server.tls.cert";
    let bytes = read(FIELD, path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|error| {
            ConfigError::new(None, FIELD, format!("{path}: not valid PEM: {error}"))
        })?;
    if chain.is_empty() {
        return Err(ConfigError::new(
            None,
            FIELD,
            format!("{path} holds no `BEGIN CERTIFICATE` block"),
        ));
    }
    Ok(chain)
}

fn private_key(path: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    const FIELD: &str = "server.tls.key";
    let bytes = read(FIELD, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| {
        let message = match error {
            pem::Error::NoItemsFound => format!(
                "{path} holds no private key (`BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)"
            ),
            // pem errors describe the structure (section names, base64 position), never
            // the key's content.
            other => format!("{path}: not a valid PEM private key: {other}"),
        };
        ConfigError::new(None, FIELD, message)
    })
}
