//! What the archive holds, per timeline: runs of consecutive segments and the gaps between
//! them, and whether a backup's WAL (start to stop) is all there. Pure.

use serde::Serialize;

use crate::pg::{Lsn, Timeline, WalFileName, WalSegSize, WalSegmentName};

/// One run of consecutive segments of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalRange {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
}

/// Segments missing between two runs of the same timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalGap {
    pub timeline: u32,
    pub first_missing: String,
    pub last_missing: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WalSummary {
    pub ranges: Vec<WalRange>,
    pub gaps: Vec<WalGap>,
    /// Timelines with a history file.
    pub histories: Vec<u32>,
    #[serde(skip)]
    segments: Vec<WalSegmentName>,
}

impl WalSummary {
    /// From the archive's file names; names that are not WAL are ignored.
    pub fn new(names: &[String], seg: WalSegSize) -> WalSummary {
        let mut segments = Vec::new();
        let mut histories = Vec::new();
        for n in names {
            match WalFileName::parse(n, seg) {
                Ok(WalFileName::Segment(s)) => segments.push(s),
                Ok(WalFileName::History(t)) => histories.push(t.0),
                _ => {}
            }
        }
        segments.sort();
        segments.dedup();
        let name = |s: WalSegmentName| s.file_name(seg);
        let (mut ranges, mut gaps) = (Vec::new(), Vec::new());
        let mut run: Option<(WalSegmentName, WalSegmentName)> = None;
        for &s in &segments {
            run = match run {
                Some((first, last)) if last.tli == s.tli && last.segno + 1 == s.segno => {
                    Some((first, s))
                }
                Some((first, last)) => {
                    if last.tli == s.tli {
                        gaps.push(WalGap {
                            timeline: s.tli.0,
                            first_missing: name(last.next()),
                            last_missing: name(WalSegmentName {
                                tli: s.tli,
                                segno: s.segno - 1,
                            }),
                        });
                    }
                    ranges.push(range(first, last, seg));
                    Some((s, s))
                }
                None => Some((s, s)),
            };
        }
        if let Some((first, last)) = run {
            ranges.push(range(first, last, seg));
        }
        WalSummary {
            ranges,
            gaps,
            histories,
            segments,
        }
    }

    /// The segments of `from`'s timeline missing from `from` up to the newest archived segment
    /// of that timeline.
    pub fn missing_from(&self, from: WalSegmentName, seg: WalSegSize) -> Vec<String> {
        let newest = self
            .segments
            .iter()
            .filter(|s| s.tli == from.tli)
            .map(|s| s.segno)
            .max();
        let Some(newest) = newest else {
            return vec![from.file_name(seg)];
        };
        (from.segno..=newest)
            .map(|segno| WalSegmentName {
                tli: from.tli,
                segno,
            })
            .filter(|s| self.segments.binary_search(s).is_err())
            .map(|s| s.file_name(seg))
            .collect()
    }

    /// Whether every segment from `start` to `stop` on `tli` is archived.
    pub fn covers(&self, tli: Timeline, start: Lsn, stop: Lsn, seg: WalSegSize) -> bool {
        let (first, last) = (
            WalSegmentName::containing(tli, start, seg),
            WalSegmentName::containing(tli, stop, seg),
        );
        (first.segno..=last.segno).all(|segno| {
            self.segments
                .binary_search(&WalSegmentName { tli, segno })
                .is_ok()
        })
    }
}

fn range(first: WalSegmentName, last: WalSegmentName, seg: WalSegSize) -> WalRange {
    WalRange {
        timeline: first.tli.0,
        first: first.file_name(seg),
        last: last.file_name(seg),
        segments: last.segno - first.segno + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_gaps_and_coverage() {
        let seg = WalSegSize::DEFAULT;
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000005",
            "000000010000000000000005.00000028.backup",
            "00000002.history",
            "000000020000000000000005",
            "000000020000000100000000",
            "repo.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let w = WalSummary::new(&names, seg);
        let runs: Vec<(u32, &str, u64)> = w
            .ranges
            .iter()
            .map(|r| (r.timeline, r.first.as_str(), r.segments))
            .collect();
        assert_eq!(
            runs,
            vec![
                (1, "000000010000000000000001", 2),
                (1, "000000010000000000000005", 1),
                (2, "000000020000000000000005", 1),
                (2, "000000020000000100000000", 1),
            ]
        );
        assert_eq!(w.gaps.len(), 2);
        assert_eq!(w.gaps[0].first_missing, "000000010000000000000003");
        assert_eq!(w.gaps[0].last_missing, "000000010000000000000004");
        assert_eq!(w.gaps[1].first_missing, "000000020000000000000006");
        assert_eq!(w.gaps[1].last_missing, "0000000200000000000000FF");
        assert_eq!(w.histories, vec![2]);
        let at = |segno: u64, offset: u64| Lsn((segno << 24) + offset);
        assert!(w.covers(Timeline(1), at(1, 40), at(2, 8), seg));
        assert!(!w.covers(Timeline(1), at(2, 0), at(3, 0), seg));
    }
}
