//! Restore drills under duress, against real PostgreSQL: a drill that outlives its timeout,
//! one cut off by SIGTERM, and one whose pgkeepd is killed with SIGKILL (its sandbox and
//! server stay until the next drill's sweep removes them); a heap page corrupted before the
//! backup (checksums on: the full read names the table); and a drill of PostgreSQL 17.

#![allow(clippy::unwrap_used)]
#![allow(unsafe_code)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::cluster::{self, archiving_primary};
use support::drill::{self, sandboxes};
use support::pgkeep::Pgkeep;
use support::postgres::{major_bin, pg_bin};
use support::proc::{postgres_tempdir, wait_for};

/// A config for `pk`'s repository whose drills run a probe that sleeps `secs` seconds.
fn sleepy(pk: &Pgkeep, dir: &Path, secs: u32) -> Pgkeep {
    let config = dir.join("sleepy.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[restore_test]\ncanary = false\n[[restore_test.probes]]\nname = \"slow\"\nsql = \"SELECT true FROM pg_sleep({secs})\"\n",
            std::fs::read_to_string(&pk.config).unwrap()
        ),
    )
    .unwrap();
    Pgkeep {
        config,
        env: pk.env.clone(),
    }
}

fn work_dir(dir: &Path) -> String {
    let w = dir.join("work");
    std::fs::create_dir_all(&w).unwrap();
    w.display().to_string()
}

/// Waits until a drill's sandbox server is up in `work`; returns the sandbox's directory and
/// the postmaster's pid.
fn running_sandbox(work: &str) -> (String, u32) {
    wait_for("a drill's sandbox server", Duration::from_secs(120), || {
        let name = sandboxes(Path::new(work)).into_iter().next()?;
        let pid = std::fs::read_to_string(Path::new(work).join(&name).join("data/postmaster.pid"))
            .ok()?;
        let pid: u32 = pid.lines().next()?.trim().parse().ok()?;
        // The verify phase runs the slow probe once the server accepts connections.
        let log = std::fs::read_to_string(Path::new(work).join(&name).join("postgres.log")).ok()?;
        log.contains("ready to accept connections")
            .then_some((name, pid))
    })
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn timeout_sigterm_and_kill_leave_nothing_behind() {
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let (pk, pg, _source) = archiving_primary(&pg_bin(), dir, "", &[], &[]);
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id");
    let id = cluster::backup(
        &pk,
        &format!("host={} port={} user=postgres", pg.sock.display(), pg.port),
        "full",
    );
    let work = work_dir(dir);
    let slow = sleepy(&pk, dir, 600);
    let base = [
        ("PGKEEP_RESTORE_TEST_SANDBOX", "local"),
        ("PGKEEP_RESTORE_TEST_WORK_DIR", work.as_str()),
    ];

    // The overall timeout: the drill fails in the phase it was in, and cleans up.
    let mut e = base.to_vec();
    e.push(("PGKEEP_RESTORE_TEST_TIMEOUT", "15s"));
    let d = drill::run(&slow, &e, &[]);
    assert_eq!(d.code, 10, "{}", d.stderr);
    assert!(
        d.cause().contains("timed out after 15 s in phase verify"),
        "{}",
        d.cause()
    );
    assert!(sandboxes(Path::new(&work)).is_empty());
    assert!(drill::processes_naming(&work).is_empty());

    // SIGTERM mid-drill: exit 14, a stored report saying so, nothing left.
    let mut child = drill::command(&slow, &base, &[])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (_, pid) = running_sandbox(&work);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = wait_for(
        "pgkeepd to exit after SIGTERM",
        Duration::from_secs(60),
        || child.try_wait().unwrap(),
    );
    assert_eq!(out.code(), Some(14));
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["interrupted"], true);
    assert!(
        r["cause"]
            .as_str()
            .unwrap()
            .contains("interrupted by shutdown"),
        "{r:#}"
    );
    assert!(!alive(pid), "the sandbox server survived SIGTERM");
    assert!(sandboxes(Path::new(&work)).is_empty());

    // SIGKILL: nothing can clean up then; the sandbox stays until the next drill sweeps it.
    let mut child = drill::command(&slow, &base, &[]).spawn().unwrap();
    let (left, pid) = running_sandbox(&work);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(alive(pid), "the server is an orphan until swept");
    let d = drill::run(&pk, &base, &["--backup", &id, "--target", "immediate"]);
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert!(!alive(pid), "the orphaned sandbox server still runs");
    assert!(!sandboxes(Path::new(&work)).contains(&left));
    assert!(sandboxes(Path::new(&work)).is_empty());
    assert!(drill::processes_naming(&work).is_empty());
}

