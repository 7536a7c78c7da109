//! One conformance suite for every store (after object_store's `integration.rs`): the same
//! assertions against the local directory store and a real S3-compatible server (Garage).

#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use pgkeep::command::pin::Pin;
use pgkeep::config::{Raw, RepositoryConfig};
use pgkeep::error::ErrorKind;
use pgkeep::pg::{PgVersion, SystemId, WalFileName, WalSegSize};
use pgkeep::repo::create::create;
use pgkeep::repo::{BackupId, CreateMode, Created, Repo, RepoInfo, WalKey};
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

/// The cipher dimension: the `[repository]` lines each run adds (the passphrase in a file).
fn ciphers(dir: &std::path::Path) -> [(&'static str, String); 2] {
    let pass = dir.join("pass");
    std::fs::write(&pass, "conformance passphrase\n").unwrap();
    [
        ("none", String::new()),
        (
            "aes-256-gcm",
            format!(
                "cipher = \"aes-256-gcm\"\ncipher_pass_file = \"{}\"\n",
                pass.display()
            ),
        ),
    ]
}

async fn decoded(repo: &Repo, key: &WalKey) -> Vec<u8> {
    let fetched = repo.fetch(key).await.unwrap().unwrap();
    let mut plain = Vec::new();
    fetched.decode(&mut plain).unwrap();
    plain
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
    assert_eq!(repo.info().cipher, cfg.cipher.cipher);
    let seg = repo.info().seg_size;
    let key = WalKey(WalFileName::parse("000000010000000000000003", seg).unwrap());

    // Missing objects read as None.
    assert!(repo.fetch(&key).await.unwrap().is_none());
    assert!(repo.header_of(&key).await.unwrap().is_none());

    // Create-if-absent: the first write wins, a second never replaces it (on every store).
    let first = repo
        .seal_bytes(key.clone(), Bytes::from_static(b"first"))
        .unwrap();
    let second = repo
        .seal_bytes(key.clone(), Bytes::from_static(b"second"))
        .unwrap();
    assert_eq!(repo.store_new(&first).await.unwrap(), Created::New);
    assert_eq!(repo.store_new(&second).await.unwrap(), Created::Existed);
    assert_eq!(decoded(&repo, &key).await, b"first");
    // The header's digest is what push dedup compares: the same for the same content.
    let header = repo.header_of(&key).await.unwrap().unwrap();
    assert_eq!(header.digest, first.header().digest);
    assert_eq!(header.digest, repo.content_tag(&first.sha256()));
    assert_ne!(header.digest, second.header().digest);

    // History files live beside the timeline folders.
    let hkey = WalKey(WalFileName::parse("00000002.history", seg).unwrap());
    let hist = repo
        .seal_bytes(
            hkey.clone(),
            Bytes::from_static(b"1\t0/3000000\tno recovery target\n"),
        )
        .unwrap();
    assert_eq!(repo.store_new(&hist).await.unwrap(), Created::New);
    assert!(repo.holds(&hkey).await.unwrap());

    // JSON objects round-trip through save/load, and a missing one is None.
    let id: BackupId = "20261121T220000Z-F".parse().unwrap();
    assert!(repo.load::<Pin>(&id).await.unwrap().is_none());
    let pin = Pin {
        backup: id.clone(),
        pinned_at: "2026-11-21T22:00:00Z".into(),
    };
    repo.save(&id, &pin).await.unwrap();
    let back = repo.load::<Pin>(&id).await.unwrap().unwrap();
    assert_eq!((back.backup, back.pinned_at), (pin.backup, pin.pinned_at));
    assert_eq!(repo.pinned().await.unwrap(), vec![id.clone()]);
    repo.discard::<Pin>(&id).await.unwrap();
    assert!(!repo.has::<Pin>(&id).await.unwrap());

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
    for (cipher, lines) in ciphers(dir.path()) {
        let toml = format!(
            "[repository]\npath = \"{}\"\n{lines}",
            dir.path().join(cipher).display()
        );
        conformance(&toml, CreateMode::Enforced).await;
    }

    // repo.json damaged or lost: its copy still opens the repository.
    let toml = format!(
        "[repository]\npath = \"{}\"\n",
        dir.path().join("none").display()
    );
    let cfg = repo_config(&toml);
    let main = dir.path().join("none/main/repo.json");
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
    for (cipher, lines) in ciphers(dir.path()) {
        let toml = garage.repository_toml(&garage.endpoint, &format!("conformance-{cipher}"));
        // Garage 2.x ignores If-None-Match on PUT: the probe must find that out.
        conformance(&format!("{toml}{lines}"), CreateMode::Emulated).await;
    }
}
