//! Timeline history files (`00000002.history`): one line per earlier timeline, `<parent tli>
//! <switch lsn> <reason>`, tab-separated, `#` comments and blank lines allowed. Pure.

use super::lsn::Lsn;
use super::wal::Timeline;

/// Where one earlier timeline ended (and the next began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub parent: Timeline,
    pub at: Lsn,
}

/// A parsed history file of timeline `tli`: its ancestors, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineHistory {
    pub tli: Timeline,
    pub switches: Vec<Switch>,
}

impl TimelineHistory {
    /// Parses the history file of timeline `tli`. Ancestors must be older than `tli` and
    /// ascend, and so must their switch points.
    pub fn parse(text: &str, tli: Timeline) -> Result<Self, String> {
        let mut switches: Vec<Switch> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| format!("history of timeline {}: line {}: {why}", tli.0, n + 1);
            let mut fields = line.split_whitespace();
            let parent: u32 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad("no timeline number"))?;
            let at: Lsn = fields
                .next()
                .ok_or_else(|| bad("no switch lsn"))?
                .parse()
                .map_err(|e: String| bad(&e))?;
            if parent == 0 || parent >= tli.0 {
                return Err(bad(&format!("timeline {parent} is not an ancestor")));
            }
            if let Some(last) = switches.last() {
                if parent <= last.parent.0 || at < last.at {
                    return Err(bad("timelines or switch points do not ascend"));
                }
            }
            switches.push(Switch {
                parent: Timeline(parent),
                at,
            });
        }
        if switches.is_empty() && tli.0 > 1 {
            return Err(format!("history of timeline {} names no ancestor", tli.0));
        }
        Ok(TimelineHistory { tli, switches })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgresql_writes_and_refuses_the_rest() {
        let text =
            "1\t0/3000000\tno recovery target specified\n\n2\t0/5000158\tat restore point \"x\"\n";
        let h = TimelineHistory::parse(text, Timeline(3)).unwrap();
        assert_eq!(h.switches.len(), 2);
        assert_eq!(h.switches[1].parent, Timeline(2));
        assert_eq!(h.switches[1].at, "0/5000158".parse().unwrap());
        for bad in [
            "",
            "x\t0/3000000\n",
            "1\tnot-an-lsn\n",
            "3\t0/3000000\n",
            "2\t0/3000000\n1\t0/4000000\n",
            "\u{0}\u{1}garbage",
        ] {
            assert!(TimelineHistory::parse(bad, Timeline(3)).is_err(), "{bad:?}");
        }
    }
}
