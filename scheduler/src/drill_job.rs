//! The `restore-test` job: one restore drill (pgkeep-restore-tests) with the job's settings.
//! A failed drill fails the run, with the drill's cause as the error line; either way its
//! report goes onto the job's status and into the restore-test counters.

use async_trait::async_trait;

use pgkeep::config::{Config, RestoreTestConfig};
use pgkeep::error::{Error, ErrorKind};
use pgkeep_restore_tests::drill::{self, Choice, DrillArgs};

use crate::jobs::{Job, Ran};
use crate::state::{self, Shared};

/// A drill with these settings (`None`: the `[restore_test]` section's).
pub struct Drill(pub Option<RestoreTestConfig>);

#[async_trait]
impl Job for Drill {
    async fn run(&self, cfg: &Config, status: &Shared) -> Ran {
        let rt = self.0.clone().unwrap_or_else(|| cfg.restore_test.clone());
        let args = DrillArgs {
            choice: Choice::Rule(rt.select),
            config: rt,
        };
        // The daemon's shutdown cancels this task; its sandbox is then swept at exit.
        let report = match drill::run(cfg, args, Box::pin(std::future::pending())).await {
            Ok(r) => r,
            Err(e) => return Ran::from(Err(e)),
        };
        state::with(status, |s| {
            *s.restore_test_runs
                .entry(if report.passed() { "passed" } else { "failed" }.to_string())
                .or_default() += 1;
        });
        let result = if report.passed() {
            Ok(format!(
                "restore test {} of backup {} passed, rto {:.1} s",
                report.run_id,
                report.backup,
                report.rto_seconds.unwrap_or_default()
            ))
        } else {
            Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "restore test {} of backup {} failed: {}",
                    report.run_id,
                    report.backup,
                    report.cause.clone().unwrap_or_default()
                ),
            ))
        };
        Ran {
            result,
            report: Some(report),
        }
    }
}
