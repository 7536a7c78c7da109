//! A physical-replication connection (`replication=true`), spoken with postgres-protocol's
//! message codec because tokio-postgres cannot open one: startup, authentication (trust,
//! cleartext, md5, SCRAM-SHA-256), simple queries, `IDENTIFY_SYSTEM`, `TIMELINE_HISTORY`, and
//! `BASE_BACKUP` (see `base_backup`). TCP connections speak TLS as libpq's `sslmode` says
//! (see `tls`); Unix sockets are plain.

pub mod base_backup;
pub mod tls;

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::control::SystemId;
use super::lsn::Lsn;
use super::wal::Timeline;

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A failure on a replication connection, as text for the command layer to classify.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("server error: {0}")]
    Server(String),
    /// The server refused a command whose prerequisites do not hold (SQLSTATE 55000), e.g.
    /// an incremental backup without the WAL summaries it needs.
    #[error("server error: {0}")]
    Prerequisite(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

/// Where and as whom to connect, from a libpq-style connection string.
#[derive(Debug, Clone)]
pub struct ConnParams {
    pub host: Host,
    pub port: u16,
    pub user: String,
    pub password: Option<Vec<u8>>,
    pub tls: tls::TlsParams,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Tcp(String),
    /// The directory holding the server's socket.
    Unix(std::path::PathBuf),
}

impl ConnParams {
    /// Parses `host=... port=... user=... password=...` or a `postgresql://` URL. A missing
    /// password comes from `PGPASSWORD` when `pgpassword` is given, else from the file a
    /// `passfile=PATH` parameter names (libpq's format; how a secret reaches a container).
    pub fn parse(conninfo: &str, pgpassword: Option<&str>) -> Result<Self, String> {
        let (conninfo, passfile) = super::passfile::take_param(conninfo);
        let (conninfo, tls) = tls::split(&conninfo)?;
        let cfg: tokio_postgres::Config = conninfo
            .parse()
            .map_err(|e| format!("invalid connection string: {e}"))?;
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => Host::Tcp(h.clone()),
            Some(tokio_postgres::config::Host::Unix(p)) => Host::Unix(p.clone()),
            None => Host::Unix("/var/run/postgresql".into()),
        };
        let mut params = ConnParams {
            host,
            port: cfg.get_ports().first().copied().unwrap_or(5432),
            user: cfg.get_user().unwrap_or("postgres").to_string(),
            password: cfg
                .get_password()
                .map(<[u8]>::to_vec)
                .or_else(|| pgpassword.map(|p| p.as_bytes().to_vec())),
            tls,
        };
        if let Some(path) = passfile {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read passfile {}: {e}", path.display()))?;
            params.password_from_passfile(&text);
        }
        Ok(params)
    }

    /// Takes a missing password from a libpq password file's text (`.pgpass` format).
    pub fn password_from_passfile(&mut self, text: &str) {
        if self.password.is_some() {
            return;
        }
        let host = match &self.host {
            Host::Tcp(h) => h.as_str(),
            Host::Unix(_) => "localhost",
        };
        self.password = super::passfile::lookup(text, host, self.port, "replication", &self.user)
            .map(String::into_bytes);
    }

    fn describe(&self) -> String {
        match &self.host {
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Unix(d) => format!("{}/.s.PGSQL.{}", d.display(), self.port),
        }
    }
}

/// What `IDENTIFY_SYSTEM` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: SystemId,
    pub timeline: Timeline,
    pub xlog_pos: Lsn,
}

/// An open replication connection.
pub struct ReplConn {
    stream: Pin<Box<dyn Stream>>,
    buf: BytesMut,
    out: BytesMut,
    /// `server_version_num / 10000`, from the startup's ParameterStatus.
    pub server_major: u32,
}

impl std::fmt::Debug for ReplConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplConn(postgresql {})", self.server_major)
    }
}

async fn flush_to(
    stream: &mut (impl AsyncWrite + Unpin + ?Sized),
    out: &mut BytesMut,
) -> Result<(), ReplError> {
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}

