//! Starter files: what `ringcast keys` and `ringcast init` write.
//!
//! Responsibility: turn generated key material into named files (key files, a starter
//! `ringcast.json`, and the `client-config.js` / `client_config.py` client settings), and
//! write them into a directory without clobbering anything.
//!
//! Must not: touch the broker's runtime, or write a file that exists unless asked to
//! (`force`). It is tooling, never on the request path.
//!
//! Invariants: a file holding a secret or a private key is created with mode 0600 (and set
//! to 0600 when overwritten); without `force`, either every file is written or none is;
//! the generated `ringcast.json` passes `check-config`; key material never appears in an
//! error.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rand::RngCore as _;

use crate::auth::keygen::{self, KeyMaterial, KeygenError};
use crate::auth::Algorithm;
use crate::config::DEFAULT_LISTEN;

/// Mode of files holding secrets or private keys: owner read/write only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the other files (public keys, configs, client settings).
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Name of the starter broker configuration.
pub const CONFIG_FILE: &str = "ringcast.json";
/// Name of the Node client settings module.
pub const JS_CLIENT_FILE: &str = "client-config.js";
/// Name of the Python client settings module.
pub const PYTHON_CLIENT_FILE: &str = "client_config.py";
/// Algorithm of `ringcast init` without `--alg`: the one the hosted service's samples use.
pub const DEFAULT_INIT_ALGORITHM: Algorithm = Algorithm::ES512;
/// Random bytes of a starter app id (printed as 32 lowercase hex characters).
const APP_ID_BYTES: usize = 16;
/// Permissions of a client (WebSocket) token minted by the generated client settings.
const CLIENT_PERMISSIONS: [&str; 2] = [
    "realtime:publisher:write:topic:*",
    "realtime:subscriber:read:topic:*",
];
/// Permissions of an admin (HTTP API) token minted by the generated client settings.
const ADMIN_PERMISSIONS: [&str; 3] = [
    "realtime:publisher:write:topic:*",
    "realtime:admin:manage:connections",
    "realtime:admin:manage:subscribers",
];

/// Why starter files could not be made or written. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum StarterError {
    /// Key generation failed (the random source).
    #[error(transparent)]
    Keygen(#[from] KeygenError),
    /// Files are in the way; pass `--force` to overwrite them.
    #[error("refusing to overwrite {} (pass --force to overwrite)", list(.paths))]
    Exists {
        /// Every file that already exists.
        paths: Vec<PathBuf>,
    },
    /// The directory or a file could not be created or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// One file to write.
#[derive(Clone, PartialEq, Eq)]
pub struct StarterFile {
    /// File name, relative to the target directory.
    pub name: String,
    /// Full contents.
    pub contents: String,
    /// Holds a secret or a private key: written with [`PRIVATE_FILE_MODE`].
    pub private: bool,
    /// One line saying what the file is for and where it goes.
    pub purpose: String,
}

impl std::fmt::Debug for StarterFile {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StarterFile")
            .field("name", &self.name)
            .field("private", &self.private)
            .finish_non_exhaustive()
    }
}

/// The key file(s) for `material`, named `<stem>-secret.txt`, or `<stem>-private.pem` and
/// `<stem>-public.pem`. `role` says what the key verifies (for the purpose lines).
pub fn key_files(material: &KeyMaterial, stem: &str, role: &str) -> Vec<StarterFile> {
    let algorithm = material.algorithm();
    match material {
        KeyMaterial::Secret { secret, .. } => vec![StarterFile {
            name: format!("{stem}-secret.txt"),
            contents: secret.clone(),
            private: true,
            purpose: format!(
                "{algorithm} shared secret (no trailing newline): the {role} \"key\" in the \
                 config, and what tokens are signed with. Keep it secret."
            ),
        }],
        KeyMaterial::Pair {
            private_pem,
            public_pem,
            ..
        } => vec![
            StarterFile {
                name: format!("{stem}-private.pem"),
                contents: private_pem.clone(),
                private: true,
                purpose: format!(
                    "private key (PKCS#8): signs {algorithm} tokens — `ringcast token --key \
                     FILE` or your backend's JWT library. Keep it secret; never in a browser."
                ),
            },
            StarterFile {
                name: format!("{stem}-public.pem"),
                contents: public_pem.clone(),
                private: false,
                purpose: format!(
                    "public key (SPKI): the {role} \"key\" in the config; verifies tokens."
                ),
            },
        ],
    }
}

/// The config snippet for one key, e.g. `"authKey": {"source": "raw", "key": …}`.
pub fn key_snippet(field: &str, material: &KeyMaterial) -> String {
    format!(
        "\"{field}\": {{\"source\": \"raw\", \"key\": {}, \"algorithms\": [\"{}\"]}}",
        json_string(material.config_key()),
        material.algorithm()
    )
}

