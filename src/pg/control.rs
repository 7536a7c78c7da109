//! `global/pg_control` of PostgreSQL 13–19: `SystemId`, `PgVersion` and the parsed
//! `ControlFile`, CRC-32C checked, so that WAL and backups of another cluster are refused.
//!
//! The fields read here sit at fixed offsets at the start of `ControlFileData` for every
//! supported major; the tail (block and segment sizes, checksum version, CRC) moved between
//! `pg_control_version`s, so it is read through a per-version layout and trusted only when the
//! CRC stored at that layout's offset matches. 13 to 18 are checked against real servers
//! (tests/pg_control.rs); 19 (pg_control 1902) follows its published sources (REL_19_STABLE
//! at 19beta2): no server of 19 can be installed here yet.

use std::fmt;
use std::str::FromStr;

use super::lsn::Lsn;
use super::wal::{Timeline, WalSegSize};

/// A cluster's `system_identifier`: set by initdb, shared by its standbys and backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SystemId(pub u64);

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for SystemId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>()
            .map(SystemId)
            .map_err(|_| format!("invalid system identifier '{s}'"))
    }
}

/// A PostgreSQL major version, 13 to 19.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PgVersion(u32);

impl PgVersion {
    pub const OLDEST: u32 = 13;
    pub const NEWEST: u32 = 19;

    pub fn new(major: u32) -> Result<Self, String> {
        if (Self::OLDEST..=Self::NEWEST).contains(&major) {
            Ok(PgVersion(major))
        } else {
            Err(format!(
                "postgresql {major} is not supported: pgkeep supports {} to {}",
                Self::OLDEST,
                Self::NEWEST
            ))
        }
    }

    /// From `server_version_num` (e.g. 150004).
    pub fn from_version_num(num: u32) -> Result<Self, String> {
        Self::new(num / 10000)
    }

    pub fn major(self) -> u32 {
        self.0
    }

    /// `XLOG_PAGE_MAGIC` of this major: the first two bytes of every WAL page.
    pub fn wal_page_magic(self) -> u16 {
        match self.0 {
            13 => 0xD106,
            14 => 0xD10D,
            15 => 0xD110,
            16 => 0xD113,
            17 => 0xD116,
            18 => 0xD118,
            _ => 0xD121,
        }
    }

    /// The major a pg_control file belongs to. From 17 on each major has a `pg_control_version`
    /// of its own; 13 to 16 share 1300 and are told apart by `catalog_version_no`.
    fn of_control(pg_control_version: u32, catver: u32) -> Result<Self, String> {
        match pg_control_version {
            1300 => Self::from_catalog_version(catver).and_then(|v| {
                (v.0 <= 16)
                    .then_some(v)
                    .ok_or_else(|| format!("catalog version {catver} with pg_control version 1300"))
            }),
            1700 => Ok(PgVersion(17)),
            1800 => Ok(PgVersion(18)),
            1902 => Ok(PgVersion(19)),
            other => Err(format!("unsupported pg_control version {other}")),
        }
    }

    /// The last `catalog_version_no` of each major's release series (its final catversion).
    /// A development or beta catversion maps to the first major whose final value is >= it.
    fn from_catalog_version(catver: u32) -> Result<Self, String> {
        const FINAL: [(u32, u32); 6] = [
            (13, 202007201),
            (14, 202107181),
            (15, 202209061),
            (16, 202307071),
            (17, 202406281),
            (18, 202506291),
        ];
        FINAL
            .iter()
            .find(|(_, last)| catver <= *last)
            .filter(|_| catver > 201909212) // 12's final catversion: older is unsupported
            .map(|(major, _)| PgVersion(*major))
            .ok_or_else(|| format!("unsupported catalog version {catver}"))
    }
}

impl fmt::Display for PgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for PgVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let major = s
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("invalid postgresql major version '{s}'"))?;
        PgVersion::new(major)
    }
}

/// Where the version-dependent tail fields of `ControlFileData` sit.
pub(crate) struct Layout {
    pub(crate) blcksz: usize,
    pub(crate) seg_size: usize,
    pub(crate) checksum_version: usize,
    pub(crate) crc: usize,
}

