//! Deciding what a backup will be: a full, or an incremental on the newest backup whose whole
//! chain is readable — and why an incremental that was asked for is taken as a full. An
//! incremental never builds on a backup whose manifest, or any of whose parents' manifests, is
//! damaged or missing. Pure.

use crate::manifest::{BackupKind, Manifest};
use crate::pg::Timeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Requested {
    #[default]
    Full,
    Incremental,
}

#[derive(Debug)]
pub struct BackupPlan<'a> {
    pub kind: BackupKind,
    pub parent: Option<&'a Manifest>,
    /// Why an incremental request became a full.
    pub note: Option<String>,
}

/// `backups` (readable) oldest first; `timeline` is the source's current timeline.
pub fn plan(
    requested: Requested,
    backups: &[Manifest],
    timeline: Timeline,
    max_chain: u32,
) -> BackupPlan<'_> {
    let full = |note: Option<String>| BackupPlan {
        kind: BackupKind::Full,
        parent: None,
        note,
    };
    if requested == Requested::Full {
        return full(None);
    }
    let Some(newest) = backups.iter().rev().find(|m| chain_whole(m, backups)) else {
        return full(Some(if backups.is_empty() {
            "no backup to build on yet".into()
        } else {
            "no backup with a whole readable chain to build on".into()
        }));
    };
    if newest.timeline != timeline {
        // Pages of a timeline the cluster left may have changed differently here: page LSNs
        // alone cannot tell, so the first backup on a new timeline is a full.
        return full(Some(format!(
            "the newest backup {} is on timeline {}, the source on {}",
            newest.id, newest.timeline.0, timeline.0
        )));
    }
    if newest.depth + 1 > max_chain {
        return full(Some(format!(
            "backup {} already ends a chain of {} incremental(s) (backup.max_chain = {max_chain})",
            newest.id, newest.depth
        )));
    }
    BackupPlan {
        kind: BackupKind::Incremental,
        parent: Some(newest),
        note: None,
    }
}

/// Whether every backup `m` reads from (its parents, and every backup its layers name) has a
/// readable manifest among `backups`.
fn chain_whole(m: &Manifest, backups: &[Manifest]) -> bool {
    let find = |id: &crate::manifest::BackupId| backups.iter().find(|b| &b.id == id);
    let mut at = m;
    for _ in 0..=backups.len() {
        match &at.parent {
            None => {
                return at.kind == BackupKind::Full
                    && m.references().iter().all(|r| find(r).is_some());
            }
            Some(p) => match find(p) {
                Some(parent) => at = parent,
                None => return false,
            },
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(id: &str, timeline: u32, depth: u32) -> Manifest {
        Manifest {
            kind: if depth == 0 {
                BackupKind::Full
            } else {
                BackupKind::Incremental
            },
            // Test chains are built on the first full.
            parent: (depth > 0).then(|| "20261121T220000Z-F".parse().unwrap()),
            depth,
            system_id: crate::pg::SystemId(7),
            timeline: Timeline(timeline),
            start_lsn: crate::pg::Lsn(0x200_0028),
            ..Manifest::fixture(id)
        }
    }

    #[test]
    fn an_incremental_builds_on_the_newest_backup_of_the_same_timeline() {
        let all = vec![
            backup("20261121T220000Z-F", 1, 0),
            backup("20261121T230000Z-I", 1, 1),
        ];
        let p = plan(Requested::Incremental, &all, Timeline(1), 6);
        assert_eq!(p.kind, BackupKind::Incremental);
        assert_eq!(p.parent.unwrap().id.as_str(), "20261121T230000Z-I");
        assert_eq!(
            plan(Requested::Full, &all, Timeline(1), 6).kind,
            BackupKind::Full
        );
    }

    #[test]
    fn an_incremental_never_builds_on_a_chain_with_a_damaged_manifest() {
        // The newest incremental's parent (an incremental) is damaged, so not listed: the plan
        // builds on the newest backup whose chain is whole, the full.
        let mut all = vec![
            backup("20261121T220000Z-F", 1, 0),
            backup("20261121T235000Z-I", 1, 2),
        ];
        all[1].parent = Some("20261121T230000Z-I".parse().unwrap());
        let p = plan(Requested::Incremental, &all, Timeline(1), 6);
        assert_eq!(p.kind, BackupKind::Incremental);
        assert_eq!(p.parent.unwrap().id.as_str(), "20261121T220000Z-F");
        // With only the orphan left, a full.
        let p = plan(Requested::Incremental, &all[1..], Timeline(1), 6);
        assert_eq!(p.kind, BackupKind::Full);
        assert!(p.note.unwrap().contains("whole readable chain"));
    }

    #[test]
    fn an_incremental_becomes_a_full_with_a_reason() {
        let all = [
            backup("20261121T220000Z-F", 1, 0),
            backup("20261121T230000Z-I", 1, 1),
        ];
        for (backups, tli, max, why) in [
            (&all[..0], 1, 6, "no backup"),
            (&all[..], 2, 6, "timeline"),
            (&all[..], 1, 1, "max_chain"),
        ] {
            let p = plan(Requested::Incremental, backups, Timeline(tli), max);
            assert_eq!(p.kind, BackupKind::Full);
            assert!(p.note.unwrap().contains(why));
        }
    }
}
