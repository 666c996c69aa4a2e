//! The `ringcast` binary: CLI, configuration loading, logging, signals → `runtime::start`;
//! `keys` and `init` print what `ringcast::starter` wrote and where each file goes.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use ringcast::auth::{mint, Algorithm};
use ringcast::config::{AppConfig, Config, IoDriverChoice, KeyConfig, LogFormat};
use ringcast::runtime::{self, StartError};
use ringcast::starter::{self, StarterFile};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Every permission a development token carries.
const ALL_PERMISSIONS: [&str; 4] = [
    "realtime:publisher:write:topic:*",
    "realtime:subscriber:read:topic:*",
    "realtime:admin:manage:connections",
    "realtime:admin:manage:subscribers",
];

#[derive(Parser)]
#[command(
    name = "ringcast",
    version,
    about = "Self-hosted Realtime Pub/Sub broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (JSON). Without it, a development app is started on 127.0.0.1:8080.
    #[arg(long)]
    config: Option<String>,
    /// Listen address, overriding `server.listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Worker threads, overriding `server.workers` (0 = one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// io driver: auto, uring or legacy (overrides `server.ioDriver`).
    #[arg(long)]
    io_driver: Option<String>,
    /// Log format: text or json (overrides `server.logFormat`). Levels: `RUST_LOG`.
    #[arg(long)]
    log_format: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Mint a token for an app (HS keys from the config; --key PRIVATE.pem otherwise).
    Token(TokenArgs),
    /// Validate a configuration file and exit (0 valid, 2 invalid).
    CheckConfig {
        /// The file to check.
        file: String,
    },
    /// Generate a signing secret (HS*) or key pair (private key signs, public key verifies).
    Keys(KeysArgs),
    /// Write a starter ringcast.json with one app, its key files, and client settings.
    Init(InitArgs),
}

/// Every algorithm name, for help and error texts.
const ALGORITHM_NAMES: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA";

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::parse(name)
        .ok_or_else(|| format!("unknown algorithm (use one of {ALGORITHM_NAMES})"))
}

