//! Recovery targets: what the operator asked for, which backup can reach it, and the recovery
//! settings that tell PostgreSQL where to stop.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime};

use crate::manifest::Manifest;
use crate::pg::{Lsn, TimelineHistory};

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

/// Parses a recovery target time, which must carry its UTC offset: RFC 3339, or
/// `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]`. A time without one is refused: pgkeep would choose
/// the backup in one zone and PostgreSQL stop in another (its `timezone` setting).
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(s, f).is_ok());
    Err(if naive {
        format!("target time '{s}' has no utc offset")
    } else {
        format!("invalid target time '{}'", s.escape_debug())
    })
}

/// The hint for a refused target time: the form that is accepted.
pub const TIME_HINT: &str =
    "give the time with its offset, e.g. --target-time '2026-11-21 22:00:00+01'";

/// The longest restore point name PostgreSQL keeps (NAMEDATALEN - 1).
pub const MAX_NAME_BYTES: usize = 63;

/// `recovery_target_timeline` as PostgreSQL accepts it: `latest`, `current`, or a timeline
/// number (decimal, or hexadecimal with `0x`), returned in decimal.
pub fn parse_timeline(s: &str) -> Result<String, String> {
    if s == "latest" || s == "current" {
        return Ok(s.to_string());
    }
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse::<u32>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 => Ok(n.to_string()),
        _ => Err(format!(
            "invalid target timeline '{}': latest, current or a timeline number",
            s.escape_debug()
        )),
    }
}

/// `recovery_target_xid`: a transaction id in decimal (64-bit: epoch-qualified ids too).
pub fn parse_xid(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok();
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!(
            "invalid target xid '{}': a transaction id in decimal",
            s.escape_debug()
        )
    })
}

/// `recovery_target_name`: a restore point name, at most 63 bytes, no control characters.
pub fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > MAX_NAME_BYTES {
        return Err(format!(
            "invalid target name of {} bytes: a restore point name has 1 to {MAX_NAME_BYTES}",
            s.len()
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!(
            "invalid target name '{}': control characters",
            s.escape_debug()
        ));
    }
    Ok(s.to_string())
}

