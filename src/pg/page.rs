//! Data pages: the page header's LSN, PostgreSQL's page checksum (FNV-1a in 32 parallel
//! lanes, as `pg_checksum_page` computes it), and which files hold relation pages.

/// The page size pgkeep supports (PostgreSQL's default BLCKSZ).
pub const PAGE_SIZE: usize = 8192;
/// Blocks per relation segment file (1 GiB / 8 KiB, PostgreSQL's default RELSEG_SIZE).
pub const RELSEG_BLOCKS: u32 = 131_072;

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
/// The fixed seeds of the 32 lanes: part of PostgreSQL's on-disk format.
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

fn mix(sum: u32, value: u32) -> u32 {
    let t = sum ^ value;
    t.wrapping_mul(FNV_PRIME) ^ (t >> 17)
}

/// `pg_checksum_page`: the checksum PostgreSQL stores in `pd_checksum` for block `blkno`.
pub fn checksum(page: &[u8; PAGE_SIZE], blkno: u32) -> u16 {
    let mut sums = BASE_OFFSETS;
    for (i, word) in page.chunks_exact(4).enumerate() {
        // pd_checksum (bytes 8..10) counts as zero.
        let mut w = [word[0], word[1], word[2], word[3]];
        if i == 2 {
            w[0] = 0;
            w[1] = 0;
        }
        let lane = i % N_SUMS;
        sums[lane] = mix(sums[lane], u32::from_le_bytes(w));
    }
    for _ in 0..2 {
        for s in sums.iter_mut() {
            *s = mix(*s, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    ((folded % 65535) + 1) as u16
}

/// The page's LSN (`pd_lsn`).
pub fn lsn(page: &[u8; PAGE_SIZE]) -> u64 {
    let hi = u32::from_le_bytes([page[0], page[1], page[2], page[3]]);
    let lo = u32::from_le_bytes([page[4], page[5], page[6], page[7]]);
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Whether a page's stored checksum holds. New (all-zero-header) pages and pages changed since
/// the backup started (which WAL replay rewrites) are not judged.
pub fn verify(page: &[u8; PAGE_SIZE], blkno: u32, backup_start: u64) -> bool {
    let pd_upper = u16::from_le_bytes([page[14], page[15]]);
    if pd_upper == 0 || lsn(page) >= backup_start {
        return true;
    }
    let stored = u16::from_le_bytes([page[8], page[9]]);
    stored == checksum(page, blkno)
}

/// For a relation data file (`base/<db>/<relfilenode>[_fsm|_vm|_init][.<segno>]`, the same
/// under `global/` and `pg_tblspc/`), the block number its first page has.
pub fn first_block(path: &str) -> Option<u32> {
    let (dir, name) = path.rsplit_once('/')?;
    let in_data = dir == "global" || dir.starts_with("base/") || dir.starts_with("pg_tblspc/");
    if !in_data {
        return None;
    }
    let (stem, segno) = match name.split_once('.') {
        Some((s, n)) => (s, n.parse::<u32>().ok()?),
        None => (name, 0),
    };
    let node = ["_fsm", "_vm", "_init"]
        .iter()
        .find_map(|fork| stem.strip_suffix(fork))
        .unwrap_or(stem);
    (!node.is_empty() && node.bytes().all(|b| b.is_ascii_digit()))
        .then(|| segno.saturating_mul(RELSEG_BLOCKS))
}

/// Whether a file is a segment of a relation's visibility map (`<relfilenode>_vm[.<segno>]`).
pub fn is_visibility_map(path: &str) -> bool {
    first_block(path).is_some()
        && path
            .rsplit('/')
            .next()
            .and_then(|name| name.split('.').next())
            .is_some_and(|stem| stem.ends_with("_vm"))
}

/// Whether a file is a segment of a relation's main fork (`<relfilenode>[.<segno>]`).
pub fn is_main_fork(path: &str) -> bool {
    first_block(path).is_some()
        && path
            .rsplit('/')
            .next()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with_checksum(blkno: u32) -> [u8; PAGE_SIZE] {
        let mut p = [0u8; PAGE_SIZE];
        p[4] = 0x28; // pd_lsn 0/28
        p[12..14].copy_from_slice(&40u16.to_le_bytes()); // pd_lower
        p[14..16].copy_from_slice(&8000u16.to_le_bytes()); // pd_upper
        for (i, b) in p[8000..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let c = checksum(&p, blkno);
        p[8..10].copy_from_slice(&c.to_le_bytes());
        p
    }

    #[test]
    fn checksum_depends_on_content_and_block_not_on_its_own_field() {
        let p = page_with_checksum(7);
        assert!(verify(&p, 7, u64::MAX));
        assert!(
            !verify(&p, 8, u64::MAX),
            "the block number is part of the checksum"
        );
        let mut bad = p;
        bad[8100] ^= 1;
        assert!(!verify(&bad, 7, u64::MAX));
        // Changed after the backup started: WAL replay rewrites it, so it is not judged.
        assert!(verify(&bad, 7, 0x28));
        assert!(
            verify(&[0u8; PAGE_SIZE], 3, u64::MAX),
            "new pages are not judged"
        );
        let c = checksum(&p, 7);
        assert!(c >= 1, "a checksum is never zero");
    }

    #[test]
    fn relation_files_and_their_first_block() {
        assert_eq!(first_block("base/5/16384"), Some(0));
        assert_eq!(first_block("base/5/16384.2"), Some(2 * RELSEG_BLOCKS));
        assert_eq!(first_block("base/5/16384_vm"), Some(0));
        assert!(is_main_fork("base/5/16384.2") && is_main_fork("global/1262"));
        assert!(!is_main_fork("base/5/16384_vm") && !is_main_fork("base/5/16384_fsm.1"));
        assert_eq!(first_block("global/1262_fsm"), Some(0));
        assert_eq!(
            first_block("pg_tblspc/16400/PG_15_202209061/5/16401"),
            Some(0)
        );
        for not in [
            "base/5/pg_filenode.map",
            "global/pg_control",
            "PG_VERSION",
            "base/5/PG_VERSION",
            "pg_wal/000000010000000000000001",
            "base/5/pg_internal.init",
        ] {
            assert_eq!(first_block(not), None, "{not}");
        }
    }
}
