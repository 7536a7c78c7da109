//! The receiver's listener: plain TCP on loopback or TLS (rustls, optionally requiring client
//! certificates from `client_ca_file`), each connection served by hyper's HTTP/1 with a
//! header read timeout (a slowloris cannot hold a connection open by trickling headers), and
//! at most `max_conns` connections at once (more are closed at accept).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use pgkeep::config::ServiceTls;
use pgkeep::error::{Error, ErrorKind, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::WebPkiClientVerifier;

fn tls_error(key: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{key} {}: {e}", path.display()))
        .hint(format!("{key} must be a readable PEM file"))
}

/// The TLS acceptor for `tls`: a bad certificate, key or CA fails the start.
pub fn acceptor(tls: &ServiceTls) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| tls_error("service.cert_file", &tls.cert_file, e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| tls_error("service.key_file", &tls.key_file, e))?;
    let builder = ServerConfig::builder();
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| tls_error("service.client_ca_file", ca, e))?
            {
                let cert = cert.map_err(|e| tls_error("service.client_ca_file", ca, e))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error("service.client_ca_file", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| tls_error("service.client_ca_file", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("service.cert_file", &tls.cert_file, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `stop` changes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    read_timeout: Duration,
    max_conns: usize,
    mut stop: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(max_conns));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
            tracing::warn!(%peer, max_conns, "too many connections: closing this one");
            continue;
        };
        let (tls, app) = (tls.clone(), app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match tls {
                None => connection(stream, app, read_timeout).await,
                Some(acceptor) => {
                    match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => connection(s, app, read_timeout).await,
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<I>(io: I, app: Router, read_timeout: Duration)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(app))
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended");
    }
}
