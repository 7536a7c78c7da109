//! Object keys: `RepoKey` names every object the repository can hold, and `Layout` turns it
//! into a store path. No other module builds a path.
//!
//! ```text
//! <prefix>/<cluster>/repo.json (+ repo.json.copy)
//! <prefix>/<cluster>/wal/<TLI+LOG>/<segment>[.partial|.<offset>.backup]
//! <prefix>/<cluster>/wal/<TTTTTTTT>.history
//! <prefix>/<cluster>/probe/<nonce>        create-if-absent probe, deleted right after init
//! <prefix>/<cluster>/backups/<id>/files/<path>   file bodies of a backup (part 0)
//! <prefix>/<cluster>/backups/<id>/parts/<n>/<path>  part n > 0 of a file larger than a part
//! <prefix>/<cluster>/backups/<id>/backup_manifest  PostgreSQL's own manifest (17+), for the
//!                                                   next incremental to upload
//! <prefix>/<cluster>/backups/<id>/manifest.json  written last: the backup exists iff it does
//! <prefix>/<cluster>/locks/<job>.json           lease: one backup (or expiry) at a time
//! <prefix>/<cluster>/locks/holds/<id>/<holder>.json  a hold: expire keeps backup <id>
//! <prefix>/<cluster>/pins/<id>.json              a pinned backup: retention never expires it
//! <prefix>/<cluster>/scheduler/<job>.json        pgkeepd: when a job last started and ended
//! <prefix>/<cluster>/restore-tests/<run>.json    the report of one restore drill
//! ```

use object_store::path::Path;

use crate::config::StoreConfig;
use crate::pg::{WalFileName, WalSegSize};

/// Every kind of object in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoKey {
    Info,
    InfoCopy,
    /// A WAL file, by its validated PostgreSQL file name.
    Wal {
        file: String,
        dir: Option<String>,
    },
    Probe(String),
    /// One part of the body of a data-directory file of a backup.
    BackupFile {
        backup: String,
        path: String,
        part: u32,
    },
    /// A backup's manifest: written last, its presence is what makes the backup exist.
    Manifest(String),
    /// PostgreSQL's `backup_manifest` of a backup (17+), byte for byte as the server sent it.
    PgManifest(String),
    /// The lease of a job that must not run twice at once (`backup`).
    Lease(String),
    /// A hold on a backup by one holder (a running restore): expire keeps the backup.
    Hold {
        backup: String,
        holder: String,
    },
    /// A backup an operator pinned (`pgkeep pin`): retention never expires it.
    Pin(String),
    /// pgkeepd's record of one job's last run, shared by every daemon of the repository.
    JobState(String),
    /// The report of one restore drill, by run id.
    RestoreTest(String),
}

impl RepoKey {
    pub fn wal(name: &WalFileName, seg: WalSegSize) -> RepoKey {
        let dir = match name {
            WalFileName::Segment(s)
            | WalFileName::Partial(s)
            | WalFileName::BackupHistory(s, _) => Some(s.log_dir(seg)),
            WalFileName::History(_) => None,
        };
        RepoKey::Wal {
            file: name.file_name(seg),
            dir,
        }
    }
}

/// Maps keys to store paths under `<prefix>/<cluster>`.
#[derive(Debug, Clone)]
pub struct Layout {
    root: String,
}

impl Layout {
    pub fn new(store: &StoreConfig, cluster: &str) -> Layout {
        let prefix = match store {
            StoreConfig::S3 { prefix, .. } => prefix.as_str(),
            StoreConfig::Local { .. } => "",
        };
        let root = [prefix, cluster]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        Layout { root }
    }

    /// The folder of this cluster: everything the repository holds for it.
    pub fn cluster_dir(&self) -> Path {
        Path::from(self.root.as_str())
    }

    /// The folder holding every backup (one sub-folder per backup id).
    pub fn backups_dir(&self) -> Path {
        Path::from(format!("{}/backups", self.root))
    }

    /// The folder of one backup.
    pub fn backup_dir(&self, backup: &str) -> Path {
        Path::from(format!("{}/backups/{backup}", self.root))
    }

    /// The folder holding every hold (one sub-folder per held backup).
    pub fn holds_dir(&self) -> Path {
        Path::from(format!("{}/locks/holds", self.root))
    }

    /// The folder holding the restore drills' reports.
    pub fn restore_tests_dir(&self) -> Path {
        Path::from(format!("{}/restore-tests", self.root))
    }

    /// The folder holding the pins.
    pub fn pins_dir(&self) -> Path {
        Path::from(format!("{}/pins", self.root))
    }

