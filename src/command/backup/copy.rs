//! The copy phase of a backup: pump the BASE_BACKUP stream into per-archive demux workers,
//! and encode and upload their parts with bounded concurrency. Memory stays under the
//! configured cap: every part holds a share of it until it is stored. The pump, the workers
//! and the uploader share one cancellation token: the first to fail stops the others.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::copy_error::{CopyError, first_cause};
use super::demux::{self, DemuxContext, Item};
use super::pages::Parent;
use super::progress::Progress;
use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{BackupId, EntryKind, ManifestEntry};
use crate::pg::replication::base_backup::{BackupEvent, BaseBackup, BaseBackupOptions};
use crate::pg::replication::{ReplConn, ReplError};
use crate::pg::{Lsn, Timeline};
use crate::repo::{BackupPartKey, Digest, Repo};

/// What the copy phase produced.
#[derive(Debug)]
pub struct Copied {
    pub start: Lsn,
    pub stop: Lsn,
    pub timeline: Timeline,
    /// The timeline the source was on when the backup ended (differs after a failover).
    pub stop_timeline: Timeline,
    pub entries: Vec<ManifestEntry>,
    /// PostgreSQL's backup manifest, as the server sent it (when asked for).
    pub pg_manifest: Option<Vec<u8>>,
    /// Bytes the source sent (archives and manifest).
    pub received: u64,
}

/// What to ask the source for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    /// PostgreSQL's own backup manifest (17+: what the next incremental uploads).
    pub manifest: bool,
    /// An incremental from the server's WAL summaries, on the manifest uploaded on this
    /// connection.
    pub summaries: bool,
}

/// How the copy ended.
#[derive(Debug)]
pub enum Streamed {
    Copied(Copied),
    /// The server refused an incremental from its WAL summaries before sending anything, for
    /// want of a prerequisite (SQLSTATE 55000: the summaries do not cover the range, or
    /// summarization is off): the connection is ready for another BASE_BACKUP. Any other
    /// error fails the backup.
    Refused(String),
}

/// How much a backup may do at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Parts encoded and uploaded at once.
    pub concurrency: usize,
    /// Cap on part bytes (plaintext and encoded) in flight.
    pub memory_mib: usize,
    /// The source's send rate cap (BASE_BACKUP MAX_RATE, kB/s).
    pub max_rate_kb: Option<u32>,
}

type Worker = tokio::task::JoinHandle<std::result::Result<(), CopyError>>;

