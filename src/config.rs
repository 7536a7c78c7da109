//! Configuration: the TOML file, overlaid by `PGKEEP_<SECTION>_<KEY>` environment variables,
//! parsed into `Raw` (pure data, every key optional) and then `resolve`d into a validated,
//! typed `Config`. Nothing below `main` reads the environment or the file itself.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::Compression;

#[cfg(test)]
mod bounds_tests;
pub mod cipher;
mod environ;
mod patroni;
mod restore_test;
mod scheduler;
mod service;

pub use cipher::{CipherChoice, CipherConfig, Secret};
pub use environ::environment;
pub use patroni::{CreateReplicaConfig, PatroniConfig};
pub use restore_test::{DrillTarget, Probe, RestoreTestConfig, SandboxKind, Selection};
pub use scheduler::{JobConfig, JobKind, SchedulerConfig};
pub use service::{ServerConfig, ServiceCluster, ServiceConfig, ServiceTls, SpoolConfig};

/// Environment variables that are not configuration keys.
/// Read by name, never overlaid on the file (the passphrase must not become a config value
/// that restore carries into restore_command).
const RESERVED_ENV: [&str; 3] = ["PGKEEP_CONFIG", "PGKEEP_LOG", cipher::PASS_ENV];
const SECTIONS: [&str; 12] = [
    "restore_test",
    "service",
    "server",
    "repository",
    "postgres",
    "archive",
    "backup",
    "patroni",
    "create_replica",
    "retention",
    "scheduler",
    "log",
];
/// Where the config is looked for when neither `--config` nor `PGKEEP_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/pgkeep/pgkeep.toml";

/// A value from TOML (typed) or from the environment (always text).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Lenient<T> {
    Typed(T),
    Text(String),
}

