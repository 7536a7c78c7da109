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
    }
}

/// Runs BASE_BACKUP and returns (events without data, files of base.tar, manifest text).
async fn base_backup(conn: &mut ReplConn) -> (Vec<BackupEvent>, BTreeMap<String, Vec<u8>>, String) {
    let opts = BaseBackupOptions {
        label: "pgkeep test".into(),
        fast_checkpoint: true,
        manifest: true,
        verify_checksums: true,
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
