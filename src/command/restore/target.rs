//! Recovery targets: what the operator asked for, which backup can reach it, and the recovery
//! settings that tell PostgreSQL where to stop.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime};

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;
use crate::pg::Lsn;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay all archived WAL.
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    Time(String, DateTime<FixedOffset>),
    Lsn(Lsn),
    Xid(String),
    Name(String),
}

/// What to do on reaching the target (`recovery_target_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAction {
    Promote,
    Pause,
    Shutdown,
}

impl std::str::FromStr for TargetAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "promote" => Ok(TargetAction::Promote),
            "pause" => Ok(TargetAction::Pause),
            "shutdown" => Ok(TargetAction::Shutdown),
            _ => Err(format!(
                "invalid target action '{s}': promote, pause or shutdown"
            )),
        }
    }
}

impl fmt::Display for TargetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        })
    }
}

/// Parses a time as PostgreSQL accepts it for recovery_target_time, in the common forms:
/// RFC 3339, or `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]` (UTC when no offset is given).
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .map(|n| n.and_utc().fixed_offset())
        .map_err(|_| format!("invalid target time '{s}': use e.g. 2026-11-21 22:00:00+00"))
}

impl RecoveryTarget {
    /// The newest backup that can reach this target: for a time or an LSN, the newest that
    /// ended before it; otherwise the newest. `None` when no backup can reach it.
    pub fn choose<'a>(&self, backups: &'a [Manifest]) -> Result<Option<&'a Manifest>> {
        let ended_before = |m: &Manifest| -> Result<bool> {
            Ok(match self {
                RecoveryTarget::Time(_, t) => DateTime::parse_from_rfc3339(&m.stop_time)
                    .map(|stop| stop <= *t)
                    .map_err(|e| corrupt(m, e.to_string()))?,
                RecoveryTarget::Lsn(l) => m.stop_lsn().map_err(|e| corrupt(m, e))? <= *l,
                _ => true,
            })
        };
        let mut found = None;
        for m in backups {
            if ended_before(m)? {
                found = Some(m);
            }
        }
        Ok(found)
    }

    /// The `recovery_target*` settings for postgresql.auto.conf.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            RecoveryTarget::Latest => vec![],
            RecoveryTarget::Immediate => vec![("recovery_target", "immediate".into())],
            RecoveryTarget::Time(text, _) => vec![("recovery_target_time", text.clone())],
            RecoveryTarget::Lsn(l) => vec![("recovery_target_lsn", l.to_string())],
            RecoveryTarget::Xid(x) => vec![("recovery_target_xid", x.clone())],
            RecoveryTarget::Name(n) => vec![("recovery_target_name", n.clone())],
        }
    }
}

impl fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryTarget::Latest => write!(f, "the end of the archive"),
            RecoveryTarget::Immediate => write!(f, "consistency"),
            RecoveryTarget::Time(t, _) => write!(f, "time {t}"),
            RecoveryTarget::Lsn(l) => write!(f, "lsn {l}"),
            RecoveryTarget::Xid(x) => write!(f, "xid {x}"),
            RecoveryTarget::Name(n) => write!(f, "restore point '{n}'"),
        }
    }
}

fn corrupt(m: &Manifest, e: String) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("manifest of backup {} is damaged: {e}", m.id),
    )
    .hint("restore another backup with --backup")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{BackupKind, FORMAT_VERSION};

    fn backup(id: &str, stop_time: &str, stop_lsn: &str) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            id: id.parse().unwrap(),
            kind: BackupKind::Full,
            parent: None,
            depth: 0,
            system_id: "1".into(),
            pg_version: 15,
            timeline: 1,
            start_lsn: "0/1000028".into(),
            stop_lsn: stop_lsn.into(),
            start_time: stop_time.into(),
            stop_time: stop_time.into(),
            source: String::new(),
            entries: vec![],
        }
    }

    #[test]
    fn chooses_the_newest_backup_that_ended_before_the_target() {
        let b = [
            backup("20261120T100000Z-F", "2026-11-20T10:05:00Z", "0/5000000"),
            backup("20261121T100000Z-F", "2026-11-21T10:05:00Z", "0/9000000"),
        ];
        let t = |s: &str| RecoveryTarget::Time(s.into(), parse_time(s).unwrap());
        let id = |r: &RecoveryTarget| r.choose(&b).unwrap().map(|m| m.id.to_string());
        assert_eq!(
            id(&t("2026-11-21 12:00:00+00")).as_deref(),
            Some("20261121T100000Z-F")
        );
        assert_eq!(
            id(&t("2026-11-21 10:00:00")).as_deref(),
            Some("20261120T100000Z-F")
        );
        assert_eq!(id(&t("2026-11-19T00:00:00Z")), None);
        assert_eq!(
            id(&RecoveryTarget::Lsn("0/6000000".parse().unwrap())).as_deref(),
            Some("20261120T100000Z-F")
        );
        assert_eq!(
            id(&RecoveryTarget::Latest).as_deref(),
            Some("20261121T100000Z-F")
        );
    }

    #[test]
    fn parses_the_usual_time_forms() {
        for s in [
            "2026-11-21T22:00:00Z",
            "2026-11-21 22:00:00+00",
            "2026-11-21 22:00:00.123456+01:00",
            "2026-11-21 22:00:00",
        ] {
            assert!(parse_time(s).is_ok(), "{s}");
        }
        assert!(parse_time("yesterday").is_err());
        assert_eq!(
            "promote".parse::<TargetAction>().unwrap(),
            TargetAction::Promote
        );
        assert!("explode".parse::<TargetAction>().is_err());
    }

    #[test]
    fn settings_name_the_target() {
        assert_eq!(
            RecoveryTarget::Name("p1".into()).settings(),
            vec![("recovery_target_name", "p1".to_string())]
        );
        assert!(RecoveryTarget::Latest.settings().is_empty());
    }
}
