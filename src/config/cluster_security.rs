//! How a node proves itself to a secured NATS: `server.cluster.auth` (one of a credentials
//! file, an nkey seed file, a token, a user and password) and `server.cluster.tls` (a
//! private CA, optionally a client certificate). README "Cluster on a secured NATS".
//!
//! Responsibility: the serde shape of both sections, their structural checks
//! ([`ClusterSecurity::validate`], run by `Config::from_json`), and the one check here that
//! reads files ([`ClusterSecurity::check_files`]: exist, readable, parse — run by
//! `check-config` and at start-up, never connecting). Must not: open sockets or name
//! async-nats (`runtime::bus::security` hands all this to the client).
//!
//! Invariants: no secret — a token, a password, a seed, a credentials file's content, the
//! userinfo of a NATS URL — reaches a `Debug` output or a [`ConfigError`]; errors name the
//! field and the file path only. `user:password@` (or `token@`) in a URL and `auth` are
//! never both given: which one authenticates would be a guess.

use super::ConfigError;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;

/// What `Debug` prints instead of a secret.
const REDACTED: &str = "<redacted>";

/// `server.cluster.auth`: exactly one of
/// `{"credentialsFile": PATH}` (user JWT + nkey seed, as `nsc` and hosted NATS issue them),
/// `{"nkeySeedFile": PATH}` (a file holding one user seed, `SU…`),
/// `{"token": "…"}`, `{"user": "…", "password": "…"}`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(try_from = "AuthFields")]
pub enum ClusterAuth {
    CredentialsFile(PathBuf),
    NkeySeedFile(PathBuf),
    Token(String),
    UserPassword { user: String, password: String },
}

/// The JSON object `auth` is read from, before it is narrowed to one [`ClusterAuth`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuthFields {
    credentials_file: Option<PathBuf>,
    nkey_seed_file: Option<PathBuf>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

/// The message of every `auth` shape error: the four accepted forms.
const AUTH_FORMS: &str = "server.cluster.auth takes exactly one of {\"credentialsFile\": PATH}, \
     {\"nkeySeedFile\": PATH}, {\"token\": \"…\"}, {\"user\": \"…\", \"password\": \"…\"}";

impl TryFrom<AuthFields> for ClusterAuth {
    type Error = String;

    fn try_from(fields: AuthFields) -> Result<Self, String> {
        let AuthFields {
            credentials_file,
            nkey_seed_file,
            token,
            user,
            password,
        } = fields;
        let auth = match (credentials_file, nkey_seed_file, token, user, password) {
            (Some(path), None, None, None, None) => ClusterAuth::CredentialsFile(path),
            (None, Some(path), None, None, None) => ClusterAuth::NkeySeedFile(path),
            (None, None, Some(token), None, None) => ClusterAuth::Token(token),
            (None, None, None, Some(user), Some(password)) => {
                ClusterAuth::UserPassword { user, password }
            }
            (None, None, None, Some(_), None) => {
                return Err(format!("{AUTH_FORMS}: `user` needs `password`"))
            }
            (None, None, None, None, Some(_)) => {
                return Err(format!("{AUTH_FORMS}: `password` needs `user`"))
            }
            (None, None, None, None, None) => return Err(format!("{AUTH_FORMS}: none given")),
            _ => return Err(format!("{AUTH_FORMS}: several given")),
        };
        Ok(auth)
    }
}

impl fmt::Debug for ClusterAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterAuth::CredentialsFile(path) => f
                .debug_struct("CredentialsFile")
                .field("path", path)
                .finish(),
            ClusterAuth::NkeySeedFile(path) => {
                f.debug_struct("NkeySeedFile").field("path", path).finish()
            }
            ClusterAuth::Token(_) => f.debug_struct("Token").field("token", &REDACTED).finish(),
            ClusterAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &REDACTED)
                .finish(),
        }
    }
}

