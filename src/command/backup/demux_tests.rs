//! Unit tests of the tar side of the copy in isolation: a tar archive synthesized in memory is
//! fed in chunks through the channel the pump fills, and what the demuxer hands on is
//! collected into a vector (the sink). No PostgreSQL, no repository.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::copy_error::CopyError;
use super::demux::{DemuxContext, Item, demux};
use crate::error::{Error, ErrorKind};
use crate::manifest::{BackupId, BackupKind, EntryKind, ManifestEntry, PART_SIZE};
use crate::repo::Digest;

/// Chunks as the pump forwards them: sizes unrelated to tar's 512-byte blocks.
const CHUNK: usize = 65_537;
const MTIME: u64 = 1_700_000_000;
/// How long a stopped task may take to notice; never reached when it works.
pub(super) const PROMPTLY: Duration = Duration::from_secs(20);

pub(super) fn backup_id() -> BackupId {
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-21T22:00:00Z").unwrap();
    BackupId::new(at.with_timezone(&chrono::Utc), BackupKind::Full)
}

/// A full backup's context with a memory cap large enough for everything the sink holds.
pub(super) fn context() -> DemuxContext {
    DemuxContext {
        backup: backup_id(),
        verify_from: None,
        parent: None,
        summaries: false,
        budget: Arc::new(Semaphore::new(1 << 20)),
        cancel: CancellationToken::new(),
    }
}

/// A file larger than one part: it is stored as two.
pub(super) fn big_file() -> Vec<u8> {
    (0..PART_SIZE + 12_345)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

pub(super) fn header(kind: tar::EntryType, size: usize, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_mtime(MTIME);
    h
}

/// An archive as BASE_BACKUP sends one: a directory, a small file, a symlink and, when
/// given, a large file.
pub(super) fn archive(big: Option<&[u8]>) -> tar::Builder<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Directory, 0, 0o700);
    b.append_data(&mut h, "base/", std::io::empty()).unwrap();
    let mut h = header(tar::EntryType::Regular, 3, 0o600);
    b.append_data(&mut h, "PG_VERSION", &b"15\n"[..]).unwrap();
    let mut h = header(tar::EntryType::Symlink, 0, 0o777);
    b.append_link(&mut h, "pg_tblspc/16400", "/mnt/ts").unwrap();
    if let Some(big) = big {
        let mut h = header(tar::EntryType::Regular, big.len(), 0o600);
        b.append_data(&mut h, "base/big", big).unwrap();
    }
    b
}

/// Appends an entry named `../escape`, which the tar crate's own writer refuses to write.
fn append_escape(b: &mut tar::Builder<Vec<u8>>) {
    let mut h = header(tar::EntryType::Regular, 1, 0o600);
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
}

