//! The page-level view of a relation file as it streams by: verify page checksums, and for an
//! incremental choose the pages the parent backup cannot provide. Pure; no I/O.

use std::collections::HashMap;

use crate::manifest::{BackupId, EntryKind, Layer, Manifest};
use crate::pg::page::{self, PAGE_SIZE};
use crate::repo::Digest;

/// What an incremental builds on.
#[derive(Debug)]
pub struct Parent {
    pub id: BackupId,
    /// The parent's start LSN: a page whose LSN is older has not changed since.
    pub start: u64,
    pub depth: u32,
    pub files: HashMap<String, ParentFile>,
}

#[derive(Debug, Clone)]
pub struct ParentFile {
    pub size: u64,
    pub sha256: Digest,
    pub layers: Vec<Layer>,
}

impl Parent {
    pub fn new(m: &Manifest) -> Parent {
        let files = m
            .entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::File {
                    size,
                    sha256,
                    layers,
                    ..
                } => Some((
                    e.path.clone(),
                    ParentFile {
                        size: *size,
                        sha256: *sha256,
                        layers: layers.clone(),
                    },
                )),
                _ => None,
            })
            .collect();
        Parent {
            id: m.id.clone(),
            start: m.start_lsn.0,
            depth: m.depth,
            files,
        }
    }
}

/// Scans whole pages of one file.
#[derive(Debug)]
pub struct PageScan {
    /// Block number of the file's first page in its relation (segments start at 131072·n).
    pub first_block: u32,
    /// The backup's start LSN when the cluster has data checksums.
    pub verify_from: Option<u64>,
    /// Pages below this count existed in the parent; with `parent_start`, selects a delta.
    pub parent_blocks: u64,
    pub parent_start: Option<u64>,
    pub bad: Vec<u32>,
}

impl PageScan {
    /// Checks the pages of `buf` (starting at page `index` of the file) and calls `changed`
    /// with each page an incremental must store.
    pub fn scan(&mut self, index: u64, buf: &[u8], mut changed: impl FnMut(u32, &[u8])) {
        for (i, chunk) in buf.chunks_exact(PAGE_SIZE).enumerate() {
            let Ok(p) = <&[u8; PAGE_SIZE]>::try_from(chunk) else {
                continue;
            };
            let block_in_file = index + i as u64;
            // Relation segments hold at most 131072 pages, so the block fits.
            let block = self.first_block.saturating_add(block_in_file as u32);
            if let Some(from) = self.verify_from
                && !page::verify(p, block, from)
            {
                self.bad.push(block);
            }
            if let Some(start) = self.parent_start
                && needed(p, block_in_file, self.parent_blocks, start)
            {
                changed(block_in_file as u32, chunk);
            }
        }
    }
}

/// Whether an incremental must store a page: it is new to the file, or changed since the parent
/// started (its LSN is not older), or it carries no LSN at all (an all-zero page from relation
/// extension, or one written without WAL) so nothing proves the parent's copy still holds.
fn needed(p: &[u8; PAGE_SIZE], block_in_file: u64, parent_blocks: u64, parent_start: u64) -> bool {
    let lsn = page::lsn(p);
    block_in_file >= parent_blocks || lsn >= parent_start || lsn == 0
}

/// Whether storing a delta of `delta_len` bytes beats storing the file (`size` bytes) whole:
/// a delta record is a page plus its block number, so a file changed nearly everywhere is
/// smaller whole — and a whole layer also ends the chain of layers a restore must apply.
pub fn delta_pays(delta_len: usize, size: u64) -> bool {
    (delta_len as u64) < size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lsn: u64) -> [u8; PAGE_SIZE] {
        let mut p = [0u8; PAGE_SIZE];
        p[..4].copy_from_slice(&((lsn >> 32) as u32).to_le_bytes());
        p[4..8].copy_from_slice(&(lsn as u32).to_le_bytes());
        p[100] = 1;
        p
    }

    #[test]
    fn an_incremental_keeps_new_changed_and_lsn_less_pages_only() {
        let start = 0x5000_0000;
        let mut buf = Vec::new();
        for lsn in [0x100, start, start + 8, 0, 0x200, 0x300] {
            buf.extend_from_slice(&page(lsn));
        }
        let mut scan = PageScan {
            first_block: 0,
            verify_from: None,
            parent_blocks: 5,
            parent_start: Some(start),
            bad: vec![],
        };
        let mut kept = vec![];
        scan.scan(0, &buf, |b, _| kept.push(b));
        // 0x100: unchanged; start and later: changed; 0: no LSN; 0x200: unchanged; block 5
        // is beyond the parent's size.
        assert_eq!(kept, vec![1, 2, 3, 5]);
        let mut later = vec![];
        scan.scan(10, &buf[..PAGE_SIZE], |b, _| later.push(b));
        assert_eq!(later, vec![10], "block numbers count from the file's start");
    }

    #[test]
    fn a_delta_as_large_as_its_file_is_not_worth_storing() {
        let mut delta = crate::manifest::delta::DeltaWriter::default();
        for b in 0..4 {
            delta.push(b, &page(0x100));
        }
        let size = 4 * PAGE_SIZE as u64;
        assert!(!delta_pays(delta.len(), size), "every page changed");
        assert!(delta_pays(delta.len(), 5 * PAGE_SIZE as u64));
        assert!(!delta_pays(0, 0));
    }

    #[test]
    fn a_full_backup_selects_nothing_but_still_verifies() {
        let mut scan = PageScan {
            first_block: 7,
            verify_from: Some(u64::MAX),
            parent_blocks: 0,
            parent_start: None,
            bad: vec![],
        };
        let mut bad_page = page(0x100);
        bad_page[14] = 1; // pd_upper set: judged, and its checksum field is zero
        scan.scan(0, &bad_page, |_, _| {
            panic!("nothing is selected without a parent")
        });
        assert_eq!(scan.bad, vec![7]);
    }
}