/// `server.cluster.tls`: `{"caFile": PATH, "certFile": PATH, "keyFile": PATH}`. The CA
/// (PEM, one or more certificates) is what the NATS server's certificate must chain to;
/// `certFile` + `keyFile` (both or neither) are this node's client certificate, for a
/// server with `verify: true`. Configuring it makes TLS required: the node never talks to
/// NATS in plain text then, whatever the URL's scheme.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterTls {
    pub ca_file: PathBuf,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: the key's bytes are never read for a Debug.
        f.debug_struct("ClusterTls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

impl ClusterTls {
    /// The client certificate and key, when both are given.
    pub fn client_certificate(&self) -> Option<(&PathBuf, &PathBuf)> {
        Some((self.cert_file.as_ref()?, self.key_file.as_ref()?))
    }
}

/// `url` with its userinfo (`user:password@`, `token@`) replaced by `***`: the form every
/// log line and error message shows.
pub fn redacted_url(url: &str) -> String {
    match split_userinfo(url) {
        Some((scheme, _, rest)) => format!("{scheme}***@{rest}"),
        None => url.to_string(),
    }
}

/// The userinfo of a NATS URL, percent-decoded: `(user, Some(password))` for
/// `user:password@`, `(token, None)` for `token@`. `None` without userinfo.
pub fn url_credentials(url: &str) -> Option<(String, Option<String>)> {
    let (_, userinfo, _) = split_userinfo(url)?;
    Some(match userinfo.split_once(':') {
        Some((user, password)) => (percent_decode(user), Some(percent_decode(password))),
        None => (percent_decode(userinfo), None),
    })
}

/// `scheme://userinfo@rest` → (`scheme://`, `userinfo`, `rest`); a URL without a scheme is
/// read as `nats://` (as async-nats reads it). The userinfo ends at the last `@` before the
/// path.
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (scheme, after) = url.split_at(start);
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let at = after[..authority_end].rfind('@')?;
    Some((scheme, &after[..at], &after[at + 1..]))
}

/// `%XX` decoded (userinfo is percent-encoded in a URL; `+` stays `+` there); bytes that
/// do not form UTF-8 become U+FFFD.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The security-relevant part of a `server.cluster` section, borrowed
/// (`ClusterConfig::security`): what [`ClusterSecurity::validate`] and
/// [`ClusterSecurity::check_files`] look at.
#[derive(Clone, Copy)]
pub struct ClusterSecurity<'a> {
    pub nats: &'a [String],
    pub auth: Option<&'a ClusterAuth>,
    pub tls: Option<&'a ClusterTls>,
}

impl ClusterSecurity<'_> {
    /// The structural checks of `auth`, `tls` and the URLs' userinfo (no file is read).
    pub fn validate(self) -> Result<(), ConfigError> {
        let error = |field: &str, message: &str| ConfigError::new(None, field, message);
        let with_userinfo: Vec<&String> = self
            .nats
            .iter()
            .filter(|url| split_userinfo(url).is_some())
            .collect();
        if !with_userinfo.is_empty() && self.auth.is_some() {
            return Err(error(
                "server.cluster.auth",
                "a NATS URL carries credentials (user:password@ or token@) and `auth` is set too: \
                 keep one of them",
            ));
        }
        let credentials: Vec<_> = with_userinfo
            .iter()
            .map(|url| url_credentials(url))
            .collect();
        if credentials.windows(2).any(|pair| pair[0] != pair[1]) {
            return Err(error(
                "server.cluster.nats",
                "the NATS URLs carry different credentials: one node authenticates one way \
                 (or move them to `auth`)",
            ));
        }
        match self.auth {
            Some(ClusterAuth::CredentialsFile(path)) | Some(ClusterAuth::NkeySeedFile(path))
                if path.as_os_str().is_empty() =>
            {
                return Err(error("server.cluster.auth", "the file path is empty"))
            }
            Some(ClusterAuth::Token(token)) if token.is_empty() => {
                return Err(error("server.cluster.auth.token", "must not be empty"))
            }
            Some(ClusterAuth::UserPassword { user, password })
                if user.is_empty() || password.is_empty() =>
            {
                return Err(error(
                    "server.cluster.auth",
                    "`user` and `password` must not be empty",
                ))
            }
            _ => {}
        }
        if let Some(tls) = self.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                return Err(error(
                    "server.cluster.tls",
                    "`certFile` and `keyFile` go together (a client certificate needs its key)",
                ));
            }
        }
        Ok(())
    }

    /// Reads and parses every file `auth` and `tls` name, without connecting: a credentials
    /// file holds a user JWT and a user nkey seed, a seed file a user seed, the CA file
    /// certificates, the client certificate and key match. `check-config` and the broker's
    /// start-up run it; errors name the field and the path, never the content.
    pub fn check_files(self) -> Result<(), ConfigError> {
        match self.auth {
            Some(ClusterAuth::CredentialsFile(path)) => {
                let field = "server.cluster.auth.credentialsFile";
                let text = read_text(field, path)?;
                let problem = credentials_problem(&text).map(|problem| {
                    ConfigError::new(None, field, format!("{}: {problem}", path.display()))
                });
                problem.map_or(Ok(()), Err)?;
            }
            Some(ClusterAuth::NkeySeedFile(path)) => {
                let field = "server.cluster.auth.nkeySeedFile";
                let text = read_text(field, path)?;
                if let Some(problem) = seed_problem(text.trim()) {
                    return Err(ConfigError::new(
                        None,
                        field,
                        format!("{}: {problem}", path.display()),
                    ));
                }
            }
            _ => {}
        }
        if let Some(tls) = self.tls {
            check_tls_files(tls)?;
        }
        Ok(())
    }
}

