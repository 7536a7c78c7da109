//! The repository: the only module that knows object keys (`layout`), how to reach a store
//! (`store`), what `repo.json` says (`info`), the key (`keyring`), how objects are encoded
//! (`objects`, the only caller of `pipeline`), and how a create-if-absent write is made safe on
//! stores that do not enforce it. Commands talk to `Repo` in typed objects and keys, never to
//! object_store or the pipeline directly. The `raw_*` methods move stored bytes as they are:
//! for the repository's own modules and for tests that damage objects on purpose.

pub mod create;
pub mod hold;
pub mod ids;
pub mod info;
pub mod keyring;
pub mod layout;
pub mod lease;
pub mod objects;
mod retry;
mod staging;
pub mod store;
pub mod verified;

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::config::RepositoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::{CipherKeys, Compression, HEADER_LEN};

pub use crate::pipeline::checksum::Hasher;
pub use crate::pipeline::{Cipher, DecodeError, Decoded, Digest, ObjectHeader};
pub use ids::{BackupId, BackupKind, DrillRun, JobName};
pub use info::{CreateMode, RepoInfo};
pub use layout::{Layout, RepoKey};
pub use objects::{
    BackupPartKey, ByteKey, Compressing, Fetched, PgManifestKey, Prepared, RepoObject, Sealed,
    WalKey,
};

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub name: String,
    pub size: u64,
    pub stored_at: chrono::DateTime<chrono::Utc>,
}

/// What a create-if-absent write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// We wrote the object.
    New,
    /// An object was already there; nothing was written.
    Existed,
}

/// An opened repository: store, key layout and the identity it serves.
#[derive(Debug, Clone)]
pub struct Repo {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    location: String,
    info: RepoInfo,
    /// The directory of a local store: what a killed writer leaves there (object_store's
    /// in-progress `name#N` files, empty folders) is invisible to listings and is removed
    /// through the file system.
    local_root: Option<std::path::PathBuf>,
    /// The data key of an encrypted repository.
    cipher: Option<Arc<CipherKeys>>,
    /// The key slot the passphrase opened.
    key_slot: Option<String>,
    /// How WAL and backup files are compressed.
    compression: Compression,
    compress_threads: u32,
}

impl Repo {
    /// Opens an initialised repository: reads `repo.json` (or its copy).
    /// Opens an initialised repository: reads `repo.json` (or its copy) and, when it is
    /// encrypted, unwraps its data key with the configured passphrase.
    pub async fn open(cfg: &RepositoryConfig) -> Result<Repo> {
        let (store, location) = store::build(cfg, false)?;
        let layout = Layout::new(&cfg.store, &cfg.cluster);
        let info = retry::transient(|| info::read(store.as_ref(), &layout, &location)).await?;
        let unlocked = unlock(&info, cfg, &location).await?;
        let slot = unlocked.as_ref().map(|(_, s)| s.clone());
        let mut repo = Repo::from_parts(store, layout, location, info, cfg, unlocked.map(|u| u.0));
        repo.key_slot = slot;
        Ok(repo)
    }

    /// Assembles a repository from parts (used by `init`, which creates `repo.json`).
    pub fn from_parts(
        store: Arc<dyn ObjectStore>,
        layout: Layout,
        location: String,
        info: RepoInfo,
        cfg: &RepositoryConfig,
        keys: Option<CipherKeys>,
    ) -> Repo {
        Repo {
            store,
            layout,
            location,
            info,
            local_root: local_root(cfg),
            key_slot: keys.as_ref().map(|_| "k1".to_string()),
            cipher: keys.map(Arc::new),
            compression: cfg.compression,
            compress_threads: cfg.compress_threads,
        }
    }

    /// The data key of an encrypted repository (`pgkeep key add` wraps it again).
    pub fn data_key(&self) -> Option<&[u8; 32]> {
        self.cipher.as_deref().map(CipherKeys::data_key)
    }

    /// The id of the key slot the configured passphrase opened.
    pub fn key_slot(&self) -> Option<&str> {
        self.key_slot.as_deref()
    }

    /// Replaces `repo.json` and its copy after a change of key slots (`pgkeep key`). The
    /// main file first: a crash between the two leaves the copy with the old slots, which
    /// open the same data key.
    pub async fn rewrite_info(&mut self, info: RepoInfo) -> Result<()> {
        let body = Bytes::from(info.to_object()?);
        self.raw_put(&RepoKey::Info, body.clone()).await?;
        self.raw_put(&RepoKey::InfoCopy, body).await?;
        self.info = info;
        Ok(())
    }

