//! The command line of `pgkeep`, as clap derive types: one variant per subcommand; `options`
//! turns a parsed subcommand into the typed options of the command it runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod options;

pub use options::{Invocation, Output};

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
        #[command(flatten)]
        target: TargetArgs,
        /// Timeline to follow: 'latest' (default) or a number.
        #[arg(long, value_name = "latest|N")]
        target_timeline: Option<String>,
        /// On reaching the target: promote, pause (PostgreSQL's default) or shutdown.
        #[arg(long, value_name = "ACTION")]
        target_action: Option<String>,
        /// Restore as a standby (standby.signal) that keeps replaying.
        #[arg(long)]
        standby: bool,
        /// Restore tablespace OID into DIR (absolute, empty unless --delta or --force);
        /// repeatable. Default: <dir>/pg_tblspc_data/<oid>, never the source's location.
        #[arg(long, value_name = "OID=DIR", value_parser = tablespace_mapping)]
        tablespace_map: Vec<(u32, PathBuf)>,
    },
    /// Patroni's create_replica_methods entry: restore the newest backup as a standby of the
    /// leader. Exit 1 (declined, Patroni tries its next method) when there is no backup or
    /// the WAL to replay since it exceeds create_replica.max_wal_*. Unknown --key=value
    /// arguments (Patroni passes its method options) are ignored.
    CreateReplica {
        /// The Patroni scope (cluster name); informational.
        #[arg(long)]
        scope: Option<String>,
        /// Patroni's role for the new member ('replica'); informational.
        #[arg(long)]
        role: Option<String>,
        /// The data directory to create.
        #[arg(long, value_name = "DIR")]
        datadir: PathBuf,
        /// The leader's connection string (becomes primary_conninfo); the password comes from
        /// the file $PGPASSFILE names.
        #[arg(long, value_name = "CONNINFO")]
        connstring: Option<String>,
        /// Keep the files already in the data directory that match the backup (Patroni's
        /// keep_data option; True/False).
        #[arg(long = "keep_data", value_name = "BOOL", value_parser = python_bool, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
        keep_data: bool,
    },
    /// Patroni's bootstrap method for a clone: restore a backup into --datadir and recover to
    /// the target (default: the end of the archive), then promote.
    Bootstrap {
        /// The Patroni scope of the new cluster; informational.
        #[arg(long)]
        scope: Option<String>,
        /// The data directory to create.
        #[arg(long, value_name = "DIR")]
        datadir: PathBuf,
        /// The backup to restore (default: the newest that can reach the target).
        #[arg(long, value_name = "ID", default_value = "latest")]
        backup: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Remove the backups and WAL the [retention] rules no longer keep (pinned backups and
    /// everything kept backups need always stay). Prints the plan first.
    Expire {
        /// Print the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Read back repo.json, every manifest, every object of every backup (or one) and every
    /// WAL file, and check WAL continuity; exit 10 on any problem.
    Verify {
        /// Only this backup (and what it is built on).
        #[arg(long, value_name = "ID")]
        backup: Option<String>,
        /// Check WAL by names only (continuity), without reading the segments: cheaper, and
        /// blind to damaged contents.
        #[arg(long)]
        wal_names_only: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Pin a backup: retention never expires it, nor what it is built on.
    Pin {
        /// The backup id.
        id: String,
    },
    /// Lift a pin.
    Unpin {
        /// The backup id.
        id: String,
    },
    /// The passphrases of an encrypted repository (each wraps the one data key).
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Check the whole configuration end to end: one line per check, exit 3 on any failure.
    Check(CheckFlags),
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

/// `pgkeep key ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeyCommand {
    /// List the key slots; mark the one the configured passphrase opens.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Add a passphrase or key file without re-encrypting anything.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["pass_file", "key_file"])))]
    Add {
        /// A file holding the new passphrase (one line).
        #[arg(long, value_name = "FILE")]
        pass_file: Option<PathBuf>,
        /// A key file of at least 32 random bytes (e.g. `openssl rand -base64 48`).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Remove a key slot (not the one the configured passphrase opens).
    Remove {
        /// The key id, as `pgkeep key list` shows it.
        id: String,
    },
}

/// Where recovery stops: at most one of these.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "recovery_target", multiple = false)]
pub struct TargetArgs {
    /// Stop at this time, e.g. '2026-11-21 22:00:00+00'.
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Stop at this WAL location, e.g. 16/B374D848.
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,
    /// Stop after this transaction id.
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<String>,
    /// Stop at this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,
    /// 'immediate': stop as soon as the backup is consistent.
    #[arg(long, value_name = "immediate")]
    pub target: Option<String>,
}

/// `OID=DIR` of `--tablespace-map`.
fn tablespace_mapping(s: &str) -> Result<(u32, PathBuf), String> {
    let (oid, dir) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not OID=DIR"))?;
    let oid = oid
        .parse::<u32>()
        .map_err(|_| format!("'{oid}' is not a tablespace oid"))?;
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() {
        return Err(format!("'{}' is not an absolute directory", dir.display()));
    }
    Ok((oid, dir))
}

/// Python's spelling of booleans, as Patroni writes them (`--keep_data=False`).
fn python_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean")),
    }
}

/// The options each Patroni-called subcommand knows; any other `--key=value` is Patroni's.
const PATRONI_OPTIONS: &[(&str, &[&str])] = &[
    (
        "create-replica",
        &["scope", "role", "datadir", "connstring", "keep_data"],
    ),
    (
        "bootstrap",
        &[
            "scope",
            "datadir",
            "backup",
            "target-time",
            "target-lsn",
            "target-xid",
            "target-name",
            "target",
        ],
    ),
];

/// Drops the `--key=value` arguments a Patroni-called subcommand does not know: Patroni passes
/// every option of a method's configuration (`--keep_data=False`, `--no_leader=True`, ...),
/// and a new Patroni version may pass more. Other subcommands' arguments are left alone.
pub fn without_patroni_extras(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let sub = args.iter().enumerate().skip(1).find_map(|(i, a)| {
        let a = a.to_str()?;
        PATRONI_OPTIONS
            .iter()
            .find(|(name, _)| *name == a)
            .map(|(_, known)| (i, *known))
    });
    let Some((at, known)) = sub else {
        return args;
    };
    args.into_iter()
        .enumerate()
        .filter(|(i, a)| {
            if *i <= at {
                return true;
            }
            let Some(key) = a
                .to_str()
                .and_then(|a| a.strip_prefix("--"))
                .and_then(|a| a.split_once('=').map(|(k, _)| k))
            else {
                return true;
            };
            known.contains(&key) || key == "config"
        })
        .map(|(_, a)| a)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(|a| a.into()).collect()
    }

    #[test]
    fn patroni_extras_are_dropped_and_known_options_parsed() {
        let argv = without_patroni_extras(args(&[
            "pgkeep",
            "--config=/etc/pgkeep.toml",
            "create-replica",
            "--no_leader=False",
            "--keep_data=True",
            "--scope=demo",
            "--role=replica",
            "--datadir=/data/n2",
            "--connstring=dbname=postgres user=rep host=127.0.0.1 port=5441",
            "--some_future_option=1",
        ]));
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.command {
            Command::CreateReplica {
                datadir,
                connstring,
                keep_data,
                scope,
                ..
            } => {
                assert_eq!(datadir, PathBuf::from("/data/n2"));
                assert_eq!(
                    connstring.as_deref(),
                    Some("dbname=postgres user=rep host=127.0.0.1 port=5441")
                );
                assert!(keep_data);
                assert_eq!(scope.as_deref(), Some("demo"));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(without_patroni_extras(args(&[
            "pgkeep",
            "create-replica",
            "--keep_data=False",
            "--datadir=/d",
        ])))
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::CreateReplica {
                keep_data: false,
                ..
            }
        ));
    }

    #[test]
    fn other_subcommands_keep_strict_parsing() {
        let argv = without_patroni_extras(args(&["pgkeep", "info", "--colour=red"]));
        assert!(Cli::try_parse_from(argv).is_err());
        let argv = args(&[
            "pgkeep",
            "restore",
            "/d",
            "--target-lsn",
            "0/1",
            "--target-name",
            "x",
        ]);
        assert!(Cli::try_parse_from(argv).is_err(), "one target at most");
    }

    #[test]
    fn tablespace_maps_are_oid_and_absolute_dir() {
        assert_eq!(
            tablespace_mapping("16400=/mnt/ts").unwrap(),
            (16400, PathBuf::from("/mnt/ts"))
        );
        for bad in ["16400", "x=/mnt", "16400=rel/dir", "-1=/a"] {
            assert!(tablespace_mapping(bad).is_err(), "{bad}");
        }
    }
}

/// `check`'s flags, shared by `pgkeep check` and `pgkeepd check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckFlags {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// How long a switched WAL segment may take to reach the archive (e.g. 60s, 2m).
    #[arg(long, default_value = "60s")]
    pub wal_timeout: String,
    /// Do not call pg_switch_wal() (no WAL arrival check).
    #[arg(long)]
    pub no_switch: bool,
}

impl CheckFlags {
    pub fn args(&self) -> crate::error::Result<crate::command::check::CheckArgs> {
        let wal_timeout = humantime::parse_duration(&self.wal_timeout).map_err(|e| {
            crate::error::Error::new(
                crate::error::ErrorKind::InvalidInput,
                format!("--wal-timeout {}: {e}", self.wal_timeout),
            )
            .hint("a duration such as 60s or 2m")
        })?;
        Ok(crate::command::check::CheckArgs {
            wal_timeout,
            switch_wal: !self.no_switch,
        })
    }
}
