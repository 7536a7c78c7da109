//! sha256 while streaming: a `Digest` newtype and a `Hasher` fed chunk by chunk.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// A sha256 digest; displayed as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn parse(hex_text: &str) -> Result<Self, String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut out)
            .map_err(|_| format!("invalid sha256 '{hex_text}'"))?;
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Hashes and counts bytes handed to it.
#[derive(Default)]
pub struct Hasher {
    hasher: Sha256,
    size: u64,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub fn finish(self) -> (Digest, u64) {
        (Digest(self.hasher.finalize().into()), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_hex_round_trip() {
        let d = Digest::of(b"abc");
        let text = d.to_string();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&text).unwrap(), d);
        assert!(Digest::parse("abc").is_err());
    }

    #[test]
    fn hasher_counts_and_hashes_what_it_is_given() {
        let mut h = Hasher::default();
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), (Digest::of(b"hello world"), 11));
    }
}
