//! The command line of `pgkeep`, as clap derive types: one variant per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pgkeep",
    version,
    about = "Backup and disaster recovery for PostgreSQL clusters run by Patroni"
)]
pub struct Cli {
    /// Configuration file (TOML). Default: $PGKEEP_CONFIG, else /etc/pgkeep/pgkeep.toml if present.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository for a cluster (reads its pg_control or asks a live server).
    Init {
        /// The cluster's data directory (default: postgres.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// A connection string, used when no data directory is given (default: postgres.conninfo).
        #[arg(long, value_name = "CONNINFO")]
        conninfo: Option<String>,
    },
    /// Store one WAL file: archive_command = 'pgkeep archive-push %p'.
    ArchivePush {
        /// The WAL file (PostgreSQL's %p).
        path: PathBuf,
    },
    /// Take a full backup over the replication protocol from a primary or standby.
    Backup {
        /// Connection string of the member to read from (default: backup.source).
        #[arg(long, value_name = "CONNINFO")]
        source: Option<String>,
        /// full, or incr: only the pages changed since the newest backup (taken as a full when
        /// there is none to build on, or the chain reached backup.max_chain).
        #[arg(long = "type", value_name = "TYPE", default_value = "full", value_parser = ["full", "incr"])]
        kind: String,
    },
    /// Restore a backup into a data directory, set up to replay the archive to a target.
    #[command(group(clap::ArgGroup::new("recovery_target").multiple(false)))]
    Restore {
        /// The data directory to restore into (must be empty unless --delta or --force).
        dir: PathBuf,
        /// The backup to restore: an id from 'pgkeep info', or 'latest'.
        #[arg(long, value_name = "ID", default_value = "latest")]
        backup: String,
        /// Replace the contents of a non-empty target directory.
        #[arg(long, conflicts_with = "delta")]
        force: bool,
        /// Restore over a non-empty directory in place: keep files whose sha256 matches, remove
        /// the ones the backup lacks.
        #[arg(long)]
        delta: bool,
        /// Stop at this time, e.g. '2026-11-21 22:00:00+00'.
        #[arg(long, group = "recovery_target", value_name = "TIME")]
        target_time: Option<String>,
        /// Stop at this WAL location, e.g. 16/B374D848.
        #[arg(long, group = "recovery_target", value_name = "LSN")]
        target_lsn: Option<String>,
        /// Stop after this transaction id.
        #[arg(long, group = "recovery_target", value_name = "XID")]
        target_xid: Option<String>,
        /// Stop at this restore point (pg_create_restore_point).
        #[arg(long, group = "recovery_target", value_name = "NAME")]
        target_name: Option<String>,
        /// 'immediate': stop as soon as the backup is consistent.
        #[arg(long, group = "recovery_target", value_name = "immediate")]
        target: Option<String>,
        /// Timeline to follow: 'latest' (default) or a number.
        #[arg(long, value_name = "latest|N")]
        target_timeline: Option<String>,
        /// On reaching the target: promote, pause (PostgreSQL's default) or shutdown.
        #[arg(long, value_name = "ACTION")]
        target_action: Option<String>,
        /// Restore as a standby (standby.signal) that keeps replaying.
        #[arg(long)]
        standby: bool,
    },
    /// Show the repository and its backups.
    Info {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Fetch one WAL file: restore_command = 'pgkeep archive-get %f %p'. Exit 1: not archived.
    ArchiveGet {
        /// The WAL file name (PostgreSQL's %f).
        file: String,
        /// Where to write it (PostgreSQL's %p).
        dest: PathBuf,
    },
}
