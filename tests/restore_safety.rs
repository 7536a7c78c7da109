//! Restore is never silently wrong (issue 10), against a real PostgreSQL: tablespaces are
//! restored inside the target or where mapped, never over the source's; a target time needs
//! its offset; replay reads the repository the restore read, whatever the paths hold; a live
//! cluster is never restored over; a manifest cannot place anything outside the target; a
//! recovery target value cannot inject settings.

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use support::cluster::{self, start_restored};
use support::pgkeep::Pgkeep;
use support::postgres::{Pg, chown_postgres, pg_bin};
use support::proc::postgres_tempdir;

fn archiving_primary(dir: &Path) -> (Pgkeep, Pg, String) {
    cluster::archiving_primary(&pg_bin(), dir, "", &[], &[])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every file below `dir` with its inode: a file replaced by a rename gets a new one.
fn inodes(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), meta.ino()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn tablespaces_are_restored_inside_the_target_or_where_mapped_never_over_the_source() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = archiving_primary(dir.path());
    let live_ts = dir.path().join("live-ts");
    std::fs::create_dir(&live_ts).unwrap();
    chown_postgres(&live_ts);
    primary.psql(&format!("CREATE TABLESPACE ts1 LOCATION '{}'", s(&live_ts)));
    primary.psql("CREATE TABLE tt (id int) TABLESPACE ts1");
    primary.psql("INSERT INTO tt SELECT generate_series(1, 1000)");
    let oid = primary.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");
    cluster::backup(&pk, &source, "full");
    primary.psql("INSERT INTO tt SELECT generate_series(1001, 1500)");
    primary.psql("CHECKPOINT");
    primary.switch_and_wait_archived();
    let before = inodes(&live_ts);
    assert!(before.len() > 1, "{before:?}");

    // On the source's own host, while it runs: the source's tablespace is not touched.
    let target = dir.path().join("restored");
    pk.ok(&["restore", s(&target)]);
    assert_eq!(
        inodes(&live_ts),
        before,
        "the live tablespace's files were replaced"
    );
    assert_eq!(primary.psql("SELECT count(*) FROM tt"), "1500");
    let link = std::fs::read_link(target.join("pg_tblspc").join(&oid)).unwrap();
    assert_eq!(link, target.join("pg_tblspc_data").join(&oid));
    let restored = start_restored(&pg_bin(), &target);
    assert_eq!(restored.psql("SELECT count(*) FROM tt"), "1500");
    drop(restored);

    // --delta over it sweeps the tablespace's directory too, and keeps what matches.
    let junk = target.join("pg_tblspc_data").join(&oid).join("junk");
    std::fs::write(&junk, b"x").unwrap();
    let r = pk.ok(&["restore", s(&target), "--delta"]);
    assert!(
        r.stdout.contains("kept as they were") && !r.stdout.contains("(0 kept"),
        "{}",
        r.stdout
    );
    assert!(!junk.exists());
    assert_eq!(inodes(&live_ts), before);
    let restored = start_restored(&pg_bin(), &target);
    assert_eq!(restored.psql("SELECT count(*) FROM tt"), "1500");
    drop(restored);

    // Mapped into an explicit directory.
    let mapped_ts = dir.path().join("mapped-ts");
    std::fs::create_dir(&mapped_ts).unwrap();
    let mapped = dir.path().join("mapped");
    let map = format!("{oid}={}", s(&mapped_ts));
    pk.ok(&["restore", s(&mapped), "--tablespace-map", &map]);
    assert_eq!(
        std::fs::read_link(mapped.join("pg_tblspc").join(&oid)).unwrap(),
        mapped_ts
    );
    assert!(!mapped.join("pg_tblspc_data").exists());
    chown_postgres(&mapped_ts);
    let restored = start_restored(&pg_bin(), &mapped);
    assert_eq!(restored.psql("SELECT count(*) FROM tt"), "1500");
    drop(restored);
    assert_eq!(inodes(&live_ts), before);

    // A non-empty mapped directory is refused as a non-empty target is.
    let full_ts = dir.path().join("full-ts");
    std::fs::create_dir(&full_ts).unwrap();
    std::fs::write(full_ts.join("keep-me"), b"x").unwrap();
    let refused = dir.path().join("refused");
    let map = format!("{oid}={}", s(&full_ts));
    let r = pk.run(&["restore", s(&refused), "--tablespace-map", &map]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.error_line().contains("not empty"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&full_ts).unwrap().count(), 1);
    assert!(!refused.join("global/pg_control").exists());
    // So is the source's own tablespace directory.
    let map = format!("{oid}={}", s(&live_ts));
    let r = pk.run(&["restore", s(&refused), "--tablespace-map", &map]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert_eq!(inodes(&live_ts), before);
}

#[test]
fn a_target_time_needs_its_offset_and_postgresql_honours_it_in_another_timezone() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = archiving_primary(dir.path());
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    cluster::backup(&pk, &source, "full");
    primary.psql("INSERT INTO marks SELECT generate_series(1, 100)");
    let local = primary.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS.US')",
    );
    primary.psql("INSERT INTO marks SELECT generate_series(101, 200)");
    primary.switch_and_wait_archived();

    // Without an offset: refused, nothing written.
    let naive = dir.path().join("naive");
    let r = pk.run(&["restore", s(&naive), "--target-time", &local]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.error_line().contains("no utc offset"), "{}", r.stderr);
    assert!(r.stderr.contains("2026-11-21 22:00:00+01"), "{}", r.stderr);
    assert!(!naive.exists());

    // With it, written with a numeric offset that a server in New York reads right.
    let timed = dir.path().join("timed");
    let at = format!("{local}+05:30");
    pk.ok(&[
        "restore",
        s(&timed),
        "--target-time",
        &at,
        "--target-action",
        "promote",
    ]);
    let auto = std::fs::read_to_string(timed.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(&format!("recovery_target_time = '{local}+05:30'")),
        "{auto}"
    );
    std::fs::write(
        timed.join("postgresql.conf"),
        std::fs::read_to_string(timed.join("postgresql.conf")).unwrap()
            + "\ntimezone = 'America/New_York'\n",
    )
    .unwrap();
    let restored = start_restored(&pg_bin(), &timed);
    assert_eq!(restored.psql("SHOW timezone"), "America/New_York");
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "100");
}

