//! WAL file names: `Timeline`, `WalSegSize`, `WalSegmentName` and `WalFileName`, the four kinds
//! of file that `%f` can name (segment, `.partial`, `.history`, `.backup`).

use std::fmt;
use std::str::FromStr;

use super::lsn::Lsn;

/// A timeline id (PostgreSQL's `TimeLineID`); printed as 8 hex digits in file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeline(pub u32);

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

/// A digit of the upper-case hex PostgreSQL writes in WAL file names.
fn is_upper_hex(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'A'..=b'F')
}

impl FromStr for Timeline {
    type Err = String;

    /// Accepts the 8-hex-digit form of file names, or a decimal number as operators type it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = if s.len() == 8 && s.bytes().all(is_upper_hex) {
            u32::from_str_radix(s, 16).ok()
        } else {
            s.parse::<u32>().ok()
        };
        match value {
            Some(v) if v > 0 => Ok(Timeline(v)),
            _ => Err(format!("invalid timeline '{s}'")),
        }
    }
}

/// The WAL segment size of a cluster (`wal_segment_size`): a power of two from 1 MiB to 1 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalSegSize(u32);

impl WalSegSize {
    pub const DEFAULT: WalSegSize = WalSegSize(16 * 1024 * 1024);
    /// The smallest size allows the most segment names: parsing with it checks a name's
    /// shape for every cluster, before the repository says the real size.
    pub const SMALLEST: WalSegSize = WalSegSize(1 << 20);

    pub fn new(bytes: u32) -> Result<Self, String> {
        if bytes.is_power_of_two() && (1 << 20..=1 << 30).contains(&bytes) {
            Ok(WalSegSize(bytes))
        } else {
            Err(format!(
                "invalid wal segment size {bytes}: must be a power of two from 1 MiB to 1 GiB"
            ))
        }
    }

    pub fn bytes(self) -> u32 {
        self.0
    }

    /// How many segments one 4 GiB "log" (the middle 8 hex digits) holds.
    pub fn segments_per_log(self) -> u64 {
        0x1_0000_0000 / u64::from(self.0)
    }
}

/// A WAL segment's identity: timeline and segment number. Ordering is replay order within
/// a timeline (timeline first, then number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalSegmentName {
    pub tli: Timeline,
    pub segno: u64,
}

impl WalSegmentName {
    /// Parses the 24-hex-digit name of a segment for the given segment size.
    pub fn parse(s: &str, seg: WalSegSize) -> Result<Self, String> {
        let bad = || format!("invalid wal segment name '{s}'");
        // PostgreSQL names WAL files in upper-case hex only; another spelling is not its file.
        if s.len() != 24 || !s.bytes().all(is_upper_hex) {
            return Err(bad());
        }
        let hex = |r: std::ops::Range<usize>| u32::from_str_radix(&s[r], 16).map_err(|_| bad());
        let (tli, log, seg_in_log) = (hex(0..8)?, hex(8..16)?, hex(16..24)?);
        if tli == 0 || u64::from(seg_in_log) >= seg.segments_per_log() {
            return Err(bad());
        }
        Ok(WalSegmentName {
            tli: Timeline(tli),
            segno: u64::from(log) * seg.segments_per_log() + u64::from(seg_in_log),
        })
    }

    /// The segment holding `lsn` on timeline `tli`.
    pub fn containing(tli: Timeline, lsn: Lsn, seg: WalSegSize) -> Self {
        WalSegmentName {
            tli,
            segno: lsn.0 / u64::from(seg.bytes()),
        }
    }

    pub fn start_lsn(self, seg: WalSegSize) -> Lsn {
        Lsn(self.segno * u64::from(seg.bytes()))
    }

    pub fn next(self) -> Self {
        WalSegmentName {
            tli: self.tli,
            segno: self.segno + 1,
        }
    }

    /// The 24-hex-digit file name.
    pub fn file_name(self, seg: WalSegSize) -> String {
        let per_log = seg.segments_per_log();
        format!(
            "{}{:08X}{:08X}",
            self.tli,
            self.segno / per_log,
            self.segno % per_log
        )
    }

    /// The first 16 hex digits (timeline + log): the repository groups segments by this.
    pub fn log_dir(self, seg: WalSegSize) -> String {
        format!("{}{:08X}", self.tli, self.segno / seg.segments_per_log())
    }
}

/// What PostgreSQL's `%f` can name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WalFileName {
    /// A full segment, `000000010000000000000001`.
    Segment(WalSegmentName),
    /// The partial last segment of an old timeline after promotion, `<segment>.partial`.
    Partial(WalSegmentName),
    /// A timeline history file, `00000002.history`.
    History(Timeline),
    /// A backup history file, `<segment>.<8 hex offset>.backup`.
    BackupHistory(WalSegmentName, u32),
}

