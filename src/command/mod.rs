//! Use-cases: one module per CLI command, each a `run(&Config, Args) -> Result<Report>` that
//! reads as a short script of named phases. Commands use the mechanism layers (`pg`, `repo`,
//! `manifest`, `patroni`) and never exit the process; stored bytes and the pipeline that
//! encodes them belong to `repo`.

pub mod archive_get;
pub mod archive_push;
pub mod backup;
pub mod bootstrap;
pub mod check;
pub mod create_replica;
pub mod drills;
pub mod expire;
pub mod info;
pub mod init;
pub mod key;
pub mod pin;
pub mod restore;
pub mod spool;
pub mod verify;
pub mod wal_ranges;

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// Runs `work` under one overall deadline, so a command never hangs on a store or service
/// that accepts connections and never answers.
pub async fn with_deadline<T>(
    what: &str,
    deadline: Duration,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    bounded(what, deadline, None, work).await
}

/// `with_deadline` for the archive commands (and `init`), bounded by `archive.timeout`, which
/// the error names: PostgreSQL retries a failed archive command by itself.
pub async fn with_archive_timeout<T>(
    what: &str,
    deadline: Duration,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    bounded(what, deadline, Some("archive.timeout"), work).await
}

async fn bounded<T>(
    what: &str,
    deadline: Duration,
    setting: Option<&str>,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(deadline, work).await {
        Ok(result) => result,
        Err(_) => Err(deadline_error(what, deadline, setting)),
    }
}

/// The error of a command that ran out of its deadline (also what `main`'s watchdog reports
/// when blocking local I/O outlasts it); `setting` is the one that sets the deadline, if any.
pub fn deadline_error(what: &str, deadline: Duration, setting: Option<&str>) -> Error {
    let raise = setting
        .map(|s| format!(", or raise {s}"))
        .unwrap_or_default();
    Error::new(
        ErrorKind::Unreachable,
        format!(
            "{what} gave up after {}",
            humantime::format_duration(deadline)
        ),
    )
    .hint(format!(
        "the store, a service or a local file system did not answer in time; check the addresses in the configuration and the mounts{raise}"
    ))
}

/// Joins a blocking task, turning a panic into an internal error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("worker task failed: {e}")))?
}
