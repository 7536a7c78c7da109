//! `pgkeepd --config PATH`: load pgkeep's configuration (its `[scheduler]` section names the
//! jobs), run the daemon until SIGTERM or SIGINT, and turn the result into an exit code. The
//! only place that exits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pgkeep::config::Raw;
use pgkeep::error::{Error, ErrorKind};
use pgkeep_scheduler::clock::Clock;
use pgkeep_scheduler::daemon;

#[derive(Debug, Parser)]
#[command(name = "pgkeepd", version, about = "pgkeep's scheduled backup daemon")]
struct Cli {
    /// Configuration file (TOML, with a [scheduler] section). Default: $PGKEEP_CONFIG, else
    /// /etc/pgkeep/pgkeep.toml.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let vars = match pgkeep::config::environment() {
        Ok(vars) => vars,
        Err(e) => {
            eprintln!("{}", e.report("pgkeepd"));
            return ExitCode::from(e.exit_code());
        }
    };
    let result = Raw::load(cli.config.as_deref(), &vars)
        .and_then(Raw::resolve)
        .and_then(|cfg| {
            let filter = vars
                .get("PGKEEP_LOG")
                .cloned()
                .unwrap_or_else(|| format!("pgkeep={0},pgkeep_scheduler={0}", cfg.log_level));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .with_target(false)
                .try_init();
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = tokio::runtime::Runtime::new().map_err(|e| {
                Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}"))
            })?;
            rt.block_on(daemon::run(cfg, Clock::System, terminated()))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.report("pgkeepd"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// SIGTERM (systemd, Kubernetes) or SIGINT (a terminal).
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
