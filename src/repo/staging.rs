//! The staging files of a local store: object_store writes `name#N` and renames it over
//! `name` once complete, so a writer killed between the two leaves `name#N` behind, invisible
//! to every listing. Swept by age, never by guess: a file younger than the given age may be
//! an upload in flight.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// Whether `name` is a staging name: `<object>#<digits>`.
pub fn is_staging(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(base, n)| {
        !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Removes the staging files below `dir` last modified more than `age` ago.
pub fn sweep(dir: &Path, age: Duration) -> Result<usize> {
    let mut removed = 0;
    let mut stack = vec![dir.to_path_buf()];
    let now = SystemTime::now();
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("list", &d, e)),
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            let path = e.path();
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|a| a >= age);
            if kind.is_file() && old && is_staging(&e.file_name().to_string_lossy()) {
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("remove", &path, e)),
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_staging_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal/0000000100000000");
        std::fs::create_dir_all(&wal).unwrap();
        for n in [
            "000000010000000000000001",
            "000000010000000000000002#3",
            "repo.json",
        ] {
            std::fs::write(wal.join(n), b"x").unwrap();
        }
        assert_eq!(sweep(dir.path(), Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(sweep(dir.path(), Duration::ZERO).unwrap(), 1);
        assert!(!wal.join("000000010000000000000002#3").exists());
        assert!(wal.join("000000010000000000000001").exists());
        assert!(
            is_staging("a#12") && !is_staging("a#") && !is_staging("#1") && !is_staging("a#1x")
        );
    }
}