impl<T: FromStr> Lenient<T> {
    fn get(self, key: &str) -> Result<T> {
        match self {
            Lenient::Typed(v) => Ok(v),
            Lenient::Text(s) => s.trim().parse().map_err(|_| {
                Error::new(ErrorKind::Config, format!("invalid value '{s}' for {key}"))
                    .hint("see config/README.md for the type of each key")
            }),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    #[serde(default)]
    repository: RawRepository,
    #[serde(default)]
    postgres: RawPostgres,
    #[serde(default)]
    archive: RawArchive,
    #[serde(default)]
    backup: RawBackup,
    #[serde(default)]
    patroni: patroni::RawPatroni,
    #[serde(default)]
    create_replica: patroni::RawCreateReplica,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    scheduler: scheduler::RawScheduler,
    #[serde(default)]
    restore_test: restore_test::RawRestoreTest,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    service: service::RawService,
    #[serde(default)]
    server: service::RawServer,
    #[serde(skip)]
    path: Option<PathBuf>,
    /// `PGKEEP_REPOSITORY_CIPHER_PASS`, read by name (never a key of the file).
    #[serde(skip)]
    cipher_pass: Option<Secret>,
    #[serde(skip)]
    env: Vec<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackup {
    source: Option<String>,
    concurrency: Option<Lenient<usize>>,
    wal_timeout: Option<String>,
    memory_mib: Option<Lenient<usize>>,
    max_chain: Option<Lenient<u32>>,
    max_rate: Option<Lenient<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    kind: Option<String>,
    path: Option<PathBuf>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    allow_http: Option<Lenient<bool>>,
    virtual_hosted_style: Option<Lenient<bool>>,
    ca_file: Option<PathBuf>,
    cluster: Option<String>,
    max_retries: Option<Lenient<u32>>,
    request_timeout: Option<String>,
    cipher: Option<String>,
    cipher_pass_file: Option<PathBuf>,
    cipher_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    data_dir: Option<PathBuf>,
    conninfo: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    compress_level: Option<Lenient<i32>>,
    compress_threads: Option<Lenient<u32>>,
    push_lookahead: Option<Lenient<usize>>,
    get_prefetch: Option<Lenient<usize>>,
    spool_path: Option<PathBuf>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    full: Option<Lenient<usize>>,
    max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
}

/// Where the repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Local {
        path: PathBuf,
    },
    S3 {
        bucket: String,
        prefix: String,
        region: String,
        endpoint: Option<String>,
        allow_http: bool,
        virtual_hosted_style: bool,
        /// Extra trusted CA certificates (PEM), for stores behind a private CA.
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    pub store: StoreConfig,
    pub cluster: String,
    pub max_retries: usize,
    pub request_timeout: Duration,
    /// `[repository] cipher` and its passphrase's source.
    pub cipher: CipherConfig,
    /// `[archive] compress_level`: how WAL and backup files are compressed (the repository
    /// owns its bytes, so it holds the choice).
    pub compression: Compression,
    /// `[archive] compress_threads`: zstd workers for one WAL file.
    pub compress_threads: u32,
}

impl RepositoryConfig {
    /// False on a node whose archive commands go through pgkeepd (`[server]`) and that has no
    /// `[repository]` of its own (resolved as a local store with an empty path).
    pub fn is_configured(&self) -> bool {
        !matches!(&self.store, StoreConfig::Local { path } if path.as_os_str().is_empty())
    }
}

#[derive(Debug, Clone, Default)]
pub struct PostgresConfig {
    pub data_dir: Option<PathBuf>,
    pub conninfo: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub push_lookahead: usize,
    pub get_prefetch: usize,
    pub spool_path: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// Connection string of the member to back up (replication connection), or `patroni`:
    /// ask Patroni's REST API at every run.
    pub source: Option<String>,
    /// Files uploaded at once.
    pub concurrency: usize,
    /// How long a backup waits for its WAL to reach the archive before failing.
    pub wal_timeout: Duration,
    /// Cap on the file bytes a backup or restore holds in memory at once.
    pub memory_mib: usize,
    /// Most incrementals on top of one full; one more is taken as a full.
    pub max_chain: u32,
    /// What the source may send per second, in kB (BASE_BACKUP MAX_RATE); `None`: no limit.
    pub max_rate_kb: Option<u32>,
}

/// What `pgkeep expire` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Newest full backups kept, with their incrementals (at least 1).
    pub full: usize,
    /// Every backup younger than this is kept too.
    pub max_age: Option<Duration>,
}

/// The validated configuration every command receives.
#[derive(Debug, Clone)]
pub struct Config {
    pub repository: RepositoryConfig,
    pub postgres: PostgresConfig,
    pub archive: ArchiveConfig,
    pub backup: BackupConfig,
    /// Set when `[patroni] endpoints` are configured.
    pub patroni: Option<PatroniConfig>,
    pub create_replica: CreateReplicaConfig,
    pub retention: RetentionConfig,
    pub scheduler: SchedulerConfig,
    /// `[restore_test]`: the drills' defaults (a job may override them).
    pub restore_test: RestoreTestConfig,
    /// `[service]`: pgkeepd receives WAL over HTTP(S) (absent: no receiver).
    pub service: Option<ServiceConfig>,
    /// `[server]`: archive-push/archive-get go through pgkeepd (absent: straight to the
    /// repository).
    pub server: Option<ServerConfig>,
    pub log_level: String,
    /// The configuration file read, if any (restore writes it into restore_command).
    pub path: Option<PathBuf>,
    /// The `PGKEEP_<SECTION>_<KEY>` variables overlaid on the file, by name: restore carries
    /// those replay reads into restore_command.
    pub env: Vec<(String, String)>,
}

/// Measured on pgbench WAL (see bench/README.md): level 1 pushes a 16 MiB segment 10-25% faster
/// than level 3 and stores about 13% more; archive_command latency matters more.
pub const DEFAULT_COMPRESS_LEVEL: i32 = 1;
/// Parallelism comes from pushing several segments at once (look-ahead), not from zstd workers.
pub const DEFAULT_COMPRESS_THREADS: u32 = 0;
/// Encodes are bounded by the core count, so a deeper window costs little memory and keeps a
/// latency-bound store busy.
pub const DEFAULT_PUSH_LOOKAHEAD: usize = 8;
pub const DEFAULT_GET_PREFETCH: usize = 4;

impl Raw {
    /// Parses TOML text and overlays environment variables (`vars`: name → value).
    pub fn parse(text: &str, origin: &Path, vars: &BTreeMap<String, String>) -> Result<Raw> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "malformed config {}: {}",
                    origin.display(),
                    e.message().trim()
                ),
            )
            .hint("the file must be TOML; see config/pgkeep.toml for an example")
        })?;
        let env = overlay_env(&mut table, vars)?;
        let raw = Raw::deserialize(toml::Value::Table(table)).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "invalid config {}: {}",
                    origin.display(),
                    e.message().trim()
                ),
            )
            .hint("see config/README.md for every key, its type and default")
        })?;
        let cipher_pass = vars
            .get(cipher::PASS_ENV)
            .filter(|v| !v.is_empty())
            .map(|v| Secret::new(v.as_bytes().to_vec()));
        Ok(Raw {
            env,
            cipher_pass,
            ..raw
        })
    }

    /// Reads the file (when there is one) and overlays the environment.
    pub fn load(path: Option<&Path>, vars: &BTreeMap<String, String>) -> Result<Raw> {
        let explicit = path.map(Path::to_path_buf).or_else(|| {
            vars.get("PGKEEP_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let (path, required) = match explicit {
            Some(p) => (p, true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("cannot read config {}: {e}", path.display()),
                )
                .hint("pass --config PATH or set PGKEEP_CONFIG to a readable file"));
            }
        };
        let mut raw = Raw::parse(&text, &path, vars)?;
        raw.path = (!text.is_empty() || required).then_some(path);
        Ok(raw)
    }

    pub fn resolve(self) -> Result<Config> {
        let (compression, compress_threads) = self.archive.compression()?;
        let via_server = self.server.is_set();
        let mut repository = self.repository.resolve(self.cipher_pass, via_server)?;
        repository.compression = compression;
        repository.compress_threads = compress_threads;
        Ok(Config {
            repository,
            postgres: PostgresConfig {
                data_dir: self.postgres.data_dir,
                conninfo: self.postgres.conninfo,
            },
            archive: self.archive.resolve()?,
            backup: BackupConfig {
                source: self.backup.source,
                concurrency: bounded("backup.concurrency", self.backup.concurrency, 4, 1..=64)?,
                wal_timeout: bounded_duration(
                    "backup.wal_timeout",
                    self.backup.wal_timeout,
                    Duration::from_secs(300),
                    Duration::from_secs(1)..=Duration::from_secs(7 * 86400),
                )?,
                // At least two 16 MiB parts in flight, or nothing moves; at most 64 GiB, so
                // byte counts never overflow.
                memory_mib: bounded("backup.memory_mib", self.backup.memory_mib, 128, 32..=65536)?,
                max_chain: bounded("backup.max_chain", self.backup.max_chain, 6, 0..=1000)?,
                max_rate_kb: max_rate(self.backup.max_rate)?,
            },
            patroni: self.patroni.resolve()?,
            create_replica: self.create_replica.resolve()?,
            retention: RetentionConfig {
                // Expire always keeps the newest full backup.
                full: bounded("retention.full", self.retention.full, 2, 1..=10_000)?,
                max_age: self
                    .retention
                    .max_age
                    .map(|a| {
                        bounded_duration(
                            "retention.max_age",
                            Some(a),
                            Duration::ZERO,
                            Duration::ZERO..=Duration::from_secs(100 * 366 * 86400),
                        )
                    })
                    .transpose()?,
            },
            scheduler: self.scheduler.resolve(&self.restore_test)?,
            restore_test: self.restore_test.resolve()?,
            service: self.service.resolve()?,
            server: self.server.resolve()?,
            log_level: self.log.level.unwrap_or_else(|| "info".into()),
            path: self.path,
            env: self.env,
        })
    }
}

