//! The retention plan, pure: which backups and WAL files `pgkeep expire` removes, and why each
//! kept backup stays. Rules, within each system id (a major upgrade starts a new one, with
//! timelines and LSNs from the start again, so backups are ordered by wall-clock time, never by
//! LSN or timeline):
//! - the `full` newest full backups stay, with the incrementals built on them;
//! - every backup younger than `max_age` stays;
//! - a pinned backup stays, and so does one a running restore holds (`repo::hold`);
//! - a backup whose manifest is damaged is never expired (nothing is known of what it holds),
//!   nor, unless its folder names a full, any backup older than it (it may be built on them);
//!   and while any manifest is damaged no WAL is removed at all;
//! - every backup a kept one is built on stays (its chain down to the full);
//! - WAL of the repository's own system id stays from the oldest kept backup's start on; WAL
//!   older than that is removed; history files are never removed; with no backup kept, no WAL
//!   is removed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::manifest::{BackupId, BackupKind};
use crate::pg::{SystemId, WalFileName, WalSegSize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Full backups kept (with their incrementals); at least 1.
    pub full: usize,
    /// Everything younger than this is kept.
    pub max_age: Option<chrono::Duration>,
}

/// What the plan needs to know of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts {
    pub id: BackupId,
    pub kind: BackupKind,
    pub parent: Option<BackupId>,
    pub system_id: SystemId,
    pub stop_time: DateTime<Utc>,
    /// The segment number holding the backup's start LSN (its WAL starts there).
    pub start_segno: u64,
    pub pinned: bool,
    /// Why a live hold keeps it (`held by restore ...`), if one does.
    pub held: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Kept {
    pub id: BackupId,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ExpirePlan {
    pub keep: Vec<Kept>,
    /// Newest first: an incremental goes before what it is built on, so no listed backup ever
    /// lacks its parent.
    pub expire: Vec<BackupId>,
    /// WAL files removed (segments, partials, backup history files), oldest first.
    pub wal: Vec<String>,
    /// The first segment number kept, when WAL is expired at all.
    pub wal_kept_from: Option<u64>,
    /// Folders (backup ids) whose manifest is damaged: neither they nor any WAL are expired.
    pub damaged: Vec<String>,
}

/// `damaged`: the folder names (backup ids) of the backups whose manifest is damaged.
pub fn plan(
    policy: &RetentionPolicy,
    backups: &[BackupFacts],
    damaged: &[String],
    system_id: SystemId,
    wal_files: &[String],
    seg: WalSegSize,
    now: DateTime<Utc>,
) -> ExpirePlan {
    let by_id: BTreeMap<&BackupId, &BackupFacts> = backups.iter().map(|b| (&b.id, b)).collect();
    let mut why: BTreeMap<BackupId, String> = BTreeMap::new();
    let mut systems: BTreeSet<SystemId> = backups.iter().map(|b| b.system_id).collect();
    systems.insert(system_id);
    for sys in systems {
        let mut fulls: Vec<&BackupFacts> = backups
            .iter()
            .filter(|b| b.system_id == sys && b.kind == BackupKind::Full)
            .collect();
        fulls.sort_by(|a, b| b.stop_time.cmp(&a.stop_time).then(b.id.cmp(&a.id)));
        let count = policy.full.max(1);
        for (n, f) in fulls.iter().take(count).enumerate() {
            why.entry(f.id.clone())
                .or_insert_with(|| format!("full backup {} of {count} kept", n + 1));
        }
    }
    // Incrementals go with their full: those built (through any chain) on a kept full stay.
    for b in backups {
        if why.contains_key(&b.id) {
            continue;
        }
        if let Some(full) = root(b, &by_id).filter(|f| why.contains_key(*f) && *f != &b.id) {
            why.insert(b.id.clone(), format!("incremental on kept full {full}"));
        }
    }
    for b in backups {
        let young = policy
            .max_age
            .is_some_and(|age| now.signed_duration_since(b.stop_time) < age);
        if b.pinned {
            why.insert(b.id.clone(), "pinned".into());
        } else if let Some(held) = &b.held {
            why.insert(b.id.clone(), held.clone());
        } else if young && !why.contains_key(&b.id) {
            why.insert(b.id.clone(), "younger than max_age".into());
        }
    }
    // A damaged manifest hides what its backup is built on: whatever is older stays, unless
    // its folder names a full.
    for d in damaged.iter().filter(|d| !d.ends_with("-F")) {
        for b in backups.iter().filter(|b| b.id.as_str() < d.as_str()) {
            why.entry(b.id.clone())
                .or_insert_with(|| format!("may be needed by damaged backup {d}"));
        }
    }
    // Whatever a kept backup is built on stays too.
    let kept: Vec<BackupId> = why.keys().cloned().collect();
    for id in kept {
        let mut at = by_id.get(&id).and_then(|b| b.parent.clone());
        while let Some(p) = at {
            why.entry(p.clone())
                .or_insert_with(|| format!("needed by {id}"));
            at = by_id.get(&p).and_then(|b| b.parent.clone());
        }
    }

    let mut expire: Vec<&BackupFacts> = backups
        .iter()
        .filter(|b| !why.contains_key(&b.id))
        .collect();
    expire.sort_by(|a, b| b.stop_time.cmp(&a.stop_time).then(b.id.cmp(&a.id)));
    let wal_kept_from = backups
        .iter()
        .filter(|b| b.system_id == system_id && why.contains_key(&b.id))
        .map(|b| b.start_segno)
        .min();
    // With a damaged manifest, nothing says which WAL its backup needs: none is removed.
    let wal_kept_from = wal_kept_from.filter(|_| damaged.is_empty());
    let wal = match wal_kept_from {
        Some(first) => wal_files
            .iter()
            .filter(|name| match WalFileName::parse(name, seg) {
                Ok(WalFileName::History(_)) | Err(_) => false,
                Ok(
                    WalFileName::Segment(s)
                    | WalFileName::Partial(s)
                    | WalFileName::BackupHistory(s, _),
                ) => s.segno < first,
            })
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let mut keep: Vec<Kept> = why.into_iter().map(|(id, why)| Kept { id, why }).collect();
    keep.sort_by(|a, b| a.id.cmp(&b.id));
    ExpirePlan {
        keep,
        expire: expire.into_iter().map(|b| b.id.clone()).collect(),
        wal,
        wal_kept_from,
        damaged: damaged.to_vec(),
    }
}

/// The full at the bottom of `b`'s chain (itself for a full), if the chain is whole.
fn root<'a>(
    b: &'a BackupFacts,
    by_id: &BTreeMap<&BackupId, &'a BackupFacts>,
) -> Option<&'a BackupId> {
    let mut at = b;
    for _ in 0..=by_id.len() {
        match &at.parent {
            None => return (at.kind == BackupKind::Full).then_some(&at.id),
            Some(p) => at = by_id.get(p)?,
        }
    }
    None
}

