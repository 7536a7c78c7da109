//! `pgkeep`: parse the command line, load the configuration, run one command, and turn its
//! result into an exit code. The only place that exits the process.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use pgkeep::cli::{Cli, Command};
use pgkeep::command::{archive_get, archive_push, backup, info, init, restore};
use pgkeep::config::{Config, Raw};
use pgkeep::error::{Error, ErrorKind};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let vars: BTreeMap<String, String> = std::env::vars().collect();
    let result = Raw::load(cli.config.as_deref(), &vars)
        .and_then(Raw::resolve)
        .and_then(|cfg| {
            init_logging(&cfg, &vars);
            run(&cfg, cli.command)
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgkeep: error[{}]: {}", e.kind().label(), e.one_line());
            if let Some(hint) = e.hint_text() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(e.kind().exit_code())
        }
    }
}

fn init_logging(cfg: &Config, vars: &BTreeMap<String, String>) {
    let filter = vars
        .get("PGKEEP_LOG")
        .cloned()
        .unwrap_or_else(|| format!("pgkeep={}", cfg.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .try_init();
}

fn run(cfg: &Config, command: Command) -> Result<(), Error> {
    // TLS through ring: aws-lc seeds its random generator from CPU jitter on first use, which
    // costs ~40 ms per process, paid by every archive-push on an https store. `Err` only means
    // a provider was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start runtime: {e}")))?;
    rt.block_on(async {
        match command {
            Command::Init { data_dir, conninfo } => {
                let r = init::run(cfg, init::InitArgs { data_dir, conninfo }).await?;
                println!(
                    "{} repository {} for system id {} (postgresql {}, {} MiB segments, create-if-absent {})",
                    if r.existed { "found" } else { "created" },
                    r.location,
                    r.info.system_id,
                    r.info.version,
                    r.info.seg_size.bytes() >> 20,
                    match r.info.create_mode {
                        pgkeep::repo::CreateMode::Enforced => "enforced by the store",
                        pgkeep::repo::CreateMode::Emulated => "emulated (store ignores If-None-Match)",
                    }
                );
            }
            Command::ArchivePush { path } => {
                let r = archive_push::run(cfg, archive_push::PushArgs { path }).await?;
                let p = &r.pushed;
                tracing::info!(
                    "archive-push {} {:?} ({} -> {} bytes) in {} ms, {} pushed ahead",
                    p.file,
                    p.outcome,
                    p.plain_size,
                    p.stored_size,
                    r.elapsed.as_millis(),
                    r.ahead
                );
            }
            Command::Backup { source, kind } => {
                let kind = match kind.as_str() {
                    "incr" => backup::Requested::Incremental,
                    _ => backup::Requested::Full,
                };
                let r = backup::run(cfg, backup::BackupArgs { source, kind }).await?;
                let (plain, stored) = r.manifest.sizes();
                let (bad_files, bad_pages) = r.manifest.bad_pages();
                if bad_pages > 0 {
                    eprintln!(
                        "pgkeep: warning: {bad_pages} page(s) in {bad_files} file(s) failed their checksum; see 'pgkeep info --json'"
                    );
                }
                println!(
                    "{} backup {} committed: {} entries, {:.1} MiB stored as {:.1} MiB, wal {}..{} on timeline {}, {:.1} s",
                    match r.manifest.kind {
                        pgkeep::manifest::BackupKind::Full => "full",
                        pgkeep::manifest::BackupKind::Incremental => "incremental",
                    },
                    r.manifest.id,
                    r.manifest.entries.len(),
                    plain as f64 / 1048576.0,
                    stored as f64 / 1048576.0,
                    r.manifest.start_lsn,
                    r.manifest.stop_lsn,
                    r.manifest.timeline,
                    r.elapsed.as_secs_f64()
                );
            }
            Command::Restore {
                dir,
                backup,
                force,
                delta,
                target_time,
                target_lsn,
                target_xid,
                target_name,
                target,
                target_timeline,
                target_action,
                standby,
            } => {
                let bad = |e: String| {
                    Error::new(ErrorKind::InvalidInput, e).hint("see 'pgkeep restore --help'")
                };
                let target = match (target_time, target_lsn, target_xid, target_name, target) {
                    (Some(t), ..) => {
                        let at = restore::target::parse_time(&t).map_err(bad)?;
                        restore::RecoveryTarget::Time(t, at)
                    }
                    (_, Some(l), ..) => restore::RecoveryTarget::Lsn(l.parse().map_err(bad)?),
                    (_, _, Some(x), ..) => restore::RecoveryTarget::Xid(x),
                    (_, _, _, Some(n), _) => restore::RecoveryTarget::Name(n),
                    (_, _, _, _, Some(t)) if t == "immediate" => restore::RecoveryTarget::Immediate,
                    (_, _, _, _, Some(t)) => {
                        return Err(bad(format!("invalid --target '{t}': only 'immediate'")));
                    }
                    _ => restore::RecoveryTarget::Latest,
                };
                let target_action = target_action.map(|a| a.parse()).transpose().map_err(bad)?;
                let args = restore::RestoreArgs {
                    dir,
                    backup: Some(backup),
                    force,
                    delta,
                    target,
                    target_timeline,
                    target_action,
                    standby,
                };
                let r = restore::run(cfg, args).await?;
                let kept = if delta {
                    format!(" ({} kept as they were, {} removed)", r.kept, r.removed)
                } else {
                    String::new()
                };
                println!(
                    "restored backup {}: {} files, {:.1} MiB{kept} in {:.1} s; start PostgreSQL to replay the archive",
                    r.backup,
                    r.files,
                    r.bytes as f64 / 1048576.0,
                    r.elapsed.as_secs_f64()
                );
            }
            Command::Info { json } => {
                let r = info::run(cfg).await?;
                if json {
                    println!("{}", r.json());
                } else {
                    print!("{}", r.table());
                }
            }
            Command::ArchiveGet { file, dest } => {
                let r = archive_get::run(cfg, archive_get::GetArgs { file, dest }).await?;
                tracing::info!(
                    "archive-get {} from {:?} ({} bytes) in {} ms, {} prefetched",
                    r.file,
                    r.source,
                    r.size,
                    r.elapsed.as_millis(),
                    r.prefetched
                );
            }
        }
        Ok(())
    })
}
