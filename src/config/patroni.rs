//! The `[patroni]` and `[create_replica]` sections: how to reach Patroni's REST API, which
//! member may serve a backup, how to connect to it, and when rebuilding a replica from the
//! repository is not worth it. Raw (every key optional) → resolved, like the rest of `config`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Lenient, bounded, bounded_duration};
use crate::error::{Error, ErrorKind, Result};
use crate::patroni::SourcePolicy;
use crate::patroni::client::ClientOptions;

/// A list written as a TOML array, or as one comma-separated string (the environment's form).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum List {
    Many(Vec<String>),
    One(String),
}

impl List {
    fn items(self) -> Vec<String> {
        match self {
            List::Many(v) => v,
            List::One(s) => s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPatroni {
    endpoints: Option<List>,
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<PathBuf>,
    timeout: Option<String>,
    max_lag: Option<Lenient<u64>>,
    fallback_to_primary: Option<Lenient<bool>>,
    conninfo: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCreateReplica {
    max_wal_mib: Option<Lenient<u64>>,
    max_wal_percent: Option<Lenient<u64>>,
}

/// Patroni, when `[patroni] endpoints` are configured.
#[derive(Debug, Clone)]
pub struct PatroniConfig {
    pub client: ClientOptions,
    pub policy: SourcePolicy,
    /// Connection parameters for the chosen member besides its host and port (user, password,
    /// sslmode, ...).
    pub conninfo: String,
}

/// When `pgkeep create-replica` declines, so Patroni falls back to its next method: the WAL
/// to replay since the newest backup exceeds either limit (like Spilo's thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateReplicaConfig {
    pub max_wal_bytes: u64,
    /// Percent of the backup's size.
    pub max_wal_percent: u64,
}

/// 16 MiB: one segment of lag.
pub const DEFAULT_MAX_LAG: u64 = 16 << 20;

impl RawPatroni {
    pub(super) fn resolve(self) -> Result<Option<PatroniConfig>> {
        let endpoints = self.endpoints.map(List::items).unwrap_or_default();
        if endpoints.is_empty() {
            return Ok(None);
        }
        if let Some(bad) = endpoints
            .iter()
            .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("invalid patroni.endpoints entry '{bad}'"),
            )
            .hint("each endpoint is a REST API URL such as \"http://10.0.0.5:8008\""));
        }
        Ok(Some(PatroniConfig {
            client: ClientOptions {
                endpoints,
                username: self.username,
                password: self.password,
                ca_file: self.ca_file,
                timeout: bounded_duration(
                    "patroni.timeout",
                    self.timeout,
                    Duration::from_secs(5),
                    Duration::from_millis(100)..=Duration::from_secs(600),
                )?,
            },
            policy: SourcePolicy {
                max_lag: bounded(
                    "patroni.max_lag",
                    self.max_lag,
                    DEFAULT_MAX_LAG,
                    0..=1 << 50,
                )?,
                fallback_to_primary: self
                    .fallback_to_primary
                    .map(|v| v.get("patroni.fallback_to_primary"))
                    .transpose()?
                    .unwrap_or(false),
            },
            conninfo: self.conninfo.unwrap_or_default(),
        }))
    }
}

impl RawCreateReplica {
    pub(super) fn resolve(self) -> Result<CreateReplicaConfig> {
        Ok(CreateReplicaConfig {
            // At most 1 TiB of WAL counted in MiB: the shift to bytes cannot overflow.
            max_wal_bytes: bounded(
                "create_replica.max_wal_mib",
                self.max_wal_mib,
                10 * 1024,
                0..=1 << 20,
            )? << 20,
            max_wal_percent: bounded(
                "create_replica.max_wal_percent",
                self.max_wal_percent,
                30,
                0..=1_000_000,
            )?,
        })
    }
}
