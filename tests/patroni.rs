//! pgkeep in a real Patroni cluster (three PostgreSQL 15 nodes, etcd, all on loopback), one
//! scenario after another on the same cluster, as an operator would live them:
//! - replicas of a new cluster: `pgkeep create-replica` declines (no backup yet), Patroni falls
//!   back to `basebackup`;
//! - backups read from a replica chosen through the REST API, skip a `nobackup` member, and use
//!   the leader only when `fallback_to_primary` allows it;
//! - the leader crashes while WAL is archived: the new timeline's history file and segments
//!   reach the archive without a gap, and the next backup uses the new topology unchanged;
//! - a wiped member is rebuilt by Patroni through `pgkeep create-replica` and streams again;
//! - the leader crashes during a backup: the backup commits consistently or not at all;
//! - a point-in-time clone bootstraps a new cluster (`pgkeep bootstrap`) with the rows of then.
//!
//! Measured times are printed (`--nocapture`) for the closing notes; nothing asserts on them.

#![allow(clippy::unwrap_used)]
#![allow(unsafe_code)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::cluster::backups;
use support::patroni::{self, ClusterSpec, Etcd, Node};
use support::pgkeep::Pgkeep;
use support::postgres::chown_postgres;
use support::proc::{postgres_tempdir, wait_for};

const LONG: Duration = Duration::from_secs(180);

fn pgkeep_config(dir: &Path, repo: &Path, apis: &[String]) -> String {
    let endpoints: Vec<String> = apis.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[repository]\npath = \"{}\"\n[backup]\nsource = \"patroni\"\nwal_timeout = \"60s\"\n\
         [patroni]\nendpoints = [{}]\nconninfo = \"user=postgres\"\n\
         # A test database is tiny: any WAL since the backup is a large share of it.\n\
         [create_replica]\nmax_wal_percent = 100000\n\
         # {}\n",
        repo.display(),
        endpoints.join(", "),
        dir.display()
    )
}

/// Where the newest backup was read from (the manifest's `source`).
fn newest_source(pk: &Pgkeep) -> String {
    backups(pk).last().unwrap()["source"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wal_files(repo: &Path, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(repo.join("main/wal")) else {
        return out;
    };
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) && name.ends_with(".history") {
            out.push(name);
        } else if d.path().is_dir() {
            for f in std::fs::read_dir(d.path()).unwrap().flatten() {
                let f = f.file_name().to_string_lossy().into_owned();
                if f.starts_with(prefix) && !f.contains('#') {
                    out.push(f);
                }
            }
        }
    }
    out.sort();
    out
}

fn wait_tagged(apis: &[String], name: &str, tagged: bool) {
    wait_for("patroni to publish the tag", LONG, || {
        let c = patroni::cluster(apis)?;
        let m = c.members.iter().find(|m| m.name == name)?;
        (m.tagged("nobackup") == tagged).then_some(())
    });
}

/// The index of the leader Patroni names, once it is not `old` and its PostgreSQL has left
/// recovery (Patroni publishes the leader key before the promotion completes).
fn promoted(nodes: &[Node], apis: &[String], old: &str) -> Option<usize> {
    let name = patroni::leader_name(apis).filter(|n| n != old)?;
    let i = nodes.iter().position(|n| n.name == name)?;
    (nodes[i].try_psql("SELECT pg_is_in_recovery()")? == "f").then_some(i)
}

fn marks(node: &Node, from: u32, to: u32) {
    node.psql(&format!(
        "INSERT INTO marks (id) SELECT generate_series({from}, {to})"
    ));
}

