//! A hold on a backup (`locks/holds/<id>/<holder>.json`): while a restore (or anything else
//! that reads a backup for a while) runs, `expire` keeps that backup and its chain, like a pin.
//! Unlike a lease, holds do not exclude each other: every holder writes its own object. A hold
//! is renewed in the background and removed when released; one whose holder is gone (expired,
//! or a process of this host that no longer runs) is stale and holds nothing.
//!
//! Ordering against expire: `hold` writes the hold, then checks that the backup's manifest is
//! still there; expire reads the holds before it deletes manifests and again before it
//! deletes any object. So either the holder sees the manifest gone, or expire sees the hold
//! before it deletes the backup's objects.
//!
//! A holder that may not write to the repository (a restore with read-only credentials, for
//! disaster recovery) is not refused: it gets an inert hold and a warning that expire could
//! remove the backup meanwhile — a restore that cannot run would be worse.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lease::Holder;
use super::objects::RepoObject;
use super::{Repo, RepoKey};
use crate::error::{Error, ErrorKind, Result};

/// How long a hold lasts without renewal (renewed every third of it).
pub const HOLD_TTL: Duration = Duration::from_secs(300);

/// What a hold object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub backup: String,
    /// What holds it, e.g. `restore into /srv/pg`.
    pub purpose: String,
    #[serde(flatten)]
    pub holder: Holder,
}

/// A hold's name: the backup it holds and its holder's nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldKey {
    pub backup: String,
    pub holder: String,
}

impl RepoObject for HoldRecord {
    type Id = HoldKey;
    const KIND: &'static str = "hold";
    fn key(id: &HoldKey) -> RepoKey {
        RepoKey::Hold {
            backup: id.backup.clone(),
            holder: id.holder.clone(),
        }
    }
}

impl HoldRecord {
    /// One line for plans and messages: `held by restore (pid 42 on db1 since ...)`.
    pub fn describe(&self) -> String {
        format!(
            "held by {} (pid {} on {} since {})",
            self.purpose, self.holder.pid, self.holder.host, self.holder.acquired
        )
    }
}

/// A held backup; renewed in the background until released. Dropping it stops the renewal
/// and removes the hold in the background when a runtime is still there (else it goes stale).
#[derive(Debug)]
pub struct Hold {
    repo: Repo,
    /// `None`: inert, the hold could not be written.
    key: Option<HoldKey>,
    renew: Option<tokio::task::JoinHandle<()>>,
}

/// Holds backup `backup` for `purpose` (see the module doc). Fails when the backup has no
/// manifest (any more).
pub async fn hold(repo: &Repo, backup: &str, purpose: &str) -> Result<Hold> {
    hold_for(repo, backup, purpose, HOLD_TTL).await
}

/// [`hold`] with its own time to live (tests use a short one).
pub async fn hold_for(repo: &Repo, backup: &str, purpose: &str, ttl: Duration) -> Result<Hold> {
    let holder = Holder::me(ttl);
    let nonce = format!(
        "{}-{}-{}",
        holder.pid,
        chrono::Utc::now().timestamp_micros(),
        rand_suffix()
    );
    let key = HoldKey {
        backup: backup.to_string(),
        holder: nonce,
    };
    let record = |holder| HoldRecord {
        backup: backup.to_string(),
        purpose: purpose.to_string(),
        holder,
    };
    let mut held = Hold {
        repo: repo.clone(),
        key: Some(key.clone()),
        renew: None,
    };
    let holder_acquired = holder.acquired.clone();
    match repo.save(&key, &record(holder)).await {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::Auth | ErrorKind::Io) => {
            tracing::warn!(
                backup,
                "cannot hold the backup ({}): expire could remove it while this {purpose} runs",
                e.one_line()
            );
            held.key = None;
            return Ok(held);
        }
        Err(e) => return Err(e),
    }
    // The hold is written: now the manifest must still be there (see the module doc).
    if !repo
        .contains(&RepoKey::Manifest(backup.to_string()))
        .await?
    {
        held.release().await?;
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("backup {backup} is no longer in {}", repo.location()),
        )
        .hint("it was expired meanwhile; 'pgkeep info' lists the backups"));
    }
    let (renew_repo, purpose) = (repo.clone(), purpose.to_string());
    let backup = backup.to_string();
    let acquired = holder_acquired;
    let renew = tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            // Renewed with a new expiry; it was acquired when it was first written.
            let mut holder = Holder::me(ttl);
            holder.acquired = acquired.clone();
            let rec = HoldRecord {
                backup: backup.clone(),
                purpose: purpose.clone(),
                holder,
            };
            // A failed renewal is retried at the next tick (the hold lasts a full ttl), but
            // said: two more failures and expire may take the backup.
            let renewed = renew_repo.save(&key, &rec).await;
            if let Err(e) = renewed {
                tracing::warn!(backup, "cannot renew the hold: {}", e.one_line());
            }
        }
    });
    held.renew = Some(renew);
    Ok(held)
}

impl Hold {
    /// Removes the hold.
    pub async fn release(mut self) -> Result<()> {
        if let Some(r) = self.renew.take() {
            r.abort();
        }
        match self.key.take() {
            Some(key) => self.repo.discard::<HoldRecord>(&key).await,
            None => Ok(()),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(renew) = self.renew.take() {
            renew.abort();
        }
        let Some(key) = self.key.take() else {
            return; // released, or inert
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let repo = self.repo.clone();
            rt.spawn(async move { repo.discard::<HoldRecord>(&key).await });
        }
    }
}

/// Every live hold (stale ones are skipped), by backup id.
pub async fn live(repo: &Repo) -> Result<Vec<HoldRecord>> {
    let paths = repo.list_paths(&repo.layout.holds_dir()).await?;
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for p in paths {
        let (Some(holder), Some(backup)) = (
            p.filename().and_then(|f| f.strip_suffix(".json")),
            p.parts().rev().nth(1).map(|b| b.as_ref().to_string()),
        ) else {
            continue;
        };
        let key = HoldKey {
            backup,
            holder: holder.to_string(),
        };
        // Released meanwhile: nothing. An unreadable hold (torn by a crash) holds nothing,
        // like a stale lease.
        match repo.load::<HoldRecord>(&key).await {
            Ok(Some(rec)) if !rec.holder.is_stale(now) => out.push(rec),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.backup.cmp(&b.backup));
    Ok(out)
}

/// A few random hex digits, so two holds by one process never share a name.
fn rand_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64);
    format!("{:08x}", h.finish() as u32)
}
