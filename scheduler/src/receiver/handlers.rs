//! The receiver's two routes. PUT: authenticate (the token picks the cluster), check the name,
//! take a request permit, refuse an oversized body by its length before reading it, read it
//! within the read timeout and the size limit, check its sha256 against the client's, then the
//! same checks and store as the direct path; "stored" is answered only once the store has
//! confirmed it (or the spool has it durably). GET: the spooled file or the repository's,
//! verified, with its sha256. Every refusal stores nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pgkeep::command::{archive_get, archive_push, blocking};
use pgkeep::error::{Error, ErrorKind};
use pgkeep::pg::{WalFileName, WalSegSize};
use pgkeep::service::client::sha256_hex;
use pgkeep::service::wire::{
    self, DIGEST_HEADER, ErrorAnswer, Outcome, PushAnswer, SEG_SIZE_HEADER,
};

use super::{Cluster, Receiver};
use crate::auth;
use crate::state;

/// How long a request waits for a permit before it is told to come back (503).
const PERMIT_WAIT: Duration = Duration::from_secs(5);

/// An error and the status it is answered with.
struct Refused {
    status: StatusCode,
    error: Error,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Refused {
        let status = StatusCode::from_u16(wire::status_of(error.kind()))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Refused { status, error }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(ErrorAnswer::of(&self.error))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

fn unauthorised() -> Response {
    Refused {
        status: StatusCode::UNAUTHORIZED,
        error: Error::new(ErrorKind::Auth, "no valid token for this service")
            .hint("server.token_file must hold the token pgkeepd has for this cluster (sent as Authorization: Bearer)"),
    }
    .into_response()
}

pub async fn put_wal(
    State(r): State<Arc<Receiver>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let given = auth::bearer(headers.get(header::AUTHORIZATION));
    let Some(cluster) = r.cluster_for(given.as_ref()) else {
        drain(body, r.read_timeout).await;
        return unauthorised();
    };
    let start = Instant::now();
    let result = receive(&r, cluster, &file, &headers, body).await;
    let ms = start.elapsed().as_millis();
    let outcome = match &result {
        Ok(a) => {
            tracing::info!(cluster = cluster.name, file, outcome = ?a.outcome, ms, "received");
            outcome_label(a.outcome)
        }
        Err(e) => {
            tracing::warn!(cluster = cluster.name, file, status = e.status.as_u16(), error = %e.error.one_line(), "push refused");
            if e.status.is_client_error() {
                "refused"
            } else {
                "failed"
            }
        }
    };
    state::with(&r.status, |s| {
        if let Some(i) = s
            .service
            .as_mut()
            .and_then(|svc| svc.clusters.get_mut(&cluster.name))
        {
            *i.pushes.entry(outcome.to_string()).or_default() += 1;
            if result.is_ok() {
                i.newest_received = Some(file.clone());
                i.newest_received_at = Some(r.clock.now());
            }
        }
        if let (Some(svc), Some(spool)) = (s.service.as_mut(), &r.spool)
            && matches!(&result, Ok(a) if a.outcome == Outcome::Spooled)
        {
            svc.spool = Some(spool.backlog());
        }
    });
    match result {
        Ok(a) => {
            let status = StatusCode::from_u16(a.outcome.status()).unwrap_or(StatusCode::OK);
            (status, seg_header(a.seg_size), axum::Json(a)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Stored => "stored",
        Outcome::AlreadyStored => "already-stored",
        Outcome::Spooled => "spooled",
    }
}

fn seg_header(seg: u32) -> [(&'static str, String); 1] {
    [(SEG_SIZE_HEADER, seg.to_string())]
}

fn wal_name(file: &str, seg: WalSegSize) -> Result<WalFileName, Error> {
    WalFileName::parse(file, seg).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("not a wal file name: {e}")).hint(
            "the service takes only the WAL file names PostgreSQL archives; nothing was stored",
        )
    })
}

async fn permit(r: &Receiver) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
    match tokio::time::timeout(PERMIT_WAIT, r.permits.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(Error::new(
            ErrorKind::Unreachable,
            "pgkeepd is busy: every request slot is taken",
        )
        .hint("the client retries; raise service.max_requests if this persists")),
    }
}

/// Most a refused request's body is read for: answering without reading it would make most
/// clients see a reset connection instead of the answer (and report "unreachable" instead of
/// the refusal).
const DRAIN_LIMIT: usize = 64 << 20;

/// Reads and discards what remains of a refused request's body (bounded in size and time).
async fn drain(body: Body, timeout: Duration) {
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    let _ = tokio::time::timeout(timeout, async {
        use futures::StreamExt;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

async fn receive(
    r: &Receiver,
    c: &Cluster,
    file: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<PushAnswer, Refused> {
    let mut body = Some(body);
    let checked = precheck(r, c, file, headers).await;
    let (repo, name, limit, digest, _permit) = match checked {
        Ok(v) => v,
        Err(e) => {
            if let Some(b) = body.take() {
                drain(b, r.read_timeout).await;
            }
            return Err(e);
        }
    };
    let seg = repo.info().seg_size;
    let body = body
        .take()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "body taken twice"))?;
    let bytes = read_body(body, limit, r.read_timeout, file).await?;
    stored_or_spooled(r, c, file, repo, name, seg, digest, bytes).await
}

type Checked<'a> = (
    pgkeep::repo::Repo,
    WalFileName,
    usize,
    String,
    tokio::sync::SemaphorePermit<'a>,
);

/// What is checked before the body is read: the name, a request slot, the repository, the
/// declared length and the digest header.
async fn precheck<'a>(
    r: &'a Receiver,
    c: &Cluster,
    file: &str,
    headers: &HeaderMap,
) -> Result<Checked<'a>, Refused> {
    wal_name(file, WalSegSize::SMALLEST)?;
    let permit = permit(r).await?;
    let repo = c.repo().await?;
    let seg = repo.info().seg_size;
    let name = wal_name(file, seg)?;
    let limit = match name.segment() {
        Some(_) => seg.bytes() as usize,
        None => archive_push::MAX_TEXT_FILE as usize,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(file, limit));
    }
    let digest = headers
        .get(DIGEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("the push of {file} carries no sha256"),
            )
            .hint(format!(
                "send the raw file's sha256 (hex) in {DIGEST_HEADER}; nothing was stored"
            ))
        })?;
    Ok((repo, name, limit, digest, permit))
}