fn read_bytes(field: &str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| {
        ConfigError::new(
            None,
            field,
            format!("cannot read {}: {error}", path.display()),
        )
    })
}

fn read_text(field: &str, path: &PathBuf) -> Result<String, ConfigError> {
    String::from_utf8(read_bytes(field, path)?)
        .map_err(|_| ConfigError::new(None, field, format!("{}: not UTF-8 text", path.display())))
}

/// What is wrong with a user nkey seed, in words that never quote it; `None` when it is a
/// user seed.
pub fn seed_problem(seed: &str) -> Option<&'static str> {
    match nkeys::KeyPair::from_seed(seed) {
        Err(_) => {
            Some("not an nkey seed (expected one line `SU…`, as `nsc` or `nk -gen user` write it)")
        }
        Ok(pair) if !matches!(pair.key_pair_type(), nkeys::KeyPairType::User) => {
            Some("an nkey seed, but not a user's (`SU…`)")
        }
        Ok(_) => None,
    }
}

/// The decorated blocks of a credentials file, in order: (header line, first content
/// line). The format `nsc` writes (and async-nats reads): `-----BEGIN NATS USER JWT-----`,
/// the JWT, `------END NATS USER JWT------`, then the same around the user seed.
fn decorated_blocks(text: &str) -> Vec<(&str, &str)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.starts_with("---") && line.ends_with("---") && line.contains("BEGIN") {
            if let Some(content) = lines.next() {
                blocks.push((line, content));
            }
        }
    }
    blocks
}

/// What is wrong with a credentials file's text; `None` when it holds a user JWT and a
/// user seed.
pub fn credentials_problem(text: &str) -> Option<&'static str> {
    let blocks = decorated_blocks(text);
    let jwt = blocks.iter().find(|(header, _)| header.contains("JWT"));
    let seed = blocks.iter().find(|(header, _)| header.contains("SEED"));
    let Some((_, jwt)) = jwt else {
        return Some("no `-----BEGIN NATS USER JWT-----` block (not a NATS credentials file)");
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let base64url = |part: &&str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    if parts.len() != 3 || !parts.iter().all(base64url) {
        return Some("the user JWT block does not hold a JWT (three base64url parts)");
    }
    let Some((_, seed)) = seed else {
        return Some("no `-----BEGIN USER NKEY SEED-----` block");
    };
    seed_problem(seed)
}

fn check_tls_files(tls: &ClusterTls) -> Result<(), ConfigError> {
    let certificates = |field: &str, path: &PathBuf| {
        let bytes = read_bytes(field, path)?;
        let invalid =
            |detail: String| ConfigError::new(None, field, format!("{}: {detail}", path.display()));
        let chain = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, pem::Error>>()
            .map_err(|error| invalid(format!("not valid PEM: {error}")))?;
        if chain.is_empty() {
            return Err(invalid("no `BEGIN CERTIFICATE` block".to_string()));
        }
        Ok(chain)
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates("server.cluster.tls.caFile", &tls.ca_file)? {
        roots.add(certificate).map_err(|error| {
            ConfigError::new(
                None,
                "server.cluster.tls.caFile",
                format!(
                    "{}: not a usable CA certificate: {error}",
                    tls.ca_file.display()
                ),
            )
        })?;
    }
    let Some((cert_file, key_file)) = tls.client_certificate() else {
        return Ok(());
    };
    let chain = certificates("server.cluster.tls.certFile", cert_file)?;
    let field = "server.cluster.tls.keyFile";
    let key = PrivateKeyDer::from_pem_slice(&read_bytes(field, key_file)?).map_err(|error| {
        // pem errors describe the structure, never the key's bytes.
        ConfigError::new(
            None,
            field,
            format!(
                "{}: no private key in PEM form: {error}",
                key_file.display()
            ),
        )
    })?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConfigError::new(None, "server.cluster.tls", error.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| {
            ConfigError::new(
                None,
                "server.cluster.tls",
                format!(
                    "{} / {}: {}",
                    cert_file.display(),
                    key_file.display(),
                    match error {
                        rustls::Error::InconsistentKeys(_) =>
                            "the key does not belong to the certificate".to_string(),
                        other => other.to_string(),
                    }
                ),
            )
        })?;
    Ok(())
}

#[cfg(test)]
#[path = "cluster_security_tests.rs"]
mod tests;
