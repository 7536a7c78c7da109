//! Rebuilding one file of a backup: fetch its layers' parts (the whole file, then each delta of
//! changed pages), write them into a temporary file, check every part and the result against
//! the manifest, and only then fsync and rename it into place.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::command::{blocking, verified};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{Layer, ManifestEntry, delta};
use crate::pg::page::PAGE_SIZE;
use crate::pipeline::checksum::Hasher;
use crate::pipeline::{self, DecodeError};
use crate::repo::{Repo, RepoKey};

/// The file entry to rebuild, with what it must hash to.
pub struct Wanted<'a> {
    pub entry: &'a ManifestEntry,
    pub size: u64,
    pub sha256: &'a str,
    pub layers: &'a [Layer],
}

/// Writes `wanted` to `dest`; returns the bytes written.
pub async fn assemble(repo: &Repo, wanted: Wanted<'_>, dest: &Path) -> Result<u64> {
    let tmp = temp_path(dest);
    // Read as well as written: a file rebuilt from deltas is read back to be checked.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp);
    let file = Arc::new(opened.map_err(|e| Error::io("create", &tmp, e))?);
    let built = build(repo, &wanted, &file, &tmp).await;
    let published = match built {
        Ok(()) => publish(file, &tmp, dest, wanted.entry.mode).await,
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

async fn build(repo: &Repo, w: &Wanted<'_>, file: &Arc<File>, tmp: &Path) -> Result<()> {
    // A whole file is hashed as it is written and must match the manifest. A file rebuilt
    // from deltas legitimately differs from the bytes the backup read in pages it did not
    // store: PostgreSQL sets hint bits without WAL or a new page LSN. Its parts are each
    // checked, and its size.
    let mut hasher = (w.layers.len() == 1).then(Hasher::default);
    for layer in w.layers {
        let mut offset = 0u64;
        if !layer.delta {
            file.set_len(0).map_err(|e| Error::io("truncate", tmp, e))?;
        }
        let mut parts = futures::stream::iter(0..layer.parts)
            .map(|part| fetch(repo, layer, &w.entry.path, part))
            .buffered(2);
        while let Some(stored) = parts.next().await {
            let (stored, what) = stored?;
            let (f, delta) = (Arc::clone(file), layer.delta);
            let (location, tmp2) = (repo.location().to_string(), tmp.to_path_buf());
            let mut h = hasher.take();
            let (written, h) = blocking(move || {
                let n = if delta {
                    apply_delta(&stored, &f, &what, &location)?
                } else {
                    let mut out = AtOffset {
                        file: &f,
                        pos: offset,
                        hasher: h.as_mut(),
                    };
                    let n = decode(&stored, &mut out, &what, &location)?;
                    out.flush().map_err(|e| Error::io("write", &tmp2, e))?;
                    n
                };
                Ok((n, h))
            })
            .await?;
            hasher = h;
            offset += written;
        }
        file.set_len(layer.size)
            .map_err(|e| Error::io("resize", tmp, e))?;
    }
    let (digest, size) = match hasher {
        Some(h) => h.finish(),
        None => {
            let size = file
                .metadata()
                .map_err(|e| Error::io("stat", tmp, e))?
                .len();
            return check_size(w, size);
        }
    };
    if size != w.size || digest.to_string() != w.sha256 {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{} rebuilt from the backup does not match its manifest: {size} bytes with sha256 {digest}, expected {} bytes with sha256 {}",
                w.entry.path, w.size, w.sha256
            ),
        )
        .hint("the backup chain is damaged; restore another backup and run 'pgkeep verify'"));
    }
    Ok(())
}

async fn fetch(repo: &Repo, layer: &Layer, path: &str, part: u32) -> Result<(Bytes, String)> {
    let key = RepoKey::BackupFile {
        backup: layer.backup.to_string(),
        path: path.to_string(),
        part,
    };
    let what = format!("{path} (part {part}) of backup {}", layer.backup);
    let stored = repo.get(&key).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("backup {} lacks {what}", layer.backup),
        )
        .hint("this backup is damaged; restore an older one and run 'pgkeep verify'")
    })?;
    Ok((stored, what))
}

fn decode(stored: &[u8], out: impl Write, what: &str, location: &str) -> Result<u64> {
    pipeline::decode(stored, out)
        .map(|h| h.plain_size)
        .map_err(|e| match e {
            DecodeError::Write(io) => {
                Error::new(ErrorKind::Io, format!("cannot write {what}: {io}"))
            }
            d => verified::damaged(what, location, &d),
        })
}

fn apply_delta(stored: &[u8], file: &File, what: &str, location: &str) -> Result<u64> {
    let mut plain = Vec::new();
    decode(stored, &mut plain, what, location)?;
    let records = delta::records(&plain).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("{what} in repository {location}: {e}"),
        )
    })?;
    for (block, page) in records {
        file.write_all_at(page, u64::from(block) * PAGE_SIZE as u64)
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write {what}: {e}")))?;
    }
    Ok(0)
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

async fn publish(file: Arc<File>, tmp: &Path, dest: &Path, mode: u32) -> Result<()> {
    let (tmp, dest) = (tmp.to_path_buf(), dest.to_path_buf());
    blocking(move || {
        use std::os::unix::fs::PermissionsExt;
        // Durable before it takes the real name: a crash leaves the old file or the new one.
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| Error::io("chmod", &tmp, e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io("rename", &dest, e))
    })
    .await
}

/// Positioned writes from a running offset, hashing what is written when asked to.
struct AtOffset<'a> {
    file: &'a File,
    pos: u64,
    hasher: Option<&'a mut Hasher>,
}

impl Write for AtOffset<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        if let Some(h) = self.hasher.as_deref_mut() {
            h.update(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
