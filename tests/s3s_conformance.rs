//! The conformance suite's create-if-absent path on an S3 server that enforces
//! `If-None-Match: *` (s3s-fs, the filesystem-backed server of the Rust s3s project).
//! Garage, the suite's main S3 server, does not enforce it; see repo_conformance.rs.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use pgkeep::config::Raw;
use pgkeep::pg::{PgVersion, SystemId, WalFileName, WalSegSize};
use pgkeep::repo::create::create;
use pgkeep::repo::{CreateMode, Created, RepoInfo, WalKey};
use support::proc::{ChildGuard, free_port, wait_for};

#[tokio::test]
#[allow(unsafe_code)]
async fn s3s_fs_enforces_create_if_absent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s3");
    std::fs::create_dir_all(root.join("pgkeep")).unwrap(); // a bucket is a folder
    let port = free_port();
    let bin = std::env::var("PGKEEP_TEST_S3S_FS")
        .unwrap_or_else(|_| "/opt/pgkeep-tools/bin/s3s-fs".into());
    let mut cmd = Command::new(bin);
    cmd.args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--access-key",
        "AKTEST",
        "--secret-key",
        "SECRETTEST",
    ])
    .arg(&root)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _server = ChildGuard::spawn("s3s-fs", cmd, libc::SIGKILL);
    wait_for("s3s-fs to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    // Safety: set before any other thread of this test reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "SECRETTEST");
    }
    let toml = format!(
        "[repository]\nkind = \"s3\"\nbucket = \"pgkeep\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:{port}\"\nallow_http = true\n"
    );
    let cfg = Raw::parse(&toml, std::path::Path::new("t"), &Default::default())
        .and_then(Raw::resolve)
        .unwrap()
        .repository;
    let info = RepoInfo::new(
        SystemId(9),
        PgVersion::new(15).unwrap(),
        WalSegSize::DEFAULT,
        CreateMode::Emulated,
    );
    let made = create(&cfg, info).await.unwrap();
    assert_eq!(
        made.repo.info().create_mode,
        CreateMode::Enforced,
        "the probe must see the 412"
    );

    let repo = made.repo;
    let seg = WalSegSize::DEFAULT;
    let key = WalKey(WalFileName::parse("000000010000000000000001", seg).unwrap());
    let enc = |b: &'static [u8]| {
        repo.seal_bytes(key.clone(), bytes::Bytes::from_static(b))
            .unwrap()
    };
    assert_eq!(repo.store_new(&enc(b"first")).await.unwrap(), Created::New);
    assert_eq!(
        repo.store_new(&enc(b"second")).await.unwrap(),
        Created::Existed
    );
    let mut plain = Vec::new();
    repo.fetch(&key)
        .await
        .unwrap()
        .unwrap()
        .decode(&mut plain)
        .unwrap();
    assert_eq!(plain, b"first");
}
