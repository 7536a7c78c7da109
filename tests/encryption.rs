//! Encryption at rest, end to end on a real PostgreSQL: an encrypted repository archives,
//! backs up (full and incremental), verifies, expires and restores exactly what was committed;
//! no plaintext and no passphrase ever reaches an object or an output line; a wrong or missing
//! passphrase is one clear error (exit 15) that writes nothing; and damaged, truncated,
//! spliced or renamed objects are refused, naming the object. Also: a repository written in
//! object format 1 (before encryption existed) stays readable.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use support::cluster::{archiving_primary_with, backup, restore_and_start, verify_json};
use support::pgkeep::{Pgkeep, snapshot};
use support::postgres::{chown_postgres, pg_bin};
use support::proc::postgres_tempdir;

const PASS: &str = "correct horse battery staple 42";
/// In table rows, hence in WAL records and data pages.
const MARKER: &str = "PGKEEP-PLAINTEXT-MARKER-7f3a";

/// Every file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir)
        .into_iter()
        .map(|(rel, _)| dir.join(rel))
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// pgkeep on an encrypted local repository, uncompressed (so that a clear object would show
/// the marker as it is: the grep below could fail), its passphrase in a file postgres reads.
fn encrypted(dir: &Path) -> Pgkeep {
    let pass = dir.join("pass");
    std::fs::write(&pass, format!("{PASS}\n")).unwrap();
    chown_postgres(&pass);
    Pgkeep::new(
        dir,
        &format!(
            "[repository]\npath = \"{}\"\ncipher = \"aes-256-gcm\"\ncipher_pass_file = \"{}\"\n[archive]\ncompress_level = 0\n[backup]\nwal_timeout = \"60s\"\n",
            dir.join("repo").display(),
            pass.display()
        ),
    )
}

/// The same configuration with other `[repository]` cipher lines.
fn with_cipher_lines(dir: &Path, name: &str, lines: &str) -> Pgkeep {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    Pgkeep::new(
        &sub,
        &format!(
            "[repository]\npath = \"{}\"\n{lines}\n",
            dir.join("repo").display()
        ),
    )
}

