//! `pgkeep backup`: a full or page-incremental backup taken over PostgreSQL's replication
//! protocol from any member (primary or standby), so pgkeep needs no access to the database
//! host. Phases: connect and check identity, plan (full, or incremental on the newest backup),
//! copy (stream → tar → pages → sha256 + zstd → repository), wait for the WAL that makes it
//! consistent, then commit the manifest — last, create-if-absent. An interrupted backup has no
//! manifest and is never listed or restored.

mod cleanup;
mod copy;
mod copy_error;
#[cfg(test)]
mod copy_tests;
mod demux;
#[cfg(test)]
mod demux_tests;
mod incremental;
#[cfg(test)]
mod incremental_tests;
mod pages;
pub mod plan;
mod progress;
pub mod source;
pub mod summaries;
pub mod wal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SubsecRound;

pub use plan::Requested;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::listing;
use crate::manifest::{BackupId, Manifest};
use crate::pg::PgVersion;
use crate::pg::replication::{ConnParams, ReplConn, ReplError};
use crate::repo::lease::Lease;
use crate::repo::{Created, Repo};

#[derive(Debug, Clone, Default)]
pub struct BackupArgs {
    /// Connection string of the member to read from (default: `backup.source`).
    pub source: Option<String>,
    pub kind: Requested,
}

#[derive(Debug, Clone)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub elapsed: Duration,
    /// Bytes the source sent.
    pub received: u64,
}

impl BackupReport {
    /// What the operator must hear of even when the backup succeeded: pages whose checksum
    /// failed.
    pub fn warning(&self) -> Option<String> {
        let (bad_files, bad_pages) = self.manifest.bad_pages();
        (bad_pages > 0).then(|| format!(
            "{bad_pages} page(s) in {bad_files} file(s) failed their checksum; see 'pgkeep info --json'"
        ))
    }
}

/// The line `pgkeep backup` prints.
impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        let (plain, stored) = m.sizes();
        write!(
            f,
            "{} backup {} committed: {} entries, {:.1} MiB stored as {:.1} MiB, wal {}..{} on timeline {}, {:.1} s",
            match m.kind {
                crate::manifest::BackupKind::Full => "full",
                crate::manifest::BackupKind::Incremental => "incremental",
            },
            m.id,
            m.entries.len(),
            plain as f64 / 1048576.0,
            stored as f64 / 1048576.0,
            m.start_lsn,
            m.stop_lsn,
            m.timeline.0,
            self.elapsed.as_secs_f64()
        )?;
        write!(
            f,
            "; {:.1} MiB read from the source",
            self.received as f64 / 1048576.0
        )?;
        match m.changes {
            Some(c) => writeln!(f, " (changes by {})", c.as_str()),
            None => writeln!(f),
        }
    }
}

pub async fn run(cfg: &Config, args: BackupArgs) -> Result<BackupReport> {
    // One backup at a time per repository: the lease makes every folder without a manifest
    // the leftover of an interrupted run, safe to remove.
    let repo = Repo::open(&cfg.repository).await?;
    let lease = Lease::backup(&repo).await?;
    let result = backup(cfg, args, &repo).await;
    lease.release().await?;
    result
}

