//! Restore drills (`pgkeepd restore-test`) with the local sandbox against real PostgreSQL:
//! - a passing drill to the end of the archive: the canary restore point left after the backup
//!   is replayed, every user table's rows equal what was committed, the backup is then shown
//!   as proven by `pgkeep info`, nothing is left behind, and the only thing the drill added to
//!   the repository is its report (the promoted sandbox archived nothing: no timeline 2);
//! - drills that must fail, each naming its cause and leaving nothing behind.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::cluster::{self, archiving_primary};
use support::drill::{self, sandboxes};
use support::pgkeep::Pgkeep;
use support::postgres::{Pg, pg_bin};
use support::proc::postgres_tempdir;

/// The drill's settings for a test in `dir`: sandboxes under `dir/work`, the source for the
/// canary.
fn env<'a>(work: &'a str, source: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("PGKEEP_RESTORE_TEST_SANDBOX", "local"),
        ("PGKEEP_RESTORE_TEST_WORK_DIR", work),
        ("PGKEEP_RESTORE_TEST_TIMEOUT", "5m"),
        ("PGKEEP_BACKUP_SOURCE", source),
    ]
}

/// A primary with checksums, data in two databases (a toasted column, an index), archived, and
/// a full backup of it. Returns the handles and the backup id.
fn primary_with_backup(dir: &Path) -> (Pgkeep, Pg, String, String) {
    let (pk, pg, source) = archiving_primary(&pg_bin(), dir, "", &[], &["--data-checksums"]);
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, body text)");
    pg.psql("INSERT INTO t SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 500) g");
    pg.psql("CREATE DATABASE app");
    let id = cluster::backup(&pk, &source, "full");
    (pk, pg, source, id)
}

fn work_dir(dir: &Path) -> String {
    let w = dir.join("work");
    std::fs::create_dir_all(&w).unwrap();
    w.display().to_string()
}

#[test]
fn a_drill_to_the_end_of_the_archive_proves_the_backup_and_leaves_nothing() {
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let (pk, pg, source, id) = primary_with_backup(dir);
    // Committed after the backup: only WAL replay past the backup brings these back.
    pg.psql("INSERT INTO t SELECT g, 'after' FROM generate_series(501, 777) g");
    pg.psql("DELETE FROM t WHERE id <= 10");
    let committed: u64 = pg.psql("SELECT count(*) FROM t").parse().unwrap();
    let repo = dir.join("repo");
    let before = drill::files(&repo);

    let work = work_dir(dir);
    let d = drill::run(&pk, &env(&work, &source), &[]);
    assert_eq!(d.code, 0, "drill failed: {}", d.stderr);
    let r = d.report.clone().unwrap();
    assert_eq!(r["verdict"], "passed", "{r:#}");
    assert_eq!(r["backup"], id.as_str());
    assert_eq!(r["target"], "latest");
    let (canary, detail) = d.check("canary");
    assert_eq!(canary, "passed", "{detail}");
    assert_eq!(d.check("target").0, "passed");
    assert_eq!(d.check("read:postgres").0, "passed");
    assert_eq!(d.check("read:app").0, "passed");
    assert_eq!(
        d.check("amcheck:postgres").0,
        "passed",
        "{:?}",
        d.check("amcheck:postgres")
    );
    // The invariant: the restored rows are exactly the committed ones.
    let rows = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["database"] == "postgres" && t["table"] == "public.t")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();
    assert_eq!(rows, committed);
    assert!(r["rto_seconds"].as_f64().unwrap() > 0.0);
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "select", "restore", "start", "recover", "verify", "report", "clean"
        ]
    );

    // Nothing left: no sandbox directory, no server of it.
    assert!(sandboxes(Path::new(&work)).is_empty());
    assert!(drill::processes_naming(&work).is_empty());
    // The repository: the report (stored), WAL of the source's timeline 1, nothing else new;
    // no hold left; no timeline 2 (the promoted sandbox never archived).
    let after = drill::files(&repo);
    let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    assert!(
        new.iter()
            .all(|f| f.contains("/restore-tests/") || f.contains("/wal/000000010")),
        "the drill added {new:?}"
    );
    assert_eq!(
        new.iter().filter(|f| f.contains("/restore-tests/")).count(),
        1
    );
    let stray: Vec<&String> = after
        .iter()
        .filter(|f| f.contains("/wal/00000002") || f.contains("/holds/"))
        .collect();
    assert!(stray.is_empty(), "left in the repository: {stray:?}");
    // `pgkeep info` shows the backup as proven, with the drill's RTO.
    let info = cluster::backups(&pk);
    let b = info.iter().find(|b| b["id"] == id.as_str()).unwrap();
    assert_eq!(b["proven"]["run_id"], r["run_id"]);
}
