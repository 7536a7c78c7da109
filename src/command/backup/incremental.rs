//! A file PostgreSQL 17 sent as an incremental (`INCREMENTAL.<name>`, chosen from its WAL
//! summaries): its pages become a delta layer over the parent's copy of the file, which is
//! first cut to the truncation length the header gives. Nothing is compared here: the server
//! read and sent only what changed, and pgkeep stores it as sent.

use std::io::Read;

use super::copy_error::CopyError;
use super::demux::{Out, read_exact, warn_bad_pages};
use crate::manifest::delta::DeltaWriter;
use crate::manifest::{EntryKind, Layer, PART_SIZE};
use crate::pg::incremental::IncrementalHeader;
use crate::pg::page::{self, PAGE_SIZE};
use crate::repo::{Digest, Hasher};

/// Reads one incremental file of `size` bytes that rebuilds `path`, sends its delta parts and
/// returns the entry of the rebuilt file.
pub(super) fn file(
    input: &mut impl Read,
    path: &str,
    size: u64,
    out: &Out,
) -> Result<EntryKind, CopyError> {
    let malformed = |why: String| CopyError::Incremental {
        path: path.to_string(),
        why,
    };
    // The server sends an incremental only of a file its uploaded manifest lists, which is
    // the parent's: the parent must have it.
    let parent = (out.ctx.parent.as_deref())
        .and_then(|p| p.files.get(path))
        .ok_or_else(|| malformed("the backup it builds on has no such file".into()))?;
    let mut input = Hashing {
        inner: input,
        hasher: Hasher::default(),
    };
    let header = IncrementalHeader::read(&mut input, size).map_err(malformed)?;
    if page::is_visibility_map(path) {
        return Ok(cleared_map(path, out));
    }
    let first_block = page::first_block(path);
    let verify_from = out.ctx.verify_from.filter(|_| first_block.is_some());
    let (mut delta, mut parts, mut bad) = (DeltaWriter::default(), 0u32, Vec::new());
    let mut buf = [0u8; PAGE_SIZE];
    for &block in &header.blocks {
        read_exact(&mut input, &mut buf, path)?;
        let in_relation = first_block.unwrap_or(0).saturating_add(block);
        if let Some(from) = verify_from
            && !page::verify(&buf, in_relation, from)
        {
            bad.push(in_relation);
        }
        delta.push(block, &buf);
        if delta.len() >= PART_SIZE {
            out.part(path, parts, delta.take())?;
            parts += 1;
        }
    }
    if !delta.is_empty() {
        out.part(path, parts, delta.take())?;
        parts += 1;
    }
    let page = PAGE_SIZE as u64;
    let (base, rebuilt) = (
        u64::from(header.truncation_blocks) * page,
        u64::from(header.rebuilt_blocks()) * page,
    );
    let (digest, _) = input.hasher.finish();
    let (sha256, layers) = if parts == 0 && base == parent.size && rebuilt == parent.size {
        // Unchanged: the parent's layers rebuild it.
        (parent.sha256, parent.layers.clone())
    } else {
        let mut layers = parent.layers.clone();
        layers.push(Layer {
            backup: out.ctx.backup.clone(),
            delta: true,
            parts,
            size: rebuilt,
            base_size: Some(base),
            stored_size: 0,
            // Filled in by the uploader.
            part_sha256: Vec::new(),
        });
        // Of the incremental file as sent: the rebuilt file is known only at restore.
        (digest, layers)
    };
    warn_bad_pages(path, &bad);
    Ok(EntryKind::File {
        size: rebuilt,
        sha256,
        bad_pages: bad,
        layers,
    })
}

/// A visibility-map fork sent as an incremental is not trusted: PostgreSQL 17 (through at
/// least 17.10) does not summarize the clearing of visibility-map bits by inserts, updates and
/// deletes, so the map the server's blocks rebuild may say "all visible" of a page that has
/// since changed — and an index-only scan of the restore would then return deleted rows. It
/// is restored empty instead: PostgreSQL reads map pages that do not exist as "not visible,
/// not frozen", which is always correct, and the first VACUUM after the restore sets the bits
/// again (its all-frozen bits gone, the next aggressive VACUUM reads the whole table). Empty
/// rather than zeroed: a summarizer bug of 17.x gave map forks the main fork's length. A map
/// sent whole is exact and kept.
fn cleared_map(path: &str, out: &Out) -> EntryKind {
    tracing::debug!(
        file = path,
        "visibility map from an incremental: restored empty"
    );
    EntryKind::File {
        size: 0,
        sha256: Digest::of(&[]),
        bad_pages: Vec::new(),
        layers: vec![Layer {
            backup: out.ctx.backup.clone(),
            delta: false,
            parts: 0,
            size: 0,
            base_size: None,
            stored_size: 0,
            part_sha256: Vec::new(),
        }],
    }
}

/// The `backup_label` of an incremental, as the rebuilt data directory needs it: without its
/// `INCREMENTAL FROM ...` lines (PostgreSQL refuses to start from a label that has them, as
/// from an incremental not yet combined), as `pg_combinebackup` writes it.
pub(super) fn label(input: &mut impl Read) -> Result<Vec<u8>, CopyError> {
    let mut text = Vec::new();
    input
        .read_to_end(&mut text)
        .map_err(|source| CopyError::Read {
            path: "backup_label".into(),
            source,
        })?;
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"INCREMENTAL FROM ") {
            out.extend_from_slice(line);
        }
    }
    Ok(out)
}

/// Hashes what it reads.
struct Hashing<'a, R> {
    inner: &'a mut R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
