//! PostgreSQL 17's incremental files: what `BASE_BACKUP ... INCREMENTAL` sends in place of a
//! relation segment whose changes its WAL summaries know (`INCREMENTAL.<relfilenode>[.<seg>]`).
//! The header says which blocks follow and how much of the older copy still counts. Pure.
//!
//! ```text
//! magic 0xd3ae1f0d | block count n | truncation length (blocks)     three u32
//! n block numbers (relative to the segment's start)                 n × u32
//! zero padding to a multiple of BLCKSZ, when n > 0
//! n pages, in the order of the block numbers
//! ```
//! The integers are in the server's byte order; pgkeep, like its page code, supports
//! little-endian servers only (x86-64, arm64), and a header that does not parse is refused.

use std::io::Read;

use super::page::{PAGE_SIZE, RELSEG_BLOCKS};

/// `INCREMENTAL_MAGIC` of PostgreSQL's `basebackup_incremental.h`.
pub const MAGIC: u32 = 0xd3ae_1f0d;

const PREFIX: &str = "INCREMENTAL.";

/// The header of one incremental file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementalHeader {
    /// The blocks whose pages follow, relative to the start of the segment file.
    pub blocks: Vec<u32>,
    /// Blocks of the older copies that still count: an older copy is cut to this length
    /// before these pages are laid over it (the relation was truncated in between, or not).
    pub truncation_blocks: u32,
    /// Bytes of header, block numbers and padding, before the first page.
    pub header_len: u64,
}

impl IncrementalHeader {
    /// Reads the header from the start of an incremental file of `size` bytes, leaving
    /// `input` at the first page. Refuses a header that does not describe exactly `size` bytes.
    pub fn read(input: &mut impl Read, size: u64) -> Result<IncrementalHeader, String> {
        let mut fixed = [0u8; 12];
        input
            .read_exact(&mut fixed)
            .map_err(|e| format!("incremental file header: {e}"))?;
        let word =
            |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        if word(0) != MAGIC {
            return Err(format!(
                "not a PostgreSQL incremental file (magic {:#010x})",
                word(0)
            ));
        }
        // PostgreSQL 17 before 17.8 sent the truncation length unclamped (beyond a segment
        // for the earlier segments of a relation truncated in a later one); a segment cannot
        // be longer, and later servers send exactly this clamp.
        let (n, truncation_blocks) = (word(4), word(8).min(RELSEG_BLOCKS));
        if n > RELSEG_BLOCKS {
            return Err(format!("incremental file header out of range: {n} blocks"));
        }
        let header_len = header_len(n);
        let expected = header_len + u64::from(n) * PAGE_SIZE as u64;
        if expected != size {
            return Err(format!(
                "incremental file of {size} bytes, its header describes {expected}"
            ));
        }
        let mut raw = vec![0u8; (header_len - 12) as usize];
        input
            .read_exact(&mut raw)
            .map_err(|e| format!("incremental file block list: {e}"))?;
        let blocks: Vec<u32> = raw[..4 * n as usize]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(b) = blocks.iter().find(|&&b| b >= RELSEG_BLOCKS) {
            return Err(format!(
                "incremental file names block {b}, beyond a segment"
            ));
        }
        // The server sorts them; a repeated block would make the rebuild order-dependent.
        if blocks.windows(2).any(|w| w[0] >= w[1]) {
            return Err("incremental file's block numbers are not strictly ascending".into());
        }
        Ok(IncrementalHeader {
            blocks,
            truncation_blocks,
            header_len,
        })
    }

    /// The length in blocks of the file this incremental rebuilds: its truncation length, or
    /// past its last block if the relation grew.
    pub fn rebuilt_blocks(&self) -> u32 {
        let past_last = self.blocks.iter().max().map_or(0, |b| b + 1);
        self.truncation_blocks.max(past_last)
    }
}

