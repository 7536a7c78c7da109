//! Full backups over the replication protocol and restores, against a real PostgreSQL 15:
//! a backup is listed only once its WAL is archived and its manifest committed; a restored
//! backup replays the archive to exactly the committed rows; a damaged object stops a restore
//! before pg_control is written.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::pgkeep::Pgkeep;
use support::postgres::{Pg, pg_bin};
use support::proc::{postgres_tempdir, run_ok, wait_for};

fn chown_postgres(path: &std::path::Path) {
    run_ok(
        "chown",
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path),
    );
}

fn backup_count(pk: &Pgkeep) -> usize {
    let out = pk.ok(&["info", "--json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["backups"].as_array().unwrap().len()
}

#[test]
fn full_backup_restores_to_the_end_of_the_archive() {
    let dir = postgres_tempdir();
    let repo = dir.path().join("repo");
    let pk = Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"{}\"\n[backup]\nwal_timeout = \"60s\"\n",
            repo.display()
        ),
    );
    let mut primary = Pg::initdb(&pg_bin(), dir.path(), "primary");
    primary.configure(&[
        "wal_level = replica".into(),
        "archive_mode = on".into(),
        format!(
            "archive_command = '{}'",
            pk.archive_command().replace('\'', "''")
        ),
    ]);
    pk.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
    chown_postgres(&repo);
    primary.start();
    primary.pgbench(&["-i", "-s", "2", "-q"]);
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    let source = format!(
        "host={} port={} user=postgres",
        primary.sock.display(),
        primary.port
    );

    // A second repository of the same cluster that the primary does not archive into: a
    // backup there never sees its WAL, so it is refused and never listed.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = Pgkeep::new(
        &elsewhere,
        &format!(
            "[repository]\npath = \"{}\"\n[backup]\nwal_timeout = \"2s\"\n",
            elsewhere.join("repo").display()
        ),
    );
    other.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
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
    let restore_and_count = |name: &str, target: &[&str]| -> (std::path::PathBuf, String) {
        let dir_n = dir.path().join(name);
        let mut args = vec!["restore", dir_n.to_str().unwrap()];
        args.extend_from_slice(target);
        let r = pk.ok(&args);
        assert!(r.stdout.contains("restored backup"), "{}", r.stdout);
        chown_postgres(&dir_n);
        let mut restored = Pg::at(&pg_bin(), dir_n.clone());
        restored.configure(&["archive_mode = off".into()]);
        restored.start();
        wait_for(
            "recovery to finish",
            std::time::Duration::from_secs(120),
            || (restored.psql("SELECT pg_is_in_recovery()") == "f").then_some(()),
        );
        assert_eq!(
            restored.psql("SELECT count(*) FROM pgbench_accounts"),
            accounts
        );
        let marks = restored.psql("SELECT count(*) FROM marks");
        restored.stop();
        (dir_n, marks)
    };
    let promote = ["--target-action", "promote"];
    let (target, latest) = restore_and_count("latest", &[]);
    assert_eq!(latest, "500");
    let named = restore_and_count("named", &["--target-name", "p1", promote[0], promote[1]]).1;
    assert_eq!(named, "100");
    let timed = restore_and_count("timed", &["--target-time", &time, promote[0], promote[1]]).1;
    assert_eq!(timed, "200");
    let at_lsn = restore_and_count("lsn", &["--target-lsn", &lsn, promote[0], promote[1]]).1;
    assert_eq!(at_lsn, "300");

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
    let r = pk.run(&["restore", target.to_str().unwrap()]);
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
    let repo = dir.path().join("repo");
    let pk = Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"{}\"\n[backup]\nwal_timeout = \"60s\"\n",
            repo.display()
        ),
    );
    let mut primary = Pg::initdb(&pg_bin(), dir.path(), "primary");
    primary.configure(&[
        "wal_level = replica".into(),
        "archive_mode = on".into(),
        format!(
            "archive_command = '{}'",
            pk.archive_command().replace('\'', "''")
        ),
        // A standby cannot switch WAL: the primary's own switches bring the last segment.
        "archive_timeout = 1".into(),
    ]);
    pk.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
    chown_postgres(&repo);
    primary.start();
    primary.pgbench(&["-i", "-s", "2", "-q"]);

    // A streaming standby made with pg_basebackup -R.
    let standby_dir = dir.path().join("standby");
    run_ok(
        "pg_basebackup",
        support::postgres::as_postgres(pg_bin().join("pg_basebackup"))
            .arg("-h")
            .arg(&primary.sock)
            .args([
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-c",
                "fast",
                "-X",
                "stream",
                "-D",
            ])
            .arg(&standby_dir),
    );
    let mut standby = Pg::at(&pg_bin(), standby_dir);
    standby.configure(&["archive_mode = off".into()]);
    standby.start();
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()"), "t");

    // kill -9 in the middle of a backup whose WAL can never arrive (a second repository the
    // primary does not archive into): nothing half-done is ever listed.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = Pgkeep::new(
        &elsewhere,
        &format!(
            "[repository]\npath = \"{}\"\n",
            elsewhere.join("repo").display()
        ),
    );
    other.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
    let source = format!(
        "host={} port={} user=postgres",
        primary.sock.display(),
        primary.port
    );
    let mut child = other
        .command()
        .args(["backup", "--source", &source])
        .spawn()
        .unwrap();
    let files_dir = elsewhere.join("repo/main/backups");
    wait_for(
        "the backup's first file",
        std::time::Duration::from_secs(60),
        || {
            let landed = std::fs::read_dir(&files_dir).ok()?.next().is_some();
            landed.then_some(())
        },
    );
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the backup cannot have finished: its WAL never arrives"
    );
    assert_eq!(backup_count(&other), 0);

    // The backup from the standby: identity checked against the repository, WAL waited for.
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
        || {
            (standby.psql("SELECT count(*) FROM pg_class WHERE relname = 'marks'") == "1")
                .then_some(())
        },
    );
    // BASE_BACKUP on a standby waits for a restartpoint, which needs a checkpoint record from
    // the primary: checkpoint the primary until the backup is through.
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

    let target = dir.path().join("restored");
    pk.ok(&[
        "restore",
        target.to_str().unwrap(),
        "--target-action",
        "promote",
    ]);
    chown_postgres(&target);
    // The copy of a standby carries standby settings; recovery.signal from pgkeep rules.
    let mut restored = Pg::at(&pg_bin(), target);
    restored.configure(&["archive_mode = off".into(), "primary_conninfo = ''".into()]);
    let _ = std::fs::remove_file(restored.data.join("standby.signal"));
    restored.start();
    wait_for(
        "recovery to finish",
        std::time::Duration::from_secs(120),
        || (restored.psql("SELECT pg_is_in_recovery()") == "f").then_some(()),
    );
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "250");
}

