//! Synthesized PostgreSQL files for tests and benchmarks (as pgBackRest's test harness builds
//! pg_control and WAL headers in code): a valid `pg_control` of any supported major and WAL
//! segments with a correct long page header. Never used by the commands themselves.

use super::control::layout;
use super::wal::{WalSegSize, WalSegmentName};
use super::wal_header::{LONG_HEADER_LEN, XLP_LONG_HEADER};

/// `(pg_control_version, catalog_version_no)` of a released major.
pub fn control_versions(major: u32) -> (u32, u32) {
    match major {
        13 => (1300, 202007201),
        14 => (1300, 202107181),
        15 => (1300, 202209061),
        16 => (1300, 202307071),
        17 => (1700, 202406281),
        18 => (1800, 202506291),
        _ => (1902, 202607272),
    }
}

/// A `global/pg_control` image with a valid CRC.
pub fn synth_control(sysid: u64, pg_control_version: u32, catver: u32, seg_size: u32) -> Vec<u8> {
    let Some(l) = layout(pg_control_version) else {
        return Vec::new();
    };
    let mut b = vec![0u8; 8192];
    let mut put = |off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, &sysid.to_le_bytes());
    put(8, &pg_control_version.to_le_bytes());
    put(12, &catver.to_le_bytes());
    put(16, &6u32.to_le_bytes());
    put(32, &0x0000_0001_0000_0028u64.to_le_bytes());
    put(40, &0x0000_0001_0000_0028u64.to_le_bytes());
    put(48, &3u32.to_le_bytes());
    put(l.blcksz, &8192u32.to_le_bytes());
    put(l.seg_size, &seg_size.to_le_bytes());
    put(l.checksum_version, &1u32.to_le_bytes());
    let crc = crc32c::crc32c(&b[..l.crc]);
    b[l.crc..l.crc + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The first page header PostgreSQL writes for segment `name`.
pub fn synth_header(magic: u16, sysid: u64, name: WalSegmentName, seg: WalSegSize) -> Vec<u8> {
    let mut b = vec![0u8; LONG_HEADER_LEN];
    b[0..2].copy_from_slice(&magic.to_le_bytes());
    b[2..4].copy_from_slice(&XLP_LONG_HEADER.to_le_bytes());
    b[4..8].copy_from_slice(&name.tli.0.to_le_bytes());
    b[8..16].copy_from_slice(&name.start_lsn(seg).0.to_le_bytes());
    b[24..32].copy_from_slice(&sysid.to_le_bytes());
    b[32..36].copy_from_slice(&seg.bytes().to_le_bytes());
    b[36..40].copy_from_slice(&8192u32.to_le_bytes());
    b
}

/// A whole segment: the header, then `seed`-dependent bytes that compress about as well as
/// real WAL (repetitive records with varying fields), zero-filled after `used` bytes.
pub fn synth_segment(
    magic: u16,
    sysid: u64,
    name: WalSegmentName,
    seg: WalSegSize,
    seed: u64,
    used: usize,
) -> Vec<u8> {
    let mut b = vec![0u8; seg.bytes() as usize];
    b[..LONG_HEADER_LEN].copy_from_slice(&synth_header(magic, sysid, name, seg));
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let end = used.min(b.len());
    let mut i = LONG_HEADER_LEN;
    while i + 8 <= end {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // A third of the words random, the rest a slowly changing counter: roughly 3:1 zstd.
        let word = if (i / 8) % 3 == 0 {
            x
        } else {
            (i as u64 / 64) ^ seed
        };
        b[i..i + 8].copy_from_slice(&word.to_le_bytes());
        i += 8;
    }
    b
}