/// Starts a demux worker fed with `tar` in chunks; returns it and what it hands on.
pub(super) fn start(
    tar: Vec<u8>,
    prefix: Option<&str>,
    ctx: DemuxContext,
) -> (JoinHandle<Result<(), CopyError>>, mpsc::Receiver<Item>) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let (item_tx, item_rx) = mpsc::channel::<Item>(4);
    let prefix = prefix.map(str::to_string);
    let worker = tokio::task::spawn_blocking(move || demux(rx, prefix, item_tx, ctx));
    tokio::spawn(async move {
        let tar = Bytes::from(tar);
        for at in (0..tar.len()).step_by(CHUNK) {
            if tx
                .send(tar.slice(at..tar.len().min(at + CHUNK)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    (worker, item_rx)
}

/// Demultiplexes `tar` into the in-memory sink; returns it and how the worker ended.
pub(super) async fn run(
    tar: Vec<u8>,
    prefix: Option<&str>,
    ctx: DemuxContext,
) -> (Vec<Item>, Result<(), CopyError>) {
    let (worker, mut items) = start(tar, prefix, ctx);
    let mut sink = Vec::new();
    while let Some(item) = items.recv().await {
        sink.push(item);
    }
    (sink, worker.await.unwrap())
}

async fn run_ok(tar: Vec<u8>, prefix: Option<&str>) -> Vec<Item> {
    let ctx = context();
    let cancel = ctx.cancel.clone();
    let (sink, ended) = run(tar, prefix, ctx).await;
    ended.unwrap();
    assert!(
        !cancel.is_cancelled(),
        "a successful worker cancels nothing"
    );
    sink
}

pub(super) fn entries(sink: &[Item]) -> Vec<&ManifestEntry> {
    (sink.iter())
        .filter_map(|i| match i {
            Item::Entry(e) => Some(e),
            Item::Part { .. } => None,
        })
        .collect()
}

/// The parts of `path`, in stream order: (part number, plaintext).
fn parts<'a>(sink: &'a [Item], path: &str) -> Vec<(u32, &'a Bytes)> {
    (sink.iter())
        .filter_map(|i| match i {
            Item::Part {
                path: p,
                part,
                plain,
                ..
            } if p == path => Some((*part, plain)),
            _ => None,
        })
        .collect()
}

/// A file entry's size, sha256 and its own layer's part count.
fn file_of(e: &ManifestEntry) -> (u64, Digest, u32) {
    match &e.kind {
        EntryKind::File {
            size,
            sha256,
            bad_pages,
            layers,
        } => {
            assert!(bad_pages.is_empty());
            assert_eq!(layers.len(), 1, "a full backup's file has one layer");
            let own = &layers[0];
            assert_eq!(
                (&own.backup, own.delta, own.size),
                (&backup_id(), false, *size)
            );
            assert_eq!(own.stored_size, 0, "filled in by the uploader");
            (*size, *sha256, own.parts)
        }
        other => panic!("{} is not a file: {other:?}", e.path),
    }
}

#[tokio::test]
async fn entries_come_in_stream_order_with_kinds_modes_and_digests() {
    let sink = run_ok(archive(None).into_inner().unwrap(), None).await;
    let found = entries(&sink);
    let paths: Vec<&str> = found.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["base", "PG_VERSION", "pg_tblspc/16400"]);
    assert!(found.iter().all(|e| e.mtime == MTIME as i64));
    assert_eq!((&found[0].kind, found[0].mode), (&EntryKind::Dir, 0o700));
    assert_eq!(file_of(found[1]), (3, Digest::of(b"15\n"), 1));
    assert_eq!(found[1].mode, 0o600);
    let link = EntryKind::Link {
        target: "/mnt/ts".into(),
    };
    assert_eq!(found[2].kind, link);
    // The small file's one part comes before its entry, as the uploader expects.
    assert_eq!(
        parts(&sink, "PG_VERSION"),
        [(0, &Bytes::from_static(b"15\n"))]
    );
    assert!(matches!(&sink[1], Item::Part { path, .. } if path == "PG_VERSION"));
}

#[tokio::test]
async fn a_file_larger_than_a_part_is_split_into_parts_that_rebuild_it() {
    let big = big_file();
    let sink = run_ok(archive(Some(&big)).into_inner().unwrap(), None).await;
    let found = entries(&sink);
    let entry = found.iter().find(|e| e.path == "base/big").unwrap();
    assert_eq!(file_of(entry), (big.len() as u64, Digest::of(&big), 2));
    let split = parts(&sink, "base/big");
    let numbers: Vec<u32> = split.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [0, 1]);
    assert_eq!(split[0].1.len(), PART_SIZE);
    let joined: Vec<u8> = split.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    assert!(
        joined == big,
        "the parts' plaintexts concatenate to the file"
    );
}

#[tokio::test]
async fn a_tablespace_archive_is_placed_under_its_prefix() {
    let sink = run_ok(archive(None).into_inner().unwrap(), Some("pg_tblspc/16400")).await;
    let paths: Vec<&str> = entries(&sink).iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "pg_tblspc/16400/base",
            "pg_tblspc/16400/PG_VERSION",
            "pg_tblspc/16400/pg_tblspc/16400"
        ]
    );
}

#[tokio::test]
async fn an_entry_escaping_the_data_directory_is_refused_and_cancels_the_copy() {
    let mut b = archive(None);
    append_escape(&mut b);
    let ctx = context();
    let cancel = ctx.cancel.clone();
    let (sink, ended) = run(b.into_inner().unwrap(), None, ctx).await;
    let err = ended.unwrap_err();
    assert!(
        matches!(&err, CopyError::Path(p) if p == "../escape"),
        "{err:?}"
    );
    assert!(
        cancel.is_cancelled(),
        "a failed worker stops the other tasks"
    );
    // What came before the bad entry was handed on.
    assert_eq!(entries(&sink).len(), 3);
    let err = Error::from(err);
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.message(), "unsafe path '../escape' in backup stream");
    assert_eq!(
        err.hint_text(),
        Some("the source sent a malformed backup stream")
    );
}

#[tokio::test]
async fn a_stream_ending_inside_a_file_names_the_file() {
    let mut tar = archive(None).into_inner().unwrap();
    // The directory's header, the small file's header and one byte of its contents.
    tar.truncate(2 * 512 + 1);
    let err = run(tar, None, context()).await.1.unwrap_err();
    assert!(
        matches!(&err, CopyError::Read { path, .. } if path == "PG_VERSION"),
        "{err:?}"
    );
    let err = Error::from(err);
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(
        err.message()
            .starts_with("cannot read PG_VERSION from the backup stream: ")
    );
}

#[tokio::test]
async fn cancellation_stops_a_worker_waiting_for_input() {
    let ctx = context();
    let cancel = ctx.cancel.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let (item_tx, _items) = mpsc::channel::<Item>(4);
    let worker = tokio::task::spawn_blocking(move || demux(rx, None, item_tx, ctx));
    // Half a tar header: the worker waits for the rest, and the input stays open.
    tx.send(Bytes::from(vec![0u8; 256])).await.unwrap();
    cancel.cancel();
    let stopped = timeout(PROMPTLY, worker).await.expect("the worker stops");
    assert!(matches!(stopped.unwrap(), Err(CopyError::Cancelled)));
    drop(tx);
}

#[tokio::test]
async fn cancellation_stops_a_worker_waiting_for_a_stalled_uploader() {
    let ctx = context();
    let cancel = ctx.cancel.clone();
    let big = big_file();
    // Nobody reads the items: the worker fills their channel and waits for room.
    let (worker, _items) = start(archive(Some(&big)).into_inner().unwrap(), None, ctx);
    cancel.cancel();
    let stopped = timeout(PROMPTLY, worker).await.expect("the worker stops");
    assert!(matches!(stopped.unwrap(), Err(CopyError::Cancelled)));
}
