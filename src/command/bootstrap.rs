//! `pgkeep bootstrap`, Patroni's custom bootstrap method for a point-in-time clone: restore a
//! backup into the new cluster's data directory, set to recover to the target and promote.
//! Patroni then starts PostgreSQL, which replays the archive through `pgkeep archive-get` and
//! promotes: the clone becomes the new cluster's leader. The clone shares the source's system
//! id, so its own archive must be another repository (or another `repository.cluster`).

use std::path::PathBuf;

use crate::command::restore::{self, RecoveryTarget, RestoreArgs, RestoreReport, TargetAction};
use crate::config::Config;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct BootstrapArgs {
    pub datadir: PathBuf,
    /// A backup id, or `latest`: the newest that can reach the target.
    pub backup: String,
    pub target: RecoveryTarget,
}

/// What the clone's restore did.
#[derive(Debug, Clone)]
pub struct BootstrapReport(pub RestoreReport);

/// The line `pgkeep bootstrap` prints.
impl std::fmt::Display for BootstrapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.0;
        writeln!(
            f,
            "clone bootstrapped from backup {}: {} files, {:.1} MiB in {:.1} s; recovery promotes at the target",
            r.backup,
            r.files,
            r.bytes as f64 / 1048576.0,
            r.elapsed.as_secs_f64()
        )
    }
}

pub async fn run(cfg: &Config, args: BootstrapArgs) -> Result<BootstrapReport> {
    restore::run(
        cfg,
        RestoreArgs {
            dir: args.datadir,
            backup: Some(args.backup),
            force: false,
            delta: false,
            target: args.target,
            target_timeline: None,
            // A clone ends its recovery as a primary of its own: Patroni waits for that.
            target_action: Some(TargetAction::Promote),
            standby: false,
            primary_conninfo: None,
            // Tablespaces under the data directory; restore_command runs this pgkeep.
            tablespace_map: Default::default(),
            replay: Default::default(),
        },
    )
    .await
    .map(BootstrapReport)
}
