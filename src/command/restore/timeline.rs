//! The timeline a restore recovers along (`recovery_target_timeline`) and that timeline's
//! history: a backup can only be restored towards a timeline whose history passes through the
//! backup's end, so selection filters on it. `latest` is found as PostgreSQL finds it: the
//! newest timeline whose history file follows the backups' own. The repository is read in
//! [`read_history`] alone.

use crate::error::{Error, ErrorKind, Result};
use crate::manifest::Manifest;
use crate::pg::{Timeline, TimelineHistory, WalFileName};
use crate::repo::{Repo, WalKey};

/// The history recovery follows for `setting` (`latest`, `current`, or a decimal timeline, as
/// `target::parse_timeline` returns it); `None` for `current`, which follows whichever
/// timeline the backup is on. A timeline without an archived history file has no ancestors,
/// as PostgreSQL reads it (`readTimeLineHistory`).
pub async fn target_history(
    repo: &Repo,
    setting: &str,
    backups: &[Manifest],
) -> Result<Option<TimelineHistory>> {
    let explicit = match setting {
        "current" => return Ok(None),
        "latest" => None,
        n => Some(Timeline(n.parse().map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                format!("unchecked target timeline '{n}'"),
            )
        })?)),
    };
    let Some(tli) = explicit else {
        let from = backups
            .iter()
            .map(|m| m.timeline)
            .max()
            .unwrap_or(Timeline(1));
        return latest(repo, from).await.map(Some);
    };
    Ok(Some(history_or_first(repo, tli).await?))
}

/// The newest timeline from `from` on whose history files are archived one after another
/// (PostgreSQL's `findNewestTimeLine`), with its history.
async fn latest(repo: &Repo, from: Timeline) -> Result<TimelineHistory> {
    let mut newest = history_or_first(repo, from).await?;
    while let Some(next) = read_history(repo, Timeline(newest.timeline.0 + 1)).await? {
        newest = next;
    }
    Ok(newest)
}

async fn history_or_first(repo: &Repo, tli: Timeline) -> Result<TimelineHistory> {
    if tli == Timeline(1) {
        return Ok(TimelineHistory::first(tli));
    }
    Ok(read_history(repo, tli)
        .await?
        .unwrap_or_else(|| TimelineHistory::first(tli)))
}

/// The archived history file of `tli`, parsed; `None` when it is not archived.
async fn read_history(repo: &Repo, tli: Timeline) -> Result<Option<TimelineHistory>> {
    let name = WalFileName::History(tli);
    let file = name.file_name(repo.info().seg_size);
    let Some(stored) = repo.fetch(&WalKey(name)).await? else {
        return Ok(None);
    };
    let damaged = |e: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("{file} in repository {} is damaged: {e}", repo.location()),
        )
        .hint("run 'pgkeep verify'; choose the timeline with --target-timeline")
    };
    let mut text = Vec::new();
    stored
        .decode(&mut text)
        .map_err(|e| damaged(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|e| damaged(e.to_string()))?;
    TimelineHistory::parse(&text, tli)
        .map(Some)
        .map_err(damaged)
}
