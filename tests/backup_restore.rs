//! Full backups over the replication protocol and restores, against a real PostgreSQL 15:
//! a backup is listed only once its WAL is archived and its manifest committed; a restored
//! backup replays the archive to exactly the committed rows; a damaged object stops a restore
//! before pg_control is written.

#![allow(clippy::unwrap_used)]

mod support;

use support::cluster::{self, backup_count};
use support::pgkeep::Pgkeep;
use support::postgres::{Pg, pg_bin};
use support::proc::{postgres_tempdir, wait_for};

fn archiving_primary(dir: &std::path::Path, extra: &[&str]) -> (Pgkeep, Pg, String) {
    cluster::archiving_primary(&pg_bin(), dir, "", extra, &[])
}

fn restore_and_start(pk: &Pgkeep, target: &std::path::Path, args: &[&str]) -> Pg {
    cluster::restore_and_start(pk, &pg_bin(), target, args)
}

#[test]
fn full_backup_restores_to_the_end_of_the_archive() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = archiving_primary(dir.path(), &[]);
    let repo = dir.path().join("repo");
    primary.pgbench(&["-i", "-s", "2", "-q"]);
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");

    // A second repository of the same cluster that the primary does not archive into: a
    // backup there never sees its WAL, so it is refused and never listed.
    let (other, elsewhere) =
        cluster::unarchived_repository(dir.path(), &primary, "wal_timeout = \"2s\"");
    let r = other.run(&["backup", "--source", &source]);
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.error_line().contains("was not archived"));
    assert_eq!(
        backup_count(&other),
        0,
        "an uncommitted backup must not be listed"
    );
    assert!(
        elsewhere.join("repo/main/backups").exists(),
        "its files were uploaded, not committed"
    );
    let r = other.run(&["restore", dir.path().join("nothing").to_str().unwrap()]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(!dir.path().join("nothing/global/pg_control").exists());

    // With its WAL archived, a backup commits.
    let r = pk.ok(&["backup", "--source", &source]);
    assert!(r.stdout.contains("committed"), "{}", r.stdout);
    assert_eq!(backup_count(&pk), 1);

    // Writes after the backup, with a restore point, a time and an LSN between batches.
    primary.psql("INSERT INTO marks SELECT generate_series(1, 100)");
    primary.psql("SELECT pg_create_restore_point('p1')");
    primary.psql("INSERT INTO marks SELECT generate_series(101, 200)");
    let time = primary.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    );
    primary.psql("INSERT INTO marks SELECT generate_series(201, 300)");
    let lsn = primary.psql("SELECT pg_current_wal_lsn()");
    primary.psql("INSERT INTO marks SELECT generate_series(301, 500)");
    let accounts = primary.psql("SELECT count(*) FROM pgbench_accounts");
    primary.switch_and_wait_archived();

    // Each target gives back exactly what had committed at it.
    let count = |name: &str, target: &[&str]| -> String {
        let mut restored = restore_and_start(&pk, &dir.path().join(name), target);
        assert_eq!(
            restored.psql("SELECT count(*) FROM pgbench_accounts"),
            accounts
        );
        let marks = restored.psql("SELECT count(*) FROM marks");
        restored.stop();
        marks
    };
    let promote = ["--target-action", "promote"];
    assert_eq!(count("latest", &[]), "500");
    assert_eq!(
        count("named", &["--target-name", "p1", promote[0], promote[1]]),
        "100"
    );
    assert_eq!(
        count("timed", &["--target-time", &time, promote[0], promote[1]]),
        "200"
    );
    assert_eq!(
        count("lsn", &["--target-lsn", &lsn, promote[0], promote[1]]),
        "300"
    );

    // A time before every backup cannot be reached: refused, nothing written.
    let r = pk.run(&[
        "restore",
        dir.path().join("past").to_str().unwrap(),
        "--target-time",
        "2001-01-01 00:00:00+00",
    ]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.error_line().contains("no backup can reach"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("past").exists());

    // A non-empty target is refused without --force.
    let r = pk.run(&["restore", dir.path().join("latest").to_str().unwrap()]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.error_line().contains("not empty"));

    // One flipped byte in a stored file: restore fails naming it, and pg_control is never written.
    let relpath = primary.psql("SELECT pg_relation_filepath('pgbench_accounts')");
    let backup_dir = std::fs::read_dir(repo.join("main/backups"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let object = backup_dir.join("files").join(&relpath);
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&object, bytes).unwrap();
    let damaged = dir.path().join("damaged");
    let r = pk.run(&["restore", damaged.to_str().unwrap()]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.error_line().contains(&relpath), "{}", r.stderr);
    assert!(!damaged.join("global/pg_control").exists());
}

#[test]
fn backup_from_a_streaming_standby_and_kill_9_mid_backup() {
    let dir = postgres_tempdir();
    // A standby cannot switch WAL: the primary's own switches bring the last segment.
    let (pk, primary, source) = archiving_primary(dir.path(), &["archive_timeout = 1"]);
    primary.pgbench(&["-i", "-s", "2", "-q"]);
    let mut standby = primary.standby(&dir.path().join("standby"));
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()"), "t");

    // kill -9 in the middle of a backup whose WAL can never arrive (a second repository the
    // primary does not archive into): nothing half-done is ever listed.
    let (other, elsewhere, mut child) = cluster::stuck_backup(dir.path(), &primary, &source);
    let files_dir = elsewhere.join("repo/main/backups");
    wait_for(
        "the backup's first file",
        std::time::Duration::from_secs(60),
        || std::fs::read_dir(&files_dir).ok()?.next().map(|_| ()),
    );
    // While it runs, a second backup of the same repository is refused.
    let r = other.run(&["backup", "--source", &source]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.error_line().contains("lease"), "{}", r.stderr);
    child.kill().unwrap();
    assert!(
        !child.wait().unwrap().success(),
        "the backup cannot have finished: its WAL never arrives"
    );
    assert_eq!(backup_count(&other), 0);
    let leftover: Vec<_> = std::fs::read_dir(&files_dir).unwrap().collect();
    assert_eq!(leftover.len(), 1);
    let leftover = leftover[0].as_ref().unwrap().path();
    // A marker among its objects: the next backup may reuse the folder name (same second),
    // but never writes this path.
    let marker = leftover.join("files/base/marker-of-the-interrupted-backup");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, b"left behind").unwrap();

    // The next backup takes over the dead holder's lease and removes the leftovers first (it
    // then fails on its own missing WAL, uncommitted, and gives the lease back).
    let out = other
        .command()
        .args(["backup", "--source", &source])
        .env("PGKEEP_BACKUP_WAL_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stale backup lease"), "{stderr}");
    assert!(
        !marker.exists(),
        "the interrupted backup's objects are gone"
    );
    assert!(!elsewhere.join("repo/main/locks/backup.json").exists());

    // The backup from the standby. BASE_BACKUP on a standby waits for a restartpoint, which
    // needs a checkpoint record from the primary: checkpoint the primary until it is through.
    let standby_source = format!(
        "host={} port={} user=postgres",
        standby.sock.display(),
        standby.port
    );
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    primary.psql("INSERT INTO marks SELECT generate_series(1, 100)");
    wait_for(
        "the standby to replay",
        std::time::Duration::from_secs(60),
        || (standby.psql("SELECT count(*) FROM marks") == "100").then_some(()),
    );
    let mut backup = pk
        .command()
        .args(["backup", "--source", &standby_source])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(
        "the backup from the standby",
        std::time::Duration::from_secs(120),
        || match backup.try_wait().unwrap() {
            Some(status) => Some(status),
            None => {
                primary.psql("CHECKPOINT");
                None
            }
        },
    );
    let out = backup.wait_with_output().unwrap();
    assert!(
        status.success() && String::from_utf8_lossy(&out.stdout).contains("committed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    primary.psql("INSERT INTO marks SELECT generate_series(101, 250)");
    primary.switch_and_wait_archived();
    standby.stop();

    let restored = restore_and_start(
        &pk,
        &dir.path().join("restored"),
        &["--target-action", "promote"],
    );
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "250");
}

