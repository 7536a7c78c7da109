//! Where a backup reads from: the connection string given (`--source`, `backup.source`), or —
//! with `backup.source = "patroni"` — the member Patroni's REST API ranks best right now,
//! confirmed by that member's own health check. Asked at every run, so a failover needs no
//! configuration change; the leader is also where a standby backup's last segment is switched.

use crate::config::{Config, PatroniConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::patroni::{self, Candidate};

/// The value of `backup.source` that hands the choice to Patroni.
pub const PATRONI: &str = "patroni";

#[derive(Debug, Clone)]
pub struct Source {
    /// The replication connection string of the member to read.
    pub conninfo: String,
    /// Where `pg_switch_wal()` is asked for once the copy is done, if that server is a primary.
    pub switch_wal: String,
    /// The Patroni member, when Patroni chose it.
    pub member: Option<String>,
}

pub async fn resolve(cfg: &Config, explicit: Option<String>) -> Result<Source> {
    let given = explicit.or_else(|| cfg.backup.source.clone()).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "no backup source: set backup.source or pass --source",
        )
        .hint("a connection string such as 'host=10.0.0.5 port=5432 user=replicator', or \"patroni\"")
    })?;
    if given != PATRONI {
        return Ok(Source {
            switch_wal: given.clone(),
            conninfo: given,
            member: None,
        });
    }
    let p = cfg.patroni.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "backup.source is \"patroni\" but no patroni.endpoints are configured",
        )
        .hint("list the REST APIs of the members in [patroni] endpoints")
    })?;
    choose(p).await
}

async fn choose(p: &PatroniConfig) -> Result<Source> {
    let client = patroni::Client::new(p.client.clone())
        .map_err(|e| Error::new(ErrorKind::Config, e).hint("check the [patroni] settings"))?;
    let cluster = client.cluster().await.map_err(|e| {
        Error::new(
            ErrorKind::Unreachable,
            format!("patroni did not answer: {e}"),
        )
        .hint("check patroni.endpoints and that Patroni's REST API is reachable")
    })?;
    let ranking = patroni::rank(&cluster, &p.policy);
    let mut reasons = ranking.rejected.clone();
    let leader = cluster.leader();
    for c in &ranking.candidates {
        // The snapshot may be seconds old: the member itself must still agree.
        let confirmed = match &c.api {
            Some(api) => client.confirms(api, c.leader, p.policy.max_lag).await,
            None => Ok(true),
        };
        match confirmed {
            Ok(true) => {
                tracing::info!(
                    member = %c.name,
                    leader = c.leader,
                    "patroni: backing up from {}:{}",
                    c.host,
                    c.port
                );
                return Ok(Source {
                    conninfo: conninfo(c, &p.conninfo),
                    switch_wal: leader
                        .map(|l| format!("host={} port={} {}", l.host, l.port, p.conninfo))
                        .unwrap_or_else(|| conninfo(c, &p.conninfo)),
                    member: Some(c.name.clone()),
                });
            }
            Ok(false) => reasons.push(format!("{}: its health check refused", c.name)),
            Err(e) => reasons.push(format!("{}: health check failed: {e}", c.name)),
        }
    }
    Err(Error::new(
        ErrorKind::Postgres,
        format!(
            "no member of the patroni cluster{} can serve the backup: {}",
            cluster.scope.as_deref().map(|s| format!(" {s}")).unwrap_or_default(),
            reasons.join("; ")
        ),
    )
    .hint("wait for a replica to catch up, raise patroni.max_lag, or set patroni.fallback_to_primary = true"))
}

fn conninfo(c: &Candidate, extra: &str) -> String {
    format!("host={} port={} {extra}", c.host, c.port)
        .trim()
        .to_string()
}
