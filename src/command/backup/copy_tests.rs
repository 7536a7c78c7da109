//! Unit tests of the uploader side of the copy: a synthesized tar archive demultiplexed into
//! `upload_all`, storing into a repository in a temporary directory; and the cancellation
//! that ties the copy's tasks together. No PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::copy::upload_all;
use super::copy_error::{CopyError, first_cause};
use super::demux::Item;
use super::demux_tests::{PROMPTLY, archive, backup_id, big_file, context, start};
use crate::config::Raw;
use crate::error::ErrorKind;
use crate::manifest::{EntryKind, ManifestEntry};
use crate::pg::{PgVersion, SystemId, WalSegSize};
use crate::repo::create::create;
use crate::repo::{BackupPartKey, CreateMode, Digest, Repo, RepoInfo};

async fn local_repo(dir: &Path) -> Repo {
    let toml = format!("[repository]\npath = \"{}\"\n", dir.display());
    let cfg = Raw::parse(&toml, Path::new("t"), &Default::default())
        .and_then(Raw::resolve)
        .unwrap()
        .repository;
    let identity = RepoInfo::new(
        SystemId(7),
        PgVersion::new(15).unwrap(),
        WalSegSize::DEFAULT,
        CreateMode::Enforced,
    );
    create(&cfg, identity).await.unwrap().repo
}

/// The plaintexts of a file's parts as stored, each checked against its recorded sha256.
async fn stored_parts(repo: &Repo, entry: &ManifestEntry) -> Vec<u8> {
    let EntryKind::File { layers, .. } = &entry.kind else {
        panic!("{} is not a file", entry.path);
    };
    let own = &layers[0];
    assert_eq!(own.part_sha256.len(), own.parts as usize);
    assert!(own.stored_size > 0 || own.parts == 0);
    let mut whole = Vec::new();
    for (part, sha256) in own.part_sha256.iter().enumerate() {
        let key = BackupPartKey {
            backup: backup_id(),
            path: entry.path.clone(),
            part: part as u32,
        };
        let fetched = repo.fetch(&key).await.unwrap().expect("the part is stored");
        let mut plain = Vec::new();
        fetched.decode(&mut plain).unwrap();
        assert_eq!(Digest::of(&plain), *sha256, "part {part} of {}", entry.path);
        whole.extend_from_slice(&plain);
    }
    whole
}

#[tokio::test]
async fn uploaded_parts_decode_to_the_files_and_match_their_recorded_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path()).await;
    let big = big_file();
    let ctx = context();
    let cancel = ctx.cancel.clone();
    let (worker, items) = start(archive(Some(&big)).into_inner().unwrap(), None, ctx);
    let uploaded = upload_all(repo.clone(), backup_id(), items, 2, cancel.clone()).await;
    worker.await.unwrap().unwrap();
    let entries = uploaded.unwrap();
    assert!(!cancel.is_cancelled());

    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["PG_VERSION", "base", "base/big", "pg_tblspc/16400"],
        "sorted by path"
    );
    assert_eq!(stored_parts(&repo, &entries[0]).await, b"15\n");
    let rebuilt = stored_parts(&repo, &entries[2]).await;
    assert!(rebuilt == big, "the stored parts rebuild the large file");
    let EntryKind::File { layers, .. } = &entries[2].kind else {
        panic!("not a file");
    };
    assert_eq!(layers[0].part_sha256.len(), 2);
}

#[tokio::test]
async fn cancellation_stops_an_uploader_waiting_for_items() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path()).await;
    let cancel = CancellationToken::new();
    let (_tx, items) = mpsc::channel::<Item>(4);
    let uploader = tokio::spawn(upload_all(repo, backup_id(), items, 2, cancel.clone()));
    cancel.cancel();
    let stopped = timeout(PROMPTLY, uploader)
        .await
        .expect("the uploader stops");
    assert!(matches!(stopped.unwrap(), Err(CopyError::Cancelled)));
}

#[tokio::test]
async fn a_malformed_stream_stops_the_uploader_and_is_the_error_reported() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path()).await;
    let mut tar = archive(None).into_inner().unwrap();
    tar.truncate(2 * 512 + 1);
    let ctx = context();
    let cancel = ctx.cancel.clone();
    // The worker's item sender is held here too, as the pump holds it: only the token can stop
    // the uploader.
    let (worker, items) = start(tar, None, ctx);
    let (relay_tx, relay_rx) = mpsc::channel::<Item>(4);
    let relay = tokio::spawn(async move {
        let mut items = items;
        while let Some(item) = items.recv().await {
            let _ = relay_tx.send(item).await;
        }
        relay_tx
    });
    let uploader = tokio::spawn(upload_all(repo, backup_id(), relay_rx, 2, cancel));
    let uploaded = timeout(PROMPTLY, uploader)
        .await
        .expect("the uploader stops");
    let uploaded = uploaded.unwrap().map(|_| ());
    let worker = worker.await.unwrap();
    drop(relay.await.unwrap());
    assert!(matches!(uploaded, Err(CopyError::Cancelled)));
    assert!(matches!(worker, Err(CopyError::Read { .. })));
    let err = first_cause([uploaded, Ok(()), worker]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().starts_with("cannot read PG_VERSION"), "{err}");
}
