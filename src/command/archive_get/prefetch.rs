//! Parallel prefetch for archive-get: the next segments of the same timeline are fetched,
//! verified and written into the spool, so that replay never waits for the store. Prefetch is
//! a convenience: it never takes the space the segment PostgreSQL asked for needs, and never
//! holds more than a few segments in memory.

use std::future::Future;
use std::path::{Path, PathBuf};

use futures::StreamExt;

use super::fetch::get_one;
use crate::command::spool::Spool;
use crate::error::{Error, Result};
use crate::localfs;
use crate::pg::{WalFileName, WalSegSize};
use crate::repo::Repo;

/// Moves a prefetched `file` to `dest`; its checksum was verified when it was fetched.
pub fn take(spool: Option<&Spool>, file: &str, dest: &Path) -> Result<Option<u64>> {
    let Some(spool) = spool else { return Ok(None) };
    let src = spool.get_dir().join(file);
    let Ok(meta) = std::fs::metadata(&src) else {
        return Ok(None);
    };
    match localfs::rename_durable(&src, dest) {
        Ok(()) => Ok(Some(meta.len())),
        // Another file system (a configured spool_path): copy durably instead.
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            localfs::write_atomic(dest, |f| {
                std::io::copy(&mut std::fs::File::open(&src)?, f).map(|_| ())
            })
            .map_err(|e| Error::io("copy prefetched file to", dest, e))?;
            let _ = std::fs::remove_file(&src);
            Ok(Some(meta.len()))
        }
        Err(e) => Err(Error::io("move prefetched file to", dest, e)),
    }
}

/// The next `count` segments after `name` that are not in the spool yet. Removes spool files
/// outside that window (another timeline, already replayed, interrupted temporaries).
pub fn plan(
    spool: Option<&Spool>,
    name: &WalFileName,
    seg: WalSegSize,
    count: usize,
) -> Vec<WalFileName> {
    let (Some(spool), WalFileName::Segment(current)) = (spool, name) else {
        return Vec::new();
    };
    let window: Vec<String> = std::iter::successors(Some(current.next()), |s| Some(s.next()))
        .take(count)
        .map(|s| s.file_name(seg))
        .collect();
    let present = spool.prefetched();
    for stale in present.iter().filter(|p| !window.contains(p)) {
        let _ = std::fs::remove_file(spool.get_dir().join(stale));
    }
    if let Ok(entries) = std::fs::read_dir(spool.get_dir()) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    window
        .into_iter()
        .filter(|w| !present.contains(w))
        .filter_map(|w| WalFileName::parse(&w, seg).ok())
        .collect()
}

/// Segments fetched at once: each holds its stored object in memory while it is written.
const PARALLEL: usize = 4;

/// Free space prefetch always leaves on the spool's file system, besides the requested
/// segment itself (which may land on the same file system).
const RESERVE: u64 = 64 << 20;

/// How many of `wanted` segments the spool's file system can take while leaving room for
/// the requested segment, and a reserve for PostgreSQL itself. Unknown space: none.
pub fn affordable(spool: Option<&Spool>, seg: WalSegSize, wanted: usize) -> usize {
    let Some(spool) = spool else { return 0 };
    // The spool may not exist yet: its nearest existing ancestor is on the same file system.
    let dir = spool.get_dir();
    let probe = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("."));
    let Ok(free) = localfs::available_space(probe) else {
        return 0;
    };
    let seg = u64::from(seg.bytes());
    let spare = free.saturating_sub(seg + RESERVE) / seg;
    let n = wanted.min(usize::try_from(spare).unwrap_or(usize::MAX));
    if n < wanted {
        tracing::warn!(
            free,
            wanted,
            prefetching = n,
            "little free space: prefetching fewer segments"
        );
    }
    n
}

/// Fetches `names` concurrently from the repository into the spool; returns how many arrived.
pub async fn fetch_all(repo: Repo, spool: Option<Spool>, names: Vec<WalFileName>) -> usize {
    let seg = repo.info().seg_size;
    fetch_all_with(spool, seg, names, move |name, dest| {
        let repo = repo.clone();
        async move { get_one(&repo, &name, &dest).await }
    })
    .await
}

/// Fetches `names` concurrently into the spool with `fetch` (from the repository, or from
/// pgkeepd); returns how many arrived. Missing files and errors are skipped: the later call for
/// that file fetches it itself and reports properly.
pub async fn fetch_all_with<F, Fut>(
    spool: Option<Spool>,
    seg: WalSegSize,
    names: Vec<WalFileName>,
    fetch: F,
) -> usize
where
    F: Fn(WalFileName, PathBuf) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let Some(spool) = spool else { return 0 };
    if names.is_empty() {
        return 0;
    }
    if let Err(e) = std::fs::create_dir_all(spool.get_dir()) {
        tracing::warn!(error = %e, "cannot create the prefetch spool; not prefetching");
        return 0;
    }
    let width = names.len().clamp(1, PARALLEL);
    futures::stream::iter(names)
        .map(|name| {
            let dest = spool.get_dir().join(name.file_name(seg));
            fetch(name, dest)
        })
        .buffer_unordered(width)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await
}
