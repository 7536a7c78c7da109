//! `pgkeep check` against real servers: a good setup passes — with a backup role that is not
//! a superuser (REPLICATION and three grants), which also takes a real backup — and each broken
//! setting, one at a time, fails exactly its own lines: a missing grant, archive_command
//! unset, WAL that never reaches the archive, Patroni down, pgkeepd refusing the node's token;
//! and `pgkeepd check` finds the drills' sandbox image, or names it missing (or the engine gone).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use support::cluster;
use support::pgkeep::{FakeCluster, Pgkeep, check_report};
use support::postgres::pg_bin;
use support::proc::{free_port, postgres_tempdir, run_ok};
use support::receiver::{Daemon, token};

/// Runs `pgkeep check --json` with `args`: exit code, the names that failed, and the report.
fn check(pk: &Pgkeep, args: &[&str]) -> (i32, BTreeSet<String>, serde_json::Value) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let r = pk.run(&all);
    check_report(r.code, &r.stdout, &r.stderr)
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn outcome<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))
}

#[test]
fn a_good_setup_passes_and_each_broken_setting_fails_alone() {
    let dir = postgres_tempdir();
    let (mut pk, primary, _) = cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    // The least-privilege backup role: REPLICATION, pg_switch_wal(), pg_read_all_settings.
    primary.psql("CREATE ROLE pgkeep_backup LOGIN REPLICATION");
    primary.psql("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO pgkeep_backup");
    primary.psql("GRANT pg_read_all_settings TO pgkeep_backup");
    let source = format!(
        "host={} port={} user=pgkeep_backup",
        primary.sock.display(),
        primary.port
    );
    pk.env.push(("PGKEEP_BACKUP_SOURCE".into(), source));

    let (code, failed, report) = check(&pk, &[]);
    assert_eq!((code, &failed), (0, &BTreeSet::new()), "{report}");
    for name in [
        "repository",
        "writable",
        "create-if-absent",
        "clock",
        "replication",
        "identity",
        "primary",
        "privileges",
        "archive_mode",
        "archive_command",
        "wal archived",
    ] {
        assert_eq!(outcome(&report, name)["outcome"], "ok", "{name}: {report}");
    }
    assert!(
        outcome(&report, "privileges")["detail"]
            .as_str()
            .unwrap()
            .contains("not a superuser")
    );
    // The same role takes a real backup.
    let r = pk.ok(&["backup", "--type", "full"]);
    assert!(r.stdout.contains("committed"), "{}", r.stdout);
    // The text form: one line per check, FAIL lines with a hint.
    let text = pk.run(&["check"]).stdout;
    assert!(
        text.lines().any(|l| l.starts_with("ok    wal archived")),
        "{text}"
    );

    // A missing grant: the privilege line names the statement, and no WAL can be switched.
    primary.psql("REVOKE EXECUTE ON FUNCTION pg_switch_wal() FROM pgkeep_backup");
    let (code, failed, report) = check(&pk, &[]);
    assert_eq!(code, 3);
    assert_eq!(failed, names(&["privileges", "wal archived"]), "{report}");
    assert!(
        outcome(&report, "privileges")["detail"]
            .as_str()
            .unwrap()
            .contains("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO pgkeep_backup")
    );
    primary.psql("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO pgkeep_backup");

    // archive_command unset: that line, and the segment that never arrives.
    primary.psql("ALTER SYSTEM SET archive_command = ''");
    primary.psql("SELECT pg_reload_conf()");
    let (code, failed, report) = check(&pk, &["--wal-timeout", "3s"]);
    assert_eq!(code, 3);
    assert_eq!(
        failed,
        names(&["archive_command", "wal archived"]),
        "{report}"
    );
    primary.psql("ALTER SYSTEM RESET archive_command");
    primary.psql("SELECT pg_reload_conf()");

    // The archiver (the postgres user) cannot write the repository: everything this check
    // sees as root is fine, but the switched segment never arrives, and the line says what
    // pg_stat_archiver saw.
    let repo = dir.path().join("repo");
    run_ok(
        "chown",
        std::process::Command::new("chown")
            .args(["-R", "root:root"])
            .arg(&repo),
    );
    let (code, failed, report) = check(&pk, &["--wal-timeout", "5s"]);
    assert_eq!(code, 3);
    assert_eq!(failed, names(&["wal archived"]), "{report}");
    let detail = outcome(&report, "wal archived")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("pg_stat_archiver") && detail.contains("failed"),
        "{detail}"
    );
    support::postgres::chown_postgres(&repo);
    let (code, failed, _) = check(&pk, &["--wal-timeout", "60s"]);
    assert_eq!((code, failed), (0, BTreeSet::new()));
}

