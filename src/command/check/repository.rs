//! The repository's checks: it opens (reachable, initialised, key accepted), a probe object
//! can be written and removed, the store still does what `repo.json` recorded about
//! create-if-absent, it serves the cluster in `[postgres] data_dir`, and the store's clock
//! agrees with this machine's.

use std::time::Duration;

use super::CheckReport;
use crate::command::with_deadline;
use crate::config::Config;
use crate::pg::ControlFile;
use crate::repo::{CreateMode, Repo};

/// Beyond this, leases taken on one host and read on another misjudge their expiry, and S3
/// signatures (15 minutes) are not far off.
const MAX_SKEW: Duration = Duration::from_secs(30);
/// One deadline for opening and probing the repository.
const DEADLINE: Duration = Duration::from_secs(60);

/// Opens the repository and probes it; the repository when it opened.
pub(super) async fn check(cfg: &Config, r: &mut CheckReport) -> Option<Repo> {
    if !cfg.repository.is_configured() {
        r.skip(
            "repository",
            "none on this node: the archive commands go through pgkeepd ([server])",
        );
        return None;
    }
    let opened = with_deadline(
        "opening the repository",
        DEADLINE,
        Repo::open(&cfg.repository),
    );
    let repo = match opened.await {
        Ok(repo) => repo,
        Err(e) => {
            r.error("repository", &e);
            return None;
        }
    };
    let info = repo.info();
    r.ok(
        "repository",
        format!(
            "{}: system id {}, postgresql {}{}",
            repo.location(),
            info.system_id,
            info.version,
            if repo.data_key().is_some() {
                ", encrypted (key accepted)"
            } else {
                ""
            }
        ),
    );
    probe(&repo, r).await;
    data_dir(cfg, &repo, r);
    Some(repo)
}

async fn probe(repo: &Repo, r: &mut CheckReport) {
    let p = match with_deadline("a probe write", DEADLINE, repo.probe_store()).await {
        Ok(p) => p,
        Err(e) => {
            r.error("writable", &e);
            return;
        }
    };
    r.ok("writable", "a probe object was written, read and deleted");
    match (repo.info().create_mode, p.mode) {
        (_, CreateMode::Enforced) => r.ok(
            "create-if-absent",
            "enforced by the store (a second write under one name is refused)",
        ),
        (CreateMode::Emulated, CreateMode::Emulated) => r.ok(
            "create-if-absent",
            "emulated: the store ignores If-None-Match, so pgkeep reads before it writes (repo.json says so)",
        ),
        (CreateMode::Enforced, CreateMode::Emulated) => r.fail(
            "create-if-absent",
            "the store overwrote the probe object, but repo.json records create_mode = enforced: a second write under one name would replace the first",
            "the repository moved to a store that ignores If-None-Match (e.g. Garage): put it back on one that enforces it, or initialise a new repository there so pgkeep emulates it",
        ),
    }
    let skew = (p.stored_at - p.local_at).num_milliseconds();
    // Stores report modification times to the second: allow that much besides the bound.
    let bound = MAX_SKEW.as_millis() as i64 + 1000;
    if skew.abs() > bound {
        r.fail(
            "clock",
            format!(
                "this machine's clock is {:.1}s {} the store's",
                skew.abs() as f64 / 1000.0,
                if skew > 0 { "behind" } else { "ahead of" }
            ),
            "synchronise the clocks (NTP/chrony) of this host and the store",
        );
    } else {
        r.ok(
            "clock",
            format!(
                "within {}s of the store's ({:+.1}s)",
                MAX_SKEW.as_secs(),
                skew as f64 / 1000.0
            ),
        );
    }
}

/// The data directory named in `[postgres]` belongs to the cluster the repository serves.
fn data_dir(cfg: &Config, repo: &Repo, r: &mut CheckReport) {
    let Some(dir) = &cfg.postgres.data_dir else {
        return;
    };
    let path = dir.join("global/pg_control");
    let control = match std::fs::read(&path) {
        Ok(bytes) => ControlFile::parse(&bytes),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    };
    match control {
        Ok(c) => match repo
            .info()
            .check_serves(c.system_id, c.version, repo.location())
        {
            Ok(()) => r.ok(
                "data directory",
                format!("{} is the cluster the repository serves", dir.display()),
            ),
            Err(e) => r.error("data directory", &e),
        },
        Err(e) => r.fail(
            "data directory",
            e,
            "check postgres.data_dir (and that this user may read global/pg_control)",
        ),
    }
}
