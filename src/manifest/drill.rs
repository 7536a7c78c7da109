//! The report of a restore drill (`restore-tests/<run id>.json`): what was restored, where,
//! each phase's times and error, the recovery time (RTO), and every check with its outcome.
//! Written by pgkeepd's drills; read by `pgkeep info` (when each backup was last proven).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a drill or one of its checks ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    Failed,
    /// Not run, with the reason in the detail (e.g. no connection to the source for the canary).
    Skipped,
}

/// One timed phase: select, restore, start, recover, verify, report, clean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// One check of the restored cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// Rows counted in one table of the restored cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRows {
    pub database: String,
    pub table: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub run_id: String,
    /// The backup restored (empty when the drill failed before choosing one).
    pub backup: String,
    /// `latest` (end of the archive) or `immediate` (the backup's end).
    pub target: String,
    /// `local` or `container`, and what it ran (bin dir or image).
    pub sandbox: String,
    pub runs: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub phases: Vec<Phase>,
    /// Restore plus recovery until the database accepted a write, in seconds.
    pub rto_seconds: Option<f64>,
    pub bytes_restored: u64,
    /// WAL segments from the backup's start to where replay ended.
    pub wal_segments_replayed: u64,
    /// Where replay ended (`pg_last_wal_replay_lsn()` after promotion).
    pub replayed_lsn: Option<String>,
    pub checks: Vec<Check>,
    pub tables: Vec<TableRows>,
    pub verdict: Verdict,
    /// The first cause of a failure.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cause: Option<String>,
    /// Cut off by a shutdown (SIGTERM): failed, but not for what it found.
    #[serde(default)]
    pub interrupted: bool,
}

impl DrillReport {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }

    /// The phase named `name`, if it ran.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}