#[test]
fn an_encrypted_repository_round_trips_leaks_nothing_and_refuses_tampering() {
    let dir = postgres_tempdir();
    let pk = encrypted(dir.path());
    let (pk, mut primary, source) =
        archiving_primary_with(pk, &pg_bin(), dir.path(), &["wal_compression = off"], &[]);
    let mut outputs = String::new();
    let mut keep = |r: support::pgkeep::Run| {
        outputs.push_str(&r.stdout);
        outputs.push_str(&r.stderr);
    };

    // Rows before the full, between full and incremental, and after it (in WAL only).
    primary.psql(&format!(
        "CREATE TABLE t (id int, note text); INSERT INTO t SELECT g, '{MARKER}' FROM generate_series(1, 2000) g"
    ));
    let full = backup(&pk, &source, "full");
    primary.psql(&format!(
        "INSERT INTO t SELECT g, '{MARKER}' FROM generate_series(2001, 3000) g"
    ));
    let incr = backup(&pk, &source, "incr");
    primary.psql(&format!(
        "INSERT INTO t SELECT g, '{MARKER}-late' FROM generate_series(3001, 3500) g"
    ));
    let committed = primary.psql("SELECT count(*), sum(id) FROM t");
    let last = primary.switch_and_wait_archived();
    keep(pk.ok(&["info", "--json"]));

    // verify reads every object back through the cipher; expire runs on it.
    let (code, report) = verify_json(&pk, &[]);
    assert_eq!(code, 0, "{report}");
    keep(pk.ok(&["expire"]));

    // No plaintext in any object: the marker is in the cluster's own WAL and data files...
    let repo = dir.path().join("repo");
    let wal_has_marker = files(&primary.data.join("pg_wal"))
        .iter()
        .any(|f| contains(&std::fs::read(f).unwrap(), MARKER));
    assert!(wal_has_marker, "the marker must be in the cluster's WAL");
    // ...and in none of the repository's objects (repo.json holds no data).
    let objects = files(&repo);
    assert!(objects.len() > 20, "{} objects", objects.len());
    for f in &objects {
        let bytes = std::fs::read(f).unwrap();
        assert!(!contains(&bytes, MARKER), "plaintext in {}", f.display());
        assert!(!contains(&bytes, PASS), "passphrase in {}", f.display());
    }

    // A restore gives back exactly what was committed.
    let target = dir.path().join("restored");
    let mut restored = restore_and_start(&pk, &pg_bin(), &target, &[]);
    assert_eq!(restored.psql("SELECT count(*), sum(id) FROM t"), committed);
    restored.stop();
    primary.stop();

    // A wrong passphrase, none, or the wrong cipher: exit 15, one line, nothing written.
    let before = snapshot(&repo);
    let pass_file = dir.path().join("pass");
    let cases = [
        (
            "wrong",
            format!(
                "cipher = \"aes-256-gcm\"\ncipher_pass_file = \"{}\"",
                write(dir.path(), "wrong-pass", "not the passphrase")
            ),
        ),
        ("none-given", "cipher = \"aes-256-gcm\"".to_string()),
        ("cipher-none", String::new()),
    ];
    let wal_file = primary.data.join("pg_wal").join(&last);
    for (name, lines) in cases {
        let other = with_cipher_lines(dir.path(), name, &lines);
        for args in [
            vec!["info"],
            vec!["verify"],
            vec!["archive-push", wal_file.to_str().unwrap()],
            vec!["archive-get", &last, dir.path().join("x").to_str().unwrap()],
        ] {
            let r = other.run(&args);
            // archive-get run by hand is "archive recovery": the code that stops it (200 + 15).
            let want = if args[0] == "archive-get" { 215 } else { 15 };
            assert_eq!(r.code, want, "{name} {args:?}: {}", r.stderr);
            let line = r.error_line();
            assert!(line.contains("error[key]"), "{line}");
            keep(r);
        }
    }
    // The environment variable wins over the file (a wrong one is refused too).
    let mut env_pass = with_cipher_lines(
        dir.path(),
        "env",
        &format!(
            "cipher = \"aes-256-gcm\"\ncipher_pass_file = \"{}\"",
            pass_file.display()
        ),
    );
    env_pass.env = vec![("PGKEEP_REPOSITORY_CIPHER_PASS".into(), "nope".into())];
    assert_eq!(env_pass.run(&["info"]).code, 15);
    env_pass.env = vec![("PGKEEP_REPOSITORY_CIPHER_PASS".into(), PASS.into())];
    keep(env_pass.ok(&["info"]));
    assert_eq!(
        snapshot(&repo),
        before,
        "a refused run must leave the repository as it was"
    );

    // Tampering, each refused naming the object, through archive-get (WAL) and verify (parts).
    let seg_dir = find_wal_dir(&repo);
    let mut segs: Vec<PathBuf> = files(&seg_dir);
    segs.sort();
    let (a, b) = (segs[0].clone(), segs[1].clone());
    let name_a = a.file_name().unwrap().to_str().unwrap().to_string();
    let original = std::fs::read(&a).unwrap();
    let get = |pk: &Pgkeep| {
        pk.run(&[
            "archive-get",
            &name_a,
            dir.path().join("got").to_str().unwrap(),
        ])
    };
    let tamper: Vec<(&str, Vec<u8>)> = vec![
        ("flipped", {
            let mut x = original.clone();
            let mid = x.len() / 2;
            x[mid] ^= 1;
            x
        }),
        ("truncated", original[..original.len() - 100].to_vec()),
        ("renamed", std::fs::read(&b).unwrap()),
        ("header edited", {
            let mut x = original.clone();
            x[10] ^= 1; // the plaintext size
            x
        }),
    ];
    for (what, bytes) in tamper {
        std::fs::write(&a, &bytes).unwrap();
        let r = get(&pk);
        assert_eq!(r.code, 210, "{what}: {}", r.stderr);
        let line = r.error_line();
        assert!(line.contains(&name_a), "{what}: {line}");
        assert!(
            !dir.path().join("got").exists(),
            "{what}: nothing is written"
        );
        keep(r);
    }
    std::fs::write(&a, &original).unwrap();
    keep(pk.ok(&[
        "archive-get",
        &name_a,
        dir.path().join("got").to_str().unwrap(),
    ]));

    // Backup parts: two segments of one object swapped, and a segment spliced from another
    // object, in the largest part (several 256 KiB segments).
    let parts_dir = repo.join("main/backups").join(&full);
    let mut parts: Vec<(u64, PathBuf)> = files(&parts_dir)
        .into_iter()
        .filter(|p| !p.ends_with("manifest.json"))
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    parts.sort();
    let (big, donor) = (
        parts[parts.len() - 1].1.clone(),
        parts[parts.len() - 2].1.clone(),
    );
    let seg = 256 * 1024 + 16;
    let body = 48 + 32;
    let kept = std::fs::read(&big).unwrap();
    let donor_bytes = std::fs::read(&donor).unwrap();
    assert!(kept.len() > body + 2 * seg && donor_bytes.len() > body + seg);
    let mut swapped = kept.clone();
    swapped[body..body + seg].copy_from_slice(&kept[body + seg..body + 2 * seg]);
    swapped[body + seg..body + 2 * seg].copy_from_slice(&kept[body..body + seg]);
    let mut spliced = kept.clone();
    spliced[body..body + seg].copy_from_slice(&donor_bytes[body..body + seg]);
    let rel = big.strip_prefix(&parts_dir).unwrap().display().to_string();
    for (what, bytes) in [("swapped", swapped), ("spliced", spliced)] {
        std::fs::write(&big, &bytes).unwrap();
        let (code, report) = verify_json(&pk, &["--backup", &full]);
        assert_ne!(code, 0, "{what}: {report}");
        let text = report.to_string();
        let file = rel.rsplit('/').next().unwrap();
        assert!(
            text.contains(file) && text.contains("authentication failed"),
            "{what}: {text}"
        );
    }
    std::fs::write(&big, &kept).unwrap();
    assert_eq!(verify_json(&pk, &[]).0, 0);
    let _ = incr;

    // The passphrase never appeared in any output, nor in PostgreSQL's logs.
    assert!(!outputs.contains(PASS), "passphrase in pgkeep's output");
    assert!(
        !primary.log().contains(PASS),
        "passphrase in the server log"
    );
    assert!(
        !restored.log().contains(PASS),
        "passphrase in the restored server's log"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The first timeline+log folder of the archive (holding segments).
fn find_wal_dir(repo: &Path) -> PathBuf {
    std::fs::read_dir(repo.join("main/wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .min()
        .unwrap()
}

/// Rewrites a clear repository into object format 1, as pgkeep wrote it before encryption
/// existed: every object's header says format 1 (the layout of a clear object is otherwise
/// the same), pins are plain JSON, and repo.json says format 1 without key fields.
fn downgrade_to_format_1(repo: &Path) {
    use pgkeep::pipeline::{self, Compression, EncodeOptions, Seal};
    for f in files(repo) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(bytes.starts_with(b"PGK1"), "{} has no header", f.display());
        assert_eq!((bytes[4], bytes[6]), (2, 0), "{}", f.display());
        let name = f.file_name().unwrap().to_str().unwrap();
        let in_pins = f.parent().unwrap().ends_with("pins");
        if name.starts_with("repo.json") || in_pins {
            let mut json = Vec::new();
            pipeline::decode(&bytes, &mut json, Seal::Clear).unwrap();
            if in_pins {
                std::fs::write(&f, json).unwrap();
                continue;
            }
            let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            v["format"] = 1.into();
            let plain = serde_json::to_vec_pretty(&v).unwrap();
            let opts = EncodeOptions {
                compression: Compression::None,
                threads: 0,
            };
            let mut enc = pipeline::encode(&plain[..], opts, plain.len(), Seal::Clear).unwrap();
            enc.bytes[4] = 1;
            std::fs::write(&f, enc.bytes).unwrap();
        } else {
            let mut b = bytes;
            b[4] = 1;
            std::fs::write(&f, b).unwrap();
        }
    }
}

#[test]
fn a_format_1_repository_stays_readable_and_grows_in_format_2() {
    let dir = postgres_tempdir();
    let (pk, mut primary, source) =
        support::cluster::archiving_primary(&pg_bin(), dir.path(), "", &[], &[]);
    primary.psql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 5000) g");
    let full = backup(&pk, &source, "full");
    pk.ok(&["pin", &full]);
    primary.psql("INSERT INTO t SELECT g FROM generate_series(5001, 6000) g");
    primary.switch_and_wait_archived();
    primary.stop();
    let repo = dir.path().join("repo");
    downgrade_to_format_1(&repo);

    // Read as it is: listed, pinned, verified, restored to what was committed.
    let listed = pk.ok(&["info", "--json"]).stdout;
    let info: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(info["backups"][0]["id"], full.as_str(), "{info}");
    let pin = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let cfg = pgkeep::config::Raw::load(Some(&pk.config), &Default::default())
            .and_then(pgkeep::config::Raw::resolve)
            .unwrap();
        let repo = pgkeep::repo::Repo::open(&cfg.repository).await.unwrap();
        assert_eq!(repo.info().format, 1);
        let id: pgkeep::repo::BackupId = full.parse().unwrap();
        repo.load::<pgkeep::command::pin::Pin>(&id).await.unwrap()
    });
    assert_eq!(pin.unwrap().backup.as_str(), full, "a plain-JSON pin reads");
    let (code, report) = verify_json(&pk, &[]);
    assert_eq!(code, 0, "{report}");
    let target = dir.path().join("restored");
    let mut restored = restore_and_start(&pk, &pg_bin(), &target, &[]);
    assert_eq!(
        restored.psql("SELECT count(*), sum(id) FROM t"),
        "6000|18003000"
    );
    restored.stop();

    // New WAL lands beside the old objects in format 2, and the whole still verifies.
    primary.start();
    primary.psql("INSERT INTO t SELECT g FROM generate_series(6001, 6100) g");
    let seg = primary.switch_and_wait_archived();
    let newest = files(&repo)
        .into_iter()
        .find(|f| f.file_name().unwrap() == seg.as_str())
        .unwrap();
    assert_eq!(std::fs::read(newest).unwrap()[4], 2);
    assert_eq!(verify_json(&pk, &[]).0, 0);
    primary.stop();
}

