//! `pgkeep verify [--backup ID] [--wal-names-only] [--json]`: prove the repository is whole.
//! `repo.json` and its copy must both be readable and agree. Every manifest must be readable
//! and valid (a damaged one is a problem naming it). Every object every (selected) backup
//! needs — its own and its parents' — is read back and decoded: it must exist, match its
//! header's size and sha256, and be the part its manifest committed. WAL must be continuous
//! from each backup's start to the newest segment of its timeline, and every later timeline
//! without gaps; and every WAL object from the oldest selected backup's start on (every one,
//! without `--backup`), with every history file, is read back and checked (`wal`), unless
//! `--wal-names-only` asks for the names alone. Problems are listed, not fatal one by one; any
//! problem makes the command fail (exit 10).

mod wal;

use std::collections::BTreeMap;

use futures::StreamExt;
use serde::Serialize;

use crate::command::blocking;
use crate::command::wal_ranges::WalSummary;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::listing;
use crate::manifest::{EntryKind, Manifest};
use crate::pg::{WalFileName, WalSegmentName};
use crate::repo::{BackupId, BackupPartKey, ByteKey, Digest, PgManifestKey, Repo};

#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    pub backup: Option<String>,
    /// Check WAL by names only (continuity), without reading the objects.
    pub wal_names_only: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupCheck {
    pub id: String,
    /// Objects this backup needs (its own and its parents').
    pub objects: usize,
    /// Their plaintext bytes.
    pub bytes: u64,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub repository: String,
    /// `repo.json` and `repo.json.copy` that are missing, damaged or disagree.
    pub repo_problems: Vec<String>,
    /// Backups whose manifest is damaged (id and why).
    pub damaged: Vec<String>,
    pub backups: Vec<BackupCheck>,
    /// WAL objects read back (0 with `--wal-names-only`) and their plaintext bytes.
    pub wal_objects: usize,
    pub wal_bytes: u64,
    /// Whether WAL contents were read, or only names checked.
    pub wal_contents_checked: bool,
    pub wal_problems: Vec<String>,
}

impl VerifyReport {
    pub fn problems(&self) -> usize {
        self.repo_problems.len()
            + self.damaged.len()
            + self.wal_problems.len()
            + self.backups.iter().map(|b| b.problems.len()).sum::<usize>()
    }

    /// Every problem line, in report order.
    pub fn problem_lines(&self) -> impl Iterator<Item = &String> {
        self.repo_problems
            .iter()
            .chain(self.damaged.iter())
            .chain(self.backups.iter().flat_map(|b| b.problems.iter()))
            .chain(self.wal_problems.iter())
    }

    /// The command's verdict: an error naming the count when anything is damaged.
    pub fn verdict(&self) -> Result<()> {
        match self.problems() {
            0 => Ok(()),
            n => Err(Error::new(
                ErrorKind::Corrupt,
                format!("verify found {n} problem(s) in {}", self.repository),
            )
            .hint("each line above names a damaged object; restore from a backup verify passes, and take a new full backup once the damage is understood")),
        }
    }

    pub fn table(&self) -> String {
        let mut out = format!("verify {}\n", self.repository);
        for p in &self.repo_problems {
            out.push_str(&format!("repository: {p}\n"));
        }
        for d in &self.damaged {
            out.push_str(&format!("backup {d}\n"));
        }
        for b in &self.backups {
            let state = if b.problems.is_empty() {
                "ok"
            } else {
                "DAMAGED"
            };
            out.push_str(&format!(
                "backup {}: {state}, {} objects, {:.1} MiB read back\n",
                b.id,
                b.objects,
                b.bytes as f64 / 1048576.0
            ));
            for p in &b.problems {
                out.push_str(&format!("  {p}\n"));
            }
        }
        if self.wal_problems.is_empty() && self.wal_contents_checked {
            out.push_str(&format!(
                "wal: continuous from every backup's start; {} objects, {:.1} MiB read back\n",
                self.wal_objects,
                self.wal_bytes as f64 / 1048576.0
            ));
        } else if self.wal_problems.is_empty() {
            out.push_str(
                "wal: names continuous from every backup's start, contents not verified\n",
            );
        }
        for p in &self.wal_problems {
            out.push_str(&format!("wal: {p}\n"));
        }
        out
    }
}

