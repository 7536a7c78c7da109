//! Store-and-forward: WAL that pgkeepd acknowledged while the store was unreachable, kept on
//! its own disk (`<spool>/<cluster>/<file>`, written to a temporary, fsynced, renamed, the
//! folder fsynced: durable before the answer) until the flusher has uploaded it. Past
//! `max_bytes` it refuses, so PostgreSQL keeps the WAL and retries. Files the store refuses
//! on upload (a conflict found only then) move to `<cluster>/rejected/`, never deleted.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pgkeep::config::SpoolConfig;
use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::localfs;

use crate::state::SpoolBacklog;

#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    max_bytes: u64,
    /// Serialises the room check and the write: two pushes cannot both take the last room.
    admit: Mutex<()>,
}

/// One spooled file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(what, path, e).hint("check service.spool_path: free space, permissions")
}

impl Spool {
    /// Opens the spool, creating its folder; removes temporaries a crash left (never
    /// acknowledged, so PostgreSQL still has them).
    pub fn open(cfg: &SpoolConfig, clusters: &[String]) -> Result<Spool> {
        for c in clusters {
            let dir = cfg.path.join(c);
            std::fs::create_dir_all(&dir).map_err(|e| io("create spool folder", &dir, e))?;
            for e in std::fs::read_dir(&dir).map_err(|e| io("read spool folder", &dir, e))? {
                let Ok(e) = e else { continue };
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        localfs::fsync_dir(&cfg.path).map_err(|e| io("fsync spool folder", &cfg.path, e))?;
        Ok(Spool {
            root: cfg.path.clone(),
            max_bytes: cfg.max_bytes,
            admit: Mutex::new(()),
        })
    }

    fn dir(&self, cluster: &str) -> PathBuf {
        self.root.join(cluster)
    }

    /// Keeps `bytes` as `file` of `cluster` durably, or refuses when the spool is full.
    pub fn put(&self, cluster: &str, file: &str, bytes: &Bytes) -> Result<()> {
        let _admit = self.admit.lock().unwrap_or_else(|p| p.into_inner());
        let used: u64 = self.all().iter().map(|e| e.size).sum();
        if used + bytes.len() as u64 > self.max_bytes {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!(
                    "the store is unreachable and pgkeepd's spool is full ({used} of {} bytes)",
                    self.max_bytes
                ),
            )
            .hint("PostgreSQL keeps the WAL and retries; bring the store back or raise service.spool_max_mib"));
        }
        let dest = self.dir(cluster).join(file);
        // Written, fsynced, renamed, folder fsynced: only then may the push be acknowledged.
        localfs::write_atomic(&dest, |f| std::io::Write::write_all(f, bytes))
            .map_err(|e| io("spool", &dest, e))
    }

    /// The spooled `file` of `cluster`, if there is one.
    pub fn get(&self, cluster: &str, file: &str) -> Option<Bytes> {
        std::fs::read(self.dir(cluster).join(file))
            .ok()
            .map(Bytes::from)
    }

    /// The files spooled for `cluster`, oldest name first (the order they are uploaded in).
    pub fn list(&self, cluster: &str) -> Vec<Entry> {
        let mut out: Vec<Entry> = std::fs::read_dir(self.dir(cluster))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let meta = e.metadata().ok()?;
                let file = e.file_name().into_string().ok()?;
                (meta.is_file() && !file.ends_with(".tmp")).then(|| Entry {
                    file,
                    path: e.path(),
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                })
            })
            .collect();
        out.sort_by(|a, b| a.file.cmp(&b.file));
        out
    }

    fn clusters(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()
    }

    fn all(&self) -> Vec<Entry> {
        self.clusters().iter().flat_map(|c| self.list(c)).collect()
    }

    /// Removes an uploaded file (the store has confirmed it).
    pub fn remove(&self, cluster: &str, e: &Entry) {
        if std::fs::remove_file(&e.path).is_ok() {
            let _ = localfs::fsync_dir(&self.dir(cluster));
        }
    }

    /// Moves a file the store refused aside, for an operator to look at.
    pub fn reject(&self, cluster: &str, e: &Entry) {
        let dir = self.dir(cluster).join("rejected");
        let _ = std::fs::create_dir_all(&dir);
        let _ = localfs::rename_durable(&e.path, &dir.join(&e.file));
    }

    /// The backlog for `/status` and `/metrics`.
    pub fn backlog(&self) -> SpoolBacklog {
        let all = self.all();
        let rejected = self
            .clusters()
            .iter()
            .filter_map(|c| std::fs::read_dir(self.dir(c).join("rejected")).ok())
            .map(|d| d.count() as u64)
            .sum();
        SpoolBacklog {
            bytes: all.iter().map(|e| e.size).sum(),
            segments: all.len() as u64,
            oldest: all
                .iter()
                .map(|e| e.modified)
                .min()
                .map(DateTime::<Utc>::from),
            max_bytes: self.max_bytes,
            rejected,
        }
    }
}
