//! The WAL service's two sides: `[service]`, read by pgkeepd, receives the archive pushes and
//! serves restore_command's reads of every cluster listed in `[[service.clusters]]` (each with
//! its own token); `[server]`, read by `pgkeep archive-push`/`archive-get`, sends them there
//! instead of to the repository. Tokens stay in files: the configuration holds their paths.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Lenient, bounded, bounded_duration};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    listen: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    allow_http: Option<Lenient<bool>>,
    max_requests: Option<Lenient<usize>>,
    read_timeout: Option<String>,
    store_timeout: Option<String>,
    spool_path: Option<PathBuf>,
    spool_max_mib: Option<Lenient<u64>>,
    #[serde(default)]
    clusters: Vec<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: String,
    token_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    url: Option<String>,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    allow_http: Option<Lenient<bool>>,
}

/// TLS of the receiver: its certificate and key, and the CA its clients' certificates must
/// chain to (mutual TLS) when set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

/// One cluster the receiver serves: its folder in the repository and its token's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCluster {
    pub name: String,
    pub token_file: PathBuf,
}

/// Store-and-forward: WAL received while the store is unreachable, kept durably on local disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub listen: String,
    pub tls: Option<ServiceTls>,
    /// Requests handled at once; more wait briefly, then get 503 (each holds at most one WAL
    /// file in memory, so this bounds the receiver's memory).
    pub max_requests: usize,
    /// A request's headers and body must arrive within this (slow clients are cut off).
    pub read_timeout: Duration,
    /// A store write that takes longer counts as the store being unreachable.
    pub store_timeout: Duration,
    pub spool: Option<SpoolConfig>,
    pub clusters: Vec<ServiceCluster>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `http(s)://host:port`, without a path.
    pub url: String,
    pub token_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// The client certificate and key (PEM) when the service wants mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

fn config_error(msg: String, hint: &str) -> Error {
    Error::new(ErrorKind::Config, msg).hint(hint.to_string())
}

/// Loopback addresses, where plain HTTP carries the token no further than this machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl RawService {
    pub(super) fn resolve(self) -> Result<Option<ServiceConfig>> {
        let Some(listen) = self.listen else {
            if !self.clusters.is_empty() {
                return Err(config_error(
                    "[[service.clusters]] without service.listen".into(),
                    "set service.listen (e.g. \"127.0.0.1:7480\") to receive WAL",
                ));
            }
            return Ok(None);
        };
        let host = match listen.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && matches!(p.parse::<u32>(), Ok(1..=65535)) => h,
            _ => {
                return Err(config_error(
                    format!("service.listen = {listen} is not host:port"),
                    "set service.listen to an address such as 127.0.0.1:7480",
                ));
            }
        };
        let allow_http = self
            .allow_http
            .map(|v| v.get("service.allow_http"))
            .transpose()?
            .unwrap_or(false);
        let tls = match (self.cert_file, self.key_file, self.client_ca_file) {
            (Some(cert_file), Some(key_file), client_ca_file) => Some(ServiceTls {
                cert_file,
                key_file,
                client_ca_file,
            }),
            (None, None, None) => None,
            _ => {
                return Err(config_error(
                    "service.cert_file and service.key_file go together (and client_ca_file needs them)".into(),
                    "set both service.cert_file and service.key_file, or neither for plain HTTP on loopback",
                ));
            }
        };
        if tls.is_none() && !is_loopback(host) && !allow_http {
            return Err(config_error(
                format!(
                    "service.listen = {listen} is not a loopback address and no TLS is configured: tokens and WAL would cross the network in clear"
                ),
                "set service.cert_file and service.key_file, or service.allow_http = true behind a TLS-terminating proxy",
            ));
        }
        let mut clusters: Vec<ServiceCluster> = Vec::new();
        for c in self.clusters {
            let valid = !c.name.is_empty()
                && !c.name.starts_with('.')
                && c.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid || clusters.iter().any(|o| o.name == c.name) {
                return Err(config_error(
                    format!("invalid or repeated service cluster name '{}'", c.name),
                    "each [[service.clusters]] name is a repository.cluster: unique, letters, digits, '-', '_' and '.'",
                ));
            }
            clusters.push(ServiceCluster {
                name: c.name,
                token_file: c.token_file,
            });
        }
        if clusters.is_empty() {
            return Err(config_error(
                "service.listen is set but no [[service.clusters]] is".into(),
                "add one [[service.clusters]] with name and token_file per cluster that pushes WAL",
            ));
        }
        let spool = match self.spool_path {
            None => None,
            Some(path) => Some(SpoolConfig {
                path,
                max_bytes: bounded(
                    "service.spool_max_mib",
                    self.spool_max_mib,
                    4096,
                    16..=16 << 20,
                )? << 20,
            }),
        };
        Ok(Some(ServiceConfig {
            listen,
            tls,
            max_requests: bounded("service.max_requests", self.max_requests, 16, 1..=1024)?,
            read_timeout: bounded_duration(
                "service.read_timeout",
                self.read_timeout,
                Duration::from_secs(30),
                Duration::from_secs(1)..=Duration::from_secs(3600),
            )?,
            store_timeout: bounded_duration(
                "service.store_timeout",
                self.store_timeout,
                Duration::from_secs(10),
                Duration::from_millis(100)..=Duration::from_secs(3600),
            )?,
            spool,
            clusters,
        }))
    }
}

