//! Bad input and faults, each answered with one clear error line, a hint, the documented exit
//! code, and nothing written: the repository is byte-for-byte as it was.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::garage::Garage;
use support::pgkeep::{FakeCluster, Pgkeep, SEG, snapshot};
use support::proxy::{BlackHole, FaultProxy};

const SYSID: u64 = 7_301_234_567_890_123_456;

/// A local repository initialised for a synthesized PostgreSQL 15 cluster.
fn local_setup(dir: &std::path::Path) -> (Pgkeep, FakeCluster, std::path::PathBuf) {
    let repo = dir.join("repo");
    let pk = Pgkeep::new(
        dir,
        &format!("[repository]\npath = \"{}\"\n", repo.display()),
    );
    let cluster = FakeCluster::new(dir, SYSID, 15);
    pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    (pk, cluster, repo)
}

fn assert_refused(pk: &Pgkeep, args: &[&str], code: i32, mentions: &str, repo: &std::path::Path) {
    let before = snapshot(repo);
    let r = pk.run(args);
    assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
    let line = r.error_line();
    assert!(
        line.contains(mentions),
        "'{line}' should mention '{mentions}'"
    );
    assert_eq!(snapshot(repo), before, "{args:?} changed the repository");
}

#[test]
fn push_then_get_round_trips_and_repush_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = local_setup(dir.path());
    let seg = cluster.write_segment(1, 11, false);
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    let before = snapshot(&repo);
    // The identical file again: success, nothing rewritten.
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    assert_eq!(snapshot(&repo), before);
    let out = dir.path().join("restored");
    pk.ok(&[
        "archive-get",
        "000000010000000000000001",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&seg).unwrap());
}

#[test]
fn bad_input_is_refused_and_leaves_the_repository_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = local_setup(dir.path());
    let wal = cluster.data.join("pg_wal");

    // A file that does not exist.
    let missing = wal.join("000000010000000000000009");
    assert_refused(
        &pk,
        &["archive-push", missing.to_str().unwrap()],
        6,
        "000000010000000000000009",
        &repo,
    );

    // A name that is not a WAL file name.
    let conf = wal.join("postgresql.conf");
    std::fs::write(&conf, b"x = 1\n").unwrap();
    assert_refused(
        &pk,
        &["archive-push", conf.to_str().unwrap()],
        6,
        "not a wal file",
        &repo,
    );

    // A WAL name holding something else.
    let fake = wal.join("000000010000000000000002");
    std::fs::write(&fake, vec![0x5a; SEG.bytes() as usize]).unwrap();
    assert_refused(
        &pk,
        &["archive-push", fake.to_str().unwrap()],
        6,
        "page magic",
        &repo,
    );

    // A truncated segment.
    let seg = cluster.write_segment(3, 3, false);
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() / 2]).unwrap();
    assert_refused(
        &pk,
        &["archive-push", seg.to_str().unwrap()],
        6,
        "truncated",
        &repo,
    );

    // A segment whose header says it is another segment.
    let four = cluster.write_segment(4, 4, false);
    let five = wal.join("000000010000000000000005");
    std::fs::rename(&four, &five).unwrap();
    assert_refused(
        &pk,
        &["archive-push", five.to_str().unwrap()],
        6,
        "its name says",
        &repo,
    );

    // WAL of another cluster (other system id).
    let other = FakeCluster::new(dir.path(), SYSID + 1, 15);
    let theirs = other.write_segment(6, 6, false);
    assert_refused(
        &pk,
        &["archive-push", theirs.to_str().unwrap()],
        5,
        "system id",
        &repo,
    );

    // WAL of another major version.
    let v16 = FakeCluster::new(&dir.path().join("v16"), SYSID, 16);
    let theirs = v16.write_segment(7, 7, false);
    assert_refused(
        &pk,
        &["archive-push", theirs.to_str().unwrap()],
        6,
        "page magic",
        &repo,
    );
}

#[test]
fn a_different_file_under_a_stored_name_is_refused_naming_both_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = local_setup(dir.path());
    let seg = cluster.write_segment(1, 1, false);
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    let stored = pgkeep::pipeline::Digest::of(&std::fs::read(&seg).unwrap()).to_string();
    let seg = cluster.write_segment(1, 2, false);
    let local = pgkeep::pipeline::Digest::of(&std::fs::read(&seg).unwrap()).to_string();
    let before = snapshot(&repo);
    let r = pk.run(&["archive-push", seg.to_str().unwrap()]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    let line = r.error_line();
    assert!(line.contains(&stored) && line.contains(&local), "{line}");
    assert_eq!(snapshot(&repo), before);
}

#[test]
fn a_repository_that_does_not_exist_or_is_not_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = FakeCluster::new(dir.path(), SYSID, 15);
    let seg = cluster.write_segment(1, 1, false);
    let nowhere = Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"{}\"\n",
            dir.path().join("nope").display()
        ),
    );
    let r = nowhere.run(&["archive-push", seg.to_str().unwrap()]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.error_line().contains("does not exist"));
    assert!(!dir.path().join("nope").exists());

    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let empty = Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"{}\"\n",
            dir.path().join("empty").display()
        ),
    );
    // archive-get stops recovery (200 + the code) rather than let it end short.
    let r = empty.run(&["archive-get", "000000010000000000000001", "/tmp/x"]);
    assert_eq!(r.code, 204, "{}", r.stderr);
    assert!(r.error_line().contains("not initialised"));
    assert_eq!(snapshot(&dir.path().join("empty")), vec![]);
}

