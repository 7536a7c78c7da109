//! The key of an encrypted repository: one random data key, generated at `init`, recorded in
//! `repo.json` only wrapped — once per passphrase (a key slot: Argon2id parameters and salt,
//! AES-256-GCM nonce and wrapped key) — beside a key check. `pgkeep key add/remove` edit the
//! slots, so a passphrase changes without re-encrypting a single object.

use serde::{Deserialize, Serialize};

pub use crate::config::cipher::Credential;
use crate::config::{CipherChoice, CipherConfig, Secret};
use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::{CipherKeys, Digest, WrappedKey};
pub use crate::pipeline::{Kdf, KdfParams};

/// One passphrase's wrapping of the data key, as `repo.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySlot {
    pub id: String,
    pub created_at: String,
    /// `argon2id` (a passphrase) or `key-file` (HKDF-SHA256 of a random key file).
    pub kdf: String,
    #[serde(default)]
    pub memory_kib: u32,
    #[serde(default)]
    pub iterations: u32,
    #[serde(default)]
    pub parallelism: u32,
    pub salt: String,
    pub nonce: String,
    pub wrapped: String,
}

impl KeySlot {
    pub fn new(data_key: &[u8; 32], pass: &Secret, id: &str, kdf: Kdf) -> Result<KeySlot> {
        let w = WrappedKey::wrap(data_key, pass.expose(), id, kdf).map_err(|e| {
            Error::new(ErrorKind::Key, format!("cannot wrap the key: {e}"))
                .hint("a key file holds at least 32 random bytes, e.g. 'openssl rand -base64 48'")
        })?;
        let (name, p) = match kdf {
            Kdf::Argon2id(p) => ("argon2id", p),
            Kdf::KeyFile => (
                "key-file",
                KdfParams {
                    memory_kib: 0,
                    iterations: 0,
                    parallelism: 0,
                },
            ),
        };
        Ok(KeySlot {
            id: id.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            kdf: name.into(),
            memory_kib: p.memory_kib,
            iterations: p.iterations,
            parallelism: p.parallelism,
            salt: hex::encode(w.salt),
            nonce: hex::encode(w.nonce),
            wrapped: hex::encode(&w.wrapped),
        })
    }

    /// Whether `credential` is the kind this slot was made for.
    pub fn opens_with(&self, credential: &Credential) -> bool {
        matches!(
            (self.kdf.as_str(), credential),
            ("argon2id", Credential::Passphrase(_)) | ("key-file", Credential::KeyFile(_))
        )
    }

    fn wrapped(&self) -> std::result::Result<WrappedKey, String> {
        let kdf = match self.kdf.as_str() {
            "argon2id" => Kdf::Argon2id(KdfParams {
                memory_kib: self.memory_kib,
                iterations: self.iterations,
                parallelism: self.parallelism,
            }),
            "key-file" => Kdf::KeyFile,
            other => return Err(format!("key {} uses unknown kdf '{other}'", self.id)),
        };
        let bad = |what| format!("key {} has a malformed {what}", self.id);
        let mut salt = [0u8; 16];
        hex::decode_to_slice(&self.salt, &mut salt).map_err(|_| bad("salt"))?;
        let mut nonce = [0u8; 12];
        hex::decode_to_slice(&self.nonce, &mut nonce).map_err(|_| bad("nonce"))?;
        Ok(WrappedKey {
            kdf,
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

/// The data key and the id of the slot `credential` opened (only slots of its kind are tried:
/// a passphrase costs one Argon2id run per slot, a key file one HKDF).
pub fn open_slots(
    slots: &[KeySlot],
    check: &str,
    credential: &Credential,
    location: &str,
) -> Result<(CipherKeys, String)> {
    for slot in slots.iter().filter(|s| s.opens_with(credential)) {
        let w = slot.wrapped().map_err(|e| corrupt(location, e))?;
        let opened = w
            .unwrap_with(credential.secret().expose(), &slot.id)
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
            "wrong {}: it opens none of the {} key(s) of repository {location}",
            credential.what(),
            slots.len()
        ),
    )
    .hint("check repository.cipher_pass_file, cipher_key_file or PGKEEP_REPOSITORY_CIPHER_PASS; 'pgkeep key list' shows the keys"))
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

    fn cheap() -> Kdf {
        Kdf::Argon2id(KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
    }

    #[test]
    fn slots_open_with_their_passphrase_and_the_check_catches_a_foreign_key() {
        let data = [1u8; 32];
        let keys = CipherKeys::new(data);
        let check = key_check(&keys);
        let pass = |p: &str| Credential::Passphrase(Secret::new(p.as_bytes().to_vec()));
        let a = KeySlot::new(&data, &Secret::new(b"first".to_vec()), "k1", cheap()).unwrap();
        let b = KeySlot::new(&data, &Secret::new(b"second".to_vec()), "k2", cheap()).unwrap();
        let file = Secret::new(vec![4u8; 48]);
        let c = KeySlot::new(&data, &file, "k3", Kdf::KeyFile).unwrap();
        let slots = [a, b, c];
        let (_, id) = open_slots(&slots, &check, &pass("second"), "r").unwrap();
        assert_eq!(id, "k2");
        let (_, id) = open_slots(&slots, &check, &Credential::KeyFile(file), "r").unwrap();
        assert_eq!(id, "k3");
        let wrong = open_slots(&slots, &check, &pass("third"), "r").unwrap_err();
        assert_eq!(wrong.kind(), ErrorKind::Key);
        assert!(!wrong.to_string().contains("third"));
        let foreign = KeySlot::new(&[2u8; 32], &Secret::new(b"x".to_vec()), "k4", cheap()).unwrap();
        let err = open_slots(&[foreign], &check, &pass("x"), "r").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }
}
