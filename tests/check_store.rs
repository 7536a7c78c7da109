//! `pgkeep check` on an S3 repository (Garage): the good setup passes with create-if-absent
//! named as emulated (Garage ignores If-None-Match); a wrong bucket, wrong credentials, and a
//! repository whose repo.json says the store enforces create-if-absent when it does not (one
//! moved from MinIO to Garage) each fail their own line and nothing else.
//!
//! One test in this binary: it sets the AWS variables in its own process to rewrite repo.json
//! through the library, which no other thread reads.

#![allow(clippy::unwrap_used)]
#![allow(unsafe_code)]

mod support;

use std::collections::BTreeSet;

use pgkeep::repo::{CreateMode, Repo, RepoInfo};
use support::garage::Garage;
use support::pgkeep::{FakeCluster, Pgkeep, check_report};
use support::proc::postgres_tempdir;

fn failed(pk: &Pgkeep) -> (i32, BTreeSet<String>, serde_json::Value) {
    let r = pk.run(&["check", "--json"]);
    check_report(r.code, &r.stdout, &r.stderr)
}

fn only(name: &str) -> BTreeSet<String> {
    [name.to_string()].into_iter().collect()
}

#[test]
fn store_failures_are_named_one_at_a_time() {
    let dir = postgres_tempdir();
    let garage = Garage::start(dir.path());
    let fake = FakeCluster::new(dir.path(), 7_400_000_000_000_000_002, 15);
    let toml = garage.repository_toml(&garage.endpoint, "check");
    let mut pk = Pgkeep::new(dir.path(), &toml);
    pk.env = garage.credentials();
    pk.ok(&["init", "--data-dir", fake.data.to_str().unwrap()]);

    let (code, names, report) = failed(&pk);
    assert_eq!((code, &names), (0, &BTreeSet::new()), "{report}");
    let create = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "create-if-absent")
        .unwrap();
    assert!(
        create["detail"].as_str().unwrap().contains("emulated"),
        "{create}"
    );

    // A bucket that does not exist.
    let mut wrong = Pgkeep::new(
        &dir.path().join("garage"),
        &toml.replace("bucket = \"pgkeep\"", "bucket = \"no-such-bucket\""),
    );
    wrong.env = garage.credentials();
    let (code, names, report) = failed(&wrong);
    assert_eq!((code, names), (3, only("repository")), "{report}");

    // Credentials the store refuses.
    let mut creds = Pgkeep::new(&dir.path().join("garage"), &toml);
    creds.env = vec![
        ("AWS_ACCESS_KEY_ID".into(), garage.key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY".into(), "0".repeat(64)),
    ];
    let (code, names, report) = failed(&creds);
    assert_eq!((code, names), (3, only("repository")), "{report}");

    // repo.json claims the store enforces create-if-absent (as when a repository initialised
    // on MinIO is copied to Garage): the probe sees the overwrite and says so.
    for (k, v) in garage.credentials() {
        // SAFETY: the only test of this binary; nothing else reads the environment now.
        unsafe { std::env::set_var(k, v) };
    }
    let vars: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let cfg = pgkeep::config::Raw::load(Some(pk.config.as_path()), &vars)
        .and_then(pgkeep::config::Raw::resolve)
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut repo = Repo::open(&cfg.repository).await.unwrap();
        assert_eq!(repo.info().create_mode, CreateMode::Emulated);
        let info = RepoInfo {
            create_mode: CreateMode::Enforced,
            ..repo.info().clone()
        };
        repo.rewrite_info(info).await.unwrap();
    });
    let (code, names, report) = failed(&pk);
    assert_eq!((code, names), (3, only("create-if-absent")), "{report}");
}
