//! PostgreSQL 17 incrementals from WAL summaries, end to end against a real 17 server: the
//! source sends only the changed blocks (`UPLOAD_MANIFEST` of the parent's manifest, then
//! `BASE_BACKUP ... INCREMENTAL`), and a chain through relation truncation, regrowth, new and
//! dropped tables restores to exactly the rows committed; verify reads PostgreSQL's stored
//! manifests, expire keeps what a kept chain needs; without summaries it falls back to
//! scanning pages and says why.

#![allow(clippy::unwrap_used)]

mod support;

use support::cluster::{self, backup, backups, verify_json};
use support::pgkeep::Pgkeep;
use support::postgres::{Pg, major_bin};
use support::proc::postgres_tempdir;

/// Everything a restored server must agree on with the primary, row for row.
/// The count of `big` is read by an index-only scan too: it trusts the visibility map, so a
/// stale map in a restore shows as rows that were deleted.
fn state(pg: &Pg) -> String {
    pg.psql(
        "SET enable_seqscan = off; SET enable_bitmapscan = off; \
         SELECT (SELECT count(id) FROM big WHERE id > 0) || '|' || \
         (SELECT count(*) || ':' || sum(abalance) FROM pgbench_accounts) || '|' || \
         (SELECT count(*) || ':' || coalesce(md5(string_agg(id || v, ',' ORDER BY id)), '-') FROM big) || '|' || \
         (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'extra%' AND relkind = 'r')",
    )
}

fn pages(pg: &Pg, table: &str) -> u64 {
    pg.psql(&format!("SELECT pg_relation_size('{table}') / 8192"))
        .parse()
        .unwrap()
}