/// Checks the received bytes, then stores them (or spools them while the store is down).
#[allow(clippy::too_many_arguments)]
async fn stored_or_spooled(
    r: &Receiver,
    c: &Cluster,
    file: &str,
    repo: pgkeep::repo::Repo,
    name: WalFileName,
    seg: WalSegSize,
    digest: String,
    bytes: Bytes,
) -> Result<PushAnswer, Refused> {
    let got = {
        let b = bytes.clone();
        blocking(move || Ok(sha256_hex(&b))).await?
    };
    if got != digest {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{file} arrived with sha256 {got}, the client sent {digest}: damaged in transit"
            ),
        )
        .hint("nothing was stored; the client sends it again")
        .into());
    }
    let label = PathBuf::from(file);
    let prepared = archive_push::receive(&repo, &label, &name, bytes.clone()).await?;
    let answer = |outcome, stored_size| PushAnswer {
        file: file.to_string(),
        outcome,
        plain_size: bytes.len() as u64,
        stored_size,
        sha256: digest.clone(),
        seg_size: seg.bytes(),
    };
    // Spooled earlier and not uploaded yet: answer as the store would.
    if let Some(spool) = &r.spool
        && let Some(prev) = spool.get(&c.name, file)
    {
        if sha256_hex(&prev) == digest {
            return Ok(answer(Outcome::Spooled, 0));
        }
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("{file} is already in pgkeepd's spool with different content"),
        )
        .hint("another cluster or a diverged timeline pushes under this name")
        .into());
    }
    let stored =
        tokio::time::timeout(r.store_timeout, archive_push::store(&repo, &name, prepared)).await;
    let unreachable = match stored {
        Ok(Ok(p)) => {
            let outcome = match p.outcome {
                archive_push::PushOutcome::AlreadyStored => Outcome::AlreadyStored,
                _ => Outcome::Stored,
            };
            return Ok(answer(outcome, p.stored_size));
        }
        Ok(Err(e)) if e.kind() != ErrorKind::Unreachable => return Err(e.into()),
        Ok(Err(e)) => e,
        Err(_) => Error::new(
            ErrorKind::Unreachable,
            format!("the store did not confirm {file} within service.store_timeout"),
        )
        .hint("check the store; PostgreSQL retries the push"),
    };
    let Some(spool) = &r.spool else {
        return Err(unreachable.into());
    };
    tracing::warn!(cluster = c.name, file, error = %unreachable.one_line(), "store unreachable: spooling");
    // A blocking write and two fsyncs: on a blocking-capable thread.
    tokio::task::block_in_place(|| spool.put(&c.name, file, &bytes))?;
    Ok(answer(Outcome::Spooled, 0))
}