#[test]
fn restore_follows_a_timeline_switch_to_the_latest_timeline() {
    let dir = postgres_tempdir();
    let (pk, mut primary, source) = archiving_primary(dir.path(), &[]);
    let repo = dir.path().join("repo");
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    pk.ok(&["backup", "--source", &source]);

    // A standby that will be promoted; it archives through pgkeep once it is primary.
    let standby = primary.standby(&dir.path().join("standby"));
    primary.psql("INSERT INTO marks SELECT generate_series(1, 100)");
    primary.switch_and_wait_archived();
    wait_for(
        "the standby to replay",
        std::time::Duration::from_secs(60),
        || (standby.psql("SELECT count(*) FROM marks") == "100").then_some(()),
    );

    // Failover: the old primary stops, the standby is promoted to timeline 2 and keeps writing.
    primary.stop();
    standby.psql("SELECT pg_promote()");
    standby.wait_promoted();
    standby.psql("INSERT INTO marks SELECT generate_series(101, 200)");
    standby.switch_and_wait_archived();
    assert!(
        repo.join("main/wal/00000002.history").exists(),
        "the history file is archived"
    );

    // The backup from timeline 1, restored to the end of the archive, follows the switch.
    let restored = restore_and_start(
        &pk,
        &dir.path().join("restored"),
        &["--target-action", "promote"],
    );
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "200");
    let tli: u32 = restored
        .psql("SELECT timeline_id FROM pg_control_checkpoint()")
        .parse()
        .unwrap();
    assert!(tli >= 2, "recovery stayed on timeline {tli}");
    assert!(
        restored.log().contains("00000002.history"),
        "{}",
        restored.log()
    );
}