    /// The folder holding every WAL object.
    pub fn wal_root(&self) -> Path {
        Path::from(format!("{}/wal", self.root))
    }

    /// The folder of one timeline and log's segments, e.g. `wal/0000000100000000`.
    pub fn wal_dir(&self, log_dir: &str) -> Path {
        Path::from(format!("{}/wal/{log_dir}", self.root))
    }

    pub fn path(&self, key: &RepoKey) -> Path {
        Path::from(format!("{}/{}", self.root, Self::relative(key)))
    }

    /// The key's path inside the cluster's folder: the name an encrypted object is bound to
    /// (so moving a whole repository under another prefix keeps it readable).
    pub fn relative(key: &RepoKey) -> String {
        match key {
            RepoKey::Info => "repo.json".to_string(),
            RepoKey::InfoCopy => "repo.json.copy".to_string(),
            RepoKey::Wal { file, dir: Some(d) } => format!("wal/{d}/{file}"),
            RepoKey::Wal { file, dir: None } => format!("wal/{file}"),
            RepoKey::Probe(nonce) => format!("probe/{nonce}"),
            RepoKey::BackupFile {
                backup,
                path,
                part: 0,
            } => format!("backups/{backup}/files/{path}"),
            // A folder per part number: no data-directory file name can collide with a part.
            RepoKey::BackupFile { backup, path, part } => {
                format!("backups/{backup}/parts/{part}/{path}")
            }
            RepoKey::Manifest(backup) => format!("backups/{backup}/manifest.json"),
            RepoKey::PgManifest(backup) => format!("backups/{backup}/backup_manifest"),
            RepoKey::Lease(job) => format!("locks/{job}.json"),
            RepoKey::Hold { backup, holder } => format!("locks/holds/{backup}/{holder}.json"),
            RepoKey::Pin(backup) => format!("pins/{backup}.json"),
            RepoKey::JobState(job) => format!("scheduler/{job}.json"),
            RepoKey::RestoreTest(run) => format!("restore-tests/{run}.json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_documented_paths() {
        let seg = WalSegSize::DEFAULT;
        let s3 = StoreConfig::S3 {
            bucket: "b".into(),
            prefix: "pg/prod".into(),
            region: "r".into(),
            endpoint: None,
            allow_http: false,
            virtual_hosted_style: false,
            ca_file: None,
        };
        let l = Layout::new(&s3, "main");
        assert_eq!(l.path(&RepoKey::Info).as_ref(), "pg/prod/main/repo.json");
        let w = WalFileName::parse("0000000200000001000000A0", seg).unwrap();
        assert_eq!(
            l.path(&RepoKey::wal(&w, seg)).as_ref(),
            "pg/prod/main/wal/0000000200000001/0000000200000001000000A0"
        );
        let h = WalFileName::parse("00000002.history", seg).unwrap();
        assert_eq!(
            l.path(&RepoKey::wal(&h, seg)).as_ref(),
            "pg/prod/main/wal/00000002.history"
        );
        let part = |part| RepoKey::BackupFile {
            backup: "20261121T220000Z-F".into(),
            path: "base/5/16384".into(),
            part,
        };
        assert_eq!(
            l.path(&part(0)).as_ref(),
            "pg/prod/main/backups/20261121T220000Z-F/files/base/5/16384"
        );
        assert_eq!(
            l.path(&part(2)).as_ref(),
            "pg/prod/main/backups/20261121T220000Z-F/parts/2/base/5/16384"
        );
        assert_eq!(
            l.path(&RepoKey::PgManifest("20261121T220000Z-F".into()))
                .as_ref(),
            "pg/prod/main/backups/20261121T220000Z-F/backup_manifest"
        );
        assert_eq!(
            l.path(&RepoKey::Pin("20261121T220000Z-F".into())).as_ref(),
            "pg/prod/main/pins/20261121T220000Z-F.json"
        );
        let hold = RepoKey::Hold {
            backup: "20261121T220000Z-F".into(),
            holder: "h1".into(),
        };
        assert_eq!(
            l.path(&hold).as_ref(),
            "pg/prod/main/locks/holds/20261121T220000Z-F/h1.json"
        );
        assert!(l.path(&hold).as_ref().starts_with(l.holds_dir().as_ref()));
        let local = Layout::new(&StoreConfig::Local { path: "/x".into() }, "c1");
        let p = WalFileName::parse("000000010000000000000003.partial", seg).unwrap();
        assert_eq!(
            local.path(&RepoKey::wal(&p, seg)).as_ref(),
            "c1/wal/0000000100000000/000000010000000000000003.partial"
        );
    }
}
