//! `pgkeep info [--json]`: the repository's identity and its committed backups.

use crate::command::backups;
use crate::config::Config;
use crate::error::Result;
use crate::manifest::Manifest;
use crate::repo::{Repo, RepoInfo};

#[derive(Debug, Clone)]
pub struct InfoReport {
    pub location: String,
    pub info: RepoInfo,
    pub backups: Vec<Manifest>,
}

pub async fn run(cfg: &Config) -> Result<InfoReport> {
    let repo = Repo::open(&cfg.repository).await?;
    let backups = backups::list(&repo).await?;
    Ok(InfoReport {
        location: repo.location().to_string(),
        info: repo.info().clone(),
        backups,
    })
}

impl InfoReport {
    /// A readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "repository {}: system id {}, postgresql {}\n",
            self.location, self.info.system_id, self.info.version
        );
        if self.backups.is_empty() {
            out.push_str("no backups\n");
            return out;
        }
        out.push_str(&format!(
            "{:<20} {:<5} {:>4} {:<14} {:<14} {:<21} {:>10} {:>10}\n",
            "backup", "type", "tli", "start lsn", "stop lsn", "finished", "size MiB", "stored MiB"
        ));
        for m in &self.backups {
            let (plain, stored) = m.sizes();
            out.push_str(&format!(
                "{:<20} {:<5} {:>4} {:<14} {:<14} {:<21} {:>10.1} {:>10.1}\n",
                m.id.as_str(),
                format!("{:?}", m.kind).to_lowercase(),
                m.timeline,
                m.start_lsn,
                m.stop_lsn,
                m.stop_time,
                plain as f64 / 1048576.0,
                stored as f64 / 1048576.0
            ));
        }
        out
    }

    pub fn json(&self) -> String {
        let backups: Vec<serde_json::Value> = self
            .backups
            .iter()
            .map(|m| {
                let (plain, stored) = m.sizes();
                serde_json::json!({
                    "id": m.id, "type": m.kind, "parent": m.parent, "timeline": m.timeline,
                    "start_lsn": m.start_lsn, "stop_lsn": m.stop_lsn,
                    "start_time": m.start_time, "stop_time": m.stop_time,
                    "size": plain, "stored_size": stored, "files": m.entries.len(),
                })
            })
            .collect();
        serde_json::json!({
            "repository": self.location,
            "system_id": self.info.system_id.to_string(),
            "pg_version": self.info.version.major(),
            "backups": backups,
        })
        .to_string()
    }
}
