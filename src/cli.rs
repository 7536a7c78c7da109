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
    },
    /// Restore a backup into a data directory, set up to replay the archive.
    Restore {
        /// The target data directory (must be empty unless --force).
        target: PathBuf,
        /// The backup to restore: an id from 'pgkeep info', or 'latest'.
        #[arg(long, value_name = "ID", default_value = "latest")]
        backup: String,
        /// Replace the contents of a non-empty target directory.
        #[arg(long)]
        force: bool,
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