impl RawServer {
    /// Whether a `server.url` is given (the archive commands then need no repository).
    pub(super) fn is_set(&self) -> bool {
        self.url.as_ref().is_some_and(|u| !u.trim().is_empty())
    }

    pub(super) fn resolve(self) -> Result<Option<ServerConfig>> {
        let Some(url) = self.url.filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let url = url.trim().trim_end_matches('/').to_string();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
        let authority = rest.split('/').next().unwrap_or("");
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_string();
        if !matches!(scheme, "http" | "https") || host.is_empty() || rest.contains('/') {
            return Err(config_error(
                format!("server.url = {url} is not http(s)://host:port"),
                "set server.url to pgkeepd's service address, e.g. https://pgkeepd:7480",
            ));
        }
        let allow_http = self
            .allow_http
            .map(|v| v.get("server.allow_http"))
            .transpose()?
            .unwrap_or(false);
        if scheme == "http" && !is_loopback(&host) && !allow_http {
            return Err(config_error(
                format!("server.url = {url} sends the token and WAL in clear to another machine"),
                "use https:// (pgkeepd with service.cert_file), or server.allow_http = true on a trusted network",
            ));
        }
        let Some(token_file) = self.token_file else {
            return Err(config_error(
                "server.url is set but server.token_file is not".into(),
                "set server.token_file to the file holding this cluster's token",
            ));
        };
        let identity = match (self.cert_file, self.key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(config_error(
                    "server.cert_file and server.key_file go together".into(),
                    "set both (mutual TLS) or neither",
                ));
            }
        };
        Ok(Some(ServerConfig {
            url,
            token_file,
            ca_file: self.ca_file,
            identity,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn service(text: &str) -> Result<Option<ServiceConfig>> {
        toml::from_str::<RawService>(text).unwrap().resolve()
    }

    fn server(text: &str) -> Result<Option<ServerConfig>> {
        toml::from_str::<RawServer>(text).unwrap().resolve()
    }

    const CLUSTER: &str = "[[clusters]]\nname = \"main\"\ntoken_file = \"/t\"\n";

    #[test]
    fn plain_http_only_on_loopback_or_when_allowed() {
        assert!(service(&format!("listen = \"127.0.0.1:7480\"\n{CLUSTER}")).is_ok());
        assert!(service(&format!("listen = \"[::1]:7480\"\n{CLUSTER}")).is_ok());
        let e = service(&format!("listen = \"0.0.0.0:7480\"\n{CLUSTER}")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            service(&format!(
                "listen = \"0.0.0.0:7480\"\nallow_http = true\n{CLUSTER}"
            ))
            .is_ok()
        );
        let e = server("url = \"http://10.0.0.5:7480\"\ntoken_file = \"/t\"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(server("url = \"https://10.0.0.5:7480\"\ntoken_file = \"/t\"").is_ok());
    }

    #[test]
    fn absent_sections_mean_no_service() {
        assert_eq!(service("").unwrap(), None);
        assert_eq!(server("").unwrap(), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in [
            format!("listen = \"127.0.0.1\"\n{CLUSTER}"),
            "listen = \"127.0.0.1:7480\"\n".to_string(),
            format!("listen = \"127.0.0.1:7480\"\n{CLUSTER}{CLUSTER}"),
            "listen = \"127.0.0.1:7480\"\n[[clusters]]\nname = \"../x\"\ntoken_file = \"/t\"\n"
                .to_string(),
            format!("listen = \"127.0.0.1:7480\"\ncert_file = \"/c\"\n{CLUSTER}"),
            CLUSTER.to_string(),
        ] {
            assert_eq!(
                service(&bad).unwrap_err().kind(),
                ErrorKind::Config,
                "{bad}"
            );
        }
        for bad in [
            "url = \"ftp://x:1\"\ntoken_file = \"/t\"",
            "url = \"https://x:1/path\"\ntoken_file = \"/t\"",
            "url = \"https://x:1\"",
            "url = \"https://x:1\"\ntoken_file = \"/t\"\ncert_file = \"/c\"",
        ] {
            assert_eq!(server(bad).unwrap_err().kind(), ErrorKind::Config, "{bad}");
        }
    }
}
