//! Reading back every WAL object verify vouches for: each is fetched and decoded through the
//! pipeline (header, size, sha256); a segment (or `.partial`) must hold exactly one segment of
//! the repository's size whose long page header opens the segment its name says, of the
//! repository's cluster — what archive-push checked before it stored it; a timeline history
//! file must parse. Objects are read `concurrency` at a time and only their first bytes are
//! kept, so memory stays bounded whatever the archive's size.

use std::io::Write;

use futures::StreamExt;

use crate::command::blocking;
use crate::pg::WalFileName;
use crate::pg::wal_content::{TEXT_LIMIT, check_content};
use crate::repo::{Repo, WalKey};

/// What reading the WAL back found.
#[derive(Debug, Default)]
pub struct WalCheck {
    pub objects: usize,
    pub bytes: u64,
    /// One line per bad object, naming it.
    pub problems: Vec<String>,
}

/// Reads back the WAL files `names` (as listed), `concurrency` at a time. A file gone since
/// the listing was expired meanwhile: not a problem (holes are found from the names).
pub async fn check_all(repo: &Repo, names: Vec<WalFileName>, concurrency: usize) -> WalCheck {
    let results: Vec<(u64, Option<String>)> = futures::stream::iter(names)
        .map(|n| async move { check_one(repo, &n).await })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut out = WalCheck {
        objects: results.len(),
        ..WalCheck::default()
    };
    for (bytes, problem) in results {
        out.bytes += bytes;
        out.problems.extend(problem);
    }
    out.problems.sort();
    out
}

/// Reads one WAL object back: its plaintext size, and what is wrong with it, if anything.
async fn check_one(repo: &Repo, name: &WalFileName) -> (u64, Option<String>) {
    let info = repo.info();
    let seg = info.seg_size;
    let file = name.file_name(seg);
    let stored = match repo.fetch(&WalKey(name.clone())).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            tracing::info!(file, "expired during verify");
            return (0, None);
        }
        Err(e) => return (0, Some(format!("{file}: cannot read: {}", e.one_line()))),
    };
    let expect = info.wal_expect();
    let name = name.clone();
    let judged = blocking(move || {
        let mut head = Head::default();
        let decoded = stored.decode(&mut head);
        Ok(decoded.map_err(|e| e.to_string()).and_then(|d| {
            let size = d.header.plain_size;
            check_content(&name, &expect, &head.bytes, size).map(|_| size)
        }))
    })
    .await;
    match judged {
        Ok(Ok(size)) => (size, None),
        Ok(Err(e)) => (0, Some(format!("{file}: {e}"))),
        Err(e) => (0, Some(format!("{file}: {}", e.one_line()))),
    }
}

/// Keeps the first bytes written (a segment's header, a whole history file), drops the rest.
#[derive(Default)]
struct Head {
    bytes: Vec<u8>,
}

impl Write for Head {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = TEXT_LIMIT.saturating_sub(self.bytes.len()).min(buf.len());
        self.bytes.extend_from_slice(&buf[..room]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