#[derive(Args)]
struct KeysArgs {
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
struct InitArgs {
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

#[derive(Args)]
struct TokenArgs {
    #[arg(long)]
    config: String,
    /// The app id (not needed with --server-admin).
    #[arg(long, required_unless_present = "server_admin", default_value = "")]
    app: String,
    /// Sign with `server.adminKey` (for `POST /admin/reload`) instead of an app's key.
    #[arg(long, conflicts_with = "admin")]
    server_admin: bool,
    /// Sign for the HTTP API (the app's adminKey) instead of WebSocket clients (authKey).
    #[arg(long)]
    admin: bool,
    /// `sub` claim.
    #[arg(long)]
    sub: Option<String>,
    /// A permission string; repeatable. None given: every permission.
    #[arg(long = "permission")]
    permissions: Vec<String>,
    /// Lifetime: e.g. 3600, 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Private key PEM for RS/PS/ES/EdDSA algorithms.
    #[arg(long)]
    key: Option<String>,
    /// Algorithm (default: the key's first configured algorithm).
    #[arg(long)]
    alg: Option<String>,
    /// `kid` header: the key id in the app's JWKS (`"source": "jwks"` keys).
    #[arg(long)]
    kid: Option<String>,
}

/// The environment variable that turns off mimalloc's eager arena commit.
const ARENA_EAGER_COMMIT_VARIABLE: &str = "MIMALLOC_ARENA_EAGER_COMMIT";

/// mimalloc commits each new arena eagerly, which made the broker's RSS start at 17.4 MB
/// and grow in 4 MiB steps. With `MIMALLOC_ARENA_EAGER_COMMIT=0`, connections are charged
/// what they touch: measured start RSS 7.8 MB, growth in small steps. mimalloc reads the
/// option when the process starts (before `main`), so when it is unset the binary replaces
/// itself once (`exec`, same pid) with it set. An operator may set it (or `=1`) instead.
fn configure_allocator() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(ARENA_EAGER_COMMIT_VARIABLE).is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(executable)
        .args(std::env::args_os().skip(1))
        .env(ARENA_EAGER_COMMIT_VARIABLE, "0")
        .exec();
    // Only reached when exec failed: run on with the default allocator settings.
    eprintln!("ringcast: could not re-exec with {ARENA_EAGER_COMMIT_VARIABLE}=0: {error}");
}

fn main() -> ExitCode {
    configure_allocator();
    abort_on_panic();
    let cli = Cli::parse();
    let _log_guard = cli.command.is_some().then(|| init_logging(LogFormat::Text));
    let result = match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Token(args)) => token(&args),
        Some(Command::Keys(args)) => keys(&args),
        Some(Command::Init(args)) => init(&args),
        None => run(&cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ringcast: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The panic policy (README "Limits and failure behaviour"): a panic in any thread of the
/// broker — a worker, the bus, the control or the JWKS thread — aborts the whole process at
/// once, after the panic message reaches stderr. A process with one part dead would limp on
/// half alive (its connections unserved, its peers' queues for it growing), so it exits
/// non-zero (SIGABRT) and its supervisor (systemd `Restart=on-failure`, Kubernetes)
/// restarts it. Clients see their TCP connection end without a WebSocket close frame
/// (no 1001) and reconnect as after any network failure.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!(
            "ringcast: a thread panicked; aborting the process so that its supervisor restarts it"
        );
        std::process::abort();
    }));
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`); `json` writes one JSON
/// object per line (timestamp, level, target, message and fields). Nothing logged carries
/// a token, a key or a query string.
///
/// Lines are handed to a writer thread through a queue of [`LOG_QUEUE_LINES`] lines, so a
/// worker never blocks on a slow stderr; when the queue is full, lines are dropped (and
/// the writer reports how many) rather than stalling connections. The returned guard
/// flushes the queue when dropped.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("ringcast-log")
        .finish(std::io::stderr());
    // Colour codes only on a terminal: a log file or a log shipper gets plain text.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    guard
}

/// Log lines queued for the log writer thread before further lines are dropped.
const LOG_QUEUE_LINES: usize = 64 * 1024;

fn load(path: &str) -> anyhow::Result<Config> {
    let config =
        Config::load(Path::new(path)).with_context(|| format!("invalid configuration {path}"))?;
    ringcast::broker::apps::Registry::compile(&config)
        .with_context(|| format!("invalid configuration {path}"))?;
    if let Some(tls) = &config.server.tls {
        ringcast::tls::server_config(tls)
            .with_context(|| format!("invalid configuration {path}"))?;
    }
    Ok(config)
}

fn check_config(path: &str) -> anyhow::Result<()> {
    let config = load(path)?;
    println!("{path}: valid ({} apps)", config.apps.len());
    Ok(())
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse_ttl(text: &str) -> anyhow::Result<u64> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(position) => text.split_at(position),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("invalid --ttl `{text}`"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("invalid --ttl unit in `{text}` (use s, m, h or d)"),
    };
    Ok(value * factor)
}

fn mint_token(
    key: &KeyConfig,
    private_key: Option<&str>,
    algorithm: Option<&str>,
    subject: Option<&str>,
    permissions: &[String],
    ttl_seconds: u64,
    key_id: Option<&str>,
) -> anyhow::Result<String> {
    let name = algorithm
        .or_else(|| key.algorithms.first().map(String::as_str))
        .context("the key lists no algorithm")?;
    let algorithm = Algorithm::parse(name).with_context(|| format!("unknown algorithm {name}"))?;
    let secret = if algorithm.is_hmac() {
        key.key.clone()
    } else {
        let path = private_key.with_context(|| {
            format!("{name} tokens need --key PRIVATE.pem (the config holds only the public key)")
        })?;
        std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
    };
    let now = now_seconds();
    let mut claims = serde_json::json!({
        "iat": now,
        "exp": now + ttl_seconds,
        "permissions": permissions,
    });
    if let Some(subject) = subject {
        claims["sub"] = subject.into();
    }
    if let Some(issuer) = key.issuer.first() {
        claims["iss"] = issuer.clone().into();
    }
    if let Some(audience) = &key.audience {
        if let Some(first) = audience.to_vec().first() {
            claims["aud"] = first.clone().into();
        }
    }
    mint::sign_with_key_id(algorithm, &secret, &claims, key_id).context("cannot sign the token")
}

fn token(args: &TokenArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let key = if args.server_admin {
        config
            .server
            .admin_key
            .as_ref()
            .with_context(|| format!("no server.adminKey in {}", args.config))?
    } else {
        let app: &AppConfig = config
            .apps
            .iter()
            .find(|app| app.app_id == args.app)
            .with_context(|| format!("no app `{}` in {}", args.app, args.config))?;
        if args.admin {
            app.admin_key.as_ref().context("this app has no adminKey")?
        } else {
            &app.auth_key
        }
    };
    let permissions: Vec<String> = if args.permissions.is_empty() {
        ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect()
    } else {
        args.permissions.clone()
    };
    let token = mint_token(
        key,
        args.key.as_deref(),
        args.alg.as_deref(),
        args.sub.as_deref(),
        &permissions,
        parse_ttl(&args.ttl)?,
        args.kid.as_deref(),
    )?;
    println!("{token}");
    Ok(())
}

/// A config with one development app keyed by a fresh HS256 secret.
fn development_config() -> Config {
    let secret = mint::random_hs_secret();
    let app_id = format!("{:032x}", rand_u128());
    let key = KeyConfig {
        source: "raw".into(),
        key: secret,
        algorithms: vec!["HS256".into()],
        issuer: Vec::new(),
        audience: None,
    };
    let app = format!(
        r#"{{"appId":"{app_id}","name":"Development app","authKey":{{"source":"raw","key":"x","algorithms":["HS256"]}},"enableWebSocketInboundTopic":true}}"#
    );
    let mut config = Config::from_json(&format!(r#"{{"apps":[{app}]}}"#))
        .expect("the built-in development config is valid");
    config.apps[0].auth_key = key.clone();
    config.apps[0].admin_key = Some(key);
    config
}

fn rand_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut value = 0u128;
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(now_seconds() as u128);
        value = (value << 64) | hasher.finish() as u128;
    }
    value
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let development = args.config.is_none();
    let mut config = match &args.config {
        Some(path) => load(path)?,
        None => development_config(),
    };
    if let Some(listen) = &args.listen {
        config.server.listen = listen.clone();
    }
    if let Some(workers) = args.workers {
        config.server.workers = workers;
    }
    if let Some(driver) = &args.io_driver {
        config.server.io_driver = match driver.as_str() {
            "auto" => IoDriverChoice::Auto,
            "uring" | "io_uring" => IoDriverChoice::Uring,
            "legacy" | "epoll" => IoDriverChoice::Legacy,
            other => bail!("unknown --io-driver `{other}` (auto, uring, legacy)"),
        };
    }
    if let Some(format) = &args.log_format {
        config.server.log_format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("unknown --log-format `{other}` (text, json)"),
        };
    }
    let _log_guard = init_logging(config.server.log_format);
    let handle = match runtime::start(&config) {
        Ok(handle) => handle,
        Err(StartError::Config(error)) => return Err(error.into()),
        Err(error) => return Err(error.into()),
    };
    tracing::info!(
        address = %handle.local_address,
        workers = handle.workers,
        io_driver = handle.io_driver,
        apps = config.apps.len(),
        tls = config.server.tls.is_some(),
        "ringcast listening"
    );
    if let Some(plain) = handle.plain_address {
        tracing::info!(address = %plain, "plain listener beside TLS (server.tls.plainListen)");
    }
    if development {
        print_development_help(&config, &handle.local_address.to_string())?;
    }
    let trigger = handle.shutdown_trigger();
    let reload = handle.reload_trigger();
    std::thread::Builder::new()
        .name("ringcast-signals".into())
        .spawn(move || {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            else {
                return;
            };
            let mut received = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    tracing::info!("SIGHUP: reloading the configuration");
                    reload();
                    continue;
                }
                received += 1;
                if received > 1 {
                    eprintln!("ringcast: second signal, exiting now");
                    std::process::exit(1);
                }
                tracing::info!(signal, "shutting down: closing connections with 1001");
                trigger();
            }
        })
        .context("cannot start the signal thread")?;
    handle.wait();
    tracing::info!("ringcast stopped");
    Ok(())
}

fn print_development_help(config: &Config, address: &str) -> anyhow::Result<()> {
    let app = &config.apps[0];
    let all: Vec<String> = ALL_PERMISSIONS.iter().map(|p| p.to_string()).collect();
    let client = mint_token(
        &app.auth_key,
        None,
        None,
        Some("developer"),
        &all,
        3600,
        None,
    )?;
    let admin = mint_token(&app.auth_key, None, None, Some("admin"), &all, 3600, None)?;
    let id = &app.app_id;
    println!(
        "\nringcast development app (HS256 key generated for this run; tokens valid 1 h)\n\
         app id:       {id}\n\
         client token: {client}\n\
         admin token:  {admin}\n\n\
         subscribe:    websocat 'ws://{address}/apps/{id}?access_token={client}'\n\
         \x20             then type: {{\"type\":\"subscribe\",\"data\":{{\"topic\":\"chat\"}}}}\n\
         publish:      curl -X POST http://{address}/api/topics/{id}/publish \\\n\
         \x20               -H 'Authorization: Bearer {admin}' -H 'Content-Type: application/json' \\\n\
         \x20               -d '{{\"topic\":\"chat\",\"messageType\":\"text\",\"message\":\"hello\"}}'\n"
    );
    Ok(())
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

fn keys(args: &KeysArgs) -> anyhow::Result<()> {
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
    if args.alg.is_hmac() {
        println!(
            "Sign tokens with the same secret: `ringcast token --config FILE --app ID` reads it \
             from the config."
        );
    } else {
        println!(
            "Sign tokens with the private key: `ringcast token --config FILE --app ID --key {}`.",
            paths[0].display()
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

fn init(args: &InitArgs) -> anyhow::Result<()> {
    let starter = starter::init(args.alg)?;
    let paths = starter::write_files(&args.dir, &starter.files, args.force)?;
    let directory = args.dir.display();
    let config = args.dir.join(starter::CONFIG_FILE);
    println!(
        "ringcast init: app {} ({} keys) in {directory}",
        starter.app_id, starter.algorithm
    );
    print_files(&paths, &starter.files);
    let key_argument = |name: &str| {
        if args.alg.is_hmac() {
            String::new()
        } else {
            format!(" --key {}", Path::new(&args.dir).join(name).display())
        }
    };
    let config = config.display();
    let app = &starter.app_id;
    println!(
        "\nNext:\n  \
         ringcast --config {config}\n  \
         ringcast token --config {config} --app {app}{} --sub alice\n  \
         ringcast token --config {config} --app {app} --admin{}\n\
         The broker listens on ws://{listen}/apps/{app}; client-config.js and client_config.py \
         mint tokens in code.",
        key_argument("auth-private.pem"),
        key_argument("admin-private.pem"),
        listen = ringcast::config::DEFAULT_LISTEN,
    );
    Ok(())
}
