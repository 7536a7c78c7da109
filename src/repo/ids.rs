//! The ids of what the repository holds, typed so that one kind's id cannot name another
//! kind's object: `BackupId` (a backup's folder and manifest), `JobName` (a lease, a job
//! record), `DrillRun` (a restore drill's report).

use serde::{Deserialize, Serialize};

/// pgkeep's label for a backup, sortable by time: `20261121T220000Z-F` (full) or `-I`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Incremental,
}

impl BackupId {
    pub fn new(at: chrono::DateTime<chrono::Utc>, kind: BackupKind) -> Self {
        let suffix = match kind {
            BackupKind::Full => 'F',
            BackupKind::Incremental => 'I',
        };
        BackupId(format!("{}-{suffix}", at.format("%Y%m%dT%H%M%SZ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BackupId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s.len() == 18
            && chrono::NaiveDateTime::parse_from_str(&s[..16], "%Y%m%dT%H%M%SZ").is_ok()
            && matches!(&s[16..], "-F" | "-I");
        ok.then_some(BackupId(s.clone()))
            .ok_or_else(|| format!("invalid backup id '{s}': expected e.g. 20261121T220000Z-F"))
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.0
    }
}

impl std::str::FromStr for BackupId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BackupId::try_from(s.to_string())
    }
}

impl std::fmt::Display for BackupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job that holds a lease or keeps a record (`backup`, `expire`, a pgkeepd job's name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobName(pub String);

/// One restore drill, by its run id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrillRun(pub String);
