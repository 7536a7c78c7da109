//! The WAL service (`[service]`): pgkeepd receives each cluster's archive pushes and serves its
//! restore_command reads over HTTP(S), with exactly the semantics of the direct path (the same
//! `archive_push::receive`/`store` and `archive_get::get_bytes` units). The token decides the
//! cluster; one `Repo` per cluster is opened once and shared. Each request holds at most one
//! WAL file in memory and `max_requests` run at once, so memory is bounded; a body must arrive
//! within `read_timeout`. With a spool, WAL received while the store is unreachable is kept
//! durably and acknowledged, then uploaded in order by the flusher (`flush`).

mod flush;
mod handlers;
pub mod listen;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::put;
use pgkeep::config::{Config, ServiceConfig};
use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::repo::Repo;
use pgkeep::service::client::read_token;
use tokio::sync::{OnceCell, Semaphore, watch};

use crate::auth::TokenDigest;
use crate::clock::Clock;
use crate::state::{self, ServiceStatus, Shared};
use spool::Spool;

/// One cluster the service serves.
#[derive(Debug)]
pub struct Cluster {
    pub name: String,
    token: TokenDigest,
    repository: pgkeep::config::RepositoryConfig,
    repo: OnceCell<Repo>,
    /// Bounds how long opening the repository may take when the store does not answer.
    open_timeout: Duration,
}

impl Cluster {
    /// The cluster's repository, opened on first use and shared after that.
    pub async fn repo(&self) -> Result<Repo> {
        self.repo
            .get_or_try_init(|| async {
                tokio::time::timeout(self.open_timeout, Repo::open(&self.repository))
                    .await
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::Unreachable,
                            format!("cannot open the repository of cluster {}: the store did not answer in time", self.name),
                        )
                        .hint("check the store; the push is retried by PostgreSQL")
                    })?
            })
            .await
            .cloned()
    }

    /// The repository if it has been opened already.
    pub fn opened(&self) -> Option<&Repo> {
        self.repo.get()
    }
}

#[derive(Debug)]
pub struct Receiver {
    pub clusters: Vec<Cluster>,
    /// Requests in progress (each holds at most one WAL file in memory).
    pub permits: Semaphore,
    pub read_timeout: Duration,
    pub store_timeout: Duration,
    pub spool: Option<Spool>,
    pub status: Shared,
    pub clock: Clock,
}

impl Receiver {
    /// The cluster whose token the request carries. Every token is compared, in constant time.
    pub fn cluster_for(&self, given: Option<&TokenDigest>) -> Option<&Cluster> {
        let given = given?;
        let mut found = None;
        for c in &self.clusters {
            if c.token.matches(given) {
                found = Some(c);
            }
        }
        found
    }
}

/// Builds the receiver: reads every token (a missing or unusable one fails the start, as does
/// a token shared by two clusters) and opens the spool.
pub fn build(
    cfg: &Config,
    svc: &ServiceConfig,
    status: Shared,
    clock: Clock,
) -> Result<Arc<Receiver>> {
    let mut clusters: Vec<Cluster> = Vec::new();
    for c in &svc.clusters {
        let token = TokenDigest::of(&read_token(&c.token_file, "service.clusters.token_file")?);
        if clusters.iter().any(|o| o.token.matches(&token)) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("cluster {} has the same token as another cluster", c.name),
            )
            .hint("give every [[service.clusters]] its own token: the token decides which cluster's WAL a client may touch"));
        }
        let mut repository = cfg.repository.clone();
        repository.cluster = c.name.clone();
        clusters.push(Cluster {
            name: c.name.clone(),
            token,
            repository,
            repo: OnceCell::new(),
            open_timeout: svc.store_timeout.max(Duration::from_secs(5)),
        });
    }
    let names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
    let spool = svc
        .spool
        .as_ref()
        .map(|s| Spool::open(s, &names))
        .transpose()?;
    state::with(&status, |s| {
        s.service = Some(ServiceStatus {
            clusters: names
                .iter()
                .map(|n| (n.clone(), Default::default()))
                .collect(),
            spool: spool.as_ref().map(Spool::backlog),
        });
    });
    Ok(Arc::new(Receiver {
        clusters,
        permits: Semaphore::new(svc.max_requests),
        read_timeout: svc.read_timeout,
        store_timeout: svc.store_timeout,
        spool,
        status,
        clock,
    }))
}

pub fn router(r: Arc<Receiver>) -> Router {
    Router::new()
        .route(
            &format!("{}{{file}}", pgkeep::service::wire::WAL_PATH),
            put(handlers::put_wal).get(handlers::get_wal),
        )
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .with_state(r)
}

/// Binds `svc.listen` and serves until `stop`; also runs the spool's flusher.
pub async fn start(
    svc: &ServiceConfig,
    r: Arc<Receiver>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let tls = svc.tls.as_ref().map(listen::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(&svc.listen)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot listen on service.listen {}: {e}", svc.listen),
            )
            .hint("set service.listen to a free address, e.g. 127.0.0.1:7480")
        })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        "receiving WAL on {scheme}://{} for {} cluster(s)",
        svc.listen,
        r.clusters.len()
    );
    // Connections beyond the request cap wait in hyper for a permit; past this many they are
    // closed at accept.
    let max_conns = svc.max_requests * 4 + 16;
    let server = tokio::spawn(listen::serve(
        listener,
        tls,
        router(Arc::clone(&r)),
        svc.read_timeout,
        max_conns,
        stop.clone(),
    ));
    let flusher = tokio::spawn(flush::run(r, stop));
    Ok(vec![server, flusher])
}
