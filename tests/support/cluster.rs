//! A primary archiving through pgkeep into a local repository, and restoring from it: the
//! setting every backup test starts from.

use std::path::{Path, PathBuf};

use super::pgkeep::Pgkeep;
use super::postgres::{Pg, chown_postgres};

/// How many committed backups `pgkeep info --json` lists.
pub fn backup_count(pk: &Pgkeep) -> usize {
    backups(pk).len()
}

/// The committed backups as `pgkeep info --json` lists them, oldest first.
pub fn backups(pk: &Pgkeep) -> Vec<serde_json::Value> {
    let out = pk.ok(&["info", "--json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["backups"].as_array().unwrap().clone()
}

/// `pgkeep verify --json` with `args`: its exit code and its report.
pub fn verify_json(pk: &Pgkeep, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let r = pk.run(&all);
    let json = r.stdout.lines().next().unwrap_or("{}").to_string();
    (r.code, serde_json::from_str(&json).unwrap())
}

/// Takes a backup of `source` (`kind`: full or incr); returns the id pgkeep reports ("full
/// backup <id> committed: ...").
pub fn backup(pk: &Pgkeep, source: &str, kind: &str) -> String {
    let r = pk.ok(&["backup", "--source", source, "--type", kind]);
    assert!(r.stdout.contains("committed"), "{}", r.stdout);
    r.stdout.split_whitespace().nth(2).unwrap().to_string()
}

/// A primary of the PostgreSQL in `bin`, archiving through pgkeep into a local repository it
/// was initialised for, started; `backup_toml` goes into the `[backup]` section. Returns the
/// pgkeep handle, the server and its source conninfo.
pub fn archiving_primary(
    bin: &Path,
    dir: &Path,
    backup_toml: &str,
    extra: &[&str],
    initdb: &[&str],
) -> (Pgkeep, Pg, String) {
    let repo = dir.join("repo");
    let pk = Pgkeep::new(
        dir,
        &format!(
            "[repository]\npath = \"{}\"\n[backup]\nwal_timeout = \"60s\"\n{backup_toml}\n",
            repo.display()
        ),
    );
    archiving_primary_with(pk, bin, dir, extra, initdb)
}

/// Like `archiving_primary`, for a pgkeep configured by the caller (e.g. an S3 repository).
pub fn archiving_primary_with(
    pk: Pgkeep,
    bin: &Path,
    dir: &Path,
    extra: &[&str],
    initdb: &[&str],
) -> (Pgkeep, Pg, String) {
    let mut primary = Pg::initdb_with(bin, dir, "primary", initdb);
    let mut conf = vec![
        "wal_level = replica".to_string(),
        "archive_mode = on".into(),
        format!(
            "archive_command = '{}'",
            pk.archive_command().replace('\'', "''")
        ),
    ];
    conf.extend(extra.iter().map(|s| s.to_string()));
    primary.configure(&conf);
    pk.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
    // A local repository created by `init` (as root) must be writable by the archiver.
    if dir.join("repo").exists() {
        chown_postgres(&dir.join("repo"));
    }
    primary.start();
    let source = format!(
        "host={} port={} user=postgres",
        primary.sock.display(),
        primary.port
    );
    (pk, primary, source)
}

/// A second repository of `primary`'s cluster in `dir/elsewhere`, initialised but never
/// archived into: a backup there never sees its WAL. Returns its handle and directory.
pub fn unarchived_repository(dir: &Path, primary: &Pg, backup_toml: &str) -> (Pgkeep, PathBuf) {
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other = Pgkeep::new(
        &elsewhere,
        &format!(
            "[repository]\npath = \"{}\"\n[backup]\n{backup_toml}\n",
            elsewhere.join("repo").display()
        ),
    );
    other.ok(&["init", "--data-dir", primary.data.to_str().unwrap()]);
    (other, elsewhere)
}

/// A backup of `primary` (at `source`) running into an `unarchived_repository`: it copies, then
/// waits for WAL that never arrives, holding the lease until it is killed. Returns the
/// repository's handle and directory, and the running pgkeep.
pub fn stuck_backup(
    dir: &Path,
    primary: &Pg,
    source: &str,
) -> (Pgkeep, PathBuf, std::process::Child) {
    let (other, elsewhere) = unarchived_repository(dir, primary, "");
    let child = other
        .command()
        .args(["backup", "--source", source])
        .spawn()
        .unwrap();
    (other, elsewhere, child)
}

/// `pgkeep restore` into `target` with `args`, then starts the server of `bin` and waits for
/// the end of recovery.
pub fn restore_and_start(pk: &Pgkeep, bin: &Path, target: &Path, args: &[&str]) -> Pg {
    let mut all = vec!["restore", target.to_str().unwrap()];
    all.extend_from_slice(args);
    let r = pk.ok(&all);
    assert!(r.stdout.contains("restored backup"), "{}", r.stdout);
    start_restored(bin, target)
}

/// Starts a restored data directory and waits for the end of recovery.
pub fn start_restored(bin: &Path, target: &Path) -> Pg {
    chown_postgres(target);
    let mut restored = Pg::at(bin, target.to_path_buf());
    // A copy of a standby carries its settings: pgkeep's recovery.signal must rule.
    restored.configure(&["archive_mode = off".into(), "primary_conninfo = ''".into()]);
    let _ = std::fs::remove_file(restored.data.join("standby.signal"));
    restored.start();
    restored.wait_promoted();
    restored
}