#[test]
fn a_heap_page_corrupted_before_the_backup_is_named_by_the_full_read() {
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let (pk, mut pg, source) = archiving_primary(&pg_bin(), dir, "", &[], &["-k"]);
    pg.psql("CREATE TABLE damaged AS SELECT generate_series(1, 20000) AS id");
    pg.psql("CHECKPOINT");
    let relpath = pg.psql("SELECT pg_relation_filepath('damaged')");
    pg.stop();
    let file = pg.data.join(&relpath);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8192 + 5000] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    pg.start();
    cluster::backup(&pk, &source, "full");
    let work = work_dir(dir);
    let d = drill::run(
        &pk,
        &[
            ("PGKEEP_RESTORE_TEST_SANDBOX", "local"),
            ("PGKEEP_RESTORE_TEST_WORK_DIR", &work),
            ("PGKEEP_BACKUP_SOURCE", &source),
        ],
        &[],
    );
    assert_eq!(d.code, 10, "{}", d.stderr);
    let (verdict, detail) = d.check("read:postgres");
    assert_eq!(verdict, "failed");
    assert!(
        detail.contains("public.damaged") && detail.contains("invalid page"),
        "{detail}"
    );
    assert!(d.cause().starts_with("read:postgres"), "{}", d.cause());
    assert!(sandboxes(Path::new(&work)).is_empty());
}

#[test]
fn a_drill_of_postgresql_17_passes() {
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let bin = major_bin(17);
    let (pk, pg, source) = archiving_primary(&bin, dir, "", &[], &["-k"]);
    pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g");
    pg.psql("CREATE INDEX ON t (v)");
    cluster::backup(&pk, &source, "full");
    pg.psql("INSERT INTO t SELECT g, 'after' FROM generate_series(5001, 5100) g");
    let work = work_dir(dir);
    let bin_dir = bin.display().to_string();
    let d = drill::run(
        &pk,
        &[
            ("PGKEEP_RESTORE_TEST_SANDBOX", "local"),
            ("PGKEEP_RESTORE_TEST_WORK_DIR", &work),
            ("PGKEEP_RESTORE_TEST_BIN_DIR", &bin_dir),
            ("PGKEEP_BACKUP_SOURCE", &source),
        ],
        &[],
    );
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert_eq!(d.check("canary").0, "passed");
    let (verdict, detail) = d.check("amcheck:postgres");
    assert_eq!(verdict, "passed", "{detail}");
    assert!(detail.contains("every heap checked"), "{detail}");
    let r = d.report.unwrap();
    let rows = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.t")
        .unwrap()["rows"]
        .as_u64();
    assert_eq!(rows, Some(5100));
    assert!(sandboxes(Path::new(&work)).is_empty());
}

/// PostgreSQL 18 (checksums on by default) in its container sandbox: the image
/// `scripts/sandbox-image.sh 18` builds from npm's binaries on the 15 image.
#[test]
fn a_drill_of_postgresql_18_in_a_container_passes() {
    let podman = support::podman::Podman::start();
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let bin = major_bin(18);
    let (pk, pg, source) = archiving_primary(&bin, dir, "", &[], &[]);
    pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g");
    cluster::backup(&pk, &source, "full");
    pg.psql("INSERT INTO t SELECT g, 'after' FROM generate_series(5001, 5100) g");
    let work = work_dir(dir);
    let host = podman.docker_host();
    let d = drill::run(
        &pk,
        &[
            ("PGKEEP_RESTORE_TEST_SANDBOX", "container"),
            ("PGKEEP_RESTORE_TEST_DOCKER_HOST", &host),
            ("PGKEEP_RESTORE_TEST_WORK_DIR", &work),
            ("PGKEEP_BACKUP_SOURCE", &source),
        ],
        &[],
    );
    assert_eq!(d.code, 0, "{}", d.stderr);
    let r = d.report.clone().unwrap();
    assert_eq!(r["runs"], "localhost/pgkeep-pg:18");
    assert_eq!(d.check("canary").0, "passed");
    let (verdict, detail) = d.check("amcheck:postgres");
    assert_eq!(verdict, "passed", "{detail}");
    let rows = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.t")
        .unwrap()["rows"]
        .as_u64();
    assert_eq!(rows, Some(5100));
    assert!(sandboxes(Path::new(&work)).is_empty());
    assert!(podman.labelled_containers().is_empty());
}
