//! `pgkeepd --config PATH`: load pgkeep's configuration (its `[scheduler]` section names the
//! jobs), run the daemon until SIGTERM or SIGINT, and turn the result into an exit code. The
//! only place that exits. `pgkeepd --config PATH restore-test ...` runs one drill now;
//! `pgkeepd --config PATH check` checks the setup end to end.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pgkeep::config::Raw;
use pgkeep::error::{Error, ErrorKind};
use pgkeep_scheduler::clock::Clock;
use pgkeep_scheduler::{daemon, restore_test};

#[derive(Debug, Parser)]
#[command(name = "pgkeepd", version, about = "pgkeep's scheduled backup daemon")]
struct Cli {
    /// Configuration file (TOML, with a [scheduler] section). Default: $PGKEEP_CONFIG, else
    /// /etc/pgkeep/pgkeep.toml.
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check the whole configuration end to end, as `pgkeep check` does, plus the restore
    /// drills' container sandbox (engine reachable, image present). Exit 3 on any failure.
    Check(pgkeep::cli::CheckFlags),
    /// Run one restore drill now: restore a backup into a throwaway sandbox, recover, check,
    /// report (stored in the repository) and clean up. Exits 0 when it passed, 10 when a check
    /// failed (the backup or its WAL is damaged), else the usual codes of setup errors.
    RestoreTest {
        /// A backup id, or latest, untested, random (default: restore_test.select).
        #[arg(long, value_name = "ID")]
        backup: Option<String>,
        /// local or container (default: restore_test.sandbox).
        #[arg(long)]
        sandbox: Option<String>,
        /// immediate or latest (default: restore_test.target).
        #[arg(long)]
        target: Option<String>,
        /// Print the report as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
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
                // Colours only on a terminal: container and journal logs get plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_target(false)
                .try_init();
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = tokio::runtime::Runtime::new().map_err(|e| {
                Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}"))
            })?;
            match cli.command {
                None => rt.block_on(daemon::run(cfg, Clock::System, terminated())),
                Some(Command::Check(flags)) => {
                    let (args, json) = (flags.args()?, flags.json);
                    let report = rt.block_on(pgkeep_scheduler::check::run(&cfg, args));
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string(&report).map_err(|e| Error::new(
                                ErrorKind::Internal,
                                format!("cannot show json: {e}")
                            ))?
                        );
                    } else {
                        print!("{report}");
                    }
                    report.verdict()
                }
                Some(Command::RestoreTest {
                    backup,
                    sandbox,
                    target,
                    json,
                }) => rt.block_on(restore_test::once(
                    cfg,
                    restore_test::Options {
                        backup,
                        sandbox,
                        target,
                        json,
                    },
                    terminated(),
                )),
            }
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
