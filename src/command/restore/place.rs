//! Where each entry of a backup goes: the one confining join every path a restore writes
//! passes through. A manifest is not trusted to say where: a path must be relative and free
//! of `..`, the only links are tablespaces (`pg_tblspc/<oid>`), and a tablespace goes where
//! restore decides — the directory mapped for its oid, else `<target>/pg_tblspc_data/<oid>` —
//! never where the source cluster kept it (on the source's own host that is the live
//! cluster's tablespace). Files of a tablespace are written straight into its directory,
//! never through a link; no existing link on the way is followed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{EntryKind, Manifest, safe_path};

/// The default home of tablespaces, inside the target directory.
pub const TABLESPACE_DIR: &str = "pg_tblspc_data";

/// The target directory and the directory of each tablespace of the backup.
#[derive(Debug, Clone)]
pub struct Placement {
    target: PathBuf,
    /// oid → its directory (absolute).
    tablespaces: BTreeMap<u32, PathBuf>,
    /// oid → whether the operator mapped it (else it is under the target).
    mapped: BTreeMap<u32, bool>,
    /// In-place tablespaces (PostgreSQL 15's `allow_in_place_tablespaces`): `pg_tblspc/<oid>`
    /// is a directory of the target itself.
    in_place: Vec<u32>,
}

