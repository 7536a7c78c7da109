//! The local sandbox: the staging directory is the server's (`data/`, `wal/`, a private socket
//! directory `run/`, the log `postgres.log`), started with `pg_ctl` from the bin dir of the
//! backup's major. Run as `restore_test.os_user` when pgkeepd is root (PostgreSQL refuses to
//! run as root). The drill talks to it over the unix socket in `run/` (mode 0700): the server
//! listens on no TCP address. An `owner` file says who created it and until when it is
//! wanted, so a sweep can remove the leftovers of a crashed drill.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;

use pgkeep::config::RestoreTestConfig;
use pgkeep::error::{Error, ErrorKind, Result};

use super::{Sandbox, me, owner_alive, staging_dir};

/// The port in the socket file's name (`.s.PGSQL.5432`): the directory is private, so the
/// number cannot collide with another server.
pub const PORT: u16 = 5432;
/// How long `pg_ctl stop` gets before the postmaster is killed.
const STOP_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Local {
    bin_dir: PathBuf,
    dir: PathBuf,
    /// Run the server as this user (pgkeepd is root), else as ourselves.
    user: Option<String>,
    superuser: String,
    started: bool,
}

/// What the `owner` file says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct OwnerFile {
    owner: String,
    /// Past this, the drill gave up on the sandbox.
    expires: chrono::DateTime<chrono::Utc>,
    /// A failed sandbox kept for inspection until then.
    #[serde(default)]
    keep_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl OwnerFile {
    /// This process, until the drill's deadline and a margin.
    pub(super) fn new(cfg: &RestoreTestConfig) -> OwnerFile {
        OwnerFile {
            owner: me(),
            expires: chrono::Utc::now() + cfg.timeout + Duration::from_secs(600),
            keep_until: None,
        }
    }
}

impl Local {
    pub async fn create(cfg: &RestoreTestConfig, run_id: &str, major: u32) -> Result<Local> {
        let bin_dir = PathBuf::from(RestoreTestConfig::for_major(&cfg.bin_dir, major));
        for program in ["pg_ctl", "postgres"] {
            if !bin_dir.join(program).is_file() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("no {program} in {} for PostgreSQL {major}", bin_dir.display()),
                )
                .hint(format!(
                    "install PostgreSQL {major}'s server, or set restore_test.bin_dir (\"{{major}}\" is replaced)"
                )));
            }
        }
        let dir = staging_dir(&cfg.work_dir, run_id);
        // PostgreSQL refuses a unix socket path longer than 107 bytes (sun_path).
        let socket = dir.join("run").join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > 107 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "restore_test.work_dir {} is too long: the sandbox's socket {} would exceed PostgreSQL's 107 bytes",
                    cfg.work_dir.display(),
                    socket.display()
                ),
            )
            .hint("set restore_test.work_dir to a shorter path (at most about 45 characters)"));
        }
        for sub in ["data", "wal", "run"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| Error::io("create", &dir, e))?;
        }
        write_owner(&dir, &OwnerFile::new(cfg))?;
        let user = is_root().then(|| cfg.os_user.clone());
        Ok(Local {
            bin_dir,
            dir,
            user,
            superuser: cfg.superuser.clone(),
            started: false,
        })
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `pg_ctl` with `args`, as the server's user.
    fn pg_ctl(&self, args: &[&str]) -> Command {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let mut c = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&pg_ctl);
                c
            }
            None => Command::new(&pg_ctl),
        };
        // Nothing of pgkeepd's environment (store credentials, PGKEEP_*) reaches the server:
        // the restored database's code could read it from /proc/self/environ.
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC");
        c.args(args).stdin(Stdio::null()).kill_on_drop(true);
        c
    }
}

#[async_trait]
impl Sandbox for Local {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn runs(&self) -> String {
        self.bin_dir.display().to_string()
    }

    fn staging(&self) -> &Path {
        &self.dir
    }

    fn data_dir_inside(&self) -> String {
        self.data().display().to_string()
    }

    fn wal_dir_inside(&self) -> String {
        self.dir.join("wal").display().to_string()
    }

    fn socket_dir_inside(&self) -> String {
        self.dir.join("run").display().to_string()
    }

