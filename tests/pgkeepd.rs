//! pgkeepd, the real daemon, against real PostgreSQL 15:
//! - two daemons on one repository never run a job at the same time, nor one occurrence twice
//!   (observed in their /status histories), and /metrics parses as Prometheus text;
//! - SIGTERM during a backup job: the job is cancelled after the grace period, nothing is
//!   listed; kill -9 during it: likewise; the next start runs the missed occurrence again,
//!   taking over the dead daemon's leases, and commits it;
//! - a failing job shows in /status and in the metrics; the bearer token guards both.

#![allow(clippy::unwrap_used)]
#![allow(unsafe_code)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::{self, backups};
use support::pgkeep::{FakeCluster, Pgkeep};
use support::postgres::pg_bin;
use support::proc::{ChildGuard, free_port, postgres_tempdir, wait_for};

const LONG: Duration = Duration::from_secs(180);

struct Daemon {
    port: u16,
    log: PathBuf,
    child: ChildGuard,
}

impl Daemon {
    /// Starts pgkeepd with `pk`'s configuration plus `scheduler` (the `[scheduler]` section
    /// without its `listen`), and waits for /healthz.
    fn start(pk: &Pgkeep, name: &str, scheduler: &str, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let dir = pk.config.parent().unwrap();
        let config = dir.join(format!("{name}.toml"));
        let base = std::fs::read_to_string(&pk.config).unwrap();
        std::fs::write(
            &config,
            format!("{base}\n[scheduler]\nlisten = \"127.0.0.1:{port}\"\n{scheduler}\n"),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new(support::pgkeep::bin().with_file_name("pgkeepd"));
        cmd.arg("--config")
            .arg(&config)
            .env_remove("PGKEEP_CONFIG")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        for (k, v) in &pk.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = ChildGuard::spawn("pgkeepd", cmd, libc::SIGKILL);
        let d = Daemon { port, log, child };
        wait_for("pgkeepd to answer", LONG, || {
            (d.get("/healthz", None).0 == 200).then_some(())
        });
        d
    }

    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut req = reqwest::Client::new().get(&url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/status", None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` and waits for the exit; returns how long that took.
    fn stop(&mut self, sig: i32) -> (Duration, std::process::ExitStatus) {
        let began = Instant::now();
        self.child.signal(sig);
        let status = self.child.child.wait().unwrap();
        (began.elapsed(), status)
    }
}

/// Every file below `dir`.
fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A sample's value, whatever type the parser gave it.
fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

fn runs(status: &serde_json::Value, job: &str) -> Vec<serde_json::Value> {
    status["jobs"][job]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn two_daemons_never_overlap_a_job_and_metrics_parse() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    primary.pgbench(&["-i", "-s", "2", "-q"]);
    let jobs = "[[scheduler.jobs]]\nname = \"incr\"\nkind = \"backup-incr\"\nschedule = \"*/3 * * * * *\"\n";
    let env = [("PGKEEP_BACKUP_SOURCE", source.as_str())];
    let a = Daemon::start(&pk, "a", jobs, &env);
    let b = Daemon::start(&pk, "b", jobs, &env);
    let (sa, sb) = wait_for("five runs between the two daemons", LONG, || {
        let (sa, sb) = (a.status(), b.status());
        (runs(&sa, "incr").len() + runs(&sb, "incr").len() >= 5).then_some((sa, sb))
    });
    let mut all: Vec<serde_json::Value> = runs(&sa, "incr");
    all.extend(runs(&sb, "incr"));
    let time =
        |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    all.sort_by_key(|r| time(&r["started"]));
    for r in &all {
        assert_eq!(r["outcome"], "ok", "{r}\n{}\n{}", a.log(), b.log());
    }
    for pair in all.windows(2) {
        let (first, next) = (&pair[0], &pair[1]);
        let (end, start) = (time(&first["finished"]), time(&next["started"]));
        assert!(end <= start, "runs overlap: {first} and {next}");
        assert_ne!(
            first["occurrence"], next["occurrence"],
            "one occurrence ran twice"
        );
    }
    let skipped = sa["jobs"]["incr"]["skipped_total"].as_u64().unwrap()
        + sb["jobs"]["incr"]["skipped_total"].as_u64().unwrap();
    assert!(
        skipped >= 1,
        "both daemons fire every occurrence: one must have left it"
    );
    assert!(backups(&pk).len() >= 5);

    // /metrics, read by a Prometheus text-format parser.
    let (code, text) = a.get("/metrics", None);
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = |name: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(value)
    };
    let newest = sample(
        "pgkeep_last_successful_backup_timestamp_seconds",
        ("type", "incr"),
    )
    .expect("last successful incremental");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(now - newest < 120.0, "{newest} vs {now}");
    assert!(
        sample("pgkeep_job_runs_total", ("job", "incr")).is_some(),
        "{text}"
    );
    assert_eq!(
        sample("pgkeep_job_failures_total", ("job", "incr")),
        Some(0.0)
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "pgkeep_repository_bytes"),
        "{text}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "pgkeep_archive_newest_segment_age_seconds"),
        "{text}"
    );
}

