//! The unit of work: push one WAL file. Validate it against the repository's identity, have
//! the repository seal it (sha256 + zstd, encrypted when the repository is), store it
//! create-if-absent, and settle "already there" by the header's digest.
//! The command and the look-ahead read a local file (`push_one`); pgkeepd's receiver hands in
//! the bytes it received (`receive` then `store`): one unit of work, the same checks.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::command::blocking;
use crate::command::spool::FileIdentity;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::wal_content::check_content;
use crate::pg::wal_header::{LONG_HEADER_LEN, WalExpect};
use crate::pg::{WalFileName, WalHeader};
use crate::repo::{Cipher, Compressing, Created, Digest, Prepared as Body, Repo, WalKey};

/// History and backup-history files are a few hundred bytes; refuse anything absurd.
pub const MAX_TEXT_FILE: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Written to the repository by this call.
    Stored,
    /// The identical file was already in the repository.
    AlreadyStored,
    /// Pushed ahead by an earlier call, as its spool record (checked against the file) shows.
    PushedAhead,
    /// Received by pgkeepd while the store was unreachable and kept durably in its spool;
    /// pgkeepd uploads it when the store returns.
    Spooled,
}

#[derive(Debug, Clone)]
pub struct Pushed {
    pub file: String,
    pub outcome: PushOutcome,
    pub plain_size: u64,
    pub stored_size: u64,
    pub sha256: Digest,
    /// The local file that was read (for look-ahead records).
    pub identity: Option<FileIdentity>,
}

/// A WAL file read and compressed, not yet checked against the repository's identity.
#[derive(Debug)]
pub struct Prepared {
    body: Body,
    head: Option<[u8; LONG_HEADER_LEN]>,
    /// The whole content of a small text file (history, backup history), to be parsed.
    text: Option<Vec<u8>>,
    len: u64,
    /// The local file that was read (none for bytes received over the network).
    identity: Option<FileIdentity>,
}

/// Pushes the WAL file at `path`, named `name`, into `repo`.
pub async fn push_one(repo: &Repo, path: &Path, name: &WalFileName) -> Result<Pushed> {
    let prepared = prepare(path, name.segment().is_some(), repo.compressing()).await?;
    check(&prepared, path, name, repo)?;
    store(repo, name, prepared).await
}

/// WAL file `name` received as `bytes` (pgkeepd's receiver): compressed on a blocking thread
/// and checked against the repository's identity exactly as a local file would be. `label`
/// names it in errors.
pub async fn receive(
    repo: &Repo,
    label: &Path,
    name: &WalFileName,
    bytes: bytes::Bytes,
) -> Result<Prepared> {
    let how = repo.compressing();
    let is_segment = name.segment().is_some();
    let owned = label.to_path_buf();
    let prepared = blocking(move || from_bytes(&owned, bytes, is_segment, how)).await?;
    check(&prepared, label, name, repo)?;
    Ok(prepared)
}

/// Reads and compresses the file on a blocking thread; needs nothing from the repository (the
/// key comes in at `store`), so the command runs it while the repository is being opened.
pub async fn prepare(path: &Path, is_segment: bool, how: Compressing) -> Result<Prepared> {
    let path = path.to_path_buf();
    blocking(move || read_and_compress(&path, is_segment, how)).await
}

/// Checks the prepared file against the repository's identity: size, WAL header, system id.
pub fn check(prepared: &Prepared, path: &Path, name: &WalFileName, repo: &Repo) -> Result<()> {
    let expect = repo.info().wal_expect();
    match (name.segment(), &prepared.head) {
        (Some(segment), Some(head)) => check_segment(head, path, prepared.len, segment, &expect),
        (Some(_), None) => Err(truncated(path, prepared.len, &expect)),
        (None, _) => match (name, &prepared.text) {
            // A garbage history stored once would be "already there, different" for the real
            // one forever: PostgreSQL must be able to read it before it is archived.
            (WalFileName::History(_), Some(text)) => {
                check_content(name, &expect, text, prepared.len)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))
            }
            _ => Ok(()),
        },
    }
}

/// Seals a checked file, stores it create-if-absent, and settles "already there" by digest.
pub async fn store(repo: &Repo, name: &WalFileName, prepared: Prepared) -> Result<Pushed> {
    let seg = repo.info().seg_size;
    let file = name.file_name(seg);
    let identity = prepared.identity;
    let repo2 = repo.clone();
    let key = WalKey(name.clone());
    // Encryption is CPU work too: off the runtime's threads.
    let sealed = blocking(move || repo2.seal(key, prepared.body)).await?;
    let (sha256, plain_size, stored_size) = (
        sealed.sha256(),
        sealed.header().plain_size,
        sealed.stored_size(),
    );
    let outcome = match repo.store_new(&sealed).await? {
        Created::New => PushOutcome::Stored,
        Created::Existed => {
            settle_existing(repo, sealed.key(), &file, sealed.header().digest, sha256).await?
        }
    };
    Ok(Pushed {
        file,
        outcome,
        plain_size,
        stored_size,
        sha256,
        identity,
    })
}

