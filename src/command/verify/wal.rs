//! Reading back every WAL object verify vouches for: each is fetched and decoded through the
//! pipeline (header, size, sha256); a segment (or `.partial`) must hold exactly one segment of
//! the repository's size whose long page header opens the segment its name says, of the
//! repository's cluster — what archive-push checked before it stored it; a timeline history
//! file must parse. Objects are read `concurrency` at a time and only their first bytes are
//! kept, so memory stays bounded whatever the archive's size.

use std::io::Write;

use futures::StreamExt;

use crate::command::blocking;
use crate::pg::timeline::TimelineHistory;
use crate::pg::wal_header::WalExpect;
use crate::pg::{WalFileName, WalHeader};
use crate::pipeline;
use crate::repo::{Repo, RepoKey};

/// History and backup-history files are a few hundred bytes; only this much is kept.
const TEXT_LIMIT: usize = 1 << 20;

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
    let stored = match repo.get(&RepoKey::wal(name, seg)).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            tracing::info!(file, "expired during verify");
            return (0, None);
        }
        Err(e) => return (0, Some(format!("{file}: cannot read: {}", e.one_line()))),
    };
    let expect = WalExpect {
        system_id: info.system_id,
        version: info.version,
        seg_size: seg,
    };
    let name = name.clone();
    let judged = blocking(move || {
        let mut head = Head::default();
        let decoded = pipeline::decode(&stored, &mut head);
        Ok(decoded
            .map_err(|e| e.to_string())
            .and_then(|h| judge(&name, &head.bytes, h.plain_size, &expect).map(|_| h.plain_size)))
    })
    .await;
    match judged {
        Ok(Ok(size)) => (size, None),
        Ok(Err(e)) => (0, Some(format!("{file}: {e}"))),
        Err(e) => (0, Some(format!("{file}: {}", e.one_line()))),
    }
}

/// What a decoded WAL object must be, given its name.
fn judge(name: &WalFileName, head: &[u8], size: u64, expect: &WalExpect) -> Result<(), String> {
    match name {
        WalFileName::Segment(s) | WalFileName::Partial(s) => {
            // archive-push stores a segment (or a partial one, which PostgreSQL pads) only
            // when it is exactly one segment long.
            let want = u64::from(expect.seg_size.bytes());
            if size != want {
                return Err(format!(
                    "holds {size} bytes, a wal segment of this repository is {want}"
                ));
            }
            WalHeader::parse(head)?.check(*s, expect)
        }
        WalFileName::History(tli) => {
            let text = std::str::from_utf8(head)
                .map_err(|_| "not a timeline history file (not text)".to_string())?;
            TimelineHistory::parse(text, *tli).map(|_| ())
        }
        WalFileName::BackupHistory(..) => std::str::from_utf8(head)
            .ok()
            .filter(|t| t.contains("START WAL LOCATION"))
            .map(|_| ())
            .ok_or_else(|| "not a backup history file".to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::fixtures::synth_header;
    use crate::pg::{PgVersion, SystemId, Timeline, WalSegSize, WalSegmentName};

    #[test]
    fn a_segment_must_be_whole_and_the_one_its_name_says() {
        let seg = WalSegSize::DEFAULT;
        let expect = WalExpect {
            system_id: SystemId(77),
            version: PgVersion::new(15).unwrap(),
            seg_size: seg,
        };
        let name = |segno| WalSegmentName {
            tli: Timeline(1),
            segno,
        };
        let full = u64::from(seg.bytes());
        let head = synth_header(0xD110, 77, name(5), seg);
        let five = WalFileName::Segment(name(5));
        judge(&five, &head, full, &expect).unwrap();
        judge(&WalFileName::Partial(name(5)), &head, full, &expect).unwrap();
        let e = judge(&five, &head, full - 8192, &expect).unwrap_err();
        assert!(e.contains("holds"), "{e}");
        let e = judge(&WalFileName::Segment(name(6)), &head, full, &expect).unwrap_err();
        assert!(e.contains("its name says"), "{e}");
        let other = synth_header(0xD110, 78, name(5), seg);
        assert!(judge(&five, &other, full, &expect).is_err());
        let h = WalFileName::History(Timeline(2));
        judge(
            &h,
            b"1\t0/3000000\tno recovery target specified\n",
            50,
            &expect,
        )
        .unwrap();
        assert!(judge(&h, b"\xff\xfe", 2, &expect).is_err());
    }
}
