//! Bytes in, bytes out: every object pgkeep stores passes through `compress` (sha256 of the
//! plaintext, zstd) then `seal` (a self-describing header, and AES-256-GCM when the repository
//! is encrypted), and comes back through `decode` (header, decryption, zstd, digest and size
//! checked). Knows nothing of PostgreSQL, object names or stores: the repository hands in
//! the key and the name to bind, and is the only caller.

pub mod checksum;
pub mod compress;
pub mod encrypt;
pub mod header;

use std::io::{Read, Write};

pub use checksum::Digest;
pub use compress::{Codec, Compression};
pub use encrypt::{CipherKeys, Kdf, KdfParams, OpenError, WrappedKey};
pub use header::{Cipher, HEADER_LEN, ObjectHeader};

/// How to encode.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    pub compression: Compression,
    /// zstd worker threads (0 = compress on the calling thread).
    pub threads: u32,
}

/// How an object is sealed (written) or opened (read): in the clear, or encrypted under the
/// repository's keys and bound to the object's name.
#[derive(Debug, Clone, Copy)]
pub enum Seal<'a> {
    Clear,
    Encrypt {
        keys: &'a CipherKeys,
        name: &'a [u8],
    },
}

/// A compressed body, hashed, with room for the header in front: what can be made before the
/// repository (and its key) is known.
#[derive(Debug)]
pub struct Compressed {
    /// `HEADER_LEN` bytes reserved, then the compressed body.
    buf: Vec<u8>,
    codec: Codec,
    pub plain_size: u64,
    pub sha256: Digest,
}

/// An encoded object: header followed by the (sealed) body, ready to store.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub header: ObjectHeader,
    /// The plaintext's sha256 (the header holds it only for clear objects).
    pub sha256: Digest,
}

/// Reads `input` to the end once, compressing each chunk on this thread while a second thread
/// hashes the very same chunk: the checksum is always of exactly the bytes compressed, and
/// sha256 is off the critical path.
pub fn compress(
    input: impl Read,
    opts: EncodeOptions,
    size_hint: usize,
) -> std::io::Result<Compressed> {
    compress_chunks(ReadChunks(input), opts, size_hint)
}

/// `compress` for bytes already in memory: chunks are slices of `plain`, nothing is copied.
pub fn compress_bytes(plain: bytes::Bytes, opts: EncodeOptions) -> std::io::Result<Compressed> {
    let size = plain.len();
    compress_chunks(SliceChunks(plain), opts, size)
}

/// `compress` then `seal`.
pub fn encode(
    input: impl Read,
    opts: EncodeOptions,
    size_hint: usize,
    seal: Seal<'_>,
) -> std::io::Result<Encoded> {
    self::seal(compress(input, opts, size_hint)?, seal)
}

fn compress_chunks(
    source: impl compress::Chunks,
    opts: EncodeOptions,
    size_hint: usize,
) -> std::io::Result<Compressed> {
    let mut buf = Vec::with_capacity(HEADER_LEN + size_hint / 4);
    buf.resize(HEADER_LEN, 0);
    let (sha256, plain_size) = std::thread::scope(|scope| {
        let (tx, hasher) = hash_in_background(scope);
        compress::compress_into(Hashed { source, tx }, &mut buf, opts)?;
        hasher
            .join()
            .map_err(|_| std::io::Error::other("hashing thread panicked"))
    })?;
    Ok(Compressed {
        buf,
        codec: opts.compression.codec(),
        plain_size,
        sha256,
    })
}

/// Puts the header in front of a compressed body and, for `Seal::Encrypt`, encrypts the body
/// with the header and the name as associated data.
pub fn seal(compressed: Compressed, seal: Seal<'_>) -> std::io::Result<Encoded> {
    let Compressed {
        mut buf,
        codec,
        plain_size,
        sha256,
    } = compressed;
    let (cipher, digest) = match seal {
        Seal::Clear => (Cipher::None, sha256),
        Seal::Encrypt { keys, .. } => (Cipher::Aes256Gcm, keys.tag(&sha256)),
    };
    let header = ObjectHeader {
        version: header::FORMAT_VERSION,
        codec,
        cipher,
        plain_size,
        digest,
    };
    let head = header.to_bytes();
    let bytes = match seal {
        Seal::Clear => {
            // The header goes in front last: it carries the checksum of what was actually read.
            buf[..HEADER_LEN].copy_from_slice(&head);
            buf
        }
        Seal::Encrypt { keys, name } => {
            let mut out = Vec::with_capacity(buf.len() + buf.len() / 1000 + 128);
            out.extend_from_slice(&head);
            keys.seal(&buf[HEADER_LEN..], &aad(&head, name), &mut out)?;
            out
        }
    };
    Ok(Encoded {
        bytes,
        header,
        sha256,
    })
}

/// What every segment of an encrypted object is authenticated with.
fn aad(head: &[u8], name: &[u8]) -> Vec<u8> {
    [head, name].concat()
}