/// Something is already stored under this name: the same content is success, anything else is
/// refused — overwriting would silently break point-in-time recovery.
async fn settle_existing(
    repo: &Repo,
    key: &WalKey,
    file: &str,
    tag: Digest,
    local: Digest,
) -> Result<PushOutcome> {
    let stored = repo.header_of(key).await?.ok_or_else(|| {
        Error::new(
            ErrorKind::Unreachable,
            format!(
                "{file} was reported as existing in {} but is gone",
                repo.location()
            ),
        )
        .hint("something is deleting from the repository concurrently; the push will be retried")
    })?;
    // A format-1 object records the plain sha256; a format-2 one what this repository's
    // `content_tag` makes of it (the sha256 itself unless the repository is encrypted).
    let same = match stored.version {
        1 => stored.digest == local,
        _ => stored.digest == tag,
    };
    // A clear object's digest is its sha256 and is worth naming; an encrypted one's is a
    // keyed tag that says nothing to a reader.
    let stored_is = match stored.cipher {
        Cipher::None => format!("stored sha256 {}", stored.digest),
        _ => "stored content encrypted".to_string(),
    };
    if same {
        Ok(PushOutcome::AlreadyStored)
    } else {
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{file} is already in repository {} with different content: {stored_is}, local sha256 {local}",
                repo.location(),
            ),
        )
        .hint("another cluster or a diverged timeline pushes under this name; check repository.cluster and never share one repository between clusters"))
    }
}

/// The largest WAL segment PostgreSQL can have (1 GiB).
pub const MAX_SEGMENT: u64 = 1 << 30;

fn read_and_compress(path: &Path, is_segment: bool, how: Compressing) -> Result<Prepared> {
    let mut f = File::open(path).map_err(|e| Error::io("open wal file", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::io("stat wal file", path, e))?;
    let (len, identity) = (meta.len(), FileIdentity::of(&meta));
    refuse_oversize(path, len, is_segment)?;
    let mut head = None;
    if is_segment && len >= LONG_HEADER_LEN as u64 {
        let mut h = [0u8; LONG_HEADER_LEN];
        f.read_exact(&mut h)
            .map_err(|e| Error::io("read wal file", path, e))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("read wal file", path, e))?;
        head = Some(h);
    }
    let mut text = None;
    let body = if is_segment {
        Body::read(&mut f, how, len as usize)
    } else {
        let mut bytes = Vec::with_capacity(len as usize);
        f.read_to_end(&mut bytes)
            .map_err(|e| Error::io("read wal file", path, e))?;
        let body = Body::read(&mut bytes.as_slice(), how, bytes.len());
        text = Some(bytes);
        body
    }
    .map_err(|e| Error::io("read wal file", path, e))?;
    // The header was read before the body: both must describe one and the same file.
    if body.plain_size() != len {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} changed size while it was read", path.display()),
        )
        .hint("PostgreSQL never changes a segment it asks to archive; is something else writing there?"));
    }
    Ok(Prepared {
        body,
        head,
        text,
        len,
        identity: Some(identity),
    })
}

/// The same from bytes already in memory.
fn from_bytes(
    label: &Path,
    bytes: bytes::Bytes,
    is_segment: bool,
    how: Compressing,
) -> Result<Prepared> {
    let len = bytes.len() as u64;
    refuse_oversize(label, len, is_segment)?;
    let head = match bytes.get(..LONG_HEADER_LEN) {
        Some(h) if is_segment => h.try_into().ok(),
        _ => None,
    };
    let text = (!is_segment).then(|| bytes.to_vec());
    let body = Body::read(&mut bytes.as_ref(), how, bytes.len())
        .map_err(|e| Error::io("compress wal file", label, e))?;
    Ok(Prepared {
        body,
        head,
        text,
        len,
        identity: None,
    })
}

/// A segment is at most 1 GiB, a history or backup-history file a few hundred bytes.
fn refuse_oversize(path: &Path, len: u64, is_segment: bool) -> Result<()> {
    let limit = if is_segment {
        MAX_SEGMENT
    } else {
        MAX_TEXT_FILE
    };
    if len > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is {len} bytes: too large for a wal file",
                path.display()
            ),
        )
        .hint("archive-push takes only files that PostgreSQL's %p names; nothing was stored"));
    }
    Ok(())
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
        .hint("archive-push takes only WAL files that PostgreSQL's %p names; nothing was stored")
}

fn truncated(path: &Path, len: u64, expect: &WalExpect) -> Error {
    invalid(format!(
        "{} is {len} bytes, a wal segment of this cluster is {}: truncated or not a wal segment",
        path.display(),
        expect.seg_size.bytes()
    ))
}

fn check_segment(
    head: &[u8; LONG_HEADER_LEN],
    path: &Path,
    len: u64,
    segment: crate::pg::WalSegmentName,
    expect: &WalExpect,
) -> Result<()> {
    if len != u64::from(expect.seg_size.bytes()) {
        return Err(truncated(path, len, expect));
    }
    let header = WalHeader::parse(head).map_err(invalid)?;
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
        .map_err(|e| invalid(format!("{}: {e}", path.display())))
}