#[test]
fn patroni_down_and_a_refused_token_fail_their_own_lines() {
    let dir = postgres_tempdir();
    let fake = FakeCluster::new(dir.path(), 7_400_000_000_000_000_001, 15);
    let repo = dir.path().join("repo");
    let repository = format!("[repository]\npath = \"{}\"\n", repo.display());
    let owner = Pgkeep::new(dir.path(), &repository);
    owner.ok(&["init", "--data-dir", fake.data.to_str().unwrap()]);
    let good = token(dir.path(), "main", "check-token-aaaaaaaaaaaaaaaa");
    let d = Daemon::start(
        dir.path(),
        &repository,
        &format!(
            "[[service.clusters]]\nname = \"main\"\ntoken_file = \"{}\"\n",
            good.display()
        ),
    );
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let node = |tok: &std::path::Path, patroni: &str| {
        Pgkeep::new(
            &node_dir,
            &format!(
                "[server]\nurl = \"{}\"\ntoken_file = \"{}\"\n{patroni}",
                d.url(),
                tok.display()
            ),
        )
    };

    // A database node with only [server]: pgkeepd accepts its token.
    let (code, failed, report) = check(&node(&good, ""), &[]);
    assert_eq!((code, &failed), (0, &BTreeSet::new()), "{report}");
    assert_eq!(outcome(&report, "pgkeepd")["outcome"], "ok");
    assert_eq!(outcome(&report, "repository")["outcome"], "skip");

    // A wrong token: only the pgkeepd line fails.
    let bad = token(dir.path(), "bad", "check-token-bbbbbbbbbbbbbbbb");
    let (code, failed, report) = check(&node(&bad, ""), &[]);
    assert_eq!(code, 3);
    assert_eq!(failed, names(&["pgkeepd"]), "{report}");

    // Patroni's REST API down: only the patroni line fails.
    let patroni = format!(
        "[patroni]\nendpoints = [\"http://127.0.0.1:{}\"]\ntimeout = \"2s\"\n",
        free_port()
    );
    let (code, failed, report) = check(&node(&good, &patroni), &[]);
    assert_eq!(code, 3);
    assert_eq!(failed, names(&["patroni"]), "{report}");
}

/// The real pgkeepd binary's `check --json` on `pk`'s configuration, with `env` added.
fn pgkeepd_check(pk: &Pgkeep, env: &[(&str, &str)]) -> (i32, BTreeSet<String>, serde_json::Value) {
    let out = std::process::Command::new(support::pgkeep::bin().with_file_name("pgkeepd"))
        .args(["--config", pk.config.to_str().unwrap(), "check", "--json"])
        .env_remove("PGKEEP_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    check_report(
        out.status.code().unwrap_or(-1),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn pgkeepd_check_finds_the_sandbox_image_or_names_it_missing() {
    let podman = support::podman::Podman::start();
    let dir = postgres_tempdir();
    let fake = FakeCluster::new(dir.path(), 7_400_000_000_000_000_004, 15);
    let pk = Pgkeep::new(
        dir.path(),
        &format!(
            "[repository]\npath = \"{}\"\n[restore_test]\nsandbox = \"container\"\ndocker_host = \"{}\"\n",
            dir.path().join("repo").display(),
            podman.docker_host()
        ),
    );
    pk.ok(&["init", "--data-dir", fake.data.to_str().unwrap()]);

    let (code, failed, report) = pgkeepd_check(&pk, &[]);
    assert_eq!((code, &failed), (0, &BTreeSet::new()), "{report}");
    let line = outcome(&report, "sandbox");
    assert_eq!(line["outcome"], "ok", "{report}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap()
            .contains("localhost/pgkeep-pg:15"),
        "{line}"
    );

    // The image the drills would run is not on the engine.
    let (code, failed, report) = pgkeepd_check(
        &pk,
        &[(
            "PGKEEP_RESTORE_TEST_IMAGE",
            "localhost/pgkeep-no-such-image:{major}",
        )],
    );
    assert_eq!(code, 3);
    assert_eq!(failed, names(&["sandbox"]), "{report}");
    assert!(
        outcome(&report, "sandbox")["detail"]
            .as_str()
            .unwrap()
            .contains("pgkeep-no-such-image:15")
    );

    // No engine at the configured address.
    let gone = format!("unix://{}/no-engine.sock", dir.path().display());
    let (code, failed, report) =
        pgkeepd_check(&pk, &[("PGKEEP_RESTORE_TEST_DOCKER_HOST", gone.as_str())]);
    assert_eq!(code, 3);
    assert_eq!(failed, names(&["sandbox"]), "{report}");
}
