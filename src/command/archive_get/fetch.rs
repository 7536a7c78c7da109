//! The unit of work: fetch one WAL file from the repository and write it, verified, to a
//! destination path atomically. Verified means more than "it decoded": a segment must be the
//! segment its name says, of this repository's cluster, and a history file must parse —
//! otherwise two swapped objects would be replayed as each other and recovery would end early.

use std::path::Path;

use crate::command::{blocking, verified};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::WalFileName;
use crate::pg::wal_content::check_content;
use crate::pg::wal_header::{LONG_HEADER_LEN, WalExpect};
use crate::repo::{Repo, RepoKey};

/// History files are a few hundred bytes; what is kept of one to parse it.
const HISTORY_KEEP: usize = 16 << 20;

/// Writes WAL file `name` to `dest`; returns its size. `NotFound` when it is not archived.
pub async fn get_one(repo: &Repo, name: &WalFileName, dest: &Path) -> Result<u64> {
    let seg = repo.info().seg_size;
    let key = RepoKey::wal(name, seg);
    let file = name.file_name(seg);
    let Some(stored) = repo.get(&key).await? else {
        return Err(missing(repo, name).await);
    };
    let dest = dest.to_path_buf();
    let location = repo.location().to_string();
    let info = repo.info();
    let expect = WalExpect {
        system_id: info.system_id,
        version: info.version,
        seg_size: info.seg_size,
    };
    let name = name.clone();
    let keep = match name {
        WalFileName::History(_) => HISTORY_KEEP,
        _ => LONG_HEADER_LEN,
    };
    blocking(move || {
        verified::write_checked(&stored, &dest, &file, &location, keep, |head, size| {
            check_content(&name, &expect, head, size)
        })
    })
    .await
}

/// The error for a file that is not in the repository. "Not found" lets PostgreSQL end
/// recovery there, which is right only at the end of the archive: a segment missing while
/// the next one of its timeline is stored is a hole (a lost or renamed object), and recovery
/// must stop at it instead of promoting without what follows.
async fn missing(repo: &Repo, name: &WalFileName) -> Error {
    let seg = repo.info().seg_size;
    let file = name.file_name(seg);
    if let WalFileName::Segment(s) = name {
        let next = WalFileName::Segment(s.next());
        match repo.contains(&RepoKey::wal(&next, seg)).await {
            Ok(true) => {
                return Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "{file} is missing from repository {} although {} is archived: the archive has a hole",
                        repo.location(),
                        next.file_name(seg)
                    ),
                )
                .hint("run 'pgkeep verify'; restore the missing segment from another copy of the archive, or restore to a target before it");
            }
            Ok(false) => {}
            Err(e) => return e,
        }
    }
    Error::new(
        ErrorKind::NotFound,
        format!("{file} is not in repository {}", repo.location()),
    )
    .hint("normal at the end of the archive: PostgreSQL then ends recovery or streams")
}
