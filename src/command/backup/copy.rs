//! The copy phase of a backup: pump the BASE_BACKUP stream into per-archive demux workers,
//! and upload their files with bounded concurrency. Memory stays bounded by the channel sizes
//! (plus the largest file being encoded).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::demux::{self, Body, Item};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{BackupId, EntryKind, ManifestEntry};
use crate::pg::replication::ReplConn;
use crate::pg::replication::base_backup::{BackupEvent, BaseBackup, BaseBackupOptions};
use crate::pg::{Lsn, Timeline};
use crate::pipeline::EncodeOptions;
use crate::repo::{Repo, RepoKey};

/// What the copy phase produced.
#[derive(Debug)]
pub struct Copied {
    pub start: Lsn,
    pub stop: Lsn,
    pub timeline: Timeline,
    pub entries: Vec<ManifestEntry>,
}

type Worker = tokio::task::JoinHandle<std::result::Result<(), String>>;

pub async fn stream(
    repo: &Repo,
    conn: &mut ReplConn,
    id: &BackupId,
    opts: EncodeOptions,
    concurrency: usize,
) -> Result<Copied> {
    // With data checksums, pgkeep checks pages itself: the server's own check fails the whole
    // backup on one bad page, where pgkeep records it and goes on.
    let checksums = conn
        .simple_query("SHOW data_checksums")
        .await
        .map_err(super::pg_error)?
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .is_some_and(|v| v == "on");
    let bb_opts = BaseBackupOptions {
        label: format!("pgkeep {id}"),
        fast_checkpoint: true,
        manifest: false,
        verify_checksums: false,
    };
    let mut bb = BaseBackup::start(conn, &bb_opts)
        .await
        .map_err(super::pg_error)?;
    let (item_tx, item_rx) = mpsc::channel::<Item>(4);
    let uploader = tokio::spawn(upload_all(repo.clone(), id.clone(), item_rx, concurrency));

    let (mut start, mut stop) = (None, None);
    let mut current: Option<(mpsc::Sender<Bytes>, Worker)> = None;
    while let Some(event) = bb.next().await.map_err(super::pg_error)? {
        match event {
            BackupEvent::Start { lsn, timeline } => start = Some((lsn, timeline)),
            BackupEvent::End { lsn, timeline } => stop = Some((lsn, timeline)),
            BackupEvent::Archive { name, .. } => {
                finish(current.take()).await?;
                let prefix = name
                    .strip_suffix(".tar")
                    .filter(|n| *n != "base")
                    .map(|oid| format!("pg_tblspc/{oid}"));
                let (tx, rx) = mpsc::channel::<Bytes>(16);
                let items = item_tx.clone();
                let verify_from = start
                    .filter(|_| checksums)
                    .map(|(lsn, _): (Lsn, Timeline)| lsn.0);
                let worker = tokio::task::spawn_blocking(move || {
                    demux::demux(rx, prefix, items, opts, verify_from)
                });
                current = Some((tx, worker));
            }
            BackupEvent::Manifest => finish(current.take()).await?,
            BackupEvent::Data(bytes) => {
                if let Some((tx, _)) = &current {
                    // A closed channel means the worker failed; `finish` reports why.
                    let _ = tx.send(bytes).await;
                }
            }
            BackupEvent::Progress(_) => {}
        }
    }
    finish(current.take()).await?;
    drop(item_tx);
    let entries = uploader
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("uploader failed: {e}")))??;
    let ((start, timeline), (stop, _)) = start.zip(stop).ok_or_else(|| {
        Error::new(
            ErrorKind::Postgres,
            "BASE_BACKUP ended without start and stop positions",
        )
        .hint("the source server closed the backup early; see its log")
    })?;
    Ok(Copied {
        start,
        stop,
        timeline,
        entries,
    })
}

async fn finish(worker: Option<(mpsc::Sender<Bytes>, Worker)>) -> Result<()> {
    let Some((tx, handle)) = worker else {
        return Ok(());
    };
    drop(tx);
    handle
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("tar worker failed: {e}")))?
        .map_err(|e| {
            Error::new(ErrorKind::InvalidInput, e).hint("the source sent a malformed backup stream")
        })
}

/// Stores each file as `backups/<id>/files/<path>`, `concurrency` at a time.
async fn upload_all(
    repo: Repo,
    id: BackupId,
    mut items: mpsc::Receiver<Item>,
    concurrency: usize,
) -> Result<Vec<ManifestEntry>> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut uploads: JoinSet<Result<ManifestEntry>> = JoinSet::new();
    let mut entries = Vec::new();
    while let Some(item) = items.recv().await {
        let kind = match item.body {
            Body::Dir => EntryKind::Dir,
            Body::Link(target) => EntryKind::Link { target },
            Body::File(encoded, bad_pages) => {
                if !bad_pages.is_empty() {
                    tracing::warn!(
                        file = item.path,
                        blocks = ?bad_pages,
                        "page checksum failed: recorded in the manifest; the backup goes on"
                    );
                }
                let permit = Arc::clone(&slots)
                    .acquire_owned()
                    .await
                    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                let (repo, key) = (
                    repo.clone(),
                    RepoKey::BackupFile {
                        backup: id.to_string(),
                        path: item.path.clone(),
                    },
                );
                let (path, mode, mtime) = (item.path, item.mode, item.mtime);
                uploads.spawn(async move {
                    let _permit = permit;
                    let kind = EntryKind::File {
                        size: encoded.header.plain_size,
                        sha256: encoded.header.sha256.to_string(),
                        stored_size: encoded.bytes.len() as u64,
                        bad_pages,
                    };
                    repo.put(&key, encoded.bytes.into()).await?;
                    Ok(ManifestEntry {
                        path,
                        mode,
                        mtime,
                        kind,
                    })
                });
                continue;
            }
        };
        entries.push(ManifestEntry {
            path: item.path,
            mode: item.mode,
            mtime: item.mtime,
            kind,
        });
    }
    while let Some(done) = uploads.join_next().await {
        entries.push(done.map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))??);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}
