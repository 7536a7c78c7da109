//! Rebuilding a file of an incremental chain with each byte written once: region by region
//! (16 MiB, a full layer's part), the full part is decoded into a buffer, every delta layer's
//! pages for that region are laid over it, oldest to newest, and the region is written with
//! one positioned write. Applying the layers one after another instead wrote the file's
//! changed pages twice and in 8 KiB writes.
//!
//! The result equals the layered rebuild's (`assemble::build`): a full layer starts the file
//! over; after each layer the file is cut or extended to that layer's size. So a byte that
//! layer `i` supplies survives only below `cap[i]`, the least size of layers `i..`, and bytes
//! no layer supplies below the final size are zero. Every part is checked against its
//! manifest sha256 before any of its bytes is used.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{Layer, PART_SIZE, delta};
use crate::pg::page::PAGE_SIZE;
use crate::repo::Repo;

use super::assemble::{Wanted, damaged_part, fetch_part};

/// Whether `merged` can rebuild this chain: a full layer (the last one) followed by deltas
/// only, with every part's sha256 recorded.
pub fn applies(layers: &[Layer]) -> bool {
    let Some(full) = layers.iter().rposition(|l| !l.delta) else {
        return false;
    };
    full + 1 < layers.len()
        && layers[full..]
            .iter()
            .all(|l| l.part_sha256.len() == l.parts as usize)
}

/// One delta layer's pages, read part by part as the regions advance (its records are in
/// ascending block order, and its parts in that order too).
struct Cursor<'a> {
    layer: &'a Layer,
    /// The least size of this layer and those after it.
    cap: u64,
    next_part: u32,
    plain: Vec<u8>,
    /// (block, offset of the page in `plain`) of the current part, from `pos` on.
    records: Vec<(u32, usize)>,
    pos: usize,
    /// The last block seen, to refuse records out of order.
    last: Option<u32>,
}

/// Writes the rebuilt file into `file` (empty, opened for writing at `tmp`).
pub async fn merged(repo: &Repo, w: &Wanted<'_>, file: &Arc<File>, tmp: &Path) -> Result<()> {
    let full_at = w.layers.iter().rposition(|l| !l.delta).unwrap_or(0);
    let chain = &w.layers[full_at..];
    let caps: Vec<u64> = (0..chain.len())
        .map(|i| chain[i..].iter().map(|l| l.size).min().unwrap_or(0))
        .collect();
    let full = &chain[0];
    let mut cursors: Vec<Cursor> = chain[1..]
        .iter()
        .zip(&caps[1..])
        .map(|(layer, &cap)| Cursor {
            layer,
            cap,
            next_part: 0,
            plain: Vec::new(),
            records: Vec::new(),
            pos: 0,
            last: None,
        })
        .collect();
    let size = chain.last().map_or(0, |l| l.size);
    let location = repo.location().to_string();
    let mut buf: Vec<u8> = Vec::with_capacity(PART_SIZE);
    let mut off = 0u64;
    while off < size {
        let len = (size - off).min(PART_SIZE as u64) as usize;
        buf.clear();
        buf.resize(len, 0);
        let part = (off / PART_SIZE as u64) as u32;
        if part < full.parts {
            buf = base_region(repo, w, full, part, buf, &location).await?;
            // What the full layer supplies past a later, smaller size was cut off.
            zero_from(&mut buf, caps[0].saturating_sub(off));
        }
        for c in &mut cursors {
            overlay(repo, w, c, off, &mut buf, &location).await?;
        }
        let (f, region, path) = (
            Arc::clone(file),
            std::mem::take(&mut buf),
            tmp.to_path_buf(),
        );
        buf = blocking(move || {
            f.write_all_at(&region, off)
                .map_err(|e| Error::io("write", &path, e))?;
            Ok(region)
        })
        .await?;
        off += len as u64;
    }
    file.set_len(size)
        .map_err(|e| Error::io("resize", tmp, e))?;
    // Pages past the final size were cut off by a later layer; their parts are still checked,
    // as the layered rebuild checked every part it read.
    for c in &mut cursors {
        while c.next_part < c.layer.parts {
            next_part(repo, w, c, &location).await?;
        }
    }
    Ok(())
}

