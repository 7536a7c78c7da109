//! `pgkeep init`: create the repository for the cluster whose data directory (or live
//! connection) identifies it; probe the store's create-if-absent semantics on the way.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::ControlFile;
use crate::pg::client::{self, Identity};
use crate::repo::create::create;
use crate::repo::{CreateMode, RepoInfo};

#[derive(Debug, Clone, Default)]
pub struct InitArgs {
    pub data_dir: Option<PathBuf>,
    pub conninfo: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InitReport {
    pub location: String,
    pub info: RepoInfo,
    pub existed: bool,
}

/// The line `pgkeep init` prints.
impl std::fmt::Display for InitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} repository {} for system id {} (postgresql {}, {} MiB segments, create-if-absent {}{})",
            if self.existed { "found" } else { "created" },
            self.location,
            self.info.system_id,
            self.info.version,
            self.info.seg_size.bytes() >> 20,
            match self.info.create_mode {
                CreateMode::Enforced => "enforced by the store",
                CreateMode::Emulated => "emulated (store ignores If-None-Match)",
            },
            match self.info.cipher {
                crate::config::CipherChoice::None => String::new(),
                c => format!(", encrypted with {}", c.name()),
            }
        )
    }
}

pub async fn run(cfg: &Config, args: InitArgs) -> Result<InitReport> {
    // Identify the cluster: pg_control of its data directory, else a live connection.
    let identity = identify(cfg, &args).await?;

    // Create the repository (or find it already there for this cluster).
    let wanted = RepoInfo::new(
        identity.system_id,
        identity.version,
        identity.seg_size,
        CreateMode::Enforced,
    );
    let created = crate::command::with_archive_timeout(
        "init",
        cfg.archive.timeout,
        create(&cfg.repository, wanted),
    )
    .await?;
    Ok(InitReport {
        location: created.repo.location().to_string(),
        info: created.repo.info().clone(),
        existed: created.existed,
    })
}

async fn identify(cfg: &Config, args: &InitArgs) -> Result<Identity> {
    let data_dir = args.data_dir.as_ref().or(cfg.postgres.data_dir.as_ref());
    let conninfo = args.conninfo.as_ref().or(cfg.postgres.conninfo.as_ref());
    match (data_dir, conninfo) {
        (Some(dir), _) => from_data_dir(dir),
        (None, Some(conninfo)) => {
            let c = client::connect(conninfo).await.map_err(pg_error)?;
            client::identity(&c).await.map_err(pg_error)
        }
        (None, None) => Err(Error::new(
            ErrorKind::Config,
            "init needs the cluster's data directory or a connection",
        )
        .hint("set postgres.data_dir or postgres.conninfo, or pass --data-dir / --conninfo")),
    }
}

fn pg_error(msg: String) -> Error {
    Error::new(ErrorKind::Postgres, msg)
        .hint("check postgres.conninfo, and that the server is running")
}

fn from_data_dir(dir: &Path) -> Result<Identity> {
    let path = dir.join("global/pg_control");
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::io("read", &path, e).hint("postgres.data_dir must be the cluster's data directory")
    })?;
    let control = ControlFile::parse(&bytes).map_err(|e| {
        Error::new(ErrorKind::InvalidInput, format!("{}: {e}", path.display()))
            .hint("postgres.data_dir must be the cluster's data directory")
    })?;
    Ok(Identity {
        system_id: control.system_id,
        version: control.version,
        seg_size: control.seg_size,
    })
}
