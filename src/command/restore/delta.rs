//! `--delta`: make an existing data directory (and its mapped tablespace directories) ready to
//! receive a backup in place. Its `pg_control` goes first (so a half-done restore can never
//! start as a cluster), then everything the backup does not hold; files that match are kept
//! by the writer. Entries are matched where restore will write them (`Placement::join`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::place::{Placement, TABLESPACE_DIR};
use crate::error::{Error, Result};
use crate::manifest::{EntryKind, Manifest};

static DIR: EntryKind = EntryKind::Dir;

/// What a delta restore removed.
#[derive(Debug, Default)]
pub struct Cleaned {
    pub removed: usize,
}

pub fn clean(place: &Placement, m: &Manifest) -> Result<Cleaned> {
    let target = place.target();
    let control = target.join("global/pg_control");
    if control.exists() {
        std::fs::remove_file(&control).map_err(|e| Error::io("remove", &control, e))?;
        crate::localfs::fsync_dir(&target.join("global"))
            .map_err(|e| Error::io("fsync", &control, e))?;
    }
    let mut wanted: HashMap<PathBuf, &EntryKind> = HashMap::new();
    for e in m.entries.iter().filter(|e| !place.skipped(&e.path)) {
        wanted.insert(place.join(&e.path)?, &e.kind);
    }
    // The default tablespace directories are restore's own, inside the target.
    wanted.insert(target.join(TABLESPACE_DIR), &DIR);
    let mut roots = vec![target.to_path_buf()];
    for (_, dir, mapped) in place.tablespaces() {
        if mapped {
            roots.push(dir.to_path_buf());
        } else {
            wanted.insert(dir.to_path_buf(), &DIR);
        }
    }
    let mut cleaned = Cleaned::default();
    for root in roots.iter().filter(|r| r.is_dir()) {
        sweep(root, &wanted, &mut cleaned)?;
    }
    Ok(cleaned)
}

/// Removes what is not in the backup, or is there as another kind of entry. Never follows a
/// link: a tablespace link is a leaf here.
fn sweep(dir: &Path, wanted: &HashMap<PathBuf, &EntryKind>, cleaned: &mut Cleaned) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("read", dir, e))? {
        let full = e.map_err(|err| Error::io("read", dir, err))?.path();
        let meta = std::fs::symlink_metadata(&full).map_err(|err| Error::io("stat", &full, err))?;
        let keep = match wanted.get(&full) {
            Some(EntryKind::Dir) => meta.is_dir(),
            Some(EntryKind::File { .. }) => meta.is_file(),
            Some(EntryKind::Link { .. }) => meta.is_symlink(),
            None => false,
        };
        if keep && meta.is_dir() {
            sweep(&full, wanted, cleaned)?;
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