pub async fn stream(
    repo: &Repo,
    conn: &mut ReplConn,
    id: &BackupId,
    parent: Option<Arc<Parent>>,
    asked: Asked,
    limits: Limits,
) -> Result<Streamed> {
    // With data checksums, pgkeep checks pages itself: the server's own check fails the whole
    // backup on one bad page, where pgkeep records it and goes on.
    let checksums = conn
        .show("data_checksums")
        .await
        .map_err(super::pg_error)?
        .is_some_and(|v| v == "on");
    let bb_opts = BaseBackupOptions {
        label: format!("pgkeep {id}"),
        fast_checkpoint: true,
        manifest: asked.manifest,
        incremental: asked.summaries,
        verify_checksums: false,
        max_rate_kb: limits.max_rate_kb,
    };
    let mut bb = BaseBackup::start(conn, &bb_opts)
        .await
        .map_err(super::pg_error)?;
    // PostgreSQL checks an incremental's summaries before it sends anything: a refusal then
    // leaves nothing to clean up, and the caller may take the backup another way.
    let first = match bb.next().await {
        Err(ReplError::Prerequisite(why)) if asked.summaries => {
            return Ok(Streamed::Refused(why));
        }
        other => other.map_err(super::pg_error)?,
    };
    // Cancelled by the first task to fail, and when this future ends or is dropped (on a
    // signal): no task of the copy outlives it.
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let (item_tx, item_rx) = mpsc::channel::<Item>(4);
    let uploader = tokio::spawn(upload_all(
        repo.clone(),
        id.clone(),
        item_rx,
        limits.concurrency,
        cancel.clone(),
    ));
    let budget = Arc::new(Semaphore::new(limits.memory_mib * 1024));

    let mut progress = Progress::new();
    let (mut start, mut stop) = (None, None);
    let mut current: Option<(mpsc::Sender<Bytes>, Worker)> = None;
    let mut pg_manifest: Option<Vec<u8>> = None;
    let mut received = 0u64;
    let mut pending = Some(first);
    let pumped: std::result::Result<(), CopyError> = async {
        loop {
            let next = match pending.take() {
                Some(first) => first,
                // Stops reading the stream as soon as another task fails.
                None => cancel
                    .run_until_cancelled(bb.next())
                    .await
                    .ok_or(CopyError::Cancelled)?
                    .map_err(super::pg_error)?,
            };
            let Some(event) = next else { break };
            match event {
                BackupEvent::Start { lsn, timeline } => start = Some((lsn, timeline)),
                BackupEvent::End { lsn, timeline } => stop = Some((lsn, timeline)),
                BackupEvent::Archive { name, .. } => {
                    finish(current.take()).await?;
                    if let Some(total) = bb.estimated_bytes() {
                        progress.set_total(total);
                    }
                    let prefix = name
                        .strip_suffix(".tar")
                        .filter(|n| *n != "base")
                        .map(|oid| format!("pg_tblspc/{oid}"));
                    let (tx, rx) = mpsc::channel::<Bytes>(16);
                    let items = item_tx.clone();
                    let ctx = DemuxContext {
                        backup: id.clone(),
                        verify_from: start
                            .filter(|_| checksums)
                            .map(|(lsn, _): (Lsn, Timeline)| lsn.0),
                        parent: parent.clone(),
                        summaries: asked.summaries,
                        budget: Arc::clone(&budget),
                        cancel: cancel.clone(),
                    };
                    let worker =
                        tokio::task::spawn_blocking(move || demux::demux(rx, prefix, items, ctx));
                    current = Some((tx, worker));
                }
                BackupEvent::Manifest => {
                    finish(current.take()).await?;
                    pg_manifest = Some(Vec::new());
                }
                BackupEvent::Data(bytes) => {
                    progress.add(bytes.len() as u64);
                    received += bytes.len() as u64;
                    if let (None, Some(m)) = (&current, &mut pg_manifest) {
                        m.extend_from_slice(&bytes);
                    } else if let Some((tx, _)) = &current {
                        // A worker closes its input only after failing, and it cancels the
                        // token first: the next event is not read, and the failure is reported
                        // when the worker is joined.
                        let _ = cancel.run_until_cancelled(tx.send(bytes)).await;
                    }
                }
                BackupEvent::Progress(_) => {}
            }
        }
        finish(current.take()).await
    }
    .await;
    if pumped.is_err() {
        // The source failed (or a worker, which cancelled already): stop the others.
        cancel.cancel();
    }
    progress.finish();
    // After a failure mid-stream a tar worker stops on the token; joining it releases its
    // hold on the uploader's channel — else the uploader never finishes.
    let worker = finish(current.take()).await;
    drop(item_tx);
    let uploaded = uploader
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("uploader failed: {e}")))?;
    let (uploaded, entries) = match uploaded {
        Ok(entries) => (Ok(()), entries),
        Err(e) => (Err(e), Vec::new()),
    };
    // The first failure cancelled the others: report it, not their cancellation. A failed
    // upload comes first, as the workers' "the uploader stopped" follows from it.
    first_cause([uploaded, pumped, worker])?;
    let ((start, timeline), (stop, stop_timeline)) = start.zip(stop).ok_or_else(|| {
        Error::new(
            ErrorKind::Postgres,
            "BASE_BACKUP ended without start and stop positions",
        )
        .hint("the source server closed the backup early; see its log")
    })?;
    Ok(Streamed::Copied(Copied {
        start,
        stop,
        timeline,
        stop_timeline,
        entries,
        pg_manifest,
        received,
    }))
}

