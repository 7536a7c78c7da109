//! The consistency phase of a backup: every WAL segment from the backup's start to its stop
//! must be in the archive before the backup may be committed. On a primary the last segment is
//! switched out at once (`pg_switch_wal()`); a standby cannot switch, so the wait relies on the
//! primary's own switches (`archive_timeout`) and is bounded by `backup.wal_timeout`.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::pg::{Lsn, Timeline, WalFileName, WalSegSize, WalSegmentName, client};
use crate::repo::{Repo, WalKey};

/// The segments holding WAL from `start` up to (not including) `stop`.
pub fn needed_segments(
    tli: Timeline,
    start: Lsn,
    stop: Lsn,
    seg: WalSegSize,
) -> Vec<WalSegmentName> {
    let first = WalSegmentName::containing(tli, start, seg);
    let last = WalSegmentName::containing(tli, Lsn(stop.0.saturating_sub(1).max(start.0)), seg);
    (first.segno..=last.segno)
        .map(|segno| WalSegmentName { tli, segno })
        .collect()
}

pub async fn wait_archived(
    repo: &Repo,
    source: &str,
    tli: Timeline,
    start: Lsn,
    stop: Lsn,
    timeout: Duration,
) -> Result<()> {
    let seg = repo.info().seg_size;
    let mut missing = needed_segments(tli, start, stop, seg);
    switch_if_primary(source).await;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(50);
    loop {
        let mut still = Vec::new();
        for s in missing {
            if !repo.holds(&WalKey(WalFileName::Segment(s))).await? {
                still.push(s);
            }
        }
        missing = still;
        let Some(first) = missing.first() else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!(
                    "the backup's wal was not archived within {}: {} is missing",
                    humantime::format_duration(timeout),
                    first.file_name(seg)
                ),
            )
            .hint("check archive_command and pg_stat_archiver on the primary; the backup was not committed"));
        }
        // Polling the archive with backoff: nothing notifies us when a segment lands.
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Asks a primary to finish its current segment; a standby (or a refused connection) is left
/// alone, and the wait relies on the primary's own switches.
async fn switch_if_primary(source: &str) {
    let Ok(c) = client::connect(source).await else {
        tracing::warn!(
            "cannot open a regular connection to the source to switch wal; waiting for the archive"
        );
        return;
    };
    let primary = c
        .query_one("SELECT NOT pg_is_in_recovery()", &[])
        .await
        .map(|r| r.get::<_, bool>(0))
        .unwrap_or(false);
    if primary {
        if let Err(e) = c.simple_query("SELECT pg_switch_wal()").await {
            tracing::warn!(error = %e, "pg_switch_wal() failed; waiting for the archive");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_segments_cover_start_to_stop() {
        let seg = WalSegSize::DEFAULT;
        let tli = Timeline(1);
        let names = |a: &str, b: &str| {
            needed_segments(tli, a.parse().unwrap(), b.parse().unwrap(), seg)
                .iter()
                .map(|s| s.file_name(seg))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("0/2000028", "0/2000100"),
            ["000000010000000000000002"]
        );
        assert_eq!(
            names("0/2000028", "0/4000100"),
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000004"
            ]
        );
        // A stop exactly at a segment boundary needs nothing of the next segment.
        assert_eq!(
            names("0/2000028", "0/3000000"),
            ["000000010000000000000002"]
        );
    }
}
