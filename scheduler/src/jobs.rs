//! The jobs pgkeepd runs. Each kind implements `Job` by calling the very command the CLI runs
//! (`pgkeep::command::*::run`); a new kind (restore tests in throwaway containers) is one more
//! `Job`, and the scheduler does not change. A run answers a line and, for a drill, its
//! structured report (which `/status` shows and the metrics count).

use async_trait::async_trait;

use pgkeep::command::{backup, expire, verify};
use pgkeep::config::{Config, JobConfig, JobKind};
use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::manifest::drill::DrillReport;

use crate::state::{self, Shared, VerifySeen};

/// How one run went: a one-line account (or the error), and a drill's report.
#[derive(Debug)]
pub struct Ran {
    pub result: Result<String>,
    pub report: Option<DrillReport>,
}

impl From<Result<String>> for Ran {
    fn from(result: Result<String>) -> Ran {
        Ran {
            result,
            report: None,
        }
    }
}

#[async_trait]
pub trait Job: Send + Sync {
    /// Runs once.
    async fn run(&self, cfg: &Config, status: &Shared) -> Ran;
}

pub fn for_job(job: &JobConfig) -> Box<dyn Job> {
    match job.kind {
        JobKind::BackupFull => Box::new(Backup(backup::Requested::Full)),
        JobKind::BackupIncr => Box::new(Backup(backup::Requested::Incremental)),
        JobKind::Expire => Box::new(Expire),
        JobKind::Verify => Box::new(Verify),
        // The section with the job's own [scheduler.jobs.restore_test] keys over it.
        JobKind::RestoreTest => Box::new(crate::drill_job::Drill(job.restore_test.clone())),
    }
}

/// A backup, then expiry: retention is applied after each successful backup.
struct Backup(backup::Requested);

#[async_trait]
impl Job for Backup {
    async fn run(&self, cfg: &Config, _status: &Shared) -> Ran {
        self.once(cfg).await.into()
    }
}

impl Backup {
    async fn once(&self, cfg: &Config) -> Result<String> {
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
    async fn run(&self, cfg: &Config, _status: &Shared) -> Ran {
        let e = expire::run(cfg, expire::ExpireArgs::default()).await;
        e.map(|e| removed(&e)).into()
    }
}

struct Verify;

#[async_trait]
impl Job for Verify {
    async fn run(&self, cfg: &Config, status: &Shared) -> Ran {
        verify_once(cfg, status).await.into()
    }
}

async fn verify_once(cfg: &Config, status: &Shared) -> Result<String> {
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
