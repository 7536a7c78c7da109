//! What a WAL file must be, given its name, once it is decoded: a segment (or `.partial`,
//! which PostgreSQL pads) exactly one segment long whose long page header opens the segment
//! its name says, of the repository's cluster; a history file that parses; a backup history
//! file that reads as one. archive-get checks it before it serves a file, verify before it
//! vouches for one: two swapped objects both decode, only their content tells them apart.

use super::timeline::TimelineHistory;
use super::wal::WalFileName;
use super::wal_header::LONG_HEADER_LEN;
use super::wal_header::{WalExpect, WalHeader};

/// History and backup history files are a few hundred bytes; how much of one is checked.
pub const TEXT_LIMIT: usize = 1 << 20;

/// How many leading plaintext bytes `check_content` needs to judge the file `name`.
pub fn head_len(name: &WalFileName) -> usize {
    match name {
        WalFileName::Segment(_) | WalFileName::Partial(_) => LONG_HEADER_LEN,
        _ => TEXT_LIMIT,
    }
}

/// Whether a decoded WAL file is the file `name` says, of the cluster `expect` describes:
/// `head` is its first bytes (a segment's long page header, or a whole history file), `size`
/// its plaintext size.
pub fn check_content(
    name: &WalFileName,
    expect: &WalExpect,
    head: &[u8],
    size: u64,
) -> Result<(), String> {
    match name {
        WalFileName::Segment(s) | WalFileName::Partial(s) => {
            // archive-push stores a segment (or a partial one, which PostgreSQL pads) only
            // when it is exactly one segment long.
            let want = u64::from(expect.seg_size.bytes());
            if size != want {
                return Err(format!(
                    "holds {size} bytes, a wal segment of this repository is {want}"
                ));
            }
            WalHeader::parse(head)?.check(*s, expect)
        }
        WalFileName::History(tli) => {
            let text = std::str::from_utf8(head)
                .map_err(|_| "not a timeline history file (not text)".to_string())?;
            TimelineHistory::parse(text, *tli).map(|_| ())
        }
        WalFileName::BackupHistory(..) => std::str::from_utf8(head)
            .ok()
            .filter(|t| t.contains("START WAL LOCATION"))
            .map(|_| ())
            .ok_or_else(|| "not a backup history file".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::fixtures::synth_header;
    use crate::pg::{PgVersion, SystemId, Timeline, WalSegSize, WalSegmentName};

    #[test]
    fn a_segment_must_be_whole_and_the_one_its_name_says() {
        let seg = WalSegSize::DEFAULT;
        let expect = WalExpect {
            system_id: SystemId(77),
            version: PgVersion::new(15).unwrap(),
            seg_size: seg,
        };
        let name = |segno| WalSegmentName {
            tli: Timeline(1),
            segno,
        };
        let full = u64::from(seg.bytes());
        let head = synth_header(0xD110, 77, name(5), seg);
        let five = WalFileName::Segment(name(5));
        check_content(&five, &expect, &head, full).unwrap();
        check_content(&WalFileName::Partial(name(5)), &expect, &head, full).unwrap();
        let e = check_content(&five, &expect, &head, full - 8192).unwrap_err();
        assert!(e.contains("holds"), "{e}");
        let e = check_content(&WalFileName::Segment(name(6)), &expect, &head, full).unwrap_err();
        assert!(e.contains("its name says"), "{e}");
        let other = synth_header(0xD110, 78, name(5), seg);
        assert!(check_content(&five, &expect, &other, full).is_err());
        let h = WalFileName::History(Timeline(2));
        check_content(
            &h,
            &expect,
            b"1\t0/3000000\tno recovery target specified\n",
            50,
        )
        .unwrap();
        assert!(check_content(&h, &expect, b"\xff\xfe", 2).is_err());
    }
}
