//! The container sandbox: a throwaway container from `image` (PostgreSQL of the backup's
//! major), driven through the Docker Engine API with bollard, so Docker (production) and
//! Podman's compatible service (tests, `podman system service`) work alike.
//!
//! The data reaches the container by the API's archive upload (a tar streamed from the local
//! staging directory into `/var/lib/pgkeep-sandbox`), not by a bind mount: pgkeepd may itself
//! run in a container and share no host path with the engine. The container has no network
//! (`network = "none"` by default): the server listens on no TCP port, the WAL to replay is
//! staged, and every check goes through `exec` (psql over the server's private unix socket).
//!
//! Errors, for the drill's report:
//! - the engine cannot be reached or does not answer in time: `Unreachable`;
//! - the image is missing: `Config`, hinting at `scripts/sandbox-image.sh <major>`;
//! - the engine refuses a request (400): `Config`; names it does not know (404): `NotFound`;
//!   a name already taken (409): `Conflict`; its other failures: `Unreachable`;
//! - `query`: psql cannot connect (the server is not up, or still starting / recovering):
//!   `Unreachable`, so a caller polls on it; the server runs the SQL and reports an error:
//!   `Postgres` (whether that means damage is the drill's call);
//! - a command in the container (chown, pg_ctl) fails: `Postgres`, with the log's tail.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use pgkeep::config::RestoreTestConfig;
use pgkeep::error::{Error, ErrorKind, Result};

use super::{
    EXPIRES_LABEL, LABEL, OWNER_LABEL, Sandbox, me, owner_alive, postgres_options, staging_dir,
};

/// Where the staged data and WAL land inside the container.
pub const ROOT_INSIDE: &str = "/var/lib/pgkeep-sandbox";
/// The data directory inside the container.
pub const DATA_DIR_INSIDE: &str = "/var/lib/pgkeep-sandbox/data";
/// The WAL to replay inside the container (what restore_command copies from).
pub const WAL_DIR_INSIDE: &str = "/var/lib/pgkeep-sandbox/wal";
/// The server's private socket directory (0700, postgres): the drill passes it as
/// `unix_socket_directories`, and `query` connects there.
pub const SOCKET_DIR_INSIDE: &str = "/var/lib/pgkeep-sandbox/run";
/// The server's log (pg_ctl -l).
pub const LOG_INSIDE: &str = "/var/lib/pgkeep-sandbox/postgres.log";
/// Every container's name starts so: `pgkeep-rt-<run id>`, `...-keep-<unix seconds>` once kept.
pub const NAME_PREFIX: &str = "pgkeep-rt-";

/// One API call (create, start, inspect, rename, ...) answers within this, or fails.
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// How much later than the drill's timeout a sandbox counts as abandoned (EXPIRES_LABEL).
const EXPIRY_MARGIN: Duration = Duration::from_secs(600);
/// psql's NULL marker (`-P null=`), and its field and record separators.
const NULL_MARK: &str = "\u{1}";
const FIELD_SEP: &str = "\u{1f}";
const RECORD_SEP: &str = "\u{1e}";
/// Tar chunks in flight between the archive builder and the upload (bounded memory).
const CHUNK: usize = 256 * 1024;
const CHUNKS_IN_FLIGHT: usize = 8;
/// How often a container list that does not decode is asked for (see `list_on`).
const LIST_ATTEMPTS: u32 = 10;

pub struct Container {
    /// The role the checks connect as.
    superuser: String,
    docker: Docker,
    /// The endpoint, for messages.
    host: String,
    image: String,
    major: u32,
    run_id: String,
    name: String,
    staging: PathBuf,
    network: String,
    memory_mib: u64,
    cpus: f64,
    /// The drill's whole timeout: bounds an upload and each exec.
    timeout: Duration,
    /// The container's id once `start` created it.
    id: Option<String>,
}

/// What one command run in the container gave.
struct ExecOutput {
    code: i64,
    stdout: String,
    stderr: String,
}

