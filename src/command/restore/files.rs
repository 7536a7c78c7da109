//! Writing a backup's entries under the target directory: directories and links first, then
//! files rebuilt and verified in parallel (`pg_control` on its own, last).

use std::path::Path;

use futures::StreamExt;

use super::assemble::{Slots, Wanted, assemble};
use crate::command::blocking;
use crate::error::{Error, Result};
use crate::localfs;
use crate::manifest::{EntryKind, Manifest};
use crate::pipeline::checksum::Hasher;
use crate::repo::Repo;

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
                // A delta restore finds the old link in place.
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                    std::fs::remove_file(&path).map_err(|err| Error::io("remove", &path, err))?;
                }
                std::os::unix::fs::symlink(to, &path)
                    .map_err(|err| Error::io("link", &path, err))?;
            }
            EntryKind::File { .. } => {}
        }
    }
    Ok(())
}

/// Writes the files (`only_control`: just pg_control; else everything but it), `concurrency`
/// at a time. With `keep_matching`, a file already there with the right size and sha256 is
/// kept. Returns the number of files and bytes written.
pub async fn write_all(
    repo: &Repo,
    m: &Manifest,
    target: &Path,
    concurrency: usize,
    only_control: bool,
    keep_matching: bool,
) -> Result<(usize, u64)> {
    let files: Vec<Wanted> = m
        .entries
        .iter()
        .filter(|e| (e.path == PG_CONTROL) == only_control)
        .filter_map(|e| match &e.kind {
            EntryKind::File {
                size,
                sha256,
                layers,
                ..
            } => Some(Wanted {
                entry: e,
                size: *size,
                sha256,
                layers,
            }),
            _ => None,
        })
        .collect();
    let slots = Slots {
        slots: tokio::sync::Semaphore::new(concurrency.max(1)),
        count: concurrency.max(1),
    };
    let slots = &slots;
    let results: Vec<Result<Option<u64>>> = futures::stream::iter(files)
        .map(|w| async move {
            let dest = target.join(&w.entry.path);
            if keep_matching && matches(&dest, w.size, w.sha256).await? {
                return Ok(None);
            }
            assemble(repo, w, &dest, slots).await.map(Some)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let (mut count, mut bytes) = (0, 0);
    for r in results {
        if let Some(n) = r? {
            count += 1;
            bytes += n;
        }
    }
    fsync_dirs(target, m)?;
    Ok((count, bytes))
}

/// Whether `path` is a regular file of this size and sha256 already.
async fn matches(path: &Path, size: u64, sha256: &str) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(false),
    };
    if !meta.is_file() || meta.len() != size {
        return Ok(false);
    }
    let (p, want) = (path.to_path_buf(), sha256.to_string());
    blocking(move || Ok(sha256_of(&p)? == want)).await
}

/// The sha256 of a local file, in hex.
pub fn sha256_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().0.to_string())
}

/// Files were renamed into place: their directories' entries must reach the disk too.
fn fsync_dirs(target: &Path, m: &Manifest) -> Result<()> {
    let dirs = m
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Dir))
        .map(|e| target.join(&e.path))
        .chain(std::iter::once(target.to_path_buf()));
    for d in dirs {
        localfs::fsync_dir(&d).map_err(|e| Error::io("fsync", &d, e))?;
    }
    Ok(())
}
