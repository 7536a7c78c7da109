//! `pgkeep archive-get <file> <dest>`: PostgreSQL's `restore_command`. Exits 0 after writing
//! `dest` atomically with its checksum and content verified, 1 when the file is not in the
//! repository (so PostgreSQL ends recovery or switches to streaming), and for any other error
//! a code that stops recovery rather than ends it (see `outcome`). Fetches the next
//! `get_prefetch` segments of the same timeline into the spool meanwhile.

mod fetch;
mod outcome;
mod prefetch;
mod remote;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use fetch::{get_bytes, get_one};
pub use outcome::{RecoveryMode, settle};

use crate::command::spool::Spool;
use crate::command::with_archive_timeout;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{WalFileName, WalSegSize};
use crate::repo::Repo;

#[derive(Debug, Clone)]
pub struct GetArgs {
    pub file: String,
    pub dest: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetSource {
    Repository,
    /// pgkeepd's WAL service.
    Service,
    Prefetched,
}

#[derive(Debug, Clone)]
pub struct GetReport {
    pub file: String,
    pub source: GetSource,
    pub size: u64,
    /// Segments fetched ahead into the spool by this call.
    pub prefetched: usize,
    pub elapsed: Duration,
}

/// The line `pgkeep archive-get` logs (stdout is PostgreSQL's).
impl std::fmt::Display for GetReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "archive-get {} from {:?} ({} bytes) in {} ms, {} prefetched",
            self.file,
            self.source,
            self.size,
            self.elapsed.as_millis(),
            self.prefetched
        )
    }
}

/// Fetches the file. What an error then tells PostgreSQL is `settle`'s to say (the entry point
/// applies it to every error, a bad configuration included).
pub async fn run(cfg: &Config, args: GetArgs) -> Result<GetReport> {
    let start = Instant::now();
    if let Some(server) = &cfg.server {
        return with_archive_timeout(
            "archive-get",
            cfg.archive.timeout,
            remote::run(cfg, server, &args, start),
        )
        .await;
    }
    with_archive_timeout("archive-get", cfg.archive.timeout, async {
        // PostgreSQL only asks for WAL file names; anything else is a configuration mistake.
        parse_name(&args.file, WalSegSize::SMALLEST)?;
        let dest_dir = args.dest.parent().unwrap_or(Path::new("."));
        let spool = Spool::locate(cfg.archive.spool_path.as_deref(), dest_dir);

        // Fetched ahead by an earlier call: move it into place.
        if let Some(size) = prefetch::take(spool.as_ref(), &args.file, &args.dest)? {
            return Ok(report(&args.file, GetSource::Prefetched, size, 0, start));
        }

        let repo = Repo::open(&cfg.repository).await?;
        let name = parse_name(&args.file, repo.info().seg_size)?;

        // Fetch this file; meanwhile fetch the next segments into the spool.
        let seg = repo.info().seg_size;
        let mut ahead = prefetch::plan(spool.as_ref(), &name, seg, cfg.archive.get_prefetch);
        if !ahead.is_empty() {
            ahead.truncate(prefetch::affordable(spool.as_ref(), seg, ahead.len()));
        }
        let prefetching = tokio::spawn(prefetch::fetch_all(repo.clone(), spool.clone(), ahead));
        let size = match get_one(&repo, &name, &args.dest).await {
            Ok(size) => size,
            Err(e) => {
                // Nothing follows a file that is not there yet; do not wait for the look-ahead.
                prefetching.abort();
                return Err(match e.kind() {
                    ErrorKind::NotFound => fetch::hole_or(e, &repo, &name).await,
                    _ => e,
                });
            }
        };
        let prefetched = prefetching.await.unwrap_or(0);
        Ok(report(
            &args.file,
            GetSource::Repository,
            size,
            prefetched,
            start,
        ))
    })
    .await
}

fn report(
    file: &str,
    source: GetSource,
    size: u64,
    prefetched: usize,
    start: Instant,
) -> GetReport {
    GetReport {
        file: file.to_string(),
        source,
        size,
        prefetched,
        elapsed: start.elapsed(),
    }
}

fn parse_name(file: &str, seg: WalSegSize) -> Result<WalFileName> {
    WalFileName::parse(file, seg).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("not a wal file name: {e}"))
            .hint("restore_command must be 'pgkeep archive-get %f %p'")
    })
}
