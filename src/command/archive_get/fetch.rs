//! The unit of work: fetch one WAL file from the repository and write it, verified, to a
//! destination path atomically.

use std::io::{BufWriter, Write};
use std::path::Path;

use bytes::Bytes;

use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::localfs;
use crate::pg::WalFileName;
use crate::pipeline::{self, DecodeError};
use crate::repo::{Repo, RepoKey};

/// Writes WAL file `name` to `dest`; returns its size. `NotFound` when it is not archived.
pub async fn get_one(repo: &Repo, name: &WalFileName, dest: &Path) -> Result<u64> {
    let seg = repo.info().seg_size;
    let key = RepoKey::wal(name, seg);
    let file = name.file_name(seg);
    let stored = repo.get(&key).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("{file} is not in repository {}", repo.location()),
        )
        .hint("normal at the end of the archive: PostgreSQL then ends recovery or streams")
    })?;
    let dest = dest.to_path_buf();
    let location = repo.location().to_string();
    blocking(move || write_verified(&stored, &dest, &file, &location)).await
}

/// Decodes into a temporary file and publishes it only when size and sha256 match.
fn write_verified(stored: &Bytes, dest: &Path, file: &str, location: &str) -> Result<u64> {
    let written = localfs::write_atomic(dest, |f| {
        let mut w = BufWriter::with_capacity(1 << 20, localfs::WritebackWriter::new(f));
        let header = pipeline::decode(stored, &mut w).map_err(std::io::Error::other)?;
        w.flush()?;
        Ok(header.plain_size)
    });
    written.map_err(|e| {
        let decode = e.get_ref().and_then(|r| r.downcast_ref::<DecodeError>());
        match decode {
            Some(DecodeError::Write(_)) | None => Error::io("write", dest, e),
            Some(d) => Error::new(
                ErrorKind::Corrupt,
                format!("{file} in repository {location} is damaged: {d}"),
            )
            .hint(
                "nothing was written; run 'pgkeep verify' and restore the object from another copy",
            ),
        }
    })
}
