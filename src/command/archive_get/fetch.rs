//! The unit of work: fetch one WAL file from the repository and write it, verified, to a
//! destination path atomically. Verified means more than "it decoded": a segment must be the
//! segment its name says, of this repository's cluster, and a history file must parse —
//! otherwise two swapped objects would be replayed as each other and recovery would end early.

use std::path::Path;

use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::WalFileName;
use crate::pg::wal_content::{check_content, head_len};
use crate::repo::verified;
use crate::repo::{Repo, WalKey};

/// Writes WAL file `name` to `dest`; returns its size. `NotFound` when it is not archived.
pub async fn get_one(repo: &Repo, name: &WalFileName, dest: &Path) -> Result<u64> {
    let seg = repo.info().seg_size;
    let file = name.file_name(seg);
    let Some(stored) = repo.fetch(&WalKey(name.clone())).await? else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{file} is not in repository {}", repo.location()),
        )
        .hint("normal at the end of the archive: PostgreSQL then ends recovery or streams"));
    };
    let dest = dest.to_path_buf();
    let location = repo.location().to_string();
    let expect = repo.info().wal_expect();
    let keep = head_len(name);
    let name = name.clone();
    blocking(move || {
        verified::write_checked(&stored, &dest, &file, &location, keep, |head, size| {
            check_content(&name, &expect, head, size)
        })
    })
    .await
}

/// Reads WAL file `name` into memory, verified like [`get_one`]: what pgkeepd serves to an
/// archive-get through the service. `NotFound` when it is not archived (a hole is `Corrupt`).
pub async fn get_bytes(repo: &Repo, name: &WalFileName) -> Result<Vec<u8>> {
    let seg = repo.info().seg_size;
    let file = name.file_name(seg);
    let Some(stored) = repo.fetch(&WalKey(name.clone())).await? else {
        let e = Error::new(
            ErrorKind::NotFound,
            format!("{file} is not in repository {}", repo.location()),
        )
        .hint("normal at the end of the archive: PostgreSQL then ends recovery or streams");
        return Err(hole_or(e, repo, name).await);
    };
    let location = repo.location().to_string();
    let expect = repo.info().wal_expect();
    let name = name.clone();
    blocking(move || {
        verified::read_checked(&stored, &file, &location, |head, size| {
            check_content(&name, &expect, head, size)
        })
    })
    .await
}

/// What "not found" for the file PostgreSQL asked for means. It lets PostgreSQL end recovery
/// there, which is right only at the end of the archive: a segment missing while the next
/// one of its timeline is stored is a hole (a lost or renamed object), and recovery must stop
/// at it instead of promoting without what follows. (Prefetch keeps the plain "not found":
/// one request per file PostgreSQL asks for, not per segment fetched ahead.)
pub async fn hole_or(not_found: Error, repo: &Repo, name: &WalFileName) -> Error {
    let seg = repo.info().seg_size;
    let file = name.file_name(seg);
    if let WalFileName::Segment(s) = name {
        let next = WalFileName::Segment(s.next());
        match repo.holds(&WalKey(next.clone())).await {
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
    not_found
}