/// The Docker Engine API client for `cfg`: `docker_host`, else DOCKER_HOST, else the local
/// default socket; its API version negotiated with the engine (bollard speaks 1.53 by default,
/// older engines refuse a newer version than theirs; Podman 4.3 reports 1.41).
pub async fn connect(cfg: &RestoreTestConfig) -> Result<(Docker, String)> {
    let host = cfg
        .docker_host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()));
    let shown = host
        .clone()
        .unwrap_or_else(|| "the default socket (unix:///var/run/docker.sock)".into());
    let hint = || {
        format!(
            "is the Docker engine (or `podman system service`) running and serving {shown}? \
             set restore_test.docker_host to its endpoint"
        )
    };
    let docker = match &host {
        Some(h) => Docker::connect_with_host(h),
        None => Docker::connect_with_local_defaults(),
    }
    .map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot use the container engine at {shown}: {e}"),
        )
        .hint(hint())
    })?
    .with_timeout(API_TIMEOUT);
    let docker = match tokio::time::timeout(API_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!("cannot reach the container engine at {shown}: {e}"),
            )
            .hint(hint()));
        }
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!("the container engine at {shown} did not answer within {API_TIMEOUT:?}"),
            )
            .hint(hint()));
        }
    };
    Ok((docker, shown))
}

/// The engine answers and holds the sandbox image of `major` (`restore_test.image`): the
/// client, the engine's address and the image's name. What a drill checks first, and what
/// `pgkeepd check` reports.
pub async fn engine_with_image(
    cfg: &RestoreTestConfig,
    major: u32,
) -> Result<(Docker, String, String)> {
    let (docker, host) = connect(cfg).await?;
    let image = RestoreTestConfig::for_major(&cfg.image, major);
    match docker.inspect_image(&image).await {
        Ok(_) => Ok((docker, host, image)),
        Err(EngineError::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(Error::new(
            ErrorKind::Config,
            format!("the image {image} (PostgreSQL {major}) is not on the engine at {host}"),
        )
        .hint(format!(
            "build it with scripts/sandbox-image.sh {major}, or pull it \
             (docker pull / podman pull {image}); restore_test.image names it"
        ))),
        Err(e) => Err(engine_err(&format!("inspect image {image}"), &host, e)),
    }
}

/// An engine error while doing `what`, as pgkeep's (see the module's list of kinds).
fn engine_err(what: &str, host: &str, e: EngineError) -> Error {
    match &e {
        EngineError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let kind = match status_code {
                400 => ErrorKind::Config,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                _ => ErrorKind::Unreachable,
            };
            Error::new(
                kind,
                format!("cannot {what}: the engine at {host} answered {status_code}: {message}"),
            )
        }
        EngineError::RequestTimeoutError => Error::new(
            ErrorKind::Unreachable,
            format!("cannot {what}: the engine at {host} did not answer in time"),
        ),
        _ => Error::new(
            ErrorKind::Unreachable,
            format!("cannot {what}: engine at {host}: {e}"),
        ),
    }
}

/// psql's unaligned output (`-F \x1f -R \x1e -P null=\x01`, tuples only) as rows. No output
/// is no rows; one trailing newline is psql's, not the data's. A value holding \x1e or \x1f
/// would split wrongly: the drill's checks return booleans, numbers and names.
pub fn parse_rows(stdout: &str) -> Vec<Vec<Option<String>>> {
    if stdout.is_empty() {
        return Vec::new();
    }
    let body = stdout.strip_suffix('\n').unwrap_or(stdout);
    body.split(RECORD_SEP)
        .map(|row| {
            row.split(FIELD_SEP)
                .map(|v| (v != NULL_MARK).then(|| v.to_string()))
                .collect()
        })
        .collect()
}

/// The unix seconds a kept container's name carries (`...-keep-<secs>`), if it is one.
fn keep_until_of(name: &str) -> Option<i64> {
    let (_, ts) = name.rsplit_once("-keep-")?;
    ts.parse().ok()
}

impl Container {
    /// Connects to the engine, checks the image is there, and makes the staging directory
    /// (`data/`, `wal/`, all 0700). The container itself is created by `start`.
    pub async fn create(cfg: &RestoreTestConfig, run_id: &str, major: u32) -> Result<Container> {
        let (docker, host, image) = engine_with_image(cfg, major).await?;
        let staging = staging_dir(&cfg.work_dir, run_id);
        for dir in [staging.clone(), staging.join("data"), staging.join("wal")] {
            make_private_dir(&dir)?;
        }
        // Who made this staging copy of production data: the local sweep removes it once this
        // process is gone (or at its shutdown).
        super::local::write_owner(&staging, &super::local::OwnerFile::new(cfg))?;
        Ok(Container {
            docker,
            host,
            image,
            major,
            run_id: run_id.to_string(),
            name: format!("{NAME_PREFIX}{run_id}"),
            staging,
            network: cfg.network.clone(),
            memory_mib: cfg.memory_mib,
            cpus: cfg.cpus,
            timeout: cfg.timeout,
            superuser: cfg.superuser.clone(),
            id: None,
        })
    }

