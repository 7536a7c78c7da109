//! PostgreSQL's checks: the backup source resolves (Patroni's choice included) and accepts a
//! replication connection, it is the cluster the repository serves, the role has what pgkeep
//! needs (REPLICATION; `pg_switch_wal()` and `pg_read_all_settings` on the primary), the
//! primary archives through pgkeep with this configuration, and a switched segment reaches the
//! archive within the deadline.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{CheckArgs, CheckReport};
use crate::command::backup::{source, summaries};
use crate::command::with_deadline;
use crate::config::{Config, DEFAULT_PATH};
use crate::pg::replication::{ConnParams, ReplConn};
use crate::pg::{PgVersion, WalFileName};
use crate::repo::{ByteKey, Repo, WalKey};

/// One connection attempt or query.
const DEADLINE: Duration = Duration::from_secs(15);

/// The primary, reached over a regular connection, when the settings could be read.
pub(super) struct Primary {
    client: Client,
}

pub(super) async fn check(
    cfg: &Config,
    repo: Option<&Repo>,
    r: &mut CheckReport,
) -> Option<Primary> {
    let (conninfo, primary) = match (&cfg.backup.source, &cfg.postgres.conninfo) {
        (None, None) => {
            r.skip(
                "postgresql",
                "no backup.source or postgres.conninfo to connect to",
            );
            return None;
        }
        (Some(_), _) => match with_deadline(
            "resolving the backup source",
            DEADLINE,
            source::resolve(cfg, None),
        )
        .await
        {
            Ok(s) => {
                r.ok(
                    "backup source",
                    match &s.member {
                        Some(m) => format!("patroni chose member {m}"),
                        None => "backup.source".to_string(),
                    },
                );
                (s.conninfo, s.switch_wal)
            }
            Err(e) => {
                r.error("backup source", &e);
                return None;
            }
        },
        (None, Some(c)) => (c.clone(), c.clone()),
    };
    replication(&conninfo, repo, r).await;
    let client = match within_str(crate::pg::client::connect(&with_dbname(&primary))).await {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                "primary",
                e,
                "pgkeep needs a regular connection too (pg_switch_wal, settings): allow the role in pg_hba.conf for the database 'postgres'",
            );
            return None;
        }
    };
    match query_one(&client, "SELECT pg_is_in_recovery()::text").await {
        Ok(v) if v == "false" => r.ok("primary", "connected to the primary"),
        Ok(_) => {
            r.skip(
                "primary",
                "the server reached is a standby: archive settings and the WAL switch are checked on the primary",
            );
            return None;
        }
        Err(e) => {
            r.fail("primary", e, "check the role's privileges");
            return None;
        }
    }
    privileges(&client, r).await;
    settings(cfg, &client, r).await;
    Some(Primary { client })
}

/// The replication connection backups use, and the cluster's identity.
async fn replication(conninfo: &str, repo: Option<&Repo>, r: &mut CheckReport) {
    let params = match ConnParams::parse(conninfo, None) {
        Ok(p) => p,
        Err(e) => {
            r.fail(
                "replication",
                e,
                "write the source as 'host=... port=... user=...' or a postgresql:// URL",
            );
            return;
        }
    };
    let connected = tokio::time::timeout(DEADLINE, async {
        let mut conn = ReplConn::connect(&params).await?;
        let ident = conn.identify_system().await?;
        let major = conn.server_major;
        let summaries = match major >= summaries::FIRST_MAJOR {
            true => Some(conn.show("summarize_wal").await?.is_some_and(|v| v == "on")),
            false => None,
        };
        conn.close().await;
        Ok::<_, crate::pg::replication::ReplError>((ident, major, summaries))
    })
    .await;
    let (ident, major, summarize_wal) = match connected {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let e = crate::command::backup::pg_error(e);
            r.fail(
                "replication",
                e.message().to_string(),
                "the role needs LOGIN and REPLICATION (ALTER ROLE ... REPLICATION) and a 'replication' line in pg_hba.conf",
            );
            return;
        }
        Err(_) => {
            r.fail(
                "replication",
                format!("no answer within {}s", DEADLINE.as_secs()),
                "check the host, port and firewall",
            );
            return;
        }
    };
    r.ok(
        "replication",
        format!(
            "replication connection accepted: postgresql {major}, system id {}, timeline {}",
            ident.system_id, ident.timeline.0
        ),
    );
    r.ok("incrementals", summaries::describe(summarize_wal));
    let Some(repo) = repo else { return };
    let version = match PgVersion::new(major) {
        Ok(v) => v,
        Err(e) => {
            r.fail("identity", e, "pgkeep supports postgresql 13 to 19");
            return;
        }
    };
    match repo
        .info()
        .check_serves(ident.system_id, version, repo.location())
    {
        Ok(()) => r.ok("identity", "the repository serves this cluster"),
        Err(e) => r.error("identity", &e),
    }
}

