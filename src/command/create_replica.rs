//! `pgkeep create-replica`, Patroni's `create_replica_methods` entry: rebuild a member from
//! the repository instead of copying it from the leader. Phases: pick the newest backup, judge
//! whether replaying the WAL written since is worth it (else decline, exit 1, and Patroni takes
//! its next method, e.g. `basebackup`), then restore it as a standby of the leader.

use std::path::PathBuf;

use crate::command::restore::{self, RecoveryTarget, RestoreArgs, RestoreReport};
use crate::config::{Config, CreateReplicaConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;
use crate::manifest::listing;
use crate::pg::replication::{ConnParams, ReplConn};
use crate::repo::Repo;

#[derive(Debug, Clone)]
pub struct CreateReplicaArgs {
    pub datadir: PathBuf,
    /// The leader, as Patroni names it (`--connstring`): primary_conninfo, and where the WAL
    /// written since the backup is measured.
    pub connstring: Option<String>,
    /// Patroni's keep_data: the directory may hold an older copy worth reusing.
    pub keep_data: bool,
    /// The text of the password file Patroni wrote (`$PGPASSFILE`).
    pub passfile: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CreateReplicaReport {
    pub restore: RestoreReport,
    /// WAL bytes between the backup's end and the leader's position, when it could be asked.
    pub wal_behind: Option<u64>,
}

/// The line `pgkeep create-replica` prints.
impl std::fmt::Display for CreateReplicaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.restore;
        writeln!(
            f,
            "replica created from backup {}: {} files, {:.1} MiB in {:.1} s{}",
            r.backup,
            r.files,
            r.bytes as f64 / 1048576.0,
            r.elapsed.as_secs_f64(),
            self.wal_behind
                .map(|b| format!(", {:.1} MiB of wal to replay", b as f64 / 1048576.0))
                .unwrap_or_default()
        )
    }
}

pub async fn run(cfg: &Config, args: CreateReplicaArgs) -> Result<CreateReplicaReport> {
    // The newest backup, or decline: Patroni then copies from the leader.
    let repo = Repo::open(&cfg.repository).await?;
    let newest = listing::list(&repo)
        .await?
        .pop()
        .ok_or_else(|| declined("the repository holds no backup yet".into()))?;

    // Decline when replaying the WAL written since would cost more than a fresh copy.
    let behind = match &args.connstring {
        Some(c) => wal_behind(c, args.passfile.as_deref(), &newest).await,
        None => None,
    };
    if let Some(bytes) = behind {
        judge(bytes, newest.sizes().0, &cfg.create_replica).map_err(declined)?;
    }

    // Restore it as a standby of the leader; with keep_data, files that match are kept.
    let occupied = std::fs::read_dir(&args.datadir).is_ok_and(|mut d| d.next().is_some());
    let restore = restore::run(
        cfg,
        RestoreArgs {
            dir: args.datadir,
            backup: Some(newest.id.to_string()),
            force: occupied && !args.keep_data,
            delta: occupied && args.keep_data,
            target: RecoveryTarget::Latest,
            target_timeline: None,
            target_action: None,
            standby: true,
            primary_conninfo: args.connstring,
            // Tablespaces under the data directory; restore_command runs this pgkeep.
            tablespace_map: Default::default(),
            replay: Default::default(),
        },
    )
    .await?;
    Ok(CreateReplicaReport {
        restore,
        wal_behind: behind,
    })
}

/// Whether replaying `behind` bytes of WAL onto a backup of `backup_size` bytes is within the
/// limits. Pure.
pub fn judge(behind: u64, backup_size: u64, limits: &CreateReplicaConfig) -> Result<(), String> {
    let mib = |b: u64| b as f64 / 1048576.0;
    if behind > limits.max_wal_bytes {
        return Err(format!(
            "{:.0} MiB of wal written since the newest backup exceeds create_replica.max_wal_mib ({:.0})",
            mib(behind),
            mib(limits.max_wal_bytes)
        ));
    }
    if u128::from(behind) * 100 > u128::from(backup_size) * u128::from(limits.max_wal_percent) {
        return Err(format!(
            "{:.0} MiB of wal written since the newest backup exceeds create_replica.max_wal_percent ({}% of its {:.0} MiB)",
            mib(behind),
            limits.max_wal_percent,
            mib(backup_size)
        ));
    }
    Ok(())
}

/// How far the leader's WAL is past the backup's end. `None` (and a warning) when the leader
/// cannot be asked: the replica is then built anyway, and streams what it lacks.
async fn wal_behind(connstring: &str, passfile: Option<&str>, backup: &Manifest) -> Option<u64> {
    let asked = async {
        let mut params = ConnParams::parse(connstring, None)?;
        if let Some(text) = passfile {
            params.password_from_passfile(text);
        }
        let mut conn = ReplConn::connect(&params)
            .await
            .map_err(|e| e.to_string())?;
        let ident = conn.identify_system().await.map_err(|e| e.to_string())?;
        conn.close().await;
        Ok::<_, String>(ident.xlog_pos)
    };
    match asked.await {
        Ok(pos) => Some(pos.0.saturating_sub(backup.stop_lsn.0)),
        Err(e) => {
            tracing::warn!("cannot measure the wal since backup {}: {e}", backup.id);
            None
        }
    }
}

fn declined(why: String) -> Error {
    Error::new(
        ErrorKind::Declined,
        format!("not creating the replica from the repository: {why}"),
    )
    .hint("Patroni falls back to its next create_replica_methods entry (e.g. basebackup)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CreateReplicaConfig = CreateReplicaConfig {
        max_wal_bytes: 1000,
        max_wal_percent: 30,
    };

    #[test]
    fn declines_past_either_threshold() {
        assert!(judge(0, 0, &LIMITS).is_ok());
        assert!(judge(300, 1000, &LIMITS).is_ok());
        assert!(
            judge(301, 1000, &LIMITS)
                .unwrap_err()
                .contains("max_wal_percent")
        );
        assert!(
            judge(1001, 1_000_000, &LIMITS)
                .unwrap_err()
                .contains("max_wal_mib")
        );
        assert!(
            judge(1, 0, &LIMITS).is_err(),
            "no database to speak of: copy it"
        );
    }
}
