//! `repo.json`: the identity a repository serves (system id, PostgreSQL major, WAL segment
//! size), its format version, whether its store enforces create-if-absent, and its cipher with
//! the wrapped data key. Written by `init` (plus `repo.json.copy`, so one damaged object does
//! not orphan the repository) and by `pgkeep key add/remove`. Never encrypted: it is what
//! says how to decrypt the rest.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::keyring::KeySlot;
use super::layout::{Layout, RepoKey};
use super::store;
use crate::config::CipherChoice;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{PgVersion, SystemId, WalSegSize};
use crate::pipeline::{self, Compression, EncodeOptions, Seal};

/// Format 2: objects carry a format-2 header (a keyed tag when encrypted), and pins, leases,
/// holds, job records and drill reports have headers too. Format 1 repositories are read
/// (their objects as they are) and written in format 2 from then on.
pub const FORMAT_VERSION: u32 = 2;
const OLDEST_READ: u32 = 1;

/// How create-if-absent writes are made on this store (decided by a probe at `init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreateMode {
    /// The store refuses a second create (`If-None-Match: *` → 412, or a no-clobber link).
    Enforced,
    /// The store silently overwrites: pgkeep reads before it writes (see `Repo::put_if_absent`).
    Emulated,
}

/// The JSON form of `repo.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RepoInfoJson {
    format: u32,
    /// A string: JSON numbers lose precision past 2^53 in many readers.
    system_id: String,
    pg_version: u32,
    wal_seg_size: u32,
    cipher: String,
    create_mode: CreateMode,
    created_at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    keys: Vec<KeySlot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_check: Option<String>,
}

/// What `repo.json` says, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    pub system_id: SystemId,
    pub version: PgVersion,
    pub seg_size: WalSegSize,
    pub create_mode: CreateMode,
    pub created_at: String,
    /// The format `repo.json` was written in (1 or 2).
    pub format: u32,
    pub cipher: CipherChoice,
    /// The data key, wrapped once per passphrase (encrypted repositories only).
    pub keys: Vec<KeySlot>,
    /// Tells the repository's data key from another (see `keyring::key_check`).
    pub key_check: Option<String>,
}

impl RepoInfo {
    /// What every WAL file of this repository must match: its cluster's identity.
    pub fn wal_expect(&self) -> crate::pg::wal_header::WalExpect {
        crate::pg::wal_header::WalExpect {
            system_id: self.system_id,
            version: self.version,
            seg_size: self.seg_size,
        }
    }

    pub fn new(
        system_id: SystemId,
        version: PgVersion,
        seg_size: WalSegSize,
        mode: CreateMode,
    ) -> Self {
        RepoInfo {
            system_id,
            version,
            seg_size,
            create_mode: mode,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            format: FORMAT_VERSION,
            cipher: CipherChoice::None,
            keys: Vec::new(),
            key_check: None,
        }
    }

    /// Serialised with the standard object header (uncompressed, checksummed).
    pub fn to_object(&self) -> Result<Vec<u8>> {
        let raw = RepoInfoJson {
            format: FORMAT_VERSION,
            system_id: self.system_id.to_string(),
            pg_version: self.version.major(),
            wal_seg_size: self.seg_size.bytes(),
            cipher: self.cipher.name().into(),
            create_mode: self.create_mode,
            created_at: self.created_at.clone(),
            keys: self.keys.clone(),
            key_check: self.key_check.clone(),
        };
        let json = serde_json::to_vec_pretty(&raw).map_err(|e| {
            Error::new(ErrorKind::Internal, format!("cannot encode repo.json: {e}"))
        })?;
        let opts = EncodeOptions {
            compression: Compression::None,
            threads: 0,
        };
        pipeline::encode(&json[..], opts, json.len(), Seal::Clear)
            .map(|e| e.bytes)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot encode repo.json: {e}")))
    }

