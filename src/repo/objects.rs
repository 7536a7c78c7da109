//! Typed repository objects: the only way commands read and write what the repository holds.
//! JSON objects implement `RepoObject` (their kind and id type) and go through `save`/`load`;
//! byte objects (WAL, backup parts) are named by typed keys (`WalKey`, `BackupPartKey`) and go
//! through `seal`/`store`/`fetch`. Compression, checksums and the cipher happen here, beneath
//! those calls, with the repository's key: a command never sees an object's stored bytes.
//!
//! `repo.json` is the one object that is never encrypted (it says which cipher and holds the
//! wrapped keys) and so is not a `RepoObject`; see `info`.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ids::BackupId;
use super::layout::{Layout, RepoKey};
use super::{Created, Repo};
use crate::config::RepositoryConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::{WalFileName, WalSegSize};
use crate::pipeline::{
    self, CipherKeys, Compressed, Compression, DecodeError, Decoded, Digest, EncodeOptions,
    ObjectHeader, Seal,
};

/// A JSON object of the repository: its kind (for messages) and the id that names it.
pub trait RepoObject: Serialize + DeserializeOwned {
    type Id;
    const KIND: &'static str;
    fn key(id: &Self::Id) -> RepoKey;
}

/// The typed name of a byte object.
pub trait ByteKey: Clone + Send + Sync + 'static {
    fn repo_key(&self, seg: WalSegSize) -> RepoKey;
}

/// A WAL file of the archive, by its PostgreSQL file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalKey(pub WalFileName);

impl ByteKey for WalKey {
    fn repo_key(&self, seg: WalSegSize) -> RepoKey {
        RepoKey::wal(&self.0, seg)
    }
}

/// One part of one data-directory file of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPartKey {
    pub backup: BackupId,
    pub path: String,
    pub part: u32,
}

impl ByteKey for BackupPartKey {
    fn repo_key(&self, _: WalSegSize) -> RepoKey {
        RepoKey::BackupFile {
            backup: self.backup.to_string(),
            path: self.path.clone(),
            part: self.part,
        }
    }
}

/// PostgreSQL's own `backup_manifest` of a backup: what an incremental on it uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgManifestKey(pub BackupId);

impl ByteKey for PgManifestKey {
    fn repo_key(&self, _: WalSegSize) -> RepoKey {
        RepoKey::PgManifest(self.0.to_string())
    }
}

/// A body compressed and hashed before the repository (and its key) is known: archive-push
/// reads its file while `repo.json` is being fetched.
#[derive(Debug)]
pub struct Prepared(Compressed);

/// How a WAL file is compressed: the repository's choice, known from the configuration
/// before the repository is open.
#[derive(Debug, Clone, Copy)]
pub struct Compressing(EncodeOptions);

impl Compressing {
    pub fn of(cfg: &RepositoryConfig) -> Compressing {
        Compressing(EncodeOptions {
            compression: cfg.compression,
            threads: cfg.compress_threads,
        })
    }
}

impl Prepared {
    /// Reads `input` to the end, compressed as `how` says.
    pub fn read(input: impl Read, how: Compressing, size_hint: usize) -> std::io::Result<Prepared> {
        pipeline::compress(input, how.0, size_hint).map(Prepared)
    }

    pub fn plain_size(&self) -> u64 {
        self.0.plain_size
    }

    pub fn sha256(&self) -> Digest {
        self.0.sha256
    }
}

/// A byte object ready to store under its key.
#[derive(Debug)]
pub struct Sealed<K> {
    key: K,
    bytes: Bytes,
    header: ObjectHeader,
    sha256: Digest,
}

impl<K> Sealed<K> {
    pub fn key(&self) -> &K {
        &self.key
    }

    /// What the header records (a keyed tag of the content in an encrypted repository).
    pub fn header(&self) -> &ObjectHeader {
        &self.header
    }

    /// The plaintext's sha256.
    pub fn sha256(&self) -> Digest {
        self.sha256
    }

