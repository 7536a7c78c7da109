//! Writing a stored object to a local file only once it has proven itself: decoded into a
//! temporary file (with writeback started as it goes), size and sha256 checked, fsynced, then
//! renamed into place (archive-get), and the error a damaged object gives (archive-get and
//! restore alike).

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::localfs;
use crate::pipeline::{self, DecodeError};

/// Decodes `stored` into `dest`; returns the plaintext size. `what` and `location` name the
/// object in errors.
pub fn write(stored: &[u8], dest: &Path, what: &str, location: &str) -> Result<u64> {
    let written = localfs::write_atomic(dest, |f| {
        let mut w = BufWriter::with_capacity(1 << 20, localfs::WritebackWriter::new(f));
        let header = pipeline::decode(stored, &mut w).map_err(std::io::Error::other)?;
        w.flush()?;
        Ok(header.plain_size)
    });
    written.map_err(|e| {
        let decode = e.get_ref().and_then(|r| r.downcast_ref::<DecodeError>());
        match decode {
            Some(DecodeError::Write(_)) | None => Error::io("write", dest, e),
            Some(d) => damaged(what, location, d),
        }
    })
}

/// The error for an object that failed to decode: nothing of it was published.
pub fn damaged(what: &str, location: &str, d: &DecodeError) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("{what} in repository {location} is damaged: {d}"),
    )
    .hint("nothing was written; run 'pgkeep verify' and restore the object from another copy")
}
