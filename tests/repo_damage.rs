//! Issue 10, "never silently wrong", against real PostgreSQL 15 and a local repository:
//! - `verify` reads every WAL object back: a flipped byte, a segment stored under another's
//!   name and a truncated segment (re-encoded, so its checksum holds) are each named;
//!   `--wal-names-only` and `info` say they did not read WAL contents; a damaged
//!   `repo.json.copy` is named;
//! - a damaged manifest is a damaged backup, reported — not a stop for everything: `info`
//!   lists it, `verify` names it, `expire` keeps its folder and all WAL, a new incremental
//!   builds on a readable chain, `restore` takes the newest readable backup; a manifest
//!   re-encoded with a `../` path or another backup's id is damaged too;
//! - a backup a restore holds is kept by `expire`, and the hold goes when released;
//! - an incremental stores a file whole when its delta would be no smaller;
//! - out-of-range settings exit 3; `unpin` of an unknown backup exits 6.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pgkeep::pipeline::{self, Compression, EncodeOptions};
use support::cluster::{self, backup, backups, verify_json};
use support::pgkeep::{FakeCluster, Pgkeep};
use support::postgres::pg_bin;
use support::proc::{postgres_tempdir, wait_for};

fn decode(stored: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    pipeline::decode(stored, &mut plain, pipeline::Seal::Clear).unwrap();
    plain
}

fn encode(plain: &[u8]) -> Vec<u8> {
    let opts = EncodeOptions {
        compression: Compression::Zstd(1),
        threads: 0,
    };
    pipeline::encode(plain, opts, plain.len(), pipeline::Seal::Clear)
        .unwrap()
        .bytes
}

/// The stored WAL segments (full ones), by name, oldest first.
fn segments(repo: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(repo.join("main/wal")).unwrap().flatten() {
        if !d.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().to_string();
            if name.len() == 24 {
                out.push((name, f.path()));
            }
        }
    }
    out.sort();
    out
}

fn manifest_path(repo: &Path, id: &str) -> PathBuf {
    repo.join("main/backups").join(id).join("manifest.json")
}

fn manifest(repo: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&decode(&std::fs::read(manifest_path(repo, id)).unwrap())).unwrap()
}

/// Runs `f` on `path`'s bytes, then checks with `check`, then puts the original back.
fn damaged(path: &Path, f: impl FnOnce(Vec<u8>) -> Vec<u8>, check: impl FnOnce()) {
    let good = std::fs::read(path).unwrap();
    std::fs::write(path, f(good.clone())).unwrap();
    check();
    std::fs::write(path, good).unwrap();
}

fn flip_middle(mut b: Vec<u8>) -> Vec<u8> {
    let at = b.len() / 2;
    b[at] ^= 0x20;
    b
}

fn info_json(pk: &Pgkeep) -> serde_json::Value {
    serde_json::from_str(&pk.ok(&["info", "--json"]).stdout).unwrap()
}

fn wal_first(pk: &Pgkeep) -> String {
    info_json(pk)["wal"]["ranges"][0]["first"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn verify_reads_every_wal_object_and_both_repo_json_copies() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    let repo = dir.path().join("repo");
    primary.pgbench(&["-i", "-s", "1", "-q"]);
    backup(&pk, &source, "full");
    primary.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) i");
    primary.switch_and_wait_archived();
    primary.psql("INSERT INTO t SELECT generate_series(1, 1000)");
    primary.switch_and_wait_archived();

    let (code, v) = verify_json(&pk, &[]);
    assert_eq!(code, 0, "{v}");
    let segs = segments(&repo);
    assert!(segs.len() >= 3, "{segs:?}");
    assert!(
        v["wal_objects"].as_u64().unwrap() >= segs.len() as u64,
        "{v}"
    );
    assert_eq!(v["wal_contents_checked"], true);

    let names_problem = |args: &[&str], name: &str, why: &str| {
        let (code, v) = verify_json(&pk, args);
        assert_eq!(code, 10, "{v}");
        let problems = v["wal_problems"].to_string();
        assert!(
            problems.contains(&format!("{name}: ")) && problems.contains(why),
            "{name} / {why}: {problems}"
        );
    };
    let (a, a_path) = segs[segs.len() - 2].clone();
    let (b, b_path) = segs[segs.len() - 1].clone();
    // A flipped byte in the stored object: the pipeline's checksum (or zstd) catches it.
    damaged(&a_path, flip_middle, || names_problem(&[], &a, ""));
    // Two segments swapped: each decodes fine, but its header is of the other segment.
    let (ga, gb) = (
        std::fs::read(&a_path).unwrap(),
        std::fs::read(&b_path).unwrap(),
    );
    std::fs::write(&a_path, &gb).unwrap();
    std::fs::write(&b_path, &ga).unwrap();
    names_problem(&[], &a, "its name says");
    names_problem(&[], &b, "its name says");
    // By names alone all is well: only under the explicit flag, which says so.
    let r = pk.ok(&["verify", "--wal-names-only"]);
    assert!(r.stdout.contains("contents not verified"), "{}", r.stdout);
    std::fs::write(&a_path, &ga).unwrap();
    std::fs::write(&b_path, &gb).unwrap();
    // A segment truncated and re-encoded: its checksum holds, its size does not.
    let full = backups(&pk)[0]["id"].as_str().unwrap().to_string();
    damaged(
        &b_path,
        |stored| {
            let plain = decode(&stored);
            encode(&plain[..plain.len() / 2])
        },
        || names_problem(&["--backup", &full], &b, "holds"),
    );
    // info reads no WAL, so it does not call it verified.
    let info = pk.ok(&["info"]).stdout;
    assert!(info.contains("contents not verified"), "{info}");
    assert!(!info.contains(" ok"), "{info}");

    // repo.json.copy damaged: the repository still opens, verify names the copy.
    let copy = repo.join("main/repo.json.copy");
    damaged(&copy, flip_middle, || {
        let r = pk.run(&["verify"]);
        assert_eq!(r.code, 10, "{}", r.stdout);
        assert!(r.stdout.contains("repo.json.copy: damaged"), "{}", r.stdout);
    });
    std::fs::remove_file(&copy).unwrap();
    let r = pk.run(&["verify"]);
    assert!(r.stdout.contains("repo.json.copy: missing"), "{}", r.stdout);
    std::fs::write(&copy, std::fs::read(repo.join("main/repo.json")).unwrap()).unwrap();
    assert_eq!(pk.run(&["verify"]).code, 0);
}

