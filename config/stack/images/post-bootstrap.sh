#!/bin/sh
# Patroni's bootstrap.post_bootstrap: run once, on the new cluster's first primary, with a
# connection string for the superuser. The grants pgkeep's backup role needs and no more
# (README, "Least privilege"): the WAL switch at a backup's end, the restore point a drill
# leaves, and the settings `pgkeep check` reads. Patroni runs this before it creates its
# replication role, so the role is created here (Patroni then sets its password).
set -eu
psql -v ON_ERROR_STOP=1 -q -d "$1" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') THEN
    CREATE ROLE replicator LOGIN REPLICATION;
  END IF;
END $$;
GRANT EXECUTE ON FUNCTION pg_switch_wal() TO replicator;
GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO replicator;
GRANT pg_read_all_settings TO replicator;
SQL
