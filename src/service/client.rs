//! The client of pgkeepd's WAL service: one authenticated PUT or GET per WAL file over rustls,
//! bounded by the command's deadline, retried while pgkeepd is unreachable or busy (a push is
//! idempotent: an identical re-push is "already stored").

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::wire::{self, DIGEST_HEADER, PushAnswer, SEG_SIZE_HEADER, WAL_PATH};
use crate::config::ServerConfig;
use crate::error::{Error, ErrorKind, Result};

/// How often a request is tried again while pgkeepd is unreachable or answers 502/503/504.
const RETRIES: u32 = 4;

pub struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

/// The token stays out of every log line and error.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A WAL file served by pgkeepd, its sha256 checked.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Bytes,
    pub seg_size: Option<u32>,
}

/// The sha256 of `bytes`, hex: what a push sends and a get checks.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a token file: one line of at least 16 visible ASCII characters (it goes into an
/// HTTP header). `key` names the setting in errors; the token itself is never printed.
pub fn read_token(path: &Path, key: &str) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read {key} {}: {e}", path.display()),
        )
        .hint(format!(
            "{key} must name a file readable by this user, holding the token"
        ))
    })?;
    let token = text.trim();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{key} {} does not hold a usable token", path.display()),
        )
        .hint("a token is one line of at least 16 visible ASCII characters, e.g. from 'openssl rand -hex 32'"));
    }
    Ok(token.to_string())
}

fn read_file(path: &Path, key: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read {key} {}: {e}", path.display()),
        )
        .hint(format!("{key} must be a readable PEM file"))
    })
}

fn tls_error(key: &str, path: &Path, e: reqwest::Error) -> Error {
    Error::new(ErrorKind::Config, format!("{key} {}: {e}", path.display()))
        .hint(format!("{key} must be a PEM file"))
}

impl Client {
    /// A client for `cfg`; every request ends within `timeout`.
    pub fn new(cfg: &ServerConfig, timeout: Duration) -> Result<Client> {
        let token = read_token(&cfg.token_file, "server.token_file")?;
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .https_only(cfg.url.starts_with("https://"));
        if cfg.url.starts_with("http://") {
            // No TLS on this URL: loading the system's root certificates would cost every
            // archive command tens of milliseconds for nothing.
            b = b.tls_certs_only(Vec::<reqwest::Certificate>::new());
        } else if let Some(path) = &cfg.ca_file {
            let pem = read_file(path, "server.ca_file")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| tls_error("server.ca_file", path, e))?;
            // A private CA: trust it alone, not every public one.
            b = b.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &cfg.identity {
            let mut pem = read_file(cert, "server.cert_file")?;
            pem.push(b'\n');
            pem.extend(read_file(key, "server.key_file")?);
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| tls_error("server.cert_file", cert, e))?;
            b = b.identity(id);
        }
        let http = b.build().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot set up the service client: {e}"),
            )
            .hint("check server.ca_file, server.cert_file and server.key_file")
        })?;
        Ok(Client {
            http,
            url: cfg.url.clone(),
            token,
        })
    }

    /// pgkeepd's address, to name it in messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn wal_url(&self, file: &str) -> String {
        format!("{}{WAL_PATH}{file}", self.url)
    }

    /// Sends `bytes`, WAL file `file` with sha256 `sha256` (hex). Returns once pgkeepd has
    /// stored it (or spooled it durably); pgkeepd checks the digest before storing anything.
    pub async fn push(&self, file: &str, bytes: Bytes, sha256: &str) -> Result<PushAnswer> {
        let url = self.wal_url(file);
        let resp = self
            .send(|| {
                self.http
                    .put(&url)
                    .bearer_auth(&self.token)
                    .header(DIGEST_HEADER, sha256)
                    .body(bytes.clone())
            })
            .await?;
        let status = resp.status().as_u16();
        if !matches!(status, 200..=202) {
            return Err(self.error(status, resp).await);
        }
        let answer: PushAnswer = resp.json().await.map_err(|e| self.broken(e))?;
        if answer.sha256 != sha256 || answer.file != file || answer.outcome.status() != status {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "pgkeepd at {} answered the push of {file} for another file or digest",
                    self.url
                ),
            )
            .hint("a proxy in between mixes answers up; point server.url at pgkeepd itself"));
        }
        Ok(answer)
    }

    /// Fetches WAL file `file`; a `NotFound` error when pgkeepd says it is not archived.
    pub async fn get(&self, file: &str) -> Result<Fetched> {
        let url = self.wal_url(file);
        let resp = self
            .send(|| self.http.get(&url).bearer_auth(&self.token))
            .await?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.error(status, resp).await);
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (digest, seg_size) = (header(DIGEST_HEADER), header(SEG_SIZE_HEADER));
        let Some(digest) = digest else {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{} served {file} without its digest", self.url),
            )
            .hint("server.url must name pgkeepd's [service] listen address"));
        };
        let bytes = resp.bytes().await.map_err(|e| self.broken(e))?;
        let got = sha256_hex(&bytes);
        if got != digest {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{file} from pgkeepd at {} does not match its digest (sent {digest}, received {got})",
                    self.url
                ),
            )
            .hint("the transfer was damaged or cut; nothing was written"));
        }
        Ok(Fetched {
            bytes,
            seg_size: seg_size.and_then(|s| s.parse().ok()),
        })
    }

    /// Sends a request, again (with backoff) while pgkeepd cannot be reached or is busy.
    async fn send(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let mut delay = Duration::from_millis(100);
        for attempt in 0..=RETRIES {
            let last = attempt == RETRIES;
            match request().send().await {
                Ok(r) if !last && matches!(r.status().as_u16(), 502..=504) => {
                    tracing::debug!(status = r.status().as_u16(), "pgkeepd busy; retrying");
                }
                Ok(r) => return Ok(r),
                Err(e) if !last && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                    tracing::debug!(error = %e, "pgkeepd unreachable; retrying");
                }
                Err(e) => return Err(self.broken(e)),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(Error::new(
            ErrorKind::Internal,
            "retry loop ended without an answer",
        ))
    }

    async fn error(&self, status: u16, resp: reqwest::Response) -> Error {
        let body = resp.bytes().await.unwrap_or_default();
        wire::error_of(status, &body[..body.len().min(64 << 10)], &self.url)
    }

    fn broken(&self, e: reqwest::Error) -> Error {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        Error::new(
            ErrorKind::Unreachable,
            format!("cannot reach pgkeepd at {}: {e}: {cause}", self.url),
        )
        .hint("check server.url and that pgkeepd runs with a [service] section; PostgreSQL retries the command")
    }
}
