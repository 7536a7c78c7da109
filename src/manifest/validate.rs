//! What a manifest must satisfy before any command acts on it (`Manifest::validate`): a
//! manifest is read from a store that anyone with write access may have altered, re-encoded
//! with a valid checksum, so its checksum alone proves nothing about its sense.

use super::{BackupKind, EntryKind, FORMAT_CUTS, FORMAT_VERSION, Manifest, safe_path};

impl Manifest {
    /// Checks what a manifest read from the folder of backup `folder` must satisfy before any
    /// command acts on it: it is that backup's, every path stays inside the data directory,
    /// only tablespace entries are links, and its WAL range is not backwards (its typed fields
    /// were checked as it was decoded). A manifest that fails is
    /// a damaged backup.
    pub fn validate(&self, folder: &str) -> Result<(), String> {
        if self.id.as_str() != folder {
            return Err(format!(
                "it names backup {}, but it is stored in the folder of {folder}",
                self.id
            ));
        }
        if self.format != FORMAT_VERSION && self.format != FORMAT_CUTS {
            return Err(format!("unknown manifest format {}", self.format));
        }
        if Manifest::format_for(&self.entries) > self.format {
            return Err(format!(
                "a layer cut to a base in a manifest of format {}",
                self.format
            ));
        }
        let id_kind = if folder.ends_with("-F") {
            BackupKind::Full
        } else {
            BackupKind::Incremental
        };
        match (self.kind, &self.parent) {
            (k, _) if k != id_kind => return Err(format!("kind {k:?} contradicts its id")),
            (BackupKind::Full, Some(p)) => return Err(format!("a full backup with parent {p}")),
            (BackupKind::Incremental, None) => return Err("an incremental without parent".into()),
            (_, Some(p)) if p >= &self.id => return Err(format!("parent {p} is not older")),
            _ => {}
        }
        if self.stop_lsn < self.start_lsn {
            return Err(format!(
                "stop lsn {} precedes start lsn {}",
                self.stop_lsn, self.start_lsn
            ));
        }
        for e in &self.entries {
            if safe_path(&e.path).ok().as_deref() != Some(e.path.as_str()) {
                return Err(format!("unsafe path '{}'", e.path));
            }
            match &e.kind {
                EntryKind::Link { .. } if !is_tablespace_link(&e.path) => {
                    return Err(format!("'{}' is a link outside pg_tblspc", e.path));
                }
                EntryKind::File { layers, .. } => {
                    if let Some(l) = layers.iter().find(|l| l.backup > self.id) {
                        return Err(format!(
                            "'{}' has a layer of later backup {}",
                            e.path, l.backup
                        ));
                    }
                    // Deltas are of whole pages: a rebuild never writes part of one.
                    let page = crate::pg::page::PAGE_SIZE as u64;
                    if let Some(l) = layers.iter().find(|l| {
                        l.base_size.is_some_and(|b| !l.delta || b % page != 0)
                            || (l.delta && l.size % page != 0)
                    }) {
                        return Err(format!(
                            "'{}' has a layer of backup {} that cuts a whole layer or mid-page",
                            e.path, l.backup
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `pg_tblspc/<oid>`: the only entries of a data directory that may be links.
fn is_tablespace_link(path: &str) -> bool {
    path.strip_prefix("pg_tblspc/")
        .is_some_and(|oid| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestEntry;
    use crate::manifest::tests::sample;

    #[test]
    fn a_manifest_is_validated_against_its_folder_paths_links_and_fields() {
        let m = sample();
        let folder = "20261121T220000Z-F";
        m.validate(folder).unwrap();
        let bad = |f: &dyn Fn(&mut Manifest), why: &str| {
            let mut b = m.clone();
            f(&mut b);
            let e = b.validate(folder).unwrap_err();
            assert!(e.contains(why), "{e} should say {why}");
        };
        bad(&|b| b.id = "20261121T220001Z-F".parse().unwrap(), "folder");
        bad(
            &|b| b.entries[1].path = "../../etc/cron.d/x".into(),
            "unsafe path",
        );
        bad(
            &|b| b.entries[1].path = "./PG_VERSION".into(),
            "unsafe path",
        );
        bad(&|b| b.entries[0].path = "/base".into(), "unsafe path");
        bad(
            &|b| {
                b.entries[0].kind = EntryKind::Link {
                    target: "/etc".into(),
                }
            },
            "link outside pg_tblspc",
        );
        bad(&|b| b.stop_lsn = crate::pg::Lsn(1), "precedes");
        bad(&|b| b.kind = BackupKind::Incremental, "contradicts");
        let mut t = m.clone();
        t.entries.push(ManifestEntry {
            path: "pg_tblspc/16384".into(),
            mode: 0o777,
            mtime: 1,
            kind: EntryKind::Link {
                target: "/srv/ts".into(),
            },
        });
        t.validate(folder).unwrap();
    }

    #[test]
    fn a_layer_cut_to_a_base_needs_format_2_and_whole_pages() {
        let folder = "20261121T220000Z-F";
        let mut m = sample();
        let page = crate::pg::page::PAGE_SIZE as u64;
        if let EntryKind::File { layers, .. } = &mut m.entries[1].kind {
            let mut cut = layers[0].clone();
            (cut.delta, cut.size, cut.base_size) = (true, 2 * page, Some(page));
            layers.push(cut);
        }
        // Format 1 readers would ignore the cut: such a manifest must say format 2.
        assert!(m.validate(folder).unwrap_err().contains("format 1"));
        assert_eq!(
            Manifest::format_for(&m.entries),
            crate::manifest::FORMAT_CUTS
        );
        m.format = crate::manifest::FORMAT_CUTS;
        m.validate(folder).unwrap();
        if let EntryKind::File { layers, .. } = &mut m.entries[1].kind {
            layers[1].base_size = Some(page + 1);
        }
        assert!(m.validate(folder).unwrap_err().contains("mid-page"));
        m.format = 3;
        assert!(
            m.validate(folder)
                .unwrap_err()
                .contains("unknown manifest format")
        );
    }
}