/// What the role may do, each missing grant named with the statement that gives it.
async fn privileges(c: &Client, r: &mut CheckReport) {
    let sql = "SELECT r.rolsuper::text || ',' || r.rolreplication::text || ',' \
               || has_function_privilege('pg_switch_wal()', 'EXECUTE')::text || ',' \
               || pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')::text \
               || ',' || current_user \
               FROM pg_roles r WHERE r.rolname = current_user";
    let row = match query_one(c, sql).await {
        Ok(v) => v,
        Err(e) => {
            r.fail("privileges", e, "check the role");
            return;
        }
    };
    let f: Vec<&str> = row.split(',').collect();
    let (superuser, repl, switch, settings, role) = (
        f[0] == "true",
        f[1] == "true",
        f[2] == "true",
        f[3] == "true",
        f.get(4).copied().unwrap_or("?"),
    );
    if superuser {
        r.ok(
            "privileges",
            format!(
                "{role} is a superuser (a role with REPLICATION and the grants below is enough)"
            ),
        );
        return;
    }
    let mut missing = Vec::new();
    if !repl {
        missing.push(format!("ALTER ROLE {role} REPLICATION"));
    }
    if !switch {
        missing.push(format!(
            "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {role}"
        ));
    }
    if !settings {
        missing.push(format!("GRANT pg_read_all_settings TO {role}"));
    }
    if missing.is_empty() {
        r.ok(
            "privileges",
            format!("{role}: REPLICATION, pg_switch_wal(), pg_read_all_settings (not a superuser)"),
        );
    } else {
        r.fail(
            "privileges",
            format!("{role} lacks what pgkeep needs: {}", missing.join("; ")),
            "run the statements named, as a superuser (see the README's least-privilege role)",
        );
    }
}

/// `archive_mode`, `archive_command` and `restore_command` point at pgkeep with this config.
async fn settings(cfg: &Config, c: &Client, r: &mut CheckReport) {
    let mode = query_one(c, "SELECT current_setting('archive_mode')").await;
    match mode.as_deref() {
        Ok("on") | Ok("always") => r.ok("archive_mode", mode.unwrap_or_default()),
        Ok(other) => r.fail(
            "archive_mode",
            format!("archive_mode = {other}: PostgreSQL archives nothing"),
            "set archive_mode = on (Patroni: postgresql.parameters; a restart is needed)",
        ),
        Err(e) => r.fail(
            "archive_mode",
            e.clone(),
            "GRANT pg_read_all_settings to the role",
        ),
    }
    let ours = cfg.path.clone().unwrap_or_else(|| DEFAULT_PATH.into());
    for (name, verb) in [
        ("archive_command", "archive-push"),
        ("restore_command", "archive-get"),
    ] {
        let value = match query_one(c, &format!("SELECT current_setting('{name}')")).await {
            Ok(v) => v,
            Err(e) => {
                r.fail(
                    name,
                    e,
                    "GRANT pg_read_all_settings to the role, or check as a superuser",
                );
                continue;
            }
        };
        if value.trim().is_empty() && name == "restore_command" {
            r.skip(name, "not set on the primary (Patroni's recovery_conf and pgkeep restore set it where recovery runs)");
            continue;
        }
        if !(value.contains("pgkeep") && value.contains(verb)) {
            r.fail(
                name,
                format!("{name} = '{value}' does not call pgkeep {verb}"),
                &format!(
                    "set {name} = 'pgkeep {verb} {}'",
                    if verb == "archive-push" {
                        "%p"
                    } else {
                        "%f %p"
                    }
                ),
            );
            continue;
        }
        if cfg.service.is_some() {
            // Checked from pgkeepd, which receives the nodes' WAL: the command runs on the
            // database host with that host's configuration, which no path here can name. Only
            // the WAL arriving (the `wal archived` line) proves archive_command; nothing here
            // proves restore_command.
            r.skip(
                name,
                format!(
                    "{value}: reads the node's own configuration, on its host (see `wal archived`)"
                ),
            );
            continue;
        }
        match config_named(&value) {
            Some(path) if !same_file(&path, &ours) => r.fail(
                name,
                format!("{name} reads {} but this check read {}", path, ours.display()),
                "point both at one configuration, or run check with the same --config",
            ),
            Some(_) => r.ok(name, format!("{value} (this configuration)")),
            None if same_file(DEFAULT_PATH, &ours) => r.ok(name, format!("{value} (the default configuration, as here)")),
            None => r.fail(
                name,
                format!("{name} names no configuration, so pgkeep reads {DEFAULT_PATH}; this check read {}", ours.display()),
                &format!("write {name} as 'PGKEEP_CONFIG={} pgkeep {verb} ...', or install the configuration at {DEFAULT_PATH}", ours.display()),
            ),
        }
    }
}