/// SSLRequest, then TLS when the server agrees; plain when it refuses and the mode allows.
async fn negotiate_tls(
    mut s: tokio::net::TcpStream,
    host: &str,
    p: &ConnParams,
) -> Result<Pin<Box<dyn Stream>>, ReplError> {
    use tls::SslMode;
    if p.tls.mode == SslMode::Disable {
        return Ok(Box::pin(s));
    }
    let mut out = BytesMut::new();
    frontend::ssl_request(&mut out);
    flush_to(&mut s, &mut out).await?;
    let answer = s.read_u8().await?;
    match (answer, p.tls.mode) {
        (b'S', _) => {}
        (b'N', SslMode::Prefer) => return Ok(Box::pin(s)),
        (b'N', _) => {
            return Err(ReplError::Connect(
                p.describe(),
                std::io::Error::other("the server does not accept TLS and sslmode requires it"),
            ));
        }
        (other, _) => {
            return Err(ReplError::Protocol(format!(
                "unexpected answer {other:#x} to SSLRequest"
            )));
        }
    }
    let config = tls::client_config(&p.tls)
        .map_err(|e| ReplError::Connect(p.describe(), std::io::Error::other(e)))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ReplError::Connect(p.describe(), std::io::Error::other(e)))?;
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, s)
        .await
        .map_err(|e| ReplError::Connect(format!("{} (tls)", p.describe()), e))?;
    Ok(Box::pin(stream))
}

impl ReplConn {
    pub async fn connect(p: &ConnParams) -> Result<ReplConn, ReplError> {
        let stream: Pin<Box<dyn Stream>> = match &p.host {
            Host::Tcp(h) => {
                let s = tokio::net::TcpStream::connect((h.as_str(), p.port))
                    .await
                    .map_err(|e| ReplError::Connect(p.describe(), e))?;
                s.set_nodelay(true)?;
                negotiate_tls(s, h, p).await?
            }
            Host::Unix(dir) => Box::pin(
                tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{}", p.port)))
                    .await
                    .map_err(|e| ReplError::Connect(p.describe(), e))?,
            ),
        };
        let mut c = ReplConn {
            stream,
            buf: BytesMut::with_capacity(1 << 16),
            out: BytesMut::new(),
            server_major: 0,
        };
        let params = [
            ("user", p.user.as_str()),
            ("database", "replication"),
            ("replication", "true"),
            ("application_name", "pgkeep"),
        ];
        frontend::startup_message(params.iter().copied(), &mut c.out)?;
        c.flush().await?;
        c.authenticate(p).await?;
        c.until_ready().await?;
        Ok(c)
    }

    async fn flush(&mut self) -> Result<(), ReplError> {
        flush_to(&mut self.stream, &mut self.out).await
    }

    /// The next backend message.
    pub(crate) async fn recv(&mut self) -> Result<Message, ReplError> {
        loop {
            if let Some(m) = Message::parse(&mut self.buf)? {
                return Ok(m);
            }
            if self.buf.capacity() - self.buf.len() < 1 << 15 {
                self.buf.reserve(1 << 16);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ReplError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    async fn authenticate(&mut self, p: &ConnParams) -> Result<(), ReplError> {
        let password = || {
            p.password.clone().ok_or_else(|| {
                ReplError::Auth(format!(
                    "the server asks a password for user {} and none was given",
                    p.user
                ))
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.recv().await? {
                Message::AuthenticationOk => return Ok(()),
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(&password()?, &mut self.out)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        p.user.as_bytes(),
                        &password()?,
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.out)?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut offered = false;
                    while let Some(m) = mechanisms.next()? {
                        offered |= m == "SCRAM-SHA-256";
                    }
                    if !offered {
                        return Err(ReplError::Auth("the server offers no SCRAM-SHA-256".into()));
                    }
                    let s = ScramSha256::new(&password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut self.out)?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| ReplError::Protocol("unexpected SASL continue".into()))?;
                    s.update(body.data())
                        .map_err(|e| ReplError::Auth(e.to_string()))?;
                    frontend::sasl_response(s.message(), &mut self.out)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| ReplError::Protocol("unexpected SASL final".into()))?;
                    s.finish(body.data())
                        .map_err(|e| ReplError::Auth(e.to_string()))?;
                    continue;
                }
                Message::ErrorResponse(body) => return Err(ReplError::Auth(error_text(&body))),
                _ => {
                    return Err(ReplError::Protocol(
                        "unexpected message during authentication".into(),
                    ));
                }
            }
            self.flush().await?;
        }
    }

    /// Reads until ReadyForQuery, noting the server version on the way.
    async fn until_ready(&mut self) -> Result<(), ReplError> {
        loop {
            match self.recv().await? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ParameterStatus(body) if body.name()? == "server_version" => {
                    self.server_major = body
                        .value()?
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(0);
                }
                Message::ErrorResponse(body) => return Err(ReplError::Server(error_text(&body))),
                _ => {}
            }
        }
    }