pub(crate) fn layout(pg_control_version: u32) -> Option<Layout> {
    match pg_control_version {
        // 13, 14, 15, 16 and 17 share the tail; 17 changed only the CheckPoint copy's padding.
        1300 | 1700 => Some(Layout {
            blcksz: 216,
            seg_size: 228,
            checksum_version: 252,
            crc: 288,
        }),
        // 18 added default_char_signedness after data_checksum_version.
        1800 => Some(Layout {
            blcksz: 216,
            seg_size: 228,
            checksum_version: 252,
            crc: 292,
        }),
        // 19 grew the CheckPoint copy by 8 (logicalDecodingEnabled, a 64-bit
        // nextMultiOffset, dataChecksumState) and added slru_pages_per_segment after
        // relseg_size: offsets of the published REL_19_STABLE struct on x86_64.
        1902 => Some(Layout {
            blcksz: 224,
            seg_size: 240,
            checksum_version: 264,
            crc: 304,
        }),
        _ => None,
    }
}

/// The cluster state recorded in pg_control (`DBState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    Startup,
    Shutdowned,
    ShutdownedInRecovery,
    Shutdowning,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
    Unknown(u32),
}

impl DbState {
    fn from_raw(v: u32) -> Self {
        match v {
            0 => DbState::Startup,
            1 => DbState::Shutdowned,
            2 => DbState::ShutdownedInRecovery,
            3 => DbState::Shutdowning,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            other => DbState::Unknown(other),
        }
    }
}

/// The parts of `pg_control` pgkeep relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    pub system_id: SystemId,
    pub version: PgVersion,
    pub pg_control_version: u32,
    pub catalog_version: u32,
    pub state: DbState,
    pub checkpoint: Lsn,
    pub redo: Lsn,
    pub timeline: Timeline,
    pub block_size: u32,
    pub seg_size: WalSegSize,
    pub checksums: ChecksumState,
    /// Whether page checksums may be verified: only when they are fully on. While 19 turns
    /// them on or off online, pages may carry stale checksums, so checks are skipped.
    pub data_checksums: bool,
}

/// `data_checksum_version`: 0 or 1 up to 18; 19 adds the two states of an online change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumState {
    Off,
    On,
    /// Being turned off online (19): still written, no longer verified.
    InProgressOff,
    /// Being turned on online (19): written, not yet verified.
    InProgressOn,
}

impl ChecksumState {
    fn from_raw(v: u32) -> Result<Self, String> {
        match v {
            0 => Ok(ChecksumState::Off),
            1 => Ok(ChecksumState::On),
            2 => Ok(ChecksumState::InProgressOff),
            3 => Ok(ChecksumState::InProgressOn),
            other => Err(format!(
                "unknown data_checksum_version {other} in pg_control"
            )),
        }
    }
}

