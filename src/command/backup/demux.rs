//! The tar side of a backup: a blocking worker reads one archive of the BASE_BACKUP stream
//! (fed chunk by chunk through a bounded channel) and turns each file into parts of at most
//! `PART_SIZE` plaintext — the whole file, or for an incremental only its changed pages — sent
//! on to be encoded and stored, followed by the file's manifest entry. It stops as soon as the
//! copy's cancellation token is cancelled, and cancels it when it fails itself.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::copy_error::CopyError;
use super::pages::{self, PageScan, Parent, ParentFile};
use crate::manifest::delta::DeltaWriter;
use crate::manifest::{BackupId, EntryKind, Layer, ManifestEntry, PART_SIZE, safe_path};
use crate::pg::incremental;
use crate::pg::page::{self, PAGE_SIZE};
use crate::repo::Hasher;

/// What the demuxer hands on, in stream order.
#[derive(Debug)]
pub enum Item {
    /// Plaintext of one part, to encode and store. The permit is its share of the memory cap,
    /// held until the part is stored.
    Part {
        path: String,
        part: u32,
        plain: Bytes,
        permit: OwnedSemaphorePermit,
    },
    /// A finished entry; the stored size of this backup's layer is filled in by the uploader.
    Entry(ManifestEntry),
}

/// What every archive of one backup shares.
#[derive(Debug, Clone)]
pub struct DemuxContext {
    pub backup: BackupId,
    /// The backup's start LSN when the cluster has data checksums.
    pub verify_from: Option<u64>,
    pub parent: Option<Arc<Parent>>,
    /// The server sends PostgreSQL 17 incremental files (`INCREMENTAL.<name>`).
    pub summaries: bool,
    /// The memory cap in KiB permits.
    pub budget: Arc<Semaphore>,
    /// Shared by every task of the copy: cancelled when one of them fails.
    pub cancel: CancellationToken,
}

/// Waits on this blocking thread for `fut`, unless the copy is cancelled first.
fn wait<F: Future>(cancel: &CancellationToken, fut: F) -> Result<F::Output, CopyError> {
    futures::executor::block_on(cancel.run_until_cancelled(fut)).ok_or(CopyError::Cancelled)
}

/// Reads the chunks of one tar archive as a byte stream.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    cancel: CancellationToken,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match wait(&self.cancel, self.rx.recv()).map_err(std::io::Error::other)? {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Demultiplexes one archive; `prefix` places a tablespace's entries under `pg_tblspc/<oid>`.
/// Runs on a blocking thread. On its own failure it cancels the copy; after a cancellation it
/// returns [`CopyError::Cancelled`], whatever the interrupted read made of it.
pub fn demux(
    rx: mpsc::Receiver<Bytes>,
    prefix: Option<String>,
    items: mpsc::Sender<Item>,
    ctx: DemuxContext,
) -> Result<(), CopyError> {
    let mut input = ChannelReader {
        rx,
        cur: Bytes::new(),
        cancel: ctx.cancel.clone(),
    };
    let out = Out {
        items: &items,
        ctx: &ctx,
    };
    let result = archive(&mut input, prefix.as_deref(), &out);
    if result.is_err() {
        if ctx.cancel.is_cancelled() {
            return Err(CopyError::Cancelled);
        }
        // Cancelled before the input closes, so the pump never finds a closed input while
        // the token is still uncancelled: it stops rather than feed a dead worker.
        ctx.cancel.cancel();
    }
    drop(input);
    result
}