    /// The container's name (`pgkeep-rt-<run id>`, until `remove` keeps it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run id this sandbox belongs to.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    fn bin(&self, tool: &str) -> String {
        format!("/usr/lib/postgresql/{}/bin/{tool}", self.major)
    }

    fn id(&self) -> Result<&str> {
        self.id.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Internal,
                format!("container sandbox {} used before start", self.name),
            )
        })
    }

    /// Creates and starts the container (labels, limits, no network), sleeping until used.
    async fn create_container(&mut self) -> Result<String> {
        let expires = Utc::now()
            + chrono::Duration::from_std(self.timeout + EXPIRY_MARGIN)
                .unwrap_or(chrono::Duration::days(1));
        let labels = HashMap::from([
            (LABEL.to_string(), self.run_id.clone()),
            (OWNER_LABEL.to_string(), me()),
            (
                EXPIRES_LABEL.to_string(),
                expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        ]);
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            // coreutils' sleep (in every Debian image): PID 1 that waits for the exec's.
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            labels: Some(labels),
            network_disabled: None,
            host_config: Some(HostConfig {
                network_mode: Some(self.network.clone()),
                memory: Some((self.memory_mib * 1024 * 1024) as i64),
                nano_cpus: Some((self.cpus * 1e9) as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&self.name)
            .build();
        let created = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| {
                engine_err(
                    &format!("create container {} from {}", self.name, self.image),
                    &self.host,
                    e,
                )
            })?;
        let id = created.id;
        self.id = Some(id.clone());
        self.docker
            .start_container(&id, None)
            .await
            .map_err(|e| engine_err(&format!("start container {}", self.name), &self.host, e))?;
        Ok(id)
    }

    /// Streams `staging/{data,wal}` as a tar into the container's /var/lib (entries under
    /// `pgkeep-sandbox/`): built on a blocking thread, at most CHUNK * CHUNKS_IN_FLIGHT bytes
    /// in memory, however large the data directory.
    async fn upload(&self, id: &str) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
        let staging = self.staging.clone();
        let builder = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let sender = tx.clone();
            let result = (|| {
                let mut tar = tar::Builder::new(ChannelWriter {
                    tx: sender,
                    buf: Vec::with_capacity(CHUNK),
                });
                tar.follow_symlinks(false);
                tar.append_dir_all("pgkeep-sandbox/data", staging.join("data"))?;
                tar.append_dir_all("pgkeep-sandbox/wal", staging.join("wal"))?;
                let mut w = tar.into_inner()?;
                w.flush_chunk()
            })();
            if let Err(e) = &result {
                // Fails the request body, so a half-built archive is never taken for whole.
                let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            result
        });
        let body = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        let opts = UploadToContainerOptionsBuilder::default()
            .path("/var/lib")
            .build();
        let docker = self.docker.clone().with_timeout(self.timeout);
        let upload = tokio::time::timeout(
            self.timeout,
            docker.upload_to_container(id, Some(opts), bollard::body_try_stream(body)),
        )
        .await;
        let built = builder.await;
        let what = format!(
            "upload {} into container {}:{ROOT_INSIDE}",
            self.staging.display(),
            self.name
        );
        let upload_failed = |upload: std::result::Result<_, _>| match upload {
            Ok(Err(e)) => engine_err(&what, &self.host, e),
            _ => Error::new(
                ErrorKind::Unreachable,
                format!("cannot {what}: not done within {:?}", self.timeout),
            ),
        };
        match (built, upload) {
            (Ok(Ok(())), Ok(Ok(()))) => Ok(()),
            (Ok(Ok(())), upload) => Err(upload_failed(upload)),
            // The upload stopped reading (the builder saw a broken pipe): the upload says why.
            (Ok(Err(e)), upload)
                if e.kind() == std::io::ErrorKind::BrokenPipe && !matches!(upload, Ok(Ok(()))) =>
            {
                Err(upload_failed(upload))
            }
            (Ok(Err(e)), _) => Err(Error::new(
                ErrorKind::Io,
                format!("cannot {what}: reading the staged files failed: {e}"),
            )
            .hint("check the staging directory: permissions, files removed while uploading")
            .source(e)),
            (Err(e), _) => Err(Error::new(
                ErrorKind::Internal,
                format!("cannot {what}: the archive builder failed: {e}"),
            )),
        }
    }

    /// Runs `cmd` in the container as `user`; its exit code and output, bounded by the
    /// drill's timeout.
    async fn exec(&self, user: &str, cmd: Vec<String>) -> Result<ExecOutput> {
        let id = self.id()?;
        let what = format!("run `{}` in container {}", cmd.join(" "), self.name);
        let run = async {
            let created = self
                .docker
                .create_exec(
                    id,
                    CreateExecOptions {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        user: Some(user.to_string()),
                        cmd: Some(cmd.clone()),
                        env: Some(vec!["LC_ALL=C.UTF-8".to_string()]),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| engine_err(&what, &self.host, e))?;
            let started = self
                .docker
                .start_exec(&created.id, None::<StartExecOptions>)
                .await
                .map_err(|e| engine_err(&what, &self.host, e))?;
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            if let StartExecResults::Attached { mut output, .. } = started {
                while let Some(item) = output.next().await {
                    match item.map_err(|e| engine_err(&what, &self.host, e))? {
                        bollard::container::LogOutput::StdErr { message } => {
                            stderr.extend_from_slice(&message)
                        }
                        other => stdout.extend_from_slice(&other.into_bytes()),
                    }
                }
            }
            // The output ends a moment before the engine records the exit code.
            let code = loop {
                let inspected = self
                    .docker
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| engine_err(&what, &self.host, e))?;
                match (inspected.running, inspected.exit_code) {
                    (Some(true), _) | (_, None) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    (_, Some(code)) => break code,
                }
            };
            Ok(ExecOutput {
                code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Unreachable,
                    format!("cannot {what}: not done within {:?}", self.timeout),
                ))
            })
    }

    /// `exec` that must exit 0; otherwise a `Postgres` error with its stderr and the log's tail.
    async fn exec_ok(&self, user: &str, cmd: Vec<String>) -> Result<ExecOutput> {
        let shown = cmd.join(" ");
        let out = self.exec(user, cmd).await?;
        if out.code != 0 {
            let tail = self.log_tail(20).await;
            return Err(Error::new(
                ErrorKind::Postgres,
                format!(
                    "`{shown}` in container {} exited {}: {}{}",
                    self.name,
                    out.code,
                    out.stderr.trim(),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!("; server log:\n{tail}")
                    }
                ),
            ));
        }
        Ok(out)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), if it runs.
    async fn stop_server(&self) -> Result<()> {
        if self.alive().await {
            self.exec_ok(
                "postgres",
                vec![
                    self.bin("pg_ctl"),
                    "stop".into(),
                    "-D".into(),
                    DATA_DIR_INSIDE.into(),
                    "-m".into(),
                    "immediate".into(),
                ],
            )
            .await?;
        }
        Ok(())
    }

    fn remove_staging(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.staging) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &self.staging, e)),
        }
    }
}

