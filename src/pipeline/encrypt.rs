//! Encryption at rest, bytes only: AES-256-GCM in the STREAM construction (Hoang, Reyhanitabar,
//! Rogaway, Vizár 2015, as in Tink's streaming AEAD) over the compressed body of one object,
//! and the wrapping of the repository's data key under a passphrase (Argon2id). Knows nothing
//! of where keys are recorded or what an object is called: the caller passes the name to bind.
//!
//! One object, sealed:
//! ```text
//! header (48 bytes, clear) | salt (32) | segment 0 | ... | segment n (last)
//! segment i = AES-256-GCM(object key, nonce = prefix(7) | i (u32 BE) | last flag, aad, ≤256 KiB)
//! object key, prefix = HKDF-SHA256(data key, salt, "pgkeep object aes-256-gcm v2")
//! aad = the header's 48 bytes | the object's name in the repository
//! ```
//! A fresh key per object makes nonce reuse impossible whatever the number of objects. The
//! counter refuses reordered or dropped segments, the last-segment flag refuses truncation at
//! a segment boundary, and the per-object key refuses a segment spliced from another object.
//! The name in the aad refuses a valid object of the same repository stored under another
//! name (yesterday's segment served as today's), and the header in the aad refuses an edited
//! size, codec or digest.

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::checksum::Digest;

/// Bytes of compressed body per segment.
pub const SEGMENT: usize = 256 << 10;
/// The AES-GCM tag after every segment.
pub const TAG_LEN: usize = 16;
/// The random salt in front of the segments, from which the object's key is derived.
pub const SALT_LEN: usize = 32;
const NONCE_PREFIX_LEN: usize = 7;
const OBJECT_INFO: &[u8] = b"pgkeep object aes-256-gcm v2";
const MAC_INFO: &[u8] = b"pgkeep digest hmac-sha256 v2";
const WRAP_AAD: &[u8] = b"pgkeep data key v2";
const KEY_FILE_INFO: &[u8] = b"pgkeep key file v2";

/// Why a sealed body could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("encrypted body too short ({0} bytes)")]
    Short(usize),
    #[error(
        "authentication failed in segment {0}: the object was altered, truncated, reordered, or belongs to another name or repository"
    )]
    Segment(u32),
}

/// The repository's data key and what is derived from it. Never printed.
pub struct CipherKeys {
    data: Zeroizing<[u8; 32]>,
    mac: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for CipherKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CipherKeys(..)")
    }
}

impl CipherKeys {
    pub fn new(data_key: [u8; 32]) -> CipherKeys {
        let data = Zeroizing::new(data_key);
        let mut mac = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, data.as_ref())
            .expand(MAC_INFO, mac.as_mut())
            .expect("32 bytes is a valid hkdf-sha256 output length");
        CipherKeys { data, mac }
    }

    /// A fresh random data key.
    pub fn generate() -> std::io::Result<[u8; 32]> {
        random()
    }

    pub fn data_key(&self) -> &[u8; 32] {
        &self.data
    }

    /// What the header records instead of the plaintext's sha256: HMAC-SHA256 of it under a
    /// key derived from the data key. Equal plaintexts still give equal tags (push dedup), but
    /// a reader without the key cannot test a guess of the content.
    pub fn tag(&self, plain: &Digest) -> Digest {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.mac.as_ref())
            .expect("hmac takes a key of any length");
        mac.update(&plain.0);
        Digest(mac.finalize().into_bytes().into())
    }

    fn object_cipher(&self, salt: &[u8]) -> (Aes256Gcm, [u8; NONCE_PREFIX_LEN]) {
        let mut okm = Zeroizing::new([0u8; 32 + NONCE_PREFIX_LEN]);
        hkdf::Hkdf::<Sha256>::new(Some(salt), self.data.as_ref())
            .expand(OBJECT_INFO, okm.as_mut())
            .expect("39 bytes is a valid hkdf-sha256 output length");
        let key = Key::<Aes256Gcm>::from_slice(&okm[..32]);
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(&okm[32..]);
        (Aes256Gcm::new(key), prefix)
    }

    /// Appends salt and segments for `body` to `out`, each segment authenticated with `aad`.
    pub fn seal(&self, body: &[u8], aad: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let salt: [u8; SALT_LEN] = random()?;
        let (cipher, prefix) = self.object_cipher(&salt);
        out.reserve(SALT_LEN + body.len() + (body.len() / SEGMENT + 1) * TAG_LEN);
        out.extend_from_slice(&salt);
        let mut enc = EncryptorBE32::from_aead(cipher, prefix.as_ref().into());
        let mut chunks = body.chunks(SEGMENT).peekable();
        let fail = |_| std::io::Error::other("aes-256-gcm encryption failed");
        loop {
            let msg = chunks.next().unwrap_or(&[]);
            let payload = Payload { msg, aad };
            if chunks.peek().is_none() {
                out.extend_from_slice(&enc.encrypt_last(payload).map_err(fail)?);
                return Ok(());
            }
            out.extend_from_slice(&enc.encrypt_next(payload).map_err(fail)?);
        }
    }

    /// The compressed body of a sealed object (what follows the header), checked segment by
    /// segment against `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SALT_LEN + TAG_LEN {
            return Err(OpenError::Short(sealed.len()));
        }
        let (salt, segments) = sealed.split_at(SALT_LEN);
        let (cipher, prefix) = self.object_cipher(salt);
        let mut dec = DecryptorBE32::from_aead(cipher, prefix.as_ref().into());
        let mut out = Vec::with_capacity(segments.len());
        let mut chunks = segments.chunks(SEGMENT + TAG_LEN).peekable();
        let mut n = 0u32;
        while let Some(msg) = chunks.next() {
            let payload = Payload { msg, aad };
            let plain = if chunks.peek().is_none() {
                // Consumes the decryptor: a last segment followed by more is impossible.
                return dec
                    .decrypt_last(payload)
                    .map(|p| {
                        out.extend_from_slice(&p);
                        out
                    })
                    .map_err(|_| OpenError::Segment(n));
            } else {
                dec.decrypt_next(payload)
                    .map_err(|_| OpenError::Segment(n))?
            };
            out.extend_from_slice(&plain);
            n += 1;
        }
        Err(OpenError::Short(sealed.len()))
    }
}