/// Overlays the `PGKEEP_<SECTION>_<KEY>` variables; returns those applied.
fn overlay_env(
    table: &mut toml::Table,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>> {
    let mut applied = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("PGKEEP_") else {
            continue;
        };
        if RESERVED_ENV.contains(&name.as_str()) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        // Variables of other sections (PGKEEP_TEST_*, wrappers' own) are not ours to judge;
        // a misspelt key inside a known section is caught by deny_unknown_fields.
        let Some((section, key)) = SECTIONS.iter().find_map(|s| {
            lower
                .strip_prefix(s)
                .and_then(|k| k.strip_prefix('_'))
                .map(|k| (*s, k))
        }) else {
            continue;
        };
        let entry = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(t) = entry else {
            return Err(Error::new(
                ErrorKind::Config,
                format!("[{section}] must be a table"),
            )
            .hint(format!(
                "write {section} as a [{section}] section, or unset the PGKEEP_{}_* variables",
                section.to_ascii_uppercase()
            )));
        };
        t.insert(key.to_string(), toml::Value::String(value.clone()));
        applied.push((name.clone(), value.clone()));
    }
    Ok(applied)
}

/// `backup.max_rate` in kB/s: 0 (the default) for no limit, else what PostgreSQL accepts.
fn max_rate(raw: Option<Lenient<u32>>) -> Result<Option<u32>> {
    match raw.map(|v| v.get("backup.max_rate")).transpose()? {
        None | Some(0) => Ok(None),
        Some(r) if (32..=1_048_576).contains(&r) => Ok(Some(r)),
        Some(r) => Err(
            Error::new(ErrorKind::Config, format!("invalid backup.max_rate {r}"))
                .hint("kB per second from 32 to 1048576, or 0 for no limit"),
        ),
    }
}

