//! `ringcast keys` and `ringcast init`: write what `ringcast::starter` makes, then print
//! each file with its purpose and the next commands — written the way this binary was
//! started (`hint`), so that they run as printed.

use super::hint;
use clap::Args;
use ringcast::auth::Algorithm;
use ringcast::starter::{self, StarterFile};
use std::path::{Path, PathBuf};

/// Every algorithm name, for help and error texts.
const ALGORITHM_NAMES: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA";

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::parse(name)
        .ok_or_else(|| format!("unknown algorithm (use one of {ALGORITHM_NAMES})"))
}

#[derive(Args)]
pub struct KeysArgs {
    /// Algorithm: HS256|HS384|HS512 (secret), RS*/PS* (RSA 2048), ES256|ES384|ES512 (P-256,
    /// P-384, P-521), EdDSA (Ed25519).
    #[arg(long, value_parser = parse_algorithm)]
    alg: Algorithm,
    /// Directory for the key files (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct InitArgs {
    /// Algorithm of the app's authKey and adminKey (see `ringcast keys --help`).
    #[arg(long, value_parser = parse_algorithm, default_value = "ES512")]
    alg: Algorithm,
    /// Directory to write into (created if missing).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Prints each written file with its mode and what it is for.
fn print_files(paths: &[PathBuf], files: &[StarterFile]) {
    let width = paths
        .iter()
        .map(|path| path.display().to_string().len())
        .max()
        .unwrap_or(0);
    for (path, file) in paths.iter().zip(files) {
        let mode = if file.private { "0600" } else { "0644" };
        println!(
            "  {:width$}  {mode}  {}",
            path.display().to_string(),
            file.purpose
        );
    }
}

pub fn keys(args: &KeysArgs) -> anyhow::Result<()> {
    let material = ringcast::auth::keygen::generate(args.alg)?;
    let stem = args.alg.name().to_ascii_lowercase();
    let files = starter::key_files(&material, &stem, "authKey (or adminKey)");
    let paths = starter::write_files(&args.out, &files, args.force)?;
    println!("ringcast keys: {} {}", args.alg, key_kind(args.alg));
    print_files(&paths, &files);
    println!(
        "\nIn the app's config (authKey verifies WebSocket clients, adminKey the HTTP API):\n  {}",
        starter::key_snippet("authKey", &material)
    );
    let ringcast = hint::command();
    if args.alg.is_hmac() {
        println!(
            "Sign tokens with the same secret: `{ringcast} token --config FILE --app ID` reads \
             it from the config."
        );
    } else {
        println!(
            "Sign tokens with the private key: `{ringcast} token --config FILE --app ID --key {}`.",
            hint::path(&paths[0])
        );
    }
    Ok(())
}

/// What `keys` generates for `algorithm`, in words.
fn key_kind(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "shared secret",
        Algorithm::ES256 => "key pair (ECDSA P-256)",
        Algorithm::ES384 => "key pair (ECDSA P-384)",
        Algorithm::ES512 => "key pair (ECDSA P-521)",
        Algorithm::EdDSA => "key pair (Ed25519)",
        _ => "key pair (RSA 2048)",
    }
}

pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    let starter = starter::init(args.alg)?;
    let paths = starter::write_files(&args.dir, &starter.files, args.force)?;
    let config = args.dir.join(starter::CONFIG_FILE);
    println!(
        "ringcast init: app {} ({} keys) in {}",
        starter.app_id,
        starter.algorithm,
        args.dir.display()
    );
    print_files(&paths, &starter.files);
    let key_argument = |name: &str| {
        if args.alg.is_hmac() {
            String::new()
        } else {
            format!(" --key {}", hint::path(&Path::new(&args.dir).join(name)))
        }
    };
    let config = hint::path(&config);
    let app = &starter.app_id;
    let ringcast = hint::command();
    println!(
        "\nNext:\n  \
         {ringcast} --config {config}\n  \
         {ringcast} token --config {config} --app {app}{} --sub alice\n  \
         {ringcast} token --config {config} --app {app} --admin{}\n\
         The broker listens on ws://{listen}/apps/{app}; client-config.js and client_config.py \
         mint tokens in code.",
        key_argument("auth-private.pem"),
        key_argument("admin-private.pem"),
        listen = ringcast::config::DEFAULT_LISTEN,
    );
    Ok(())
}
