//! Parallel prefetch for archive-get: the next segments of the same timeline are fetched,
//! verified and written into the spool, so that replay never waits for the store.

use std::path::Path;

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

/// Fetches `names` concurrently into the spool; returns how many arrived. Missing files and
/// errors are skipped: the later call for that file fetches it itself and reports properly.
pub async fn fetch_all(repo: Repo, spool: Option<Spool>, names: Vec<WalFileName>) -> usize {
    let Some(spool) = spool else { return 0 };
    if names.is_empty() {
        return 0;
    }
    if let Err(e) = std::fs::create_dir_all(spool.get_dir()) {
        tracing::warn!(error = %e, "cannot create the prefetch spool; not prefetching");
        return 0;
    }
    let seg = repo.info().seg_size;
    let width = names.len();
    futures::stream::iter(names)
        .map(|name| {
            let dest = spool.get_dir().join(name.file_name(seg));
            let repo = &repo;
            async move { get_one(repo, &name, &dest).await }
        })
        .buffer_unordered(width)
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await
}
