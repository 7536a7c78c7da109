//! Where a drill runs the restored cluster: a `Sandbox` is a throwaway PostgreSQL that the drill
//! fills from a staging directory on this host, starts with forced settings, queries as a
//! superuser, and removes. Two kinds: `local` (a temp directory and `pg_ctl` from a bin dir)
//! and `container` (the Docker Engine API through bollard: Docker, or Podman's compatible
//! service). Neither listens on TCP nor holds repository credentials: the drill restores the
//! data directory and stages the WAL itself, and talks to the server through its private unix
//! socket (local) or `exec` (container).

pub mod container;
pub mod local;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use pgkeep::error::Result;

/// The label (container) or marker (local) every sandbox carries: `pgkeep.restore-test=<run id>`.
pub const LABEL: &str = "pgkeep.restore-test";
/// Who created it: `<host>/<pid>/<process start ticks>`, so a sweep can tell a live drill of
/// another daemon from the leftover of a crashed one.
pub const OWNER_LABEL: &str = "pgkeep.owner";
/// Until when a failed sandbox is kept for inspection (RFC 3339); absent: remove at once.
pub const KEEP_UNTIL_LABEL: &str = "pgkeep.keep-until";

/// One throwaway PostgreSQL.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// `local` or `container`.
    fn kind(&self) -> &'static str;
    /// What it runs: the image (container) or the bin dir (local).
    fn runs(&self) -> String;
    /// The staging directory on this host: the drill restores into `staging()/data` and puts
    /// the WAL to replay into `staging()/wal` before `start`.
    fn staging(&self) -> &Path;
    /// The data directory as the server sees it (inside the container, or the staging one).
    fn data_dir_inside(&self) -> String;
    /// The WAL directory as the server sees it (what restore_command copies from).
    fn wal_dir_inside(&self) -> String;
    /// The server's private unix socket directory as it sees it (`unix_socket_directories`).
    fn socket_dir_inside(&self) -> String;
    /// Makes the staged data and WAL the server's (upload into the container, or ownership
    /// for the local OS user), then starts `postgres` with each `(name, value)` as `-c
    /// name=value` and returns without waiting for recovery.
    async fn start(&mut self, settings: &[(String, String)]) -> Result<()>;
    /// Runs `sql` (one statement) in database `db` as the bootstrap superuser, over the
    /// server's private unix socket; each row's columns as text (`None` for NULL).
    async fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>>;
    /// Whether the postmaster still runs.
    async fn alive(&self) -> bool;
    /// The last `lines` lines of the server's log (for a report's cause).
    async fn log_tail(&self, lines: usize) -> String;
    /// Stops the server at once and removes everything created (container, directories).
    /// With `keep_until`, stops the server but keeps the rest, marked, until that time.
    async fn remove(&mut self, keep_until: Option<chrono::DateTime<chrono::Utc>>) -> Result<()>;
}

/// The staging directory of run `run_id` under `work_dir`.
pub fn staging_dir(work_dir: &Path, run_id: &str) -> PathBuf {
    work_dir.join(format!("pgkeep-restore-test-{run_id}"))
}

/// This process as an owner label: `<host>/<pid>/<start ticks>`.
pub fn me() -> String {
    let pid = std::process::id();
    format!("{}/{pid}/{}", hostname(), start_ticks(pid).unwrap_or(0))
}

/// Whether `owner` (see [`me`]) still runs. An owner on another host is assumed alive: only
/// its deadline (`pgkeep.expires`) lets a sweep remove what it created.
pub fn owner_alive(owner: &str) -> bool {
    let mut it = owner.split('/');
    let (Some(host), Some(pid), Some(ticks)) = (it.next(), it.next(), it.next()) else {
        return false;
    };
    if host != hostname() {
        return true;
    }
    let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
        return false;
    };
    start_ticks(pid) == Some(ticks)
}

/// A sandbox's deadline label (`pgkeep.expires`, RFC 3339): after it, whoever created the
/// sandbox has given up on it (the drill's timeout plus a margin), so any sweep may remove it.
pub const EXPIRES_LABEL: &str = "pgkeep.expires";

/// The hostname (the container id inside a container).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat): with
/// the pid, it names one process even after the pid is reused.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Runs `sql` through tokio-postgres's simple query protocol: every column as text.
pub(crate) async fn simple_query(
    config: &tokio_postgres::Config,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>> {
    use pgkeep::error::{Error, ErrorKind};
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        Error::new(
            ErrorKind::Postgres,
            format!("cannot connect to the sandbox: {e}"),
        )
    })?;
    let task = tokio::spawn(conn);
    let result = client.simple_query(sql).await;
    drop(client);
    let _ = task.await;
    let messages = result.map_err(|e| {
        let text = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        Error::new(ErrorKind::Postgres, text)
    })?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect())
}

/// The sandbox the configuration names, for a backup of PostgreSQL `major`.
pub async fn create(
    cfg: &pgkeep::config::RestoreTestConfig,
    run_id: &str,
    major: u32,
) -> Result<Box<dyn Sandbox>> {
    use pgkeep::config::SandboxKind;
    Ok(match cfg.sandbox {
        SandboxKind::Local => Box::new(local::Local::create(cfg, run_id, major).await?),
        SandboxKind::Container => Box::new(container::Container::create(cfg, run_id, major).await?),
    })
}

/// Removes the leftovers of crashed drills: local sandboxes and staging directories, and
/// labelled containers when the sandbox kind is `container`. With `mine`, also what this
/// process created (a daemon shutting down).
pub async fn sweep(cfg: &pgkeep::config::RestoreTestConfig, mine: bool) -> Result<()> {
    local::sweep(cfg, mine).await?;
    if cfg.sandbox == pgkeep::config::SandboxKind::Container {
        container::sweep(cfg, mine).await?;
    }
    Ok(())
}

/// `value` single-quoted for a POSIX shell (pg_ctl's `-o` goes through one).
pub fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The `-o` string of pg_ctl for `settings`: ` -c name='value'` each. Names are PostgreSQL
/// identifiers (letters, digits, `_`, `.` for extensions' settings): anything else is refused
/// rather than quoted.
pub fn postgres_options(settings: &[(String, String)]) -> Result<String> {
    use pgkeep::error::{Error, ErrorKind};
    let mut out = Vec::with_capacity(settings.len());
    for (name, value) in settings {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !ok {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("invalid server setting name '{name}'"),
            )
            .hint("a setting's name is letters, digits, '_' and '.' (as in postgresql.conf)"));
        }
        out.push(format!("-c {name}={}", sh_quote(value)));
    }
    Ok(out.join(" "))
}
