//! One backup's source of truth: its identity (`BackupId`), the cluster and WAL range it
//! covers, and every file with its size, mode, sha256 and where its bytes live. A backup exists
//! if and only if its manifest is stored; the manifest is written last.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pg::{Lsn, PgVersion, SystemId, Timeline};
use crate::repo::Digest;
pub use crate::repo::{BackupId, BackupKind};

pub mod delta;
pub mod drill;
mod fields;
pub mod listing;
mod stored;
mod validate;

pub const FORMAT_VERSION: u32 = 1;
/// The format of a manifest with a layer cut to a base (`Layer::base_size`, a delta from WAL
/// summaries): pgkeep binaries that know only format 1 would ignore the cut and rebuild old
/// bytes where the relation was truncated, so they must refuse such a manifest (as damaged)
/// instead. A manifest without such a layer keeps format 1, readable by every version.
pub const FORMAT_CUTS: u32 = 2;

/// Plaintext bytes per stored part: a file larger than this is stored as several objects, so
/// memory stays bounded whatever the file size (relation segments reach 1 GiB).
pub const PART_SIZE: usize = 16 << 20;

/// What an entry of the data directory is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    /// A regular file: its size and sha256, and the layers that rebuild it (oldest first; the
    /// first is whole, the others are deltas of changed pages). The sha256 is of the bytes the
    /// rebuild gives, except with deltas: then it is of the file as read, which the rebuild
    /// may differ from in pages it did not need (hint bits, which PostgreSQL does not log) —
    /// and for a delta from WAL summaries (a layer with `base_size`) of the incremental file
    /// the server sent, as the rebuilt bytes are known only when restored.
    File {
        size: u64,
        #[serde(with = "fields::digest")]
        sha256: Digest,
        /// Blocks whose page checksum failed when the backup read them (reported, not fatal).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bad_pages: Vec<u32>,
        layers: Vec<Layer>,
    },
    Link {
        target: String,
    },
}

/// One layer of a file's bytes, stored by `backup` as `parts` objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub backup: BackupId,
    /// Whole file (`false`), or the pages that changed over the layers before it.
    pub delta: bool,
    /// How many part objects hold this layer (a delta without changed pages has none).
    pub parts: u32,
    /// The file's size after this layer: a delta truncates or extends to it.
    pub size: u64,
    /// For a delta built from PostgreSQL's WAL summaries: the bytes of the layers below that
    /// still count. They are cut to this size before the delta's pages are laid over them
    /// (the relation was truncated since; a block beyond it that no page of this delta
    /// brings back reads as zeros, as `pg_combinebackup` rebuilds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_size: Option<u64>,
    /// Bytes stored for this layer.
    pub stored_size: u64,
    /// The sha256 of each part's plaintext, in part order: a restore checks every part against
    /// the committed manifest and so can rebuild the parts of one file in parallel. Empty in
    /// manifests written before parts were recorded; such files are hashed whole after the
    /// rebuild instead.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "fields::digests"
    )]
    pub part_sha256: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative to the data directory, `/`-separated, never `..`.
    pub path: String,
    pub mode: u32,
    pub mtime: i64,
    #[serde(flatten)]
    pub kind: EntryKind,
}

impl ManifestEntry {
    pub fn is_file(&self) -> bool {
        matches!(self.kind, EntryKind::File { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: BackupId,
    pub kind: BackupKind,
    pub parent: Option<BackupId>,
    /// Incrementals between this backup and its full (0 for a full).
    #[serde(default)]
    pub depth: u32,
    #[serde(with = "fields::text")]
    pub system_id: SystemId,
    #[serde(with = "fields::pg_version")]
    pub pg_version: PgVersion,
    #[serde(with = "fields::timeline")]
    pub timeline: Timeline,
    #[serde(with = "fields::text")]
    pub start_lsn: Lsn,
    #[serde(with = "fields::text")]
    pub stop_lsn: Lsn,
    /// When the backup started (stored to the second).
    #[serde(with = "fields::time_secs")]
    pub start_time: DateTime<Utc>,
    /// When BASE_BACKUP ended (stored to the millisecond): no recovery target may be earlier.
    #[serde(with = "fields::time_millis")]
    pub stop_time: DateTime<Utc>,
    pub source: String,
    /// How an incremental found what changed; absent for a full (and for incrementals
    /// written before this was recorded, which all scanned pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
    /// Why an incremental scanned pages rather than use the server's WAL summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_note: Option<String>,
    /// The sha256 of PostgreSQL's own backup manifest stored with this backup (17+): the
    /// next incremental uploads it so that the server sends only what changed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "fields::opt_digest"
    )]
    pub pg_manifest: Option<Digest>,
    pub entries: Vec<ManifestEntry>,
}

/// How an incremental learnt which pages changed since its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Changes {
    /// PostgreSQL 17+ sent only the changed blocks (`BASE_BACKUP ... INCREMENTAL`, from its
    /// WAL summaries): the source read and sent what changed, not the whole cluster.
    WalSummaries,
    /// The source sent every file; pgkeep kept the pages whose LSN is not older than the
    /// parent's start.
    PageScan,
}

