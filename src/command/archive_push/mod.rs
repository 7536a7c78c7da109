//! `pgkeep archive-push <path>`: PostgreSQL's `archive_command`. Exits 0 only once the store
//! has confirmed the file (or an identical one) is stored; pushes up to `push_lookahead`
//! further `.ready` segments in parallel and records them in the spool, so that PostgreSQL's
//! next calls return at once.

mod lookahead;
mod push;
mod remote;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use push::{
    MAX_SEGMENT, MAX_TEXT_FILE, Prepared, PushOutcome, Pushed, push_one, receive, store,
};
use push::{check, prepare};

use crate::command::spool::Spool;
use crate::command::with_archive_timeout;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{WalFileName, WalSegSize};
use crate::repo::{Compressing, Repo};

#[derive(Debug, Clone)]
pub struct PushArgs {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PushReport {
    pub pushed: Pushed,
    /// Further segments pushed ahead by this call.
    pub ahead: usize,
    pub elapsed: Duration,
}

/// The line `pgkeep archive-push` logs (stdout is PostgreSQL's).
impl std::fmt::Display for PushReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.pushed;
        write!(
            f,
            "archive-push {} {:?} ({} -> {} bytes) in {} ms, {} pushed ahead",
            p.file,
            p.outcome,
            p.plain_size,
            p.stored_size,
            self.elapsed.as_millis(),
            self.ahead
        )
    }
}

pub async fn run(cfg: &Config, args: PushArgs) -> Result<PushReport> {
    let start = Instant::now();
    if let Some(server) = &cfg.server {
        return with_archive_timeout(
            "archive-push",
            cfg.archive.timeout,
            remote::run(cfg, server, &args.path, start),
        )
        .await;
    }
    with_archive_timeout("archive-push", cfg.archive.timeout, async {
        // Refuse what is not a WAL file name before touching the repository.
        let (file, loose) = wal_file_name(&args.path)?;
        let wal_dir = args.path.parent().unwrap_or(Path::new("."));
        let spool = Spool::locate(cfg.archive.spool_path.as_deref(), wal_dir);

        // An earlier call pushed it ahead into this repository: answer from the spool record.
        let repository = crate::repo::store::identity(&cfg.repository);
        if let Some(pushed) =
            lookahead::claim(spool.as_ref(), &repository, &args.path, &file).await?
        {
            return Ok(report(pushed, 0, start));
        }

        // Read and compress the file while the repository is being opened (and, when it is
        // encrypted, its key unwrapped).
        let how = Compressing::of(&cfg.repository);
        let (repo, prepared) = tokio::join!(
            Repo::open(&cfg.repository),
            prepare(&args.path, loose.segment().is_some(), how)
        );
        let repo = repo?;
        let name = parse_name(&file, repo.info().seg_size)?;
        let prepared = prepared?;
        check(&prepared, &args.path, &name, &repo)?;

        // Push this file and the next `.ready` ones together.
        let ahead = match &spool {
            Some(s) => lookahead::plan(
                wal_dir,
                s,
                &name,
                repo.info().seg_size,
                cfg.archive.push_lookahead,
            ),
            None => Vec::new(),
        };
        let seg = repo.info().seg_size;
        let (pushed, ahead_done) = tokio::join!(
            store(&repo, &name, prepared),
            lookahead::push_all(&repo, seg, &repository, spool.as_ref(), wal_dir, ahead),
        );
        Ok(report(pushed?, ahead_done, start))
    })
    .await
}

fn report(pushed: Pushed, ahead: usize, start: Instant) -> PushReport {
    PushReport {
        pushed,
        ahead,
        elapsed: start.elapsed(),
    }
}

/// The file name part of `path`, checked for the shape of a WAL file name.
fn wal_file_name(path: &Path) -> Result<(String, WalFileName)> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let loose = parse_name(&file, WalSegSize::SMALLEST)?;
    Ok((file, loose))
}

fn parse_name(file: &str, seg: WalSegSize) -> Result<WalFileName> {
    WalFileName::parse(file, seg).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("not a wal file: {e}"))
            .hint("archive_command must be 'pgkeep archive-push %p': %p names a file in pg_wal")
    })
}