/// `dir` created (parents too) and set to 0700.
fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("set the mode of", dir, e))
}

/// A `Write` that hands CHUNK-sized pieces to the upload; blocks while CHUNKS_IN_FLIGHT wait.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the upload stopped reading the archive",
            )
        })
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[async_trait]
impl Sandbox for Container {
    fn kind(&self) -> &'static str {
        "container"
    }

    fn runs(&self) -> String {
        self.image.clone()
    }

    fn staging(&self) -> &Path {
        &self.staging
    }

    fn data_dir_inside(&self) -> String {
        DATA_DIR_INSIDE.into()
    }

    fn socket_dir_inside(&self) -> String {
        SOCKET_DIR_INSIDE.to_string()
    }

    fn wal_dir_inside(&self) -> String {
        WAL_DIR_INSIDE.into()
    }

    async fn start(&mut self, settings: &[(String, String)]) -> Result<()> {
        let options = postgres_options(settings)?;
        let id = self.create_container().await?;
        self.upload(&id).await?;
        let root_setup = format!(
            "chown -R postgres:postgres {ROOT_INSIDE} && chmod 700 {DATA_DIR_INSIDE} && \
             mkdir -p -m 700 {SOCKET_DIR_INSIDE} && chown postgres:postgres {SOCKET_DIR_INSIDE}"
        );
        self.exec_ok("root", vec!["sh".into(), "-c".into(), root_setup])
            .await?;
        self.exec_ok(
            "postgres",
            vec![
                self.bin("pg_ctl"),
                "start".into(),
                "-W".into(),
                "-D".into(),
                DATA_DIR_INSIDE.into(),
                "-l".into(),
                LOG_INSIDE.into(),
                "-o".into(),
                options,
            ],
        )
        .await?;
        Ok(())
    }

    async fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>> {
        let out = self
            .exec(
                "postgres",
                vec![
                    self.bin("psql"),
                    "-X".into(),
                    "-A".into(),
                    "-t".into(),
                    "-q".into(),
                    "-v".into(),
                    "ON_ERROR_STOP=1".into(),
                    "-h".into(),
                    SOCKET_DIR_INSIDE.into(),
                    "-U".into(),
                    self.superuser.clone(),
                    "-d".into(),
                    db.into(),
                    "-F".into(),
                    FIELD_SEP.into(),
                    "-R".into(),
                    RECORD_SEP.into(),
                    "-P".into(),
                    format!("null={NULL_MARK}"),
                    "-c".into(),
                    sql.into(),
                ],
            )
            .await?;
        if out.code == 0 {
            return Ok(parse_rows(&out.stdout));
        }
        let first = out.stderr.lines().next().unwrap_or("").trim().to_string();
        // psql: 2 is "the connection to the server went bad" (not up, starting, recovering).
        let kind = if out.code == 2 {
            ErrorKind::Unreachable
        } else {
            ErrorKind::Postgres
        };
        Err(Error::new(
            kind,
            format!(
                "query in database '{db}' of container {} failed (psql exit {}): {first}",
                self.name, out.code
            ),
        ))
    }

    async fn alive(&self) -> bool {
        let cmd = vec![
            self.bin("pg_ctl"),
            "status".into(),
            "-D".into(),
            DATA_DIR_INSIDE.into(),
        ];
        matches!(self.exec("postgres", cmd).await, Ok(out) if out.code == 0)
    }

    async fn log_tail(&self, lines: usize) -> String {
        let cmd = vec![
            "tail".into(),
            "-n".into(),
            lines.to_string(),
            LOG_INSIDE.into(),
        ];
        match self.exec("root", cmd).await {
            Ok(out) if out.code == 0 => out.stdout.trim_end().to_string(),
            Ok(out) => format!("(no server log: {})", out.stderr.trim()),
            Err(e) => format!("(no server log: {})", e.one_line()),
        }
    }

    async fn remove(&mut self, keep_until: Option<DateTime<Utc>>) -> Result<()> {
        let Some(id) = self.id.clone() else {
            // Never started: only the staging directory exists.
            return self.remove_staging();
        };
        match keep_until {
            None => {
                let opts = RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build();
                match self.docker.remove_container(&id, Some(opts)).await {
                    Ok(())
                    | Err(EngineError::DockerResponseServerError {
                        status_code: 404, ..
                    }) => {}
                    Err(e) => {
                        return Err(engine_err(
                            &format!("remove container {}", self.name),
                            &self.host,
                            e,
                        ));
                    }
                }
                self.id = None;
            }
            Some(until) => {
                self.stop_server().await?;
                let stop = StopContainerOptionsBuilder::default().t(0).build();
                match self.docker.stop_container(&id, Some(stop)).await {
                    // 304: already stopped.
                    Ok(())
                    | Err(EngineError::DockerResponseServerError {
                        status_code: 304, ..
                    }) => {}
                    Err(e) => {
                        return Err(engine_err(
                            &format!("stop container {}", self.name),
                            &self.host,
                            e,
                        ));
                    }
                }
                // Labels are fixed at creation: the deadline goes into the name.
                let kept = format!("{NAME_PREFIX}{}-keep-{}", self.run_id, until.timestamp());
                let opts = RenameContainerOptionsBuilder::default().name(&kept).build();
                self.docker.rename_container(&id, opts).await.map_err(|e| {
                    engine_err(
                        &format!("rename container {} to {kept}", self.name),
                        &self.host,
                        e,
                    )
                })?;
                self.name = kept;
            }
        }
        // A kept container holds the data: the local copy goes either way.
        self.remove_staging()
    }
}

