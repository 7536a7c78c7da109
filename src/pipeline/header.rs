//! The fixed header in front of every stored object, so that reading never depends on a file
//! extension: magic, format version, compression, cipher, plaintext size and digest.
//!
//! Format 1 (up to pgkeep 0.1's first releases) and format 2 share the layout; format 2 means
//! the digest is the plaintext's sha256 for a clear object and a keyed tag of it
//! (`CipherKeys::tag`) for an encrypted one. Format 1 objects are read, never written.

use super::checksum::Digest;
use super::compress::Codec;

/// `PGK1` + format version + compression + cipher + reserved + size (8) + digest (32).
pub const HEADER_LEN: usize = 48;
pub const MAGIC: &[u8; 4] = b"PGK1";
/// What this pgkeep writes.
pub const FORMAT_VERSION: u8 = 2;
/// The oldest format it reads.
const OLDEST_READ: u8 = 1;

/// How an object body is protected after compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    None,
    /// AES-256-GCM, STREAM construction (see `encrypt`).
    Aes256Gcm,
}

impl Cipher {
    fn code(self) -> u8 {
        match self {
            Cipher::None => 0,
            Cipher::Aes256Gcm => 1,
        }
    }

    fn from_code(code: u8) -> Result<Self, String> {
        match code {
            0 => Ok(Cipher::None),
            1 => Ok(Cipher::Aes256Gcm),
            c => Err(format!("unsupported cipher code {c}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// The format the object was written in (1 or 2).
    pub version: u8,
    pub codec: Codec,
    pub cipher: Cipher,
    pub plain_size: u64,
    /// sha256 of the plaintext (clear objects) or its keyed tag (encrypted objects): equal
    /// for equal content within one repository, which is what push dedup compares.
    pub digest: Digest,
}

impl ObjectHeader {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4] = self.version;
        b[5] = self.codec.code();
        b[6] = self.cipher.code();
        b[8..16].copy_from_slice(&self.plain_size.to_le_bytes());
        b[16..48].copy_from_slice(&self.digest.0);
        b
    }

    /// Parses the header at the start of `bytes` (only the first `HEADER_LEN` are read).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let b = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| format!("object too short for a header ({} bytes)", bytes.len()))?;
        if &b[0..4] != MAGIC {
            return Err("not a pgkeep object (bad magic)".into());
        }
        if !(OLDEST_READ..=FORMAT_VERSION).contains(&b[4]) {
            return Err(format!("unsupported object format version {}", b[4]));
        }
        let cipher = Cipher::from_code(b[6])?;
        if b[4] == 1 && cipher != Cipher::None {
            return Err("format 1 objects are never encrypted".into());
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[8..16]);
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&b[16..48]);
        Ok(ObjectHeader {
            version: b[4],
            codec: Codec::from_code(b[5])?,
            cipher,
            plain_size: u64::from_le_bytes(size),
            digest: Digest(sha),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let h = ObjectHeader {
            version: FORMAT_VERSION,
            codec: Codec::Zstd,
            cipher: Cipher::Aes256Gcm,
            plain_size: 16 << 20,
            digest: Digest::of(b"x"),
        };
        let v1 = ObjectHeader {
            version: 1,
            cipher: Cipher::None,
            ..h
        };
        assert_eq!(ObjectHeader::from_bytes(&v1.to_bytes()).unwrap(), v1);
        let mut bad = v1.to_bytes();
        bad[6] = 1;
        assert!(
            ObjectHeader::from_bytes(&bad).is_err(),
            "format 1 is never encrypted"
        );
        assert_eq!(ObjectHeader::from_bytes(&h.to_bytes()).unwrap(), h);
        let mut bad = h.to_bytes();
        bad[0] = b'X';
        assert!(ObjectHeader::from_bytes(&bad).is_err());
        let mut bad = h.to_bytes();
        bad[5] = 9;
        assert!(ObjectHeader::from_bytes(&bad).is_err());
        assert!(ObjectHeader::from_bytes(&h.to_bytes()[..20]).is_err());
    }
}