#[test]
fn a_cut_off_backup_job_is_never_listed_and_runs_again_at_the_next_start() {
    let dir = postgres_tempdir();
    let (pk, primary, source) = cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    let repo = dir.path().join("repo");
    primary.pgbench(&["-i", "-s", "5", "-q"]);
    // Yearly: the daemon has never run it, so the last occurrence (January 1st) runs at start.
    let jobs = "grace = \"1s\"\n[[scheduler.jobs]]\nname = \"full\"\nkind = \"backup-full\"\nschedule = \"0 0 1 1 *\"\n";
    // 80 MB at 2 MB/s: the job is still copying when it is cut off.
    let slow = [
        ("PGKEEP_BACKUP_SOURCE", source.as_str()),
        ("PGKEEP_BACKUP_MAX_RATE", "2048"),
    ];
    let copying = |d: &Daemon| {
        wait_for("the backup job to copy", LONG, || {
            let running = !d.status()["jobs"]["full"]["running_since"].is_null();
            (running && files(&repo.join("main/backups")) > 3).then_some(())
        })
    };

    // SIGTERM: the job is cancelled once the grace period is over.
    let mut d = Daemon::start(&pk, "first", jobs, &slow);
    copying(&d);
    let (took, status) = d.stop(libc::SIGTERM);
    assert!(status.success(), "{}", d.log());
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    assert!(d.log().contains("grace period over"), "{}", d.log());
    assert_eq!(backups(&pk).len(), 0, "nothing half-committed is listed");

    // kill -9: the same.
    let mut d = Daemon::start(&pk, "second", jobs, &slow);
    copying(&d);
    d.stop(libc::SIGKILL);
    assert_eq!(backups(&pk).len(), 0);

    // The next start runs the occurrence again, over the dead daemon's leases, and commits.
    let d = Daemon::start(&pk, "third", jobs, &slow[..1]);
    let last = wait_for("the job to succeed", LONG, || {
        let s = d.status();
        let last = s["jobs"]["full"]["last_run"].clone();
        (!last.is_null()).then_some(last)
    });
    assert_eq!(last["outcome"], "ok", "{last}\n{}", d.log());
    assert!(
        d.log().contains("stale"),
        "the dead daemon's lease was taken over: {}",
        d.log()
    );
    let listed = backups(&pk);
    assert_eq!(listed.len(), 1);
    let folders = std::fs::read_dir(repo.join("main/backups"))
        .unwrap()
        .count();
    assert_eq!(folders, 1, "the cut-off runs left nothing behind");
    let status = d.status();
    assert_eq!(
        status["repository"]["newest_backup"]["full"]["id"],
        listed[0]["id"]
    );
    assert!(status["repository"]["newest_wal"].is_string());
}