#[test]
fn patroni_cluster_backups_failovers_rebuilds_and_clones() {
    let dir = postgres_tempdir();
    let d = dir.path();
    let etcd = Etcd::start(d);
    let repo = d.join("repo");
    let pk = Pgkeep::new(d, "");
    let spec = ClusterSpec {
        scope: "pgkeep-test".into(),
        etcd_port: etcd.client_port,
        pgkeep: Pgkeep {
            config: pk.config.clone(),
            env: Vec::new(),
        },
        bootstrap_method: None,
    };
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| Node::new(d, n, &spec))
        .collect();
    let apis: Vec<String> = nodes.iter().map(Node::api).collect();
    std::fs::write(&pk.config, pgkeep_config(d, &repo, &apis)).unwrap();

    // n1 bootstraps the cluster; the repository is initialised for it.
    nodes[0].start();
    wait_for("n1 to lead", LONG, || {
        (patroni::leader_name(&apis)? == "n1").then_some(())
    });
    pk.ok(&["init", "--data-dir", nodes[0].data.to_str().unwrap()]);
    chown_postgres(&repo);
    // Data worth copying (about 160 MB), so the two ways of building a replica compare.
    nodes[0].pgbench(&["-i", "-s", "10", "-q"]);

    // Replicas of a new cluster: pgkeep declines (nothing to restore), basebackup copies.
    let began = Instant::now();
    nodes[1].start();
    nodes[2].start();
    patroni::wait_healthy(&apis, 2, LONG);
    let basebackup_secs = began.elapsed().as_secs_f64();
    for n in &nodes[1..] {
        let log = n.patroni_log();
        assert!(
            log.contains("not creating the replica from the repository")
                && log.contains("replica has been created using basebackup"),
            "{}: {log}",
            n.name
        );
    }
    eprintln!(
        "two replicas created by basebackup (after pgkeep declined) in {basebackup_secs:.1} s"
    );
    nodes[0].psql(
        "CREATE TABLE marks (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    marks(&nodes[0], 1, 100);

    // The backup reads from a replica, never the leader.
    pk.ok(&["backup"]);
    let first = newest_source(&pk);
    let chosen = if first.starts_with("n2 ") { 1 } else { 2 };
    assert!(
        first.starts_with("n2 ") || first.starts_with("n3 "),
        "{first}"
    );
    let other = 3 - chosen;

    // A restore drill of that replica's backup: restored, replayed to the end of the archive
    // past a canary left on the leader (found through Patroni), the committed marks all there.
    let work = d.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let id = backups(&pk).last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let work_s = work.display().to_string();
    let drill = support::drill::run(
        &pk,
        &[
            ("PGKEEP_RESTORE_TEST_SANDBOX", "local"),
            ("PGKEEP_RESTORE_TEST_WORK_DIR", &work_s),
        ],
        &["--backup", &id],
    );
    assert_eq!(drill.code, 0, "{}", drill.stderr);
    assert_eq!(
        drill.check("canary").0,
        "passed",
        "{:?}",
        drill.check("canary")
    );
    let report = drill.report.as_ref().unwrap();
    let marks_rows = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.marks")
        .unwrap()["rows"]
        .as_u64();
    assert_eq!(marks_rows, Some(100));
    assert!(support::drill::sandboxes(&work).is_empty());

    // A nobackup member is skipped; with every replica tagged, only the leader is left, and it
    // is used only when fallback_to_primary allows it.
    nodes[chosen].set_tag("nobackup", Some("true"));
    wait_tagged(&apis, &nodes[chosen].name, true);
    pk.ok(&["backup"]);
    assert!(
        newest_source(&pk).starts_with(&format!("{} ", nodes[other].name)),
        "{}",
        newest_source(&pk)
    );
    nodes[other].set_tag("nobackup", Some("true"));
    wait_tagged(&apis, &nodes[other].name, true);
    let r = pk.run(&["backup"]);
    assert_eq!(r.code, 12, "{}", r.stderr);
    let line = r.error_line();
    assert!(
        line.contains("tagged nobackup") && line.contains("fallback_to_primary"),
        "{line}"
    );
    let fallback = Pgkeep {
        config: pk.config.clone(),
        env: vec![("PGKEEP_PATRONI_FALLBACK_TO_PRIMARY".into(), "true".into())],
    };
    fallback.ok(&["backup"]);
    assert!(
        newest_source(&pk).starts_with("n1 "),
        "{}",
        newest_source(&pk)
    );
    for i in [chosen, other] {
        nodes[i].set_tag("nobackup", None);
        let name = nodes[i].name.clone();
        wait_tagged(&apis, &name, false);
    }

    // The leader crashes while WAL is being archived.
    for batch in 0..5 {
        marks(&nodes[0], 101 + batch * 20, 120 + batch * 20);
        nodes[0].psql("SELECT pg_switch_wal()");
    }
    let crashed = Instant::now();
    nodes[0].crash();
    let leader = wait_for("a new leader, promoted", LONG, || {
        promoted(&nodes, &apis, "n1")
    });
    let new_leader = nodes[leader].name.clone();
    let failover_secs = crashed.elapsed().as_secs_f64();
    marks(&nodes[leader], 201, 300);
    nodes[leader].psql("SELECT pg_switch_wal()");
    wait_for("a segment of timeline 2 in the archive", LONG, || {
        wal_files(&repo, "00000002")
            .iter()
            .any(|f| f.len() == 24)
            .then_some(())
    });
    let archived_secs = crashed.elapsed().as_secs_f64();
    assert!(
        wal_files(&repo, "00000002").contains(&"00000002.history".to_string()),
        "the history file is archived: {:?}",
        wal_files(&repo, "00000002")
    );
    eprintln!(
        "leader killed: {new_leader} leads after {failover_secs:.1} s, first timeline-2 segment archived after {archived_secs:.1} s"
    );
    let info: serde_json::Value = serde_json::from_str(&pk.ok(&["info", "--json"]).stdout).unwrap();
    assert_eq!(info["wal"]["gaps"], serde_json::json!([]), "{info}");

    // The next backup uses the new topology, with no configuration change.
    patroni::wait_healthy(&apis, 1, LONG);
    pk.ok(&["backup"]);
    let survivor = 3 - leader;
    assert!(
        newest_source(&pk).starts_with(&format!("{} ", nodes[survivor].name)),
        "{}",
        newest_source(&pk)
    );

    // A wiped member is rebuilt from the repository by Patroni, then streams from the leader.
    std::fs::remove_dir_all(&nodes[0].data).unwrap();
    let began = Instant::now();
    nodes[0].start();
    patroni::wait_healthy(&apis, 2, LONG);
    let rebuild_secs = began.elapsed().as_secs_f64();
    assert!(
        nodes[0]
            .patroni_log()
            .contains("replica has been created using pgkeep"),
        "{}",
        nodes[0].patroni_log()
    );
    marks(&nodes[leader], 301, 400);
    let expected = nodes[leader].psql("SELECT count(*) FROM marks");
    wait_for("n1 to stream the new rows", LONG, || {
        (nodes[0].try_psql("SELECT count(*) FROM marks")? == expected).then_some(())
    });
    eprintln!(
        "n1 rebuilt by pgkeep create-replica and streaming in {rebuild_secs:.1} s (basebackup: {basebackup_secs:.1} s for two)"
    );

    // A point in time between two batches, for the clone.
    let clone_time = nodes[leader].psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    );
    let at_clone_time = nodes[leader].psql("SELECT count(*) FROM marks");
    marks(&nodes[leader], 401, 500);
    nodes[leader].psql("SELECT pg_switch_wal()");

    // The leader crashes during a backup: it commits consistently, or not at all.
    let listed = backups(&pk).len();
    let mut backup = pk
        .command()
        .arg("backup")
        .env("PGKEEP_BACKUP_WAL_TIMEOUT", "20s")
        // 160 MB at 16 MB/s: the crash lands in the middle of the copy.
        .env("PGKEEP_BACKUP_MAX_RATE", "16384")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let before = std::fs::read_dir(repo.join("main/backups"))
        .unwrap()
        .count();
    wait_for("the backup to start writing", LONG, || {
        let now = std::fs::read_dir(repo.join("main/backups")).ok()?.count();
        (now > before || backup.try_wait().ok()?.is_some()).then_some(())
    });
    nodes[leader].crash();
    let out = backup.wait_with_output().unwrap();
    let committed = backups(&pk).len() - listed;
    eprintln!(
        "backup with the leader killed under it: {} ({})",
        out.status,
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| l.starts_with("pgkeep: error"))
            .unwrap_or("committed")
    );
    assert_eq!(committed, usize::from(out.status.success()));
    if out.status.success() {
        // Committed means consistent: it restores and holds every row written before it. (To
        // the end of the archive: from a standby the backup can end exactly where the next
        // segment starts, and `--target immediate` then needs a record the new leader has not
        // archived yet.)
        let id = backups(&pk).last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let restored = support::cluster::restore_and_start(
            &pk,
            &support::postgres::pg_bin(),
            &d.join("restored"),
            &["--backup", &id],
        );
        let rows: u32 = restored.psql("SELECT count(*) FROM marks").parse().unwrap();
        assert_eq!(rows, 500, "every row committed before the backup");
    }
    let old = nodes[leader].name.clone();
    let new_leader = wait_for("another leader, promoted", LONG, || {
        promoted(&nodes, &apis, &old)
    });
    let new_leader = &nodes[new_leader].name;
    patroni::wait_healthy(&apis, 1, LONG);
    pk.ok(&["backup"]);
    eprintln!(
        "next backup after the second failover (leader {new_leader}): {}",
        newest_source(&pk)
    );

    // A point-in-time clone: a new single-node cluster bootstrapped from the repository.
    let clone_dir = d.join("clone");
    std::fs::create_dir_all(&clone_dir).unwrap();
    chown_postgres(&clone_dir);
    let clone_pk = Pgkeep::new(
        &clone_dir,
        &format!(
            "[repository]\npath = \"{}\"\n",
            clone_dir.join("repo").display()
        ),
    );
    let spec = ClusterSpec {
        scope: "pgkeep-clone".into(),
        etcd_port: etcd.client_port,
        pgkeep: clone_pk,
        bootstrap_method: Some(format!(
            "  method: pgkeep_clone\n  pgkeep_clone:\n    command: '{} --config {} bootstrap --target-time \"{clone_time}\"'\n    keep_existing_recovery_conf: true\n",
            support::pgkeep::bin().display(),
            pk.config.display()
        )),
    };
    let mut clone = Node::new(&clone_dir, "c1", &spec);
    let began = Instant::now();
    clone.start();
    wait_for("the clone to lead its own cluster", LONG, || {
        (patroni::leader_name(&[clone.api()])? == "c1").then_some(())
    });
    let rows = wait_for("the clone to accept queries", LONG, || {
        clone.try_psql("SELECT count(*) FROM marks")
    });
    eprintln!(
        "clone at {clone_time} bootstrapped in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    assert_eq!(rows, at_clone_time, "{}", clone.patroni_log());
    assert_eq!(clone.psql("SELECT pg_is_in_recovery()"), "f");
    clone.stop();
    for n in &mut nodes {
        n.stop();
    }
}
