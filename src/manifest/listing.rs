//! Reading the backups a repository holds: a backup exists iff its manifest does. Folders
//! without a manifest are interrupted backups — never listed, never restored. Every manifest
//! is validated where it is read (`load`, the one place): one that cannot be decoded, names
//! another backup, holds a path outside the data directory or a field that does not parse is
//! a damaged backup. A listing skips damaged backups and reports them, so one damaged manifest
//! never stops the commands that do not need it.

use super::{BackupId, Manifest};
use crate::error::{Error, ErrorKind, Result};
use crate::repo::Repo;

/// A backup folder whose manifest exists but cannot be used.
#[derive(Debug)]
pub struct Damaged {
    /// The folder's name (the backup id it should hold).
    pub id: String,
    pub error: Error,
}

/// The committed backups, readable ones oldest first, and the damaged ones by folder name.
#[derive(Debug, Default)]
pub struct Listing {
    pub backups: Vec<Manifest>,
    pub damaged: Vec<Damaged>,
}

/// Every committed backup with a readable manifest, oldest first — by the time it became
/// consistent: ids order by their second and then kind, so a full and an incremental of the
/// same second would sort by kind. Damaged manifests are skipped with a warning; commands
/// that must account for them call [`listing`].
pub async fn list(repo: &Repo) -> Result<Vec<Manifest>> {
    let l = listing(repo).await?;
    for d in &l.damaged {
        tracing::warn!(
            backup = d.id,
            "skipping a damaged backup: {}",
            d.error.one_line()
        );
    }
    Ok(l.backups)
}

/// Every committed backup: the readable ones (oldest first) and the damaged ones.
pub async fn listing(repo: &Repo) -> Result<Listing> {
    let mut out = Listing::default();
    for id in repo.backup_folders().await? {
        let id = id.to_string();
        match load(repo, &id).await {
            Ok(Some(m)) => out.backups.push(m),
            Ok(None) => {}
            Err(error) if error.kind() == ErrorKind::Corrupt => {
                out.damaged.push(Damaged { id, error })
            }
            Err(e) => return Err(e),
        }
    }
    out.backups
        .sort_by(|a, b| a.stop_time.cmp(&b.stop_time).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The manifest of backup `id`, validated; `None` when it was never committed.
pub async fn load(repo: &Repo, id: &str) -> Result<Option<Manifest>> {
    let Ok(backup) = id.parse::<BackupId>() else {
        return Ok(None); // not a backup id: no such backup
    };
    let corrupt = |e: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("manifest of backup {id} is damaged: {e}"),
        )
        .hint(format!(
            "this backup cannot be restored, the others are unaffected ('pgkeep info' lists them); expire keeps its folder backups/{id} and the wal until it is removed by hand"
        ))
    };
    let m = match repo.load::<Manifest>(&backup).await {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == ErrorKind::Corrupt => return Err(corrupt(e.message().to_string())),
        Err(e) => return Err(e),
    };
    m.validate(id).map_err(corrupt)?;
    Ok(Some(m))
}
