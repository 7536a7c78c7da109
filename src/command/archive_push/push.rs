//! The unit of work: push one WAL file. Validate it against the repository's identity, encode
//! it (sha256 + zstd), store it create-if-absent, and settle "already there" by checksum.
//! The command, the look-ahead and (later) pgkeepd's receive endpoint all call `push_one`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::wal_header::{LONG_HEADER_LEN, WalExpect};
use crate::pg::{WalFileName, WalHeader};
use crate::pipeline::{self, Digest, EncodeOptions, Encoded};
use crate::repo::{Created, Repo, RepoKey};

/// History and backup-history files are a few hundred bytes; refuse anything absurd.
const MAX_TEXT_FILE: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Written to the repository by this call.
    Stored,
    /// The identical file was already in the repository.
    AlreadyStored,
    /// Pushed ahead by an earlier call, as its spool record (checked against the file) shows.
    PushedAhead,
}

#[derive(Debug, Clone)]
pub struct Pushed {
    pub file: String,
    pub outcome: PushOutcome,
    pub plain_size: u64,
    pub stored_size: u64,
    pub sha256: Digest,
}

/// Pushes the WAL file at `path`, named `name`, into `repo`.
pub async fn push_one(
    repo: &Repo,
    path: &Path,
    name: &WalFileName,
    opts: EncodeOptions,
) -> Result<Pushed> {
    let info = repo.info();
    let expect = WalExpect {
        system_id: info.system_id,
        version: info.version,
        seg_size: info.seg_size,
    };
    let file = name.file_name(info.seg_size);
    let encoded = {
        let (path, name) = (path.to_path_buf(), name.clone());
        blocking(move || read_and_encode(&path, &name, &expect, opts)).await?
    };
    let key = RepoKey::wal(name, info.seg_size);
    let (sha256, plain_size, stored_size) = (
        encoded.header.sha256,
        encoded.header.plain_size,
        encoded.bytes.len() as u64,
    );
    let outcome = match repo.put_if_absent(&key, encoded.bytes.into()).await? {
        Created::New => PushOutcome::Stored,
        Created::Existed => settle_existing(repo, &key, &file, sha256).await?,
    };
    Ok(Pushed {
        file,
        outcome,
        plain_size,
        stored_size,
        sha256,
    })
}

/// Something is already stored under this name: the same content is success, anything else is
/// refused — overwriting would silently break point-in-time recovery.
async fn settle_existing(
    repo: &Repo,
    key: &RepoKey,
    file: &str,
    local: Digest,
) -> Result<PushOutcome> {
    let stored = repo.get_header(key).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::Unreachable,
            format!(
                "{file} was reported as existing in {} but is gone",
                repo.location()
            ),
        )
        .hint("something is deleting from the repository concurrently; the push will be retried")
    })?;
    if stored.sha256 == local {
        Ok(PushOutcome::AlreadyStored)
    } else {
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{file} is already in repository {} with different content: stored sha256 {}, local sha256 {local}",
                repo.location(),
                stored.sha256
            ),
        )
        .hint("another cluster or a diverged timeline pushes under this name; check repository.cluster and never share one repository between clusters"))
    }
}

/// Reads, checks and encodes the file on a blocking thread.
fn read_and_encode(
    path: &Path,
    name: &WalFileName,
    expect: &WalExpect,
    opts: EncodeOptions,
) -> Result<Encoded> {
    let mut f = File::open(path).map_err(|e| Error::io("open wal file", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::io("stat wal file", path, e))?
        .len();
    if let Some(segment) = name.segment() {
        check_segment(&mut f, path, len, segment, expect)?;
    } else if len > MAX_TEXT_FILE {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is {len} bytes: too large for a history file",
                path.display()
            ),
        )
        .hint("archive-push takes only files that PostgreSQL's %p names"));
    }
    pipeline::encode(&mut f, opts, len as usize).map_err(|e| Error::io("read wal file", path, e))
}

fn check_segment(
    f: &mut File,
    path: &Path,
    len: u64,
    segment: crate::pg::WalSegmentName,
    expect: &WalExpect,
) -> Result<()> {
    let want = u64::from(expect.seg_size.bytes());
    let invalid = |msg: String| {
        Error::new(ErrorKind::InvalidInput, msg).hint(
            "archive-push takes only WAL files that PostgreSQL's %p names; nothing was stored",
        )
    };
    if len != want {
        return Err(invalid(format!(
            "{} is {len} bytes, a wal segment of this cluster is {want}: truncated or not a wal segment",
            path.display()
        )));
    }
    let mut head = [0u8; LONG_HEADER_LEN];
    f.read_exact(&mut head)
        .map_err(|e| Error::io("read wal file", path, e))?;
    let header = WalHeader::parse(&head).map_err(invalid)?;
    if header.magic == expect.version.wal_page_magic() && header.system_id != expect.system_id {
        return Err(Error::new(
            ErrorKind::RepoMismatch,
            format!(
                "{} belongs to system id {}, but the repository serves system id {}",
                path.display(),
                header.system_id,
                expect.system_id
            ),
        )
        .hint(
            "this WAL comes from another cluster: give each cluster its own repository.cluster",
        ));
    }
    header
        .check(segment, expect)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("read wal file", path, e))?;
    Ok(())
}