#[test]
fn page_checksums_are_verified_and_a_bad_page_is_reported_not_fatal() {
    let dir = postgres_tempdir();
    let (pk, mut primary, source) =
        cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &["-k"]);
    assert_eq!(primary.psql("SHOW data_checksums"), "on");
    primary.psql("CREATE TABLE t AS SELECT generate_series(1, 20000) AS id");
    primary.psql("CHECKPOINT");
    let relpath = primary.psql("SELECT pg_relation_filepath('t')");

    // Damage block 1 of the table on disk while the server is down (it is not read again).
    primary.stop();
    let file = primary.data.join(&relpath);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8192 + 5000] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    primary.start();

    let r = pk.ok(&["backup", "--source", &source]);
    assert!(r.stderr.contains("failed their checksum"), "{}", r.stderr);

    // The manifest names exactly that block; every other page of the cluster verified, which
    // also shows that pgkeep computes PostgreSQL's page checksum.
    let backups = dir.path().join("repo/main/backups");
    let id = std::fs::read_dir(&backups)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let stored = std::fs::read(id.join("manifest.json")).unwrap();
    let mut json = Vec::new();
    pgkeep::pipeline::decode(&stored, &mut json, pgkeep::pipeline::Seal::Clear).unwrap();
    let manifest: pgkeep::manifest::Manifest = serde_json::from_slice(&json).unwrap();
    let bad: Vec<(String, Vec<u32>)> = manifest
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            pgkeep::manifest::EntryKind::File { bad_pages, .. } if !bad_pages.is_empty() => {
                Some((e.path.clone(), bad_pages.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(bad, vec![(relpath, vec![1])]);
    let checked = manifest
        .entries
        .iter()
        .filter(|e| pgkeep::pg::page::first_block(&e.path).is_some())
        .count();
    assert!(
        checked > 100,
        "only {checked} relation files were in the backup"
    );
}

#[test]
fn a_backup_cut_off_by_the_server_fails_at_once_and_is_not_listed() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = archiving_primary(dir.path(), &[]);
    primary.pgbench(&["-i", "-s", "5", "-q"]);
    // 80 MB at 1 MB/s: the walsender is still sending when it is terminated.
    let mut child = pk
        .command()
        .args(["backup", "--source", &source])
        .env("PGKEEP_BACKUP_MAX_RATE", "1024")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let backups_dir = dir.path().join("repo/main/backups");
    wait_for(
        "the backup to copy",
        std::time::Duration::from_secs(60),
        || std::fs::read_dir(&backups_dir).ok()?.next().map(|_| ()),
    );
    primary.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'walsender'",
    );
    // The error must end the run: nothing may keep waiting for a stream that is gone. (A hung
    // pgkeep is killed before the test fails, so it cannot hold the test runner's output.)
    let began = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if began.elapsed() > std::time::Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("the backup still runs 60 s after its stream was cut off");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(12), "{stderr}");
    assert_eq!(backup_count(&pk), 0);
}
