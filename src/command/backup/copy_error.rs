//! The one error of the copy machinery (pump, tar workers, uploader) and its single
//! conversion to pgkeep's [`Error`]: a malformed stream is `InvalidInput` with a hint, a
//! failure of the store or the source keeps its own kind. It decides no policy itself.

use std::io;

use crate::error::{Error, ErrorKind};

/// Why a task of the copy phase stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The tar stream cannot be opened as an archive.
    #[error("cannot read the backup's tar stream: {0}")]
    Stream(#[source] io::Error),
    /// A tar header (or the name or link target it holds) cannot be read.
    #[error("bad tar entry in the backup stream: {0}")]
    Entry(#[source] io::Error),
    /// An entry's path would leave the data directory (absolute, `..`, empty).
    #[error("unsafe path '{0}' in backup stream")]
    Path(String),
    /// A file's contents end early or cannot be read.
    #[error("cannot read {path} from the backup stream: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL incremental file that cannot be laid over the parent's copy.
    #[error("incremental file for {path} in the backup stream: {why}")]
    Incremental { path: String, why: String },
    /// The uploader is gone while a worker still had items for it.
    #[error("the uploader stopped")]
    UploaderStopped,
    /// The memory cap's semaphore was closed.
    #[error("the memory budget was closed")]
    Budget,
    /// Another task of the copy failed first: its error is the one to report.
    #[error("the copy was cancelled")]
    Cancelled,
    /// A failure pgkeep's own error already describes (the store, the source, a task panic).
    #[error(transparent)]
    Other(#[from] Error),
}

impl CopyError {
    pub fn is_cancelled(&self) -> bool {
        matches!(self, CopyError::Cancelled)
    }
}

impl From<CopyError> for Error {
    fn from(e: CopyError) -> Error {
        match e {
            CopyError::Other(e) => e,
            e @ (CopyError::Stream(_)
            | CopyError::Entry(_)
            | CopyError::Path(_)
            | CopyError::Read { .. }
            | CopyError::Incremental { .. }) => Error::new(ErrorKind::InvalidInput, e.to_string())
                .hint("the source sent a malformed backup stream"),
            // Never the first cause of a failure unless pgkeep itself is broken.
            e @ (CopyError::UploaderStopped | CopyError::Budget | CopyError::Cancelled) => {
                Error::new(ErrorKind::Internal, e.to_string())
            }
        }
    }
}

/// The error to report of the copy's tasks, in order of precedence: the first that is not a
/// cancellation caused by another's failure.
pub fn first_cause(results: impl IntoIterator<Item = Result<(), CopyError>>) -> Result<(), Error> {
    let mut cancelled = None;
    for r in results {
        match r {
            Ok(()) => {}
            Err(e) if e.is_cancelled() => cancelled = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    cancelled.map_or(Ok(()), |e| Err(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cause_is_reported_not_the_cancellations_it_caused() {
        let malformed = || CopyError::Path("../x".into());
        let store = || CopyError::Other(Error::new(ErrorKind::Unreachable, "store down"));
        let err = first_cause([Err(CopyError::Cancelled), Err(malformed())]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = first_cause([Err(store()), Err(malformed())]).unwrap_err();
        assert_eq!(
            (err.kind(), err.message()),
            (ErrorKind::Unreachable, "store down")
        );
        let err = first_cause([Ok(()), Err(CopyError::Cancelled)]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(first_cause([Ok(()), Ok(())]).is_ok());
    }
}
