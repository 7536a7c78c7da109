//! A lease in the repository (`locks/<job>.json`): at most one holder of a job at a time across
//! every host using the repository. Taken with create-if-absent; renewed while held; released
//! by deleting it. A lease whose holder is gone — its expiry passed, or it names a process of
//! this host that no longer runs — is stale and taken over.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ids::JobName;
use super::objects::RepoObject;
use super::{Created, Repo, RepoKey};
use crate::error::{Error, ErrorKind, Result};

/// What a lease object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot: a reused pid is another process.
    pub pid_start: u64,
    pub acquired: String,
    /// RFC 3339; renewed while the holder runs.
    pub expires: String,
}

impl RepoObject for Holder {
    type Id = JobName;
    const KIND: &'static str = "lease";
    fn key(job: &JobName) -> RepoKey {
        RepoKey::Lease(job.0.clone())
    }
}

impl Holder {
    pub(super) fn me(ttl: Duration) -> Holder {
        let now = chrono::Utc::now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(10));
        Holder {
            host: hostname(),
            pid: std::process::id(),
            pid_start: process_start(std::process::id()).unwrap_or(0),
            acquired: now.to_rfc3339(),
            expires: (now + ttl).to_rfc3339(),
        }
    }

    /// Whether the holder is certainly gone.
    pub fn is_stale(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let expired = chrono::DateTime::parse_from_rfc3339(&self.expires)
            .map(|t| t < now)
            .unwrap_or(true);
        let dead_here = self.host == hostname() && process_start(self.pid) != Some(self.pid_start);
        expired || dead_here
    }
}

/// A held lease; renewed in the background until released (or dropped).
#[derive(Debug)]
pub struct Lease {
    repo: Repo,
    key: JobName,
    renew: tokio::task::JoinHandle<()>,
}

/// The lease a backup and an expiry share: one of them at a time per repository, so no expiry
/// removes what a running backup builds on, and every folder without a manifest is a leftover.
pub const BACKUP: &str = "backup";
/// How long the backup lease lasts without renewal (it is renewed every third of this).
pub const BACKUP_TTL: Duration = Duration::from_secs(600);

impl Lease {
    /// Takes the backup lease (see [`BACKUP`]).
    pub async fn backup(repo: &Repo) -> Result<Lease> {
        Lease::acquire(repo, BACKUP, BACKUP_TTL).await
    }

    /// Takes the lease of `job` for `ttl` (renewed every third of it), taking over a stale
    /// one. Fails with a conflict naming the holder when it is held.
    pub async fn acquire(repo: &Repo, job: &str, ttl: Duration) -> Result<Lease> {
        let key = JobName(job.to_string());
        let mine = Holder::me(ttl);
        for _ in 0..2 {
            if repo.save_new(&key, &mine).await? == Created::New {
                let renew = tokio::spawn(renew(repo.clone(), key.clone(), ttl));
                return Ok(Lease {
                    repo: repo.clone(),
                    key,
                    renew,
                });
            }
            let Some(held) = read(repo, &key).await? else {
                continue; // released in between: try again
            };
            if !held.is_stale(chrono::Utc::now()) {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "another {job} holds the repository's lease: pid {} on {} since {}",
                        held.pid, held.host, held.acquired
                    ),
                )
                .hint(format!(
                    "wait for it to finish; a holder that died leaves a lease that expires at {}",
                    held.expires
                )));
            }
            tracing::info!(
                host = held.host,
                pid = held.pid,
                "taking over the stale {job} lease"
            );
            repo.discard::<Holder>(&key).await?;
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("could not take the {job} lease: another process raced for it"),
        )
        .hint("run it again"))
    }

    /// Gives the lease up.
    pub async fn release(self) -> Result<()> {
        self.renew.abort();
        self.repo.discard::<Holder>(&self.key).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

async fn renew(repo: Repo, key: JobName, ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        // A failed renewal is retried at the next tick; the lease lasts a full ttl.
        let _ = repo.save(&key, &Holder::me(ttl)).await;
    }
}

async fn read(repo: &Repo, key: &JobName) -> Result<Option<Holder>> {
    match repo.load::<Holder>(key).await {
        Ok(h) => Ok(h),
        // An unreadable lease (torn by a crash mid-write on a store without atomic puts) holds
        // nobody: treat it as stale.
        Err(e) if e.kind() == ErrorKind::Corrupt => Ok(Some(Holder {
            host: String::new(),
            pid: 0,
            pid_start: 0,
            acquired: String::new(),
            expires: String::new(),
        })),
        Err(e) => Err(e),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_stale_when_expired_or_its_local_process_is_gone() {
        let now = chrono::Utc::now();
        let me = Holder::me(Duration::from_secs(600));
        assert!(me.pid_start > 0, "this process's start time is readable");
        assert!(!me.is_stale(now));
        assert!(me.is_stale(now + chrono::Duration::seconds(601)));
        let reused_pid = Holder {
            pid_start: me.pid_start + 1,
            ..me.clone()
        };
        assert!(reused_pid.is_stale(now));
        let elsewhere = Holder {
            host: "another-host".into(),
            pid: u32::MAX,
            ..me.clone()
        };
        assert!(
            !elsewhere.is_stale(now),
            "another host's process is not ours to judge"
        );
    }
}
