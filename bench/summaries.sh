#!/usr/bin/env bash
# Benchmark: an incremental backup of PostgreSQL 17 after a skewed workload (pgbench updates
# of a hot 1 % of the accounts, or of accounts drawn by random_exponential), taken from the
# server's WAL summaries (UPLOAD_MANIFEST
# + BASE_BACKUP ... INCREMENTAL) and, of the same changes into a second repository, by pgkeep's
# page scan; beside them the changed blocks themselves (the limit: distinct blocks the WAL
# summaries list between the full's start and the incremental's) and pgkeep's own full.
# npm's PostgreSQL 17 has no pg_basebackup and pgBackRest 2.45 predates 17, so pgkeep's page
# scan is the reference. Prints one table. Everything listens on 127.0.0.1 and stops at the end.
#   PGKEEP_BENCH_SCALE    pgbench scale (default 100)
#   PGKEEP_BENCH_SECONDS  seconds of the skewed workload (default 60)
#   PGKEEP_BENCH_SKEW     hot1 (default: uniform over the first 1 % of the accounts) or
#                         exp (random_exponential with parameter 20 over all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/env.sh
cargo build --release --quiet --bin pgkeep
PGKEEP=$CARGO_TARGET_DIR/release/pgkeep
PGBIN=$PGKEEP_TEST_PG17_BIN
SCALE=${PGKEEP_BENCH_SCALE:-100}
LOAD=${PGKEEP_BENCH_SECONDS:-60}
SKEW=${PGKEEP_BENCH_SKEW:-hot1}
case $SKEW in
  hot1) DRAW='random(1, 1000 * :scale)' ;;
  exp) DRAW='random_exponential(1, 100000 * :scale, 20)' ;;
  *) echo "bench: PGKEEP_BENCH_SKEW is hot1 or exp, not $SKEW" >&2; exit 2 ;;
esac

