//! Retention and verification against real PostgreSQL 15: `pgkeep verify` catches a deleted
//! object, a flipped byte and a missing WAL segment, naming each; `pgkeep expire` keeps what
//! the rules say against Garage (dry run first, pins honoured, WAL from the oldest kept
//! backup's start kept, the oldest kept backup still restores), and never runs while a backup
//! holds the lease.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use support::cluster::{self, backup, backups, verify_json};
use support::garage::Garage;
use support::pgkeep::Pgkeep;
use support::postgres::pg_bin;
use support::proc::{postgres_tempdir, wait_for};

/// The largest object of a backup's own files (a relation of pgbench_accounts).
fn largest_object(repo: &Path, id: &str) -> PathBuf {
    let mut files = Vec::new();
    let mut stack = vec![repo.join("main/backups").join(id).join("files")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((std::fs::metadata(&p).unwrap().len(), p));
            }
        }
    }
    files.sort();
    files.pop().unwrap().1
}

#[test]
fn verify_names_a_deleted_object_a_flipped_byte_and_a_missing_segment() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    let repo = dir.path().join("repo");
    primary.pgbench(&["-i", "-s", "2", "-q"]);
    let full = backup(&pk, &source, "full");
    primary.pgbench(&["-t", "200", "-c", "2"]);
    let incr = backup(&pk, &source, "incr");
    primary.switch_and_wait_archived();

    let (code, v) = verify_json(&pk, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["backups"].as_array().unwrap().len(), 2);
    assert!(v["backups"][0]["objects"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(v["wal_problems"], serde_json::json!([]));

    // A flipped byte in one of the full's objects: both backups need it.
    let object = largest_object(&repo, &full);
    let rel = object
        .strip_prefix(repo.join("main/backups").join(&full).join("files"))
        .unwrap()
        .display()
        .to_string();
    let good = std::fs::read(&object).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x20;
    std::fs::write(&object, &bad).unwrap();
    let r = pk.run(&["verify"]);
    assert_eq!(r.code, 10, "{}", r.stdout);
    assert!(r.error_line().contains("2 problem(s)"), "{}", r.stderr);
    for id in [&full, &incr] {
        assert!(
            r.stdout.contains(&format!("backup {id}: DAMAGED")),
            "{}",
            r.stdout
        );
    }
    assert!(
        r.stdout
            .contains(&format!("{rel} (part 0) of backup {full}")),
        "{}",
        r.stdout
    );

    // The object deleted instead: named as missing; verify of the other backup alone too.
    std::fs::remove_file(&object).unwrap();
    let (code, v) = verify_json(&pk, &["--backup", &incr]);
    assert_eq!(code, 10);
    assert_eq!(v["backups"].as_array().unwrap().len(), 1);
    let problems = v["backups"][0]["problems"].to_string();
    assert!(
        problems.contains(&format!("{rel} (part 0) of backup {full}: missing")),
        "{problems}"
    );
    std::fs::write(&object, &good).unwrap();
    assert_eq!(pk.run(&["verify"]).code, 0);

    // A WAL segment after the full's start removed: a hole in what it replays.
    let start = backups(&pk)[0]["start_lsn"].as_str().unwrap().to_string();
    let first: String = primary.psql(&format!("SELECT pg_walfile_name('{start}')"));
    let segno = u64::from_str_radix(&first[16..], 16).unwrap() + 1;
    let victim = format!("{}{:08X}", &first[..16], segno);
    let path = repo.join("main/wal").join(&first[..16]).join(&victim);
    std::fs::remove_file(&path).unwrap();
    let (code, v) = verify_json(&pk, &[]);
    assert_eq!(code, 10);
    assert!(
        v["wal_problems"]
            .to_string()
            .contains(&format!("{victim} missing")),
        "{v}"
    );
}

#[test]
fn expire_keeps_what_retention_says_on_garage() {
    let dir = postgres_tempdir();
    let garage = Garage::start(dir.path());
    let mut pk = Pgkeep::new(
        dir.path(),
        &format!(
            "{}[backup]\nwal_timeout = \"60s\"\n[retention]\nfull = 1\n",
            garage.repository_toml(&garage.endpoint, "expire")
        ),
    );
    pk.env = garage.credentials();
    let (pk, primary, source) =
        cluster::archiving_primary_with(pk, &pg_bin(), dir.path(), &[], &[]);
    primary.pgbench(&["-i", "-s", "1", "-q"]);
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    let mut ids = Vec::new();
    for (i, kind) in ["full", "incr", "full", "incr", "full"].iter().enumerate() {
        primary.psql(&format!(
            "INSERT INTO marks SELECT generate_series({}, {})",
            i * 100 + 1,
            i * 100 + 100
        ));
        primary.psql("SELECT pg_switch_wal()");
        ids.push(backup(&pk, &source, kind));
    }
    let (a, a1, b, b1, c) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);
    pk.ok(&["pin", b]);
    let r = pk.run(&["pin", "20200101T000000Z-F"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let first_segment = |pk: &Pgkeep| -> String {
        let v: serde_json::Value =
            serde_json::from_str(&pk.ok(&["info", "--json"]).stdout).unwrap();
        v["wal"]["ranges"][0]["first"].as_str().unwrap().to_string()
    };
    let wal_before = first_segment(&pk);

    // The dry run prints the plan and changes nothing.
    let r = pk.ok(&["expire", "--dry-run"]);
    for id in [b1, a1, a] {
        assert!(r.stdout.contains(&format!("expire {id}")), "{}", r.stdout);
    }
    assert!(
        r.stdout.contains(&format!("keep   {b}  pinned")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains(&format!("keep   {c}  full backup 1 of 1 kept")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("dry run"), "{}", r.stdout);
    assert_eq!(backups(&pk).len(), 5);
    assert_eq!(first_segment(&pk), wal_before);

    // Expire: the manifests go, then the objects, then the WAL before the pinned backup.
    let r = pk.ok(&["expire", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["executed"], true);
    assert!(v["objects"].as_u64().unwrap() > 0);
    let listed: Vec<String> = backups(&pk)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, [b.clone(), c.clone()]);
    let b_start = backups(&pk)[0]["start_lsn"].as_str().unwrap().to_string();
    let b_segment = primary.psql(&format!("SELECT pg_walfile_name('{b_start}')"));
    assert_eq!(
        first_segment(&pk),
        b_segment,
        "WAL from the pinned backup's start on stays"
    );
    assert!(wal_before < b_segment);
    assert_eq!(pk.run(&["verify"]).code, 0, "what stays is whole");

    // The oldest kept backup restores and replays everything since.
    primary.psql("INSERT INTO marks SELECT generate_series(1001, 1010)");
    primary.switch_and_wait_archived();
    let target = dir.path().join("restored");
    pk.ok(&["restore", target.to_str().unwrap(), "--backup", b]);
    // The server's own environment carries the store's credentials in production; here they
    // are the test's, so restore_command names them (postgresql.auto.conf: the last word wins).
    let auto = target.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap();
    text.push_str(&format!(
        "restore_command = '{}'\n",
        pk.restore_command().replace('\'', "''")
    ));
    std::fs::write(&auto, text).unwrap();
    let restored = cluster::start_restored(&pg_bin(), &target);
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "510");

    // Unpinned, it goes at the next expiry.
    pk.ok(&["unpin", b]);
    let r = pk.ok(&["expire"]);
    assert!(r.stdout.contains(&format!("expire {b}")), "{}", r.stdout);
    assert_eq!(backups(&pk).len(), 1);
}

#[test]
fn expire_never_runs_while_a_backup_holds_the_lease() {
    let dir = postgres_tempdir();
    let (_pk, primary, source) = cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    // A backup into a repository nothing archives into waits for its WAL, holding the lease.
    let (other, elsewhere, mut child) = cluster::stuck_backup(dir.path(), &primary, &source);
    wait_for(
        "the backup's lease",
        std::time::Duration::from_secs(60),
        || {
            elsewhere
                .join("repo/main/locks/backup.json")
                .exists()
                .then_some(())
        },
    );
    let r = other.run(&["expire"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert!(r.error_line().contains("lease"), "{}", r.stderr);
    child.kill().unwrap();
    child.wait().unwrap();
}