fn archive(input: &mut ChannelReader, prefix: Option<&str>, out: &Out) -> Result<(), CopyError> {
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(CopyError::Stream)?;
    for entry in entries {
        let mut entry = entry.map_err(CopyError::Entry)?;
        let raw = entry
            .path()
            .map_err(CopyError::Entry)?
            .display()
            .to_string();
        let rel = safe_path(&raw).map_err(|_| CopyError::Path(raw.clone()))?;
        let path = match prefix {
            Some(p) => format!("{p}/{rel}"),
            None => rel,
        };
        // In an incremental from WAL summaries, a changed relation file comes as an
        // incremental file named after it.
        let rebuilt = (out.ctx.summaries)
            .then(|| incremental::target_path(&path))
            .flatten();
        let path = rebuilt.clone().unwrap_or(path);
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o600);
        let mtime = header.mtime().unwrap_or(0) as i64;
        let kind = header.entry_type();
        let kind = if kind.is_dir() {
            EntryKind::Dir
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(CopyError::Entry)?
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            EntryKind::Link { target }
        } else if kind.is_file() && rebuilt.is_some() {
            let size = entry.size();
            super::incremental::file(&mut entry, &path, size, out)?
        } else if kind.is_file() && out.ctx.summaries && path == "backup_label" {
            let label = super::incremental::label(&mut entry)?;
            file(&mut &label[..], &path, label.len() as u64, out)?
        } else if kind.is_file() {
            let size = entry.size();
            file(&mut entry, &path, size, out)?
        } else {
            continue;
        };
        out.send(Item::Entry(ManifestEntry {
            path,
            mode,
            mtime,
            kind,
        }))?;
    }
    // Drain what follows the end-of-archive marker so the pump never blocks on a full channel.
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(CopyError::Stream)?;
    Ok(())
}

pub(super) struct Out<'a> {
    items: &'a mpsc::Sender<Item>,
    pub(super) ctx: &'a DemuxContext,
}

impl Out<'_> {
    fn send(&self, item: Item) -> Result<(), CopyError> {
        wait(&self.ctx.cancel, self.items.send(item))?.map_err(|_| CopyError::UploaderStopped)
    }

    /// Sends one part once the memory cap has room for it (plaintext and encoded copy).
    pub(super) fn part(&self, path: &str, part: u32, plain: Vec<u8>) -> Result<(), CopyError> {
        let kib = (2 * plain.len()).div_ceil(1024).max(1) as u32;
        let budget = Arc::clone(&self.ctx.budget);
        let permit = wait(&self.ctx.cancel, budget.acquire_many_owned(kib))?
            .map_err(|_| CopyError::Budget)?;
        self.send(Item::Part {
            path: path.to_string(),
            part,
            plain: Bytes::from(plain),
            permit,
        })
    }
}

/// How one file is stored.
enum Plan<'p> {
    /// Every byte, in parts.
    Whole,
    /// Only the pages the parent lacks. Main forks only: PostgreSQL clears visibility-map bits
    /// without touching the map page's LSN (replay of the heap record clears them), so a map
    /// page's LSN cannot say it is unchanged; `_vm`, `_fsm` and `_init` forks are small and
    /// compared whole.
    Delta(&'p ParentFile, u64),
    /// Read whole; if it equals the parent's copy nothing is stored.
    Compare(&'p ParentFile),
}

fn plan<'p>(path: &str, size: u64, parent: Option<&'p Parent>) -> Plan<'p> {
    let Some((parent, old)) = parent.and_then(|p| p.files.get(path).map(|f| (p, f))) else {
        return Plan::Whole;
    };
    let pages = size % PAGE_SIZE as u64 == 0 && old.size % PAGE_SIZE as u64 == 0;
    if page::is_main_fork(path) && pages {
        Plan::Delta(old, parent.start)
    } else if size <= PART_SIZE as u64 {
        Plan::Compare(old)
    } else {
        // Too large to hold while deciding: stored whole (such non-relation files are rare).
        Plan::Whole
    }
}