/// The configuration a command line names: `PGKEEP_CONFIG=...` or `--config ...`.
fn config_named(cmd: &str) -> Option<String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let unquote = |s: &str| s.trim_matches(|c| c == '\'' || c == '"').to_string();
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix("PGKEEP_CONFIG=") {
            return Some(unquote(v));
        }
        if let Some(v) = w.strip_prefix("--config=") {
            return Some(unquote(v));
        }
        if *w == "--config" {
            return words.get(i + 1).map(|v| unquote(v));
        }
    }
    None
}

fn same_file(a: impl AsRef<std::path::Path>, b: impl AsRef<std::path::Path>) -> bool {
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a.as_ref()) == canon(b.as_ref())
}

/// Switches WAL on the primary and waits for that segment in the archive (the repository,
/// or pgkeepd when this node has none).
pub(super) async fn wal_arrives(
    cfg: &Config,
    repo: Option<&Repo>,
    primary: Option<Primary>,
    args: &CheckArgs,
    r: &mut CheckReport,
) {
    const NAME: &str = "wal archived";
    let Some(p) = primary else {
        r.skip(NAME, "no primary to switch WAL on");
        return;
    };
    if !args.switch_wal {
        r.skip(NAME, "--no-switch");
        return;
    }
    if repo.is_none() && cfg.server.is_none() {
        r.skip(NAME, "no archive to look in");
        return;
    }
    // A commit record first (an xid, then its commit): without new WAL since the last
    // switch, pg_switch_wal() would name a segment archived long ago and prove nothing.
    if let Err(e) = query_one(&p.client, "SELECT txid_current()::text").await {
        r.fail(
            NAME,
            format!("txid_current(): {e}"),
            "check the role's privileges",
        );
        return;
    }
    let segment = match query_one(&p.client, "SELECT pg_walfile_name(pg_switch_wal())").await {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                NAME,
                format!("pg_switch_wal(): {e}"),
                "GRANT EXECUTE ON FUNCTION pg_switch_wal() to the role",
            );
            return;
        }
    };
    let began = Instant::now();
    let deadline = began + args.wal_timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        match archived(cfg, repo, &segment).await {
            Ok(true) => {
                r.ok(
                    NAME,
                    format!(
                        "{segment} reached the archive in {:.1}s",
                        began.elapsed().as_secs_f64()
                    ),
                );
                return;
            }
            Ok(false) => {}
            Err(e) => {
                r.error(NAME, &e);
                return;
            }
        }
        if Instant::now() >= deadline {
            let seen = query_one(
                &p.client,
                "SELECT format('archived %s (last %s), failed %s (last %s at %s)', archived_count, \
                 coalesce(last_archived_wal, '-'), failed_count, coalesce(last_failed_wal, '-'), \
                 coalesce(last_failed_time::text, '-')) FROM pg_stat_archiver",
            )
            .await
            .unwrap_or_else(|e| e);
            r.fail(
                NAME,
                format!("{segment} was not in the archive after {}s; pg_stat_archiver: {seen}", args.wal_timeout.as_secs()),
                "read PostgreSQL's log for archive_command's error (run as the postgres user, it must read this configuration and reach the store)",
            );
            return;
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

async fn archived(cfg: &Config, repo: Option<&Repo>, segment: &str) -> crate::error::Result<bool> {
    if let Some(repo) = repo {
        let seg = repo.info().seg_size;
        let name = WalFileName::parse(segment, seg)
            .map_err(|e| crate::error::Error::new(crate::error::ErrorKind::Postgres, e))?;
        return repo.contains(&WalKey(name).repo_key(seg)).await;
    }
    let Some(server) = &cfg.server else {
        return Ok(false);
    };
    let client = crate::service::client::Client::new(server, DEADLINE)?;
    match client.get(segment).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == crate::error::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// `dbname=postgres` unless the connection string names a database (a replication role's
/// own name rarely is one).
fn with_dbname(conninfo: &str) -> String {
    if conninfo.contains("dbname=") || conninfo.starts_with("postgres") {
        conninfo.to_string()
    } else {
        format!("{conninfo} dbname=postgres")
    }
}

async fn query_one(c: &Client, sql: &str) -> Result<String, String> {
    match tokio::time::timeout(DEADLINE, c.query_one(sql, &[])).await {
        Ok(Ok(row)) => row.try_get::<_, String>(0).map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string())),
        Err(_) => Err(format!("no answer within {}s", DEADLINE.as_secs())),
    }
}

async fn within_str<T>(
    f: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", DEADLINE.as_secs())))
}