#[test]
fn replay_reads_the_repository_the_restore_read() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = archiving_primary(dir.path());
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY)");
    cluster::backup(&pk, &source, "full");
    primary.psql("INSERT INTO marks SELECT generate_series(1, 100)");
    primary.switch_and_wait_archived();

    // A config in a path with a space and a percent sign, naming a repository that does not
    // exist; the environment points at the real one.
    let conf_dir = dir.path().join("my conf 100%f");
    std::fs::create_dir(&conf_dir).unwrap();
    let config = conf_dir.join("pgkeep.toml");
    std::fs::write(
        &config,
        format!(
            "[repository]\npath = \"{}\"\n",
            s(&dir.path().join("no-such-repo"))
        ),
    )
    .unwrap();
    let overridden = Pgkeep {
        config,
        env: vec![(
            "PGKEEP_REPOSITORY_PATH".into(),
            s(&dir.path().join("repo")).into(),
        )],
    };
    let target = dir.path().join("restored");
    let restored = cluster::restore_and_start(&overridden, &pg_bin(), &target, &[]);
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "100");
    let auto = std::fs::read_to_string(target.join("postgresql.auto.conf")).unwrap();
    assert!(auto.contains("PGKEEP_REPOSITORY_PATH="), "{auto}");
    assert!(auto.contains("100%%f"), "{auto}");
}

#[test]
fn restore_refuses_a_running_clusters_data_directory() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = archiving_primary(dir.path());
    primary.psql("CREATE TABLE marks AS SELECT generate_series(1, 10) AS id");
    cluster::backup(&pk, &source, "full");
    let pidfile = primary.data.join("postmaster.pid");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    for flag in ["--force", "--delta"] {
        let r = pk.run(&["restore", s(&primary.data), flag]);
        assert_eq!(r.code, 6, "{flag}: {}", r.stderr);
        assert!(r.error_line().contains("running server"), "{}", r.stderr);
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), pid, "{flag}");
        assert_eq!(primary.psql("SELECT count(*) FROM marks"), "10");
    }

    // A pid file whose process is gone is stale: --force goes ahead.
    let stale = dir.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("postmaster.pid"), "99999999\n/gone\n").unwrap();
    pk.ok(&["restore", s(&stale), "--force"]);
    assert!(stale.join("global/pg_control").exists());
    assert!(!stale.join("postmaster.pid").exists());
}

