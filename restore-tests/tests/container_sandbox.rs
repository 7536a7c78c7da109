//! The container sandbox against a real engine: Podman's Docker-compatible service on a private
//! socket, the image scripts/sandbox-image.sh builds (localhost/pgkeep-pg:15) and a PostgreSQL
//! 15 data directory made by initdb on this host. Needs root (initdb runs as `postgres` through
//! runuser; Podman runs rootful): scripts/install-deps.sh --containers installs the rest.
#![allow(dead_code)]
// The shared test harness kills its children with libc calls.
#![allow(unsafe_code)]

#[path = "../../tests/support/proc.rs"]
mod proc;

#[path = "../../tests/support/podman.rs"]
mod podman;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;

use pgkeep::config::{DrillTarget, RestoreTestConfig, SandboxKind, Selection};
use pgkeep::error::ErrorKind;
use pgkeep_restore_tests::sandbox::container::{self, Container, SOCKET_DIR_INSIDE};
use pgkeep_restore_tests::sandbox::{LABEL, Sandbox};

const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";

fn config(docker_host: String, work_dir: &std::path::Path) -> RestoreTestConfig {
    RestoreTestConfig {
        sandbox: SandboxKind::Container,
        select: Selection::Latest,
        window: Duration::from_secs(86400),
        target: DrillTarget::Immediate,
        timeout: Duration::from_secs(300),
        max_rto: None,
        keep_failed: Duration::ZERO,
        work_dir: work_dir.to_path_buf(),
        bin_dir: "/usr/lib/postgresql/{major}/bin".into(),
        os_user: "postgres".into(),
        superuser: "postgres".into(),
        image: "localhost/pgkeep-pg:{major}".into(),
        docker_host: Some(docker_host),
        network: "none".into(),
        memory_mib: 512,
        cpus: 1.0,
        heapallindexed: false,
        canary: false,
        settings: BTreeMap::new(),
        probes: Vec::new(),
    }
}

fn run_id(tag: &str) -> String {
    format!(
        "test-{tag}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_millis()
    )
}

/// A tiny PostgreSQL 15 cluster in the sandbox's staging `data` directory, made by initdb as
/// the postgres OS user (as the drill's restore would leave it there).
fn initdb_into(sandbox: &Container) {
    let data = sandbox.staging().join("data");
    let (uid, gid) = proc::postgres_user();
    for dir in [sandbox.staging(), data.as_path()] {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown staging");
    }
    proc::run_ok(
        "initdb",
        Command::new("runuser")
            .args(["-u", "postgres", "--", INITDB, "-D"])
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .env("LC_ALL", "C.UTF-8"),
    );
}

/// Removes the containers of these runs on drop, so a failing test leaves none behind.
struct Leftovers(Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for id in &self.0 {
            let listed = Command::new("podman")
                .args(["--runtime", "/usr/sbin/runc", "ps", "-aq", "--filter"])
                .arg(format!("label={LABEL}={id}"))
                .env("CONTAINERS_CONF", podman::containers_conf())
                .output();
            let Ok(listed) = listed else { continue };
            for cid in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                let _ = Command::new("podman")
                    .args(["--runtime", "/usr/sbin/runc", "rm", "-f", "-v", cid])
                    .env("CONTAINERS_CONF", podman::containers_conf())
                    .output();
            }
        }
    }
}

fn forced_settings() -> Vec<(String, String)> {
    vec![
        ("listen_addresses".into(), String::new()),
        ("unix_socket_directories".into(), SOCKET_DIR_INSIDE.into()),
        // A value with a quote and a space, through pg_ctl's shell.
        ("cluster_name".into(), "it's a drill".into()),
    ]
}

/// Containers carrying the restore-test label: (name, run id).
async fn labelled(cfg: &RestoreTestConfig) -> Vec<(String, String)> {
    container::list(cfg)
        .await
        .expect("list")
        .into_iter()
        .map(|c| {
            let run = c.labels.get(LABEL).cloned().unwrap_or_default();
            (c.name, run)
        })
        .collect()
}