    async fn start(&mut self, settings: &[(String, String)]) -> Result<()> {
        if let Some(u) = &self.user {
            run(
                Command::new("chown").args(["-R", u]).arg(&self.dir),
                "chown the sandbox",
            )
            .await?;
        }
        run(
            Command::new("chmod")
                .args(["0700"])
                .arg(&self.dir)
                .arg(self.data())
                .arg(self.dir.join("run")),
            "chmod the sandbox",
        )
        .await?;
        let options = super::postgres_options(settings)?;
        let data = self.data_dir_inside();
        let log = self.dir.join("postgres.log").display().to_string();
        // Set before pg_ctl runs: a drill cut off meanwhile must still stop what it started.
        self.started = true;
        let out = self
            .pg_ctl(&["start", "-W", "-D", &data, "-l", &log, "-o", &options])
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Postgres,
                    "pg_ctl start did not return within 60 s",
                )
            })?
            .map_err(|e| Error::io("run", &self.bin_dir.join("pg_ctl"), e))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Postgres,
                format!(
                    "pg_ctl start failed: {} {}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.log_tail(5).await
                ),
            ));
        }
        // pg_ctl -W returns before the postmaster writes its pid file: until then `alive` could
        // not tell a starting server from a dead one.
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.alive().await {
                return Ok(());
            }
            let log = self.log_tail(20).await;
            if log.contains("FATAL") || std::time::Instant::now() >= until {
                return Err(Error::new(
                    ErrorKind::Postgres,
                    format!(
                        "the sandbox server did not start: {}",
                        log.replace('\n', " | ")
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut c = tokio_postgres::Config::new();
        c.host_path(self.dir.join("run"))
            .port(PORT)
            .user(&self.superuser)
            .dbname(db)
            .connect_timeout(Duration::from_secs(10));
        super::simple_query(&c, sql).await
    }

    async fn alive(&self) -> bool {
        postmaster_pid(&self.data()).is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    async fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn remove(&mut self, keep_until: Option<chrono::DateTime<chrono::Utc>>) -> Result<()> {
        if self.started {
            stop(self, &self.data()).await;
        }
        match keep_until {
            Some(t) => {
                let mut owner = read_owner(&self.dir).unwrap_or(OwnerFile {
                    owner: me(),
                    expires: t,
                    keep_until: None,
                });
                owner.keep_until = Some(t);
                write_owner(&self.dir, &owner)
            }
            None => remove_dir(&self.dir),
        }
    }
}

/// Stops the server in `data` at once (immediate shutdown), killing it when that does not
/// work within [`STOP_WAIT`].
async fn stop(local: &Local, data: &Path) {
    let pid = postmaster_pid(data);
    let d = data.display().to_string();
    let stopped = tokio::time::timeout(
        STOP_WAIT,
        local
            .pg_ctl(&["stop", "-D", &d, "-m", "immediate", "-w"])
            .output(),
    )
    .await;
    if !matches!(stopped, Ok(Ok(ref o)) if o.status.success()) {
        kill_postmaster(data).await;
    }
    if let Some(pid) = pid {
        gone(pid).await;
    }
}

/// Waits (bounded) until process `pid` has exited, so no server process still writes into the
/// directory about to be removed.
async fn gone(pid: u32) {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let until = std::time::Instant::now() + STOP_WAIT;
    while proc.exists() && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGKILL to the postmaster named in `data/postmaster.pid` (its children exit with it) —
/// only when that process really is a server of this data directory (its working directory):
/// after a reboot the pid may name any process.
async fn kill_postmaster(data: &Path) {
    let ours = |pid: u32| {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        let data = std::fs::canonicalize(data).ok();
        cwd.is_some() && cwd == data
    };
    if let Some(pid) = postmaster_pid(data).filter(|&p| ours(p)) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .await;
    }
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Removes the leftovers of crashed drills in `work_dir`: sandboxes whose owner is gone or whose
/// deadline passed, and kept failed ones whose time is up; with `mine`, also those this
/// process created (it is shutting down). Returns the directories removed.
pub async fn sweep(cfg: &RestoreTestConfig, mine: bool) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(&cfg.work_dir) else {
        return Ok(removed);
    };
    let now = chrono::Utc::now();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("pgkeep-restore-test-") || !entry.path().is_dir() {
            continue;
        }
        let dir = entry.path();
        let leftover = match read_owner(&dir) {
            Some(o) => match o.keep_until {
                Some(t) => t <= now,
                None => !owner_alive(&o.owner) || o.expires <= now || (mine && o.owner == me()),
            },
            // No owner file: created and abandoned within an instant, or not ours to judge
            // yet; removed once it is older than a drill can last.
            None => entry.metadata().and_then(|m| m.modified()).is_ok_and(|m| {
                m.elapsed().unwrap_or_default() > cfg.timeout + Duration::from_secs(600)
            }),
        };
        if leftover {
            kill_postmaster(&dir.join("data")).await;
            remove_dir(&dir)?;
            tracing::info!(
                "restore test: removed the leftover sandbox {}",
                dir.display()
            );
            removed.push(dir);
        }
    }
    Ok(removed)
}

fn read_owner(dir: &Path) -> Option<OwnerFile> {
    serde_json::from_slice(&std::fs::read(dir.join("owner")).ok()?).ok()
}

pub(super) fn write_owner(dir: &Path, o: &OwnerFile) -> Result<()> {
    let path = dir.join("owner");
    let json = serde_json::to_vec(o).unwrap_or_default();
    std::fs::write(&path, json).map_err(|e| Error::io("write", &path, e))
}

/// Removes `dir`; a few tries, since a server's last child may still be closing files in it.
fn remove_dir(dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(Error::io("remove", dir, e)),
        }
    }
}

async fn run(c: &mut Command, what: &str) -> Result<()> {
    let st = c
        .status()
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot {what}: {e}")))?;
    if st.success() {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Io, format!("cannot {what}: {st}")))
    }
}

fn is_root() -> bool {
    // The effective uid, without unsafe code: /proc/self/status's "Uid:" line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
