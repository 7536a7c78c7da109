//! `BASE_BACKUP` over a replication connection, as a stream of events: start position, each
//! tar archive's beginning and bytes, the backup manifest, progress, end position. Speaks both
//! the PostgreSQL 15+ form (one CopyOut whose CopyData carry a type byte) and the 13/14 form
//! (one raw CopyOut per tablespace, then one for the manifest).

use bytes::Bytes;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::{ReplConn, ReplError, error_code, error_text, row_text};
use crate::pg::lsn::Lsn;
use crate::pg::wal::Timeline;

#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    pub label: String,
    /// Request an immediate checkpoint instead of waiting for the next one.
    pub fast_checkpoint: bool,
    /// Ask for the server's backup manifest (without file checksums: pgkeep hashes every
    /// file itself; the manifest is kept for the next incremental to upload).
    pub manifest: bool,
    /// PostgreSQL 17+: send only what changed since the backup whose manifest was uploaded
    /// (`UPLOAD_MANIFEST`) on this connection, as its WAL summaries say.
    pub incremental: bool,
    /// Let the server verify page checksums (it then fails the whole backup on a bad page).
    pub verify_checksums: bool,
    /// The server sends at most this many kB per second (`MAX_RATE`, 32 to 1048576), to spare
    /// the source's disks; `None`: as fast as it can.
    pub max_rate_kb: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupEvent {
    Start {
        lsn: Lsn,
        timeline: Timeline,
    },
    /// A tar archive begins: `base.tar` for the data directory, `<oid>.tar` for a tablespace
    /// whose directory is `location`. The following `Data` events are its bytes.
    Archive {
        name: String,
        location: Option<String>,
    },
    /// The backup manifest begins; the following `Data` events are its bytes.
    Manifest,
    Data(Bytes),
    /// Bytes the server has sent so far, of its estimate.
    Progress(u64),
    End {
        lsn: Lsn,
        timeline: Timeline,
    },
}

/// A running `BASE_BACKUP`; call `next` until it returns `None`.
#[derive(Debug)]
pub struct BaseBackup<'a> {
    conn: &'a mut ReplConn,
    modern: bool,
    result_sets: u32,
    copies: usize,
    tablespaces: Vec<(Option<String>, Option<String>)>,
    /// The server's size estimate of all tablespaces (kB), from the PROGRESS option.
    estimate_kb: u64,
    /// The error the server reported, and its SQLSTATE.
    failed: Option<(String, String)>,
}

impl<'a> BaseBackup<'a> {
    pub async fn start(
        conn: &'a mut ReplConn,
        opts: &BaseBackupOptions,
    ) -> Result<BaseBackup<'a>, ReplError> {
        let modern = conn.server_major >= 15;
        let label = opts.label.replace('\'', "''");
        let sql = if modern {
            let mut o = vec![
                format!("LABEL '{label}'"),
                "PROGRESS".into(),
                "WAIT false".into(),
            ];
            if opts.fast_checkpoint {
                o.push("CHECKPOINT 'fast'".into());
            }
            if !opts.verify_checksums {
                o.push("VERIFY_CHECKSUMS false".into());
            }
            if let Some(rate) = opts.max_rate_kb {
                o.push(format!("MAX_RATE {rate}"));
            }
            o.push(format!(
                "MANIFEST '{}'",
                if opts.manifest { "yes" } else { "no" }
            ));
            if opts.manifest {
                o.push("MANIFEST_CHECKSUMS 'NONE'".into());
            }
            if opts.incremental {
                o.push("INCREMENTAL".into());
            }
            format!("BASE_BACKUP ({})", o.join(", "))
        } else {
            format!(
                "BASE_BACKUP LABEL '{label}' PROGRESS {}{}{}NOWAIT MANIFEST '{}'",
                if opts.fast_checkpoint { "FAST " } else { "" },
                if opts.verify_checksums {
                    ""
                } else {
                    "NOVERIFY_CHECKSUMS "
                },
                opts.max_rate_kb
                    .map(|r| format!("MAX_RATE {r} "))
                    .unwrap_or_default(),
                if opts.manifest { "yes" } else { "no" }
            )
        };
        conn.send_query(&sql).await?;
        Ok(BaseBackup {
            conn,
            modern,
            result_sets: 0,
            copies: 0,
            tablespaces: Vec::new(),
            estimate_kb: 0,
            failed: None,
        })
    }

    /// The server's estimate of the bytes it will send, once the tablespaces are announced.
    pub fn estimated_bytes(&self) -> Option<u64> {
        (self.estimate_kb > 0).then_some(self.estimate_kb * 1024)
    }

    pub async fn next(&mut self) -> Result<Option<BackupEvent>, ReplError> {
        loop {
            match self.conn.recv().await? {
                Message::RowDescription(_) => self.result_sets += 1,
                Message::DataRow(row) => {
                    let row = row_text(&row)?;
                    let text = |i: usize| row.get(i).cloned().flatten();
                    match self.result_sets {
                        2 => {
                            self.estimate_kb += text(2).and_then(|s| s.parse().ok()).unwrap_or(0);
                            self.tablespaces.push((text(0), text(1)));
                        }
                        n => {
                            let (lsn, tli) = position(&text(0), &text(1))?;
                            return Ok(Some(if n == 1 {
                                BackupEvent::Start { lsn, timeline: tli }
                            } else {
                                BackupEvent::End { lsn, timeline: tli }
                            }));
                        }
                    }
                }
                Message::CopyOutResponse(_) if !self.modern => {
                    self.copies += 1;
                    // One CopyOut per tablespace row, in order; then the manifest.
                    return Ok(Some(match self.tablespaces.get(self.copies - 1) {
                        Some((oid, location)) => BackupEvent::Archive {
                            name: oid
                                .as_ref()
                                .map_or("base.tar".into(), |o| format!("{o}.tar")),
                            location: location.clone(),
                        },
                        None => BackupEvent::Manifest,
                    }));
                }
                Message::CopyData(body) => {
                    let data = body.into_bytes();
                    if !self.modern {
                        return Ok(Some(BackupEvent::Data(data)));
                    }
                    if let Some(event) = modern_copy_data(data)? {
                        return Ok(Some(event));
                    }
                }
                Message::ErrorResponse(body) => {
                    self.failed = Some((error_text(&body), error_code(&body)));
                }
                Message::ReadyForQuery(_) => {
                    return match self.failed.take() {
                        Some((e, code)) if code == "55000" => Err(ReplError::Prerequisite(e)),
                        Some((e, _)) => Err(ReplError::Server(e)),
                        None => Ok(None),
                    };
                }
                _ => {}
            }
        }
    }
}

