//! Page-incremental backups against real PostgreSQL: an incremental stores only the pages that
//! changed, restores (alone, from its chain) to exactly the rows committed at the target, is
//! taken as a full once the chain is long enough, and a damaged delta stops the restore.
//! `--delta` restores over an existing directory, keeping what matches.

#![allow(clippy::unwrap_used)]

mod support;

use support::cluster::{self, backup, backups};
use support::pgkeep::Pgkeep;
use support::postgres::{Pg, major_bin, pg_bin};
use support::proc::postgres_tempdir;

const EVENTS: &str = "CREATE TABLE events (id int PRIMARY KEY, \
                      committed_at timestamptz NOT NULL DEFAULT clock_timestamp())";

fn events(pg: &Pg, from: u32, to: u32) {
    pg.psql(&format!(
        "INSERT INTO events (id) SELECT generate_series({from}, {to})"
    ));
}

fn now(pg: &Pg) -> String {
    pg.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
}

/// What a restored server must agree on with the primary: events and account balances.
fn state(pg: &Pg) -> (String, String) {
    (
        pg.psql("SELECT count(*) FROM events"),
        pg.psql("SELECT sum(abalance) FROM pgbench_accounts"),
    )
}

#[test]
fn an_incremental_stores_changed_pages_and_restores_to_any_point() {
    let dir = postgres_tempdir();
    let bin = pg_bin();
    let (pk, primary, source) =
        cluster::archiving_primary(&bin, dir.path(), "max_chain = 2", &[], &[]);
    primary.pgbench(&["-i", "-s", "5", "-q"]);
    primary.psql(EVENTS);
    events(&primary, 1, 100);
    let full = backup(&pk, &source, "incr");
    assert!(full.ends_with("-F"), "nothing to build on yet: {full}");

    // Writes between the backups: a point in time, then pgbench updates touching few pages.
    events(&primary, 101, 200);
    let between = now(&primary);
    let before_incr = state(&primary);
    primary.pgbench(&["-n", "-t", "300"]);
    events(&primary, 201, 300);
    let incr = backup(&pk, &source, "incr");
    let at_incr = state(&primary);
    events(&primary, 301, 400);
    let latest = state(&primary);
    primary.switch_and_wait_archived();

    // The incremental names its parent and stores a small fraction of the full.
    let list = backups(&pk);
    let (f, i) = (&list[0], &list[1]);
    assert_eq!(i["type"], "incr");
    assert_eq!(i["parent"].as_str(), Some(full.as_str()));
    let (full_stored, incr_stored) = (
        f["stored_size"].as_u64().unwrap(),
        i["stored_size"].as_u64().unwrap(),
    );
    assert!(
        incr_stored * 5 < full_stored,
        "incremental stored {incr_stored} bytes, the full {full_stored}"
    );
    assert!(
        i["size"].as_u64().unwrap() >= f["size"].as_u64().unwrap(),
        "the incremental describes the whole (grown) cluster"
    );

    // Latest: the chain, then the archive.
    let promote = ["--target-action", "promote"];
    let mut restored = cluster::restore_and_start(&pk, &bin, &dir.path().join("latest"), &promote);
    assert_eq!(state(&restored), latest);
    restored.stop();

    // A time between the two backups can only come from the full.
    let r = pk.ok(&[
        "restore",
        dir.path().join("between").to_str().unwrap(),
        "--target-time",
        &between,
        promote[0],
        promote[1],
    ]);
    assert!(r.stdout.contains(&full), "{}", r.stdout);
    let restored = cluster::start_restored(&bin, &dir.path().join("between"));
    assert_eq!(state(&restored), before_incr);
    drop(restored);

    // The incremental itself, as of its end: in place over the directory restored to latest,
    // keeping the files that match and dropping what the backup lacks.
    let target = dir.path().join("latest");
    std::fs::write(target.join("base/stray-file"), b"not in any backup").unwrap();
    let r = pk.ok(&[
        "restore",
        target.to_str().unwrap(),
        "--backup",
        &incr,
        "--delta",
        "--target",
        "immediate",
        promote[0],
        promote[1],
    ]);
    let kept: usize = r
        .stdout
        .split(" kept as they were")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(kept > 100, "{}", r.stdout);
    assert!(!target.join("base/stray-file").exists());
    let restored = cluster::start_restored(&bin, &target);
    assert_eq!(state(&restored), at_incr);
    drop(restored);

    // The chain grows to backup.max_chain incrementals, then an incremental is taken as a full.
    primary.pgbench(&["-n", "-t", "50"]);
    assert!(backup(&pk, &source, "incr").ends_with("-I"));
    let r = pk.ok(&["backup", "--source", &source, "--type", "incr"]);
    assert!(r.stdout.starts_with("full backup"), "{}", r.stdout);
    assert!(r.stderr.contains("max_chain"), "{}", r.stderr);

    // One flipped byte in a delta part of the first incremental: its restore fails naming the
    // file, and pg_control is never written.
    let relpath = primary.psql("SELECT pg_relation_filepath('pgbench_accounts')");
    let object = dir
        .path()
        .join("repo/main/backups")
        .join(&incr)
        .join("files")
        .join(&relpath);
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x04;
    std::fs::write(&object, bytes).unwrap();
    let damaged = dir.path().join("damaged");
    let r = pk.run(&["restore", damaged.to_str().unwrap(), "--backup", &incr]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.error_line().contains(&relpath), "{}", r.stderr);
    assert!(!damaged.join("global/pg_control").exists());

    // info: every backup's WAL is archived, in one run on timeline 1; a segment removed from
    // the middle shows as a gap, and the backup that needs it as incomplete.
    let info = |pk: &Pgkeep| -> serde_json::Value {
        serde_json::from_str(&pk.ok(&["info", "--json"]).stdout).unwrap()
    };
    let v = info(&pk);
    assert!(
        v["backups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["wal_complete"] == true),
        "{v}"
    );
    assert_eq!(v["wal"]["gaps"].as_array().unwrap().len(), 0, "{v}");
    let range = &v["wal"]["ranges"][0];
    assert_eq!(range["timeline"], 1);
    let start_lsn = list[1]["start_lsn"].as_str().unwrap().to_string();
    let needed = primary.psql(&format!("SELECT pg_walfile_name('{start_lsn}')"));
    std::fs::remove_file(
        dir.path()
            .join("repo/main/wal")
            .join(&needed[..16])
            .join(&needed),
    )
    .unwrap();
    let v = info(&pk);
    assert_eq!(v["wal"]["gaps"][0]["first_missing"], needed.as_str(), "{v}");
    assert_eq!(v["backups"][1]["wal_complete"], false, "{v}");
    assert!(pk.ok(&["info"]).stdout.contains("GAP"));
}

/// Full, incremental, restore to latest on one major, into a repository encrypted or not
/// (the matrix rotates the cipher: PostgreSQL major × store × cipher).
fn full_and_incremental_restore(major: u32, encrypted: bool) {
    let dir = postgres_tempdir();
    let bin = major_bin(major);
    let cipher = if encrypted {
        support::pgkeep::cipher_lines(dir.path())
    } else {
        String::new()
    };
    let pk = support::pgkeep::Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"{}\"\n{cipher}[backup]\nwal_timeout = \"60s\"\n",
            dir.path().join("repo").display()
        ),
    );
    // From 18 on, initdb turns data checksums on by itself.
    let initdb: &[&str] = if major >= 18 { &[] } else { &["-k"] };
    let (pk, primary, source) = cluster::archiving_primary_with(pk, &bin, dir.path(), &[], initdb);
    assert_eq!(primary.psql("SHOW data_checksums"), "on");
    primary.pgbench(&["-i", "-s", "1", "-q"]);
    primary.psql(EVENTS);
    events(&primary, 1, 50);
    backup(&pk, &source, "full");
    primary.pgbench(&["-n", "-t", "200"]);
    events(&primary, 51, 120);
    assert!(backup(&pk, &source, "incr").ends_with("-I"));
    events(&primary, 121, 150);
    let latest = state(&primary);
    primary.switch_and_wait_archived();
    let restored = cluster::restore_and_start(
        &pk,
        &bin,
        &dir.path().join("restored"),
        &["--target-action", "promote"],
    );
    assert_eq!(state(&restored), latest);
    assert_eq!(restored.psql("SHOW data_checksums"), "on");
    assert_eq!(
        restored.psql("SELECT current_setting('server_version_num')::int / 10000"),
        major.to_string()
    );
}

