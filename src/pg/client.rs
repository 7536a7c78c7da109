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
pub async fn connect(conninfo: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
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
