//! One conformance suite for every store (after object_store's `integration.rs`): the same
//! assertions against the local directory store and a real S3-compatible server (Garage).

#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use pgkeep::config::{Raw, RepositoryConfig};
use pgkeep::error::ErrorKind;
use pgkeep::pg::{PgVersion, SystemId, WalFileName, WalSegSize};
use pgkeep::pipeline::{self, Compression, EncodeOptions};
use pgkeep::repo::create::create;
use pgkeep::repo::{CreateMode, Created, Repo, RepoInfo, RepoKey};
use support::garage::Garage;

fn repo_config(toml: &str) -> RepositoryConfig {
    Raw::parse(toml, std::path::Path::new("t"), &Default::default())
        .and_then(Raw::resolve)
        .expect("config")
        .repository
}

fn identity(sysid: u64) -> RepoInfo {
    RepoInfo::new(
        SystemId(sysid),
        PgVersion::new(15).unwrap(),
        WalSegSize::DEFAULT,
        CreateMode::Enforced,
    )
}

fn object(content: &[u8]) -> Bytes {
    let opts = EncodeOptions {
        compression: Compression::Zstd(3),
        threads: 0,
    };
    Bytes::from(
        pipeline::encode(content, opts, content.len())
            .unwrap()
            .bytes,
    )
}

/// The suite: `toml` configures the store under test; `expect_mode` is what the probe finds.
async fn conformance(toml: &str, expect_mode: CreateMode) {
    let cfg = repo_config(toml);

    // A store with nothing in it is "not initialised".
    let err = Repo::open(&cfg).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RepoMissing, "{err}");

    // Creating probes create-if-absent and writes repo.json.
    let made = create(&cfg, identity(7)).await.unwrap();
    assert!(!made.existed);
    assert_eq!(made.repo.info().create_mode, expect_mode);
    let again = create(&cfg, identity(7)).await.unwrap();
    assert!(again.existed);
    let other = create(&cfg, identity(8)).await.unwrap_err();
    assert_eq!(other.kind(), ErrorKind::RepoMismatch);

    let repo = Repo::open(&cfg).await.unwrap();
    assert_eq!(repo.info().system_id, SystemId(7));
    let seg = repo.info().seg_size;
    let name = WalFileName::parse("000000010000000000000003", seg).unwrap();
    let key = RepoKey::wal(&name, seg);

    // Missing objects read as None.
    assert!(repo.get(&key).await.unwrap().is_none());
    assert!(repo.get_header(&key).await.unwrap().is_none());

    // Create-if-absent: the first write wins, a second never replaces it (on every store).
    assert_eq!(
        repo.put_if_absent(&key, object(b"first")).await.unwrap(),
        Created::New
    );
    assert_eq!(
        repo.put_if_absent(&key, object(b"second")).await.unwrap(),
        Created::Existed
    );
    let stored = repo.get(&key).await.unwrap().unwrap();
    let mut plain = Vec::new();
    pipeline::decode(&stored, &mut plain).unwrap();
    assert_eq!(plain, b"first");
    let header = repo.get_header(&key).await.unwrap().unwrap();
    assert_eq!(header.sha256, pipeline::Digest::of(b"first"));

    // History files live beside the timeline folders.
    let hist = WalFileName::parse("00000002.history", seg).unwrap();
    let hkey = RepoKey::wal(&hist, seg);
    assert_eq!(
        repo.put_if_absent(&hkey, object(b"1\t0/3000000\tno recovery target\n"))
            .await
            .unwrap(),
        Created::New
    );
    assert!(repo.get(&hkey).await.unwrap().is_some());

    // Another cluster name in the same store is a separate, uninitialised repository.
    let mut other_cfg = cfg.clone();
    other_cfg.cluster = "other".into();
    assert_eq!(
        Repo::open(&other_cfg).await.unwrap_err().kind(),
        ErrorKind::RepoMissing
    );
}

#[tokio::test]
async fn local_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[repository]\npath = \"{}\"\n",
        dir.path().join("repo").display()
    );
    conformance(&toml, CreateMode::Enforced).await;

    // repo.json damaged or lost: its copy still opens the repository.
    let cfg = repo_config(&toml);
    let main = dir.path().join("repo/main/repo.json");
    std::fs::write(&main, b"garbage").unwrap();
    assert_eq!(
        Repo::open(&cfg).await.unwrap().info().system_id,
        SystemId(7)
    );
    std::fs::remove_file(&main).unwrap();
    assert_eq!(
        Repo::open(&cfg).await.unwrap().info().system_id,
        SystemId(7)
    );
}

#[tokio::test]
#[allow(unsafe_code)]
async fn garage_s3_store() {
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::start(dir.path());
    for (k, v) in garage.credentials() {
        // Safety: set before any thread of this test reads the environment.
        unsafe { std::env::set_var(k, v) };
    }
    let toml = garage.repository_toml(&garage.endpoint, "conformance");
    // Garage 2.x ignores If-None-Match on PUT: the probe must find that out.
    conformance(&toml, CreateMode::Emulated).await;
}