/// A container carrying LABEL, as listed.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    /// Without the API's leading '/'.
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// Every container (any state) carrying LABEL on the engine `cfg` names.
pub async fn list(cfg: &RestoreTestConfig) -> Result<Vec<Listed>> {
    let (docker, host) = connect(cfg).await?;
    list_on(&docker, &host).await
}

async fn list_on(docker: &Docker, host: &str) -> Result<Vec<Listed>> {
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&HashMap::from([("label", vec![LABEL])]))
        .build();
    // Podman 4.3 lists a container caught between its stop and its clean-up in state
    // `stopped`, which is not Docker's and which bollard cannot decode: that passes within
    // moments, so an answer that does not decode is asked again a few times.
    let mut attempt = 0;
    let summaries = loop {
        attempt += 1;
        match docker.list_containers(Some(opts.clone())).await {
            Ok(list) => break list,
            Err(EngineError::JsonDataError { message, .. }) if attempt < LIST_ATTEMPTS => {
                tracing::debug!(%message, "container list not decodable yet, asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(engine_err("list restore-test containers", host, e)),
        }
    };
    Ok(summaries
        .into_iter()
        .filter_map(|c| {
            let id = c.id?;
            let labels = c.labels.unwrap_or_default();
            labels.contains_key(LABEL).then(|| Listed {
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| id.clone()),
                id,
                labels,
            })
        })
        .collect())
}