async fn backup(cfg: &Config, args: BackupArgs, repo: &Repo) -> Result<BackupReport> {
    let began = Instant::now();

    // Clean up what interrupted backups left.
    cleanup::remove_interrupted(repo).await?;

    // Choose the source (asking Patroni when so configured); refuse a cluster the repository
    // does not serve.
    let source = source::resolve(cfg, args.source).await?;
    let params = ConnParams::parse(&source.conninfo, None).map_err(|e| {
        Error::new(ErrorKind::Config, e).hint(
            "give --source or backup.source as 'host=... port=... user=...' or a postgresql:// URL",
        )
    })?;
    let mut conn = ReplConn::connect(&params).await.map_err(pg_error)?;
    let ident = conn.identify_system().await.map_err(pg_error)?;
    let version =
        PgVersion::new(conn.server_major).map_err(|e| Error::new(ErrorKind::Postgres, e))?;
    repo.info()
        .check_serves(ident.system_id, version, repo.location())?;

    // Plan: a full, or an incremental on the newest backup of this timeline whose chain is
    // readable; a damaged backup is reported and never built on.
    let listing = listing::listing(repo).await?;
    for d in &listing.damaged {
        tracing::warn!(
            backup = d.id,
            "not building on a damaged backup: {}",
            d.error.one_line()
        );
    }
    let taken: Vec<String> = (listing.backups.iter().map(|m| m.id.to_string()))
        .chain(listing.damaged.iter().map(|d| d.id.clone()))
        .collect();
    let existing = listing.backups;
    let plan = plan::plan(args.kind, &existing, ident.timeline, cfg.backup.max_chain);
    if let Some(note) = &plan.note {
        tracing::info!("taking a full backup: {note}");
    }
    let parent = plan.parent.map(|m| Arc::new(pages::Parent::new(m)));
    let (id, start_time) = fresh_id(plan.kind, &taken).await;

    // How an incremental learns what changed: from the server's WAL summaries when it can.
    let mut how = summaries::choose(repo, &mut conn, version, plan.parent).await?;

    // Copy the data directory into the repository.
    let limits = copy::Limits {
        concurrency: cfg.backup.concurrency,
        memory_mib: cfg.backup.memory_mib,
        max_rate_kb: cfg.backup.max_rate_kb,
    };
    let mut copied =
        summaries::copy(repo, &mut conn, &id, parent.clone(), &mut how, limits).await?;
    // The backup is consistent from its stop position on: a recovery target must not be
    // earlier than this moment (to the millisecond), which is what target selection compares.
    let consistent_at = chrono::Utc::now();
    conn.close().await;
    if copied.stop_timeline != copied.timeline {
        // A failover or promotion while copying: the files and the WAL that would make them
        // consistent are on different histories. Fail cleanly, uncommitted.
        return Err(Error::new(
            ErrorKind::Postgres,
            format!(
                "the source changed timeline during the backup (started on {}, ended on {}); the backup was not committed",
                copied.timeline.0, copied.stop_timeline.0
            ),
        )
        .hint("run the backup again: the cluster's new topology is used from the next run"));
    }

    // Wait until the WAL from start to stop is archived: only then is the backup restorable.
    wal::wait_archived(
        repo,
        &source.switch_wal,
        copied.timeline,
        copied.start,
        copied.stop,
        cfg.backup.wal_timeout,
    )
    .await?;

    // PostgreSQL's own manifest, for the next incremental to upload.
    let pg_manifest = match copied.pg_manifest.take() {
        Some(bytes) => Some(summaries::keep(repo, &id, bytes).await?),
        None => None,
    };

    // Commit: the manifest, written last.
    let manifest = Manifest {
        format: Manifest::format_for(&copied.entries),
        id: id.clone(),
        kind: plan.kind,
        parent: parent.as_ref().map(|p| p.id.clone()),
        depth: parent.as_ref().map_or(0, |p| p.depth + 1),
        system_id: ident.system_id,
        pg_version: version,
        timeline: copied.timeline,
        start_lsn: copied.start,
        stop_lsn: copied.stop,
        // As precise as the manifest stores them, so the committed manifest is this one.
        start_time: start_time.trunc_subsecs(0),
        stop_time: consistent_at.trunc_subsecs(3),
        source: match &source.member {
            Some(member) => format!("{member} ({})", describe_source(&params)),
            None => describe_source(&params),
        },
        changes: how.changes,
        changes_note: how.note,
        pg_manifest,
        entries: copied.entries,
    };
    commit(repo, &manifest).await?;
    Ok(BackupReport {
        manifest,
        elapsed: began.elapsed(),
        received: copied.received,
    })
}

/// An id no committed backup has, and the time it stands for. Ids have one-second resolution:
/// a second backup of the same kind within that second would write its objects into the
/// first one's folder — over a committed backup's files — before failing to commit.
async fn fresh_id(
    kind: crate::manifest::BackupKind,
    taken: &[String],
) -> (BackupId, chrono::DateTime<chrono::Utc>) {
    loop {
        let now = chrono::Utc::now();
        let id = BackupId::new(now, kind);
        if !taken.iter().any(|t| t == id.as_str()) {
            return (id, now);
        }
        let rest = 1000 - u64::from(now.timestamp_subsec_millis().min(999));
        tokio::time::sleep(Duration::from_millis(rest)).await;
    }
}

/// Writes the manifest create-if-absent: the moment the backup starts to exist.
async fn commit(repo: &Repo, manifest: &Manifest) -> Result<()> {
    match repo.save_new(&manifest.id, manifest).await? {
        Created::New => Ok(()),
        Created::Existed => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "backup {} already exists in {}",
                manifest.id,
                repo.location()
            ),
        )
        .hint("two backups started in the same second; run it again")),
    }
}

fn describe_source(p: &ConnParams) -> String {
    match &p.host {
        crate::pg::replication::Host::Tcp(h) => format!("{h}:{}", p.port),
        crate::pg::replication::Host::Unix(d) => format!("{}:{}", d.display(), p.port),
    }
}

pub(crate) fn pg_error(e: ReplError) -> Error {
    let hint = match &e {
        ReplError::Auth(_) => {
            "check the user, password and pg_hba.conf (a 'replication' line) of the source"
        }
        ReplError::Connect(..) => {
            "check backup.source / --source, and that the server accepts replication connections"
        }
        _ => "see the source server's log",
    };
    Error::new(ErrorKind::Postgres, e.to_string()).hint(hint)
}