/// Rewrites the stored manifest of `id` through `edit`, re-encoded as pgkeep stores it.
fn forge_manifest(repo: &Path, id: &str, edit: impl FnOnce(&mut Vec<serde_json::Value>)) {
    let path = repo.join("main/backups").join(id).join("manifest.json");
    let stored = std::fs::read(&path).unwrap();
    let mut json = Vec::new();
    pgkeep::pipeline::decode(&stored, &mut json, pgkeep::pipeline::Seal::Clear).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&json).unwrap();
    edit(manifest["entries"].as_array_mut().unwrap());
    let plain = serde_json::to_vec(&manifest).unwrap();
    let opts = pgkeep::pipeline::EncodeOptions {
        compression: pgkeep::pipeline::Compression::Zstd(1),
        threads: 0,
    };
    let encoded =
        pgkeep::pipeline::encode(&plain[..], opts, plain.len(), pgkeep::pipeline::Seal::Clear)
            .unwrap();
    std::fs::write(&path, encoded.bytes).unwrap();
}

#[test]
fn a_forged_manifest_cannot_place_anything_outside_the_target() {
    let dir = postgres_tempdir();
    let (pk, _primary, source) = archiving_primary(dir.path());
    let id = cluster::backup(&pk, &source, "full");
    let repo = dir.path().join("repo");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let entry = |path: &str, kind: serde_json::Value| {
        let mut e = serde_json::json!({"path": path, "mode": 448, "mtime": 0});
        e.as_object_mut()
            .unwrap()
            .extend(kind.as_object().unwrap().clone());
        e
    };

    // A directory up and out of the target.
    forge_manifest(&repo, &id, |entries| {
        entries.push(entry("../escaped", serde_json::json!({"kind": "dir"})));
    });
    // Refused when loaded (the backup is listed as damaged), and again if named.
    let target = dir.path().join("target");
    let r = pk.run(&["restore", s(&target)]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.error_line().contains("holds no backup"), "{}", r.stderr);
    let r = pk.run(&["restore", s(&target), "--backup", &id]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.error_line().contains("manifest"), "{}", r.stderr);
    assert!(!dir.path().join("escaped").exists());
    assert!(!target.join("global/pg_control").exists());

    // A link elsewhere than pg_tblspc/<oid>, and a directory through it.
    forge_manifest(&repo, &id, |entries| {
        entries.retain(|e| e["path"] != "../escaped");
        let link = serde_json::json!({"kind": "link", "target": s(&outside)});
        entries.push(entry("base/evil", link));
        entries.push(entry(
            "base/evil/inside",
            serde_json::json!({"kind": "dir"}),
        ));
    });
    let r = pk.run(&["restore", s(&target), "--backup", &id]);
    assert_eq!(r.code, 10, "{}", r.stderr);
    assert!(r.error_line().contains("manifest"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!target.join("base/evil").exists());
}

#[test]
fn recovery_target_values_cannot_inject_settings() {
    let dir = postgres_tempdir();
    let (pk, _primary, source) = archiving_primary(dir.path());
    cluster::backup(&pk, &source, "full");
    let target = dir.path().join("restored");
    pk.ok(&["restore", s(&target)]);
    let auto = target.join("postgresql.auto.conf");
    let written = std::fs::read_to_string(&auto).unwrap();

    let long = "n".repeat(64);
    for bad in [
        ["--target-name", "p1\nrestore_command = 'touch /tmp/pwned'"],
        ["--target-name", long.as_str()],
        ["--target-xid", "12\narchive_mode = on"],
        ["--target-timeline", "1\nx = 'y'"],
        ["--target-timeline", "0"],
    ] {
        let r = pk.run(&["restore", s(&target), "--force", bad[0], bad[1]]);
        assert_eq!(r.code, 6, "{bad:?}: {}", r.stderr);
        r.error_line();
        assert_eq!(std::fs::read_to_string(&auto).unwrap(), written, "{bad:?}");
        assert!(target.join("global/pg_control").exists(), "{bad:?}");
    }

    // Quotes and backslashes are escaped as PostgreSQL's parser reads them.
    let name = r"it's a \ point";
    pk.ok(&["restore", s(&target), "--force", "--target-name", name]);
    let auto = std::fs::read_to_string(&auto).unwrap();
    assert!(
        auto.contains(r"recovery_target_name = 'it''s a \\ point'"),
        "{auto}"
    );
    assert_eq!(
        auto.matches("# added by pgkeep restore").count(),
        1,
        "{auto}"
    );
}
