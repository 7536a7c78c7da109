//! The unit of work: fetch one WAL file from the repository and write it, verified, to a
//! destination path atomically.

use std::path::Path;

use crate::command::{blocking, verified};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::WalFileName;
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
    blocking(move || verified::write(&stored, &dest, &file, &location)).await
}
