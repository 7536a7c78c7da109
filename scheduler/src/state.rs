//! What the daemon knows and shows: each job's last run (start, end, result, duration), its next
//! fire and its counters; the newest backup of each type; the newest archived WAL; the last
//! verify. Also the per-job record every daemon of a repository shares
//! (`scheduler/<job>.json`): when the job last started and finished, so an occurrence one
//! daemon ran is not run again by another, and one missed while all were down runs at start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use pgkeep::error::Result;
use pgkeep::repo::{JobName, Repo, RepoKey, RepoObject};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    /// Cancelled by shutdown after the grace period.
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// The scheduled fire this run served.
    pub occurrence: DateTime<Utc>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub outcome: Outcome,
    pub duration_seconds: f64,
    /// The error line, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it did, in a line (e.g. the backup id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Which daemon ran it (host:pid).
    pub by: String,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct JobStatus {
    pub kind: String,
    pub schedule: String,
    pub next_run: Option<DateTime<Utc>>,
    pub running_since: Option<DateTime<Utc>>,
    pub last_run: Option<Run>,
    pub last_success: Option<DateTime<Utc>>,
    pub runs_total: u64,
    pub failures_total: u64,
    /// Occurrences left to another daemon (it held the job's lease, or had run them).
    pub skipped_total: u64,
    /// The runs this daemon made, newest last (at most 50).
    pub history: Vec<Run>,
    /// A restore-test job's last drill report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_report: Option<pgkeep::manifest::drill::DrillReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupSeen {
    pub id: String,
    /// Shown as the manifest stores it (RFC 3339, milliseconds).
    #[serde(serialize_with = "rfc3339_millis")]
    pub stop_time: DateTime<Utc>,
    pub duration_seconds: Option<f64>,
}

fn rfc3339_millis<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RepoStatus {
    /// Newest committed backup of each type (`full`, `incr`).
    pub newest_backup: BTreeMap<String, BackupSeen>,
    pub newest_wal: Option<String>,
    pub newest_wal_stored_at: Option<DateTime<Utc>>,
    /// Backup objects and WAL stored, in bytes.
    pub repository_bytes: u64,
    pub last_verify: Option<VerifySeen>,
    /// Committed backups no drill has proven.
    pub backups_untested: usize,
    /// The newest drill report in the repository (by any daemon or by hand), and when a drill
    /// last passed.
    pub last_restore_test: Option<pgkeep::manifest::drill::DrillReport>,
    pub last_restore_test_success: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifySeen {
    pub at: DateTime<Utc>,
    pub problems: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Status {
    pub started: Option<DateTime<Utc>>,
    pub jobs: BTreeMap<String, JobStatus>,
    pub repository: RepoStatus,
    /// Drills this daemon ran, by verdict (`passed`, `failed`).
    pub restore_test_runs: BTreeMap<String, u64>,
    /// The WAL service, when `[service]` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceStatus>,
}

/// What the WAL service received, per cluster, and its store-and-forward backlog.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServiceStatus {
    pub clusters: BTreeMap<String, Intake>,
    /// Absent when spooling is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolBacklog>,
}

/// One cluster's pushes: the newest file received (most recently acknowledged) and when, so an
/// alert fires when a node stops archiving; answers by outcome.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Intake {
    pub newest_received: Option<String>,
    pub newest_received_at: Option<DateTime<Utc>>,
    /// Pushes answered, by outcome (`stored`, `already-stored`, `spooled`, `refused`, `failed`).
    pub pushes: BTreeMap<String, u64>,
    pub gets: BTreeMap<String, u64>,
}

/// WAL acknowledged but not yet in the store.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SpoolBacklog {
    pub bytes: u64,
    pub segments: u64,
    pub oldest: Option<DateTime<Utc>>,
    pub max_bytes: u64,
    /// Files the store refused when they were uploaded (kept aside, never deleted).
    pub rejected: u64,
}

pub type Shared = Arc<Mutex<Status>>;

/// Runs `f` on the shared status (a poisoned lock still holds usable data).
pub fn with<T>(s: &Shared, f: impl FnOnce(&mut Status) -> T) -> T {
    let mut guard = s.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

/// The record of a job shared through the repository.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct JobRecord {
    /// The occurrence (scheduled fire time) last started, by whichever daemon.
    pub last_fire: Option<DateTime<Utc>>,
    pub last_started: Option<DateTime<Utc>>,
    pub last_finished: Option<DateTime<Utc>>,
    pub last_outcome: Option<Outcome>,
}

impl RepoObject for JobRecord {
    type Id = JobName;
    const KIND: &'static str = "job record";
    fn key(job: &JobName) -> RepoKey {
        RepoKey::JobState(job.0.clone())
    }
}

pub async fn read_record(repo: &Repo, job: &str) -> Result<JobRecord> {
    match repo.load::<JobRecord>(&JobName(job.to_string())).await {
        Ok(r) => Ok(r.unwrap_or_default()),
        // An unreadable record is no record: the job then runs, which is the safe side.
        Err(e) if e.kind() == pgkeep::error::ErrorKind::Corrupt => Ok(JobRecord::default()),
        Err(e) => Err(e),
    }
}

pub async fn write_record(repo: &Repo, job: &str, r: &JobRecord) -> Result<()> {
    repo.save(&JobName(job.to_string()), r).await
}

/// Refreshes what the status says of the repository: newest backups, newest WAL, bytes.
pub async fn refresh_repository(cfg: &pgkeep::config::Config, shared: &Shared) -> Result<()> {
    let repo = Repo::open(&cfg.repository).await?;
    let backups = pgkeep::manifest::listing::list(&repo).await?;
    let wal = repo.wal_objects().await?;
    let mut newest = BTreeMap::new();
    let mut bytes: u64 = wal.iter().map(|o| o.size).sum();
    for m in &backups {
        bytes += m.sizes().1;
        let kind = match m.kind {
            pgkeep::manifest::BackupKind::Full => "full",
            pgkeep::manifest::BackupKind::Incremental => "incr",
        };
        newest.insert(
            kind.to_string(),
            BackupSeen {
                id: m.id.to_string(),
                stop_time: m.stop_time,
                duration_seconds: Some(
                    (m.stop_time - m.start_time).num_milliseconds() as f64 / 1000.0,
                ),
            },
        );
    }
    let reports = pgkeep::command::drills::list(&repo).await?;
    let proven = pgkeep::command::drills::proven(&reports);
    let untested = backups
        .iter()
        .filter(|m| !proven.contains_key(m.id.as_str()))
        .count();
    let last_success = reports
        .iter()
        .filter(|r| r.passed())
        .map(|r| r.finished)
        .max();
    let newest_wal = wal
        .iter()
        .filter(|o| !o.name.ends_with(".history") && !o.name.contains('#'))
        .max_by(|a, b| {
            // Segment numbers grow across timelines: compare them before the timeline.
            let pos = |n: &str| n.get(8..).unwrap_or_default().to_string();
            pos(&a.name).cmp(&pos(&b.name)).then(a.name.cmp(&b.name))
        });
    with(shared, |s| {
        s.repository.newest_backup = newest;
        s.repository.newest_wal = newest_wal.map(|o| o.name.clone());
        s.repository.newest_wal_stored_at = newest_wal.map(|o| o.stored_at);
        s.repository.repository_bytes = bytes;
        s.repository.backups_untested = untested;
        s.repository.last_restore_test = reports.last().cloned();
        s.repository.last_restore_test_success = last_success;
    });
    Ok(())
}
