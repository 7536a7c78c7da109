//! The canary: a named restore point (`pg_create_restore_point`) left in the source's WAL when
//! the drill starts, after the backup ended, then a WAL switch and a bounded wait until the
//! segment holding it is archived. Recovery to `latest` must replay past it: that proves WAL
//! replay beyond the backup, which a restore that stops at consistency never shows. A restore
//! point touches no user table and needs no schema of pgkeep's in the source.

use std::time::{Duration, Instant};

use pgkeep::command::backup::source;
use pgkeep::config::Config;
use pgkeep::pg::lsn::Lsn;
use pgkeep::pg::wal::{WalFileName, WalSegmentName};
use pgkeep::repo::{Repo, WalKey};

/// The canary's outcome before recovery: where it is, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Canary {
    Left {
        name: String,
        lsn: Lsn,
        segment: String,
    },
    Skipped(String),
    /// Left but never archived: the archive is not keeping up (or broken).
    NotArchived(String),
}

/// How long the segment holding the canary gets to reach the repository.
pub const ARCHIVE_WAIT: Duration = Duration::from_secs(120);

pub async fn leave(cfg: &Config, repo: &Repo, run_id: &str) -> Canary {
    match try_leave(cfg, repo, run_id).await {
        Ok(c) => c,
        Err(why) => Canary::Skipped(why),
    }
}

async fn try_leave(cfg: &Config, repo: &Repo, run_id: &str) -> Result<Canary, String> {
    let src = source::resolve(cfg, None)
        .await
        .map_err(|e| format!("no source to mark: {}", e.one_line()))?;
    let client = pgkeep::pg::client::connect(&src.switch_wal).await?;
    let id = pgkeep::pg::client::identity(&client).await?;
    if id.system_id != repo.info().system_id {
        return Err(format!(
            "the source is cluster {}, the repository holds {}",
            id.system_id,
            repo.info().system_id
        ));
    }
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| format!("cannot ask the source: {e}"))?
        .get(0);
    if in_recovery {
        return Err("the source reached is a standby (a restore point needs the primary)".into());
    }
    let name = format!("pgkeep-canary-{run_id}");
    let row = client
        .query_one(
            "SELECT lsn::text, pg_walfile_name(lsn), pg_switch_wal()::text \
             FROM pg_create_restore_point($1) AS lsn",
            &[&name],
        )
        .await
        .map_err(|e| format!("cannot create the restore point: {e}"))?;
    let lsn: String = row.get(0);
    let segment: String = row.get(1);
    let lsn = lsn.parse::<Lsn>().map_err(|e| e.to_string())?;
    let seg = repo.info().seg_size;
    let file =
        WalFileName::Segment(WalSegmentName::parse(&segment, seg).map_err(|e| e.to_string())?);
    let key = WalKey(file);
    let began = Instant::now();
    loop {
        if repo.holds(&key).await.unwrap_or(false) {
            return Ok(Canary::Left { name, lsn, segment });
        }
        if began.elapsed() > ARCHIVE_WAIT {
            return Ok(Canary::NotArchived(format!(
                "restore point {name} at {lsn} is in segment {segment}, which was not archived within {} s",
                ARCHIVE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