impl ReplConn {
    /// `UPLOAD_MANIFEST` (PostgreSQL 17+): hands the server the backup manifest of the backup
    /// the next `BASE_BACKUP ... INCREMENTAL` on this connection builds on.
    pub async fn upload_manifest(&mut self, manifest: &[u8]) -> Result<(), ReplError> {
        self.send_query("UPLOAD_MANIFEST").await?;
        let mut failed = None;
        loop {
            match self.recv().await? {
                Message::CopyInResponse(_) => {
                    for chunk in manifest.chunks(1 << 16) {
                        frontend::CopyData::new(chunk)?.write(&mut self.out);
                        self.flush().await?;
                    }
                    frontend::copy_done(&mut self.out);
                    self.flush().await?;
                }
                Message::ErrorResponse(body) => failed = Some(error_text(&body)),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        failed.map_or(Ok(()), |e| Err(ReplError::Server(e)))
    }
}

/// Decodes one CopyData message of the PostgreSQL 15+ protocol.
fn modern_copy_data(data: Bytes) -> Result<Option<BackupEvent>, ReplError> {
    let Some(&kind) = data.first() else {
        return Ok(None);
    };
    Ok(Some(match kind {
        b'd' => BackupEvent::Data(data.slice(1..)),
        b'n' => {
            let mut parts = data[1..].split(|&b| b == 0);
            let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let location = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            BackupEvent::Archive {
                name,
                location: (!location.is_empty()).then_some(location),
            }
        }
        b'm' => BackupEvent::Manifest,
        b'p' => {
            let bytes: [u8; 8] = data
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| ReplError::Protocol("short progress message".into()))?;
            BackupEvent::Progress(u64::from_be_bytes(bytes))
        }
        other => {
            return Err(ReplError::Protocol(format!(
                "unknown BASE_BACKUP message type {other}"
            )));
        }
    }))
}

fn position(lsn: &Option<String>, tli: &Option<String>) -> Result<(Lsn, Timeline), ReplError> {
    let lsn: Lsn = lsn
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(ReplError::Protocol)?;
    let tli = tli
        .as_deref()
        .unwrap_or_default()
        .parse::<u32>()
        .map_err(|e| ReplError::Protocol(format!("bad timeline in BASE_BACKUP: {e}")))?;
    Ok((lsn, Timeline(tli)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_modern_copy_data() {
        let ev = |b: &[u8]| modern_copy_data(Bytes::copy_from_slice(b)).unwrap();
        assert_eq!(
            ev(b"dabc"),
            Some(BackupEvent::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(
            ev(b"nbase.tar\0\0"),
            Some(BackupEvent::Archive {
                name: "base.tar".into(),
                location: None
            })
        );
        assert_eq!(
            ev(b"n16384.tar\0/srv/ts\0"),
            Some(BackupEvent::Archive {
                name: "16384.tar".into(),
                location: Some("/srv/ts".into())
            })
        );
        assert_eq!(ev(b"m"), Some(BackupEvent::Manifest));
        assert_eq!(ev(b"p\0\0\0\0\0\0\x01\0"), Some(BackupEvent::Progress(256)));
        assert!(modern_copy_data(Bytes::from_static(b"x")).is_err());
        assert!(modern_copy_data(Bytes::from_static(b"p\0")).is_err());
    }
}
