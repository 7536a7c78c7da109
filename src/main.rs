//! `pgkeep`: parse the command line, load the configuration, run one command, and turn its
//! result into an exit code. The only place that exits the process.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pgkeep::cli::{self, Cli, Command, Invocation, Output};
use pgkeep::command::{
    archive_get, archive_push, backup, bootstrap, check, create_replica, expire, info, init, key,
    pin, restore, verify,
};
use pgkeep::config::{Config, Raw};
use pgkeep::error::{Error, ErrorKind, STOP_RECOVERY_BASE};
use serde::Serialize;

fn main() -> ExitCode {
    let argv = cli::without_patroni_extras(std::env::args_os().collect());
    let is_get = argv.iter().any(|a| a == "archive-get");
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) if is_get && e.use_stderr() => {
            // A broken restore_command must not read as "end of archive" (clap's exit 2).
            let _ = e.print();
            return ExitCode::from(STOP_RECOVERY_BASE + 2);
        }
        Err(e) => e.exit(),
    };
    // archive-get answers PostgreSQL: every failure, a bad configuration included, is
    // settled into "not found" (exit 1) or "stop recovery" (above 125), never anything else.
    let settle: Box<dyn Fn(Error) -> Error> = match &cli.command {
        Command::ArchiveGet { dest, .. } => {
            let mode = archive_get::RecoveryMode::of(dest);
            Box::new(move |e| archive_get::settle(e, mode))
        }
        _ => Box::new(|e| e),
    };
    let result = pgkeep::config::environment().and_then(|vars| {
        Raw::load(cli.config.as_deref(), &vars)
            .and_then(Raw::resolve)
            .and_then(|cfg| {
                init_logging(&cfg, &vars);
                watchdog(&cfg, &cli.command, &settle);
                run(&cfg, cli.command, &vars)
            })
    });
    match result.map_err(settle) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.report("pgkeep"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// The archive commands' deadline also bounds what no future can interrupt: a read or write
/// blocked in a hung file system (NFS, a FUSE mount). Past the deadline and a short grace,
/// the process reports and exits from this thread, so PostgreSQL never waits on us forever.
fn watchdog(cfg: &Config, command: &Command, settle: &dyn Fn(Error) -> Error) {
    let what = match command {
        Command::ArchivePush { .. } => "archive-push",
        Command::ArchiveGet { .. } => "archive-get",
        _ => return,
    };
    let deadline = cfg.archive.timeout;
    let err = settle(pgkeep::command::deadline_error(
        what,
        deadline,
        Some("archive.timeout"),
    ));
    let (report, code) = (err.report("pgkeep"), err.exit_code());
    std::thread::spawn(move || {
        std::thread::sleep(deadline + WATCHDOG_GRACE);
        eprintln!("{report} (blocked in local i/o)");
        std::process::exit(i32::from(code));
    });
}

/// How long past its deadline an archive command may take to wind down by itself.
const WATCHDOG_GRACE: Duration = Duration::from_secs(2);

fn init_logging(cfg: &Config, vars: &BTreeMap<String, String>) {
    let filter = vars
        .get("PGKEEP_LOG")
        .cloned()
        .unwrap_or_else(|| format!("pgkeep={}", cfg.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: PostgreSQL's log (archive_command) and container logs
        // get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .compact()
        .try_init();
}

/// Runs one command and shows its report.
fn run(cfg: &Config, command: Command, vars: &BTreeMap<String, String>) -> Result<(), Error> {
    let invocation = command.into_invocation(vars)?;
    // TLS through ring: aws-lc seeds its random generator from CPU jitter on first use, which
    // costs ~40 ms per process, paid by every archive-push on an https store. `Err` only means
    // a provider was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}")))?;
    let result = rt.block_on(async {
        match invocation {
            Invocation::Init(a) => print(init::run(cfg, a).await?),
            Invocation::ArchivePush(a) => log(archive_push::run(cfg, a).await?),
            Invocation::ArchiveGet(a) => log(archive_get::run(cfg, a).await?),
            Invocation::Backup(a) => print(warned(backup::run(cfg, a).await?)),
            Invocation::Restore(a) => print(restore::run(cfg, a).await?),
            Invocation::CreateReplica(a) => print(create_replica::run(cfg, a).await?),
            Invocation::Bootstrap(a) => print(bootstrap::run(cfg, a).await?),
            Invocation::Expire(a, out) => show(&expire::run(cfg, a).await?, out).map(drop),
            Invocation::Verify(a, out) => show(&verify::run(cfg, a).await?, out)?.verdict(),
            Invocation::Pin(a) => print(pin::run(cfg, a).await?),
            Invocation::Key(a, out) => show(&key::run(cfg, a).await?, out).map(drop),
            Invocation::Info(out) => show(&info::run(cfg).await?, out).map(drop),
            Invocation::Check(a, out) => show(&check::run(cfg, a).await, out)?.verdict(),
        }
    });
    // Blocking work left behind by a deadline must not hold the process: what it wrote is
    // crash-safe, and the command has already failed.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Prints a report as it renders itself.
fn print(report: impl Display) -> Result<(), Error> {
    print!("{report}");
    Ok(())
}

/// Prints a report as text or as JSON.
fn show<R: Display + Serialize>(report: &R, out: Output) -> Result<&R, Error> {
    match out {
        Output::Text => print!("{report}"),
        Output::Json => println!(
            "{}",
            serde_json::to_string(report)
                .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot show json: {e}")))?
        ),
    }
    Ok(report)
}

/// Logs the report of an archive command: its stdout and exit code are PostgreSQL's.
fn log(report: impl Display) -> Result<(), Error> {
    tracing::info!("{report}");
    Ok(())
}

/// A backup that succeeded with damaged pages says so on stderr first.
fn warned(report: backup::BackupReport) -> backup::BackupReport {
    if let Some(warning) = report.warning() {
        eprintln!("pgkeep: warning: {warning}");
    }
    report
}
