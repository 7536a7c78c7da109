//! The key of an encrypted repository: one random data key, generated at `init`, recorded in
//! `repo.json` only wrapped — once per passphrase (a key slot: Argon2id parameters and salt,
//! AES-256-GCM nonce and wrapped key) — beside a key check. `pgkeep key add/remove` edit the
//! slots, so a passphrase changes without re-encrypting a single object.

use serde::{Deserialize, Serialize};

use crate::config::{CipherChoice, CipherConfig, Secret};
use crate::error::{Error, ErrorKind, Result};
pub use crate::pipeline::KdfParams;
use crate::pipeline::{CipherKeys, Digest, WrappedKey};

/// One passphrase's wrapping of the data key, as `repo.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySlot {
    pub id: String,
    pub created_at: String,
    /// Always `argon2id`.
    pub kdf: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
    pub nonce: String,
    pub wrapped: String,
}

impl KeySlot {
    pub fn new(data_key: &[u8; 32], pass: &Secret, id: &str, kdf: KdfParams) -> Result<KeySlot> {
        let w = WrappedKey::wrap(data_key, pass.expose(), id, kdf)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot wrap the key: {e}")))?;
        Ok(KeySlot {
            id: id.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            kdf: "argon2id".into(),
            memory_kib: w.kdf.memory_kib,
            iterations: w.kdf.iterations,
            parallelism: w.kdf.parallelism,
            salt: hex::encode(w.salt),
            nonce: hex::encode(w.nonce),
            wrapped: hex::encode(&w.wrapped),
        })
    }

    fn wrapped(&self) -> std::result::Result<WrappedKey, String> {
        if self.kdf != "argon2id" {
            return Err(format!("key {} uses unknown kdf '{}'", self.id, self.kdf));
        }
        let bad = |what| format!("key {} has a malformed {what}", self.id);
        let mut salt = [0u8; 16];
        hex::decode_to_slice(&self.salt, &mut salt).map_err(|_| bad("salt"))?;
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&self.nonce, &mut nonce).map_err(|_| bad("nonce"))?;
        Ok(WrappedKey {
            kdf: KdfParams {
                memory_kib: self.memory_kib,
                iterations: self.iterations,
                parallelism: self.parallelism,
            },
            salt,
            nonce,
            wrapped: hex::decode(&self.wrapped).map_err(|_| bad("wrapped key"))?,
        })
    }
}

/// What `repo.json` records to tell the right data key from a wrong one.
pub fn key_check(keys: &CipherKeys) -> String {
    keys.tag(&Digest::of(b"pgkeep key check v2")).to_string()
}

/// The data key and the id of the slot `pass` opened.
pub fn open_slots(
    slots: &[KeySlot],
    check: &str,
    pass: &Secret,
    location: &str,
) -> Result<(CipherKeys, String)> {
    for slot in slots {
        let w = slot.wrapped().map_err(|e| corrupt(location, e))?;
        let opened = w
            .unwrap_with(pass.expose(), &slot.id)
            .map_err(|e| corrupt(location, e))?;
        if let Some(data) = opened {
            let keys = CipherKeys::new(data);
            if key_check(&keys) != check {
                return Err(corrupt(
                    location,
                    format!("key {} opens, but not to this repository's key", slot.id),
                ));
            }
            return Ok((keys, slot.id.clone()));
        }
    }
    Err(Error::new(
        ErrorKind::Key,
        format!(
            "wrong passphrase: it opens none of the {} key(s) of repository {location}",
            slots.len()
        ),
    )
    .hint("check repository.cipher_pass_file or PGKEEP_REPOSITORY_CIPHER_PASS; 'pgkeep key list' shows the keys"))
}

/// Refuses a configuration whose cipher differs from the repository's: both directions, so
/// a `repo.json` edited to say "none" cannot make pgkeep read planted clear objects.
pub fn check_cipher(repo: CipherChoice, cfg: &CipherConfig, location: &str) -> Result<()> {
    if repo == cfg.cipher {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Key,
        format!(
            "repository {location} was initialised with cipher {}, but repository.cipher is {}",
            repo.name(),
            cfg.cipher.name()
        ),
    )
    .hint("a repository's cipher is fixed at init: set repository.cipher to match, or initialise a new repository"))
}

fn corrupt(location: &str, why: String) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("repo.json of {location}: {why}"),
    )
    .hint("repo.json was altered; restore it from repo.json.copy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn slots_open_with_their_passphrase_and_the_check_catches_a_foreign_key() {
        let data = [1u8; 32];
        let keys = CipherKeys::new(data);
        let check = key_check(&keys);
        let a = KeySlot::new(&data, &Secret::new(b"first".to_vec()), "k1", cheap()).unwrap();
        let b = KeySlot::new(&data, &Secret::new(b"second".to_vec()), "k2", cheap()).unwrap();
        let slots = [a, b];
        let (_, id) = open_slots(&slots, &check, &Secret::new(b"second".to_vec()), "r").unwrap();
        assert_eq!(id, "k2");
        let wrong = open_slots(&slots, &check, &Secret::new(b"third".to_vec()), "r").unwrap_err();
        assert_eq!(wrong.kind(), ErrorKind::Key);
        assert!(!wrong.to_string().contains("third"));
        let foreign = KeySlot::new(&[2u8; 32], &Secret::new(b"x".to_vec()), "k3", cheap()).unwrap();
        let err = open_slots(&[foreign], &check, &Secret::new(b"x".to_vec()), "r").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }
}
