#!/usr/bin/env bash
# pgkeep's main job end to end on the embedded default (a local repository, a local
# PostgreSQL 15): archive WAL under pgbench load with archive_command = pgkeep archive-push,
# recover a cold copy from the archive with restore_command = pgkeep archive-get, take a full
# and a page-incremental backup over the replication protocol, restore the incremental to a
# point in time between two batches of rows, run pgkeepd with a fast schedule for a minute
# (incremental backups, verify, expire) and show its /status, run a restore drill of the newest
# backup (a throwaway sandbox, WAL replayed past a canary, checks, clean-up), and print what happened with
# numbers. Everything runs on loopback in a temporary directory and is stopped and removed at
# the end. PGKEEP_DEMO_DAEMON_SECONDS sets how long pgkeepd runs (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --demo
. scripts/env.sh
cargo build --release --quiet -p pgkeep -p pgkeep-scheduler --bins
PGKEEP=$CARGO_TARGET_DIR/release/pgkeep
PGKEEPD=$CARGO_TARGET_DIR/release/pgkeepd
PGBIN=${PGKEEP_TEST_PG_BIN}
SCALE=${PGKEEP_DEMO_SCALE:-10}
SECONDS_LOAD=${PGKEEP_DEMO_SECONDS:-15}
DAEMON_SECONDS=${PGKEEP_DEMO_DAEMON_SECONDS:-60}