/// A numeric key's value (or its default), refused outside `range`: a huge value would
/// overflow byte counts, spawn unbounded work or exhaust memory.
fn bounded<T>(key: &str, raw: Option<Lenient<T>>, default: T, range: RangeInclusive<T>) -> Result<T>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let v = raw.map(|v| v.get(key)).transpose()?.unwrap_or(default);
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(out_of_range(key, v, range.start(), range.end()))
    }
}

/// A duration key (or its default), refused outside `range`.
fn bounded_duration(
    key: &str,
    text: Option<String>,
    default: Duration,
    range: RangeInclusive<Duration>,
) -> Result<Duration> {
    let d = duration(key, text, default)?;
    if range.contains(&d) {
        Ok(d)
    } else {
        let show = |d: &Duration| humantime::format_duration(*d).to_string();
        Err(out_of_range(
            key,
            show(&d),
            show(range.start()),
            show(range.end()),
        ))
    }
}

fn out_of_range(key: &str, value: impl Display, min: impl Display, max: impl Display) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{key} = {value} is out of range: allowed {min} to {max}"),
    )
    .hint(format!(
        "set {key} between {min} and {max} (see config/README.md)"
    ))
}

fn duration(key: &str, text: Option<String>, default: Duration) -> Result<Duration> {
    match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("invalid duration '{t}' for {key}: {e}"),
            )
            .hint("write durations like \"60s\", \"500ms\" or \"2m\"")
        }),
    }
}

fn missing(key: &str, why: &str) -> Error {
    Error::new(ErrorKind::Config, format!("missing {key}: {why}"))
        .hint("set it in the config file or as an environment variable (see config/README.md)")
}

