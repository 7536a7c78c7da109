//! The long page header at the start of every WAL segment (`XLogLongPageHeaderData`), and the
//! check that a file really is the segment its name says, of the cluster we serve.

use super::control::{PgVersion, SystemId};
use super::lsn::Lsn;
use super::wal::{WalSegSize, WalSegmentName};

/// Size of `XLogLongPageHeaderData` on disk.
pub const LONG_HEADER_LEN: usize = 40;
/// `XLP_LONG_HEADER`: set in `xlp_info` on the first page of a segment.
pub(crate) const XLP_LONG_HEADER: u16 = 0x0002;

/// The fields of a segment's first page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    pub magic: u16,
    pub info: u16,
    pub tli: u32,
    pub page_addr: Lsn,
    pub system_id: SystemId,
    pub seg_size: u32,
    pub block_size: u32,
}

/// What a segment must match: the cluster's identity as recorded in the repository.
#[derive(Debug, Clone, Copy)]
pub struct WalExpect {
    pub system_id: SystemId,
    pub version: PgVersion,
    pub seg_size: WalSegSize,
}

impl WalHeader {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let b = bytes.get(..LONG_HEADER_LEN).ok_or_else(|| {
            format!(
                "too short for a wal segment ({} bytes, the header alone is {LONG_HEADER_LEN})",
                bytes.len()
            )
        })?;
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
        Ok(WalHeader {
            magic: u16_at(0),
            info: u16_at(2),
            tli: u32_at(4),
            page_addr: Lsn(u64_at(8)),
            system_id: SystemId(u64_at(24)),
            seg_size: u32_at(32),
            block_size: u32_at(36),
        })
    }

    /// Checks that this header opens segment `name` of the expected cluster. The timeline in
    /// the header is not compared: the first segment of a new timeline starts with a page
    /// written on the old one.
    pub fn check(&self, name: WalSegmentName, expect: &WalExpect) -> Result<(), String> {
        let want_magic = expect.version.wal_page_magic();
        if self.magic != want_magic {
            return Err(format!(
                "not a postgresql {} wal segment: page magic {:#06x}, expected {:#06x}",
                expect.version, self.magic, want_magic
            ));
        }
        if self.info & XLP_LONG_HEADER == 0 {
            return Err("not the start of a wal segment: the first page has no long header".into());
        }
        if self.system_id != expect.system_id {
            return Err(format!(
                "wal segment belongs to another cluster: system id {}, the repository's is {}",
                self.system_id, expect.system_id
            ));
        }
        if self.seg_size != expect.seg_size.bytes() {
            return Err(format!(
                "wal segment size {} differs from the repository's {}",
                self.seg_size,
                expect.seg_size.bytes()
            ));
        }
        let want_addr = name.start_lsn(expect.seg_size);
        if self.page_addr != want_addr {
            return Err(format!(
                "wal segment starts at {}, but its name says {}",
                self.page_addr, want_addr
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::fixtures::synth_header;
    use crate::pg::wal::Timeline;

    fn expect() -> WalExpect {
        WalExpect {
            system_id: SystemId(77),
            version: PgVersion::new(15).unwrap(),
            seg_size: WalSegSize::DEFAULT,
        }
    }

    fn name(segno: u64) -> WalSegmentName {
        WalSegmentName {
            tli: Timeline(1),
            segno,
        }
    }

    #[test]
    fn accepts_the_segment_its_name_says() {
        let h = synth_header(0xD110, 77, name(5), WalSegSize::DEFAULT);
        WalHeader::parse(&h)
            .unwrap()
            .check(name(5), &expect())
            .unwrap();
    }

    #[test]
    fn refuses_other_cluster_version_size_or_position() {
        let seg = WalSegSize::DEFAULT;
        let cases = [
            (synth_header(0xD110, 78, name(5), seg), "another cluster"),
            (synth_header(0xD113, 77, name(5), seg), "page magic"),
            (synth_header(0xD110, 77, name(6), seg), "its name says"),
            (
                synth_header(0xD110, 77, name(5), WalSegSize::new(1 << 20).unwrap()),
                "segment size",
            ),
        ];
        for (bytes, want) in cases {
            let err = WalHeader::parse(&bytes)
                .unwrap()
                .check(name(5), &expect())
                .unwrap_err();
            assert!(err.contains(want), "{err} should mention {want}");
        }
        assert!(WalHeader::parse(&[0u8; 10]).is_err());
        let zeros = WalHeader::parse(&[0u8; 64]).unwrap();
        assert!(zeros.check(name(5), &expect()).is_err());
    }
}