/// Bytes before the first page of an incremental file of `n` blocks: padded to a whole page
/// when it has pages, so they are aligned.
fn header_len(n: u32) -> u64 {
    let raw = 12 + 4 * u64::from(n);
    if n == 0 {
        raw
    } else {
        raw.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64
    }
}

/// The data-directory file an incremental file stands for (`base/5/INCREMENTAL.16384.1` →
/// `base/5/16384.1`), or `None` for any other file.
pub fn target_path(path: &str) -> Option<String> {
    let (dir, name) = match path.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, path),
    };
    let rest = name.strip_prefix(PREFIX).filter(|r| !r.is_empty())?;
    Some(match dir {
        Some(d) => format!("{d}/{rest}"),
        None => rest.to_string(),
    })
}

/// An incremental file as PostgreSQL writes it: page `b` filled with the byte `b`, for tests.
#[cfg(test)]
pub(crate) fn fixture(blocks: &[u32], truncation: u32) -> Vec<u8> {
    let mut f = Vec::new();
    for w in [MAGIC, blocks.len() as u32, truncation] {
        f.extend_from_slice(&w.to_le_bytes());
    }
    for b in blocks {
        f.extend_from_slice(&b.to_le_bytes());
    }
    if !blocks.is_empty() {
        f.resize(f.len().div_ceil(PAGE_SIZE) * PAGE_SIZE, 0);
    }
    for b in blocks {
        f.extend_from_slice(&[*b as u8; PAGE_SIZE]);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::fixture as file;

    #[test]
    fn headers_parse_and_leave_the_reader_at_the_first_page() {
        let f = file(&[2, 9], 5);
        let mut r = &f[..];
        let h = IncrementalHeader::read(&mut r, f.len() as u64).unwrap();
        assert_eq!(h.blocks, vec![2, 9]);
        assert_eq!((h.truncation_blocks, h.header_len), (5, PAGE_SIZE as u64));
        assert_eq!(h.rebuilt_blocks(), 10, "grown past the truncation length");
        assert_eq!(r.len(), 2 * PAGE_SIZE);
        assert_eq!(r[0], 2);

        let f = file(&[], 7);
        assert_eq!(f.len(), 12, "no padding without pages");
        let h = IncrementalHeader::read(&mut &f[..], 12).unwrap();
        assert_eq!((h.rebuilt_blocks(), h.header_len), (7, 12));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let f = file(&[1], 3);
        let size = f.len() as u64;
        assert!(IncrementalHeader::read(&mut &f[..], size - 1).is_err());
        let mut bad = f.clone();
        bad[0] ^= 1;
        assert!(
            IncrementalHeader::read(&mut &bad[..], size)
                .unwrap_err()
                .contains("magic")
        );
        let mut far = f.clone();
        far[12..16].copy_from_slice(&RELSEG_BLOCKS.to_le_bytes());
        assert!(IncrementalHeader::read(&mut &far[..], size).is_err());
        let twice = file(&[2, 2], 3);
        assert!(IncrementalHeader::read(&mut &twice[..], twice.len() as u64).is_err());
        // An unclamped truncation length (before 17.8) reads as the segment's length.
        let mut long = f.clone();
        long[8..12].copy_from_slice(&(RELSEG_BLOCKS + 5).to_le_bytes());
        let h = IncrementalHeader::read(&mut &long[..], size).unwrap();
        assert_eq!(h.truncation_blocks, RELSEG_BLOCKS);
        assert!(IncrementalHeader::read(&mut &f[..5], size).is_err());
    }

    #[test]
    fn incremental_names_map_to_the_files_they_rebuild() {
        assert_eq!(
            target_path("base/5/INCREMENTAL.16384.1").as_deref(),
            Some("base/5/16384.1")
        );
        assert_eq!(
            target_path("global/INCREMENTAL.1262_vm").as_deref(),
            Some("global/1262_vm")
        );
        assert_eq!(target_path("base/5/16384"), None);
        assert_eq!(target_path("base/5/INCREMENTAL."), None);
    }
}
