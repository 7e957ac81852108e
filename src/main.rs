//! The `causeway` command: parse the CLI, load the configuration, run the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use causeway::config::Config;

/// causeway: an XMPP gateway to IRC and Matrix. It attaches to an XMPP server (Prosody,
/// ejabberd…) as XEP-0114 external components, one per network domain, and lets the users
/// allowed in [access] take part in IRC channels and Matrix rooms as themselves.
#[derive(Debug, Parser)]
#[command(name = "causeway", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The configuration file (TOML). Keys can be overridden from the environment as
    /// CAUSEWAY_<SECTION>__<KEY>, e.g. CAUSEWAY_IRC__SECRET.
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default when no command is given) until SIGTERM or SIGINT;
    /// SIGHUP reloads the configuration file.
    Run,
    /// Validate the configuration: print every problem with its key, exit non-zero on any.
    CheckConfig,
    /// Write the Matrix appservice registration YAML to `[matrix] registration` (new random
    /// tokens; never over an existing file). List it in the homeserver's
    /// `app_service_config_files`.
    GenerateRegistration,
    /// Run the IRC connection keeper on the Unix socket `[irc] keeper` until SIGTERM or
    /// SIGINT: it holds the puppets' IRC connections, so that the gateway can restart
    /// without dropping them.
    Keeper,
}

/// jemalloc rather than glibc's malloc: a relayed message allocates some fifty times, and
/// glibc spent a quarter of the message's instructions on it (ARCHITECTURE.md, Decisions).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli.config else {
        eprintln!("causeway: --config FILE is required (see config/causeway.example.toml)");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e @ causeway::config::ConfigError::Read { .. }) => {
            eprintln!("causeway: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("causeway: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("{}: configuration is valid", path.display());
            ExitCode::SUCCESS
        }
        Command::Run => run(config),
        Command::GenerateRegistration => generate_registration(&config),
        Command::Keeper => keeper(&config),
    }
}

#[cfg(feature = "matrix")]
fn generate_registration(config: &Config) -> ExitCode {
    let Some(matrix) = &config.matrix else {
        eprintln!("causeway: no [matrix] section: nothing to register");
        return ExitCode::FAILURE;
    };
    match causeway::matrix::generate_registration(matrix) {
        Ok(path) => {
            println!("{}: appservice registration written", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("causeway: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "matrix"))]
fn generate_registration(_: &Config) -> ExitCode {
    eprintln!("causeway: this build has no Matrix support (cargo feature `matrix`)");
    ExitCode::FAILURE
}

#[cfg(feature = "irc")]
fn keeper(config: &Config) -> ExitCode {
    causeway::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("causeway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        match causeway::run_keeper(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("causeway: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(not(feature = "irc"))]
fn keeper(_: &Config) -> ExitCode {
    eprintln!("causeway: this build has no IRC support (cargo feature `irc`)");
    ExitCode::FAILURE
}

fn run(config: Config) -> ExitCode {
    causeway::telemetry::init();
    // One worker thread unless TOKIO_WORKER_THREADS says otherwise. The gateway's work is
    // moving messages between sockets, which one core does at tens of thousands a second;
    // with a worker per core, handing each message between workers cost about 15 % more
    // CPU per message (docs/BENCHMARKS.md). SQLite has a thread of its own, blocking work
    // the blocking pool.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("causeway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        match causeway::start(config, shutdown).await {
            Ok(running) => {
                tokio::spawn(reload_on_sighup(running.reloader.clone()));
                running.finished().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("causeway: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Reload the configuration file on every SIGHUP.
async fn reload_on_sighup(reloader: causeway::reload::Reloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload through the admin command");
        return;
    };
    while hup.recv().await.is_some() {
        if let Err(problem) = reloader.reload() {
            tracing::error!(%problem, "configuration not reloaded");
        }
    }
}

/// Cancel `shutdown` on the first SIGTERM or SIGINT.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop causeway with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutting down");
    shutdown.cancel();
}
