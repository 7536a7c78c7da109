//! Parallel look-ahead for archive-push: pick the next `.ready` files, push them alongside
//! the requested one, and record each success durably in the spool. pgkeep never creates or
//! removes `.ready`/`.done` files: PostgreSQL's archiver owns them.

use std::path::Path;

use futures::StreamExt;

use super::push::{PushOutcome, Pushed, check, prepare, store};
use crate::command::spool::{FileIdentity, Spool};
use crate::error::{Error, Result};
use crate::pg::{WalFileName, WalSegSize};
use crate::repo::Digest;
use crate::repo::Repo;

/// Where look-ahead pushes go: the repository itself, or pgkeepd's service.
pub trait Pusher {
    /// Pushes the file at `path`; reads (CPU work) only while holding a `cpu` permit.
    async fn push(
        &self,
        path: &Path,
        name: &WalFileName,
        cpu: &tokio::sync::Semaphore,
    ) -> Result<Pushed>;
}

impl Pusher for Repo {
    async fn push(
        &self,
        path: &Path,
        name: &WalFileName,
        cpu: &tokio::sync::Semaphore,
    ) -> Result<Pushed> {
        let prepared = {
            let _permit = cpu.acquire().await;
            prepare(path, name.segment().is_some(), self.compressing()).await?
        };
        check(&prepared, path, name, self)?;
        store(self, name, prepared).await
    }
}

/// If `file` was pushed ahead into `repository` and the local file is still the one that was
/// read (same device, inode, size and modification time), consume the record and report
/// success without touching the repository.
pub async fn claim(
    spool: Option<&Spool>,
    repository: &str,
    path: &Path,
    file: &str,
) -> Result<Option<Pushed>> {
    let Some(spool) = spool else { return Ok(None) };
    let Some(record) = spool.read_push_record(file) else {
        return Ok(None);
    };
    // The record is used once: PostgreSQL marks the file .done after we answer.
    spool.remove_push_record(file);
    let meta = std::fs::metadata(path).map_err(|e| Error::io("stat wal file", path, e))?;
    let identity = FileIdentity::of(&meta);
    if record.repository != repository {
        tracing::warn!(
            file,
            recorded = record.repository,
            repository,
            "pushed ahead into another repository; pushing it here"
        );
        return Ok(None);
    }
    let sha256 = Digest::parse(&record.sha256).ok();
    match sha256 {
        Some(sha256) if identity == record.file => Ok(Some(Pushed {
            file: file.to_string(),
            outcome: PushOutcome::PushedAhead,
            plain_size: identity.size,
            stored_size: 0,
            sha256,
            identity: Some(identity),
        })),
        _ => {
            tracing::warn!(
                file,
                "the file changed since it was pushed ahead; pushing it again"
            );
            Ok(None)
        }
    }
}

/// The next `limit` files marked `.ready`, oldest first, not yet recorded as pushed.
/// Also drops records whose `.ready` file is gone (PostgreSQL finished with them).
pub fn plan(
    wal_dir: &Path,
    spool: &Spool,
    current: &WalFileName,
    seg: WalSegSize,
    limit: usize,
) -> Vec<WalFileName> {
    if limit == 0 {
        return Vec::new();
    }
    let current = current.file_name(seg);
    let ready: Vec<String> = std::fs::read_dir(wal_dir.join("archive_status"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_suffix(".ready").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let recorded = spool.push_records();
    for stale in recorded.iter().filter(|r| !ready.contains(r)) {
        spool.remove_push_record(stale);
    }
    let mut next: Vec<WalFileName> = ready
        .iter()
        .filter(|n| **n != current && !recorded.contains(n))
        .filter_map(|n| WalFileName::parse(n, seg).ok())
        .collect();
    next.sort_by_key(|n| n.file_name(seg));
    next.truncate(limit);
    next
}

/// Pushes `names` concurrently; records each success. Returns how many succeeded. A failure
/// is only logged: PostgreSQL will ask for that file itself and get the real error then.
/// Encoding is CPU-bound, so at most one file per core is read and compressed at a time (which
/// also bounds memory); uploads overlap freely.
pub async fn push_all(
    to: &impl Pusher,
    seg: WalSegSize,
    repository: &str,
    spool: Option<&Spool>,
    wal_dir: &Path,
    names: Vec<WalFileName>,
) -> usize {
    let Some(spool) = spool else { return 0 };
    let width = names.len().max(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let cpu = tokio::sync::Semaphore::new(cores);
    futures::stream::iter(names)
        .map(|name| {
            let path = wal_dir.join(name.file_name(seg));
            let cpu = &cpu;
            async move {
                match to.push(&path, &name, cpu).await {
                    Ok(p) => record(spool, repository, &p).map_err(|e| (p.file, e)),
                    Err(e) => Err((name.file_name(seg), e)),
                }
            }
        })
        .buffer_unordered(width)
        .filter_map(|r| async move {
            match r {
                Ok(()) => Some(()),
                Err((file, e)) => {
                    tracing::warn!(file, error = %e.one_line(), "look-ahead push failed; PostgreSQL will retry it");
                    None
                }
            }
        })
        .count()
        .await
}

fn record(spool: &Spool, repository: &str, p: &Pushed) -> Result<()> {
    match p.identity {
        Some(id) => spool.write_push_record(&p.file, repository, p.sha256, id),
        None => Ok(()),
    }
}
