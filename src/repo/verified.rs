//! Writing a stored object to a local file only once it has proven itself: decoded into a
//! temporary file (with writeback started as it goes), size and sha256 checked, fsynced, then
//! renamed into place (archive-get), and the error a damaged object gives (archive-get and
//! restore alike).

use std::io::{BufWriter, Write};
use std::path::Path;

use super::{DecodeError, Fetched};
use crate::error::{Error, ErrorKind, Result};
use crate::localfs;

/// Decodes `stored` into `dest`; returns the plaintext size. `what` and `location` name the
/// object in errors.
pub fn write<K>(stored: &Fetched<K>, dest: &Path, what: &str, location: &str) -> Result<u64> {
    write_checked(stored, dest, what, location, 0, |_, _| Ok(()))
}

/// What the content of a decoded object says is wrong with it (it decoded, but it is not
/// what its name says).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ContentError(String);

/// Like [`write`], and before publishing, `check` sees the first `keep` plaintext bytes and
/// the plaintext size: an object that decodes but is not what its name says (a swapped
/// segment) is refused as damaged and nothing is published.
pub fn write_checked<K>(
    stored: &Fetched<K>,
    dest: &Path,
    what: &str,
    location: &str,
    keep: usize,
    check: impl FnOnce(&[u8], u64) -> std::result::Result<(), String>,
) -> Result<u64> {
    let written = localfs::write_atomic(dest, |f| {
        let mut w = BufWriter::with_capacity(1 << 20, localfs::WritebackWriter::new(f));
        let mut head = Head {
            inner: &mut w,
            keep,
            head: Vec::with_capacity(keep.min(1 << 20)),
        };
        let decoded = stored.decode(&mut head).map_err(std::io::Error::other)?;
        let size = decoded.header.plain_size;
        let head = std::mem::take(&mut head.head);
        check(&head, size).map_err(|e| std::io::Error::other(ContentError(e)))?;
        w.flush()?;
        Ok(size)
    });
    written.map_err(|e| {
        if let Some(c) = e.get_ref().and_then(|r| r.downcast_ref::<ContentError>()) {
            return Error::new(
                ErrorKind::Corrupt,
                format!("{what} in repository {location} is damaged: {c}"),
            )
            .hint(
                "nothing was written; run 'pgkeep verify' and restore the object from another copy",
            );
        }
        let decode = e.get_ref().and_then(|r| r.downcast_ref::<DecodeError>());
        match decode {
            Some(DecodeError::Write(_)) | None => Error::io("write", dest, e),
            Some(d) => damaged(what, location, d),
        }
    })
}

/// Like [`write_checked`] into memory (pgkeepd serving archive-get over HTTP): the whole
/// plaintext, decoded, verified and content-checked, or an error and nothing.
pub fn read_checked<K>(
    stored: &Fetched<K>,
    what: &str,
    location: &str,
    check: impl FnOnce(&[u8], u64) -> std::result::Result<(), String>,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let decoded = stored
        .decode(&mut out)
        .map_err(|d| damaged(what, location, &d))?;
    check(&out, decoded.header.plain_size).map_err(|c| {
        Error::new(
            ErrorKind::Corrupt,
            format!("{what} in repository {location} is damaged: {c}"),
        )
        .hint("nothing was served; run 'pgkeep verify' and restore the object from another copy")
    })?;
    Ok(out)
}

/// A writer that keeps a copy of the first `keep` bytes going through it.
struct Head<'a, W: Write> {
    inner: &'a mut W,
    keep: usize,
    head: Vec<u8>,
}

impl<W: Write> Write for Head<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let room = self.keep.saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The error for an object that failed to decode: nothing of it was published.
pub fn damaged(what: &str, location: &str, d: &DecodeError) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("{what} in repository {location} is damaged: {d}"),
    )
    .hint("nothing was written; run 'pgkeep verify' and restore the object from another copy")
}
