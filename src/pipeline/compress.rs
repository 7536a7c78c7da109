//! Compression of object bodies: none or zstd at a level, optionally multi-threaded.

use std::io::{Read, Write};

use super::{DecodeError, EncodeOptions};

/// How an object body is compressed; stored in the object header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// zstd at this level (1..=19).
    Zstd(i32),
}

/// The algorithm an object body was compressed with, as the header records it (the level
/// does not matter for decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Zstd,
}

impl Compression {
    pub fn codec(self) -> Codec {
        match self {
            Compression::None => Codec::None,
            Compression::Zstd(_) => Codec::Zstd,
        }
    }
}

impl Codec {
    pub(crate) fn code(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Result<Self, String> {
        match code {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Zstd),
            other => Err(format!("unknown compression code {other}")),
        }
    }
}

/// A source of plaintext chunks (the encoder's reader, which also feeds the hasher).
pub(crate) trait Chunks {
    fn next_chunk(&mut self) -> std::io::Result<Option<bytes::Bytes>>;
}

pub(crate) fn compress_into(
    mut input: impl Chunks,
    out: &mut Vec<u8>,
    opts: EncodeOptions,
) -> std::io::Result<()> {
    match opts.compression {
        Compression::None => {
            while let Some(chunk) = input.next_chunk()? {
                out.extend_from_slice(&chunk);
            }
        }
        Compression::Zstd(level) => {
            let mut enc = zstd::stream::write::Encoder::new(out, level)?;
            if opts.threads > 0 {
                enc.multithread(opts.threads)?;
            }
            while let Some(chunk) = input.next_chunk()? {
                enc.write_all(&chunk)?;
            }
            enc.finish()?;
        }
    }
    Ok(())
}

/// Decompresses `body`, handing the plaintext to `sink` in chunks of up to 1 MiB.
pub(crate) fn decompress_chunks(
    codec: Codec,
    body: &[u8],
    mut sink: impl FnMut(bytes::Bytes) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    const CHUNK: usize = 1 << 20;
    match codec {
        Codec::None => {
            for part in body.chunks(CHUNK) {
                sink(bytes::Bytes::copy_from_slice(part))?;
            }
            Ok(())
        }
        Codec::Zstd => {
            let mut dec =
                zstd::stream::read::Decoder::with_buffer(body).map_err(DecodeError::Decompress)?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    let n = dec
                        .read(&mut buf[filled..])
                        .map_err(DecodeError::Decompress)?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok(());
                }
                buf.truncate(filled);
                sink(bytes::Bytes::from(buf))?;
            }
        }
    }
}
