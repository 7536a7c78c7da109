//! `pgkeep pin ID` / `pgkeep unpin ID`: mark a backup that retention must never expire (and
//! with it everything it is built on), or lift the mark. A pin is its own small object
//! (`pins/<id>.json`), so manifests stay write-once.

use crate::command::backups;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::{Repo, RepoKey};

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
    if backups::load(&repo, id).await?.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("no backup {id} in {}", repo.location()),
        )
        .hint("'pgkeep info' lists the backups"));
    }
    let body = serde_json::json!({
        "backup": id,
        "pinned_at": chrono::Utc::now().to_rfc3339(),
    });
    repo.put(&RepoKey::Pin(id.to_string()), body.to_string().into())
        .await
}

/// Lifts a pin. A pin whose backup is gone can still be lifted; an id that is neither pinned
/// nor a backup is refused (a typo would otherwise pass silently).
pub async fn unpin(cfg: &Config, id: &str) -> Result<()> {
    let repo = Repo::open(&cfg.repository).await?;
    let key = RepoKey::Pin(id.to_string());
    if !repo.contains(&key).await? && !repo.contains(&RepoKey::Manifest(id.to_string())).await? {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("no backup {id} in {}", repo.location()),
        )
        .hint("'pgkeep info' lists the backups"));
    }
    repo.delete(&key).await
}
