//! Parallel look-ahead for archive-push: pick the next `.ready` files, push them alongside
//! the requested one, and record each success durably in the spool. pgkeep never creates or
//! removes `.ready`/`.done` files: PostgreSQL's archiver owns them.

use std::path::Path;

use futures::StreamExt;

use super::push::{PushOutcome, Pushed, push_one};
use crate::command::blocking;
use crate::command::spool::Spool;
use crate::error::{Error, Result};
use crate::pg::WalFileName;
use crate::pipeline::{EncodeOptions, checksum::HashingReader};
use crate::repo::Repo;

/// If `file` was pushed ahead and the local file still has the recorded content, consume the
/// record and report success without touching the repository.
pub async fn claim(spool: Option<&Spool>, path: &Path, file: &str) -> Result<Option<Pushed>> {
    let Some(spool) = spool else { return Ok(None) };
    let Some(record) = spool.read_push_record(file) else {
        return Ok(None);
    };
    let local = {
        let path = path.to_path_buf();
        blocking(move || {
            let f = std::fs::File::open(&path).map_err(|e| Error::io("open wal file", &path, e))?;
            let mut r = HashingReader::new(f);
            std::io::copy(&mut r, &mut std::io::sink())
                .map_err(|e| Error::io("read wal file", &path, e))?;
            Ok(r.finish())
        })
        .await?
    };
    // The record is used once: PostgreSQL marks the file .done after we answer.
    spool.remove_push_record(file);
    if local.0.to_string() != record.sha256 || local.1 != record.size {
        tracing::warn!(
            file,
            "spool record does not match the file; pushing it again"
        );
        return Ok(None);
    }
    Ok(Some(Pushed {
        file: file.to_string(),
        outcome: PushOutcome::PushedAhead,
        plain_size: local.1,
        stored_size: 0,
        sha256: local.0,
    }))
}

/// The next `limit` files marked `.ready`, oldest first, not yet recorded as pushed.
/// Also drops records whose `.ready` file is gone (PostgreSQL finished with them).
pub fn plan(
    wal_dir: &Path,
    spool: &Spool,
    current: &WalFileName,
    repo: &Repo,
    limit: usize,
) -> Vec<WalFileName> {
    if limit == 0 {
        return Vec::new();
    }
    let seg = repo.info().seg_size;
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
pub async fn push_all(
    repo: &Repo,
    spool: Option<&Spool>,
    wal_dir: &Path,
    names: Vec<WalFileName>,
    opts: EncodeOptions,
) -> usize {
    let Some(spool) = spool else { return 0 };
    let seg = repo.info().seg_size;
    let width = names.len().max(1);
    futures::stream::iter(names)
        .map(|name| {
            let path = wal_dir.join(name.file_name(seg));
            async move {
                match push_one(repo, &path, &name, opts).await {
                    Ok(p) => record(spool, &p).map_err(|e| (p.file, e)),
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

fn record(spool: &Spool, p: &Pushed) -> Result<()> {
    spool.write_push_record(&p.file, p.sha256, p.plain_size)
}
