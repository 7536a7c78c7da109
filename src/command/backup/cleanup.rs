//! Removing what interrupted backups left: folders under `backups/` without a manifest. Only
//! called with the backup lease held, so no running backup can own such a folder. A folder a
//! restore still holds (its manifest expired under it) stays until the hold goes.

use crate::error::Result;
use crate::repo::{Repo, hold};

/// Returns the ids removed.
pub async fn remove_interrupted(repo: &Repo) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let held = hold::live(repo).await?;
    for id in repo.backup_folders().await? {
        let id = id.to_string();
        if held.iter().any(|h| h.backup == id) {
            continue;
        }
        // Committed backups are kept; a folder with nothing listable is removed silently.
        let Some(objects) = repo
            .delete_uncommitted_backup(&id)
            .await?
            .filter(|n| *n > 0)
        else {
            continue;
        };
        tracing::info!(
            backup = id,
            objects,
            "removed the leftovers of an interrupted backup"
        );
        removed.push(id);
    }
    Ok(removed)
}