/// Closes a worker's input and waits for it to read to the end.
async fn finish(
    worker: Option<(mpsc::Sender<Bytes>, Worker)>,
) -> std::result::Result<(), CopyError> {
    let Some((tx, handle)) = worker else {
        return Ok(());
    };
    drop(tx);
    handle
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("tar worker failed: {e}")))?
}

/// What the uploader learnt of one file's own parts: bytes stored, and each part's sha256.
#[derive(Default)]
struct Stored {
    bytes: u64,
    sha256: HashMap<u32, Digest>,
}

/// Encodes and stores each part (`concurrency` at a time, so compression runs on every core),
/// then completes the entries with the bytes this backup stored for each file and the sha256
/// of each of its parts. On its own failure it cancels the copy; once cancelled it stops.
pub(super) async fn upload_all(
    repo: Repo,
    id: BackupId,
    items: mpsc::Receiver<Item>,
    concurrency: usize,
    cancel: CancellationToken,
) -> std::result::Result<Vec<ManifestEntry>, CopyError> {
    // Ending early drops the uploads in flight, which aborts them: a partly stored backup
    // has no manifest, and the next backup's cleanup removes what it stored.
    let uploaded = cancel
        .run_until_cancelled(upload(&repo, &id, items, concurrency))
        .await
        .unwrap_or(Err(CopyError::Cancelled));
    if uploaded.is_err() {
        cancel.cancel();
    }
    let (mut entries, mut stored) = uploaded?;
    for e in &mut entries {
        if let EntryKind::File { layers, .. } = &mut e.kind
            && let Some(own) = layers.last_mut().filter(|l| l.backup == id)
        {
            let mut s = stored.remove(&e.path).unwrap_or_default();
            own.stored_size = s.bytes;
            own.part_sha256 = (0..own.parts)
                .map(|p| {
                    s.sha256.remove(&p).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Internal,
                            format!("part {p} of {} was never stored", e.path),
                        )
                    })
                })
                .collect::<Result<_>>()?;
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Stores every part received; returns the entries in stream order and what each file stored.
async fn upload(
    repo: &Repo,
    id: &BackupId,
    mut items: mpsc::Receiver<Item>,
    concurrency: usize,
) -> std::result::Result<(Vec<ManifestEntry>, HashMap<String, Stored>), CopyError> {
    type Done = (String, u32, u64, Digest);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut uploads: JoinSet<Result<Done>> = JoinSet::new();
    let mut entries = Vec::new();
    let mut stored: HashMap<String, Stored> = HashMap::new();
    let mut add = |done: std::result::Result<Result<Done>, tokio::task::JoinError>| {
        let (path, part, n, sha) =
            done.map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))??;
        let s = stored.entry(path).or_default();
        s.bytes += n;
        s.sha256.insert(part, sha);
        Result::<()>::Ok(())
    };
    while let Some(item) = items.recv().await {
        let (path, part, plain, permit) = match item {
            Item::Entry(e) => {
                entries.push(e);
                continue;
            }
            Item::Part {
                path,
                part,
                plain,
                permit,
            } => (path, part, plain, permit),
        };
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let key = BackupPartKey {
            backup: id.clone(),
            path: path.clone(),
            part,
        };
        let repo = repo.clone();
        uploads.spawn(async move {
            let (_slot, _memory) = (slot, permit);
            let sealer = repo.clone();
            let sealed = blocking(move || sealer.seal_bytes(key, plain)).await?;
            let (n, sha) = (sealed.stored_size(), sealed.sha256());
            repo.store(&sealed).await?;
            Ok((path, part, n, sha))
        });
        // Reap finished uploads as we go, so a failure stops the backup early.
        while let Some(done) = uploads.try_join_next() {
            add(done)?;
        }
    }
    while let Some(done) = uploads.join_next().await {
        add(done)?;
    }
    Ok((entries, stored))
}