work=$(mktemp -d /tmp/pgkeep-demo-XXXXXX)
chown postgres:postgres "$work"
as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
stop_all() {
  [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  for d in "$work/primary" "$work/restored" "$work/pitr"; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap stop_all EXIT
ms() { date +%s%3N; }

cat > "$work/pgkeep.toml" <<TOML
[repository]
kind = "local"
path = "$work/repo"
cluster = "demo"
TOML
export PGKEEP_CONFIG=$work/pgkeep.toml

start_pg() { # data dir, port
  as_pg "$PGBIN/pg_ctl" -D "$1" -l "$1.log" -w -t 120 \
    -o "-p $2 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$work" start >/dev/null
}
psql_at() { local port=$1; shift; psql -h "$work" -p "$port" -U postgres -XAtq -v ON_ERROR_STOP=1 "$@"; }

echo "== 1. a PostgreSQL 15 cluster archiving through pgkeep"
as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$work/primary" >/dev/null
P1=$(free_port)
cat >> "$work/primary/postgresql.conf" <<CONF
wal_level = replica
archive_mode = on
archive_command = 'PGKEEP_CONFIG=$work/pgkeep.toml $PGKEEP archive-push %p'
max_wal_size = '1GB'
CONF
"$PGKEEP" init --data-dir "$work/primary"
chown -R postgres:postgres "$work/repo"
start_pg "$work/primary" "$P1"
psql_at "$P1" -c "CREATE TABLE marks (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
pgbench -h "$work" -p "$P1" -U postgres -i -s "$SCALE" -q postgres 2>/dev/null
as_pg "$PGBIN/pg_ctl" -D "$work/primary" -m fast -w stop >/dev/null
cp -a "$work/primary" "$work/restored"     # a cold copy: the base the archive must carry forward
start_pg "$work/primary" "$P1"

echo "== 2. pgbench for ${SECONDS_LOAD}s while pgkeep archives"
pgbench -h "$work" -p "$P1" -U postgres -T "$SECONDS_LOAD" -c 4 -j 2 postgres 2>/dev/null | grep -E "^tps" || true
psql_at "$P1" -c "INSERT INTO marks (id) SELECT generate_series(1, 5000)"
last=$(psql_at "$P1" -c "SELECT pg_walfile_name(pg_switch_wal())")
until [ "$(psql_at "$P1" -c "SELECT coalesce(last_archived_wal,'') >= '$last' FROM pg_stat_archiver")" = t ]; do
  failed=$(psql_at "$P1" -c "SELECT failed_count FROM pg_stat_archiver")
  [ "$failed" = 0 ] || { echo "archiving failed; see $work/primary.log"; tail -5 "$work/primary.log"; exit 1; }
  sleep 0.2
done

echo "== 3. a full and an incremental backup over the replication protocol, then a point in time between two batches"
src="host=$work port=$P1 user=postgres"
tb0=$(ms)
"$PGKEEP" backup --source "$src"
tb1=$(ms)
pgbench -h "$work" -p "$P1" -U postgres -T 5 -c 4 -j 2 postgres 2>/dev/null | grep -E "^tps" || true
ti0=$(ms)
"$PGKEEP" backup --source "$src" --type incr
ti1=$(ms)
psql_at "$P1" -c "CREATE TABLE pitr (id int)"
psql_at "$P1" -c "INSERT INTO pitr SELECT generate_series(1, 1000)"
pit=$(psql_at "$P1" -c "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
psql_at "$P1" -c "INSERT INTO pitr SELECT generate_series(1001, 2000)"
last=$(psql_at "$P1" -c "SELECT pg_walfile_name(pg_switch_wal())")
until [ "$(psql_at "$P1" -c "SELECT coalesce(last_archived_wal,'') >= '$last' AND length(last_archived_wal) = 24 FROM pg_stat_archiver")" = t ]; do sleep 0.2; done
history_rows=$(psql_at "$P1" -c "SELECT count(*) FROM pgbench_history")
"$PGKEEP" info
sizes=$("$PGKEEP" info --json | python3 -c 'import json,sys; b=json.load(sys.stdin)["backups"]; print(*[x["stored_size"]//1048576 for x in b[-2:]], b[-1]["type"], b[-1]["id"])')
read -r full_mib incr_mib incr_type incr_id <<<"$sizes"
archived=$(psql_at "$P1" -c "SELECT archived_count FROM pg_stat_archiver")
as_pg "$PGBIN/pg_ctl" -D "$work/primary" -m fast -w stop >/dev/null

echo "== 4. recover the cold copy from the archive (restore_command = pgkeep archive-get)"
P2=$(free_port)
touch "$work/restored/recovery.signal"
cat >> "$work/restored/postgresql.conf" <<CONF
archive_mode = off
restore_command = 'PGKEEP_CONFIG=$work/pgkeep.toml $PGKEEP archive-get %f %p'
CONF
t0=$(ms)
start_pg "$work/restored" "$P2"
until [ "$(psql_at "$P2" -c "SELECT pg_is_in_recovery()")" = f ]; do sleep 0.1; done
t1=$(ms)
r_marks=$(psql_at "$P2" -c "SELECT count(*) FROM marks")
r_history=$(psql_at "$P2" -c "SELECT count(*) FROM pgbench_history")
restored=$(grep -c "restored log file" "$work/restored.log" || true)
as_pg "$PGBIN/pg_ctl" -D "$work/restored" -m fast -w stop >/dev/null

echo "== 5. restore the backup to $pit (between the two batches)"
tr0=$(ms)
"$PGKEEP" restore "$work/pitr" --target-time "$pit" --target-action promote | tee "$work/pitr.out"
grep -q "$incr_id" "$work/pitr.out" || { echo "the restore did not use the incremental $incr_id"; exit 1; }
chown -R postgres:postgres "$work/pitr"
echo "archive_mode = off" >> "$work/pitr/postgresql.conf"
P3=$(free_port)
start_pg "$work/pitr" "$P3"
until [ "$(psql_at "$P3" -c "SELECT pg_is_in_recovery()")" = f ]; do sleep 0.1; done
tr1=$(ms)
pitr_rows=$(psql_at "$P3" -c "SELECT count(*) FROM pitr")
as_pg "$PGBIN/pg_ctl" -D "$work/pitr" -m fast -w stop >/dev/null

echo "== 6. pgkeepd for ${DAEMON_SECONDS}s: incrementals every 20 s (each followed by expire), verify every 30 s"
start_pg "$work/primary" "$P1"
PD=$(free_port)
cat > "$work/pgkeepd.toml" <<TOML
[repository]
kind = "local"
path = "$work/repo"
cluster = "demo"
[backup]
source = "$src"
[retention]
full = 1
[scheduler]
listen = "127.0.0.1:$PD"
grace = "30s"
[[scheduler.jobs]]
name = "incr"
kind = "backup-incr"
schedule = "*/20 * * * * *"
[[scheduler.jobs]]
name = "verify"
kind = "verify"
schedule = "*/30 * * * * *"
TOML
# As root, like the backups above (the archiver, as postgres, writes only WAL).
"$PGKEEPD" --config "$work/pgkeepd.toml" 2> "$work/pgkeepd.log" &
daemon_pid=$!
pgbench -h "$work" -p "$P1" -U postgres -T "$DAEMON_SECONDS" -R 200 -c 2 postgres >/dev/null 2>&1 || true
status_json=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PD/status').read().decode())")
metrics=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$PD/metrics').read().decode())")
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=

echo "== 7. a restore drill of the newest backup: a throwaway sandbox, WAL replayed past a canary, every table read, amcheck, cleaned up"
mkdir -p "$work/drills"
# Bounded: timeout's SIGTERM makes the drill report, remove its sandbox and exit 14.
if ! PGKEEP_RESTORE_TEST_WORK_DIR="$work/drills" timeout 600 "$PGKEEPD" --config "$work/pgkeepd.toml" \
     restore-test > "$work/drill.txt" 2> "$work/drill.log"; then
  cat "$work/drill.txt" "$work/drill.log"; echo "  RESULT: the restore drill FAILED"; exit 1
fi
cat "$work/drill.txt"
drill_rto=$(grep -o "rto [0-9.]* s" "$work/drill.txt" | head -1)
drill_left=$(find "$work/drills" -mindepth 1 -maxdepth 1 | wc -l)

echo "== 8. pgkeep check: this setup, end to end (repository, PostgreSQL, archive settings, a switched segment arriving)"
if ! PGKEEP_BACKUP_SOURCE="host=$work port=$P1 user=postgres" "$PGKEEP" check --wal-timeout 60s > "$work/check.txt"; then
  cat "$work/check.txt"; echo "  RESULT: pgkeep check FAILED"; exit 1
fi
cat "$work/check.txt"
check_ok=$(grep -c "^ok " "$work/check.txt" || true)
as_pg "$PGBIN/pg_ctl" -D "$work/primary" -m fast -w stop >/dev/null
echo "-- pgkeepd /status (abridged)"
echo "$status_json" | python3 scripts/pgkeepd-status.py
echo "-- pgkeepd /metrics (excerpt)"
echo "$metrics" | grep -E "^pgkeep_(last_successful_backup|job_runs_total|job_failures_total|archive_newest|repository_bytes)" | sed 's/^/  /'
daemon_runs=$(echo "$status_json" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(j["runs_total"] for j in s["jobs"].values()))')
daemon_failures=$(echo "$status_json" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(j["failures_total"] for j in s["jobs"].values()))')

seg_bytes=$((archived * 16 * 1024 * 1024))
repo_bytes=$(du -sb "$work/repo" | cut -f1)
push_ms=$(grep -ho "archive-push .* in [0-9]* ms" "$work/primary.log" | grep -o "in [0-9]* ms" | awk '{print $2}' | sort -n)
p50=$(echo "$push_ms" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
p95=$(echo "$push_ms" | awk '{a[NR]=$1} END {i=int(NR*0.95); if(i<1)i=1; print a[i]}')
ahead=$(grep -c "PushedAhead" "$work/primary.log" || true)

echo
echo "== pgkeep demo: what happened"
printf "  %-44s %s\n" "WAL files archived by PostgreSQL" "$archived"
printf "  %-44s %s\n" "  of which answered from the look-ahead spool" "$ahead"
printf "  %-44s %s\n" "archive-push latency p50 / p95" "${p50:-?} ms / ${p95:-?} ms"
printf "  %-44s %s\n" "WAL bytes / stored bytes (zstd)" "$((seg_bytes / 1048576)) MiB / $((repo_bytes / 1048576)) MiB"
printf "  %-44s %s\n" "segments replayed through archive-get" "$restored"
printf "  %-44s %s\n" "recovery to end of archive" "$((t1 - t0)) ms"
printf "  %-44s %s\n" "marks rows primary / recovered" "5000 / $r_marks"
printf "  %-44s %s\n" "pgbench_history rows primary / recovered" "$history_rows / $r_history"
printf "  %-44s %s\n" "full backup (replication protocol)" "$((tb1 - tb0)) ms, $full_mib MiB stored"
printf "  %-44s %s\n" "incremental backup after 5 s of pgbench" "$((ti1 - ti0)) ms, $incr_mib MiB stored ($incr_type)"
printf "  %-44s %s\n" "point-in-time restore (full + incr) + replay" "$((tr1 - tr0)) ms"
printf "  %-44s %s\n" "rows at the chosen time: expected / restored" "1000 / $pitr_rows"
printf "  %-44s %s\n" "pgkeepd jobs run / failed in ${DAEMON_SECONDS}s" "$daemon_runs / $daemon_failures"
printf "  %-44s %s\n" "restore drill of the newest backup" "passed, ${drill_rto:-rto ?}, sandboxes left: $drill_left"
printf "  %-44s %s\n" "pgkeep check" "$check_ok checks ok, none failed"
if [ "$r_marks" = 5000 ] && [ "$r_history" = "$history_rows" ] && [ "$pitr_rows" = 1000 ] && [ "$incr_type" = incr ] \
   && [ "$daemon_runs" -ge 2 ] && [ "$daemon_failures" = 0 ] && [ "$drill_left" = 0 ]; then
  echo "  RESULT: every restored instance holds exactly what had committed at its target"
else
  echo "  RESULT: MISMATCH"; exit 1
fi
# Optional: the same in a local three-node Patroni cluster.
if [ -n "${PGKEEP_DEMO_PATRONI:-}" ]; then
  echo
  bash scripts/demo-patroni.sh
fi