impl Changes {
    pub fn as_str(self) -> &'static str {
        match self {
            Changes::WalSummaries => "wal-summaries",
            Changes::PageScan => "page-scan",
        }
    }
}

#[cfg(test)]
impl Manifest {
    /// A full backup `id` without entries, for unit tests: change what a test is about with
    /// struct update syntax (`Manifest { stop_lsn: ..., ..Manifest::fixture(id) }`).
    pub(crate) fn fixture(id: &str) -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            id: id.parse().expect("a backup id"),
            kind: BackupKind::Full,
            parent: None,
            depth: 0,
            system_id: SystemId(1),
            pg_version: PgVersion::new(15).expect("a supported version"),
            timeline: Timeline(1),
            start_lsn: Lsn(0x100_0028),
            stop_lsn: Lsn(0x200_0100),
            start_time: DateTime::UNIX_EPOCH,
            stop_time: DateTime::UNIX_EPOCH,
            source: String::new(),
            changes: None,
            changes_note: None,
            pg_manifest: None,
            entries: vec![],
        }
    }
}

impl Manifest {
    /// The format these entries need: [`FORMAT_CUTS`] if a layer is cut to a base.
    pub fn format_for(entries: &[ManifestEntry]) -> u32 {
        let cut = entries.iter().any(|e| match &e.kind {
            EntryKind::File { layers, .. } => layers.iter().any(|l| l.base_size.is_some()),
            _ => false,
        });
        if cut { FORMAT_CUTS } else { FORMAT_VERSION }
    }

    /// `start_time` as the manifest stores it: `2026-11-21T22:00:00Z`.
    pub fn start_time_text(&self) -> String {
        fields::secs_text(&self.start_time)
    }

    /// `stop_time` as the manifest stores it: `2026-11-21T22:00:05.100Z`.
    pub fn stop_time_text(&self) -> String {
        fields::millis_text(&self.stop_time)
    }

    /// Files with pages whose checksum failed, and how many such pages.
    pub fn bad_pages(&self) -> (usize, usize) {
        self.entries.iter().fold((0, 0), |(f, p), e| match &e.kind {
            EntryKind::File { bad_pages, .. } if !bad_pages.is_empty() => {
                (f + 1, p + bad_pages.len())
            }
            _ => (f, p),
        })
    }

    /// Total plaintext bytes of the files, and the bytes this backup itself stored (what
    /// it shares with its parents is not counted).
    pub fn sizes(&self) -> (u64, u64) {
        self.entries.iter().fold((0, 0), |(p, s), e| match &e.kind {
            EntryKind::File { size, layers, .. } => {
                let own: u64 = layers
                    .iter()
                    .filter(|l| l.backup == self.id)
                    .map(|l| l.stored_size)
                    .sum();
                (p + size, s + own)
            }
            _ => (p, s),
        })
    }