    pub fn info(&self) -> &RepoInfo {
        &self.info
    }

    /// Where this repository is, for messages (`/var/lib/pgkeep/repo` or `s3://bucket/prefix`).
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, key: &RepoKey) -> Path {
        self.layout.path(key)
    }

    /// The whole object, or `None` when it does not exist.
    pub async fn raw_get(&self, key: &RepoKey) -> Result<Option<Bytes>> {
        retry::transient(|| self.get_once(key)).await
    }

    async fn get_once(&self, key: &RepoKey) -> Result<Option<Bytes>> {
        let path = self.path(key);
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| store::error("read", &path, e))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store::error("read", &path, e)),
        }
    }

    /// Only the object header (one small ranged read), or `None` when it does not exist.
    pub async fn raw_header(&self, key: &RepoKey) -> Result<Option<ObjectHeader>> {
        retry::transient(|| self.get_header_once(key)).await
    }

    async fn get_header_once(&self, key: &RepoKey) -> Result<Option<ObjectHeader>> {
        let path = self.path(key);
        match self.store.get_range(&path, 0..HEADER_LEN as u64).await {
            Ok(bytes) => ObjectHeader::from_bytes(&bytes).map(Some).map_err(|e| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("object {path} has a bad header: {e}"),
                )
                .hint("run pgkeep verify; the object may need to be removed by hand")
            }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store::error("read", &path, e)),
        }
    }

    /// Stores `bytes` under `key` unless an object is already there. On a store that enforces
    /// `If-None-Match` this is one atomic request. On one that does not (Garage 2.x), it is a
    /// read then a write: two writers racing for the same new key can both "win", the later
    /// overwriting the earlier. For WAL that race needs two clusters pushing the same name at
    /// the same moment, which the system-id check already refuses; see config/README.md.
    pub async fn raw_put_if_absent(&self, key: &RepoKey, bytes: Bytes) -> Result<Created> {
        // A create that landed but whose answer was lost is retried and meets "already
        // exists": the caller then settles by checksum, so a retry never loses or doubles.
        retry::transient(|| self.put_if_absent_once(key, bytes.clone())).await
    }

    async fn put_if_absent_once(&self, key: &RepoKey, bytes: Bytes) -> Result<Created> {
        let path = self.path(key);
        if self.info.create_mode == CreateMode::Emulated && self.exists(&path).await? {
            return Ok(Created::Existed);
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(Created::New),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Created::Existed),
            Err(e) => Err(store::error("write", &path, e)),
        }
    }

    /// Stores `bytes` under `key`, replacing what is there (for keys unique to one run, such as
    /// a new backup's files).
    pub async fn raw_put(&self, key: &RepoKey, bytes: Bytes) -> Result<()> {
        retry::transient(|| self.put_once(key, bytes.clone())).await
    }

    async fn put_once(&self, key: &RepoKey, bytes: Bytes) -> Result<()> {
        let path = self.path(key);
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| store::error("write", &path, e))
    }

    pub async fn contains(&self, key: &RepoKey) -> Result<bool> {
        let path = self.path(key);
        retry::transient(|| self.exists(&path)).await
    }

    /// The ids of the backup folders present (committed or not: check the manifest). A
    /// folder whose name is not a backup id is no backup of pgkeep's and is left out.
    pub async fn backup_folders(&self) -> Result<Vec<BackupId>> {
        retry::transient(|| self.backup_folders_once()).await
    }

    async fn backup_folders_once(&self) -> Result<Vec<BackupId>> {
        let dir = self.layout.backups_dir();
        let listed = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| store::error("list", &dir, e))?;
        let mut ids: Vec<BackupId> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|f| f.parse().ok()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Deletes an object; one that is already gone is fine.
    pub async fn delete(&self, key: &RepoKey) -> Result<()> {
        self.delete_path(&self.path(key)).await
    }

    async fn delete_path(&self, path: &Path) -> Result<()> {
        retry::transient(|| async {
            match self.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(store::error("delete", path, e)),
            }
        })
        .await
    }

    /// Every object path below `dir` (transient errors retried).
    pub(crate) async fn list_paths(&self, dir: &Path) -> Result<Vec<Path>> {
        use futures::TryStreamExt;
        retry::transient(|| async {
            self.store
                .list(Some(dir))
                .map_ok(|m| m.location)
                .try_collect()
                .await
                .map_err(|e| store::error("list", dir, e))
        })
        .await
    }

    /// Deletes every object of the backup folder `id` unless the backup was committed (then
    /// `None`): without a manifest nothing can reference its objects. Returns how many.
    pub async fn delete_uncommitted_backup(&self, id: &str) -> Result<Option<usize>> {
        if self.contains(&RepoKey::Manifest(id.to_string())).await? {
            return Ok(None);
        }
        let dir = self.layout.backup_dir(id);
        let paths = self.list_paths(&dir).await?;
        for p in &paths {
            self.delete_path(p).await?;
        }
        if let Some(root) = &self.local_root {
            // Listings skip in-progress uploads: remove the folder itself, with whatever a
            // writer killed mid-upload left in it.
            let folder = root.join(dir.as_ref());
            match std::fs::remove_dir_all(&folder) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &folder, e)),
            }
        }
        Ok(Some(paths.len()))
    }

    /// Removes what writers killed mid-upload left in a local store (object_store's
    /// `name#N` staging files, invisible to listings) once older than `age`, so that an upload
    /// still in flight is never touched. Returns how many went; S3 stores abort their own.
    pub fn sweep_staging(&self, age: std::time::Duration) -> Result<usize> {
        match &self.local_root {
            Some(root) => staging::sweep(&root.join(self.layout.cluster_dir().as_ref()), age),
            None => Ok(0),
        }
    }

    /// Every WAL object with its size and when it was stored, for ages and totals.
    pub async fn wal_objects(&self) -> Result<Vec<StoredObject>> {
        use futures::TryStreamExt;
        let dir = self.layout.wal_root();
        retry::transient(|| async {
            self.store
                .list(Some(&dir))
                .map_ok(|m| StoredObject {
                    name: m.location.filename().unwrap_or_default().to_string(),
                    size: m.size,
                    stored_at: m.last_modified,
                })
                .try_collect::<Vec<StoredObject>>()
                .await
                .map_err(|e| store::error("list", &dir, e))
        })
        .await
    }

    /// The ids of the pinned backups.
    pub async fn pinned(&self) -> Result<Vec<BackupId>> {
        let names = self.json_names(self.layout.pins_dir()).await?;
        Ok(names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    /// The run ids of the stored restore drill reports, oldest first.
    pub async fn restore_test_runs(&self) -> Result<Vec<DrillRun>> {
        let names = self.json_names(self.layout.restore_tests_dir()).await?;
        Ok(names.into_iter().map(DrillRun).collect())
    }

    /// The names (without `.json`) of the JSON objects in `dir`, sorted.
    async fn json_names(&self, dir: Path) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let mut ids: Vec<String> = retry::transient(|| async {
            self.store
                .list(Some(&dir))
                .map_ok(|m| m.location.filename().unwrap_or_default().to_string())
                .try_collect::<Vec<String>>()
                .await
                .map_err(|e| store::error("list", &dir, e))
        })
        .await?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
        ids.sort();
        Ok(ids)
    }

    /// The file names of every WAL object (segments, partials, history and backup files).
    pub async fn wal_file_names(&self) -> Result<Vec<String>> {
        retry::transient(|| self.wal_file_names_once()).await
    }

    async fn wal_file_names_once(&self) -> Result<Vec<String>> {
        use futures::TryStreamExt;
        let dir = self.layout.wal_root();
        let mut names: Vec<String> = self
            .store
            .list(Some(&dir))
            .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await
            .map_err(|e| store::error("list", &dir, e))?;
        names.sort();
        Ok(names)
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store::error("read", path, e)),
        }
    }
}

/// The data key of an encrypted repository (none for a clear one): the configuration's cipher
/// must be the repository's, and the passphrase must open one of its key slots. Argon2id is
/// CPU work: it runs on a blocking thread.
async fn unlock(
    info: &RepoInfo,
    cfg: &RepositoryConfig,
    location: &str,
) -> Result<Option<(CipherKeys, String)>> {
    keyring::check_cipher(info.cipher, &cfg.cipher, location)?;
    if info.cipher == crate::config::CipherChoice::None {
        return Ok(None);
    }
    let pass = cfg.cipher.credential()?;
    let (slots, check, location) = (
        info.keys.clone(),
        info.key_check.clone().unwrap_or_default(),
        location.to_string(),
    );
    let opened =
        tokio::task::spawn_blocking(move || keyring::open_slots(&slots, &check, &pass, &location))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Internal, format!("key unwrapping stopped: {e}"))
            })??;
    Ok(Some(opened))
}

fn local_root(cfg: &RepositoryConfig) -> Option<std::path::PathBuf> {
    match &cfg.store {
        crate::config::StoreConfig::Local { path } => Some(path.clone()),
        crate::config::StoreConfig::S3 { .. } => None,
    }
}
