#!/usr/bin/env bash
# Benchmark: pgkeep's restore drill (pgkeepd restore-test, local sandbox, recovery to the end of
# the archive) side by side with a plain pgBackRest 2.45 restore (process-max=2) and start of
# the same data, on PostgreSQL 15 at each pgbench scale. Per scale: a throwaway primary whose
# archive_command pushes every segment into both repositories, pgbench -i, a full backup by
# each tool, 20 s of pgbench so both restores replay WAL past the backup, a WAL switch, then
# - pgkeep: `pgkeepd restore-test --json --sandbox local --target latest` (select, restore with
#   the WAL staged, start, recover until a write is accepted, verify, report, clean);
# - pgBackRest: `pgbackrest restore`, `pg_ctl start` (restore_command = pgbackrest archive-get,
#   recovery to the end of the archive, then promotion), wait until pg_is_in_recovery() is
#   false and SELECT txid_current() succeeds (its RTO), then stop and remove the directory.
# Both servers run with the sandbox's settings (shared_buffers 128MB, max_connections 20,
# hot_standby off, no archiving, unix socket only). Prints one table per scale. The primary
# listens on 127.0.0.1 only; the restored servers on a private unix socket only.
#   PGKEEP_BENCH_SCALES         pgbench scales (default "10 100")
#   PGKEEP_BENCH_LOAD_SECONDS   pgbench seconds after the backups (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --bench
. scripts/env.sh
cargo build --release --quiet -p pgkeep -p pgkeep-scheduler --bin pgkeep --bin pgkeepd
PGKEEP=$CARGO_TARGET_DIR/release/pgkeep
PGKEEPD=$CARGO_TARGET_DIR/release/pgkeepd
PGBIN=$PGKEEP_TEST_PG_BIN
SCALES=${PGKEEP_BENCH_SCALES:-10 100}
LOAD=${PGKEEP_BENCH_LOAD_SECONDS:-20}
LEVEL=1
# Bounds of the waits, in seconds.
ARCHIVE_WAIT=600     # the primary's archiver reaching the switched segment
DRILL_TIMEOUT=30m    # restore_test.timeout (select to verify)
DRILL_KILL=2400      # the whole pgkeepd process, clean-up included
RECOVER_WAIT=1800    # the pgBackRest-restored server accepting a write
STOP_WAIT=60         # pg_ctl stop -w
STEP_WAIT=3600       # pgbench -i, a backup, pgBackRest's restore (each, killed past this)

