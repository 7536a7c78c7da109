//! archive-get and archive-push guards that need no server: a segment served under another
//! name, a garbage history file, look-ahead records of another repository, a full disk under
//! `%p`, prefetch that must not take the requested segment's space, names PostgreSQL never
//! writes, a local file that blocks past the deadline, and the staging files a killed push
//! leaves behind.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::pgkeep::{FakeCluster, Pgkeep, snapshot};

const SYSID: u64 = 7_303_000_000_000_000_001;

fn setup(dir: &Path, extra: &str) -> (Pgkeep, FakeCluster, PathBuf) {
    let repo = dir.join("repo");
    let pk = Pgkeep::new(
        dir,
        &format!("[repository]\npath = \"{}\"\n{extra}", repo.display()),
    );
    let cluster = FakeCluster::new(dir, SYSID, 15);
    pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    (pk, cluster, repo)
}

fn object(repo: &Path, segno: u64) -> PathBuf {
    repo.join(format!(
        "main/wal/0000000100000000/{}",
        FakeCluster::segment_name(segno).file_name(support::pgkeep::SEG)
    ))
}

fn name(segno: u64) -> String {
    FakeCluster::segment_name(segno).file_name(support::pgkeep::SEG)
}

/// A tmpfs of `mib` MiB mounted at `dir` for the guard's life (the tests run as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn swapped_segments_are_refused_as_damaged_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = setup(dir.path(), "");
    for n in 1..=2 {
        let seg = cluster.write_segment(n, n, false);
        pk.ok(&["archive-push", seg.to_str().unwrap()]);
    }
    // Both objects decode and pass their checksums: only their content tells them apart.
    let (a, b) = (object(&repo, 1), object(&repo, 2));
    let (ba, bb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, &bb).unwrap();
    std::fs::write(&b, &ba).unwrap();
    let dest = dir.path().join("RECOVERYXLOG");
    for n in 1..=2 {
        let r = pk.run(&["archive-get", &name(n), dest.to_str().unwrap()]);
        assert_eq!(r.code, 210, "{}", r.stderr);
        let line = r.error_line();
        assert!(
            line.contains("damaged") && line.contains("its name says"),
            "{line}"
        );
        assert!(r.stderr.contains("recovery was stopped"), "{}", r.stderr);
        assert!(
            !dest.exists(),
            "a wrong segment must never reach PostgreSQL"
        );
    }
    // Put back, both are served again.
    std::fs::write(&a, &ba).unwrap();
    std::fs::write(&b, &bb).unwrap();
    pk.ok(&["archive-get", &name(2), dest.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(cluster.data.join("pg_wal").join(name(2))).unwrap()
    );
}

#[test]
fn a_standby_gets_plain_codes_and_names_postgresql_never_writes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = setup(dir.path(), "");
    let seg = cluster.write_segment(1, 1, false);
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    let mut bytes = std::fs::read(object(&repo, 1)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(object(&repo, 1), bytes).unwrap();
    // As PostgreSQL calls it: from the data directory, %p under pg_wal.
    let data = dir.path().join("standby");
    std::fs::create_dir_all(data.join("pg_wal")).unwrap();
    let get = |file: &str| {
        let mut cmd = pk.command();
        cmd.current_dir(&data)
            .args(["archive-get", file, "pg_wal/RECOVERYXLOG"]);
        support::pgkeep::Run::from(cmd.output().unwrap())
    };
    assert_eq!(get(&name(1)).code, 210, "archive recovery stops");
    std::fs::write(data.join("standby.signal"), "").unwrap();
    let r = get(&name(1));
    assert_eq!(r.code, 10, "a standby retries: {}", r.stderr);
    assert!(r.stderr.contains("stays a standby"), "{}", r.stderr);
    assert_eq!(get(&name(2)).code, 1, "not archived stays 1");
    // Lower-case hex is not a name PostgreSQL asks for.
    let lower = name(10).to_lowercase();
    assert_ne!(lower, name(10));
    let r = get(&lower);
    assert_eq!(r.code, 6, "{}", r.stderr);
    std::fs::remove_file(data.join("standby.signal")).unwrap();
    assert_eq!(get(&lower).code, 206);
    // A restore_command without %p is no "end of archive" either.
    let mut cmd = pk.command();
    cmd.current_dir(&data).args(["archive-get", &name(1)]);
    assert_eq!(cmd.output().unwrap().status.code(), Some(202));
}

#[test]
fn a_garbage_history_file_is_refused_and_the_real_one_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = setup(dir.path(), "");
    let path = cluster.data.join("pg_wal/00000002.history");
    for garbage in ["", "garbage\n", "2\t0/3000000\tits own timeline\n"] {
        std::fs::write(&path, garbage).unwrap();
        let before = snapshot(&repo);
        let r = pk.run(&["archive-push", path.to_str().unwrap()]);
        assert_eq!(r.code, 6, "{garbage:?}: {}", r.stderr);
        assert!(r.error_line().contains("history"), "{}", r.stderr);
        assert_eq!(snapshot(&repo), before, "nothing stored for {garbage:?}");
    }
    std::fs::write(&path, "1\t0/3000158\tno recovery target specified\n").unwrap();
    pk.ok(&["archive-push", path.to_str().unwrap()]);
    let dest = dir.path().join("RECOVERYHISTORY");
    pk.ok(&["archive-get", "00000002.history", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&path).unwrap());
}

