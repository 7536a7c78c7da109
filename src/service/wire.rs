//! The wire protocol of the WAL service, shared by both ends so they cannot drift:
//!
//! ```text
//! PUT /v1/wal/<file>   body: the raw WAL file; x-pgkeep-sha256: its sha256 (hex)
//!     201 stored | 200 already stored (identical) | 202 spooled (kept durably by pgkeepd,
//!     uploaded when the store returns), each with a JSON PushAnswer
//! GET /v1/wal/<file>   200: the raw file, x-pgkeep-sha256; 404 + {"kind":"not-found"}
//! every request: Authorization: Bearer <the cluster's token>; the token alone decides the
//! cluster (no cluster in the path, so one cluster's token cannot name another's WAL)
//! errors: an HTTP status and a JSON ErrorAnswer whose `kind` is pgkeep's error label, so the
//! client exits with the code the direct path would have given
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// The route prefix; the WAL file name follows.
pub const WAL_PATH: &str = "/v1/wal/";
/// The sha256 (hex) of the raw WAL file, on a push and on a get's answer.
pub const DIGEST_HEADER: &str = "x-pgkeep-sha256";
/// The WAL segment size of the cluster's repository, on every successful answer.
pub const SEG_SIZE_HEADER: &str = "x-pgkeep-wal-seg-size";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Stored,
    AlreadyStored,
    Spooled,
}

impl Outcome {
    pub fn status(self) -> u16 {
        match self {
            Outcome::Stored => 201,
            Outcome::AlreadyStored => 200,
            Outcome::Spooled => 202,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushAnswer {
    pub file: String,
    pub outcome: Outcome,
    pub plain_size: u64,
    pub stored_size: u64,
    /// sha256 of the raw file, hex.
    pub sha256: String,
    pub seg_size: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// pgkeep's error label (`conflict`, `not-found`, ...).
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ErrorAnswer {
    pub fn of(e: &Error) -> ErrorAnswer {
        ErrorAnswer {
            kind: e.kind().label().to_string(),
            message: e.one_line(),
            hint: e.hint_text().map(str::to_string),
        }
    }
}

/// The HTTP status pgkeepd answers an error of `kind` with.
pub fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::NotFound | ErrorKind::Declined => 404,
        ErrorKind::InvalidInput => 400,
        ErrorKind::Auth => 401,
        ErrorKind::Conflict => 409,
        ErrorKind::RepoMismatch => 422,
        ErrorKind::Unreachable | ErrorKind::Interrupted => 503,
        ErrorKind::Config
        | ErrorKind::RepoMissing
        | ErrorKind::Corrupt
        | ErrorKind::Io
        | ErrorKind::Postgres
        | ErrorKind::Internal
        | ErrorKind::Key => 500,
    }
}

/// The error an answer with `status` and `body` stands for, on the client. The body's label
/// wins. Without one the answer did not come from pgkeepd's receiver (a proxy, another web
/// server at server.url): a bare 404 then must not read as "not in the archive", or recovery
/// would end early, so it is a configuration error.
pub fn error_of(status: u16, body: &[u8], url: &str) -> Error {
    if let Ok(a) = serde_json::from_slice::<ErrorAnswer>(body)
        && let Some(kind) = ErrorKind::from_label(&a.kind)
    {
        let e = Error::new(kind, format!("pgkeepd at {url}: {}", a.message));
        return match a.hint {
            Some(h) => e.hint(h),
            None => e,
        };
    }
    let (kind, hint) = match status {
        401 | 403 => (
            ErrorKind::Auth,
            "check server.token_file: pgkeepd knows the token of each cluster it serves",
        ),
        413 => (
            ErrorKind::InvalidInput,
            "the file is larger than a WAL file of this cluster",
        ),
        408 | 429 | 502..=504 => (
            ErrorKind::Unreachable,
            "pgkeepd or a proxy before it is busy or down; the command is retried by PostgreSQL",
        ),
        _ => (
            ErrorKind::Config,
            "server.url must name pgkeepd's [service] listen address (nothing else answers there)",
        ),
    };
    Error::new(
        kind,
        format!("{url} answered HTTP {status} without pgkeepd's answer"),
    )
    .hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_travels_and_comes_back_as_itself() {
        for kind in ErrorKind::ALL {
            let e = Error::new(kind, "m").hint("h");
            let body = serde_json::to_vec(&ErrorAnswer::of(&e)).unwrap_or_default();
            let back = error_of(status_of(kind), &body, "http://x");
            assert_eq!(back.kind(), kind);
            assert_eq!(back.exit_code(), e.exit_code());
            assert_eq!(back.hint_text(), Some("h"));
        }
    }

    #[test]
    fn a_bare_404_is_not_the_end_of_the_archive() {
        let e = error_of(404, b"<html>not found</html>", "http://x");
        assert_ne!(e.kind(), ErrorKind::NotFound);
        assert_eq!(error_of(503, b"", "u").kind(), ErrorKind::Unreachable);
        assert_eq!(error_of(401, b"", "u").kind(), ErrorKind::Auth);
    }
}
