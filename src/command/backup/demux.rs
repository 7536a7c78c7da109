//! The tar side of a backup: a blocking worker reads one archive of the BASE_BACKUP stream
//! (fed chunk by chunk through a bounded channel), and turns each entry into a directory, a
//! link, or a file already hashed and compressed, sent on to the uploader.

use std::io::Read;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::manifest::safe_path;
use crate::pg::page::{self, PAGE_SIZE};
use crate::pipeline::{self, EncodeOptions, Encoded};

/// One entry of the data directory, ready to store.
#[derive(Debug)]
pub struct Item {
    pub path: String,
    pub mode: u32,
    pub mtime: i64,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    Dir,
    Link(String),
    /// The encoded file, and the blocks whose page checksum failed.
    File(Encoded, Vec<u32>),
}

/// Checks each 8 KiB page of a relation file as it is read.
struct PageCheck<R> {
    inner: R,
    page: Box<[u8; PAGE_SIZE]>,
    filled: usize,
    next_block: u32,
    backup_start: u64,
    bad: Vec<u32>,
}

impl<R: Read> Read for PageCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let take = rest.len().min(PAGE_SIZE - self.filled);
            self.page[self.filled..self.filled + take].copy_from_slice(&rest[..take]);
            self.filled += take;
            rest = &rest[take..];
            if self.filled == PAGE_SIZE {
                if !page::verify(&self.page, self.next_block, self.backup_start) {
                    self.bad.push(self.next_block);
                }
                self.next_block += 1;
                self.filled = 0;
            }
        }
        Ok(n)
    }
}

/// Reads the chunks of one tar archive as a byte stream.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
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

/// Demultiplexes one archive. `prefix` places a tablespace's entries under `pg_tblspc/<oid>`;
/// `verify_from` (the backup's start LSN, when the cluster has data checksums) turns on page
/// checksum verification of relation files. Runs on a blocking thread; returns an error text
/// on a malformed stream.
pub fn demux(
    rx: mpsc::Receiver<Bytes>,
    prefix: Option<String>,
    items: mpsc::Sender<Item>,
    opts: EncodeOptions,
    verify_from: Option<u64>,
) -> Result<(), String> {
    let mut archive = tar::Archive::new(ChannelReader {
        rx,
        cur: Bytes::new(),
    });
    let entries = archive
        .entries()
        .map_err(|e| format!("cannot read the backup's tar stream: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("bad tar entry in the backup stream: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| e.to_string())?
            .display()
            .to_string();
        let rel = safe_path(&raw)?;
        let path = match &prefix {
            Some(p) => format!("{p}/{rel}"),
            None => rel,
        };
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o600);
        let mtime = header.mtime().unwrap_or(0) as i64;
        let kind = header.entry_type();
        let body = if kind.is_dir() {
            Body::Dir
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .map_err(|e| e.to_string())?
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            Body::Link(target)
        } else if kind.is_file() {
            let size = entry.size() as usize;
            let failed =
                |e: std::io::Error| format!("cannot read {path} from the backup stream: {e}");
            match (verify_from, page::first_block(&path)) {
                (Some(backup_start), Some(first)) => {
                    let mut checked = PageCheck {
                        inner: &mut entry,
                        page: Box::new([0u8; PAGE_SIZE]),
                        filled: 0,
                        next_block: first,
                        backup_start,
                        bad: Vec::new(),
                    };
                    let encoded = pipeline::encode(&mut checked, opts, size).map_err(failed)?;
                    Body::File(encoded, checked.bad)
                }
                _ => Body::File(
                    pipeline::encode(&mut entry, opts, size).map_err(failed)?,
                    Vec::new(),
                ),
            }
        } else {
            continue;
        };
        let item = Item {
            path,
            mode,
            mtime,
            body,
        };
        if items.blocking_send(item).is_err() {
            return Err("the uploader stopped".into());
        }
    }
    // Drain what follows the end-of-archive marker so the pump never blocks on a full channel.
    let mut rest = archive.into_inner();
    let _ = std::io::copy(&mut rest, &mut std::io::sink());
    Ok(())
}
