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

#[test]
fn a_drill_in_a_container_passes_and_leaves_no_container() {
    let podman = support::podman::Podman::start();
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let (pk, pg, source, id) = primary_with_backup(dir);
    pg.psql("INSERT INTO t SELECT g, 'after' FROM generate_series(501, 600) g");
    let committed: u64 = pg.psql("SELECT count(*) FROM t").parse().unwrap();
    let work = work_dir(dir);
    let host = podman.docker_host();
    let mut e = env(&work, &source);
    e.push(("PGKEEP_RESTORE_TEST_DOCKER_HOST", &host));
    let d = drill::run(&pk, &e, &["--sandbox", "container"]);
    assert_eq!(d.code, 0, "drill failed: {}", d.stderr);
    let r = d.report.clone().unwrap();
    assert_eq!(r["sandbox"], "container");
    assert_eq!(r["runs"], "localhost/pgkeep-pg:15");
    assert_eq!(r["backup"], id.as_str());
    assert_eq!(d.check("canary").0, "passed", "{:?}", d.check("canary"));
    let rows = table_rows(&r, "postgres", "public.t");
    assert_eq!(rows, committed);
    assert!(sandboxes(Path::new(&work)).is_empty());
    assert!(podman.labelled_containers().is_empty());
}

/// The rows a drill counted in `table` of `database`.
fn table_rows(r: &serde_json::Value, database: &str, table: &str) -> u64 {
    r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["database"] == database && t["table"] == table)
        .unwrap_or_else(|| panic!("no {database}.{table} in {r:#}"))["rows"]
        .as_u64()
        .unwrap()
}

/// A copy of the repository in `dir/<name>`, for a drill that damages it; the variables that
/// point pgkeep at it.
fn copy_repo(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let copy = dir.join(name);
    support::proc::run_ok(
        "cp -a",
        std::process::Command::new("cp")
            .arg("-a")
            .arg(dir.join("repo"))
            .arg(&copy),
    );
    let path = copy.display().to_string();
    (copy, path)
}

/// Runs a drill of `id` on the repository copy `path` (no canary: the source archives into
/// the original) and asserts it failed with exit 10, a stored failed report naming `cause`,
/// and nothing left behind.
fn fails(
    pk: &Pgkeep,
    work: &str,
    path: &str,
    extra: &[(&str, &str)],
    args: &[&str],
    cause: &str,
) -> drill::Drill {
    let mut e = vec![
        ("PGKEEP_RESTORE_TEST_SANDBOX", "local"),
        ("PGKEEP_RESTORE_TEST_WORK_DIR", work),
        ("PGKEEP_RESTORE_TEST_CANARY", "false"),
        ("PGKEEP_REPOSITORY_PATH", path),
    ];
    e.extend_from_slice(extra);
    let d = drill::run(pk, &e, args);
    assert_eq!(d.code, 10, "exit code; stderr: {}", d.stderr);
    let r = d.report.clone().expect("a report");
    assert_eq!(r["verdict"], "failed");
    assert!(
        d.cause().contains(cause),
        "cause '{}' should name '{cause}'",
        d.cause()
    );
    let stored = drill::files(Path::new(path))
        .into_iter()
        .filter(|f| f.contains("/restore-tests/"))
        .count();
    assert_eq!(stored, 1, "one stored report");
    assert!(sandboxes(Path::new(work)).is_empty(), "a sandbox was left");
    assert!(
        drill::processes_naming(work).is_empty(),
        "a server was left"
    );
    d
}

#[test]
fn damaged_backups_and_wal_fail_with_their_cause_and_leave_nothing() {
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let (pk, pg, _source, id) = primary_with_backup(dir);
    // WAL after the backup, over several segments.
    for i in 0..3 {
        pg.psql(&format!("INSERT INTO t SELECT g, 'w{i}' FROM generate_series(1000 * ({i} + 1), 1000 * ({i} + 1) + 50) g"));
        pg.switch_and_wait_archived();
    }
    let work = work_dir(dir);
    // The segment holding the backup's end (timeline 1), from `pgkeep info`.
    let stop = cluster::backups(&pk)[0]["stop_lsn"]
        .as_str()
        .unwrap()
        .to_string();
    let (hi, lo) = stop.split_once('/').unwrap();
    let lsn = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    let stop_segno = lsn / (16 << 20);
    let segment = |segno: u64| format!("{:08X}{:08X}{:08X}", 1, segno >> 8, segno & 0xff);

    // An object of the backup deleted.
    let (copy, path) = copy_repo(dir, "gone");
    std::fs::remove_file(copy.join(format!("main/backups/{id}/files/base/5/1259"))).unwrap();
    let d = fails(&pk, &work, &path, &[], &[], "restore: ");
    assert!(d.cause().contains("lacks base/5/1259"), "{}", d.cause());

    // A byte flipped in a part: its checksum names it.
    let (copy, path) = copy_repo(dir, "flipped");
    let part = copy.join(format!("main/backups/{id}/files/base/5/1259"));
    let mut bytes = std::fs::read(&part).unwrap();
    let at = bytes.len() - 7;
    bytes[at] ^= 0x20;
    std::fs::write(&part, bytes).unwrap();
    fails(&pk, &work, &path, &[], &[], "base/5/1259");

    // The segment holding the backup's end missing: recovery cannot reach consistency.
    let (copy, path) = copy_repo(dir, "no-consistency");
    let seg = segment(stop_segno);
    std::fs::remove_file(copy.join(format!("main/wal/{}/{seg}", &seg[..16]))).unwrap();
    fails(
        &pk,
        &work,
        &path,
        &[],
        &["--target", "immediate"],
        "recovery",
    );

    // A segment after the backup missing: replay to the end of the archive stops short.
    let (copy, path) = copy_repo(dir, "hole");
    let next = segment(stop_segno + 1);
    std::fs::remove_file(copy.join(format!("main/wal/{}/{next}", &next[..16]))).unwrap();
    let d = fails(&pk, &work, &path, &[], &[], "target");
    assert_eq!(d.check("target").0, "failed");

    // A probe returning false (on an undamaged copy).
    let (_copy, path) = copy_repo(dir, "probe");
    let probe_toml = dir.join("probe.toml");
    std::fs::write(
        &probe_toml,
        format!(
            "{}\n[restore_test]\n[[restore_test.probes]]\nname = \"enough rows\"\nsql = \"SELECT count(*) > 1000000 FROM t\"\n",
            std::fs::read_to_string(&pk.config).unwrap()
        ),
    )
    .unwrap();
    let probing = Pgkeep {
        config: probe_toml,
        env: pk.env.clone(),
    };
    let d = fails(&probing, &work, &path, &[], &[], "probe:enough rows");
    assert_eq!(d.check("probe:enough rows").1, "returned false");
    assert_eq!(d.check("target").0, "passed");
}
