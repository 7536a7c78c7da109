//! Unit tests of PostgreSQL 17 incremental files in the tar stream: what the demuxer makes of
//! `INCREMENTAL.<file>` entries over a parent, fed as the pump feeds it. No PostgreSQL, no
//! repository.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::copy_error::CopyError;
use super::demux::{DemuxContext, Item};
use super::demux_tests::{context, entries, header, run};
use super::pages::{Parent, ParentFile};
use crate::manifest::{BackupId, EntryKind, Layer};
use crate::repo::Digest;

/// A parent with the files given (path, pages), each as one whole layer.
fn parent_of(files: &[(&str, u64)]) -> Parent {
    let id: BackupId = "20261121T210000Z-F".parse().unwrap();
    let file = |pages: u64| ParentFile {
        size: pages * 8192,
        sha256: Digest::of(&pages.to_le_bytes()),
        layers: vec![Layer {
            backup: id.clone(),
            delta: false,
            parts: 1,
            size: pages * 8192,
            base_size: None,
            stored_size: 1,
            part_sha256: vec![],
        }],
    };
    Parent {
        id: id.clone(),
        start: 0x100,
        depth: 0,
        files: (files.iter())
            .map(|(p, n)| (p.to_string(), file(*n)))
            .collect(),
    }
}

#[tokio::test]
async fn pg17_incremental_files_become_deltas_cut_to_their_truncation_length() {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        (
            "base/5/INCREMENTAL.16384",
            crate::pg::incremental::fixture(&[1, 4], 2),
        ),
        (
            "base/5/INCREMENTAL.16385",
            crate::pg::incremental::fixture(&[], 3),
        ),
        (
            "base/5/INCREMENTAL.16384_vm",
            crate::pg::incremental::fixture(&[0], 1),
        ),
    ] {
        let mut h = header(tar::EntryType::Regular, data.len(), 0o600);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let parent = parent_of(&[
        ("base/5/16384", 3),
        ("base/5/16385", 3),
        ("base/5/16384_vm", 1),
    ]);
    let ctx = DemuxContext {
        parent: Some(Arc::new(parent)),
        summaries: true,
        ..context()
    };
    let (sink, ended) = run(tar.clone(), None, ctx).await;
    ended.unwrap();
    /// (delta, parts, size, base) of a layer.
    type Shape = (bool, u32, u64, Option<u64>);
    let files: Vec<(&str, u64, Vec<Shape>)> = entries(&sink)
        .iter()
        .map(|e| match &e.kind {
            EntryKind::File { size, layers, .. } => (
                e.path.as_str(),
                *size,
                layers
                    .iter()
                    .map(|l| (l.delta, l.parts, l.size, l.base_size))
                    .collect(),
            ),
            k => panic!("{k:?}"),
        })
        .collect();
    let page = 8192;
    assert_eq!(
        files,
        vec![
            // Cut to 2 pages, pages 1 and 4 laid over it: 5 pages, page 3 reads as zeros.
            (
                "base/5/16384",
                5 * page,
                vec![
                    (false, 1, 3 * page, None),
                    (true, 1, 5 * page, Some(2 * page))
                ]
            ),
            // Nothing changed: the parent's layers.
            ("base/5/16385", 3 * page, vec![(false, 1, 3 * page, None)]),
            // A visibility map from an incremental is restored empty (all bits off).
            ("base/5/16384_vm", 0, vec![(false, 0, 0, None)]),
        ]
    );
    // The delta part holds the two pages the server sent, with their block numbers.
    let part = sink
        .iter()
        .find_map(|i| match i {
            Item::Part { path, plain, .. } if path == "base/5/16384" => Some(plain.clone()),
            _ => None,
        })
        .unwrap();
    let records: Vec<(u32, u8)> = crate::manifest::delta::records(&part)
        .unwrap()
        .map(|(b, p)| (b, p[0]))
        .collect();
    assert_eq!(records, vec![(1, 1), (4, 4)]);

    // An incremental of a file the parent lacks is refused: the server and the parent disagree.
    let ctx = DemuxContext {
        parent: Some(Arc::new(parent_of(&[("base/5/16385", 3)]))),
        summaries: true,
        ..context()
    };
    let err = run(tar, None, ctx).await.1.unwrap_err();
    assert!(
        matches!(&err, CopyError::Incremental { path, .. } if path == "base/5/16384"),
        "{err:?}"
    );
}
