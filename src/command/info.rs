//! `pgkeep info [--json]`: the repository's identity, its committed backups (with whether
//! the names of the WAL each needs are all archived — from the listing alone: info reads no
//! WAL, so it never calls it verified; `pgkeep verify` does), the backups whose manifest is
//! damaged, when a restore drill last proved each backup (and its RTO), and the archive's WAL
//! ranges per timeline and gaps.

use std::collections::BTreeMap;

use crate::command::drills::{self, Proven};
use crate::command::wal_ranges::WalSummary;
use crate::config::Config;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::manifest::listing;
use crate::repo::{Repo, RepoInfo};

#[derive(Debug, Clone)]
pub struct InfoReport {
    pub location: String,
    pub info: RepoInfo,
    pub backups: Vec<Manifest>,
    /// Backups whose manifest is damaged: id and why.
    pub damaged: Vec<(String, String)>,
    pub wal: WalSummary,
    /// Per backup id: the newest restore drill that passed.
    pub proven: BTreeMap<String, Proven>,
}

pub async fn run(cfg: &Config) -> Result<InfoReport> {
    let repo = Repo::open(&cfg.repository).await?;
    let listing = listing::listing(&repo).await?;
    let names = repo.wal_file_names().await?;
    let proven = drills::proven(&drills::list(&repo).await?);
    Ok(InfoReport {
        proven,
        location: repo.location().to_string(),
        wal: WalSummary::new(&names, repo.info().seg_size),
        info: repo.info().clone(),
        backups: listing.backups,
        damaged: (listing.damaged.into_iter())
            .map(|d| (d.id, d.error.one_line()))
            .collect(),
    })
}

impl InfoReport {
    /// Whether all WAL from the backup's start to its stop is in the archive.
    fn wal_complete(&self, m: &Manifest) -> bool {
        self.wal
            .covers(m.timeline, m.start_lsn, m.stop_lsn, self.info.seg_size)
    }

    /// A readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "repository {}: system id {}, postgresql {}{}\n",
            self.location,
            self.info.system_id,
            self.info.version,
            match self.info.cipher {
                crate::config::CipherChoice::None => String::new(),
                c => format!(
                    ", encrypted ({}, {} key(s))",
                    c.name(),
                    self.info.keys.len()
                ),
            }
        );
        if self.backups.is_empty() && self.damaged.is_empty() {
            out.push_str("no backups\n");
        } else {
            out.push_str(&format!(
                "\n{:<20} {:<5} {:<13} {:<20} {:>4} {:<12} {:<12} {:<24} {:>9} {:>9} {:<9} {}\n",
                "backup",
                "type",
                "changes",
                "parent",
                "tli",
                "start lsn",
                "stop lsn",
                "finished",
                "size MiB",
                "stored",
                "wal names",
                "proven (rto)"
            ));
        }
        for m in &self.backups {
            let (plain, stored) = m.sizes();
            out.push_str(&format!(
                "{:<20} {:<5} {:<13} {:<20} {:>4} {:<12} {:<12} {:<24} {:>9.1} {:>9.1} {:<9} {}\n",
                m.id.as_str(),
                kind(m),
                changes(m).unwrap_or("-"),
                m.parent.as_ref().map_or("-", |p| p.as_str()),
                m.timeline.0,
                m.start_lsn.to_string(),
                m.stop_lsn.to_string(),
                m.stop_time_text(),
                plain as f64 / 1048576.0,
                stored as f64 / 1048576.0,
                if self.wal_complete(m) {
                    "archived"
                } else {
                    "MISSING"
                },
                self.proven
                    .get(m.id.as_str())
                    .map_or("never".to_string(), |p| format!(
                        "{} ({:.1} s)",
                        p.at.format("%Y-%m-%dT%H:%M:%SZ"),
                        p.rto_seconds.unwrap_or_default()
                    )),
            ));
        }
        for (id, why) in &self.damaged {
            out.push_str(&format!("{id:<20} DAMAGED: {why}\n"));
        }
        if !self.backups.is_empty() {
            out.push_str(
                "wal names: every segment from start to stop is listed; contents not verified ('pgkeep verify' reads them)\n",
            );
        }
        out.push_str("\nwal archive\n");
        if self.wal.ranges.is_empty() {
            out.push_str("no segments\n");
        }
        for r in &self.wal.ranges {
            out.push_str(&format!(
                "timeline {:>3}: {} .. {} ({} segments)\n",
                r.timeline, r.first, r.last, r.segments
            ));
        }
        for g in &self.wal.gaps {
            out.push_str(&format!(
                "timeline {:>3}: GAP {} .. {} missing: point-in-time recovery cannot cross it\n",
                g.timeline, g.first_missing, g.last_missing
            ));
        }
        out
    }

    pub fn json(&self) -> String {
        self.json_value().to_string()
    }

    fn json_value(&self) -> serde_json::Value {
        let backups: Vec<serde_json::Value> = self
            .backups
            .iter()
            .map(|m| {
                let (plain, stored) = m.sizes();
                serde_json::json!({
                    "id": m.id, "type": kind(m), "changes": changes(m), "changes_note": m.changes_note,
                    "parent": m.parent, "depth": m.depth,
                    "timeline": m.timeline.0,
                    "start_lsn": m.start_lsn.to_string(), "stop_lsn": m.stop_lsn.to_string(),
                    "start_time": m.start_time_text(), "stop_time": m.stop_time_text(),
                    "size": plain, "stored_size": stored, "files": m.entries.len(),
                    "wal_complete": self.wal_complete(m), "wal_contents_verified": false,
                    "source": m.source,
                    "proven": self.proven.get(m.id.as_str()).map(|p| serde_json::json!({
                        "at": p.at.to_rfc3339(), "rto_seconds": p.rto_seconds, "run_id": p.run_id,
                    })),
                })
            })
            .collect();
        serde_json::json!({
            "repository": self.location,
            "system_id": self.info.system_id.to_string(),
            "pg_version": self.info.version.major(),
            "format": self.info.format,
            "cipher": self.info.cipher.name(),
            "backups": backups,
            "damaged": self.damaged.iter().map(|(id, why)| serde_json::json!({"id": id, "error": why})).collect::<Vec<_>>(),
            "wal": self.wal,
        })
    }
}

/// What `pgkeep info` prints: [`InfoReport::table`].
impl std::fmt::Display for InfoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.table())
    }
}

/// What `pgkeep info --json` prints: [`InfoReport::json`].
impl serde::Serialize for InfoReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.json_value().serialize(s)
    }
}

fn kind(m: &Manifest) -> &'static str {
    match m.kind {
        crate::manifest::BackupKind::Full => "full",
        crate::manifest::BackupKind::Incremental => "incr",
    }
}

/// How an incremental found what changed (`None` for a full); incrementals from before this
/// was recorded all scanned pages.
fn changes(m: &Manifest) -> Option<&'static str> {
    match m.kind {
        crate::manifest::BackupKind::Full => None,
        crate::manifest::BackupKind::Incremental => Some(
            m.changes
                .unwrap_or(crate::manifest::Changes::PageScan)
                .as_str(),
        ),
    }
}
