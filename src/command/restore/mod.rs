//! `pgkeep restore <datadir> [--backup ID] [--force]`: select a backup, decide where each of
//! its entries goes (`place`: inside the target, tablespaces under it or where mapped), write
//! its files in parallel (each verified before it is published), write the recovery settings
//! so PostgreSQL replays the archive through `pgkeep archive-get` with this configuration, and
//! write `global/pg_control` last — a directory without it is plainly not a usable cluster,
//! whatever happened before.

mod assemble;
mod buffer;
mod delta;
mod files;
mod layers;
pub mod place;
mod prepare;
pub mod recovery;
pub mod target;
mod timeline;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::localfs;
use crate::manifest::Manifest;
use crate::manifest::listing;
use crate::repo::Repo;
use place::Placement;
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
    /// Where each tablespace (by oid) is restored; one not named here goes to
    /// `<dir>/pg_tblspc_data/<oid>`. Never where the source cluster kept it.
    pub tablespace_map: BTreeMap<u32, PathBuf>,
    /// What `restore_command` runs: an explicit input, since the program that restores is
    /// not always the one replay should call (pgkeepd, or a path inside a container).
    pub replay: ReplayCommand,
}

/// What `restore_command` runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReplayCommand {
    /// This very program's `archive-get`, with this configuration.
    #[default]
    ThisProgram,
    /// That pgkeep program's `archive-get`, with this configuration.
    Program(PathBuf),
    /// This command, as it is (PostgreSQL's `%f`/`%p` placeholders and all): a restore drill
    /// copies from WAL it staged itself.
    Given(String),
}

#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub backup: String,
    /// Files written, and their bytes (with --delta, matching files are not written).
    pub files: usize,
    pub bytes: u64,
    /// Whether this was a restore in place (--delta).
    pub delta: bool,
    /// With --delta: files kept as they were, and entries removed.
    pub kept: usize,
    pub removed: usize,
    pub elapsed: Duration,
}

/// The line `pgkeep restore` prints.
impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = if self.delta {
            format!(
                " ({} kept as they were, {} removed)",
                self.kept, self.removed
            )
        } else {
            String::new()
        };
        writeln!(
            f,
            "restored backup {}: {} files, {:.1} MiB{kept} in {:.1} s; start PostgreSQL to replay the archive",
            self.backup,
            self.files,
            self.bytes as f64 / 1048576.0,
            self.elapsed.as_secs_f64()
        )
    }
}

pub async fn run(cfg: &Config, args: RestoreArgs) -> Result<RestoreReport> {
    let began = Instant::now();
    // The recovery settings, checked before anything is read or written.
    let settings = recovery_settings(cfg, &args)?;

    // Select the backup, and decide where each of its entries goes (never where it says).
    let repo = Repo::open(&cfg.repository).await?;
    let manifest = select(&repo, &args).await?;
    let place = placement(&args, &manifest)?;
    // Held until the end, so that expire cannot delete what this restore still reads.
    let hold = crate::repo::hold::hold(&repo, manifest.id.as_str(), "restore").await?;

    // Prepare the target directory (with --delta: pg_control first, then what is extraneous).
    let removed = prepare::prepare(&args, &place, &manifest)?;

    // Directories and links, then every file but pg_control, in parallel and verified.
    files::create_dirs_and_links(&place, &manifest)?;
    let durability = files::Durability::open(&place, &manifest)?;
    let c = cfg.backup.concurrency;
    let each = durability.per_file();
    let (count, bytes) =
        files::write_all(&repo, &manifest, &place, c, false, args.delta, each).await?;

    // Recovery settings: replay the archive through pgkeep.
    write_recovery_settings(&args, &settings)?;

    // Crash safety rests on this order. Until pg_control exists the directory cannot start as
    // a cluster (`--delta` and `--force` removed it, durably, before anything else), so the
    // files above were not synced one by one: they become durable here in one pass — syncfs
    // per file system, on descriptors open since before the first write (where syncfs cannot
    // report errors, each file was fsynced as it was written) — then the directories.
    // Only then is pg_control written, fsynced and renamed, and its directory fsynced: a crash
    // at any point before leaves no pg_control and a rerun (`--delta` compares sha256)
    // repairs it; after it, every byte pg_control vouches for is already on disk.
    blocking_durable(durability, &place, &manifest).await?;
    let (n, b) = files::write_all(&repo, &manifest, &place, 1, true, false, true).await?;
    localfs::fsync_dir(&args.dir).map_err(|e| Error::io("fsync", &args.dir, e))?;
    let total = (manifest.entries.iter())
        .filter(|e| e.is_file() && !place.skipped(&e.path))
        .count();
    hold.release().await?;
    Ok(RestoreReport {
        backup: manifest.id.to_string(),
        files: count + n,
        bytes: bytes + b,
        delta: args.delta,
        kept: total - count - n,
        removed,
        elapsed: began.elapsed(),
    })
}

/// `Durability::finish` off the async threads (it waits for the whole restore's writeback).
async fn blocking_durable(
    durability: files::Durability,
    place: &Placement,
    manifest: &Manifest,
) -> Result<()> {
    let (place, manifest) = (place.clone(), manifest.clone());
    crate::command::blocking(move || durability.finish(&place, &manifest)).await
}

