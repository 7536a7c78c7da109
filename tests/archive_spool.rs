//! Look-ahead push and prefetching get: the spool under pg_wal answers later calls without
//! the repository, and never touches PostgreSQL's .ready/.done files.

#![allow(clippy::unwrap_used)]

mod support;

use support::pgkeep::{FakeCluster, Pgkeep, snapshot};

const SYSID: u64 = 7_302_000_000_000_000_001;

#[test]
fn push_looks_ahead_and_later_calls_answer_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let toml = format!(
        "[repository]\npath = \"{}\"\n[archive]\npush_lookahead = 3\n",
        repo.display()
    );
    let pk = Pgkeep::new(dir.path(), &toml);
    let cluster = FakeCluster::new(dir.path(), SYSID, 15);
    pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    let segs: Vec<_> = (1..=5).map(|n| cluster.write_segment(n, n, true)).collect();
    let status = cluster.data.join("pg_wal/archive_status");
    let status_before = snapshot(&status);

    let r = pk.ok(&["archive-push", segs[0].to_str().unwrap()]);
    assert!(r.stderr.contains("3 pushed ahead"), "{}", r.stderr);
    for n in 1..=4 {
        let obj = repo.join(format!(
            "main/wal/0000000100000000/00000001000000000000000{n}"
        ));
        assert!(obj.exists(), "segment {n} should be in the repository");
    }
    assert!(
        !repo
            .join("main/wal/0000000100000000/000000010000000000000005")
            .exists()
    );
    assert_eq!(
        snapshot(&status),
        status_before,
        "pgkeep must not touch archive_status"
    );
    let spool = cluster.data.join("pg_wal/pgkeep/push");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 3);

    // The archiver would now mark segment 1 done; the next call is answered from the spool
    // record, even with the repository unreachable.
    std::fs::rename(
        status.join("000000010000000000000001.ready"),
        status.join("000000010000000000000001.done"),
    )
    .unwrap();
    let hidden = dir.path().join("repo-away");
    std::fs::rename(&repo, &hidden).unwrap();
    let r = pk.ok(&["archive-push", segs[1].to_str().unwrap()]);
    assert!(r.stderr.contains("PushedAhead"), "{}", r.stderr);
    assert!(
        !spool.join("000000010000000000000002.ok").exists(),
        "a record is used once"
    );

    // A record whose file changed since is not trusted: the push goes to the repository and
    // the different content is refused there.
    std::fs::rename(&hidden, &repo).unwrap();
    cluster.write_segment(3, 99, true);
    let r = pk.run(&["archive-push", segs[2].to_str().unwrap()]);
    assert_eq!(r.code, 7, "{}", r.stderr);
}

#[test]
fn get_prefetches_the_next_segments_and_serves_them_from_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let toml = format!(
        "[repository]\npath = \"{}\"\n[archive]\nget_prefetch = 3\n",
        repo.display()
    );
    let pk = Pgkeep::new(dir.path(), &toml);
    let cluster = FakeCluster::new(dir.path(), SYSID, 15);
    pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    let segs: Vec<_> = (1..=5)
        .map(|n| cluster.write_segment(n, n, false))
        .collect();
    for s in &segs {
        pk.ok(&["archive-push", s.to_str().unwrap()]);
    }

    // A standby's pg_wal: PostgreSQL asks for %f into pg_wal/RECOVERYXLOG.
    let standby = dir.path().join("standby/pg_wal");
    std::fs::create_dir_all(&standby).unwrap();
    let dest = standby.join("RECOVERYXLOG");
    let r = pk.ok(&[
        "archive-get",
        "000000010000000000000001",
        dest.to_str().unwrap(),
    ]);
    assert!(r.stderr.contains("3 prefetched"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&segs[0]).unwrap()
    );

    // With the repository gone, the prefetched segments still arrive, verified and intact.
    std::fs::rename(&repo, dir.path().join("repo-away")).unwrap();
    for n in 2..=4 {
        let name = format!("00000001000000000000000{n}");
        let r = pk.ok(&["archive-get", &name, dest.to_str().unwrap()]);
        assert!(r.stderr.contains("Prefetched"), "{}", r.stderr);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&segs[n - 1]).unwrap()
        );
    }
    // Beyond the window it must go to the repository, which is away: recovery stops (204).
    let r = pk.run(&[
        "archive-get",
        "000000010000000000000005",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 204, "{}", r.stderr);
    assert_eq!(
        std::fs::read_dir(standby.join("pgkeep/get"))
            .unwrap()
            .count(),
        0
    );
}