#[test]
fn full_and_incremental_on_postgres_13() {
    full_and_incremental_restore(13, false);
}

#[test]
fn full_and_incremental_on_postgres_16_encrypted() {
    full_and_incremental_restore(16, true);
}

#[test]
fn full_and_incremental_on_postgres_17_encrypted() {
    full_and_incremental_restore(17, true);
}

/// 18 turns data checksums on by default: the backup checks pages, the restore keeps them.
#[test]
fn full_and_incremental_on_postgres_18() {
    full_and_incremental_restore(18, false);
}

/// A chain through a truncation and a regrowth of one relation larger than a region (16 MiB):
/// full (~30 MiB), incremental after its tail was deleted and VACUUM cut the file, incremental
/// after it grew again and its head changed. Restored as of the last incremental, the table is
/// exactly what was committed then: each region is rebuilt once from the layers, and what a
/// layer supplied past a later, smaller size is gone.
#[test]
fn a_chain_through_truncation_and_regrowth_restores_exactly() {
    let dir = postgres_tempdir();
    let bin = pg_bin();
    let (pk, primary, source) =
        cluster::archiving_primary(&bin, dir.path(), "max_chain = 6", &[], &[]);
    let t = "CREATE TABLE t (id int, pad text) WITH (autovacuum_enabled = off)";
    primary.psql(t);
    let fill = |from: u32, to: u32| {
        primary.psql(&format!(
            "INSERT INTO t SELECT g, repeat(md5(g::text), 7) FROM generate_series({from}, {to}) g"
        ))
    };
    fill(1, 100_000);
    let size = |pg: &Pg| {
        pg.psql("SELECT pg_relation_size('t')")
            .parse::<u64>()
            .unwrap()
    };
    assert!(size(&primary) > 24 << 20, "t spans more than one region");
    let full = backup(&pk, &source, "full");

    primary.psql("DELETE FROM t WHERE id > 20000");
    primary.psql("VACUUM t");
    let cut = size(&primary);
    assert!(cut < 8 << 20, "VACUUM truncated t to {cut} bytes");
    let first = backup(&pk, &source, "incr");

    fill(20_001, 90_000);
    primary.psql("UPDATE t SET pad = 'changed' WHERE id % 97 = 0");
    let last = backup(&pk, &source, "incr");
    assert!(full.ends_with("-F") && first.ends_with("-I") && last.ends_with("-I"));
    let want =
        primary.psql("SELECT count(*), sum(id), md5(string_agg(pad, ',' ORDER BY id)) FROM t");
    primary.switch_and_wait_archived();

    let target = dir.path().join("restored");
    let r = pk.ok(&[
        "restore",
        target.to_str().unwrap(),
        "--backup",
        &last,
        "--target",
        "immediate",
        "--target-action",
        "promote",
    ]);
    assert!(r.stdout.contains(&last), "{}", r.stdout);
    let restored = cluster::start_restored(&bin, &target);
    assert_eq!(
        restored.psql("SELECT count(*), sum(id), md5(string_agg(pad, ',' ORDER BY id)) FROM t"),
        want
    );
    assert_eq!(size(&restored), size(&primary));
}
