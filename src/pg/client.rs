//! A regular (non-replication) connection to PostgreSQL through tokio-postgres, and the
//! queries pgkeep needs from it.

use tokio_postgres::{Client, NoTls};

use super::control::{PgVersion, SystemId};
use super::wal::WalSegSize;

/// What identifies a cluster to the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub system_id: SystemId,
    pub version: PgVersion,
    pub seg_size: WalSegSize,
}

/// Connects with a libpq-style connection string (TLS is added with the replication client).
/// A missing password comes from the file a `passfile=PATH` parameter names, as in libpq.
pub async fn connect(conninfo: &str) -> Result<Client, String> {
    let (rest, passfile) = super::passfile::take_param(conninfo);
    let mut cfg: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| format!("invalid connection string ({rest}): {e}"))?;
    if let (None, Some(path)) = (cfg.get_password(), passfile) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read passfile {}: {e}", path.display()))?;
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "localhost".to_string(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let user = cfg.get_user().unwrap_or("postgres").to_string();
        let dbname = cfg.get_dbname().unwrap_or(&user).to_string();
        if let Some(p) = super::passfile::lookup(&text, &host, port, &dbname, &user) {
            cfg.password(p);
        }
    }
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| format!("cannot connect to postgresql ({conninfo}): {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgresql connection closed");
        }
    });
    Ok(client)
}

pub async fn identity(client: &Client) -> Result<Identity, String> {
    let row = client
        .query_one(
            "SELECT system_identifier::text, current_setting('server_version_num'), \
             (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') \
             FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read the cluster identity: {e}"))?;
    let sysid: String = row.get(0);
    let version: String = row.get(1);
    let seg: String = row.get(2);
    Ok(Identity {
        system_id: sysid.parse()?,
        version: PgVersion::from_version_num(
            version
                .parse()
                .map_err(|_| format!("bad server_version_num '{version}'"))?,
        )?,
        seg_size: WalSegSize::new(
            seg.parse()
                .map_err(|_| format!("bad wal_segment_size '{seg}'"))?,
        )?,
    })
}
