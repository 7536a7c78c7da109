//! The replication-protocol client against real servers: IDENTIFY_SYSTEM, BASE_BACKUP (the
//! PostgreSQL 15+ form and the 13/14 form), the tar stream unpacked and compared with the data
//! directory, and password authentication with SCRAM-SHA-256 and md5.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Read;

use pgkeep::pg::ControlFile;
use pgkeep::pg::replication::base_backup::{BackupEvent, BaseBackup, BaseBackupOptions};
use pgkeep::pg::replication::{ConnParams, Host, ReplConn};
use support::postgres::{Pg, major_bin, pg_bin};
use support::proc::postgres_tempdir;

fn unix_params(pg: &Pg) -> ConnParams {
    ConnParams {
        host: Host::Unix(pg.sock.clone()),
        port: pg.port,
        user: "postgres".into(),
        password: None,
        tls: Default::default(),
    }
}

/// Runs BASE_BACKUP and returns (events without data, files of base.tar, manifest text).
async fn base_backup(conn: &mut ReplConn) -> (Vec<BackupEvent>, BTreeMap<String, Vec<u8>>, String) {
    let opts = BaseBackupOptions {
        label: "pgkeep test".into(),
        fast_checkpoint: true,
        manifest: true,
        incremental: false,
        verify_checksums: true,
        max_rate_kb: None,
    };
    let mut bb = BaseBackup::start(conn, &opts).await.unwrap();
    let (mut events, mut tar, mut manifest) = (Vec::new(), Vec::new(), Vec::new());
    let mut in_manifest = false;
    let mut in_base = false;
    while let Some(ev) = bb.next().await.unwrap() {
        match &ev {
            BackupEvent::Data(d) if in_manifest => manifest.extend_from_slice(d),
            BackupEvent::Data(d) if in_base => tar.extend_from_slice(d),
            BackupEvent::Data(_) | BackupEvent::Progress(_) => {}
            BackupEvent::Archive { name, .. } => {
                in_base = name == "base.tar";
                events.push(ev.clone());
            }
            BackupEvent::Manifest => {
                in_manifest = true;
                events.push(ev.clone());
            }
            _ => events.push(ev.clone()),
        }
    }
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().unwrap() {
        let mut e = entry.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        files.insert(path, body);
    }
    (events, files, String::from_utf8(manifest).unwrap())
}

async fn backup_matches_the_cluster(major: u32) {
    let dir = postgres_tempdir();
    let mut pg = Pg::initdb(&major_bin(major), dir.path(), "data");
    pg.start();
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id");
    let mut conn = ReplConn::connect(&unix_params(&pg)).await.unwrap();
    assert_eq!(conn.server_major, major);
    let ident = conn.identify_system().await.unwrap();
    let control =
        ControlFile::parse(&std::fs::read(pg.data.join("global/pg_control")).unwrap()).unwrap();
    assert_eq!(ident.system_id, control.system_id);
    assert_eq!(ident.timeline.0, 1);

    let (events, files, manifest) = base_backup(&mut conn).await;
    let (start, end) = match (events.first(), events.last()) {
        (Some(BackupEvent::Start { lsn: s, .. }), Some(BackupEvent::End { lsn: e, .. })) => {
            (*s, *e)
        }
        other => panic!("expected start ... end, got {other:?} in {events:?}"),
    };
    assert!(
        start <= end && start >= ident.xlog_pos,
        "{start} {end} {}",
        ident.xlog_pos
    );
    assert!(
        events.iter().any(
            |e| matches!(e, BackupEvent::Archive { name, location: None } if name == "base.tar")
        )
    );
    assert!(events.contains(&BackupEvent::Manifest));

    // The stream is the data directory: same files, same bytes for ones that do not change.
    assert_eq!(
        files["PG_VERSION"],
        std::fs::read(pg.data.join("PG_VERSION")).unwrap()
    );
    let backup_control = ControlFile::parse(&files["global/pg_control"]).unwrap();
    assert_eq!(backup_control.system_id, control.system_id);
    assert!(files["backup_label"].starts_with(b"START WAL LOCATION: "));
    let relpath = pg.psql("SELECT pg_relation_filepath('t')");
    let on_disk = std::fs::metadata(pg.data.join(&relpath)).unwrap().len() as usize;
    assert_eq!(files[&relpath].len(), on_disk);
    assert!(
        on_disk >= 8192 * 5 && on_disk % 8192 == 0,
        "1000 rows fill at least 5 pages: {on_disk}"
    );
    assert!(manifest.contains("\"Files\""), "{manifest}");
    assert!(manifest.contains(&format!("\"Path\": \"{relpath}\"")));
    conn.close().await;
}

