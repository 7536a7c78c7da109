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