    pub fn stored_size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A byte object as read from the store, decoded on demand (on a blocking thread: it is CPU
/// work).
#[derive(Debug, Clone)]
pub struct Fetched<K> {
    key: K,
    name: String,
    bytes: Bytes,
    cipher: Option<Arc<CipherKeys>>,
}

impl<K> Fetched<K> {
    pub fn key(&self) -> &K {
        &self.key
    }

    pub fn stored_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn header(&self) -> std::result::Result<ObjectHeader, DecodeError> {
        ObjectHeader::from_bytes(&self.bytes).map_err(DecodeError::Header)
    }

    /// Decrypts, decompresses and checks the object into `out`; on error `out` may hold
    /// unverified bytes (write to a temporary file, publish on success).
    pub fn decode(&self, out: impl Write) -> std::result::Result<Decoded, DecodeError> {
        pipeline::decode(&self.bytes, out, seal(self.cipher.as_deref(), &self.name))
    }
}

fn seal<'a>(cipher: Option<&'a CipherKeys>, name: &'a str) -> Seal<'a> {
    match cipher {
        Some(keys) => Seal::Encrypt {
            keys,
            name: name.as_bytes(),
        },
        None => Seal::Clear,
    }
}

/// Small JSON objects: compressed well, and fast either way.
const JSON: EncodeOptions = EncodeOptions {
    compression: Compression::Zstd(3),
    threads: 0,
};

impl Repo {
    /// How this repository compresses a WAL file.
    pub fn compressing(&self) -> Compressing {
        Compressing(EncodeOptions {
            compression: self.compression,
            threads: self.compress_threads,
        })
    }

    fn name_of(&self, key: &RepoKey) -> String {
        Layout::relative(key)
    }

    fn sealing(&self, key: &RepoKey, c: Compressed) -> Result<(Bytes, ObjectHeader, Digest)> {
        let name = self.name_of(key);
        let e = pipeline::seal(c, seal(self.cipher.as_deref(), &name))
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot seal {name}: {e}")))?;
        Ok((e.bytes.into(), e.header, e.sha256))
    }

    /// Seals a prepared body for `key`.
    pub fn seal<K: ByteKey>(&self, key: K, prepared: Prepared) -> Result<Sealed<K>> {
        let rk = key.repo_key(self.info.seg_size);
        let (bytes, header, sha256) = self.sealing(&rk, prepared.0)?;
        Ok(Sealed {
            key,
            bytes,
            header,
            sha256,
        })
    }

    /// Compresses and seals bytes in memory (a backup part: parallelism comes from sealing
    /// several parts at once, so zstd runs on this thread alone).
    pub fn seal_bytes<K: ByteKey>(&self, key: K, plain: Bytes) -> Result<Sealed<K>> {
        let opts = EncodeOptions {
            compression: self.compression,
            threads: 0,
        };
        let c = pipeline::compress_bytes(plain, opts)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot compress: {e}")))?;
        self.seal(key, Prepared(c))
    }

    /// What the header of an object with this plaintext sha256 records: push compares it
    /// with a stored header to tell an identical re-push from a conflicting one.
    pub fn content_tag(&self, sha256: &Digest) -> Digest {
        match &self.cipher {
            Some(k) => k.tag(sha256),
            None => *sha256,
        }
    }

    /// Stores a sealed object, replacing what is there (keys unique to one run).
    pub async fn store<K: ByteKey>(&self, sealed: &Sealed<K>) -> Result<()> {
        let rk = sealed.key.repo_key(self.info.seg_size);
        self.raw_put(&rk, sealed.bytes.clone()).await
    }

    /// Stores a sealed object unless one is already there.
    pub async fn store_new<K: ByteKey>(&self, sealed: &Sealed<K>) -> Result<Created> {
        let rk = sealed.key.repo_key(self.info.seg_size);
        self.raw_put_if_absent(&rk, sealed.bytes.clone()).await
    }

    /// The stored object, or `None` when there is none.
    pub async fn fetch<K: ByteKey>(&self, key: &K) -> Result<Option<Fetched<K>>> {
        let rk = key.repo_key(self.info.seg_size);
        Ok(self.raw_get(&rk).await?.map(|bytes| Fetched {
            key: key.clone(),
            name: self.name_of(&rk),
            bytes,
            cipher: self.cipher.clone(),
        }))
    }

    /// Only the header of a stored object (one small ranged read).
    pub async fn header_of<K: ByteKey>(&self, key: &K) -> Result<Option<ObjectHeader>> {
        self.raw_header(&key.repo_key(self.info.seg_size)).await
    }

    pub async fn holds<K: ByteKey>(&self, key: &K) -> Result<bool> {
        self.contains(&key.repo_key(self.info.seg_size)).await
    }

    pub async fn remove<K: ByteKey>(&self, key: &K) -> Result<()> {
        self.delete(&key.repo_key(self.info.seg_size)).await
    }

    fn encode_json<T: RepoObject>(&self, id: &T::Id, obj: &T) -> Result<Bytes> {
        let json = serde_json::to_vec(obj).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot encode a {}: {e}", T::KIND),
            )
        })?;
        let c = pipeline::compress(&json[..], JSON, json.len())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot compress: {e}")))?;
        Ok(self.sealing(&T::key(id), c)?.0)
    }

    /// Stores `obj` under `id`, replacing what is there.
    pub async fn save<T: RepoObject>(&self, id: &T::Id, obj: &T) -> Result<()> {
        let bytes = self.encode_json(id, obj)?;
        self.raw_put(&T::key(id), bytes).await
    }

    /// Stores `obj` under `id` unless an object is already there.
    pub async fn save_new<T: RepoObject>(&self, id: &T::Id, obj: &T) -> Result<Created> {
        let bytes = self.encode_json(id, obj)?;
        self.raw_put_if_absent(&T::key(id), bytes).await
    }

    /// The object stored under `id`, or `None`. One that cannot be decoded is `Corrupt`,
    /// naming it.
    pub async fn load<T: RepoObject>(&self, id: &T::Id) -> Result<Option<T>> {
        let key = T::key(id);
        let Some(stored) = self.raw_get(&key).await? else {
            return Ok(None);
        };
        let name = self.name_of(&key);
        let corrupt = |why: String| {
            Error::new(
                ErrorKind::Corrupt,
                format!("{} {} in {}: {why}", T::KIND, name, self.location()),
            )
            .hint("run pgkeep verify; an object that was altered must be restored from a copy or removed")
        };
        let json = if stored.starts_with(pipeline::header::MAGIC) {
            let mut json = Vec::new();
            pipeline::decode(&stored, &mut json, seal(self.cipher.as_deref(), &name))
                .map_err(|e| corrupt(e.to_string()))?;
            json
        } else if self.cipher.is_none() {
            // Pins, leases, holds, job records and drill reports were plain JSON before
            // format 2; a repository that is not encrypted may still hold them.
            stored.to_vec()
        } else {
            return Err(corrupt(
                "not a pgkeep object of this encrypted repository".into(),
            ));
        };
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    pub async fn has<T: RepoObject>(&self, id: &T::Id) -> Result<bool> {
        self.contains(&T::key(id)).await
    }

    /// Deletes the object under `id`; one already gone is fine.
    pub async fn discard<T: RepoObject>(&self, id: &T::Id) -> Result<()> {
        self.delete(&T::key(id)).await
    }
}
