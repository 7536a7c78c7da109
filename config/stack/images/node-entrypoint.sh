#!/bin/sh
# A Patroni node's entry point. Secrets arrive as root-readable files under /run/secrets; the
# postgres user (Patroni, and pgkeep run by archive_command) gets private copies, and Patroni's
# passwords go into the environment variables Patroni reads. Then Patroni runs as postgres.
set -eu
secret() { tr -d '\r\n' <"/run/secrets/$1"; }
export PATRONI_SUPERUSER_USERNAME=postgres
export PATRONI_SUPERUSER_PASSWORD="$(secret pg_superuser_password)"
export PATRONI_REPLICATION_USERNAME=replicator
export PATRONI_REPLICATION_PASSWORD="$(secret pg_replication_password)"
# pgkeep's files: the WAL service token and the read-only S3 key for create-replica.
install -d -o postgres -g postgres -m 0700 /var/lib/pgkeep
install -o postgres -g postgres -m 0400 /run/secrets/pgkeep_wal_token /var/lib/pgkeep/wal-token
install -o postgres -g postgres -m 0400 /run/secrets/s3_node_credentials /var/lib/pgkeep/s3-credentials
export AWS_SHARED_CREDENTIALS_FILE=/var/lib/pgkeep/s3-credentials
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
# Exported, not passed as arguments: the passwords never appear in a process's command line.
export HOME=/var/lib/postgresql \
  PATRONI_RESTAPI_CONNECT_ADDRESS="$PATRONI_NAME:8008" \
  PATRONI_POSTGRESQL_CONNECT_ADDRESS="$PATRONI_NAME:5432"
exec setpriv --reuid=postgres --regid=postgres --init-groups patroni /etc/patroni/patroni.yml
