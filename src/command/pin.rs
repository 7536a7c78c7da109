//! `pgkeep pin ID` / `pgkeep unpin ID`: mark a backup that retention must never expire (and
//! with it everything it is built on), or lift the mark. A pin is its own small object
//! (`pins/<id>.json`), so manifests stay write-once.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::listing;
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

/// Pin (`pinned`) or unpin backup `id`.
#[derive(Debug, Clone)]
pub struct PinArgs {
    pub id: String,
    pub pinned: bool,
}

/// What `pgkeep pin` / `unpin` did.
#[derive(Debug, Clone)]
pub struct PinReport {
    pub id: String,
    pub pinned: bool,
}

/// The line `pgkeep pin` / `unpin` prints.
impl std::fmt::Display for PinReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pinned {
            true => writeln!(
                f,
                "pinned backup {}: expire keeps it and what it is built on",
                self.id
            ),
            false => writeln!(f, "unpinned backup {}", self.id),
        }
    }
}

pub async fn run(cfg: &Config, args: PinArgs) -> Result<PinReport> {
    match args.pinned {
        true => pin(cfg, &args.id).await?,
        false => unpin(cfg, &args.id).await?,
    }
    Ok(PinReport {
        id: args.id,
        pinned: args.pinned,
    })
}

pub async fn pin(cfg: &Config, id: &str) -> Result<()> {
    let repo = Repo::open(&cfg.repository).await?;
    if listing::load(&repo, id).await?.is_none() {
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