type HashJob<'scope> = (
    std::sync::mpsc::SyncSender<bytes::Bytes>,
    std::thread::ScopedJoinHandle<'scope, (Digest, u64)>,
);

/// A thread hashing the chunks sent to it until the sender is dropped. A small bounded queue
/// keeps memory flat whatever the input size.
fn hash_in_background<'scope>(scope: &'scope std::thread::Scope<'scope, '_>) -> HashJob<'scope> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(4);
    let hasher = scope.spawn(move || {
        let mut h = checksum::Hasher::default();
        for chunk in rx {
            h.update(&chunk);
        }
        h.finish()
    });
    (tx, hasher)
}

const CHUNK: usize = 1 << 20;

/// Reads 1 MiB chunks.
struct ReadChunks<R>(R);

impl<R: Read> compress::Chunks for ReadChunks<R> {
    fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.0.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        Ok(Some(bytes::Bytes::from(buf)))
    }
}

/// Slices 1 MiB chunks off bytes in memory.
struct SliceChunks(bytes::Bytes);

impl compress::Chunks for SliceChunks {
    fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let n = self.0.len().min(CHUNK);
        Ok(Some(self.0.split_to(n)))
    }
}

/// Hands each chunk to the hasher before the compressor sees it.
struct Hashed<C> {
    source: C,
    tx: std::sync::mpsc::SyncSender<bytes::Bytes>,
}

impl<C: compress::Chunks> compress::Chunks for Hashed<C> {
    fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        let Some(chunk) = self.source.next_chunk()? else {
            return Ok(None);
        };
        self.tx
            .send(chunk.clone())
            .map_err(|_| std::io::Error::other("hashing thread stopped"))?;
        Ok(Some(chunk))
    }
}

/// Why an object could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("bad object header: {0}")]
    Header(String),
    #[error("{0}")]
    Cipher(&'static str),
    #[error("cannot decrypt: {0}")]
    Decrypt(#[from] OpenError),
    #[error("cannot decompress: {0}")]
    Decompress(std::io::Error),
    #[error("cannot write decoded bytes: {0}")]
    Write(std::io::Error),
    #[error("checksum mismatch: stored digest {expected}, content gives {actual}")]
    Checksum { expected: Digest, actual: Digest },
    #[error("size mismatch: header says {expected} bytes, content has {actual}")]
    Size { expected: u64, actual: u64 },
}

/// A decoded object: its header and the sha256 of the plaintext written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub header: ObjectHeader,
    pub sha256: Digest,
}