fn too_large(file: &str, limit: usize) -> Refused {
    Refused {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        error: Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{file} is larger than {limit} bytes, the most a WAL file of this cluster holds"
            ),
        )
        .hint("nothing was stored"),
    }
}

/// The body, at most `limit` bytes, within `timeout`: a slow or vanished client is cut off.
async fn read_body(
    body: Body,
    limit: usize,
    timeout: Duration,
    file: &str,
) -> Result<Bytes, Refused> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(file, limit)),
        Ok(Err(e)) => Err(Error::new(
            ErrorKind::InvalidInput,
            format!("the body of {file} was cut off: {e}"),
        )
        .hint("nothing was stored; the client sends it again")
        .into()),
        Err(_) => Err(Refused {
            status: StatusCode::REQUEST_TIMEOUT,
            error: Error::new(
                ErrorKind::Unreachable,
                format!("the body of {file} did not arrive within {} s", timeout.as_secs()),
            )
            .hint("nothing was stored; a slow link or client: raise service.read_timeout if it is legitimate"),
        }),
    }
}

pub async fn get_wal(
    State(r): State<Arc<Receiver>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let given = auth::bearer(headers.get(header::AUTHORIZATION));
    let Some(cluster) = r.cluster_for(given.as_ref()) else {
        return unauthorised();
    };
    let result = serve(&r, cluster, &file).await;
    let outcome = match &result {
        Ok(_) => "served",
        Err(e) if e.error.kind() == ErrorKind::NotFound => "not-found",
        Err(e) => {
            tracing::warn!(cluster = cluster.name, file, error = %e.error.one_line(), "get failed");
            "failed"
        }
    };
    state::with(&r.status, |s| {
        if let Some(i) = s
            .service
            .as_mut()
            .and_then(|svc| svc.clusters.get_mut(&cluster.name))
        {
            *i.gets.entry(outcome.to_string()).or_default() += 1;
        }
    });
    match result {
        Ok((bytes, digest, seg)) => (
            StatusCode::OK,
            [(DIGEST_HEADER, digest), (SEG_SIZE_HEADER, seg.to_string())],
            bytes,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn serve(r: &Receiver, c: &Cluster, file: &str) -> Result<(Bytes, String, u32), Refused> {
    wal_name(file, WalSegSize::SMALLEST)?;
    let _permit = permit(r).await?;
    // Acknowledged and not uploaded yet: served from the spool, even while the store (and so
    // the repository) cannot be reached.
    let (bytes, seg) = match r.spool.as_ref().and_then(|s| s.get(&c.name, file)) {
        Some(b) => {
            let seg = c.opened().map_or(0, |repo| repo.info().seg_size.bytes());
            (b, seg)
        }
        None => {
            let repo = c.repo().await?;
            let seg = repo.info().seg_size;
            let name = wal_name(file, seg)?;
            let b = archive_get::get_bytes(&repo, &name).await?;
            (Bytes::from(b), seg.bytes())
        }
    };
    let b = bytes.clone();
    let digest = blocking(move || Ok(sha256_hex(&b))).await?;
    Ok((bytes, digest, seg))
}