/// The MiB a backup says it read from the source.
fn read_mib(stdout: &str) -> f64 {
    let before = stdout.split(" MiB read from the source").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Takes an incremental; returns its id, how it found the changes (`pgkeep info`), and its
/// output (stderr last).
fn incremental(pk: &Pgkeep, source: &str) -> (String, String, String) {
    let r = pk.ok(&["backup", "--source", source, "--type", "incr"]);
    let stderr = format!("{}\n{}", r.stdout, r.stderr);
    let id = r.stdout.split_whitespace().nth(2).unwrap().to_string();
    let listed = backups(pk);
    let me = listed.iter().find(|b| b["id"] == id.as_str()).unwrap();
    assert_eq!(me["type"], "incr", "{}", r.stdout);
    // Why it scanned pages, as info says it, in the output too.
    let stderr = format!("{stderr}\nnote: {}", me["changes_note"]);
    (id, me["changes"].as_str().unwrap().to_string(), stderr)
}

/// Restores `id` to its own end (no WAL beyond it) and returns the restored server's state.
fn restored_state(pk: &Pgkeep, dir: &std::path::Path, name: &str, id: &str) -> String {
    let bin = major_bin(17);
    let target = dir.join(name);
    let restored = cluster::restore_and_start(
        pk,
        &bin,
        &target,
        &[
            "--backup",
            id,
            "--target",
            "immediate",
            "--target-action",
            "promote",
        ],
    );
    state(&restored)
}

#[test]
fn pg17_incrementals_from_wal_summaries_restore_exactly_and_fall_back_without_them() {
    let dir = postgres_tempdir();
    let bin = major_bin(17);
    let (pk, primary, source) = cluster::archiving_primary(
        &bin,
        dir.path(),
        "max_chain = 6\n[retention]\nfull = 1",
        &["summarize_wal = on"],
        &[],
    );
    primary.pgbench(&["-i", "-s", "5", "-q"]);
    primary.psql(
        "CREATE TABLE big (id int PRIMARY KEY, v text); \
         INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 40000) g; \
         CREATE TABLE extra_dropped AS SELECT generate_series(1, 1000) AS n",
    );
    primary.psql("VACUUM (ANALYZE) big");
    let r = pk.ok(&["backup", "--source", &source, "--type", "incr"]);
    assert!(
        r.stdout.starts_with("full backup"),
        "nothing to build on yet: {}",
        r.stdout
    );
    let full_read = read_mib(&r.stdout);
    let full_stored = backups(&pk)[0]["stored_size"].as_u64().unwrap();

    // A few changed pages, a new table and a dropped one: the server sends only those.
    primary.pgbench(&["-n", "-t", "200"]);
    primary.psql(
        "CREATE TABLE extra_new AS SELECT generate_series(1, 500) AS n; DROP TABLE extra_dropped",
    );
    // Deletes clear visibility-map bits (PostgreSQL 17.10 does not summarize that).
    primary.psql("DELETE FROM big WHERE id % 10 = 0");
    let (i1, how, out) = incremental(&pk, &source);
    assert_eq!(how, "wal-summaries");
    let at_i1 = state(&primary);
    // The deletes touched every page of big (10 MiB); the rest is a few pages.
    let i1_stored = backups(&pk)[1]["stored_size"].as_u64().unwrap();
    assert!(
        i1_stored * 3 < full_stored,
        "the incremental stored {i1_stored} bytes, the full {full_stored}"
    );
    assert!(
        read_mib(&out) * 2.0 < full_read,
        "the source sent {} MiB for the incremental, {full_read} MiB for the full",
        read_mib(&out)
    );

    // The table's tail deleted and truncated away by VACUUM: blocks beyond the truncation
    // length must not come back from the full.
    let before = pages(&primary, "big");
    primary.psql("DELETE FROM big WHERE id > 10000");
    primary.psql("VACUUM big");
    let after = pages(&primary, "big");
    assert!(
        after * 2 < before,
        "VACUUM truncated big: {before} -> {after} pages"
    );
    let (i2, how, _) = incremental(&pk, &source);
    assert_eq!(how, "wal-summaries");
    let at_i2 = state(&primary);

    // Regrown by COPY (which extends the file many pages at a time, leaving the last ones
    // empty and unlogged) over the blocks the truncation removed, with other rows.
    let spool = dir.path().join("copy");
    std::fs::create_dir(&spool).unwrap();
    support::postgres::chown_postgres(&spool);
    let rows = spool.join("rows.copy");
    primary.psql(&format!(
        "COPY (SELECT g, repeat(md5((g * 7)::text), 8) FROM generate_series(20001, 45000) g) TO '{}'",
        rows.display()
    ));
    primary.psql(&format!("COPY big FROM '{}'", rows.display()));
    primary.pgbench(&["-n", "-t", "200"]);
    let (i3, how, _) = incremental(&pk, &source);
    assert_eq!(how, "wal-summaries");
    let at_i3 = state(&primary);

    // Each backup of the chain restores to exactly what was committed at its end.
    assert_eq!(restored_state(&pk, dir.path(), "i1", &i1), at_i1);
    assert_eq!(restored_state(&pk, dir.path(), "i2", &i2), at_i2);
    assert_eq!(restored_state(&pk, dir.path(), "i3", &i3), at_i3);

    // Without summaries the incremental scans pages, and says why.
    primary.psql("ALTER SYSTEM SET summarize_wal = off");
    primary.psql("SELECT pg_reload_conf()");
    primary.pgbench(&["-n", "-t", "100"]);
    let (i4, how, stderr) = incremental(&pk, &source);
    assert_eq!(how, "page-scan");
    assert!(stderr.contains("summarize_wal is off"), "{stderr}");
    assert!(
        stderr.contains("note: \"summarize_wal is off"),
        "info says why: {stderr}"
    );
    let at_i4 = state(&primary);
    assert_eq!(restored_state(&pk, dir.path(), "i4", &i4), at_i4);

    // Summaries on again, but the server's summaries lost: none cover the WAL since i4
    // began, the server refuses, and the incremental scans pages, saying so.
    for f in std::fs::read_dir(primary.data.join("pg_wal/summaries")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    primary.psql("CHECKPOINT");
    primary.psql("ALTER SYSTEM SET summarize_wal = on");
    primary.psql("SELECT pg_reload_conf()");
    primary.pgbench(&["-n", "-t", "100"]);
    let (i4b, how, stderr) = incremental(&pk, &source);
    assert_eq!(how, "page-scan");
    assert!(stderr.contains("refused"), "{stderr}");
    let at_i4b = state(&primary);
    assert_eq!(restored_state(&pk, dir.path(), "i4b", &i4b), at_i4b);

    // Verify reads every part and every stored PostgreSQL manifest.
    let (code, v) = verify_json(&pk, &[]);
    assert_eq!(code, 0, "{v}");

    // A new chain: a full, and a summary incremental on it. Expire (retention full = 1)
    // removes the first chain; the kept one still restores.
    // Rows where the regrown file's empty tail will be.
    primary.psql(
        "INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(100001, 130000) g",
    );
    let full2 = backup(&pk, &source, "full");
    primary.pgbench(&["-n", "-t", "100"]);
    // Truncated and regrown by COPY between the same two backups: the pages COPY extended
    // the file by and left empty are in no WAL summary, and must not come back from the full.
    primary.psql("DELETE FROM big WHERE id > 12000");
    primary.psql("VACUUM big");
    primary.psql(&format!("COPY big FROM '{}'", rows.display()));
    let empty_tail: i64 = primary
        .psql("SELECT pg_relation_size('big') / 8192 - 1 - max((ctid::text::point)[0])::bigint FROM big")
        .parse()
        .unwrap();
    assert!(empty_tail > 0, "COPY left no empty pages at the end of big");
    let (i5, how, stderr) = incremental(&pk, &source);
    assert_eq!(how, "wal-summaries", "{stderr}");
    let at_i5 = state(&primary);
    pk.ok(&["expire"]);
    let left: Vec<String> = backups(&pk)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, vec![full2.clone(), i5.clone()]);
    let (code, v) = verify_json(&pk, &[]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(restored_state(&pk, dir.path(), "i5", &i5), at_i5);
}