/// Reads one file and sends its parts; returns its entry kind.
fn file(input: &mut impl Read, path: &str, size: u64, out: &Out) -> Result<EntryKind, CopyError> {
    let parent = out.ctx.parent.as_deref();
    let plan = plan(path, size, parent);
    let mut scan = PageScan {
        first_block: page::first_block(path).unwrap_or(0),
        verify_from: out
            .ctx
            .verify_from
            .filter(|_| page::first_block(path).is_some()),
        parent_blocks: 0,
        parent_start: None,
        bad: Vec::new(),
    };
    if let Plan::Delta(old, start) = plan {
        scan.parent_blocks = old.size / PAGE_SIZE as u64;
        scan.parent_start = Some(start);
    }
    let mut hasher = Hasher::default();
    let mut delta = DeltaWriter::default();
    let (mut parts, mut remaining, mut index) = (0u32, size, 0u64);
    let mut held: Option<Vec<u8>> = None;
    while remaining > 0 {
        let n = remaining.min(PART_SIZE as u64) as usize;
        let mut buf = vec![0u8; n];
        read_exact(input, &mut buf, path)?;
        remaining -= n as u64;
        hasher.update(&buf);
        let mut flush = Vec::new();
        scan.scan(index, &buf, |block, page| {
            delta.push(block, page);
            if delta.len() >= PART_SIZE {
                flush.push(delta.take());
            }
        });
        index += (n / PAGE_SIZE) as u64;
        match plan {
            Plan::Whole => {
                out.part(path, parts, buf)?;
                parts += 1;
            }
            Plan::Delta(..) => {
                for p in flush {
                    out.part(path, parts, p)?;
                    parts += 1;
                }
                // A file of one part is held until its delta is known: stored whole when the
                // delta would not be smaller.
                if size <= PART_SIZE as u64 {
                    held = Some(buf);
                }
            }
            Plan::Compare(_) => held = Some(buf),
        }
    }
    let (digest, _) = hasher.finish();
    let mut sha256 = digest;
    let own = |delta, parts| Layer {
        backup: out.ctx.backup.clone(),
        delta,
        parts,
        size,
        base_size: None,
        stored_size: 0,
        // Filled in by the uploader, which learns each part's sha256 as it encodes it.
        part_sha256: Vec::new(),
    };
    let layers = match plan {
        Plan::Whole => vec![own(false, parts)],
        Plan::Compare(old) if old.sha256 == sha256 && old.size == size => old.layers.clone(),
        Plan::Compare(_) => {
            if let Some(buf) = held {
                out.part(path, 0, buf)?;
            }
            vec![own(false, u32::from(size > 0))]
        }
        Plan::Delta(..)
            if parts == 0 && !delta.is_empty() && !pages::delta_pays(delta.len(), size) =>
        {
            if let Some(buf) = held {
                out.part(path, 0, buf)?;
            }
            vec![own(false, u32::from(size > 0))]
        }
        Plan::Delta(old, _) => {
            if !delta.is_empty() {
                out.part(path, parts, delta.take())?;
                parts += 1;
            }
            if parts == 0 && size == old.size {
                // No page changed: the parent's layers rebuild it, as the parent read it (it
                // may differ from what was read now only in hint bits, which are not logged).
                sha256 = old.sha256;
                old.layers.clone()
            } else {
                let mut layers = old.layers.clone();
                layers.push(own(true, parts));
                layers
            }
        }
    };
    warn_bad_pages(path, &scan.bad);
    Ok(EntryKind::File {
        size,
        sha256,
        bad_pages: scan.bad,
        layers,
    })
}

/// Reads exactly `buf.len()` bytes of file `path` from the stream.
pub(super) fn read_exact(
    input: &mut impl Read,
    buf: &mut [u8],
    path: &str,
) -> Result<(), CopyError> {
    input.read_exact(buf).map_err(|source| CopyError::Read {
        path: path.to_string(),
        source,
    })
}

/// Says which pages of `path` failed their checksum: recorded, not fatal.
pub(super) fn warn_bad_pages(path: &str, bad: &[u32]) {
    if !bad.is_empty() {
        tracing::warn!(
            file = path,
            blocks = ?bad,
            "page checksum failed: recorded in the manifest; the backup goes on"
        );
    }
}
