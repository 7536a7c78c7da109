//! `pgkeep restore <datadir> [--backup ID] [--force]`: select a backup, write its files in
//! parallel (each verified before it is published), write the recovery settings so PostgreSQL
//! replays the archive through `pgkeep archive-get`, and write `global/pg_control` last — a
//! directory without it is plainly not a usable cluster, whatever happened before.

mod assemble;
mod delta;
mod files;
pub mod target;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::command::backups;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::localfs;
use crate::manifest::Manifest;
use crate::repo::Repo;
pub use target::{RecoveryTarget, TargetAction};

#[derive(Debug, Clone)]
pub struct RestoreArgs {
    pub dir: PathBuf,
    /// A backup id; the newest backup when `None`.
    pub backup: Option<String>,
    /// Empty a non-empty target directory first.
    pub force: bool,
    /// Restore into a non-empty directory in place: keep the files that match, remove the
    /// ones the backup lacks.
    pub delta: bool,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// `recovery_target_timeline`: `latest` (default) or a timeline number.
    pub target_timeline: Option<String>,
    /// `recovery_target_action`; PostgreSQL's default (pause) when unset.
    pub target_action: Option<TargetAction>,
    /// Start as a standby (`standby.signal`) instead of a one-off recovery.
    pub standby: bool,
    /// `primary_conninfo` for a standby that streams from its primary once the archive is
    /// replayed.
    pub primary_conninfo: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub backup: String,
    /// Files written, and their bytes (with --delta, matching files are not written).
    pub files: usize,
    pub bytes: u64,
    /// With --delta: files kept as they were, and entries removed.
    pub kept: usize,
    pub removed: usize,
    pub elapsed: Duration,
}

pub async fn run(cfg: &Config, args: RestoreArgs) -> Result<RestoreReport> {
    let began = Instant::now();
    // Select the backup.
    let repo = Repo::open(&cfg.repository).await?;
    let manifest = select(&repo, args.backup.as_deref(), &args.target).await?;
    let hold = crate::repo::hold::hold(&repo, manifest.id.as_str(), "restore").await?;

    // Prepare the target directory (with --delta: pg_control first, then what is extraneous).
    let removed = prepare_target(&args, &manifest)?;

    // Directories and links, then every file but pg_control, in parallel and verified.
    files::create_dirs_and_links(&args.dir, &manifest)?;
    let (dir, c) = (&args.dir, cfg.backup.concurrency);
    let (count, bytes) = files::write_all(&repo, &manifest, dir, c, false, args.delta).await?;

    // Recovery settings: replay the archive through pgkeep.
    write_recovery_settings(&args, cfg.path.as_deref())?;

    // pg_control last: until it is there, the directory cannot start as a cluster.
    let (n, b) = files::write_all(&repo, &manifest, &args.dir, 1, true, false).await?;
    localfs::fsync_dir(&args.dir).map_err(|e| Error::io("fsync", &args.dir, e))?;
    let total = manifest.entries.iter().filter(|e| e.is_file()).count();
    hold.release().await?;
    Ok(RestoreReport {
        backup: manifest.id.to_string(),
        files: count + n,
        bytes: bytes + b,
        kept: total - count - n,
        removed,
        elapsed: began.elapsed(),
    })
}

async fn select(repo: &Repo, wanted: Option<&str>, target: &RecoveryTarget) -> Result<Manifest> {
    if let Some(id) = wanted.filter(|id| *id != "latest") {
        return backups::load(repo, id).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("no backup {id} in {}", repo.location()),
            )
            .hint("'pgkeep info' lists the backups")
        });
    }
    let all = backups::list(repo).await?;
    if all.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} holds no backup", repo.location()),
        )
        .hint("take one with 'pgkeep backup'"));
    }
    target.choose(&all)?.cloned().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!(
                "no backup can reach {target}: the oldest ended at {} (lsn {})",
                all[0].stop_time, all[0].stop_lsn
            ),
        )
        .hint("a point in time can only be restored from a backup that ended before it")
    })
}

/// Returns how many entries --delta removed.
fn prepare_target(args: &RestoreArgs, m: &Manifest) -> Result<usize> {
    let target = args.dir.as_path();
    let occupied = std::fs::read_dir(target)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if occupied && args.delta {
        return Ok(delta::clean(target, m)?.removed);
    }
    if occupied {
        if !args.force {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("target directory {} is not empty", target.display()),
            )
            .hint("restore into an empty directory, or pass --delta (keep matching files) or --force (replace everything)"));
        }
        for e in std::fs::read_dir(target).map_err(|e| Error::io("read", target, e))? {
            let p = e.map_err(|e| Error::io("read", target, e))?.path();
            let removed = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            removed.map_err(|e| Error::io("remove", &p, e))?;
        }
    }
    std::fs::create_dir_all(target).map_err(|e| Error::io("create", target, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("chmod", target, e))?;
    Ok(0)
}

/// The signal file plus a restore_command that calls this very pgkeep with this config, and
/// the recovery target.
fn write_recovery_settings(args: &RestoreArgs, config: Option<&Path>) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("locate", Path::new("pgkeep"), e))?;
    let mut cmd = format!("{}", exe.display());
    if let Some(c) = config {
        let c = std::fs::canonicalize(c).unwrap_or_else(|_| c.to_path_buf());
        cmd.push_str(&format!(" --config {}", c.display()));
    }
    cmd.push_str(" archive-get %f %p");
    let mut settings = vec![
        ("restore_command", cmd),
        (
            "recovery_target_timeline",
            args.target_timeline
                .clone()
                .unwrap_or_else(|| "latest".into()),
        ),
    ];
    settings.extend(args.target.settings());
    if let Some(action) = args.target_action {
        settings.push(("recovery_target_action", action.to_string()));
    }
    if let Some(conninfo) = &args.primary_conninfo {
        settings.push(("primary_conninfo", conninfo.clone()));
    }
    let mut text =
        std::fs::read_to_string(args.dir.join("postgresql.auto.conf")).unwrap_or_default();
    text.push_str("\n# added by pgkeep restore\n");
    for (k, v) in settings {
        text.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
    }
    let auto = args.dir.join("postgresql.auto.conf");
    localfs::write_atomic(&auto, |f| std::io::Write::write_all(f, text.as_bytes()))
        .map_err(|e| Error::io("write", &auto, e))?;
    let signal = args.dir.join(if args.standby {
        "standby.signal"
    } else {
        "recovery.signal"
    });
    localfs::write_atomic(&signal, |_| Ok(())).map_err(|e| Error::io("write", &signal, e))
}