#[test]
fn a_damaged_manifest_is_reported_and_stops_nothing_else() {
    let dir = postgres_tempdir();
    let (pk, primary, source) =
        cluster::archiving_primary(&pg_bin(), dir.path(), "[retention]\nfull = 1", &[], &[]);
    let repo = dir.path().join("repo");
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    primary.psql("CREATE TABLE churn AS SELECT i, 'x' AS note FROM generate_series(1, 20000) i");
    let f0 = backup(&pk, &source, "full");
    primary.psql("INSERT INTO marks SELECT generate_series(1, 100)");
    let f1 = backup(&pk, &source, "full");
    primary.psql("INSERT INTO marks SELECT generate_series(101, 200)");
    let i1 = backup(&pk, &source, "incr");
    primary.switch_and_wait_archived();
    let wal_before = wal_first(&pk);

    // The newest backup's manifest damaged.
    let i1_manifest = manifest_path(&repo, &i1);
    let good_i1 = std::fs::read(&i1_manifest).unwrap();
    std::fs::write(&i1_manifest, flip_middle(good_i1.clone())).unwrap();

    // info: exit 0, the damaged one listed as such.
    let v = info_json(&pk);
    assert_eq!(v["backups"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["damaged"][0]["id"], i1.as_str(), "{v}");
    let table = pk.ok(&["info"]).stdout;
    assert!(table.contains(&format!("{i1:<20} DAMAGED")), "{table}");
    // verify names it.
    let (code, v) = verify_json(&pk, &[]);
    assert_eq!(code, 10);
    assert!(v["damaged"].to_string().contains(&i1), "{v}");
    // expire: f0 would go (full = 1) with the WAL before f1; the damaged incremental may be
    // built on either, so nothing goes, no WAL either, and its folder stays.
    let r = pk.ok(&["expire"]);
    assert!(
        r.stdout.contains(&format!("keep   {i1}  DAMAGED")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("expire 2"), "{}", r.stdout);
    assert_eq!(backups(&pk).len(), 2);
    assert_eq!(wal_first(&pk), wal_before, "no WAL expired");
    assert!(i1_manifest.exists());

    // A new incremental builds on the readable chain (f1), and a file whose every page
    // changed is stored whole rather than as a larger delta.
    primary.psql("UPDATE churn SET note = 'y'");
    primary.psql("INSERT INTO marks SELECT generate_series(201, 300)");
    let i2 = backup(&pk, &source, "incr");
    let m = manifest(&repo, &i2);
    assert_eq!(m["parent"], f1.as_str(), "{}", m["parent"]);
    let churn = primary.psql("SELECT pg_relation_filepath('churn')");
    let entry = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == churn.as_str())
        .unwrap();
    let layers = entry["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{entry}");
    assert_eq!(layers[0]["backup"], i2.as_str());
    assert_eq!(layers[0]["delta"], false);

    // restore without --backup: the newest readable backup, with a warning.
    primary.psql("INSERT INTO marks SELECT generate_series(301, 310)");
    primary.switch_and_wait_archived();
    let target = dir.path().join("restored");
    let r = pk.ok(&["restore", target.to_str().unwrap()]);
    assert!(
        r.stdout.contains(&format!("restored backup {i2}")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&i1),
        "a warning names the damaged backup: {}",
        r.stderr
    );
    let restored = cluster::start_restored(&pg_bin(), &target);
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "310");
    drop(restored);

    // Manifests re-encoded (checksums fine) with a path out of the data directory, or with
    // another backup's id, are damaged backups too.
    std::fs::write(&i1_manifest, &good_i1).unwrap();
    assert_eq!(pk.run(&["verify"]).code, 0, "all whole again");
    let f0_manifest = manifest_path(&repo, &f0);
    let mut escaping = manifest(&repo, &f0);
    escaping["entries"][1]["path"] = "../../../tmp/escaped".into();
    let reencode = |m: &serde_json::Value| encode(&serde_json::to_vec(m).unwrap());
    damaged(
        &f0_manifest,
        |_| reencode(&escaping),
        || {
            let (code, v) = verify_json(&pk, &[]);
            assert_eq!(code, 10);
            let d = v["damaged"].to_string();
            assert!(d.contains(&f0) && d.contains("unsafe path"), "{d}");
            assert_eq!(info_json(&pk)["damaged"][0]["id"], f0.as_str());
        },
    );
    let other = manifest(&repo, &f1);
    damaged(
        &f0_manifest,
        |_| reencode(&other),
        || {
            let (code, v) = verify_json(&pk, &[]);
            assert_eq!(code, 10);
            let d = v["damaged"].to_string();
            assert!(d.contains(&f0) && d.contains("folder"), "{d}");
            let info = info_json(&pk);
            assert_eq!(info["damaged"][0]["id"], f0.as_str(), "{info}");
            assert_eq!(info["backups"].as_array().unwrap().len(), 3, "{info}");
        },
    );
}

