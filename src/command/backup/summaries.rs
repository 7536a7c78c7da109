//! Incrementals that cost what changed: on PostgreSQL 17+ with `summarize_wal = on`, the
//! server sends only the blocks its WAL summaries say changed since the parent, once it has
//! the parent's own backup manifest (`UPLOAD_MANIFEST`). pgkeep stores that manifest with
//! every backup taken from 17+ for the next incremental. When any of this is missing the
//! incremental scans pages instead, and says why.

use std::sync::Arc;

use bytes::Bytes;

use super::copy::{Asked, Copied, Limits, Streamed, stream};
use super::pages::Parent;
use crate::command::blocking;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{BackupId, Changes, Manifest};
use crate::pg::PgVersion;
use crate::pg::replication::{ReplConn, ReplError};
use crate::repo::{Digest, PgManifestKey, Repo};

/// The first major whose BASE_BACKUP takes INCREMENTAL.
pub const FIRST_MAJOR: u32 = 17;

/// How this source's incrementals find what changed, as `check` says it: `summarize_wal`'s
/// value on a 17+ source, `None` below 17.
pub fn describe(summarize_wal: Option<bool>) -> &'static str {
    match summarize_wal {
        Some(true) => {
            "from WAL summaries: summarize_wal is on, the source sends only changed blocks"
        }
        Some(false) => {
            "by page scan: summarize_wal is off (on, the source would send only changed blocks)"
        }
        None => "by page scan (WAL summaries need postgresql 17+)",
    }
}

/// Why an incremental scans pages instead of using the server's WAL summaries.
pub type Fallback = String;

/// How a backup finds what changed, and what the copy asks the source for.
#[derive(Debug)]
pub struct How {
    pub asked: Asked,
    /// `None` for a full.
    pub changes: Option<Changes>,
    /// Why an incremental scans pages.
    pub note: Option<String>,
}

/// Chooses how a backup on `parent` (none: a full) finds what changed, handing the server the
/// parent's manifest when the WAL summaries can say; every 17+ backup asks for the server's
/// own manifest, for the next incremental.
pub async fn choose(
    repo: &Repo,
    conn: &mut ReplConn,
    version: PgVersion,
    parent: Option<&Manifest>,
) -> Result<How> {
    let mut how = How {
        asked: Asked {
            manifest: version.major() >= FIRST_MAJOR,
            summaries: false,
        },
        changes: None,
        note: None,
    };
    let Some(parent) = parent else {
        return Ok(how);
    };
    match prepare(repo, conn, version, parent).await? {
        Ok(()) => {
            how.asked.summaries = true;
            how.changes = Some(Changes::WalSummaries);
        }
        Err(why) => {
            tracing::info!("incremental by page scan: {why}");
            how.changes = Some(Changes::PageScan);
            how.note = Some(why);
        }
    }
    Ok(how)
}

/// The copy, as `how` says; when the server refuses an incremental from its summaries before
/// sending anything, the same copy by page scan on the same connection.
pub async fn copy(
    repo: &Repo,
    conn: &mut ReplConn,
    id: &BackupId,
    parent: Option<Arc<Parent>>,
    how: &mut How,
    limits: Limits,
) -> Result<Copied> {
    match stream(repo, conn, id, parent.clone(), how.asked, limits).await? {
        Streamed::Copied(c) => return Ok(c),
        Streamed::Refused(why) => {
            tracing::warn!(
                "incremental by page scan: the source refused one from its WAL summaries ({why})"
            );
            how.asked.summaries = false;
            how.changes = Some(Changes::PageScan);
            how.note = Some(format!("the source refused: {why}"));
        }
    }
    match stream(repo, conn, id, parent, how.asked, limits).await? {
        Streamed::Copied(c) => Ok(c),
        Streamed::Refused(why) => Err(Error::new(
            ErrorKind::Internal,
            format!("the source refused a backup that asked for no WAL summaries: {why}"),
        )),
    }
}

/// Hands the server the parent's manifest if an incremental on `parent` can come from WAL
/// summaries; otherwise says why not. Fails when the connection or the repository does.
pub async fn prepare(
    repo: &Repo,
    conn: &mut ReplConn,
    version: PgVersion,
    parent: &Manifest,
) -> Result<std::result::Result<(), Fallback>> {
    if version.major() < FIRST_MAJOR {
        return Ok(Err(format!(
            "PostgreSQL {} has no WAL summaries ({FIRST_MAJOR}+)",
            version.major()
        )));
    }
    let Some(digest) = parent.pg_manifest else {
        return Ok(Err(format!(
            "backup {} has no PostgreSQL backup manifest stored to build on",
            parent.id
        )));
    };
    let on = conn
        .show("summarize_wal")
        .await
        .map_err(super::pg_error)?
        .is_some_and(|v| v == "on");
    if !on {
        return Ok(Err(
            "summarize_wal is off on the source (set it to on for incrementals that read only what changed)".into(),
        ));
    }
    let manifest = match load(repo, &parent.id, digest).await? {
        Ok(m) => m,
        Err(why) => {
            tracing::warn!(backup = %parent.id, "{why}");
            return Ok(Err(why));
        }
    };
    match conn.upload_manifest(&manifest).await {
        Ok(()) => Ok(Ok(())),
        Err(ReplError::Server(why)) => Ok(Err(format!(
            "the source refused backup {}'s manifest: {why}",
            parent.id
        ))),
        Err(e) => Err(super::pg_error(e)),
    }
}

/// The stored PostgreSQL manifest of `backup`, checked against the digest its pgkeep manifest
/// committed; a missing or damaged one is a reason to scan pages, not to fail the backup (a
/// store that cannot be read fails it, as it would fail the copy).
async fn load(
    repo: &Repo,
    backup: &BackupId,
    want: Digest,
) -> Result<std::result::Result<Vec<u8>, Fallback>> {
    let Some(stored) = repo.fetch(&PgManifestKey(backup.clone())).await? else {
        return Ok(Err(format!(
            "backup {backup}'s PostgreSQL manifest is missing from the repository"
        )));
    };
    let backup = backup.clone();
    blocking(move || {
        let mut plain = Vec::new();
        Ok(match stored.decode(&mut plain) {
            Ok(d) if d.sha256 == want => Ok(plain),
            Ok(d) => Err(format!(
                "backup {backup}'s PostgreSQL manifest is not the one committed (sha256 {}, expected {want})",
                d.sha256
            )),
            Err(e) => Err(format!(
                "backup {backup}'s PostgreSQL manifest is damaged: {e}"
            )),
        })
    })
    .await
}

/// Stores the PostgreSQL manifest of backup `id` (before its pgkeep manifest commits it);
/// returns its sha256.
pub async fn keep(repo: &Repo, id: &BackupId, manifest: Vec<u8>) -> Result<Digest> {
    let key = PgManifestKey(id.clone());
    let sealer = repo.clone();
    let sealed = blocking(move || sealer.seal_bytes(key, Bytes::from(manifest))).await?;
    repo.store(&sealed).await?;
    Ok(sealed.sha256())
}
