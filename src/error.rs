//! The one error type of pgkeep: a kind (which fixes the process exit code), a lower-case
//! one-line message, an optional `hint:` line and the underlying cause.
//!
//! Rules (after pgBackRest's CODING.md and rustic's error module):
//! - messages are lower-case, name the object concerned and say what went wrong, in one line;
//! - a hint says what the operator can do about it;
//! - exit codes are stable: scripts and PostgreSQL itself rely on them. `1` is reserved for
//!   "WAL file not in the archive" (what `restore_command` must answer for a missing file) and
//!   "declined" (what Patroni's replica methods answer to hand over to the next method), and
//!   no kind's code exceeds 125, because PostgreSQL aborts recovery when `restore_command`
//!   exits > 125. archive-get uses exactly that on purpose: an error that must not end
//!   recovery short is marked [`Error::stopping_recovery`] and exits `200 + its code`;
//! - only `main` turns an error into an exit; nothing below it exits the process.

use std::fmt;

/// What went wrong, coarsely: each kind has its own stable exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The requested WAL file is not in the repository (archive-get: PostgreSQL's "not found").
    NotFound,
    /// A Patroni method declines (create-replica: no backup, or too much WAL to replay), so
    /// Patroni tries its next method. Shares exit code 1 with `NotFound`: both say "not from
    /// here, try elsewhere", which is what the callers (PostgreSQL, Patroni) act on.
    Declined,
    /// The configuration file or environment is malformed or inconsistent.
    Config,
    /// The repository has not been initialised (no repo.json) or does not exist.
    RepoMissing,
    /// The repository belongs to another cluster (system id, version or segment size differ).
    RepoMismatch,
    /// The input is not what it claims to be (not a WAL file, truncated, wrong name, ...).
    InvalidInput,
    /// Another, different file is already stored under the same name.
    Conflict,
    /// The store could not be reached, or did not answer within the deadline.
    Unreachable,
    /// The store refused our credentials or permissions.
    Auth,
    /// A stored object failed its checksum or could not be decoded.
    Corrupt,
    /// A local file-system operation failed.
    Io,
    /// PostgreSQL could not be reached or answered unexpectedly.
    Postgres,
    /// An invariant of pgkeep itself was broken; always a bug.
    Internal,
    /// Stopped by a signal (SIGTERM, SIGINT) before it could finish; what it started was
    /// cleaned up (a restore drill: its sandbox removed, its report stored).
    Interrupted,
    /// An encrypted repository cannot be opened: no passphrase, a wrong one, or a cipher that
    /// differs from the one the repository was initialised with. Nothing was read or written.
    Key,
}

impl ErrorKind {
    /// The process exit code for this kind. Stable: documented in the README.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::NotFound | ErrorKind::Declined => 1,
            // 2 is clap's usage error.
            ErrorKind::Config => 3,
            ErrorKind::RepoMissing => 4,
            ErrorKind::RepoMismatch => 5,
            ErrorKind::InvalidInput => 6,
            ErrorKind::Conflict => 7,
            ErrorKind::Unreachable => 8,
            ErrorKind::Auth => 9,
            ErrorKind::Corrupt => 10,
            ErrorKind::Io => 11,
            ErrorKind::Postgres => 12,
            ErrorKind::Internal => 13,
            ErrorKind::Interrupted => 14,
            ErrorKind::Key => 15,
        }
    }

    /// Every kind, for lookups by label (the WAL service sends kinds by label).
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::NotFound,
        ErrorKind::Declined,
        ErrorKind::Config,
        ErrorKind::RepoMissing,
        ErrorKind::RepoMismatch,
        ErrorKind::InvalidInput,
        ErrorKind::Conflict,
        ErrorKind::Unreachable,
        ErrorKind::Auth,
        ErrorKind::Corrupt,
        ErrorKind::Io,
        ErrorKind::Postgres,
        ErrorKind::Internal,
        ErrorKind::Interrupted,
        ErrorKind::Key,
    ];

    /// The kind whose `label` this is.
    pub fn from_label(label: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.label() == label)
    }

    /// The word printed before the message, e.g. `error[conflict]: ...`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not-found",
            ErrorKind::Declined => "declined",
            ErrorKind::Config => "config",
            ErrorKind::RepoMissing => "repo-missing",
            ErrorKind::RepoMismatch => "repo-mismatch",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Auth => "auth",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Io => "io",
            ErrorKind::Postgres => "postgres",
            ErrorKind::Internal => "internal",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Key => "key",
        }
    }
}