#[test]
fn expire_keeps_a_backup_a_restore_holds() {
    let dir = postgres_tempdir();
    let (pk, primary, source) =
        cluster::archiving_primary(&pg_bin(), dir.path(), "[retention]\nfull = 1", &[], &[]);
    let repo = dir.path().join("repo");
    let old = backup(&pk, &source, "full");
    primary.psql("SELECT pg_switch_wal()");
    backup(&pk, &source, "full");

    let vars = std::collections::BTreeMap::new();
    let cfg = pgkeep::config::Raw::load(Some(pk.config.as_path()), &vars)
        .unwrap()
        .resolve()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(async {
        let r = pgkeep::repo::Repo::open(&cfg.repository).await.unwrap();
        pgkeep::repo::hold::hold(&r, &old, "restore").await.unwrap()
    });
    let holds = repo.join("main/locks/holds").join(&old);
    assert_eq!(std::fs::read_dir(&holds).unwrap().count(), 1);

    let r = pk.ok(&["expire"]);
    assert!(
        r.stdout.contains(&format!("keep   {old}  held by restore")),
        "{}",
        r.stdout
    );
    assert_eq!(backups(&pk).len(), 2);

    rt.block_on(held.release()).unwrap();
    assert_eq!(
        std::fs::read_dir(&holds).map_or(0, |d| d.count()),
        0,
        "hold removed"
    );
    let r = pk.ok(&["expire"]);
    assert!(r.stdout.contains(&format!("expire {old}")), "{}", r.stdout);
    assert_eq!(backups(&pk).len(), 1);
    // A hold on what is gone is refused.
    let e = rt.block_on(async {
        let r = pgkeep::repo::Repo::open(&cfg.repository).await.unwrap();
        pgkeep::repo::hold::hold(&r, &old, "restore")
            .await
            .unwrap_err()
    });
    assert_eq!(e.kind(), pgkeep::error::ErrorKind::InvalidInput);
    wait_for("no hold left", Duration::from_secs(10), || {
        (std::fs::read_dir(&holds).map_or(0, |d| d.count()) == 0).then_some(())
    });
}

#[test]
fn out_of_range_settings_exit_3_and_unpin_of_an_unknown_backup_exits_6() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let base = format!("[repository]\npath = \"{}\"\n", repo.display());
    let fake = FakeCluster::new(dir.path(), 4242, 15);
    let pk = Pgkeep::new(dir.path(), &base);
    pk.ok(&["init", "--data-dir", fake.data.to_str().unwrap()]);

    for (extra, key) in [
        (
            "[backup]\nmemory_mib = 17592186044416\n",
            "backup.memory_mib",
        ),
        ("[backup]\nconcurrency = 100000\n", "backup.concurrency"),
        (
            "[archive]\nget_prefetch = 1000000\n",
            "archive.get_prefetch",
        ),
        ("[retention]\nfull = 0\n", "retention.full"),
    ] {
        let bad = Pgkeep::new(dir.path(), &format!("{base}{extra}"));
        let r = bad.run(&["info"]);
        assert_eq!(r.code, 3, "{extra}: {}", r.stderr);
        let line = r.error_line();
        assert!(line.contains(key) && line.contains("allowed"), "{line}");
    }
    let mut env = Pgkeep::new(dir.path(), &base);
    env.env = vec![("PGKEEP_BACKUP_MEMORY_MIB".into(), "4294967296".into())];
    let r = env.run(&["info"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.error_line().contains("backup.memory_mib"), "{}", r.stderr);

    let pk = Pgkeep::new(dir.path(), &base);
    let r = pk.run(&["unpin", "20200101T000000Z-F"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.error_line().contains("no backup 20200101T000000Z-F"),
        "{}",
        r.stderr
    );
}
