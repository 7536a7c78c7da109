//! Reaching a store: builds the object_store client for a local directory (fsync on) or an
//! S3-compatible service (path-style, retries with decorrelated-jitter backoff, credentials from
//! the standard AWS chain through aws-config), and maps store errors to pgkeep's kinds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, CredentialProvider, ObjectStore, RetryConfig};
use tokio::sync::Mutex;

use crate::config::{RepositoryConfig, StoreConfig};
use crate::error::{Error, ErrorKind, Result};

/// Which repository a configuration names, without reaching it: the store (directory, or
/// endpoint, bucket and prefix) and the cluster folder. Local state tied to one repository
/// (look-ahead records) carries it, so that it is never taken for another's.
pub fn identity(cfg: &RepositoryConfig) -> String {
    match &cfg.store {
        StoreConfig::Local { path } => format!("{}#{}", path.display(), cfg.cluster),
        StoreConfig::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            ..
        } => format!(
            "s3://{bucket}/{prefix}@{}#{}",
            endpoint.as_deref().unwrap_or(region),
            cfg.cluster
        ),
    }
}

/// Builds the store; `create` makes a missing local directory (only `init` does that).
pub fn build(cfg: &RepositoryConfig, create: bool) -> Result<(Arc<dyn ObjectStore>, String)> {
    if !cfg.is_configured() {
        return Err(Error::new(
            ErrorKind::Config,
            "no repository is configured on this node: its archive commands go through pgkeepd ([server])",
        )
        .hint("run this command where pgkeepd's [repository] is configured, or add a [repository] section"));
    }
    match &cfg.store {
        StoreConfig::Local { path } => {
            let location = path.display().to_string();
            if create {
                std::fs::create_dir_all(path)
                    .map_err(|e| Error::io("create repository directory", path, e))?;
            }
            if !path.is_dir() {
                return Err(Error::new(
                    ErrorKind::RepoMissing,
                    format!("repository directory {location} does not exist"),
                )
                .hint("run 'pgkeep init', or fix repository.path"));
            }
            let fs = LocalFileSystem::new_with_prefix(path)
                .map_err(|e| store_error("open", &location, e))?
                // Durability: every put fsyncs the file and its directory before returning,
                // so an acknowledged WAL segment survives a power loss.
                .with_fsync(true)
                .with_automatic_cleanup(true);
            Ok((Arc::new(fs), location))
        }
        StoreConfig::S3 {
            bucket,
            prefix,
            region,
            endpoint,
            allow_http,
            virtual_hosted_style,
            ca_file,
        } => {
            let location = if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            };
            let retry = RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: cfg.max_retries,
                retry_timeout: Duration::from_secs(300),
            };
            let mut client = ClientOptions::new()
                .with_timeout(cfg.request_timeout)
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_http(*allow_http);
            if let Some(path) = ca_file {
                client = trust(client, path)?;
            }
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_virtual_hosted_style_request(*virtual_hosted_style)
                .with_retry(retry)
                .with_client_options(client)
                .with_credentials(credentials(region));
            if let Some(ep) = endpoint {
                b = b.with_endpoint(ep);
            }
            let s3 = b.build().map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("invalid s3 repository settings: {e}"),
                )
                .hint("check repository.bucket, region and endpoint")
            })?;
            Ok((Arc::new(s3), location))
        }
    }
}

/// Adds the CA certificates of a PEM bundle to the trusted roots.
fn trust(mut client: ClientOptions, path: &std::path::Path) -> Result<ClientOptions> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::io("read repository.ca_file", path, e).hint("repository.ca_file must be a PEM file")
    })?;
    let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!(
                "repository.ca_file {} holds no usable certificate: {e}",
                path.display()
            ),
        )
        .hint("repository.ca_file must be a PEM bundle of CA certificates")
    })?;
    for c in certs {
        client = client.with_root_certificate(c);
    }
    Ok(client)
}

fn store_error(what: &str, location: &str, e: object_store::Error) -> Error {
    error(what, &Path::from(location.trim_start_matches('/')), e)
}

