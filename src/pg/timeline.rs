//! Timeline history files (`00000002.history`): which timelines a timeline branched from and
//! where. Parsed as PostgreSQL's `readTimeLineHistory` does, so that a file PostgreSQL would
//! refuse is refused before it is archived or served (one stored garbage history would block
//! the real one forever, since the archive never overwrites).

use super::lsn::Lsn;
use super::wal::Timeline;

/// One switch: timeline `parent` ended at `switch_lsn`, where the next entry's timeline begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineSwitch {
    pub parent: Timeline,
    pub switch_lsn: Lsn,
}

/// The ancestry of `timeline`, oldest switch first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    pub timeline: Timeline,
    pub switches: Vec<TimelineSwitch>,
}

impl TimelineHistory {
    /// Parses the history file of `timeline`. Lines are `<parent tli> <switch lsn> [reason]`
    /// separated by white space; blank lines and `#` comments are skipped.
    pub fn parse(text: &str, timeline: Timeline) -> Result<Self, String> {
        let mut switches: Vec<TimelineSwitch> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| format!("history file line {}: {what}", n + 1);
            let mut fields = line.split_whitespace();
            let parent = fields
                .next()
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|t| *t > 0)
                .ok_or_else(|| bad("expected a timeline id"))?;
            let switch_lsn: Lsn = fields
                .next()
                .ok_or_else(|| bad("expected a switch point"))?
                .parse()
                .map_err(|e: String| bad(&e))?;
            if let Some(last) = switches.last() {
                if parent <= last.parent.0 {
                    return Err(bad("timeline ids must be in increasing sequence"));
                }
                if switch_lsn < last.switch_lsn {
                    return Err(bad("switch points must not go backwards"));
                }
            }
            if parent >= timeline.0 {
                return Err(bad(
                    "timeline ids must be less than the file's own timeline",
                ));
            }
            switches.push(TimelineSwitch {
                parent: Timeline(parent),
                switch_lsn,
            });
        }
        if switches.is_empty() {
            return Err(format!(
                "history file of timeline {timeline} names no parent timeline"
            ));
        }
        Ok(TimelineHistory { timeline, switches })
    }

    /// The history of a timeline that branched from none: timeline 1, the start of a cluster.
    pub fn first(timeline: Timeline) -> Self {
        TimelineHistory {
            timeline,
            switches: Vec::new(),
        }
    }

    /// Whether position `lsn` of timeline `tli` lies on this timeline's history: `tli` is this
    /// timeline, or an ancestor it left at a switch point not before `lsn`. WAL up to the
    /// switch point is shared by parent and child (PostgreSQL refuses a recovery only when
    /// the switch point precedes the backup's end, so `lsn` at the switch point is in).
    pub fn contains(&self, tli: Timeline, lsn: Lsn) -> bool {
        tli == self.timeline
            || (self.switches.iter()).any(|s| s.parent == tli && lsn <= s.switch_lsn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgresql_writes() {
        let text = "1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tat restore point \"p\"\n";
        let h = TimelineHistory::parse(text, Timeline(3)).unwrap();
        assert_eq!(h.switches.len(), 2);
        assert_eq!(h.switches[1].parent, Timeline(2));
        assert_eq!(h.switches[0].switch_lsn, "0/3000158".parse().unwrap());
    }

    #[test]
    fn a_position_is_on_the_history_up_to_where_it_left_its_timeline() {
        let lsn = |s: &str| s.parse::<Lsn>().unwrap();
        let h = TimelineHistory::parse("1\t0/3000158\n2\t0/5000000\n", Timeline(3)).unwrap();
        assert!(h.contains(Timeline(1), lsn("0/3000000")));
        assert!(
            h.contains(Timeline(1), lsn("0/3000158")),
            "the switch point is shared"
        );
        assert!(
            !h.contains(Timeline(1), lsn("0/3000159")),
            "after timeline 2 branched"
        );
        assert!(h.contains(Timeline(2), lsn("0/4000000")));
        assert!(!h.contains(Timeline(2), lsn("0/6000000")));
        assert!(
            h.contains(Timeline(3), lsn("FF/0")),
            "its own timeline, any position"
        );
        assert!(
            !h.contains(Timeline(4), lsn("0/1")),
            "a later timeline is no ancestor"
        );
        let first = TimelineHistory::first(Timeline(1));
        assert!(first.contains(Timeline(1), lsn("0/1")));
        assert!(!first.contains(Timeline(2), lsn("0/1")));
    }

    #[test]
    fn refuses_garbage_and_inconsistent_histories() {
        for (text, tli) in [
            ("garbage", 2),
            ("", 2),
            ("1\tnot-an-lsn\n", 2),
            ("2\t0/3000000\n", 2),
            ("1\t0/5000000\n1\t0/6000000\n", 3),
            ("1\t0/5000000\n2\t0/4000000\n", 3),
            ("\u{0}\u{1}binary", 2),
        ] {
            assert!(
                TimelineHistory::parse(text, Timeline(tli)).is_err(),
                "{text:?} accepted"
            );
        }
    }
}
