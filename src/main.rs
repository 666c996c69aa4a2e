//! The `ringcast` binary: CLI, configuration loading, logging, signals → `runtime::start`.
//! The other subcommands live in `cli/` (tokens, keys and `init`, the development app and
//! its banner, the `subscribe` / `publish` debug client).

mod cli;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use cli::client::{PublishArgs, SubscribeArgs};
use cli::keys::{InitArgs, KeysArgs};
use cli::token::TokenArgs;
use ringcast::config::{IoDriverChoice, LogFormat};
use ringcast::runtime::{self, StartError};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Debug client: subscribe to topics and print every frame as it arrives.
    Subscribe(SubscribeArgs),
    /// Debug client: publish one message (WebSocket, or --http for the HTTP API).
    Publish(PublishArgs),
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
    // The same argv[0], so that printed hints (`cli::hint`) name the command as it was typed.
    let mut arguments = std::env::args_os();
    let argument0 = arguments
        .next()
        .unwrap_or_else(|| executable.clone().into());
    let error = std::process::Command::new(executable)
        .arg0(argument0)
        .args(arguments)
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
        Some(Command::Token(args)) => cli::token::token(&args),
        Some(Command::Keys(args)) => cli::keys::keys(&args),
        Some(Command::Init(args)) => cli::keys::init(&args),
        Some(Command::Subscribe(args)) => cli::client::subscribe(&args),
        Some(Command::Publish(args)) => cli::client::publish(&args),
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

/// Logs go to stderr, filtered by `RUST_LOG` (default `info,async_nats=off`: the bus logs
/// what its NATS client reports — connected, lost, refused once per attempt series —,
/// whereas async-nats itself logs an error line per failed attempt, and at `debug` the
/// server URLs with any `user:password@` in them); `json` writes one JSON
/// object per line (timestamp, level, target, message and fields). Nothing logged carries
/// a token, a key or a query string.
///
/// Lines are handed to a writer thread through a queue of [`LOG_QUEUE_LINES`] lines, so a
/// worker never blocks on a slow stderr; when the queue is full, lines are dropped (and
/// the writer reports how many) rather than stalling connections. The returned guard
/// flushes the queue when dropped.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
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

/// The log filter without `RUST_LOG` (see [`init_logging`]).
const DEFAULT_LOG_FILTER: &str = "info,async_nats=off";

/// Log lines queued for the log writer thread before further lines are dropped.
const LOG_QUEUE_LINES: usize = 64 * 1024;

fn check_config(path: &str) -> anyhow::Result<()> {
    let config = cli::load_config(path)?;
    if let Some(warning) = cli::config_warning(&config) {
        eprintln!("ringcast: warning: {path}: {warning}");
    }
    println!("{path}: valid ({} apps)", config.apps.len());
    Ok(())
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let development = args.config.is_none();
    let mut config = match &args.config {
        Some(path) => cli::load_config(path)?,
        None => cli::development::development_config(),
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
    // Handlers in place before the `ringcast listening` line: whoever waits for that line
    // (a supervisor, the tests reading the bound port) may signal at once.
    let signals = {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).ok()
    };
    tracing::info!(
        address = %handle.local_address,
        workers = handle.workers,
        io_driver = handle.io_driver,
        apps = config.apps.len(),
        tls = config.server.tls.is_some(),
        "ringcast listening"
    );
    if let Some(warning) = cli::config_warning(&config) {
        tracing::warn!("{warning}");
    }
    if let Some(plain) = handle.plain_address {
        tracing::info!(address = %plain, "plain listener beside TLS (server.tls.plainListen)");
    }
    if development {
        cli::development::print_banner(&config, handle.local_address)?;
    }
    let trigger = handle.shutdown_trigger();
    let reload = handle.reload_trigger();
    std::thread::Builder::new()
        .name("ringcast-signals".into())
        .spawn(move || {
            use signal_hook::consts::SIGHUP;
            let Some(mut signals) = signals else {
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