# Short paths: the sandbox's socket path (work dir + ~60 bytes) must stay under 108 bytes.
W=$(mktemp -d /tmp/pgkeep-rt-XXXXXX)
chown postgres:postgres "$W"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  for d in "$W"/s*/pgdata "$W"/s*/r-pgbr "$W"/s*/drills/pgkeep-restore-test-*/data; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -t "$STOP_WAIT" stop >/dev/null 2>&1 || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# Runs a command (as postgres, or as root for pgkeepd, which then runs its sandbox server as
# postgres) under /usr/bin/time; leaves "seconds peak_kib" in $W/last.
timed() { as_pg /usr/bin/time -f "%e %M" -o "$W/last" timeout "$STEP_WAIT" "$@" >"$W/last.out" 2>"$W/last.err" || { cat "$W/last.err" >&2; exit 1; }; }
timed_root() { /usr/bin/time -f "%e %M" -o "$W/last" "$@" >"$W/last.out" 2>"$W/last.err"; }
secs() { cut -d' ' -f1 "$W/last"; }
rss_mib() { awk '{printf "%.0f", $2/1024}' "$W/last"; }
py() { python3 -c "print($1)"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

LOAD_BEFORE=$(load)
: > "$W/tables"

run_scale() {
  local SCALE=$1
  local D=$W/s$SCALE
  mkdir -p "$D/pgbr-lock" "$D/pgbr-log" "$D/pbrun" "$D/drills"
  local PORT; PORT=$(free_port)
  psql_() { psql -h "$D" -p "$PORT" -U postgres -XAtq "$@" postgres; }
  cat > "$D/pgkeep.toml" <<CONF
[repository]
path = "$D/repo-pgkeep"
[archive]
compress_level = $LEVEL
[backup]
concurrency = 2
CONF
  cat > "$D/pgbackrest.conf" <<CONF
[global]
repo1-path=$D/repo-pgbr
compress-type=zst
compress-level=$LEVEL
process-max=2
start-fast=y
lock-path=$D/pgbr-lock
log-path=$D/pgbr-log
log-level-console=warn
log-level-file=off
[bench]
pg1-path=$D/pgdata
pg1-port=$PORT
pg1-socket-path=$D
CONF
  chown -R postgres:postgres "$D"

  echo "== scale $SCALE: PostgreSQL 15 archiving into both repositories; pgbench -i -s $SCALE" >&2
  as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$D/pgdata" >/dev/null
  cat >> "$D/pgdata/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D'
max_wal_size = '4GB'
archive_mode = on
archive_command = 'PGKEEP_CONFIG=$D/pgkeep.toml $PGKEEP archive-push %p && pgbackrest --config=$D/pgbackrest.conf --stanza=bench archive-push %p'
CONF
  as_pg env PGKEEP_CONFIG="$D/pgkeep.toml" "$PGKEEP" init --data-dir "$D/pgdata" >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$D/pgdata" -l "$D/pg.log" -w -t 60 start >/dev/null
  as_pg timeout "$STEP_WAIT" pgbackrest --config="$D/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
  timeout "$STEP_WAIT" pgbench -h "$D" -p "$PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1 ||
    { echo "pgbench -i -s $SCALE failed or ran past ${STEP_WAIT}s" >&2; exit 1; }
  psql_ -c CHECKPOINT
  local BYTES; BYTES=$(du -sb --exclude=pg_wal "$D/pgdata" | cut -f1)
  echo "   data directory without pg_wal: $((BYTES / 1048576)) MiB" >&2
  local SRC="host=$D port=$PORT user=postgres"

  echo "== scale $SCALE: full backups" >&2
  sync
  timed env PGKEEP_CONFIG="$D/pgkeep.toml" "$PGKEEP" backup --source "$SRC" --type full
  local pk_backup_s; pk_backup_s=$(secs)
  timed pgbackrest --config="$D/pgbackrest.conf" --stanza=bench --type=full backup
  local pb_backup_s; pb_backup_s=$(secs)

  echo "== scale $SCALE: pgbench for ${LOAD}s after the backups, then a WAL switch" >&2
  pgbench -h "$D" -p "$PORT" -U postgres -T "$LOAD" -c 4 -j 2 postgres 2>/dev/null | grep -E "^tps" >&2 || true
  local seg; seg=$(psql_ -c "SELECT pg_walfile_name(pg_switch_wal())")
  local began last="" until=$((SECONDS + ARCHIVE_WAIT))
  began=$(now)
  while :; do
    last=$(psql_ -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    [[ "$last" > "$seg" || "$last" == "$seg" ]] && break
    if [ "$SECONDS" -ge "$until" ]; then
      echo "the archiver did not reach segment $seg within ${ARCHIVE_WAIT}s (last archived: ${last:-none})" >&2
      psql_ -c "SELECT * FROM pg_stat_archiver" >&2; exit 1
    fi
    sleep 0.2
  done
  echo "   archived through $seg (waited $(py "f'{$(now) - $began:.1f}'") s for the archiver)" >&2

  echo "== scale $SCALE: pgkeep restore drill (pgkeepd restore-test, local sandbox, target latest)" >&2
  sync
  local rc=0
  timed_root env PGKEEP_CONFIG="$D/pgkeep.toml" PGKEEP_BACKUP_SOURCE="$SRC" \
    PGKEEP_RESTORE_TEST_WORK_DIR="$D/drills" PGKEEP_RESTORE_TEST_SANDBOX=local \
    PGKEEP_RESTORE_TEST_TIMEOUT="$DRILL_TIMEOUT" PGKEEP_RESTORE_TEST_BIN_DIR="$PGBIN" \
    timeout "$DRILL_KILL" "$PGKEEPD" --config "$D/pgkeep.toml" restore-test --json --sandbox local --target latest || rc=$?
  if [ "$rc" != 0 ]; then
    echo "pgkeepd restore-test exited $rc (124: killed after ${DRILL_KILL}s); stderr:" >&2
    cat "$W/last.err" >&2; echo "report:" >&2; cat "$W/last.out" >&2; exit 1
  fi
  cp "$W/last.out" "$W/report-$SCALE.json"
  local pk_wall_s pk_rss; pk_wall_s=$(secs); pk_rss=$(rss_mib)
  local pk
  pk=$(python3 - "$W/report-$SCALE.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["verdict"] == "passed", r.get("cause")
p = {x["name"]: x["seconds"] for x in r["phases"]}
print(p["restore"], p["start"] + p["recover"], r["rto_seconds"], p["verify"],
      r["bytes_restored"], r["wal_segments_replayed"], sum(p.values()),
      " ".join(f"{x['name']}={x['seconds']:.2f}" for x in r["phases"]),
      sep="|")
PY
)
  local pk_restore pk_startrec pk_rto pk_verify pk_bytes pk_segs pk_phases_sum pk_phases
  IFS='|' read -r pk_restore pk_startrec pk_rto pk_verify pk_bytes pk_segs pk_phases_sum pk_phases <<<"$pk"
  as_pg "$PGBIN/pg_ctl" -D "$D/pgdata" -m fast -w -t "$STOP_WAIT" stop >/dev/null

  echo "== scale $SCALE: pgBackRest restore (process-max=2) and start to the end of the archive" >&2
  local R=$D/r-pgbr
  mkdir -p "$R"; chown postgres:postgres "$R"; chmod 700 "$R"
  sync
  local t0; t0=$(now)
  timed pgbackrest --config="$D/pgbackrest.conf" --stanza=bench --pg1-path="$R" --process-max=2 restore
  local pb_restore pb_rss; pb_restore=$(secs); pb_rss=$(rss_mib)
  local pb_bytes; pb_bytes=$(du -sb --exclude=pg_wal "$R" | cut -f1)
  # The drill sandbox's settings, and nothing archived, streamed or listened to on TCP.
  local opts="-c port=5432 -c listen_addresses='' -c unix_socket_directories='$D/pbrun'"
  opts+=" -c archive_mode=off -c max_wal_senders=0 -c hot_standby=off -c shared_buffers=128MB"
  opts+=" -c max_connections=20 -c logging_collector=off -c cluster_name=pgbr-restore"
  local t1; t1=$(now)
  local until=$((SECONDS + RECOVER_WAIT)) pid_until=$((SECONDS + 30))
  as_pg "$PGBIN/pg_ctl" -D "$R" -l "$D/pgbr-restore.log" -W -o "$opts" start >/dev/null
  local up="" pid
  while :; do
    up=$(psql -h "$D/pbrun" -p 5432 -U postgres -XAtq -c "SELECT pg_is_in_recovery()" postgres 2>/dev/null || true)
    if [ "$up" = f ] && psql -h "$D/pbrun" -p 5432 -U postgres -XAtq -c "SELECT txid_current()" postgres >/dev/null 2>&1; then
      break
    fi
    if [ "$SECONDS" -ge "$until" ]; then
      echo "the pgBackRest-restored server did not accept a write within ${RECOVER_WAIT}s; its log:" >&2
      tail -20 "$D/pgbr-restore.log" >&2; exit 1
    fi
    # pg_ctl -W returns before the postmaster writes its pid file: 30 s to see it, then it
    # must stay alive.
    pid=$(head -1 "$R/postmaster.pid" 2>/dev/null || true)
    if { [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; } ||
       { [ -z "$pid" ] && [ "$SECONDS" -ge "$pid_until" ]; }; then
      echo "the pgBackRest-restored server is not running (no live postmaster); its log:" >&2
      tail -20 "$D/pgbr-restore.log" >&2; exit 1
    fi
    sleep 0.2
  done
  local t2; t2=$(now)
  local pb_segs; pb_segs=$(grep -c "restored log file \"[0-9A-F]\{24\}\" from archive" "$D/pgbr-restore.log" || true)
  as_pg "$PGBIN/pg_ctl" -D "$R" -m immediate -w -t "$STOP_WAIT" stop >/dev/null
  rm -rf "$R"
  local t3; t3=$(now)
  local pb_startrec pb_rto pb_total
  pb_startrec=$(py "f'{$t2 - $t1:.2f}'")
  pb_rto=$(py "f'{$t2 - $t0:.2f}'")
  pb_total=$(py "f'{$t3 - $t0:.2f}'")

  {
    echo
    echo "pgbench scale $SCALE: $((BYTES / 1048576)) MiB data directory, ${LOAD}s of pgbench after the backups, zstd level $LEVEL, 2 cores, local repositories"
    printf "%-11s %9s %15s %7s %8s %13s %10s %9s %13s\n" "tool" "restore s" "start+recover s" "RTO s" "verify s" "total drill s" "MB/s rest." "WAL segs" "peak RSS MiB"
    printf "%-11s %9.2f %15.2f %7.2f %8.2f %13.2f %10.0f %9s %13s\n" pgkeep "$pk_restore" "$pk_startrec" "$pk_rto" "$pk_verify" "$pk_wall_s" \
      "$(py "$pk_bytes/1e6/$pk_restore")" "$pk_segs" "$pk_rss"
    printf "%-11s %9.2f %15.2f %7.2f %8s %13.2f %10.0f %9s %13s\n" pgBackRest "$pb_restore" "$pb_startrec" "$pb_rto" "-" "$pb_total" \
      "$(py "$pb_bytes/1e6/$pb_restore")" "$pb_segs" "$pb_rss"
    echo "pgkeep drill phases (s): $pk_phases; outside the phases (start-up, canary): $(py "f'{$pk_wall_s - $pk_phases_sum:.2f}'")"
    echo "pgBackRest steps (s): restore=$pb_restore start+recover=$pb_startrec stop+remove=$(py "f'{$t3 - $t2:.2f}'")"
    echo "what a drill adds to a backup cycle: pgkeep full backup ${pk_backup_s} s (pgBackRest ${pb_backup_s} s), drill ${pk_wall_s} s = $(py "f'{$pk_wall_s/$pk_backup_s:.1f}'")x the backup's time"
  } >> "$W/tables"
  rm -rf "$D"
}

for s in $SCALES; do run_scale "$s"; done

echo
echo "pgkeep restore drill vs pgBackRest 2.45 restore + start; load average before: $LOAD_BEFORE, after: $(load)"
cat "$W/tables"
cat <<'NOTE'
restore s: pgkeep's restore phase (files, and the WAL to replay fetched and checked into the
sandbox); pgBackRest's restore command (files only: its server fetches WAL with archive-get while
recovering). start+recover s: from starting the server until a write is accepted. RTO s: restore
+ start + recover. total drill s: pgkeepd's wall time (select, canary, restore, start, recover,
verify, report, clean); pgBackRest: restore, start, recover, stop and removal. MB/s rest.: data
directory bytes restored / restore s. WAL segs: pgkeep's report; pgBackRest: segments its
server restored from the archive. peak RSS: pgkeepd (the sandbox's server excluded), and
pgbackrest restore.
NOTE
