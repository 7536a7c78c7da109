//! pgkeep: backup and disaster recovery for PostgreSQL clusters run by Patroni.
//!
//! # The map
//!
//! Layers, and imports only go down:
//!
//! ```text
//! pg/         VOCABULARY, pure: Lsn, Timeline, WalSegmentName, WalFileName, WalHeader,
//!             ControlFile, SystemId, PgVersion; client (tokio-postgres queries)
//! pipeline/   MECHANISM, bytes only: sha256 while streaming, zstd, the object header
//! repo/       MECHANISM: the only module that knows object keys (layout), stores (store),
//!             repo.json (info), creating a repository (create), leases
//! manifest/   MECHANISM: one backup's source of truth (files, layers, part checksums), its
//!             fields typed (SystemId, Lsn, Timeline, times, Digest) and stored as text
//! patroni/    MECHANISM: Patroni's REST API (GET /cluster, health checks) and the choice of
//!             the member a backup reads from
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
//!                    -> push_one(&Repo, path, name): header check -> encode -> put_if_absent
//! restore_command -> pgkeep archive-get %f %p -> command::archive_get::run
//!                    -> get_one(&Repo, name, dest): get -> decode (verify) -> write_atomic
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