/// pgkeep's error: build with [`Error::new`], add a hint with [`Error::hint`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    stops_recovery: bool,
}

/// Added to an error's code when it must stop PostgreSQL's recovery (`restore_command` exits
/// above 125): 210 is a damaged object, 208 an unreachable store, 211 a local I/O error.
pub const STOP_RECOVERY_BASE: u8 = 200;

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            source: None,
            stops_recovery: false,
        }
    }

    /// Marks this error as one that must stop PostgreSQL's recovery rather than be taken for
    /// "the archive ends here": the process exits `STOP_RECOVERY_BASE + code`.
    pub fn stopping_recovery(mut self) -> Self {
        self.stops_recovery = true;
        self
    }

    /// The process exit code: the kind's, or above 125 when the error stops recovery.
    pub fn exit_code(&self) -> u8 {
        let code = self.kind.exit_code();
        if self.stops_recovery {
            STOP_RECOVERY_BASE + code
        } else {
            code
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// A local I/O failure on `path` while doing `what`.
    pub fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        let (kind, hint) = match err.kind() {
            std::io::ErrorKind::NotFound => (
                ErrorKind::InvalidInput,
                "check the path (PostgreSQL passes %p relative to the data directory)",
            ),
            std::io::ErrorKind::PermissionDenied => (
                ErrorKind::Io,
                "run pgkeep as the user that owns the file (usually postgres)",
            ),
            _ => (
                ErrorKind::Io,
                "check the file system: free space, permissions, mounts",
            ),
        };
        Error::new(kind, format!("cannot {what} {}: {err}", path.display()))
            .hint(hint)
            .source(err)
    }

    /// The one-line form: message, then the innermost cause when it adds something.
    /// What a program prints for this error on stderr: `<program>: error[<kind>]: <message>`,
    /// then a `hint:` line when there is one.
    pub fn report(&self, program: &str) -> String {
        let mut out = format!(
            "{program}: error[{}]: {}",
            self.kind.label(),
            self.one_line()
        );
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\nhint: {hint}"));
        }
        out
    }

    pub fn one_line(&self) -> String {
        let mut line = self.message.clone();
        if let Some(src) = &self.source {
            let cause = root_cause(src.as_ref()).to_string();
            if !cause.is_empty() && !line.contains(&cause) {
                line.push_str(": ");
                line.push_str(&cause);
            }
        }
        line.replace('\n', " ")
    }
}

fn root_cause<'a>(
    mut err: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    while let Some(next) = err.source() {
        err = next;
    }
    err
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.one_line())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_safe_for_restore_command() {
        let kinds = [
            ErrorKind::NotFound,
            ErrorKind::Config,
            ErrorKind::RepoMissing,
            ErrorKind::RepoMismatch,
            ErrorKind::InvalidInput,
            ErrorKind::Conflict,
            ErrorKind::Unreachable,
            ErrorKind::Auth,
            ErrorKind::Corrupt,
            ErrorKind::Io,
            ErrorKind::Postgres,
            ErrorKind::Internal,
            ErrorKind::Interrupted,
            ErrorKind::Key,
        ];
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(codes.iter().all(|&c| c > 0 && c <= 125 && c != 2));
        assert_eq!(
            ErrorKind::Declined.exit_code(),
            ErrorKind::NotFound.exit_code()
        );
    }

    #[test]
    fn one_line_includes_root_cause_without_newlines() {
        let io = std::io::Error::other("disk\nfull");
        let e = Error::new(ErrorKind::Io, "cannot write x").source(io);
        assert_eq!(e.one_line(), "cannot write x: disk full");
    }

    #[test]
    fn errors_that_stop_recovery_exit_above_125() {
        let e = Error::new(ErrorKind::Corrupt, "damaged");
        assert_eq!(e.exit_code(), 10);
        let e = e.stopping_recovery();
        assert_eq!(e.exit_code(), 210);
        assert!(e.exit_code() > 125);
    }
}
