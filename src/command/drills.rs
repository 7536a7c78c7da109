//! The restore drills' reports in the repository: save one, list them, and tell per backup
//! when a drill last proved it (and with what RTO). An unreadable report is skipped with a
//! warning: reports are a record, never an input to what a restore or expire does.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::{ErrorKind, Result};
use crate::manifest::drill::DrillReport;
use crate::repo::{DrillRun, Repo};

/// Stores `report` under its run id.
pub async fn save(repo: &Repo, report: &DrillReport) -> Result<()> {
    repo.save(&DrillRun(report.run_id.clone()), report).await
}

/// Every stored report, oldest run first.
pub async fn list(repo: &Repo) -> Result<Vec<DrillReport>> {
    let mut out = Vec::new();
    for run in repo.restore_test_runs().await? {
        match repo.load::<DrillReport>(&run).await {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Corrupt => tracing::warn!(
                "restore-test report {} is unreadable, skipped: {}",
                run.0,
                e.message()
            ),
            Err(e) => return Err(e),
        }
    }
    out.sort_by_key(|r| r.started);
    Ok(out)
}

/// When a drill last proved a backup, and how long its recovery took.
#[derive(Debug, Clone, PartialEq)]
pub struct Proven {
    pub at: DateTime<Utc>,
    pub rto_seconds: Option<f64>,
    pub run_id: String,
}

/// Per backup id: its newest passed drill.
pub fn proven(reports: &[DrillReport]) -> BTreeMap<String, Proven> {
    let mut out = BTreeMap::new();
    for r in reports.iter().filter(|r| r.passed()) {
        let newer = out
            .get(&r.backup)
            .is_none_or(|p: &Proven| p.at <= r.finished);
        if newer {
            out.insert(
                r.backup.clone(),
                Proven {
                    at: r.finished,
                    rto_seconds: r.rto_seconds,
                    run_id: r.run_id.clone(),
                },
            );
        }
    }
    out
}
