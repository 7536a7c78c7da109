//! Rebuilding one file of a backup: fetch its layers' parts (the whole file, then each delta of
//! changed pages) and write them into a temporary file — the parts of one layer in parallel,
//! each at its own offset; with deltas the newest layer first and every page once — check
//! every part against the manifest and the result's size, and only then fsync and rename it
//! into place.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::localfs;
use crate::manifest::{Layer, ManifestEntry, PART_SIZE, delta};
use crate::pg::page::PAGE_SIZE;
use crate::repo::verified;
use crate::repo::{BackupPartKey, DecodeError, Decoded, Digest, Fetched, Repo};

use super::buffer::Buffer;
use super::layers::{self, Covered};

/// The file entry to rebuild, with what it must hash to.
pub struct Wanted<'a> {
    pub entry: &'a ManifestEntry,
    pub size: u64,
    pub sha256: Digest,
    pub layers: &'a [Layer],
}

/// How many parts are fetched and decoded at once, across every file of the restore.
pub struct Slots {
    pub slots: Semaphore,
    pub count: usize,
}

/// Writes `wanted` to `dest`; returns the bytes written.
/// With `sync`, the file is fsynced before it takes its name; without, the caller makes the
/// whole restore durable at once before it writes pg_control.
pub async fn assemble(
    repo: &Repo,
    wanted: Wanted<'_>,
    dest: &Path,
    slots: &Slots,
    sync: bool,
) -> Result<u64> {
    let tmp = temp_path(dest);
    // Read as well as written: a file from an older manifest is read back to be checked.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp);
    let file = Arc::new(opened.map_err(|e| Error::io("create", &tmp, e))?);
    let built = build(repo, &wanted, &file, &tmp, slots).await;
    let published = match built {
        Ok(()) => publish(file, &tmp, dest, wanted.entry.mode, sync).await,
        Err(e) => Err(e),
    };
    if published.is_err() {
        // Nothing unverified stays behind.
        let _ = std::fs::remove_file(&tmp);
    }
    published.map(|()| wanted.size)
}

fn temp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".pgkeep-tmp");
    dest.with_file_name(name)
}

async fn build(
    repo: &Repo,
    w: &Wanted<'_>,
    file: &Arc<File>,
    tmp: &Path,
    slots: &Slots,
) -> Result<()> {
    match w.layers {
        [whole] if !whole.delta => {
            // The parts cover distinct offsets (part n at n × PART_SIZE): any order will do.
            futures::stream::iter(0..whole.parts)
                .map(|part| write_part(repo, w.entry, whole, part, file, &slots.slots))
                .buffer_unordered(slots.count.max(1))
                .try_collect::<()>()
                .await?;
            file.set_len(whole.size)
                .map_err(|e| Error::io("resize", tmp, e))?;
        }
        _ => build_newest_first(repo, w, file, tmp, slots).await?,
    }
    let size = file
        .metadata()
        .map_err(|e| Error::io("stat", tmp, e))?
        .len();
    check_size(w, size)?;
    let recorded = w
        .layers
        .iter()
        .all(|l| l.part_sha256.len() == l.parts as usize);
    if !recorded && w.layers.len() == 1 {
        // A manifest from before part hashes were recorded: the whole file must match.
        check_whole(w, tmp).await?;
    }
    Ok(())
}

/// A file of several layers, each page written once: the newest layer first, then each older
/// one into the pages no newer layer gave (`layers`). A part of a whole layer whose pages
/// newer layers all gave is not even fetched.
async fn build_newest_first(
    repo: &Repo,
    w: &Wanted<'_>,
    file: &Arc<File>,
    tmp: &Path,
    slots: &Slots,
) -> Result<()> {
    // The newest layer's size, which `check_size` then compares with the entry's.
    let newest = w.layers.last().map_or(0, |l| l.size);
    file.set_len(newest)
        .map_err(|e| Error::io("resize", tmp, e))?;
    let reach = layers::reach(w.layers);
    let mut covered = Covered::default();
    for (i, layer) in w.layers.iter().enumerate().rev() {
        if reach[i] == 0 {
            continue;
        }
        let newer = Arc::new(covered.clone());
        let target = &Target {
            repo,
            entry: w.entry,
            file,
            slots: &slots.slots,
        };
        let written: Vec<Vec<u32>> = futures::stream::iter(0..layer.parts)
            .map(|part| lay_part(target, layer, part, Arc::clone(&newer), reach[i]))
            .buffer_unordered(slots.count.max(1))
            .try_collect()
            .await?;
        for block in written.into_iter().flatten() {
            covered.add(block);
        }
    }
    Ok(())
}

