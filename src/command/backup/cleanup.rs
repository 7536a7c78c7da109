//! Removing what interrupted backups left: folders under `backups/` without a manifest. Only
//! called with the backup lease held, so no running backup can own such a folder.

use crate::error::Result;
use crate::repo::Repo;

/// Returns the ids removed.
pub async fn remove_interrupted(repo: &Repo) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for id in repo.backup_folders().await? {
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
