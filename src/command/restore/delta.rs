//! `--delta`: make an existing data directory ready to receive a backup in place. Its
//! `pg_control` goes first (so a half-done restore can never start as a cluster), then
//! everything the backup does not hold; files that match are kept by the writer.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::manifest::{EntryKind, Manifest};

/// What a delta restore removed.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub removed: usize,
}

pub fn clean(target: &Path, m: &Manifest) -> Result<Cleaned> {
    let control = target.join("global/pg_control");
    if control.exists() {
        std::fs::remove_file(&control).map_err(|e| Error::io("remove", &control, e))?;
        crate::localfs::fsync_dir(&target.join("global"))
            .map_err(|e| Error::io("fsync", &control, e))?;
    }
    let wanted: HashMap<&str, &EntryKind> = m
        .entries
        .iter()
        .map(|e| (e.path.as_str(), &e.kind))
        .collect();
    let mut cleaned = Cleaned::default();
    sweep(target, "", &wanted, &mut cleaned)?;
    Ok(cleaned)
}

/// Removes what is not in the backup, or is there as another kind of entry. Never follows a
/// link: a tablespace link is a leaf here.
fn sweep(
    root: &Path,
    rel: &str,
    wanted: &HashMap<&str, &EntryKind>,
    cleaned: &mut Cleaned,
) -> Result<()> {
    let dir = root.join(rel);
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))? {
        let e = e.map_err(|err| Error::io("read", &dir, err))?;
        let name = e.file_name().to_string_lossy().to_string();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let full = root.join(&path);
        let meta = std::fs::symlink_metadata(&full).map_err(|err| Error::io("stat", &full, err))?;
        let keep = match wanted.get(path.as_str()) {
            Some(EntryKind::Dir) => meta.is_dir(),
            Some(EntryKind::File { .. }) => meta.is_file(),
            Some(EntryKind::Link { .. }) => meta.is_symlink(),
            None => false,
        };
        if keep && meta.is_dir() {
            sweep(root, &path, wanted, cleaned)?;
        } else if !keep {
            let removed = if meta.is_dir() {
                std::fs::remove_dir_all(&full)
            } else {
                std::fs::remove_file(&full)
            };
            removed.map_err(|err| Error::io("remove", &full, err))?;
            cleaned.removed += 1;
        }
    }
    Ok(())
}