/// The backup to restore: the one asked for, or the newest that can reach the target along
/// the target timeline.
async fn select(repo: &Repo, args: &RestoreArgs) -> Result<Manifest> {
    let target = &args.target;
    if let Some(id) = args.backup.as_deref().filter(|id| *id != "latest") {
        return listing::load(repo, id).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("no backup {id} in {}", repo.location()),
            )
            .hint("'pgkeep info' lists the backups")
        });
    }
    let all = listing::list(repo).await?;
    if all.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} holds no backup", repo.location()),
        )
        .hint("take one with 'pgkeep backup'"));
    }
    let history = timeline::target_history(repo, &target_timeline(args)?, &all).await?;
    if let Some(m) = target.choose(&all, history.as_ref()) {
        return Ok(m.clone());
    }
    if let (Some(h), Some(m)) = (&history, target.choose(&all, None)) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "no backup can reach {target} on timeline {}: backup {} (timeline {}, ended at lsn {}) is not on its history",
                h.timeline.0, m.id, m.timeline.0, m.stop_lsn
            ),
        )
        .hint("a backup can only be restored towards its own timeline or one that branched from it after the backup ended; choose the timeline with --target-timeline"));
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "no backup can reach {target}: the oldest ended at {} (lsn {})",
            all[0].stop_time_text(),
            all[0].stop_lsn
        ),
    )
    .hint("a point in time can only be restored from a backup that ended before it"))
}

/// `recovery_target_timeline` as PostgreSQL is given it: `latest` unless asked otherwise.
fn target_timeline(args: &RestoreArgs) -> Result<String> {
    let timeline = args.target_timeline.as_deref().unwrap_or("latest");
    target::parse_timeline(timeline)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e).hint("see 'pgkeep restore --help'"))
}

/// The target and the mapped tablespace directories made absolute: a tablespace link must
/// name its directory absolutely.
fn placement(args: &RestoreArgs, m: &Manifest) -> Result<Placement> {
    let absolute = |p: &Path| std::path::absolute(p).map_err(|e| Error::io("resolve", p, e));
    let mut map = BTreeMap::new();
    for (oid, dir) in &args.tablespace_map {
        map.insert(*oid, absolute(dir)?);
    }
    Placement::new(&absolute(&args.dir)?, m, &map)
}

/// The lines restore appends to postgresql.auto.conf: a restore_command that calls this
/// pgkeep (or `pgkeep_bin`) with this configuration, and the recovery target. Every value is
/// checked, so a bad one is refused before anything is written.
fn recovery_settings(cfg: &Config, args: &RestoreArgs) -> Result<String> {
    let bad =
        |e: String| Error::new(ErrorKind::InvalidInput, e).hint("see 'pgkeep restore --help'");
    args.target.validate().map_err(bad)?;
    let timeline = target_timeline(args)?;
    let restore_command = match &args.replay {
        ReplayCommand::Given(command) => command.clone(),
        ReplayCommand::Program(p) => replay_command(cfg, p)?,
        ReplayCommand::ThisProgram => {
            let me =
                std::env::current_exe().map_err(|e| Error::io("locate", Path::new("pgkeep"), e))?;
            replay_command(cfg, &me)?
        }
    };
    let mut settings = vec![
        ("restore_command", restore_command),
        ("recovery_target_timeline", timeline),
    ];
    settings.extend(args.target.settings());
    if let Some(action) = args.target_action {
        settings.push(("recovery_target_action", action.to_string()));
    }
    if let Some(conninfo) = &args.primary_conninfo {
        settings.push(("primary_conninfo", conninfo.clone()));
    }
    let mut text = String::from("\n# added by pgkeep restore\n");
    for (k, v) in settings {
        text.push_str(&recovery::conf_line(k, &v)?);
    }
    Ok(text)
}

/// `program`'s archive-get with this configuration, quoted for restore_command.
fn replay_command(cfg: &Config, program: &Path) -> Result<String> {
    let config =
        (cfg.path.as_deref()).map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.to_path_buf()));
    recovery::restore_command(&recovery::Replay {
        program,
        config: config.as_deref(),
        env: &cfg.env,
    })
}

/// Appends `settings` to postgresql.auto.conf and writes the signal file.
fn write_recovery_settings(args: &RestoreArgs, settings: &str) -> Result<()> {
    let auto = args.dir.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(settings);
    localfs::write_atomic(&auto, |f| std::io::Write::write_all(f, text.as_bytes()))
        .map_err(|e| Error::io("write", &auto, e))?;
    let (wanted, other) = if args.standby {
        ("standby.signal", "recovery.signal")
    } else {
        ("recovery.signal", "standby.signal")
    };
    // A backup of a standby carries its standby.signal: left there, it would win over
    // recovery.signal and the restored server would wait for WAL forever instead of promoting.
    let stale = args.dir.join(other);
    match std::fs::remove_file(&stale) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &stale, e)),
    }
    let signal = args.dir.join(wanted);
    localfs::write_atomic(&signal, |_| Ok(())).map_err(|e| Error::io("write", &signal, e))
}