#[cfg(test)]
mod damage_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: WalSegSize = WalSegSize::DEFAULT;

    pub(super) fn t(day: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::days(day)
    }

    /// A backup on `day` (its id from that time), on `sys`, starting in segment `segno`.
    pub(super) fn b(
        day: i64,
        kind: char,
        parent: Option<&str>,
        sys: &str,
        segno: u64,
    ) -> BackupFacts {
        let at = t(day);
        let k = if kind == 'F' {
            BackupKind::Full
        } else {
            BackupKind::Incremental
        };
        BackupFacts {
            id: BackupId::new(at, k),
            kind: k,
            parent: parent.map(|p| p.parse().unwrap()),
            system_id: sys.parse().unwrap(),
            stop_time: at,
            start_segno: segno,
            pinned: false,
            held: None,
        }
    }

    pub(super) fn id(day: i64, kind: char) -> String {
        format!("{}-{kind}", t(day).format("%Y%m%dT%H%M%SZ"))
    }

    fn ids(v: &[BackupId]) -> Vec<String> {
        v.iter().map(|i| i.to_string()).collect()
    }

    fn policy(full: usize, days: Option<i64>) -> RetentionPolicy {
        RetentionPolicy {
            full,
            max_age: days.map(chrono::Duration::days),
        }
    }

    fn wal(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_fulls_with_their_incrementals_newest_expired_first() {
        let backups = vec![
            b(1, 'F', None, "7", 0x10),
            b(2, 'I', Some(&id(1, 'F')), "7", 0x12),
            b(3, 'F', None, "7", 0x20),
            b(4, 'I', Some(&id(3, 'F')), "7", 0x22),
            b(5, 'I', Some(&id(4, 'I')), "7", 0x24),
            b(6, 'F', None, "7", 0x30),
        ];
        let files = wal(&[
            "000000010000000000000010",
            "00000001000000000000001F",
            "000000010000000000000020.00000028.backup",
            "000000010000000000000020",
            "00000002.history",
            "000000010000000000000030",
        ]);
        let p = plan(
            &policy(2, None),
            &backups,
            &[],
            SystemId(7),
            &files,
            SEG,
            t(7),
        );
        assert_eq!(ids(&p.expire), [id(2, 'I'), id(1, 'F')]);
        let kept: Vec<(String, &str)> = p
            .keep
            .iter()
            .map(|k| (k.id.to_string(), k.why.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                (id(3, 'F'), "full backup 2 of 2 kept"),
                (id(4, 'I'), "incremental on kept full 20261104T000000Z-F"),
                (id(5, 'I'), "incremental on kept full 20261104T000000Z-F"),
                (id(6, 'F'), "full backup 1 of 2 kept"),
            ]
        );
        assert_eq!(p.wal_kept_from, Some(0x20));
        assert_eq!(
            p.wal,
            ["000000010000000000000010", "00000001000000000000001F"],
            "WAL from the oldest kept backup's start on stays, history files always"
        );
    }

    #[test]
    fn age_and_pins_keep_backups_and_everything_they_are_built_on() {
        let mut backups = vec![
            b(1, 'F', None, "7", 0x10),
            b(2, 'I', Some(&id(1, 'F')), "7", 0x12),
            b(3, 'I', Some(&id(2, 'I')), "7", 0x14),
            b(10, 'F', None, "7", 0x40),
            b(20, 'F', None, "7", 0x50),
            b(29, 'F', None, "7", 0x60),
        ];
        // Young at day 30 with max_age 11 days: days 20 and 29; by count only the newest full.
        let p = plan(
            &policy(1, Some(11)),
            &backups,
            &[],
            SystemId(7),
            &[],
            SEG,
            t(30),
        );
        assert_eq!(
            ids(&p.expire),
            [id(10, 'F'), id(3, 'I'), id(2, 'I'), id(1, 'F')]
        );
        // Pinning the middle incremental keeps it and its full; the newer incremental goes.
        backups[1].pinned = true;
        let p = plan(
            &policy(1, Some(11)),
            &backups,
            &[],
            SystemId(7),
            &[],
            SEG,
            t(30),
        );
        assert_eq!(ids(&p.expire), [id(10, 'F'), id(3, 'I')]);
        let why: BTreeMap<String, String> = p
            .keep
            .iter()
            .map(|k| (k.id.to_string(), k.why.clone()))
            .collect();
        assert_eq!(why[&id(2, 'I')], "pinned");
        assert_eq!(why[&id(1, 'F')], format!("needed by {}", id(2, 'I')));
        assert_eq!(why[&id(20, 'F')], "younger than max_age");
        assert_eq!(p.wal_kept_from, Some(0x10));
    }

    #[test]
    fn timelines_do_not_order_backups_and_history_files_stay() {
        // Segment numbers grow across timelines (LSNs are continuous), so WAL of every timeline
        // below the oldest kept backup's start goes, none above it, and history files stay.
        let backups = vec![b(1, 'F', None, "7", 0x10), b(2, 'F', None, "7", 0x30)];
        let files = wal(&[
            "000000010000000000000020",
            "000000010000000000000021.partial",
            "000000020000000000000021",
            "00000002.history",
            "000000020000000000000030",
            "000000030000000000000031",
            "00000003.history",
        ]);
        let p = plan(
            &policy(1, None),
            &backups,
            &[],
            SystemId(7),
            &files,
            SEG,
            t(3),
        );
        assert_eq!(
            p.wal,
            [
                "000000010000000000000020",
                "000000010000000000000021.partial",
                "000000020000000000000021",
            ]
        );
    }

    #[test]
    fn an_upgrade_that_resets_timeline_and_lsn_never_expires_the_newest_backups() {
        // System 7 backed up for a while; then the upgraded cluster (system 8) starts again at
        // timeline 1 and a low LSN. Ordering by LSN would call the new backups the oldest.
        let mut backups = vec![
            b(1, 'F', None, "7", 0x900),
            b(2, 'F', None, "7", 0x950),
            b(3, 'F', None, "8", 0x2),
            b(4, 'I', Some(&id(3, 'F')), "8", 0x4),
            b(5, 'F', None, "8", 0x8),
        ];
        backups.sort_by_key(|b| b.start_segno);
        let p = plan(
            &policy(1, None),
            &backups,
            &[],
            SystemId(8),
            &wal(&["000000010000000000000001"]),
            SEG,
            t(6),
        );
        assert_eq!(ids(&p.expire), [id(4, 'I'), id(3, 'F'), id(1, 'F')]);
        let kept: Vec<String> = p.keep.iter().map(|k| k.id.to_string()).collect();
        assert_eq!(
            kept,
            [id(2, 'F'), id(5, 'F')],
            "the newest of each system id"
        );
        assert_eq!(p.wal_kept_from, Some(0x8), "WAL is the current system's");
        assert_eq!(p.wal, ["000000010000000000000001"]);
    }

    #[test]
    fn nothing_kept_means_no_wal_removed_and_at_least_one_full_stays() {
        let p = plan(
            &policy(0, None),
            &[],
            &[],
            SystemId(7),
            &wal(&["000000010000000000000001"]),
            SEG,
            t(1),
        );
        assert!(p.wal.is_empty() && p.expire.is_empty() && p.wal_kept_from.is_none());
        let backups = vec![b(1, 'F', None, "7", 0x10), b(2, 'F', None, "7", 0x20)];
        let p = plan(&policy(0, None), &backups, &[], SystemId(7), &[], SEG, t(3));
        assert_eq!(
            ids(&p.expire),
            [id(1, 'F')],
            "full = 0 still keeps the newest full"
        );
    }
}