impl WalFileName {
    pub fn parse(s: &str, seg: WalSegSize) -> Result<Self, String> {
        if let Some(tli) = s.strip_suffix(".history") {
            if tli.len() == 8 {
                return Ok(WalFileName::History(tli.parse()?));
            }
        } else if let Some(name) = s.strip_suffix(".partial") {
            return Ok(WalFileName::Partial(WalSegmentName::parse(name, seg)?));
        } else if let Some(rest) = s.strip_suffix(".backup") {
            if let Some((name, off)) = rest.split_once('.') {
                if off.len() == 8 && off.bytes().all(is_upper_hex) {
                    let offset = u32::from_str_radix(off, 16)
                        .map_err(|_| format!("invalid backup history file name '{s}'"))?;
                    return Ok(WalFileName::BackupHistory(
                        WalSegmentName::parse(name, seg)?,
                        offset,
                    ));
                }
            }
        } else {
            return Ok(WalFileName::Segment(WalSegmentName::parse(s, seg)?));
        }
        Err(format!("invalid wal file name '{s}'"))
    }

    pub fn file_name(&self, seg: WalSegSize) -> String {
        match self {
            WalFileName::Segment(n) => n.file_name(seg),
            WalFileName::Partial(n) => format!("{}.partial", n.file_name(seg)),
            WalFileName::History(t) => format!("{t}.history"),
            WalFileName::BackupHistory(n, off) => format!("{}.{off:08X}.backup", n.file_name(seg)),
        }
    }

    /// The segment this file carries a WAL header for (segments and partial segments only).
    pub fn segment(&self) -> Option<WalSegmentName> {
        match self {
            WalFileName::Segment(n) | WalFileName::Partial(n) => Some(*n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: WalSegSize = WalSegSize::DEFAULT;

    #[test]
    fn segment_name_round_trip_and_arithmetic() {
        let n = WalSegmentName::parse("0000000100000002000000FF", SEG).unwrap();
        assert_eq!(n.tli, Timeline(1));
        assert_eq!(n.segno, 2 * 256 + 255);
        assert_eq!(n.file_name(SEG), "0000000100000002000000FF");
        assert_eq!(n.next().file_name(SEG), "000000010000000300000000");
        assert_eq!(n.start_lsn(SEG), "2/FF000000".parse().unwrap());
        assert_eq!(n.log_dir(SEG), "0000000100000002");
        assert_eq!(
            WalSegmentName::containing(Timeline(1), "2/FF123456".parse().unwrap(), SEG),
            n
        );
    }

    #[test]
    fn segment_names_depend_on_segment_size() {
        let big = WalSegSize::new(1 << 30).unwrap();
        assert!(WalSegmentName::parse("000000010000000000000004", big).is_err());
        let n = WalSegmentName::parse("000000010000000100000003", big).unwrap();
        assert_eq!(n.segno, 4 + 3);
        assert_eq!(n.file_name(big), "000000010000000100000003");
    }

    #[test]
    fn rejects_bad_segment_names() {
        for bad in [
            "",
            "00000001000000000000000",
            "0000000100000000000000001",
            "00000000000000000000000A",
            "000000010000000000000100",
            "00000001000000000000000G",
        ] {
            assert!(WalSegmentName::parse(bad, SEG).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_kinds_round_trip() {
        for name in [
            "000000010000000000000001",
            "000000010000000000000001.partial",
            "0000000A.history",
            "000000010000000000000002.00000028.backup",
        ] {
            let parsed = WalFileName::parse(name, SEG).unwrap();
            assert_eq!(parsed.file_name(SEG), name);
        }
        assert_eq!(
            WalFileName::parse("0000000A.history", SEG).unwrap(),
            WalFileName::History(Timeline(10))
        );
        for bad in [
            "RECOVERYXLOG",
            "0000000A.hist",
            "1.history",
            "x.partial",
            "a.b.backup",
            "00000001000000000000000a",
            "0000000a.history",
            "000000010000000000000002.0000002a.backup",
        ] {
            assert!(WalFileName::parse(bad, SEG).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeline_parses_hex_names_and_decimal() {
        assert_eq!("0000000A".parse::<Timeline>().unwrap(), Timeline(10));
        assert_eq!("10".parse::<Timeline>().unwrap(), Timeline(10));
        assert!("0".parse::<Timeline>().is_err());
        assert_eq!(Timeline(10).to_string(), "0000000A");
    }

    #[test]
    fn seg_size_must_be_power_of_two_in_range() {
        assert!(WalSegSize::new(16 << 20).is_ok());
        assert!(WalSegSize::new(3 << 20).is_err());
        assert!(WalSegSize::new(1 << 19).is_err());
        assert!(WalSegSize::new(1 << 31).is_err());
    }
}
