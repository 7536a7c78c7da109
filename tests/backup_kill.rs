//! kill -9 at random points of a backup, against a real PostgreSQL 15 archiving into the same
//! repository: after every kill nothing half-done is listed, the next backup succeeds and
//! removes what the killed one left, and the newest backup restores to the committed rows.
//! The points are drawn from a seed printed by the test (set PGKEEP_TEST_SEED to replay one).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::cluster::{self, backups};
use support::postgres::pg_bin;
use support::proc::{postgres_tempdir, wait_for};
use support::seeded::{self, Rng};

/// Every file below `dir` (0 when it does not exist yet).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

/// The backup folders, committed or not.
fn folders(repo: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo.join("main/backups"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn kill_9_at_random_points_never_leaves_a_listed_half_backup() {
    let seed = seeded::seed("kill points");
    let mut rng = Rng::new(seed);

    let dir = postgres_tempdir();
    let (pk, primary, source) =
        cluster::archiving_primary(&pg_bin(), dir.path(), "concurrency = 2", &[], &[]);
    let repo = dir.path().join("repo");
    primary.pgbench(&["-i", "-s", "3", "-q"]);
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");

    // A complete backup tells how many objects one writes: the kill points are drawn from that
    // range, plus "after every object" (the wait for WAL, just before the manifest).
    pk.ok(&["backup", "--source", &source]);
    let first = folders(&repo);
    assert_eq!(first.len(), 1);
    let mut objects = count_files(&repo.join("main/backups").join(&first[0]));
    // An incremental writes far fewer: its draws come from the last one's count.
    let mut incr_objects = objects;
    let mut committed = 1;

    for round in 0..4u32 {
        primary.psql(&format!(
            "INSERT INTO marks SELECT generate_series({}, {})",
            round * 100 + 1,
            round * 100 + 100
        ));
        // Kill once the new folder holds a random number of files (up to a whole backup's, the
        // manifest among them); an incremental that writes fewer may finish first.
        let kind = if rng.below(2) == 0 { "full" } else { "incr" };
        let of = if kind == "full" {
            objects
        } else {
            incr_objects
        };
        let at = 1 + rng.below(of);
        let before = folders(&repo);
        let mut child = pk
            .command()
            .args(["backup", "--source", &source, "--type", kind])
            .env("PGKEEP_BACKUP_WAL_TIMEOUT", "60s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let finished = wait_for(
            "the backup to reach its kill point",
            Duration::from_secs(120),
            || {
                if child.try_wait().unwrap().is_some() {
                    return Some(true);
                }
                let written: usize = folders(&repo)
                    .iter()
                    .filter(|f| !before.contains(f))
                    .map(|f| count_files(&repo.join("main/backups").join(f)))
                    .sum();
                (written >= at).then_some(false)
            },
        );
        if !finished {
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        eprintln!("round {round}: {kind} to be killed after {at} of ~{of} objects: {status}");
        if status.success() {
            committed += 1;
        }
        // Whatever the point, only committed backups are listed.
        assert_eq!(backups(&pk).len(), committed, "round {round}, seed {seed}");

        // The next backup succeeds and removes what the killed one left.
        let r = pk.ok(&["backup", "--source", &source, "--type", "incr"]);
        assert!(r.stdout.contains("committed"), "{}", r.stdout);
        committed += 1;
        let listed: Vec<String> = backups(&pk)
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed.len(), committed, "round {round}, seed {seed}");
        let newest = listed.last().unwrap();
        let n = count_files(&repo.join("main/backups").join(newest));
        if newest.ends_with("-I") {
            incr_objects = n;
        } else {
            objects = n;
        }
        let left: Vec<String> = folders(&repo)
            .into_iter()
            .filter(|f| !listed.contains(f))
            .map(|f| {
                format!(
                    "{f}: {:?}",
                    support::pgkeep::snapshot(&repo.join("main/backups").join(&f))
                        .iter()
                        .map(|(p, _)| p.clone())
                        .collect::<Vec<_>>()
                )
            })
            .collect();
        assert!(
            left.is_empty(),
            "no folder without a manifest survives a successful backup (round {round}, seed {seed}): {left:?}"
        );
    }

    primary.psql("INSERT INTO marks SELECT generate_series(1001, 1010)");
    primary.switch_and_wait_archived();
    let restored = cluster::restore_and_start(
        &pk,
        &pg_bin(),
        &dir.path().join("restored"),
        &["--target-action", "promote"],
    );
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "410");
}

/// Restore writes its files without an fsync each and makes them durable in one pass before
/// pg_control, which it writes last: kill -9 at random points never leaves a directory with a
/// pg_control (one PostgreSQL would start), and `restore --delta` over what the kill left
/// restores exactly the committed rows.
#[test]
fn kill_9_mid_restore_leaves_no_pg_control_and_delta_finishes_it() {
    let seed = seeded::seed("restore kill points");
    let mut rng = Rng::new(seed);
    let dir = postgres_tempdir();
    let (pk, primary, source) =
        cluster::archiving_primary(&pg_bin(), dir.path(), "concurrency = 2", &[], &[]);
    primary.pgbench(&["-i", "-s", "3", "-q"]);
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    primary.psql("INSERT INTO marks SELECT generate_series(1, 321)");
    pk.ok(&["backup", "--source", &source]);
    primary.switch_and_wait_archived();
    let whole = dir.path().join("whole");
    pk.ok(&["restore", whole.to_str().unwrap()]);
    let files = count_files(&whole);

    for round in 0..3u32 {
        let target = dir.path().join(format!("killed-{round}"));
        // Up to 90 % of the files: pg_control, written after all the others, cannot exist yet
        // (a kill after its rename would find a finished restore, not a half one).
        let at = 1 + rng.below(files * 9 / 10);
        let mut child = pk
            .command()
            .args(["restore", target.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let finished = wait_for(
            "the restore to reach its kill point",
            Duration::from_secs(120),
            || {
                if child.try_wait().unwrap().is_some() {
                    return Some(true);
                }
                (count_files(&target) >= at).then_some(false)
            },
        );
        if !finished {
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        eprintln!("round {round}: restore to be killed after {at} of {files} files: {status}");
        if !status.success() {
            assert!(
                !target.join("global/pg_control").exists(),
                "a killed restore left pg_control (round {round}, seed {seed})"
            );
        }
        let restored = cluster::restore_and_start(
            &pk,
            &pg_bin(),
            &target,
            &["--delta", "--target-action", "promote"],
        );
        assert_eq!(
            restored.psql("SELECT count(*) FROM marks"),
            "321",
            "round {round}, seed {seed}"
        );
    }
}