/// What the parts of one file's rebuild share.
struct Target<'a> {
    repo: &'a Repo,
    entry: &'a ManifestEntry,
    file: &'a Arc<File>,
    slots: &'a Semaphore,
}

/// Writes what one part of a layer of `reach` gives that no newer layer did; returns the
/// blocks of a delta part it wrote.
async fn lay_part(
    t: &Target<'_>,
    layer: &Layer,
    part: u32,
    newer: Arc<Covered>,
    reach: u64,
) -> Result<Vec<u32>> {
    let Target {
        repo,
        entry,
        file,
        slots,
    } = *t;
    let offset = u64::from(part) * PART_SIZE as u64;
    let end = (offset + PART_SIZE as u64).min(layer.size);
    if !layer.delta && newer.gaps(offset, end, reach).is_empty() {
        return Ok(Vec::new());
    }
    let _slot = slots
        .acquire()
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let (stored, what) = fetch(repo, layer, &entry.path, part).await?;
    let expected = layer.part_sha256.get(part as usize).copied();
    let (file, delta, location) = (Arc::clone(file), layer.delta, repo.location().to_string());
    blocking(move || {
        let capacity = stored.header().map_or(0, |h| h.plain_size as usize);
        let mut plain = Buffer::take(capacity.min(2 * PART_SIZE));
        let decoded = decode(&stored, &mut *plain, &what, &location)?;
        check_part(&decoded, expected, &what, &location)?;
        let write_err =
            |e: std::io::Error| Error::new(ErrorKind::Io, format!("cannot write {what}: {e}"));
        if !delta {
            for (s, e) in newer.gaps(offset, offset + plain.len() as u64, reach) {
                let slice = &plain[(s - offset) as usize..(e - offset) as usize];
                file.write_all_at(slice, s).map_err(write_err)?;
            }
            // Every page goes down once: its writeback may start now.
            localfs::start_writeback(&file, offset, plain.len() as u64);
            return Ok(Vec::new());
        }
        let records = delta::records(&plain).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("{what} in repository {location}: {e}"),
            )
        })?;
        let wanted = records.filter(|(block, _)| newer.wants_page(*block, reach));
        let written = write_runs(wanted, |first, run| {
            localfs::write_pages_at(&file, u64::from(first) * PAGE_SIZE as u64, run)
                .map_err(write_err)
        })?;
        Ok(written)
    })
    .await
}

/// Writes `(block, page)` records, each run of consecutive blocks in one vectored write;
/// returns the blocks written.
fn write_runs<'a>(
    records: impl Iterator<Item = (u32, &'a [u8])>,
    mut write: impl FnMut(u32, &[&[u8]]) -> Result<()>,
) -> Result<Vec<u32>> {
    let (mut run, mut first, mut blocks): (Vec<&[u8]>, u32, Vec<u32>) = (Vec::new(), 0, Vec::new());
    for (block, page) in records {
        if !run.is_empty() && u64::from(block) != u64::from(first) + run.len() as u64 {
            write(first, &run)?;
            run.clear();
        }
        if run.is_empty() {
            first = block;
        }
        run.push(page);
        blocks.push(block);
    }
    if !run.is_empty() {
        write(first, &run)?;
    }
    Ok(blocks)
}