/// What `pgkeep verify` prints: [`VerifyReport::table`].
impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.table())
    }
}

/// One stored object a backup needs: where it is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Needed {
    backup: BackupId,
    /// PostgreSQL's own manifest of the backup (17+), not a part of a file.
    pg_manifest: bool,
    path: String,
    part: u32,
    sha256: Option<Digest>,
}

impl Needed {
    fn key(&self) -> (&str, bool, &str, u32, Option<[u8; 32]>) {
        (
            self.backup.as_str(),
            self.pg_manifest,
            &self.path,
            self.part,
            self.sha256.map(|d| d.0),
        )
    }
}

impl Ord for Needed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Needed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

pub async fn run(cfg: &Config, args: VerifyArgs) -> Result<VerifyReport> {
    let repo = Repo::open(&cfg.repository).await?;
    let repo_problems = crate::repo::info::check_both(&repo).await?;
    let listing = listing::listing(&repo).await?;
    let all = listing.backups;
    let damaged_line = |d: &listing::Damaged| format!("{}: {}", d.id, d.error.one_line());
    let (selected, damaged): (Vec<&Manifest>, Vec<String>) = match &args.backup {
        Some(id) => match listing.damaged.iter().find(|d| &d.id == id) {
            Some(d) => (vec![], vec![damaged_line(d)]),
            None => {
                let m = all.iter().find(|m| m.id.as_str() == id).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("no backup {id} in {}", repo.location()),
                    )
                    .hint("'pgkeep info' lists the backups")
                })?;
                (vec![m], vec![])
            }
        },
        None => (
            all.iter().collect(),
            listing.damaged.iter().map(damaged_line).collect(),
        ),
    };

    // Objects: each read back once, however many backups share it.
    let mut results: BTreeMap<Needed, (u64, Option<String>)> = BTreeMap::new();
    let mut checks = Vec::new();
    for m in &selected {
        let needed = needed(m);
        let todo: Vec<Needed> = needed
            .iter()
            .filter(|n| !results.contains_key(*n))
            .cloned()
            .collect();
        let checked: Vec<(Needed, (u64, Option<String>))> = futures::stream::iter(todo)
            .map(|n| {
                let repo = &repo;
                async move {
                    let outcome = check(repo, &n).await;
                    (n, outcome)
                }
            })
            .buffer_unordered(cfg.backup.concurrency.max(1))
            .collect()
            .await;
        results.extend(checked);
        let mut problems: Vec<String> = needed
            .iter()
            .filter_map(|n| results.get(n).and_then(|(_, p)| p.clone()))
            .collect();
        problems.sort();
        if !problems.is_empty() && matches!(listing::load(&repo, m.id.as_str()).await, Ok(None)) {
            // Expired while it was read (expire takes manifests first): not damage.
            tracing::info!(backup = %m.id, "expired during verify");
            continue;
        }
        checks.push(BackupCheck {
            id: m.id.to_string(),
            objects: needed.len(),
            bytes: needed
                .iter()
                .filter_map(|n| results.get(n))
                .map(|(b, _)| b)
                .sum(),
            problems,
        });
    }

    // WAL: continuous from each backup's start.
    let seg = repo.info().seg_size;
    let names = repo.wal_file_names().await?;
    let summary = WalSummary::new(&names, seg);
    let mut wal_problems = Vec::new();
    for m in &selected {
        let from = WalSegmentName::containing(m.timeline, m.start_lsn, seg);
        for missing in summary.missing_from(from, seg) {
            wal_problems.push(format!(
                "{missing} missing (backup {} replays from {})",
                m.id,
                from.file_name(seg)
            ));
        }
    }
    let oldest_tli = selected
        .iter()
        .map(|m| m.timeline.0)
        .min()
        .unwrap_or(u32::MAX);
    for g in summary.gaps.iter().filter(|g| g.timeline > oldest_tli) {
        wal_problems.push(format!(
            "timeline {} gap {} .. {}",
            g.timeline, g.first_missing, g.last_missing
        ));
    }

    // WAL contents: what verify vouches for, read back.
    let mut read = wal::WalCheck::default();
    if !args.wal_names_only {
        let vouched = vouched_for(&names, &selected, args.backup.is_some(), seg);
        read = wal::check_all(&repo, vouched, cfg.backup.concurrency).await;
        wal_problems.extend(read.problems);
    }
    wal_problems.sort();
    wal_problems.dedup();
    Ok(VerifyReport {
        repository: repo.location().to_string(),
        repo_problems,
        damaged,
        backups: checks,
        wal_objects: read.objects,
        wal_bytes: read.bytes,
        wal_contents_checked: !args.wal_names_only,
        wal_problems,
    })
}