W=$(mktemp -d /tmp/pgkeep-bench-summaries-XXXXXX)
chown postgres:postgres "$W"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  [ -f "$W/pgdata/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
psql_() { psql -h "$W" -p "$PORT" -U postgres -XAtq "$@" postgres; }
timed() { as_pg /usr/bin/time -f "%e %M %U %S" -o "$W/last" "$@" >"$W/last.out" 2>"$W/last.err" || { cat "$W/last.err" >&2; exit 1; }; }
secs() { cut -d' ' -f1 "$W/last"; }
rss_mib() { awk '{printf "%.0f", $2/1024}' "$W/last"; }
read_mib() { grep -o '[0-9.]* MiB read from the source' "$W/last.out" | cut -d' ' -f1; }
mib() { python3 -c "print(f'{$1/1048576:.1f}')"; }
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
stored() { du -sb "$1/main/backups" | cut -f1; }

for r in sum scan; do
  printf '[repository]\npath = "%s"\n[backup]\nconcurrency = 2\n' "$W/repo-$r" > "$W/$r.toml"
done
echo "== PostgreSQL 17 (summarize_wal = on) archiving into two repositories; pgbench -i -s $SCALE" >&2
as_pg "$PGBIN/initdb" -A trust -U postgres --no-sync -D "$W/pgdata" >/dev/null
cat >> "$W/pgdata/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W'
max_wal_size = '4GB'
summarize_wal = on
archive_mode = on
archive_command = 'PGKEEP_CONFIG=$W/sum.toml $PGKEEP archive-push %p && PGKEEP_CONFIG=$W/scan.toml $PGKEEP archive-push %p'
CONF
for r in sum scan; do as_pg env PGKEEP_CONFIG="$W/$r.toml" "$PGKEEP" init --data-dir "$W/pgdata" >/dev/null; done
as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -l "$W/pg.log" -w -t 60 start >/dev/null
pgbench -h "$W" -p "$PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1
psql_ -c CHECKPOINT
BYTES=$(du -sb --exclude=pg_wal "$W/pgdata" | cut -f1)
SRC="host=$W port=$PORT user=postgres"

echo "== a full into each repository" >&2
timed env PGKEEP_CONFIG="$W/sum.toml" "$PGKEEP" backup --source "$SRC" --type full
full_s=$(secs); full_read=$(read_mib)
timed env PGKEEP_CONFIG="$W/scan.toml" "$PGKEEP" backup --source "$SRC" --type full
full_stored=$(stored "$W/repo-sum")

echo "== ${LOAD}s of skewed updates ($SKEW), then the incrementals" >&2
cat > "$W/skewed.sql" <<SQL
\\set aid $DRAW
\\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SQL
chmod 644 "$W/skewed.sql"
pgbench -h "$W" -p "$PORT" -U postgres -n -f "$W/skewed.sql" -s "$SCALE" -T "$LOAD" -c 4 -j 2 postgres 2>/dev/null | grep -E "^tps" >&2 || true
timed env PGKEEP_CONFIG="$W/sum.toml" "$PGKEEP" backup --source "$SRC" --type incr
grep -q "changes by wal-summaries" "$W/last.out" || { echo "bench: not an incremental from WAL summaries:" >&2; cat "$W/last.out" "$W/last.err" >&2; exit 1; }
sum_s=$(secs); sum_read=$(read_mib); sum_rss=$(rss_mib)
sum_stored=$(( $(stored "$W/repo-sum") - full_stored ))
# The page scan of the same changes: the server's summaries switched off, so pgkeep falls back.
psql_ -c "ALTER SYSTEM SET summarize_wal = off" -c "SELECT pg_reload_conf()" >/dev/null
scan_before=$(stored "$W/repo-scan")
timed env PGKEEP_CONFIG="$W/scan.toml" "$PGKEEP" backup --source "$SRC" --type incr
grep -q "changes by page-scan" "$W/last.out" || { echo "bench: not a page-scan incremental:" >&2; cat "$W/last.out" >&2; exit 1; }
scan_s=$(secs); scan_read=$(read_mib); scan_rss=$(rss_mib)
scan_stored=$(( $(stored "$W/repo-scan") - scan_before ))

# The limit: the distinct blocks the summaries list from the full's start to the incremental's.
read -r from to < <(as_pg env PGKEEP_CONFIG="$W/sum.toml" "$PGKEEP" info --json \
  | python3 -c 'import json,sys; b=json.load(sys.stdin)["backups"]; print(b[0]["start_lsn"], b[1]["start_lsn"])')
changed=$(psql_ -c "SELECT count(*) FROM (SELECT DISTINCT c.relfilenode, c.reltablespace, c.reldatabase,
  c.relforknumber, c.relblocknumber FROM pg_available_wal_summaries() s,
  LATERAL pg_wal_summary_contents(s.tli, s.start_lsn, s.end_lsn) c
  WHERE s.end_lsn > '$from' AND s.start_lsn < '$to' AND NOT c.is_limit_block) x")
changed_bytes=$((changed * 8192))
as_pg "$PGBIN/pg_ctl" -D "$W/pgdata" -m fast -w stop >/dev/null

echo "== restore of the full + the incremental from WAL summaries (files only)" >&2
sync; echo 3 > /proc/sys/vm/drop_caches
timed env PGKEEP_CONFIG="$W/sum.toml" "$PGKEEP" restore "$W/r-sum"
rest_s=$(secs); rest_rss=$(rss_mib)
/usr/bin/time -f "%e" -o "$W/sync.t" sync
rest_s=$(python3 -c "print(f'{$rest_s + $(cat "$W/sync.t"):.2f}')")

echo
echo "PostgreSQL 17, pgbench scale $SCALE: $((BYTES / 1048576)) MiB data directory; ${LOAD}s of skewed updates ($SKEW); 2 cores, local repositories"
printf "%-34s %14s %12s %14s %22s\n" "incremental" "WAL summaries" "page scan" "changed blocks" "goal"
row() { printf "%-34s %14s %12s %14s %22s\n" "$@"; }
row "seconds" "$sum_s" "$scan_s" "-" "<= 0.25x full: $(ratio "$sum_s" "$full_s")"
row "MiB the source sent" "$sum_read" "$scan_read" "$(mib "$changed_bytes")" "<= 2x changed: $(python3 -c "print(f'{$sum_read*1048576/max($changed_bytes,1):.2f}x')")"
row "MiB stored" "$(mib "$sum_stored")" "$(mib "$scan_stored")" "-" ""
row "peak RSS MiB" "$sum_rss" "$scan_rss" "-" "<= 256"
row "pgkeep's full: s / MiB sent" "$full_s / $full_read" "" "" ""
row "restore + sync MB/s (full + incr)" "$(python3 -c "print(f'{$BYTES/1e6/$rest_s:.0f}')")" "" "" "RSS $rest_rss MiB"
