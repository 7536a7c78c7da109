//! Writing a backup's entries where `Placement` puts them (the target, and each tablespace's
//! directory): directories and links first, then files rebuilt and verified in parallel
//! (`pg_control` on its own, last). No path here is joined by hand.

use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::assemble::{Slots, Wanted, assemble};
use super::place::Placement;
use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::localfs;
use crate::manifest::{EntryKind, Manifest};
use crate::repo::Repo;
use crate::repo::{Digest, Hasher};

const PG_CONTROL: &str = "global/pg_control";

pub fn create_dirs_and_links(place: &Placement, m: &Manifest) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|err| Error::io("chmod", path, err))
    };
    // Each tablespace's directory, where restore decided (inside the target unless mapped).
    for (_, dir, _) in place.tablespaces() {
        std::fs::create_dir_all(dir).map_err(|err| Error::io("create", dir, err))?;
        chmod(dir, 0o700)?;
        if let Some(parent) = dir.parent().filter(|p| p.starts_with(place.target())) {
            chmod(parent, 0o700)?;
        }
    }
    for e in m.entries.iter().filter(|e| !place.skipped(&e.path)) {
        let path = place.dest(&e.path)?;
        match &e.kind {
            EntryKind::Dir => {
                std::fs::create_dir_all(&path).map_err(|err| Error::io("create", &path, err))?;
                chmod(&path, e.mode)?;
            }
            EntryKind::Link { .. } => {
                // Never the recorded target: on the source's host that is the live tablespace.
                let to = place.link_target(&e.path).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Internal,
                        format!("no directory for link {}", e.path),
                    )
                })?;
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
    place: &Placement,
    concurrency: usize,
    only_control: bool,
    keep_matching: bool,
    sync_each: bool,
) -> Result<(usize, u64)> {
    let files: Vec<Wanted> = m
        .entries
        .iter()
        .filter(|e| (e.path == PG_CONTROL) == only_control && !place.skipped(&e.path))
        .filter_map(|e| match &e.kind {
            EntryKind::File {
                size,
                sha256,
                layers,
                ..
            } => Some(Wanted {
                entry: e,
                size: *size,
                sha256: *sha256,
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
    // One boxed future per file, made before the stream: a closure in the stream's type would
    // keep the compiler from seeing the future is `Send` for any borrow (a restore drill runs
    // this inside pgkeepd's `Send` jobs).
    let writes: Vec<futures::future::BoxFuture<'_, Result<Option<u64>>>> = files
        .into_iter()
        .map(|w| -> futures::future::BoxFuture<'_, Result<Option<u64>>> {
            Box::pin(async move {
                let dest = place.dest(&w.entry.path)?;
                // A file rebuilt through a WAL-summary delta has no sha256 of its bytes to
                // compare (its entry's is of the incremental file the server sent).
                let comparable = !w.layers.iter().any(|l| l.base_size.is_some());
                if keep_matching && comparable && matches(&dest, w.size, w.sha256).await? {
                    return Ok(None);
                }
                // pg_control is made durable on its own; the rest in one pass
                // (`Durability::finish`) unless each file must be (`sync_each`).
                assemble(repo, w, &dest, slots, only_control || sync_each)
                    .await
                    .map(Some)
            })
        })
        .collect();
    let results: Vec<Result<Option<u64>>> = futures::stream::iter(writes)
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
    if only_control {
        fsync_dirs(place, m)?;
    }
    Ok((count, bytes))
}

/// The file systems a restore writes to, each held open by one of its directories from before
/// the first file is written: syncfs reports a failed writeback only to descriptors that were
/// open when it happened. Where syncfs cannot report errors at all (Linux before 5.8), files
/// are fsynced one by one as they are written instead (`per_file`).
pub struct Durability {
    roots: Vec<(PathBuf, std::fs::File)>,
    trusted: bool,
}

impl Durability {
    /// Opens one directory per file system among the target, the tablespaces and every
    /// directory of the manifest (a mount point inside the target is a file system of its
    /// own). Called once the directories exist, before any file is written.
    pub fn open(place: &Placement, m: &Manifest) -> Result<Durability> {
        let mut devices = std::collections::BTreeSet::new();
        let mut roots = Vec::new();
        for d in dirs(place, m)? {
            let dev = localfs::device_of(&d).map_err(|e| Error::io("stat", &d, e))?;
            if devices.insert(dev) {
                let f = std::fs::File::open(&d).map_err(|e| Error::io("open", &d, e))?;
                roots.push((d, f));
            }
        }
        Ok(Durability {
            roots,
            trusted: localfs::syncfs_reports_errors(),
        })
    }

    /// Whether each file must be fsynced as it is written.
    pub fn per_file(&self) -> bool {
        !self.trusted
    }

    /// Makes everything written since `open` durable in one pass instead of an fsync per file
    /// (files `--delta` kept included): one syncfs per file system, then the directories.
    pub fn finish(self, place: &Placement, m: &Manifest) -> Result<()> {
        if self.trusted {
            for (d, f) in &self.roots {
                localfs::syncfs(f).map_err(|e| Error::io("syncfs", d, e))?;
            }
        }
        fsync_dirs(place, m)
    }
}

/// Whether `path` is a regular file of this size and sha256 already.
async fn matches(path: &Path, size: u64, want: Digest) -> Result<bool> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return Ok(false),
    };
    if !meta.is_file() || meta.len() != size {
        return Ok(false);
    }
    let p = path.to_path_buf();
    blocking(move || Ok(sha256_of(&p)? == want)).await
}

/// The sha256 of a local file.
pub fn sha256_of(path: &Path) -> Result<Digest> {
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
    Ok(h.finish().0)
}

/// The target, the tablespaces and every directory of the manifest.
fn dirs(place: &Placement, m: &Manifest) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![place.target().to_path_buf()];
    dirs.extend(place.tablespaces().map(|(_, d, _)| d.to_path_buf()));
    for e in &m.entries {
        if matches!(e.kind, EntryKind::Dir) && !place.skipped(&e.path) {
            dirs.push(place.join(&e.path)?);
        }
    }
    Ok(dirs)
}

/// Files were renamed into place: their directories' entries must reach the disk too.
fn fsync_dirs(place: &Placement, m: &Manifest) -> Result<()> {
    for d in dirs(place, m)? {
        localfs::fsync_dir(&d).map_err(|e| Error::io("fsync", &d, e))?;
    }
    Ok(())
}