#[tokio::test]
async fn base_backup_postgres_15() {
    backup_matches_the_cluster(15).await;
}

#[tokio::test]
async fn base_backup_postgres_13() {
    backup_matches_the_cluster(13).await;
}

#[tokio::test]
async fn base_backup_postgres_17() {
    backup_matches_the_cluster(17).await;
}

#[tokio::test]
async fn password_authentication_scram_and_md5() {
    let dir = postgres_tempdir();
    let mut pg = Pg::initdb(&pg_bin(), dir.path(), "data");
    pg.prepend_hba(&[
        "host replication scram_user 127.0.0.1/32 scram-sha-256",
        "host replication md5_user 127.0.0.1/32 md5",
    ]);
    pg.start();
    pg.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_user LOGIN REPLICATION PASSWORD 's3cret'");
    pg.psql("SET password_encryption = 'md5'; CREATE ROLE md5_user LOGIN REPLICATION PASSWORD 'md5pass'");
    for (user, pass) in [("scram_user", "s3cret"), ("md5_user", "md5pass")] {
        let info = format!(
            "host=127.0.0.1 port={} user={user} password={pass}",
            pg.port
        );
        let mut conn = ReplConn::connect(&ConnParams::parse(&info, None).unwrap())
            .await
            .unwrap();
        assert_eq!(conn.identify_system().await.unwrap().timeline.0, 1);
        conn.close().await;
        let wrong = format!("host=127.0.0.1 port={} user={user} password=nope", pg.port);
        let err = ReplConn::connect(&ConnParams::parse(&wrong, None).unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("authentication failed"), "{err}");
        // PGPASSWORD stands in for a password the connection string lacks.
        let bare = format!("host=127.0.0.1 port={} user={user}", pg.port);
        assert!(
            ReplConn::connect(&ConnParams::parse(&bare, Some(pass)).unwrap())
                .await
                .is_ok()
        );
        assert!(
            ReplConn::connect(&ConnParams::parse(&bare, None).unwrap())
                .await
                .is_err()
        );
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with openssl in `dir`.
fn make_certs(dir: &std::path::Path, ca: &str) {
    let openssl = |args: &[&str]| {
        support::proc::run_ok(
            "openssl",
            std::process::Command::new("openssl")
                .current_dir(dir)
                .args(args),
        )
    };
    let ca_key = format!("{ca}.key");
    let ca_crt = format!("{ca}.crt");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "2",
        "-subj",
        "/CN=pgkeep-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    if ca != "ca" {
        return; // a CA that signed nothing: for the refusal
    }
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
}

#[tokio::test]
async fn tls_as_libpq_sslmode_says() {
    let dir = postgres_tempdir();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    make_certs(&certs, "ca");
    make_certs(&certs, "other-ca");
    let mut pg = Pg::initdb(&pg_bin(), dir.path(), "data");
    for f in ["server.crt", "server.key"] {
        std::fs::copy(certs.join(f), pg.data.join(f)).unwrap();
    }
    support::postgres::chown_postgres(&pg.data);
    std::fs::set_permissions(
        pg.data.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    pg.configure(&["ssl = on".into()]);
    // Only TLS connections may replicate over TCP: a connection that works spoke TLS.
    pg.prepend_hba(&[
        "hostnossl replication all 127.0.0.1/32 reject",
        "hostssl replication all 127.0.0.1/32 trust",
    ]);
    pg.start();
    let connect = |extra: &str| {
        let info = format!("host=127.0.0.1 port={} user=postgres {extra}", pg.port);
        async move { ReplConn::connect(&ConnParams::parse(&info, None).unwrap()).await }
    };
    let ca = certs.join("ca.crt");
    let other = certs.join("other-ca.crt");
    for ok in [
        String::new(), // prefer, libpq's default
        "sslmode=require".into(),
        format!("sslmode=verify-ca sslrootcert={}", ca.display()),
        format!("sslmode=verify-full sslrootcert={}", ca.display()),
    ] {
        let mut conn = connect(&ok).await.unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert_eq!(conn.identify_system().await.unwrap().timeline.0, 1, "{ok}");
        conn.close().await;
    }
    let refused = connect("sslmode=disable").await.unwrap_err();
    assert!(refused.to_string().contains("rejects"), "{refused}");
    let untrusted = connect(&format!(
        "sslmode=verify-full sslrootcert={}",
        other.display()
    ))
    .await
    .unwrap_err();
    assert!(untrusted.to_string().contains("tls"), "{untrusted}");
}
