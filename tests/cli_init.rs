//! `ringcast keys` and `ringcast init`: the files they write (0600 private keys, no
//! clobbering without `--force`), a starter config that passes `check-config`, and tokens
//! minted with the generated keys (`ringcast token --key`) that a broker running that
//! config accepts.

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ringcast");

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(hint: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ringcast-init-{hint}-{}", rand_id()));
        TempDir(path)
    }

    fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ringcast(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run ringcast")
}

fn succeed(args: &[&str]) -> String {
    let output = ringcast(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "ringcast {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Mints a token with `ringcast token` for the app in `config_path`.
fn mint(config_path: &Path, app: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "token",
        "--config",
        config_path.to_str().unwrap(),
        "--app",
        app,
    ];
    args.extend_from_slice(extra);
    succeed(&args).trim().to_string()
}

/// Starts an in-process broker on a free port with the apps of `config`.
fn start_from(mut config: Value) -> TestServer {
    config["server"] = json!({"listen": "127.0.0.1:0", "workers": 2, "pinWorkers": false});
    start_with(config)
}

#[test]
fn init_writes_a_config_that_passes_check_config_and_refuses_to_overwrite() {
    let directory = TempDir::new("overwrite");
    let stdout = succeed(&["init", "--dir", directory.arg()]);
    let config_path = directory.join("ringcast.json");
    for name in [
        "ringcast.json",
        "auth-private.pem",
        "auth-public.pem",
        "admin-private.pem",
        "admin-public.pem",
        "client-config.js",
        "client_config.py",
    ] {
        assert!(stdout.contains(name), "{name} not announced: {stdout}");
        assert!(directory.join(name).exists(), "{name} missing");
    }
    assert_eq!(mode(&directory.join("auth-private.pem")), 0o600);
    assert_eq!(mode(&directory.join("admin-private.pem")), 0o600);
    assert_eq!(mode(&directory.join("auth-public.pem")), 0o644);
    let check = succeed(&["check-config", config_path.to_str().unwrap()]);
    assert!(check.contains("valid (1 apps)"), "{check}");

    // The starter app: 32-hex id, ES512 by default, separate keys, inbound on, open lists.
    let config: Value = serde_json::from_str(&read(&config_path)).unwrap();
    let app = &config["apps"][0];
    let app_id = app["appId"].as_str().unwrap();
    assert_eq!(app_id.len(), 32);
    assert!(app_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(app["authKey"]["algorithms"], json!(["ES512"]));
    assert_eq!(app["adminKey"]["algorithms"], json!(["ES512"]));
    assert_ne!(app["authKey"]["key"], app["adminKey"]["key"]);
    assert_eq!(
        app["authKey"]["key"],
        json!(read(&directory.join("auth-public.pem")))
    );
    assert_eq!(app["enableWebSocketInboundTopic"], json!(true));
    assert_eq!(app["clientSourceAddress"], json!(["0.0.0.0/0", "::/0"]));
    assert_eq!(app["adminSourceAddress"], json!(["0.0.0.0/0", "::/0"]));
    assert_eq!(config["server"]["listen"], json!("127.0.0.1:8080"));
    let js = read(&directory.join("client-config.js"));
    assert!(js.contains("/apps/${appId}") && js.contains(app_id));
    assert!(read(&directory.join("client_config.py")).contains(app_id));

    // A second init refuses, naming the files, and changes nothing.
    let before = read(&config_path);
    let private_before = read(&directory.join("auth-private.pem"));
    let output = ringcast(&["init", "--dir", directory.arg(), "--alg", "HS256"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ringcast.json") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(read(&config_path), before);
    assert_eq!(read(&directory.join("auth-private.pem")), private_before);

    // One existing file is enough to refuse, and nothing else gets written.
    let partial = TempDir::new("partial");
    std::fs::create_dir_all(&partial.0).unwrap();
    std::fs::write(partial.join("client_config.py"), "mine").unwrap();
    assert_eq!(
        ringcast(&["init", "--dir", partial.arg()]).status.code(),
        Some(2)
    );
    assert!(!partial.join("ringcast.json").exists());
    assert_eq!(read(&partial.join("client_config.py")), "mine");

    // --force overwrites, and a private file loosened meanwhile is 0600 again.
    std::fs::set_permissions(
        directory.join("auth-private.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    succeed(&[
        "init",
        "--dir",
        directory.arg(),
        "--alg",
        "HS256",
        "--force",
    ]);
    assert_ne!(read(&config_path), before);
    assert_eq!(mode(&config_path), 0o600, "an HS config holds secrets");
    succeed(&["check-config", config_path.to_str().unwrap()]);
    succeed(&[
        "init",
        "--dir",
        directory.arg(),
        "--alg",
        "ES256",
        "--force",
    ]);
    assert_eq!(mode(&directory.join("auth-private.pem")), 0o600);
}

#[test]
fn init_app_accepts_client_and_admin_tokens_minted_with_its_own_keys() {
    let directory = TempDir::new("app");
    succeed(&["init", "--dir", directory.arg(), "--alg", "ES256"]);
    let config_path = directory.join("ringcast.json");
    let config: Value = serde_json::from_str(&read(&config_path)).unwrap();
    let app_id = config["apps"][0]["appId"].as_str().unwrap().to_string();
    let server = start_from(config);

    let auth_key = directory.join("auth-private.pem");
    let admin_key = directory.join("admin-private.pem");
    let client_token = mint(
        &config_path,
        &app_id,
        &["--key", auth_key.to_str().unwrap(), "--sub", "alice"],
    );
    let mut client = connect(&server, &app_id, &client_token);
    assert_eq!(client.welcome["data"]["connection"]["appId"], json!(app_id));
    client.subscribe_confirmed("chat");

    let admin_token = mint(
        &config_path,
        &app_id,
        &["--admin", "--key", admin_key.to_str().unwrap()],
    );
    let path = format!("/api/topics/{app_id}/publish");
    let body = json!({"topic": "chat", "message": "from init"}).to_string();
    assert_eq!(
        http(&server, "POST", &path, Some(&admin_token), &body).0,
        200
    );
    assert_eq!(client.next_non_ack()["data"], "from init");

    // The two keys are separate: each token is refused where the other one belongs.
    assert_eq!(
        http(&server, "POST", &path, Some(&client_token), &body).0,
        401
    );
    assert_eq!(try_connect(&server, &app_id, &admin_token).err(), Some(401));
}

/// `ringcast keys --alg ALG`, then a broker whose app uses the generated public key (or
/// secret) accepts a token minted with the private key (or secret), and refuses one
/// minted with a second, unrelated key of the same algorithm.
fn keys_round_trip(algorithm: &str) {
    let directory = TempDir::new(algorithm);
    let stdout = succeed(&["keys", "--alg", algorithm, "--out", directory.arg()]);
    let stem = algorithm.to_ascii_lowercase();
    let hmac = algorithm.starts_with("HS");
    let (signing, verifying) = if hmac {
        let secret = directory.join(format!("{stem}-secret.txt"));
        (secret.clone(), secret)
    } else {
        (
            directory.join(format!("{stem}-private.pem")),
            directory.join(format!("{stem}-public.pem")),
        )
    };
    assert_eq!(mode(&signing), 0o600, "{algorithm} signing key mode");
    assert!(stdout.contains(signing.to_str().unwrap()), "{stdout}");
    assert!(stdout.contains("\"authKey\""), "{stdout}");
    if !hmac {
        assert_eq!(mode(&verifying), 0o644);
        assert!(read(&signing).starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(read(&verifying).starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(stdout.contains("--key"), "{stdout}");
    }

    // A second key of the same algorithm, for the refusal.
    let other = TempDir::new(&format!("{algorithm}-other"));
    succeed(&["keys", "--alg", algorithm, "--out", other.arg()]);

    let app_id = format!("keys-{stem}");
    let app = |key: &Path| {
        json!({"apps": [{"appId": app_id,
            "authKey": {"source": "raw", "key": read(key), "algorithms": [algorithm]}}]})
    };
    let config = app(&verifying);
    let config_path = directory.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    succeed(&["check-config", config_path.to_str().unwrap()]);
    let server = start_from(config);

    let key_arguments = |path: &Path| -> Vec<String> {
        if hmac {
            Vec::new()
        } else {
            vec!["--key".into(), path.to_str().unwrap().into()]
        }
    };
    let mut extra = key_arguments(&signing);
    extra.extend(["--sub".into(), "alice".into()]);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let token = mint(&config_path, &app_id, &extra);
    let header = token.split('.').next().unwrap();
    assert!(header.len() > 10, "{algorithm}: not a JWS header: {header}");
    let client = connect(&server, &app_id, &token);
    assert_eq!(client.welcome["messageType"], "welcome", "{algorithm}");
    client.close();

    // Minted with the unrelated key: refused before the upgrade.
    let (other_signing, other_verifying) = if hmac {
        let secret = other.join(format!("{stem}-secret.txt"));
        (secret.clone(), secret)
    } else {
        (
            other.join(format!("{stem}-private.pem")),
            other.join(format!("{stem}-public.pem")),
        )
    };
    let other_config = other.join("config.json");
    std::fs::write(&other_config, app(&other_verifying).to_string()).unwrap();
    let extra = key_arguments(&other_signing);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let foreign = mint(&other_config, &app_id, &extra);
    assert_eq!(
        try_connect(&server, &app_id, &foreign).err(),
        Some(401),
        "{algorithm}"
    );
}

#[test]
fn keys_hmac_secrets_mint_accepted_tokens() {
    for algorithm in ["HS256", "HS384", "HS512"] {
        keys_round_trip(algorithm);
    }
}

#[test]
fn keys_rsa_pairs_mint_accepted_tokens() {
    for algorithm in ["RS256", "PS512"] {
        keys_round_trip(algorithm);
    }
}

#[test]
fn keys_ec_pairs_mint_accepted_tokens() {
    for algorithm in ["ES256", "ES384", "ES512"] {
        keys_round_trip(algorithm);
    }
}

#[test]
fn keys_ed25519_pairs_mint_accepted_tokens() {
    keys_round_trip("EdDSA");
}

#[test]
fn keys_refuses_to_overwrite_without_force() {
    let directory = TempDir::new("keys-overwrite");
    succeed(&["keys", "--alg", "EdDSA", "--out", directory.arg()]);
    let private = directory.join("eddsa-private.pem");
    let before = read(&private);
    let output = ringcast(&["keys", "--alg", "EdDSA", "--out", directory.arg()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(read(&private), before);
    succeed(&[
        "keys",
        "--alg",
        "EdDSA",
        "--out",
        directory.arg(),
        "--force",
    ]);
    assert_ne!(read(&private), before);
    assert_eq!(mode(&private), 0o600);
    // An unknown algorithm is a usage error naming the choices.
    let output = ringcast(&["keys", "--alg", "none"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("EdDSA"));
}
