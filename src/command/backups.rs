//! Reading the backups a repository holds: a backup exists iff its manifest does. Folders
//! without a manifest are interrupted backups — never listed, never restored.

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;
use crate::pipeline;
use crate::repo::{Repo, RepoKey};

/// Every committed backup, oldest first — by the time it became consistent: ids order by
/// their second and then kind, so a full and an incremental of the same second would sort by
/// kind.
pub async fn list(repo: &Repo) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for id in repo.backup_folders().await? {
        if let Some(m) = load(repo, &id).await? {
            out.push(m);
        }
    }
    out.sort_by(|a, b| a.stop_time.cmp(&b.stop_time).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The manifest of backup `id`, or `None` when it was never committed.
pub async fn load(repo: &Repo, id: &str) -> Result<Option<Manifest>> {
    let Some(stored) = repo.get(&RepoKey::Manifest(id.to_string())).await? else {
        return Ok(None);
    };
    let corrupt = |e: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("manifest of backup {id} is damaged: {e}"),
        )
        .hint("this backup cannot be restored; take a new one")
    };
    let mut json = Vec::new();
    pipeline::decode(&stored, &mut json).map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}
