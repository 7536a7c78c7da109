//! `pgkeep expire [--dry-run]`: remove what the retention rules (`[retention]`) no longer keep.
//! Phases: take the backup lease (no backup runs meanwhile, so none builds on what goes), gather
//! the facts, plan (pure, printed), then — unless a dry run — execute: manifests first (newest
//! first: a backup stops existing before anything it needs goes), then their objects, then the
//! WAL no kept backup needs. A crash midway leaves folders without a manifest, which the next
//! backup removes as leftovers: never a listed backup with missing parts. A backup a running
//! restore holds is kept like a pinned one; the holds are read again after the manifests go and
//! before any object does, so a hold taken meanwhile still saves the objects. A damaged
//! manifest is reported and keeps its folder, what it may be built on, and all WAL.

pub mod plan;
mod report;

use chrono::Utc;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;
use crate::manifest::listing;
use crate::pg::{WalFileName, WalSegSize, WalSegmentName};
use crate::repo::hold::{self, HoldRecord};
use crate::repo::lease::Lease;
use crate::repo::{Repo, WalKey};
pub use plan::{BackupFacts, ExpirePlan, RetentionPolicy};

/// Staging files older than this are leftovers of killed writers, never uploads in flight.
const STAGING_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone, Default)]
pub struct ExpireArgs {
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct ExpireReport {
    pub plan: ExpirePlan,
    pub executed: bool,
    /// Backup objects deleted.
    pub objects: usize,
    /// Why the objects and WAL of the plan were left for the next run (a hold taken on an
    /// expired backup after the plan was made).
    pub deferred: Option<String>,
}

pub async fn run(cfg: &Config, args: ExpireArgs) -> Result<ExpireReport> {
    let repo = Repo::open(&cfg.repository).await?;
    let lease = Lease::backup(&repo).await?;
    let result = expire(cfg, &repo, &args).await;
    lease.release().await?;
    result
}

async fn expire(cfg: &Config, repo: &Repo, args: &ExpireArgs) -> Result<ExpireReport> {
    // Gather: committed backups (and damaged ones), pins, holds, WAL files.
    let seg = repo.info().seg_size;
    let pins: Vec<String> = repo
        .pinned()
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    let holds = hold::live(repo).await?;
    let listing = listing::listing(repo).await?;
    let mut damaged = Vec::new();
    for d in &listing.damaged {
        tracing::warn!(backup = d.id, "kept, with all wal: {}", d.error.one_line());
        damaged.push(d.id.clone());
    }
    let facts: Vec<BackupFacts> = (listing.backups.iter())
        .map(|m| facts(m, &pins, &holds, seg))
        .collect();
    let wal = repo.wal_file_names().await?;

    // Plan.
    let policy = RetentionPolicy {
        full: cfg.retention.full,
        max_age: cfg
            .retention
            .max_age
            .and_then(|a| chrono::Duration::from_std(a).ok()),
    };
    let system = repo.info().system_id;
    let plan = plan::plan(&policy, &facts, &damaged, system, &wal, seg, Utc::now());
    if args.dry_run {
        return Ok(ExpireReport {
            plan,
            executed: false,
            objects: 0,
            deferred: None,
        });
    }

    // Execute: metadata before data.
    for id in &plan.expire {
        repo.discard::<Manifest>(id).await?;
    }
    // A restore may have taken a hold since the plan: its backup has lost its manifest, but
    // its objects (and, to be safe, everything else this run would delete) stay; the next
    // run, or the next backup's clean-up of leftovers, removes them once the hold is gone.
    let late: Vec<HoldRecord> = hold::live(repo).await?;
    if let Some(h) = late
        .iter()
        .find(|h| plan.expire.iter().any(|id| id.as_str() == h.backup))
    {
        return Ok(ExpireReport {
            plan,
            executed: true,
            objects: 0,
            deferred: Some(format!("backup {} {}", h.backup, h.describe())),
        });
    }
    let mut objects = 0;
    for id in &plan.expire {
        objects += repo
            .delete_uncommitted_backup(id.as_str())
            .await?
            .unwrap_or(0);
    }
    for name in &plan.wal {
        let file = WalFileName::parse(name, seg).map_err(|e| Error::new(ErrorKind::Internal, e))?;
        repo.remove(&WalKey(file)).await?;
    }
    // What killed writers left mid-upload: an hour is far past any command's deadline.
    let swept = repo.sweep_staging(STAGING_AGE)?;
    if swept > 0 {
        tracing::info!(swept, "removed staging files of interrupted uploads");
    }
    Ok(ExpireReport {
        plan,
        executed: true,
        objects,
        deferred: None,
    })
}

/// What the plan needs of backup `m` (its typed fields were checked as it was read).
fn facts(m: &Manifest, pins: &[String], holds: &[HoldRecord], seg: WalSegSize) -> BackupFacts {
    BackupFacts {
        id: m.id.clone(),
        kind: m.kind,
        parent: m.parent.clone(),
        system_id: m.system_id,
        stop_time: m.stop_time,
        start_segno: WalSegmentName::containing(m.timeline, m.start_lsn, seg).segno,
        pinned: pins.iter().any(|p| p == m.id.as_str()),
        held: holds
            .iter()
            .find(|h| h.backup == m.id.as_str())
            .map(HoldRecord::describe),
    }
}