/// Removes what crashed or finished drills left on the engine, of any owner: containers with
/// LABEL that are kept (`-keep-<ts>`) past their time, or not kept and whose owner is gone
/// (OWNER_LABEL, see `owner_alive`) or whose deadline (EXPIRES_LABEL) passed. A container kept
/// until a future time stays. With `mine`, also those this process created (it is shutting
/// down, so none of them still serves a drill). Local staging directories are the local
/// sandbox's sweep's. Returns the names removed.
pub async fn sweep(cfg: &RestoreTestConfig, mine: bool) -> Result<Vec<String>> {
    let (docker, host) = connect(cfg).await?;
    let listed = list_on(&docker, &host).await?;
    let now = Utc::now();
    let mut removed = Vec::new();
    for Listed { id, name, labels } in listed {
        let stale = match keep_until_of(&name) {
            Some(ts) => ts <= now.timestamp(),
            None => {
                let owner_gone = labels
                    .get(OWNER_LABEL)
                    .is_none_or(|o| !owner_alive(o) || (mine && *o == super::me()));
                let expired = labels
                    .get(EXPIRES_LABEL)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t <= now);
                owner_gone || expired
            }
        };
        if !stale {
            continue;
        }
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(opts)).await {
            Ok(())
            | Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                tracing::info!(container = %name, "removed a leftover restore-test sandbox");
                removed.push(name);
            }
            Err(e) => return Err(engine_err(&format!("remove container {name}"), &host, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_single_quoted() {
        let s = vec![
            ("listen_addresses".to_string(), String::new()),
            ("recovery_target_name".to_string(), "it's".to_string()),
            ("restore_command".to_string(), "cp /w/%f \"%p\"".to_string()),
        ];
        assert_eq!(
            postgres_options(&s).expect("options"),
            r#"-c listen_addresses='' -c recovery_target_name='it'\''s' -c restore_command='cp /w/%f "%p"'"#
        );
        let bad = vec![("a b".to_string(), "x".to_string())];
        assert_eq!(
            postgres_options(&bad).expect_err("bad name").kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn rows_nulls_and_empties() {
        assert!(parse_rows("").is_empty());
        assert_eq!(parse_rows("\n"), vec![vec![Some(String::new())]]);
        assert_eq!(
            parse_rows("1\u{1f}\u{1}\u{1e}2\u{1f}b\n"),
            vec![
                vec![Some("1".into()), None],
                vec![Some("2".into()), Some("b".into())]
            ]
        );
    }

    #[test]
    fn kept_names() {
        assert_eq!(
            keep_until_of("pgkeep-rt-abc-keep-1700000000"),
            Some(1700000000)
        );
        assert_eq!(keep_until_of("pgkeep-rt-abc"), None);
        assert_eq!(keep_until_of("pgkeep-rt-abc-keep-x"), None);
    }
}
