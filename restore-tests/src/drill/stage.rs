//! The restore phase: pgkeep's own restore into the sandbox's staging directory (recovery to
//! promote at the target, restore_command copying from the staged WAL), the WAL to replay
//! fetched and checked by archive-get into `wal/`, and the files the sandbox server reads that
//! the backup may lack or must not decide (an empty postgresql.conf when the source kept its
//! configuration elsewhere, pgkeep's own hba file). The sandbox then needs no repository
//! access, no credentials and no network.

use std::path::Path;

use futures::StreamExt;

use pgkeep::command::archive_get::{self, GetArgs};
use pgkeep::command::restore::{
    self, RecoveryTarget, ReplayCommand, RestoreArgs, TargetAction, recovery,
};
use pgkeep::config::{Config, DrillTarget};
use pgkeep::error::{Error, Result};
use pgkeep::manifest::Manifest;
use pgkeep::pg::lsn::Lsn;
use pgkeep::pg::wal::{WalFileName, WalSegmentName};
use pgkeep::repo::Repo;

use crate::sandbox::Sandbox;

/// The hba file pgkeep writes into the sandbox: the unix socket only (its directory is
/// private), trusted. The restored pg_hba.conf is left as it was and not used.
pub const HBA_FILE: &str = "pgkeep_sandbox_hba.conf";

/// What the restore phase produced.
#[derive(Debug, Clone)]
pub struct Staged {
    pub bytes: u64,
    /// WAL segments staged, and the start of the newest.
    pub segments: usize,
    pub newest_segment_start: Option<Lsn>,
}

pub async fn restore(
    cfg: &Config,
    sandbox: &dyn Sandbox,
    manifest: &Manifest,
    target: DrillTarget,
) -> Result<Staged> {
    let data = sandbox.staging().join("data");
    let report = restore::run(
        cfg,
        RestoreArgs {
            dir: data.clone(),
            backup: Some(manifest.id.to_string()),
            force: true,
            delta: false,
            target: match target {
                DrillTarget::Latest => RecoveryTarget::Latest,
                DrillTarget::Immediate => RecoveryTarget::Immediate,
            },
            target_timeline: None,
            target_action: Some(TargetAction::Promote),
            standby: false,
            primary_conninfo: None,
            tablespace_map: Default::default(),
            replay: ReplayCommand::Given(replay_command(sandbox)),
        },
    )
    .await?;
    server_files(&data)?;
    let (segments, newest) =
        stage_wal(cfg, &sandbox.staging().join("wal"), manifest, target).await?;
    Ok(Staged {
        bytes: report.bytes,
        segments,
        newest_segment_start: newest,
    })
}

/// The sandbox's restore_command: a copy from the staged WAL (quoted for sh, `%` doubled for
/// PostgreSQL's placeholders). A missing file is "not available": replay ends there, and the
/// `target` check says whether that was the archive's end.
fn replay_command(sandbox: &dyn Sandbox) -> String {
    format!("cp {}/%f %p", recovery::sh_quote(&sandbox.wal_dir_inside()))
}

/// Fetches the WAL replay needs through archive-get (each file checked against the
/// repository's identity): every history file, and every segment from the backup's start on
/// its timeline or later ones — up to the backup's end for `immediate`.
async fn stage_wal(
    cfg: &Config,
    dir: &Path,
    m: &Manifest,
    target: DrillTarget,
) -> Result<(usize, Option<Lsn>)> {
    let repo = Repo::open(&cfg.repository).await?;
    let seg = repo.info().seg_size;
    let start = WalSegmentName::containing(m.timeline, m.start_lsn, seg);
    let stop = WalSegmentName::containing(m.timeline, m.stop_lsn, seg);
    let mut wanted = Vec::new();
    let mut newest: Option<WalSegmentName> = None;
    for name in repo.wal_file_names().await? {
        let keep = match WalFileName::parse(&name, seg) {
            Ok(WalFileName::History(_)) => true,
            Ok(WalFileName::Segment(s)) => {
                let after = s.tli >= start.tli && s.segno >= start.segno;
                let within = match target {
                    DrillTarget::Latest => true,
                    DrillTarget::Immediate => s.tli == stop.tli && s.segno <= stop.segno,
                };
                if after && within && newest.is_none_or(|n| s.segno > n.segno) {
                    newest = Some(s);
                }
                after && within
            }
            _ => false,
        };
        if keep {
            wanted.push(name);
        }
    }
    // No spool: the drill fetches in parallel itself, and nothing lands beside the data.
    let mut cfg = cfg.clone();
    cfg.archive.spool_path = None;
    cfg.archive.get_prefetch = 0;
    let segments = wanted.iter().filter(|n| !n.ends_with(".history")).count();
    let mut fetches = futures::stream::iter(wanted.into_iter().map(|file| {
        let dest = dir.join(&file);
        let cfg = &cfg;
        async move { archive_get::run(cfg, GetArgs { file, dest }).await }
    }))
    .buffer_unordered(cfg.backup.concurrency.max(1));
    while let Some(r) = fetches.next().await {
        r?;
    }
    Ok((segments, newest.map(|s| s.start_lsn(seg))))
}