/// Polls `select 1` until the server answers (a fresh initdb'd cluster starts in a moment).
async fn wait_ready(sandbox: &Container) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match sandbox.query("postgres", "select 1").await {
            Ok(rows) => {
                assert_eq!(rows, vec![vec![Some("1".to_string())]]);
                return;
            }
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    ErrorKind::Unreachable,
                    "not a connection failure: {}",
                    e.one_line()
                );
                assert!(
                    Instant::now() < deadline,
                    "the server did not answer within 60 s: {}; log: {}",
                    e.one_line(),
                    sandbox.log_tail(30).await
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_queries_and_removes() {
    let service = podman::Podman::start();
    let work = proc::postgres_tempdir();
    let cfg = config(service.docker_host(), work.path());
    let id = run_id("query");
    let _leftovers = Leftovers(vec![id.clone()]);

    // A missing image is a configuration error naming the script that builds it.
    let err = Container::create(&cfg, &id, 11)
        .await
        .err()
        .expect("no image for PostgreSQL 11");
    assert_eq!(err.kind(), ErrorKind::Config, "{}", err.one_line());
    assert!(
        err.hint_text()
            .unwrap_or("")
            .contains("scripts/sandbox-image.sh 11"),
        "{:?}",
        err.hint_text()
    );

    let mut sandbox = Container::create(&cfg, &id, 15).await.expect("create");
    assert_eq!(sandbox.kind(), "container");
    assert_eq!(sandbox.runs(), "localhost/pgkeep-pg:15");
    assert!(sandbox.staging().join("wal").is_dir());
    initdb_into(&sandbox);
    std::fs::write(
        sandbox
            .staging()
            .join("wal/000000010000000000000001.partial"),
        b"x",
    )
    .expect("a staged WAL file");

    sandbox.start(&forced_settings()).await.expect("start");
    wait_ready(&sandbox).await;
    assert!(sandbox.alive().await);

    let rows = sandbox
        .query(
            "postgres",
            "select i, case when i % 2 = 0 then null else 'v' || i end, '' \
             from generate_series(1, 3) i order by i",
        )
        .await
        .expect("rows");
    assert_eq!(
        rows,
        vec![
            vec![Some("1".into()), Some("v1".into()), Some(String::new())],
            vec![Some("2".into()), None, Some(String::new())],
            vec![Some("3".into()), Some("v3".into()), Some(String::new())],
        ]
    );
    assert!(
        sandbox
            .query("postgres", "select 1 where false")
            .await
            .expect("no rows")
            .is_empty()
    );
    let settings = sandbox
        .query(
            "postgres",
            "select current_setting('cluster_name'), current_setting('listen_addresses'), \
             pg_is_in_recovery()",
        )
        .await
        .expect("settings");
    assert_eq!(
        settings,
        vec![vec![
            Some("it's a drill".into()),
            Some(String::new()),
            Some("f".into())
        ]]
    );
    let staged = sandbox
        .query(
            "postgres",
            "select pg_read_binary_file('/var/lib/pgkeep-sandbox/wal/000000010000000000000001.partial')",
        )
        .await
        .expect("the staged WAL is inside");
    assert_eq!(staged, vec![vec![Some("\\x78".into())]]);

    let err = sandbox
        .query("postgres", "select * from no_such_table")
        .await
        .expect_err("bad SQL");
    assert_eq!(err.kind(), ErrorKind::Postgres, "{}", err.one_line());
    assert!(
        err.message().contains("no_such_table"),
        "{}",
        err.one_line()
    );
    assert!(sandbox.log_tail(50).await.contains("no_such_table"));

    let staging = sandbox.staging().to_path_buf();
    sandbox.remove(None).await.expect("remove");
    assert!(!sandbox.alive().await);
    assert!(!staging.exists(), "staging dir left: {}", staging.display());
    let left: Vec<_> = labelled(&cfg)
        .await
        .into_iter()
        .filter(|(_, run)| *run == id)
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_until_then_swept() {
    let service = podman::Podman::start();
    let work = proc::postgres_tempdir();
    let cfg = config(service.docker_host(), work.path());

    let mut started = Vec::new();
    let mut leftovers = Leftovers(Vec::new());
    for tag in ["past", "future"] {
        let id = run_id(tag);
        leftovers.0.push(id.clone());
        let mut sandbox = Container::create(&cfg, &id, 15).await.expect("create");
        initdb_into(&sandbox);
        sandbox.start(&forced_settings()).await.expect("start");
        wait_ready(&sandbox).await;
        started.push((id, sandbox));
    }
    let past = Utc::now() - chrono::Duration::seconds(5);
    let future = Utc::now() + chrono::Duration::hours(1);
    let (past_id, mut past_box) = started.remove(0);
    let (future_id, mut future_box) = started.remove(0);
    past_box.remove(Some(past)).await.expect("keep (past)");
    future_box
        .remove(Some(future))
        .await
        .expect("keep (future)");
    assert!(!past_box.staging().exists() && !future_box.staging().exists());
    assert_eq!(
        future_box.name(),
        format!("pgkeep-rt-{future_id}-keep-{}", future.timestamp())
    );

    let removed = container::sweep(&cfg, false).await.expect("sweep");
    assert!(
        removed.contains(&past_box.name().to_string()),
        "{removed:?} lacks {}",
        past_box.name()
    );
    assert!(!removed.contains(&future_box.name().to_string()));
    let runs: Vec<String> = labelled(&cfg)
        .await
        .into_iter()
        .map(|(_, run)| run)
        .collect();
    assert!(!runs.contains(&past_id), "{runs:?}");
    assert!(runs.contains(&future_id), "{runs:?}");

    // A kept sandbox can still be removed outright.
    future_box.remove(None).await.expect("remove the kept one");
    let runs: Vec<String> = labelled(&cfg)
        .await
        .into_iter()
        .map(|(_, run)| run)
        .collect();
    assert!(!runs.contains(&future_id), "{runs:?}");
}