fn check_part(
    decoded: &Decoded,
    expected: Option<Digest>,
    what: &str,
    location: &str,
) -> Result<()> {
    match expected {
        Some(want) if decoded.sha256 != want => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{what} in repository {location} is not the part its manifest committed: sha256 {}, expected {want}",
                decoded.sha256
            ),
        )
        .hint("the backup is damaged; restore another backup and run 'pgkeep verify'")),
        _ => Ok(()),
    }
}

/// Fetches one part of a whole layer, checks that it is the part the manifest committed, and
/// writes it at its offset, starting its writeback as it lands.
async fn write_part(
    repo: &Repo,
    entry: &ManifestEntry,
    layer: &Layer,
    part: u32,
    file: &Arc<File>,
    slots: &Semaphore,
) -> Result<()> {
    let _slot = slots
        .acquire()
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let (stored, what) = fetch(repo, layer, &entry.path, part).await?;
    let expected = layer.part_sha256.get(part as usize).copied();
    let (file, location) = (Arc::clone(file), repo.location().to_string());
    blocking(move || {
        let offset = u64::from(part) * PART_SIZE as u64;
        let mut out = AtOffset {
            file: &file,
            pos: offset,
        };
        let decoded = decode(&stored, &mut out, &what, &location)?;
        localfs::start_writeback(&file, offset, decoded.header.plain_size);
        check_part(&decoded, expected, &what, &location)
    })
    .await
}

async fn fetch(
    repo: &Repo,
    layer: &Layer,
    path: &str,
    part: u32,
) -> Result<(Fetched<BackupPartKey>, String)> {
    let key = BackupPartKey {
        backup: layer.backup.clone(),
        path: path.to_string(),
        part,
    };
    let what = format!("{path} (part {part}) of backup {}", layer.backup);
    let stored = repo.fetch(&key).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("backup {} lacks {what}", layer.backup),
        )
        .hint("this backup is damaged; restore an older one and run 'pgkeep verify'")
    })?;
    Ok((stored, what))
}

fn decode<K>(stored: &Fetched<K>, out: impl Write, what: &str, location: &str) -> Result<Decoded> {
    stored.decode(out).map_err(|e| match e {
        DecodeError::Write(io) => Error::new(ErrorKind::Io, format!("cannot write {what}: {io}")),
        d => verified::damaged(what, location, &d),
    })
}

fn check_size(w: &Wanted<'_>, size: u64) -> Result<()> {
    if size == w.size {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Corrupt,
        format!(
            "{} rebuilt from the backup chain has {size} bytes, its manifest says {}",
            w.entry.path, w.size
        ),
    )
    .hint("the backup chain is damaged; restore another backup and run 'pgkeep verify'"))
}

/// Reads the rebuilt file back and compares its sha256 with the manifest's.
async fn check_whole(w: &Wanted<'_>, tmp: &Path) -> Result<()> {
    let (path, want) = (tmp.to_path_buf(), w.sha256);
    let digest = blocking(move || super::files::sha256_of(&path)).await?;
    if digest == want {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Corrupt,
        format!(
            "{} rebuilt from the backup does not match its manifest: sha256 {digest}, expected {want}",
            w.entry.path
        ),
    )
    .hint("the backup is damaged; restore another backup and run 'pgkeep verify'"))
}

async fn publish(file: Arc<File>, tmp: &Path, dest: &Path, mode: u32, sync: bool) -> Result<()> {
    let (tmp, dest) = (tmp.to_path_buf(), dest.to_path_buf());
    blocking(move || {
        use std::os::unix::fs::PermissionsExt;
        // Verified before it takes the real name, so nothing unverified ever carries one.
        // Durable here only with `sync` (pg_control); the rest is synced in one pass before
        // pg_control is written, and until then the directory cannot start as a cluster.
        if sync {
            file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| Error::io("chmod", &tmp, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io("rename", &dest, e))
    })
    .await
}

/// Positioned writes from a running offset.
struct AtOffset<'a> {
    file: &'a File,
    pos: u64,
}

impl Write for AtOffset<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
