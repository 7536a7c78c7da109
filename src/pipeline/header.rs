//! The fixed header in front of every stored object, so that reading never depends on a file
//! extension: magic, format version, compression, cipher, plaintext size and sha256.

use super::checksum::Digest;
use super::compress::Codec;

/// `PGK1` + format version + compression + cipher + reserved + size (8) + sha256 (32).
pub const HEADER_LEN: usize = 48;
const MAGIC: &[u8; 4] = b"PGK1";
const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    pub codec: Codec,
    pub plain_size: u64,
    pub sha256: Digest,
}

impl ObjectHeader {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(MAGIC);
        b[4] = FORMAT_VERSION;
        b[5] = self.codec.code();
        b[6] = 0; // cipher: none (encryption comes later)
        b[8..16].copy_from_slice(&self.plain_size.to_le_bytes());
        b[16..48].copy_from_slice(&self.sha256.0);
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
        if b[4] != FORMAT_VERSION {
            return Err(format!("unsupported object format version {}", b[4]));
        }
        if b[6] != 0 {
            return Err(format!("unsupported cipher code {}", b[6]));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[8..16]);
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&b[16..48]);
        Ok(ObjectHeader {
            codec: Codec::from_code(b[5])?,
            plain_size: u64::from_le_bytes(size),
            sha256: Digest(sha),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let h = ObjectHeader {
            codec: Codec::Zstd,
            plain_size: 16 << 20,
            sha256: Digest::of(b"x"),
        };
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