impl Placement {
    /// Checks every entry of `m` and decides where its tablespaces go. `target` must be
    /// absolute; `map` holds `--tablespace-map` (absolute directories).
    pub fn new(target: &Path, m: &Manifest, map: &BTreeMap<u32, PathBuf>) -> Result<Placement> {
        let mut tablespaces = BTreeMap::new();
        let mut mapped = BTreeMap::new();
        let in_place = (m.entries.iter())
            .filter(|e| matches!(e.kind, EntryKind::Dir))
            .filter_map(|e| tablespace_oid(&e.path))
            .collect();
        for e in &m.entries {
            if safe_path(&e.path).ok().as_deref() != Some(e.path.as_str()) {
                return Err(untrusted(
                    m,
                    format!("unsafe path '{}'", e.path.escape_debug()),
                ));
            }
            if let EntryKind::Link { .. } = e.kind {
                let oid = tablespace_oid(&e.path).ok_or_else(|| {
                    untrusted(
                        m,
                        format!("a link at '{}': only pg_tblspc/<oid> may be one", e.path),
                    )
                })?;
                let dir = match map.get(&oid) {
                    Some(d) => d.clone(),
                    None => target.join(TABLESPACE_DIR).join(oid.to_string()),
                };
                mapped.insert(oid, map.contains_key(&oid));
                tablespaces.insert(oid, dir);
            }
        }
        for (oid, dir) in map {
            let inside = dir.starts_with(target) || target.starts_with(dir);
            let shared = map.values().filter(|d| *d == dir).count() > 1;
            if !dir.is_absolute() || inside || shared {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("--tablespace-map {oid}={}: the directory must be absolute, apart from the target and from the other tablespaces", dir.display()),
                )
                .hint(format!("without a mapping a tablespace goes to <target>/{TABLESPACE_DIR}/<oid>")));
            }
        }
        if let Some(oid) = map.keys().find(|o| !tablespaces.contains_key(o)) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "--tablespace-map names oid {oid}: backup {} has no such tablespace",
                    m.id
                ),
            )
            .hint("'pgkeep info --json' shows the backup; map only the oids under its pg_tblspc"));
        }
        Ok(Placement {
            target: target.to_path_buf(),
            tablespaces,
            mapped,
            in_place,
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Each tablespace: oid, directory, and whether the operator mapped it.
    pub fn tablespaces(&self) -> impl Iterator<Item = (u32, &Path, bool)> {
        self.tablespaces
            .iter()
            .map(|(oid, d)| (*oid, d.as_path(), self.mapped.get(oid) == Some(&true)))
    }

    /// Whether restore skips this entry: a copy of a tablespace under the default directory
    /// in a backup of a cluster pgkeep restored (its tablespace's own archive holds it too).
    pub fn skipped(&self, rel: &str) -> bool {
        let mut parts = rel.splitn(3, '/');
        parts.next() == Some(TABLESPACE_DIR)
            && parts
                .next()
                .and_then(|o| o.parse::<u32>().ok())
                .is_some_and(|oid| self.tablespaces.contains_key(&oid))
    }

    /// Where the entry at `rel` is written. A tablespace's files go straight into its
    /// directory; no component on the way may be an existing link (but a tablespace link
    /// itself, which restore replaces).
    pub fn dest(&self, rel: &str) -> Result<PathBuf> {
        let (root, rest) = self.split(rel)?;
        let mut at = root.to_path_buf();
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, c) in parts.iter().enumerate() {
            at.push(c);
            let last_link = i + 1 == parts.len() && tablespace_oid(rel).is_some();
            if !last_link && std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_symlink()) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} is a link: restore does not write through it",
                        at.display()
                    ),
                )
                .hint("restore into an empty directory, or remove the link"));
            }
        }
        Ok(at)
    }

    /// `dest` without looking at the disk: where the entry at `rel` belongs.
    pub fn join(&self, rel: &str) -> Result<PathBuf> {
        self.split(rel).map(|(root, rest)| root.join(rest))
    }

    /// The tablespace directory a `pg_tblspc/<oid>` link entry points to.
    pub fn link_target(&self, rel: &str) -> Option<&Path> {
        tablespace_oid(rel).and_then(|oid| self.tablespaces.get(&oid).map(PathBuf::as_path))
    }

    /// The root `rel` is under (target or a tablespace directory) and the rest of it.
    fn split<'r>(&self, rel: &'r str) -> Result<(&Path, &'r str)> {
        if safe_path(rel).ok().as_deref() != Some(rel) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("unsafe path '{}' in a backup", rel.escape_debug()),
            )
            .hint("the manifest is damaged or forged; restore another backup"));
        }
        if let Some((head, rest)) = rel
            .strip_prefix("pg_tblspc/")
            .and_then(|r| r.split_once('/'))
            && let Some(dir) = head
                .parse::<u32>()
                .ok()
                .and_then(|o| self.tablespaces.get(&o))
        {
            return Ok((dir, rest));
        }
        if tablespace_oid(rel).is_some_and(|o| self.tablespaces.contains_key(&o)) {
            // The link itself lives in the target's pg_tblspc.
            return Ok((&self.target, rel));
        }
        let in_place = (rel.strip_prefix("pg_tblspc/"))
            .and_then(|r| r.split_once('/'))
            .and_then(|(oid, _)| oid.parse::<u32>().ok())
            .is_some_and(|oid| self.in_place.contains(&oid));
        if rel.starts_with("pg_tblspc/") && rel.matches('/').count() > 1 && !in_place {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("'{rel}' is under no tablespace of the backup"),
            )
            .hint("the manifest is damaged or forged; restore another backup"));
        }
        Ok((&self.target, rel))
    }
}

/// The oid of `pg_tblspc/<oid>`.
pub fn tablespace_oid(rel: &str) -> Option<u32> {
    let oid = rel.strip_prefix("pg_tblspc/")?;
    (oid.bytes().all(|b| b.is_ascii_digit()) && !oid.is_empty())
        .then(|| oid.parse().ok())
        .flatten()
}