/// Maps an object_store error on `path` to a pgkeep error with a hint.
pub fn error(what: &str, path: &Path, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let (kind, hint) = match &e {
        E::NotFound { .. } => (ErrorKind::NotFound, "the object does not exist"),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            ErrorKind::Auth,
            "check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile or role) and the bucket policy",
        ),
        E::AlreadyExists { .. } | E::Precondition { .. } => (
            ErrorKind::Conflict,
            "another object is stored under this name",
        ),
        _ => classify_generic(&e),
    };
    Error::new(kind, format!("cannot {what} {path}"))
        .hint(hint)
        .source(e)
}

fn classify_generic(e: &object_store::Error) -> (ErrorKind, &'static str) {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    // "403" alone would match a retry's elapsed time ("in 1.403s"): a connection reset
    // then read as a credentials problem. Only a status code counts.
    let forbidden = [
        "403 forbidden",
        "status: 403",
        "status code: 403",
        "status 403",
    ]
    .iter()
    .any(|p| lower.contains(p));
    if forbidden
        || lower.contains("accessdenied")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("credential")
    {
        (
            ErrorKind::Auth,
            "check the AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile or role) and the bucket policy",
        )
    } else if has_io_source(e) && !lower.contains("http") {
        (
            ErrorKind::Io,
            "check the repository directory's permissions and free space",
        )
    } else {
        (
            ErrorKind::Unreachable,
            "check repository.endpoint and the network; pgkeep retried with backoff before giving up",
        )
    }
}

fn has_io_source(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = cur {
        if s.is::<std::io::Error>() {
            return true;
        }
        cur = s.source();
    }
    false
}

/// Static credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` when both are set —
/// the first link of the standard chain, so the outcome is the same — else the whole chain.
/// The shortcut matters on the archive_command hot path: building the chain costs tens of
/// milliseconds (it sets up its own HTTPS client for STS and instance metadata).
fn credentials(region: &str) -> Arc<dyn CredentialProvider<Credential = AwsCredential>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(key_id), Some(secret_key)) => {
            Arc::new(object_store::StaticCredentialProvider::new(AwsCredential {
                key_id,
                secret_key,
                token: var("AWS_SESSION_TOKEN"),
            }))
        }
        _ => Arc::new(AwsChain::new(region.to_string())),
    }
}

/// Credentials from the standard AWS chain (environment, shared profile, web identity, ECS,
/// instance metadata), resolved lazily and cached until shortly before they expire.
#[derive(Debug)]
struct AwsChain {
    region: String,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl AwsChain {
    fn new(region: String) -> Self {
        AwsChain {
            region,
            cached: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AwsChain {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        use aws_credential_types::provider::ProvideCredentials;
        let mut cached = self.cached.lock().await;
        if let Some((cred, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|t| t > SystemTime::now() + Duration::from_secs(300));
            if fresh {
                return Ok(Arc::clone(cred));
            }
        }
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .region(aws_config::Region::new(self.region.clone()))
            .build()
            .await;
        let creds = chain.provide_credentials().await.map_err(|e| {
            object_store::Error::Unauthenticated {
                path: String::new(),
                source: format!(
                    "no AWS credentials found ({e}): set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or a role"
                )
                .into(),
            }
        })?;
        let cred = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_string(),
            secret_key: creds.secret_access_key().to_string(),
            token: creds.session_token().map(str::to_string),
        });
        *cached = Some((Arc::clone(&cred), creds.expiry()));
        Ok(cred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(text: &str) -> ErrorKind {
        let e = object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        error("read", &Path::from("x"), e).kind()
    }

    #[test]
    fn a_status_403_is_auth_but_a_duration_holding_403_is_not() {
        assert_eq!(
            kind_of("Error after 10 retries in 1.403291s, source: connection reset by peer"),
            ErrorKind::Unreachable
        );
        assert_eq!(
            kind_of("Server returned non-2xx status code: 403 Forbidden: <Error/>"),
            ErrorKind::Auth
        );
        assert_eq!(kind_of("<Code>AccessDenied</Code>"), ErrorKind::Auth);
    }
}
