//! Bytes in, bytes out: every object pgkeep stores passes through `encode` (sha256 of the
//! plaintext, zstd, a self-describing header) and comes back through `decode` (header, zstd,
//! sha256 and size checked). Knows nothing of PostgreSQL, keys or stores.

pub mod checksum;
pub mod compress;
pub mod header;

use std::io::{Read, Write};

pub use checksum::Digest;
pub use compress::{Codec, Compression};
pub use header::{HEADER_LEN, ObjectHeader};

/// How to encode.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions {
    pub compression: Compression,
    /// zstd worker threads (0 = compress on the calling thread).
    pub threads: u32,
}

/// An encoded object: header followed by the compressed body, ready to store.
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub header: ObjectHeader,
}

/// Reads `input` to the end once, compressing each chunk on this thread while a second thread
/// hashes the very same chunk: the checksum is always of exactly the bytes compressed, and
/// sha256 is off the critical path.
pub fn encode(input: impl Read, opts: EncodeOptions, size_hint: usize) -> std::io::Result<Encoded> {
    encode_chunks(ReadChunks(input), opts, size_hint)
}

/// `encode` for bytes already in memory: chunks are slices of `plain`, nothing is copied.
pub fn encode_bytes(plain: bytes::Bytes, opts: EncodeOptions) -> std::io::Result<Encoded> {
    let size = plain.len();
    encode_chunks(SliceChunks(plain), opts, size)
}

fn encode_chunks(
    source: impl compress::Chunks,
    opts: EncodeOptions,
    size_hint: usize,
) -> std::io::Result<Encoded> {
    let mut out = Vec::with_capacity(HEADER_LEN + size_hint / 4);
    out.resize(HEADER_LEN, 0);
    let (digest, size) = std::thread::scope(|scope| {
        let (tx, hasher) = hash_in_background(scope);
        compress::compress_into(Hashed { source, tx }, &mut out, opts)?;
        hasher
            .join()
            .map_err(|_| std::io::Error::other("hashing thread panicked"))
    })?;
    let header = ObjectHeader {
        codec: opts.compression.codec(),
        plain_size: size,
        sha256: digest,
    };
    // The header goes in front last: it carries the checksum of what was actually read.
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(Encoded { bytes: out, header })
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
    #[error("cannot decompress: {0}")]
    Decompress(std::io::Error),
    #[error("cannot write decoded bytes: {0}")]
    Write(std::io::Error),
    #[error("checksum mismatch: stored sha256 {expected}, content has {actual}")]
    Checksum { expected: Digest, actual: Digest },
    #[error("size mismatch: header says {expected} bytes, content has {actual}")]
    Size { expected: u64, actual: u64 },
}

/// Decodes a stored object into `out`, verifying size and sha256; the hash runs on a second
/// thread over the same chunks that are written. On error `out` may hold a prefix of
/// unverified bytes: callers write to a temporary file and publish only on success.
pub fn decode(stored: &[u8], mut out: impl Write) -> Result<ObjectHeader, DecodeError> {
    let header = ObjectHeader::from_bytes(stored).map_err(DecodeError::Header)?;
    let body = &stored[HEADER_LEN..];
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
    if actual != header.sha256 {
        return Err(DecodeError::Checksum {
            expected: header.sha256,
            actual,
        });
    }
    Ok(header)
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

    #[test]
    fn round_trip_every_compression() {
        let data = sample();
        for o in [
            opts(Compression::None, 0),
            opts(Compression::Zstd(1), 0),
            opts(Compression::Zstd(3), 2),
        ] {
            let enc = encode(&data[..], o, data.len()).unwrap();
            assert_eq!(enc.header.plain_size, data.len() as u64);
            assert_eq!(enc.header.sha256, Digest::of(&data));
            let mut back = Vec::new();
            let h = decode(&enc.bytes, &mut back).unwrap();
            assert_eq!(h, enc.header);
            assert_eq!(back, data);
            let from_bytes = encode_bytes(bytes::Bytes::from(data.clone()), o).unwrap();
            assert_eq!(from_bytes.header, enc.header);
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_detected() {
        let data = sample();
        let enc = encode(&data[..], opts(Compression::Zstd(1), 0), data.len()).unwrap();
        for pos in [5, HEADER_LEN + 3, enc.bytes.len() / 2, enc.bytes.len() - 1] {
            let mut bad = enc.bytes.clone();
            bad[pos] ^= 0x40;
            assert!(decode(&bad, std::io::sink()).is_err(), "flip at {pos}");
        }
        let plain = encode(&data[..], opts(Compression::None, 0), data.len()).unwrap();
        let mut bad = plain.bytes.clone();
        bad[HEADER_LEN + 10] ^= 1;
        assert!(matches!(
            decode(&bad, std::io::sink()),
            Err(DecodeError::Checksum { .. })
        ));
    }

    #[test]
    fn truncated_objects_are_detected() {
        let data = sample();
        let enc = encode(&data[..], opts(Compression::None, 0), data.len()).unwrap();
        let err = decode(&enc.bytes[..enc.bytes.len() - 1], std::io::sink()).unwrap_err();
        assert!(matches!(err, DecodeError::Size { .. }));
        assert!(decode(&enc.bytes[..10], std::io::sink()).is_err());
    }
}