/// An empty postgresql.conf when the backup has none (Debian keeps it in /etc), and pgkeep's
/// hba file.
fn server_files(data: &Path) -> Result<()> {
    let conf = data.join("postgresql.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            "# written by a pgkeep restore test: the backup had none\n",
        )
        .map_err(|e| Error::io("write", &conf, e))?;
    }
    let hba = data.join(HBA_FILE);
    std::fs::write(
        &hba,
        "# pgkeep restore test: the private unix socket only\nlocal all all trust\n",
    )
    .map_err(|e| Error::io("write", &hba, e))
}

/// The server settings of a sandbox, as `-c` options (they override both configuration
/// files): pgkeep's defaults, then the operator's `restore_test.settings`, then what no one
/// may change — the sandbox never archives, streams, serves replication, listens on TCP or
/// waits for a synchronous standby, and it promotes when recovery ends.
pub fn settings(
    sandbox: &dyn Sandbox,
    extra: &std::collections::BTreeMap<String, String>,
    target: DrillTarget,
) -> Vec<(String, String)> {
    let mut s: Vec<(String, String)> = [
        ("shared_buffers", "128MB"),
        ("shared_preload_libraries", ""),
        ("max_connections", "20"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    s.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let data = sandbox.data_dir_inside();
    let forced = [
        ("listen_addresses", String::new()),
        ("unix_socket_directories", sandbox.socket_dir_inside()),
        ("port", crate::sandbox::local::PORT.to_string()),
        ("hba_file", format!("{data}/{HBA_FILE}")),
        ("archive_mode", "off".into()),
        ("archive_command", String::new()),
        ("restore_command", replay_command(sandbox)),
        ("primary_conninfo", String::new()),
        ("primary_slot_name", String::new()),
        ("max_wal_senders", "0".into()),
        // Restored subscriptions would connect to their publishers and consume their slots.
        ("max_logical_replication_workers", "0".into()),
        ("recovery_end_command", String::new()),
        ("recovery_min_apply_delay", "0".into()),
        ("synchronous_standby_names", String::new()),
        ("recovery_target_action", "promote".into()),
        // Not a hot standby: no one can read half-recovered data, and the parameter checks
        // against the source's settings (max_connections, ...) do not apply.
        ("hot_standby", "off".into()),
        ("ssl", "off".into()),
        ("logging_collector", "off".into()),
        ("external_pid_file", String::new()),
        ("cluster_name", "pgkeep-restore-test".into()),
    ];
    s.retain(|(k, _)| !forced.iter().any(|(f, _)| f == k));
    s.extend(forced.into_iter().map(|(k, v)| (k.to_string(), v)));
    // To the end of the archive: no target the source's configuration carried (an old
    // point-in-time restore) may stop replay early. For `immediate`, restore's own
    // `recovery_target = 'immediate'` is the one (PostgreSQL refuses a second target loudly).
    if target == DrillTarget::Latest {
        for k in [
            "recovery_target",
            "recovery_target_lsn",
            "recovery_target_time",
            "recovery_target_xid",
            "recovery_target_name",
        ] {
            s.push((k.to_string(), String::new()));
        }
    }
    s
}
