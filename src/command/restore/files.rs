//! Writing a backup's entries under the target directory: directories and links first, then
//! files fetched and verified in parallel (`pg_control` on its own, last).

use std::path::Path;

use futures::StreamExt;

use crate::command::{blocking, verified};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{EntryKind, Manifest};
use crate::repo::{Repo, RepoKey};

const PG_CONTROL: &str = "global/pg_control";

pub fn create_dirs_and_links(target: &Path, m: &Manifest) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for e in &m.entries {
        let path = target.join(&e.path);
        match &e.kind {
            EntryKind::Dir => {
                std::fs::create_dir_all(&path).map_err(|err| Error::io("create", &path, err))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode & 0o7777))
                    .map_err(|err| Error::io("chmod", &path, err))?;
            }
            EntryKind::Link { target: to } => {
                std::os::unix::fs::symlink(to, &path)
                    .map_err(|err| Error::io("link", &path, err))?;
            }
            EntryKind::File { .. } => {}
        }
    }
    Ok(())
}

/// Writes the files (`only_control`: just pg_control; else everything but it). Returns the
/// number of files and bytes written.
pub async fn write_all(
    repo: &Repo,
    m: &Manifest,
    target: &Path,
    concurrency: usize,
    only_control: bool,
) -> Result<(usize, u64)> {
    let files: Vec<_> = m
        .entries
        .iter()
        .filter(|e| {
            matches!(e.kind, EntryKind::File { .. }) && (e.path == PG_CONTROL) == only_control
        })
        .collect();
    let count = files.len();
    let results: Vec<Result<u64>> = futures::stream::iter(files)
        .map(|e| async move {
            let key = RepoKey::BackupFile {
                backup: m.id.to_string(),
                path: e.path.clone(),
            };
            let stored = repo.get(&key).await?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("backup {} lacks the body of {}", m.id, e.path),
                )
                .hint("this backup is damaged; restore an older one and run 'pgkeep verify'")
            })?;
            let (dest, what, location, mode) = (
                target.join(&e.path),
                format!("{} of backup {}", e.path, m.id),
                repo.location().to_string(),
                e.mode,
            );
            blocking(move || {
                let size = verified::write(&stored, &dest, &what, &location)?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|err| Error::io("chmod", &dest, err))?;
                Ok(size)
            })
            .await
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut bytes = 0;
    for r in results {
        bytes += r?;
    }
    Ok((count, bytes))
}