fn untrusted(m: &Manifest, what: String) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("manifest of backup {} holds {what}", m.id),
    )
    .hint("the manifest is damaged or forged; restore another backup and run 'pgkeep verify'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ManifestEntry;

    fn manifest(entries: &[(&str, Option<&str>)]) -> Manifest {
        Manifest {
            entries: entries
                .iter()
                .map(|(p, link)| ManifestEntry {
                    path: p.to_string(),
                    mode: 0o700,
                    mtime: 0,
                    kind: match link {
                        Some(t) => EntryKind::Link {
                            target: t.to_string(),
                        },
                        None => EntryKind::Dir,
                    },
                })
                .collect(),
            ..Manifest::fixture("20261121T220000Z-F")
        }
    }

    #[test]
    fn tablespaces_go_under_the_target_or_where_mapped() {
        let m = manifest(&[
            ("base", None),
            ("pg_tblspc", None),
            ("pg_tblspc/16400", Some("/srv/live/ts1")),
            ("pg_tblspc/16400/PG_15_1", None),
            ("pg_tblspc/16401", Some("/srv/live/ts2")),
        ]);
        let map = BTreeMap::from([(16401, PathBuf::from("/mnt/ts2"))]);
        let p = Placement::new(Path::new("/r"), &m, &map).unwrap();
        assert_eq!(p.dest("base").unwrap(), Path::new("/r/base"));
        assert_eq!(
            p.dest("pg_tblspc/16400/PG_15_1").unwrap(),
            Path::new("/r/pg_tblspc_data/16400/PG_15_1")
        );
        assert_eq!(
            p.dest("pg_tblspc/16400").unwrap(),
            Path::new("/r/pg_tblspc/16400")
        );
        assert_eq!(
            p.link_target("pg_tblspc/16401"),
            Some(Path::new("/mnt/ts2"))
        );
        assert_eq!(
            p.link_target("pg_tblspc/16400"),
            Some(Path::new("/r/pg_tblspc_data/16400"))
        );
        assert!(p.skipped("pg_tblspc_data/16400/PG_15_1/5/1"));
        assert!(!p.skipped("pg_tblspc_data/99/x"));
        assert!(p.dest("pg_tblspc/99/x").is_err(), "no such tablespace");
        let in_place = manifest(&[("pg_tblspc/99", None), ("pg_tblspc/99/PG_15_1", None)]);
        let p2 = Placement::new(Path::new("/r"), &in_place, &BTreeMap::new()).unwrap();
        assert_eq!(
            p2.join("pg_tblspc/99/PG_15_1").unwrap(),
            Path::new("/r/pg_tblspc/99/PG_15_1")
        );
        for bad in [
            BTreeMap::from([(7, PathBuf::from("/mnt/x"))]),
            BTreeMap::from([(16401, PathBuf::from("/r/ts"))]),
            BTreeMap::from([(16401, PathBuf::from("/"))]),
            BTreeMap::from([(16401, PathBuf::from("ts"))]),
            BTreeMap::from([(16400, PathBuf::from("/t")), (16401, PathBuf::from("/t"))]),
        ] {
            assert!(
                Placement::new(Path::new("/r"), &m, &bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn escaping_paths_and_stray_links_are_refused() {
        for bad in ["../x", "/etc/passwd", "base/../../x", "./base", "a//b"] {
            let m = manifest(&[(bad, None)]);
            let e = Placement::new(Path::new("/r"), &m, &BTreeMap::new()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{bad}");
        }
        for link in ["base/evil", "pg_tblspc/x", "pg_tblspc/1/2"] {
            let m = manifest(&[(link, Some("/etc"))]);
            assert!(
                Placement::new(Path::new("/r"), &m, &BTreeMap::new()).is_err(),
                "{link}"
            );
        }
        let p = Placement::new(Path::new("/r"), &manifest(&[]), &BTreeMap::new()).unwrap();
        assert!(p.dest("../x").is_err());
    }

    #[test]
    fn an_existing_link_on_the_way_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", dir.path().join("base")).unwrap();
        let p = Placement::new(dir.path(), &manifest(&[]), &BTreeMap::new()).unwrap();
        assert!(p.dest("base/1/2").is_err());
        assert!(p.dest("global/pg_control").is_ok());
    }
}