/// Decodes a stored object into `out`, verifying size and digest; the hash runs on a second
/// thread over the same chunks that are written. An object whose protection is not what
/// `open` expects is refused: a clear object in an encrypted repository may have been planted.
/// On error `out` may hold a prefix of unverified bytes: callers write to a temporary file and
/// publish only on success.
pub fn decode(stored: &[u8], mut out: impl Write, open: Seal<'_>) -> Result<Decoded, DecodeError> {
    let header = ObjectHeader::from_bytes(stored).map_err(DecodeError::Header)?;
    let opened;
    let body = match (open, header.cipher) {
        (Seal::Clear, Cipher::None) => &stored[HEADER_LEN..],
        (Seal::Encrypt { keys, name }, Cipher::Aes256Gcm) => {
            opened = keys.open(&stored[HEADER_LEN..], &aad(&stored[..HEADER_LEN], name))?;
            &opened[..]
        }
        (Seal::Clear, _) => {
            return Err(DecodeError::Cipher(
                "the object is encrypted but the repository is not",
            ));
        }
        (Seal::Encrypt { .. }, _) => {
            return Err(DecodeError::Cipher(
                "the object is not encrypted but the repository is: it was not written by pgkeep for this repository",
            ));
        }
    };
    let (actual, size) = std::thread::scope(|scope| {
        let (tx, hasher) = hash_in_background(scope);
        // `tx` moves into the closure and is dropped when decompression ends, which ends the
        // hasher's loop.
        let written = compress::decompress_chunks(header.codec, body, move |chunk| {
            out.write_all(&chunk).map_err(DecodeError::Write)?;
            tx.send(chunk)
                .map_err(|_| DecodeError::Write(std::io::Error::other("hashing thread stopped")))
        });
        let hashed = hasher
            .join()
            .map_err(|_| DecodeError::Write(std::io::Error::other("hashing thread panicked")));
        written.and(hashed)
    })?;
    if size != header.plain_size {
        return Err(DecodeError::Size {
            expected: header.plain_size,
            actual: size,
        });
    }
    let expected = match open {
        Seal::Encrypt { keys, .. } => keys.tag(&actual),
        Seal::Clear => actual,
    };
    if expected != header.digest {
        return Err(DecodeError::Checksum {
            expected: header.digest,
            actual: expected,
        });
    }
    Ok(Decoded {
        header,
        sha256: actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(compression: Compression, threads: u32) -> EncodeOptions {
        EncodeOptions {
            compression,
            threads,
        }
    }

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn keys() -> CipherKeys {
        CipherKeys::new([3u8; 32])
    }

    fn seals(k: &CipherKeys) -> [Seal<'_>; 2] {
        [
            Seal::Clear,
            Seal::Encrypt {
                keys: k,
                name: b"backups/x/files/base/1/1",
            },
        ]
    }

    #[test]
    fn round_trip_every_compression_and_cipher() {
        let data = sample();
        let k = keys();
        for s in seals(&k) {
            for o in [
                opts(Compression::None, 0),
                opts(Compression::Zstd(1), 0),
                opts(Compression::Zstd(3), 2),
            ] {
                let enc = encode(&data[..], o, data.len(), s).unwrap();
                assert_eq!(enc.header.plain_size, data.len() as u64);
                assert_eq!(enc.sha256, Digest::of(&data));
                let mut back = Vec::new();
                let d = decode(&enc.bytes, &mut back, s).unwrap();
                assert_eq!((d.header, d.sha256), (enc.header, enc.sha256));
                assert_eq!(back, data);
                let from_bytes = seal(
                    compress_bytes(bytes::Bytes::from(data.clone()), o).unwrap(),
                    s,
                )
                .unwrap();
                assert_eq!(from_bytes.header.digest, enc.header.digest);
            }
        }
    }

    #[test]
    fn encrypted_headers_hold_a_keyed_tag_not_the_sha256() {
        let data = sample();
        let k = keys();
        let enc = encode(&data[..], opts(Compression::Zstd(1), 0), 0, seals(&k)[1]).unwrap();
        assert_eq!(enc.header.cipher, Cipher::Aes256Gcm);
        assert_ne!(enc.header.digest, Digest::of(&data));
        assert_eq!(enc.header.digest, k.tag(&Digest::of(&data)));
    }

    #[test]
    fn a_clear_object_in_an_encrypted_repository_and_the_reverse_are_refused() {
        let data = sample();
        let k = keys();
        let [clear, enc] = seals(&k);
        let c = encode(&data[..], opts(Compression::None, 0), 0, clear).unwrap();
        let e = encode(&data[..], opts(Compression::None, 0), 0, enc).unwrap();
        assert!(matches!(
            decode(&c.bytes, std::io::sink(), enc),
            Err(DecodeError::Cipher(_))
        ));
        assert!(matches!(
            decode(&e.bytes, std::io::sink(), clear),
            Err(DecodeError::Cipher(_))
        ));
    }

    #[test]
    fn an_edited_header_of_an_encrypted_object_is_refused() {
        let data = sample();
        let k = keys();
        let e = encode(&data[..], opts(Compression::None, 0), 0, seals(&k)[1]).unwrap();
        for pos in [5usize, 8, 20] {
            let mut bad = e.bytes.clone();
            bad[pos] ^= 1;
            assert!(
                decode(&bad, std::io::sink(), seals(&k)[1]).is_err(),
                "flip at {pos}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_detected() {
        let data = sample();
        let k = keys();
        for s in seals(&k) {
            let enc = encode(&data[..], opts(Compression::Zstd(1), 0), data.len(), s).unwrap();
            for pos in [5, HEADER_LEN + 3, enc.bytes.len() / 2, enc.bytes.len() - 1] {
                let mut bad = enc.bytes.clone();
                bad[pos] ^= 0x40;
                assert!(decode(&bad, std::io::sink(), s).is_err(), "flip at {pos}");
            }
        }
        let plain = encode(
            &data[..],
            opts(Compression::None, 0),
            data.len(),
            Seal::Clear,
        )
        .unwrap();
        let mut bad = plain.bytes.clone();
        bad[HEADER_LEN + 10] ^= 1;
        assert!(matches!(
            decode(&bad, std::io::sink(), Seal::Clear),
            Err(DecodeError::Checksum { .. })
        ));
    }

    #[test]
    fn format_1_objects_are_still_read() {
        let data = sample();
        let mut enc = encode(&data[..], opts(Compression::Zstd(1), 0), 0, Seal::Clear).unwrap();
        enc.bytes[4] = 1;
        let mut back = Vec::new();
        let d = decode(&enc.bytes, &mut back, Seal::Clear).unwrap();
        assert_eq!((d.header.version, back), (1, data));
    }

    #[test]
    fn truncated_objects_are_detected() {
        let data = sample();
        let k = keys();
        for s in seals(&k) {
            let enc = encode(&data[..], opts(Compression::None, 0), data.len(), s).unwrap();
            assert!(decode(&enc.bytes[..enc.bytes.len() - 1], std::io::sink(), s).is_err());
            assert!(decode(&enc.bytes[..10], std::io::sink(), s).is_err());
        }
        let enc = encode(
            &data[..],
            opts(Compression::None, 0),
            data.len(),
            Seal::Clear,
        )
        .unwrap();
        let err = decode(
            &enc.bytes[..enc.bytes.len() - 1],
            std::io::sink(),
            Seal::Clear,
        );
        assert!(matches!(err, Err(DecodeError::Size { .. })));
    }
}
