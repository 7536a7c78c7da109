//! archive-get through pgkeepd (`[server]` configured): fetch the file (pgkeepd decrypts,
//! verifies it and checks it is the segment its name says, holes included), check its sha256
//! end to end, write it atomically, then prefetch the next segments the same way.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{GetArgs, GetReport, GetSource, parse_name, prefetch, report};
use crate::command::blocking;
use crate::command::spool::Spool;
use crate::config::{Config, ServerConfig};
use crate::error::{Error, Result};
use crate::localfs;
use crate::pg::WalSegSize;
use crate::service::Client;

pub async fn run(
    cfg: &Config,
    server: &ServerConfig,
    args: &GetArgs,
    start: Instant,
) -> Result<GetReport> {
    parse_name(&args.file, WalSegSize::SMALLEST)?;
    let dest_dir = args.dest.parent().unwrap_or(Path::new("."));
    let spool = Spool::locate(cfg.archive.spool_path.as_deref(), dest_dir);
    if let Some(size) = prefetch::take(spool.as_ref(), &args.file, &args.dest)? {
        return Ok(report(&args.file, GetSource::Prefetched, size, 0, start));
    }
    let client = Arc::new(Client::new(server, cfg.archive.timeout)?);
    let fetched = client.get(&args.file).await?;
    let size = write(&args.dest, fetched.bytes).await?;

    // The answer names the segment size, which the next segments' names depend on.
    let mut prefetched = 0;
    if let Some(seg) = fetched.seg_size.and_then(|s| WalSegSize::new(s).ok()) {
        let name = parse_name(&args.file, seg)?;
        let mut ahead = prefetch::plan(spool.as_ref(), &name, seg, cfg.archive.get_prefetch);
        ahead.truncate(prefetch::affordable(spool.as_ref(), seg, ahead.len()));
        prefetched = prefetch::fetch_all_with(spool, seg, ahead, |name, dest| {
            let client = Arc::clone(&client);
            async move {
                let f = client.get(&name.file_name(seg)).await?;
                write(&dest, f.bytes).await
            }
        })
        .await;
    }
    Ok(report(
        &args.file,
        GetSource::Service,
        size,
        prefetched,
        start,
    ))
}

/// Writes `bytes` to `dest` durably and atomically (temp, fsync, rename, fsync directory).
async fn write(dest: &Path, bytes: bytes::Bytes) -> Result<u64> {
    let dest = dest.to_path_buf();
    blocking(move || {
        localfs::write_atomic(&dest, |f| f.write_all(&bytes))
            .map_err(|e| Error::io("write", &dest, e))?;
        Ok(bytes.len() as u64)
    })
    .await
}