impl ControlFile {
    /// Parses the bytes of `global/pg_control` (little-endian machines, as PostgreSQL wrote them).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let u32_at = |off: usize| -> Result<u32, String> {
            bytes
                .get(off..off + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| format!("pg_control is truncated ({} bytes)", bytes.len()))
        };
        let u64_at = |off: usize| -> Result<u64, String> {
            Ok(u64::from(u32_at(off)?) | (u64::from(u32_at(off + 4)?) << 32))
        };
        let pg_control_version = u32_at(8)?;
        let layout = layout(pg_control_version).ok_or_else(|| {
            format!(
                "unsupported pg_control version {pg_control_version} (pgkeep reads those of postgresql {} to {}: 1300, 1700, 1800, 1902)",
                PgVersion::OLDEST,
                PgVersion::NEWEST
            )
        })?;
        let stored_crc = u32_at(layout.crc)?;
        let computed_crc = crc32c::crc32c(&bytes[..layout.crc]);
        if stored_crc != computed_crc {
            return Err(format!(
                "pg_control crc mismatch (stored {stored_crc:08x}, computed {computed_crc:08x}): the file is corrupt or not a pg_control file"
            ));
        }
        let catalog_version = u32_at(12)?;
        let version = PgVersion::of_control(pg_control_version, catalog_version)?;
        let checksums = ChecksumState::from_raw(u32_at(layout.checksum_version)?)?;
        let timeline = u32_at(48)?;
        Ok(ControlFile {
            system_id: SystemId(u64_at(0)?),
            version,
            pg_control_version,
            catalog_version,
            state: DbState::from_raw(u32_at(16)?),
            checkpoint: Lsn(u64_at(32)?),
            redo: Lsn(u64_at(40)?),
            timeline: Timeline(timeline),
            block_size: u32_at(layout.blcksz)?,
            seg_size: WalSegSize::new(u32_at(layout.seg_size)?)?,
            checksums,
            data_checksums: checksums == ChecksumState::On,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::fixtures::synth_control;

    #[test]
    fn parses_synthesized_control_files_of_each_major() {
        for (major, ctl, catver) in [
            (13, 1300, 202007201),
            (14, 1300, 202107181),
            (15, 1300, 202209061),
            (16, 1300, 202307071),
            (17, 1700, 202406281),
            (18, 1800, 202506291),
            (19, 1902, 202607272),
        ] {
            let bytes = synth_control(7_300_000_000_000_000_001, ctl, catver, 16 << 20);
            let c = ControlFile::parse(&bytes).unwrap();
            assert_eq!(c.version.major(), major);
            assert_eq!(c.system_id, SystemId(7_300_000_000_000_000_001));
            assert_eq!(c.seg_size, WalSegSize::DEFAULT);
            assert_eq!(c.timeline, Timeline(3));
            assert_eq!(c.checkpoint, "1/28".parse().unwrap());
            assert_eq!(c.state, DbState::InProduction);
            assert!(c.data_checksums);
        }
    }

    #[test]
    fn checksum_states_of_19_are_read_and_in_progress_is_not_verified() {
        let l = layout(1902).unwrap();
        for (raw, state, verify) in [
            (0u32, ChecksumState::Off, false),
            (1, ChecksumState::On, true),
            (2, ChecksumState::InProgressOff, false),
            (3, ChecksumState::InProgressOn, false),
        ] {
            let mut b = synth_control(42, 1902, 202607272, 16 << 20);
            b[l.checksum_version..l.checksum_version + 4].copy_from_slice(&raw.to_le_bytes());
            let crc = crc32c::crc32c(&b[..l.crc]);
            b[l.crc..l.crc + 4].copy_from_slice(&crc.to_le_bytes());
            let c = ControlFile::parse(&b).unwrap();
            assert_eq!((c.checksums, c.data_checksums), (state, verify));
        }
        let mut b = synth_control(42, 1902, 202607272, 16 << 20);
        b[l.checksum_version..l.checksum_version + 4].copy_from_slice(&9u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[..l.crc]);
        b[l.crc..l.crc + 4].copy_from_slice(&crc.to_le_bytes());
        assert!(
            ControlFile::parse(&b)
                .unwrap_err()
                .contains("data_checksum_version 9")
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut bytes = synth_control(42, 1300, 202209061, 16 << 20);
        bytes[100] ^= 1;
        let err = ControlFile::parse(&bytes).unwrap_err();
        assert!(err.contains("crc mismatch"), "{err}");
    }

    #[test]
    fn refuses_unknown_versions_and_truncation() {
        let bytes = synth_control(42, 1300, 202209061, 16 << 20);
        assert!(ControlFile::parse(&bytes[..100]).is_err());
        let mut old = bytes.clone();
        old[8..12].copy_from_slice(&1201u32.to_le_bytes());
        assert!(
            ControlFile::parse(&old)
                .unwrap_err()
                .contains("unsupported pg_control version 1201")
        );
        // A future major's version is named, never read through a wrong layout.
        let mut next = bytes.clone();
        next[8..12].copy_from_slice(&2000u32.to_le_bytes());
        let err = ControlFile::parse(&next).unwrap_err();
        assert!(err.contains("2000") && err.contains("13 to 19"), "{err}");
    }

    #[test]
    fn beta_catalog_versions_map_to_their_release() {
        assert_eq!(
            PgVersion::from_catalog_version(202105121).unwrap().major(),
            14
        );
        assert_eq!(
            PgVersion::from_catalog_version(202007201).unwrap().major(),
            13
        );
        assert!(PgVersion::from_catalog_version(201909212).is_err());
    }

    #[test]
    fn version_round_trip() {
        let v: PgVersion = "15".parse().unwrap();
        assert_eq!(v.to_string(), "15");
        assert_eq!(PgVersion::from_version_num(170004).unwrap().major(), 17);
        assert!("12".parse::<PgVersion>().is_err());
        assert_eq!("123".parse::<SystemId>().unwrap().to_string(), "123");
    }
}