#[test]
fn restore_follows_a_timeline_switch_to_the_latest_timeline() {
    let dir = postgres_tempdir();
    let repo = dir.path().join("repo");
    let pk = Pgkeep::new(
        dir.path(),
        &format!("[repository]\npath = \"{}\"\n", repo.display()),
    );
    let mut primary = Pg::initdb(&pg_bin(), dir.path(), "primary");
    primary.configure(&[
        "wal_level = replica".into(),
        "archive_mode = on".into(),
        format!(
            "archive_command = '{}'",
            pk.archive_command().replace('\'', "''")
        ),
    ]);
    pk.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
    chown_postgres(&repo);
    primary.start();
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    let source = format!(
        "host={} port={} user=postgres",
        primary.sock.display(),
        primary.port
    );
    pk.ok(&["backup", "--source", &source]);

    // A standby that will be promoted; it archives through pgkeep once it is primary.
    let standby_dir = dir.path().join("standby");
    run_ok(
        "pg_basebackup",
        support::postgres::as_postgres(pg_bin().join("pg_basebackup"))
            .arg("-h")
            .arg(&primary.sock)
            .args([
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-R",
                "-c",
                "fast",
                "-X",
                "stream",
                "-D",
            ])
            .arg(&standby_dir),
    );
    let mut standby = Pg::at(&pg_bin(), standby_dir);
    standby.start();
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
    wait_for("the promotion", std::time::Duration::from_secs(60), || {
        (standby.psql("SELECT pg_is_in_recovery()") == "f").then_some(())
    });
    standby.psql("INSERT INTO marks SELECT generate_series(101, 200)");
    standby.switch_and_wait_archived();
    assert!(
        repo.join("main/wal/00000002.history").exists(),
        "the history file is archived"
    );

    // The backup from timeline 1, restored to the end of the archive, follows the switch.
    let target = dir.path().join("restored");
    pk.ok(&[
        "restore",
        target.to_str().unwrap(),
        "--target-action",
        "promote",
    ]);
    chown_postgres(&target);
    let mut restored = Pg::at(&pg_bin(), target);
    restored.configure(&["archive_mode = off".into()]);
    restored.start();
    wait_for(
        "recovery to finish",
        std::time::Duration::from_secs(120),
        || (restored.psql("SELECT pg_is_in_recovery()") == "f").then_some(()),
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
