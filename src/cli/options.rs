//! From a parsed command line to the typed options of the command it runs
//! ([`Command::into_invocation`]): every flag is checked and converted here (recovery target,
//! target action, tablespace map, backup type, output form), so `main` only dispatches. Reads
//! nothing but the password file Patroni names in `$PGPASSFILE`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Command, KeyCommand, TargetArgs};
use crate::command::{
    archive_get, archive_push, backup, bootstrap, check, create_replica, expire, init, key, pin,
    restore, verify,
};
use crate::error::{Error, ErrorKind};

/// One command to run, with its options.
#[derive(Debug)]
pub enum Invocation {
    Init(init::InitArgs),
    ArchivePush(archive_push::PushArgs),
    ArchiveGet(archive_get::GetArgs),
    Backup(backup::BackupArgs),
    Restore(restore::RestoreArgs),
    CreateReplica(create_replica::CreateReplicaArgs),
    Bootstrap(bootstrap::BootstrapArgs),
    Expire(expire::ExpireArgs, Output),
    Verify(verify::VerifyArgs, Output),
    Pin(pin::PinArgs),
    Key(key::KeyArgs, Output),
    Info(Output),
    Check(check::CheckArgs, Output),
}

/// How a report is shown: its text, or its JSON (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

impl Output {
    fn of(json: bool) -> Output {
        if json { Output::Json } else { Output::Text }
    }
}

impl Command {
    /// The command to run and its options; `vars` is the environment (`$PGPASSFILE`).
    pub fn into_invocation(self, vars: &BTreeMap<String, String>) -> Result<Invocation, Error> {
        Ok(match self {
            Command::Init { data_dir, conninfo } => {
                Invocation::Init(init::InitArgs { data_dir, conninfo })
            }
            Command::ArchivePush { path } => {
                Invocation::ArchivePush(archive_push::PushArgs { path })
            }
            Command::ArchiveGet { file, dest } => {
                Invocation::ArchiveGet(archive_get::GetArgs { file, dest })
            }
            Command::Backup { source, kind } => {
                let kind = match kind.as_str() {
                    "incr" => backup::Requested::Incremental,
                    _ => backup::Requested::Full,
                };
                Invocation::Backup(backup::BackupArgs { source, kind })
            }
            Command::Restore {
                dir,
                backup,
                force,
                delta,
                target,
                target_timeline,
                target_action,
                standby,
                tablespace_map,
            } => {
                let target_action = target_action
                    .map(|a| a.parse())
                    .transpose()
                    .map_err(bad_target)?;
                Invocation::Restore(restore::RestoreArgs {
                    dir,
                    backup: Some(backup),
                    force,
                    delta,
                    target: recovery_target(target)?,
                    target_timeline,
                    target_action,
                    standby,
                    primary_conninfo: None,
                    tablespace_map: tablespace_map_of(tablespace_map)?,
                    replay: Default::default(),
                })
            }
            Command::CreateReplica {
                datadir,
                connstring,
                keep_data,
                ..
            } => Invocation::CreateReplica(create_replica::CreateReplicaArgs {
                datadir,
                connstring,
                keep_data,
                // Patroni hands the leader's password over in a libpq password file.
                passfile: vars
                    .get("PGPASSFILE")
                    .and_then(|p| std::fs::read_to_string(p).ok()),
            }),
            Command::Bootstrap {
                datadir,
                backup,
                target,
                ..
            } => Invocation::Bootstrap(bootstrap::BootstrapArgs {
                datadir,
                backup,
                target: recovery_target(target)?,
            }),
            Command::Expire { dry_run, json } => {
                Invocation::Expire(expire::ExpireArgs { dry_run }, Output::of(json))
            }
            Command::Verify {
                backup,
                wal_names_only,
                json,
            } => Invocation::Verify(
                verify::VerifyArgs {
                    backup,
                    wal_names_only,
                },
                Output::of(json),
            ),
            Command::Pin { id } => Invocation::Pin(pin::PinArgs { id, pinned: true }),
            Command::Unpin { id } => Invocation::Pin(pin::PinArgs { id, pinned: false }),
            Command::Info { json } => Invocation::Info(Output::of(json)),
            Command::Check(flags) => Invocation::Check(flags.args()?, Output::of(flags.json)),
            Command::Key { action } => match action {
                KeyCommand::List { json } => Invocation::Key(key::KeyArgs::List, Output::of(json)),
                KeyCommand::Add {
                    pass_file,
                    key_file,
                } => {
                    let key = key_file.is_some();
                    let file = key_file.or(pass_file).unwrap_or_default();
                    Invocation::Key(
                        key::KeyArgs::Add {
                            file,
                            key_file: key,
                        },
                        Output::Text,
                    )
                }
                KeyCommand::Remove { id } => {
                    Invocation::Key(key::KeyArgs::Remove { id }, Output::Text)
                }
            },
        })
    }
}

