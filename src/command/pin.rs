//! `pgkeep pin ID` / `pgkeep unpin ID`: mark a backup that retention must never expire (and
//! with it everything it is built on), or lift the mark. A pin is its own small object
//! (`pins/<id>.json`), so manifests stay write-once.

use crate::command::backups;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::{Repo, RepoKey};

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
