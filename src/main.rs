//! The `gatehouse` command: `serve` and `check`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use gatehouse::app::{self, StartError};
use gatehouse::config::{Config, LogFormat};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: gatehouse::alloc::Allocator = gatehouse::alloc::Allocator;

/// Exit status for an invalid configuration (EX_USAGE, as linkerd does).
const EXIT_BAD_CONFIG: u8 = 64;
/// Exit status when a listener cannot be bound (EX_UNAVAILABLE).
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "An API gateway: TLS, routing and upstream proxying, configured by one YAML file.",
    long_about = "An API gateway: terminates TLS, routes requests by host, path and method, and \
                  proxies them to upstream HTTP services with health checks, retries and load \
                  balancing. Everything is declared in one YAML file (routes.yaml).\n\n\
                  Signals while serving: SIGHUP reloads the configuration (it is checked first; \
                  a bad file changes nothing), SIGTERM or SIGINT drains and stops (a second \
                  SIGINT stops at once)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configuration until SIGTERM or SIGINT.
    Serve {
        /// The configuration file.
        #[arg(short, long, env = "GATEHOUSE_CONFIG", default_value = "routes.yaml")]
        config: PathBuf,
        /// Log format; overrides `log.format` in the file.
        #[arg(long, value_enum)]
        log_format: Option<CliLogFormat>,
    },
    /// Check a configuration without serving: print every problem and exit
    /// non-zero if there is one.
    Check {
        /// The configuration file.
        #[arg(short, long, env = "GATEHOUSE_CONFIG", default_value = "routes.yaml")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CliLogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve { config, log_format } => match serve(&config, log_format) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("gatehouse: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // Building the plan reads certificates and CA files, so `check` finds
    // what `serve` would refuse.
    match app::plan(config, None, &Default::default(), None) {
        Ok(plan) => {
            let c = &plan.config;
            println!(
                "{}: OK ({} route{}, {} upstream{}, {} gateway listener{})",
                path.display(),
                c.routes.len(),
                plural(c.routes.len()),
                c.upstreams.len(),
                plural(c.upstreams.len()),
                c.listen.gateway.len(),
                plural(c.listen.gateway.len()),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn serve(path: &std::path::Path, log_format: Option<CliLogFormat>) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
    };
    let format = match log_format {
        Some(CliLogFormat::Json) => LogFormat::Json,
        Some(CliLogFormat::Human) => LogFormat::Human,
        None => config.log.format,
    };
    // RUST_LOG, when set, overrides `log.level`.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .with_context(|| format!("bad log.level `{}`", config.log.level))?;
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stdout());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Json => subscriber.json().flatten_event(true).init(),
        LogFormat::Human => subscriber.init(),
    }

    // The control plane (signals, reloads, admin, health checks). Requests
    // are served by the data-plane workers `app::start` spawns, one per core.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(path, config))
}

async fn run(path: &std::path::Path, config: Config) -> anyhow::Result<ExitCode> {
    let gatehouse = match app::start(config).await {
        Ok(g) => g,
        Err(StartError::Config(e)) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_BAD_CONFIG));
        }
        Err(StartError::Unavailable(e)) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_UNAVAILABLE));
        }
    };
    let c = gatehouse.config();
    for (addr, l) in gatehouse.gateway_addrs.iter().zip(&c.listen.gateway) {
        let scheme = if l.tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, "gateway listening on {scheme}://{addr}");
    }
    if let Some(addr) = gatehouse.aws_addr {
        tracing::info!(%addr, "SQS-compatible API on http://{addr}");
    }
    if let Some(addr) = gatehouse.admin_addr {
        tracing::info!(%addr, "admin listening on http://{addr} (/metrics /healthz /readyz)");
    }
    tracing::info!(config = %path.display(), routes = c.routes.len(), upstreams = c.upstreams.len(), "gatehouse is serving");

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading");
                let reloaded = match Config::load(path) {
                    Ok(c) => gatehouse.reload(c).await,
                    Err(e) => Err(e),
                };
                match reloaded {
                    Ok(()) => tracing::info!("configuration reloaded"),
                    Err(e) => {
                        for line in e.to_string().lines() {
                            tracing::error!("{line}");
                        }
                        tracing::error!("reload refused; the previous configuration stays in force");
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    let drain = gatehouse.config().drain_timeout;
    tracing::info!(?drain, "shutting down: draining in-flight requests");
    tokio::select! {
        drained = gatehouse.shutdown() => {
            if drained {
                tracing::info!("drained; bye");
            } else {
                tracing::warn!("drain deadline reached; closed the remaining connections");
            }
        }
        _ = interrupt.recv() => tracing::warn!("second SIGINT: stopping now"),
    }
    Ok(ExitCode::SUCCESS)
}