#[test]
fn passphrases_rotate_without_touching_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = support::pgkeep::FakeCluster::new(dir.path(), 7_400_000_000_000_000_123, 15);
    let pk = encrypted(dir.path());
    let init = pk.ok(&["init", "--data-dir", cluster.data.to_str().unwrap()]);
    assert!(
        init.stdout.contains("encrypted with aes-256-gcm"),
        "{}",
        init.stdout
    );
    let seg = cluster.write_segment(1, 1, false);
    pk.ok(&["archive-push", seg.to_str().unwrap()]);
    let repo = dir.path().join("repo");
    let objects = |repo: &Path| {
        snapshot(repo)
            .into_iter()
            .filter(|(rel, _)| !rel.contains("repo.json"))
            .collect::<Vec<_>>()
    };
    let before = objects(&repo);

    // Add a second passphrase, switch to it, remove the first: no object changes.
    let new_pass = write(dir.path(), "new-pass", "a brand new passphrase\n");
    let added = pk.ok(&["key", "add", "--pass-file", &new_pass]);
    assert!(added.stdout.contains("added key k2"), "{}", added.stdout);
    let listed: serde_json::Value =
        serde_json::from_str(&pk.ok(&["key", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed["keys"][0]["current"], true, "{listed}");
    // The slot the configured passphrase opens cannot be removed with it.
    let r = pk.run(&["key", "remove", "k1"]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    let switched = with_cipher_lines(
        dir.path(),
        "switched",
        &format!("cipher = \"aes-256-gcm\"\ncipher_pass_file = \"{new_pass}\""),
    );
    switched.ok(&["key", "remove", "k1"]);
    let fetched = dir.path().join("fetched");
    switched.ok(&[
        "archive-get",
        seg.file_name().unwrap().to_str().unwrap(),
        fetched.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&fetched).unwrap(),
        std::fs::read(&seg).unwrap()
    );
    // A key file (random bytes, no Argon2id) opens it too once added; a short one is refused.
    let short = write(dir.path(), "short-key", "too short");
    assert_eq!(switched.run(&["key", "add", "--key-file", &short]).code, 15);
    let key_file = write(dir.path(), "key", &"k3y-material-".repeat(4));
    let added = switched.ok(&["key", "add", "--key-file", &key_file]);
    assert!(added.stdout.contains("added key k3"), "{}", added.stdout);
    let by_file = with_cipher_lines(
        dir.path(),
        "by-file",
        &format!("cipher = \"aes-256-gcm\"\ncipher_key_file = \"{key_file}\""),
    );
    let listed = by_file.ok(&["key", "list"]).stdout;
    assert!(
        listed.contains("k3  ") && listed.contains("key-file (configured)"),
        "{listed}"
    );
    // The old passphrase opens nothing any more, from either copy of repo.json.
    assert_eq!(pk.run(&["info"]).code, 15);
    std::fs::remove_file(repo.join("main/repo.json")).unwrap();
    assert_eq!(pk.run(&["info"]).code, 15);
    switched.ok(&["info"]);
    assert_eq!(objects(&repo), before, "no object was rewritten");
}