/// What `ringcast init` writes.
#[derive(Debug)]
pub struct Starter {
    /// The starter app's id (32 lowercase hex characters).
    pub app_id: String,
    /// The algorithm of both of its keys.
    pub algorithm: Algorithm,
    /// Files in writing order: config, key files, client settings.
    pub files: Vec<StarterFile>,
}

/// Makes a starter app with fresh `authKey` and `adminKey` material of `algorithm`.
pub fn init(algorithm: Algorithm) -> Result<Starter, StarterError> {
    let auth = keygen::generate(algorithm)?;
    let admin = keygen::generate(algorithm)?;
    let mut bytes = [0_u8; APP_ID_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let app_id = bytes.iter().fold(String::new(), |mut hex, byte| {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
        hex
    });
    let auth_files = key_files(&auth, "auth", "authKey");
    let admin_files = key_files(&admin, "admin", "adminKey");
    // The signing file of each key: the secret file, or the private key.
    let auth_signing = auth_files[0].name.clone();
    let admin_signing = admin_files[0].name.clone();
    let mut files = vec![StarterFile {
        name: CONFIG_FILE.into(),
        contents: config_json(&app_id, &auth, &admin),
        private: algorithm.is_hmac(),
        purpose: "the broker configuration: one app, inbound topic on, open source lists.".into(),
    }];
    files.extend(auth_files);
    files.extend(admin_files);
    let fill = |template: &str| {
        template
            .replace("{{APP_ID}}", &app_id)
            .replace("{{ALGORITHM}}", algorithm.name())
            .replace("{{LISTEN}}", DEFAULT_LISTEN)
            .replace("{{AUTH_KEY_FILE}}", &auth_signing)
            .replace("{{ADMIN_KEY_FILE}}", &admin_signing)
            .replace("{{CLIENT_PERMISSIONS}}", &json_list(&CLIENT_PERMISSIONS))
            .replace("{{ADMIN_PERMISSIONS}}", &json_list(&ADMIN_PERMISSIONS))
            .replace(
                "{{TOKEN_KEY_ARG}}",
                &token_key_argument(algorithm, &auth_signing),
            )
            .replace(
                "{{ADMIN_TOKEN_KEY_ARG}}",
                &token_key_argument(algorithm, &admin_signing),
            )
    };
    let js_sign = if algorithm == Algorithm::EdDSA {
        JS_SIGN_EDDSA
    } else {
        JS_SIGN_JSONWEBTOKEN
    };
    files.push(StarterFile {
        name: JS_CLIENT_FILE.into(),
        contents: fill(&JS_TEMPLATE.replace("{{SIGN}}", js_sign)),
        private: false,
        purpose: "Node settings: URL, app id, mintToken() (npm jsonwebtoken).".into(),
    });
    files.push(StarterFile {
        name: PYTHON_CLIENT_FILE.into(),
        contents: fill(PYTHON_TEMPLATE),
        private: false,
        purpose: "Python settings: URL, APP_ID, mint_token() (PyJWT).".into(),
    });
    Ok(Starter {
        app_id,
        algorithm,
        files,
    })
}

/// ` --key FILE` for `ringcast token`, or nothing for HS* (the config holds the secret).
fn token_key_argument(algorithm: Algorithm, file: &str) -> String {
    if algorithm.is_hmac() {
        String::new()
    } else {
        format!(" --key {file}")
    }
}

/// Writes `files` into `directory` (created if missing). Without `force`, refuses — before
/// writing anything — when any of them exists. Returns the written paths.
pub fn write_files(
    directory: &Path,
    files: &[StarterFile],
    force: bool,
) -> Result<Vec<PathBuf>, StarterError> {
    let paths: Vec<PathBuf> = files.iter().map(|f| directory.join(&f.name)).collect();
    if !force {
        let existing: Vec<PathBuf> = paths
            .iter()
            .filter(|path| path.symlink_metadata().is_ok())
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(StarterError::Exists { paths: existing });
        }
    }
    std::fs::create_dir_all(directory).map_err(|source| StarterError::Io {
        path: directory.to_path_buf(),
        source,
    })?;
    for (file, path) in files.iter().zip(&paths) {
        write_file(path, file, force).map_err(|source| StarterError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(paths)
}

fn write_file(path: &Path, file: &StarterFile, force: bool) -> std::io::Result<()> {
    let mode = if file.private {
        PRIVATE_FILE_MODE
    } else {
        PUBLIC_FILE_MODE
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        // `create_new` also closes the window between the existence check and the write.
        options.create_new(true);
    }
    let mut handle = options.open(path)?;
    // An overwritten file keeps its old mode through `open`: set it explicitly, before
    // the secret is written.
    handle.set_permissions(std::fs::Permissions::from_mode(mode))?;
    handle.write_all(file.contents.as_bytes())?;
    handle.sync_all()
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn json_list(items: &[&str]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// The starter `ringcast.json`, fields in the order of PROTOCOL §1.
fn config_json(app_id: &str, auth: &KeyMaterial, admin: &KeyMaterial) -> String {
    let anywhere = r#"["0.0.0.0/0", "::/0"]"#;
    format!(
        r#"{{
  "server": {{
    "listen": {listen}
  }},
  "apps": [
    {{
      "appId": "{app_id}",
      "name": "Starter app",
      "description": "Written by `ringcast init`. Narrow the source lists before exposing the broker.",
      {auth},
      {admin},
      "adminSourceAddress": {anywhere},
      "clientSourceAddress": {anywhere},
      "enableWebSocketInboundTopic": true
    }}
  ]
}}
"#,
        listen = json_string(DEFAULT_LISTEN),
        auth = key_snippet("authKey", auth),
        admin = key_snippet("adminKey", admin),
    )
}

/// `client-config.js`; `{{SIGN}}` is the body of `mintToken` after `claims` is built.
const JS_TEMPLATE: &str = r#"// client-config.js — written by `ringcast init` ({{ALGORITHM}}).
// The self-hosted form of the hosted service's "Download config.js": where the broker is,
// which app, and how to mint the tokens it accepts.
//
//   const config = require('./client-config.js')
//   config.url                      ws://…/apps/<appId> (add ?access_token=<token>)
//   config.mintToken({ subject })   a WebSocket client token (signed with {{AUTH_KEY_FILE}})
//   config.mintToken({ admin: true }) an HTTP API token (signed with {{ADMIN_KEY_FILE}})
//
// From a shell, `ringcast token` mints the same tokens:
//   ringcast token --config ringcast.json --app {{APP_ID}}{{TOKEN_KEY_ARG}} --sub alice
//   ringcast token --config ringcast.json --app {{APP_ID}} --admin{{ADMIN_TOKEN_KEY_ARG}}
//
// Mint tokens on a backend: a key file must never reach a browser.
// Set RINGCAST_ADDRESS=host:port to reach a broker elsewhere than {{LISTEN}}.
'use strict'
const fs = require('fs')
const path = require('path')

const address = process.env.RINGCAST_ADDRESS || '{{LISTEN}}'
const appId = '{{APP_ID}}'

const config = {
  appId,
  algorithm: '{{ALGORITHM}}',
  url: `ws://${address}/apps/${appId}`,
  httpUrl: `http://${address}`,
  publishUrl: `http://${address}/api/topics/${appId}/publish`,
  authKeyFile: path.join(__dirname, '{{AUTH_KEY_FILE}}'),
  adminKeyFile: path.join(__dirname, '{{ADMIN_KEY_FILE}}'),
  clientPermissions: {{CLIENT_PERMISSIONS}},
  adminPermissions: {{ADMIN_PERMISSIONS}},
}

/**
 * Mints a token. `admin`: for the HTTP API (adminKey) instead of WebSocket clients (authKey);
 * `subject`: the `sub` claim; `permissions`: defaults above; `expiresInSeconds`: lifetime;
 * `jwt`: the npm `jsonwebtoken` module (default: require('jsonwebtoken')).
 */
function mintToken({ admin = false, subject, permissions, expiresInSeconds = 3600, jwt } = {}) {
  const key = fs.readFileSync(admin ? config.adminKeyFile : config.authKeyFile, 'utf8')
  const claims = {
    permissions: permissions || (admin ? config.adminPermissions : config.clientPermissions),
  }
  if (subject) claims.sub = subject
{{SIGN}}
}

module.exports = { ...config, mintToken }
"#;

/// `mintToken` body for every algorithm npm `jsonwebtoken` 9 implements.
const JS_SIGN_JSONWEBTOKEN: &str = r#"  // npm install jsonwebtoken
  jwt = jwt || require('jsonwebtoken')
  return jwt.sign(claims, key, { algorithm: config.algorithm, expiresIn: expiresInSeconds })"#;

/// `mintToken` body for EdDSA, which npm `jsonwebtoken` 9 lacks: Node's own crypto signs it.
const JS_SIGN_EDDSA: &str = r#"  // npm jsonwebtoken 9 has no EdDSA: Node's crypto signs the JWS directly (`jwt` is unused).
  const crypto = require('crypto')
  const now = Math.floor(Date.now() / 1000)
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url')
  const input = `${encode({ typ: 'JWT', alg: 'EdDSA' })}.${encode({ ...claims, iat: now, exp: now + expiresInSeconds })}`
  const signature = crypto.sign(null, Buffer.from(input), crypto.createPrivateKey(key))
  return `${input}.${signature.toString('base64url')}`"#;

/// `client_config.py`.
const PYTHON_TEMPLATE: &str = r#""""client_config.py — written by `ringcast init` ({{ALGORITHM}}).

Where the broker is, which app, and how to mint the tokens it accepts:

    import client_config
    client_config.URL                        # ws://…/apps/<appId> (add ?access_token=…)
    client_config.mint_token(subject="bob")  # a WebSocket client token ({{AUTH_KEY_FILE}})
    client_config.mint_token(admin=True)     # an HTTP API token ({{ADMIN_KEY_FILE}})

From a shell, `ringcast token` mints the same tokens:
    ringcast token --config ringcast.json --app {{APP_ID}}{{TOKEN_KEY_ARG}} --sub alice
    ringcast token --config ringcast.json --app {{APP_ID}} --admin{{ADMIN_TOKEN_KEY_ARG}}

Mint tokens on a backend: a key file must never reach a browser.
Set RINGCAST_ADDRESS=host:port to reach a broker elsewhere than {{LISTEN}}.
"""
import os
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent

ADDRESS = os.environ.get("RINGCAST_ADDRESS", "{{LISTEN}}")
APP_ID = "{{APP_ID}}"
ALGORITHM = "{{ALGORITHM}}"
URL = f"ws://{ADDRESS}/apps/{APP_ID}"
HTTP_URL = f"http://{ADDRESS}"
PUBLISH_URL = f"{HTTP_URL}/api/topics/{APP_ID}/publish"
AUTH_KEY_FILE = _HERE / "{{AUTH_KEY_FILE}}"
ADMIN_KEY_FILE = _HERE / "{{ADMIN_KEY_FILE}}"
CLIENT_PERMISSIONS = {{CLIENT_PERMISSIONS}}
ADMIN_PERMISSIONS = {{ADMIN_PERMISSIONS}}


def mint_token(admin=False, subject=None, permissions=None, ttl_seconds=3600):
    """A token for WebSocket clients (authKey), or with admin=True for the HTTP API."""
    import jwt  # pip install "PyJWT[crypto]"

    key = (ADMIN_KEY_FILE if admin else AUTH_KEY_FILE).read_text()
    now = int(time.time())
    claims = {
        "iat": now,
        "exp": now + ttl_seconds,
        "permissions": permissions
        if permissions is not None
        else (ADMIN_PERMISSIONS if admin else CLIENT_PERMISSIONS),
    }
    if subject:
        claims["sub"] = subject
    return jwt.encode(claims, key, algorithm=ALGORITHM)
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn init_config_parses_compiles_and_spells_out_the_source_lists() {
        for algorithm in [Algorithm::HS384, Algorithm::ES256, Algorithm::EdDSA] {
            let starter = init(algorithm).unwrap();
            assert_eq!(starter.app_id.len(), 32);
            assert!(starter.app_id.bytes().all(|b| b.is_ascii_hexdigit()));
            let config = Config::from_json(&starter.files[0].contents).unwrap();
            crate::broker::apps::Registry::compile(&config).unwrap();
            let app = &config.apps[0];
            assert_eq!(app.app_id, starter.app_id);
            assert!(app.enable_web_socket_inbound_topic);
            let anywhere = Some(vec!["0.0.0.0/0".to_string(), "::/0".to_string()]);
            assert_eq!(app.client_source_address, anywhere);
            assert_eq!(app.admin_source_address, anywhere);
            let admin = app.admin_key.as_ref().unwrap();
            assert_ne!(admin.key, app.auth_key.key, "separate keys");
            assert_eq!(admin.algorithms, [algorithm.name()]);
        }
    }

    #[test]
    fn templates_are_fully_filled() {
        for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::EdDSA] {
            for file in init(algorithm).unwrap().files {
                assert!(!file.contents.contains("{{"), "{}", file.name);
            }
        }
    }

    #[test]
    fn private_files_are_exactly_the_secrets() {
        let names = |algorithm| -> Vec<(String, bool)> {
            init(algorithm)
                .unwrap()
                .files
                .into_iter()
                .map(|f| (f.name, f.private))
                .collect()
        };
        let pair = names(Algorithm::ES384);
        assert!(pair.contains(&("auth-private.pem".into(), true)));
        assert!(pair.contains(&("admin-public.pem".into(), false)));
        assert!(pair.contains(&(CONFIG_FILE.into(), false)));
        let secret = names(Algorithm::HS512);
        assert!(secret.contains(&("admin-secret.txt".into(), true)));
        assert!(secret.contains(&(CONFIG_FILE.into(), true)));
    }
}
