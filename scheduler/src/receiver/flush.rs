//! The spool's flusher: every few seconds (and at start, so a restart uploads what a previous
//! run spooled), each cluster's spooled files go to the store in name order, through the same
//! checks and store as a push. A file leaves the spool only once the store has confirmed it;
//! an unreachable store ends the round for that cluster; a file the store refuses (a different
//! file under the same name, found only now) is moved aside and reported, never deleted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pgkeep::command::archive_push;
use pgkeep::error::{Error, ErrorKind, Result};
use pgkeep::pg::WalFileName;
use tokio::sync::watch;

use super::spool::Entry;
use super::{Cluster, Receiver};
use crate::state;

const ROUND: Duration = Duration::from_secs(2);

pub async fn run(r: Arc<Receiver>, mut stop: watch::Receiver<bool>) {
    let Some(spool) = &r.spool else { return };
    loop {
        for c in &r.clusters {
            let entries = spool.list(&c.name);
            if entries.is_empty() {
                continue;
            }
            for e in entries {
                match upload(&r, c, &e).await {
                    Ok(()) => {
                        spool.remove(&c.name, &e);
                        tracing::info!(cluster = c.name, file = e.file, "spooled file uploaded");
                    }
                    Err(err) if err.kind() == ErrorKind::Unreachable => {
                        tracing::debug!(cluster = c.name, error = %err.one_line(), "store still unreachable");
                        break;
                    }
                    Err(err) => {
                        tracing::error!(cluster = c.name, file = e.file, error = %err.one_line(),
                            "the store refused a spooled file: moved to the spool's rejected/ folder");
                        spool.reject(&c.name, &e);
                    }
                }
            }
        }
        let backlog = spool.backlog();
        state::with(&r.status, |s| {
            if let Some(svc) = s.service.as_mut() {
                svc.spool = Some(backlog);
            }
        });
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn upload(r: &Receiver, c: &Cluster, e: &Entry) -> Result<()> {
    let repo = c.repo().await?;
    let seg = repo.info().seg_size;
    let name = WalFileName::parse(&e.file, seg)
        .map_err(|m| Error::new(ErrorKind::InvalidInput, format!("{}: {m}", e.file)))?;
    let bytes = std::fs::read(&e.path)
        .map(Bytes::from)
        .map_err(|err| Error::io("read spooled file", &e.path, err))?;
    let prepared = archive_push::receive(&repo, Path::new(&e.file), &name, bytes).await?;
    match tokio::time::timeout(r.store_timeout, archive_push::store(&repo, &name, prepared)).await {
        Ok(stored) => stored.map(|_| ()),
        Err(_) => Err(Error::new(
            ErrorKind::Unreachable,
            format!("the store did not confirm {} in time", e.file),
        )),
    }
}