fn bad_target(e: String) -> Error {
    Error::new(ErrorKind::InvalidInput, e).hint("see 'pgkeep restore --help'")
}

/// `--tablespace-map` by oid; an oid mapped twice is refused.
fn tablespace_map_of(pairs: Vec<(u32, PathBuf)>) -> Result<BTreeMap<u32, PathBuf>, Error> {
    let mut map = BTreeMap::new();
    for (oid, dir) in pairs {
        if map.insert(oid, dir).is_some() {
            return Err(bad_target(format!(
                "--tablespace-map names oid {oid} twice"
            )));
        }
    }
    Ok(map)
}

/// The recovery target the flags name (the end of the archive when none).
fn recovery_target(t: TargetArgs) -> Result<restore::RecoveryTarget, Error> {
    use restore::RecoveryTarget as T;
    Ok(
        match (
            t.target_time,
            t.target_lsn,
            t.target_xid,
            t.target_name,
            t.target,
        ) {
            (Some(time), ..) => {
                let at = restore::target::parse_time(&time).map_err(|e| {
                    Error::new(ErrorKind::InvalidInput, e).hint(restore::target::TIME_HINT)
                })?;
                T::Time(time, at)
            }
            (_, Some(l), ..) => T::Lsn(l.parse().map_err(bad_target)?),
            (_, _, Some(x), ..) => T::Xid(restore::target::parse_xid(&x).map_err(bad_target)?),
            (_, _, _, Some(n), _) => T::Name(restore::target::parse_name(&n).map_err(bad_target)?),
            (_, _, _, _, Some(t)) if t == "immediate" => T::Immediate,
            (_, _, _, _, Some(t)) => {
                return Err(bad_target(format!(
                    "invalid --target '{t}': only 'immediate'"
                )));
            }
            _ => T::Latest,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn invocation(argv: &[&str]) -> Result<Invocation, Error> {
        let cli = Cli::try_parse_from(argv).unwrap();
        cli.command.into_invocation(&BTreeMap::new())
    }

    #[test]
    fn restore_flags_become_typed_options() {
        let inv = invocation(&[
            "pgkeep",
            "restore",
            "/d",
            "--target-lsn",
            "0/3000000",
            "--target-action",
            "promote",
            "--tablespace-map",
            "16400=/mnt/ts",
        ])
        .unwrap();
        let Invocation::Restore(a) = inv else {
            panic!("{inv:?}")
        };
        assert_eq!(
            a.target,
            restore::RecoveryTarget::Lsn("0/3000000".parse().unwrap())
        );
        assert_eq!(a.target_action, Some(restore::TargetAction::Promote));
        assert_eq!(a.backup.as_deref(), Some("latest"));
        assert_eq!(a.tablespace_map[&16400], PathBuf::from("/mnt/ts"));
        for bad in [
            &["pgkeep", "restore", "/d", "--target", "now"][..],
            &[
                "pgkeep",
                "restore",
                "/d",
                "--target-time",
                "2026-11-21 22:00:00",
            ],
            &["pgkeep", "restore", "/d", "--target-action", "explode"],
            &[
                "pgkeep",
                "restore",
                "/d",
                "--tablespace-map",
                "1=/a",
                "--tablespace-map",
                "1=/b",
            ],
        ] {
            let e = invocation(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn outputs_and_pins_are_typed() {
        assert!(matches!(
            invocation(&["pgkeep", "info", "--json"]).unwrap(),
            Invocation::Info(Output::Json)
        ));
        assert!(matches!(
            invocation(&["pgkeep", "verify"]).unwrap(),
            Invocation::Verify(_, Output::Text)
        ));
        assert!(matches!(
            invocation(&["pgkeep", "unpin", "x"]).unwrap(),
            Invocation::Pin(pin::PinArgs { pinned: false, .. })
        ));
        assert!(matches!(
            invocation(&["pgkeep", "backup", "--type", "incr"]).unwrap(),
            Invocation::Backup(backup::BackupArgs {
                kind: backup::Requested::Incremental,
                ..
            })
        ));
    }
}
