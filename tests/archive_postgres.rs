//! End to end with real PostgreSQL servers: `archive_command = pgkeep archive-push %p` under
//! pgbench load, every segment PostgreSQL marked `.done` is in the repository and comes back
//! byte-identical through `archive-get`, and a copy of the cluster taken before the load
//! recovers through `restore_command = pgkeep archive-get` to exactly the committed rows.
//! Each runs in both modes: straight to the repository, and through pgkeepd's WAL service
//! (`[server]` on the database side; pgkeepd holds the repository, its key and credentials).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::garage::Garage;
use support::pgkeep::Pgkeep;
use support::postgres::{Pg, chown_postgres, major_bin};
use support::proc::{postgres_tempdir, run_ok};
use support::receiver::{Daemon, token};

/// How the database side reaches the repository.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Direct,
    /// Through a pgkeepd started on the repository; the client config holds only `[server]`.
    Service,
}

/// Copies a stopped cluster's data directory (a cold base for archive recovery).
fn copy_dir(from: &Path, to: &Path) {
    run_ok("cp", Command::new("cp").arg("-a").arg(from).arg(to));
}

fn archive_and_recover(major: u32, pk: Pgkeep, dir: &Path, mode: Mode) {
    let bin = major_bin(major);
    let mut primary = Pg::initdb(&bin, dir, "primary");
    pk.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
    if let Some(repo) = local_repo(&pk) {
        chown_postgres(&repo);
    }
    // In service mode `pk` (the repository's own config) is pgkeepd's; the database side gets
    // a config with nothing but the service's address and its token.
    let (_daemon, client) = match mode {
        Mode::Direct => (
            None,
            Pgkeep {
                config: pk.config.clone(),
                env: pk.env.clone(),
            },
        ),
        Mode::Service => {
            let tok = token(dir, "main", "archive-postgres-token-0123456789");
            let repository = std::fs::read_to_string(&pk.config).unwrap();
            let d = Daemon::start_with(
                dir,
                &repository,
                &format!(
                    "[[service.clusters]]\nname = \"main\"\ntoken_file = \"{}\"\n",
                    tok.display()
                ),
                &pk.env,
            );
            let client_dir = dir.join("client");
            std::fs::create_dir_all(&client_dir).unwrap();
            let client = Pgkeep::new(
                &client_dir,
                &format!(
                    "[server]\nurl = \"{}\"\ntoken_file = \"{}\"\n",
                    d.url(),
                    tok.display()
                ),
            );
            chown_postgres(&client_dir);
            (Some(d), client)
        }
    };
    primary.configure(&[
        "wal_level = replica".into(),
        "archive_mode = on".into(),
        format!(
            "archive_command = '{}'",
            client.archive_command().replace('\'', "''")
        ),
        "wal_keep_size = '1GB'".into(),
        "max_wal_size = '1GB'".into(),
    ]);

    // Schema and initial data, then a clean stop: the copy taken now is the recovery base.
    primary.start();
    primary.psql("CREATE TABLE marks (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())");
    primary.pgbench(&["-i", "-s", "2", "-q"]);
    primary.stop();
    let base = dir.join("restored");
    copy_dir(&primary.data, &base);

    // Load: pgbench, committed marks, and a switch so the last segment is archived too.
    primary.start();
    primary.pgbench(&["-T", "3", "-c", "2"]);
    primary.psql("INSERT INTO marks (id) SELECT generate_series(1, 1000)");
    let history = primary.psql("SELECT count(*) FROM pgbench_history");
    primary.switch_and_wait_archived();
    assert_eq!(
        primary.psql("SELECT failed_count FROM pg_stat_archiver"),
        "0",
        "{}",
        primary.log()
    );

    // Every segment PostgreSQL marked done comes back byte-identical.
    let wal = primary.data.join("pg_wal");
    let mut checked = 0;
    for entry in std::fs::read_dir(wal.join("archive_status")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(seg) = name.strip_suffix(".done") else {
            continue;
        };
        let local = wal.join(seg);
        if !local.exists() {
            continue;
        }
        // Through the client's path, and from the repository itself (what pgkeepd stored).
        for (how, pk) in [("client", &client), ("repository", &pk)] {
            let back = dir.join(format!("{seg}.{how}"));
            pk.ok(&["archive-get", seg, back.to_str().unwrap()]);
            assert_eq!(
                std::fs::read(&back).unwrap(),
                std::fs::read(&local).unwrap(),
                "{seg} via {how}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "only {checked} archived segments were found to compare"
    );

    // Recovery through restore_command, to the end of the archive.
    let mut restored = Pg::at(&bin, base);
    std::fs::write(restored.data.join("recovery.signal"), b"").unwrap();
    restored.configure(&[
        format!(
            "restore_command = '{}'",
            client.restore_command().replace('\'', "''")
        ),
        "archive_mode = off".into(),
    ]);
    chown_postgres(&restored.data);
    restored.start();
    support::proc::wait_for(
        "recovery to finish",
        std::time::Duration::from_secs(120),
        || (restored.psql("SELECT pg_is_in_recovery()") == "f").then_some(()),
    );
    assert_eq!(restored.psql("SELECT count(*) FROM marks"), "1000");
    assert_eq!(
        restored.psql("SELECT count(*) FROM pgbench_history"),
        history
    );
    let log = restored.log();
    assert!(
        log.contains("restored log file"),
        "recovery used no archived WAL:\n{log}"
    );
}

fn local_repo(pk: &Pgkeep) -> Option<PathBuf> {
    let text = std::fs::read_to_string(&pk.config).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("path = \""))
        .map(|p| PathBuf::from(p.trim_end_matches('"')))
}

fn local(major: u32, mode: Mode) {
    let dir = postgres_tempdir();
    let repo = dir.path().join("repo");
    let pk = Pgkeep::new(
        dir.path(),
        &format!("[repository]\npath = \"{}\"\n", repo.display()),
    );
    archive_and_recover(major, pk, dir.path(), mode);
}

#[test]
fn postgres_15_local_repository() {
    local(15, Mode::Direct);
}

#[test]
fn postgres_13_local_repository() {
    local(13, Mode::Direct);
}

#[test]
fn postgres_16_local_repository() {
    local(16, Mode::Direct);
}

#[test]
fn postgres_17_local_repository() {
    local(17, Mode::Direct);
}

#[test]
fn postgres_18_local_repository() {
    local(18, Mode::Direct);
}

#[test]
fn postgres_15_local_repository_through_pgkeepd() {
    local(15, Mode::Service);
}

#[test]
fn postgres_18_local_repository_through_pgkeepd() {
    local(18, Mode::Service);
}

#[test]
fn postgres_15_garage_repository_encrypted() {
    garage_encrypted(Mode::Direct);
}

#[test]
fn postgres_15_garage_repository_encrypted_through_pgkeepd() {
    garage_encrypted(Mode::Service);
}

fn garage_encrypted(mode: Mode) {
    let dir = postgres_tempdir();
    let garage = Garage::start(dir.path());
    let toml = garage.repository_toml(&garage.endpoint, "e2e");
    let cipher = support::pgkeep::cipher_lines(dir.path());
    let mut pk = Pgkeep::new(dir.path(), &format!("{toml}{cipher}"));
    pk.env = garage.credentials();
    archive_and_recover(15, pk, dir.path(), mode);
}