    fn parse(bytes: &[u8], path: &Path) -> std::result::Result<Self, String> {
        let mut json = Vec::new();
        pipeline::decode(bytes, &mut json, Seal::Clear).map_err(|e| e.to_string())?;
        let raw: RepoInfoJson = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
        if !(OLDEST_READ..=FORMAT_VERSION).contains(&raw.format) {
            return Err(format!(
                "{path} has format {}, this pgkeep reads formats {OLDEST_READ} to {FORMAT_VERSION}",
                raw.format
            ));
        }
        let cipher = CipherChoice::parse(&raw.cipher).map_err(|_| {
            format!(
                "{path} names cipher '{}', which this pgkeep cannot read",
                raw.cipher
            )
        })?;
        if cipher != CipherChoice::None && (raw.keys.is_empty() || raw.key_check.is_none()) {
            return Err(format!("{path} is encrypted but records no key"));
        }
        Ok(RepoInfo {
            system_id: raw.system_id.parse()?,
            version: PgVersion::new(raw.pg_version)?,
            seg_size: WalSegSize::new(raw.wal_seg_size)?,
            create_mode: raw.create_mode,
            created_at: raw.created_at,
            format: raw.format,
            cipher,
            keys: raw.keys,
            key_check: raw.key_check,
        })
    }

    /// Refuses a cluster whose identity differs from the repository's.
    pub fn check_serves(
        &self,
        system_id: SystemId,
        version: PgVersion,
        location: &str,
    ) -> Result<()> {
        if system_id != self.system_id || version != self.version {
            return Err(Error::new(
                ErrorKind::RepoMismatch,
                format!(
                    "repository {location} serves system id {} (postgresql {}), not {system_id} (postgresql {version})",
                    self.system_id, self.version
                ),
            )
            .hint("point this cluster at its own repository or repository.cluster name; after pg_upgrade, initialise a new one"));
        }
        Ok(())
    }
}

/// Reads `repo.json`, falling back to `repo.json.copy` when the first is missing or damaged.
pub async fn read(store: &dyn ObjectStore, layout: &Layout, location: &str) -> Result<RepoInfo> {
    let mut problems = Vec::new();
    for key in [RepoKey::Info, RepoKey::InfoCopy] {
        let path = layout.path(&key);
        match store.get(&path).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| store::error("read", &path, e))?;
                match RepoInfo::parse(&bytes, &path) {
                    Ok(info) => return Ok(info),
                    Err(e) => problems.push(format!("{path}: {e}")),
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store::error("read", &path, e)),
        }
    }
    if problems.is_empty() {
        Err(Error::new(
            ErrorKind::RepoMissing,
            format!("repository {location} is not initialised (no repo.json)"),
        )
        .hint("run 'pgkeep init' once, or check repository.path / bucket / prefix / cluster"))
    } else {
        Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "repository {location} has no readable repo.json: {}",
                problems.join("; ")
            ),
        )
        .hint("restore repo.json from repo.json.copy or a store backup"))
    }
}

/// Reads `repo.json` and `repo.json.copy` back (verify): one problem line for each that is
/// missing, damaged, or says other than the identity the repository was opened with.
pub async fn check_both(repo: &super::Repo) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for key in [RepoKey::Info, RepoKey::InfoCopy] {
        let path = repo.layout.path(&key);
        match repo.raw_get(&key).await? {
            None => problems.push(format!("{path}: missing")),
            Some(bytes) => match RepoInfo::parse(&bytes, &path) {
                Err(e) => problems.push(format!("{path}: damaged: {e}")),
                Ok(info) if info != *repo.info() => problems.push(format!(
                    "{path}: differs from the repository's identity (system id {}, postgresql {}, segment size {})",
                    info.system_id,
                    info.version,
                    info.seg_size.bytes()
                )),
                Ok(_) => {}
            },
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_object_form() {
        let info = RepoInfo::new(
            SystemId(7_400_000_000_000_000_123),
            PgVersion::new(15).unwrap(),
            WalSegSize::DEFAULT,
            CreateMode::Emulated,
        );
        let bytes = info.to_object().unwrap();
        let back = RepoInfo::parse(&bytes, &Path::from("repo.json")).unwrap();
        assert_eq!(back, info);
        let mut bad = bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 1;
        assert!(RepoInfo::parse(&bad, &Path::from("repo.json")).is_err());
    }

    #[test]
    fn refuses_another_cluster() {
        let info = RepoInfo::new(
            SystemId(1),
            PgVersion::new(15).unwrap(),
            WalSegSize::DEFAULT,
            CreateMode::Enforced,
        );
        assert!(
            info.check_serves(SystemId(1), PgVersion::new(15).unwrap(), "r")
                .is_ok()
        );
        let e = info
            .check_serves(SystemId(2), PgVersion::new(15).unwrap(), "r")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RepoMismatch);
        let e = info
            .check_serves(SystemId(1), PgVersion::new(16).unwrap(), "r")
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::RepoMismatch);
    }
}
