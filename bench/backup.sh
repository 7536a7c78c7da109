#!/usr/bin/env bash
# Benchmark: pgkeep backup / restore side by side with pgBackRest 2.45 (compress-type=zst,
# process-max=2) and pg_basebackup -Ft -Z zstd (the raw baseline), on one pgbench database of
# scale 100 (about 1.5 GB) on PostgreSQL 15, every tool at zstd level 1 (pgkeep's default),
# local repositories. Also the CPU limit for the same data: tar of the data directory piped
# into zstd -T2. Prints one table. Everything listens on 127.0.0.1 and is stopped at the end.
#   PGKEEP_BENCH_SCALE    pgbench scale (default 100)
#   PGKEEP_BENCH_SECONDS  pgbench seconds between the full and the incremental (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --bench
. scripts/env.sh
cargo build --release --quiet --bin pgkeep
PGKEEP=$CARGO_TARGET_DIR/release/pgkeep
PGBIN=$PGKEEP_TEST_PG_BIN
SCALE=${PGKEEP_BENCH_SCALE:-100}
LOAD=${PGKEEP_BENCH_SECONDS:-60}
LEVEL=1

W=$(mktemp -d /tmp/pgkeep-bench-backup-XXXXXX)
chown postgres:postgres "$W"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  for d in "$W/pgdata"; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
psql_() { psql -h "$W" -p "$PORT" -U postgres -XAtq "$@" postgres; }
# Runs a command as postgres under /usr/bin/time; leaves "seconds peak_kib" in $W/last.
timed() { as_pg /usr/bin/time -f "%e %M %U %S" -o "$W/last" "$@" >"$W/last.out" 2>"$W/last.err" || { cat "$W/last.err" >&2; exit 1; }; }
cpu() { awk '{printf "%.1f", $3 + $4}' "$W/last"; }
secs() { cut -d' ' -f1 "$W/last"; }
rss_mib() { awk '{printf "%.0f", $2/1024}' "$W/last"; }
mbps() { python3 -c "print(f'{$1/1e6/$2:.0f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }

cat > "$W/pgkeep.toml" <<CONF
[repository]
path = "$W/repo-pgkeep"
[archive]
compress_level = $LEVEL
[backup]
concurrency = 2
CONF
cat > "$W/pgbackrest.conf" <<CONF
[global]
repo1-path=$W/repo-pgbr
compress-type=zst
compress-level=$LEVEL
process-max=2
start-fast=y
lock-path=$W/pgbr-lock
log-path=$W/pgbr-log
log-level-console=warn
log-level-file=off
[bench]
pg1-path=$W/pgdata
pg1-port=$PORT
pg1-socket-path=$W
CONF
mkdir -p "$W/pgbr-lock" "$W/pgbr-log"
chown -R postgres:postgres "$W"

echo "== PostgreSQL 15 archiving into both repositories; pgbench -i -s $SCALE" >&2
as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$W/pgdata" >/dev/null
cat >> "$W/pgdata/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W'
max_wal_size = '4GB'
archive_mode = on
archive_command = 'PGKEEP_CONFIG=$W/pgkeep.toml $PGKEEP archive-push %p && pgbackrest --config=$W/pgbackrest.conf --stanza=bench archive-push %p'
CONF
as_pg env PGKEEP_CONFIG="$W/pgkeep.toml" "$PGKEEP" init --data-dir "$W/pgdata" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -l "$W/pg.log" -w start >/dev/null
as_pg pgbackrest --config="$W/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
pgbench -h "$W" -p "$PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1
psql_ -c CHECKPOINT
BYTES=$(du -sb --exclude=pg_wal "$W/pgdata" | cut -f1)
echo "   data directory without pg_wal: $((BYTES / 1048576)) MiB" >&2
SRC="host=$W port=$PORT user=postgres"

echo "== CPU limit: tar | zstd -T2 -$LEVEL" >&2
timed bash -c "tar -C '$W/pgdata' --exclude=./pg_wal -cf - . | zstd -T2 -$LEVEL -q -c > /dev/null"
cpu_s=$(secs)

echo "== pg_basebackup -Ft -Z zstd:$LEVEL" >&2
timed "$PGBIN/pg_basebackup" -h "$W" -p "$PORT" -U postgres -D "$W/pgbb" -Ft -Z "zstd:$LEVEL" -c fast -X none
pgbb_s=$(secs); pgbb_rss=$(rss_mib); pgbb_stored=$(du -sb "$W/pgbb" | cut -f1)

echo "== full backups" >&2
timed env PGKEEP_CONFIG="$W/pgkeep.toml" "$PGKEEP" backup --source "$SRC" --type full
pk_full_s=$(secs); pk_full_rss=$(rss_mib)
pk_full_id=$(grep -o 'full backup [^ ]*' "$W/last.out" | cut -d' ' -f3)
timed pgbackrest --config="$W/pgbackrest.conf" --stanza=bench --type=full backup
pb_full_s=$(secs); pb_full_rss=$(rss_mib)
pb_full_id=$(as_pg pgbackrest --config="$W/pgbackrest.conf" --stanza=bench info --output=json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["backup"][-1]["label"])')
pk_full_stored=$(du -sb "$W/repo-pgkeep/main/backups" | cut -f1)
pb_full_stored=$(du -sb "$W/repo-pgbr/backup/bench" | cut -f1)

echo "== pgbench for ${LOAD}s, then incrementals" >&2
pgbench -h "$W" -p "$PORT" -U postgres -T "$LOAD" -c 4 -j 2 postgres 2>/dev/null | grep -E "^tps" >&2 || true
timed env PGKEEP_CONFIG="$W/pgkeep.toml" "$PGKEEP" backup --source "$SRC" --type incr
pk_incr_s=$(secs); pk_incr_rss=$(rss_mib)
grep -q "incremental backup" "$W/last.out" || { echo "pgkeep did not take an incremental" >&2; cat "$W/last.out" >&2; exit 1; }
timed pgbackrest --config="$W/pgbackrest.conf" --stanza=bench --type=incr backup
pb_incr_s=$(secs)
pk_incr_stored=$(( $(du -sb "$W/repo-pgkeep/main/backups" | cut -f1) - pk_full_stored ))
pb_incr_stored=$(( $(du -sb "$W/repo-pgbr/backup/bench" | cut -f1) - pb_full_stored ))
as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -m fast -w stop >/dev/null

echo "== restores of the full, then of the incremental (files only; WAL replay is PostgreSQL's)" >&2
# The page cache is dropped before each restore, so every tool reads its repository from disk
# alike; after each, a `sync` is timed too: what a tool leaves unwritten is paid there, so
# "restore + sync" compares restores that are on disk when they end.
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
sync_s() { /usr/bin/time -f "%e" -o "$W/sync.t" sync; cat "$W/sync.t"; }
plus() { python3 -c "print(f'{$1+$2:.2f}')"; }
mkdir -p "$W/r-pgbr" "$W/r-pgbr-full"; chown postgres:postgres "$W/r-pgbr" "$W/r-pgbr-full"; chmod 700 "$W/r-pgbr" "$W/r-pgbr-full"
drop_caches
timed env PGKEEP_CONFIG="$W/pgkeep.toml" "$PGKEEP" restore "$W/r-pgkeep-full" --backup "$pk_full_id"
pk_restf_s=$(plus "$(secs)" "$(sync_s)"); pk_restf_rss=$(rss_mib); pk_restf_cpu=$(cpu)
drop_caches
timed pgbackrest --config="$W/pgbackrest.conf" --stanza=bench --pg1-path="$W/r-pgbr-full" --set="$pb_full_id" restore
pb_restf_s=$(plus "$(secs)" "$(sync_s)"); pb_restf_cpu=$(cpu)
rm -rf "$W/r-pgkeep-full" "$W/r-pgbr-full"
drop_caches
timed env PGKEEP_CONFIG="$W/pgkeep.toml" "$PGKEEP" restore "$W/r-pgkeep"
pk_rest_s=$(plus "$(secs)" "$(sync_s)"); pk_rest_rss=$(rss_mib); pk_rest_cpu=$(cpu)
drop_caches
timed pgbackrest --config="$W/pgbackrest.conf" --stanza=bench --pg1-path="$W/r-pgbr" restore
pb_rest_s=$(plus "$(secs)" "$(sync_s)"); pb_rest_rss=$(rss_mib); pb_rest_cpu=$(cpu)
drop_caches
echo "== the disk's ceiling: dd of as many bytes, 16 MiB writes, one fsync" >&2
timed dd if=/dev/zero of="$W/dd.test" bs=16M count=$(( (BYTES + 16777215) / 16777216 )) conv=fsync status=none
dd_s=$(secs); rm -f "$W/dd.test"
mkdir -p "$W/r-pgbb"; chown postgres:postgres "$W/r-pgbb"
drop_caches
timed tar -C "$W/r-pgbb" -I zstd -xf "$W/pgbb/base.tar.zst"
bb_rest_s=$(plus "$(secs)" "$(sync_s)")

echo
echo "pgbench scale $SCALE: $((BYTES / 1048576)) MiB data directory, zstd level $LEVEL, 2 cores, local repositories"
printf "%-40s %12s %14s %14s %12s\n" "metric" "pgkeep" "pgBackRest" "pg_basebackup" "pgkeep/pgBR"
row() { printf "%-40s %12s %14s %14s %12s\n" "$@"; }
row "full backup MB/s" "$(mbps "$BYTES" "$pk_full_s")" "$(mbps "$BYTES" "$pb_full_s")" "$(mbps "$BYTES" "$pgbb_s")" "$(ratio "$pb_full_s" "$pk_full_s")"
row "full backup s" "$pk_full_s" "$pb_full_s" "$pgbb_s" ""
row "full stored MiB" "$((pk_full_stored / 1048576))" "$((pb_full_stored / 1048576))" "$((pgbb_stored / 1048576))" "$(ratio "$pk_full_stored" "$pb_full_stored")"
row "incremental after ${LOAD}s pgbench: s" "$pk_incr_s" "$pb_incr_s" "-" "$(ratio "$pk_incr_s" "$pb_incr_s")"
row "incremental stored MiB" "$(python3 -c "print(f'{$pk_incr_stored/1048576:.1f}')")" "$(python3 -c "print(f'{$pb_incr_stored/1048576:.1f}')")" "-" "$(ratio "$pk_incr_stored" "$pb_incr_stored")"
row "restore + sync MB/s, full (pg_bb: tar -x)" "$(mbps "$BYTES" "$pk_restf_s")" "$(mbps "$BYTES" "$pb_restf_s")" "$(mbps "$BYTES" "$bb_rest_s")" "$(ratio "$pb_restf_s" "$pk_restf_s")"
row "restore + sync MB/s, full + incremental" "$(mbps "$BYTES" "$pk_rest_s")" "$(mbps "$BYTES" "$pb_rest_s")" "-" "$(ratio "$pb_rest_s" "$pk_rest_s")"
row "restore CPU s (user+sys): full / +incr" "$pk_restf_cpu/$pk_rest_cpu" "$pb_restf_cpu/$pb_rest_cpu" "-" ""
row "disk ceiling MB/s (dd 16M, conv=fsync)" "$(mbps "$BYTES" "$dd_s")" "" "" ""
row "peak RSS MiB: full / incr / restore" "$pk_full_rss/$pk_incr_rss/$pk_restf_rss,$pk_rest_rss" "$pb_full_rss/-/$pb_rest_rss" "$pgbb_rss" ""
row "CPU limit (tar | zstd -T2) MB/s" "$(mbps "$BYTES" "$cpu_s")" "" "" ""
row "pgkeep full vs CPU limit" "$(python3 -c "print(f'{100*$cpu_s/$pk_full_s:.0f}%')")" "" "" ""