/// Argon2id parameters, stored beside each wrapped key so they can change for new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// OWASP's minimum for Argon2id (19 MiB, 2 passes, 1 lane): every pgkeep process that
    /// opens an encrypted repository pays this once.
    fn default() -> Self {
        KdfParams {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// How a key-encryption key is derived from what the operator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// A passphrase, stretched with Argon2id: slow on purpose, once per process.
    Argon2id(KdfParams),
    /// A key file of at least 32 random bytes: nothing to stretch, so HKDF-SHA256 — what keeps
    /// `archive_command` at full speed on an encrypted repository.
    KeyFile,
}

/// The shortest key file accepted: 256 bits.
pub const MIN_KEY_FILE: usize = 32;

/// A data key wrapped under a passphrase or key file: the salt and nonce are public; the tag
/// inside `wrapped` is the key check (a wrong passphrase fails it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kdf: Kdf,
    pub salt: [u8; 16],
    pub nonce: [u8; 12],
    pub wrapped: Vec<u8>,
}

fn kek(pass: &[u8], salt: &[u8], kdf: Kdf) -> Result<Zeroizing<[u8; 32]>, String> {
    let kdf = match kdf {
        Kdf::Argon2id(p) => p,
        Kdf::KeyFile => {
            if pass.len() < MIN_KEY_FILE {
                return Err(format!(
                    "a key file holds at least {MIN_KEY_FILE} bytes, this one {}",
                    pass.len()
                ));
            }
            let mut out = Zeroizing::new([0u8; 32]);
            hkdf::Hkdf::<Sha256>::new(Some(salt), pass)
                .expand(KEY_FILE_INFO, out.as_mut())
                .map_err(|e| format!("hkdf failed: {e}"))?;
            return Ok(out);
        }
    };
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| format!("invalid argon2id parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pass, salt, out.as_mut())
        .map_err(|e| format!("argon2id failed: {e}"))?;
    Ok(out)
}

impl WrappedKey {
    /// Wraps `data_key` under `pass`; `slot` (the key's id) is bound to the wrapping.
    pub fn wrap(
        data_key: &[u8; 32],
        pass: &[u8],
        slot: &str,
        kdf: Kdf,
    ) -> Result<WrappedKey, String> {
        let salt: [u8; 16] = random().map_err(|e| e.to_string())?;
        let nonce: [u8; 12] = random().map_err(|e| e.to_string())?;
        let kek = kek(pass, &salt, kdf)?;
        let aad = [WRAP_AAD, slot.as_bytes()].concat();
        let wrapped = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek.as_ref()))
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: data_key,
                    aad: &aad,
                },
            )
            .map_err(|_| "key wrapping failed".to_string())?;
        Ok(WrappedKey {
            kdf,
            salt,
            nonce,
            wrapped,
        })
    }

    /// The data key, or `None` when `pass` is not this slot's passphrase.
    pub fn unwrap_with(&self, pass: &[u8], slot: &str) -> Result<Option<[u8; 32]>, String> {
        let kek = kek(pass, &self.salt, self.kdf)?;
        let aad = [WRAP_AAD, slot.as_bytes()].concat();
        let opened = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(kek.as_ref())).decrypt(
            Nonce::from_slice(&self.nonce),
            Payload {
                msg: &self.wrapped,
                aad: &aad,
            },
        );
        let Ok(plain) = opened.map(Zeroizing::new) else {
            return Ok(None);
        };
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| "wrapped key has the wrong length".to_string())?;
        Ok(Some(key))
    }
}

fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CipherKeys {
        CipherKeys::new([7u8; 32])
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn sealed(k: &CipherKeys, b: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        k.seal(b, aad, &mut out).unwrap();
        out
    }

    #[test]
    fn round_trips_at_every_segment_boundary() {
        let k = keys();
        for len in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 5,
        ] {
            let b = body(len);
            let s = sealed(&k, &b, b"name");
            assert_eq!(k.open(&s, b"name").unwrap(), b, "len {len}");
        }
    }

    #[test]
    fn two_seals_of_the_same_body_differ_and_leak_nothing() {
        let k = keys();
        let b = b"MARKER-in-the-clear".repeat(100);
        let (a, c) = (sealed(&k, &b, b"n"), sealed(&k, &b, b"n"));
        assert_ne!(a, c);
        assert!(!a.windows(6).any(|w| w == b"MARKER"));
    }

    #[test]
    fn flips_truncation_reordering_splicing_and_renaming_are_refused() {
        let k = keys();
        let b = body(3 * SEGMENT + 100);
        let s = sealed(&k, &b, b"wal/a");
        let seg = SEGMENT + TAG_LEN;
        // a flipped byte in a middle segment
        let mut bad = s.clone();
        bad[SALT_LEN + seg + 10] ^= 1;
        assert_eq!(k.open(&bad, b"wal/a"), Err(OpenError::Segment(1)));
        // truncated at a segment boundary, and by one byte
        assert!(k.open(&s[..SALT_LEN + 2 * seg], b"wal/a").is_err());
        assert!(k.open(&s[..s.len() - 1], b"wal/a").is_err());
        // two segments swapped
        let mut swapped = s.clone();
        let (x, y) = (SALT_LEN, SALT_LEN + seg);
        let first = s[x..y].to_vec();
        swapped.copy_within(y..y + seg, x);
        swapped[y..y + seg].copy_from_slice(&first);
        assert_eq!(k.open(&swapped, b"wal/a"), Err(OpenError::Segment(0)));
        // a segment spliced in from another object of the same key
        let other = sealed(&k, &b, b"wal/a");
        let mut spliced = s.clone();
        spliced[SALT_LEN + seg..SALT_LEN + 2 * seg]
            .copy_from_slice(&other[SALT_LEN + seg..SALT_LEN + 2 * seg]);
        assert_eq!(k.open(&spliced, b"wal/a"), Err(OpenError::Segment(1)));
        // a whole valid object under another name, or under another repository's key
        assert_eq!(k.open(&s, b"wal/b"), Err(OpenError::Segment(0)));
        assert!(CipherKeys::new([8u8; 32]).open(&s, b"wal/a").is_err());
    }

    #[test]
    fn tags_are_keyed_and_deterministic() {
        let d = Digest::of(b"x");
        assert_eq!(keys().tag(&d), keys().tag(&d));
        assert_ne!(keys().tag(&d), CipherKeys::new([9u8; 32]).tag(&d));
        assert_ne!(keys().tag(&d), d);
    }

    #[test]
    fn a_wrapped_key_opens_with_its_passphrase_and_slot_only() {
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let w = WrappedKey::wrap(&[5u8; 32], b"correct horse", "k1", Kdf::Argon2id(kdf)).unwrap();
        assert_eq!(
            w.unwrap_with(b"correct horse", "k1").unwrap(),
            Some([5u8; 32])
        );
        assert_eq!(w.unwrap_with(b"wrong", "k1").unwrap(), None);
        assert_eq!(w.unwrap_with(b"correct horse", "k2").unwrap(), None);
        let file = [9u8; 32];
        let k = WrappedKey::wrap(&[5u8; 32], &file, "k3", Kdf::KeyFile).unwrap();
        assert_eq!(k.unwrap_with(&file, "k3").unwrap(), Some([5u8; 32]));
        assert_eq!(k.unwrap_with(&[8u8; 32], "k3").unwrap(), None);
        assert!(WrappedKey::wrap(&[5u8; 32], b"short", "k4", Kdf::KeyFile).is_err());
    }
}
