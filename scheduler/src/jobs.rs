//! The jobs pgkeepd runs. Each kind implements `Job` by calling the very command the CLI runs
//! (`pgkeep::command::*::run`); a new kind (restore tests in throwaway containers) is one more
//! `Job`, and the scheduler does not change.

use async_trait::async_trait;

use pgkeep::command::{backup, expire, verify};
use pgkeep::config::{Config, JobKind};
use pgkeep::error::{Error, ErrorKind, Result};

use crate::state::{self, Shared, VerifySeen};

#[async_trait]
pub trait Job: Send + Sync {
    /// Runs once; returns a one-line account of what it did.
    async fn run(&self, cfg: &Config, status: &Shared) -> Result<String>;
}

pub fn for_kind(kind: JobKind) -> Box<dyn Job> {
    match kind {
        JobKind::BackupFull => Box::new(Backup(backup::Requested::Full)),
        JobKind::BackupIncr => Box::new(Backup(backup::Requested::Incremental)),
        JobKind::Expire => Box::new(Expire),
        JobKind::Verify => Box::new(Verify),
        // Arrives with the drill (restore-tests).
        JobKind::RestoreTest => Box::new(Verify),
    }
}

/// A backup, then expiry: retention is applied after each successful backup.
struct Backup(backup::Requested);

#[async_trait]
impl Job for Backup {
    async fn run(&self, cfg: &Config, _status: &Shared) -> Result<String> {
        let args = backup::BackupArgs {
            source: None,
            kind: self.0,
        };
        let r = backup::run(cfg, args).await?;
        let id = r.manifest.id.to_string();
        let e = expire::run(cfg, expire::ExpireArgs::default())
            .await
            .map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "backup {id} committed, then expire failed: {}",
                        e.one_line()
                    ),
                )
            })?;
        Ok(format!(
            "backup {id} committed in {:.1} s; {}",
            r.elapsed.as_secs_f64(),
            removed(&e)
        ))
    }
}

fn removed(e: &expire::ExpireReport) -> String {
    format!(
        "expire removed {} backup(s) and {} wal file(s)",
        e.plan.expire.len(),
        e.plan.wal.len()
    )
}

struct Expire;

#[async_trait]
impl Job for Expire {
    async fn run(&self, cfg: &Config, _status: &Shared) -> Result<String> {
        let e = expire::run(cfg, expire::ExpireArgs::default()).await?;
        Ok(removed(&e))
    }
}

struct Verify;

#[async_trait]
impl Job for Verify {
    async fn run(&self, cfg: &Config, status: &Shared) -> Result<String> {
        let r = verify::run(cfg, verify::VerifyArgs::default()).await?;
        let problems = r.problems();
        state::with(status, |s| {
            s.repository.last_verify = Some(VerifySeen {
                at: chrono::Utc::now(),
                problems,
            })
        });
        if problems > 0 {
            let first = r.problem_lines().next().cloned().unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("verify found {problems} problem(s), first: {first}"),
            ));
        }
        Ok(format!(
            "verify: {} backup(s) whole, wal continuous",
            r.backups.len()
        ))
    }
}
