//! `pgkeep`: parse the command line, load the configuration, run one command, and turn its
//! result into an exit code. The only place that exits the process.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pgkeep::cli::{self, Cli, Command, TargetArgs};
use pgkeep::command::{
    archive_get, archive_push, backup, bootstrap, create_replica, expire, info, init, pin, restore,
    verify,
};
use pgkeep::config::{Config, Raw};
use pgkeep::error::{Error, ErrorKind, STOP_RECOVERY_BASE};

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
    let err = settle(pgkeep::command::deadline_error(what, deadline));
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
        .with_target(false)
        .compact()
        .try_init();
}

fn expire_table(r: &expire::ExpireReport) -> String {
    let p = &r.plan;
    let mut out = String::new();
    for k in &p.keep {
        out.push_str(&format!("keep   {}  {}\n", k.id, k.why));
    }
    for id in &p.expire {
        out.push_str(&format!("expire {id}\n"));
    }
    for d in &p.damaged {
        out.push_str(&format!(
            "keep   {d}  DAMAGED manifest: its folder and all wal stay; 'pgkeep verify' reports it\n"
        ));
    }
    match p.wal_kept_from {
        Some(from) => out.push_str(&format!(
            "wal: {} file(s) before segment number {from:X} expire; history files stay\n",
            p.wal.len()
        )),
        None if !p.damaged.is_empty() => {
            out.push_str("wal: nothing expires (a backup's manifest is damaged)\n")
        }
        None => out.push_str("wal: nothing expires (no backup kept)\n"),
    }
    if let Some(why) = &r.deferred {
        out.push_str(&format!(
            "deferred: {why} since the plan; the manifests above are removed, their objects and the wal stay until the next expire\n"
        ));
        return out;
    }
    out.push_str(if r.executed {
        "done: manifests first, then their objects, then the wal\n"
    } else {
        "dry run: nothing was changed\n"
    });
    out
}

fn bad_target(e: String) -> Error {
    Error::new(ErrorKind::InvalidInput, e).hint("see 'pgkeep restore --help'")
}

/// `--tablespace-map` by oid; an oid mapped twice is refused.
fn tablespace_map_of(
    pairs: Vec<(u32, std::path::PathBuf)>,
) -> Result<BTreeMap<u32, std::path::PathBuf>, Error> {
    let mut map = BTreeMap::new();
    for (oid, dir) in pairs {
        if map.insert(oid, dir).is_some() {
            return Err(bad_target(format!(
                "--tablespace-map names oid {oid} twice"
            )));
        }
    }
    Ok(map)
}

/// The recovery target the flags name (the end of the archive when none).
fn recovery_target(t: TargetArgs) -> Result<restore::RecoveryTarget, Error> {
    use restore::RecoveryTarget as T;
    Ok(
        match (
            t.target_time,
            t.target_lsn,
            t.target_xid,
            t.target_name,
            t.target,
        ) {
            (Some(time), ..) => {
                let at = restore::target::parse_time(&time).map_err(|e| {
                    Error::new(ErrorKind::InvalidInput, e).hint(restore::target::TIME_HINT)
                })?;
                T::Time(time, at)
            }
            (_, Some(l), ..) => T::Lsn(l.parse().map_err(bad_target)?),
            (_, _, Some(x), ..) => T::Xid(restore::target::parse_xid(&x).map_err(bad_target)?),
            (_, _, _, Some(n), _) => T::Name(restore::target::parse_name(&n).map_err(bad_target)?),
            (_, _, _, _, Some(t)) if t == "immediate" => T::Immediate,
            (_, _, _, _, Some(t)) => {
                return Err(bad_target(format!(
                    "invalid --target '{t}': only 'immediate'"
                )));
            }
            _ => T::Latest,
        },
    )
}

fn run(cfg: &Config, command: Command, vars: &BTreeMap<String, String>) -> Result<(), Error> {
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
                    r.manifest.timeline.0,
                    r.elapsed.as_secs_f64()
                );
            }
            Command::Restore {
                dir,
                backup,
                force,
                delta,
                target,
                target_timeline,
                target_action,
                standby,
                tablespace_map,
            } => {
                let target_action = target_action
                    .map(|a| a.parse())
                    .transpose()
                    .map_err(bad_target)?;
                let args = restore::RestoreArgs {
                    dir,
                    backup: Some(backup),
                    force,
                    delta,
                    target: recovery_target(target)?,
                    target_timeline,
                    target_action,
                    standby,
                    primary_conninfo: None,
                    tablespace_map: tablespace_map_of(tablespace_map)?,
                    replay: Default::default(),
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
            Command::CreateReplica {
                datadir,
                connstring,
                keep_data,
                ..
            } => {
                // Patroni hands the leader's password over in a libpq password file.
                let passfile = vars
                    .get("PGPASSFILE")
                    .and_then(|p| std::fs::read_to_string(p).ok());
                let args = create_replica::CreateReplicaArgs {
                    datadir,
                    connstring,
                    keep_data,
                    passfile,
                };
                let r = create_replica::run(cfg, args).await?;
                println!(
                    "replica created from backup {}: {} files, {:.1} MiB in {:.1} s{}",
                    r.restore.backup,
                    r.restore.files,
                    r.restore.bytes as f64 / 1048576.0,
                    r.restore.elapsed.as_secs_f64(),
                    r.wal_behind
                        .map(|b| format!(", {:.1} MiB of wal to replay", b as f64 / 1048576.0))
                        .unwrap_or_default()
                );
            }
            Command::Bootstrap {
                datadir,
                backup,
                target,
                ..
            } => {
                let args = bootstrap::BootstrapArgs {
                    datadir,
                    backup,
                    target: recovery_target(target)?,
                };
                let r = bootstrap::run(cfg, args).await?;
                println!(
                    "clone bootstrapped from backup {}: {} files, {:.1} MiB in {:.1} s; recovery promotes at the target",
                    r.backup,
                    r.files,
                    r.bytes as f64 / 1048576.0,
                    r.elapsed.as_secs_f64()
                );
            }
            Command::Expire { dry_run, json } => {
                let r = expire::run(cfg, expire::ExpireArgs { dry_run }).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"plan": r.plan, "executed": r.executed, "objects": r.objects, "deferred": r.deferred})
                    );
                } else {
                    print!("{}", expire_table(&r));
                }
            }
            Command::Verify {
                backup,
                wal_names_only,
                json,
            } => {
                let args = verify::VerifyArgs {
                    backup,
                    wal_names_only,
                };
                let r = verify::run(cfg, args).await?;
                if json {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                } else {
                    print!("{}", r.table());
                }
                if r.problems() > 0 {
                    return Err(Error::new(
                        ErrorKind::Corrupt,
                        format!("verify found {} problem(s) in {}", r.problems(), r.repository),
                    )
                    .hint("each line above names a damaged object; restore from a backup verify passes, and take a new full backup once the damage is understood"));
                }
            }
            Command::Pin { id } => {
                pin::pin(cfg, &id).await?;
                println!("pinned backup {id}: expire keeps it and what it is built on");
            }
            Command::Unpin { id } => {
                pin::unpin(cfg, &id).await?;
                println!("unpinned backup {id}");
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
    });
    // Blocking work left behind by a deadline must not hold the process: what it wrote is
    // crash-safe, and the command has already failed.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}
