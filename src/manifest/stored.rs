//! Where manifests and drill reports live in the repository: their `RepoObject` kinds and ids.
//! The repository encodes them (and encrypts them, when it is encrypted) beneath `save`/`load`.

use super::Manifest;
use super::drill::DrillReport;
use crate::repo::{BackupId, DrillRun, RepoKey, RepoObject};

impl RepoObject for Manifest {
    type Id = BackupId;
    const KIND: &'static str = "manifest";
    fn key(id: &BackupId) -> RepoKey {
        RepoKey::Manifest(id.to_string())
    }
}

impl RepoObject for DrillReport {
    type Id = DrillRun;
    const KIND: &'static str = "restore-test report";
    fn key(run: &DrillRun) -> RepoKey {
        RepoKey::RestoreTest(run.0.clone())
    }
}
