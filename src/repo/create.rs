//! Creating a repository (`pgkeep init`): probe whether the store really enforces
//! create-if-absent, then write `repo.json` and its copy. Re-running init on a repository of
//! the same cluster is a no-op; on one of another cluster it is refused.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::info::{self, CreateMode, RepoInfo};
use super::keyring::{self, KeySlot};
use super::layout::{Layout, RepoKey};
use super::{Repo, store};
use crate::config::{CipherChoice, RepositoryConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::{CipherKeys, Kdf, KdfParams};

/// The derivation a new key slot uses for this credential.
pub fn kdf_for(credential: &keyring::Credential) -> Kdf {
    match credential {
        keyring::Credential::Passphrase(_) => Kdf::Argon2id(KdfParams::default()),
        keyring::Credential::KeyFile(_) => Kdf::KeyFile,
    }
}

/// The outcome of `create`.
#[derive(Debug)]
pub struct CreatedRepo {
    pub repo: Repo,
    /// The repository already existed for this cluster; nothing was written.
    pub existed: bool,
}

pub async fn create(cfg: &RepositoryConfig, wanted: RepoInfo) -> Result<CreatedRepo> {
    let (store, location) = store::build(cfg, true)?;
    let layout = Layout::new(&cfg.store, &cfg.cluster);

    // An existing repository must serve this very cluster.
    match info::read(store.as_ref(), &layout, &location).await {
        Ok(existing) => {
            existing.check_serves(wanted.system_id, wanted.version, &location)?;
            drop(store);
            return Ok(CreatedRepo {
                repo: Repo::open(cfg).await?,
                existed: true,
            });
        }
        Err(e) if e.kind() == ErrorKind::RepoMissing => {}
        Err(e) => return Err(e),
    }

    let mode = probe_create_mode(&store, &layout).await?;
    if mode == CreateMode::Emulated {
        tracing::warn!(
            "{location} does not enforce create-if-absent (If-None-Match); pgkeep will read before every write"
        );
    }
    let (info, keys) = with_key(
        RepoInfo {
            create_mode: mode,
            cipher: cfg.cipher.cipher,
            ..wanted
        },
        cfg,
    )?;
    let body = info.to_object()?;
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    // The copy first: a crash between the two leaves a readable copy and no main file, and
    // `info::read` falls back to the copy.
    let copy = layout.path(&RepoKey::InfoCopy);
    store
        .put(&copy, PutPayload::from(body.clone()))
        .await
        .map_err(|e| store::error("write", &copy, e))?;
    let main = layout.path(&RepoKey::Info);
    match store.put_opts(&main, PutPayload::from(body), create).await {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{location} was initialised concurrently by another process"),
            )
            .hint("run 'pgkeep init' again to check that it serves this cluster"));
        }
        Err(e) => return Err(store::error("write", &main, e)),
    }
    let repo = Repo::from_parts(store, layout, location, info, cfg, keys);
    Ok(CreatedRepo {
        repo,
        existed: false,
    })
}

/// For an encrypted repository: a fresh data key, wrapped under the configured passphrase as
/// key `k1`, and its key check. The passphrase is read before anything is written, so a
/// missing one leaves the store untouched.
fn with_key(info: RepoInfo, cfg: &RepositoryConfig) -> Result<(RepoInfo, Option<CipherKeys>)> {
    if info.cipher == CipherChoice::None {
        return Ok((info, None));
    }
    let credential = cfg.cipher.credential()?;
    let data = CipherKeys::generate()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot make a key: {e}")))?;
    let slot = KeySlot::new(&data, credential.secret(), "k1", kdf_for(&credential))?;
    let keys = CipherKeys::new(data);
    let info = RepoInfo {
        keys: vec![slot],
        key_check: Some(keyring::key_check(&keys)),
        ..info
    };
    Ok((info, Some(keys)))
}

/// What a probe of an opened repository's store found (`pgkeep check`).
#[derive(Debug, Clone, Copy)]
pub struct StoreProbe {
    /// Whether the store enforced create-if-absent on the probe object.
    pub mode: CreateMode,
    /// The store's clock: the probe object's modification time as the store reports it.
    pub stored_at: chrono::DateTime<chrono::Utc>,
    /// This machine's clock halfway through the write.
    pub local_at: chrono::DateTime<chrono::Utc>,
}

impl Repo {
    /// Writes, reads back and deletes a probe object: the store is reachable and writable,
    /// whether it enforces create-if-absent now, and its clock.
    pub async fn probe_store(&self) -> Result<StoreProbe> {
        let before = chrono::Utc::now();
        let (mode, path) = probe_create_mode_keep(&self.store, &self.layout).await?;
        let after = chrono::Utc::now();
        let head = self.store.head(&path).await;
        let deleted = self.store.delete(&path).await;
        let meta = head.map_err(|e| store::error("read probe object", &path, e))?;
        deleted.map_err(|e| store::error("delete probe object", &path, e))?;
        Ok(StoreProbe {
            mode,
            stored_at: meta.last_modified,
            local_at: before + (after - before) / 2,
        })
    }
}

/// Writes a probe object twice with `PutMode::Create`: a store that accepts the second write
/// does not enforce create-if-absent (Garage 2.x ignores `If-None-Match: *`).
async fn probe_create_mode(store: &Arc<dyn ObjectStore>, layout: &Layout) -> Result<CreateMode> {
    let (mode, path) = probe_create_mode_keep(store, layout).await?;
    store
        .delete(&path)
        .await
        .map_err(|e| store::error("delete probe object", &path, e))?;
    Ok(mode)
}

/// The probe's two writes; the object is left for the caller to delete.
async fn probe_create_mode_keep(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
) -> Result<(CreateMode, object_store::path::Path)> {
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let path = layout.path(&RepoKey::Probe(nonce));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&path, PutPayload::from_static(b"first"), create())
        .await
        .map_err(|e| store::error("write probe object", &path, e))?;
    let second = store
        .put_opts(&path, PutPayload::from_static(b"second"), create())
        .await;
    let mode = match second {
        Ok(_) => CreateMode::Emulated,
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => CreateMode::Enforced,
        Err(e) => return Err(store::error("write probe object", &path, e)),
    };
    Ok((mode, path))
}