/// Decodes full part `part` into `buf` (bytes past `buf`'s length are hashed, not kept), and
/// checks its sha256.
async fn base_region(
    repo: &Repo,
    w: &Wanted<'_>,
    full: &Layer,
    part: u32,
    mut buf: Vec<u8>,
    location: &str,
) -> Result<Vec<u8>> {
    let (stored, what) = fetch_part(repo, full, &w.entry.path, part).await?;
    let want = full.part_sha256[part as usize];
    let location = location.to_string();
    blocking(move || {
        let decoded = stored
            .decode(Region {
                buf: &mut buf,
                pos: 0,
            })
            .map_err(|e| damaged_part(&what, &location, e))?;
        if decoded.sha256 != want {
            return Err(mismatch(&what, &location, decoded.sha256, want));
        }
        Ok(buf)
    })
    .await
}

/// Lays cursor `c`'s pages for the region at `off` over `buf`, fetching parts as needed.
async fn overlay(
    repo: &Repo,
    w: &Wanted<'_>,
    c: &mut Cursor<'_>,
    off: u64,
    buf: &mut [u8],
    location: &str,
) -> Result<()> {
    let end = off + buf.len() as u64;
    loop {
        while let Some(&(block, at)) = c.records.get(c.pos) {
            let start = u64::from(block) * PAGE_SIZE as u64;
            if start >= end {
                return Ok(());
            }
            if start < off || c.last.is_some_and(|l| l >= block) {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "{} of backup {}: delta pages out of order at block {block}",
                        w.entry.path, c.layer.backup
                    ),
                )
                .hint(
                    "the backup chain is damaged; restore another backup and run 'pgkeep verify'",
                ));
            }
            c.last = Some(block);
            // Only what lies below this layer's cap survived the layered rebuild.
            let keep = (c.cap.min(end).saturating_sub(start) as usize).min(PAGE_SIZE);
            let from = (start - off) as usize;
            buf[from..from + keep].copy_from_slice(&c.plain[at..at + keep]);
            c.pos += 1;
        }
        if c.next_part >= c.layer.parts {
            return Ok(());
        }
        next_part(repo, w, c, location).await?;
    }
}

/// Fetches, decodes and checks the cursor's next part, and indexes its records.
async fn next_part(repo: &Repo, w: &Wanted<'_>, c: &mut Cursor<'_>, location: &str) -> Result<()> {
    let part = c.next_part;
    let (stored, what) = fetch_part(repo, c.layer, &w.entry.path, part).await?;
    let want = c.layer.part_sha256[part as usize];
    let (location, mut plain) = (location.to_string(), std::mem::take(&mut c.plain));
    let (plain, records) = blocking(move || {
        plain.clear();
        let decoded = stored
            .decode(&mut plain)
            .map_err(|e| damaged_part(&what, &location, e))?;
        if decoded.sha256 != want {
            return Err(mismatch(&what, &location, decoded.sha256, want));
        }
        let base = plain.as_ptr() as usize;
        let records: Vec<(u32, usize)> = delta::records(&plain)
            .map_err(|e| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("{what} in repository {location}: {e}"),
                )
            })?
            .map(|(block, page)| (block, page.as_ptr() as usize - base))
            .collect();
        Ok((plain, records))
    })
    .await?;
    c.plain = plain;
    c.records = records;
    c.pos = 0;
    c.next_part += 1;
    Ok(())
}

fn zero_from(buf: &mut [u8], from: u64) {
    if let Ok(from) = usize::try_from(from)
        && from < buf.len()
    {
        buf[from..].fill(0);
    }
}

fn mismatch(
    what: &str,
    location: &str,
    got: crate::repo::Digest,
    want: crate::repo::Digest,
) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!(
            "{what} in repository {location} is not the part its manifest committed: sha256 {got}, expected {want}"
        ),
    )
    .hint("the backup is damaged; restore another backup and run 'pgkeep verify'")
}

/// A writer into a region buffer: keeps what fits, hashes (through the decoder) the rest.
struct Region<'a> {
    buf: &'a mut Vec<u8>,
    pos: usize,
}

impl Write for Region<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.buf.len().saturating_sub(self.pos).min(data.len());
        self.buf[self.pos..self.pos + room].copy_from_slice(&data[..room]);
        self.pos += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
