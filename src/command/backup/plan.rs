//! Deciding what a backup will be: a full, or an incremental on the newest backup — and why an
//! incremental that was asked for is taken as a full. Pure.

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

/// `backups` oldest first; `timeline` is the source's current timeline.
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
    let Some(newest) = backups.last() else {
        return full(Some("no backup to build on yet".into()));
    };
    if newest.timeline() != timeline {
        // Pages of a timeline the cluster left may have changed differently here: page LSNs
        // alone cannot tell, so the first backup on a new timeline is a full.
        return full(Some(format!(
            "the newest backup {} is on timeline {}, the source on {}",
            newest.id, newest.timeline, timeline.0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FORMAT_VERSION;

    fn backup(id: &str, timeline: u32, depth: u32) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            id: id.parse().unwrap(),
            kind: if depth == 0 {
                BackupKind::Full
            } else {
                BackupKind::Incremental
            },
            parent: None,
            depth,
            system_id: "7".into(),
            pg_version: 15,
            timeline,
            start_lsn: "0/2000028".into(),
            stop_lsn: "0/2000100".into(),
            start_time: String::new(),
            stop_time: String::new(),
            source: String::new(),
            entries: vec![],
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
