//! The local spool of the archive commands, under `pg_wal/pgkeep` by default: records of
//! segments pushed ahead (`push/<name>.ok`) and segments fetched ahead (`get/<name>`). It lives
//! inside `pg_wal` because base backups skip that directory's contents and PostgreSQL ignores
//! names that are not WAL files there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::localfs;
use crate::repo::Digest;

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// What a push-ahead record says was stored, where, and which local file it was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// The repository it was stored in (`repo::store::identity`): after `archive_command`
    /// moves to another repository, a record of the old one proves nothing.
    pub repository: String,
    pub sha256: String,
    /// The local file that was read; its size is the plaintext size stored.
    pub file: FileIdentity,
}

/// A local file's identity: any rewrite or replacement changes it (PostgreSQL never rewrites a
/// segment while it waits to be archived, so an unchanged identity means unchanged content).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

impl Spool {
    /// The spool for WAL files in `wal_dir`: `configured` when set, else `<wal_dir>/pgkeep`
    /// when `wal_dir` is a `pg_wal` directory, else none (no look-ahead, no prefetch).
    pub fn locate(configured: Option<&Path>, wal_dir: &Path) -> Option<Spool> {
        match configured {
            Some(dir) => Some(Spool {
                dir: dir.to_path_buf(),
            }),
            None if wal_dir.file_name().is_some_and(|n| n == "pg_wal") => Some(Spool {
                dir: wal_dir.join("pgkeep"),
            }),
            None => None,
        }
    }

    pub fn push_dir(&self) -> PathBuf {
        self.dir.join("push")
    }

    pub fn get_dir(&self) -> PathBuf {
        self.dir.join("get")
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.push_dir().join(format!("{name}.ok"))
    }

    pub fn read_push_record(&self, name: &str) -> Option<PushRecord> {
        let text = std::fs::read(self.record_path(name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Durably records that `name` with this content is stored in `repository`.
    pub fn write_push_record(
        &self,
        name: &str,
        repository: &str,
        sha256: Digest,
        file: FileIdentity,
    ) -> Result<()> {
        let dir = self.push_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create spool directory", &dir, e))?;
        let body = serde_json::to_vec(&PushRecord {
            repository: repository.to_string(),
            sha256: sha256.to_string(),
            file,
        })
        .unwrap_or_default();
        let path = self.record_path(name);
        localfs::write_atomic(&path, |f| std::io::Write::write_all(f, &body))
            .map_err(|e| Error::io("write spool record", &path, e))
    }

    pub fn remove_push_record(&self, name: &str) {
        let _ = std::fs::remove_file(self.record_path(name));
    }

    /// Names that have a push-ahead record.
    pub fn push_records(&self) -> Vec<String> {
        list_names(&self.push_dir())
            .into_iter()
            .filter_map(|n| n.strip_suffix(".ok").map(str::to_string))
            .collect()
    }

    /// Prefetched files (complete ones only: temporaries end in `.pgkeep.tmp`).
    pub fn prefetched(&self) -> Vec<String> {
        list_names(&self.get_dir())
            .into_iter()
            .filter(|n| !n.ends_with(".tmp"))
            .collect()
    }
}

fn list_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn located_under_pg_wal_or_where_configured() {
        assert!(Spool::locate(None, Path::new("/tmp/x")).is_none());
        let s = Spool::locate(None, Path::new("/d/pg_wal")).unwrap();
        assert_eq!(s.push_dir(), Path::new("/d/pg_wal/pgkeep/push"));
        let c = Spool::locate(Some(Path::new("/spool")), Path::new("/tmp/x")).unwrap();
        assert_eq!(c.get_dir(), Path::new("/spool/get"));
    }

    #[test]
    fn push_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::locate(Some(dir.path()), dir.path()).unwrap();
        assert!(s.read_push_record("A").is_none());
        let id = FileIdentity {
            dev: 1,
            ino: 2,
            size: 1,
            mtime_ns: 3,
        };
        s.write_push_record("A", "/r#main", Digest::of(b"a"), id)
            .unwrap();
        assert_eq!(s.read_push_record("A").unwrap().file, id);
        assert_eq!(s.read_push_record("A").unwrap().repository, "/r#main");
        assert_eq!(s.push_records(), vec!["A".to_string()]);
        s.remove_push_record("A");
        assert!(s.push_records().is_empty());
    }
}
