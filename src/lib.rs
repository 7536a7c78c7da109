//! pgkeep: backup and disaster recovery for PostgreSQL clusters run by Patroni.
//!
//! # The map
//!
//! Layers, and imports only go down:
//!
//! ```text
//! pg/         VOCABULARY, pure: Lsn, Timeline, WalSegmentName, WalFileName, WalHeader,
//!             ControlFile, SystemId, PgVersion, 17's incremental files; client
//!             (tokio-postgres queries)
//! pipeline/   MECHANISM, bytes only: sha256 while streaming, zstd, the object header,
//!             AES-256-GCM STREAM encryption and key wrapping (encrypt)
//! repo/       MECHANISM: the only module that knows object keys (layout) and the only caller
//!             of pipeline/: typed objects (objects: `RepoObject` save/load, `WalKey` and
//!             `BackupPartKey`/`PgManifestKey` seal/store/fetch), stores (store), repo.json (info), the key
//!             (keyring), creating a repository (create), leases and holds
//! manifest/   MECHANISM: one backup's source of truth (files, layers, part checksums), its
//!             fields typed (SystemId, Lsn, Timeline, times, Digest) and stored as text; a
//!             `RepoObject` (manifest -> repo)
//! patroni/    MECHANISM: Patroni's REST API (GET /cluster, health checks) and the choice of
//!             the member a backup reads from
//! service/    MECHANISM: the WAL service's wire protocol (shared with pgkeepd's receiver) and
//!             its client: archive-push/archive-get through pgkeepd when `[server]` is set
//! localfs     MECHANISM: durable local writes (temp, fsync, rename, fsync dir)
//! command/    USE-CASES: one module per CLI command, `run(&Config, Args) -> Result<Report>`;
//!             each report renders itself (`Display`, and `Serialize` for `--json`)
//! cli/        the command line (clap), and `options`: a subcommand -> its command's Args
//! main.rs     entry point: CLI -> config -> one command -> exit code; dispatch only
//! ```
//!
//! Data flow of the hot path:
//!
//! ```text
//! archive_command -> pgkeep archive-push %p -> command::archive_push::run
//!                    -> push_one(&Repo, path, name): compress -> header check -> seal
//!                       (encrypt with the repository's key) -> store_new
//! restore_command -> pgkeep archive-get %f %p -> command::archive_get::run
//!                    -> get_one(&Repo, name, dest): fetch -> decode (decrypt, verify)
//!                       -> write_atomic
//! ```
//!
//! `config` turns TOML + environment into a validated `Config`; `error` holds the one error
//! type, whose kind fixes the exit code.

pub mod cli;
pub mod command;
pub mod config;
pub mod error;
pub mod localfs;
pub mod manifest;
pub mod patroni;
pub mod pg;
pub mod pipeline;
pub mod repo;
pub mod service;