#[test]
fn a_failing_job_shows_in_status_and_metrics_behind_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let pk = Pgkeep::new(
        dir.path(),
        &format!("[repository]\npath = \"{}\"\n", repo.display()),
    );
    let cluster = FakeCluster::new(dir.path(), 7_000_000_000_000_000_001, 15);
    pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    let jobs = "token = \"s3cret\"\n[[scheduler.jobs]]\nname = \"broken\"\nkind = \"backup-full\"\nschedule = \"0 0 1 1 *\"\n";
    let d = Daemon::start(
        &pk,
        "broken",
        jobs,
        &[("PGKEEP_BACKUP_SOURCE", "host=127.0.0.1 port=1 user=nobody")],
    );
    assert_eq!(d.get("/status", None).0, 401);
    assert_eq!(d.get("/metrics", Some("wrong")).0, 401);
    let last = wait_for("the job to fail", LONG, || {
        let (code, body) = d.get("/status", Some("s3cret"));
        assert_eq!(code, 200);
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        let last = s["jobs"]["broken"]["last_run"].clone();
        (!last.is_null()).then_some(s)
    });
    let run = &last["jobs"]["broken"]["last_run"];
    assert_eq!(run["outcome"], "failed");
    assert!(
        run["error"].as_str().unwrap().contains("127.0.0.1"),
        "{run}"
    );
    assert_eq!(last["jobs"]["broken"]["failures_total"], 1);
    assert!(last["jobs"]["broken"]["next_run"].is_string(), "{last}");
    let (code, text) = d.get("/metrics", Some("s3cret"));
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let failures = scrape
        .samples
        .iter()
        .find(|s| s.metric == "pgkeep_job_failures_total" && s.labels.get("job") == Some("broken"))
        .expect("failures counter");
    assert_eq!(value(failures), 1.0, "{text}");
}

/// A scheduled `restore-test` job (with its own table over `[restore_test]`): its report is on
/// the job's /status, the metrics count it, and the backup is no longer untested.
#[test]
fn a_scheduled_restore_test_reports_on_status_and_metrics() {
    let tmp = postgres_tempdir();
    let dir = tmp.path();
    let (pk, pg, source) = cluster::archiving_primary(&pg_bin(), dir, "", &[], &[]);
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 100) AS id");
    cluster::backup(&pk, &source, "full");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let scheduler = format!(
        "[[scheduler.jobs]]\nname = \"drill\"\nkind = \"restore-test\"\nschedule = \"*/2 * * * * *\"\n\
         [scheduler.jobs.restore_test]\nsandbox = \"local\"\ntarget = \"immediate\"\nwork_dir = \"{}\"\n",
        work.display()
    );
    let d = Daemon::start(&pk, "drills", &scheduler, &[]);
    let report = wait_for("a drill's report on /status", LONG, || {
        let s = d.status();
        let r = s["jobs"]["drill"]["last_report"].clone();
        (!r.is_null()).then_some(r)
    });
    assert_eq!(report["verdict"], "passed", "{report:#}\n{}", d.log());
    assert_eq!(report["target"], "immediate");
    // The repository's figures are refreshed after each run.
    wait_for("the untested count to drop", LONG, || {
        (d.status()["repository"]["backups_untested"] == 0).then_some(())
    });
    let (_, text) = d.get("/metrics", None);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let one = |name: &str, label: Option<(&str, &str)>| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(value)
    };
    assert!(
        one(
            "pgkeep_restore_test_runs_total",
            Some(("outcome", "passed"))
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        one(
            "pgkeep_restore_test_runs_total",
            Some(("outcome", "failed"))
        ),
        Some(0.0)
    );
    assert_eq!(one("pgkeep_backups_untested", None), Some(0.0));
    assert!(one("pgkeep_restore_test_rto_seconds", None).unwrap() > 0.0);
    assert!(
        one(
            "pgkeep_restore_test_phase_seconds",
            Some(("phase", "recover"))
        )
        .is_some()
    );
    assert!(one("pgkeep_restore_test_last_success_timestamp_seconds", None).is_some());
}
