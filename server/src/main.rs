//! The `ringcast` binary: parse the command line, start the server, reload its TLS pair on
//! SIGHUP, stop it gracefully on SIGINT/SIGTERM.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use ringcast::{Config, ConfigError, Server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing_subscriber::EnvFilter;

/// Exit code when the server cannot start (bad configuration, io_uring unavailable, bind).
const EXIT_START_FAILED: u8 = 2;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args_os().skip(1)) {
        Ok(config) => config,
        // clap prints --help/--version (exit 0) and argument errors naming the flag (exit 2).
        Err(ConfigError::Parse(err)) => err.exit(),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_START_FAILED);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::from(EXIT_START_FAILED)
        }
    }
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down gracefully. SIGHUP reloads
/// the TLS certificate and key (and does nothing else).
fn run(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install SIGINT/SIGTERM/SIGHUP handlers")?;
    let server = Server::start(config).context("cannot start the server")?;
    let signal = signals.forever().find(|&signal| {
        if signal != SIGHUP {
            return true;
        }
        match server.reload_tls() {
            Some(Ok(())) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
            Some(Err(err)) => {
                tracing::error!("SIGHUP: TLS reload failed, still serving the previous pair: {err}")
            }
            None => tracing::info!("SIGHUP ignored: no --tls-cert to reload"),
        }
        false
    });
    tracing::info!(?signal, "shutting down");
    server.shutdown();
    tracing::info!("stopped");
    Ok(())
}
