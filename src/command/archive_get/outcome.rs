//! What an archive-get failure tells PostgreSQL. `restore_command` has three answers:
//! 0 (here it is), 1..=125 ("not available": archive recovery ends there and the server
//! promotes; a standby tries streaming and asks again later), and above 125 (recovery stops,
//! the server shuts down). Only "not in the repository" may mean "the archive ends here";
//! a damaged object, an unreachable store or a full disk must never end recovery short.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind};

/// How the server that called us is recovering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// `standby.signal`: a failure only delays replay; the standby retries by itself every
    /// `wal_retrieve_retry_interval`, streams meanwhile, and never promotes on its own.
    Standby,
    /// `recovery.signal`, or pgkeep run by hand: a failure taken for "end of archive" would
    /// promote the server with transactions missing.
    Archive,
}

impl RecoveryMode {
    /// PostgreSQL runs `restore_command` in the data directory, with `%p` relative to it
    /// (`pg_wal/RECOVERYXLOG`); the data directory is `dest`'s grandparent when `dest` is in a
    /// `pg_wal` directory, else the working directory.
    pub fn of(dest: &Path) -> RecoveryMode {
        let data_dir = match dest.parent() {
            Some(wal) if wal.file_name().is_some_and(|n| n == "pg_wal") => wal
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            _ => PathBuf::from("."),
        };
        let data_dir = if data_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            data_dir
        };
        if data_dir.join("standby.signal").exists() {
            RecoveryMode::Standby
        } else {
            RecoveryMode::Archive
        }
    }
}

/// The error archive-get exits with. "Not found" stays exit 1; in archive recovery anything
/// else stops recovery (exit above 125) so it resumes once the cause is fixed; a standby gets
/// the plain code, is not promoted by it, and logs the cause on every retry.
pub fn settle(err: Error, mode: RecoveryMode) -> Error {
    match (err.kind(), mode) {
        (ErrorKind::NotFound, _) => err,
        (_, RecoveryMode::Standby) => err.hint(
            "the standby stays a standby and asks again after wal_retrieve_retry_interval; fix the cause",
        ),
        (_, RecoveryMode::Archive) => err.stopping_recovery().hint(
            "recovery was stopped, not ended, so the server cannot come up short; fix the cause and start PostgreSQL again: replay resumes where it stopped",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_not_found_may_end_archive_recovery() {
        let mode = RecoveryMode::Archive;
        let nf = settle(Error::new(ErrorKind::NotFound, "x"), mode);
        assert_eq!(nf.exit_code(), 1);
        for kind in [
            ErrorKind::Corrupt,
            ErrorKind::Io,
            ErrorKind::Unreachable,
            ErrorKind::Auth,
            ErrorKind::InvalidInput,
            ErrorKind::RepoMismatch,
            ErrorKind::Config,
        ] {
            let e = settle(Error::new(kind, "x"), mode);
            assert!(e.exit_code() > 125, "{kind:?} must stop recovery");
        }
    }

    #[test]
    fn a_standby_keeps_plain_codes() {
        let e = settle(Error::new(ErrorKind::Corrupt, "x"), RecoveryMode::Standby);
        assert_eq!(e.exit_code(), 10);
    }

    #[test]
    fn standby_is_read_from_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("pg_wal/RECOVERYXLOG");
        assert_eq!(RecoveryMode::of(&dest), RecoveryMode::Archive);
        std::fs::write(dir.path().join("standby.signal"), "").unwrap();
        assert_eq!(RecoveryMode::of(&dest), RecoveryMode::Standby);
    }
}
