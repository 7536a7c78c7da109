//! The pg_control layouts and WAL page magics pgkeep knows, checked against what real servers
//! of every supported major write: the file initdb and a clean shutdown leave is parsed by
//! pgkeep and compared field by field with what the same server reports through
//! `pg_control_system()`, `pg_control_init()` and `pg_control_checkpoint()`; the first two
//! bytes of a real WAL segment are the major's `XLOG_PAGE_MAGIC`. PostgreSQL 18 turns data
//! checksums on by default (initdb without `-k`), older majors only with `-k`.

#![allow(clippy::unwrap_used)]

mod support;

use pgkeep::pg::{ControlFile, Lsn};
use support::postgres::{Pg, major_bin};
use support::proc::postgres_tempdir;

fn lsn(text: &str) -> Lsn {
    text.parse::<Lsn>().unwrap()
}

fn check(major: u32, initdb_args: &[&str], checksums: bool) {
    let dir = postgres_tempdir();
    let mut pg = Pg::initdb_with(&major_bin(major), dir.path(), "data", initdb_args);
    pg.start();
    let system = pg.psql(
        "SELECT system_identifier, pg_control_version, catalog_version_no FROM pg_control_system()",
    );
    let init = pg.psql(
        "SELECT wal_block_size, database_block_size, bytes_per_wal_segment, data_page_checksum_version FROM pg_control_init()",
    );
    let version_num: u32 = pg.psql("SHOW server_version_num").parse().unwrap();
    pg.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) AS id");
    let segment = pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    pg.stop();

    let control = ControlFile::parse(&std::fs::read(pg.data.join("global/pg_control")).unwrap())
        .unwrap_or_else(|e| panic!("PostgreSQL {major}'s pg_control: {e}"));
    assert_eq!(control.version.major(), major);
    assert_eq!(version_num / 10000, major);
    let s: Vec<&str> = system.split('|').collect();
    assert_eq!(control.system_id.0.to_string(), s[0], "system_identifier");
    assert_eq!(
        control.pg_control_version.to_string(),
        s[1],
        "pg_control_version"
    );
    assert_eq!(
        control.catalog_version.to_string(),
        s[2],
        "catalog_version_no"
    );
    let i: Vec<&str> = init.split('|').collect();
    assert_eq!(control.block_size.to_string(), i[1], "block_size");
    assert_eq!(
        control.seg_size.bytes().to_string(),
        i[2],
        "bytes_per_wal_segment"
    );
    assert_eq!(
        i[3] != "0",
        checksums,
        "the server's checksum version: {}",
        i[3]
    );
    assert_eq!(control.data_checksums, checksums, "data_checksums");

    // A clean start after a clean stop writes no checkpoint: the server then reports exactly
    // the checkpoint pgkeep read from the file.
    pg.start();
    let ckpt = pg.psql("SELECT checkpoint_lsn, redo_lsn, timeline_id FROM pg_control_checkpoint()");
    let c: Vec<&str> = ckpt.split('|').collect();
    assert_eq!(control.checkpoint, lsn(c[0]), "checkpoint_lsn");
    assert_eq!(control.redo, lsn(c[1]), "redo_lsn");
    assert_eq!(control.timeline.0.to_string(), c[2], "timeline_id");
    pg.stop();

    let wal = std::fs::read(pg.data.join("pg_wal").join(&segment)).unwrap();
    assert_eq!(
        u16::from_le_bytes([wal[0], wal[1]]),
        control.version.wal_page_magic(),
        "XLOG_PAGE_MAGIC of PostgreSQL {major}"
    );
}

#[test]
fn postgres_13() {
    check(13, &[], false);
}

#[test]
fn postgres_15_with_checksums() {
    check(15, &["-k"], true);
}

#[test]
fn postgres_16() {
    check(16, &[], false);
}

#[test]
fn postgres_17_with_checksums() {
    check(17, &["-k"], true);
}

#[test]
fn postgres_18_checksums_on_by_default() {
    check(18, &[], true);
}

#[test]
fn postgres_18_without_checksums() {
    check(18, &["--no-data-checksums"], false);
}
