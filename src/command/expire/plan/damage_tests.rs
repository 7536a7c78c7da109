//! The plan with holds and damaged manifests: nothing is expired on the strength of a manifest
//! that cannot be read, and a held backup stays with its chain.

use super::*;

const SEG: WalSegSize = WalSegSize::DEFAULT;

/// A backup on `day`: a full, or an incremental on the full of day `parent`.
fn b(day: i64, parent: Option<i64>, segno: u64) -> BackupFacts {
    match parent {
        Some(p) => tests::b(day, 'I', Some(&folder(p, 'F')), "7", segno),
        None => tests::b(day, 'F', None, "7", segno),
    }
}

use super::tests::{id as folder, t};

const ONE_FULL: RetentionPolicy = RetentionPolicy {
    full: 1,
    max_age: None,
};

fn wal() -> Vec<String> {
    ["000000010000000000000001", "000000010000000000000030"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn without_damage_old_backups_and_wal_go() {
    let backups = vec![b(1, None, 0x10), b(5, None, 0x20), b(9, None, 0x30)];
    let p = plan(&ONE_FULL, &backups, &[], SystemId(7), &wal(), SEG, t(10));
    assert_eq!(p.expire.len(), 2);
    assert_eq!(p.wal, ["000000010000000000000001"]);
}

#[test]
fn a_damaged_manifest_keeps_all_wal_and_what_its_backup_may_be_built_on() {
    let backups = vec![b(1, None, 0x10), b(5, None, 0x20), b(9, None, 0x30)];
    // A damaged incremental of day 6: the fulls before it may be its chain.
    let damaged = vec![folder(6, 'I')];
    let p = plan(
        &ONE_FULL,
        &backups,
        &damaged,
        SystemId(7),
        &wal(),
        SEG,
        t(10),
    );
    assert!(p.expire.is_empty(), "{:?}", p.expire);
    assert!(p.wal.is_empty() && p.wal_kept_from.is_none());
    assert_eq!(p.damaged, damaged);
    let why: Vec<&str> = p.keep.iter().map(|k| k.why.as_str()).collect();
    assert_eq!(
        why[0],
        format!("may be needed by damaged backup {}", folder(6, 'I'))
    );
    assert!(!p.keep.iter().any(|k| k.id.as_str() == damaged[0]));
    // A damaged full of day 6 is built on nothing: the oldest full goes, but no WAL does.
    let damaged = vec![folder(6, 'F')];
    let p = plan(
        &ONE_FULL,
        &backups,
        &damaged,
        SystemId(7),
        &wal(),
        SEG,
        t(10),
    );
    assert_eq!(p.expire.len(), 2);
    assert!(p.wal.is_empty());
}

#[test]
fn a_held_backup_stays_with_its_chain() {
    let mut backups = vec![
        b(1, None, 0x10),
        b(2, Some(1), 0x12),
        b(5, None, 0x20),
        b(9, None, 0x30),
    ];
    backups[1].held = Some("held by restore (pid 7 on db1 since t)".into());
    let p = plan(&ONE_FULL, &backups, &[], SystemId(7), &wal(), SEG, t(10));
    let kept: Vec<(String, String)> = p
        .keep
        .iter()
        .map(|k| (k.id.to_string(), k.why.clone()))
        .collect();
    assert_eq!(
        kept[..2],
        [
            (folder(1, 'F'), format!("needed by {}", folder(2, 'I'))),
            (
                folder(2, 'I'),
                "held by restore (pid 7 on db1 since t)".into()
            ),
        ]
    );
    assert_eq!(p.expire, [backups[2].id.clone()]);
    assert_eq!(p.wal_kept_from, Some(0x10), "the held backup's WAL stays");
    assert_eq!(p.wal, ["000000010000000000000001"]);
}