    /// The backups whose objects this one reads (itself included), oldest first.
    pub fn references(&self) -> Vec<BackupId> {
        let mut ids: Vec<BackupId> = self
            .entries
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::File { layers, .. } => Some(layers.iter().map(|l| l.backup.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Refuses paths that could escape the data directory.
pub fn safe_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_start_matches("./").trim_end_matches('/');
    let ok = !trimmed.is_empty()
        && !trimmed.starts_with('/')
        && trimmed
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    ok.then(|| trimmed.to_string())
        .ok_or_else(|| format!("unsafe path '{path}' in backup stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_sort_by_time_and_round_trip() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-21T22:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let id = BackupId::new(t, BackupKind::Full);
        assert_eq!(id.as_str(), "20261121T220000Z-F");
        assert_eq!(id.as_str().parse::<BackupId>().unwrap(), id);
        let later = BackupId::new(t + chrono::Duration::seconds(1), BackupKind::Incremental);
        assert!(later > id);
        for bad in [
            "",
            "20261121T220000Z",
            "20261321T220000Z-F",
            "20261121T220000Z-X",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert_eq!(safe_path("./base/1/112").unwrap(), "base/1/112");
        assert_eq!(safe_path("pg_wal/").unwrap(), "pg_wal");
        for bad in ["/etc/passwd", "../x", "a/../../b", "", "a//b"] {
            assert!(safe_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_json_round_trip() {
        let m = sample();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        assert_eq!(m.sizes(), (3, 60));
    }

    /// A manifest exactly as the string-typed manifest (before typed fields) wrote it: it
    /// parses, and re-serialises byte for byte.
    const TODAYS_FORMAT: &str = include_str!("testdata/manifest-v1.json");

    #[test]
    fn a_manifest_of_the_string_typed_format_parses_and_reserialises_identically() {
        let m: Manifest = serde_json::from_str(TODAYS_FORMAT.trim_end()).unwrap();
        assert_eq!(m.system_id, SystemId(7304935434117232661));
        assert_eq!(m.pg_version.major(), 15);
        assert_eq!(m.timeline, Timeline(2));
        assert_eq!(
            (m.start_lsn, m.stop_lsn),
            (Lsn(0x1_0000_0028), Lsn(0x1_0000_0100))
        );
        assert_eq!(m.stop_time.timestamp_subsec_millis(), 100);
        assert_eq!(serde_json::to_string(&m).unwrap(), TODAYS_FORMAT.trim_end());
    }

    #[test]
    fn malformed_typed_fields_are_refused_when_read() {
        let json = TODAYS_FORMAT.trim_end();
        for (from, to) in [
            (
                "\"system_id\":\"7304935434117232661\"",
                "\"system_id\":\"x\"",
            ),
            ("\"pg_version\":15", "\"pg_version\":9"),
            ("\"timeline\":2", "\"timeline\":0"),
            ("\"start_lsn\":\"1/28\"", "\"start_lsn\":\"zz\""),
            (
                "\"stop_time\":\"2026-11-21T22:00:05.100Z\"",
                "\"stop_time\":\"\"",
            ),
            (
                "\"start_time\":\"2026-11-21T22:00:00Z\"",
                "\"start_time\":\"t0\"",
            ),
            ("\"sha256\":\"2389", "\"sha256\":\"zz89"),
        ] {
            assert!(json.contains(from), "{from}");
            let bad = json.replacen(from, to, 1);
            assert!(
                serde_json::from_str::<Manifest>(&bad).is_err(),
                "{to} accepted"
            );
        }
    }

    pub(super) fn sample() -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            id: "20261121T220000Z-F".parse().unwrap(),
            kind: BackupKind::Full,
            parent: None,
            depth: 0,
            system_id: SystemId(7),
            pg_version: PgVersion::new(15).unwrap(),
            timeline: Timeline(1),
            start_lsn: Lsn(0x200_0028),
            stop_lsn: Lsn(0x200_0100),
            start_time: "2026-11-21T22:00:00Z".parse().unwrap(),
            stop_time: "2026-11-21T22:00:05.123Z".parse().unwrap(),
            source: "host=x".into(),
            changes: None,
            changes_note: None,
            pg_manifest: None,
            entries: vec![
                ManifestEntry {
                    path: "base".into(),
                    mode: 0o700,
                    mtime: 1,
                    kind: EntryKind::Dir,
                },
                ManifestEntry {
                    path: "PG_VERSION".into(),
                    mode: 0o600,
                    mtime: 1,
                    kind: EntryKind::File {
                        size: 3,
                        sha256: Digest::of(b"15\n"),
                        bad_pages: vec![],
                        layers: vec![Layer {
                            backup: "20261121T220000Z-F".parse().unwrap(),
                            delta: false,
                            parts: 1,
                            size: 3,
                            base_size: None,
                            stored_size: 60,
                            part_sha256: vec![Digest::of(b"15\n")],
                        }],
                    },
                },
            ],
        }
    }
}