#[test]
fn look_ahead_records_of_another_repository_prove_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (first, cluster, _) = setup(dir.path(), "[archive]\npush_lookahead = 3\n");
    let segs: Vec<_> = (1..=3).map(|n| cluster.write_segment(n, n, true)).collect();
    let r = first.ok(&["archive-push", segs[0].to_str().unwrap()]);
    assert!(r.stderr.contains("2 pushed ahead"), "{}", r.stderr);

    // archive_command now points at another repository of the same cluster.
    let other_repo = dir.path().join("other");
    let other = Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"{}\"\n[archive]\npush_lookahead = 0\n",
            other_repo.display()
        ),
    );
    other.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    let r = other.ok(&["archive-push", segs[1].to_str().unwrap()]);
    assert!(!r.stderr.contains("PushedAhead"), "{}", r.stderr);
    assert!(
        object(&other_repo, 2).exists(),
        "acknowledged, so it must be in the repository archived into"
    );
    let dest = dir.path().join("back");
    other.ok(&["archive-get", &name(2), dest.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&segs[1]).unwrap()
    );
}

#[test]
fn a_full_disk_under_the_destination_stops_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, _) = setup(dir.path(), "");
    let seg = cluster.write_segment(1, 1, false);
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    let small = dir.path().join("small");
    let _fs = Tmpfs::mount(&small, 8);
    let dest = small.join("RECOVERYXLOG");
    let r = pk.run(&["archive-get", &name(1), dest.to_str().unwrap()]);
    assert_eq!(r.code, 211, "{}", r.stderr);
    assert!(r.error_line().contains("No space left"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(&small).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[test]
fn prefetch_never_takes_the_space_of_the_requested_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, _) = setup(dir.path(), "[archive]\nget_prefetch = 8\n");
    for n in 1..=9 {
        let seg = cluster.write_segment(n, n, false);
        pk.ok(&["archive-push", seg.to_str().unwrap()]);
    }
    // A pg_wal with room for the requested segment and a few more, not for 8 prefetched.
    let data = dir.path().join("restored");
    let _fs = Tmpfs::mount(&data, 120);
    std::fs::create_dir_all(data.join("pg_wal")).unwrap();
    let dest = data.join("pg_wal/RECOVERYXLOG");
    let r = pk.ok(&["archive-get", &name(1), dest.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(cluster.data.join("pg_wal").join(name(1))).unwrap()
    );
    let spool = data.join("pg_wal/pgkeep/get");
    let fetched = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert!(
        fetched < 8,
        "{fetched} prefetched into 120 MiB: {}",
        r.stderr
    );
    let free = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(&data)
        .output()
        .unwrap();
    let free: u64 = String::from_utf8_lossy(&free.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(free >= 64 << 20, "prefetch left only {free} bytes free");
    // Each next segment still arrives, from the spool or the repository.
    for n in 2..=9 {
        std::fs::remove_file(&dest).unwrap();
        pk.ok(&["archive-get", &name(n), dest.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(cluster.data.join("pg_wal").join(name(n))).unwrap()
        );
    }
}

#[test]
fn a_blocked_local_read_ends_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, _, repo) = setup(dir.path(), "[archive]\ntimeout = \"2s\"\n");
    // A FIFO nobody writes to: opening it for reading blocks, as a hung mount would.
    let wal = dir.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let fifo = wal.join(name(1));
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    let before = snapshot(&repo);
    let start = Instant::now();
    let r = pk.run(&["archive-push", fifo.to_str().unwrap()]);
    let took = start.elapsed();
    assert_eq!(r.code, 8, "{}", r.stderr);
    assert!(r.stderr.contains("gave up after 2s"), "{}", r.stderr);
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(snapshot(&repo), before);
}

#[test]
fn a_segment_missing_before_an_archived_one_is_a_hole_not_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = setup(dir.path(), "");
    for n in 1..=3 {
        let seg = cluster.write_segment(n, n, false);
        pk.ok(&["archive-push", seg.to_str().unwrap()]);
    }
    std::fs::remove_file(object(&repo, 2)).unwrap();
    let dest = dir.path().join("RECOVERYXLOG");
    let r = pk.run(&["archive-get", &name(2), dest.to_str().unwrap()]);
    assert_eq!(r.code, 210, "{}", r.stderr);
    assert!(r.error_line().contains("hole"), "{}", r.stderr);
    // Past the newest segment the archive really ends: "not found" lets recovery finish.
    let r = pk.run(&["archive-get", &name(4), dest.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!dest.exists());
}

#[test]
fn expire_sweeps_the_staging_files_a_killed_push_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (pk, cluster, repo) = setup(dir.path(), "");
    let seg = cluster.write_segment(1, 1, false);
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    // What a push killed between write and rename leaves: an old one, and one in flight.
    let old = object(&repo, 2).with_file_name(format!("{}#7", name(2)));
    let fresh = object(&repo, 3).with_file_name(format!("{}#8", name(3)));
    std::fs::write(&old, b"half").unwrap();
    std::fs::write(&fresh, b"half").unwrap();
    let ok = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&old)
        .status()
        .unwrap();
    assert!(ok.success());
    pk.ok(&["expire"]);
    assert!(
        !old.exists(),
        "an interrupted upload's staging file stays forever"
    );
    assert!(fresh.exists(), "an upload in flight must not be touched");
    assert!(object(&repo, 1).exists());
}
