//! Recovery through `restore_command = pgkeep archive-get` on a real PostgreSQL 15 never ends
//! short: a damaged or swapped WAL object stops an archive recovery (the server exits, nothing
//! promoted) and it resumes to exactly the committed rows once the object is repaired; a
//! standby retries the same object, stays a standby, and catches up once it is repaired.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::cluster;
use support::pgkeep::Pgkeep;
use support::postgres::{Pg, chown_postgres, pg_bin};
use support::proc::{postgres_tempdir, wait_for};

/// A primary with a backup and three batches of 1000 rows after it, each batch in its own
/// archived segment. Returns the handle, the repository and the three segments' names.
fn primary_with_batches(dir: &Path) -> (Pgkeep, Pg, Vec<String>) {
    let (pk, primary, source) = cluster::archiving_primary(&pg_bin(), dir, "", &[], &[]);
    primary.psql("CREATE TABLE t (id int PRIMARY KEY, batch int)");
    cluster::backup(&pk, &source, "full");
    let mut segments = Vec::new();
    for b in 0..3 {
        primary.psql(&format!(
            "INSERT INTO t SELECT g, {b} FROM generate_series({}, {}) g",
            b * 1000 + 1,
            b * 1000 + 1000
        ));
        segments.push(primary.switch_and_wait_archived());
    }
    (pk, primary, segments)
}

fn object(dir: &Path, segment: &str) -> PathBuf {
    dir.join("repo/main/wal").join(&segment[..16]).join(segment)
}

/// Flips one bit in the middle of the object at `path`; returns its good bytes.
fn flip_middle(path: &Path) -> Vec<u8> {
    let good = std::fs::read(path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(path, &bad).unwrap();
    good
}

/// A restored data directory ready to start, recovering as `signal` says.
fn restored(pk: &Pgkeep, target: &Path, args: &[&str]) -> Pg {
    let mut all = vec!["restore", target.to_str().unwrap()];
    all.extend_from_slice(args);
    pk.ok(&all);
    chown_postgres(target);
    let pg = Pg::at(&pg_bin(), target.to_path_buf());
    pg.configure(&["archive_mode = off".into()]);
    pg
}

fn assert_stopped_not_promoted(log: &str) {
    assert!(
        log.contains("is damaged"),
        "pgkeep's cause in the log:\n{log}"
    );
    assert!(
        log.contains("exit code 210"),
        "recovery stopped by archive-get:\n{log}"
    );
    assert!(
        !log.contains("selected new timeline") && !log.contains("archive recovery complete"),
        "the server must not have ended recovery:\n{log}"
    );
}

#[test]
fn damaged_or_swapped_wal_stops_recovery_and_it_resumes_once_repaired() {
    let dir = postgres_tempdir();
    let (pk, primary, segs) = primary_with_batches(dir.path());
    let committed = primary.psql("SELECT count(*) FROM t");
    assert_eq!(committed, "3000");

    // One flipped byte in the second batch's segment.
    let second = object(dir.path(), &segs[1]);
    let good = flip_middle(&second);
    let mut pg = restored(&pk, &dir.path().join("flipped"), &[]);
    assert_stopped_not_promoted(&pg.start_expecting_exit(Duration::from_secs(120)));
    std::fs::write(&second, &good).unwrap();
    pg.start();
    pg.wait_promoted();
    assert_eq!(pg.psql("SELECT count(*) FROM t"), committed);
    pg.stop();

    // The second and third segments' objects swapped: both decode, neither is its name.
    let third = object(dir.path(), &segs[2]);
    let good3 = std::fs::read(&third).unwrap();
    std::fs::write(&second, &good3).unwrap();
    std::fs::write(&third, &good).unwrap();
    let mut pg = restored(&pk, &dir.path().join("swapped"), &[]);
    let log = pg.start_expecting_exit(Duration::from_secs(120));
    assert_stopped_not_promoted(&log);
    assert!(log.contains("its name says"), "{log}");
    std::fs::write(&second, &good).unwrap();
    std::fs::write(&third, &good3).unwrap();
    pg.start();
    pg.wait_promoted();
    assert_eq!(pg.psql("SELECT count(*) FROM t"), committed);
    assert_eq!(
        pg.psql("SELECT string_agg(DISTINCT batch::text, ',' ORDER BY batch::text) FROM t"),
        "0,1,2"
    );
}

#[test]
fn a_standby_retries_a_damaged_segment_stays_a_standby_and_catches_up() {
    let dir = postgres_tempdir();
    let (pk, primary, segs) = primary_with_batches(dir.path());
    let committed = primary.psql("SELECT count(*) FROM t");
    let second = object(dir.path(), &segs[1]);
    let good = flip_middle(&second);

    let mut standby = restored(&pk, &dir.path().join("standby"), &["--standby"]);
    standby.configure(&["wal_retrieve_retry_interval = '200ms'".into()]);
    standby.start();
    wait_for(
        "the standby to log pgkeep's refusal",
        Duration::from_secs(60),
        || standby.log().contains("is damaged").then_some(()),
    );
    assert_eq!(standby.psql("SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        standby.psql("SELECT count(*) FROM t"),
        "1000",
        "replay waits at the damaged segment"
    );
    assert!(!standby.log().contains("selected new timeline"));

    std::fs::write(&second, &good).unwrap();
    wait_for("the standby to catch up", Duration::from_secs(120), || {
        (standby.psql("SELECT count(*) FROM t") == committed).then_some(())
    });
    assert_eq!(
        standby.psql("SELECT pg_is_in_recovery()"),
        "t",
        "still a standby"
    );
}
