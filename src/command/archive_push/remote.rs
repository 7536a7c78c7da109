//! archive-push through pgkeepd (`[server]` configured): read the raw file, send it with its
//! sha256, and push the next `.ready` files ahead the same way. Compression and encryption
//! happen in pgkeepd, not here: the point of the service is that database nodes hold neither
//! the store's credentials nor the repository's key (and the zstd work leaves their cores).

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::lookahead::{self, Pusher};
use super::push::{MAX_SEGMENT, MAX_TEXT_FILE, PushOutcome, Pushed};
use super::{PushReport, parse_name, report, wal_file_name};
use crate::command::blocking;
use crate::command::spool::{FileIdentity, Spool};
use crate::config::{Config, ServerConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{WalFileName, WalSegSize};
use crate::repo::Digest;
use crate::service::client::sha256_hex;
use crate::service::{Client, Outcome, PushAnswer};

pub async fn run(
    cfg: &Config,
    server: &ServerConfig,
    path: &Path,
    start: Instant,
) -> Result<PushReport> {
    let (file, loose) = wal_file_name(path)?;
    let wal_dir = path.parent().unwrap_or(Path::new("."));
    let spool = Spool::locate(cfg.archive.spool_path.as_deref(), wal_dir);
    // Look-ahead records name where the file went: this service, not a repository.
    let repository = format!("service {}", server.url);
    if let Some(pushed) = lookahead::claim(spool.as_ref(), &repository, path, &file).await? {
        return Ok(report(pushed, 0, start));
    }
    let client = Client::new(server, cfg.archive.timeout)?;
    let cpu = Semaphore::new(1);

    // A segment's length is its cluster's segment size (pgkeepd refuses it otherwise), which is
    // all the look-ahead needs to name the next files: both go out at once.
    let seg = segment_size(path, &loose);
    let ahead = match (&spool, seg) {
        (Some(s), Some(seg)) => {
            let name = parse_name(&file, seg)?;
            lookahead::plan(wal_dir, s, &name, seg, cfg.archive.push_lookahead)
        }
        _ => Vec::new(),
    };
    let remote = Remote(&client);
    let (pushed, ahead_done) = tokio::join!(remote.push(path, &loose, &cpu), async {
        match seg {
            Some(seg) => {
                lookahead::push_all(&remote, seg, &repository, spool.as_ref(), wal_dir, ahead).await
            }
            None => 0,
        }
    });
    Ok(report(pushed?, ahead_done, start))
}

fn segment_size(path: &Path, name: &WalFileName) -> Option<WalSegSize> {
    name.segment()?;
    let len = std::fs::metadata(path).ok()?.len();
    WalSegSize::new(u32::try_from(len).ok()?).ok()
}

/// Pushes through pgkeepd.
struct Remote<'a>(&'a Client);

impl Pusher for Remote<'_> {
    async fn push(&self, path: &Path, name: &WalFileName, cpu: &Semaphore) -> Result<Pushed> {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let (bytes, sha256, identity) = {
            let _permit = cpu.acquire().await;
            let path = path.to_path_buf();
            let is_segment = name.segment().is_some();
            blocking(move || read_whole(&path, is_segment)).await?
        };
        let answer = self.0.push(&file, bytes, &sha256).await?;
        pushed(answer, identity)
    }
}

/// The whole file, its sha256 and identity; refuses what cannot be a WAL file before sending.
fn read_whole(path: &Path, is_segment: bool) -> Result<(Bytes, String, FileIdentity)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open wal file", path, e))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::io("stat wal file", path, e))?;
    let limit = if is_segment {
        MAX_SEGMENT
    } else {
        MAX_TEXT_FILE
    };
    if meta.len() > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is {} bytes: too large for a wal file",
                path.display(),
                meta.len()
            ),
        )
        .hint("archive-push takes only files that PostgreSQL's %p names; nothing was sent"));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf)
        .map_err(|e| Error::io("read wal file", path, e))?;
    if buf.len() as u64 != meta.len() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} changed size while it was read", path.display()),
        )
        .hint(
            "PostgreSQL never changes a file it asks to archive; is something else writing there?",
        ));
    }
    let sha256 = sha256_hex(&buf);
    Ok((Bytes::from(buf), sha256, FileIdentity::of(&meta)))
}

fn pushed(a: PushAnswer, identity: FileIdentity) -> Result<Pushed> {
    let sha256 = Digest::parse(&a.sha256).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("pgkeepd answered a malformed digest: {e}"),
        )
    })?;
    Ok(Pushed {
        file: a.file,
        outcome: match a.outcome {
            Outcome::Stored => PushOutcome::Stored,
            Outcome::AlreadyStored => PushOutcome::AlreadyStored,
            Outcome::Spooled => PushOutcome::Spooled,
        },
        plain_size: a.plain_size,
        stored_size: a.stored_size,
        sha256,
        identity: Some(identity),
    })
}