#[test]
fn a_malformed_config_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let pk = Pgkeep::new(dir.path(), "[repository\npath = 3");
    let r = pk.run(&["archive-get", "000000010000000000000001", "/tmp/x"]);
    assert_eq!(r.code, 203, "{}", r.stderr);
    assert!(r.error_line().contains("malformed config"));
    let mut pk = Pgkeep::new(dir.path(), "[repository]\npath = \"/r\"\n");
    pk.env
        .push(("PGKEEP_ARCHIVE_TIMEOUT".into(), "never".into()));
    assert_eq!(
        pk.run(&["archive-get", "000000010000000000000001", "/tmp/x"])
            .code,
        203
    );
    assert_eq!(pk.run(&["archive-push", "/tmp/x"]).code, 3);
}

#[test]
fn archive_get_answers_1_for_missing_and_refuses_damaged_objects() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = local_setup(dir.path());
    let dest = dir.path().join("RECOVERYXLOG");
    let r = pk.run(&[
        "archive-get",
        "000000010000000000000001",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!dest.exists());
    let r = pk.run(&["archive-get", "00000002.history", dest.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);

    let seg = cluster.write_segment(1, 1, false);
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    let object = repo.join("main/wal/0000000100000000/000000010000000000000001");
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();
    let r = pk.run(&[
        "archive-get",
        "000000010000000000000001",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 210, "{}", r.stderr);
    assert!(r.error_line().contains("000000010000000000000001"));
    assert!(!dest.exists(), "a damaged file must never reach PostgreSQL");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );
}

#[test]
fn wrong_s3_credentials_are_an_auth_error() {
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::start(dir.path());
    let cluster = FakeCluster::new(dir.path(), SYSID, 15);
    let mut pk = Pgkeep::new(
        dir.path(),
        &garage.repository_toml(&garage.endpoint, "auth"),
    );
    pk.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), garage.key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), "0".repeat(64)),
    ];
    let r = pk.run(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    assert_eq!(r.code, 9, "{}", r.stderr);
    assert!(r.error_line().contains("cannot"));
    // With the right key the same repository initialises: nothing was half-written before.
    pk.env = garage.credentials();
    let r = pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    assert!(r.stdout.contains("created"), "{}", r.stdout);
}

#[test]
fn an_endpoint_that_never_answers_fails_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let hole = BlackHole::start();
    let cluster = FakeCluster::new(dir.path(), SYSID, 15);
    let seg = cluster.write_segment(1, 1, false);
    let toml = format!(
        "[repository]\nkind = \"s3\"\nbucket = \"b\"\nregion = \"garage\"\nendpoint = \"http://127.0.0.1:{}\"\nallow_http = true\n[archive]\ntimeout = \"2s\"\n",
        hole.port
    );
    let mut pk = Pgkeep::new(dir.path(), &toml);
    pk.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), "k".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "s".into()),
    ];
    for (args, code) in [
        (vec!["archive-push", seg.to_str().unwrap()], 8),
        // archive-get stops recovery instead of ending it at a store that is down.
        (
            vec!["archive-get", "000000010000000000000001", "/tmp/never"],
            208,
        ),
    ] {
        let start = Instant::now();
        let r = pk.run(&args);
        let took = start.elapsed();
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.error_line().contains("gave up after 2s"));
        assert!(
            took < Duration::from_secs(10),
            "{args:?} took {took:?}: the deadline did not hold"
        );
    }
}

#[test]
fn pushes_through_503s_and_resets_all_land_intact() {
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::start(dir.path());
    let cluster = FakeCluster::new(dir.path(), SYSID, 15);
    let mut direct = Pgkeep::new(
        dir.path(),
        &garage.repository_toml(&garage.endpoint, "faults"),
    );
    direct.env = garage.credentials();
    direct.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);

    // One connection in three fails: a 503 SlowDown or a reset.
    let proxy = FaultProxy::start(garage.port, 3);
    let flaky_dir = dir.path().join("flaky");
    std::fs::create_dir(&flaky_dir).unwrap();
    let mut flaky = Pgkeep::new(
        &flaky_dir,
        &garage.repository_toml(&format!("http://127.0.0.1:{}", proxy.port), "faults"),
    );
    flaky.env = garage.credentials();
    let segments: Vec<_> = (1..=8)
        .map(|n| cluster.write_segment(n, n * 31, false))
        .collect();
    for seg in &segments {
        flaky.ok(&["archive-push", seg.to_str().unwrap()]);
    }
    assert!(
        proxy.faults.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "the proxy injected too few faults"
    );
    for seg in &segments {
        let name = seg.file_name().unwrap().to_str().unwrap();
        let out = dir.path().join(format!("{name}.back"));
        flaky.ok(&["archive-get", name, out.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(seg).unwrap(),
            "{name}"
        );
    }
}
