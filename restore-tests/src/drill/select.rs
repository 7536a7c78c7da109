//! The select phase: which backup a drill restores — the one named, the newest (`latest`), the
//! oldest never proven (`untested`; when every backup is proven, the one proven longest ago),
//! or a random one that ended within the window.

use std::time::Duration;

use pgkeep::command::drills;
use pgkeep::config::Selection;
use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::manifest::Manifest;
use pgkeep::manifest::listing;
use pgkeep::repo::Repo;

/// What the operator asked for: a backup id, or a selection rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Id(String),
    Rule(Selection),
}

impl Choice {
    /// `latest`, `untested`, `random`, or a backup id.
    pub fn parse(s: &str) -> Choice {
        match s {
            "latest" => Choice::Rule(Selection::Latest),
            "untested" => Choice::Rule(Selection::Untested),
            "random" => Choice::Rule(Selection::Random),
            id => Choice::Id(id.to_string()),
        }
    }
}

pub async fn select(repo: &Repo, choice: &Choice, window: Duration) -> Result<Manifest> {
    if let Choice::Id(id) = choice {
        return listing::load(repo, id).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("no backup {id} in {}", repo.location()),
            )
            .hint("'pgkeep info' lists the backups")
        });
    }
    let mut all = listing::list(repo).await?;
    if all.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} holds no backup to test", repo.location()),
        )
        .hint("take one with 'pgkeep backup' first"));
    }
    let picked = match choice {
        Choice::Rule(Selection::Untested) => {
            let proven = drills::proven(&drills::list(repo).await?);
            let never = all.iter().position(|m| !proven.contains_key(m.id.as_str()));
            let index = never.unwrap_or_else(|| {
                (0..all.len())
                    .min_by_key(|&i| proven.get(all[i].id.as_str()).map(|p| p.at))
                    .unwrap_or(0)
            });
            all.swap_remove(index)
        }
        Choice::Rule(Selection::Random) => {
            let since = chrono::Utc::now() - window;
            let recent: Vec<usize> = (0..all.len())
                .filter(|&i| all[i].stop_time >= since)
                .collect();
            let Some(&index) = recent.get(random_below(recent.len().max(1))) else {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "no backup ended within the last {}",
                        humantime::format_duration(window)
                    ),
                )
                .hint("widen restore_test.window, or select latest"));
            };
            all.swap_remove(index)
        }
        _ => match all.pop() {
            Some(m) => m,
            None => unreachable!("checked not empty above"),
        },
    };
    Ok(picked)
}

/// A number below `n`, from the clock's nanoseconds: a drill's choice needs spread, not secrecy.
fn random_below(n: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos as usize / 7) % n
}
