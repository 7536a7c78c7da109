//! `pgkeep restore <datadir> [--backup ID] [--force]`: select a backup, write its files in
//! parallel (each verified before it is published), write the recovery settings so PostgreSQL
//! replays the archive through `pgkeep archive-get`, and write `global/pg_control` last — a
//! directory without it is plainly not a usable cluster, whatever happened before.

mod files;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::command::backups;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::localfs;
use crate::manifest::Manifest;
use crate::repo::Repo;

#[derive(Debug, Clone, Default)]
pub struct RestoreArgs {
    pub target: PathBuf,
    /// A backup id; the newest backup when `None`.
    pub backup: Option<String>,
    /// Empty a non-empty target directory first.
    pub force: bool,
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub backup: String,
    pub files: usize,
    pub bytes: u64,
    pub elapsed: Duration,
}

pub async fn run(cfg: &Config, args: RestoreArgs) -> Result<RestoreReport> {
    let began = Instant::now();
    // Select the backup.
    let repo = Repo::open(&cfg.repository).await?;
    let manifest = select(&repo, args.backup.as_deref()).await?;

    // Prepare the target directory.
    prepare_target(&args.target, args.force)?;

    // Directories and links, then every file but pg_control, in parallel and verified.
    files::create_dirs_and_links(&args.target, &manifest)?;
    let (count, bytes) = files::write_all(
        &repo,
        &manifest,
        &args.target,
        cfg.backup.concurrency,
        false,
    )
    .await?;

    // Recovery settings: replay the archive through pgkeep.
    write_recovery_settings(&args.target, cfg.path.as_deref())?;

    // pg_control last.
    let (n, b) = files::write_all(&repo, &manifest, &args.target, 1, true).await?;
    localfs::fsync_dir(&args.target).map_err(|e| Error::io("fsync", &args.target, e))?;
    Ok(RestoreReport {
        backup: manifest.id.to_string(),
        files: count + n,
        bytes: bytes + b,
        elapsed: began.elapsed(),
    })
}

async fn select(repo: &Repo, wanted: Option<&str>) -> Result<Manifest> {
    match wanted {
        Some(id) if id != "latest" => backups::load(repo, id).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("no backup {id} in {}", repo.location()),
            )
            .hint("'pgkeep info' lists the backups")
        }),
        _ => backups::list(repo).await?.pop().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("{} holds no backup", repo.location()),
            )
            .hint("take one with 'pgkeep backup'")
        }),
    }
}

fn prepare_target(target: &Path, force: bool) -> Result<()> {
    let occupied = std::fs::read_dir(target)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if occupied {
        if !force {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("target directory {} is not empty", target.display()),
            )
            .hint("restore into an empty directory, or pass --force to replace its contents"));
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
        .map_err(|e| Error::io("chmod", target, e))
}

/// `recovery.signal` plus a restore_command that calls this very pgkeep with this config.
fn write_recovery_settings(target: &Path, config: Option<&Path>) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("locate", Path::new("pgkeep"), e))?;
    let mut cmd = format!("{}", exe.display());
    if let Some(c) = config {
        let c = std::fs::canonicalize(c).unwrap_or_else(|_| c.to_path_buf());
        cmd.push_str(&format!(" --config {}", c.display()));
    }
    cmd.push_str(" archive-get %f %p");
    let settings = format!(
        "\n# added by pgkeep restore\nrestore_command = '{}'\nrecovery_target_timeline = 'latest'\n",
        cmd.replace('\'', "''")
    );
    let auto = target.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&settings);
    localfs::write_atomic(&auto, |f| std::io::Write::write_all(f, text.as_bytes()))
        .map_err(|e| Error::io("write", &auto, e))?;
    let signal = target.join("recovery.signal");
    localfs::write_atomic(&signal, |_| Ok(())).map_err(|e| Error::io("write", &signal, e))
}
