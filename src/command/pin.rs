//! `pgkeep pin ID` / `pgkeep unpin ID`: mark a backup that retention must never expire (and
//! with it everything it is built on), or lift the mark. A pin is its own small object
//! (`pins/<id>.json`), so manifests stay write-once.

use serde::{Deserialize, Serialize};

use crate::command::backups;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{BackupId, Manifest};
use crate::repo::{Repo, RepoKey, RepoObject};

/// What a pin says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pin {
    pub backup: BackupId,
    pub pinned_at: String,
}

impl RepoObject for Pin {
    type Id = BackupId;
    const KIND: &'static str = "pin";
    fn key(id: &BackupId) -> RepoKey {
        RepoKey::Pin(id.to_string())
    }
}

fn parse(id: &str, repo: &Repo) -> Result<BackupId> {
    id.parse().map_err(|e: String| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("no backup {id} in {}: {e}", repo.location()),
        )
        .hint("'pgkeep info' lists the backups")
    })
}

pub async fn pin(cfg: &Config, id: &str) -> Result<()> {
    let repo = Repo::open(&cfg.repository).await?;
    if backups::load(&repo, id).await?.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("no backup {id} in {}", repo.location()),
        )
        .hint("'pgkeep info' lists the backups"));
    }
    let backup = parse(id, &repo)?;
    let pin = Pin {
        backup: backup.clone(),
        pinned_at: chrono::Utc::now().to_rfc3339(),
    };
    repo.save(&backup, &pin).await
}

/// Lifts a pin. A pin whose backup is gone can still be lifted; an id that is neither pinned
/// nor a backup is refused (a typo would otherwise pass silently).
pub async fn unpin(cfg: &Config, id: &str) -> Result<()> {
    let repo = Repo::open(&cfg.repository).await?;
    let key = parse(id, &repo)?;
    if !repo.has::<Pin>(&key).await? && !repo.has::<Manifest>(&key).await? {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("no backup {id} in {}", repo.location()),
        )
        .hint("'pgkeep info' lists the backups"));
    }
    repo.discard::<Pin>(&key).await
}