impl RawRepository {
    /// `via_server`: archive commands go through pgkeepd, so a node may have no repository
    /// at all (an empty local path, which `store::build` refuses with its own message).
    fn resolve(self, cipher_pass: Option<Secret>, via_server: bool) -> Result<RepositoryConfig> {
        let kind = self.kind.unwrap_or_else(|| "local".into());
        // Checked whatever the kind: a malformed value is an error even where it is unused.
        let allow_http = self
            .allow_http
            .map(|v| v.get("repository.allow_http"))
            .transpose()?
            .unwrap_or(false);
        let virtual_hosted_style = self
            .virtual_hosted_style
            .map(|v| v.get("repository.virtual_hosted_style"))
            .transpose()?
            .unwrap_or(false);
        let store = match kind.as_str() {
            "local" => StoreConfig::Local {
                path: match self.path {
                    Some(p) => p,
                    None if via_server => PathBuf::new(),
                    None => {
                        return Err(missing(
                            "repository.path",
                            "a local repository needs a directory",
                        ));
                    }
                },
            },
            "s3" => StoreConfig::S3 {
                bucket: self.bucket.ok_or_else(|| {
                    missing("repository.bucket", "an s3 repository needs a bucket")
                })?,
                prefix: self
                    .prefix
                    .unwrap_or_default()
                    .trim_matches('/')
                    .to_string(),
                region: self.region.unwrap_or_else(|| "us-east-1".into()),
                endpoint: self.endpoint,
                allow_http,
                virtual_hosted_style,
                ca_file: self.ca_file,
            },
            other => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("invalid repository.kind '{other}'"),
                )
                .hint("repository.kind is \"local\" or \"s3\""));
            }
        };
        let cluster = self.cluster.unwrap_or_else(|| "main".into());
        if cluster.is_empty()
            || !cluster
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            || cluster.starts_with('.')
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("invalid repository.cluster '{cluster}'"),
            )
            .hint("use letters, digits, '-', '_' and '.' only"));
        }
        Ok(RepositoryConfig {
            store,
            cluster,
            max_retries: bounded("repository.max_retries", self.max_retries, 10, 0..=100)? as usize,
            request_timeout: bounded_duration(
                "repository.request_timeout",
                self.request_timeout,
                Duration::from_secs(30),
                Duration::from_millis(100)..=Duration::from_secs(3600),
            )?,
            cipher: CipherConfig::resolve(
                self.cipher,
                self.cipher_pass_file,
                self.cipher_key_file,
                cipher_pass,
            )?,
            compression: Compression::Zstd(DEFAULT_COMPRESS_LEVEL),
            compress_threads: DEFAULT_COMPRESS_THREADS,
        })
    }
}