    /// Sends a simple query without reading its answer.
    pub(crate) async fn send_query(&mut self, sql: &str) -> Result<(), ReplError> {
        frontend::query(sql, &mut self.out)?;
        self.flush().await
    }

    /// Runs a command that answers with plain result sets; returns all their rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, ReplError> {
        self.send_query(sql).await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.recv().await? {
                Message::DataRow(row) => rows.push(row_text(&row)?),
                Message::ErrorResponse(body) => failed = Some(error_text(&body)),
                Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        match failed {
            Some(e) => Err(ReplError::Server(e)),
            None => Ok(rows),
        }
    }

    /// The value of a server setting (`SHOW name`; allowed on replication connections).
    pub async fn show(&mut self, name: &str) -> Result<Option<String>, ReplError> {
        let rows = self.simple_query(&format!("SHOW {name}")).await?;
        Ok(rows.first().and_then(|r| r.first().cloned().flatten()))
    }

    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplError> {
        let rows = self.simple_query("IDENTIFY_SYSTEM").await?;
        let row = rows
            .first()
            .ok_or_else(|| ReplError::Protocol("IDENTIFY_SYSTEM returned no row".into()))?;
        let field = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let bad =
            |what: &str, e: String| ReplError::Protocol(format!("IDENTIFY_SYSTEM {what}: {e}"));
        Ok(SystemIdentity {
            system_id: field(0).parse().map_err(|e| bad("systemid", e))?,
            timeline: field(1).parse().map_err(|e| bad("timeline", e))?,
            xlog_pos: field(2).parse().map_err(|e| bad("xlogpos", e))?,
        })
    }

    /// The history file of `tli`: its file name and content.
    pub async fn timeline_history(&mut self, tli: Timeline) -> Result<(String, String), ReplError> {
        let rows = self
            .simple_query(&format!("TIMELINE_HISTORY {}", tli.0))
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| ReplError::Protocol("TIMELINE_HISTORY returned no row".into()))?;
        Ok((
            row.first().cloned().flatten().unwrap_or_default(),
            row.get(1).cloned().flatten().unwrap_or_default(),
        ))
    }

    pub async fn close(mut self) {
        frontend::terminate(&mut self.out);
        let _ = self.flush().await;
    }
}

pub(crate) fn row_text(
    row: &postgres_protocol::message::backend::DataRowBody,
) -> Result<Vec<Option<String>>, ReplError> {
    let buf: &Bytes = row.buffer_bytes();
    let mut out = Vec::new();
    let mut ranges = row.ranges();
    while let Some(r) = ranges.next()? {
        out.push(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned()));
    }
    Ok(out)
}

/// The SQLSTATE of an error response.
pub(crate) fn error_code(body: &postgres_protocol::message::backend::ErrorResponseBody) -> String {
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        if f.type_() == b'C' {
            return String::from_utf8_lossy(f.value_bytes()).into_owned();
        }
    }
    String::new()
}

pub(crate) fn error_text(body: &postgres_protocol::message::backend::ErrorResponseBody) -> String {
    let mut fields = body.fields();
    let (mut severity, mut message) = (String::new(), String::new());
    while let Ok(Some(f)) = fields.next() {
        match f.type_() {
            b'S' => severity = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    format!("{}: {message}", severity.to_lowercase())
}