impl RecoveryTarget {
    /// The newest backup that can reach this target along timeline `history` (any timeline
    /// when `None`): of the backups whose end lies on that history (their timeline is the
    /// target timeline or an ancestor it left after their end), for a time or an LSN the newest
    /// that ended before it; otherwise the newest. `None` when no backup can reach it.
    pub fn choose<'a>(
        &self,
        backups: &'a [Manifest],
        history: Option<&TimelineHistory>,
    ) -> Option<&'a Manifest> {
        let ended_before = |m: &Manifest| match self {
            RecoveryTarget::Time(_, t) => m.stop_time <= *t,
            RecoveryTarget::Lsn(l) => m.stop_lsn <= *l,
            _ => true,
        };
        let on_history = |m: &Manifest| history.is_none_or(|h| h.contains(m.timeline, m.stop_lsn));
        backups.iter().rfind(|m| on_history(m) && ended_before(m))
    }

    /// Checks what a library caller built by hand as the flags' parsers would.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            RecoveryTarget::Xid(x) => parse_xid(x).map(drop),
            RecoveryTarget::Name(n) => parse_name(n).map(drop),
            _ => Ok(()),
        }
    }

    /// The `recovery_target*` settings for postgresql.auto.conf.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            RecoveryTarget::Latest => vec![],
            RecoveryTarget::Immediate => vec![("recovery_target", "immediate".into())],
            // Normalised with a numeric offset: PostgreSQL must not read it in its `timezone`.
            RecoveryTarget::Time(_, t) => vec![(
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string(),
            )],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Timeline;

    fn backup(id: &str, stop_time: &str, stop_lsn: &str) -> Manifest {
        let stop_time = stop_time.parse().unwrap();
        Manifest {
            stop_lsn: stop_lsn.parse().unwrap(),
            start_time: stop_time,
            stop_time,
            ..Manifest::fixture(id)
        }
    }

    #[test]
    fn chooses_the_newest_backup_that_ended_before_the_target() {
        let b = [
            backup("20261120T100000Z-F", "2026-11-20T10:05:00Z", "0/5000000"),
            backup("20261121T100000Z-F", "2026-11-21T10:05:00Z", "0/9000000"),
        ];
        let t = |s: &str| RecoveryTarget::Time(s.into(), parse_time(s).unwrap());
        let id = |r: &RecoveryTarget| r.choose(&b, None).map(|m| m.id.to_string());
        assert_eq!(
            id(&t("2026-11-21 12:00:00+00")).as_deref(),
            Some("20261121T100000Z-F")
        );
        assert_eq!(
            id(&t("2026-11-21 10:00:00+00")).as_deref(),
            Some("20261120T100000Z-F")
        );
        assert_eq!(
            id(&t("2026-11-21 11:00:00+01")).as_deref(),
            Some("20261120T100000Z-F"),
            "10:00 utc: before the second backup ended"
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
    fn a_backup_is_a_candidate_only_on_the_history_of_the_target_timeline() {
        // Timeline 2 branched from timeline 1 at 0/5000000.
        let tl2 =
            TimelineHistory::parse("1\t0/5000000\tno recovery target\n", Timeline(2)).unwrap();
        let on = |tli: u32, id: &str, stop: &str| Manifest {
            timeline: Timeline(tli),
            ..backup(id, "2026-11-20T10:05:00Z", stop)
        };
        let before = on(1, "20261120T100000Z-F", "0/4000000");
        let after = on(1, "20261121T100000Z-F", "0/6000000");
        let chosen = |b: &[Manifest], h: Option<&TimelineHistory>| {
            RecoveryTarget::Latest
                .choose(b, h)
                .map(|m| m.id.to_string())
        };
        assert_eq!(
            chosen(std::slice::from_ref(&after), Some(&tl2)),
            None,
            "timeline 1 past the branch point is not on timeline 2"
        );
        assert_eq!(
            chosen(&[before.clone(), after.clone()], Some(&tl2)).as_deref(),
            Some("20261120T100000Z-F"),
            "ended before timeline 2 branched off"
        );
        let tl1 = TimelineHistory::first(Timeline(1));
        assert_eq!(
            chosen(&[before.clone(), after.clone()], Some(&tl1)).as_deref(),
            Some("20261121T100000Z-F")
        );
        let later = on(2, "20261122T100000Z-F", "0/7000000");
        let all = [before, after, later];
        assert_eq!(
            chosen(&all, Some(&tl2)).as_deref(),
            Some("20261122T100000Z-F")
        );
        assert_eq!(
            chosen(&all, Some(&tl1)).as_deref(),
            Some("20261121T100000Z-F"),
            "a backup of a later timeline is not on timeline 1"
        );
        assert_eq!(chosen(&all, None).as_deref(), Some("20261122T100000Z-F"));
    }

    #[test]
    fn parses_the_usual_time_forms() {
        for s in [
            "2026-11-21T22:00:00Z",
            "2026-11-21 22:00:00+00",
            "2026-11-21 22:00:00.123456+01:00",
            "2026-11-21 22:00:00+0530",
        ] {
            assert!(parse_time(s).is_ok(), "{s}");
        }
        for naive in ["2026-11-21 22:00:00", "2026-11-21T22:00:00.5"] {
            assert!(
                parse_time(naive).unwrap_err().contains("no utc offset"),
                "{naive}"
            );
        }
        assert!(parse_time("yesterday").unwrap_err().contains("invalid"));
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
        let s = "2026-11-21 22:00:00+01";
        assert_eq!(
            RecoveryTarget::Time(s.into(), parse_time(s).unwrap()).settings(),
            vec![(
                "recovery_target_time",
                "2026-11-21 22:00:00.000000+01:00".to_string()
            )]
        );
    }

    #[test]
    fn timelines_xids_and_names_are_checked() {
        assert_eq!(parse_timeline("latest").unwrap(), "latest");
        assert_eq!(parse_timeline("current").unwrap(), "current");
        assert_eq!(parse_timeline("3").unwrap(), "3");
        assert_eq!(parse_timeline("0x1A").unwrap(), "26");
        for bad in [
            "0",
            "",
            "-1",
            "x",
            "0x",
            "4294967296",
            "1\nrestore_command = 'x'",
        ] {
            assert!(parse_timeline(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_xid("742").unwrap(), "742");
        for bad in ["", "-1", "12a", "1 2", "99999999999999999999"] {
            assert!(parse_xid(bad).is_err(), "{bad}");
        }
        assert!(parse_name(&"n".repeat(63)).is_ok());
        assert!(parse_name(&"n".repeat(64)).is_err());
        assert!(parse_name("").is_err());
        assert!(parse_name("p1\nrestore_command = 'x'").is_err());
        assert!(RecoveryTarget::Name("a\tb".into()).validate().is_err());
        assert!(RecoveryTarget::Xid("1".into()).validate().is_ok());
    }
}