impl RawArchive {
    /// `compress_level` and `compress_threads`: the repository's, though written here.
    fn compression(&self) -> Result<(Compression, u32)> {
        let level = self
            .compress_level
            .clone()
            .map(|v| v.get("archive.compress_level"))
            .transpose()?
            .unwrap_or(DEFAULT_COMPRESS_LEVEL);
        if !(0..=19).contains(&level) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("invalid archive.compress_level {level}"),
            )
            .hint("use 0 (no compression) or a zstd level from 1 to 19"));
        }
        let compression = if level == 0 {
            Compression::None
        } else {
            Compression::Zstd(level)
        };
        let threads = bounded(
            "archive.compress_threads",
            self.compress_threads.clone(),
            DEFAULT_COMPRESS_THREADS,
            0..=64,
        )?;
        Ok((compression, threads))
    }

    fn resolve(self) -> Result<ArchiveConfig> {
        let timeout = bounded_duration(
            "archive.timeout",
            self.timeout,
            Duration::from_secs(60),
            Duration::from_secs(1)..=Duration::from_secs(3600),
        )?;
        Ok(ArchiveConfig {
            push_lookahead: bounded(
                "archive.push_lookahead",
                self.push_lookahead,
                DEFAULT_PUSH_LOOKAHEAD,
                0..=64,
            )?,
            get_prefetch: bounded(
                "archive.get_prefetch",
                self.get_prefetch,
                DEFAULT_GET_PREFETCH,
                0..=64,
            )?,
            spool_path: self.spool_path,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn resolve(text: &str, env: &[(&str, &str)]) -> Result<Config> {
        Raw::parse(text, Path::new("t.toml"), &vars(env))?.resolve()
    }

    #[test]
    fn minimal_local_config_gets_defaults() {
        let c = resolve("[repository]\npath = \"/r\"\n", &[]).unwrap();
        assert_eq!(c.repository.store, StoreConfig::Local { path: "/r".into() });
        assert_eq!(c.repository.cluster, "main");
        assert_eq!(c.archive.timeout, Duration::from_secs(60));
        assert_eq!(
            c.repository.compression,
            Compression::Zstd(DEFAULT_COMPRESS_LEVEL)
        );
    }

    #[test]
    fn environment_overrides_file_and_is_typed() {
        let c = resolve(
            "[repository]\nkind = \"local\"\npath = \"/r\"\n[archive]\ncompress_level = 5\n",
            &[
                ("PGKEEP_REPOSITORY_KIND", "s3"),
                ("PGKEEP_REPOSITORY_BUCKET", "b"),
                ("PGKEEP_REPOSITORY_ALLOW_HTTP", "true"),
                ("PGKEEP_ARCHIVE_COMPRESS_LEVEL", "1"),
                ("PGKEEP_ARCHIVE_TIMEOUT", "5s"),
                ("PGKEEP_CONFIG", "/ignored"),
                ("PGKEEP_TEST_PG13_BIN", "/not/a/section"),
                ("HOME", "/root"),
            ],
        )
        .unwrap();
        match c.repository.store {
            StoreConfig::S3 {
                bucket, allow_http, ..
            } => {
                assert_eq!(bucket, "b");
                assert!(allow_http);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.repository.compression, Compression::Zstd(1));
        assert_eq!(c.archive.timeout, Duration::from_secs(5));
    }

    #[test]
    fn the_shipped_examples_parse() {
        for (name, text) in [
            ("pgkeep.toml", include_str!("../config/pgkeep.toml")),
            ("full.toml", include_str!("../config/full.toml")),
            ("s3.toml", include_str!("../config/s3.toml")),
        ] {
            let c = resolve(text, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
            if name == "full.toml" {
                assert_eq!(c.scheduler.jobs.len(), 3);
                assert_eq!(c.scheduler.jobs[0].schedule, "0 1 * * 0");
                assert_eq!(c.retention.full, 2);
                let p = c.patroni.expect("full.toml's [patroni] has endpoints");
                assert!(!p.policy.fallback_to_primary);
            }
        }
    }

    #[test]
    fn bad_input_is_a_config_error_with_a_hint() {
        for (text, env) in [
            ("[repository\npath=1", vec![]),
            ("[repository]\npath = \"/r\"\ncolour = 1\n", vec![]),
            ("[repository]\nkind = \"ftp\"\n", vec![]),
            ("[repository]\nkind = \"s3\"\n", vec![]),
            ("", vec![]),
            (
                "[repository]\npath = \"/r\"\n",
                vec![("PGKEEP_REPOSITORY_COLOUR", "1")],
            ),
            (
                "[repository]\npath = \"/r\"\n",
                vec![("PGKEEP_ARCHIVE_COMPRESS_LEVEL", "fast")],
            ),
            (
                "[repository]\npath = \"/r\"\n[archive]\ntimeout = \"soon\"\n",
                vec![],
            ),
            ("[repository]\npath = \"/r\"\ncluster = \"a/b\"\n", vec![]),
            // s3-only keys are checked for a local repository too.
            (
                "[repository]\npath = \"/r\"\nallow_http = \"maybe\"\n",
                vec![],
            ),
            (
                "archive = 5\n[repository]\npath = \"/r\"\n",
                vec![("PGKEEP_ARCHIVE_TIMEOUT", "5s")],
            ),
        ] {
            let err = resolve(text, &env).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{text}");
            assert!(err.hint_text().is_some(), "{text}: {err}");
            assert!(!err.one_line().contains('\n'));
        }
    }
}