/// The WAL files verify vouches for: every history file, and every other WAL file from the
/// oldest selected backup's start segment on — every one when the whole repository is
/// verified.
fn vouched_for(
    names: &[String],
    selected: &[&Manifest],
    one_backup: bool,
    seg: crate::pg::WalSegSize,
) -> Vec<WalFileName> {
    let from = match one_backup {
        false => 0,
        true => selected
            .iter()
            .map(|m| m.start_lsn.0 / u64::from(seg.bytes()))
            .min()
            .unwrap_or(0),
    };
    names
        .iter()
        .filter_map(|n| WalFileName::parse(n, seg).ok())
        .filter(|f| match f {
            WalFileName::History(_) => true,
            WalFileName::Segment(s)
            | WalFileName::Partial(s)
            | WalFileName::BackupHistory(s, _) => s.segno >= from,
        })
        .collect()
}

/// Every object restoring `m` reads.
fn needed(m: &Manifest) -> Vec<Needed> {
    let mut out = Vec::new();
    for e in &m.entries {
        let EntryKind::File { layers, .. } = &e.kind else {
            continue;
        };
        for l in layers {
            for part in 0..l.parts {
                out.push(Needed {
                    backup: l.backup.clone(),
                    pg_manifest: false,
                    path: e.path.clone(),
                    part,
                    sha256: l.part_sha256.get(part as usize).copied(),
                });
            }
        }
    }
    // Not needed to restore, but what the next incremental builds on: damage is damage.
    if let Some(digest) = m.pg_manifest {
        out.push(Needed {
            backup: m.id.clone(),
            pg_manifest: true,
            path: String::new(),
            part: 0,
            sha256: Some(digest),
        });
    }
    out.sort();
    out.dedup();
    out
}

/// Reads one object back: its plaintext size, and what is wrong with it, if anything.
async fn check(repo: &Repo, n: &Needed) -> (u64, Option<String>) {
    if n.pg_manifest {
        let what = format!("PostgreSQL's backup manifest of backup {}", n.backup);
        return check_object(repo, PgManifestKey(n.backup.clone()), what, n.sha256).await;
    }
    let what = format!("{} (part {}) of backup {}", n.path, n.part, n.backup);
    let key = BackupPartKey {
        backup: n.backup.clone(),
        path: n.path.clone(),
        part: n.part,
    };
    check_object(repo, key, what, n.sha256).await
}

async fn check_object<K: ByteKey>(
    repo: &Repo,
    key: K,
    what: String,
    want: Option<Digest>,
) -> (u64, Option<String>) {
    let stored = match repo.fetch(&key).await {
        Ok(Some(b)) => b,
        Ok(None) => return (0, Some(format!("{what}: missing"))),
        Err(e) => return (0, Some(format!("{what}: cannot read: {}", e.one_line()))),
    };
    let decoded = blocking(move || {
        Ok(stored
            .decode(std::io::sink())
            .map_err(|e| e.to_string())
            .and_then(|d| match want {
                Some(w) if w != d.sha256 => Err(format!(
                    "not the part its manifest committed (sha256 {}, expected {w})",
                    d.sha256
                )),
                _ => Ok(d.header.plain_size),
            }))
    })
    .await;
    match decoded {
        Ok(Ok(size)) => (size, None),
        Ok(Err(e)) => (0, Some(format!("{what}: {e}"))),
        Err(e) => (0, Some(format!("{what}: {}", e.one_line()))),
    }
}
