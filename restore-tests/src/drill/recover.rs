//! The start and recover phases: start the sandbox's server, then wait — bounded by the
//! drill's deadline — until recovery has ended, the server is promoted and it accepts a write
//! (the RTO's end). A server that exits meanwhile failed recovery: its log says why.

use std::time::{Duration, Instant};

use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::pg::lsn::Lsn;

use crate::sandbox::Sandbox;

/// Where recovery ended.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub replayed: Lsn,
}

pub async fn start(sandbox: &mut dyn Sandbox, settings: &[(String, String)]) -> Result<()> {
    sandbox.start(settings).await
}

/// Waits until the server is out of recovery and accepts a write, or fails naming why.
pub async fn until_writable(sandbox: &dyn Sandbox, deadline: Instant) -> Result<Recovered> {
    let mut last;
    loop {
        match sandbox
            .query(
                "postgres",
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text",
            )
            .await
        {
            Ok(rows) => {
                let row = rows.first().cloned().unwrap_or_default();
                if row.first().cloned().flatten().as_deref() == Some("f") {
                    // A write: assigning a transaction id fails on a read-only server.
                    sandbox.query("postgres", "SELECT txid_current()").await?;
                    let replayed = row.get(1).cloned().flatten().unwrap_or_default();
                    let replayed = replayed.parse::<Lsn>().map_err(|e| {
                        Error::new(
                            ErrorKind::Postgres,
                            format!("replay position '{replayed}': {e}"),
                        )
                    })?;
                    return Ok(Recovered { replayed });
                }
                last = "still in recovery".into();
            }
            Err(e) => last = e.one_line(),
        }
        if !sandbox.alive().await {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "recovery failed, the server exited: {}",
                    cause(sandbox).await
                ),
            ));
        }
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "recovery did not end before the drill's deadline (last: {last}): {}",
                    cause(sandbox).await
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The log lines that explain a failure: FATAL/PANIC/ERROR ones first, else the tail.
pub async fn cause(sandbox: &dyn Sandbox) -> String {
    let tail = sandbox.log_tail(40).await;
    let bad: Vec<&str> = tail
        .lines()
        .filter(|l| ["FATAL", "PANIC", "ERROR"].iter().any(|w| l.contains(w)))
        .collect();
    let lines: Vec<&str> = if bad.is_empty() {
        tail.lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    } else {
        bad.into_iter().take(3).collect()
    };
    lines.join(" | ")
}
